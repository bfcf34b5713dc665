//! Key agreement and key derivation (`spec/powerauth-offline.md` §6.2–§6.4).
//!
//! - `ECDH_X(d, Q)`: the 32-byte big-endian x-coordinate of `d·Q` ([`ecdh_x`]).
//! - `REDUCE(b) = b[i] XOR b[i+16]`, i = 0..15 ([`reduce`]); `KEY_MASTER_SECRET = REDUCE(ECDH_X)`.
//! - `KDF(K, index) = AES-128-Encrypt_K(0x00×8 ‖ BE64(index))`, one block ([`kdf`]).
//! - `KDF_INTERNAL(K, m) = REDUCE(HMAC-SHA256(key = K, msg = m))` ([`kdf_internal`]).
//! - The named keys: possession 1, knowledge 2, biometry 3, transport 1000, vault 2000 ([`DerivedKeys`]).

use std::fmt;

use aes::cipher::{BlockEncrypt as _, KeyInit as _};
use hmac::Mac as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::keys::{PrivateKey, PublicKey};
use super::{CryptoError, b64};

/// KDF index of `KEY_SIGNATURE_POSSESSION`.
pub const INDEX_POSSESSION: u64 = 1;
/// KDF index of `KEY_SIGNATURE_KNOWLEDGE`.
pub const INDEX_KNOWLEDGE: u64 = 2;
/// KDF index of `KEY_SIGNATURE_BIOMETRY`.
pub const INDEX_BIOMETRY: u64 = 3;
/// KDF index of `KEY_TRANSPORT`.
pub const INDEX_TRANSPORT: u64 = 1000;
/// KDF index of `KEY_ENCRYPTION_VAULT`.
pub const INDEX_VAULT: u64 = 2000;

/// A 16-byte secret key (factor key, transport key, vault key). Wiped on drop; `Debug` is redacted;
/// equality is constant-time.
#[derive(Clone)]
pub struct SymmetricKey(Zeroizing<[u8; 16]>);

impl SymmetricKey {
    /// Wraps 16 key bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Takes a slice that must be exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        <[u8; 16]>::try_from(bytes)
            .map(Self::from_bytes)
            .map_err(|_| CryptoError::InvalidSymmetricKey(bytes.len()))
    }

    /// Decodes canonical Base64 of exactly 16 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(b64::decode(text)?);
        Self::from_slice(&bytes)
    }

    /// The raw key bytes; call this only where the bytes enter a primitive or an HSM.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }

    /// Base64 of the key bytes (for tests and vector files only; never log it).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(self.0.as_slice()))
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for SymmetricKey {}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(REDACTED)")
    }
}

/// `KEY_MASTER_SECRET`: the 16-byte folded ECDH secret shared by server and device.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterSecret(SymmetricKey);

impl MasterSecret {
    /// `REDUCE(ecdh_x)`: folds a 32-byte ECDH x-coordinate (from the HSM or from [`ecdh_x`]).
    pub fn from_ecdh_x(x: &[u8; 32]) -> Self {
        Self(SymmetricKey(reduce(x)))
    }

    /// Computes `REDUCE(ECDH_X(private, public))` locally (software signer, token simulator, tests).
    pub fn agree(private: &PrivateKey, public: &PublicKey) -> Self {
        Self::from_ecdh_x(&ecdh_x(private, public))
    }

    /// Wraps a known master secret (vector files).
    pub fn from_key(key: SymmetricKey) -> Self {
        Self(key)
    }

    /// The master secret as a key.
    pub fn as_key(&self) -> &SymmetricKey {
        &self.0
    }

    /// Derives the five named keys of §6.3.
    pub fn derive(&self) -> DerivedKeys {
        DerivedKeys {
            possession: kdf(&self.0, INDEX_POSSESSION),
            knowledge: kdf(&self.0, INDEX_KNOWLEDGE),
            biometry: kdf(&self.0, INDEX_BIOMETRY),
            transport: kdf(&self.0, INDEX_TRANSPORT),
            vault: kdf(&self.0, INDEX_VAULT),
        }
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(REDACTED)")
    }
}

