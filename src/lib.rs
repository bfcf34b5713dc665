//! offline-signer: PowerAuth-compatible offline signatures with keys in a PKCS#11 HSM.
//!
//! Codemap (see `ARCHITECTURE.md` for the invariants):
//! - [`crypto`]   pure PowerAuth math and formats: keys, ECDH fold, KDF, counter, codes, `offlineData`, TOTP.
//! - [`selftest`] runs upstream-format test-vector files against [`crypto`] (the `selftest` command).
//! - [`signer`]   the signer trait; `signer/pkcs11.rs` (the only user of cryptoki) and `signer/software.rs`.
//! - [`store`]    the only module that knows sled: versioned records, the audit chain.
//! - [`config`]   the TOML configuration, raw then validated.
//! - [`token`]    the mobile-token simulator and the REST client (`token activate|sign|status`).
//! - [`qr`]       QR codes of `offlineData` for the terminal, PNG and SVG (`qr`).
//!
//! Dependencies point inward: `service → {signer, store} → crypto`.

pub mod config;
pub mod crypto;
pub mod qr;
pub mod selftest;
pub mod service;
pub mod signer;
pub mod store;
pub mod token;
