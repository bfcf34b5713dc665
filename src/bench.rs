//! The benchmark's in-process steps (`offline-signer bench ceilings|info`), run by `offline-token
//! bench run` while the server is stopped. The rest of the benchmark (seeding and load over HTTP,
//! the report) lives in the `offline-token` crate and talks to the server over HTTP only.
//!
//! The ceilings: what the token and the store can do with no HTTP and no service logic in between,
//! measured on the same token, with the same pool size, through the [`Signer`] and [`Store`] traits.
//!
//! - token sign: `sign_digest` with the application's master key (a token object);
//! - unwrap + sign: `sign_digest` with an activation's wrapped key (unwrapped into a session object,
//!   used, destroyed — what a personalized create pays);
//! - DEK decrypt: `decrypt_secret` of an activation's sealed factor-key blob under the DEK (AES-GCM
//!   in the HSM — what the issue calls the "KEK decrypt"; the KEK itself only wraps and unwraps);
//! - store writes: concurrent durable `commit_verification` calls (activation compare-and-swap,
//!   nonce consumption and audit record, group commit), one activation per writer thread. On sled, a
//!   scratch store in the same file system; on PostgreSQL, the configured database itself (fresh
//!   activations, and an audit chain of its own).
//!
//! No test asserts on a duration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::app::{self, AppError};
use crate::config::Config;
use crate::model::{EncryptedSecret, KeyId, Timestamp, WrappedKey};
use crate::service::factor_keys_aad;
use crate::signer::{KeyRef, Signer, SignerConfig, SignerError};
use crate::store::{
    AuditDraft, AuditOperation, AuditOutcome, ChainId, IssuedNonce, NonceOwner, PgStore, SledStore,
    Store, StoreError, StoreSettings, VerificationCommit,
};

/// Why a benchmark step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Store or signer could not be opened.
    #[error(transparent)]
    App(#[from] AppError),
    /// The signer failed during a measurement.
    #[error("signer: {0}")]
    Signer(#[from] SignerError),
    /// The store failed during a measurement.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Anything else, said in words.
    #[error("{0}")]
    Failed(String),
}

/// The `bench` subcommands of the service binary.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Measure the token and store ceilings (server stopped). Prints JSON on stdout.
    Ceilings {
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The seeded application whose master key signs.
        #[arg(long, default_value = "bench")]
        app: String,
        /// A file with one seeded activation id per line (their keys are unwrapped and opened).
        #[arg(long, value_name = "FILE")]
        activations: PathBuf,
        /// Scratch store for the store ceiling (created; sled only: on PostgreSQL the ceiling
        /// writes fresh activations into the configured database).
        #[arg(long, value_name = "DIR")]
        scratch: PathBuf,
        /// Seconds per measured point.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Callers in flight for the concurrent figures.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Print, as JSON, the listen address, the store kind, the data folder's size on disk (sled; null
    /// on PostgreSQL) and the settings of a configuration (works while the server runs: it opens
    /// neither store nor token).
    Info {
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Runs one `bench` subcommand and returns the JSON to print.
///
/// # Errors
/// [`BenchError`] from the step that failed.
pub fn main(command: BenchCommand) -> Result<serde_json::Value, BenchError> {
    match command {
        BenchCommand::Info { config } => {
            let config = load(&config)?;
            let data_dir_bytes = match &config.store {
                StoreSettings::Sled { path, .. } => Some(dir_size(path)),
                StoreSettings::Postgres { .. } => None,
            };
            Ok(serde_json::json!({
                "listen": config.listen.to_string(),
                "store": store_kind(&config.store),
                "data_dir_bytes": data_dir_bytes,
                "settings": {
                    "lookahead": config.service.signature.lookahead,
                    "nonce_policy": format!("{:?}", config.service.nonce_policy),
                    "nonce_ttl_s": config.service.nonce_ttl.as_secs(),
                },
            }))
        }
        BenchCommand::Ceilings {
            config,
            app,
            activations,
            scratch,
            seconds,
            concurrency,
        } => {
            let config = load(&config)?;
            let text = std::fs::read_to_string(&activations)
                .map_err(|e| BenchError::Failed(format!("{}: {e}", activations.display())))?;
            let ids: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| BenchError::Failed(format!("starting the async runtime: {e}")))?;
            let c = runtime.block_on(run(&config, &app, &ids, &scratch, seconds, concurrency))?;
            serde_json::to_value(c).map_err(|e| BenchError::Failed(e.to_string()))
        }
    }
}

/// `sled` or `postgres`: how results name the store.
fn store_kind(store: &StoreSettings) -> &'static str {
    match store {
        StoreSettings::Sled { .. } => "sled",
        StoreSettings::Postgres { .. } => "postgres",
    }
}

fn load(path: &Path) -> Result<Config, BenchError> {
    Config::load(path).map_err(|e| BenchError::Failed(e.to_string()))
}

/// Bytes of every file below `dir` (0 when it does not exist).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A measured rate: operations per second over a run.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_s: f64,
}

