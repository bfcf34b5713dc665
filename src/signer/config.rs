//! The `[signer]` configuration table: [`RawSignerConfig`] as written in TOML, validated into the
//! typed [`SignerConfig`], and the PIN source ([`PinSource`]) read at start-up into a
//! `secrecy::SecretString`.
//!
//! ```toml
//! [signer]
//! kind = "pkcs11"                 # or "software-insecure" (tests and development only)
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "offline-signer"  # or token_serial = "..." (exactly one)
//! pin_file = "/run/secrets/hsm-user-pin"   # or pin_env = "HSM_USER_PIN" (exactly one)
//! pool_size = 2                   # worker threads, each with its own session
//! queue_depth = 256               # queued operations before answering Busy
//! timeout_ms = 2000               # per operation, queueing included
//! # software_key_file = "var/software-keys.json"   # software-insecure only, optional
//! module_env = { SOFTHSM2_CONF = "softhsm/softhsm2.conf" }  # pkcs11 only, optional
//! ```
//!
//! `module_env` names the environment the PKCS#11 module reads when it is loaded (SoftHSM finds its
//! own configuration file only through `SOFTHSM2_CONF`). Every value is a path; relative ones are
//! resolved against the configuration file's folder. A process cannot safely set its own
//! environment (edition 2024 makes that `unsafe`), so the `offline-signer` binary re-executes
//! itself with these variables when they differ; in-process callers must start with them set, and
//! opening the signer without them fails with [`OpenError::ModuleEnvNotApplied`].
//!
//! A literal `pin = ...` is refused with a message pointing to `pin_file` / `pin_env`: the PIN
//! never lives in the configuration file.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::OpenError;

/// Default number of worker threads (each owns one session).
pub const DEFAULT_POOL_SIZE: usize = 2;
/// Default depth of the work queue.
pub const DEFAULT_QUEUE_DEPTH: usize = 256;
/// Default per-operation timeout in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;

/// The `[signer]` table as written. Unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignerConfig {
    /// `"pkcs11"` or `"software-insecure"`.
    pub kind: Option<String>,
    /// Path of the PKCS#11 module (`.so`).
    pub module: Option<PathBuf>,
    /// Token label (exactly one of `token_label`, `token_serial`).
    pub token_label: Option<String>,
    /// Token serial number.
    pub token_serial: Option<String>,
    /// File holding the user PIN (exactly one of `pin_file`, `pin_env`).
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// Worker threads (default 2).
    pub pool_size: Option<usize>,
    /// Queue depth (default 256).
    pub queue_depth: Option<usize>,
    /// Per-operation timeout in ms (default 2000).
    pub timeout_ms: Option<u64>,
    /// `software-insecure` only: file the in-memory keys are persisted to (plaintext!).
    pub software_key_file: Option<PathBuf>,
    /// `pkcs11` only: environment variables the module reads at load time (values are paths).
    pub module_env: Option<std::collections::BTreeMap<String, PathBuf>>,
    /// Caught only to refuse it with a helpful message; its value is never kept.
    #[serde(default)]
    pin: Option<IgnoredAny>,
}

/// Why a `[signer]` table is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerConfigError {
    /// A PIN was written into the configuration file.
    #[error(
        "signer.pin is not allowed: never put the PIN in the configuration file; \
         use signer.pin_file (a file readable only by the service) or signer.pin_env \
         (an environment variable name)"
    )]
    PinInConfig,
    /// A required key is missing.
    #[error("signer.{key} is required when kind = \"{kind}\"")]
    Missing {
        /// The key.
        key: &'static str,
        /// The signer kind.
        kind: &'static str,
    },
    /// Exactly one of two keys must be given.
    #[error("exactly one of signer.{a} and signer.{b} must be given")]
    ExactlyOne {
        /// First key.
        a: &'static str,
        /// Second key.
        b: &'static str,
    },
    /// A key does not apply to this kind.
    #[error("signer.{key} does not apply when kind = \"{kind}\"")]
    NotApplicable {
        /// The key.
        key: &'static str,
        /// The signer kind.
        kind: &'static str,
    },
    /// A value is out of range or malformed.
    #[error("signer.{key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How the token is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// By `CKA_LABEL` of the token (trailing blanks ignored).
    Label(String),
    /// By serial number (trailing blanks ignored).
    Serial(String),
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "label \"{l}\""),
            TokenSelector::Serial(s) => write!(f, "serial \"{s}\""),
        }
    }
}

