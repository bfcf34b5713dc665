//! The PostgreSQL store's settings in two stages: [`RawPostgresSettings`] as the `[store]` table of the
//! configuration file says it (serde, unknown keys refused), then [`PostgresSettings`] checked and typed by
//! [`RawPostgresSettings::validate`].
//!
//! ```toml
//! [store]
//! kind = "postgres"                    # read by the configuration, not here
//! url = "postgres://offline_signer@127.0.0.1:5432/offline_signer"
//! password_file = "db.password"        # or password_env = "VARIABLE"
//! pool_size = 16
//! audit_chain = "signer-1"             # optional; see PostgresSettings::audit_chain_or_persisted
//! audit_lanes = 8                      # optional, 1..=64; see PostgresSettings::audit_lanes
//! tls_ca_file = "db-ca.pem"            # optional: TLS, the server's certificate checked (tls.rs)
//! ```
//!
//! The password never sits in the file: it comes from `password_file` (relative to the configuration's
//! directory) or from the environment variable named by `password_env`. A password inside `url` is
//! refused, except when the whole URL comes from [`DATABASE_URL_ENV`] (what `scripts/postgres-init.sh`
//! prints), which then replaces `url`. The password is held in a [`SecretString`]: it appears in no
//! `Debug`, no log and no error message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_postgres::config::{Host, SslMode};

use super::tls::DatabaseTls;
use crate::store::audit::{ChainId, InvalidChainId};

/// The environment variable that, when set, gives the whole database URL (password included) and
/// replaces the file's `url`.
pub const DATABASE_URL_ENV: &str = "OFFLINE_SIGNER_DATABASE_URL";

/// Connections in the pool when `pool_size` is not given.
const DEFAULT_POOL_SIZE: usize = 16;

/// The largest accepted `pool_size` (PostgreSQL's own default `max_connections` is 100).
const MAX_POOL_SIZE: usize = 1024;

/// Audit lanes per instance when `audit_lanes` is not given.
const DEFAULT_AUDIT_LANES: usize = 8;

/// The largest accepted `audit_lanes` (its suffix must fit [`ChainId::LANE_SUFFIX_MAX`]).
pub(crate) const MAX_AUDIT_LANES: usize = 64;

/// How long a new connection may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[store]` keys of a PostgreSQL store, as written (the `kind` key belongs to
/// [`crate::store::RawStoreSettings`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresSettings {
    /// `postgres://user@host:port/database` (or libpq `key=value` form), without a password.
    pub url: Option<String>,
    /// A file holding the password (trailing newline ignored); relative to the configuration's directory.
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// Connections in the pool (default 16).
    pub pool_size: Option<usize>,
    /// This instance's audit chain id (see [`PostgresSettings::audit_chain_or_persisted`]).
    pub audit_chain: Option<String>,
    /// How many audit chains ("lanes") this instance appends to, 1..=64 (default 8); see
    /// [`PostgresSettings::audit_lanes`].
    pub audit_lanes: Option<usize>,
    /// PEM file of the CA(s) that sign the database server's certificate; relative to the
    /// configuration's directory. Given, every connection uses TLS and checks the certificate and
    /// the host name; absent, connections are plain TCP (loopback or a trusted network only).
    pub tls_ca_file: Option<PathBuf>,
}

