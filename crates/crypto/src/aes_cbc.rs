//! AES-128-CBC as PowerAuth uses it: with PKCS#7 padding for ECIES payloads, without padding for
//! the 32-byte status blob. Crate-internal; the callers own the key and IV rules.

use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockDecryptMut as _, BlockEncryptMut as _, KeyIvInit as _};
use zeroize::Zeroizing;

use super::CryptoError;
use super::kdf::SymmetricKey;

type CbcEncryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;

/// AES-128-CBC-PKCS#7 encryption; an empty plaintext gives one 16-byte block.
pub(crate) fn encrypt_pkcs7(key: &SymmetricKey, iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    CbcEncryptor::new(key.expose().into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

/// AES-128-CBC-PKCS#7 decryption. A ciphertext that is empty, not block-aligned, or whose padding
/// is broken is [`CryptoError::EciesDecryptionFailed`] (callers check the MAC first).
pub(crate) fn decrypt_pkcs7(
    key: &SymmetricKey,
    iv: &[u8; 16],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    Decryptor::new(key.expose().into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::EciesDecryptionFailed)
}

/// AES-128-CBC without padding over exactly two blocks.
pub(crate) fn encrypt_32(key: &SymmetricKey, iv: &[u8; 16], plaintext: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    CbcEncryptor::new(key.expose().into(), iv.into())
        .encrypt_padded_b2b_mut::<NoPadding>(plaintext, &mut out)
        .expect("32 bytes are two whole AES blocks and the output buffer is 32 bytes");
    out
}

/// AES-128-CBC decryption without padding over exactly two blocks.
pub(crate) fn decrypt_32(key: &SymmetricKey, iv: &[u8; 16], ciphertext: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Decryptor::new(key.expose().into(), iv.into())
        .decrypt_padded_b2b_mut::<NoPadding>(ciphertext, &mut out)
        .expect("32 bytes are two whole AES blocks and the output buffer is 32 bytes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt), first two blocks.
    #[test]
    fn nist_cbc_vector() {
        let key =
            SymmetricKey::from_slice(&hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap())
                .unwrap();
        let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
            .unwrap()
            .try_into()
            .unwrap();
        let pt: [u8; 32] =
            hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
                .unwrap()
                .try_into()
                .unwrap();
        let ct = encrypt_32(&key, &iv, &pt);
        assert_eq!(
            hex::encode(ct),
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
        );
        assert_eq!(decrypt_32(&key, &iv, &ct), pt);
        // PKCS#7 adds a full block to aligned input; the first blocks are the same.
        let padded = encrypt_pkcs7(&key, &iv, &pt);
        assert_eq!(padded.len(), 48);
        assert_eq!(padded[..32], ct);
        assert_eq!(decrypt_pkcs7(&key, &iv, &padded).unwrap().as_slice(), pt);
    }

    #[test]
    fn bad_padding_and_lengths_fail() {
        let key = SymmetricKey::from_bytes([7; 16]);
        let iv = [1; 16];
        assert_eq!(encrypt_pkcs7(&key, &iv, b"").len(), 16);
        let mut ct = encrypt_pkcs7(&key, &iv, b"hello");
        assert!(decrypt_pkcs7(&key, &iv, &ct[..15]).is_err());
        assert!(decrypt_pkcs7(&key, &iv, &[]).is_err());
        // A ciphertext that is not a whole number of blocks.
        ct.insert(0, 0);
        assert!(decrypt_pkcs7(&key, &iv, &ct).is_err());
        // A last block whose padding byte is 0 is never valid PKCS#7: find such an IV.
        let one_block = encrypt_pkcs7(&key, &iv, b"0123456789");
        let mut bad_iv = iv;
        bad_iv[15] ^= 0x06; // the padding byte 0x06 becomes 0x00
        assert!(decrypt_pkcs7(&key, &bad_iv, &one_block).is_err());
    }
}
