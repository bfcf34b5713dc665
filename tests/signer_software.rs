//! The conformance suite against the `software-insecure` signer.

#[path = "common/conformance.rs"]
mod conformance;

use offline_signer::signer::Signer;
use offline_signer::signer::software::SoftwareSigner;

fn signer() -> SoftwareSigner {
    SoftwareSigner::new_in_memory()
}

#[tokio::test]
async fn software_token_key_signs_and_verifies() {
    conformance::token_key_signs_and_verifies(&signer()).await;
}

#[tokio::test]
async fn software_storage_keys_are_stable() {
    conformance::storage_keys_are_stable(&signer()).await;
}

#[tokio::test]
async fn software_wrapped_key_signs_and_verifies() {
    conformance::wrapped_key_signs_and_verifies(&signer()).await;
}

#[tokio::test]
async fn software_ecdh_matches_host() {
    conformance::ecdh_matches_host(&signer()).await;
}

#[tokio::test]
async fn software_sealing_round_trips_and_authenticates() {
    conformance::sealing_round_trips_and_authenticates(&signer()).await;
}

#[tokio::test]
async fn software_unwrapped_key_is_never_extractable() {
    conformance::unwrapped_key_is_never_extractable(&signer()).await;
}

#[tokio::test]
async fn software_unknown_key_is_not_found() {
    conformance::unknown_key_is_not_found(&signer()).await;
}

#[tokio::test]
async fn software_concurrent_signatures_verify() {
    conformance::concurrent_signatures_verify(&signer()).await;
}

#[tokio::test]
async fn software_key_report_flags_in_memory_keys() {
    let s = signer();
    s.generate_master_key().await.unwrap();
    s.ensure_storage_keys(None).await.unwrap();
    let report = offline_signer::signer::key_report(&s).await.unwrap();
    // Honest: in-memory keys are not sensitive, so the table is violated (3 secret keys).
    assert_eq!(report.violations(), 3, "{report:#?}");
}
