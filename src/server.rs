//! The running service and the administrative commands: [`serve`] opens everything through
//! [`crate::app`], serves the API until SIGTERM or SIGINT, with a background task pruning expired
//! nonces, and shuts down in order.
//!
//! Shutdown order: stop accepting connections, let in-flight requests finish (idle connections are
//! closed at once; see `http::conn`), stop the pruning and checkpoint tasks, sign a last audit
//! checkpoint, release the HSM (sessions closed, library finalized), then drop
//! the store. Every store write is durable when it returns, so nothing acknowledged is lost.
//!
//! sled allows one process per data directory: against sled the commands below
//! ([`create_integration`], [`list_integrations`], [`remove_integration`], [`create_application`])
//! run while the server is stopped, and otherwise fail saying which HTTP method does the same.
//! Against PostgreSQL they run at any time, beside running instances.

use std::time::Duration;

use crate::app::{self, App, AppError};
use crate::config::Config;
use crate::http::{self, ApiSettings, ConnectionSettings};
use crate::model::{CredentialScope, Timestamp};
use crate::service::{
    ApplicationDetail, Caller, CredentialInfo, NewCredential, Service, ServiceError,
};

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
    /// `integration remove` of a token or id that does not exist.
    #[error("no integration credential with client token or id {0}")]
    UnknownCredential(String),
    /// An administrative command found the sled store held by another process (the running server).
    #[error(
        "the store {path} is in use, probably by the running server (sled admits one process). \
         While it runs, do the same over HTTP with an ADMIN credential, e.g.\n  \
         curl -u \"$OFFLINE_SIGNER_CLIENT_TOKEN:$OFFLINE_SIGNER_CLIENT_SECRET\" \
         -H 'content-type: application/json' -d '{{\"requestObject\": {example}}}' \
         http://{listen}{base_path}/rest/v3/{method}\n\
         or stop the server first. (A PostgreSQL store admits these commands at any time.)"
    )]
    StoreInUse {
        /// The data folder.
        path: String,
        /// The configured listen address.
        listen: std::net::SocketAddr,
        /// The configured base path.
        base_path: String,
        /// The API method doing the same.
        method: &'static str,
        /// Its request object.
        example: String,
    },
}

/// Turns "the sled store is held by another process" into [`ServerError::StoreInUse`], which says
/// how to do the same over HTTP; any other failure stays as it is.
fn store_in_use(
    config: &Config,
    method: &'static str,
    example: String,
    e: AppError,
) -> ServerError {
    match e {
        AppError::OpenStore {
            path,
            source: crate::store::StoreError::Io { .. },
        } if !config.store.is_shared() => ServerError::StoreInUse {
            path,
            listen: config.listen,
            base_path: config.http.base_path.clone(),
            method,
            example,
        },
        other => ServerError::App(other),
    }
}

/// `offline-signer serve`: runs until SIGTERM or SIGINT, then shuts down in order (module docs).
///
/// # Errors
/// [`ServerError`] when a part cannot be opened, the address cannot be bound, or serving fails.
pub async fn serve(config: &Config) -> Result<(), ServerError> {
    warn_about_exposed_secrets(config);
    let app = App::open(config).await?;
    let bind = |address: std::net::SocketAddr| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind { address, source })
    };
    let listeners = match bind(config.listen).await {
        Ok(api) => match config.connections.ops_listen {
            None => Ok((api, None)),
            Some(ops) => bind(ops).await.map(|ops| (api, Some(ops))),
        },
        Err(e) => Err(e),
    };
    let (listener, ops_listener) = match listeners {
        Ok(l) => l,
        Err(e) => {
            app.close().await;
            return Err(e);
        }
    };
    let checkpointer = app.start_checkpoints();
    let result = serve_on(
        listener,
        ops_listener,
        app.service().clone(),
        config.http.clone(),
        config.connections.clone(),
        shutdown_signal(),
    )
    .await;
    checkpointer.abort();
    let _ = checkpointer.await;
    // `close` signs the last checkpoint before releasing the HSM.
    app.close().await;
    tracing::info!("stopped");
    result
}

