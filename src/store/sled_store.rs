//! [`SledStore`]: the [`Store`] on an embedded sled database in one directory.
//!
//! Trees and keys (values are the [`super::codec`] encodings, each starting with its format byte):
//! - `meta`: `format` → `u32` BE store format ([`STORE_FORMAT`]); `audit_head` → head of the one audit
//!   chain ([`ChainId::embedded`]);
//!   `probe` → `i64` BE time of the last readiness probe.
//! - `applications`: application id (UTF-8) → application.
//! - `activations`: activation id (UTF-8) → activation.
//! - `nonces`: nonce string (UTF-8) → issued nonce.
//! - `nonce_expiry`: `expires_at` as order-preserving `u64` BE ‖ nonce → empty (index for pruning).
//! - `credentials`: client token (UTF-8) → integration credential.
//! - `audit`: `seq` as `u64` BE → audit record.
//! - `application_keys`: application key (UTF-8) → application id (index of the versions).
//! - `activation_codes`: application id ‖ `00` ‖ activation code → activation id (index).
//! - `temporary_keys`: temporary key id (UTF-8) → temporary key.
//! - `ecies_replays`: replay key (UTF-8) → `expires_at` (i64 BE).
//! - `checkpoints`: chain id (UTF-8) ‖ `00` ‖ `seq` as `u64` BE → signed audit checkpoint.
//! - `meta` also holds `audit_key` → the 16-byte id of the HSM's audit signing key.
//! - `ecies_expiry`: `expires_at` as order-preserving `u64` BE ‖ `r`/`t` ‖ replay key or temporary
//!   key id → empty (index for pruning both).
//!
//! Multi-tree writes run as sled transactions (sled serializes them under one lock, which also serializes
//! the audit chain). After the transaction, the writer waits in the group commit until a flush covers
//! it; an issued nonce does not wait (the background flusher of `durability.rs` starts its flush). A
//! failed flush poisons the handle (`durability.rs`). sled's own timed flusher is switched off: every
//! flush is ours and counted.

use std::path::{Path, PathBuf};

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionResult, TransactionalTree,
};
use sled::{Transactional, Tree};

use super::audit::{AuditDraft, AuditEntry, AuditRecord, ChainHead, ChainId, Checkpoint};
use super::codec::{self, DecodeError};
use super::durability::{Durability, LazyFlusher};
use super::group_commit::FlushHold;
use super::records::{
    Activation, Application, ApplicationVersion, IntegrationCredential, IssuedNonce, MasterKeyRef,
    TemporaryKey,
};
use super::{Committed, Conflict, Store, StoreError, VerificationCommit};
use crate::model::{KeyId, Timestamp};

/// The store layout version this build writes and reads. A store with a higher number is refused.
pub const STORE_FORMAT: u32 = 1;

const KEY_FORMAT: &[u8] = b"format";
const KEY_AUDIT_HEAD: &[u8] = b"audit_head";
const KEY_STORAGE_KEYS: &[u8] = b"storage_keys";
const KEY_PROBE: &[u8] = b"probe";
const KEY_AUDIT_KEY: &[u8] = b"audit_key";

type TxError = ConflictableTransactionError<StoreError>;

/// The embedded store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct SledStore {
    dir: PathBuf,
    meta: Tree,
    applications: Tree,
    activations: Tree,
    nonces: Tree,
    nonce_expiry: Tree,
    credentials: Tree,
    audit: Tree,
    application_keys: Tree,
    activation_codes: Tree,
    temporary_keys: Tree,
    ecies_replays: Tree,
    ecies_expiry: Tree,
    checkpoints: Tree,
    /// The background flush of issued nonces; declared before `durability` so that it stops (and
    /// flushes what is pending) before the database handle goes.
    lazy: LazyFlusher,
    durability: std::sync::Arc<Durability>,
}

/// Key of the `activation_codes` index.
fn code_key(application_id: &str, code: &str) -> Vec<u8> {
    let mut key = application_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(code.as_bytes());
    key
}

/// Key of the `ecies_expiry` index: expiry ‖ tag ‖ name.
fn ecies_expiry_key(expires_at: Timestamp, tag: u8, name: &str) -> Vec<u8> {
    let mut key = expiry_key(expires_at, "");
    key.push(tag);
    key.extend_from_slice(name.as_bytes());
    key
}

const TAG_REPLAY: u8 = b'r';
const TAG_TEMPORARY_KEY: u8 = b't';

