//! `offlineData` as the phone reads it from a QR code (crypto `OfflineData::parse`), then everything
//! the phone does with a parsed payload: the signature check, the Web Flow fields, the operation text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offline_signer_crypto::offline_data::RequestData;
use offline_signer_crypto::{OfflineData, PrivateKey};
use offline_token::Operation;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RequestData::parse(text);
    let Ok(parsed) = OfflineData::parse(text) else {
        return;
    };
    let key = PrivateKey::from_scalar_bytes(&[7; 32]).map(|k| k.public_key());
    if let Ok(key) = key {
        let _ = parsed.verify(&key);
    }
    let _ = parsed.data_lines();
    if let Some(fields) = parsed.web_flow() {
        let request = fields.request_data("/operation/authorize/offline", parsed.nonce());
        let _ = request.to_data_to_sign();
        let operation = Operation::from_web_flow(&fields);
        let _ = operation.to_string();
    }
});
