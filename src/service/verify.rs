//! `verifyOfflineSignature` (`powerauth-offline.md` §8, `api.md`): the order of checks, the counter
//! window, failure counting and blocking, the nonce registry, and the one atomic write that ends every
//! attempt.

use std::collections::HashMap;
use std::sync::PoisonError;

use sha2::{Digest as _, Sha256};

use crate::crypto::offline_data::RequestData;
use crate::crypto::{ComponentLength, CounterData, WindowSearch};
use crate::model::{ActivationStatus, SignatureType, Timestamp};
use crate::store::{
    Activation, AuditDraft, AuditOperation, AuditOutcome, Conflict, IssuedNonce, StoreError,
    VerificationCommit,
};

use super::requests::{NonceStatus, VerifyRequest, VerifyResponse};
use super::{BLOCKED_REASON_MAX_FAILED, NoncePolicy, Service, ServiceError};

/// Types tried at each counter position, in order (§8.1).
const WITHOUT_BIOMETRY: &[SignatureType] = &[SignatureType::PossessionKnowledge];
const WITH_BIOMETRY: &[SignatureType] = &[
    SignatureType::PossessionKnowledge,
    SignatureType::PossessionBiometry,
];

/// How often a verification is re-run after losing a compare-and-swap (another process changed the
/// record between our read and our write; within one process the activation lock prevents it).
const MAX_ATTEMPTS: usize = 3;

/// A request that passed the format checks.
struct Checked {
    request: VerifyRequest,
    data: RequestData,
    length: ComponentLength,
    proximity: Option<super::requests::ValidProximity>,
    allowed: &'static [SignatureType],
    data_sha256: [u8; 32],
}

/// Why one pass of the verification did not produce an answer.
enum PassError {
    /// The record changed under us: read again and redo.
    Stale,
    Failed(ServiceError),
}

impl From<ServiceError> for PassError {
    fn from(e: ServiceError) -> Self {
        Self::Failed(e)
    }
}

impl From<StoreError> for PassError {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.into())
    }
}

impl Service {
    /// Verifies a code typed by the user (§8). Formats are checked first (ERR0024, nothing changes);
    /// every later outcome is an answer, written to the audit trail, with the activation's new state
    /// durable before it returns.
    #[tracing::instrument(skip_all, fields(activation_id = %request.activation_id))]
    pub async fn verify(&self, request: VerifyRequest) -> Result<VerifyResponse, ServiceError> {
        let checked = self.check(request)?;
        let _guard = self.inner.locks.lock(&checked.request.activation_id).await;
        for _ in 0..MAX_ATTEMPTS {
            match self.verify_pass(&checked).await {
                Ok(response) => {
                    tracing::info!(
                        valid = response.signature_valid,
                        status = response.activation_status.as_str(),
                        nonce = response.nonce_status.map(|s| s.as_str()),
                        "verification"
                    );
                    return Ok(response);
                }
                Err(PassError::Stale) => continue,
                Err(PassError::Failed(e)) => return Err(e),
            }
        }
        Err(ServiceError::invariant(
            "a verification lost the compare-and-swap three times in a row",
        ))
    }

    fn check(&self, request: VerifyRequest) -> Result<Checked, ServiceError> {
        let data = RequestData::parse(&request.data).map_err(|_| {
            ServiceError::invalid("data must have exactly four '&'-separated parts")
        })?;
        let length = request
            .component_length
            .unwrap_or_else(|| i64::from(self.inner.settings.signature.component_length));
        let length = ComponentLength::new(length)
            .map_err(|_| ServiceError::invalid("componentLength must be 4..=8"))?;
        let proximity = match &request.proximity_check {
            Some(p) => p.parse()?,
            None => None,
        };
        let allowed = if request.allow_biometry {
            WITH_BIOMETRY
        } else {
            WITHOUT_BIOMETRY
        };
        let data_sha256 = Sha256::digest(request.data.as_bytes()).into();
        Ok(Checked {
            request,
            data,
            length,
            proximity,
            allowed,
            data_sha256,
        })
    }

