//! Persistent state: applications, activations (keys as wrapped blobs, counters, failed attempts), the
//! nonce registry, integration credentials and the hash-chained audit trail. This is the only module
//! that knows sled (`store/sled_store.rs`) or the PostgreSQL client (`store/postgres.rs`); the rest of the
//! service sees the [`Store`] trait.
//!
//! Codemap:
//! - `records.rs`      the record types and their newtypes (no storage code).
//! - `codec.rs`        the versioned binary layout of every stored value (first byte = record format).
//! - `records.rs` also holds the activation-by-code records: application versions, enrollment
//!   details, temporary ECIES keys; the ECIES replay registry is a set of keys with expiry.
//! - `audit.rs`        audit records, the hash chains, and [`verify_audit_chain`].
//! - `group_commit.rs` one `fsync` for many concurrent writers.
//! - `durability.rs`   sled's flush: the poison after a failed flush, the background flush of nonces.
//! - `sled_store.rs`   [`SledStore`], the embedded implementation.
//! - `settings.rs`     the `[store]` table ([`StoreSettings`]) and [`open`], which opens either store.
//! - `postgres.rs`     [`PgStore`], the implementation for several instances sharing one PostgreSQL
//!   database, with its settings ([`RawPostgresSettings`] → [`PostgresSettings`]) and migrations.
//!
//! Invariants:
//! - No plaintext secret reaches the store: key material arrives wrapped or encrypted by the HSM
//!   ([`WrappedKey`], [`EncryptedSecret`]), integration secrets arrive hashed ([`SecretHash`]), and an
//!   audit record holds a SHA-256 of the signed data, never the data or a code.
//! - Every write method returns only after its write is durable (flushed and `fsync`ed), so whatever the
//!   service acknowledges survives a crash. The one exception is [`Store::issue_nonce`], durable with
//!   the next flush: a crash can lose an issued nonce, which only makes its code fail closed.
//! - A write whose flush failed is [`StoreError::OutcomeUnknown`]; a sled handle then refuses all work
//!   until reopened, so the process never reports what the disk may lack (`durability.rs`).
//! - [`Store::commit_verification`] is one atomic write: the activation's new state (compare-and-swap on
//!   its `version`), the nonce consumption and the audit record land together or not at all.
//! - Each audit chain is appended under the same serialization as the write it records, so a chain has
//!   no gaps and no forks. sled has one chain; PostgreSQL one per writing instance ([`ChainId`]), so
//!   that instances do not queue on one global lock.
//!
//! **Why the trait is synchronous.** sled is a synchronous library and the only slow step, the `fsync`, is
//! a blocking system call; an `async` trait would only hide a blocking call behind a future (and box every
//! call). Reads are microseconds and may be called directly from async code; writes block until durable
//! and belong in `spawn_blocking` (or on the same dedicated thread as the HSM work). [`PgStore`] keeps
//! the same shape: it runs its async client on a small runtime of its own and blocks the caller on the
//! answer (see its module docs for why). Every PostgreSQL call waits on a network round trip, though,
//! and a read called directly from async code would take a runtime worker out of service for that
//! long: so a store whose calls wait on a network also offers the calls of the request path as futures
//! ([`Store::remote`], [`RemoteStore`]), which the service awaits instead.

mod audit;
mod codec;
mod durability;
mod group_commit;
mod postgres;
mod records;
mod settings;
mod sled_store;

pub use audit::{
    AuditDraft, AuditEntry, AuditOperation, AuditOutcome, AuditRecord, CHECKPOINT_DOMAIN,
    ChainBreak, ChainHead, ChainId, ChainReport, Checkpoint, InvalidChainId, verify_audit_chain,
};
pub use group_commit::FlushHold;
pub use postgres::{
    DATABASE_URL_ENV, PgStore, PostgresSettings, PostgresSettingsError, RawPostgresSettings,
    SCHEMA_VERSION, SchemaMigration, migrate,
};
pub use records::{
    Activation, Application, ApplicationVersion, Enrollment, IntegrationCredential, IssuedNonce,
    MasterKeyRef, NonceOwner, SecretHash, TemporaryKey,
};

#[cfg(doc)]
use crate::model::{EncryptedSecret, WrappedKey};

/// What the store knows of the HSM's keys ([`Store::key_census`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCensus {
    /// Every application master key id (the token objects the store refers to), sorted.
    pub master_key_ids: Vec<KeyId>,
    /// Activations whose record holds a wrapped server private key (removed ones do not).
    pub wrapped_activation_keys: u64,
    /// Temporary ECIES keys (each holds a wrapped private key), expired or not.
    pub wrapped_temporary_keys: u64,
}
use std::future::Future;
use std::pin::Pin;