/// Where the user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file; one trailing newline (`\n` or `\r\n`) is removed.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl PinSource {
    /// Reads the PIN. Errors name the source, never the content.
    ///
    /// # Errors
    /// [`OpenError::PinUnavailable`] naming the source (never the content).
    pub fn read(&self) -> Result<SecretString, OpenError> {
        let (source_name, raw) = match self {
            PinSource::File(path) => {
                let name = format!("file {}", path.display());
                match std::fs::read_to_string(path) {
                    Ok(s) => (name, zeroize::Zeroizing::new(s)),
                    Err(e) => {
                        return Err(OpenError::PinUnavailable {
                            source_name: name,
                            reason: e.kind().to_string(),
                        });
                    }
                }
            }
            PinSource::Env(var) => {
                let name = format!("environment variable {var}");
                match std::env::var(var) {
                    Ok(s) => (name, zeroize::Zeroizing::new(s)),
                    Err(_) => {
                        return Err(OpenError::PinUnavailable {
                            source_name: name,
                            reason: "not set or not UTF-8".into(),
                        });
                    }
                }
            }
        };
        let trimmed = raw
            .strip_suffix('\n')
            .map(|s| s.strip_suffix('\r').unwrap_or(s))
            .unwrap_or(&raw);
        if trimmed.is_empty() {
            return Err(OpenError::PinUnavailable {
                source_name,
                reason: "empty".into(),
            });
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }
}

/// Validated PKCS#11 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The module file.
    pub module: PathBuf,
    /// Which token.
    pub token: TokenSelector,
    /// Where the PIN comes from.
    pub pin: PinSource,
    /// Worker threads, each owning one session (lowered to fit the token's session limit).
    pub pool_size: NonZeroUsize,
    /// Queue depth before [`super::SignerError::Busy`].
    pub queue_depth: NonZeroUsize,
    /// Per-operation timeout, queueing included.
    pub timeout: Duration,
    /// Environment the module must see when it is loaded (name, resolved path), sorted by name.
    pub module_env: Vec<(String, PathBuf)>,
}

impl Pkcs11Config {
    /// The `module_env` entries the current process environment does not carry with the same
    /// value (the binary re-executes itself with them; see the module documentation).
    pub fn missing_module_env(&self) -> Vec<(String, PathBuf)> {
        self.module_env
            .iter()
            .filter(|(name, value)| std::env::var_os(name).as_deref() != Some(value.as_os_str()))
            .cloned()
            .collect()
    }

    /// [`OpenError::ModuleEnvNotApplied`] for the first missing `module_env` entry.
    pub(crate) fn check_module_env(&self) -> Result<(), OpenError> {
        match self.missing_module_env().first() {
            Some((name, value)) => Err(OpenError::ModuleEnvNotApplied {
                name: name.clone(),
                value: value.display().to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Settings with the defaults for pool size, queue depth and timeout.
    pub fn new(module: PathBuf, token: TokenSelector, pin: PinSource) -> Self {
        Pkcs11Config {
            module,
            token,
            pin,
            pool_size: NonZeroUsize::new(DEFAULT_POOL_SIZE).expect("default pool size is 2"),
            queue_depth: NonZeroUsize::new(DEFAULT_QUEUE_DEPTH).expect("default depth is 256"),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            module_env: Vec::new(),
        }
    }
}

/// Validated software-signer settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoftwareConfig {
    /// Where keys are persisted in plaintext; `None` keeps them in memory only.
    pub key_file: Option<PathBuf>,
}

/// The validated `[signer]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerConfig {
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Config),
    /// In-process keys (`software-insecure`).
    SoftwareInsecure(SoftwareConfig),
}

impl RawSignerConfig {
    /// Checks the table and produces typed settings.
    pub fn validate(self) -> Result<SignerConfig, SignerConfigError> {
        if self.pin.is_some() {
            return Err(SignerConfigError::PinInConfig);
        }
        match self.kind.as_deref() {
            Some("pkcs11") => self.validate_pkcs11().map(SignerConfig::Pkcs11),
            Some("software-insecure") => {
                const KIND: &str = "software-insecure";
                let not_here = [
                    ("module", self.module.is_some()),
                    ("token_label", self.token_label.is_some()),
                    ("token_serial", self.token_serial.is_some()),
                    ("pin_file", self.pin_file.is_some()),
                    ("pin_env", self.pin_env.is_some()),
                    ("pool_size", self.pool_size.is_some()),
                    ("queue_depth", self.queue_depth.is_some()),
                    ("timeout_ms", self.timeout_ms.is_some()),
                    ("module_env", self.module_env.is_some()),
                ];
                if let Some((key, _)) = not_here.iter().find(|(_, present)| *present) {
                    return Err(SignerConfigError::NotApplicable { key, kind: KIND });
                }
                Ok(SignerConfig::SoftwareInsecure(SoftwareConfig {
                    key_file: self.software_key_file,
                }))
            }
            Some(other) => Err(SignerConfigError::Invalid {
                key: "kind",
                reason: format!("\"{other}\" is not one of \"pkcs11\", \"software-insecure\""),
            }),
            None => Err(SignerConfigError::Invalid {
                key: "kind",
                reason: "missing: \"pkcs11\" or \"software-insecure\"".into(),
            }),
        }
    }

