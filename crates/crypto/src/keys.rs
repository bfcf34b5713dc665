//! P-256 key encodings (`spec/powerauth-offline.md` §6.1).
//!
//! - [`PublicKey`]: decoded from SEC1 (65-byte uncompressed `04‖X‖Y`, or 33-byte compressed
//!   `02/03‖X`), always encoded uncompressed (65 bytes). The identity and off-curve points are
//!   rejected (P-256 has cofactor 1, so every curve point other than the identity has order n).
//! - [`PrivateKey`]: the scalar `d`, read from and written to the Java `BigInteger.toByteArray()`
//!   encoding (minimal two's-complement big-endian), held in zeroizing memory.

use std::fmt;

use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use zeroize::Zeroizing;

use super::{CryptoError, b64};

/// Length of an uncompressed SEC1 P-256 point: `0x04 ‖ X(32) ‖ Y(32)`.
pub const UNCOMPRESSED_LEN: usize = 65;
/// Length of a compressed SEC1 P-256 point: `0x02|0x03 ‖ X(32)`.
pub const COMPRESSED_LEN: usize = 33;

/// The DER of a P-256 `SubjectPublicKeyInfo` up to its 65-byte point: SEQUENCE (89 bytes) {
/// SEQUENCE { OID id-ecPublicKey 1.2.840.10045.2.1, OID prime256v1 1.2.840.10045.3.1.7 },
/// BIT STRING (66 bytes, no unused bits) }.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A,
    0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A validated P-256 public key (never the identity, always on the curve).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(p256::PublicKey);