fn io(e: sled::Error) -> StoreError {
    StoreError::Io {
        detail: e.to_string(),
    }
}

fn corrupt(e: DecodeError) -> StoreError {
    StoreError::Corrupt { what: e.0 }
}

fn abort(e: StoreError) -> TxError {
    ConflictableTransactionError::Abort(e)
}

fn finish<T>(r: TransactionResult<T, StoreError>) -> Result<T, StoreError> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(io(e)),
    }
}

/// `expires_at` as a `u64` whose big-endian bytes sort like the signed value.
fn expiry_key(expires_at: Timestamp, nonce: &str) -> Vec<u8> {
    let ordered = (expires_at.unix_millis() as u64) ^ (1 << 63);
    let mut key = ordered.to_be_bytes().to_vec();
    key.extend_from_slice(nonce.as_bytes());
    key
}

fn expiry_of_key(key: &[u8]) -> Option<Timestamp> {
    let first: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some(Timestamp::from_unix_millis(
        (u64::from_be_bytes(first) ^ (1 << 63)) as i64,
    ))
}

/// sled keeps exactly one chain, [`ChainId::embedded`].
fn only_chain(chain: &ChainId) -> Result<(), StoreError> {
    if *chain == ChainId::embedded() {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            what: "audit chain",
        })
    }
}

/// Reads the chain head inside a transaction.
fn head_in(meta: &TransactionalTree) -> Result<ChainHead, TxError> {
    match meta.get(KEY_AUDIT_HEAD)? {
        None => Ok(ChainHead::EMPTY),
        Some(bytes) => {
            let (seq, hash) = codec::decode_head(&bytes).map_err(|e| abort(corrupt(e)))?;
            Ok(ChainHead { seq, hash })
        }
    }
}

/// Appends `draft` after the current head, inside a transaction.
fn append_in(
    meta: &TransactionalTree,
    audit: &TransactionalTree,
    draft: &AuditDraft,
) -> Result<AuditRecord, TxError> {
    let head = head_in(meta)?;
    let rec = draft.clone().seal(head.seq + 1, head.hash);
    audit.insert(&rec.seq.to_be_bytes(), codec::encode_audit(&rec))?;
    meta.insert(KEY_AUDIT_HEAD, codec::encode_head(rec.seq, &rec.hash))?;
    Ok(rec)
}

fn maybe_append(
    meta: &TransactionalTree,
    audit: &TransactionalTree,
    draft: Option<&AuditDraft>,
) -> Result<Option<AuditRecord>, TxError> {
    draft.map(|d| append_in(meta, audit, d)).transpose()
}

/// How long [`SledStore::open`] waits for another handle of the same process to let go of the
/// database's file lock. sled releases it from a background thread shortly after the last handle is
/// dropped, so an immediate reopen in the same process (tests, a restart of the service inside one
/// process) can find it still held. Another *process* holding the lock is a real error and is reported
/// once the wait is over.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// sled's page cache when the caller does not say (tests, the benchmark's scratch store). sled's own
/// default (1 GiB) would let the cache alone outgrow the service's memory budget; the configured size
/// comes from `[store] cache_mib`.
const CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if lock_held(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(io(e)),
        }
    }
}