/// The keys derived from [`MasterSecret`] by [`kdf`] (indices 1, 2, 3, 1000, 2000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedKeys {
    /// `KEY_SIGNATURE_POSSESSION = KDF(MS, 1)`.
    pub possession: SymmetricKey,
    /// `KEY_SIGNATURE_KNOWLEDGE = KDF(MS, 2)`.
    pub knowledge: SymmetricKey,
    /// `KEY_SIGNATURE_BIOMETRY = KDF(MS, 3)`.
    pub biometry: SymmetricKey,
    /// `KEY_TRANSPORT = KDF(MS, 1000)`.
    pub transport: SymmetricKey,
    /// `KEY_ENCRYPTION_VAULT = KDF(MS, 2000)`.
    pub vault: SymmetricKey,
}

/// `ECDH_X(private, public)`: the x-coordinate of `private·public`, 32 bytes big-endian, left-padded.
pub fn ecdh_x(private: &PrivateKey, public: &PublicKey) -> Zeroizing<[u8; 32]> {
    let shared = p256::ecdh::diffie_hellman(
        private.as_p256().to_nonzero_scalar(),
        public.as_p256().as_affine(),
    );
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(shared.raw_secret_bytes());
    out
}

/// `REDUCE(b)`: `out[i] = b[i] XOR b[i+16]` for i = 0..15 (`convert32Bto16B`).
pub fn reduce(bytes: &[u8; 32]) -> Zeroizing<[u8; 16]> {
    let mut out = Zeroizing::new([0u8; 16]);
    for (i, o) in out.iter_mut().enumerate() {
        *o = bytes[i] ^ bytes[i + 16];
    }
    out
}

/// `KDF(key, index)`: AES-128 encryption under `key` of the block `0x00×8 ‖ BE64(index)`.
pub fn kdf(key: &SymmetricKey, index: u64) -> SymmetricKey {
    let cipher = aes::Aes128::new(key.expose().into());
    let mut block = aes::Block::default();
    block[8..].copy_from_slice(&index.to_be_bytes());
    cipher.encrypt_block(&mut block);
    let mut out = [0u8; 16];
    out.copy_from_slice(&block);
    block.fill(0);
    SymmetricKey::from_bytes(out)
}

/// `KDF_INTERNAL(key, message) = REDUCE(HMAC-SHA256(key = key, msg = message))`.
pub fn kdf_internal(key: &SymmetricKey, message: &[u8]) -> SymmetricKey {
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key.expose())
        .expect("HMAC accepts keys of any length");
    mac.update(message);
    let digest = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    SymmetricKey(reduce(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_master_secret_and_keys() {
        let server =
            PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
        let device = PublicKey::from_base64(
            "BH/XZpylbWzTHS9LWR7ckCfHPPOG0MrsP9C2hmXXgQYpzmKSP4w0SpZz5227RKpEGkIq3Jew6p3KxrbUGDTC+nU=",
        )
        .unwrap();
        let ms = MasterSecret::agree(&server, &device);
        assert_eq!(ms.as_key().to_base64().as_str(), "3dgzZJ/h4QsBXia/PIaRsQ==");
        let keys = ms.derive();
        assert_eq!(
            keys.possession.to_base64().as_str(),
            "UUOQH89Hoa/Nw7ew5rGTPw=="
        );
        assert_eq!(
            keys.knowledge.to_base64().as_str(),
            "hjHWTy3HA3nQdDcdnJbRMw=="
        );
        assert_eq!(
            keys.biometry.to_base64().as_str(),
            "S9fNvGUhUafp18upFWzCoA=="
        );
        assert_eq!(
            keys.transport.to_base64().as_str(),
            "5mRJ2b9PS9heFpVuyzYYYA=="
        );
    }

    #[test]
    fn reduce_folds_halves() {
        let mut b = [0u8; 32];
        b[0] = 0xF0;
        b[16] = 0x0F;
        b[15] = 1;
        assert_eq!(reduce(&b)[0], 0xFF);
        assert_eq!(reduce(&b)[15], 1);
    }

    #[test]
    fn symmetric_key_checks_length_and_redacts() {
        assert_eq!(
            SymmetricKey::from_slice(&[0; 15]),
            Err(CryptoError::InvalidSymmetricKey(15))
        );
        let key = SymmetricKey::from_bytes([9; 16]);
        assert_eq!(format!("{key:?}"), "SymmetricKey(REDACTED)");
        assert_ne!(kdf(&key, 1), kdf(&key, 2));
        assert_ne!(kdf_internal(&key, b"a"), kdf_internal(&key, b"b"));
    }
}
