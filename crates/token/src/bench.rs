//! The benchmark driver: how fast the service is, against what ceiling, and how cost grows.
//!
//! `offline-token bench run` drives everything `scripts/bench.sh` reports. It runs the service's own
//! binary (`offline-signer`, `--server-bin`) as child processes and talks to the server over HTTP only:
//!
//! 1. `offline-signer bench info`: the configuration's listen address, store kind, data folder and
//!    settings;
//!    `offline-signer integration create` (server stopped): a credential for the load;
//! 2. `offline-signer serve` as a child process (one per configuration: several instances share one
//!    PostgreSQL store, and the load takes them in turn); [`seed`] registers and commits activations through
//!    the API with the token's own activation steps, writing each phone's state to a device file;
//! 3. `offline-signer bench ceilings` (server stopped): what the token and the store do alone,
//!    through the service's `Signer` and `Store` traits, same token and pool size, no HTTP;
//! 4. `serve` again, loaded over loopback HTTP with keep-alive and integration credentials
//!    ([`load`]); its peak resident memory read from `/proc/PID/status` (`VmHWM`);
//! 5. more seeding up to the growth size, and the verify run again against the larger store;
//! 6. `result.json`, `chart.svg` and a summary table ([`report`]), including the criterion
//!    micro-benchmarks of the crypto crate when their estimates are found.
//!
//! Nothing here is used by the service itself; no test asserts on a duration.

pub mod cost;
pub mod load;
pub mod phone;
pub mod report;
pub mod seed;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom as _;
use serde_json::{Value, json};

use crate::TokenState;
use crate::client::{Client, Credentials};

/// Why a benchmark step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The device file cannot be read or written.
    #[error("device file: {0}")]
    Devices(String),
    /// The software token refused or failed.
    #[error("token: {0}")]
    Token(#[from] crate::TokenError),
    /// The HTTP client failed.
    #[error("HTTP client: {0}")]
    Client(#[from] crate::client::ClientError),
    /// The server did not start, stop or answer as expected.
    #[error("HTTP: {0}")]
    Http(String),
    /// Anything else, said in words.
    #[error("{0}")]
    Failed(String),
}

/// The `bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Run the whole benchmark (what scripts/bench.sh calls) and write DIR/result.json, DIR/chart.svg
    /// and DIR/summary.md.
    ///
    /// The configuration's data folder must be empty (on PostgreSQL: the database should be fresh):
    /// the run seeds it. The server binary is run for `serve`, `integration create`, `bench info`
    /// and `bench ceilings`.
    Run(RunOptions),
    /// Redraw DIR/chart.svg and DIR/summary.md from an existing result.json (prints the table).
    Report {
        /// A result.json written by `bench run`.
        #[arg(long, value_name = "FILE")]
        result: PathBuf,
        /// Where chart.svg and summary.md go.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Name of the application every run uses.
const APPLICATION: &str = "bench";
/// Concurrency levels of the service runs.
const LEVELS: [usize; 3] = [1, 32, 128];
/// Registrations in flight while seeding.
const SEED_CONCURRENCY: usize = 64;

/// Runs one `bench` subcommand.
///
/// # Errors
/// Any step that fails, as [`BenchError`].
pub fn main(command: BenchCommand) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Failed(format!("starting the async runtime: {e}")))?;
    match command {
        BenchCommand::Report { result, dir } => {
            let text = std::fs::read_to_string(&result)
                .map_err(|e| BenchError::Failed(format!("{}: {e}", result.display())))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| BenchError::Failed(format!("{}: {e}", result.display())))?;
            write_chart_and_summary(&dir, &value)?;
        }
        BenchCommand::Run(options) => {
            let result = runtime.block_on(run(&options))?;
            write(
                &options.dir.join("result.json"),
                &serde_json::to_string_pretty(&result)
                    .map_err(|e| BenchError::Failed(format!("serializing result.json: {e}")))?,
            )?;
            write_chart_and_summary(&options.dir, &result)?;
            println!(
                "wrote {}, {}, {}",
                options.dir.join("result.json").display(),
                options.dir.join("chart.svg").display(),
                options.dir.join("summary.md").display()
            );
        }
    }
    Ok(())
}

