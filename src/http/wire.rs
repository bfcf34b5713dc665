//! The JSON shapes of `spec/api.md`: every request and response body, field for field, and the
//! PowerAuth envelope around them. These are the only serde types on the wire; handlers turn them into
//! the service's plain values ([`crate::service`]) and back.
//!
//! Jackson parity (`powerauth-offline.md` §2.2): unknown request fields are ignored (serde's default),
//! optional fields may be missing or `null`, a missing `allowBiometry` is `false`, lists default to `[]`,
//! and `null` response fields are written as `null` (never skipped).
//!
//! The bounds of request strings (lengths, characters) are not written here: the OpenAPI document
//! takes them from the table that enforces them ([`super::input`]), by field name.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{ActivationStatus, Timestamp};
use crate::service::{
    ActivationInfo, ApplicationDetail, ApplicationVersionInfo, EciesDecryptorSecrets,
    InitializedActivation, NonceStatus, OfflinePayload, PreparedActivation, RegisteredActivation,
};

/// `{"requestObject": {...}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestEnvelope<T> {
    /// The request.
    pub request_object: T,
}

/// `{"status": "OK", "responseObject": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseEnvelope<T> {
    /// Always `OK`.
    pub status: EnvelopeStatus,
    /// The response.
    pub response_object: T,
}

/// `{"status": "ERROR", "responseObject": {"code", "message", "localizedMessage"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEnvelope {
    /// Always `ERROR`.
    pub status: EnvelopeStatus,
    /// The response.
    pub response_object: ErrorBody,
}

/// The envelope's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum EnvelopeStatus {
    /// `OK`.
    Ok,
    /// `ERROR`.
    Error,
}

/// An error: a PowerAuth code (`ERR0024`, …) or one of this service's (`ERR_AUTHENTICATION`,
/// `ERR_HSM_UNAVAILABLE`, `ERROR_NOT_FOUND`, …), and PowerAuth's English message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The error code.
    pub code: String,
    /// The message.
    pub message: String,
    /// The same text as `message`; `null` for `ERROR_NOT_FOUND` (PowerAuth parity).
    pub localized_message: Option<String>,
}

// ------------------------------------------------------------------------------------------------
// Enums

/// Activation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivationStatusWire {
    /// `CREATED`.
    Created,
    /// `PENDING_COMMIT`.
    PendingCommit,
    /// `ACTIVE`.
    Active,
    /// `BLOCKED`.
    Blocked,
    /// `REMOVED`.
    Removed,
}

impl From<ActivationStatus> for ActivationStatusWire {
    fn from(s: ActivationStatus) -> Self {
        match s {
            ActivationStatus::Created => Self::Created,
            ActivationStatus::PendingCommit => Self::PendingCommit,
            ActivationStatus::Active => Self::Active,
            ActivationStatus::Blocked => Self::Blocked,
            ActivationStatus::Removed => Self::Removed,
        }
    }
}

/// The factors a verified (or tried) code was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignatureTypeWire {
    /// `POSSESSION_KNOWLEDGE`.
    PossessionKnowledge,
    /// `POSSESSION_BIOMETRY`.
    PossessionBiometry,
}

/// The nonce registry's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NonceStatusWire {
    /// `VALID`: issued for this activation (or its application), unexpired, unused.
    Valid,
    /// `UNKNOWN`: never issued here.
    Unknown,
    /// `EXPIRED`: past its lifetime.
    Expired,
    /// `CONSUMED`: a successful verification already used it.
    Consumed,
    /// `MISMATCH`: issued for another activation or application.
    Mismatch,
}

