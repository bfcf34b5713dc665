//! The activation code and its signature (`spec/powerauth-activation.md` §4.1–§4.3).
//!
//! A code is 10 random bytes `R` followed by `BE16(CRC-16/ARC(R))`: 12 bytes, written as 20
//! Base32 characters (RFC 4648 alphabet `A–Z2–7`, no padding; the last character carries 4 zero
//! bits) in four groups of five joined by `-`, 23 characters in all. The signature shown next to
//! it (QR code, deep link) is DER ECDSA-P256-SHA256 by the newest master key over `ASCII(code)`;
//! the HSM makes it, this module only says which bytes.

use std::fmt;

use super::ecdsa::{self, DerSignature};
use super::keys::PublicKey;
use super::{CryptoError, b64};

/// Number of random bytes in a code.
pub const RANDOM_LEN: usize = 10;
/// Length of the code text, `XXXXX-XXXXX-XXXXX-XXXXX`.
pub const CODE_LEN: usize = 23;
/// Length of the prefix (`XXXXX-XXXXX`) that must be unique within an application (§4.3).
pub const UNIQUE_PREFIX_LEN: usize = 11;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const DASHES: [usize; 3] = [5, 11, 17];

/// CRC-16/ARC: reflected polynomial `0xA001`, initial value 0, no final XOR
/// (`crc16_arc(b"123456789") == 0xBB3D`).
pub fn crc16_arc(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, byte| {
        (0..8).fold(crc ^ u16::from(*byte), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xA001
            } else {
                c >> 1
            }
        })
    })
}

/// A validated activation code (§4.2). It keeps the text as given, so a code whose last character
/// has non-zero unused bits (accepted, as upstream does) compares and signs as written.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ActivationCode(String);

impl ActivationCode {
    /// Builds the code of 10 random bytes (§4.1).
    pub fn from_random_bytes(random: &[u8; RANDOM_LEN]) -> Self {
        let mut bytes = [0u8; 12];
        bytes[..RANDOM_LEN].copy_from_slice(random);
        bytes[RANDOM_LEN..].copy_from_slice(&crc16_arc(random).to_be_bytes());
        let symbols = base32_encode(&bytes);
        let mut text = String::with_capacity(CODE_LEN);
        for (i, symbol) in symbols.iter().enumerate() {
            if i > 0 && i % 5 == 0 {
                text.push('-');
            }
            text.push(char::from(*symbol));
        }
        Self(text)
    }