impl Rate {
    fn new(count: u64, elapsed: Duration) -> Self {
        Self {
            per_s: count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        }
    }
}

/// The ceilings, each at the concurrency the service runs at (32 callers) and at 1.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Ceilings {
    /// ECDSA signatures per second with a token key (an application master key).
    pub token_sign_per_s: f64,
    /// Unwrap of an activation key into a session object, sign, destroy: per second.
    pub unwrap_sign_per_s: f64,
    /// AES-GCM decryptions of a sealed factor-key blob under the DEK per second.
    pub kek_decrypt_per_s: f64,
    /// Durable verification commits per second.
    pub store_durable_writes_per_s: f64,
    /// The same with one caller at a time (latency-bound).
    pub token_sign_per_s_1: f64,
    /// Unwrap + sign with one caller.
    pub unwrap_sign_per_s_1: f64,
    /// DEK decryptions with one caller.
    pub kek_decrypt_per_s_1: f64,
    /// Durable commits with one writer.
    pub store_durable_writes_per_s_1: f64,
    /// Store writes with 128 writer threads.
    pub store_durable_writes_per_s_128: f64,
    /// Signer worker threads (sessions) the ceilings ran with.
    pub pool_size: usize,
    /// Callers in flight for the concurrent figures.
    pub concurrency: usize,
    /// The store the write ceiling ran on: `sled` or `postgres` (absent in older results: sled).
    #[serde(default = "sled_kind")]
    pub store: String,
}

fn sled_kind() -> String {
    "sled".into()
}

