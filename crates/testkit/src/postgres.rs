//! Test helper: a fresh PostgreSQL database per test.
//!
//! The server is `OFFLINE_SIGNER_TEST_DATABASE_URL` when set (a role allowed to `CREATE DATABASE`;
//! the TLS tests also need `OFFLINE_SIGNER_TEST_DATABASE_CA`, the CA of its certificate).
//! Otherwise the helper starts one itself with `scripts/postgres-init.sh` into a directory under `/tmp`
//! named after this checkout, shared by every test process of the checkout (nextest runs each test in a
//! process of its own, and initdb per test would cost seconds each). Sharing is guarded by `flock`: each
//! process leaves a lease (its pid) and a watchdog started with the cluster stops and deletes it once no
//! leaseholder has been alive for a few seconds, so no server outlives the test run.
//!
//! Each test gets its own database `test_<uuid>`, dropped when the [`TestDatabase`] is dropped, so tests
//! are independent and may run in parallel.
//!
//! PostgreSQL missing or not starting FAILS the test, unless `OFFLINE_SIGNER_ALLOW_MISSING=1`, in
//! which case the test prints a loud notice and passes without running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use offline_signer::store::{DATABASE_URL_ENV, PostgresSettings, RawPostgresSettings};

/// The server to use, when given from outside.
pub const TEST_URL_ENV: &str = "OFFLINE_SIGNER_TEST_DATABASE_URL";
/// The CA of that server's TLS certificate (for a server given by [`TEST_URL_ENV`]; the cluster the
/// tests start themselves has its own, `tls/ca.crt`, from `scripts/postgres-init.sh`).
pub const TEST_CA_ENV: &str = "OFFLINE_SIGNER_TEST_DATABASE_CA";
/// `1` turns a missing PostgreSQL from a failure into a loud skip.
pub const ALLOW_MISSING_ENV: &str = crate::required::ALLOW_MISSING;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `None` after a loud notice when missing PostgreSQL is allowed; otherwise fails the test.
pub fn missing<T>(why: &str) -> Option<T> {
    if std::env::var(ALLOW_MISSING_ENV).as_deref() == Ok("1") {
        eprintln!(
            "\n**********************************************************************\n\
             SKIPPED: PostgreSQL is not available ({why}).\n\
             {ALLOW_MISSING_ENV}=1 is set, so this PostgreSQL test passes WITHOUT RUNNING.\n\
             **********************************************************************\n"
        );
        return None;
    }
    panic!(
        "PostgreSQL is not available: {why}. Set {TEST_URL_ENV} to a server, let \
         scripts/postgres-init.sh install one (needs root or sudo), or set {ALLOW_MISSING_ENV}=1 \
         to skip the PostgreSQL tests loudly."
    );
}

/// Runs SQL statements on `url` over a connection of its own (CREATE/DROP DATABASE, kill sessions).
pub fn admin_exec(url: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let driver = tokio::spawn(connection);
        let result = client.batch_execute(sql).await.map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        result
    })
}

/// Every table of the database at `url` with all its rows in PostgreSQL's text form (`bytea` as
/// hex): what the store keeps, for scans for secrets. Runs on a thread of its own, so it may be
/// called from async code.
pub fn table_texts(url: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let url = url.to_owned();
    let dump = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let driver = tokio::spawn(connection);
            let tables = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                     ORDER BY 1",
                    &[],
                )
                .await
                .map_err(|e| format!("listing tables: {e}"))?;
            let mut out = Vec::new();
            for row in tables {
                let table: String = row.get(0);
                let rows = client
                    .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
                    .await
                    .map_err(|e| format!("reading {table}: {e}"))?;
                let text = rows
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push((table, text.into_bytes()));
            }
            drop(client);
            let _ = driver.await;
            Ok(out)
        })
    });
    dump.join()
        .map_err(|_| "the table dump thread panicked".to_owned())?
}

