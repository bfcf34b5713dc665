//! [`PgStore`]: the [`Store`] on a PostgreSQL database shared by several service instances. The only code
//! of the crate that knows the PostgreSQL client (`tokio-postgres`, pooled by `deadpool-postgres`).
//!
//! **Sync trait, async client.** The trait is synchronous and is called from tokio worker threads and
//! from blocking threads alike, so a method may not `block_on` the caller's runtime (that panics inside a
//! runtime). A `PgStore` therefore owns a small multi-threaded tokio runtime ([`RUNTIME_THREADS`]
//! workers) that owns the connection pool and drives every connection. Each trait method spawns its
//! async body on that runtime and waits for the answer on a one-slot `crossbeam-channel`; the caller's
//! thread blocks exactly as it would on sled's `fsync`, and the caller's runtime is never entered. The
//! synchronous `postgres` crate is no way out: it drives its connection with `block_on` on the calling
//! thread, which panics on a tokio worker thread. Dropping the store shuts its runtime down without
//! waiting, so it may be dropped anywhere, even on a runtime thread. The calls of the request path are
//! also offered as futures ([`RemoteStore`]): the same body spawned on the same runtime, its
//! `JoinHandle` awaited by the request's task instead of a thread blocking on the channel, so a
//! round trip to the database holds no service thread.
//!
//! **Layout.** Each record is stored as its [`super::codec`] encoding in a `bytea` column — the same bytes
//! sled stores — beside copies of the few fields the database must index, compare or lock on
//! (`activations.version`, `nonces.expires_at` and `consumed_at`). The codec stays the one definition of
//! a record's layout and of the bytes the audit chain hashes; the columns are derived from the value being
//! written in the same statement. Tables and their reasons: `postgres/migrations/0001_initial.sql`.
//!
//! **Guarantees, as sled's.** Every write is one transaction committed with the server's default
//! `synchronous_commit` (on), so it is durable when the method returns — except `issue_nonce`, whose
//! transaction sets `synchronous_commit` off (`SET LOCAL`): its commit returns before the WAL flush
//! (the WAL writer flushes it within `3 × wal_writer_delay`, and any later synchronous commit flushes
//! the WAL past it), so a server crash can lose an answered nonce, never half of one, and never a
//! verification that consumed it. `commit_verification` (and `update_activation`) is one statement,
//! and so one transaction: the schema's `commit_activation` function
//! (`postgres/migrations/0004_commit_activation.sql`) makes the compare-and-swap
//! `UPDATE … WHERE version = $read` on the activation row (which also serializes concurrent commits of
//! one activation), consumes the nonce with a `consumed_at IS NULL` guard (its owner checked here, on
//! the nonce as the caller read it: an owner never changes), and appends the audit record only if the
//! lane's stored head is the one the record was sealed on. A step that matches no row raises, which
//! rolls the whole statement back; the question that tells a missing row from a changed one is asked
//! only then. A connection lost mid-way is [`StoreError::Io`] with nothing half-written, or, once the
//! `COMMIT` or the one statement was sent and got no answer, [`StoreError::OutcomeUnknown`] (the write
//! may have landed); a one-statement write abandoned at the operation's timeout is cancelled
//! ([`Unanswered`]), so one still waiting for a row lock does not land later. The pool drops broken
//! connections and opens new ones when the server is back.
//!
//! **Round trips.** A verification is two: its reads (the activation and the nonce, pipelined), then
//! the one statement. `issue_nonce` is pipelined ([`Pipeline`]): statements whose inputs do not depend
//! on one another's answers are sent together and answered in order (`BEGIN`, the insert and the lane's
//! head lock; then the audit record, the head's advance and `COMMIT`). The audit record is always
//! sealed here, so the chain's bytes are the codec's. The other writes run one statement at a time.
//!
//! **Audit chains and lanes.** Each `PgStore` appends to chains of its own (its [`ChainId`], given to
//! [`PgStore::open`], and the lanes derived from it, [`PostgresSettings::audit_lanes`]), so instances
//! never wait on one another's audit appends; [`super::verify_audit_chain`] walks every chain. An
//! audited write leases one of the handle's lanes ([`Lanes`]) for the whole write: the first no other
//! write of this handle holds (lane 0 first, so a lone writer stays on lane 0), waiting only when every
//! lane is busy. The handle remembers each lane's head, so the one-statement commit seals its record
//! without reading the head first. That memory is only a hint: every append is conditioned on the
//! stored head (a transaction locks the head row; the one statement compares it), so a wrong hint (a
//! transaction that appended and then did not commit, a CLI command run with the instance's
//! configuration, two processes given one chain id) costs a re-read and a retry, never a missing or
//! forked record. The head row is held through the commit (the WAL flush), so one lane commits one
//! write per flush, and PostgreSQL flushes the concurrent commits of the lanes together.
//!
//! **Migrations** run at open (and via [`migrate`]) inside one transaction holding a transaction-scoped
//! advisory lock, so two instances starting at once do not race; a schema newer than [`SCHEMA_VERSION`]
//! is refused with [`StoreError::NewerFormat`].

mod settings;
mod tls;

use std::future::Future;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, NoTls, Row, Statement};

use super::audit::{AuditDraft, AuditEntry, AuditRecord, ChainHead, ChainId, Checkpoint};
use super::codec::{self, DecodeError};
use super::records::{
    Activation, Application, ApplicationVersion, IntegrationCredential, IssuedNonce, MasterKeyRef,
    TemporaryKey,
};
use super::{
    Committed, Conflict, RemoteStore, Store, StoreError, StoreFuture, VerificationCommit,
    VerificationReads,
};
use crate::model::{KeyId, Timestamp};

pub use settings::{
    DATABASE_URL_ENV, PostgresSettings, PostgresSettingsError, RawPostgresSettings,
};
use tls::DatabaseTls;

/// Worker threads of each store's private runtime: the work on them is only driving sockets.
pub(super) const RUNTIME_THREADS: usize = 2;

/// How long a caller waits for a pooled connection before [`StoreError::Io`].
const POOL_WAIT: Duration = Duration::from_secs(10);

/// How long one store operation may take in all: then a read fails with [`StoreError::Io`] and a
/// write with [`StoreError::OutcomeUnknown`] (its connection closes, which rolls its transaction
/// back unless its `COMMIT` was already sent).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The record reads the request path makes, shared by the blocking and the [`RemoteStore`] calls.
const SELECT_APPLICATION: &str = "SELECT record FROM applications WHERE id = $1";
const SELECT_ACTIVATION: &str = "SELECT record FROM activations WHERE id = $1";
const SELECT_NONCE: &str = "SELECT record FROM nonces WHERE nonce = $1";
const SELECT_CREDENTIAL: &str = "SELECT record FROM credentials WHERE client_token = $1";

/// A schema change: applied in order, once, and recorded in `schema_version`.
struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration of this build, oldest first. Never edit a released one: add the next.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("postgres/migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "activation_by_code",
        sql: include_str!("postgres/migrations/0002_activation_by_code.sql"),
    },
    Migration {
        version: 3,
        name: "audit_checkpoints",
        sql: include_str!("postgres/migrations/0003_audit_checkpoints.sql"),
    },
    Migration {
        version: 4,
        name: "commit_activation",
        sql: include_str!("postgres/migrations/0004_commit_activation.sql"),
    },
];

/// The schema version this build writes and reads. A database with a higher one is refused.
pub const SCHEMA_VERSION: u32 = 4;

/// The key of the transaction-scoped advisory lock that serializes migrations (ASCII "offsgnr1").
const MIGRATION_LOCK: i64 = 0x6f66_6673_676e_7231;

/// What [`migrate`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SchemaMigration {
    /// The schema version found (0 for an empty database).
    pub from: u32,
    /// The schema version now.
    pub to: u32,
}

fn io(detail: impl Into<String>) -> StoreError {
    StoreError::Io {
        detail: detail.into(),
    }
}

/// A client error in the store's words. The messages name the failure (with the server's SQLSTATE
/// when it refused the statement: a code, never a value), never the password.
fn db(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            StoreError::AlreadyExists { what: "record" }
        }
        Some(code) => io(format!("PostgreSQL: {e} (SQLSTATE {})", code.code())),
        // No answer from the server: the client's own words and their causes (a refused TLS
        // certificate says why only in its cause).
        None => {
            let mut detail = format!("PostgreSQL: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                detail.push_str(&format!(": {c}"));
                cause = c.source();
            }
            io(detail)
        }
    }
}

/// A failed `COMMIT`: refused by the server (it answered with a SQLSTATE), nothing was written; lost
/// on the way (no answer: the connection broke), the transaction may or may not have committed.
fn commit_failed(e: tokio_postgres::Error) -> StoreError {
    if e.code().is_some() {
        db(e)
    } else {
        StoreError::OutcomeUnknown {
            detail: format!("PostgreSQL COMMIT got no answer: {e}"),
        }
    }
}

