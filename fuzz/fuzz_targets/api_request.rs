//! The JSON body of every API request (`src/http/wire.rs` types inside `{"requestObject": …}`) and the
//! service's checks of the fields before any look-up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| offline_signer::fuzzing::api_request(data));
