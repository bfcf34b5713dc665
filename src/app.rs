//! The composition root: configuration → signer → store → service, written once.
//!
//! `serve`, every administrative command, `key-report`, `audit verify` and the benchmark's ceilings
//! open what they need through these functions and nothing else, so that the wiring (which store,
//! which signer, in which order, with which settings) cannot differ between them.
//!
//! sled admits one process per data folder: [`open_store`] waits a few seconds for the lock and then
//! fails with [`AppError::OpenStore`], which is what a command run beside a running server sees.

use std::sync::Arc;

use crate::config::Config;
use crate::service::{Credentials, Service, ServiceError, SystemClock};
use crate::signer::{self, KeyReport, OpenError, Signer, SignerError};
use crate::store::{ChainReport, SledStore, Store, StoreError};

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
    /// The service could not start (e.g. the KEK/DEK could not be found or made).
    #[error("starting the service: {0}")]
    Service(#[from] ServiceError),
}

/// Opens the configured store.
///
/// # Errors
/// [`AppError::OpenStore`] naming the folder.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    // The folder is created 0700 before sled writes into it, so its files (which sled creates
    // with the process umask) are never reachable by others, even before they are tightened.
    crate::files::private_dir(&config.data_dir).map_err(|e| AppError::OpenStore {
        path: config.data_dir.display().to_string(),
        source: crate::store::StoreError::Io {
            detail: e.to_string(),
        },
    })?;
    let store = SledStore::open(&config.data_dir)
        .map(|s| Arc::new(s) as Arc<dyn Store>)
        .map_err(|source| AppError::OpenStore {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    if let Err(e) = crate::files::tighten_tree(&config.data_dir) {
        tracing::warn!(path = %config.data_dir.display(), error = %e, "cannot make the data folder's files 0600");
    }
    Ok(store)
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

/// `key-report`: every key the service owns on the token, read from the token itself.
///
/// # Errors
/// [`AppError::OpenSigner`] or [`AppError::Signer`].
pub async fn key_report(config: &Config) -> Result<KeyReport, AppError> {
    let signer = open_signer(config).await?;
    let report = signer::key_report(signer.as_ref()).await;
    signer.shutdown().await;
    Ok(report?)
}

/// `audit verify`: walks the audit chain of the configured store.
///
/// # Errors
/// [`AppError::OpenStore`] or [`AppError::Store`].
pub fn verify_audit(config: &Config) -> Result<ChainReport, AppError> {
    let store = open_store(config)?;
    Ok(crate::store::verify_audit_chain(store.as_ref())?)
}
