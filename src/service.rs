//! The use cases of the service (`spec/api.md`): applications, activations, offline payload creation and
//! code verification (`spec/powerauth-offline.md` §3, §8), plus the nonce registry.
//!
//! This is the only module that combines the [`Signer`], the [`Store`] and [`crate::crypto`]. It knows no
//! HTTP: requests and answers are plain Rust values ([`requests`]) and failures are [`ServiceError`], which
//! the HTTP layer maps to PowerAuth codes in one place.
//!
//! Concurrency and durability:
//! - Every change to one activation runs under that activation's lock ([`locks::ActivationLocks`]), so two
//!   verifications of the same activation never use the same counter position; the store's
//!   compare-and-swap on the record version backs this up.
//! - The end of a verification is one atomic, durable store write (counter, failed attempts, status,
//!   nonce consumption, audit record). Store writes block until flushed, so they run on tokio's blocking
//!   pool; HSM work runs on the signer's own threads; the counter-window scan (microseconds) runs on
//!   the request's own task.
//! - Time comes from a [`Clock`], so tests can pin TOTP steps and nonce expiry.

mod activation;
pub mod audit_trail;
pub mod caller;
pub mod checkpoint;
mod credentials;
pub mod locks;
pub mod requests;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use serde::Deserialize;

use crate::crypto::offline_data::{
    KeyIndicator, UnsignedOfflineData, decode_nonce, generate_nonce,
};
use crate::crypto::{self, CounterData, FactorKeys, MasterSecret, SymmetricKey, b64};
use crate::model::{ActivationStatus, PublicKey, Timestamp};
use crate::signer::{GeneratedKeyPair, KeyRef, Signer, SignerError, StorageKeyIds};
use crate::store::{
    Activation, Application, AuditDraft, AuditOperation, AuditOutcome, ChainHead, ChainId,
    Checkpoint, Committed, Enrollment, IssuedNonce, MasterKeyRef, NonceOwner, Store, StoreError,
    VerificationCommit, VerificationReads,
};

use activation::DEFAULT_VERSION_ID;

pub use activation::{
    ApplicationVersionInfo, EciesDecryptorRequest, EciesDecryptorSecrets, EciesFields,
    InitActivation, InitializedActivation, PrepareActivation, PreparedActivation,
};
pub use caller::{Caller, acting_as};
pub use credentials::{CredentialInfo, Credentials, NewCredential};
pub use requests::*;

/// A new audit draft naming the current caller as the actor.
pub(crate) fn audit_draft(
    now: Timestamp,
    operation: AuditOperation,
    outcome: AuditOutcome,
) -> AuditDraft {
    let mut draft = AuditDraft::new(now, operation, outcome);
    draft.actor = Some(caller::current().id().to_owned());
    draft
}

/// [`ServiceError::Forbidden`] unless the current caller has the `ADMIN` role.
fn require_admin() -> Result<(), ServiceError> {
    if caller::current().scope().is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

/// [`ServiceError::Forbidden`] unless the current caller's scope covers `application_id` (checked
/// before the application is looked up, so the answer says nothing about whether it exists).
fn require_application_scope(application_id: &str) -> Result<(), ServiceError> {
    if caller::current().scope().covers(application_id) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

/// Blocked reason set when the failure limit is reached (`powerauth-offline.md` §12).
pub const BLOCKED_REASON_MAX_FAILED: &str = "MAX_FAILED_ATTEMPTS";
/// Blocked reason when a block request gives none (`api.md`).
pub const BLOCKED_REASON_NOT_SPECIFIED: &str = "NOT_SPECIFIED";
/// Most proximity steps back a verification may ask for: each costs a full window scan.
pub const MAX_PROXIMITY_STEP_COUNT: u32 = 10;
/// Longest accepted application id, user id, flag or block reason, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Domain separation of the factor-key blob's associated data (followed by the activation id).
const FACTOR_KEYS_AAD: &[u8] = b"offline-signer/factor-keys/v1:";
/// Layout of the sealed factor-key plaintext: Kp ‖ Kk ‖ Kb.
const FACTOR_KEYS_LEN: usize = 48;

/// A use case failed. Each variant is one PowerAuth error code or HTTP status (see `http`). What
/// went wrong inside ([`Cause`]) travels with the error for the operator's log, written once at the
/// boundary; it never reaches the caller.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// ERR0024: the request is malformed or out of range. The text says which field, never a secret.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// HTTP 403 `ERR_AUTHORIZATION`: the caller's credential does not allow this method or
    /// application; nothing changed.
    #[error("the integration credential does not allow this")]
    Forbidden,
    /// ERR0015.
    #[error("application not found")]
    ApplicationNotFound,
    /// ERR0003.
    #[error("the application has no master key pair")]
    NoMasterKeyPair,
    /// ERR0009.
    #[error("activation not found")]
    ActivationNotFound,
    /// ERR0008.
    #[error("the activation is in a state that does not allow this")]
    IncorrectState,
    /// ERR0010.
    #[error("a key in the request has an invalid format")]
    InvalidKeyFormat,
    /// ERR0002: `activation/init` without `applicationId`.
    #[error("no application id was set")]
    NoApplicationId,
    /// ERR0007: the activation expired (also upstream's answer to an unknown application key in
    /// `activation/prepare`).
    #[error("the activation is expired")]
    ActivationExpired,
    /// ERR0011: the decrypted layer-2 payload is not the expected JSON.
    #[error("invalid input parameter format")]
    InvalidInputFormat,
    /// ERR0018: ECIES MAC or padding check failed.
    #[error("data decryption failed")]
    DecryptionFailed,
    /// ERR0031: activation OTP missing, wrong, or sent where none was set.
    #[error("the activation OTP does not match")]
    InvalidActivationOtp,
    /// ERR0040: activation properties out of range (`maxFailureCount` ≤ 0).
    #[error("the activation cannot be created with these properties")]
    InvalidActivationProperties,
    /// ERR0043: the application or application version exists.
    #[error("duplicate application or application version")]
    DuplicateApplication,
    /// ERR0024 with its own message: an ECIES protocol version other than 3.3 (the text names it).
    #[error("unsupported ECIES protocol version {0}")]
    UnsupportedProtocolVersion(String),
    /// ERR0045: the temporary key is unknown, expired or belongs to something else.
    #[error("missing temporary key pair")]
    TemporaryKeyNotFound,
    /// ERR0013: the HSM answered, but would not sign (key missing, mechanism refused, …).
    #[error("the signature could not be computed: {0}")]
    SignatureFailed(Cause),
    /// HTTP 503: the HSM is unreachable, busy or too slow; nothing changed.
    #[error("the HSM is unavailable: {0}")]
    HsmUnavailable(Cause),
    /// HTTP 503 `ERR_OUTCOME_UNKNOWN`: a write was applied but its flush failed, so it may or may
    /// not be stored; the caller reads the activation's status (once the service is back) before
    /// retrying.
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(Cause),
    /// HTTP 503 `ERR_STORE_UNAVAILABLE`: the store refuses all work until the service restarts
    /// (after a failed flush); nothing was read or changed.
    #[error("the store is unavailable: {0}")]
    StoreUnavailable(Cause),
    /// Anything else (store failure, corrupt record, a broken invariant): HTTP 500.
    #[error("internal error: {0}")]
    Internal(Cause),
}

/// Why the service is not ready (the `/ready` probe's reason).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The HSM does not answer.
    #[error("HSM: {0}")]
    Hsm(SignerError),
    /// The store does not take a durable write.
    #[error("store: {0}")]
    Store(StoreError),
}

