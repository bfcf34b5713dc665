//! The inputs and outputs of the use cases, as plain Rust values. The HTTP layer turns its wire types
//! into these and back; nothing here knows JSON.

use crate::crypto::offline_data::{DataToSign, RequestData};
use crate::crypto::{b64, totp};
use crate::model::{ActivationStatus, CommitPhase, Timestamp};

use super::{MAX_PROXIMITY_STEP_COUNT, ServiceError};

/// `application/create` and `application/detail` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationDetail {
    /// The application id.
    pub application_id: String,
    /// The application roles.
    pub application_roles: Vec<String>,
    /// Base64 of the newest master public key (65-byte uncompressed SEC1).
    pub master_public_key: String,
    /// The application versions with their credentials and `mobileSdkConfig`.
    pub versions: Vec<super::ApplicationVersionInfo>,
}

/// `activation/register` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterActivation {
    /// The application id.
    pub application_id: String,
    /// The user id.
    pub user_id: String,
    /// Base64 of a SEC1 P-256 point (uncompressed or compressed).
    pub device_public_key: String,
    /// Failed attempts after which the activation is blocked.
    pub max_failed_attempts: Option<u32>,
    /// The activation flags.
    pub activation_flags: Vec<String>,
}

/// `activation/register` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredActivation {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The activation status.
    pub activation_status: ActivationStatus,
    /// Base64 of the per-activation server public key (uncompressed).
    pub server_public_key: String,
    /// Base64 of the initial 16-byte hash-based counter.
    pub ctr_data: String,
    /// PowerAuth v3 fingerprint, 8 decimal digits.
    pub device_public_key_fingerprint: String,
}

/// `activation/status` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationInfo {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The activation status.
    pub activation_status: ActivationStatus,
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
    /// Numeric counter (position in the hash chain).
    pub counter: u64,
    /// When the activation was created.
    pub timestamp_created: Timestamp,
    /// When a code was last checked against it.
    pub timestamp_last_used: Option<Timestamp>,
    /// The last status change.
    pub timestamp_last_change: Option<Timestamp>,
    /// PowerAuth v3 fingerprint; `None` before the key exchange.
    pub device_public_key_fingerprint: Option<String>,
    /// Name the device gave at prepare.
    pub activation_name: Option<String>,
    /// When the activation becomes `ACTIVE`.
    pub commit_phase: CommitPhase,
    /// Lower-cased platform from prepare.
    pub platform: Option<String>,
    /// Device description from prepare.
    pub device_info: Option<String>,
    /// Free-form extras from prepare.
    pub extras: Option<String>,
    /// External id from prepare.
    pub external_id: Option<String>,
    /// Activation (protocol) version: 3 after the key exchange, 0 before.
    pub version: u8,
    /// The code, only while `CREATED`.
    pub activation_code: Option<String>,
    /// The code's signature, only while `CREATED`.
    pub activation_signature: Option<String>,
    /// Base64 of the 32-byte encrypted status blob (only when a challenge was given).
    pub encrypted_status_blob: Option<String>,
    /// Base64 of the 16-byte status nonce (only when a challenge was given).
    pub encrypted_status_blob_nonce: Option<String>,
}

/// The proximity check as a request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProximityCheck {
    /// Base64 TOTP seed; blank disables the check (PowerAuth behaviour).
    pub seed: String,
    /// Seconds per TOTP step, at least 1.
    pub step_length: i64,
    /// Backward steps accepted on verify (0 = current step only); ignored on create.
    pub step_count: i64,
}

/// A proximity check that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidProximity {
    seed: Vec<u8>,
    step_length: u64,
    step_count: u32,
}

impl ProximityCheck {
    /// `None` when the seed is blank (the check is off), else the validated check.
    pub(crate) fn parse(&self) -> Result<Option<ValidProximity>, ServiceError> {
        if self.seed.trim().is_empty() {
            return Ok(None);
        }
        let seed = b64::decode(&self.seed).map_err(|_| {
            ServiceError::InvalidRequest("proximityCheck.seed is not canonical Base64".into())
        })?;
        let step_length = u64::try_from(self.step_length)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| {
                ServiceError::InvalidRequest("proximityCheck.stepLength must be at least 1".into())
            })?;
        let step_count = u32::try_from(self.step_count)
            .ok()
            .filter(|c| *c <= MAX_PROXIMITY_STEP_COUNT)
            .ok_or_else(|| {
                ServiceError::InvalidRequest(format!(
                    "proximityCheck.stepCount must be 0..={MAX_PROXIMITY_STEP_COUNT}"
                ))
            })?;
        Ok(Some(ValidProximity {
            seed,
            step_length,
            step_count,
        }))
    }
}