    async fn verify_pass(&self, c: &Checked) -> Result<VerifyResponse, PassError> {
        let now = self.now();
        let id = &c.request.activation_id;
        let mut audit = super::audit_draft(now, AuditOperation::Verify, AuditOutcome::NotFound);
        audit.activation_id = Some(id.clone());
        audit.data_sha256 = Some(c.data_sha256);

        let asked_nonce = match self.inner.settings.nonce_policy {
            NoncePolicy::Off => None,
            NoncePolicy::Enforce => Some(c.data.nonce()),
        };
        let reads = self
            .verification_reads(id, asked_nonce)
            .await
            .map_err(ServiceError::from)?;
        let Some(mut activation) = reads.activation else {
            self.write(move |s| s.append_audit(audit)).await?;
            return Ok(VerifyResponse::bare(id, ActivationStatus::Removed));
        };
        audit.application_id = Some(activation.application_id.clone());
        audit.counter_before = Some(activation.counter);
        activation.last_used_at = Some(now);

        if activation.status != ActivationStatus::Active {
            audit.outcome = AuditOutcome::Inactive;
            let status = activation.status;
            self.commit(activation, None, audit).await?;
            return Ok(VerifyResponse::bare(id, status));
        }
        if activation.failed_attempts >= activation.max_failed_attempts {
            activation.status = ActivationStatus::Blocked;
            activation.blocked_reason = Some(BLOCKED_REASON_MAX_FAILED.to_owned());
            audit.outcome = AuditOutcome::ForcedBlock;
            self.commit(activation, None, audit).await?;
            return Ok(VerifyResponse::bare(id, ActivationStatus::Blocked));
        }

        let nonce_status =
            asked_nonce.map(|_| nonce_status(&activation, reads.nonce.as_ref(), now));
        audit.nonce_status = nonce_status.map(|s| s.as_str().to_owned());
        if let Some(status) = nonce_status.filter(|s| *s != NonceStatus::Valid) {
            return self.reject_nonce(activation, audit, status).await;
        }

        let keys = self.factor_keys(&activation).await?;
        let candidates = match &c.proximity {
            None => vec![c.data.to_data_to_sign()],
            Some(p) => p.candidates(&c.data, now, self.otp_digits())?,
        };
        // Up to lookahead × candidates × factors HMACs over the whole data, on the request's own
        // task: a valid code at the expected position costs about a microsecond per type, and the
        // worst case (no match, 20 positions × 2 types × 2 TOTP candidates) about 45 µs (about
        // 150 µs at the largest `signature.lookahead`, 64): less than, or about what, a round trip
        // through the blocking pool costs in thread wake-ups (docs/performance.md, "Round 2 work log").
        let found = WindowSearch {
            keys: &keys,
            counter: CounterData::from_bytes(activation.ctr_data),
            allowed_types: c.allowed,
            candidates: &candidates,
            lookahead: self.inner.settings.signature.lookahead,
            component_length: c.length,
            code: &c.request.signature,
        }
        .find();

        let signature_type;
        let consume = match found {
            Some(m) => {
                activation.counter = activation.counter + u64::from(m.position) + 1;
                activation.ctr_data = *m.next_counter_data.as_bytes();
                activation.failed_attempts = 0;
                signature_type = m.signature_type;
                audit.outcome = AuditOutcome::Valid;
                // The nonce as read (its status is VALID, so the registry has it).
                nonce_status.and(reads.nonce.clone())
            }
            None => {
                activation.failed_attempts = activation.failed_attempts.saturating_add(1);
                if activation.failed_attempts >= activation.max_failed_attempts {
                    activation.status = ActivationStatus::Blocked;
                    activation.blocked_reason = Some(BLOCKED_REASON_MAX_FAILED.to_owned());
                }
                signature_type = c.allowed[0];
                audit.outcome = AuditOutcome::Invalid;
                None
            }
        };
        audit.signature_type = Some(signature_type.wire_name().to_owned());
        audit.counter_after = Some(activation.counter);

        let valid = found.is_some();
        let stored = self.commit(activation, consume, audit).await?;
        Ok(self
            .filled(&stored, valid, Some(signature_type), nonce_status)
            .await)
    }

