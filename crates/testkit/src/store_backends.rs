//! One scenario list, two stores: [`Backend`] is what a store scenario needs from a store kind (a fresh
//! place, opening it again, the raw hooks that play an attacker or a newer build), implemented for sled
//! and for PostgreSQL; [`store_scenarios!`] instantiates every listed scenario once per backend, as
//! `sled::<name>` and `postgres::<name>`.
//!
//! A test file lists its scenarios with `offline_signer_testkit::store_scenarios!(a, b, c);`.

use std::path::PathBuf;

use offline_signer::store::{
    ChainId, PgStore, SCHEMA_VERSION, STORE_FORMAT, SledStore, Store, StoreError,
};

use crate::postgres::TestDatabase;

/// A kind of store and one place where a store of that kind lives.
pub trait Backend: Sized + Send + Sync + 'static {
    type Store: Store + Send + Sync + 'static;

    /// The module name the scenarios of this backend are instantiated in.
    const NAME: &'static str;

    /// A fresh, empty place; `None` when the backend is missing and that is allowed (loudly).
    fn fresh() -> Option<Self>;

    /// Opens (or opens again) the store at this place.
    fn try_open(&self) -> Result<Self::Store, StoreError>;

    fn open(&self) -> Self::Store {
        self.try_open().expect("the test store opens")
    }

    /// A string a child process can open the same store from ([`Self::at_location`]).
    fn location(&self) -> String;

    /// The place named by [`Self::location`] (owned by the parent: the child deletes nothing).
    fn at_location(location: &str) -> Self;

    /// Rewrites the raw bytes of audit record `seq` of the store's own chain.
    fn tamper_audit_raw(store: &Self::Store, seq: u64, edit: impl FnOnce(&mut Vec<u8>));

    /// Deletes audit record `seq` of the store's own chain behind its back.
    fn remove_audit_raw(store: &Self::Store, seq: u64);

    /// Marks the store as written by a newer build; returns `(found, supported)` as the refusal names them.
    fn mark_newer_format(store: &Self::Store) -> (u32, u32);

    /// Durable flushes made by this handle so far, where the backend counts them.
    fn flush_count(_store: &Self::Store) -> Option<u64> {
        None
    }
}

/// A sled store in a temp dir.
pub struct Sled {
    dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
}

impl Backend for Sled {
    type Store = SledStore;
    const NAME: &'static str = "sled";

    fn fresh() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        Some(Self {
            dir: dir.path().to_path_buf(),
            _owned: Some(dir),
        })
    }

    fn try_open(&self) -> Result<SledStore, StoreError> {
        SledStore::open(&self.dir)
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn at_location(location: &str) -> Self {
        Self {
            dir: PathBuf::from(location),
            _owned: None,
        }
    }

    fn tamper_audit_raw(store: &SledStore, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
        store.tamper_audit_raw(seq, edit).expect("tamper hook");
    }

    fn remove_audit_raw(store: &SledStore, seq: u64) {
        store.remove_audit_raw(seq).expect("remove hook");
    }

    fn mark_newer_format(store: &SledStore) -> (u32, u32) {
        store
            .set_format_marker_raw(STORE_FORMAT + 1)
            .expect("format hook");
        (STORE_FORMAT + 1, STORE_FORMAT)
    }

    fn flush_count(store: &SledStore) -> Option<u64> {
        Some(store.flush_count())
    }
}

/// The audit chain the PostgreSQL scenarios write to.
pub const TEST_CHAIN: &str = "test-instance";

/// A PostgreSQL store in a database of its own.
pub struct Postgres {
    settings: offline_signer::store::PostgresSettings,
    url: String,
    _owned: Option<TestDatabase>,
}

impl Postgres {
    /// Opens another handle on the same database that appends to `chain`.
    pub fn open_chain(&self, chain: &str) -> PgStore {
        PgStore::open(&self.settings, ChainId::new(chain).expect("valid chain id"))
            .expect("the test store opens")
    }

    /// The database of this place (`None` in a child process, which does not own it).
    pub fn database(&self) -> &TestDatabase {
        self._owned
            .as_ref()
            .expect("only the process that made the database holds it")
    }

    pub fn settings(&self) -> &offline_signer::store::PostgresSettings {
        &self.settings
    }
}

impl Backend for Postgres {
    type Store = PgStore;
    const NAME: &'static str = "postgres";

    fn fresh() -> Option<Self> {
        let db = TestDatabase::create()?;
        Some(Self {
            settings: db.settings(16),
            url: db.url(),
            _owned: Some(db),
        })
    }

    fn try_open(&self) -> Result<PgStore, StoreError> {
        PgStore::open(&self.settings, ChainId::new(TEST_CHAIN).expect("valid"))
    }

    fn location(&self) -> String {
        self.url.clone()
    }

    fn at_location(location: &str) -> Self {
        Self {
            settings: offline_signer::store::PostgresSettings::from_url(location, 16)
                .expect("the parent's URL is valid"),
            url: location.to_owned(),
            _owned: None,
        }
    }

    fn tamper_audit_raw(store: &PgStore, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
        store.tamper_audit_raw(seq, edit).expect("tamper hook");
    }

    fn remove_audit_raw(store: &PgStore, seq: u64) {
        store.remove_audit_raw(seq).expect("remove hook");
    }

    fn mark_newer_format(store: &PgStore) -> (u32, u32) {
        store
            .set_schema_version_raw(SCHEMA_VERSION + 1)
            .expect("schema hook");
        (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    }
}

/// Instantiates each named scenario `fn name<B: Backend>()` of the including file once per backend.
#[macro_export]
macro_rules! store_scenarios {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(
                #[test]
                fn $name() {
                    super::$name::<$crate::store_backends::Sled>();
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name::<$crate::store_backends::Postgres>();
                }
            )*
        }
    };
}
