//! Key and signature encodings: SEC1 points, PKCS#11 `CKA_EC_POINT`, Base64 keys, DER and raw ECDSA
//! signatures, Java `BigInteger` private keys, counters, application secrets, signature type names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offline_signer_crypto::application::ApplicationSecret;
use offline_signer_crypto::{CounterData, DerSignature, PrivateKey, PublicKey, SignatureType};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = PublicKey::from_sec1(data) {
        // Re-encoding a valid point and reading it back gives the same point, in both forms.
        let point = key.to_uncompressed();
        let again = |bytes: &[u8]| {
            PublicKey::from_sec1(bytes)
                .ok()
                .map(|k| k.to_uncompressed())
        };
        assert_eq!(again(&point), Some(point));
        assert_eq!(again(&key.to_compressed()), Some(point));
    }
    let _ = PublicKey::from_ec_point(data);
    let _ = DerSignature::from_der(data);
    let _ = DerSignature::from_raw(data);
    let _ = PrivateKey::from_java_bytes(data);
    let _ = CounterData::from_slice(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicKey::from_base64(text);
        let _ = DerSignature::from_base64(text);
        let _ = CounterData::from_base64(text);
        let _ = ApplicationSecret::from_text(text);
        let _ = SignatureType::parse(text);
    }
});