impl From<NonceStatus> for NonceStatusWire {
    fn from(s: NonceStatus) -> Self {
        match s {
            NonceStatus::Valid => Self::Valid,
            NonceStatus::Unknown => Self::Unknown,
            NonceStatus::Expired => Self::Expired,
            NonceStatus::Consumed => Self::Consumed,
            NonceStatus::Mismatch => Self::Mismatch,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Applications

/// `application/create` and `application/detail` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRequest {
    /// The free-form application name, e.g. `demo`.
    pub application_id: String,
}

/// `application/create` and `application/detail` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationResponse {
    /// The application id.
    pub application_id: String,
    /// The application roles.
    pub application_roles: Vec<String>,
    /// Base64 of the newest master public key (65-byte uncompressed SEC1 point).
    pub master_public_key: String,
    /// The application versions (`default` first).
    pub versions: Vec<ApplicationVersionResponse>,
}

impl From<ApplicationDetail> for ApplicationResponse {
    fn from(d: ApplicationDetail) -> Self {
        Self {
            application_id: d.application_id,
            application_roles: d.application_roles,
            master_public_key: d.master_public_key,
            versions: d.versions.into_iter().map(Into::into).collect(),
        }
    }
}

/// `application/version/create` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationVersionRequest {
    /// The application.
    pub application_id: String,
    /// The new version's id (unique within the application).
    pub application_version_id: String,
}

/// One application version (`application/detail` `versions[]`, `application/version/create`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationVersionResponse {
    /// The version id.
    pub application_version_id: String,
    /// The version name (the id; PowerAuth parity).
    pub application_version_name: String,
    /// `APP_KEY`: Base64 of 16 random bytes.
    pub application_key: String,
    /// `APP_SECRET`: Base64 of 16 random bytes (built into the mobile app).
    pub application_secret: String,
    /// The SDK 1.9 configuration string (§5.1 of the activation spec).
    pub mobile_sdk_config: String,
    /// Whether the version may activate devices.
    pub supported: bool,
}

impl From<ApplicationVersionInfo> for ApplicationVersionResponse {
    fn from(v: ApplicationVersionInfo) -> Self {
        Self {
            application_version_name: v.application_version_id.clone(),
            application_version_id: v.application_version_id,
            application_key: v.application_key,
            application_secret: v.application_secret,
            mobile_sdk_config: v.mobile_sdk_config,
            supported: v.supported,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Activation by code (protocol 3.3)

/// A date on input: ISO-8601 text with offset (what Jackson writes) or epoch milliseconds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DateInput {
    /// Unix epoch milliseconds.
    Millis(i64),
    /// ISO-8601 / RFC 3339, e.g. `2026-01-01T00:00:00.000+00:00`.
    Text(String),
}

impl DateInput {
    /// The instant, or `None` for text that is not RFC 3339.
    pub fn to_timestamp(&self) -> Option<Timestamp> {
        match self {
            Self::Millis(ms) => Some(Timestamp::from_unix_millis(*ms)),
            Self::Text(text) => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .map(Timestamp::from_offset_date_time)
            }
        }
    }
}

/// `activation/init` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitRequest {
    /// `powerauth` (default); `fido2` is refused (ERR0024).
    pub protocol: Option<String>,
    /// 1..=255 characters.
    pub user_id: String,
    /// Missing: ERR0002.
    pub application_id: Option<String>,
    /// Default: now + `activation.code_validity_seconds`.
    pub timestamp_activation_expire: Option<DateInput>,
    /// 1..=64; ≤ 0 is ERR0040.
    pub max_failure_count: Option<i64>,
    /// Deprecated; only `NONE` is accepted.
    pub activation_otp_validation: Option<String>,
    /// `ON_COMMIT` (default) or `ON_KEY_EXCHANGE`.
    pub commit_phase: Option<String>,
    /// Optional activation OTP.
    pub activation_otp: Option<String>,
    /// Activation flags.
    pub flags: Option<Vec<String>>,
}

/// `activation/init` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitResponse {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// `XXXXX-XXXXX-XXXXX-XXXXX`.
    pub activation_code: String,
    /// Base64 DER ECDSA signature of the code by the master key.
    pub activation_signature: String,
    /// The user id.
    pub user_id: String,
    /// The application id.
    pub application_id: String,
}

impl From<InitializedActivation> for InitResponse {
    fn from(i: InitializedActivation) -> Self {
        Self {
            activation_id: i.activation_id,
            activation_code: i.activation_code,
            activation_signature: i.activation_signature,
            user_id: i.user_id,
            application_id: i.application_id,
        }
    }
}

/// `keystore/create` request and response: one JWT.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JwtBody {
    /// Request: the SDK's HS256 JWT; response: the server's ES256 JWT.
    pub jwt: String,
}