/// Writes `dir/chart.svg` and `dir/summary.md` from a `result.json` value and prints the table.
fn write_chart_and_summary(dir: &Path, result: &Value) -> Result<(), BenchError> {
    let table = report::table(result);
    write(&dir.join("chart.svg"), &report::svg(result))?;
    write(&dir.join("summary.md"), &table)?;
    println!("{table}");
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text)
        .map_err(|e| BenchError::Failed(format!("writing {}: {e}", path.display())))
}

/// Options of `bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// The service configuration (a throwaway SoftHSM token and data folder). Repeat it to run
    /// several instances on one shared PostgreSQL store: one `serve` per configuration, each request
    /// sent to the next instance in turn. The first configuration is the one the commands run
    /// with the servers stopped use (`integration create`, `bench ceilings`).
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub configs: Vec<PathBuf>,
    /// A folder whose growth counts as the store's disk use in the growth run (default: the sled
    /// data folder; on PostgreSQL give the cluster's folder, e.g. `pgdata/base`).
    #[arg(long, value_name = "DIR")]
    pub store_disk: Option<PathBuf>,
    /// PostgreSQL's `postmaster.pid` (in the cluster's data folder): the database server's CPU
    /// time (the postmaster and every process it started) is then measured per request too.
    #[arg(long, value_name = "FILE")]
    pub database_pid_file: Option<PathBuf>,
    /// Output folder (device file, logs, result.json, chart.svg).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The service binary (default: `offline-signer` beside this executable).
    #[arg(long, value_name = "FILE")]
    pub server_bin: Option<PathBuf>,
    /// Activations registered for the main runs.
    #[arg(long, default_value_t = 1000)]
    pub activations: usize,
    /// Activations registered in total for the growth run (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    pub growth: usize,
    /// Seconds per measured point.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Folder with criterion's estimates (CARGO_TARGET_DIR/criterion), for the `micro` section.
    #[arg(long, value_name = "DIR")]
    pub criterion: Option<PathBuf>,
    /// Free text recorded in result.json (e.g. what else ran on the machine).
    #[arg(long, default_value = "")]
    pub note: String,
}

/// What `offline-signer bench info` prints about a configuration.
#[derive(Debug, Clone, serde::Deserialize)]
struct ServerInfo {
    listen: String,
    /// `sled` or `postgres` (older servers print nothing: sled).
    #[serde(default = "sled")]
    store: String,
    /// The sled data folder's size; none on PostgreSQL.
    data_dir_bytes: Option<u64>,
    settings: Value,
}

fn sled() -> String {
    "sled".into()
}

/// The service binary and the configurations it runs with (one per instance).
struct ServerBin {
    path: PathBuf,
    configs: Vec<PathBuf>,
    /// [`RunOptions::database_pid_file`].
    database_pid_file: Option<PathBuf>,
}

impl ServerBin {
    fn new(o: &RunOptions) -> Result<Self, BenchError> {
        let path = match &o.server_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| BenchError::Failed(format!("finding this executable: {e}")))?
                .with_file_name("offline-signer"),
        };
        if !path.is_file() {
            return Err(BenchError::Failed(format!(
                "the service binary {} does not exist (build it, or pass --server-bin)",
                path.display()
            )));
        }
        if o.configs.is_empty() {
            return Err(BenchError::Failed("give at least one --config".into()));
        }
        Ok(Self {
            path,
            configs: o.configs.clone(),
            database_pid_file: o.database_pid_file.clone(),
        })
    }

    /// Runs the service binary with `--log warn`, `args` and the first `--config` (its stderr
    /// passed through) and returns its stdout.
    fn run(&self, args: &[&str]) -> Result<Vec<u8>, BenchError> {
        self.run_with(&self.configs[0], args)
    }

    /// [`Self::run`] with a given configuration.
    fn run_with(&self, config: &Path, args: &[&str]) -> Result<Vec<u8>, BenchError> {
        let out = Command::new(&self.path)
            .args(["--log", "warn"])
            .args(args)
            .arg("--config")
            .arg(config)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| BenchError::Failed(format!("running {args:?}: {e}")))?;
        if !out.status.success() {
            return Err(BenchError::Failed(format!(
                "{args:?} failed ({})",
                out.status
            )));
        }
        Ok(out.stdout)
    }

    /// Runs the service binary with `args` and parses its stdout as JSON.
    fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> Result<T, BenchError> {
        self.json_with(&self.configs[0], args)
    }

    /// [`Self::json`] with a given configuration.
    fn json_with<T: serde::de::DeserializeOwned>(
        &self,
        config: &Path,
        args: &[&str],
    ) -> Result<T, BenchError> {
        serde_json::from_slice(&self.run_with(config, args)?)
            .map_err(|e| BenchError::Failed(format!("{args:?} printed no JSON: {e}")))
    }

    /// `bench info` of every configuration, checked to describe instances that may run together.
    fn infos(&self) -> Result<Vec<ServerInfo>, BenchError> {
        let infos = self
            .configs
            .iter()
            .map(|c| self.json_with(c, &["bench", "info"]))
            .collect::<Result<Vec<ServerInfo>, _>>()?;
        check_instances(&infos)?;
        Ok(infos)
    }

    /// Creates an integration credential with `integration create` (server stopped).
    fn credentials(&self) -> Result<Credentials, BenchError> {
        let stdout =
            zeroize::Zeroizing::new(self.run(&["integration", "create", "--name", "bench"])?);
        parse_credentials(&String::from_utf8_lossy(&stdout))
    }
}

