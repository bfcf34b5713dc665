//! Temporary-key JWTs of protocol 3.3 (`spec/powerauth-activation.md` §3).
//!
//! The SDK asks for a temporary ECIES key with an **HS256** JWT: the fixed header
//! [`REQUEST_HEADER`], a payload `{applicationKey, activationId?, challenge}` and
//! `HMAC-SHA256(JWT_KEY, ASCII(header "." payload))`, where `JWT_KEY` is `B64D(APP_SECRET)`
//! (application scope) or `KDF_INTERNAL(KEY_TRANSPORT, B64D(APP_SECRET))` (activation scope).
//! The server answers with an **ES256** JWT whose claims name the new key; the HSM signs
//! `ASCII(header "." payload)` and the signature is JOSE `r ‖ s`. All parts are `B64URL`.
//!
//! Server: [`RequestJwt::parse`] → look up the application → [`RequestJwt::verify`];
//! [`TemporaryKeyClaims::signing_input`] → HSM → [`assemble_response`].
//! Client (simulator): [`build_request`], [`verify_response`].

use std::fmt;

use hmac::Mac as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::application::ApplicationSecret;
use super::ecdsa::{self, DerSignature};
use super::kdf::{self, SymmetricKey};
use super::keys::PublicKey;
use super::{CryptoError, b64};

use crate::signature::HmacSha256;

/// The SDK's request header, `B64URL('{"alg":"HS256","typ":"JWT"}')`, always this exact text.
pub const REQUEST_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
/// The response header JSON (§3.4).
pub const RESPONSE_HEADER_JSON: &str = r#"{"typ":"JWT","alg":"ES256"}"#;
/// Length of the random challenge the SDK puts in the request (before Base64).
pub const CHALLENGE_LEN: usize = 18;

/// The HS256 key of a request JWT: `B64D(APP_SECRET)` without a transport key (application
/// scope), `KDF_INTERNAL(KEY_TRANSPORT, B64D(APP_SECRET))` with one (activation scope).
pub fn request_key(
    application_secret: &ApplicationSecret,
    transport_key: Option<&SymmetricKey>,
) -> SymmetricKey {
    let decoded = application_secret.decoded();
    match transport_key {
        None => SymmetricKey::from_bytes(*decoded),
        Some(kt) => kdf::kdf_internal(kt, decoded.as_slice()),
    }
}

#[derive(Serialize, Deserialize)]
struct RequestPayload {
    #[serde(rename = "applicationKey", skip_serializing_if = "Option::is_none")]
    application_key: Option<String>,
    #[serde(rename = "activationId", skip_serializing_if = "Option::is_none")]
    activation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    typ: Option<String>,
}

/// A parsed, **not yet verified** request JWT (§3.2 step 1). Read the claims to find the
/// application (and activation), then call [`RequestJwt::verify`] with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestJwt {
    /// `applicationKey`, if present.
    pub application_key: Option<String>,
    /// `activationId` (activation scope), if present.
    pub activation_id: Option<String>,
    /// `challenge`, if present.
    pub challenge: Option<String>,
    algorithm: Option<String>,
    signing_input: String,
    signature: Vec<u8>,
}

impl RequestJwt {
    /// Splits `jwt` into exactly three `B64URL` parts and parses the header and payload as JSON
    /// objects; claims that are present must be strings. Else [`CryptoError::MalformedJwt`].
    pub fn parse(jwt: &str) -> Result<Self, CryptoError> {
        let (header, payload, signature) = split(jwt)?;
        let header: Header = json_part(header, Part::Header)?;
        let claims: RequestPayload = json_part(payload, Part::Payload)?;
        Ok(Self {
            application_key: claims.application_key,
            activation_id: claims.activation_id,
            challenge: claims.challenge,
            algorithm: header.alg,
            signing_input: jwt[..jwt.len() - signature.len() - 1].to_owned(),
            signature: b64::decode_url(signature)
                .map_err(|_| CryptoError::MalformedJwt("signature is not B64URL"))?,
        })
    }

    /// Checks `alg` = `HS256` exactly (stricter than upstream, which also takes HS384/HS512; the
    /// SDK sends nothing else) and the HMAC in constant time. Failures are
    /// [`CryptoError::JwtRejected`].
    pub fn verify(&self, key: &SymmetricKey) -> Result<(), CryptoError> {
        if self.algorithm.as_deref() != Some("HS256") {
            return Err(CryptoError::JwtRejected("alg is not HS256"));
        }
        let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(key.expose())
            .expect("HMAC accepts keys of any length");
        mac.update(self.signing_input.as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| CryptoError::JwtRejected("HMAC does not match"))
    }
}

