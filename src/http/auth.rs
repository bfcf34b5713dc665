//! HTTP Basic authentication (`clientToken:clientSecret`) for every API method when
//! `restrict_access = true`: the header is parsed here, the credential is checked by the service
//! ([`Service::caller_for`]) and the request is handled as that caller ([`acting_as`]), so that
//! the use cases check its scope and name it in audit records. With `restrict_access = false`
//! every request is handled as [`Caller::anonymous`]. Nothing of the `Authorization` header is ever logged (the router also
//! marks the header sensitive for the trace layer).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::SecretString;

use super::error::ApiError;
use crate::service::{Caller, Service, acting_as};

/// Middleware: answers 401 `ERR_AUTHENTICATION` before the body is read unless the request carries
/// valid integration credentials.
pub(crate) async fn require_credentials(
    State(service): State<Service>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| parse_basic(v.as_bytes()));
    let Some((token, secret)) = presented else {
        tracing::info!("request refused: missing or malformed integration credentials");
        return ApiError::Unauthenticated.into_response();
    };
    match service.caller_for(&token, &secret).await {
        Ok(Some(caller)) => acting_as(caller, next.run(request)).await,
        Ok(None) => {
            tracing::info!("request refused: wrong integration credentials");
            ApiError::Unauthenticated.into_response()
        }
        Err(e) => ApiError::Service(e).into_response(),
    }
}

/// Middleware for `restrict_access = false`: every request acts as [`Caller::anonymous`].
pub(crate) async fn open_access(request: Request, next: Next) -> Response {
    acting_as(Caller::anonymous(), next.run(request)).await
}

/// `Basic base64(token:secret)` → `(token, secret)`; `None` for anything else.
pub(crate) fn parse_basic(value: &[u8]) -> Option<(String, SecretString)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

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
}