/// The whole run; returns `result.json`'s content.
///
/// # Errors
/// A step before the HTTP runs fails (those failures are recorded in the result instead).
pub async fn run(o: &RunOptions) -> Result<Value, BenchError> {
    let started = Instant::now();
    let bin = ServerBin::new(o)?;
    let infos = bin.infos()?;
    let info = &infos[0];
    if info.data_dir_bytes.is_some_and(|b| b > 0) {
        return Err(BenchError::Failed(
            "the configuration's data folder is not empty: the benchmark seeds a fresh store"
                .into(),
        ));
    }
    std::fs::create_dir_all(&o.dir)
        .map_err(|e| BenchError::Failed(format!("{}: {e}", o.dir.display())))?;
    let devices = o.dir.join("devices.jsonl");
    let _ = std::fs::remove_file(&devices);
    let load_before = loadavg();
    let origins: Vec<String> = infos
        .iter()
        .map(|i| format!("http://{}", i.listen))
        .collect();
    let credentials = bin.credentials()?;
    let client = Client::new(&origins[0], Some(credentials.clone()))?;
    let target = load::Target::spread(&origins, credentials)?;

    eprintln!("bench: seeding {} activations", o.activations);
    let server = Server::start(&bin, &o.dir.join("server-seed.log"), &target).await?;
    let seeded = seed::run(
        &client,
        APPLICATION,
        o.activations,
        SEED_CONCURRENCY,
        &devices,
    )
    .await;
    server.stop().await;
    let seed_main = seeded?;
    eprintln!(
        "bench: seeded in {:.1} s; measuring ceilings",
        seed_main.seconds
    );
    let ids = o.dir.join("activation-ids.txt");
    let mut phones = phone::load(&devices)?;
    write(
        &ids,
        &phones
            .iter()
            .map(|p| format!("{}\n", p.activation_id))
            .collect::<String>(),
    )?;
    let scratch = o.dir.join("ceiling-store");
    let _ = std::fs::remove_dir_all(&scratch);
    let ceilings: Value = bin.json(&[
        "bench",
        "ceilings",
        "--app",
        APPLICATION,
        "--activations",
        &ids.display().to_string(),
        "--scratch",
        &scratch.display().to_string(),
        "--seconds",
        &o.seconds.min(3.0).to_string(),
    ])?;
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("bench: ceilings {ceilings}");

    let mut settings = info.settings.clone();
    settings["store"] = json!(info.store);
    settings["instances"] = json!(infos.len());
    settings["seconds_per_point"] = json!(o.seconds);
    settings["activations"] = json!(o.activations);
    settings["growth_activations"] = json!(o.growth);
    settings["pool_size"] = ceilings["pool_size"].clone();
    let mut result = json!({
        "git_commit": git_commit(),
        "machine": machine(),
        "note": o.note,
        "load_average_before": load_before,
        "settings": settings,
        "seed": {"main": seed_main},
        "ceilings": ceilings,
    });

    match http_runs(o, &bin, &client, &target, &mut phones, &mut result).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("bench: HTTP part not run / incomplete: {e}");
            result["http_not_run"] = json!(e.to_string());
        }
    }
    result["micro"] = micro(o.criterion.as_deref());
    let c = result["ceilings"].clone();
    let svc = |m: &str| result["service"][m]["32"]["per_s"].as_f64();
    result["ratios"] = json!({
        "non_personalized_create": report::ratio(svc("non_personalized_create"), c["token_sign_per_s"].as_f64()),
        "personalized_create": report::ratio(svc("personalized_create"), c["unwrap_sign_per_s"].as_f64()),
        "verify": report::ratio(svc("verify"), c["kek_decrypt_per_s"].as_f64()),
    });
    result["load_average_after"] = json!(loadavg());
    result["total_seconds"] = json!(started.elapsed().as_secs_f64());
    let missing = report::missing_fields(&result);
    if !missing.is_empty() {
        eprintln!("bench: result.json lacks {}", missing.join(", "));
    }
    result["missing_fields"] = json!(missing);
    Ok(result)
}