/// Holds a row lock in a transaction of its own until dropped (to show who waits and who skips).
pub struct HeldLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeldLock {
    /// Runs `lock_sql` (e.g. `SELECT … FOR UPDATE`) in an open transaction on `url`; returns once the
    /// lock is held.
    pub fn take(url: &str, lock_sql: &str) -> Self {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let url = url.to_owned();
        let lock_sql = lock_sql.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect for the lock holder");
                tokio::spawn(connection);
                client.batch_execute("BEGIN").await.expect("begin");
                client
                    .batch_execute(&lock_sql)
                    .await
                    .expect("take the lock");
                locked_tx.send(()).unwrap();
                tokio::task::spawn_blocking(move || release_rx.recv())
                    .await
                    .unwrap()
                    .ok();
                client.batch_execute("ROLLBACK").await.expect("rollback");
            });
        });
        locked_rx.recv().expect("the lock holder took its lock");
        Self {
            release: Some(release_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The admin URL (role with CREATEDB) of the server for this process, started once.
fn server_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(TEST_URL_ENV) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => start_shared_cluster(),
    })
    .clone()
}

/// The CA file of the test server's TLS certificate.
pub fn server_ca_file() -> Result<PathBuf, String> {
    server_url()?;
    let ca = match std::env::var(TEST_URL_ENV) {
        Ok(url) if !url.is_empty() => match std::env::var(TEST_CA_ENV) {
            Ok(ca) if !ca.is_empty() => PathBuf::from(ca),
            _ => return Err(format!("{TEST_URL_ENV} is set and {TEST_CA_ENV} is not")),
        },
        _ => shared_base().join("cluster/tls/ca.crt"),
    };
    if ca.is_file() {
        Ok(ca)
    } else {
        Err(format!("no TLS CA file at {}", ca.display()))
    }
}

/// The shared cluster's directory: short (unix socket paths are limited to 107 bytes), under `/tmp` (the
/// server's unprivileged user must reach it), and one per checkout.
fn shared_base() -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_MANIFEST_DIR").hash(&mut h);
    PathBuf::from(format!("/tmp/offline-signer-pg-{:016x}", h.finish()))
}

/// Under the lock: leaves this process's lease, starts the cluster (and its watchdog) unless running,
/// and prints the URL. The watchdog stops and deletes the cluster once no lease has been alive for
/// about six seconds.
const ENSURE_CLUSTER: &str = r#"
set -euo pipefail
base=$1 script=$2 lease=$3
mkdir -p "$base/leases"
exec 9>"$base/lock"
flock 9
touch "$base/leases/$lease"
if [[ -s "$base/url" && -s "$base/watchdog.pid" ]] && kill -0 "$(cat "$base/watchdog.pid")" 2>/dev/null; then
    cat "$base/url"
    exit 0
fi
"$script" "$base/cluster" >"$base/url.new" 9>&-
mv "$base/url.new" "$base/url"
watchdog='
base=$1 script=$2 idle=0
while sleep 2; do
    exec 9>"$base/lock"
    flock 9
    alive=0
    for f in "$base"/leases/*; do
        [[ -e "$f" ]] || continue
        if kill -0 "${f##*/}" 2>/dev/null; then alive=1; else rm -f "$f"; fi
    done
    if [[ $alive = 1 ]]; then idle=0; else idle=$((idle + 1)); fi
    if [[ $idle -ge 3 ]]; then
        rm -f "$base/url" "$base/watchdog.pid"
        "$script" --stop "$base/cluster" || true
        rm -rf "$base/cluster"
        exit 0
    fi
    exec 9>&-
done
'
setsid bash -c "$watchdog" watchdog "$base" "$script" </dev/null >/dev/null 2>&1 9>&- &
echo $! >"$base/watchdog.pid"
cat "$base/url"
"#;

fn start_shared_cluster() -> Result<String, String> {
    let script = repo_root().join("scripts/postgres-init.sh");
    let out = Command::new("bash")
        .args(["-c", ENSURE_CLUSTER, "ensure-cluster"])
        .arg(shared_base())
        .arg(&script)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); its messages are above",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("OFFLINE_SIGNER_DATABASE_URL="))
        .map(str::to_owned)
        .ok_or_else(|| "postgres-init.sh printed no OFFLINE_SIGNER_DATABASE_URL line".to_owned())
}

