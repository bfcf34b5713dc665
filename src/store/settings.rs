//! Which store to open: the `[store]` table of the configuration, read in two stages like every other
//! layer's settings ([`RawStoreSettings`] as written, [`StoreSettings`] checked), and [`open`], which
//! opens whichever it names.
//!
//! ```toml
//! [store]
//! kind = "sled"          # the default: one process, embedded
//! path = "data"          # relative to the configuration file's folder
//!
//! [store]
//! kind = "postgres"      # several instances on one database
//! url = "postgres://offline_signer@127.0.0.1:5432/offline_signer"
//! password_file = "db.password"   # or password_env = "VARIABLE"; never in the file
//! pool_size = 16
//! audit_chain = "signer-1"        # optional; else kept in a file beside the configuration
//! audit_lanes = 8                 # optional, 1..=64: audit chains this instance appends to
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::audit::ChainId;
use super::postgres::{PgStore, PostgresSettings, PostgresSettingsError, RawPostgresSettings};
use super::sled_store::SledStore;
use super::{Store, StoreError};

/// sled's page cache when `cache_mib` is not set: small, since the service's hot set (the records of
/// the activations verifying right now) is small and the OS page cache holds the rest.
const DEFAULT_CACHE_MIB: u64 = 16;

/// The `[store]` table as written: `kind` picks the store, and the other keys are that kind's
/// ([`RawSledSettings`] or [`RawPostgresSettings`]); a key of the other kind, or of none, is refused
/// when the file is read, with the kind and the keys it takes in the message.
#[derive(Clone, Debug)]
pub enum RawStoreSettings {
    /// `kind = "sled"` (the default).
    Sled(RawSledSettings),
    /// `kind = "postgres"`.
    Postgres(RawPostgresSettings),
}

/// The `[store]` keys of a sled store, as written (the `kind` key belongs to [`RawStoreSettings`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSledSettings {
    /// The data folder (default `data`).
    pub path: Option<PathBuf>,
    /// sled's page cache in MiB, 1..=4096 (default 16). Hot records live here; the rest is read
    /// from the operating system's page cache.
    pub cache_mib: Option<u64>,
}

impl Default for RawStoreSettings {
    fn default() -> Self {
        Self::Sled(RawSledSettings::default())
    }
}

impl<'de> Deserialize<'de> for RawStoreSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(deserializer)?;
        let kind = match table.remove("kind") {
            None => StoreKind::default(),
            Some(kind) => StoreKind::deserialize(kind)
                .map_err(|e| D::Error::custom(format!("[store] kind: {}", e.message())))?,
        };
        let rest = toml::Value::Table(table);
        let settings = match kind {
            StoreKind::Sled => RawSledSettings::deserialize(rest).map(Self::Sled),
            StoreKind::Postgres => RawPostgresSettings::deserialize(rest).map(Self::Postgres),
        };
        settings.map_err(|e| {
            D::Error::custom(format!(
                "[store] kind = \"{}\": {}",
                kind.as_str(),
                e.message()
            ))
        })
    }
}

/// The store implementations: the `kind` key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    /// [`SledStore`]: embedded, one process per data folder.
    #[default]
    Sled,
    /// [`PgStore`]: one PostgreSQL database shared by several instances.
    Postgres,
}

/// The checked store settings.
#[derive(Clone, Debug)]
pub enum StoreSettings {
    /// An embedded store in this folder.
    Sled {
        /// The data folder (resolved against the configuration file's folder).
        path: PathBuf,
        /// sled's page cache, in bytes.
        cache_bytes: u64,
    },
    /// A PostgreSQL database.
    Postgres {
        /// Connection, pool and (optionally) the audit chain id.
        settings: Box<PostgresSettings>,
        /// Where this instance's audit chain id is kept when `audit_chain` is not configured.
        chain_file: PathBuf,
    },
}

/// What is wrong with the `[store]` table. Never carries a password or URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreSettingsError {
    /// `cache_mib` out of range.
    #[error("[store] cache_mib must be 1..=4096, got {value}")]
    CacheSize {
        /// The value given.
        value: u64,
    },
    /// The older top-level `data_dir` was given for a PostgreSQL store, which keeps nothing on disk.
    #[error("data_dir does not apply to a PostgreSQL store ([store] kind = \"postgres\")")]
    DataDirForPostgres,
    /// The legacy top-level `data_dir` and `store.path` disagree or both are set.
    #[error("give the data folder once: store.path or the older top-level data_dir, not both")]
    PathTwice,
    /// The PostgreSQL settings are refused.
    #[error(transparent)]
    Postgres(#[from] PostgresSettingsError),
}