/// Measures every ceiling for `seconds` each, best of two rounds. The application's master
/// key and the first of the `activations` (already registered in the configured store) are used;
/// the store ceiling runs on a scratch store in `scratch`.
async fn run(
    config: &Config,
    application: &str,
    activations: &[&str],
    scratch: &Path,
    seconds: f64,
    concurrency: usize,
) -> Result<Ceilings, BenchError> {
    let pool_size = match &config.signer {
        SignerConfig::Pkcs11(p) => p.pool_size.get(),
        SignerConfig::SoftwareInsecure(_) => 0,
    };
    let store = app::open_store(config)?;
    let app = store
        .application(application)?
        .ok_or_else(|| BenchError::Failed(format!("application {application} is not seeded")))?;
    let master = app
        .newest_master_key()
        .ok_or_else(|| BenchError::Failed("the application has no master key".into()))?;
    let master = master.key_id;
    let (_, dek) = store
        .storage_keys()?
        .ok_or_else(|| BenchError::Failed("the store has no storage keys".into()))?;
    let mut wrapped = Vec::new();
    let mut sealed = Vec::new();
    let mut template = None;
    for id in activations.iter().take(concurrency.max(1)) {
        let a = store
            .activation(id)?
            .ok_or_else(|| BenchError::Failed(format!("activation {id} not found")))?;
        let (Some(w), Some(s)) = (&a.wrapped_server_private_key, &a.encrypted_factor_keys) else {
            return Err(BenchError::Failed(format!("activation {id} has no keys")));
        };
        wrapped.push(Arc::new(w.clone()));
        sealed.push(Arc::new((factor_keys_aad(&a.id), s.clone())));
        template.get_or_insert(a);
    }
    let template = template
        .ok_or_else(|| BenchError::Failed("no seeded activation to measure with".into()))?;
    drop(store);

    // Every ceiling is the best of ROUNDS interleaved rounds: a ceiling is what the token or the
    // store can do, and a short disturbance (the other core busy with writeback, say) lowers one
    // round only.
    let signer = app::open_signer(config).await?;
    let mut measured = Ok(None);
    for _ in 0..ROUNDS {
        let round = signer_ceilings(
            &signer,
            &master,
            &dek,
            &wrapped,
            &sealed,
            seconds,
            concurrency,
        )
        .await;
        measured = match (measured, round) {
            (Ok(None), Ok(r)) => Ok(Some(r)),
            (Ok(Some(best)), Ok(r)) => Ok(Some(best_of(best, r))),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    signer.shutdown().await;
    let (token, unwrap, decrypt) =
        measured?.ok_or_else(|| BenchError::Failed("no ceiling round ran".into()))?;

    let scratch_store = scratch_store(&config.store, scratch)?;
    let mut writes_1 = store_ceiling(&scratch_store, &template, 1, seconds)?;
    let mut writes = store_ceiling(&scratch_store, &template, concurrency, seconds)?;
    let mut writes_128 = store_ceiling(&scratch_store, &template, 128, seconds)?;
    for _ in 1..ROUNDS {
        writes_1 = best(
            writes_1,
            store_ceiling(&scratch_store, &template, 1, seconds)?,
        );
        writes = best(
            writes,
            store_ceiling(&scratch_store, &template, concurrency, seconds)?,
        );
        writes_128 = best(
            writes_128,
            store_ceiling(&scratch_store, &template, 128, seconds)?,
        );
    }
    Ok(Ceilings {
        token_sign_per_s: token.1.per_s,
        unwrap_sign_per_s: unwrap.1.per_s,
        kek_decrypt_per_s: decrypt.1.per_s,
        store_durable_writes_per_s: writes.per_s,
        token_sign_per_s_1: token.0.per_s,
        unwrap_sign_per_s_1: unwrap.0.per_s,
        kek_decrypt_per_s_1: decrypt.0.per_s,
        store_durable_writes_per_s_1: writes_1.per_s,
        store_durable_writes_per_s_128: writes_128.per_s,
        pool_size,
        concurrency,
        store: store_kind(&config.store).into(),
    })
}

/// The store the write ceiling runs on: a fresh sled store in `scratch`, or the configured
/// PostgreSQL database with an audit chain of its own ([`CEILING_CHAIN`]), so the ceiling's records
/// never join a serving instance's chain.
fn scratch_store(configured: &StoreSettings, scratch: &Path) -> Result<Arc<dyn Store>, BenchError> {
    match configured {
        StoreSettings::Sled { .. } => Ok(Arc::new(SledStore::open(scratch)?)),
        StoreSettings::Postgres { settings, .. } => {
            let chain = ChainId::new(CEILING_CHAIN)
                .map_err(|e| BenchError::Failed(format!("{CEILING_CHAIN}: {e}")))?;
            Ok(Arc::new(PgStore::open(settings, chain)?))
        }
    }
}

/// The audit chain of the store ceiling's records on PostgreSQL.
const CEILING_CHAIN: &str = "bench-ceiling";

type Pair = (Rate, Rate);

/// Rounds of every ceiling measurement; the best round counts.
const ROUNDS: usize = 2;

/// The faster of two runs.
fn best(a: Rate, b: Rate) -> Rate {
    if b.per_s > a.per_s { b } else { a }
}

fn best_of(a: (Pair, Pair, Pair), b: (Pair, Pair, Pair)) -> (Pair, Pair, Pair) {
    let pair = |x: Pair, y: Pair| (best(x.0, y.0), best(x.1, y.1));
    (pair(a.0, b.0), pair(a.1, b.1), pair(a.2, b.2))
}

async fn signer_ceilings(
    signer: &Arc<dyn Signer>,
    master: &KeyId,
    dek: &KeyId,
    wrapped: &[Arc<WrappedKey>],
    sealed: &[Arc<(Vec<u8>, EncryptedSecret)>],
    seconds: f64,
    concurrency: usize,
) -> Result<(Pair, Pair, Pair), BenchError> {
    let digest = [0x5a_u8; 32];
    let master = *master;
    let dek = *dek;
    let token = move |signer: Arc<dyn Signer>, _: usize| async move {
        signer
            .sign_digest(KeyRef::Token(&master), &digest)
            .await
            .map(drop)
    };
    let wrapped = wrapped.to_vec();
    let unwrap = move |signer: Arc<dyn Signer>, i: usize| {
        let key = Arc::clone(&wrapped[i % wrapped.len()]);
        async move {
            signer
                .sign_digest(KeyRef::Wrapped(&key), &digest)
                .await
                .map(drop)
        }
    };
    let sealed = sealed.to_vec();
    let decrypt = move |signer: Arc<dyn Signer>, i: usize| {
        let blob = Arc::clone(&sealed[i % sealed.len()]);
        async move {
            signer
                .decrypt_secret(&dek, &blob.0, &blob.1)
                .await
                .map(drop)
        }
    };
    let mut out = Vec::new();
    for level in [1, concurrency] {
        out.push(drive(signer, level, seconds, token).await?);
    }
    let token = (out[0], out[1]);
    out.clear();
    for level in [1, concurrency] {
        out.push(drive(signer, level, seconds, unwrap.clone()).await?);
    }
    let unwrap = (out[0], out[1]);
    out.clear();
    for level in [1, concurrency] {
        out.push(drive(signer, level, seconds, decrypt.clone()).await?);
    }
    Ok((token, unwrap, (out[0], out[1])))
}

/// Runs `op` from `callers` concurrent tasks until `seconds` have passed; any error aborts.
async fn drive<F, Fut>(
    signer: &Arc<dyn Signer>,
    callers: usize,
    seconds: f64,
    op: F,
) -> Result<Rate, BenchError>
where
    F: Fn(Arc<dyn Signer>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), SignerError>> + Send,
{
    // Warm-up: one call per caller, untimed (sessions, caches, first unwrap of each key).
    for i in 0..callers {
        op(Arc::clone(signer), i).await?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..callers {
        let op = op.clone();
        let signer = Arc::clone(signer);
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                op(Arc::clone(&signer), i).await?;
                done += 1;
            }
            Ok::<_, SignerError>(done)
        });
    }
    let mut all = 0u64;
    while let Some(joined) = tasks.join_next().await {
        all += joined.map_err(|e| BenchError::Failed(format!("ceiling task failed: {e}")))??;
    }
    Ok(Rate::new(all, started.elapsed()))
}

