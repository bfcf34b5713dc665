//! The running service and the administrative commands: [`serve`] opens everything through
//! [`crate::app`], serves the API until SIGTERM or SIGINT, with a background task pruning expired
//! nonces, and shuts down in order.
//!
//! Shutdown order: stop accepting connections, let in-flight requests finish (axum's graceful
//! shutdown), stop the pruning task, release the HSM (sessions closed, library finalized), then drop
//! the store. Every store write is durable when it returns, so nothing acknowledged is lost.
//!
//! sled allows one process per data directory: the commands below ([`create_integration`],
//! [`list_integrations`], [`remove_integration`], [`create_application`]) must run while the server
//! is stopped.

use std::time::Duration;

use crate::app::{self, App, AppError};
use crate::config::Config;
use crate::http::{self, ApiSettings};
use crate::model::Timestamp;
use crate::service::{ApplicationDetail, NewCredential, Service, ServiceError};
use crate::store::IntegrationCredential;

/// How often expired nonces, ECIES replay entries and temporary keys are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How long an expired nonce is kept (so that it answers `EXPIRED`, not `UNKNOWN`, for a while).
pub const PRUNE_RETENTION: Duration = Duration::from_secs(3600);
/// Most records deleted per store call.
const PRUNE_BATCH: usize = 10_000;

/// Why the server or a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Store, signer or service could not be opened.
    #[error(transparent)]
    App(#[from] AppError),
    /// A use case refused or failed.
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
    /// `integration remove` of a token that does not exist.
    #[error("no integration credential with client token {0}")]
    UnknownCredential(String),
}

/// `offline-signer serve`: runs until SIGTERM or SIGINT, then shuts down in order (module docs).
///
/// # Errors
/// [`ServerError`] when a part cannot be opened, the address cannot be bound, or serving fails.
pub async fn serve(config: &Config) -> Result<(), ServerError> {
    let app = App::open(config).await?;
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(source) => {
            app.close().await;
            return Err(ServerError::Bind {
                address: config.listen,
                source,
            });
        }
    };
    let result = serve_on(
        listener,
        app.service().clone(),
        config.http.clone(),
        shutdown_signal(),
    )
    .await;
    app.close().await;
    tracing::info!("stopped");
    result
}

/// Serves `service` on `listener` until `shutdown` completes, with the nonce-pruning task running
/// alongside; in-flight requests finish before it returns. Does not shut the signer down.
///
/// # Errors
/// [`ServerError::Serve`] when the listener fails.
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
        prune_in_batches("expired nonces", || {
            service.prune_nonces(PRUNE_RETENTION, PRUNE_BATCH)
        })
        .await;
        prune_in_batches("expired ECIES replay entries and temporary keys", || {
            service.prune_ecies(PRUNE_BATCH)
        })
        .await;
    }
}

/// Calls `prune` until it deletes less than a full batch or fails (logged, retried next tick).
async fn prune_in_batches<F, Fut>(what: &'static str, mut prune: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, ServiceError>>,
{
    loop {
        match prune().await {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(pruned = n, what, "pruned");
                }
                if n < PRUNE_BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, what, "pruning failed");
                break;
            }
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Administrative commands (server stopped)

/// `integration create`: stores a new credential (its secret hashed) and returns the secret once.
///
/// # Errors
/// [`ServerError::App`] when the store cannot be opened, [`ServerError::Service`] for a bad name.
pub fn create_integration(config: &Config, name: &str) -> Result<NewCredential, ServerError> {
    let created = app::credentials(config)?.create(name, Timestamp::now())?;
    tracing::info!(client_token = %created.client_token, name, "integration credential created");
    Ok(created)
}

/// `integration list`: every credential (token, name, creation time; the hash stays inside).
///
/// # Errors
/// [`ServerError::App`] when the store cannot be opened.
pub fn list_integrations(config: &Config) -> Result<Vec<IntegrationCredential>, ServerError> {
    Ok(app::credentials(config)?.list()?)
}

/// `integration remove`: deletes the credential with this client token.
///
/// # Errors
/// [`ServerError::UnknownCredential`] when there is none.
pub fn remove_integration(config: &Config, client_token: &str) -> Result<(), ServerError> {
    if app::credentials(config)?.remove(client_token)? {
        tracing::info!(client_token, "integration credential removed");
        Ok(())
    } else {
        Err(ServerError::UnknownCredential(client_token.to_owned()))
    }
}

/// `application create`: creates the application and its master key pair in the HSM.
///
/// # Errors
/// [`ServerError`] when a part cannot be opened or the use case refuses.
pub async fn create_application(
    config: &Config,
    application_id: &str,
) -> Result<ApplicationDetail, ServerError> {
    let app = App::open(config).await?;
    let result = app.service().create_application(application_id).await;
    app.close().await;
    Ok(result?)
}
