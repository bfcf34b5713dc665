//! The service configuration: one TOML file, read in two stages.
//!
//! [`RawConfig`] mirrors the file (serde, `deny_unknown_fields`, defaults filled in); [`Config`] is what
//! the rest of the program sees: validated ranges, typed values, paths resolved against the folder of
//! the configuration file. Each layer owns its settings type ([`ApiSettings`] of `http`,
//! [`service::Settings`] of the service, [`SignerConfig`] of the signer); this module only reads the
//! file and composes them. Nothing here holds a secret: the HSM PIN is named by `pin_file` or `pin_env`
//! in the `[signer]` table and read by the signer itself.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! base_path = ""                     # e.g. "/powerauth-java-server": methods under {base_path}/rest/v3
//! data_dir = "data"                  # older spelling of [store] path
//! restrict_access = true             # HTTP Basic with integration credentials
//! body_limit_bytes = 65536
//! request_timeout_ms = 10000
//!
//! [signature]
//! lookahead = 20                     # 1..=64
//! max_failed_attempts = 5            # 1..=64, default for new activations
//! component_length = 8               # 4..=8
//! proximity_otp_length = 8           # 6..=10
//!
//! [nonce]
//! policy = "enforce"                 # or "off" (PowerAuth behaviour)
//! ttl_seconds = 300
//!
//! [activation]                       # activation by code, protocol 3.3
//! code_validity_seconds = 300        # activation/init → prepare and commit
//! ecies_window_seconds = 60          # |now − ECIES timestamp| allowed
//! temporary_key_validity_seconds = 300
//! [store]                            # see crate::store::StoreSettings
//! kind = "sled"                      # or "postgres" (url, password_file | password_env, pool_size,
//!                                    # audit_chain, audit_lanes = 8: audit chains per instance)
//! path = "data"                      # relative to this file's folder
//!
//! [http]                             # connection hygiene; every key optional
//! header_read_timeout_ms = 10000     # a request header must arrive within this
//! keep_alive_timeout_ms = 60000      # idle keep-alive connections are closed after this
//! max_connections = 1024             # more wait in the kernel's listen backlog
//! max_concurrent_requests = 128      # more API requests get 503 ERR_BUSY at once
//! # ops_listen = "127.0.0.1:9090"    # /health, /ready, /metrics, /openapi.json only there
//!
//! [http.tls]                         # optional: HTTPS (PEM files, relative to this file)
//! cert_file = "tls/server.crt"
//! key_file = "tls/server.key"
//! # client_ca_file = "tls/clients-ca.crt"   # require client certificates (mTLS)
//!
//! [audit]                            # signed checkpoints of the audit trail (docs/auditing.md)
//! checkpoint_every = 1000            # records between two checkpoints
//! checkpoint_interval_s = 10         # longest wait for a checkpoint when there are new records
//! checkpoint_file = "audit-checkpoints.jsonl"  # append-only, outside the data folder; the public
//!                                    # key goes to audit-public-key.pem beside it
//!
//! [signer]                           # see hsm-config/ for one example per HSM family
//! kind = "pkcs11"
//! ...
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::http::{ApiSettings, ConnectionSettings, TlsSettings};
use crate::service::{self, NoncePolicy, SignatureSettings};
use crate::signer::{RawSignerConfig, SignerConfig};
use crate::store::{RawStoreSettings, StoreSettings, StoreSettingsError};

