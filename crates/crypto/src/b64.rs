//! Canonical Base64 (RFC 4648 standard alphabet, `=` padding), as PowerAuth uses everywhere.
//!
//! Decoding is strict: padding must be present and canonical and the unused trailing bits of the
//! last symbol must be zero, so that every byte string has exactly one accepted text form.
//!
//! JWTs use the other RFC 4648 form, `B64URL`: the URL-safe alphabet without padding
//! ([`encode_url`], [`decode_url`]), decoded just as strictly.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::CryptoError;

const CANONICAL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_allow_trailing_bits(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

const URL_NO_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Encodes `bytes` as padded standard Base64.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    CANONICAL.encode(bytes)
}

/// Decodes canonical padded standard Base64; anything else is [`CryptoError::InvalidBase64`].
pub fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    CANONICAL
        .decode(text)
        .map_err(|_| CryptoError::InvalidBase64)
}

/// Decodes canonical Base64 that must be exactly `N` bytes long.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], CryptoError> {
    let bytes = zeroize::Zeroizing::new(decode(text)?);
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| CryptoError::InvalidBase64)
}

/// Encodes `bytes` as `B64URL`: URL-safe alphabet (`-`, `_`), no padding (JWT parts).
pub fn encode_url(bytes: impl AsRef<[u8]>) -> String {
    URL_NO_PAD.encode(bytes)
}

/// Decodes `B64URL` (URL-safe alphabet, no padding, no stray bits); anything else, including
/// padded or standard-alphabet text, is [`CryptoError::InvalidBase64`].
pub fn decode_url(text: &str) -> Result<Vec<u8>, CryptoError> {
    URL_NO_PAD
        .decode(text)
        .map_err(|_| CryptoError::InvalidBase64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(decode("YWI=").unwrap(), b"ab");
        assert_eq!(decode("").unwrap(), b"");
    }

    #[test]
    fn rejects_non_canonical() {
        assert_eq!(
            decode("YWI"),
            Err(CryptoError::InvalidBase64),
            "missing padding"
        );
        assert_eq!(
            decode("YWJ="),
            Err(CryptoError::InvalidBase64),
            "trailing bits"
        );
        assert_eq!(decode("YW I="), Err(CryptoError::InvalidBase64), "space");
        assert_eq!(decode("YWI=\n"), Err(CryptoError::InvalidBase64), "newline");
        assert_eq!(
            decode("YQ==="),
            Err(CryptoError::InvalidBase64),
            "extra pad"
        );
        assert_eq!(
            decode("YW-="),
            Err(CryptoError::InvalidBase64),
            "url alphabet"
        );
    }

    #[test]
    fn decode_array_checks_length() {
        assert_eq!(decode_array::<2>("YWI=").unwrap(), *b"ab");
        assert!(decode_array::<3>("YWI=").is_err());
    }

    #[test]
    fn url_form_has_no_padding_and_url_alphabet() {
        assert_eq!(encode_url([0xfb, 0xff]), "-_8");
        assert_eq!(decode_url("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(
            decode_url("-_8="),
            Err(CryptoError::InvalidBase64),
            "padding"
        );
        assert_eq!(
            decode_url("+/8"),
            Err(CryptoError::InvalidBase64),
            "standard alphabet"
        );
        assert_eq!(
            decode_url("-_9"),
            Err(CryptoError::InvalidBase64),
            "trailing bits"
        );
    }
}