/// A database of its own for one test, dropped with it.
pub struct TestDatabase {
    /// `test_<uuid>`.
    pub name: String,
    /// The server's admin URL (password included).
    admin_url: String,
}

impl TestDatabase {
    /// A new empty database, or `None` when PostgreSQL is missing and that is allowed.
    pub fn create() -> Option<Self> {
        let admin_url = match server_url() {
            Ok(url) => url,
            Err(why) => return missing(&why),
        };
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = admin_exec(&admin_url, &format!("CREATE DATABASE {name}")) {
            return missing(&format!("CREATE DATABASE failed: {e}"));
        }
        Some(Self { name, admin_url })
    }

    /// Settings for this database with a pool of `pool_size`.
    pub fn settings(&self, pool_size: usize) -> PostgresSettings {
        PostgresSettings::from_url(&self.admin_url, pool_size)
            .expect("the test server's URL is valid")
            .with_database(&self.name)
    }

    /// Settings for this database whose connections use TLS, checked against the test server's CA;
    /// `None` when that CA is missing and that is allowed.
    pub fn tls_settings(&self, pool_size: usize) -> Option<PostgresSettings> {
        let ca = match server_ca_file() {
            Ok(ca) => ca,
            Err(why) => return missing(&why),
        };
        let settings = self.settings_with(pool_size, Some(ca));
        Some(settings.unwrap_or_else(|e| panic!("TLS settings for the test server: {e}")))
    }

    /// Settings for this database as the `[store]` table would give them, with `tls_ca_file`.
    ///
    /// # Errors
    /// What the settings' validation says (e.g. a CA file that is not one).
    pub fn settings_with(
        &self,
        pool_size: usize,
        tls_ca_file: Option<PathBuf>,
    ) -> Result<PostgresSettings, String> {
        let url = self.url();
        RawPostgresSettings {
            pool_size: Some(pool_size),
            tls_ca_file,
            ..RawPostgresSettings::default()
        }
        .validate_with_env(Path::new("/"), |name| {
            (name == DATABASE_URL_ENV).then(|| url.clone())
        })
        .map_err(|e| e.to_string())
    }

    /// Sessions of this database other than the asking one: (over TLS, over plain TCP or a socket).
    pub fn sessions_by_tls(&self) -> (usize, usize) {
        let url = self.url();
        std::thread::spawn(move || {
            let counts = query_counts(
                &url,
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
            );
            (counts[0], counts[1])
        })
        .join()
        .expect("the session count does not panic")
    }

    /// A URL for this database (password included), for child processes and admin statements.
    pub fn url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((server, tail)) => {
                let params = tail.find('?').map_or("", |i| &tail[i..]);
                format!("{server}/{}{params}", self.name)
            }
            None => panic!("the test server URL has no database part"),
        }
    }

    /// How many sessions of this database wait for a lock now. Runs on a thread of its own, so it
    /// may be called from async code.
    pub fn lock_waits(&self) -> usize {
        let url = self.url();
        std::thread::spawn(move || count_lock_waits(&url))
            .join()
            .expect("the lock-wait count does not panic")
    }

    /// Waits (up to ten seconds) until exactly `n` sessions of this database wait for a lock.
    pub fn wait_for_lock_waits(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waits = self.lock_waits();
            if waits == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{waits} sessions wait for a lock, not {n}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Terminates every other session connected to this database (a server-side connection loss).
    pub fn kill_sessions(&self) -> Result<(), String> {
        admin_exec(
            &self.url(),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = admin_exec(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// [`TestDatabase::lock_waits`] on the calling thread, which must not be a runtime's.
fn count_lock_waits(url: &str) -> usize {
    query_counts(
        url,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )[0]
}

/// The counts in the one row `sql` answers on `url`, on the calling thread (not a runtime's).
fn query_counts(url: &str, sql: &str) -> Vec<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to count");
        let driver = tokio::spawn(connection);
        let row = client.query_one(sql, &[]).await.expect("count");
        let counts = (0..row.len())
            .map(|i| usize::try_from(row.get::<_, i64>(i)).expect("a count"))
            .collect();
        drop(client);
        let _ = driver.await;
        counts
    })
}
