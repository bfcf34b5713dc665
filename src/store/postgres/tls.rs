//! TLS to the database: tokio-postgres's connector traits over rustls (the *ring* provider, as the
//! HTTP listener uses). The server's certificate must chain to a CA of `[store] tls_ca_file` (the
//! only trust anchors: the system's are not consulted) and name the host the URL names (a DNS name
//! or an IP address in its subjectAltName). There is no fallback to plain TCP once a CA is given.
//!
//! SCRAM runs without channel binding (`SCRAM-SHA-256`, not `-PLUS`): the certificate check above is
//! what keeps a man in the middle out.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{InvalidDnsNameError, ServerName};

/// Makes a TLS session for every new database connection, trusting only the configured CAs.
#[derive(Clone)]
pub(super) struct DatabaseTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for DatabaseTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseTls")
    }
}

impl DatabaseTls {
    /// Trusts the CA certificates of the PEM file `path`, and nothing else.
    ///
    /// # Errors
    /// In words: the file cannot be read, holds no certificate, or rustls refuses one.
    pub(super) fn from_ca_file(path: &Path) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::tls::read_certificates(path)? {
            roots.add(cert).map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(crate::tls::crypto_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for DatabaseTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = DatabaseTlsStream<S>;
    type TlsConnect = DatabaseTlsConnect;
    type Error = InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<DatabaseTlsConnect, InvalidDnsNameError> {
        Ok(DatabaseTlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
            server: ServerName::try_from(host.to_owned())?,
        })
    }
}

/// One connection's TLS handshake, for the host it was made for.
pub(super) struct DatabaseTlsConnect {
    connector: tokio_rustls::TlsConnector,
    server: ServerName<'static>,
}

impl<S> TlsConnect<S> for DatabaseTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = DatabaseTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<DatabaseTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.server, stream).await?;
            Ok(DatabaseTlsStream(tls))
        })
    }
}

/// A database connection's byte stream inside TLS.
pub(super) struct DatabaseTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for DatabaseTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for DatabaseTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for DatabaseTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
