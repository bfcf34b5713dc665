//! The conformance suite against the `software-insecure` signer.

use offline_signer_testkit::conformance;

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
async fn software_destroy_key_removes_only_that_key() {
    conformance::destroy_key_removes_only_that_key(&signer()).await;
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

mod laws {
    use super::*;
    use offline_signer::model::{EncryptedSecret, WrappedKey};
    use proptest::prelude::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime builds")
            .block_on(f)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// decrypt ∘ encrypt = id, and any flipped bit of the sealed bytes fails.
        #[test]
        fn sealing_round_trips_and_any_flip_fails(
            plain in proptest::collection::vec(any::<u8>(), 0..80),
            aad in proptest::collection::vec(any::<u8>(), 0..40),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let s = signer();
            block_on(async {
                let ids = s.ensure_storage_keys(None).await.unwrap();
                let sealed = s.encrypt_secret(&ids.dek, &aad, &plain).await.unwrap();
                let opened = s.decrypt_secret(&ids.dek, &aad, &sealed).await.unwrap();
                prop_assert_eq!(opened.expose(), &plain[..]);
                let mut bytes = sealed.as_bytes().to_vec();
                let i = 1 + flip.index(bytes.len() - 1); // the version byte is checked apart
                bytes[i] ^= 1 << bit;
                let tampered = EncryptedSecret::from_bytes(bytes).unwrap();
                prop_assert!(s.decrypt_secret(&ids.dek, &aad, &tampered).await.is_err());
                Ok(())
            })?;
        }

        /// WrappedKey bytes: from_bytes ∘ to_bytes = id.
        #[test]
        fn wrapped_key_bytes_round_trip(kek in any::<[u8; 16]>(), blob in proptest::collection::vec(any::<u8>(), 1..100)) {
            let wk = WrappedKey::new(offline_signer::model::KeyId::from_bytes(kek), blob);
            prop_assert_eq!(WrappedKey::from_bytes(&wk.to_bytes()).unwrap(), wk);
        }
    }
}
