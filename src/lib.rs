//! offline-signer: PowerAuth-compatible offline signatures with keys in a PKCS#11 HSM.
//!
//! Codemap (see `ARCHITECTURE.md` for the invariants and the reasons behind them):
//! - [`model`]    the shared vocabulary: key ids, wrapped keys, sealed secrets, timestamps, statuses.
//! - [`crypto`]   pure PowerAuth math and formats (the `offline-signer-crypto` crate, re-exported).
//! - [`signer`]   the signer traits; `signer/pkcs11*` (the only user of cryptoki) and `signer/software.rs`.
//! - [`store`]    the only module that knows sled: versioned records, the audit chain.
//! - [`service`]  the use cases: applications, activations, payloads, verification, nonce registry,
//!   integration credentials. The only module that combines signer, store and crypto.
//! - [`http`]     the axum router of `spec/api.md`: wire types, envelope, errors, auth (only user of axum).
//! - [`app`]      the one composition root: configuration → signer → store → service.
//! - [`server`]   serving until SIGTERM/SIGINT; the admin commands built on [`app`].
//! - [`config`]   the TOML configuration, raw then validated; composes each layer's settings.
//! - [`selftest`] runs upstream-format test-vector files against [`crypto`] (the `selftest` command).
//! - [`bench`]    the HSM and store ceilings of the benchmark (`offline-signer bench ceilings|info`).
//!
//! Dependencies point inward: `server → http → service → {signer, store} → model → crypto`.

pub use offline_signer_crypto as crypto;

pub mod app;
pub mod bench;
pub mod config;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod model;
pub mod selftest;
pub mod server;
pub mod service;
pub mod signer;
pub mod store;
pub mod tls;