impl PublicKey {
    /// Decodes a SEC1 point: 65 bytes uncompressed or 33 bytes compressed. Any other length, the
    /// identity, or a point off the curve is [`CryptoError::InvalidPublicKey`].
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        let shape_ok = match bytes.len() {
            UNCOMPRESSED_LEN => bytes[0] == 0x04,
            COMPRESSED_LEN => bytes[0] == 0x02 || bytes[0] == 0x03,
            _ => false,
        };
        if !shape_ok {
            return Err(CryptoError::InvalidPublicKey);
        }
        p256::PublicKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidPublicKey)
    }

    /// Wraps a `p256` public key (already a validated point).
    pub fn from_p256(key: p256::PublicKey) -> Self {
        Self(key)
    }

    /// The `p256` public key, for ECDSA verification and ECDH on the host.
    pub fn as_p256(&self) -> &p256::PublicKey {
        &self.0
    }

    /// Decodes canonical Base64 of a SEC1 point (see [`PublicKey::from_sec1`]).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        Self::from_sec1(&b64::decode(text)?)
    }

    /// Decodes a PKCS#11 `CKA_EC_POINT` value: either the DER OCTET STRING wrapping a SEC1 point
    /// (`04 41 04‖X‖Y` as SoftHSM returns it, or `04 21 02|03‖X`) or the raw SEC1 point.
    ///
    /// The two forms cannot be confused: a raw uncompressed point `04 ‖ X` would need `X[0]` to be
    /// the length of the rest (63), which is not a valid wrapped length.
    pub fn from_ec_point(bytes: &[u8]) -> Result<Self, CryptoError> {
        match bytes {
            [0x04, len, rest @ ..]
                if usize::from(*len) == rest.len()
                    && (rest.len() == UNCOMPRESSED_LEN || rest.len() == COMPRESSED_LEN) =>
            {
                Self::from_sec1(rest)
            }
            raw => Self::from_sec1(raw),
        }
    }

    /// The 65-byte uncompressed SEC1 encoding `0x04 ‖ X ‖ Y`.
    pub fn to_uncompressed(&self) -> [u8; UNCOMPRESSED_LEN] {
        let point = self.0.to_encoded_point(false);
        let mut out = [0u8; UNCOMPRESSED_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// The 33-byte compressed SEC1 encoding `0x02|0x03 ‖ X`.
    pub fn to_compressed(&self) -> [u8; COMPRESSED_LEN] {
        let point = self.0.to_encoded_point(true);
        let mut out = [0u8; COMPRESSED_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// Base64 of the 65-byte uncompressed encoding (88 characters), as stored and sent on the wire.
    pub fn to_base64(&self) -> String {
        b64::encode(self.to_uncompressed())
    }

    /// The DER `SubjectPublicKeyInfo` (RFC 5480: id-ecPublicKey, prime256v1, uncompressed point).
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut out = SPKI_P256_PREFIX.to_vec();
        out.extend_from_slice(&self.to_uncompressed());
        out
    }

    /// The `SubjectPublicKeyInfo` as PEM (`-----BEGIN PUBLIC KEY-----`, 64-character lines, a
    /// final newline), as `openssl pkey -pubin` reads it.
    pub fn to_spki_pem(&self) -> String {
        let body = b64::encode(self.to_spki_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Reads what [`PublicKey::to_spki_pem`] writes: exactly one `PUBLIC KEY` block holding a P-256
    /// uncompressed point in the RFC 5480 layout (surrounding whitespace and `\r` ignored). Any other
    /// key type, curve or shape is [`CryptoError::InvalidPublicKey`].
    pub fn from_spki_pem(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let body = text
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|rest| rest.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or(CryptoError::InvalidPublicKey)?;
        let joined: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = b64::decode(&joined)?;
        let point = der
            .strip_prefix(SPKI_P256_PREFIX.as_slice())
            .ok_or(CryptoError::InvalidPublicKey)?;
        if point.len() != UNCOMPRESSED_LEN {
            return Err(CryptoError::InvalidPublicKey);
        }
        Self::from_sec1(point)
    }

    /// The x-coordinate, 32 bytes big-endian, left-padded with zeros.
    pub fn x_bytes(&self) -> [u8; 32] {
        let mut x = [0u8; 32];
        x.copy_from_slice(&self.to_uncompressed()[1..33]);
        x
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_base64()).finish()
    }
}

/// A P-256 private scalar `d` with `0 < d < n`. Wiped on drop; `Debug` prints `REDACTED`.
#[derive(Clone)]
pub struct PrivateKey(p256::SecretKey);

impl PrivateKey {
    /// Reads the Java `BigInteger.toByteArray()` encoding: leading `0x00` bytes are stripped, the
    /// rest (at most 32 bytes) is left-padded to 32 bytes, and `0 < d < n` is required. This accepts
    /// the usual 32-byte form, the 33-byte form with a leading `0x00`, and shorter forms.
    pub fn from_java_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let first_nonzero = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let significant = &bytes[first_nonzero..];
        if significant.is_empty() || significant.len() > 32 {
            return Err(CryptoError::InvalidPrivateKey);
        }
        let mut padded = Zeroizing::new([0u8; 32]);
        padded[32 - significant.len()..].copy_from_slice(significant);
        Self::from_scalar_bytes(&padded)
    }

    /// Reads canonical Base64 of the Java encoding (see [`PrivateKey::from_java_bytes`]).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(b64::decode(text).map_err(|_| CryptoError::InvalidPrivateKey)?);
        Self::from_java_bytes(&bytes)
    }

    /// Reads the fixed 32-byte big-endian scalar; requires `0 < d < n`.
    pub fn from_scalar_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        p256::SecretKey::from_bytes(bytes.into())
            .map(Self)
            .map_err(|_| CryptoError::InvalidPrivateKey)
    }

    /// Draws a fresh key from `rng` (a CSPRNG).
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        Self(p256::SecretKey::random(rng))
    }

    /// Writes the Java `BigInteger.toByteArray()` encoding: big-endian `d` without leading zero
    /// bytes, with one `0x00` prepended when the top bit of the first byte is set.
    pub fn to_java_bytes(&self) -> Zeroizing<Vec<u8>> {
        let scalar = self.to_scalar_bytes();
        let first_nonzero = scalar.iter().position(|b| *b != 0).unwrap_or(31);
        let significant = &scalar[first_nonzero..];
        let mut out = Zeroizing::new(Vec::with_capacity(33));
        if significant[0] & 0x80 != 0 {
            out.push(0x00);
        }
        out.extend_from_slice(significant);
        out
    }

    /// Base64 of [`PrivateKey::to_java_bytes`], as PowerAuth stores private keys.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(self.to_java_bytes().as_slice()))
    }

    /// The fixed 32-byte big-endian scalar.
    pub fn to_scalar_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.0.to_bytes());
        out
    }

    /// The matching public key `d·G`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key())
    }

    /// The underlying `p256` key, for ECDH and ECDSA inside [`crate`].
    pub(crate) fn as_p256(&self) -> &p256::SecretKey {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(REDACTED)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_PRIVATE: &str = "AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc";
    const SERVER_PUBLIC: &str =
        "BP0G8/tV/kDLDaGCQmoeaOAabLQXjYF/6lgqVpUI3cS6FTTtIzPzOY137vyZFSthKorKvq0iih1PLUeeEFUkAGE=";

    #[test]
    fn spki_pem_round_trips_and_rejects_other_shapes() {
        let key = PublicKey::from_base64(SERVER_PUBLIC).unwrap();
        let pem = key.to_spki_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(key.to_spki_der().len(), 91);
        assert_eq!(PublicKey::from_spki_pem(&pem).unwrap(), key);
        assert_eq!(
            PublicKey::from_spki_pem(&pem.replace('\n', "\r\n")).unwrap(),
            key
        );
        let mut der = key.to_spki_der();
        der[12] ^= 1; // another algorithm OID
        let other = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            b64::encode(der)
        );
        assert!(PublicKey::from_spki_pem(&other).is_err());
        assert!(PublicKey::from_spki_pem("").is_err());
    }

    #[test]
    fn java_private_key_33_bytes_derives_public() {
        let key = PrivateKey::from_base64(SERVER_PRIVATE).unwrap();
        assert_eq!(key.public_key().to_base64(), SERVER_PUBLIC);
        assert_eq!(key.to_base64().as_str(), SERVER_PRIVATE);
    }

    #[test]
    fn java_private_key_short_and_padded_forms() {
        let mut scalar = [0u8; 32];
        scalar[31] = 7;
        let key = PrivateKey::from_scalar_bytes(&scalar).unwrap();
        assert_eq!(key.to_java_bytes().as_slice(), &[7]);
        assert_eq!(
            PrivateKey::from_java_bytes(&[0, 0, 7])
                .unwrap()
                .to_scalar_bytes(),
            key.to_scalar_bytes()
        );
        assert!(PrivateKey::from_java_bytes(&[]).is_err());
        assert!(PrivateKey::from_java_bytes(&[0, 0]).is_err(), "zero");
        assert!(PrivateKey::from_java_bytes(&[1u8; 33]).is_err(), "too long");
        assert!(PrivateKey::from_java_bytes(&[0xff; 32]).is_err(), ">= n");
    }

    #[test]
    fn public_key_forms() {
        let key = PublicKey::from_base64(SERVER_PUBLIC).unwrap();
        let compressed = key.to_compressed();
        assert_eq!(PublicKey::from_sec1(&compressed).unwrap(), key);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&key.to_uncompressed());
        assert_eq!(PublicKey::from_ec_point(&wrapped).unwrap(), key);
        assert_eq!(
            PublicKey::from_ec_point(&key.to_uncompressed()).unwrap(),
            key
        );
        let mut wrapped_c = vec![0x04, 0x21];
        wrapped_c.extend_from_slice(&compressed);
        assert_eq!(PublicKey::from_ec_point(&wrapped_c).unwrap(), key);
    }

    #[test]
    fn public_key_rejects_bad_points() {
        let mut bytes = PublicKey::from_base64(SERVER_PUBLIC)
            .unwrap()
            .to_uncompressed();
        bytes[64] ^= 1;
        assert_eq!(
            PublicKey::from_sec1(&bytes),
            Err(CryptoError::InvalidPublicKey)
        );
        assert!(PublicKey::from_sec1(&[0x00]).is_err(), "identity");
        assert!(PublicKey::from_sec1(&[0u8; 65]).is_err());
        assert!(PublicKey::from_sec1(&bytes[..64]).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let key = PrivateKey::from_base64(SERVER_PRIVATE).unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey(REDACTED)");
    }
}