/// Whether sled refused to open because the folder's lock is held. sled 0.34 reports it as an I/O
/// error of kind `Other` whose text wraps the `WouldBlock` of the lock call ("could not acquire
/// lock on …"), so the kind alone does not tell.
fn lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Refuses a store written in a newer format, and a non-empty
    /// directory database without a format marker.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, CACHE_CAPACITY_BYTES)
    }

    /// [`SledStore::open`] with a page cache of `cache_bytes`.
    ///
    /// # Errors
    /// As [`SledStore::open`].
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = open_db(dir, cache_bytes)?;
        let tree = |name: &str| db.open_tree(name).map_err(io);
        let durability = std::sync::Arc::new(Durability::new(db.clone()));
        let store = Self {
            dir: dir.to_path_buf(),
            meta: tree("meta")?,
            applications: tree("applications")?,
            activations: tree("activations")?,
            nonces: tree("nonces")?,
            nonce_expiry: tree("nonce_expiry")?,
            credentials: tree("credentials")?,
            audit: tree("audit")?,
            application_keys: tree("application_keys")?,
            activation_codes: tree("activation_codes")?,
            temporary_keys: tree("temporary_keys")?,
            ecies_replays: tree("ecies_replays")?,
            ecies_expiry: tree("ecies_expiry")?,
            checkpoints: tree("checkpoints")?,
            lazy: LazyFlusher::start(std::sync::Arc::clone(&durability))?,
            durability,
        };
        store.check_format()?;
        Ok(store)
    }

    fn check_format(&self) -> Result<(), StoreError> {
        match self.meta.get(KEY_FORMAT).map_err(io)? {
            Some(bytes) => {
                let raw: [u8; 4] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "store format marker is not 4 bytes".into(),
                })?;
                let found = u32::from_be_bytes(raw);
                if found > STORE_FORMAT {
                    return Err(StoreError::NewerFormat {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
                Ok(())
            }
            None => {
                let trees = [
                    &self.meta,
                    &self.applications,
                    &self.activations,
                    &self.nonces,
                    &self.nonce_expiry,
                    &self.credentials,
                    &self.audit,
                ];
                if trees.iter().any(|t| !t.is_empty()) {
                    return Err(StoreError::Corrupt {
                        what: "store has data but no format marker".into(),
                    });
                }
                self.meta
                    .insert(KEY_FORMAT, &STORE_FORMAT.to_be_bytes())
                    .map_err(io)?;
                self.durable()
            }
        }
    }

    /// Blocks until every write this thread has applied is on disk (group commit). A failed flush
    /// is [`StoreError::OutcomeUnknown`] and poisons the handle (`durability.rs`).
    fn durable(&self) -> Result<(), StoreError> {
        self.durability.durable()
    }

    /// `Ok` unless a failed flush poisoned this handle; every [`Store`] method asks first.
    fn usable(&self) -> Result<(), StoreError> {
        self.durability.usable()
    }

    /// Makes every write applied so far durable now (issued nonces included), like any durable
    /// write does.
    ///
    /// # Errors
    /// [`StoreError::OutcomeUnknown`] when the flush fails (the handle is then poisoned);
    /// [`StoreError::Unavailable`] on a poisoned handle.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.usable()?;
        self.durable()
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes (`fsync`s) performed by this handle since it was opened.
    pub fn flush_count(&self) -> u64 {
        self.durability.flushes()
    }

    /// Total size in bytes of every file under the store's directory (for benchmarks).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        fn walk(dir: &Path) -> std::io::Result<u64> {
            let mut total = 0;
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                total += if meta.is_dir() {
                    walk(&entry.path())?
                } else {
                    meta.len()
                };
            }
            Ok(total)
        }
        walk(&self.dir).map_err(|e| StoreError::Io {
            detail: e.to_string(),
        })
    }

    /// Test hook: no flush starts until the returned guard is dropped, so writers queue up.
    #[doc(hidden)]
    pub fn hold_flushes(&self) -> FlushHold<'_> {
        self.durability.hold()
    }

    /// Test hook: writers currently waiting for their write to become durable.
    #[doc(hidden)]
    pub fn durability_waiters(&self) -> usize {
        self.durability.waiting()
    }

    /// Test hook: the next flush fails as a failed `fsync` would (nothing written), which poisons
    /// this handle (see [`StoreError::OutcomeUnknown`]). Not reachable from any configuration.
    #[doc(hidden)]
    pub fn fail_next_flush(&self) {
        self.durability.fail_next_flush();
    }

    /// Test hook: rewrites the raw stored bytes of audit record `seq` (to simulate tampering).
    #[doc(hidden)]
    pub fn tamper_audit_raw(
        &self,
        seq: u64,
        edit: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), StoreError> {
        let key = seq.to_be_bytes();
        let mut bytes = self
            .audit
            .get(key)
            .map_err(io)?
            .ok_or(StoreError::NotFound {
                what: "audit record",
            })?
            .to_vec();
        edit(&mut bytes);
        self.audit.insert(key, bytes).map_err(io)?;
        self.durable()
    }

    /// Test hook: deletes audit record `seq` behind the chain's back.
    #[doc(hidden)]
    pub fn remove_audit_raw(&self, seq: u64) -> Result<(), StoreError> {
        self.audit.remove(seq.to_be_bytes()).map_err(io)?;
        self.durable()
    }

    /// Test hook: overwrites the store format marker.
    #[doc(hidden)]
    pub fn set_format_marker_raw(&self, format: u32) -> Result<(), StoreError> {
        self.meta
            .insert(KEY_FORMAT, &format.to_be_bytes())
            .map_err(io)?;
        self.durable()
    }

    fn get_decoded<T>(
        tree: &Tree,
        key: &[u8],
        decode: fn(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key).map_err(io)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(corrupt),
        }
    }
}

