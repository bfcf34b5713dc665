//! Integration credentials: HTTP Basic authentication (`clientToken:clientSecret`) for every API method
//! when `restrict_access = true`, and the making of new credentials for the `integration create`
//! command.
//!
//! A secret is 32 random bytes shown once as unpadded URL-safe Base64 (43 characters); the store keeps
//! only `SHA-256(UTF-8 of that text)` ([`SecretHash`]). A presented secret is hashed the same way and
//! compared in constant time (`subtle`); an unknown client token is compared against a dummy hash so
//! that it costs the same. Nothing of the `Authorization` header is ever logged (the router also marks
//! the header sensitive for the trace layer).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use crate::service::ServiceError;
use crate::store::{IntegrationCredential, SecretHash, Store, Timestamp};

/// Bytes of randomness in a client secret.
pub const SECRET_BYTES: usize = 32;

/// What the authentication middleware needs.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Store>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Whether `authorization` (the header value) names a stored credential with the right secret.
    fn check(&self, authorization: Option<&[u8]>) -> Result<bool, ServiceError> {
        let Some((token, secret)) = authorization.and_then(parse_basic) else {
            return Ok(false);
        };
        let presented = hash_secret(&secret);
        let stored = self.store.credential(&token)?;
        let (expected, known) = match &stored {
            Some(c) => (c.secret_hash.0.as_slice(), true),
            None => (&[0u8; 32][..], false),
        };
        let equal: bool = presented.0.as_slice().ct_eq(expected).into();
        Ok(equal && known)
    }
}

/// Middleware: answers 401 `ERR_AUTHENTICATION` before the body is read unless the request carries
/// valid integration credentials.
pub async fn require_credentials(
    State(auth): State<Authenticator>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match auth.check(header) {
        Ok(true) => next.run(request).await,
        Ok(false) => {
            tracing::info!("request refused: missing or wrong integration credentials");
            ApiError::Unauthenticated.into_response()
        }
        Err(e) => ApiError::Service(e).into_response(),
    }
}

/// `Basic base64(token:secret)` → `(token, secret)`; `None` for anything else.
fn parse_basic(value: &[u8]) -> Option<(String, SecretString)> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    );
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let (token, secret) = decoded.split_once(':')?;
    Some((token.to_owned(), SecretString::from(secret.to_owned())))
}

/// `SHA-256(UTF-8 of the secret text)`.
pub fn hash_secret(secret: &SecretString) -> SecretHash {
    SecretHash(Sha256::digest(secret.expose_secret().as_bytes()).to_vec())
}

/// A new credential named `name`: a random UUID v4 client token and a fresh secret. The returned
/// record holds only the secret's hash; the secret itself is returned once, to be shown once.
pub fn new_credential(name: &str, now: Timestamp) -> (IntegrationCredential, SecretString) {
    let mut bytes = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let secret =
        SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    let credential = IntegrationCredential {
        client_token: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        secret_hash: hash_secret(&secret),
        created_at: now,
    };
    (credential, secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(token: &str, secret: &str) -> Vec<u8> {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{token}:{secret}"));
        format!("Basic {enc}").into_bytes()
    }

    #[test]
    fn parses_basic_and_refuses_other_schemes() {
        let (t, s) = parse_basic(&basic("tok", "se:cret")).expect("valid header");
        assert_eq!(t, "tok");
        assert_eq!(s.expose_secret(), "se:cret");
        assert!(parse_basic(b"Bearer abc").is_none());
        assert!(parse_basic(b"Basic !!!").is_none());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("tok");
        assert!(parse_basic(format!("Basic {no_colon}").as_bytes()).is_none());
    }

    #[test]
    fn new_credentials_are_unique_and_hash_their_secret() {
        let now = Timestamp::from_unix_millis(0);
        let (a, sa) = new_credential("a", now);
        let (b, sb) = new_credential("b", now);
        assert_ne!(a.client_token, b.client_token);
        assert_ne!(sa.expose_secret(), sb.expose_secret());
        assert_eq!(sa.expose_secret().len(), 43);
        assert_eq!(a.secret_hash, hash_secret(&sa));
        assert_ne!(a.secret_hash.0, sa.expose_secret().as_bytes());
    }
}