/// Client: the request JWT the SDK sends, byte-exact: fixed header, payload
/// `{"applicationKey":…,"activationId":…,"challenge":…}` (no `activationId` in application scope).
pub fn build_request(
    application_key: &str,
    activation_id: Option<&str>,
    challenge: &str,
    key: &SymmetricKey,
) -> String {
    let payload = RequestPayload {
        application_key: Some(application_key.to_owned()),
        activation_id: activation_id.map(str::to_owned),
        challenge: Some(challenge.to_owned()),
    };
    let payload = serde_json::to_vec(&payload).expect("a struct of strings serializes");
    let signing_input = format!("{REQUEST_HEADER}.{}", b64::encode_url(payload));
    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(key.expose())
        .expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    let tag = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    format!("{signing_input}.{}", b64::encode_url(tag.as_slice()))
}

/// Client: a fresh request challenge, `B64(18 random bytes)` as the SDK makes it.
pub fn generate_challenge(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> String {
    let mut bytes = [0u8; CHALLENGE_LEN];
    rng.fill_bytes(&mut bytes);
    b64::encode(bytes)
}

#[derive(Serialize, Deserialize)]
struct ResponsePayload {
    sub: String,
    #[serde(rename = "applicationKey")]
    application_key: String,
    #[serde(
        rename = "activationId",
        skip_serializing_if = "Option::is_none",
        default
    )]
    activation_id: Option<String>,
    challenge: String,
    #[serde(rename = "publicKey")]
    public_key: String,
    iat: i64,
    exp: i64,
    iat_ms: i64,
    exp_ms: i64,
}

/// The claims of a response JWT (§3.4).
#[derive(Clone, PartialEq, Eq)]
pub struct TemporaryKeyClaims {
    /// `sub`: the temporary key id (UUID v4, lower case).
    pub key_id: String,
    /// `applicationKey`, echoed.
    pub application_key: String,
    /// `activationId`, echoed in activation scope; `None` in application scope.
    pub activation_id: Option<String>,
    /// `challenge`, echoed.
    pub challenge: String,
    /// `publicKey`: the temporary public key (sent as Base64 of 65 uncompressed bytes).
    pub public_key: PublicKey,
    /// `iat_ms`, Unix milliseconds (`iat` is derived: seconds, rounded down).
    pub issued_at_ms: i64,
    /// `exp_ms`, Unix milliseconds (`exp` is derived: seconds, rounded down).
    pub expires_at_ms: i64,
}

impl TemporaryKeyClaims {
    /// `B64URL(header) "." B64URL(payload)`, the text the ES256 signature covers. The payload
    /// fields are in upstream's order: `sub, applicationKey, activationId?, challenge, publicKey,
    /// iat, exp, iat_ms, exp_ms`. Hash it with SHA-256 ([`ecdsa::message_digest`]) for the HSM.
    pub fn signing_input(&self) -> String {
        let payload = ResponsePayload {
            sub: self.key_id.clone(),
            application_key: self.application_key.clone(),
            activation_id: self.activation_id.clone(),
            challenge: self.challenge.clone(),
            public_key: self.public_key.to_base64(),
            iat: self.issued_at_ms.div_euclid(1000),
            exp: self.expires_at_ms.div_euclid(1000),
            iat_ms: self.issued_at_ms,
            exp_ms: self.expires_at_ms,
        };
        let payload =
            serde_json::to_vec(&payload).expect("a struct of strings and integers serializes");
        format!(
            "{}.{}",
            b64::encode_url(RESPONSE_HEADER_JSON),
            b64::encode_url(payload)
        )
    }
}