impl StoreKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Postgres => "postgres",
        }
    }
}

impl RawStoreSettings {
    /// Checks the table. `base_dir` is the configuration file's folder (relative paths follow it),
    /// `legacy_data_dir` the older top-level `data_dir` key, and `chain_file` where a PostgreSQL
    /// instance keeps its audit chain id. Reads the process environment (database URL, password).
    ///
    /// # Errors
    /// [`StoreSettingsError`] naming the key at fault.
    pub fn validate(
        self,
        base_dir: &Path,
        legacy_data_dir: Option<PathBuf>,
        chain_file: PathBuf,
    ) -> Result<StoreSettings, StoreSettingsError> {
        self.validate_with_env(base_dir, legacy_data_dir, chain_file, |name| {
            std::env::var(name).ok()
        })
    }

    /// [`Self::validate`] with the environment given as a function (for tests).
    ///
    /// # Errors
    /// [`StoreSettingsError`] naming the key at fault.
    pub fn validate_with_env(
        self,
        base_dir: &Path,
        legacy_data_dir: Option<PathBuf>,
        chain_file: PathBuf,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<StoreSettings, StoreSettingsError> {
        match self {
            Self::Sled(sled) => {
                let path = match (sled.path, legacy_data_dir) {
                    (Some(_), Some(_)) => return Err(StoreSettingsError::PathTwice),
                    (Some(p), None) | (None, Some(p)) => p,
                    (None, None) => PathBuf::from("data"),
                };
                let cache_mib = sled.cache_mib.unwrap_or(DEFAULT_CACHE_MIB);
                if !(1..=4096).contains(&cache_mib) {
                    return Err(StoreSettingsError::CacheSize { value: cache_mib });
                }
                Ok(StoreSettings::Sled {
                    path: base_dir.join(path),
                    cache_bytes: cache_mib * 1024 * 1024,
                })
            }
            Self::Postgres(postgres) => {
                if legacy_data_dir.is_some() {
                    return Err(StoreSettingsError::DataDirForPostgres);
                }
                Ok(StoreSettings::Postgres {
                    settings: Box::new(postgres.validate_with_env(base_dir, env)?),
                    chain_file,
                })
            }
        }
    }

    /// The password file named by a PostgreSQL store (as written, relative to the configuration's
    /// folder), if any.
    pub fn password_file(&self) -> Option<&Path> {
        match self {
            Self::Sled(_) => None,
            Self::Postgres(postgres) => postgres.password_file.as_deref(),
        }
    }
}

impl StoreSettings {
    /// Where the store is, for messages: the folder, or `user@host:port/database` (never a password).
    pub fn location(&self) -> String {
        match self {
            Self::Sled { path, .. } => path.display().to_string(),
            Self::Postgres { settings, .. } => format!("postgres {}", settings.target()),
        }
    }

    /// Whether several processes may open this store at once.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }
}

/// Opens the store `settings` name. A PostgreSQL store is migrated to this build's schema and
/// appends to the configured audit chain, or to the one persisted in its chain file (created on first
/// use).
///
/// # Errors
/// [`StoreError`] from opening (a sled folder held by another process, a database that does not
/// answer, a newer format); a chain file that cannot be read or written is [`StoreError::Io`].
pub fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        StoreSettings::Sled { path, cache_bytes } => {
            Ok(Arc::new(SledStore::open_with_cache(path, *cache_bytes)?))
        }
        StoreSettings::Postgres {
            settings,
            chain_file,
        } => {
            let chain = chain_id(settings, chain_file)?;
            Ok(Arc::new(PgStore::open(settings, chain)?))
        }
    }
}

