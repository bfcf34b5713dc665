//! Application credentials (`spec/powerauth-activation.md` §0, §5.1): the application secret and
//! the `mobileSdkConfig` string the SDK 1.9 is configured with.
//!
//! `APP_KEY` and `APP_SECRET` are each **the Base64 text** of 16 random bytes (24 characters). The
//! protocol uses the secret in two spellings: as its text (`ASCII(APP_SECRET)`, in ECIES
//! `sharedInfo2`) and decoded (`B64D(APP_SECRET)`, as the temporary-key JWT key and inside
//! `mobileSdkConfig`). [`ApplicationSecret`] offers both and keeps the text in wiped memory.
//! The application key is not secret and travels as plain `&str`.

use std::fmt;

use zeroize::Zeroizing;

use super::keys::PublicKey;
use super::{CryptoError, b64};

/// Length of the decoded application key and secret.
pub const CREDENTIAL_LEN: usize = 16;

/// `APP_SECRET`: canonical Base64 text of 16 bytes. Wiped on drop; `Debug` prints `REDACTED`.
#[derive(Clone)]
pub struct ApplicationSecret(Zeroizing<String>);

impl ApplicationSecret {
    /// Takes the Base64 text; it must decode (canonical, padded) to exactly 16 bytes.
    pub fn from_text(text: &str) -> Result<Self, CryptoError> {
        let _wiped_on_drop = Zeroizing::new(
            b64::decode_array::<CREDENTIAL_LEN>(text)
                .map_err(|_| CryptoError::InvalidApplicationSecret)?,
        );
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    /// Draws a fresh secret: the Base64 text of 16 bytes from `rng` (a CSPRNG).
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut bytes = Zeroizing::new([0u8; CREDENTIAL_LEN]);
        rng.fill_bytes(bytes.as_mut_slice());
        Self(Zeroizing::new(b64::encode(bytes.as_slice())))
    }

    /// `ASCII(APP_SECRET)`: the text itself. Call it only where it enters a primitive or storage.
    pub fn expose_text(&self) -> &str {
        &self.0
    }

    /// `B64D(APP_SECRET)`: the 16 decoded bytes.
    pub fn decoded(&self) -> Zeroizing<[u8; CREDENTIAL_LEN]> {
        Zeroizing::new(
            b64::decode_array(&self.0)
                .expect("ApplicationSecret holds validated Base64 of 16 bytes"),
        )
    }
}

impl fmt::Debug for ApplicationSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApplicationSecret(REDACTED)")
    }
}

/// Draws a fresh application key: the Base64 text of 16 bytes from `rng` (a CSPRNG).
pub fn generate_application_key(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> String {
    let mut bytes = [0u8; CREDENTIAL_LEN];
    rng.fill_bytes(&mut bytes);
    b64::encode(bytes)
}

/// `mobileSdkConfig` (§5.1): `B64(0x01 ‖ 0x10 ‖ B64D(AK) ‖ 0x10 ‖ B64D(AS) ‖ 0x01 ‖ 0x01 ‖ 0x41 ‖
/// master public key (65 bytes, uncompressed))`, 103 bytes before Base64: format version 1, the
/// length-prefixed key and secret, then one master key with id 1.
///
/// The application key must be the Base64 text of 16 bytes ([`CryptoError::InvalidApplicationKey`]).
pub fn mobile_sdk_config(
    application_key: &str,
    application_secret: &ApplicationSecret,
    master_public_key: &PublicKey,
) -> Result<String, CryptoError> {
    let key = b64::decode_array::<CREDENTIAL_LEN>(application_key)
        .map_err(|_| CryptoError::InvalidApplicationKey)?;
    let secret = application_secret.decoded();
    let public = master_public_key.to_uncompressed();
    let mut out = Zeroizing::new(Vec::with_capacity(103));
    out.push(0x01);
    out.push(CREDENTIAL_LEN as u8);
    out.extend_from_slice(&key);
    out.push(CREDENTIAL_LEN as u8);
    out.extend_from_slice(secret.as_slice());
    out.push(0x01); // one master key
    out.push(0x01); // its id
    out.push(public.len() as u8);
    out.extend_from_slice(&public);
    Ok(b64::encode(out.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_checks_its_text_and_redacts() {
        let secret = ApplicationSecret::from_text("YT5yMrV1XPhS+skTiASlrA==").unwrap();
        assert_eq!(secret.expose_text(), "YT5yMrV1XPhS+skTiASlrA==");
        assert_eq!(secret.decoded()[0], 0x61);
        assert_eq!(format!("{secret:?}"), "ApplicationSecret(REDACTED)");
        for bad in [
            "",
            "YT5yMrV1XPhS+skTiASl",
            "YT5yMrV1XPhS+skTiASlrAAA",
            "not base64!!!!!!!!!!!!==",
        ] {
            assert_eq!(
                ApplicationSecret::from_text(bad).map(|_| ()),
                Err(CryptoError::InvalidApplicationSecret),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_credentials_are_16_bytes() {
        let mut rng = rand::thread_rng();
        let secret = ApplicationSecret::generate(&mut rng);
        assert!(ApplicationSecret::from_text(secret.expose_text()).is_ok());
        assert_eq!(
            b64::decode(&generate_application_key(&mut rng))
                .unwrap()
                .len(),
            16
        );
    }

    /// `spec/powerauth-activation.md` §8.2.
    #[test]
    fn worked_example_mobile_sdk_config() {
        let secret = ApplicationSecret::from_text("YT5yMrV1XPhS+skTiASlrA==").unwrap();
        let master = PublicKey::from_base64(
            "BNJbN+Ji4OQlzn7+jPNb//YWTB48lSVpa0J6EFiq6XOvi1eS/C+DVGZQOx2Th4Or5FREHrnTYwRnFkwb4mMquuU=",
        )
        .unwrap();
        let config = mobile_sdk_config("WC8gRAsMr/tDZndH2GvvZw==", &secret, &master).unwrap();
        assert_eq!(
            config,
            "ARBYLyBECwyv+0Nmd0fYa+9nEGE+cjK1dVz4UvrJE4gEpawBAUEE0ls34mLg5CXOfv6M81v/9hZMHjyVJWlrQnoQWKrpc6+LV5L8L4NUZlA7HZOHg6vkVEQeudNjBGcWTBviYyq65Q=="
        );
        assert_eq!(b64::decode(&config).unwrap().len(), 103);
        assert_eq!(
            mobile_sdk_config("WC8gRAsMr/tDZndH2Gvv", &secret, &master),
            Err(CryptoError::InvalidApplicationKey)
        );
    }
}