/// What is wrong with the PostgreSQL settings. No variant carries the password or the URL.
#[derive(Debug, thiserror::Error)]
pub enum PostgresSettingsError {
    /// Neither `url` nor the environment variable gives a database.
    #[error("store.url is missing (or set {DATABASE_URL_ENV})")]
    UrlMissing,
    /// The URL does not parse.
    #[error("the database URL does not parse: {detail}")]
    UrlInvalid {
        /// What is wrong, in words.
        detail: String,
    },
    /// The URL lacks a part the store needs.
    #[error("the database URL names no {part}")]
    UrlIncomplete {
        /// The part that is missing.
        part: &'static str,
    },
    /// A password written into the configuration file's URL.
    #[error(
        "store.url holds a password: put it in password_file or password_env (or give the whole URL in {DATABASE_URL_ENV})"
    )]
    PasswordInUrl,
    /// The password is given in more than one place.
    #[error("the database password is given more than once (url, password_file, password_env)")]
    PasswordTwice,
    /// `password_file` cannot be read.
    #[error("cannot read the database password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `password_file` is empty.
    #[error("the database password file {path} is empty")]
    PasswordFileEmpty {
        /// The file.
        path: PathBuf,
    },
    /// `password_env` names a variable that is unset, empty or not UTF-8.
    #[error("the environment variable {name} (store.password_env) is unset or empty")]
    PasswordEnv {
        /// The variable.
        name: String,
    },
    /// `pool_size` out of range.
    #[error("store.pool_size must be between 1 and {MAX_POOL_SIZE}, not {value}")]
    PoolSize {
        /// The value given.
        value: usize,
    },
    /// `audit_lanes` out of range.
    #[error("store.audit_lanes must be between 1 and {MAX_AUDIT_LANES}, not {value}")]
    AuditLanes {
        /// The value given.
        value: usize,
    },
    /// `audit_chain` is too long to carry the lane suffix.
    #[error(
        "store.audit_chain {chain:?} is too long for audit_lanes > 1: at most {max} characters \
         (lane k is named <audit_chain>.lane<k>); shorten it or set audit_lanes = 1"
    )]
    AuditChainTooLongForLanes {
        /// The chain id.
        chain: String,
        /// The longest base id that fits.
        max: usize,
    },
    /// `audit_chain` is not a valid chain id.
    #[error("store.audit_chain: {0}")]
    AuditChain(#[from] InvalidChainId),
    /// The CA file of `tls_ca_file` cannot be used.
    #[error("store.tls_ca_file {path}: {detail}")]
    TlsCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        detail: String,
    },
    /// The URL asks for TLS and no CA says which server certificate to trust.
    #[error(
        "the database URL says sslmode=require: give store.tls_ca_file (the CA that signs the server's certificate)"
    )]
    TlsWithoutCa,
    /// `tls_ca_file` is given, and the URL turns TLS off or names a unix socket (which has none).
    #[error("store.tls_ca_file needs a TCP host and no sslmode=disable in the database URL")]
    TlsNotPossible,
    /// The persisted chain id file cannot be read or written.
    #[error("audit chain id file {path}: {detail}")]
    ChainIdFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        detail: String,
    },
}

/// Validated settings of a PostgreSQL store. `Debug` names the server and database, never the password.
#[derive(Clone)]
pub struct PostgresSettings {
    /// Host, port, user, database and options; no password.
    config: tokio_postgres::Config,
    password: Option<SecretString>,
    pool_size: usize,
    audit_chain: Option<ChainId>,
    audit_lanes: usize,
    /// TLS for every connection, from `tls_ca_file` (named here for `Debug`).
    tls: Option<(PathBuf, DatabaseTls)>,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("target", &self.target())
            .field("password", &self.password.as_ref().map(|_| "REDACTED"))
            .field("pool_size", &self.pool_size)
            .field("audit_chain", &self.audit_chain)
            .field("audit_lanes", &self.audit_lanes)
            .field("tls_ca_file", &self.tls.as_ref().map(|(path, _)| path))
            .finish()
    }
}

impl RawPostgresSettings {
    /// Checks the settings, reads the password and resolves `password_file` against `base_dir` (the
    /// configuration file's directory). Reads [`DATABASE_URL_ENV`] and `password_env` from the process
    /// environment.
    pub fn validate(self, base_dir: &Path) -> Result<PostgresSettings, PostgresSettingsError> {
        self.validate_with_env(base_dir, |name| std::env::var(name).ok())
    }

