//! The `Authorization: Basic …` header parser of the HTTP layer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| offline_signer::fuzzing::basic_auth(data));