impl SledStore {
    /// Up to `limit` values of `tree` with keys after `after`, decoded, in key order.
    fn decoded_after<T>(
        tree: &Tree,
        after: Option<&str>,
        limit: usize,
        decode: fn(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, StoreError> {
        let entries = match after {
            None => tree.iter(),
            Some(key) => {
                let mut start = key.as_bytes().to_vec();
                start.push(0);
                tree.range(start..)
            }
        };
        entries
            .take(limit)
            .map(|entry| {
                let (_, value) = entry.map_err(io)?;
                decode(&value).map_err(corrupt)
            })
            .collect()
    }
}

impl Store for SledStore {
    fn applications(&self) -> Result<Vec<Application>, StoreError> {
        self.usable()?;
        Self::decoded_after(
            &self.applications,
            None,
            usize::MAX,
            codec::decode_application,
        )
    }

    fn activations_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Activation>, StoreError> {
        self.usable()?;
        Self::decoded_after(&self.activations, after, limit, codec::decode_activation)
    }

    fn nonces_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IssuedNonce>, StoreError> {
        self.usable()?;
        Self::decoded_after(&self.nonces, after, limit, codec::decode_nonce)
    }

    fn import_audit(&self, chain: &ChainId, records: &[AuditRecord]) -> Result<(), StoreError> {
        self.usable()?;
        if *chain != ChainId::embedded() {
            return Err(StoreError::Corrupt {
                what: format!(
                    "a sled store keeps one audit chain ({}), not {chain}",
                    ChainId::embedded()
                ),
            });
        }
        finish((&self.audit, &self.meta).transaction(|(audit_tree, meta)| {
            let mut head = head_in(meta)?;
            for rec in records {
                super::audit::check_import(chain, head, rec).map_err(abort)?;
                audit_tree.insert(&rec.seq.to_be_bytes(), codec::encode_audit(rec))?;
                head = ChainHead {
                    seq: rec.seq,
                    hash: rec.hash,
                };
            }
            meta.insert(KEY_AUDIT_HEAD, codec::encode_head(head.seq, &head.hash))?;
            Ok(())
        }))?;
        self.durable()
    }

    fn create_application(
        &self,
        app: &Application,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        self.usable()?;
        let value = codec::encode_application(app);
        finish(
            (
                &self.applications,
                &self.application_keys,
                &self.audit,
                &self.meta,
            )
                .transaction(|(apps, keys, audit_tree, meta)| {
                    if apps.get(app.id.as_bytes())?.is_some() {
                        return Err(abort(StoreError::AlreadyExists {
                            what: "application",
                        }));
                    }
                    for version in &app.versions {
                        if keys.get(version.application_key.as_bytes())?.is_some() {
                            return Err(abort(StoreError::AlreadyExists {
                                what: "application key",
                            }));
                        }
                        keys.insert(version.application_key.as_bytes(), app.id.as_bytes())?;
                    }
                    apps.insert(app.id.as_bytes(), value.clone())?;
                    maybe_append(meta, audit_tree, audit.as_ref())?;
                    Ok(())
                }),
        )?;
        self.durable()
    }

    fn add_application_version(
        &self,
        application_id: &str,
        version: ApplicationVersion,
        audit: Option<AuditDraft>,
    ) -> Result<Application, StoreError> {
        self.usable()?;
        let app = finish(
            (
                &self.applications,
                &self.application_keys,
                &self.audit,
                &self.meta,
            )
                .transaction(|(apps, keys, audit_tree, meta)| {
                    let Some(bytes) = apps.get(application_id.as_bytes())? else {
                        return Err(abort(StoreError::NotFound {
                            what: "application",
                        }));
                    };
                    let mut app =
                        codec::decode_application(&bytes).map_err(|e| abort(corrupt(e)))?;
                    if app.versions.iter().any(|v| v.id == version.id)
                        || keys.get(version.application_key.as_bytes())?.is_some()
                    {
                        return Err(abort(StoreError::AlreadyExists {
                            what: "application version",
                        }));
                    }
                    keys.insert(
                        version.application_key.as_bytes(),
                        application_id.as_bytes(),
                    )?;
                    app.versions.push(version.clone());
                    apps.insert(application_id.as_bytes(), codec::encode_application(&app))?;
                    maybe_append(meta, audit_tree, audit.as_ref())?;
                    Ok(app)
                }),
        )?;
        self.durable()?;
        Ok(app)
    }

    fn application_by_key(&self, application_key: &str) -> Result<Option<Application>, StoreError> {
        self.usable()?;
        match self
            .application_keys
            .get(application_key.as_bytes())
            .map_err(io)?
        {
            None => Ok(None),
            Some(id) => {
                let id = String::from_utf8(id.to_vec()).map_err(|_| StoreError::Corrupt {
                    what: "application key index holds a non-UTF-8 id".into(),
                })?;
                self.application(&id)
            }
        }
    }

    fn activation_by_code(
        &self,
        application_id: &str,
        code: &str,
    ) -> Result<Option<Activation>, StoreError> {
        self.usable()?;
        match self
            .activation_codes
            .get(code_key(application_id, code))
            .map_err(io)?
        {
            None => Ok(None),
            Some(id) => {
                let id = String::from_utf8(id.to_vec()).map_err(|_| StoreError::Corrupt {
                    what: "activation code index holds a non-UTF-8 id".into(),
                })?;
                self.activation(&id)
            }
        }
    }

    fn put_temporary_key(&self, key: &TemporaryKey) -> Result<(), StoreError> {
        self.usable()?;
        let value = codec::encode_temporary_key(key);
        let index = ecies_expiry_key(key.expires_at, TAG_TEMPORARY_KEY, &key.id);
        finish(
            (&self.temporary_keys, &self.ecies_expiry).transaction(|(keys, expiry)| {
                if keys.get(key.id.as_bytes())?.is_some() {
                    return Err(abort(StoreError::AlreadyExists {
                        what: "temporary key",
                    }));
                }
                keys.insert(key.id.as_bytes(), value.clone())?;
                expiry.insert(index.clone(), &[])?;
                Ok(())
            }),
        )?;
        self.durable()
    }

    fn temporary_key(&self, id: &str) -> Result<Option<TemporaryKey>, StoreError> {
        self.usable()?;
        Self::get_decoded(
            &self.temporary_keys,
            id.as_bytes(),
            codec::decode_temporary_key,
        )
    }

    fn remove_temporary_key(&self, id: &str) -> Result<bool, StoreError> {
        self.usable()?;
        let Some(key) = self.temporary_key(id)? else {
            return Ok(false);
        };
        let index = ecies_expiry_key(key.expires_at, TAG_TEMPORARY_KEY, id);
        finish(
            (&self.temporary_keys, &self.ecies_expiry).transaction(|(keys, expiry)| {
                keys.remove(id.as_bytes())?;
                expiry.remove(index.clone())?;
                Ok(())
            }),
        )?;
        self.durable()?;
        Ok(true)
    }

    fn register_replay(&self, key: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        self.usable()?;
        let index = ecies_expiry_key(expires_at, TAG_REPLAY, key);
        finish(
            (&self.ecies_replays, &self.ecies_expiry).transaction(|(replays, expiry)| {
                if replays.get(key.as_bytes())?.is_some() {
                    return Err(abort(StoreError::AlreadyExists {
                        what: "ECIES request",
                    }));
                }
                replays.insert(key.as_bytes(), &expires_at.unix_millis().to_be_bytes())?;
                expiry.insert(index.clone(), &[])?;
                Ok(())
            }),
        )?;
        self.durable()
    }

    fn prune_ecies(&self, expired_before: Timestamp, max: usize) -> Result<usize, StoreError> {
        self.usable()?;
        let mut doomed = Vec::new();
        for entry in self.ecies_expiry.iter().take(max) {
            let (key, _) = entry.map_err(io)?;
            let Some(expires_at) = expiry_of_key(&key) else {
                return Err(StoreError::Corrupt {
                    what: "ECIES expiry index key is short".into(),
                });
            };
            if expires_at >= expired_before || key.len() < 9 {
                break;
            }
            doomed.push(key);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        finish(
            (
                &self.ecies_replays,
                &self.temporary_keys,
                &self.ecies_expiry,
            )
                .transaction(|(replays, keys, expiry)| {
                    for key in &doomed {
                        match key[8] {
                            TAG_REPLAY => replays.remove(&key[9..])?,
                            _ => keys.remove(&key[9..])?,
                        };
                        expiry.remove(key)?;
                    }
                    Ok(())
                }),
        )?;
        self.durable()?;
        Ok(doomed.len())
    }

    fn application(&self, id: &str) -> Result<Option<Application>, StoreError> {
        self.usable()?;
        Self::get_decoded(&self.applications, id.as_bytes(), codec::decode_application)
    }

    fn add_master_key(
        &self,
        application_id: &str,
        key: MasterKeyRef,
        audit: Option<AuditDraft>,
    ) -> Result<Application, StoreError> {
        self.usable()?;
        let app = finish((&self.applications, &self.audit, &self.meta).transaction(
            |(apps, audit_tree, meta)| {
                let Some(bytes) = apps.get(application_id.as_bytes())? else {
                    return Err(abort(StoreError::NotFound {
                        what: "application",
                    }));
                };
                let mut app = codec::decode_application(&bytes).map_err(|e| abort(corrupt(e)))?;
                app.master_keys.insert(0, key.clone());
                apps.insert(application_id.as_bytes(), codec::encode_application(&app))?;
                maybe_append(meta, audit_tree, audit.as_ref())?;
                Ok(app)
            },
        ))?;
        self.durable()?;
        Ok(app)
    }

    fn insert_activation(
        &self,
        activation: &Activation,
        audit: Option<AuditDraft>,
    ) -> Result<Committed, StoreError> {
        self.usable()?;
        let stored = Activation {
            version: 1,
            ..activation.clone()
        };
        let value = codec::encode_activation(&stored);
        let code = stored
            .enrollment
            .activation_code
            .as_deref()
            .map(|code| code_key(&stored.application_id, code));
        let trees = (
            &self.activations,
            &self.activation_codes,
            &self.audit,
            &self.meta,
        );
        let audit_rec = finish(trees.transaction(|(acts, codes, audit_tree, meta)| {
            if acts.get(stored.id.as_bytes())?.is_some() {
                return Err(abort(StoreError::AlreadyExists { what: "activation" }));
            }
            if let Some(code) = &code {
                if codes.get(code.as_slice())?.is_some() {
                    return Err(abort(StoreError::AlreadyExists {
                        what: "activation code",
                    }));
                }
                codes.insert(code.as_slice(), stored.id.as_bytes())?;
            }
            acts.insert(stored.id.as_bytes(), value.clone())?;
            maybe_append(meta, audit_tree, audit.as_ref())
        }))?;
        self.durable()?;
        Ok(Committed {
            activation: stored,
            audit: audit_rec,
        })
    }

    fn activation(&self, id: &str) -> Result<Option<Activation>, StoreError> {
        self.usable()?;
        Self::get_decoded(&self.activations, id.as_bytes(), codec::decode_activation)
    }

    fn update_activation(
        &self,
        activation: &Activation,
        audit: Option<AuditDraft>,
    ) -> Result<Committed, StoreError> {
        self.usable()?;
        self.commit_activation(activation, None, audit)
    }

    fn commit_verification(&self, commit: VerificationCommit) -> Result<Committed, StoreError> {
        self.usable()?;
        self.commit_activation(
            &commit.activation,
            commit.consume_nonce.as_ref().map(|n| n.nonce.as_str()),
            Some(commit.audit),
        )
    }

    fn issue_nonce(
        &self,
        nonce: &IssuedNonce,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        self.usable()?;
        let value = codec::encode_nonce(nonce);
        let index = expiry_key(nonce.expires_at, &nonce.nonce);
        finish(
            (&self.nonces, &self.nonce_expiry, &self.audit, &self.meta).transaction(
                |(nonces, expiry, audit_tree, meta)| {
                    if nonces.get(nonce.nonce.as_bytes())?.is_some() {
                        return Err(abort(StoreError::AlreadyExists { what: "nonce" }));
                    }
                    nonces.insert(nonce.nonce.as_bytes(), value.clone())?;
                    expiry.insert(index.clone(), &[])?;
                    maybe_append(meta, audit_tree, audit.as_ref())?;
                    Ok(())
                },
            ),
        )?;
        // Not waited for (ARCHITECTURE.md, "An issued nonce is not waited for"): the next flush
        // covers it, started now in the background; any durable write after it covers it too.
        self.lazy.soon();
        Ok(())
    }

    fn nonce(&self, nonce: &str) -> Result<Option<IssuedNonce>, StoreError> {
        self.usable()?;
        Self::get_decoded(&self.nonces, nonce.as_bytes(), codec::decode_nonce)
    }

    fn prune_nonces(&self, expired_before: Timestamp, max: usize) -> Result<usize, StoreError> {
        self.usable()?;
        let mut doomed = Vec::new();
        for entry in self.nonce_expiry.iter().take(max) {
            let (key, _) = entry.map_err(io)?;
            let Some(expires_at) = expiry_of_key(&key) else {
                return Err(StoreError::Corrupt {
                    what: "nonce expiry index key is short".into(),
                });
            };
            if expires_at >= expired_before {
                break;
            }
            doomed.push(key);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        finish(
            (&self.nonces, &self.nonce_expiry).transaction(|(nonces, expiry)| {
                for key in &doomed {
                    nonces.remove(&key[8..])?;
                    expiry.remove(key)?;
                }
                Ok(())
            }),
        )?;
        self.durable()?;
        Ok(doomed.len())
    }

    fn put_credential(
        &self,
        credential: &IntegrationCredential,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        self.usable()?;
        let value = codec::encode_credential(credential);
        finish((&self.credentials, &self.audit, &self.meta).transaction(
            |(credentials, audit_tree, meta)| {
                credentials.insert(credential.client_token.as_bytes(), value.clone())?;
                maybe_append(meta, audit_tree, audit.as_ref())?;
                Ok(())
            },
        ))?;
        self.durable()
    }

    fn credential(&self, client_token: &str) -> Result<Option<IntegrationCredential>, StoreError> {
        self.usable()?;
        Self::get_decoded(
            &self.credentials,
            client_token.as_bytes(),
            codec::decode_credential,
        )
    }

    fn credentials(&self) -> Result<Vec<IntegrationCredential>, StoreError> {
        self.usable()?;
        self.credentials
            .iter()
            .map(|entry| {
                let (_, value) = entry.map_err(io)?;
                codec::decode_credential(&value).map_err(corrupt)
            })
            .collect()
    }

    fn remove_credential(
        &self,
        client_token: &str,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        self.usable()?;
        finish((&self.credentials, &self.audit, &self.meta).transaction(
            |(credentials, audit_tree, meta)| {
                if credentials.remove(client_token.as_bytes())?.is_none() {
                    return Err(abort(StoreError::NotFound {
                        what: "integration credential",
                    }));
                }
                maybe_append(meta, audit_tree, audit.as_ref())?;
                Ok(())
            },
        ))?;
        self.durable()
    }

    fn key_census(&self) -> Result<super::KeyCensus, StoreError> {
        self.usable()?;
        let mut census = super::KeyCensus::default();
        for entry in self.applications.iter() {
            let (_, bytes) = entry.map_err(io)?;
            let app = codec::decode_application(&bytes).map_err(corrupt)?;
            census
                .master_key_ids
                .extend(app.master_keys.iter().map(|k| k.key_id));
        }
        for entry in self.activations.iter() {
            let (_, bytes) = entry.map_err(io)?;
            let activation = codec::decode_activation(&bytes).map_err(corrupt)?;
            if activation.wrapped_server_private_key.is_some() {
                census.wrapped_activation_keys += 1;
            }
        }
        census.wrapped_temporary_keys = self.temporary_keys.len() as u64;
        census.master_key_ids.sort();
        Ok(census)
    }

    fn storage_keys(&self) -> Result<Option<(KeyId, KeyId)>, StoreError> {
        self.usable()?;
        let Some(bytes) = self.meta.get(KEY_STORAGE_KEYS).map_err(io)? else {
            return Ok(None);
        };
        let raw: [u8; 32] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            what: "storage key ids are not 32 bytes".into(),
        })?;
        let (kek, dek) = raw.split_at(16);
        let id = |half: &[u8]| {
            KeyId::from_bytes(half.try_into().expect("split_at(16) of 32 bytes gives 16"))
        };
        Ok(Some((id(kek), id(dek))))
    }

    fn set_storage_keys(&self, kek: KeyId, dek: KeyId) -> Result<(), StoreError> {
        self.usable()?;
        let value = [*kek.as_bytes(), *dek.as_bytes()].concat();
        let swapped = self
            .meta
            .compare_and_swap(KEY_STORAGE_KEYS, None as Option<&[u8]>, Some(value))
            .map_err(io)?;
        if swapped.is_err() {
            return Err(StoreError::AlreadyExists {
                what: "storage key ids",
            });
        }
        self.durable()
    }

    fn audit_key(&self) -> Result<Option<KeyId>, StoreError> {
        self.usable()?;
        let Some(bytes) = self.meta.get(KEY_AUDIT_KEY).map_err(io)? else {
            return Ok(None);
        };
        KeyId::from_slice(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                what: "audit key id is not 16 bytes".into(),
            })
    }

    fn set_audit_key(&self, id: KeyId) -> Result<(), StoreError> {
        self.usable()?;
        let swapped = self
            .meta
            .compare_and_swap(
                KEY_AUDIT_KEY,
                None as Option<&[u8]>,
                Some(id.as_bytes().as_slice()),
            )
            .map_err(io)?;
        if swapped.is_err() {
            return Err(StoreError::AlreadyExists {
                what: "audit key id",
            });
        }
        self.durable()
    }

    fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.usable()?;
        let mut key = checkpoint.chain.as_str().as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&checkpoint.seq.to_be_bytes());
        self.checkpoints
            .insert(key, codec::encode_checkpoint(checkpoint))
            .map_err(io)?;
        self.durable()
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.usable()?;
        self.checkpoints
            .iter()
            .map(|entry| {
                let (_, bytes) = entry.map_err(io)?;
                codec::decode_checkpoint(&bytes).map_err(corrupt)
            })
            .collect()
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.usable()?;
        let now = Timestamp::now().unix_millis().to_be_bytes();
        self.meta.insert(KEY_PROBE, &now).map_err(io)?;
        self.durable()
    }

    fn append_audit(&self, draft: AuditDraft) -> Result<AuditRecord, StoreError> {
        self.usable()?;
        let rec = finish(
            (&self.audit, &self.meta)
                .transaction(|(audit_tree, meta)| append_in(meta, audit_tree, &draft)),
        )?;
        self.durable()?;
        Ok(rec)
    }

    fn audit_chain(&self) -> ChainId {
        ChainId::embedded()
    }

    fn audit_chains(&self) -> Result<Vec<ChainId>, StoreError> {
        self.usable()?;
        Ok(vec![ChainId::embedded()])
    }

    fn audit_chain_entries(
        &self,
        chain: &ChainId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.usable()?;
        only_chain(chain)?;
        self.audit
            .range(from_seq.to_be_bytes()..)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(io)?;
                let raw: [u8; 8] = key.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "audit key is not 8 bytes".into(),
                })?;
                Ok(codec::audit_entry(u64::from_be_bytes(raw), &value))
            })
            .collect()
    }

    fn audit_chain_head(&self, chain: &ChainId) -> Result<ChainHead, StoreError> {
        self.usable()?;
        only_chain(chain)?;
        match self.meta.get(KEY_AUDIT_HEAD).map_err(io)? {
            None => Ok(ChainHead::EMPTY),
            Some(bytes) => {
                let (seq, hash) = codec::decode_head(&bytes).map_err(corrupt)?;
                Ok(ChainHead { seq, hash })
            }
        }
    }
}