    fn validate_pkcs11(self) -> Result<Pkcs11Config, SignerConfigError> {
        const KIND: &str = "pkcs11";
        if self.software_key_file.is_some() {
            return Err(SignerConfigError::NotApplicable {
                key: "software_key_file",
                kind: KIND,
            });
        }
        let module = self.module.ok_or(SignerConfigError::Missing {
            key: "module",
            kind: KIND,
        })?;
        let token = match (self.token_label, self.token_serial) {
            (Some(l), None) => TokenSelector::Label(non_empty("token_label", l, 32)?),
            (None, Some(s)) => TokenSelector::Serial(non_empty("token_serial", s, 16)?),
            _ => {
                return Err(SignerConfigError::ExactlyOne {
                    a: "token_label",
                    b: "token_serial",
                });
            }
        };
        let pin = match (self.pin_file, self.pin_env) {
            (Some(f), None) => PinSource::File(f),
            (None, Some(e)) => PinSource::Env(non_empty("pin_env", e, usize::MAX)?),
            _ => {
                return Err(SignerConfigError::ExactlyOne {
                    a: "pin_file",
                    b: "pin_env",
                });
            }
        };
        let pool_size = positive("pool_size", self.pool_size.unwrap_or(DEFAULT_POOL_SIZE), 64)?;
        let queue_depth = positive(
            "queue_depth",
            self.queue_depth.unwrap_or(DEFAULT_QUEUE_DEPTH),
            1 << 20,
        )?;
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=600_000).contains(&timeout_ms) {
            return Err(SignerConfigError::Invalid {
                key: "timeout_ms",
                reason: "must be between 1 and 600000".into(),
            });
        }
        let module_env: Vec<(String, PathBuf)> =
            self.module_env.unwrap_or_default().into_iter().collect();
        if let Some((name, _)) = module_env.iter().find(|(name, value)| {
            name.is_empty() || name.contains('=') || value.as_os_str().is_empty()
        }) {
            return Err(SignerConfigError::Invalid {
                key: "module_env",
                reason: format!(
                    "{name:?}: names must be non-empty without '=', values non-empty paths"
                ),
            });
        }
        Ok(Pkcs11Config {
            module,
            token,
            pin,
            pool_size,
            queue_depth,
            timeout: Duration::from_millis(timeout_ms),
            module_env,
        })
    }
}

fn non_empty(
    key: &'static str,
    value: String,
    max_len: usize,
) -> Result<String, SignerConfigError> {
    if value.trim().is_empty() {
        return Err(SignerConfigError::Invalid {
            key,
            reason: "must not be empty".into(),
        });
    }
    if value.len() > max_len {
        return Err(SignerConfigError::Invalid {
            key,
            reason: format!("longer than {max_len} bytes"),
        });
    }
    Ok(value)
}

fn positive(
    key: &'static str,
    value: usize,
    max: usize,
) -> Result<NonZeroUsize, SignerConfigError> {
    match NonZeroUsize::new(value) {
        Some(v) if value <= max => Ok(v),
        _ => Err(SignerConfigError::Invalid {
            key,
            reason: format!("must be between 1 and {max}"),
        }),
    }
}