use crate::model::{KeyId, Timestamp};
pub use settings::{RawSledSettings, RawStoreSettings, StoreSettings, StoreSettingsError, open};
pub use sled_store::{STORE_FORMAT, SledStore};

/// Runs every stored-record decoder over `bytes` and drops the results: the entry point of the
/// `store_records` fuzz target (`fuzz/`, through `crate::fuzzing`), not an API.
#[doc(hidden)]
pub fn fuzz_decode_records(bytes: &[u8]) {
    let _ = codec::decode_application(bytes);
    let _ = codec::decode_activation(bytes);
    let _ = codec::decode_temporary_key(bytes);
    let _ = codec::decode_nonce(bytes);
    let _ = codec::decode_credential(bytes);
    let _ = codec::decode_audit(bytes);
    let _ = codec::decode_head(bytes);
    let _ = codec::decode_checkpoint(bytes);
}

/// What can go wrong in the store, in the service's words.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named record does not exist.
    #[error("{what} not found")]
    NotFound {
        /// Which record.
        what: &'static str,
    },
    /// A record with the same key already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// Which record.
        what: &'static str,
    },
    /// A concurrent change won; nothing was written.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// Stored bytes do not decode, or the store's layout is not what this build expects.
    #[error("stored data is corrupt: {what}")]
    Corrupt {
        /// Which record.
        what: String,
    },
    /// The store was written by a newer build.
    #[error("store format {found} is newer than this build supports ({supported})")]
    NewerFormat {
        /// The version or position found.
        found: u32,
        /// The version this build supports.
        supported: u32,
    },
    /// A write was applied but could not be made durable (its flush failed): it may or may not be
    /// on disk, whole. The caller must not report it as done nor as not done. A sled handle refuses
    /// all further work until reopened.
    #[error("the write's outcome is unknown: {detail}")]
    OutcomeUnknown {
        /// What failed, in words (never a secret).
        detail: String,
    },
    /// The store refuses all work until the service restarts and reopens it (a sled handle whose
    /// flush failed, see `durability.rs`); nothing was read or written.
    #[error("store unavailable: {detail}")]
    Unavailable {
        /// Why, in words (never a secret).
        detail: String,
    },
    /// The disk or the storage engine failed.
    #[error("store I/O failed: {detail}")]
    Io {
        /// What failed, in words (never a secret).
        detail: String,
    },
}

/// The kinds of [`StoreError::Conflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The activation's `version` changed since the caller read it (compare-and-swap lost).
    #[error("the activation changed since it was read")]
    StaleVersion,
    /// The nonce was already consumed by a successful verification.
    #[error("the nonce was already consumed")]
    NonceConsumed,
    /// The nonce was issued for another activation, or for an application the activation is not in.
    #[error("the nonce was issued for something else")]
    NonceOwner,
}

/// The single atomic write at the end of a verification (valid or not).
#[derive(Clone, Debug)]
pub struct VerificationCommit {
    /// The activation's new state. Its `version` must be the version the caller read: the write
    /// happens only if the stored version still equals it, and stores `version + 1`.
    pub activation: Activation,
    /// The nonce to mark consumed (a successful verification under `nonce_policy = "enforce"`), as
    /// the caller read it from this store, or `None` (a failed attempt, a rejected nonce, or the
    /// policy is off). The write happens only if the nonce is still registered, unconsumed, and
    /// issued for this activation or its application. A nonce's owner never changes, so a store may
    /// check it on this record instead of the one it holds (PostgreSQL does, to commit in one
    /// statement; sled reads its own).
    pub consume_nonce: Option<IssuedNonce>,
    /// The audit record for this verification.
    pub audit: AuditDraft,
}

/// What a write to an activation stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The activation as stored, with its new `version`.
    pub activation: Activation,
    /// The audit record appended in the same write, if one was asked for.
    pub audit: Option<AuditRecord>,
}

/// A store answer still on its way. It owns everything it needs, so a request's task can hold it
/// across `await` points; see [`RemoteStore`].
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// What a verification reads before it decides ([`RemoteStore::verification_reads`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerificationReads {
    /// The activation, if it exists.
    pub activation: Option<Activation>,
    /// The issued nonce the request names, if one was asked for and exists.
    pub nonce: Option<IssuedNonce>,
}