    /// [`Self::validate`] with the environment given as a function (for tests).
    pub fn validate_with_env(
        self,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<PostgresSettings, PostgresSettingsError> {
        let from_env = env(DATABASE_URL_ENV).filter(|u| !u.is_empty());
        let url_from_env = from_env.is_some();
        let url = from_env
            .or(self.url)
            .ok_or(PostgresSettingsError::UrlMissing)?;
        let config = tokio_postgres::Config::from_str(&url).map_err(|e| {
            PostgresSettingsError::UrlInvalid {
                detail: e.to_string(),
            }
        })?;
        drop(url);
        if config.get_hosts().is_empty() {
            return Err(PostgresSettingsError::UrlIncomplete { part: "host" });
        }
        if config.get_dbname().is_none() {
            return Err(PostgresSettingsError::UrlIncomplete { part: "database" });
        }
        if config.get_user().is_none() {
            return Err(PostgresSettingsError::UrlIncomplete { part: "user" });
        }
        let in_url = config
            .get_password()
            .map(|p| SecretString::from(String::from_utf8_lossy(p).into_owned()));
        if in_url.is_some() && !url_from_env {
            return Err(PostgresSettingsError::PasswordInUrl);
        }
        let from_file = match self.password_file {
            None => None,
            Some(path) => Some(read_password_file(&base_dir.join(path))?),
        };
        let from_var = match self.password_env {
            None => None,
            Some(name) => match env(&name).filter(|v| !v.is_empty()) {
                Some(value) => Some(SecretString::from(value)),
                None => return Err(PostgresSettingsError::PasswordEnv { name }),
            },
        };
        let mut given = [in_url, from_file, from_var].into_iter().flatten();
        let password = given.next();
        if given.next().is_some() {
            return Err(PostgresSettingsError::PasswordTwice);
        }
        let mut config = without_password(&config);
        let tls = match self.tls_ca_file {
            None if config.get_ssl_mode() == SslMode::Require => {
                return Err(PostgresSettingsError::TlsWithoutCa);
            }
            None => None,
            Some(_)
                if config.get_ssl_mode() == SslMode::Disable
                    || config
                        .get_hosts()
                        .iter()
                        .any(|h| matches!(h, Host::Unix(_))) =>
            {
                return Err(PostgresSettingsError::TlsNotPossible);
            }
            Some(path) => {
                let path = base_dir.join(path);
                let tls = DatabaseTls::from_ca_file(&path).map_err(|detail| {
                    PostgresSettingsError::TlsCaFile {
                        path: path.clone(),
                        detail,
                    }
                })?;
                config.ssl_mode(SslMode::Require);
                Some((path, tls))
            }
        };
        let pool_size = self.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if pool_size == 0 || pool_size > MAX_POOL_SIZE {
            return Err(PostgresSettingsError::PoolSize { value: pool_size });
        }
        let audit_chain = self.audit_chain.map(ChainId::new).transpose()?;
        let audit_lanes = self.audit_lanes.unwrap_or(DEFAULT_AUDIT_LANES);
        if audit_lanes == 0 || audit_lanes > MAX_AUDIT_LANES {
            return Err(PostgresSettingsError::AuditLanes { value: audit_lanes });
        }
        if let Some(chain) = &audit_chain {
            check_lane_room(chain, audit_lanes)?;
        }
        Ok(PostgresSettings {
            config,
            password,
            pool_size,
            audit_chain,
            audit_lanes,
            tls,
        })
    }
}

/// Refuses a base chain id too long to carry the suffix of lane `lanes - 1`.
pub(crate) fn check_lane_room(chain: &ChainId, lanes: usize) -> Result<(), PostgresSettingsError> {
    if lanes > 1 && chain.lane(lanes - 1).is_err() {
        return Err(PostgresSettingsError::AuditChainTooLongForLanes {
            chain: chain.as_str().to_owned(),
            max: ChainId::MAX_LEN.saturating_sub(format!(".lane{}", lanes - 1).len()),
        });
    }
    Ok(())
}

/// The password in `path`, without its trailing line break.
fn read_password_file(path: &Path) -> Result<SecretString, PostgresSettingsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PostgresSettingsError::PasswordFile {
            path: path.to_path_buf(),
            source,
        })?;
    let secret = SecretString::from(text);
    let trimmed = secret.expose_secret().trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        return Err(PostgresSettingsError::PasswordFileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// A copy of `config` with everything but the password (tokio-postgres cannot unset one).
fn without_password(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut out = tokio_postgres::Config::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(name) => out.host(name),
            tokio_postgres::config::Host::Unix(path) => out.host_path(path),
        };
    }
    for addr in config.get_hostaddrs() {
        out.hostaddr(*addr);
    }
    for port in config.get_ports() {
        out.port(*port);
    }
    if let Some(user) = config.get_user() {
        out.user(user);
    }
    if let Some(db) = config.get_dbname() {
        out.dbname(db);
    }
    if let Some(options) = config.get_options() {
        out.options(options);
    }
    out.application_name(config.get_application_name().unwrap_or("offline-signer"));
    out.ssl_mode(config.get_ssl_mode());
    out.connect_timeout(
        config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT),
    );
    out.keepalives(config.get_keepalives());
    out.keepalives_idle(config.get_keepalives_idle());
    out.target_session_attrs(config.get_target_session_attrs());
    out
}