/// Why a configuration file was refused. Messages name the file and the key; they never echo values
/// that could be secrets.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape (an unknown key, a wrong type).
    #[error("configuration file {path} is not valid{}: {message}", at_line(*.line))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line the parser points at (1-based), when it points.
        line: Option<usize>,
        /// The parser's words, without the line or a value it quotes (either may be a secret).
        message: String,
    },
    /// A value is out of its range.
    #[error("configuration file {path}: `{key}` {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, dotted (`signature.lookahead`).
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The `[store]` table is refused.
    #[error("configuration file {path}: [store] {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// What the store's settings say.
        source: StoreSettingsError,
    },
    /// The `[signer]` table is refused.
    #[error("configuration file {path}: [signer] {source}")]
    Signer {
        /// The file.
        path: PathBuf,
        /// What the signer's settings say.
        source: crate::signer::SignerConfigError,
    },
}

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `listen`: address:port of the API (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `base_path`: prefix of `/rest/v3` (default empty).
    #[serde(default)]
    pub base_path: String,
    /// The older spelling of `[store] path` (sled only).
    pub data_dir: Option<PathBuf>,
    /// `restrict_access`: HTTP Basic with integration credentials (default `true`).
    #[serde(default = "default_true")]
    pub restrict_access: bool,
    /// `body_limit_bytes`: largest request body (default 65536).
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// `request_timeout_ms`: longest a request may take (default 10000).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `[signature]`.
    #[serde(default)]
    pub signature: RawSignatureConfig,
    /// `[nonce]`.
    #[serde(default)]
    pub nonce: RawNonceConfig,
    /// `[activation]`: activation-code validity, the ECIES time window.
    #[serde(default)]
    pub activation: service::RawActivationConfig,
    /// The `[store]` table (sled by default).
    #[serde(default)]
    pub store: RawStoreSettings,
    /// `[http]`: connection limits, TLS, the operations listener.
    #[serde(default)]
    pub http: RawHttpConfig,
    /// `[audit]`: signed checkpoints of the audit trail.
    #[serde(default)]
    pub audit: service::checkpoint::RawAuditConfig,
    /// `[signer]` (required).
    pub signer: RawSignerConfig,
}

/// The `[signature]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignatureConfig {
    /// Counter window size, 1..=64 (default 20).
    #[serde(default = "default_lookahead")]
    pub lookahead: u32,
    /// Failed attempts before blocking, 1..=64 (default 5).
    #[serde(default = "default_max_failed")]
    pub max_failed_attempts: u32,
    /// Digits per factor component, 4..=8 (default 8).
    #[serde(default = "default_component_length")]
    pub component_length: u32,
    /// Digits of the proximity TOTP, 6..=10 (default 8).
    #[serde(default = "default_otp_length")]
    pub proximity_otp_length: u32,
}

impl Default for RawSignatureConfig {
    fn default() -> Self {
        Self {
            lookahead: default_lookahead(),
            max_failed_attempts: default_max_failed(),
            component_length: default_component_length(),
            proximity_otp_length: default_otp_length(),
        }
    }
}

/// The `[nonce]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNonceConfig {
    /// `enforce` (default) or `off`.
    #[serde(default)]
    pub policy: NoncePolicy,
    /// Lifetime of an issued nonce, 1..=86400 s (default 300).
    #[serde(default = "default_nonce_ttl")]
    pub ttl_seconds: u64,
}

impl Default for RawNonceConfig {
    fn default() -> Self {
        Self {
            policy: NoncePolicy::default(),
            ttl_seconds: default_nonce_ttl(),
        }
    }
}

/// The `[http]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpConfig {
    /// 100..=300000 ms (default 10000).
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// 100..=3600000 ms (default 60000).
    #[serde(default = "default_keep_alive_timeout_ms")]
    pub keep_alive_timeout_ms: u64,
    /// 1..=100000 (default 1024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// 1..=100000 (default 128).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// address:port of the operations endpoints (default: on `listen`).
    #[serde(default)]
    pub ops_listen: Option<String>,
    /// `[http.tls]`.
    #[serde(default)]
    pub tls: Option<RawTlsConfig>,
}

impl Default for RawHttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: default_header_read_timeout_ms(),
            keep_alive_timeout_ms: default_keep_alive_timeout_ms(),
            max_connections: default_max_connections(),
            max_concurrent_requests: default_max_concurrent_requests(),
            ops_listen: None,
            tls: None,
        }
    }
}

/// The `[http.tls]` table as written (paths relative to the configuration file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to (mTLS); absent: no client
    /// certificates.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_keep_alive_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_concurrent_requests() -> usize {
    crate::http::DEFAULT_MAX_CONCURRENT_REQUESTS
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_lookahead() -> u32 {
    20
}
fn default_max_failed() -> u32 {
    5
}
fn default_component_length() -> u32 {
    8
}
/// Empty, or one or more `/segment`s of URL-safe characters, at most 128 bytes.
fn valid_base_path(path: &str) -> bool {
    path.is_empty()
        || (path.len() <= 128
            && path.starts_with('/')
            && path[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            }))
}

fn default_otp_length() -> u32 {
    8
}
fn default_nonce_ttl() -> u64 {
    300
}

