//! Connections: the accept loops, TLS, and the limits that keep slow or idle clients from holding the
//! service open (`[http]` in the configuration).
//!
//! - At most `max_connections` connections are served at once. Beyond that the accept loop stops
//!   accepting: new connections wait in the kernel's listen backlog (and are refused by the kernel
//!   when that is full); none is accepted and then dropped.
//! - A connection must deliver a complete request header within `header_read_timeout` of being
//!   accepted (and of starting each later request: hyper's header timer, with a Tokio timer), and
//!   may stay idle between requests for at most `keep_alive_timeout`; then it is closed. A TLS
//!   handshake must also finish within `header_read_timeout`.
//! - Shutdown: stop accepting, let every connection finish its in-flight request (idle ones are
//!   closed at once), then return.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt as _;

use crate::tls::{crypto_provider, read_certificates};

/// Connection limits and TLS (the `[http]` table).
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// A request header must arrive completely within this time (default 10 s).
    pub header_read_timeout: Duration,
    /// An idle keep-alive connection is closed after this time (default 60 s).
    pub keep_alive_timeout: Duration,
    /// Connections served at once per listener; more wait in the kernel backlog (default 1024).
    pub max_connections: usize,
    /// `[http.tls]`: serve HTTPS instead of HTTP.
    pub tls: Option<TlsSettings>,
    /// `ops_listen`: serve `/health`, `/ready`, `/metrics`, `/openapi.json` on this address (plain
    /// HTTP) instead of the API's.
    pub ops_listen: Option<SocketAddr>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: 1024,
            tls: None,
            ops_listen: None,
        }
    }
}

/// The `[http.tls]` table: PEM files.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate issued by one of these CAs (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("TLS: {path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refuses the combination (e.g. the key does not match the certificate).
    #[error("TLS: {0}")]
    Config(String),
}

impl TlsSettings {
    /// Reads the files and builds the acceptor (TLS 1.2 and 1.3, ring provider, HTTP/2 and
    /// HTTP/1.1 by ALPN).
    ///
    /// # Errors
    /// [`TlsError`] naming the file at fault.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject as _;
        let file_error = |path: &Path, problem: String| TlsError::File {
            path: path.to_owned(),
            problem,
        };
        let read_certs = |path: &Path| read_certificates(path).map_err(|e| file_error(path, e));
        let chain = read_certs(&self.cert_file)?;
        // The key's PEM text is never echoed: the error names the file and the parser's verdict.
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| file_error(&self.key_file, format!("no usable private key ({e})")))?;
        let provider = Arc::new(crypto_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| file_error(path, e.to_string()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Whether `address` is reachable only from this host.
pub fn is_loopback(address: SocketAddr) -> bool {
    address.ip().is_loopback()
}

/// One listener's accept loop: serves `app` until `stop` turns true, then waits for its
/// connections to finish.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    settings: Arc<ConnectionSettings>,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(64 * 1024)
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64u32)
        .max_header_list_size(64 * 1024);
    let builder = Arc::new(builder);
    loop {
        // A slot first: beyond the cap, connections wait in the kernel backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            tls.clone(),
            app.clone(),
            Arc::clone(&builder),
            Arc::clone(&settings),
            graceful.watcher(),
            permit,
        ));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, never held across an await.
    let _ = stop.wait_for(|s| *s).await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    settings: Arc<ConnectionSettings>,
    watcher: Watcher,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await;
                drop(in_flight);
                response
            }
        })
    };
    let idle = activity.idle_expired(settings.header_read_timeout, settings.keep_alive_timeout);
    let stream: Box<dyn Stream> = match tls {
        None => Box::new(stream),
        Some(acceptor) => {
            match tokio::time::timeout(settings.header_read_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = watcher.watch(connection) => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = idle => tracing::debug!(%peer, "closing a silent or idle connection"),
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Requests in flight on one connection, and since when it has had none.
struct Activity(Mutex<ActivityState>);

struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
    served: bool,
}

/// Counts one request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.idle_since = Instant::now();
        state.served = true;
    }
}

impl Activity {
    fn new() -> Self {
        Self(Mutex::new(ActivityState {
            in_flight: 0,
            idle_since: Instant::now(),
            served: false,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.lock().in_flight += 1;
        InFlight(Arc::clone(self))
    }

    /// Completes when the connection has had no request in flight for `first` (before its first
    /// request: a client that connects and never completes a header) or `keep_alive` (later).
    async fn idle_expired(&self, first: Duration, keep_alive: Duration) {
        loop {
            let wake = {
                let state = self.lock();
                let limit = if state.served { keep_alive } else { first };
                if state.in_flight == 0 {
                    let deadline = state.idle_since + limit;
                    if Instant::now() >= deadline {
                        return;
                    }
                    deadline
                } else {
                    Instant::now() + limit
                }
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}
