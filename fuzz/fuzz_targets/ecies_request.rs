//! ECIES envelopes as the server receives them: the Base64 wire fields (ephemeral key, data, MAC,
//! nonce, timestamp), the protocol version and `SHARED_INFO_1`, then the MAC check and decryption
//! with a fixed shared secret for every protocol version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offline_signer_crypto::application::ApplicationSecret;
use offline_signer_crypto::ecies::{
    EciesContext, EciesRequest, Encryptor, ProtocolVersion, ServerEncryptor,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\n');
    let mut next = || parts.next().unwrap_or_default();
    let (version, shared_info1, key, encrypted, mac, nonce, timestamp) =
        (next(), next(), next(), next(), next(), next(), next());
    let _ = Encryptor::from_shared_info1(shared_info1);
    let version = ProtocolVersion::parse(version).unwrap_or(ProtocolVersion::V3_3);
    let nonce = (!nonce.is_empty()).then_some(nonce);
    let timestamp = timestamp.parse::<i64>().ok();
    let Ok(request) = EciesRequest::from_base64(key, encrypted, mac, nonce, timestamp) else {
        return;
    };
    let Ok(secret) = ApplicationSecret::from_text("AAAAAAAAAAAAAAAAAAAAAA==") else {
        return;
    };
    let temporary_key = version.has_temporary_key().then_some("key-1");
    let Ok(context) = EciesContext::new(
        version,
        Encryptor::ApplicationScopeGeneric,
        "app-key",
        &secret,
        None,
        temporary_key,
    ) else {
        return;
    };
    let _ = ServerEncryptor::decrypt_request(&context, &[3; 32], &request);
});