/// Validated configuration: each layer's settings, composed.
#[derive(Debug)]
pub struct Config {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The `[store]` table (sled folders resolved like [`Self::data_dir`]).
    pub store: StoreSettings,
    /// The sled store's folder (absolute, or relative to the working directory when the file path
    /// was); the configuration file's folder for a PostgreSQL store, which keeps nothing on disk
    /// but its audit chain id file.
    pub data_dir: PathBuf,
    /// The HTTP layer's settings (`base_path`, `restrict_access`, limits, timeout).
    pub http: ApiSettings,
    /// The `[http]` table: connection limits, TLS, the operations listener.
    pub connections: ConnectionSettings,
    /// Files holding secrets, by key (`signer.pin_file`): checked for group/other access at start.
    pub secret_files: Vec<(&'static str, PathBuf)>,
    /// The use cases' settings (`[signature]`, `[nonce]`).
    pub service: service::Settings,
    /// The `[signer]` table.
    pub signer: SignerConfig,
    /// The `[audit]` table (checkpoint file resolved against the configuration file's folder).
    pub audit: service::checkpoint::AuditSettings,
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the key at fault.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses and validates `text`; `path` names the file in messages and anchors relative paths.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the key at fault.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            line: e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1),
            message: without_values(e.message()),
        })?;
        raw.validate(path)
    }
}

/// The parser's words without the values serde quotes in them (`invalid type: string "…"`,
/// `integer `…``): a value under the wrong key or of the wrong type may be a secret (a PIN written as
/// `pin_env = 123456`). Key and variant names stay.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let quoted = ["string \"", "integer `", "floating point `", "character `"]
            .iter()
            .filter_map(|opening| rest.find(opening).map(|at| (at, *opening)))
            .min_by_key(|(at, _)| *at);
        let Some((at, opening)) = quoted else {
            out.push_str(rest);
            return out;
        };
        let (kind, quote) = opening.split_at(opening.len() - 1);
        out.push_str(&rest[..at]);
        out.push_str(kind.trim_end());
        let value = &rest[at + opening.len()..];
        let mut escaped = false;
        let end = value.char_indices().find(|&(_, c)| {
            let closes = !escaped && quote.starts_with(c);
            escaped = !escaped && c == '\\' && quote == "\"";
            closes
        });
        rest = end.map_or("", |(i, c)| &value[i + c.len_utf8()..]);
    }
}

/// " at line N" for a parse error that points at a line, else nothing.
fn at_line(line: Option<usize>) -> String {
    line.map(|n| format!(" at line {n}")).unwrap_or_default()
}