/// Loud, at every start: a secret file that group or others may read (the service still starts:
/// container platforms often mount secrets group-readable, and refusing would turn a hardening
/// advice into an outage; the operator is told which file and which mode).
fn warn_about_exposed_secrets(config: &Config) {
    for (key, path) in &config.secret_files {
        if let Some(mode) = crate::files::exposed_mode(path) {
            tracing::error!(
                key,
                path = %path.display(),
                mode = format!("{mode:o}"),
                "SECRET FILE READABLE BY OTHERS: chmod 600 it (and chown it to the service's user)"
            );
        }
    }
}

/// Serves `service` on `listener` (and the operations endpoints on `ops_listener` when given) until
/// `shutdown` completes, with the nonce-pruning task running alongside; in-flight requests finish
/// before it returns. Does not shut the signer down.
///
/// # Errors
/// [`ServerError::Serve`] when the listener fails or the TLS files cannot be used.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    ops_listener: Option<tokio::net::TcpListener>,
    service: Service,
    settings: ApiSettings,
    connections: ConnectionSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    let tls = connections.tls.is_some();
    let pruner = tokio::spawn(prune_nonces_forever(service.clone()));
    tracing::info!(%address, tls, restrict_access = settings.restrict_access, "serving");
    if let Some(ops) = ops_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!(address = %ops, "serving the operations endpoints");
    }
    if !tls && !http::conn::is_loopback(address) {
        tracing::warn!(
            %address,
            "PLAIN HTTP ON A NON-LOOPBACK ADDRESS: integration credentials and activation data cross the network \
             unencrypted. Configure [http.tls] or put a TLS proxy in front and listen on 127.0.0.1"
        );
    }
    if !settings.restrict_access {
        tracing::warn!(
            %address,
            "restrict_access = false: every API method is open to anyone who can reach this address"
        );
    }
    let result = http::serve(
        listener,
        ops_listener,
        service,
        settings,
        connections,
        shutdown,
    )
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

/// `integration create`: stores a new credential with `scope` (its secret hashed) and returns the
/// secret once. The audit record names `cli`.
///
/// # Errors
/// [`ServerError::StoreInUse`] when a running server holds the sled store, [`ServerError::App`]
/// when the store cannot be opened, [`ServerError::Service`] for a bad name or scope.
pub fn create_integration(
    config: &Config,
    name: &str,
    scope: CredentialScope,
) -> Result<NewCredential, ServerError> {
    let example = serde_json::json!({ "name": name }).to_string();
    let credentials = app::credentials(config)
        .map_err(|e| store_in_use(config, "integration/create", example, e))?;
    let created = credentials.create_scoped(&Caller::local(), name, scope, Timestamp::now())?;
    tracing::info!(id = %created.id, client_token = %created.client_token, name, role = created.scope.role(), "integration credential created");
    Ok(created)
}

/// `integration list`: every credential (token, name, creation time; the hash stays inside).
///
/// # Errors
/// [`ServerError::App`] when the store cannot be opened.
pub fn list_integrations(config: &Config) -> Result<Vec<CredentialInfo>, ServerError> {
    let credentials = app::credentials(config)
        .map_err(|e| store_in_use(config, "integration/list", "{}".to_owned(), e))?;
    Ok(credentials.list(&Caller::local())?)
}

/// `integration remove`: deletes the credential with this client token or id.
///
/// # Errors
/// [`ServerError::UnknownCredential`] when there is none, [`ServerError::StoreInUse`] when a
/// running server holds the sled store.
pub fn remove_integration(config: &Config, token_or_id: &str) -> Result<(), ServerError> {
    let example = serde_json::json!({ "id": token_or_id }).to_string();
    let credentials = app::credentials(config)
        .map_err(|e| store_in_use(config, "integration/remove", example, e))?;
    let caller = Caller::local();
    if credentials.remove(&caller, token_or_id)? || credentials.remove_id(&caller, token_or_id)? {
        tracing::info!(token_or_id, "integration credential removed");
        Ok(())
    } else {
        Err(ServerError::UnknownCredential(token_or_id.to_owned()))
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
    let example = serde_json::json!({ "applicationId": application_id }).to_string();
    let app = App::open(config)
        .await
        .map_err(|e| store_in_use(config, "application/create", example, e))?;
    let result = app.service().create_application(application_id).await;
    app.close().await;
    Ok(result?)
}