/// The service runs, the growth step and the memory figures; fills `result` as it goes.
async fn http_runs(
    o: &RunOptions,
    bin: &ServerBin,
    client: &Client,
    target: &load::Target,
    phones: &mut [TokenState],
    result: &mut Value,
) -> Result<(), BenchError> {
    let all: Vec<usize> = (0..phones.len()).collect();
    let ids: Vec<String> = phones.iter().map(|p| p.activation_id.clone()).collect();

    let server = Server::start(bin, &o.dir.join("server-main.log"), target).await?;
    let outcome = async {
        eprintln!("bench: warming up");
        target
            .run_create(load::Create::NonPersonalized, APPLICATION, &ids, 32, 1.0)
            .await?;
        target
            .run_create(load::Create::Personalized, APPLICATION, &ids, 32, 1.0)
            .await?;
        for (kind, name) in [
            (load::Create::NonPersonalized, "non_personalized_create"),
            (load::Create::Personalized, "personalized_create"),
        ] {
            for level in LEVELS {
                let s = costed(
                    &server,
                    target,
                    target.run_create(kind, APPLICATION, &ids, level, o.seconds),
                )
                .await?;
                eprintln!("bench: {name} c={level}: {}", json!(s));
                result["service"][name][level.to_string()] = json!(s);
            }
        }
        // Probes (one caller, then 32): size the verify runs so that each lasts about `seconds`
        // (a verify run sends a fixed number of prepared requests).
        let rate_1 = verify_run(target, phones, &all, 1, 0, 200, None)
            .await?
            .per_s
            .max(50.0);
        let rate = verify_run(target, phones, &all, 32, 0, 600, None)
            .await?
            .per_s
            .max(50.0);
        for level in LEVELS {
            let per_s = if level == 1 { rate_1 } else { rate };
            let n = ((per_s * o.seconds) as usize).clamp(200, 60_000);
            let s = verify_run(target, phones, &all, level, 0, n, Some(&server)).await?;
            eprintln!("bench: verify c={level}: {}", json!(s));
            result["service"]["verify"][level.to_string()] = json!(s);
        }
        let n = ((rate * o.seconds) as usize).clamp(200, 60_000);
        let s = verify_run(target, phones, &all, 32, 19, n, Some(&server)).await?;
        eprintln!("bench: verify 0-19 ahead c=32: {}", json!(s));
        result["service_window"]["verify_skip_0_19"]["32"] = json!(s);
        Ok::<_, BenchError>(n)
    }
    .await;
    let rss_main = server.stop().await;
    let n = outcome?;
    result["server_peak_rss_mib_main"] = json!(rss_main);
    result["server_peak_rss_mib"] = json!(rss_main);
    let verify_1k = result["service"]["verify"]["32"]["per_s"].as_f64();
    result["growth"]["verify_per_s_1k"] = json!(verify_1k);

    if o.growth <= o.activations {
        return Ok(());
    }
    let more = o.growth - o.activations;
    eprintln!("bench: seeding {more} more activations (growth run)");
    let devices = o.dir.join("devices.jsonl");
    let before = store_disk_bytes(o, bin)?;
    let server = Server::start(bin, &o.dir.join("server-seed-growth.log"), target).await?;
    let seeded = seed::run(client, APPLICATION, more, SEED_CONCURRENCY, &devices).await;
    server.stop().await;
    let seed_growth = seeded?;
    let after = store_disk_bytes(o, bin)?;
    eprintln!("bench: seeded {more} in {:.1} s", seed_growth.seconds);
    result["seed"]["growth"] = json!(seed_growth);
    if let (Some(before), Some(after)) = (before, after) {
        let per_activation = after.saturating_sub(before) as f64 / more as f64;
        result["growth"]["disk_bytes_per_activation"] = json!(per_activation);
        result["growth"]["disk_bytes_total"] = json!(after);
    }
    result["growth"]["registered"] = json!(o.growth);

    // The phones of the main run keep their advanced counters; the new ones come from the file.
    let mut grown = phone::load(&devices)?;
    let kept = phones.len();
    grown.drain(..kept.min(grown.len()));
    let mut everyone: Vec<TokenState> = Vec::with_capacity(o.growth);
    everyone.extend(phones.iter().cloned());
    everyone.extend(grown);
    let mut spread: Vec<usize> = (0..everyone.len()).collect();
    spread.shuffle(&mut rand::thread_rng());
    spread.truncate(n.max(32));
    let same: Vec<usize> = (0..kept).collect();

    let server = Server::start(bin, &o.dir.join("server-growth.log"), target).await?;
    let outcome = async {
        verify_run(target, &mut everyone, &same, 32, 0, 400, None).await?;
        let spread_run =
            verify_run(target, &mut everyone, &spread, 32, 0, n, Some(&server)).await?;
        eprintln!(
            "bench: verify c=32, {} registered, spread: {}",
            o.growth,
            json!(spread_run)
        );
        let same_run = verify_run(target, &mut everyone, &same, 32, 0, n, Some(&server)).await?;
        eprintln!(
            "bench: verify c=32, {} registered, same {kept}: {}",
            o.growth,
            json!(same_run)
        );
        Ok::<_, BenchError>((spread_run, same_run))
    }
    .await;
    let rss_growth = server.stop().await;
    let (spread_run, same_run) = outcome?;
    result["server_peak_rss_mib_growth"] = json!(rss_growth);
    result["server_peak_rss_mib"] = json!(rss_main.max(rss_growth));
    result["growth"]["verify_per_s_100k"] = json!(spread_run.per_s);
    result["growth"]["verify_100k_spread"] = json!(spread_run);
    result["growth"]["verify_per_s_100k_same_1k"] = json!(same_run.per_s);
    if let Some(v1k) = verify_1k.filter(|v| *v > 0.0) {
        result["growth"]["verify_loss_100k"] = json!(1.0 - spread_run.per_s / v1k);
    }
    Ok(())
}