impl RawConfig {
    /// Checks every range and resolves relative paths against the folder of `path`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key at fault, or [`ConfigError::Signer`].
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            problem,
        };
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("must be an address:port, got {:?}", self.listen),
            )
        })?;
        if !valid_base_path(&self.base_path) {
            return Err(invalid(
                "base_path",
                format!(
                    "must be empty or like \"/powerauth-java-server\" (segments of A-Z a-z 0-9 - . _, no trailing slash), got {:?}",
                    self.base_path
                ),
            ));
        }
        let in_range = |key: &'static str, value: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(key, format!("must be {lo}..={hi}, got {value}")))
            }
        };
        let s = &self.signature;
        let signature = SignatureSettings {
            lookahead: in_range("signature.lookahead", s.lookahead, 1, 64)?,
            max_failed_attempts: in_range(
                "signature.max_failed_attempts",
                s.max_failed_attempts,
                1,
                64,
            )?,
            component_length: in_range("signature.component_length", s.component_length, 4, 8)?,
            proximity_otp_length: in_range(
                "signature.proximity_otp_length",
                s.proximity_otp_length,
                6,
                10,
            )?,
        };
        if !(1..=86_400).contains(&self.nonce.ttl_seconds) {
            return Err(invalid(
                "nonce.ttl_seconds",
                format!("must be 1..=86400, got {}", self.nonce.ttl_seconds),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit_bytes) {
            return Err(invalid(
                "body_limit_bytes",
                format!("must be 1024..=16777216, got {}", self.body_limit_bytes),
            ));
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            return Err(invalid(
                "request_timeout_ms",
                format!("must be 100..=600000, got {}", self.request_timeout_ms),
            ));
        }
        let h = &self.http;
        let in_range_ms = |key: &'static str, value: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&value) {
                Ok(Duration::from_millis(value))
            } else {
                Err(invalid(key, format!("must be {lo}..={hi}, got {value}")))
            }
        };
        let header_read_timeout = in_range_ms(
            "http.header_read_timeout_ms",
            h.header_read_timeout_ms,
            100,
            300_000,
        )?;
        let keep_alive_timeout = in_range_ms(
            "http.keep_alive_timeout_ms",
            h.keep_alive_timeout_ms,
            100,
            3_600_000,
        )?;
        for (key, value) in [
            ("http.max_connections", h.max_connections),
            ("http.max_concurrent_requests", h.max_concurrent_requests),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err(invalid(key, format!("must be 1..=100000, got {value}")));
            }
        }
        let ops_listen = match &h.ops_listen {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "http.ops_listen",
                    format!("must be an address:port, got {text:?}"),
                )
            })?),
        };
        let activation = self
            .activation
            .validate()
            .map_err(|(key, problem)| invalid(key, problem))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut raw_signer = self.signer;
        for path in [
            &mut raw_signer.module,
            &mut raw_signer.pin_file,
            &mut raw_signer.software_key_file,
        ]
        .into_iter()
        .flatten()
        {
            *path = base.join(&*path);
        }
        for value in raw_signer
            .module_env
            .iter_mut()
            .flat_map(|env| env.values_mut())
        {
            *value = base.join(&*value);
        }
        let secret_files = raw_signer
            .pin_file
            .iter()
            .map(|p| ("signer.pin_file", p.clone()))
            .collect();
        let signer = raw_signer
            .validate()
            .map_err(|source| ConfigError::Signer {
                path: path.to_owned(),
                source,
            })?;
        let store_password_file = self.store.password_file().map(|p| base.join(p));
        let store = self
            .store
            .validate(base, self.data_dir, audit_chain_file(path))
            .map_err(|source| ConfigError::Store {
                path: path.to_owned(),
                source,
            })?;
        let mut secret_files: Vec<(&'static str, PathBuf)> = secret_files;
        if let Some(p) = store_password_file {
            secret_files.push(("store.password_file", p));
        }
        let data_dir = match &store {
            StoreSettings::Sled { path, .. } => path.clone(),
            StoreSettings::Postgres { .. } => base.to_path_buf(),
        };
        let sled_dir = match &store {
            StoreSettings::Sled { path, .. } => Some(path.as_path()),
            StoreSettings::Postgres { .. } => None,
        };
        let audit = self
            .audit
            .validate(base, sled_dir)
            .map_err(|(key, problem)| invalid(key, problem))?;
        let connections = ConnectionSettings {
            header_read_timeout,
            keep_alive_timeout,
            max_connections: self.http.max_connections,
            tls: self.http.tls.map(|t| TlsSettings {
                cert_file: base.join(t.cert_file),
                key_file: base.join(t.key_file),
                client_ca_file: t.client_ca_file.map(|p| base.join(p)),
            }),
            ops_listen,
        };
        Ok(Config {
            path: path.to_owned(),
            listen,
            store,
            data_dir,
            connections,
            secret_files,
            http: ApiSettings {
                base_path: self.base_path,
                restrict_access: self.restrict_access,
                body_limit_bytes: self.body_limit_bytes,
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                max_concurrent_requests: self.http.max_concurrent_requests,
            },
            service: service::Settings {
                activation,
                signature,
                nonce_policy: self.nonce.policy,
                nonce_ttl: Duration::from_secs(self.nonce.ttl_seconds),
            },
            signer,
            audit,
        })
    }
}