/// `ecies/decryptor` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecryptorRequest {
    /// Present for the activation scope.
    pub activation_id: Option<String>,
    /// The application key.
    pub application_key: Option<String>,
    /// The temporary key id.
    pub temporary_key_id: Option<String>,
    /// Base64 of the ECIES ephemeral public key.
    pub ephemeral_public_key: Option<String>,
    /// The nonce (Base64 of 16 bytes).
    pub nonce: Option<String>,
    /// `3.3` only.
    pub protocol_version: Option<String>,
    /// Unix milliseconds.
    pub timestamp: Option<i64>,
}

/// `ecies/decryptor` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecryptorResponse {
    /// Base64 of the 48-byte envelope key.
    pub secret_key: String,
    /// Base64 of the 32-byte `sharedInfo2` base.
    pub shared_info2: String,
}

impl From<EciesDecryptorSecrets> for DecryptorResponse {
    fn from(s: EciesDecryptorSecrets) -> Self {
        Self {
            secret_key: s.secret_key,
            shared_info2: s.shared_info2,
        }
    }
}

/// `activation/prepare` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrepareRequest {
    /// The activation code.
    pub activation_code: Option<String>,
    /// The application key.
    pub application_key: Option<String>,
    /// Ignored: recovery codes are not supported.
    pub generate_recovery_codes: Option<bool>,
    /// The temporary key id.
    pub temporary_key_id: Option<String>,
    /// Base64 of the ECIES ephemeral public key.
    pub ephemeral_public_key: Option<String>,
    /// Base64 of the ECIES ciphertext.
    pub encrypted_data: Option<String>,
    /// Base64 of the ECIES MAC.
    pub mac: Option<String>,
    /// The nonce (Base64 of 16 bytes).
    pub nonce: Option<String>,
    /// The protocol version (`3.3`).
    pub protocol_version: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

/// `activation/prepare` response: the layer-2 response, encrypted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrepareResponse {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The user id.
    pub user_id: String,
    /// The application id.
    pub application_id: String,
    /// Base64 of the ECIES ciphertext.
    pub encrypted_data: String,
    /// Base64 of the ECIES MAC.
    pub mac: String,
    /// The nonce (Base64 of 16 bytes).
    pub nonce: String,
    /// Unix milliseconds (the SDK synchronizes its clock to it).
    pub timestamp: i64,
    /// The activation status.
    pub activation_status: ActivationStatusWire,
}

impl From<PreparedActivation> for PrepareResponse {
    fn from(p: PreparedActivation) -> Self {
        Self {
            activation_id: p.activation_id,
            user_id: p.user_id,
            application_id: p.application_id,
            encrypted_data: p.encrypted_data,
            mac: p.mac,
            nonce: p.nonce,
            timestamp: p.timestamp,
            activation_status: p.activation_status.into(),
        }
    }
}

/// `activation/commit` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitRequest {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// Accepted and ignored (audit trail by the caller).
    pub external_user_id: Option<String>,
    /// Required when the activation was initialized with an OTP and `ON_COMMIT`.
    pub activation_otp: Option<String>,
}

/// `activation/status` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusRequest {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// Base64 of 16 random bytes; with it the answer carries the encrypted status blob.
    pub challenge: Option<String>,
}

// ------------------------------------------------------------------------------------------------
// Activations

/// `activation/register` request **[ext]**.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The application id.
    pub application_id: String,
    /// The user id.
    pub user_id: String,
    /// Base64 of the device's P-256 public key (65-byte uncompressed or 33-byte compressed SEC1).
    pub device_public_key: String,
    /// 1..=64; default from the configuration.
    pub max_failed_attempts: Option<u32>,
    /// The activation flags.
    pub activation_flags: Option<Vec<String>>,
}

/// `activation/register` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// Random UUID v4, lower case.
    pub activation_id: String,
    /// Always `PENDING_COMMIT`.
    pub activation_status: ActivationStatusWire,
    /// Base64 of the per-activation server public key (65-byte uncompressed SEC1).
    pub server_public_key: String,
    /// Base64 of the initial 16-byte hash-based counter.
    pub ctr_data: String,
    /// PowerAuth v3 fingerprint: 8 decimal digits.
    pub device_public_key_fingerprint: String,
}

