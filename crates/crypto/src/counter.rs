//! The hash-based counter `CTR_DATA` of protocol v3 (`spec/powerauth-offline.md` §6.5).
//!
//! `NEXT(c) = REDUCE(SHA256(c))`, 16 bytes → 16 bytes. The device advances it after every signature
//! it computes; the server only after a successful verification. Counter data is not a secret key.

use std::fmt;

use sha2::Digest as _;

use super::{CryptoError, b64, kdf};

/// 16 bytes of hash-chain counter data (`ctrData`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterData([u8; 16]);

impl CounterData {
    /// Wraps 16 counter bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Takes a slice that must be exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        <[u8; 16]>::try_from(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidCounterData(bytes.len()))
    }

    /// Decodes canonical Base64 of exactly 16 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        Self::from_slice(&b64::decode(text)?)
    }

    /// Protocol v2 counter input: `0x00×8 ‖ BE64(counter)`.
    pub fn from_v2_counter(counter: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[8..].copy_from_slice(&counter.to_be_bytes());
        Self(bytes)
    }

    /// Draws fresh random counter data (the server does this at activation).
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The counter bytes (the `C` of §7.3).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Base64 of the 16 bytes, as stored (`ctr_data`) and sent (`ctrData`).
    pub fn to_base64(&self) -> String {
        b64::encode(self.0)
    }

    /// `NEXT(self) = REDUCE(SHA256(self))`.
    pub fn next(&self) -> Self {
        let digest: [u8; 32] = sha2::Sha256::digest(self.0).into();
        Self(*kdf::reduce(&digest))
    }

    /// `NEXT` applied `steps` times.
    pub fn advance(&self, steps: u32) -> Self {
        (0..steps).fold(*self, |c, _| c.next())
    }
}

impl fmt::Debug for CounterData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CounterData")
            .field(&self.to_base64())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_chain() {
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        let c0 = CounterData::from_bytes(bytes);
        assert_eq!(c0.to_base64(), "AAECAwQFBgcICQoLDA0ODw==");
        assert_eq!(c0.next().to_base64(), "/YNTdqZj00BmQB2s9BJ5bA==");
        assert_eq!(c0.advance(4).to_base64(), "hh+al6CkmfqaEWnM5qlUfQ==");
    }

    #[test]
    fn length_and_v2() {
        assert_eq!(
            CounterData::from_slice(&[0; 17]),
            Err(CryptoError::InvalidCounterData(17))
        );
        assert_eq!(CounterData::from_v2_counter(258).as_bytes()[14..], [1, 2]);
    }
}