fn pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db(e),
        other => io(format!("PostgreSQL connection pool: {other}")),
    }
}

fn corrupt(e: DecodeError) -> StoreError {
    StoreError::Corrupt { what: e.0 }
}

/// A `u64` the store keeps in a `bigint` column.
fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: format!("{what} {value} does not fit PostgreSQL's bigint"),
    })
}

/// A `bigint` column read back as the `u64` it was written from.
fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: format!("{what} {value} is negative"),
    })
}

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        what: format!("{what} is not 32 bytes"),
    })
}

/// A private runtime and the pool it drives.
struct Engine {
    /// `Some` until drop, which shuts it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// How a cancel request reaches the server: as the pool's connections do.
    canceller: Canceller,
    /// How long one operation may take ([`OPERATION_TIMEOUT`] unless a test shortened it).
    timeout: Duration,
}

/// Sends a cancel request for a statement over a connection of its own, with TLS when the pool's
/// connections use it (under `sslmode=require` the client sends no cancel request without TLS).
#[derive(Clone, Debug)]
enum Canceller {
    Plain,
    Tls(DatabaseTls),
}

impl Canceller {
    async fn cancel(self, token: CancelToken) {
        // Best effort: the statement may have ended, or the server may be unreachable.
        let _ = match self {
            Self::Plain => token.cancel_query(NoTls).await,
            Self::Tls(tls) => token.cancel_query(tls).await,
        };
    }
}

impl Engine {
    fn start(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("pg-store")
            .enable_all()
            .build()
            .map_err(|e| io(format!("starting the PostgreSQL store's runtime: {e}")))?;
        // A connection whose socket died is dropped; a live one is reused without a round trip.
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let (manager, canceller) = match settings.tls() {
            None => (
                Manager::from_config(settings.connect_config(), NoTls, recycling()),
                Canceller::Plain,
            ),
            Some(tls) => (
                Manager::from_config(settings.connect_config(), tls.clone(), recycling()),
                Canceller::Tls(tls.clone()),
            ),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size())
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| io(format!("building the PostgreSQL connection pool: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            pool,
            canceller,
            timeout: OPERATION_TIMEOUT,
        })
    }

    /// Runs `body` (a read) on the store's runtime and blocks the calling thread until it answers;
    /// past the timeout, [`StoreError::Io`].
    fn run<T, F>(&self, body: impl FnOnce(Pool) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.run_or(body, read_timed_out)
    }

    /// The record the query `sql` selects with `$1` = `key`, decoded; `None` when no row matches.
    fn get<T: Send + 'static>(
        &self,
        sql: &'static str,
        key: &str,
        decode: fn(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, StoreError> {
        let key = key.to_owned();
        self.run(move |pool| async move { get_decoded(&pool, sql, key, decode).await })
    }

    /// As [`Engine::get`], answered as a future ([`Engine::spawn`]).
    fn get_later<T: Send + 'static>(
        &self,
        sql: &'static str,
        key: &str,
        decode: fn(&[u8]) -> Result<T, DecodeError>,
    ) -> StoreFuture<Option<T>> {
        let key = key.to_owned();
        self.spawn(
            move |pool| async move { get_decoded(&pool, sql, key, decode).await },
            read_timed_out,
        )
    }

    /// Starts `body` on the store's runtime and returns its answer as a future, which the caller
    /// awaits from its own runtime; past the timeout, `timed_out`. Dropping the future leaves the
    /// work running to its end, as a thread blocked in [`Engine::run`] that gives up would.
    fn spawn<T, F>(
        &self,
        body: impl FnOnce(Pool) -> F,
        timed_out: fn(String) -> StoreError,
    ) -> StoreFuture<T>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let task = self
            .handle
            .spawn(bounded(self.timeout, body(self.pool.clone()), timed_out));
        Box::pin(async move {
            task.await
                .map_err(|_| io("the PostgreSQL store's runtime stopped before answering"))?
        })
    }

    /// Up to `limit` records of `table` in the order of its `key` column, after `after`, decoded.
    fn page<T: Send + 'static>(
        &self,
        table: &'static str,
        key: &'static str,
        after: Option<&str>,
        limit: usize,
        decode: fn(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, StoreError> {
        let after = after.map(str::to_owned);
        self.run(
            move |pool| async move { decoded_after(&pool, table, key, after, limit, decode).await },
        )
    }

    /// As [`Engine::run`], for a write: past the timeout its `COMMIT` may have been sent and may
    /// still land, so the answer is [`StoreError::OutcomeUnknown`], never a plain failure.
    fn write<T, F>(&self, body: impl FnOnce(Pool) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.run_or(body, write_timed_out)
    }

    fn run_or<T, F>(
        &self,
        body: impl FnOnce(Pool) -> F,
        timed_out: fn(String) -> StoreError,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let work = bounded(self.timeout, body(self.pool.clone()), timed_out);
        self.handle.spawn(async move {
            // The caller may be gone (its thread panicked); nothing to tell then.
            let _ = tx.send(work.await);
        });
        rx.recv()
            .map_err(|_| io("the PostgreSQL store's runtime stopped before answering"))?
    }
}

/// `work`, or `timed_out` once it has taken longer than `timeout`.
async fn bounded<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, StoreError>>,
    timed_out: fn(String) -> StoreError,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(timed_out(format!(
                "PostgreSQL operation took longer than {timeout:?}"
            )))
        })
}

/// A read past its time: nothing was changed, so a plain failure.
fn read_timed_out(detail: String) -> StoreError {
    StoreError::Io { detail }
}

