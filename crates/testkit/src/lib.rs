//! Test helpers shared by offline-signer's integration tests (a dev-only crate: nothing the service
//! ships depends on it).
//!
//! - [`softhsm`]: a throwaway SoftHSM token per test, in a child process with its own `SOFTHSM2_CONF`.
//! - [`conformance`]: the signer conformance scenarios, run against every signer.
//! - [`service_harness`], [`service_suite`]: the service scenarios, written once, run against every
//!   signer through [`service_scenarios!`].
//! - [`e2e_server`]: the real server binary on a SoftHSM token, for end-to-end tests.
//! - [`http_harness`]: the in-process router with a software token on the phone side.
//! - [`scan`]: searching a folder for secret bytes in every encoding.
//! - [`store_backends`], [`store_fixtures`], [`postgres`]: the store scenarios, written once, run
//!   against sled and PostgreSQL through [`store_scenarios!`]; a throwaway PostgreSQL per test run.
//! - [`vectors`]: an upstream vector file through the selftest checker, its case count checked.
//! - [`required`]: the one rule for tools a test needs (SoftHSM, `pkcs11-tool`, the vector folder):
//!   missing means failed, unless `OFFLINE_SIGNER_ALLOW_MISSING=1` says otherwise.
// Test helpers, not an API: a panic is the failure report, and the documentation of a helper is the
// module that holds it and the tests that call it. The product crates keep every one of these lints.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::missing_errors_doc,
    clippy::missing_panics_doc
)]

pub mod conformance;
pub mod e2e_server;
pub mod http_harness;
pub mod postgres;
pub mod required;
pub mod scan;
pub mod service_harness;
pub mod service_suite;
pub mod softhsm;
pub mod store_backends;
pub mod store_fixtures;
pub mod vectors;

/// A tokio runtime for a test body: two workers, as many as the machines the suite runs on have
/// cores, so that a test sees the scheduling the service sees.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
