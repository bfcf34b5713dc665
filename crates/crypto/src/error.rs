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
    /// An application secret that is not the Base64 text of 16 bytes.
    #[error("invalid application secret")]
    InvalidApplicationSecret,
    /// An application key that is not the Base64 text of 16 bytes.
    #[error("invalid application key")]
    InvalidApplicationKey,
    /// A `protocolVersion` this layer does not know (it knows 3.0 to 3.3).
    #[error("unsupported protocol version {0:?}")]
    UnsupportedProtocolVersion(String),
    /// An ECIES request, response or context whose shape does not fit the protocol version or the
    /// encryptor (a field present that must be absent, or the other way round; a wrong length).
    /// Upstream answers `ERR0024`.
    #[error("malformed ECIES message: {0}")]
    MalformedEcies(&'static str),
    /// The ECIES MAC does not match, or the plaintext padding is broken. Both are one error on
    /// purpose (upstream `ERR0018`), so that a caller cannot tell them apart.
    #[error("ECIES decryption failed")]
    EciesDecryptionFailed,
    /// An activation code that fails §4.2 (format, alphabet or CRC-16).
    #[error("invalid activation code: {0}")]
    InvalidActivationCode(&'static str),
    /// A status blob that the client must reject (§6.2: length, magic, status, look-ahead).
    #[error("malformed status blob: {0}")]
    MalformedStatusBlob(&'static str),
    /// A JWT that cannot be parsed (parts, B64URL, JSON, claim types).
    #[error("malformed JWT: {0}")]
    MalformedJwt(&'static str),
    /// A JWT that parses but is not accepted: wrong algorithm or type, a MAC or signature that
    /// does not verify, or a claim that does not match what was asked for.
    #[error("JWT rejected: {0}")]
    JwtRejected(&'static str),
}