    /// A nonce that is not `VALID`: answered at once, counter and failed attempts untouched, only an
    /// audit record written.
    async fn reject_nonce(
        &self,
        activation: Activation,
        mut audit: AuditDraft,
        status: NonceStatus,
    ) -> Result<VerifyResponse, PassError> {
        audit.outcome = AuditOutcome::NonceRejected;
        audit.nonce_status = Some(status.as_str().to_owned());
        audit.counter_after = Some(activation.counter);
        self.write(move |s| s.append_audit(audit)).await?;
        Ok(self.filled(&activation, false, None, Some(status)).await)
    }

    /// The roles of application `id` for an answer: from the cache, else read (and cached when the
    /// application exists); none when it cannot be read, as before the cache.
    async fn application_roles(&self, id: &str) -> Vec<String> {
        if let Some(roles) = self.inner.roles.get(id) {
            return roles;
        }
        match self.stored_application(id).await {
            Ok(Some(app)) => {
                self.inner.roles.put(id, &app.roles);
                app.roles
            }
            _ => Vec::new(),
        }
    }

    /// The atomic, durable end of an attempt. A lost compare-and-swap is [`PassError::Stale`].
    async fn commit(
        &self,
        activation: Activation,
        consume_nonce: Option<IssuedNonce>,
        audit: AuditDraft,
    ) -> Result<Activation, PassError> {
        let commit = VerificationCommit {
            activation,
            consume_nonce,
            audit,
        };
        match self.commit_verification(commit).await {
            Ok(committed) => Ok(committed.activation),
            Err(StoreError::Conflict(Conflict::StaleVersion)) => Err(PassError::Stale),
            // The nonce was consumed (or changed owner) between our check and our write: the
            // next pass reads the registry again and answers with its verdict.
            Err(StoreError::Conflict(Conflict::NonceConsumed | Conflict::NonceOwner)) => {
                Err(PassError::Stale)
            }
            Err(e) => Err(PassError::Failed(e.into())),
        }
    }

    /// The §8.2 answer with the activation's details filled in.
    async fn filled(
        &self,
        activation: &Activation,
        valid: bool,
        signature_type: Option<SignatureType>,
        nonce_status: Option<NonceStatus>,
    ) -> VerifyResponse {
        let roles = self.application_roles(&activation.application_id).await;
        VerifyResponse {
            signature_valid: valid,
            activation_status: activation.status,
            blocked_reason: activation.blocked_reason.clone(),
            activation_id: activation.id.clone(),
            user_id: Some(activation.user_id.clone()),
            application_id: Some(activation.application_id.clone()),
            signature_type,
            remaining_attempts: Some(
                activation
                    .max_failed_attempts
                    .saturating_sub(activation.failed_attempts),
            ),
            application_roles: roles,
            activation_flags: activation.flags.clone(),
            nonce_status,
        }
    }
}

/// The registry's verdict on the nonce a request names (`issued`: its record, if the registry has
/// it) for this activation.
fn nonce_status(
    activation: &Activation,
    issued: Option<&IssuedNonce>,
    now: Timestamp,
) -> NonceStatus {
    let Some(issued) = issued else {
        return NonceStatus::Unknown;
    };
    if !issued.is_for(activation) {
        NonceStatus::Mismatch
    } else if issued.consumed_at.is_some() {
        NonceStatus::Consumed
    } else if issued.expires_at <= now {
        NonceStatus::Expired
    } else {
        NonceStatus::Valid
    }
}

/// Each application's roles, kept after the first read: every verification answers with them, and
/// they are fixed when the application is made (no method changes an application's roles), so a
/// cached copy never goes stale, in this instance or because of another. Holds only applications that
/// exist, so it grows no larger than their number.
#[derive(Debug, Default)]
pub(super) struct RolesCache(std::sync::RwLock<HashMap<String, Vec<String>>>);

impl RolesCache {
    fn get(&self, application_id: &str) -> Option<Vec<String>> {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        map.get(application_id).cloned()
    }

    fn put(&self, application_id: &str, roles: &[String]) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(application_id.to_owned(), roles.to_vec());
    }
}