    /// Draws a fresh code from `rng` (a CSPRNG).
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut random = [0u8; RANDOM_LEN];
        rng.fill_bytes(&mut random);
        Self::from_random_bytes(&random)
    }

    /// Validates `text` (§4.2): 23 characters, dashes at 5, 11, 17, the others in `A–Z2–7` (no
    /// case folding), and the CRC-16 of the first 10 decoded bytes equal to the last two.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let code = Self(text.to_owned());
        code.decode()?;
        Ok(code)
    }

    /// The code text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12 code bytes `R ‖ BE16(CRC)`.
    pub fn code_bytes(&self) -> [u8; 12] {
        self.decode()
            .expect("an ActivationCode is validated when it is made")
    }

    /// `XXXXX-XXXXX`: the part upstream keeps unique per application while generating (§4.3).
    pub fn unique_prefix(&self) -> &str {
        &self.0[..UNIQUE_PREFIX_LEN]
    }

    /// The bytes the activation signature covers: `ASCII(code)`. The signer hashes them with
    /// SHA-256 ([`ActivationCode::signature_digest`] for `CKM_ECDSA`) and the answer is made DER.
    pub fn signed_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// `SHA-256(ASCII(code))`: the digest an HSM signs with `CKM_ECDSA`.
    pub fn signature_digest(&self) -> [u8; 32] {
        ecdsa::message_digest(self.signed_bytes())
    }

    /// Verifies an activation signature with the master public key (as the SDK does).
    pub fn verify_signature(
        &self,
        master_public_key: &PublicKey,
        signature: &DerSignature,
    ) -> Result<(), CryptoError> {
        ecdsa::verify(master_public_key, self.signed_bytes(), signature)
    }

    /// The QR / deep-link payload: `code`, or `code "#" B64(DER signature)`.
    pub fn qr_payload(&self, signature: Option<&DerSignature>) -> String {
        match signature {
            Some(signature) => format!("{}#{}", self.0, signature.to_base64()),
            None => self.0.clone(),
        }
    }

    /// Reads a QR payload back: the code and the signature if present.
    pub fn parse_qr_payload(text: &str) -> Result<(Self, Option<DerSignature>), CryptoError> {
        match text.split_once('#') {
            None => Ok((Self::parse(text)?, None)),
            Some((code, signature)) => Ok((
                Self::parse(code)?,
                Some(DerSignature::from_der(&b64::decode(signature)?)?),
            )),
        }
    }

    fn decode(&self) -> Result<[u8; 12], CryptoError> {
        let text = self.0.as_bytes();
        if text.len() != CODE_LEN {
            return Err(CryptoError::InvalidActivationCode("not 23 characters"));
        }
        let mut symbols = [0u8; 20];
        let mut next = 0;
        for (i, ch) in text.iter().enumerate() {
            if DASHES.contains(&i) {
                if *ch != b'-' {
                    return Err(CryptoError::InvalidActivationCode(
                        "dashes must be at positions 5, 11 and 17",
                    ));
                }
                continue;
            }
            symbols[next] = base32_value(*ch).ok_or(CryptoError::InvalidActivationCode(
                "a character outside A-Z and 2-7",
            ))?;
            next += 1;
        }
        let bytes = base32_decode(&symbols);
        let crc = u16::from_be_bytes([bytes[10], bytes[11]]);
        if crc16_arc(&bytes[..RANDOM_LEN]) != crc {
            return Err(CryptoError::InvalidActivationCode("CRC-16 mismatch"));
        }
        Ok(bytes)
    }
}

impl fmt::Debug for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ActivationCode").field(&self.0).finish()
    }
}

impl fmt::Display for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 12 bytes (96 bits) → 20 symbols (100 bits, the last 4 zero).
fn base32_encode(bytes: &[u8; 12]) -> [u8; 20] {
    let mut out = [0u8; 20];
    let mut buffer = 0u32;
    let mut bits = 0;
    let mut next = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out[next] = ALPHABET[((buffer >> bits) & 31) as usize];
            next += 1;
        }
    }
    out[next] = ALPHABET[((buffer << (5 - bits)) & 31) as usize];
    out
}

fn base32_value(symbol: u8) -> Option<u8> {
    match symbol {
        b'A'..=b'Z' => Some(symbol - b'A'),
        b'2'..=b'7' => Some(symbol - b'2' + 26),
        _ => None,
    }
}

