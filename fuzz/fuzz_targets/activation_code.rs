//! Activation codes and their QR payload (`CODE#SIGNATURE`), then the signature check with a fixed key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offline_signer_crypto::PrivateKey;
use offline_signer_crypto::activation_code::ActivationCode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ActivationCode::parse(text);
    if let Ok((code, Some(signature))) = ActivationCode::parse_qr_payload(text) {
        if let Ok(key) = PrivateKey::from_scalar_bytes(&[5; 32]) {
            let _ = code.verify_signature(&key.public_key(), &signature);
        }
    }
});