impl From<RegisteredActivation> for RegisterResponse {
    fn from(r: RegisteredActivation) -> Self {
        Self {
            activation_id: r.activation_id,
            activation_status: r.activation_status.into(),
            server_public_key: r.server_public_key,
            ctr_data: r.ctr_data,
            device_public_key_fingerprint: r.device_public_key_fingerprint,
        }
    }
}

/// Request naming one activation (`commit`, `status`, `unblock`, `remove`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivationRequest {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
}

/// `activation/block` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockRequest {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// Defaults to `NOT_SPECIFIED`.
    pub reason: Option<String>,
}

/// `activation/commit` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitResponse {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// Always `true`.
    pub activated: bool,
}

/// `activation/block` and `activation/unblock` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeResponse {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The activation status.
    pub activation_status: ActivationStatusWire,
}

/// `activation/remove` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveResponse {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// Always `true`.
    pub removed: bool,
}

/// `activation/status` response. Timestamps are RFC 3339 (UTC).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The activation status.
    pub activation_status: ActivationStatusWire,
    /// Why the activation is blocked, if it is.
    pub blocked_reason: Option<String>,
    /// The user id.
    pub user_id: String,
    /// The application id.
    pub application_id: String,
    /// The activation flags.
    pub activation_flags: Vec<String>,
    /// Failed attempts since the last valid code.
    pub failed_attempts: u32,
    /// Failed attempts after which the activation is blocked.
    pub max_failed_attempts: u32,
    /// When the activation was created.
    pub timestamp_created: Option<String>,
    /// When a code was last checked against it.
    pub timestamp_last_used: Option<String>,
    /// The last status change.
    pub timestamp_last_change: Option<String>,
    /// PowerAuth v3 fingerprint; `null` before the key exchange.
    pub device_public_key_fingerprint: Option<String>,
    /// Always `NONE` (deprecated field).
    pub activation_otp_validation: &'static str,
    /// `ON_COMMIT` or `ON_KEY_EXCHANGE`.
    pub commit_phase: &'static str,
    /// The activation name.
    pub activation_name: Option<String>,
    /// Free-form extras the bank attached.
    pub extras: Option<String>,
    /// Always `powerauth`.
    pub protocol: &'static str,
    /// An external id the bank gave the activation.
    pub external_id: Option<String>,
    /// The device platform.
    pub platform: Option<String>,
    /// The device description.
    pub device_info: Option<String>,
    /// 3 after the key exchange, 0 before.
    pub version: u8,
    /// Only while `CREATED`.
    pub activation_code: Option<String>,
    /// Only while `CREATED`.
    pub activation_signature: Option<String>,
    /// Base64 of the 32-byte encrypted status blob (with a challenge only).
    pub encrypted_status_blob: Option<String>,
    /// Base64 of the 16-byte status nonce (with a challenge only).
    pub encrypted_status_blob_nonce: Option<String>,
    /// Roles of the application (none are kept: always empty).
    pub application_roles: Vec<String>,
}