/// Durable verification commits from `writers` threads, each on its own activation (a copy of
/// `template` under a fresh id) and consuming its own pre-issued nonce.
fn store_ceiling(
    store: &Arc<dyn Store>,
    template: &crate::store::Activation,
    writers: usize,
    seconds: f64,
) -> Result<Rate, BenchError> {
    /// Most nonces issued up front per writer. A writer that runs out stops early; the rate is taken
    /// over the time until the last writer stopped, so it stays right, over a shorter time.
    const NONCES_PER_WRITER: usize = 16_000;
    // Issuing stops after 1.5 times the measured time as well: where an issue costs as much as a
    // commit (one durable transaction each, as on PostgreSQL), that is more than a writer can
    // consume, without spending minutes preparing nonces that are never used.
    let prepare_until = Instant::now() + Duration::from_secs_f64(seconds * 1.5);
    let stop = Arc::new(AtomicBool::new(false));
    let started_gate = Arc::new(std::sync::Barrier::new(writers + 1));
    let mut handles = Vec::new();
    for _ in 0..writers {
        let store = Arc::clone(store);
        let stop = Arc::clone(&stop);
        let gate = Arc::clone(&started_gate);
        let mut activation = template.clone();
        activation.id = uuid::Uuid::new_v4().to_string();
        handles.push(std::thread::spawn(
            move || -> Result<(u64, Instant), BenchError> {
                let prepared = (|| {
                    activation = store.insert_activation(&activation, None)?.activation;
                    let now = Timestamp::now();
                    let budget = NONCES_PER_WRITER.min(usize::max(256, 64_000 / writers));
                    let mut nonces = Vec::with_capacity(budget);
                    for _ in 0..budget {
                        if Instant::now() > prepare_until {
                            break;
                        }
                        let nonce = IssuedNonce {
                            nonce: crate::crypto::offline_data::generate_nonce(
                                &mut rand::rngs::OsRng,
                            ),
                            issued_for: NonceOwner::Activation(activation.id.clone()),
                            issued_at: now,
                            expires_at: now.saturating_add(Duration::from_secs(3600)),
                            consumed_at: None,
                        };
                        store.issue_nonce(&nonce, None)?;
                        nonces.push(nonce);
                    }
                    Ok::<_, BenchError>(nonces)
                })();
                gate.wait();
                let nonces = prepared?;
                let mut done = 0u64;
                for nonce in nonces {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut next = activation.clone();
                    next.counter += 1;
                    let mut audit = AuditDraft::new(
                        Timestamp::now(),
                        AuditOperation::Verify,
                        AuditOutcome::Valid,
                    );
                    audit.activation_id = Some(next.id.clone());
                    activation = store
                        .commit_verification(VerificationCommit {
                            activation: next,
                            consume_nonce: Some(nonce),
                            audit,
                        })?
                        .activation;
                    done += 1;
                }
                Ok((done, Instant::now()))
            },
        ));
    }
    started_gate.wait();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = 0u64;
    let mut last_finish = started;
    for h in handles {
        let (done, finished) = h
            .join()
            .map_err(|_| BenchError::Failed("a store writer thread panicked".into()))??;
        all += done;
        last_finish = last_finish.max(finished);
    }
    let elapsed = last_finish.duration_since(started);
    Ok(Rate::new(all, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNER: &str = "[signer]\nkind = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"t\"\npin_file = \"pin\"\n";

    fn info(text: &str) -> serde_json::Value {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write the configuration");
        main(BenchCommand::Info { config: path }).expect("bench info")
    }

    #[test]
    fn info_names_the_store_and_sizes_only_a_sled_folder() {
        let sled = info(&format!("listen = \"127.0.0.1:7001\"\n{SIGNER}"));
        assert_eq!(sled["listen"], "127.0.0.1:7001");
        assert_eq!(sled["store"], "sled");
        assert_eq!(sled["data_dir_bytes"], 0, "no data folder yet");
        let postgres = info(&format!(
            "listen = \"127.0.0.1:7002\"\n[store]\nkind = \"postgres\"\n\
             url = \"postgres://u@127.0.0.1:5/db\"\n{SIGNER}"
        ));
        assert_eq!(postgres["store"], "postgres");
        assert!(
            postgres["data_dir_bytes"].is_null(),
            "the configuration's folder is not the store: {postgres}"
        );
    }

    #[test]
    fn results_without_a_store_kind_were_sled_runs() {
        let old = serde_json::json!({
            "token_sign_per_s": 1.0, "unwrap_sign_per_s": 1.0, "kek_decrypt_per_s": 1.0,
            "store_durable_writes_per_s": 1.0, "token_sign_per_s_1": 1.0,
            "unwrap_sign_per_s_1": 1.0, "kek_decrypt_per_s_1": 1.0,
            "store_durable_writes_per_s_1": 1.0, "store_durable_writes_per_s_128": 1.0,
            "pool_size": 2, "concurrency": 32,
        });
        let c: Ceilings = serde_json::from_value(old).expect("an older result parses");
        assert_eq!(c.store, "sled");
    }
}