/// This instance's audit chain id (configured, or persisted in `chain_file`).
fn chain_id(settings: &PostgresSettings, chain_file: &Path) -> Result<ChainId, StoreError> {
    settings
        .audit_chain_or_persisted(chain_file)
        .map_err(|e| StoreError::Io {
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawStoreSettings {
        toml::from_str(text).expect("parses")
    }

    fn validate(
        raw: RawStoreSettings,
        legacy: Option<&str>,
    ) -> Result<StoreSettings, StoreSettingsError> {
        raw.validate_with_env(
            Path::new("/etc/os"),
            legacy.map(PathBuf::from),
            PathBuf::from("/etc/os/config.audit-chain"),
            |_| None,
        )
    }

    #[test]
    fn sled_is_the_default_and_takes_the_legacy_data_dir() {
        let s = validate(RawStoreSettings::default(), None).expect("default");
        assert!(matches!(s, StoreSettings::Sled { path, .. } if path == Path::new("/etc/os/data")));
        let s = validate(RawStoreSettings::default(), Some("old")).expect("legacy");
        assert!(matches!(s, StoreSettings::Sled { path, .. } if path == Path::new("/etc/os/old")));
        let s = validate(parse("path = \"new\""), None).expect("path");
        assert!(matches!(s, StoreSettings::Sled { path, .. } if path == Path::new("/etc/os/new")));
        assert!(matches!(
            validate(parse("path = \"new\""), Some("old")),
            Err(StoreSettingsError::PathTwice)
        ));
    }

    #[test]
    fn the_sled_cache_is_small_by_default_and_bounded() {
        let s = validate(RawStoreSettings::default(), None).expect("default");
        assert!(matches!(s, StoreSettings::Sled { cache_bytes, .. } if cache_bytes == 16 << 20));
        let s = validate(parse("cache_mib = 48"), None).expect("48 MiB");
        assert!(matches!(s, StoreSettings::Sled { cache_bytes, .. } if cache_bytes == 48 << 20));
        for bad in ["cache_mib = 0", "cache_mib = 4097"] {
            assert!(matches!(
                validate(parse(bad), None),
                Err(StoreSettingsError::CacheSize { .. })
            ));
        }
    }

    /// The parser's words for a `[store]` table it refuses.
    fn refusal(text: &str) -> String {
        toml::from_str::<RawStoreSettings>(text)
            .expect_err(text)
            .message()
            .to_owned()
    }

    #[test]
    fn keys_of_the_other_kind_are_refused_with_the_kind_and_its_keys() {
        let e = refusal("kind = \"postgres\"\ncache_mib = 8");
        assert!(
            e.starts_with("[store] kind = \"postgres\": unknown field `cache_mib`"),
            "{e}"
        );
        assert!(e.contains("`url`") && e.contains("`audit_lanes`"), "{e}");
        let e = refusal("url = \"postgres://u@h/d\"");
        assert_eq!(
            e,
            "[store] kind = \"sled\": unknown field `url`, expected `path` or `cache_mib`"
        );
        let e = refusal("kind = \"postgres\"\nurl = \"postgres://u@h/d\"\npath = \"x\"");
        assert!(e.contains("unknown field `path`"), "{e}");
        assert!(refusal("audit_lanes = 8").contains("unknown field `audit_lanes`"));
        assert!(refusal("kind = \"mysql\"").contains("`mysql`"));
        assert!(refusal("colour = \"blue\"").contains("unknown field `colour`"));
        assert!(refusal("kind = 3").starts_with("[store] kind: "));
    }

    #[test]
    fn the_legacy_data_dir_is_refused_for_postgres() {
        assert!(matches!(
            validate(
                parse("kind = \"postgres\"\nurl = \"postgres://u@h/d\""),
                Some("old")
            ),
            Err(StoreSettingsError::DataDirForPostgres)
        ));
    }

    #[test]
    fn postgres_settings_are_checked_by_the_store() {
        let s = validate(
            parse("kind = \"postgres\"\nurl = \"postgres://u@h:5433/d\"\npool_size = 3"),
            None,
        )
        .expect("valid");
        assert_eq!(s.location(), "postgres u@h:5433/d");
        assert!(s.is_shared());
        assert!(matches!(
            validate(
                parse("kind = \"postgres\"\nurl = \"postgres://u:pw@h/d\""),
                None
            ),
            Err(StoreSettingsError::Postgres(
                PostgresSettingsError::PasswordInUrl
            ))
        ));
    }
}
