//! The SDK's HS256 JWT of `keystore/create` (`RequestJwt::parse`, then the MAC check with a fixed
//! key) and the server's ES256 answer as the phone checks it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offline_signer_crypto::temporary_key::{RequestJwt, verify_response};
use offline_signer_crypto::{PrivateKey, SymmetricKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(jwt) = RequestJwt::parse(text) {
        let _ = jwt.verify(&SymmetricKey::from_bytes([4; 16]));
    }
    if let Ok(key) = PrivateKey::from_scalar_bytes(&[6; 32]) {
        let _ = verify_response(
            text,
            &key.public_key(),
            "app-key",
            Some("activation"),
            "challenge",
        );
    }
});
