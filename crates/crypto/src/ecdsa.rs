//! ECDSA P-256 / SHA-256 signatures over `offlineData` (`spec/powerauth-offline.md` §4.2).
//!
//! The message is hashed with SHA-256 and signed; the signature travels as ASN.1 DER
//! `SEQUENCE { INTEGER r, INTEGER s }` (usually 70–72 bytes). PKCS#11 `CKM_ECDSA` works on the
//! 32-byte digest ([`message_digest`]) and returns raw `r‖s` (64 bytes), hence [`DerSignature::from_raw`].
//! Verification accepts high-S signatures (Java does not normalize S).

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use sha2::Digest as _;

use super::keys::{PrivateKey, PublicKey};
use super::{CryptoError, b64};

/// Length of a raw `r‖s` signature.
pub const RAW_LEN: usize = 64;

/// A strictly DER-encoded P-256 ECDSA signature with `0 < r, s < n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerSignature(Vec<u8>);

impl DerSignature {
    /// Accepts only canonical DER (`SEQUENCE` of two minimal positive `INTEGER`s, no trailing bytes)
    /// with both values in `1..n`; anything else is [`CryptoError::MalformedSignature`].
    pub fn from_der(bytes: &[u8]) -> Result<Self, CryptoError> {
        let parsed =
            p256::ecdsa::Signature::from_der(bytes).map_err(|_| CryptoError::MalformedSignature)?;
        if parsed.to_der().as_bytes() != bytes {
            return Err(CryptoError::MalformedSignature);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Converts a raw `r‖s` signature (32 + 32 bytes big-endian, as `CKM_ECDSA` returns it) to DER.
    pub fn from_raw(raw: &[u8]) -> Result<Self, CryptoError> {
        if raw.len() != RAW_LEN {
            return Err(CryptoError::MalformedSignature);
        }
        let parsed =
            p256::ecdsa::Signature::from_slice(raw).map_err(|_| CryptoError::MalformedSignature)?;
        Ok(Self(parsed.to_der().as_bytes().to_vec()))
    }

    /// Decodes canonical Base64 of a DER signature.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        Self::from_der(&b64::decode(text)?)
    }

    /// The raw `r‖s` form (64 bytes).
    pub fn to_raw(&self) -> [u8; RAW_LEN] {
        let mut out = [0u8; RAW_LEN];
        out.copy_from_slice(&self.parsed().to_bytes());
        out
    }

    /// The DER bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base64 of the DER bytes, as appended to `offlineData`.
    pub fn to_base64(&self) -> String {
        b64::encode(&self.0)
    }

    fn parsed(&self) -> p256::ecdsa::Signature {
        p256::ecdsa::Signature::from_der(&self.0).expect("DerSignature holds validated DER")
    }
}

/// `SHA-256(message)`: the 32 bytes an HSM signs with `CKM_ECDSA`.
pub fn message_digest(message: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(message).into()
}

/// Verifies `signature` over `message` (hashed with SHA-256) with `public`.
pub fn verify(
    public: &PublicKey,
    message: &[u8],
    signature: &DerSignature,
) -> Result<(), CryptoError> {
    p256::ecdsa::VerifyingKey::from(public.as_p256())
        .verify(message, &signature.parsed())
        .map_err(|_| CryptoError::BadSignature)
}

/// Verifies `signature` over a precomputed SHA-256 `digest` with `public`.
pub fn verify_digest(
    public: &PublicKey,
    digest: &[u8; 32],
    signature: &DerSignature,
) -> Result<(), CryptoError> {
    p256::ecdsa::VerifyingKey::from(public.as_p256())
        .verify_prehash(digest, &signature.parsed())
        .map_err(|_| CryptoError::BadSignature)
}

/// Signs `message` (hashed with SHA-256) with `private`, deterministic `k` (RFC 6979). For the
/// software signer and tests; production keys sign inside the HSM.
pub fn sign(private: &PrivateKey, message: &[u8]) -> DerSignature {
    let signature: p256::ecdsa::Signature =
        p256::ecdsa::SigningKey::from(private.as_p256()).sign(message);
    DerSignature(signature.to_der().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_raw_round_trip() {
        let key = PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
        let sig = sign(&key, b"hello");
        assert!(verify(&key.public_key(), b"hello", &sig).is_ok());
        assert!(verify_digest(&key.public_key(), &message_digest(b"hello"), &sig).is_ok());
        assert_eq!(
            verify(&key.public_key(), b"hellO", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(DerSignature::from_raw(&sig.to_raw()).unwrap(), sig);
    }

    #[test]
    fn rejects_malformed_der_and_raw() {
        let key = PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
        let der = sign(&key, b"m").as_bytes().to_vec();
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(DerSignature::from_der(&trailing).is_err());
        assert!(DerSignature::from_der(&der[..der.len() - 1]).is_err());
        assert!(DerSignature::from_der(&[]).is_err());
        assert!(DerSignature::from_raw(&[0u8; 64]).is_err(), "r = s = 0");
        assert!(DerSignature::from_raw(&[1u8; 63]).is_err());
        // A non-minimal INTEGER (extra leading zero) is not canonical DER.
        assert!(
            DerSignature::from_der(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01])
                .is_err()
        );
    }
}
