//! Wiring and lifetime of the running service, and the administrative commands that work on the same
//! pieces: configuration → signer → store → [`Service`] → [`http::router`], served until SIGTERM or
//! SIGINT, with a background task pruning expired nonces.
//!
//! Shutdown order: stop accepting connections, let in-flight requests finish (axum's graceful
//! shutdown), stop the pruning task, [`Signer::shutdown`] (sessions closed, library finalized), then
//! drop the store. Every store write is durable when it returns, so nothing acknowledged is lost.
//!
//! sled allows one process per data directory: the commands below ([`create_integration`],
//! [`list_integrations`], [`remove_integration`], [`create_application`]) must run while the server
//! is stopped.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::Config;
use crate::http::{self, ApiSettings};
use crate::service::{ApplicationDetail, Service, ServiceError, Settings, SystemClock};
use crate::signer::{self, Signer, SignerError};
use crate::store::{IntegrationCredential, SledStore, Store, StoreError, Timestamp};

/// How often expired nonces are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How long an expired nonce is kept (so that it answers `EXPIRED`, not `UNKNOWN`, for a while).
pub const PRUNE_RETENTION: Duration = Duration::from_secs(3600);
/// Most nonces deleted per store call.
const PRUNE_BATCH: usize = 10_000;

/// Why the server or a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the store in {path}: {source}")]
    OpenStore { path: String, source: StoreError },
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("opening the signer: {0}")]
    OpenSigner(#[from] SignerError),
    #[error("starting the service: {0}")]
    Service(ServiceError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
    #[error("no integration credential with client token {0}")]
    UnknownCredential(String),
    #[error("invalid {what}: {problem}")]
    Invalid {
        what: &'static str,
        problem: &'static str,
    },
}

/// The service settings of a configuration.
pub fn service_settings(config: &Config) -> Settings {
    Settings {
        signature: config.signature,
        nonce_policy: config.nonce_policy,
        nonce_ttl: config.nonce_ttl,
    }
}

fn open_store(config: &Config) -> Result<Arc<SledStore>, ServerError> {
    SledStore::open(&config.data_dir)
        .map(Arc::new)
        .map_err(|source| ServerError::OpenStore {
            path: config.data_dir.display().to_string(),
            source,
        })
}

/// Opens signer, store and service. On a service error the signer is shut down before returning.
async fn open_service(
    config: &Config,
) -> Result<(Service, Arc<dyn Signer>, Arc<SledStore>), ServerError> {
    let store = open_store(config)?;
    let signer = signer::open_signer(&config.signer).await?;
    match Service::open(
        Arc::clone(&signer),
        Arc::clone(&store) as Arc<dyn Store>,
        service_settings(config),
        Arc::new(SystemClock),
    )
    .await
    {
        Ok(service) => Ok((service, signer, store)),
        Err(e) => {
            signer.shutdown().await;
            Err(ServerError::Service(e))
        }
    }
}

/// `offline-signer serve`: runs until SIGTERM or SIGINT, then shuts down in order (module docs).
pub async fn serve(config: &Config) -> Result<(), ServerError> {
    let (service, signer, store) = open_service(config).await?;
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(source) => {
            signer.shutdown().await;
            return Err(ServerError::Bind {
                address: config.listen,
                source,
            });
        }
    };
    let result = serve_on(
        listener,
        service,
        ApiSettings::from_config(config),
        shutdown_signal(),
    )
    .await;
    signer.shutdown().await;
    drop(store);
    tracing::info!("stopped");
    result
}

/// Serves `service` on `listener` until `shutdown` completes, with the nonce-pruning task running
/// alongside; in-flight requests finish before it returns. Does not shut the signer down.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    service: Service,
    settings: ApiSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    let pruner = tokio::spawn(prune_nonces_forever(service.clone()));
    tracing::info!(%address, restrict_access = settings.restrict_access, "serving");
    if !settings.restrict_access {
        tracing::warn!(
            %address,
            "restrict_access = false: every API method is open to anyone who can reach this address"
        );
    }
    let result = http::serve(listener, service, settings, shutdown)
        .await
        .map_err(ServerError::Serve);
    pruner.abort();
    tracing::info!("HTTP server drained");
    result
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

async fn prune_nonces_forever(service: Service) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match service.prune_nonces(PRUNE_RETENTION, PRUNE_BATCH).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(pruned = n, "expired nonces pruned");
                    }
                    if n < PRUNE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning expired nonces failed");
                    break;
                }
            }
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Administrative commands (server stopped)

/// A credential just made: the secret is shown once and never stored.
#[derive(Debug)]
pub struct NewCredential {
    pub client_token: String,
    pub name: String,
    pub client_secret: SecretString,
}

/// `integration create`: stores a new credential (its secret hashed) and returns the secret once.
pub fn create_integration(config: &Config, name: &str) -> Result<NewCredential, ServerError> {
    if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(ServerError::Invalid {
            what: "name",
            problem: "must be 1..=255 bytes without control characters",
        });
    }
    let store = open_store(config)?;
    let (credential, secret) = http::auth::new_credential(name, Timestamp::now());
    store.put_credential(&credential)?;
    tracing::info!(client_token = %credential.client_token, name, "integration credential created");
    Ok(NewCredential {
        client_token: credential.client_token,
        name: credential.name,
        client_secret: secret,
    })
}

/// `integration list`: every credential (token, name, creation time; the hash stays inside).
pub fn list_integrations(config: &Config) -> Result<Vec<IntegrationCredential>, ServerError> {
    Ok(open_store(config)?.credentials()?)
}

/// `integration remove`: deletes the credential with this client token.
pub fn remove_integration(config: &Config, client_token: &str) -> Result<(), ServerError> {
    let store = open_store(config)?;
    match store.remove_credential(client_token) {
        Ok(()) => {
            tracing::info!(client_token, "integration credential removed");
            Ok(())
        }
        Err(StoreError::NotFound { .. }) => {
            Err(ServerError::UnknownCredential(client_token.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `application create`: creates the application and its master key pair in the HSM.
pub async fn create_application(
    config: &Config,
    application_id: &str,
) -> Result<ApplicationDetail, ServerError> {
    let (service, signer, store) = open_service(config).await?;
    let result = service.create_application(application_id).await;
    signer.shutdown().await;
    drop(store);
    result.map_err(ServerError::Service)
}

/// `application detail`-style JSON for the CLI (same field names as the API).
pub fn application_json(detail: ApplicationDetail) -> String {
    let wire: http::wire::ApplicationResponse = detail.into();
    serde_json::to_string_pretty(&wire).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