impl fmt::Debug for TemporaryKeyClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryKeyClaims")
            .field("key_id", &self.key_id)
            .field("application_key", &self.application_key)
            .field("activation_id", &self.activation_id)
            .field("public_key", &self.public_key)
            .field("issued_at_ms", &self.issued_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// Server: the response JWT from its signing input and the HSM's signature as DER.
pub fn assemble_response(signing_input: &str, signature: &DerSignature) -> String {
    format!("{signing_input}.{}", b64::encode_url(signature.to_raw()))
}

/// Server: the response JWT from its signing input and the raw `r ‖ s` of `CKM_ECDSA` (already
/// the JOSE form). Values of `r` or `s` outside `1..n` are [`CryptoError::MalformedSignature`].
pub fn assemble_response_raw(signing_input: &str, raw: &[u8; 64]) -> Result<String, CryptoError> {
    Ok(assemble_response(
        signing_input,
        &DerSignature::from_raw(raw)?,
    ))
}

/// Client: verifies a response JWT as the SDK does and returns its claims.
///
/// Checks: three parts; header `typ` = `JWT` and `alg` = `ES256`; the 64-byte JOSE signature over
/// `ASCII(header "." payload)` with `public_key` (the master public key in application scope, the
/// server public key in activation scope); then that `challenge`, `applicationKey` and
/// `activationId` echo the request. Expiry is the caller's (it has the clock).
pub fn verify_response(
    jwt: &str,
    public_key: &PublicKey,
    application_key: &str,
    activation_id: Option<&str>,
    challenge: &str,
) -> Result<TemporaryKeyClaims, CryptoError> {
    let (header, payload, signature_text) = split(jwt)?;
    let header: Header = json_part(header, Part::Header)?;
    if header.typ.as_deref() != Some("JWT") || header.alg.as_deref() != Some("ES256") {
        return Err(CryptoError::JwtRejected("header is not typ JWT, alg ES256"));
    }
    let raw = b64::decode_url(signature_text)
        .map_err(|_| CryptoError::MalformedJwt("signature is not B64URL"))?;
    let signature = DerSignature::from_raw(&raw)?;
    let signing_input = &jwt[..jwt.len() - signature_text.len() - 1];
    ecdsa::verify(public_key, signing_input.as_bytes(), &signature)
        .map_err(|_| CryptoError::JwtRejected("ES256 signature does not verify"))?;
    let claims: ResponsePayload = json_part(payload, Part::Payload)?;
    if claims.challenge != challenge
        || claims.application_key != application_key
        || claims.activation_id.as_deref() != activation_id
    {
        return Err(CryptoError::JwtRejected(
            "claims do not echo the request's challenge, application key and activation id",
        ));
    }
    Ok(TemporaryKeyClaims {
        key_id: claims.sub,
        application_key: claims.application_key,
        activation_id: claims.activation_id,
        challenge: claims.challenge,
        public_key: PublicKey::from_base64(&claims.public_key)?,
        issued_at_ms: claims.iat_ms,
        expires_at_ms: claims.exp_ms,
    })
}

fn split(jwt: &str) -> Result<(&str, &str, &str), CryptoError> {
    let mut parts = jwt.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok((header, payload, signature)),
        _ => Err(CryptoError::MalformedJwt("not three dot-separated parts")),
    }
}

#[derive(Clone, Copy)]
enum Part {
    Header,
    Payload,
}