/// The request path of a store whose every call waits on a network round trip (PostgreSQL): the
/// reads and the write that the `verify` and authentication paths make, with the same meaning as the
/// [`Store`] methods of the same names, as futures that hold no thread while they wait.
///
/// A request's task awaits these directly. Calling the blocking [`Store`] method instead would take a
/// runtime worker out of service for the whole round trip (there are as many workers as cores), and
/// sending it to the blocking pool would add two thread hand-offs to every call. Dropping a future
/// does not cancel its work: a write once handed over lands or fails on its own, exactly as a
/// blocking write on the blocking pool does, so a request that times out cannot half-write.
pub trait RemoteStore: Send + Sync {
    /// [`Store::credential`].
    fn credential(&self, client_token: &str) -> StoreFuture<Option<IntegrationCredential>>;

    /// [`Store::application`].
    fn application(&self, id: &str) -> StoreFuture<Option<Application>>;

    /// [`Store::activation`] and, for `Some(nonce)`, [`Store::nonce`], in one round trip (the two
    /// reads are not one snapshot, as two separate calls are not either: the verification's
    /// compare-and-swap is what catches a change in between).
    fn verification_reads(
        &self,
        activation_id: &str,
        nonce: Option<&str>,
    ) -> StoreFuture<VerificationReads>;

    /// [`Store::commit_verification`], with the same guarantees.
    fn commit_verification(&self, commit: VerificationCommit) -> StoreFuture<Committed>;
}

/// The service's view of persistent state. Every write method is atomic and durable on return; every
/// optional `audit` draft is appended in the same atomic write as the change it describes.
pub trait Store: Send + Sync {
    /// The request path's calls as futures ([`RemoteStore`]) for a store whose calls wait on a
    /// network; `None` (the default) for a store that answers from its own memory and disk (sled),
    /// whose reads are called directly and whose writes go to the blocking pool.
    fn remote(&self) -> Option<&dyn RemoteStore> {
        None
    }