/// 20 symbol values → 12 bytes; the last 4 bits are ignored, as upstream does.
fn base32_decode(symbols: &[u8; 20]) -> [u8; 12] {
    let mut out = [0u8; 12];
    let mut buffer = 0u32;
    let mut bits = 0;
    let mut next = 0;
    for value in symbols {
        buffer = (buffer << 5) | u32::from(*value);
        bits += 5;
        if bits >= 8 && next < out.len() {
            bits -= 8;
            out[next] = (buffer >> bits) as u8;
            next += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;
    use proptest::prelude::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
        assert_eq!(crc16_arc(&[0xff; 10]), 0x8331);
        assert_eq!(crc16_arc(&[]), 0);
    }

    #[test]
    fn known_codes() {
        assert_eq!(
            ActivationCode::from_random_bytes(&[0; 10]).as_str(),
            "AAAAA-AAAAA-AAAAA-AAAAA"
        );
        assert_eq!(
            ActivationCode::from_random_bytes(&[0xff; 10]).as_str(),
            "77777-77777-77777-7QMYQ"
        );
        // Upstream documentation values.
        for text in [
            "LLLLL-LLLLL-LLLLL-LQJTA",
            "W65WE-3T7VI-7FBS2-A4OYA",
            "45AWJ-BVACS-SBWHS-ABANA",
        ] {
            let code = ActivationCode::parse(text).unwrap();
            let random: [u8; 10] = code.code_bytes()[..10].try_into().unwrap();
            assert_eq!(ActivationCode::from_random_bytes(&random), code);
        }
    }

    #[test]
    fn invalid_codes() {
        for (text, why) in [
            ("BAAAA-AAAAA-AAAAA-AAAAA", "CRC-16 mismatch"),
            ("aaaaa-aaaaa-aaaaa-aaaaa", "a character outside A-Z and 2-7"),
            ("AAAAA-AAAAA-AAAAA-AAAA1", "a character outside A-Z and 2-7"),
            (
                "AAAAA_AAAAA-AAAAA-AAAAA",
                "dashes must be at positions 5, 11 and 17",
            ),
            ("AAAAAAAAAAAAAAAAAAAA", "not 23 characters"),
            ("AAAAA-AAAAA-AAAAA-AAAAAA", "not 23 characters"),
            ("AAAAA-AAAAA-AAAAA-AAAAÄ", "not 23 characters"),
        ] {
            assert_eq!(
                ActivationCode::parse(text),
                Err(CryptoError::InvalidActivationCode(why)),
                "{text}"
            );
        }
        // Upstream ignores the 4 unused bits of the last character.
        let lax = ActivationCode::parse("AAAAA-AAAAA-AAAAA-AAAAB").unwrap();
        assert_eq!(lax.code_bytes(), [0; 12]);
        assert_eq!(lax.as_str(), "AAAAA-AAAAA-AAAAA-AAAAB");
    }

    #[test]
    fn signature_and_qr_payload() {
        let master =
            PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
        let code = ActivationCode::generate(&mut rand::thread_rng());
        let signature = ecdsa::sign(&master, code.signed_bytes());
        assert!(
            code.verify_signature(&master.public_key(), &signature)
                .is_ok()
        );
        assert!(
            ecdsa::verify_digest(&master.public_key(), &code.signature_digest(), &signature)
                .is_ok()
        );
        let payload = code.qr_payload(Some(&signature));
        assert_eq!(
            ActivationCode::parse_qr_payload(&payload).unwrap(),
            (code.clone(), Some(signature))
        );
        assert_eq!(
            ActivationCode::parse_qr_payload(code.as_str()).unwrap(),
            (code.clone(), None)
        );
        assert_eq!(code.unique_prefix(), &code.as_str()[..11]);
        let other = ActivationCode::from_random_bytes(&[1; 10]);
        let signature = ecdsa::sign(&master, code.signed_bytes());
        assert_eq!(
            other.verify_signature(&master.public_key(), &signature),
            Err(CryptoError::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn generated_codes_validate_and_decode_to_their_bytes(random in any::<[u8; 10]>()) {
            let code = ActivationCode::from_random_bytes(&random);
            prop_assert_eq!(code.as_str().len(), CODE_LEN);
            let parsed = ActivationCode::parse(code.as_str()).unwrap();
            prop_assert_eq!(&parsed.code_bytes()[..10], &random[..]);
        }

        #[test]
        fn a_changed_character_fails(random in any::<[u8; 10]>(), position in 0usize..19, shift in 1u8..32) {
            let code = ActivationCode::from_random_bytes(&random);
            // Change one of the first 19 symbols (the 20th also holds 4 ignored bits).
            let index = position + position / 5;
            let mut text = code.as_str().as_bytes().to_vec();
            let value = base32_value(text[index]).unwrap();
            text[index] = ALPHABET[usize::from((value + shift) % 32)];
            let text = String::from_utf8(text).unwrap();
            // CRC-16 detects every error burst of at most 16 bits; one symbol is 5 bits.
            prop_assert!(ActivationCode::parse(&text).is_err(), "{}", text);
        }
    }
}