/// What went wrong inside the service, for the operator's log only.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The signer failed.
    #[error("signer: {0}")]
    Signer(SignerError),
    /// The store failed.
    #[error("store: {0}")]
    Store(StoreError),
    /// Something that must not happen did (the words say what).
    #[error("{0}")]
    Invariant(&'static str),
}

impl ServiceError {
    fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    fn invariant(what: &'static str) -> Self {
        Self::Internal(Cause::Invariant(what))
    }
}

impl From<SignerError> for ServiceError {
    fn from(e: SignerError) -> Self {
        match e {
            SignerError::TokenUnavailable | SignerError::Busy | SignerError::Timeout => {
                Self::HsmUnavailable(Cause::Signer(e))
            }
            other => Self::Internal(Cause::Signer(other)),
        }
    }
}

/// A signing error: the HSM being unreachable or busy stays a 503 (retry later); any other failure
/// to sign (key missing from the token, mechanism refused, unwrap failed) is ERR0013.
fn signing_failed(e: SignerError) -> ServiceError {
    match ServiceError::from(e) {
        ServiceError::Internal(cause) => ServiceError::SignatureFailed(cause),
        other => other,
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::OutcomeUnknown { .. } => Self::OutcomeUnknown(Cause::Store(e)),
            StoreError::Unavailable { .. } => Self::StoreUnavailable(Cause::Store(e)),
            other => Self::Internal(Cause::Store(other)),
        }
    }
}

/// Where the service gets the time from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, to the millisecond.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Settings of the use cases (the `[signature]`, `[nonce]` and `[activation]` tables of the
/// configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Activation by code (protocol 3.3).
    pub activation: ActivationSettings,
    /// Verification settings.
    pub signature: SignatureSettings,
    /// Whether issued nonces are registered and checked.
    pub nonce_policy: NoncePolicy,
    /// How long an issued nonce stays valid.
    pub nonce_ttl: Duration,
}

/// Activation-by-code settings (`powerauth-activation.md` §2.8, §3.3, §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationSettings {
    /// How long an activation made by `activation/init` may take to be prepared and committed.
    pub code_validity: Duration,
    /// ECIES requests are accepted only when `|now − timestamp|` is at most this.
    pub ecies_window: Duration,
    /// How long a temporary ECIES key pair is valid.
    pub temporary_key_validity: Duration,
}

impl Default for ActivationSettings {
    /// 5 minutes, 60 seconds, 5 minutes: upstream's defaults.
    fn default() -> Self {
        Self {
            code_validity: Duration::from_secs(300),
            ecies_window: Duration::from_secs(60),
            temporary_key_validity: Duration::from_secs(300),
        }
    }
}

/// The `[activation]` table of the configuration, as written (all keys optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActivationConfig {
    /// Seconds an `activation/init` activation stays usable (default 300, 1..=2592000).
    #[serde(default = "default_code_validity")]
    pub code_validity_seconds: u64,
    /// Seconds an ECIES timestamp may differ from now, either way (default 60, 1..=3600).
    #[serde(default = "default_ecies_window")]
    pub ecies_window_seconds: u64,
    /// Seconds a temporary ECIES key is valid (default 300, 10..=86400).
    #[serde(default = "default_temporary_key_validity")]
    pub temporary_key_validity_seconds: u64,
}

fn default_code_validity() -> u64 {
    300
}
fn default_ecies_window() -> u64 {
    60
}
fn default_temporary_key_validity() -> u64 {
    300
}

impl Default for RawActivationConfig {
    fn default() -> Self {
        Self {
            code_validity_seconds: default_code_validity(),
            ecies_window_seconds: default_ecies_window(),
            temporary_key_validity_seconds: default_temporary_key_validity(),
        }
    }
}

impl RawActivationConfig {
    /// Checks the ranges.
    ///
    /// # Errors
    /// The key at fault (`activation.<key>`) and what is wrong with it.
    pub fn validate(&self) -> Result<ActivationSettings, (&'static str, String)> {
        let check = |key: &'static str, value: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&value) {
                Ok(Duration::from_secs(value))
            } else {
                Err((key, format!("must be {lo}..={hi}, got {value}")))
            }
        };
        Ok(ActivationSettings {
            code_validity: check(
                "activation.code_validity_seconds",
                self.code_validity_seconds,
                1,
                2_592_000,
            )?,
            ecies_window: check(
                "activation.ecies_window_seconds",
                self.ecies_window_seconds,
                1,
                3600,
            )?,
            temporary_key_validity: check(
                "activation.temporary_key_validity_seconds",
                self.temporary_key_validity_seconds,
                10,
                86_400,
            )?,
        })
    }
}

/// Verification settings (`powerauth-offline.md` §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureSettings {
    /// Size of the counter window: positions `counter .. counter + lookahead` are tried.
    pub lookahead: u32,
    /// Failed attempts before an activation is blocked, for activations that do not set their own.
    pub max_failed_attempts: u32,
    /// Digits per factor component when a request does not say.
    pub component_length: u32,
    /// Digits of the proximity TOTP, used by both create and verify.
    pub proximity_otp_length: u32,
}