/// Creates `n` payloads (untimed), has the tokens sign them, and runs `n` verifies from
/// `concurrency` tasks; with `server`, the timed part's cost per request is measured too.
async fn verify_run(
    target: &load::Target,
    phones: &mut [TokenState],
    selection: &[usize],
    concurrency: usize,
    max_skip: u32,
    n: usize,
    server: Option<&Server>,
) -> Result<stats::Summary, BenchError> {
    let payloads = target.issue_payloads(APPLICATION, n, 32).await?;
    let run = target.run_verify(phones, selection, payloads, concurrency, max_skip);
    match server {
        Some(server) => costed(server, target, run).await,
        None => run.await,
    }
}

/// Runs one timed run and fills in what it cost the server (every instance, summed) and the load
/// generator per request, and the PKCS#11 look-ups it made (searches, cache hits).
async fn costed(
    server: &Server,
    target: &load::Target,
    run: impl std::future::Future<Output = Result<stats::Summary, BenchError>>,
) -> Result<stats::Summary, BenchError> {
    let pids = server.pids();
    let database = || server.database.and_then(cost::ProcCost::of_tree);
    let lookups_before = target.hsm_lookups().await;
    let before = (cost::ProcCost::of_all(&pids), cost::ProcCost::of_self());
    let database_before = database();
    let summary = run.await?;
    let after = (cost::ProcCost::of_all(&pids), cost::ProcCost::of_self());
    let database_after = database();
    let lookups_after = target.hsm_lookups().await;
    let per = cost::per_request((before.0, after.0), (before.1, after.1), summary.requests);
    let database_cpu = cost::cpu_per_request(database_before, database_after, summary.requests);
    Ok(summary
        .with_cost(per)
        .with_database_cpu(database_cpu)
        .with_hsm_lookups(lookups_before, lookups_after))
}

/// The server as child processes (`offline-signer serve`, one per configuration), stderr to a log
/// file each (`NAME.log`, then `NAME-2.log`, ...).
struct Server {
    children: Vec<Child>,
    /// The database server's postmaster, when it is measured ([`RunOptions::database_pid_file`]).
    database: Option<u32>,
}