impl PostgresSettings {
    /// Settings for `url` (a password inside it is kept) with a pool of `pool_size` — for tests and
    /// tools that already hold a URL, such as the output of `scripts/postgres-init.sh`.
    pub fn from_url(url: &str, pool_size: usize) -> Result<Self, PostgresSettingsError> {
        RawPostgresSettings {
            pool_size: Some(pool_size),
            ..RawPostgresSettings::default()
        }
        .validate_with_env(Path::new("."), |name| {
            (name == DATABASE_URL_ENV).then(|| url.to_owned())
        })
    }

    /// `user@host:port/database`, for messages (never the password).
    pub fn target(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "?".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?")
        )
    }

    /// Connections in the pool.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The audit chain id from the configuration, if one was given.
    pub fn audit_chain(&self) -> Option<&ChainId> {
        self.audit_chain.as_ref()
    }

    /// How many audit chains ("lanes") this instance appends to. Lane 0 is the instance's chain
    /// ([`Self::audit_chain_or_persisted`]), lane `k ≥ 1` is `<chain>.lane<k>` ([`ChainId::lane`]).
    /// Concurrent audited writes take whichever lane is free, so up to this many of them commit
    /// together (one WAL flush for the group) instead of one after another.
    pub fn audit_lanes(&self) -> usize {
        self.audit_lanes
    }

    /// The same settings with another number of audit lanes (clamped to 1..=64).
    pub fn with_audit_lanes(&self, lanes: usize) -> Self {
        Self {
            audit_lanes: lanes.clamp(1, MAX_AUDIT_LANES),
            ..self.clone()
        }
    }

    /// The same settings for another database on the same server (tests make a database each).
    pub fn with_database(&self, dbname: &str) -> Self {
        let mut out = self.clone();
        out.config.dbname(dbname);
        out
    }

    /// The same settings with another pool size.
    pub fn with_pool_size(&self, pool_size: usize) -> Self {
        Self {
            pool_size: pool_size.clamp(1, MAX_POOL_SIZE),
            ..self.clone()
        }
    }

    /// This instance's audit chain: the configured `audit_chain` if any; otherwise the id kept in `path`
    /// (e.g. `audit-chain.id` in the data directory), which is created on first use holding
    /// `instance-<random UUID>`. A persisted id keeps an instance on its chain across restarts; two
    /// instances sharing one file share one chain, which stays correct but serializes their appends.
    pub fn audit_chain_or_persisted(&self, path: &Path) -> Result<ChainId, PostgresSettingsError> {
        if let Some(chain) = &self.audit_chain {
            return Ok(chain.clone());
        }
        let fail = |detail: String| PostgresSettingsError::ChainIdFile {
            path: path.to_path_buf(),
            detail,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(ChainId::new(text.trim()).map_err(|e| fail(e.to_string()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = ChainId::new(format!("instance-{}", uuid::Uuid::new_v4()))
                    .map_err(|e| fail(e.to_string()))?;
                // Write beside, then rename: a crash leaves the old state or the whole file.
                let tmp = path.with_extension("id.tmp");
                std::fs::write(&tmp, format!("{id}\n")).map_err(|e| fail(e.to_string()))?;
                std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))?;
                Ok(id)
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// TLS for the connections, when `tls_ca_file` was given.
    pub(super) fn tls(&self) -> Option<&DatabaseTls> {
        self.tls.as_ref().map(|(_, tls)| tls)
    }

    /// Whether connections use TLS (`tls_ca_file` was given).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether connections go as plain TCP to a host that is not this machine's loopback (worth a
    /// warning: the database's traffic, verification records included, crosses a network in clear).
    pub fn plain_over_network(&self) -> bool {
        let loopback = |name: &str| {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        };
        self.tls.is_none()
            && self
                .config
                .get_hosts()
                .iter()
                .any(|host| matches!(host, Host::Tcp(name) if !loopback(name)))
    }

    /// The client configuration with the password set, for the pool.
    pub(super) fn connect_config(&self) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-pw-7f1c";

    fn raw(url: &str) -> RawPostgresSettings {
        RawPostgresSettings {
            url: Some(url.to_owned()),
            ..RawPostgresSettings::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn toml_keys_parse_and_unknown_keys_are_refused() {
        let ok: RawPostgresSettings = toml::from_str(
            "url = \"postgres://u@h/d\"\npassword_file = \"db.password\"\npool_size = 4\n",
        )
        .expect("known keys");
        assert_eq!(ok.pool_size, Some(4));
        assert!(toml::from_str::<RawPostgresSettings>("password = \"x\"\n").is_err());
    }

    #[test]
    fn password_in_file_url_is_refused_but_allowed_from_the_environment() {
        let url = format!("postgres://u:{SECRET}@127.0.0.1:5432/d");
        let err = raw(&url)
            .validate_with_env(Path::new("."), no_env)
            .expect_err("password in the file's url");
        assert!(matches!(err, PostgresSettingsError::PasswordInUrl));
        assert!(!err.to_string().contains(SECRET));

        let env_url = url.clone();
        let settings = raw("postgres://ignored@h/x")
            .validate_with_env(Path::new("."), move |n| {
                (n == DATABASE_URL_ENV).then(|| env_url.clone())
            })
            .expect("the environment's url may carry the password");
        assert_eq!(settings.target(), "u@127.0.0.1:5432/d");
        let shown = format!("{settings:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("REDACTED"));
        assert_eq!(
            settings.connect_config().get_password(),
            Some(SECRET.as_bytes())
        );
    }

    #[test]
    fn password_from_file_or_variable_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("db.password"), format!("{SECRET}\n")).expect("write");
        let settings = RawPostgresSettings {
            password_file: Some("db.password".into()),
            ..raw("postgres://u@h/d")
        }
        .validate_with_env(dir.path(), no_env)
        .expect("file");
        assert_eq!(
            settings.connect_config().get_password(),
            Some(SECRET.as_bytes())
        );

        let both = RawPostgresSettings {
            password_file: Some("db.password".into()),
            password_env: Some("PW".into()),
            ..raw("postgres://u@h/d")
        }
        .validate_with_env(dir.path(), |n| (n == "PW").then(|| SECRET.to_owned()));
        assert!(matches!(both, Err(PostgresSettingsError::PasswordTwice)));

        let unset = RawPostgresSettings {
            password_env: Some("PW".into()),
            ..raw("postgres://u@h/d")
        }
        .validate_with_env(dir.path(), no_env);
        assert!(matches!(
            unset,
            Err(PostgresSettingsError::PasswordEnv { .. })
        ));
    }

    #[test]
    fn incomplete_urls_and_bad_pool_sizes_are_refused() {
        assert!(matches!(
            RawPostgresSettings::default().validate_with_env(Path::new("."), no_env),
            Err(PostgresSettingsError::UrlMissing)
        ));
        assert!(matches!(
            raw("postgres://h/d").validate_with_env(Path::new("."), no_env),
            Err(PostgresSettingsError::UrlIncomplete { part: "user" })
        ));
        assert!(matches!(
            RawPostgresSettings {
                pool_size: Some(0),
                ..raw("postgres://u@h/d")
            }
            .validate_with_env(Path::new("."), no_env),
            Err(PostgresSettingsError::PoolSize { value: 0 })
        ));
    }

    #[test]
    fn audit_lanes_default_to_eight_are_bounded_and_need_room_in_the_chain_id() {
        let lanes = |n: Option<usize>, chain: Option<&str>| {
            RawPostgresSettings {
                audit_lanes: n,
                audit_chain: chain.map(str::to_owned),
                ..raw("postgres://u@h/d")
            }
            .validate_with_env(Path::new("."), no_env)
        };
        assert_eq!(lanes(None, None).expect("default").audit_lanes(), 8);
        assert_eq!(lanes(Some(1), None).expect("one").audit_lanes(), 1);
        assert_eq!(lanes(Some(64), None).expect("most").audit_lanes(), 64);
        for bad in [0, 65] {
            assert!(matches!(
                lanes(Some(bad), None),
                Err(PostgresSettingsError::AuditLanes { value }) if value == bad
            ));
        }
        let long = "c".repeat(60);
        assert!(matches!(
            lanes(Some(8), Some(&long)),
            Err(PostgresSettingsError::AuditChainTooLongForLanes { max: 58, .. })
        ));
        assert_eq!(
            lanes(Some(1), Some(&long)).expect("one lane").audit_lanes(),
            1
        );
        assert!(toml::from_str::<RawPostgresSettings>("audit_lanes = 4").is_ok());
    }

    #[test]
    fn chain_id_is_persisted_once_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = raw("postgres://u@h/d")
            .validate_with_env(Path::new("."), no_env)
            .expect("valid");
        let path = dir.path().join("audit-chain.id");
        let first = settings.audit_chain_or_persisted(&path).expect("created");
        let again = settings.audit_chain_or_persisted(&path).expect("read");
        assert_eq!(first, again);
        assert!(first.as_str().starts_with("instance-"));
    }

    #[test]
    fn tls_takes_a_ca_file_and_never_falls_back_to_plain_tcp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = rcgen::generate_simple_self_signed(vec!["db.example".to_owned()]).expect("cert");
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).expect("write");
        let with_ca = |url: &str, file: &str| {
            RawPostgresSettings {
                tls_ca_file: Some(PathBuf::from(file)),
                ..raw(url)
            }
            .validate_with_env(dir.path(), no_env)
        };
        let settings = with_ca("postgres://u@db.example/d", "ca.pem").expect("valid");
        assert!(settings.uses_tls());
        assert_eq!(settings.connect_config().get_ssl_mode(), SslMode::Require);
        assert!(format!("{settings:?}").contains("ca.pem"));
        let plain = raw("postgres://u@db.example/d")
            .validate_with_env(dir.path(), no_env)
            .expect("valid");
        assert!(!plain.uses_tls());
        assert!(plain.plain_over_network());
        assert!(!settings.plain_over_network());
        for local in ["127.0.0.1", "localhost", "[::1]", "%2Ftmp%2Fsock"] {
            let url = format!("postgres://u@{local}/d");
            let s = raw(&url).validate_with_env(dir.path(), no_env).expect(&url);
            assert!(!s.plain_over_network(), "{url}");
        }
        for (url, wanted) in [
            (
                "postgres://u@db.example/d?sslmode=disable",
                "TlsNotPossible",
            ),
            ("postgres://u@%2Ftmp%2Fsock/d", "TlsNotPossible"),
        ] {
            let e = with_ca(url, "ca.pem").expect_err(url);
            assert!(format!("{e:?}").starts_with(wanted), "{url}: {e:?}");
        }
        let e = raw("postgres://u@db.example/d?sslmode=require")
            .validate_with_env(dir.path(), no_env)
            .expect_err("require without a CA");
        assert!(matches!(e, PostgresSettingsError::TlsWithoutCa), "{e:?}");
        let e = with_ca("postgres://u@db.example/d", "missing.pem").expect_err("missing file");
        assert!(
            matches!(&e, PostgresSettingsError::TlsCaFile { path, .. } if path.ends_with("missing.pem")),
            "{e:?}"
        );
        assert!(toml::from_str::<RawPostgresSettings>("tls_ca_file = \"ca.pem\"").is_ok());
    }
}