/// Where a PostgreSQL instance without a configured `audit_chain` keeps its chain id: beside the
/// configuration file, `<file stem>.audit-chain` (so two configurations in one folder are two chains).
fn audit_chain_file(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map_or_else(|| "config".into(), |s| s.to_string_lossy().into_owned());
    config.with_file_name(format!("{stem}.audit-chain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNER: &str = "[signer]\nkind = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"t\"\npin_file = \"pin\"\n";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/offline-signer/config.toml"), text)
    }

    #[test]
    fn base_path_like_powerauth_servers() {
        let c = load(&format!("base_path = \"/powerauth-java-server\"\n{SIGNER}")).expect("valid");
        assert_eq!(c.http.base_path, "/powerauth-java-server");
        let c = load(&format!("base_path = \"/bank/pa_v1.2\"\n{SIGNER}")).expect("valid");
        assert_eq!(c.http.base_path, "/bank/pa_v1.2");
    }

    #[test]
    fn defaults_are_powerauths() {
        let c = load(SIGNER).expect("valid");
        assert_eq!(c.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.data_dir, Path::new("/etc/offline-signer/data"));
        assert!(c.http.restrict_access);
        assert_eq!(c.http.base_path, "");
        assert_eq!(c.http.body_limit_bytes, 65536);
        assert_eq!(
            c.service.signature,
            SignatureSettings {
                lookahead: 20,
                max_failed_attempts: 5,
                component_length: 8,
                proximity_otp_length: 8,
            }
        );
        assert_eq!(c.service.nonce_policy, NoncePolicy::Enforce);
        assert_eq!(c.service.nonce_ttl, Duration::from_secs(300));
    }

    #[test]
    fn relative_signer_paths_follow_the_config_file() {
        let c = load(SIGNER).expect("valid");
        let SignerConfig::Pkcs11(p) = &c.signer else {
            panic!("pkcs11 expected");
        };
        let debug = format!("{p:?}");
        assert!(debug.contains("/etc/offline-signer/pin"), "{debug}");
        assert!(debug.contains("/usr/lib/softhsm/libsofthsm2.so"), "{debug}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line_never_its_text() {
        for (text, line) in [
            (format!("lisen = \"127.0.0.1:1\"\n{SIGNER}"), 1),
            (format!("[signature]\nlook_ahead = 3\n{SIGNER}"), 2),
            (
                format!("[nonce]\npolicy = \"enforce\"\nttl = 3\n{SIGNER}"),
                3,
            ),
            (format!("{SIGNER}colour = \"blue-secret\"\n"), 6),
            (format!("{SIGNER}pool_size = \"two-secret\"\n"), 6),
        ] {
            let e = load(&text).expect_err(&text);
            let shown = e.to_string();
            assert!(
                matches!(e, ConfigError::Parse { line: Some(l), .. } if l == line),
                "{shown}"
            );
            assert!(shown.contains(&format!(" at line {line}: ")), "{shown}");
            assert!(!shown.contains("-secret"), "{shown}");
        }
    }

    #[test]
    fn parse_errors_never_quote_a_value() {
        let e = load("[signer]\nkind = \"pkcs11\"\npin_env = 123456\n").expect_err("integer");
        let shown = e.to_string();
        assert!(
            shown.ends_with("at line 3: invalid type: integer, expected a string"),
            "{shown}"
        );
        for (message, wanted) in [
            (
                r#"invalid type: string "a\"b`c", expected usize"#,
                "invalid type: string, expected usize",
            ),
            (
                "invalid value: integer `-1`, expected u64",
                "invalid value: integer, expected u64",
            ),
            (
                r#"x string "1" y floating point `2.5` z character `c`"#,
                "x string y floating point z character",
            ),
            (
                "unknown field `pin`, expected `pin_file`",
                "unknown field `pin`, expected `pin_file`",
            ),
            (r#"cut string "unterminated"#, "cut string"),
        ] {
            assert_eq!(without_values(message), wanted, "{message}");
        }
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (text, key) in [
            ("[signature]\nlookahead = 0\n", "signature.lookahead"),
            ("[signature]\nlookahead = 65\n", "signature.lookahead"),
            (
                "[signature]\nmax_failed_attempts = 0\n",
                "signature.max_failed_attempts",
            ),
            (
                "[signature]\ncomponent_length = 3\n",
                "signature.component_length",
            ),
            (
                "[signature]\ncomponent_length = 9\n",
                "signature.component_length",
            ),
            (
                "[signature]\nproximity_otp_length = 5\n",
                "signature.proximity_otp_length",
            ),
            ("[nonce]\nttl_seconds = 0\n", "nonce.ttl_seconds"),
            ("body_limit_bytes = 10\n", "body_limit_bytes"),
            ("listen = \"nowhere\"\n", "listen"),
            ("base_path = \"powerauth\"\n", "base_path"),
            ("base_path = \"/powerauth/\"\n", "base_path"),
            ("base_path = \"/a//b\"\n", "base_path"),
            ("base_path = \"/../x\"\n", "base_path"),
            ("base_path = \"/a b\"\n", "base_path"),
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            (
                "[http]\nmax_concurrent_requests = 0\n",
                "http.max_concurrent_requests",
            ),
            (
                "[http]\nheader_read_timeout_ms = 1\n",
                "http.header_read_timeout_ms",
            ),
            ("[http]\nops_listen = \"x\"\n", "http.ops_listen"),
        ] {
            // Top-level keys must come before the first table.
            let text = if text.starts_with('[') {
                format!("{SIGNER}{text}")
            } else {
                format!("{text}{SIGNER}")
            };
            match load(&text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: expected an error about {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_literal_pin_is_refused_without_echoing_it() {
        let text = format!("{SIGNER}pin = \"4242-secret\"\n");
        let e = load(&text).expect_err("a PIN in the file must be refused");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("pin_file"), "{shown}");
        assert!(!shown.contains("4242-secret"), "{shown}");
    }

    #[test]
    fn store_table_selects_sled_or_postgres() {
        let c = load(&format!("data_dir = \"old\"\n{SIGNER}")).expect("legacy data_dir");
        assert!(
            matches!(&c.store, StoreSettings::Sled { path, .. } if path == Path::new("/etc/offline-signer/old"))
        );
        let c = load(&format!("{SIGNER}[store]\npath = \"new\"\n")).expect("[store] path");
        assert_eq!(c.data_dir, Path::new("/etc/offline-signer/new"));
        let c = load(&format!(
            "{SIGNER}[store]\nkind = \"postgres\"\nurl = \"postgres://os@db.example:5432/os\"\npool_size = 4\naudit_chain = \"signer-1\"\n"
        ))
        .expect("postgres");
        let StoreSettings::Postgres {
            settings,
            chain_file,
        } = &c.store
        else {
            panic!("postgres expected");
        };
        assert_eq!(settings.target(), "os@db.example:5432/os");
        assert_eq!(settings.pool_size(), 4);
        assert_eq!(settings.audit_chain().map(|c| c.as_str()), Some("signer-1"));
        assert_eq!(
            chain_file,
            Path::new("/etc/offline-signer/config.audit-chain")
        );
        // Each refusal: the file, the error's variant (as Debug shows it), words of its message.
        for (text, variant, wanted) in [
            (
                format!("data_dir = \"a\"\n{SIGNER}[store]\npath = \"b\"\n"),
                "Store {",
                "not both",
            ),
            (
                format!(
                    "{SIGNER}[store]\nkind = \"postgres\"\nurl = \"postgres://os:hunter2-pw@h/os\"\n"
                ),
                "Store {",
                "password_file",
            ),
            (
                format!("{SIGNER}[store]\nkind = \"mysql\"\n"),
                "Parse {",
                "[store] kind: unknown variant `mysql`",
            ),
            (
                format!("{SIGNER}[store]\nurl = \"postgres://os:hunter2-pw@h/os\"\n"),
                "Parse {",
                "[store] kind = \"sled\": unknown field `url`",
            ),
        ] {
            let e = load(&text).expect_err(&text);
            let shown = format!("{e} {e:?}");
            assert!(format!("{e:?}").starts_with(variant), "{shown}");
            assert!(shown.contains(wanted), "{shown}");
            assert!(!shown.contains("hunter2-pw"), "{shown}");
        }
    }

    #[test]
    fn http_table_defaults_and_tls_paths() {
        let c = load(SIGNER).expect("valid");
        assert_eq!(c.connections.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.connections.keep_alive_timeout, Duration::from_secs(60));
        assert_eq!(c.connections.max_connections, 1024);
        assert_eq!(c.http.max_concurrent_requests, 128);
        assert!(c.connections.tls.is_none() && c.connections.ops_listen.is_none());
        let c = load(&format!(
            "{SIGNER}[http]\nops_listen = \"127.0.0.1:9090\"\n[http.tls]\ncert_file = \"a.crt\"\nkey_file = \"a.key\"\nclient_ca_file = \"ca.crt\"\n"
        ))
        .expect("valid");
        let tls = c.connections.tls.expect("tls");
        assert_eq!(tls.cert_file, Path::new("/etc/offline-signer/a.crt"));
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(Path::new("/etc/offline-signer/ca.crt"))
        );
        assert_eq!(
            c.connections.ops_listen,
            Some("127.0.0.1:9090".parse().expect("addr"))
        );
    }

    #[test]
    fn nonce_policy_off_is_accepted() {
        let c = load(&format!("{SIGNER}[nonce]\npolicy = \"off\"\n")).expect("valid");
        assert_eq!(c.service.nonce_policy, NoncePolicy::Off);
        assert!(load(&format!("{SIGNER}[nonce]\npolicy = \"maybe\"\n")).is_err());
    }
}