impl From<ActivationInfo> for StatusResponse {
    fn from(a: ActivationInfo) -> Self {
        Self {
            activation_id: a.activation_id,
            activation_status: a.activation_status.into(),
            blocked_reason: a.blocked_reason,
            user_id: a.user_id,
            application_id: a.application_id,
            activation_flags: a.activation_flags,
            failed_attempts: a.failed_attempts,
            max_failed_attempts: a.max_failed_attempts,
            timestamp_created: rfc3339(a.timestamp_created),
            timestamp_last_used: a.timestamp_last_used.and_then(rfc3339),
            timestamp_last_change: a.timestamp_last_change.and_then(rfc3339),
            device_public_key_fingerprint: a.device_public_key_fingerprint,
            activation_otp_validation: "NONE",
            commit_phase: a.commit_phase.as_str(),
            activation_name: a.activation_name,
            extras: a.extras,
            protocol: "powerauth",
            external_id: a.external_id,
            platform: a.platform,
            device_info: a.device_info,
            version: a.version,
            activation_code: a.activation_code,
            activation_signature: a.activation_signature,
            encrypted_status_blob: a.encrypted_status_blob,
            encrypted_status_blob_nonce: a.encrypted_status_blob_nonce,
            application_roles: Vec::new(),
        }
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-01-01T00:00:00.123Z`; `None` only for a time outside
/// what `time` can represent.
pub fn rfc3339(t: Timestamp) -> Option<String> {
    t.to_offset_date_time().and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

// ------------------------------------------------------------------------------------------------
// Offline signatures

/// The proximity check (TOTP) of a create or verify request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProximityCheckWire {
    /// Base64 TOTP seed; blank or missing disables the check.
    pub seed: Option<String>,
    /// Seconds per TOTP step, at least 1.
    #[serde(default)]
    pub step_length: i64,
    /// Verify only: backward steps accepted (0 = the current step only).
    #[serde(default)]
    pub step_count: i64,
}

impl From<ProximityCheckWire> for crate::service::ProximityCheck {
    fn from(p: ProximityCheckWire) -> Self {
        Self {
            seed: p.seed.unwrap_or_default(),
            step_length: p.step_length,
            step_count: p.step_count,
        }
    }
}

/// `signature/offline/personalized/create` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePersonalizedRequest {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The operation text put in the QR code (Web Flow format).
    pub data: String,
    /// Base64 of 16 bytes; missing or blank: a fresh random nonce.
    pub nonce: Option<String>,
    /// The proximity check, if any.
    pub proximity_check: Option<ProximityCheckWire>,
}

/// `signature/offline/non-personalized/create` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateNonPersonalizedRequest {
    /// The application id.
    pub application_id: String,
    /// The data, as sent.
    pub data: String,
}

/// Response of both create methods.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfflinePayloadResponse {
    /// The QR payload: `data \n [TOTP \n] nonce \n keyIndicator` + Base64 DER ECDSA signature.
    pub offline_data: String,
    /// The nonce inside `offlineData` (Base64 of 16 bytes).
    pub nonce: String,
}

impl From<OfflinePayload> for OfflinePayloadResponse {
    fn from(p: OfflinePayload) -> Self {
        Self {
            offline_data: p.offline_data,
            nonce: p.nonce,
        }
    }
}

/// `signature/offline/verify` request.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequestWire {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// Normalized request data `POST&B64(uriId)&NONCE&B64(body)` (without `&offline`).
    pub data: String,
    /// The code as typed, e.g. `12345678-90123456`.
    pub signature: String,
    /// Missing or `null` is `false`.
    pub allow_biometry: Option<bool>,
    /// Digits per factor component, 4..=8; default from the configuration.
    pub component_length: Option<i64>,
    /// The proximity check, if any.
    pub proximity_check: Option<ProximityCheckWire>,
}

impl std::fmt::Debug for VerifyRequestWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyRequestWire")
            .field("activation_id", &self.activation_id)
            .finish_non_exhaustive()
    }
}

/// `signature/offline/verify` response (`powerauth-offline.md` §8.2 plus `nonceStatus`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponseWire {
    /// Whether the code was accepted.
    pub signature_valid: bool,
    /// The activation status.
    pub activation_status: ActivationStatusWire,
    /// Why the activation is blocked, if it is.
    pub blocked_reason: Option<String>,
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The user id.
    pub user_id: Option<String>,
    /// The application id.
    pub application_id: Option<String>,
    /// The signature type matched, or reported.
    pub signature_type: Option<SignatureTypeWire>,
    /// Failed attempts left before the activation is blocked.
    pub remaining_attempts: Option<u32>,
    /// The application roles.
    pub application_roles: Vec<String>,
    /// The activation flags.
    pub activation_flags: Vec<String>,
    /// `null` with `nonce_policy = "off"` or when the check was not reached.
    pub nonce_status: Option<NonceStatusWire>,
}

// ------------------------------------------------------------------------------------------------
// Operations

/// `GET /health` and `GET /ready` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `UP` or `DOWN`.
    pub status: &'static str,
    /// Why the service is not ready (only with `DOWN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