    /// Stores a new application. [`StoreError::AlreadyExists`] if its id is taken.
    fn create_application(
        &self,
        app: &Application,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError>;

    /// The application with this id, if any.
    fn application(&self, id: &str) -> Result<Option<Application>, StoreError>;

    /// Puts `key` first in the application's master keys (it becomes the signing key) and returns the
    /// application as stored. [`StoreError::NotFound`] if there is no such application.
    fn add_master_key(
        &self,
        application_id: &str,
        key: MasterKeyRef,
        audit: Option<AuditDraft>,
    ) -> Result<Application, StoreError>;

    /// Appends a version to an application and returns the application as stored.
    /// [`StoreError::NotFound`] if there is no such application; [`StoreError::AlreadyExists`] if the
    /// application already has a version with this id, or any application a version with this
    /// application key.
    fn add_application_version(
        &self,
        application_id: &str,
        version: ApplicationVersion,
        audit: Option<AuditDraft>,
    ) -> Result<Application, StoreError>;

    /// The application one of whose versions has this application key, if any.
    fn application_by_key(&self, application_key: &str) -> Result<Option<Application>, StoreError>;

    /// The activation of `application_id` whose `enrollment.activation_code` is `code`, if any.
    fn activation_by_code(
        &self,
        application_id: &str,
        code: &str,
    ) -> Result<Option<Activation>, StoreError>;

    /// Stores a temporary key. [`StoreError::AlreadyExists`] if its id is taken.
    fn put_temporary_key(&self, key: &TemporaryKey) -> Result<(), StoreError>;

    /// The temporary key with this id, if any (expired or not: the caller checks the time).
    fn temporary_key(&self, id: &str) -> Result<Option<TemporaryKey>, StoreError>;

    /// Deletes a temporary key; `false` if there was none.
    fn remove_temporary_key(&self, id: &str) -> Result<bool, StoreError>;

    /// Records one ECIES request in the replay registry until `expires_at`.
    /// [`StoreError::AlreadyExists`] if `key` is recorded (a replay); nothing is written then.
    fn register_replay(&self, key: &str, expires_at: Timestamp) -> Result<(), StoreError>;

    /// Deletes up to `max` replay entries and temporary keys whose expiry is before
    /// `expired_before`; returns how many were deleted. Bounded work: call it periodically.
    fn prune_ecies(&self, expired_before: Timestamp, max: usize) -> Result<usize, StoreError>;

    /// Stores a new activation with `version` 1 (the given `version` is ignored), and indexes its
    /// activation code if it has one. [`StoreError::AlreadyExists`] if its id is taken or its code
    /// is already used in the same application.
    fn insert_activation(
        &self,
        activation: &Activation,
        audit: Option<AuditDraft>,
    ) -> Result<Committed, StoreError>;

    /// The activation with this id, if any.
    fn activation(&self, id: &str) -> Result<Option<Activation>, StoreError>;

    /// Replaces an activation if its stored `version` still equals `activation.version`; stores
    /// `version + 1`. [`Conflict::StaleVersion`] if another write won, [`StoreError::NotFound`] if absent.
    fn update_activation(
        &self,
        activation: &Activation,
        audit: Option<AuditDraft>,
    ) -> Result<Committed, StoreError>;

    /// The end of a verification as one atomic, durable write: compare-and-swap of the activation, the
    /// nonce consumption (if any) and the audit record.
    ///
    /// Errors (nothing is written): [`StoreError::NotFound`] (`"activation"` or `"nonce"`),
    /// [`Conflict::StaleVersion`], [`Conflict::NonceConsumed`], and [`Conflict::NonceOwner`] when the
    /// nonce was issued neither for this activation nor for its application. The nonce's `consumed_at` is
    /// the audit draft's `time`.
    fn commit_verification(&self, commit: VerificationCommit) -> Result<Committed, StoreError>;

    /// Registers an issued nonce (with its audit record, if given, in the same atomic write).
    /// [`StoreError::AlreadyExists`] if the same nonce string is registered.
    ///
    /// The one write that is **not durable on return**: it is visible at once and becomes durable
    /// with the next flush, which the store starts without the caller waiting (sled), or with the
    /// write-ahead log's next flush (PostgreSQL, `synchronous_commit = off` for this transaction).
    /// Any durable write that follows covers it. A crash may lose a nonce that was answered; it is
    /// then `UNKNOWN`, and a code computed over it is refused (ARCHITECTURE.md).
    fn issue_nonce(&self, nonce: &IssuedNonce, audit: Option<AuditDraft>)
    -> Result<(), StoreError>;

    /// The registered nonce, if any.
    fn nonce(&self, nonce: &str) -> Result<Option<IssuedNonce>, StoreError>;

    /// Deletes up to `max` nonces whose `expires_at` is before `expired_before` (oldest expiry first) and
    /// returns how many were deleted. Bounded work: call it periodically. Pass `now − retention` so that
    /// a recently expired nonce still answers `EXPIRED` rather than `UNKNOWN` for a while.
    fn prune_nonces(&self, expired_before: Timestamp, max: usize) -> Result<usize, StoreError>;

    /// Stores or replaces an integration credential (with its audit record, if given, in the same
    /// atomic write).
    ///
    /// # Errors
    /// [`StoreError::Io`] when the write fails; nothing is written.
    fn put_credential(
        &self,
        credential: &IntegrationCredential,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError>;

    /// The credential with this client token, if any.
    fn credential(&self, client_token: &str) -> Result<Option<IntegrationCredential>, StoreError>;

    /// All credentials, ordered by client token.
    fn credentials(&self) -> Result<Vec<IntegrationCredential>, StoreError>;

    /// Deletes a credential (with its audit record, if given, in the same atomic write).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent (then nothing is written); [`StoreError::Io`].
    fn remove_credential(
        &self,
        client_token: &str,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError>;

    /// The ids of the HSM's key-encryption key and data-encryption key recorded at first start
    /// (`(kek, dek)`), or `None` before the first start.
    fn storage_keys(&self) -> Result<Option<(KeyId, KeyId)>, StoreError>;

    /// Records the ids of the KEK and DEK. Refuses ([`StoreError::AlreadyExists`]) to replace ids that
    /// are already recorded: the keys they name protect every activation.
    fn set_storage_keys(&self, kek: KeyId, dek: KeyId) -> Result<(), StoreError>;

    /// The id of the HSM's audit signing key recorded at first start, or `None` before it.
    fn audit_key(&self) -> Result<Option<KeyId>, StoreError>;

    /// Records the id of the audit signing key. Refuses ([`StoreError::AlreadyExists`]) to replace an
    /// id already recorded: of two instances starting at once, the first one's key is kept.
    fn set_audit_key(&self, id: KeyId) -> Result<(), StoreError>;

    /// Stores a signed checkpoint of one audit chain (durable on return). A checkpoint of the same
    /// chain and `seq` is replaced (a newer signature over the same head).
    fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// Every stored checkpoint, ordered by chain id and then `seq`. A checkpoint that does not decode
    /// is [`StoreError::Corrupt`].
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// What the store knows of the HSM's keys, for `key-report` and `hsm gc`: the id of every
    /// application master key, and how many activations and temporary keys hold a wrapped private
    /// key. Reads every application, activation and temporary-key record: an administrative call.
    fn key_census(&self) -> Result<KeyCensus, StoreError>;

    /// Proves the store is readable and writable right now (for the readiness check): makes one small
    /// durable write that changes no record.
    fn probe(&self) -> Result<(), StoreError>;

    /// Appends an audit record on its own (for events that change nothing else), to this handle's chain.
    fn append_audit(&self, draft: AuditDraft) -> Result<AuditRecord, StoreError>;

    /// The chain this handle appends to (every audit draft given to a write lands there, or, with
    /// several lanes, on one of [`Self::audit_lanes`]; this is lane 0).
    fn audit_chain(&self) -> ChainId;

    /// Every chain this handle appends to ("lanes"; lane 0 is [`Self::audit_chain`]): one for sled,
    /// `[store] audit_lanes` for PostgreSQL. Concurrent writes land on different lanes; each lane is a
    /// linear chain of its own, checkpointed on its own.
    fn audit_lanes(&self) -> Vec<ChainId> {
        vec![self.audit_chain()]
    }

    /// Every audit chain in the store, ordered by id: one for sled, one per writing instance for
    /// PostgreSQL (including chains of instances that are gone).
    fn audit_chains(&self) -> Result<Vec<ChainId>, StoreError>;

    /// Up to `limit` entries of `chain` from position `from_seq` on, in order. Damaged records come back
    /// as [`AuditEntry::Undecodable`] rather than failing the read, so that the chain check can name them.
    /// [`StoreError::NotFound`] (`"audit chain"`) if the store has no such chain.
    fn audit_chain_entries(
        &self,
        chain: &ChainId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// The newest record's position and hash in `chain` ([`ChainId::empty_head`] while it is empty).
    /// [`StoreError::NotFound`] (`"audit chain"`) if the store has no such chain.
    fn audit_chain_head(&self, chain: &ChainId) -> Result<ChainHead, StoreError>;

    /// Every application, ordered by id (for `store copy`).
    ///
    /// # Errors
    /// [`StoreError::Io`], or [`StoreError::Corrupt`] for a record that does not decode.
    fn applications(&self) -> Result<Vec<Application>, StoreError>;

    /// Up to `limit` activations whose ids sort after `after` (from the first when `None`), ordered
    /// by id (for `store copy`).
    ///
    /// # Errors
    /// [`StoreError::Io`], or [`StoreError::Corrupt`] for a record that does not decode.
    fn activations_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Activation>, StoreError>;

    /// Up to `limit` registered nonces that sort after `after` (from the first when `None`), ordered
    /// by nonce (for `store copy`).
    ///
    /// # Errors
    /// [`StoreError::Io`], or [`StoreError::Corrupt`] for a record that does not decode.
    fn nonces_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IssuedNonce>, StoreError>;

    /// Appends records sealed elsewhere (another store's chain, read in order) to `chain` exactly as
    /// they are, creating the chain if needed, in one atomic write. Each record must follow the
    /// chain's head (`seq` one more, `prev_hash` its hash) and carry its correct hash.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] (nothing written) for a record that does not follow, and from sled,
    /// which keeps one chain ([`ChainId::embedded`]), for any other chain; [`StoreError::Io`].
    fn import_audit(&self, chain: &ChainId, records: &[AuditRecord]) -> Result<(), StoreError>;

    /// [`Self::audit_chain_entries`] of this handle's own chain.
    fn audit_entries(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_chain_entries(&self.audit_chain(), from_seq, limit)
    }

    /// [`Self::audit_chain_head`] of this handle's own chain.
    fn audit_head(&self) -> Result<ChainHead, StoreError> {
        self.audit_chain_head(&self.audit_chain())
    }

    /// Up to `limit` records of this handle's chain from position `from_seq` on; a damaged record is
    /// [`StoreError::Corrupt`].
    fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_entries(from_seq, limit)?
            .into_iter()
            .map(|entry| match entry {
                AuditEntry::Record(rec) => Ok(rec),
                AuditEntry::Undecodable { seq, detail } => Err(StoreError::Corrupt {
                    what: format!("audit record {seq}: {detail}"),
                }),
            })
            .collect()
    }
}