fn json_part<T: serde::de::DeserializeOwned>(text: &str, part: Part) -> Result<T, CryptoError> {
    let (not_b64, not_json) = match part {
        Part::Header => (
            "header is not B64URL",
            "header is not a JSON object of the expected shape",
        ),
        Part::Payload => (
            "payload is not B64URL",
            "payload is not a JSON object of the expected shape",
        ),
    };
    let bytes = b64::decode_url(text).map_err(|_| CryptoError::MalformedJwt(not_b64))?;
    serde_json::from_slice(&bytes).map_err(|_| CryptoError::MalformedJwt(not_json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;
    use proptest::prelude::*;

    const AK: &str = "0WQMnkkQPmLnAPJakVSeBw==";
    const AS: &str = "HVta3De5xFZuIfWaSLTmiw==";
    const CHALLENGE: &str = "778UcSfljyVVlr6yJt1ipbFT";
    /// `activation-temporary-key.json` case 0 (upstream-generated), byte-exact request.
    const REQUEST: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhcHBsaWNhdGlvbktleSI6IjBXUU1ua2tRUG1MbkFQSmFrVlNlQnc9PSIsImNoYWxsZW5nZSI6Ijc3OFVjU2ZsanlWVmxyNnlKdDFpcGJGVCJ9.SGFsEpV2joDuNeX8RxD-oYLl8ZN8JmVeRz2kJLwc0X4";

    fn key() -> SymmetricKey {
        request_key(&ApplicationSecret::from_text(AS).unwrap(), None)
    }

    #[test]
    fn request_is_byte_exact_and_verifies() {
        assert_eq!(build_request(AK, None, CHALLENGE, &key()), REQUEST);
        let parsed = RequestJwt::parse(REQUEST).unwrap();
        assert_eq!(parsed.application_key.as_deref(), Some(AK));
        assert_eq!(parsed.activation_id, None);
        assert_eq!(parsed.challenge.as_deref(), Some(CHALLENGE));
        assert!(parsed.verify(&key()).is_ok());
        assert_eq!(
            parsed.verify(&SymmetricKey::from_bytes([0; 16])),
            Err(CryptoError::JwtRejected("HMAC does not match"))
        );
    }

    #[test]
    fn request_rejections() {
        assert!(RequestJwt::parse("a.b").is_err());
        assert!(RequestJwt::parse(&format!("{REQUEST}.x")).is_err());
        assert!(RequestJwt::parse("eyJ9.eyJ9.AA").is_err());
        // Payload that is JSON but a claim of the wrong type.
        let bad = format!(
            "{REQUEST_HEADER}.{}.AA",
            b64::encode_url(r#"{"applicationKey":1}"#)
        );
        assert_eq!(
            RequestJwt::parse(&bad),
            Err(CryptoError::MalformedJwt(
                "payload is not a JSON object of the expected shape"
            ))
        );
        // alg other than HS256, even with a correct MAC.
        let header = b64::encode_url(r#"{"alg":"HS384","typ":"JWT"}"#);
        let payload = REQUEST.split('.').nth(1).unwrap();
        let input = format!("{header}.{payload}");
        let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(key().expose()).unwrap();
        mac.update(input.as_bytes());
        let jwt = format!("{input}.{}", b64::encode_url(mac.finalize().into_bytes()));
        assert_eq!(
            RequestJwt::parse(&jwt).unwrap().verify(&key()),
            Err(CryptoError::JwtRejected("alg is not HS256"))
        );
    }

    fn claims(activation_id: Option<&str>) -> TemporaryKeyClaims {
        TemporaryKeyClaims {
            key_id: "eff5501d-c3b9-4596-8047-bd76049fb12d".to_owned(),
            application_key: AK.to_owned(),
            activation_id: activation_id.map(str::to_owned),
            challenge: CHALLENGE.to_owned(),
            public_key: PublicKey::from_base64(
                "BAJbNV1n4/9a0icJ5Mj+rJF3gxDuS2awKWynk1b0tnDKZf5Y+MqOHLfms3aPjVpSuv3K2O4ImU+p6w5ssUnO5Ik=",
            )
            .unwrap(),
            issued_at_ms: 1_750_000_000_123,
            expires_at_ms: 1_750_000_300_123,
        }
    }

    #[test]
    fn response_signing_input_is_byte_exact() {
        // The first two parts of case 0's response JWT.
        assert_eq!(
            claims(None).signing_input(),
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJlZmY1NTAxZC1jM2I5LTQ1OTYtODA0Ny1iZDc2MDQ5ZmIxMmQiLCJhcHBsaWNhdGlvbktleSI6IjBXUU1ua2tRUG1MbkFQSmFrVlNlQnc9PSIsImNoYWxsZW5nZSI6Ijc3OFVjU2ZsanlWVmxyNnlKdDFpcGJGVCIsInB1YmxpY0tleSI6IkJBSmJOVjFuNC85YTBpY0o1TWorckpGM2d4RHVTMmF3S1d5bmsxYjB0bkRLWmY1WStNcU9ITGZtczNhUGpWcFN1djNLMk80SW1VK3A2dzVzc1VuTzVJaz0iLCJpYXQiOjE3NTAwMDAwMDAsImV4cCI6MTc1MDAwMDMwMCwiaWF0X21zIjoxNzUwMDAwMDAwMTIzLCJleHBfbXMiOjE3NTAwMDAzMDAxMjN9"
        );
    }

    #[test]
    fn response_round_trip_and_rejections() {
        let signer =
            PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
        let act = Some("11b47fd7-8936-4f96-9e46-519fbd973b8d");
        let c = claims(act);
        let input = c.signing_input();
        let der = ecdsa::sign(&signer, input.as_bytes());
        let jwt = assemble_response(&input, &der);
        assert_eq!(assemble_response_raw(&input, &der.to_raw()).unwrap(), jwt);
        let public = signer.public_key();
        assert_eq!(
            verify_response(&jwt, &public, AK, act, CHALLENGE).unwrap(),
            c
        );
        assert_eq!(
            verify_response(&jwt, &public, AK, None, CHALLENGE).map(|_| ()),
            Err(CryptoError::JwtRejected(
                "claims do not echo the request's challenge, application key and activation id"
            ))
        );
        assert!(verify_response(&jwt, &public, AK, act, "other").is_err());
        let other = PrivateKey::from_scalar_bytes(&[1; 32])
            .unwrap()
            .public_key();
        assert_eq!(
            verify_response(&jwt, &other, AK, act, CHALLENGE).map(|_| ()),
            Err(CryptoError::JwtRejected("ES256 signature does not verify"))
        );
        assert!(assemble_response_raw(&input, &[0; 64]).is_err());
    }

    proptest! {
        #[test]
        fn any_changed_request_character_fails(index in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]") {
            let i = index.index(REQUEST.len());
            let mut text = REQUEST.as_bytes().to_vec();
            let replacement = replacement.as_bytes()[0];
            prop_assume!(text[i] != b'.' && text[i] != replacement);
            text[i] = replacement;
            let text = String::from_utf8(text).unwrap();
            let verdict = RequestJwt::parse(&text).and_then(|jwt| jwt.verify(&key()));
            prop_assert!(verdict.is_err(), "{}", text);
        }
    }
}
