//! The stored-record decoders (`src/store/codec.rs`) and the model's byte encodings: what a damaged or
//! foreign database hands back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| offline_signer::fuzzing::store_records(data));
