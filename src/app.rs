//! The composition root: configuration → signer → store → service, written once.
//!
//! `serve`, every administrative command, `key-report`, `audit verify` and the benchmark's ceilings
//! open what they need through these functions and nothing else, so that the wiring (which store,
//! which signer, in which order, with which settings) cannot differ between them.
//!
//! sled admits one process per data folder: [`open_store`] waits a few seconds for the lock and then
//! fails with [`AppError::OpenStore`], which is what a command run beside a running server sees.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::model::KeyId;
use crate::service::{Credentials, Service, ServiceError, SystemClock};
use crate::signer::config::{PinSource, SignerConfig};
use crate::signer::pkcs11::ProvisionOutcome;
use crate::signer::report::KeyPurpose;
use crate::signer::{self, KeyReport, OpenError, Signer, SignerError};
use crate::store::{ChainReport, KeyCensus, SledStore, Store, StoreError};

/// Why the application could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store cannot be opened (missing folder, another process holds it, a newer format).
    #[error("opening the store in {path}: {source}")]
    OpenStore {
        /// The data folder.
        path: String,
        /// What the store said.
        source: StoreError,
    },
    /// The signer cannot be opened (module, token, PIN).
    #[error("opening the signer: {0}")]
    OpenSigner(#[from] OpenError),
    /// The signer opened but failed an operation.
    #[error("the signer failed: {0}")]
    Signer(#[from] SignerError),
    /// The store failed while reading.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The command needs a PKCS#11 token and the configuration names the software signer.
    #[error("this command needs signer.kind = \"pkcs11\"")]
    NotPkcs11,
    /// The service could not start (e.g. the KEK/DEK could not be found or made).
    #[error("starting the service: {0}")]
    Service(#[from] ServiceError),
}

/// Opens the configured store.
///
/// # Errors
/// [`AppError::OpenStore`] naming the folder.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    SledStore::open(&config.data_dir)
        .map(|s| Arc::new(s) as Arc<dyn Store>)
        .map_err(|source| AppError::OpenStore {
            path: config.data_dir.display().to_string(),
            source,
        })
}

/// Opens the configured signer.
///
/// # Errors
/// [`AppError::OpenSigner`] naming what is missing or refused.
pub async fn open_signer(config: &Config) -> Result<Arc<dyn Signer>, AppError> {
    Ok(signer::open_signer(&config.signer).await?)
}

/// The whole service, with the handles it must release when it stops.
#[derive(Debug)]
pub struct App {
    service: Service,
    signer: Arc<dyn Signer>,
}

impl App {
    /// Opens store, signer and service (the service finds or makes the KEK and DEK). On a failure
    /// after the signer opened, the signer is shut down before returning.
    ///
    /// # Errors
    /// [`AppError`] saying which part failed.
    pub async fn open(config: &Config) -> Result<App, AppError> {
        let store = open_store(config)?;
        let signer = open_signer(config).await?;
        match Service::open(
            Arc::clone(&signer),
            store,
            config.service,
            Arc::new(SystemClock),
        )
        .await
        {
            Ok(service) => Ok(App { service, signer }),
            Err(e) => {
                signer.shutdown().await;
                Err(e.into())
            }
        }
    }

    /// The service (cheap to clone).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Releases the HSM (sessions closed, library finalized) and drops the store. Every store write
    /// was durable when it returned, so nothing acknowledged is lost.
    pub async fn close(self) {
        self.signer.shutdown().await;
    }
}

/// The integration-credential use cases over the configured store (no HSM needed).
///
/// # Errors
/// [`AppError::OpenStore`].
pub fn credentials(config: &Config) -> Result<Credentials, AppError> {
    Ok(Credentials::new(open_store(config)?))
}

/// `key-report`: every key the service owns on the token, read from the token itself, the
/// token's answers to the isolation probes and, when the store can be opened (sled: only while
/// the server is stopped), the wrapped-key count and the orphans (master key objects the store
/// does not know). When it cannot, the report says why those two are absent.
///
/// # Errors
/// [`AppError::OpenSigner`] or [`AppError::Signer`].
pub async fn key_report(config: &Config) -> Result<KeyReport, AppError> {
    let signer = open_signer(config).await?;
    let report = signer::key_report(signer.as_ref()).await;
    signer.shutdown().await;
    let mut report = report?;
    match open_store(config).and_then(|store| Ok(store.key_census()?)) {
        Ok(census) => {
            report.wrapped_keys.count =
                Some(census.wrapped_activation_keys + census.wrapped_temporary_keys);
            report.wrapped_keys.count_absent_because = None;
            report.orphans = Some(
                orphans(&report, &census)
                    .into_iter()
                    .map(|(label, id)| format!("{label}#{id}"))
                    .collect(),
            );
            report.orphans_absent_because = None;
        }
        Err(e) => {
            let why = format!(
                "the store could not be read ({e}); a sled store admits one process: \
                 run key-report while the server is stopped"
            );
            report.wrapped_keys.count_absent_because = Some(why.clone());
            report.orphans_absent_because = Some(why);
        }
    }
    Ok(report)
}

/// Master key objects on the token (label `offline-signer/master/<id>`) whose id the store does
/// not know, as (label, id), one entry per id.
fn orphans(report: &KeyReport, census: &KeyCensus) -> Vec<(String, KeyId)> {
    let mut out: Vec<(String, KeyId)> = Vec::new();
    for key in &report.keys {
        if !matches!(
            key.purpose,
            KeyPurpose::MasterPrivate | KeyPurpose::MasterPublic
        ) {
            continue;
        }
        let Ok(id) = key.attributes.id.parse::<KeyId>() else {
            continue;
        };
        let known = census.master_key_ids.binary_search(&id).is_ok();
        if !known && !out.iter().any(|(_, seen)| *seen == id) {
            out.push((key.attributes.label.clone(), id));
        }
    }
    out
}

/// What `hsm gc` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOutcome {
    /// The orphaned master keys (`label#id`), each standing for both halves.
    pub orphans: Vec<String>,
    /// Token objects destroyed (0 on a dry run).
    pub destroyed: usize,
}