impl SledStore {
    /// Compare-and-swap of an activation, with an optional nonce consumption and audit record, as one
    /// transaction, then waits for durability.
    fn commit_activation(
        &self,
        next: &Activation,
        consume_nonce: Option<&str>,
        audit: Option<AuditDraft>,
    ) -> Result<Committed, StoreError> {
        let stored = Activation {
            version: next.version.wrapping_add(1),
            ..next.clone()
        };
        let value = codec::encode_activation(&stored);
        let consumed_at = audit.as_ref().map_or_else(Timestamp::now, |d| d.time);
        let trees = (&self.activations, &self.nonces, &self.audit, &self.meta);
        let audit_rec = finish(trees.transaction(|(acts, nonces, audit_tree, meta)| {
            let Some(current) = acts.get(next.id.as_bytes())? else {
                return Err(abort(StoreError::NotFound { what: "activation" }));
            };
            let current = codec::decode_activation(&current).map_err(|e| abort(corrupt(e)))?;
            if current.version != next.version {
                return Err(abort(StoreError::Conflict(Conflict::StaleVersion)));
            }
            if let Some(nonce) = consume_nonce {
                let Some(bytes) = nonces.get(nonce.as_bytes())? else {
                    return Err(abort(StoreError::NotFound { what: "nonce" }));
                };
                let mut issued = codec::decode_nonce(&bytes).map_err(|e| abort(corrupt(e)))?;
                if issued.consumed_at.is_some() {
                    return Err(abort(StoreError::Conflict(Conflict::NonceConsumed)));
                }
                if !issued.is_for(next) {
                    return Err(abort(StoreError::Conflict(Conflict::NonceOwner)));
                }
                issued.consumed_at = Some(consumed_at);
                nonces.insert(nonce.as_bytes(), codec::encode_nonce(&issued))?;
            }
            acts.insert(next.id.as_bytes(), value.clone())?;
            maybe_append(meta, audit_tree, audit.as_ref())
        }))?;
        self.durable()?;
        Ok(Committed {
            activation: stored,
            audit: audit_rec,
        })
    }
}