impl ValidProximity {
    /// The TOTP of the step containing `now`.
    pub(crate) fn totp_at(&self, now: Timestamp, digits: u32) -> Result<String, ServiceError> {
        totp::totp(&self.seed, unix_seconds(now), self.step_length, digits)
            .map_err(|e| ServiceError::InvalidRequest(e.to_string()))
    }

    /// The messages to try for `data`: one per TOTP step, current step first (§8.1).
    pub(crate) fn candidates(
        &self,
        data: &RequestData,
        now: Timestamp,
        digits: u32,
    ) -> Result<Vec<DataToSign>, ServiceError> {
        data.proximity_candidates(
            &self.seed,
            unix_seconds(now),
            self.step_length,
            self.step_count,
            digits,
        )
        .map_err(|_| {
            ServiceError::InvalidRequest(
                "with proximityCheck, the body part of data must be canonical Base64".into(),
            )
        })
    }
}

fn unix_seconds(t: Timestamp) -> u64 {
    u64::try_from(t.unix_millis().div_euclid(1000)).unwrap_or(0)
}

/// `signature/offline/personalized/create` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePersonalized {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The data, as sent.
    pub data: String,
    /// Base64 of 16 bytes, or `None`/blank for a fresh random nonce.
    pub nonce: Option<String>,
    /// The proximity check, if any.
    pub proximity_check: Option<ProximityCheck>,
}

/// `signature/offline/non-personalized/create` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateNonPersonalized {
    /// The application id.
    pub application_id: String,
    /// The data, as sent.
    pub data: String,
}

/// Answer of both create methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflinePayload {
    /// The QR payload (`powerauth-offline.md` §4).
    pub offline_data: String,
    /// The nonce inside it.
    pub nonce: String,
}

/// `signature/offline/verify` request.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// `POST&B64(uriId)&NONCE&B64(body)`, without `&offline`.
    pub data: String,
    /// The code exactly as typed, e.g. `12345678-90123456`.
    pub signature: String,
    /// Whether possession + biometry is accepted.
    pub allow_biometry: bool,
    /// Digits per factor component (4..=8).
    pub component_length: Option<i64>,
    /// The proximity check, if any.
    pub proximity_check: Option<ProximityCheck>,
}

impl std::fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("activation_id", &self.activation_id)
            .field("allow_biometry", &self.allow_biometry)
            .field("component_length", &self.component_length)
            .finish_non_exhaustive()
    }
}

/// The nonce registry's verdict (`api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonceStatus {
    /// Issued for this activation (or its application), unexpired, unused.
    Valid,
    /// Never issued by this service (or pruned long ago).
    Unknown,
    /// Past its lifetime.
    Expired,
    /// A successful verification already used it.
    Consumed,
    /// Issued for another activation, or for an application the activation is not in.
    Mismatch,
}

impl NonceStatus {
    /// The upper-case wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::Unknown => "UNKNOWN",
            Self::Expired => "EXPIRED",
            Self::Consumed => "CONSUMED",
            Self::Mismatch => "MISMATCH",
        }
    }
}

/// `signature/offline/verify` answer (`powerauth-offline.md` §8.2 plus `nonceStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyResponse {
    /// Whether the code was accepted.
    pub signature_valid: bool,
    /// The activation status.
    pub activation_status: ActivationStatus,
    /// Why the activation is blocked, if it is.
    pub blocked_reason: Option<String>,
    /// The activation id (UUID v4, lower case).
    pub activation_id: String,
    /// The user id.
    pub user_id: Option<String>,
    /// The application id.
    pub application_id: Option<String>,
    /// `POSSESSION_KNOWLEDGE` or `POSSESSION_BIOMETRY`.
    pub signature_type: Option<crate::crypto::SignatureType>,
    /// Failed attempts left before the activation is blocked.
    pub remaining_attempts: Option<u32>,
    /// The application roles.
    pub application_roles: Vec<String>,
    /// The activation flags.
    pub activation_flags: Vec<String>,
    /// `None` when the nonce policy is off or the check was not reached.
    pub nonce_status: Option<NonceStatus>,
}

impl VerifyResponse {
    /// The §8.2 answer for a missing activation or one that is not usable: only the status is filled.
    pub(crate) fn bare(activation_id: &str, status: ActivationStatus) -> Self {
        Self {
            signature_valid: false,
            activation_status: status,
            blocked_reason: None,
            activation_id: activation_id.to_owned(),
            user_id: None,
            application_id: None,
            signature_type: None,
            remaining_attempts: None,
            application_roles: Vec::new(),
            activation_flags: Vec::new(),
            nonce_status: None,
        }
    }
}