/// `hsm gc`: finds the master key objects on the token that the store does not know (left behind
/// when a generation's answer was lost) and, with `remove`, destroys them. Needs the store (sled:
/// the server stopped).
///
/// # Errors
/// [`AppError::OpenStore`], [`AppError::OpenSigner`], [`AppError::Signer`], [`AppError::Store`].
pub async fn gc(config: &Config, remove: bool) -> Result<GcOutcome, AppError> {
    let store = open_store(config)?;
    let census = store.key_census()?;
    let signer = open_signer(config).await?;
    let result = async {
        let report = signer::key_report(signer.as_ref()).await?;
        let found = orphans(&report, &census);
        let destroyed = if remove && !found.is_empty() {
            signer.destroy_orphans(&found).await?
        } else {
            0
        };
        Ok::<_, SignerError>(GcOutcome {
            orphans: found
                .iter()
                .map(|(label, id)| format!("{label}#{id}"))
                .collect(),
            destroyed,
        })
    }
    .await;
    signer.shutdown().await;
    Ok(result?)
}

/// `hsm provision`: the key ceremony, as the security officer (PIN read from `so_pin_file`):
/// makes sure the token holds a trusted KEK with the unwrap policy. Run it before the first start.
///
/// # Errors
/// [`AppError::NotPkcs11`] for a software signer; [`AppError::OpenSigner`] naming what is
/// missing or refused.
pub fn provision(config: &Config, so_pin_file: &Path) -> Result<ProvisionOutcome, AppError> {
    let SignerConfig::Pkcs11(cfg) = &config.signer else {
        return Err(AppError::NotPkcs11);
    };
    Ok(signer::pkcs11::provision_blocking(
        cfg,
        &PinSource::File(so_pin_file.to_owned()),
    )?)
}

/// `audit verify`: walks the audit chain of the configured store.
///
/// # Errors
/// [`AppError::OpenStore`] or [`AppError::Store`].
pub fn verify_audit(config: &Config) -> Result<ChainReport, AppError> {
    let store = open_store(config)?;
    Ok(crate::store::verify_audit_chain(store.as_ref())?)
}
