//! The activation status blob as the phone reads it: decryption with a fixed transport key and
//! challenge, then the SDK's checks of the plain 32 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offline_signer_crypto::SymmetricKey;
use offline_signer_crypto::status_blob::{self, StatusBlob};

fuzz_target!(|data: &[u8]| {
    let _ = StatusBlob::parse(data);
    if let Ok(encrypted) = <&[u8; 32]>::try_from(data) {
        let key = SymmetricKey::from_bytes([9; 16]);
        let _ = status_blob::decrypt(&key, &[1; 16], &[2; 16], encrypted);
    }
});
