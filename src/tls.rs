//! What the HTTPS listener (`http::conn`) and the store's TLS client to PostgreSQL share: one rustls
//! crypto provider and one reader of PEM certificate files.

use std::path::Path;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// rustls with the *ring* provider: classical key exchange (X25519, P-256, P-384), no post-quantum
/// hybrid. rustls 0.23.48 deprecates this provider for that reason; its replacement (aws-lc-rs)
/// needs a C/CMake build of AWS-LC that this build machine cannot fetch.
#[allow(deprecated)]
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Every certificate of the PEM file `path`, in order.
///
/// # Errors
/// In words (never the file's text): the file cannot be read or parsed, or holds no certificate.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".to_owned());
    }
    Ok(certs)
}