/// Reads the `directories.tokendir` line of a SoftHSM configuration file (`None` if absent).
pub(crate) fn softhsm_token_dir(conf: &Path) -> std::io::Result<Option<PathBuf>> {
    let text = std::fs::read_to_string(conf)?;
    Ok(text.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix("directories.tokendir")?;
        let value = rest.trim_start().strip_prefix('=')?.trim();
        (!value.is_empty()).then(|| PathBuf::from(value))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(text: &str) -> Result<SignerConfig, String> {
        let raw: RawSignerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    /// A `kind = "pkcs11"` table with `module = "/m.so"` and then `lines`, one a line.
    fn pkcs11_table(lines: &[&str]) -> String {
        let mut text = String::from("kind = \"pkcs11\"\nmodule = \"/m.so\"\n");
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// A table that must parse as a PKCS#11 signer.
    fn pkcs11(text: &str) -> Pkcs11Config {
        let SignerConfig::Pkcs11(p) = parse(text).unwrap() else {
            panic!("expected pkcs11")
        };
        p
    }

    #[test]
    fn full_pkcs11_table() {
        let p = pkcs11(
            r#"kind = "pkcs11"
               module = "/usr/lib/softhsm/libsofthsm2.so"
               token_label = "offline-signer"
               pin_env = "HSM_PIN"
               pool_size = 3
               queue_depth = 10
               timeout_ms = 500"#,
        );
        assert_eq!(p.token, TokenSelector::Label("offline-signer".into()));
        assert_eq!(p.pin, PinSource::Env("HSM_PIN".into()));
        assert_eq!(p.pool_size.get(), 3);
        assert_eq!(p.queue_depth.get(), 10);
        assert_eq!(p.timeout, Duration::from_millis(500));
    }

    #[test]
    fn defaults_apply() {
        let p = pkcs11(&pkcs11_table(&[
            r#"token_serial = "abc""#,
            r#"pin_file = "/p""#,
        ]));
        assert_eq!(p.pool_size.get(), DEFAULT_POOL_SIZE);
        assert_eq!(p.queue_depth.get(), DEFAULT_QUEUE_DEPTH);
        assert_eq!(p.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
    }

    #[test]
    fn literal_pin_is_refused_with_advice() {
        let err = parse(&pkcs11_table(&[
            r#"token_label = "t""#,
            r#"pin = "1234-very-secret""#,
        ]))
        .unwrap_err();
        assert!(err.contains("pin_file") && err.contains("pin_env"), "{err}");
        assert!(!err.contains("1234-very-secret"));
        // Also when it is not a string.
        let err = parse("kind = \"software-insecure\"\npin = 1234").unwrap_err();
        assert!(err.contains("pin_file"), "{err}");
    }

    #[test]
    fn exactly_one_pin_source_and_token_selector() {
        let both_pins = pkcs11_table(&[
            r#"token_label = "t""#,
            r#"pin_file = "/p""#,
            r#"pin_env = "X""#,
        ]);
        assert!(parse(&both_pins).unwrap_err().contains("exactly one"));
        let no_pin = pkcs11_table(&[r#"token_label = "t""#]);
        assert!(parse(&no_pin).unwrap_err().contains("exactly one"));
        let no_token = pkcs11_table(&[r#"pin_env = "X""#]);
        assert!(parse(&no_token).unwrap_err().contains("token_label"));
    }

    #[test]
    fn unknown_keys_kinds_and_ranges() {
        assert!(parse("kind = \"pkcs11\"\nmodul = \"/m\"").is_err());
        assert!(
            parse("kind = \"software\"")
                .unwrap_err()
                .contains("software-insecure")
        );
        let zero_pool =
            pkcs11_table(&[r#"token_label = "t""#, r#"pin_env = "X""#, "pool_size = 0"]);
        assert!(parse(&zero_pool).unwrap_err().contains("pool_size"));
        let sw_with_module = "kind = \"software-insecure\"\nmodule = \"/m.so\"";
        assert!(parse(sw_with_module).unwrap_err().contains("module"));
        assert_eq!(
            parse("kind = \"software-insecure\"").unwrap(),
            SignerConfig::SoftwareInsecure(SoftwareConfig::default())
        );
    }

    #[test]
    fn pin_file_trailing_newline_is_removed_and_errors_name_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "98765\r\n").unwrap();
        let pin = PinSource::File(path.clone()).read().unwrap();
        assert_eq!(pin.expose_secret(), "98765");
        std::fs::write(&path, "\n").unwrap();
        let err = PinSource::File(path.clone())
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("empty"),
            "{err}"
        );
        let missing = PinSource::File(dir.path().join("nope")).read().unwrap_err();
        assert!(matches!(missing, OpenError::PinUnavailable { .. }));
    }

    #[test]
    fn module_env_is_read_and_refused_for_software() {
        let p = pkcs11(&pkcs11_table(&[
            r#"token_label = "t""#,
            r#"pin_file = "/p""#,
            r#"module_env = { SOFTHSM2_CONF = "/x/softhsm2.conf" }"#,
        ]));
        assert_eq!(
            p.module_env,
            vec![(
                "SOFTHSM2_CONF".to_owned(),
                PathBuf::from("/x/softhsm2.conf")
            )]
        );
        assert_eq!(p.missing_module_env().len(), 1);
        assert!(matches!(
            p.check_module_env(),
            Err(OpenError::ModuleEnvNotApplied { .. })
        ));
        let sw = "kind = \"software-insecure\"\nmodule_env = { A = \"b\" }";
        assert!(parse(sw).unwrap_err().contains("module_env"));
    }

    #[test]
    fn softhsm_conf_token_dir_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            "# c\ndirectories.tokendir = /x/tokens/\nlog.level = ERROR\n",
        )
        .unwrap();
        assert_eq!(
            softhsm_token_dir(&conf).unwrap(),
            Some(PathBuf::from("/x/tokens/"))
        );
    }
}
