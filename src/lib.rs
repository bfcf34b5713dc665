//! offline-signer: PowerAuth-compatible offline signatures with keys in a PKCS#11 HSM.
//!
//! Codemap (see `ARCHITECTURE.md` for the invariants):
//! - [`crypto`]   pure PowerAuth math and formats: keys, ECDH fold, KDF, counter, codes, `offlineData`, TOTP.
//! - [`selftest`] runs upstream-format test-vector files against [`crypto`] (the `selftest` command).
//! - [`signer`]   the signer trait; `signer/pkcs11.rs` (the only user of cryptoki) and `signer/software.rs`.
//! - [`store`]    the only module that knows sled: versioned records, the audit chain.
//! - [`service`]  the use cases: applications, activations, payloads, verification, nonce registry.
//! - [`http`]     the axum router of `spec/api.md`: wire types, envelope, errors, auth (only user of axum).
//! - [`server`]   wiring config → signer → store → service → router; graceful shutdown; admin commands.
//! - [`config`]   the TOML configuration, raw then validated.
//! - [`token`]    the mobile-token simulator and the REST client (`token activate|sign|status`).
//! - [`qr`]       QR codes of `offlineData` for the terminal, PNG and SVG (`qr`).
//! - [`bench`]    the benchmark driver and HTTP load generator (`offline-signer bench`).
//!
//! Dependencies point inward: `server → http → service → {signer, store} → crypto`.

pub mod bench;
pub mod config;
pub mod crypto;
pub mod http;
pub mod qr;
pub mod selftest;
pub mod server;
pub mod service;
pub mod signer;
pub mod store;
pub mod token;