impl Server {
    async fn start(bin: &ServerBin, log: &Path, target: &load::Target) -> Result<Self, BenchError> {
        let database = match &bin.database_pid_file {
            Some(file) => Some(cost::postmaster_pid(file).map_err(BenchError::Failed)?),
            None => None,
        };
        let mut server = Server {
            children: Vec::with_capacity(bin.configs.len()),
            database,
        };
        let mut logs = Vec::with_capacity(bin.configs.len());
        for (i, config) in bin.configs.iter().enumerate() {
            let log = instance_log(log, i);
            let log_file = match std::fs::File::create(&log) {
                Ok(f) => f,
                Err(e) => {
                    server.stop().await;
                    return Err(BenchError::Failed(format!("{}: {e}", log.display())));
                }
            };
            let spawned = Command::new(&bin.path)
                .arg("serve")
                .arg("--config")
                .arg(config)
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn();
            match spawned {
                Ok(child) => server.children.push(child),
                Err(e) => {
                    server.stop().await;
                    return Err(BenchError::Http(format!("starting the server: {e}")));
                }
            }
            logs.push(log);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let exited =
                server
                    .children
                    .iter_mut()
                    .zip(&logs)
                    .find_map(|(c, log)| match c.try_wait() {
                        Ok(Some(status)) => Some((status, log.clone())),
                        _ => None,
                    });
            if let Some((status, log)) = exited {
                server.stop().await;
                return Err(BenchError::Http(format!(
                    "the server exited at start ({status}); see {}",
                    log.display()
                )));
            }
            if target.healthy().await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                server.stop().await;
                return Err(BenchError::Http(
                    "the server did not answer /health within 60 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Reads the peak resident memory (MiB; the largest instance's), then stops every instance
    /// with SIGTERM (SIGKILL after 30 s).
    async fn stop(mut self) -> f64 {
        let rss = self
            .pids()
            .into_iter()
            .map(|pid| peak_rss_mib(pid).unwrap_or(f64::NAN))
            .fold(None, |max: Option<f64>, r| {
                Some(max.map_or(r, |m| m.max(r)))
            })
            .unwrap_or(f64::NAN);
        for pid in self.pids() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        eprintln!("bench: the server did not stop on SIGTERM; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        rss
    }
}

/// The log file of instance `i` (from 0): `log` itself for the first, `NAME-<i+1>.log` after.
fn instance_log(log: &Path, i: usize) -> PathBuf {
    if i == 0 {
        return log.to_path_buf();
    }
    let stem = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    log.with_file_name(format!("{stem}-{}.log", i + 1))
}

/// Instances run together only on a shared store, each on its own address.
fn check_instances(infos: &[ServerInfo]) -> Result<(), BenchError> {
    if infos.len() > 1 {
        if let Some(i) = infos.iter().find(|i| i.store != "postgres") {
            return Err(BenchError::Failed(format!(
                "{} instances need a shared store (postgres); a configuration uses {}",
                infos.len(),
                i.store
            )));
        }
        let mut listens: Vec<&str> = infos.iter().map(|i| i.listen.as_str()).collect();
        listens.sort_unstable();
        listens.dedup();
        if listens.len() < infos.len() {
            return Err(BenchError::Failed(
                "two configurations listen on the same address".into(),
            ));
        }
    }
    Ok(())
}

/// The store's size on disk: `--store-disk` when given, else the sled data folder (`bench info`);
/// `None` when neither applies (PostgreSQL without `--store-disk`).
fn store_disk_bytes(o: &RunOptions, bin: &ServerBin) -> Result<Option<u64>, BenchError> {
    match &o.store_disk {
        Some(dir) => Ok(Some(dir_bytes(dir))),
        None => Ok(bin.json::<ServerInfo>(&["bench", "info"])?.data_dir_bytes),
    }
}

/// Bytes of every file below `dir` (0 when it cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `VmHWM` of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmhwm_kib(&status).map(|kib| kib as f64 / 1024.0)
}

fn parse_vmhwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The client token and secret from what `integration create` prints.
fn parse_credentials(text: &str) -> Result<Credentials, BenchError> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::to_owned))
            .ok_or_else(|| BenchError::Http(format!("integration create printed no {key}")))
    };
    Ok(Credentials::new(
        value("OFFLINE_SIGNER_CLIENT_TOKEN=")?,
        value("OFFLINE_SIGNER_CLIENT_SECRET=")?,
    ))
}