/// Whether issued nonces are registered and checked (`api.md`, nonce registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoncePolicy {
    /// Nonces are single-use and expire: the default.
    #[default]
    Enforce,
    /// PowerAuth's behaviour: nonces are not recorded; replay protection is the counter alone.
    Off,
}

/// The service: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    signer: Arc<dyn Signer>,
    store: Arc<dyn Store>,
    settings: Settings,
    storage_keys: StorageKeyIds,
    /// The HSM's audit signing key (id and public key).
    audit_key: GeneratedKeyPair,
    locks: locks::ActivationLocks,
    clock: Arc<dyn Clock>,
    credentials: Credentials,
    /// Store writes made through [`Service::write`] (the checkpoint task counts records with it).
    writes: std::sync::atomic::AtomicU64,
    /// Woken after every store write.
    written: tokio::sync::Notify,
    /// The position of the newest checkpoint of each of this instance's lanes (`None`: not read
    /// yet); held only while checkpoints are made, never by a request.
    checkpointed: tokio::sync::Mutex<Option<std::collections::BTreeMap<ChainId, u64>>>,
    /// Each application's roles, as read once (see [`verify::RolesCache`]).
    roles: verify::RolesCache,
    /// Credentials read in the last half second (see [`credentials::RecentCredentials`]).
    recent_credentials: credentials::RecentCredentials,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("signer", &self.inner.signer.kind())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts the service: finds (first start: creates) the KEK and DEK on the token and records their ids
    /// in the store, so that a later start never silently creates new ones.
    pub async fn open(
        signer: Arc<dyn Signer>,
        store: Arc<dyn Store>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServiceError> {
        let recorded = store
            .storage_keys()?
            .map(|(kek, dek)| StorageKeyIds { kek, dek });
        let mut storage_keys = signer.ensure_storage_keys(recorded).await?;
        if recorded.is_none() {
            storage_keys = Self::record_storage_keys(&signer, &store, storage_keys).await?;
        }
        let audit_key = Self::ensure_audit_key(&signer, &store).await?;
        let credentials = Credentials::new(Arc::clone(&store));
        Ok(Self {
            inner: Arc::new(Inner {
                signer,
                store,
                settings,
                storage_keys,
                audit_key,
                locks: locks::ActivationLocks::new(),
                clock,
                credentials,
                writes: std::sync::atomic::AtomicU64::new(0),
                written: tokio::sync::Notify::new(),
                checkpointed: tokio::sync::Mutex::new(None),
                roles: verify::RolesCache::default(),
                recent_credentials: credentials::RecentCredentials::default(),
            }),
        })
    }

    /// Finds the recorded audit key on the token or, on first start, finds or makes one and records
    /// its id. Of two instances starting at once on one store, the first recorded id wins and the
    /// loser removes the key it made (as for the storage keys).
    async fn ensure_audit_key(
        signer: &Arc<dyn Signer>,
        store: &Arc<dyn Store>,
    ) -> Result<GeneratedKeyPair, ServiceError> {
        let recorded = store.audit_key()?;
        let key = signer.ensure_audit_key(recorded).await?;
        if recorded.is_some() {
            return Ok(key);
        }
        let store2 = Arc::clone(store);
        let id = key.id;
        match blocking(move || store2.set_audit_key(id)).await {
            Ok(()) => {
                tracing::info!(key_id = %key.id, "audit signing key recorded");
                Ok(key)
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let winner_id = store.audit_key()?.ok_or(ServiceError::invariant(
                    "the audit key id was refused as existing but cannot be read",
                ))?;
                let winner = signer.ensure_audit_key(Some(winner_id)).await?;
                if winner.id != key.id {
                    tracing::info!(key_id = %winner.id, "another instance recorded its audit key first; using it");
                    match signer.destroy_key(&key.id).await {
                        Ok(true) => tracing::info!(key_id = %key.id, "unused audit key removed"),
                        Ok(false) => {
                            tracing::warn!(key_id = %key.id, "unused audit key left on the token")
                        }
                        Err(e) => {
                            tracing::warn!(key_id = %key.id, error = %e, "removing an unused audit key failed")
                        }
                    }
                }
                Ok(winner)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The public half of the HSM's audit signing key (exported as `audit-public-key.pem`).
    pub fn audit_public_key(&self) -> PublicKey {
        self.inner.audit_key.public_key
    }

    /// How many store writes this service has made (a record count's upper bound: every audit
    /// record is one write).
    pub fn store_writes(&self) -> u64 {
        self.inner.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Completes after a store write (at once when one happened since the last call returned).
    pub async fn store_written(&self) {
        self.inner.written.notified().await;
    }

    /// The position of the newest checkpoint of each of this instance's lanes (read from the store
    /// once; a lane without one is at 0).
    async fn last_checkpointed<'a>(
        &self,
        slot: &'a mut Option<std::collections::BTreeMap<ChainId, u64>>,
    ) -> Result<&'a mut std::collections::BTreeMap<ChainId, u64>, ServiceError> {
        if slot.is_none() {
            let store = Arc::clone(&self.inner.store);
            let mut last: std::collections::BTreeMap<ChainId, u64> = store
                .audit_lanes()
                .into_iter()
                .map(|lane| (lane, 0))
                .collect();
            for cp in blocking(move || store.checkpoints()).await? {
                if let Some(seq) = last.get_mut(&cp.chain) {
                    *seq = (*seq).max(cp.seq);
                }
            }
            *slot = Some(last);
        }
        slot.as_mut().ok_or(ServiceError::invariant(
            "checkpoint positions were just read",
        ))
    }

    /// The heads of this instance's lanes, lane by lane.
    async fn lane_heads(&self) -> Result<Vec<(ChainId, ChainHead)>, ServiceError> {
        let store = Arc::clone(&self.inner.store);
        Ok(blocking(move || {
            store
                .audit_lanes()
                .into_iter()
                .map(|lane| store.audit_chain_head(&lane).map(|head| (lane, head)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?)
    }

    /// How many records this instance's lanes have beyond their newest checkpoints, together.
    pub async fn records_since_checkpoint(&self) -> Result<u64, ServiceError> {
        let mut slot = self.inner.checkpointed.lock().await;
        let last = self.last_checkpointed(&mut slot).await?.clone();
        drop(slot);
        Ok(self
            .lane_heads()
            .await?
            .iter()
            .map(|(lane, head)| {
                head.seq
                    .saturating_sub(last.get(lane).copied().unwrap_or(0))
            })
            .sum())
    }

    /// Signs the head of each of this instance's audit lanes that moved beyond its newest checkpoint
    /// with the HSM's audit key and stores the checkpoints (one per such lane, in lane order; empty
    /// when no lane moved). All are signed before any is stored, and the positions are remembered
    /// only once all are stored: after a failure the next call signs every moved lane again, so
    /// none is left out of the checkpoint file. Requests never wait for this: it holds no lock they
    /// take.
    pub async fn checkpoint(&self) -> Result<Vec<Checkpoint>, ServiceError> {
        let mut slot = self.inner.checkpointed.lock().await;
        let last = self.last_checkpointed(&mut slot).await?.clone();
        let mut made = Vec::new();
        for (chain, head) in self.lane_heads().await? {
            if head.seq <= last.get(&chain).copied().unwrap_or(0) {
                continue;
            }
            let time = self.inner.clock.now();
            let digest = Checkpoint::digest_of(&chain, head.seq, &head.hash, time);
            let signature = self
                .inner
                .signer
                .sign_digest(KeyRef::Audit(&self.inner.audit_key.id), &digest)
                .await?;
            made.push(Checkpoint {
                chain,
                seq: head.seq,
                head_hash: head.hash,
                time,
                signature,
            });
        }
        if made.is_empty() {
            return Ok(made);
        }
        let store = Arc::clone(&self.inner.store);
        let stored = made.clone();
        blocking(move || stored.iter().try_for_each(|cp| store.put_checkpoint(cp))).await?;
        let positions = self.last_checkpointed(&mut slot).await?;
        for cp in &made {
            positions.insert(cp.chain.clone(), cp.seq);
        }
        Ok(made)
    }

    /// Records the KEK and DEK this instance just made. When another instance sharing the store
    /// recorded its pair first (two instances starting at once on an empty database), the recorded
    /// pair wins: it is checked on the token and used, and this instance's pair is left unused.
    async fn record_storage_keys(
        signer: &Arc<dyn Signer>,
        store: &Arc<dyn Store>,
        made: StorageKeyIds,
    ) -> Result<StorageKeyIds, ServiceError> {
        let store2 = Arc::clone(store);
        match blocking(move || store2.set_storage_keys(made.kek, made.dek)).await {
            Ok(()) => Ok(made),
            Err(StoreError::AlreadyExists { .. }) => {
                let (kek, dek) = store.storage_keys()?.ok_or(ServiceError::invariant(
                    "storage key ids were refused as existing but cannot be read",
                ))?;
                let winner = signer
                    .ensure_storage_keys(Some(StorageKeyIds { kek, dek }))
                    .await?;
                tracing::info!(
                    kek = %winner.kek,
                    dek = %winner.dek,
                    "another instance recorded its storage keys first; using those"
                );
                // The pair this instance made protects nothing: remove it from the token (unless
                // it is the recorded pair itself, adopted rather than made).
                for (mine, recorded) in [(made.kek, winner.kek), (made.dek, winner.dek)] {
                    if mine == recorded {
                        continue;
                    }
                    match signer.destroy_key(&mine).await {
                        Ok(true) => tracing::info!(key_id = %mine, "unused storage key removed"),
                        Ok(false) => {
                            tracing::warn!(key_id = %mine, "unused storage key left on the token")
                        }
                        Err(e) => {
                            tracing::warn!(key_id = %mine, error = %e, "removing an unused storage key failed")
                        }
                    }
                }
                Ok(winner)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Whether the service can do its work right now: the HSM answers and the store takes a durable
    /// write (the readiness probe).
    ///
    /// # Errors
    /// [`NotReady`] saying which part failed.
    pub async fn ready(&self) -> Result<(), NotReady> {
        self.inner.signer.health().await.map_err(NotReady::Hsm)?;
        self.write(|s| s.probe()).await.map_err(NotReady::Store)
    }

    /// The caller that `client_token:client_secret` authenticates (its credential's id and scope),
    /// or `None` (the secret's hash compared in constant time). A stored credential read less than
    /// half a second ago is used again ([`credentials::RecentCredentials`]), so a credential removed
    /// on another instance is refused here within that, and one removed here at once; otherwise it
    /// is read, without holding a thread while a remote store answers.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store cannot be read.
    pub async fn caller_for(
        &self,
        client_token: &str,
        client_secret: &secrecy::SecretString,
    ) -> Result<Option<Caller>, ServiceError> {
        let now = std::time::Instant::now();
        let recent = &self.inner.recent_credentials;
        let stored = match recent.get(client_token, now) {
            Some(credential) => Some(credential),
            None => {
                let began = recent.begin();
                let read = match self.inner.store.remote() {
                    Some(remote) => remote.credential(client_token).await?,
                    None => self.inner.store.credential(client_token)?,
                };
                if let Some(credential) = &read {
                    recent.put(began, credential, now);
                }
                read
            }
        };
        Ok(credentials::caller_from(stored, client_secret))
    }

    /// `integration/create`: a new credential with `scope`, made by the current caller (`ADMIN`
    /// only); the secret is returned once.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`], [`ServiceError::InvalidRequest`] or [`ServiceError::Internal`]
    /// (see [`Credentials::create_scoped`]).
    pub async fn create_integration(
        &self,
        name: String,
        scope: crate::model::CredentialScope,
    ) -> Result<NewCredential, ServiceError> {
        let caller = caller::current();
        let now = self.now();
        self.with_credentials(move |c| c.create_scoped(&caller, &name, scope, now))
            .await
    }

    /// `integration/list`: every credential without its secret (`ADMIN` only).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] or [`ServiceError::Internal`].
    pub async fn list_integrations(&self) -> Result<Vec<CredentialInfo>, ServiceError> {
        let caller = caller::current();
        self.with_credentials(move |c| c.list(&caller)).await
    }

    /// `integration/remove`: deletes the credential with this id (`ADMIN` only); `Ok(false)` when
    /// there is none. Every instance refuses it from the next request on.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] or [`ServiceError::Internal`].
    pub async fn remove_integration(&self, id: String) -> Result<bool, ServiceError> {
        let caller = caller::current();
        let removed = self
            .with_credentials(move |c| c.remove_id(&caller, &id))
            .await;
        // Whatever the answer (a failed write's fate may be unknown): this instance reads again.
        self.inner.recent_credentials.clear();
        removed
    }

    /// Runs a credential use case (durable store writes) on the blocking pool.
    async fn with_credentials<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&Credentials) -> Result<T, ServiceError> + Send + 'static,
    {
        let credentials = self.inner.credentials.clone();
        tokio::task::spawn_blocking(move || f(&credentials))
            .await
            .map_err(|_| ServiceError::invariant("a credential task panicked"))?
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The activation, if it exists and the current caller's scope covers its application: an
    /// activation of another application is, to the caller, an unknown one.
    async fn visible_activation(&self, id: &str) -> Result<Option<Activation>, StoreError> {
        Ok(self.verification_reads(id, None).await?.activation)
    }

    /// The application `id`, if any (awaited without holding a thread for a remote store).
    async fn stored_application(&self, id: &str) -> Result<Option<Application>, StoreError> {
        match self.inner.store.remote() {
            Some(remote) => remote.application(id).await,
            None => self.inner.store.application(id),
        }
    }

    /// Runs the store read `f`: directly for a store that answers from its own memory and disk
    /// (sled: microseconds), on the blocking pool for a remote one, so that a database round trip
    /// never holds a runtime worker. (The request path's hot reads have futures of their own:
    /// [`Self::verification_reads`], [`Self::stored_application`].)
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        if self.inner.store.remote().is_none() {
            return f(self.inner.store.as_ref());
        }
        let store = Arc::clone(&self.inner.store);
        blocking(move || f(store.as_ref())).await
    }

    /// What a verification reads: the activation `id` as [`Self::visible_activation`] sees it and,
    /// for `Some(nonce)`, that issued nonce. A remote store answers both in one round trip, awaited
    /// without holding a thread.
    async fn verification_reads(
        &self,
        id: &str,
        nonce: Option<&str>,
    ) -> Result<VerificationReads, StoreError> {
        let store = &self.inner.store;
        let reads = match store.remote() {
            Some(remote) => remote.verification_reads(id, nonce).await?,
            None => VerificationReads {
                activation: store.activation(id)?,
                nonce: match nonce {
                    Some(n) => store.nonce(n)?,
                    None => None,
                },
            },
        };
        Ok(VerificationReads {
            activation: visible_to_caller(reads.activation),
            nonce: reads.nonce,
        })
    }

    /// Inserts a new activation with its `Created` audit record; `operation` says how it was made.
    async fn insert_new_activation(
        &self,
        now: Timestamp,
        activation: Activation,
        operation: AuditOperation,
    ) -> Result<(), StoreError> {
        let audit = activation_audit(now, &activation, operation, AuditOutcome::Created);
        self.write(move |s| s.insert_activation(&activation, Some(audit)))
            .await
            .map(drop)
    }

    /// Runs a store write on the blocking pool (writes wait for their flush). Inside
    /// [`with_write_gate`], refuses to start once the gate was closed (the request timed out first),
    /// and otherwise marks the gate so that the caller's timeout stops cancelling.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.inner.store);
        self.gated(async move { blocking(move || f(store.as_ref())).await })
            .await
    }

    /// [`Store::commit_verification`] as [`Self::write`] runs a write; a remote store's commit is
    /// awaited as a future instead of on the blocking pool.
    async fn commit_verification(
        &self,
        commit: VerificationCommit,
    ) -> Result<Committed, StoreError> {
        // The write starts inside `gated`, after the gate let it through.
        match self.inner.store.remote() {
            Some(remote) => {
                self.gated(async move { remote.commit_verification(commit).await })
                    .await
            }
            None => self.write(move |s| s.commit_verification(commit)).await,
        }
    }

    /// Runs the store write `work` through the request's write gate (see [`Self::write`]) and
    /// counts it.
    async fn gated<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if WRITE_GATE.try_with(|gate| gate.begin_write()) == Ok(false) {
            return Err(StoreError::Io {
                detail: "the request timed out before this write began; nothing was written".into(),
            });
        }
        let result = work.await;
        self.inner
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.written.notify_one();
        result
    }

    // ---------------------------------------------------------------------------------------------
    // Applications

    /// Creates an application, its first master key pair (generated inside the HSM) and its
    /// version `default` with a fresh application key and secret (the secret sealed under the DEK).
    ///
    /// # Errors
    /// [`ServiceError::DuplicateApplication`] if the id exists, [`ServiceError::InvalidRequest`]
    /// for a malformed id, HSM and store failures.
    pub async fn create_application(
        &self,
        application_id: &str,
    ) -> Result<ApplicationDetail, ServiceError> {
        require_admin()?;
        check_name("applicationId", application_id)?;
        if self.stored_application(application_id).await?.is_some() {
            return Err(ServiceError::DuplicateApplication);
        }
        let key = self.inner.signer.generate_master_key().await?;
        let now = self.now();
        let default_version = self
            .new_application_version(DEFAULT_VERSION_ID, now)
            .await?;
        let app = Application {
            id: application_id.to_owned(),
            roles: Vec::new(),
            master_keys: vec![MasterKeyRef {
                key_id: key.id,
                public_key: key.public_key,
                created_at: now,
            }],
            created_at: now,
            versions: vec![default_version],
        };
        let mut audit = audit_draft(
            now,
            AuditOperation::ApplicationCreate,
            AuditOutcome::Created,
        );
        audit.application_id = Some(app.id.clone());
        let stored = app.clone();
        let result = self
            .write(move |s| s.create_application(&stored, Some(audit)))
            .await;
        match result {
            Ok(()) => {
                tracing::info!(application_id = %app.id, key_id = %key.id, "application created");
                self.application_detail_of(&app).await
            }
            // Lost a race with a concurrent create of the same id (here or on another instance):
            // the stored application keeps its master key; the one made here is removed.
            Err(StoreError::AlreadyExists { .. }) => {
                match self.inner.signer.destroy_key(&key.id).await {
                    Ok(true) => {
                        tracing::info!(application_id, key_id = %key.id, "unused master key removed after a create race")
                    }
                    Ok(false) | Err(_) => {
                        tracing::warn!(application_id, key_id = %key.id, "orphaned master key after a create race")
                    }
                }
                Err(ServiceError::DuplicateApplication)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The application and its newest master public key.
    pub async fn application_detail(
        &self,
        application_id: &str,
    ) -> Result<ApplicationDetail, ServiceError> {
        require_application_scope(application_id)?;
        let app = self
            .stored_application(application_id)
            .await?
            .ok_or(ServiceError::ApplicationNotFound)?;
        self.application_detail_of(&app).await
    }

    // ---------------------------------------------------------------------------------------------
    // Activations

    /// Registers a device: a per-activation key pair generated in the HSM (kept only wrapped), the factor
    /// keys derived once from ECDH in the HSM and stored only encrypted, and a random initial counter.
    pub async fn register_activation(
        &self,
        request: RegisterActivation,
    ) -> Result<RegisteredActivation, ServiceError> {
        check_name("applicationId", &request.application_id)?;
        check_name("userId", &request.user_id)?;
        for flag in &request.activation_flags {
            check_name("activationFlags", flag)?;
        }
        require_application_scope(&request.application_id)?;
        let device_key = parse_public_key(&request.device_public_key)?;
        let max_failed_attempts = match request.max_failed_attempts {
            None => self.inner.settings.signature.max_failed_attempts,
            Some(n) if (1..=64).contains(&n) => n,
            Some(_) => return Err(ServiceError::invalid("maxFailedAttempts must be 1..=64")),
        };
        if self
            .stored_application(&request.application_id)
            .await?
            .is_none()
        {
            return Err(ServiceError::ApplicationNotFound);
        }

        let activation_id = uuid::Uuid::new_v4().to_string();
        let signer = &self.inner.signer;
        let pair = signer
            .generate_wrapped_key_pair(&self.inner.storage_keys.kek)
            .await?;
        let server_key = pair.public_key;
        let shared = signer.ecdh(&pair.wrapped, &device_key).await?;
        let master_secret = MasterSecret::from_ecdh_x(shared.expose());
        let factor_keys = FactorKeys::from_master_secret(&master_secret);
        let sealed_transport = self
            .seal_transport_key(&activation_id, &master_secret.derive().transport)
            .await?;
        let sealed = self
            .seal(
                &factor_keys_aad(&activation_id),
                seal_factor_keys(&factor_keys).as_slice(),
            )
            .await?;

        let ctr_data = CounterData::generate(&mut rand::rngs::OsRng);
        let fingerprint =
            crypto::fingerprint::fingerprint_v3(&device_key, &activation_id, &server_key);
        let now = self.now();
        let created = Activation::new(
            activation_id.clone(),
            request.application_id.clone(),
            request.user_id,
            server_key,
            pair.wrapped,
            max_failed_attempts,
            now,
        );
        let activation = Activation {
            status: ActivationStatus::PendingCommit,
            flags: request.activation_flags,
            device_public_key: Some(device_key),
            encrypted_factor_keys: Some(sealed),
            ctr_data: *ctr_data.as_bytes(),
            enrollment: Enrollment {
                encrypted_transport_key: Some(sealed_transport),
                protocol_version: 3,
                ..created.enrollment
            },
            ..created
        };
        self.insert_new_activation(now, activation, AuditOperation::ActivationRegister)
            .await?;
        tracing::info!(activation_id = %activation_id, application_id = %request.application_id, "activation registered");
        Ok(RegisteredActivation {
            activation_id,
            activation_status: ActivationStatus::PendingCommit,
            server_public_key: server_key.to_base64(),
            ctr_data: ctr_data.to_base64(),
            device_public_key_fingerprint: fingerprint,
        })
    }

    /// `ACTIVE` → `BLOCKED` with a reason (default `NOT_SPECIFIED`). Blocking a `BLOCKED` activation
    /// is a no-op (PowerAuth parity): it answers the activation as it is and writes nothing, not even
    /// an audit record.
    pub async fn block_activation(
        &self,
        activation_id: &str,
        reason: Option<&str>,
    ) -> Result<Activation, ServiceError> {
        let reason = match reason {
            Some(r) if !r.trim().is_empty() => {
                check_name("reason", r)?;
                r.to_owned()
            }
            _ => BLOCKED_REASON_NOT_SPECIFIED.to_owned(),
        };
        self.change_activation(activation_id, AuditOperation::ActivationBlock, move |a| {
            if a.status == ActivationStatus::Blocked {
                return Ok(None);
            }
            if a.status != ActivationStatus::Active {
                return Err(ServiceError::IncorrectState);
            }
            a.status = ActivationStatus::Blocked;
            a.blocked_reason = Some(reason);
            Ok(Some(AuditOutcome::Changed))
        })
        .await
    }

    /// `BLOCKED` → `ACTIVE`; failed attempts back to 0, blocked reason cleared, counter untouched.
    /// Unblocking an `ACTIVE` activation is a no-op that writes nothing.
    pub async fn unblock_activation(
        &self,
        activation_id: &str,
    ) -> Result<Activation, ServiceError> {
        if !caller::current().scope().can_unblock() {
            return Err(ServiceError::Forbidden);
        }
        self.change_activation(activation_id, AuditOperation::ActivationUnblock, |a| {
            if a.status == ActivationStatus::Active {
                return Ok(None);
            }
            if a.status != ActivationStatus::Blocked {
                return Err(ServiceError::IncorrectState);
            }
            a.status = ActivationStatus::Active;
            a.blocked_reason = None;
            a.failed_attempts = 0;
            Ok(Some(AuditOutcome::Changed))
        })
        .await
    }

    /// Any state but `REMOVED` → `REMOVED`; the wrapped private key and the encrypted factor keys are
    /// erased from the record. The record stays for audit and is never reused. Removing a `REMOVED`
    /// activation is a no-op that writes nothing.
    pub async fn remove_activation(&self, activation_id: &str) -> Result<(), ServiceError> {
        self.change_activation(activation_id, AuditOperation::ActivationRemove, |a| {
            if a.status == ActivationStatus::Removed {
                return Ok(None);
            }
            a.status = ActivationStatus::Removed;
            a.destroy_key_material();
            Ok(Some(AuditOutcome::Removed))
        })
        .await
        .map(drop)
    }

    /// Applies `change` to the activation under its lock and stores it with an audit record.
    /// `change` answering `Ok(None)` means "nothing to do": the activation is answered as stored
    /// and nothing is written.
    async fn change_activation<F>(
        &self,
        activation_id: &str,
        operation: AuditOperation,
        change: F,
    ) -> Result<Activation, ServiceError>
    where
        F: FnOnce(&mut Activation) -> Result<Option<AuditOutcome>, ServiceError>,
    {
        let _guard = self.inner.locks.lock(activation_id).await;
        let mut activation = self
            .visible_activation(activation_id)
            .await?
            .ok_or(ServiceError::ActivationNotFound)?;
        let Some(outcome) = change(&mut activation)? else {
            return Ok(activation);
        };
        activation.enrollment.last_changed_at = Some(self.now());
        let audit = activation_audit(self.now(), &activation, operation, outcome);
        let committed = self
            .write(move |s| s.update_activation(&activation, Some(audit)))
            .await?;
        tracing::info!(
            activation_id,
            operation = operation.as_str(),
            "activation changed"
        );
        Ok(committed.activation)
    }

    // ---------------------------------------------------------------------------------------------
    // Offline payloads

    /// `createPersonalizedOfflineSignaturePayload`: signed in the HSM with the activation's own key.
    pub async fn create_personalized_payload(
        &self,
        request: CreatePersonalized,
    ) -> Result<OfflinePayload, ServiceError> {
        let nonce = match request.nonce.as_deref() {
            Some(n) if !n.trim().is_empty() => {
                decode_nonce(n)
                    .map_err(|_| ServiceError::invalid("nonce must be Base64 of 16 bytes"))?;
                n.to_owned()
            }
            _ => generate_nonce(&mut rand::rngs::OsRng),
        };
        let now = self.now();
        let totp = match &request.proximity_check {
            Some(p) => p
                .parse()?
                .map(|p| p.totp_at(now, self.otp_digits()))
                .transpose()?,
            None => None,
        };
        let activation = self
            .visible_activation(&request.activation_id)
            .await?
            .ok_or(ServiceError::ActivationNotFound)?;
        if activation.status != ActivationStatus::Active {
            return Err(ServiceError::IncorrectState);
        }
        let wrapped =
            activation
                .wrapped_server_private_key
                .as_ref()
                .ok_or(ServiceError::invariant(
                    "an active activation has no wrapped key",
                ))?;
        let unsigned = UnsignedOfflineData::new(
            &request.data,
            totp.as_deref(),
            &nonce,
            KeyIndicator::Personalized,
        );
        let signature = self
            .inner
            .signer
            .sign_digest(KeyRef::Wrapped(wrapped), &unsigned.digest())
            .await
            .map_err(signing_failed)?;
        let offline_data = unsigned.finish(&signature);
        let owner = NonceOwner::Activation(activation.id.clone());
        let mut audit = audit_draft(
            now,
            AuditOperation::CreatePersonalized,
            AuditOutcome::Created,
        );
        audit.activation_id = Some(activation.id.clone());
        audit.application_id = Some(activation.application_id.clone());
        audit.data_sha256 = Some(Sha256::digest(request.data.as_bytes()).into());
        self.register_nonce(&nonce, owner, now, audit).await?;
        Ok(OfflinePayload {
            offline_data,
            nonce,
        })
    }

    /// `createNonPersonalizedOfflineSignaturePayload`: signed in the HSM with the application's newest
    /// master key.
    pub async fn create_non_personalized_payload(
        &self,
        request: CreateNonPersonalized,
    ) -> Result<OfflinePayload, ServiceError> {
        require_application_scope(&request.application_id)?;
        let app = self
            .stored_application(&request.application_id)
            .await?
            .ok_or(ServiceError::ApplicationNotFound)?;
        let master = app
            .newest_master_key()
            .ok_or(ServiceError::NoMasterKeyPair)?;
        let key_id = master.key_id;
        let nonce = generate_nonce(&mut rand::rngs::OsRng);
        let unsigned = UnsignedOfflineData::new(&request.data, None, &nonce, KeyIndicator::Master);
        let signature = self
            .inner
            .signer
            .sign_digest(KeyRef::Token(&key_id), &unsigned.digest())
            .await
            .map_err(signing_failed)?;
        let offline_data = unsigned.finish(&signature);
        let now = self.now();
        let mut audit = audit_draft(
            now,
            AuditOperation::CreateNonPersonalized,
            AuditOutcome::Created,
        );
        audit.application_id = Some(app.id.clone());
        audit.data_sha256 = Some(Sha256::digest(request.data.as_bytes()).into());
        self.register_nonce(&nonce, NonceOwner::Application(app.id.clone()), now, audit)
            .await?;
        Ok(OfflinePayload {
            offline_data,
            nonce,
        })
    }

    /// Records an issued nonce durably (policy `enforce`) with its audit record, or only the audit
    /// record (policy `off`).
    async fn register_nonce(
        &self,
        nonce: &str,
        owner: NonceOwner,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<(), ServiceError> {
        match self.inner.settings.nonce_policy {
            NoncePolicy::Off => {
                self.write(move |s| s.append_audit(audit)).await?;
            }
            NoncePolicy::Enforce => {
                let owner_for_repeat = owner.clone();
                let issued = IssuedNonce {
                    nonce: nonce.to_owned(),
                    issued_for: owner,
                    issued_at: now,
                    expires_at: now.saturating_add(self.inner.settings.nonce_ttl),
                    consumed_at: None,
                };
                let retry_audit = audit.clone();
                match self
                    .write(move |s| s.issue_nonce(&issued, Some(audit)))
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::AlreadyExists { .. }) => {
                        // PowerAuth parity: the same caller-supplied nonce for the same activation
                        // is answered again while it is unexpired and unconsumed. Anything else
                        // (another owner, a non-personalized payload, consumed, expired) is refused.
                        let asked = nonce.to_owned();
                        let existing = self.read(move |s| s.nonce(&asked)).await?;
                        let repeatable = matches!(
                            (&existing, &owner_for_repeat),
                            (Some(n), NonceOwner::Activation(_))
                                if n.issued_for == owner_for_repeat
                                    && n.consumed_at.is_none()
                                    && n.expires_at > now
                        );
                        if !repeatable {
                            return Err(ServiceError::invalid("nonce was already issued"));
                        }
                        self.write(move |s| s.append_audit(retry_audit)).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Deletes nonces that expired more than `retention` ago (at most `max`), so that the registry does
    /// not grow without bound. Returns how many were deleted.
    pub async fn prune_nonces(
        &self,
        retention: Duration,
        max: usize,
    ) -> Result<usize, ServiceError> {
        let before = self.now().saturating_sub(retention);
        Ok(self.write(move |s| s.prune_nonces(before, max)).await?)
    }

    /// Deletes ECIES replay entries and temporary keys whose expiry has passed (at most `max`), so
    /// that neither grows without bound. Returns how many were deleted. Nothing is kept past its
    /// expiry: a replay entry lives until its request's timestamp leaves the window, after which
    /// the timestamp check alone refuses the request.
    pub async fn prune_ecies(&self, max: usize) -> Result<usize, ServiceError> {
        let now = self.now();
        Ok(self.write(move |s| s.prune_ecies(now, max)).await?)
    }

    fn otp_digits(&self) -> u32 {
        self.inner.settings.signature.proximity_otp_length
    }

    /// Seals `plaintext` under the DEK with `aad` (every secret the service stores goes through here).
    async fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<crate::model::EncryptedSecret, SignerError> {
        self.inner
            .signer
            .encrypt_secret(&self.inner.storage_keys.dek, aad, plaintext)
            .await
    }

    /// Opens what [`Service::seal`] sealed with the same `aad`.
    async fn open_sealed(
        &self,
        aad: &[u8],
        sealed: &crate::model::EncryptedSecret,
    ) -> Result<crate::signer::PlainSecret, SignerError> {
        self.inner
            .signer
            .decrypt_secret(&self.inner.storage_keys.dek, aad, sealed)
            .await
    }

    async fn factor_keys(&self, activation: &Activation) -> Result<FactorKeys, ServiceError> {
        let sealed = activation
            .encrypted_factor_keys
            .as_ref()
            .ok_or(ServiceError::invariant("the activation has no factor keys"))?;
        let plain = self
            .open_sealed(&factor_keys_aad(&activation.id), sealed)
            .await?;
        open_factor_keys(plain.expose())
    }
}

tokio::task_local! {
    static WRITE_GATE: Arc<WriteGate>;
}

/// The line between "nothing durable started" and "a store write was handed over" for one request,
/// shared by the request's task (which passes it when it writes) and its timeout (which closes it).
/// Whoever comes first wins: a closed gate refuses writes, a passed gate cannot be closed, so a
/// timeout either cancels a request that changed nothing or knows it must wait for the outcome.
#[derive(Debug, Default)]
pub struct WriteGate(std::sync::atomic::AtomicU8);

const GATE_OPEN: u8 = 0;
const GATE_WRITTEN: u8 = 1;
const GATE_CLOSED: u8 = 2;

impl WriteGate {
    /// A gate no write has passed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes the gate unless a write has passed it: `true` when closed now or before (no write
    /// can start any more), `false` when a write already began.
    pub fn close(&self) -> bool {
        use std::sync::atomic::Ordering;
        match self
            .0
            .compare_exchange(GATE_OPEN, GATE_CLOSED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(current) => current == GATE_CLOSED,
        }
    }

    /// Whether a store write has begun behind this gate.
    pub fn write_began(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst) == GATE_WRITTEN
    }

    /// Passes the gate: `false` when it was closed first.
    fn begin_write(&self) -> bool {
        use std::sync::atomic::Ordering;
        match self
            .0
            .compare_exchange(GATE_OPEN, GATE_WRITTEN, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(current) => current == GATE_WRITTEN,
        }
    }
}

/// Runs `work` (a request's use case) with `gate` watching its store writes (see [`WriteGate`]).
pub async fn with_write_gate<F: std::future::Future>(gate: Arc<WriteGate>, work: F) -> F::Output {
    WRITE_GATE.scope(gate, work).await
}

/// `activation`, unless the current caller's scope does not cover its application: an activation
/// of another application is, to the caller, an unknown one.
fn visible_to_caller(activation: Option<Activation>) -> Option<Activation> {
    let caller = caller::current();
    activation.filter(|a| caller.scope().covers(&a.application_id))
}

/// Runs a blocking store call on tokio's blocking pool. A task that panicked or was cancelled is
/// reported as a store I/O failure: the write's fate is unknown.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            detail: format!("store task failed: {e}"),
        })
    })
}

fn check_name(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.trim().is_empty() {
        return Err(ServiceError::invalid(format!("{field} must not be blank")));
    }
    if value.len() > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!(
            "{field} must be at most {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// Base64 that does not decode is ERR0024; bytes that are not a P-256 point are ERR0010 (`api.md`).
fn parse_public_key(text: &str) -> Result<PublicKey, ServiceError> {
    let bytes = b64::decode(text)
        .map_err(|_| ServiceError::invalid("devicePublicKey is not canonical Base64"))?;
    PublicKey::from_sec1(&bytes).map_err(|_| ServiceError::InvalidKeyFormat)
}

/// The associated data the factor-key blob of `activation_id` is sealed with (also used by the
/// benchmark's DEK-decrypt ceiling, so that it opens the very blobs the service opens).
pub fn factor_keys_aad(activation_id: &str) -> Vec<u8> {
    [FACTOR_KEYS_AAD, activation_id.as_bytes()].concat()
}

fn seal_factor_keys(keys: &FactorKeys) -> Zeroizing<Vec<u8>> {
    let mut plain = Zeroizing::new(Vec::with_capacity(FACTOR_KEYS_LEN));
    for factor in [
        crypto::signature::Factor::Possession,
        crypto::signature::Factor::Knowledge,
        crypto::signature::Factor::Biometry,
    ] {
        plain.extend_from_slice(keys.key(factor).expose());
    }
    plain
}

fn open_factor_keys(plain: &[u8]) -> Result<FactorKeys, ServiceError> {
    if plain.len() != FACTOR_KEYS_LEN {
        return Err(ServiceError::invariant(
            "the decrypted factor-key blob has the wrong length",
        ));
    }
    let key = |i: usize| {
        SymmetricKey::from_slice(&plain[i * 16..(i + 1) * 16])
            .map_err(|_| ServiceError::invariant("a factor key is not 16 bytes"))
    };
    Ok(FactorKeys::new(key(0)?, key(1)?, key(2)?))
}

fn activation_audit(
    now: Timestamp,
    a: &Activation,
    operation: AuditOperation,
    outcome: AuditOutcome,
) -> AuditDraft {
    let mut audit = audit_draft(now, operation, outcome);
    audit.activation_id = Some(a.id.clone());
    audit.application_id = Some(a.application_id.clone());
    audit
}