/// A write past its time: its `COMMIT` may have been sent and may still land.
fn write_timed_out(detail: String) -> StoreError {
    StoreError::OutcomeUnknown { detail }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Applies every pending migration in one transaction under the migration lock.
async fn migrate_with(pool: &Pool) -> Result<SchemaMigration, StoreError> {
    let mut client = pool.get().await.map_err(self::pool)?;
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db)?;
    let found: Option<i32> = tx
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(db)?
        .get(0);
    let from = u32::try_from(found.unwrap_or(0)).map_err(|_| StoreError::Corrupt {
        what: "schema_version holds a negative version".into(),
    })?;
    if from > SCHEMA_VERSION {
        return Err(StoreError::NewerFormat {
            found: from,
            supported: SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > from) {
        tx.batch_execute(migration.sql).await.map_err(|e| {
            io(format!(
                "PostgreSQL migration {} ({}): {e}",
                migration.version, migration.name
            ))
        })?;
        let version = i32::try_from(migration.version).map_err(|_| io("migration number"))?;
        tx.execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            &[&version, &migration.name],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(SchemaMigration {
        from,
        to: SCHEMA_VERSION,
    })
}

/// Brings the database's schema to [`SCHEMA_VERSION`] (for `offline-signer store migrate`); safe to run
/// while instances are up and from several processes at once. [`StoreError::NewerFormat`] if the database
/// was migrated by a newer build.
pub fn migrate(settings: &PostgresSettings) -> Result<SchemaMigration, StoreError> {
    let engine = Engine::start(&settings.with_pool_size(1))?;
    engine.run(|pool| async move { migrate_with(&pool).await })
}

/// The store on PostgreSQL. Cheap to share behind an `Arc`; all methods take `&self` and block the
/// calling thread until the database answers.
pub struct PgStore {
    engine: Engine,
    chain: ChainId,
    /// Every lane (lane 0, `chain`, first), leased to audited writes.
    lanes: std::sync::Arc<Lanes>,
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("chain", &self.chain)
            .field("lanes", &self.lanes.ids.len())
            .finish_non_exhaustive()
    }
}

/// A transaction of the pool (the statement-caching wrapper).
type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// One of this handle's audit lanes, and the head this handle last wrote to it (`None`: unknown, read
/// it from the database). The head is a hint: every append is conditioned on the stored head, so a
/// wrong hint costs a retry, never a fork.
#[derive(Debug)]
struct Lane {
    chain: String,
    head: Option<ChainHead>,
}

/// A lane leased for one audited write, held until the write has ended (committed or rolled back).
type LaneLease = tokio::sync::OwnedMutexGuard<Lane>;

/// This handle's audit lanes. An audited write leases one for the whole write: the first one no
/// other write of this handle holds (lane 0 first, so a lone writer stays on lane 0), or, when every
/// lane is held, the next in turn once it is free. Lanes belong to one instance (its chain id), so a
/// lease is the only claim on a lane that matters in practice; the database's row lock (transactions)
/// or head condition ([`COMMIT_ACTIVATION`]) is what keeps a chain linear even if two processes were
/// given the same id.
#[derive(Debug)]
struct Lanes {
    /// Every lane's chain id, lane 0 first.
    ids: Vec<ChainId>,
    lanes: Vec<std::sync::Arc<tokio::sync::Mutex<Lane>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Lanes {
    fn new(ids: Vec<ChainId>) -> Self {
        Self {
            lanes: ids
                .iter()
                .map(|chain| {
                    std::sync::Arc::new(tokio::sync::Mutex::new(Lane {
                        chain: chain.as_str().to_owned(),
                        head: None,
                    }))
                })
                .collect(),
            ids,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A lane for one audited write: the first free one in lane order, else the next in turn once
    /// it is free.
    async fn lease(&self) -> Result<LaneLease, StoreError> {
        for lane in &self.lanes {
            if let Ok(lease) = std::sync::Arc::clone(lane).try_lock_owned() {
                return Ok(lease);
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len().max(1);
        let lane = self.lanes.get(turn).ok_or(StoreError::NotFound {
            what: "audit chain",
        })?;
        Ok(std::sync::Arc::clone(lane).lock_owned().await)
    }

    /// A lease when `audit` has a record to append.
    async fn lease_for(&self, audit: &Option<AuditDraft>) -> Result<Option<LaneLease>, StoreError> {
        match audit {
            Some(_) => self.lease().await.map(Some),
            None => Ok(None),
        }
    }
}

/// Reads a lane's head (`FOR UPDATE` in [`LOCK_HEAD`], plain in [`READ_HEAD`]): `head_seq, head_hash`.
const LOCK_HEAD: &str =
    "SELECT head_seq, head_hash FROM audit_chains WHERE chain_id = $1 FOR UPDATE";
const READ_HEAD: &str = "SELECT head_seq, head_hash FROM audit_chains WHERE chain_id = $1";
/// Links a sealed record into its chain: `chain_id, seq, record`.
const APPEND_RECORD: &str = "INSERT INTO audit_records (chain_id, seq, record) VALUES ($1, $2, $3)";
/// Moves a chain's head to the record just appended: `chain_id, head_seq, head_hash`.
const ADVANCE_HEAD: &str =
    "UPDATE audit_chains SET head_seq = $2, head_hash = $3 WHERE chain_id = $1";

/// A lane's head from a row of [`LOCK_HEAD`] or [`READ_HEAD`] (none: the lane's row is missing).
fn head_of(row: Option<Row>) -> Result<ChainHead, StoreError> {
    let row = row.ok_or(StoreError::NotFound {
        what: "audit chain",
    })?;
    Ok(ChainHead {
        seq: to_u64(row.get(0), "audit chain head")?,
        hash: hash32(row.get(1), "audit chain head hash")?,
    })
}

impl Lane {
    /// `rec` was appended to this lane (or is about to be, by a transaction that may still fail).
    fn wrote(&mut self, rec: &AuditRecord) {
        self.head = Some(ChainHead {
            seq: rec.seq,
            hash: rec.hash,
        });
    }

    /// `draft` sealed as the record after `head`, which becomes the lane's head hint.
    fn seal_on(&mut self, head: ChainHead, draft: AuditDraft) -> AuditRecord {
        let rec = draft.seal(head.seq + 1, head.hash);
        self.wrote(&rec);
        rec
    }
}

/// Appends `draft` to the leased `lane` inside `tx`: locks the lane's head row, links the record to it
/// and moves the head. The last step of every audited transaction, so the head row is held only until
/// the commit.
async fn append_in(
    tx: &Tx<'_>,
    lane: &mut Lane,
    draft: AuditDraft,
) -> Result<AuditRecord, StoreError> {
    let lock = tx.prepare_cached(LOCK_HEAD).await.map_err(db)?;
    let head = head_of(tx.query_opt(&lock, &[&lane.chain]).await.map_err(db)?)?;
    let rec = lane.seal_on(head, draft);
    let seq = to_i64(rec.seq, "audit seq")?;
    let insert = tx.prepare_cached(APPEND_RECORD).await.map_err(db)?;
    tx.execute(&insert, &[&lane.chain, &seq, &codec::encode_audit(&rec)])
        .await
        .map_err(db)?;
    let advance = tx.prepare_cached(ADVANCE_HEAD).await.map_err(db)?;
    tx.execute(&advance, &[&lane.chain, &seq, &rec.hash.as_slice()])
        .await
        .map_err(db)?;
    Ok(rec)
}

/// [`append_in`] when there is a record to append (then `lane` is the lease [`Lanes::lease_for`] took
/// for it).
async fn maybe_append(
    tx: &Tx<'_>,
    lane: &mut Option<LaneLease>,
    draft: Option<AuditDraft>,
) -> Result<Option<AuditRecord>, StoreError> {
    match (draft, lane.as_deref_mut()) {
        (Some(draft), Some(lane)) => append_in(tx, lane, draft).await.map(Some),
        (Some(_), None) => Err(io("an audit record without a lane to append it to")),
        (None, _) => Ok(None),
    }
}

/// Reads application `id` in `tx` and locks its row until the commit.
async fn lock_application(tx: &Tx<'_>, id: &str) -> Result<Application, StoreError> {
    let lock = tx
        .prepare_cached("SELECT record FROM applications WHERE id = $1 FOR UPDATE")
        .await
        .map_err(db)?;
    let Some(row) = tx.query_opt(&lock, &[&id]).await.map_err(db)? else {
        return Err(StoreError::NotFound {
            what: "application",
        });
    };
    codec::decode_application(row.get(0)).map_err(corrupt)
}

/// Writes application `id` back in `tx` (its row locked by [`lock_application`]).
async fn save_application(tx: &Tx<'_>, id: &str, app: &Application) -> Result<(), StoreError> {
    let update = tx
        .prepare_cached("UPDATE applications SET record = $2 WHERE id = $1")
        .await
        .map_err(db)?;
    tx.execute(&update, &[&id, &codec::encode_application(app)])
        .await
        .map_err(db)?;
    Ok(())
}

/// Indexes one application key in `tx`; [`StoreError::AlreadyExists`] if any application has it.
async fn insert_application_key(
    tx: &Tx<'_>,
    application_key: &str,
    application_id: &str,
) -> Result<(), StoreError> {
    insert_new(
        tx,
        "INSERT INTO application_keys (application_key, application_id) VALUES ($1, $2) \
         ON CONFLICT (application_key) DO NOTHING",
        &[&application_key, &application_id],
        "application key",
    )
    .await
}

/// Reads one `record` column by key and decodes it.
async fn get_decoded<T>(
    pool: &Pool,
    sql: &'static str,
    key: String,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<Option<T>, StoreError> {
    let client = pool.get().await.map_err(self::pool)?;
    let st = client.prepare_cached(sql).await.map_err(db)?;
    match client.query_opt(&st, &[&key]).await.map_err(db)? {
        None => Ok(None),
        Some(row) => decode(row.get(0)).map(Some).map_err(corrupt),
    }
}

/// The activation `activation_id` and, for `Some`, the nonce `nonce`: two statements on one
/// connection, sent together and answered in one round trip.
async fn verification_reads(
    pool: &Pool,
    activation_id: String,
    nonce: Option<String>,
) -> Result<VerificationReads, StoreError> {
    let client = pool.get().await.map_err(self::pool)?;
    let activation = async {
        let st = client.prepare_cached(SELECT_ACTIVATION).await.map_err(db)?;
        let row = client.query_opt(&st, &[&activation_id]).await.map_err(db)?;
        row.map(|r| codec::decode_activation(r.get(0)))
            .transpose()
            .map_err(corrupt)
    };
    let issued = async {
        let Some(nonce) = &nonce else {
            return Ok(None);
        };
        let st = client.prepare_cached(SELECT_NONCE).await.map_err(db)?;
        let row = client.query_opt(&st, &[nonce]).await.map_err(db)?;
        row.map(|r| codec::decode_nonce(r.get(0)))
            .transpose()
            .map_err(corrupt)
    };
    let (activation, nonce) = tokio::try_join!(activation, issued)?;
    Ok(VerificationReads { activation, nonce })
}

/// The parameters of one statement.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The row count of an `INSERT … ON CONFLICT DO NOTHING`: none inserted means the row was there
/// already, [`StoreError::AlreadyExists`] naming `what`.
fn inserted(rows: u64, what: &'static str) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::AlreadyExists { what })
    } else {
        Ok(())
    }
}

/// Runs the `INSERT … ON CONFLICT DO NOTHING` `sql` on `client` (a pooled connection or a
/// transaction); [`StoreError::AlreadyExists`] naming `what` if the row was there already.
async fn insert_new<C: GenericClient>(
    client: &C,
    sql: &str,
    params: Params<'_>,
    what: &'static str,
) -> Result<(), StoreError> {
    let st = client.prepare_cached(sql).await.map_err(db)?;
    inserted(client.execute(&st, params).await.map_err(db)?, what)
}

/// A transaction opened by hand on a pooled connection, so that `BEGIN` travels with the first
/// statements and `COMMIT` with the last: tokio-postgres pipelines the statements whose futures are
/// polled together (each is sent on its first poll, in poll order, and answered in order), so a
/// round of them costs one round trip. Statements run in the order sent; one that fails aborts the
/// transaction, every later one then fails with "current transaction is aborted" and a later
/// `COMMIT` rolls back, so a round's answers are read in order and the first failure is the result.
///
/// The connection goes back to the pool only when the transaction has ended (committed, or rolled
/// back by the server); dropped otherwise (an error path that could not roll back, the operation's
/// timeout), the connection leaves the pool and closes, and PostgreSQL rolls the transaction back.
struct Pipeline {
    conn: Option<Object>,
}

impl Pipeline {
    /// A pooled connection to open the transaction on (its `BEGIN` is the caller's first statement).
    async fn checkout(pool: &Pool) -> Result<Self, StoreError> {
        Ok(Self {
            conn: Some(pool.get().await.map_err(self::pool)?),
        })
    }

    fn conn(&self) -> Result<&Object, StoreError> {
        self.conn
            .as_ref()
            .ok_or_else(|| io("the PostgreSQL transaction has no connection"))
    }

    /// The transaction has ended: the connection goes back to the pool.
    fn ended(mut self) {
        drop(self.conn.take());
    }

    /// Rolls the transaction back. When that fails the connection is closed instead, which rolls
    /// back too; the caller's error is what it reports either way.
    async fn rollback(self) {
        let rolled_back = match &self.conn {
            Some(conn) => conn.batch_execute("ROLLBACK").await.is_ok(),
            None => return,
        };
        if rolled_back {
            self.ended();
        }
    }

    /// The last round: the audit record `append` (with its chain id) and its head's advance, then
    /// `COMMIT`, in one round trip. The first failure in the order sent is the answer: one the server
    /// refused (a SQLSTATE) aborted the transaction and so turned the `COMMIT` into a rollback
    /// (nothing written); one without an answer (the connection broke) leaves the `COMMIT`'s fate
    /// unknown ([`StoreError::OutcomeUnknown`]). A statement that could not even be sent (its
    /// parameters do not encode) keeps the `COMMIT` from being sent at all.
    async fn commit_with(self, append: Option<(&str, &AuditRecord)>) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let (insert, advance) = match append {
            Some(_) => (
                Some(conn.prepare_cached(APPEND_RECORD).await.map_err(db)?),
                Some(conn.prepare_cached(ADVANCE_HEAD).await.map_err(db)?),
            ),
            None => (None, None),
        };
        let (chain, seq, record, hash) = match append {
            Some((chain, rec)) => (
                chain,
                to_i64(rec.seq, "audit seq")?,
                codec::encode_audit(rec),
                rec.hash.as_slice(),
            ),
            None => ("", 0, Vec::new(), &[][..]),
        };
        let record_params: [&(dyn ToSql + Sync); 3] = [&chain, &seq, &record];
        let head_params: [&(dyn ToSql + Sync); 3] = [&chain, &seq, &hash];
        let unsent = AtomicBool::new(false);
        let (insert, advance, commit) = tokio::join!(
            biased;
            step(conn, insert.as_ref().map(|st| (st, &record_params[..])), &unsent),
            step(conn, advance.as_ref().map(|st| (st, &head_params[..])), &unsent),
            async {
                if unsent.load(Ordering::Relaxed) {
                    None
                } else {
                    Some(conn.batch_execute("COMMIT").await)
                }
            },
        );
        let Some(commit) = commit else {
            // COMMIT was never sent: the transaction is still open and `self`, dropped, closes it.
            let failed = [insert, advance].into_iter().find_map(Result::err);
            return Err(failed.map_or_else(|| io("PostgreSQL COMMIT not sent"), db));
        };
        // The server answered the COMMIT (a commit, or the rollback of an aborted transaction):
        // the connection is in no transaction any more.
        let answered = match &commit {
            Ok(()) => true,
            Err(e) => e.code().is_some(),
        };
        let outcome = [insert, advance, commit]
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), |e| Err(commit_failed(e)));
        if answered {
            self.ended();
        }
        outcome
    }
}

impl Drop for Pipeline {
    /// A transaction that did not end (an error path that could not roll back, a caller's timeout):
    /// the connection leaves the pool and closes, so PostgreSQL rolls the transaction back. Handed
    /// back to the pool, the next caller's statements would run inside it, and its `COMMIT` would
    /// commit this one's half-done writes.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

/// One statement of a pipelined round, when the write has it. A statement that fails before it is
/// sent fails on its first poll and marks `unsent`, which the round's `COMMIT` (polled after it)
/// reads.
async fn step(
    conn: &Object,
    statement: Option<(&Statement, Params<'_>)>,
    unsent: &AtomicBool,
) -> Result<(), tokio_postgres::Error> {
    let Some((st, params)) = statement else {
        return Ok(());
    };
    let answer = conn.execute(st, params).await;
    if answer.is_err() {
        unsent.store(true, Ordering::Relaxed);
    }
    answer.map(drop)
}

/// `query_opt` of `statement`, when the write has it (a step of a pipelined round).
async fn maybe_row(
    conn: &Object,
    statement: Option<&Statement>,
    params: Params<'_>,
) -> Result<Option<Row>, tokio_postgres::Error> {
    match statement {
        Some(st) => conn.query_opt(st, params).await,
        None => Ok(None),
    }
}

/// The answer to a compare-and-swap of activation `id` that matched no row.
async fn activation_mismatch(pool: &Pool, id: &str) -> StoreError {
    ask_after_mismatch(
        pool,
        "SELECT 1 FROM activations WHERE id = $1",
        id,
        |row| match row {
            None => StoreError::NotFound { what: "activation" },
            Some(_) => StoreError::Conflict(Conflict::StaleVersion),
        },
    )
    .await
}

/// The answer to a consumption of `nonce` that matched no row, in sled's order: not found if it is
/// not there (a nonce issued after the attempt was not there for it), consumed if it is consumed,
/// and otherwise not the activation's (the only other condition of the consumption).
async fn nonce_unavailable(pool: &Pool, nonce: &str) -> StoreError {
    let sql = "SELECT consumed_at IS NOT NULL FROM nonces WHERE nonce = $1";
    ask_after_mismatch(pool, sql, nonce, |row| match row {
        None => StoreError::NotFound { what: "nonce" },
        Some(row) if row.get::<_, bool>(0) => StoreError::Conflict(Conflict::NonceConsumed),
        Some(_) => StoreError::Conflict(Conflict::NonceOwner),
    })
    .await
}

/// Asks `sql` about `key` on a connection of its own, after a write that matched no row, and turns
/// the row (if any) into the write's error; a failure to ask is the error.
async fn ask_after_mismatch(
    pool: &Pool,
    sql: &str,
    key: &str,
    answer: impl FnOnce(Option<Row>) -> StoreError,
) -> StoreError {
    let asked = async {
        let conn = pool.get().await.map_err(self::pool)?;
        let statement = conn.prepare_cached(sql).await.map_err(db)?;
        Ok(answer(
            conn.query_opt(&statement, &[&key]).await.map_err(db)?,
        ))
    };
    asked.await.unwrap_or_else(|e: StoreError| e)
}

/// Calls the schema's `commit_activation` (migration 0004): the activation's compare-and-swap, the
/// nonce's consumption and the audit append, one statement and so one transaction; its parameters
/// in the function's order.
const COMMIT_ACTIVATION: &str =
    "SELECT commit_activation($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// How often a one-statement commit seals its audit record anew after finding its lane's head moved
/// (a head hint this handle got wrong: a transaction that did not commit, or another process given
/// the same instance id), before it gives up.
const LANE_ATTEMPTS: usize = 8;

/// The nonce a commit consumes, as [`COMMIT_ACTIVATION`] takes it.
struct Consumption {
    nonce: String,
    owned: bool,
    consumed_at: i64,
    /// The nonce's record with its consumption.
    record: Vec<u8>,
}

/// Compare-and-swap of an activation with an optional nonce consumption and audit record, in one
/// statement ([`COMMIT_ACTIVATION`]) and one round trip: the record is sealed here on the leased
/// lane's head as this handle last wrote it (read first when unknown), and the statement appends it
/// only if the stored head is still that one; when it is not, the head is read again and the record
/// sealed anew ([`LANE_ATTEMPTS`]). A refusal wrote nothing, and the question that tells a missing row
/// from a changed one is asked only then. A statement without an answer (the connection broke) is
/// [`StoreError::OutcomeUnknown`], and the lane's head is read again before its next use.
async fn commit_activation(
    pool: &Pool,
    lanes: &Lanes,
    canceller: Canceller,
    next: Activation,
    consume_nonce: Option<IssuedNonce>,
    audit: Option<AuditDraft>,
) -> Result<Committed, StoreError> {
    let stored = Activation {
        version: next.version.wrapping_add(1),
        ..next.clone()
    };
    let (Ok(read), Ok(new)) = (
        to_i64(next.version, "activation version"),
        to_i64(stored.version, "activation version"),
    ) else {
        // A version beyond bigint was never stored: it cannot match.
        return Err(activation_mismatch(pool, &next.id).await);
    };
    let consumed_at = audit.as_ref().map_or_else(Timestamp::now, |d| d.time);
    let consumption = consume_nonce.map(|issued| Consumption {
        owned: issued.is_for(&next),
        consumed_at: consumed_at.unix_millis(),
        nonce: issued.nonce.clone(),
        record: codec::encode_nonce(&IssuedNonce {
            consumed_at: Some(consumed_at),
            ..issued
        }),
    });
    let record = codec::encode_activation(&stored);
    let mut lane = lanes.lease_for(&audit).await?;
    let guard = Unanswered::new(pool.get().await.map_err(self::pool)?, canceller);
    let conn = guard.conn()?;
    let commit = conn.prepare_cached(COMMIT_ACTIVATION).await.map_err(db)?;
    for _ in 0..LANE_ATTEMPTS {
        let sealed = match (&audit, lane.as_deref_mut()) {
            (Some(draft), Some(lane)) => {
                let head = match lane.head {
                    Some(head) => head,
                    None => {
                        let st = conn.prepare_cached(READ_HEAD).await.map_err(db)?;
                        let head = head_of(conn.query_opt(&st, &[&lane.chain]).await.map_err(db)?)?;
                        lane.head = Some(head);
                        head
                    }
                };
                let rec = draft.clone().seal(head.seq + 1, head.hash);
                Some((lane.chain.clone(), rec))
            }
            _ => None,
        };
        let nonce = consumption.as_ref();
        let audit_seq = sealed
            .as_ref()
            .map(|(_, rec)| to_i64(rec.seq, "audit seq"))
            .transpose()?;
        let audit_record = sealed.as_ref().map(|(_, rec)| codec::encode_audit(rec));
        let params: [&(dyn ToSql + Sync); 13] = [
            &next.id,
            &read,
            &new,
            &record,
            &nonce.map(|n| n.nonce.as_str()),
            &nonce.is_some_and(|n| n.owned),
            &nonce.map(|n| n.consumed_at),
            &nonce.map(|n| n.record.as_slice()),
            &sealed.as_ref().map(|(chain, _)| chain.as_str()),
            &audit_seq,
            &sealed.as_ref().map(|(_, rec)| rec.prev_hash.as_slice()),
            &sealed.as_ref().map(|(_, rec)| rec.hash.as_slice()),
            &audit_record,
        ];
        guard.pending(true);
        let answer = conn.execute(&commit, &params).await;
        guard.pending(false);
        let refused = match answer {
            Ok(_) => {
                if let (Some(lane), Some((_, rec))) = (lane.as_deref_mut(), &sealed) {
                    lane.wrote(rec);
                }
                return Ok(Committed {
                    activation: stored,
                    audit: sealed.map(|(_, rec)| rec),
                });
            }
            Err(e) => e,
        };
        // Nothing was written unless the statement got no answer; the lane's head hint is wrong
        // after a moved head and unknown after no answer.
        match refused.code().map(SqlState::code) {
            Some("OS001") => return Err(activation_mismatch(pool, &next.id).await),
            Some("OS002") => {
                let nonce = consumption.as_ref().map_or("", |n| n.nonce.as_str());
                return Err(nonce_unavailable(pool, nonce).await);
            }
            Some("OS003") => forget_head(&mut lane),
            _ => {
                forget_head(&mut lane);
                return Err(commit_failed(refused));
            }
        }
    }
    Err(io(format!(
        "the audit lane's head moved {LANE_ATTEMPTS} times while this instance appended to it: \
         is another process running with the same audit chain id?"
    )))
}

/// The connection of a one-statement write. Dropped while a statement is on its way (the operation
/// timed out, e.g. while the statement waited for a row lock), it cancels the statement, so that one
/// still waiting does not commit long after its caller was told the outcome is unknown, and leaves
/// the pool, so that nobody else's statement queues behind it.
struct Unanswered {
    conn: Option<Object>,
    pending: AtomicBool,
    canceller: Canceller,
}

impl Unanswered {
    fn new(conn: Object, canceller: Canceller) -> Self {
        Self {
            conn: Some(conn),
            pending: AtomicBool::new(false),
            canceller,
        }
    }

    fn conn(&self) -> Result<&Object, StoreError> {
        self.conn
            .as_ref()
            .ok_or_else(|| io("the PostgreSQL write has no connection"))
    }

    /// A write is about to be sent (`true`), or has its answer (`false`).
    fn pending(&self, pending: bool) {
        self.pending.store(pending, Ordering::Relaxed);
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !self.pending.load(Ordering::Relaxed) {
            return;
        }
        let cancel = conn.cancel_token();
        drop(Object::take(conn));
        // Dropped by the operation's timeout, on the store's runtime: the cancel request goes out
        // on a connection of its own. Nowhere to send it from outside a runtime.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.canceller.clone().cancel(cancel));
        }
    }
}

/// The lease's head hint is wrong or unknown: the next append reads the head first.
fn forget_head(lane: &mut Option<LaneLease>) {
    if let Some(lane) = lane.as_deref_mut() {
        lane.head = None;
    }
}

/// Registers a nonce (`key`, its columns and encoded record) with an optional audit record: one
/// transaction in two round trips, `BEGIN` with `synchronous_commit` off (`Store::issue_nonce` does
/// not wait for the WAL flush), the insert and the leased lane's head lock, then the audit record,
/// the head's advance and `COMMIT`. A nonce registered already rolls back and is
/// [`StoreError::AlreadyExists`].
async fn issue_nonce(
    pool: &Pool,
    lanes: &Lanes,
    key: String,
    expires_at: i64,
    consumed_at: Option<i64>,
    value: Vec<u8>,
    audit: Option<AuditDraft>,
) -> Result<(), StoreError> {
    let mut lane = lanes.lease_for(&audit).await?;
    let tx = Pipeline::checkout(pool).await?;
    let conn = tx.conn()?;
    let insert = conn
        .prepare_cached(
            "INSERT INTO nonces (nonce, expires_at, consumed_at, record) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (nonce) DO NOTHING",
        )
        .await
        .map_err(db)?;
    let lock = match lane {
        Some(_) => Some(conn.prepare_cached(LOCK_HEAD).await.map_err(db)?),
        None => None,
    };
    let chain = lane
        .as_ref()
        .map_or("", |lane| lane.chain.as_str())
        .to_owned();
    let insert_params: [&(dyn ToSql + Sync); 4] = [&key, &expires_at, &consumed_at, &value];
    let lock_params: [&(dyn ToSql + Sync); 1] = [&chain];
    let (begun, rows, head_row) = tokio::join!(
        biased;
        conn.batch_execute("BEGIN; SET LOCAL synchronous_commit TO OFF"),
        conn.execute(&insert, &insert_params),
        maybe_row(conn, lock.as_ref(), &lock_params),
    );
    let checked = (|| {
        begun.map_err(db)?;
        inserted(rows.map_err(db)?, "nonce")?;
        let head_row = head_row.map_err(db)?;
        match (audit, lane.as_deref_mut()) {
            (Some(draft), Some(lane)) => Ok(Some(lane.seal_on(head_of(head_row)?, draft))),
            _ => Ok(None),
        }
    })();
    match checked {
        Ok(sealed) => {
            tx.commit_with(sealed.as_ref().map(|rec| (chain.as_str(), rec)))
                .await
        }
        Err(e) => {
            tx.rollback().await;
            Err(e)
        }
    }
}

/// Runs `body` in one transaction on a pooled connection and commits it; any error rolls it back.
macro_rules! in_transaction {
    ($pool:expr, |$tx:ident| $body:expr) => {{
        let mut client = $pool.get().await.map_err(pool)?;
        let $tx = client.transaction().await.map_err(db)?;
        let value = $body;
        $tx.commit().await.map_err(commit_failed)?;
        Ok(value)
    }};
}

impl PgStore {
    /// Connects to the database of `settings`, applies pending migrations (refusing a schema newer than
    /// this build), and makes sure the instance's lanes exist: `chain` and, with
    /// [`PostgresSettings::audit_lanes`] `n > 1`, `chain.lane(1)` … `chain.lane(n - 1)`
    /// ([`ChainId::lane`]). This handle appends every audit record to one of them.
    ///
    /// `chain` is this instance's stable id: from the configuration, or persisted beside it
    /// ([`PostgresSettings::audit_chain_or_persisted`]). Opening needs the database to answer; later
    /// outages are [`StoreError::Io`] per call and heal by themselves. A `chain` too long to carry the
    /// lane suffix is refused ([`StoreError::Io`] naming the limit).
    pub fn open(settings: &PostgresSettings, chain: ChainId) -> Result<Self, StoreError> {
        if settings.plain_over_network() {
            tracing::warn!(
                database = %settings.target(),
                "PLAIN TCP TO A DATABASE THAT IS NOT ON THIS MACHINE: give [store] tls_ca_file \
                 (the CA of the server's certificate) so that connections use TLS"
            );
        }
        let lane_count = settings.audit_lanes();
        settings::check_lane_room(&chain, lane_count).map_err(|e| StoreError::Io {
            detail: e.to_string(),
        })?;
        let lanes = (0..lane_count)
            .map(|k| chain.lane(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Io {
                detail: format!("audit lane of {chain}: {e}"),
            })?;
        let engine = Engine::start(settings)?;
        let start = lanes.clone();
        engine.run(|pool| async move {
            migrate_with(&pool).await?;
            let client = pool.get().await.map_err(self::pool)?;
            // Idempotent, and safe against another instance creating the same rows at once.
            for lane in &start {
                client
                    .execute(
                        "INSERT INTO audit_chains (chain_id, head_seq, head_hash) VALUES ($1, 0, $2) \
                         ON CONFLICT (chain_id) DO NOTHING",
                        &[&lane.as_str(), &lane.genesis_hash().as_slice()],
                    )
                    .await
                    .map_err(db)?;
            }
            Ok(())
        })?;
        Ok(Self {
            engine,
            chain,
            lanes: std::sync::Arc::new(Lanes::new(lanes)),
            target: settings.target(),
        })
    }

    /// The lanes, for an audited write's future.
    fn lanes(&self) -> std::sync::Arc<Lanes> {
        std::sync::Arc::clone(&self.lanes)
    }

    /// Changes application `application_id` in one transaction: locks its row, lets `change` edit it,
    /// indexes the application key `change` returns (a new version's), saves the application and
    /// appends `audit`. Returns the application as saved; an error from `change` writes nothing.
    fn change_application(
        &self,
        application_id: &str,
        audit: Option<AuditDraft>,
        change: impl FnOnce(&mut Application) -> Result<Option<String>, StoreError> + Send + 'static,
    ) -> Result<Application, StoreError> {
        let id = application_id.to_owned();
        let lanes = self.lanes();
        self.engine.write(|pool| async move {
            let mut lane = lanes.lease_for(&audit).await?;
            in_transaction!(pool, |tx| {
                let mut app = lock_application(&tx, &id).await?;
                if let Some(application_key) = change(&mut app)? {
                    insert_application_key(&tx, &application_key, &id).await?;
                }
                save_application(&tx, &id, &app).await?;
                maybe_append(&tx, &mut lane, audit).await?;
                app
            })
        })
    }

    /// `user@host:port/database` of the store (for messages).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let found: Option<i32> = client
                .query_one("SELECT max(version) FROM schema_version", &[])
                .await
                .map_err(db)?
                .get(0);
            u32::try_from(found.unwrap_or(0)).map_err(|_| StoreError::Corrupt {
                what: "schema_version holds a negative version".into(),
            })
        })
    }

    /// Test hook: rewrites the raw stored bytes of record `seq` of this handle's chain (to simulate
    /// tampering).
    #[doc(hidden)]
    pub fn tamper_audit_raw(
        &self,
        seq: u64,
        edit: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), StoreError> {
        let chain = self.chain.clone();
        let seq_db = to_i64(seq, "audit seq")?;
        let read_chain = chain.clone();
        let mut bytes: Vec<u8> = self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let row = client
                .query_opt(
                    "SELECT record FROM audit_records WHERE chain_id = $1 AND seq = $2",
                    &[&read_chain.as_str(), &seq_db],
                )
                .await
                .map_err(db)?
                .ok_or(StoreError::NotFound {
                    what: "audit record",
                })?;
            Ok(row.get(0))
        })?;
        edit(&mut bytes);
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            client
                .execute(
                    "UPDATE audit_records SET record = $3 WHERE chain_id = $1 AND seq = $2",
                    &[&chain.as_str(), &seq_db, &bytes],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    /// Test hook: operations taking longer than `timeout` fail (instead of after
    /// [`OPERATION_TIMEOUT`]), so a test can abandon one midway in reasonable time.
    #[doc(hidden)]
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.engine.timeout = timeout;
        self
    }

    /// Test hook: deletes record `seq` of this handle's chain behind the chain's back.
    #[doc(hidden)]
    pub fn remove_audit_raw(&self, seq: u64) -> Result<(), StoreError> {
        let chain = self.chain.clone();
        let seq_db = to_i64(seq, "audit seq")?;
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            client
                .execute(
                    "DELETE FROM audit_records WHERE chain_id = $1 AND seq = $2",
                    &[&chain.as_str(), &seq_db],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    /// Test hook: records schema version `version` as applied (to simulate a newer build's migration).
    #[doc(hidden)]
    pub fn set_schema_version_raw(&self, version: u32) -> Result<(), StoreError> {
        let version = i32::try_from(version).map_err(|_| io("schema version out of range"))?;
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            client
                .execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, 'test: newer build')",
                    &[&version],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }
}

/// Deletes at most `limit` rows of `table` (keyed by `key`) that expired before `before`, oldest
/// expiry first, as sled's index. Rows another transaction holds (a verification) are skipped, not
/// waited for; another instance pruning at the same time takes other rows.
async fn delete_expired(
    pool: &Pool,
    table: &'static str,
    key: &'static str,
    before: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    let client = pool.get().await.map_err(self::pool)?;
    let st = client
        .prepare_cached(&format!(
            "DELETE FROM {table} WHERE {key} IN ( \
                 SELECT {key} FROM {table} WHERE expires_at < $1 \
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        ))
        .await
        .map_err(db)?;
    client.execute(&st, &[&before, &limit]).await.map_err(db)
}

/// Up to `limit` `record`s of `table` keyed by `key` after `after`, decoded, in key order. `table`
/// and `key` are this module's constants, never caller input.
async fn decoded_after<T>(
    pool: &Pool,
    table: &'static str,
    key: &'static str,
    after: Option<String>,
    limit: usize,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<Vec<T>, StoreError> {
    let client = pool.get().await.map_err(self::pool)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT record FROM {table} WHERE ($1::text IS NULL OR {key} > $1) ORDER BY {key} LIMIT $2"
    );
    client
        .query(&sql, &[&after, &limit])
        .await
        .map_err(db)?
        .iter()
        .map(|row| decode(row.get(0)).map_err(corrupt))
        .collect()
}

impl RemoteStore for PgStore {
    fn credential(&self, client_token: &str) -> StoreFuture<Option<IntegrationCredential>> {
        self.engine
            .get_later(SELECT_CREDENTIAL, client_token, codec::decode_credential)
    }

    fn application(&self, id: &str) -> StoreFuture<Option<Application>> {
        self.engine
            .get_later(SELECT_APPLICATION, id, codec::decode_application)
    }

    fn verification_reads(
        &self,
        activation_id: &str,
        nonce: Option<&str>,
    ) -> StoreFuture<VerificationReads> {
        let id = activation_id.to_owned();
        let nonce = nonce.map(str::to_owned);
        self.engine.spawn(
            move |pool| async move { verification_reads(&pool, id, nonce).await },
            read_timed_out,
        )
    }

    fn commit_verification(&self, commit: VerificationCommit) -> StoreFuture<Committed> {
        let (lanes, canceller) = (self.lanes(), self.engine.canceller.clone());
        self.engine.spawn(
            move |pool| async move { commit_verification(&pool, &lanes, canceller, commit).await },
            write_timed_out,
        )
    }
}

/// [`Store::commit_verification`]'s transaction, for both of its callers.
async fn commit_verification(
    pool: &Pool,
    lanes: &Lanes,
    canceller: Canceller,
    commit: VerificationCommit,
) -> Result<Committed, StoreError> {
    commit_activation(
        pool,
        lanes,
        canceller,
        commit.activation,
        commit.consume_nonce,
        Some(commit.audit),
    )
    .await
}

impl Store for PgStore {
    fn remote(&self) -> Option<&dyn RemoteStore> {
        Some(self)
    }

    fn applications(&self) -> Result<Vec<Application>, StoreError> {
        self.engine.page(
            "applications",
            "id",
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
        self.engine
            .page("activations", "id", after, limit, codec::decode_activation)
    }

    fn nonces_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IssuedNonce>, StoreError> {
        self.engine
            .page("nonces", "nonce", after, limit, codec::decode_nonce)
    }

    fn import_audit(&self, chain: &ChainId, records: &[AuditRecord]) -> Result<(), StoreError> {
        let chain = chain.clone();
        let records = records.to_vec();
        self.engine.write(|pool| async move {
            in_transaction!(pool, |tx| {
                tx.execute(
                    "INSERT INTO audit_chains (chain_id, head_seq, head_hash) VALUES ($1, 0, $2) \
                     ON CONFLICT (chain_id) DO NOTHING",
                    &[&chain.as_str(), &chain.genesis_hash().as_slice()],
                )
                .await
                .map_err(db)?;
                let row = tx
                    .query_one(
                        "SELECT head_seq, head_hash FROM audit_chains WHERE chain_id = $1 FOR UPDATE",
                        &[&chain.as_str()],
                    )
                    .await
                    .map_err(db)?;
                let mut head = ChainHead {
                    seq: to_u64(row.get(0), "audit chain head")?,
                    hash: hash32(row.get(1), "audit chain head hash")?,
                };
                for rec in &records {
                    super::audit::check_import(&chain, head, rec)?;
                    let seq = to_i64(rec.seq, "audit seq")?;
                    tx.execute(
                        "INSERT INTO audit_records (chain_id, seq, record) VALUES ($1, $2, $3)",
                        &[&chain.as_str(), &seq, &codec::encode_audit(rec)],
                    )
                    .await
                    .map_err(db)?;
                    head = ChainHead {
                        seq: rec.seq,
                        hash: rec.hash,
                    };
                }
                let seq = to_i64(head.seq, "audit seq")?;
                tx.execute(
                    "UPDATE audit_chains SET head_seq = $2, head_hash = $3 WHERE chain_id = $1",
                    &[&chain.as_str(), &seq, &head.hash.as_slice()],
                )
                .await
                .map_err(db)?;
            })
        })
    }

    fn create_application(
        &self,
        app: &Application,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        let id = app.id.clone();
        let value = codec::encode_application(app);
        let keys: Vec<String> = app
            .versions
            .iter()
            .map(|v| v.application_key.clone())
            .collect();
        let lanes = self.lanes();
        self.engine.write(|pool| async move {
            let mut lane = lanes.lease_for(&audit).await?;
            in_transaction!(pool, |tx| {
                insert_new(
                    &tx,
                    "INSERT INTO applications (id, record) VALUES ($1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&id, &value],
                    "application",
                )
                .await?;
                for key in &keys {
                    insert_application_key(&tx, key, &id).await?;
                }
                maybe_append(&tx, &mut lane, audit).await?;
            })
        })
    }

    fn add_application_version(
        &self,
        application_id: &str,
        version: ApplicationVersion,
        audit: Option<AuditDraft>,
    ) -> Result<Application, StoreError> {
        self.change_application(application_id, audit, move |app| {
            if app.versions.iter().any(|v| v.id == version.id) {
                return Err(StoreError::AlreadyExists {
                    what: "application version",
                });
            }
            let application_key = version.application_key.clone();
            app.versions.push(version);
            Ok(Some(application_key))
        })
    }

    fn application_by_key(&self, application_key: &str) -> Result<Option<Application>, StoreError> {
        self.engine.get(
            "SELECT a.record FROM application_keys k JOIN applications a \
             ON a.id = k.application_id WHERE k.application_key = $1",
            application_key,
            codec::decode_application,
        )
    }

    fn activation_by_code(
        &self,
        application_id: &str,
        code: &str,
    ) -> Result<Option<Activation>, StoreError> {
        let app = application_id.to_owned();
        let code = code.to_owned();
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let st = client
                .prepare_cached(
                    "SELECT a.record FROM activation_codes c JOIN activations a \
                     ON a.id = c.activation_id \
                     WHERE c.application_id = $1 AND c.activation_code = $2",
                )
                .await
                .map_err(db)?;
            match client.query_opt(&st, &[&app, &code]).await.map_err(db)? {
                None => Ok(None),
                Some(row) => codec::decode_activation(row.get(0))
                    .map(Some)
                    .map_err(corrupt),
            }
        })
    }

    fn put_temporary_key(&self, key: &TemporaryKey) -> Result<(), StoreError> {
        let id = key.id.clone();
        let expires_at = key.expires_at.unix_millis();
        let value = codec::encode_temporary_key(key);
        self.engine.write(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            insert_new(
                &client,
                "INSERT INTO temporary_keys (id, expires_at, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &expires_at, &value],
                "temporary key",
            )
            .await
        })
    }

    fn temporary_key(&self, id: &str) -> Result<Option<TemporaryKey>, StoreError> {
        self.engine.get(
            "SELECT record FROM temporary_keys WHERE id = $1",
            id,
            codec::decode_temporary_key,
        )
    }

    fn remove_temporary_key(&self, id: &str) -> Result<bool, StoreError> {
        let key = id.to_owned();
        self.engine.write(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let st = client
                .prepare_cached("DELETE FROM temporary_keys WHERE id = $1")
                .await
                .map_err(db)?;
            Ok(client.execute(&st, &[&key]).await.map_err(db)? > 0)
        })
    }

    fn register_replay(&self, key: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        let key = key.to_owned();
        let expires_at = expires_at.unix_millis();
        self.engine.write(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            insert_new(
                &client,
                "INSERT INTO ecies_replays (replay_key, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (replay_key) DO NOTHING",
                &[&key, &expires_at],
                "ECIES request",
            )
            .await
        })
    }

    fn prune_ecies(&self, expired_before: Timestamp, max: usize) -> Result<usize, StoreError> {
        let before = expired_before.unix_millis();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.engine.run(|pool| async move {
            let first = delete_expired(&pool, "ecies_replays", "replay_key", before, limit).await?;
            let rest = limit.saturating_sub(i64::try_from(first).unwrap_or(i64::MAX));
            let second = delete_expired(&pool, "temporary_keys", "id", before, rest).await?;
            usize::try_from(first + second).map_err(|_| io("deleted row count"))
        })
    }

    fn application(&self, id: &str) -> Result<Option<Application>, StoreError> {
        self.engine
            .get(SELECT_APPLICATION, id, codec::decode_application)
    }

    fn add_master_key(
        &self,
        application_id: &str,
        key: MasterKeyRef,
        audit: Option<AuditDraft>,
    ) -> Result<Application, StoreError> {
        self.change_application(application_id, audit, move |app| {
            app.master_keys.insert(0, key);
            Ok(None)
        })
    }

    fn insert_activation(
        &self,
        activation: &Activation,
        audit: Option<AuditDraft>,
    ) -> Result<Committed, StoreError> {
        let stored = Activation {
            version: 1,
            ..activation.clone()
        };
        let lanes = self.lanes();
        self.engine.write(|pool| async move {
            let mut lane = lanes.lease_for(&audit).await?;
            in_transaction!(pool, |tx| {
                let value = codec::encode_activation(&stored);
                insert_new(
                    &tx,
                    "INSERT INTO activations (id, version, record) VALUES ($1, 1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&stored.id, &value],
                    "activation",
                )
                .await?;
                if let Some(code) = &stored.enrollment.activation_code {
                    insert_new(
                        &tx,
                        "INSERT INTO activation_codes \
                         (application_id, activation_code, activation_id) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[&stored.application_id, code, &stored.id],
                        "activation code",
                    )
                    .await?;
                }
                let audit = maybe_append(&tx, &mut lane, audit).await?;
                Committed {
                    activation: stored,
                    audit,
                }
            })
        })
    }

    fn activation(&self, id: &str) -> Result<Option<Activation>, StoreError> {
        self.engine
            .get(SELECT_ACTIVATION, id, codec::decode_activation)
    }

    fn update_activation(
        &self,
        activation: &Activation,
        audit: Option<AuditDraft>,
    ) -> Result<Committed, StoreError> {
        let next = activation.clone();
        let (lanes, canceller) = (self.lanes(), self.engine.canceller.clone());
        self.engine.write(|pool| async move {
            commit_activation(&pool, &lanes, canceller, next, None, audit).await
        })
    }

    fn commit_verification(&self, commit: VerificationCommit) -> Result<Committed, StoreError> {
        let (lanes, canceller) = (self.lanes(), self.engine.canceller.clone());
        self.engine.write(|pool| async move {
            commit_verification(&pool, &lanes, canceller, commit).await
        })
    }

    fn issue_nonce(
        &self,
        nonce: &IssuedNonce,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        let key = nonce.nonce.clone();
        let expires_at = nonce.expires_at.unix_millis();
        let consumed_at = nonce.consumed_at.map(Timestamp::unix_millis);
        let value = codec::encode_nonce(nonce);
        let lanes = self.lanes();
        self.engine.write(|pool| async move {
            issue_nonce(&pool, &lanes, key, expires_at, consumed_at, value, audit).await
        })
    }

    fn nonce(&self, nonce: &str) -> Result<Option<IssuedNonce>, StoreError> {
        self.engine.get(SELECT_NONCE, nonce, codec::decode_nonce)
    }

    fn prune_nonces(&self, expired_before: Timestamp, max: usize) -> Result<usize, StoreError> {
        let before = expired_before.unix_millis();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.engine.run(|pool| async move {
            let deleted = delete_expired(&pool, "nonces", "nonce", before, limit).await?;
            usize::try_from(deleted).map_err(|_| io("deleted row count"))
        })
    }

    fn put_credential(
        &self,
        credential: &IntegrationCredential,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        let key = credential.client_token.clone();
        let value = codec::encode_credential(credential);
        let lanes = self.lanes();
        self.engine.write(|pool| async move {
            let mut lane = lanes.lease_for(&audit).await?;
            in_transaction!(pool, |tx| {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO credentials (client_token, record) VALUES ($1, $2) \
                         ON CONFLICT (client_token) DO UPDATE SET record = EXCLUDED.record",
                    )
                    .await
                    .map_err(db)?;
                tx.execute(&st, &[&key, &value]).await.map_err(db)?;
                maybe_append(&tx, &mut lane, audit).await?;
            })
        })
    }

    fn credential(&self, client_token: &str) -> Result<Option<IntegrationCredential>, StoreError> {
        self.engine
            .get(SELECT_CREDENTIAL, client_token, codec::decode_credential)
    }

    fn credentials(&self) -> Result<Vec<IntegrationCredential>, StoreError> {
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let st = client
                .prepare_cached("SELECT record FROM credentials ORDER BY client_token")
                .await
                .map_err(db)?;
            client
                .query(&st, &[])
                .await
                .map_err(db)?
                .iter()
                .map(|row| codec::decode_credential(row.get(0)).map_err(corrupt))
                .collect()
        })
    }

    fn remove_credential(
        &self,
        client_token: &str,
        audit: Option<AuditDraft>,
    ) -> Result<(), StoreError> {
        let key = client_token.to_owned();
        let lanes = self.lanes();
        self.engine.write(|pool| async move {
            let mut lane = lanes.lease_for(&audit).await?;
            in_transaction!(pool, |tx| {
                let st = tx
                    .prepare_cached("DELETE FROM credentials WHERE client_token = $1")
                    .await
                    .map_err(db)?;
                if tx.execute(&st, &[&key]).await.map_err(db)? == 0 {
                    return Err(StoreError::NotFound {
                        what: "integration credential",
                    });
                }
                maybe_append(&tx, &mut lane, audit).await?;
            })
        })
    }

    fn key_census(&self) -> Result<super::KeyCensus, StoreError> {
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let mut census = super::KeyCensus::default();
            for row in client
                .query("SELECT record FROM applications", &[])
                .await
                .map_err(db)?
            {
                let app = codec::decode_application(row.get(0)).map_err(corrupt)?;
                census
                    .master_key_ids
                    .extend(app.master_keys.iter().map(|k| k.key_id));
            }
            for row in client
                .query("SELECT record FROM activations", &[])
                .await
                .map_err(db)?
            {
                let activation = codec::decode_activation(row.get(0)).map_err(corrupt)?;
                if activation.wrapped_server_private_key.is_some() {
                    census.wrapped_activation_keys += 1;
                }
            }
            let row = client
                .query_one("SELECT count(*) FROM temporary_keys", &[])
                .await
                .map_err(db)?;
            let temporary: i64 = row.get(0);
            census.wrapped_temporary_keys = u64::try_from(temporary).unwrap_or(0);
            census.master_key_ids.sort();
            Ok(census)
        })
    }

    fn storage_keys(&self) -> Result<Option<(KeyId, KeyId)>, StoreError> {
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let Some(row) = client
                .query_opt("SELECT kek, dek FROM storage_keys", &[])
                .await
                .map_err(db)?
            else {
                return Ok(None);
            };
            let id = |bytes: &[u8]| {
                <[u8; 16]>::try_from(bytes)
                    .map(KeyId::from_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        what: "storage key id is not 16 bytes".into(),
                    })
            };
            Ok(Some((id(row.get(0))?, id(row.get(1))?)))
        })
    }

    fn set_storage_keys(&self, kek: KeyId, dek: KeyId) -> Result<(), StoreError> {
        self.engine.write(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            // The constant primary key admits one row: of two instances racing here, the second waits
            // for the first's commit and then inserts nothing.
            insert_new(
                &client,
                "INSERT INTO storage_keys (singleton, kek, dek) VALUES (true, $1, $2) \
                 ON CONFLICT (singleton) DO NOTHING",
                &[&kek.as_bytes().as_slice(), &dek.as_bytes().as_slice()],
                "storage key ids",
            )
            .await
        })
    }

    fn audit_key(&self) -> Result<Option<KeyId>, StoreError> {
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let Some(row) = client
                .query_opt("SELECT key_id FROM audit_key", &[])
                .await
                .map_err(db)?
            else {
                return Ok(None);
            };
            KeyId::from_slice(row.get(0))
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "audit key id is not 16 bytes".into(),
                })
        })
    }

    fn set_audit_key(&self, id: KeyId) -> Result<(), StoreError> {
        self.engine.write(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            insert_new(
                &client,
                "INSERT INTO audit_key (singleton, key_id) VALUES (true, $1) \
                 ON CONFLICT (singleton) DO NOTHING",
                &[&id.as_bytes().as_slice()],
                "audit key id",
            )
            .await
        })
    }

    fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let chain = checkpoint.chain.as_str().to_owned();
        let seq = i64::try_from(checkpoint.seq).map_err(|_| StoreError::Corrupt {
            what: "checkpoint position beyond bigint".into(),
        })?;
        let record = codec::encode_checkpoint(checkpoint);
        self.engine.write(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            client
                .execute(
                    "INSERT INTO audit_checkpoints (chain_id, seq, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (chain_id, seq) DO UPDATE SET record = EXCLUDED.record",
                    &[&chain, &seq, &record],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            client
                .query(
                    "SELECT record FROM audit_checkpoints ORDER BY chain_id, seq",
                    &[],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|row| codec::decode_checkpoint(row.get(0)).map_err(corrupt))
                .collect()
        })
    }

    fn probe(&self) -> Result<(), StoreError> {
        let chain = self.chain.clone();
        let now = Timestamp::now().unix_millis();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let st = client
                .prepare_cached(
                    "INSERT INTO probes (chain_id, probed_at) VALUES ($1, $2) \
                     ON CONFLICT (chain_id) DO UPDATE SET probed_at = EXCLUDED.probed_at",
                )
                .await
                .map_err(db)?;
            client
                .execute(&st, &[&chain.as_str(), &now])
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn append_audit(&self, draft: AuditDraft) -> Result<AuditRecord, StoreError> {
        let lanes = self.lanes();
        self.engine.write(|pool| async move {
            let mut lane = lanes.lease().await?;
            in_transaction!(pool, |tx| append_in(&tx, &mut lane, draft).await?)
        })
    }

    fn audit_chain(&self) -> ChainId {
        self.chain.clone()
    }

    fn audit_lanes(&self) -> Vec<ChainId> {
        self.lanes.ids.clone()
    }

    fn audit_chains(&self) -> Result<Vec<ChainId>, StoreError> {
        self.engine.run(|pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            client
                .query("SELECT chain_id FROM audit_chains ORDER BY chain_id", &[])
                .await
                .map_err(db)?
                .iter()
                .map(|row| {
                    ChainId::new(row.get::<_, String>(0)).map_err(|e| StoreError::Corrupt {
                        what: format!("audit_chains: {e}"),
                    })
                })
                .collect()
        })
    }

    fn audit_chain_entries(
        &self,
        chain: &ChainId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let chain = chain.clone();
        // Positions beyond bigint hold nothing.
        let Ok(from) = i64::try_from(from_seq) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let known = client
                .prepare_cached("SELECT 1 FROM audit_chains WHERE chain_id = $1")
                .await
                .map_err(db)?;
            if client
                .query_opt(&known, &[&chain.as_str()])
                .await
                .map_err(db)?
                .is_none()
            {
                return Err(StoreError::NotFound {
                    what: "audit chain",
                });
            }
            let st = client
                .prepare_cached(
                    "SELECT seq, record FROM audit_records WHERE chain_id = $1 AND seq >= $2 \
                     ORDER BY seq LIMIT $3",
                )
                .await
                .map_err(db)?;
            client
                .query(&st, &[&chain.as_str(), &from, &limit])
                .await
                .map_err(db)?
                .iter()
                .map(|row| {
                    let seq = to_u64(row.get(0), "audit seq")?;
                    Ok(codec::audit_entry(seq, row.get(1)))
                })
                .collect()
        })
    }

    fn audit_chain_head(&self, chain: &ChainId) -> Result<ChainHead, StoreError> {
        let chain = chain.clone();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(self::pool)?;
            let st = client
                .prepare_cached("SELECT head_seq, head_hash FROM audit_chains WHERE chain_id = $1")
                .await
                .map_err(db)?;
            let Some(row) = client
                .query_opt(&st, &[&chain.as_str()])
                .await
                .map_err(db)?
            else {
                return Err(StoreError::NotFound {
                    what: "audit chain",
                });
            };
            Ok(ChainHead {
                seq: to_u64(row.get(0), "audit chain head")?,
                hash: hash32(row.get(1), "audit chain head hash")?,
            })
        })
    }
}
