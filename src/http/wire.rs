//! The JSON shapes of `spec/api.md`: every request and response body, field for field, and the
//! PowerAuth envelope around them. These are the only serde types on the wire; handlers turn them into
//! the service's plain values ([`crate::service`]) and back.
//!
//! Jackson parity (`powerauth-offline.md` §2.2): unknown request fields are ignored (serde's default),
//! optional fields may be missing or `null`, a missing `allowBiometry` is `false`, lists default to `[]`,
//! and `null` response fields are written as `null` (never skipped).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{ActivationStatus, Timestamp};
use crate::service::{
    ActivationInfo, ApplicationDetail, NonceStatus, OfflinePayload, RegisteredActivation,
};

/// `{"requestObject": {...}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestEnvelope<T> {
    pub request_object: T,
}

/// `{"status": "OK", "responseObject": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseEnvelope<T> {
    /// Always `OK`.
    pub status: EnvelopeStatus,
    pub response_object: T,
}

/// `{"status": "ERROR", "responseObject": {"code", "message", "localizedMessage"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEnvelope {
    /// Always `ERROR`.
    pub status: EnvelopeStatus,
    pub response_object: ErrorBody,
}

/// The envelope's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum EnvelopeStatus {
    Ok,
    Error,
}

/// An error: a PowerAuth code (`ERR0024`, …) or one of this service's (`ERR_AUTHENTICATION`,
/// `ERR_HSM_UNAVAILABLE`, `ERROR_NOT_FOUND`, …), and PowerAuth's English message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: String,
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
    Created,
    PendingCommit,
    Active,
    Blocked,
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
    PossessionKnowledge,
    PossessionBiometry,
}

/// The nonce registry's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NonceStatusWire {
    Valid,
    Unknown,
    Expired,
    Consumed,
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
    pub application_id: String,
    pub application_roles: Vec<String>,
    /// Base64 of the newest master public key (65-byte uncompressed SEC1 point).
    pub master_public_key: String,
}

impl From<ApplicationDetail> for ApplicationResponse {
    fn from(d: ApplicationDetail) -> Self {
        Self {
            application_id: d.application_id,
            application_roles: d.application_roles,
            master_public_key: d.master_public_key,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Activations

/// `activation/register` request **[ext]**.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    pub application_id: String,
    pub user_id: String,
    /// Base64 of the device's P-256 public key (65-byte uncompressed or 33-byte compressed SEC1).
    pub device_public_key: String,
    /// 1..=64; default from the configuration.
    #[serde(default)]
    pub max_failed_attempts: Option<u32>,
    #[serde(default)]
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
    pub activation_id: String,
}

/// `activation/block` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockRequest {
    pub activation_id: String,
    /// Defaults to `NOT_SPECIFIED`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `activation/commit` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitResponse {
    pub activation_id: String,
    /// Always `true`.
    pub activated: bool,
}

/// `activation/block` and `activation/unblock` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeResponse {
    pub activation_id: String,
    pub activation_status: ActivationStatusWire,
}

/// `activation/remove` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveResponse {
    pub activation_id: String,
    /// Always `true`.
    pub removed: bool,
}

/// `activation/status` response. Timestamps are RFC 3339 (UTC).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub activation_id: String,
    pub activation_status: ActivationStatusWire,
    pub blocked_reason: Option<String>,
    pub user_id: String,
    pub application_id: String,
    pub activation_flags: Vec<String>,
    pub failed_attempts: u32,
    pub max_failed_attempts: u32,
    pub timestamp_created: Option<String>,
    pub timestamp_last_used: Option<String>,
    pub device_public_key_fingerprint: String,
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
            device_public_key_fingerprint: a.device_public_key_fingerprint,
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
    #[serde(default)]
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
    pub activation_id: String,
    /// The operation text put in the QR code (Web Flow format).
    pub data: String,
    /// Base64 of 16 bytes; missing or blank: a fresh random nonce.
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub proximity_check: Option<ProximityCheckWire>,
}

/// `signature/offline/non-personalized/create` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateNonPersonalizedRequest {
    pub application_id: String,
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
    pub activation_id: String,
    /// Normalized request data `POST&B64(uriId)&NONCE&B64(body)` (without `&offline`).
    pub data: String,
    /// The code as typed, e.g. `12345678-90123456`.
    pub signature: String,
    /// Missing or `null` is `false`.
    #[serde(default)]
    pub allow_biometry: Option<bool>,
    /// Digits per factor component, 4..=8; default from the configuration.
    #[serde(default)]
    pub component_length: Option<i64>,
    #[serde(default)]
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
    pub signature_valid: bool,
    pub activation_status: ActivationStatusWire,
    pub blocked_reason: Option<String>,
    pub activation_id: String,
    pub user_id: Option<String>,
    pub application_id: Option<String>,
    pub signature_type: Option<SignatureTypeWire>,
    pub remaining_attempts: Option<u32>,
    pub application_roles: Vec<String>,
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