/// The criterion estimates of `benches/crypto.rs`, in microseconds (mean), when present.
fn micro(criterion: Option<&Path>) -> Value {
    let Some(dir) = criterion else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for name in [
        "code_2_factors",
        "window_worst_case",
        "offline_data_build",
        "offline_data_parse",
        "offline_data_verify",
    ] {
        let path = dir.join(name).join("new").join("estimates.json");
        let mean_ns = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["mean"]["point_estimate"].as_f64());
        if let Some(ns) = mean_ns {
            out.insert(format!("{name}_us"), json!(ns / 1000.0));
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

fn loadavg() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| json!(s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")))
        .unwrap_or(Value::Null)
}

fn git_commit() -> Value {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| json!(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or(Value::Null)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "kernel": kernel.map(|k| k.trim().to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_peak_resident_set() {
        let status = "Name:\tx\nVmPeak:\t  900 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vmhwm_kib(status), Some(2048));
        assert_eq!(parse_vmhwm_kib("Name: x\n"), None);
        assert!(peak_rss_mib(std::process::id()).is_some_and(|m| m > 0.0));
    }

    #[test]
    fn credentials_are_read_from_integration_create_output() {
        let printed = "Created integration bench.\nOFFLINE_SIGNER_CLIENT_TOKEN=tok-1\nOFFLINE_SIGNER_CLIENT_SECRET=s3cr3t\n";
        let c = parse_credentials(printed).expect("both lines are there");
        assert_eq!(c.client_token, "tok-1");
        assert!(parse_credentials("OFFLINE_SIGNER_CLIENT_TOKEN=tok-1\n").is_err());
    }

    fn info(listen: &str, store: &str) -> ServerInfo {
        ServerInfo {
            listen: listen.into(),
            store: store.into(),
            data_dir_bytes: None,
            settings: Value::Null,
        }
    }

    #[test]
    fn several_instances_need_postgres_and_their_own_addresses() {
        assert!(check_instances(&[info("127.0.0.1:1", "sled")]).is_ok());
        let two_pg = [
            info("127.0.0.1:1", "postgres"),
            info("127.0.0.1:2", "postgres"),
        ];
        assert!(check_instances(&two_pg).is_ok());
        let err = check_instances(&[info("127.0.0.1:1", "postgres"), info("127.0.0.1:2", "sled")])
            .expect_err("sled is one process");
        assert!(err.to_string().contains("shared store"), "{err}");
        assert!(
            check_instances(&[
                info("127.0.0.1:1", "postgres"),
                info("127.0.0.1:1", "postgres")
            ])
            .is_err()
        );
    }

    #[test]
    fn bench_info_without_store_fields_is_a_sled_one() {
        let old: ServerInfo =
            serde_json::from_str(r#"{"listen":"127.0.0.1:1","data_dir_bytes":0,"settings":{}}"#)
                .expect("parses");
        assert_eq!(old.store, "sled");
        assert_eq!(old.data_dir_bytes, Some(0));
        let pg: ServerInfo = serde_json::from_str(
            r#"{"listen":"127.0.0.1:1","store":"postgres","data_dir_bytes":null,"settings":{}}"#,
        )
        .expect("parses");
        assert_eq!((pg.store.as_str(), pg.data_dir_bytes), ("postgres", None));
    }

    #[test]
    fn each_instance_logs_to_its_own_file() {
        let log = Path::new("/tmp/b/server-main.log");
        assert_eq!(instance_log(log, 0), log);
        assert_eq!(instance_log(log, 1), Path::new("/tmp/b/server-main-2.log"));
    }

    #[test]
    fn disk_use_counts_every_file_below() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(dir_bytes(&dir.path().join("absent")), 0);
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/one"), [0u8; 10]).expect("write");
        std::fs::write(dir.path().join("a/b/two"), [0u8; 5]).expect("write");
        assert_eq!(dir_bytes(dir.path()), 15);
    }

    #[test]
    fn missing_criterion_output_is_null() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(micro(Some(dir.path())), Value::Null);
        let est = dir.path().join("window_worst_case/new");
        std::fs::create_dir_all(&est).expect("mkdir");
        std::fs::write(
            est.join("estimates.json"),
            r#"{"mean":{"point_estimate":81234.0}}"#,
        )
        .expect("write");
        assert_eq!(
            micro(Some(dir.path()))["window_worst_case_us"],
            json!(81.234)
        );
    }
}
