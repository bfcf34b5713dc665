//! The error type of the [`crate`] layer. Messages never contain key material.

/// Everything that can go wrong in pure PowerAuth math and format handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Text that should be Base64 is not canonical RFC 4648 Base64 with padding.
    #[error("invalid Base64")]
    InvalidBase64,
    /// Bytes that are not a P-256 point (wrong length, off the curve, or the identity).
    #[error("invalid public key")]
    InvalidPublicKey,
    /// Bytes that are not a P-256 private scalar in `1..n`.
    #[error("invalid private key")]
    InvalidPrivateKey,
    /// A symmetric key that is not exactly 16 bytes.
    #[error("invalid symmetric key length: {0} bytes (expected 16)")]
    InvalidSymmetricKey(usize),
    /// Counter data that is not exactly 16 bytes.
    #[error("invalid counter data length: {0} bytes (expected 16)")]
    InvalidCounterData(usize),
    /// A decimal component length outside 4..=8.
    #[error("invalid component length {0} (allowed 4..=8)")]
    InvalidComponentLength(i64),
    /// A signature type name that is neither a wire nor a header name of §7.2.
    #[error("unknown signature type {0:?}")]
    UnknownSignatureType(String),
    /// A list of factor keys that is not 1..=3 keys long.
    #[error("a signature needs 1 to 3 factor keys, got {0}")]
    InvalidFactorCount(usize),
    /// An `offlineData` payload that does not follow §4.
    #[error("malformed offlineData: {0}")]
    MalformedOfflineData(&'static str),
    /// Verify-request `data` that is not `POST&B64(uriId)&NONCE&B64(body)` (exactly four parts).
    #[error("malformed request data: {0}")]
    MalformedRequestData(&'static str),
    /// A DER or raw ECDSA signature that cannot be parsed.
    #[error("malformed ECDSA signature")]
    MalformedSignature,
    /// An ECDSA signature that does not verify.
    #[error("bad ECDSA signature")]
    BadSignature,
    /// TOTP parameters out of range (step 0, digits outside 6..=10).
    #[error("invalid TOTP parameters: {0}")]
    InvalidTotpParameters(&'static str),
}
