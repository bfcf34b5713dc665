//! Micro-benchmarks of the pure PowerAuth code (issue 7), run by `scripts/bench.sh` with short
//! measurement times; `offline-token bench run --criterion DIR` reads their estimates back into
//! `result.json` (`micro`).
//!
//! - `code_2_factors`: one decimal code of possession + knowledge (8 digits per component).
//! - `window_worst_case`: the verify-side scan that finds nothing, over the whole window: lookahead
//!   20 × 2 allowed types × 2 proximity candidates (TOTP steps).
//! - `offline_data_build`: the `offlineData` text around a given signature (the HSM signs).
//! - `offline_data_parse`: parsing a payload (what the phone does before checking it).
//! - `offline_data_verify`: parsing and checking its ECDSA signature on the host (the phone's work).
#![allow(clippy::unwrap_used)] // benchmark set-up: a panic is the failure report

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use offline_signer_crypto::offline_data::DEFAULT_URI_ID;
use offline_signer_crypto::signature::decimal_signature;
use offline_signer_crypto::{
    ComponentLength, CounterData, FactorKeys, KeyIndicator, MasterSecret, OfflineData, PrivateKey,
    RequestData, SignatureType, SymmetricKey, UnsignedOfflineData, WindowSearch, ecdsa,
};

const DATA: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425\nB";
const NONCE: &str = "AD8bOO0Df73kNaIGb3Vmpg==";

fn keys() -> FactorKeys {
    FactorKeys::from_master_secret(&MasterSecret::from_key(SymmetricKey::from_bytes([7; 16])))
}

fn request() -> RequestData {
    RequestData::for_operation(
        DEFAULT_URI_ID,
        NONCE,
        "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6",
        "A1*A100CZK*ICZ2730300000001165254011*D20180425",
        None,
    )
}

fn code(c: &mut Criterion) {
    let keys = keys();
    let counter = CounterData::from_bytes([9; 16]);
    let data = request().to_data_to_sign();
    c.bench_function("code_2_factors", |b| {
        b.iter(|| {
            decimal_signature(
                black_box(&keys),
                SignatureType::PossessionKnowledge,
                black_box(&counter),
                black_box(data.as_bytes()),
                ComponentLength::DEFAULT,
            )
        })
    });
}

fn window(c: &mut Criterion) {
    let keys = keys();
    let counter = CounterData::from_bytes([9; 16]);
    // Two proximity candidates (current and previous TOTP step), as a verify with stepCount 1 has.
    let seed = [0x42_u8; 32];
    let candidates = request()
        .proximity_candidates(&seed, 1_700_000_000, 30, 1, 8)
        .unwrap();
    assert_eq!(candidates.len(), 2);
    let types = [
        SignatureType::PossessionKnowledge,
        SignatureType::PossessionBiometry,
    ];
    // Two 8-digit components that no position produces (checked below, once).
    let search = WindowSearch {
        keys: &keys,
        counter,
        allowed_types: &types,
        candidates: &candidates,
        lookahead: 20,
        component_length: ComponentLength::DEFAULT,
        code: "00000000-00000000",
    };
    assert!(search.find().is_none(), "the benchmark code must not match");
    c.bench_function("window_worst_case", |b| {
        b.iter(|| black_box(&search).find())
    });
}

fn offline_data(c: &mut Criterion) {
    let key = PrivateKey::from_scalar_bytes(&[5; 32]).unwrap();
    let unsigned = UnsignedOfflineData::new(DATA, None, NONCE, KeyIndicator::Master);
    let signature = ecdsa::sign(&key, unsigned.signed_bytes());
    let text = unsigned.finish(&signature);
    c.bench_function("offline_data_build", |b| {
        b.iter(|| {
            UnsignedOfflineData::new(
                black_box(DATA),
                None,
                black_box(NONCE),
                KeyIndicator::Master,
            )
            .finish(black_box(&signature))
        })
    });
    c.bench_function("offline_data_parse", |b| {
        b.iter(|| OfflineData::parse(black_box(&text)).unwrap())
    });
    let public = key.public_key();
    c.bench_function("offline_data_verify", |b| {
        b.iter(|| {
            OfflineData::parse(black_box(&text))
                .unwrap()
                .verify(&public)
                .unwrap()
        })
    });
}

criterion_group!(benches, code, window, offline_data);
criterion_main!(benches);
