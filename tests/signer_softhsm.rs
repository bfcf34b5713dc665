//! The conformance suite against a real SoftHSM token, plus PKCS#11-only checks. Each test makes
//! its own token and runs in a child process (see `common/softhsm.rs`).

use offline_signer_testkit::conformance;
use offline_signer_testkit::softhsm;

use offline_signer::signer::pkcs11::{Pkcs11Signer, temporary_objects_alive};
use softhsm::{TestToken, runtime, with_token};

fn run<F>(name: &str, body: F)
where
    F: AsyncFnOnce(&Pkcs11Signer, &TestToken),
{
    with_token(name, "conformance", |token| {
        runtime().block_on(async {
            let signer = Pkcs11Signer::open(&token.config())
                .await
                .expect("open the signer");
            body(&signer, &token).await;
            offline_signer::signer::Signer::shutdown(&signer).await;
        })
    });
}

#[test]
fn softhsm_token_key_signs_and_verifies() {
    run("softhsm_token_key_signs_and_verifies", async |s, _| {
        conformance::token_key_signs_and_verifies(s).await
    });
}

#[test]
fn softhsm_storage_keys_are_stable() {
    run("softhsm_storage_keys_are_stable", async |s, _| {
        conformance::storage_keys_are_stable(s).await;
    });
}

#[test]
fn softhsm_destroy_key_removes_only_that_key() {
    run("softhsm_destroy_key_removes_only_that_key", async |s, _| {
        conformance::destroy_key_removes_only_that_key(s).await;
    });
}

#[test]
fn softhsm_wrapped_key_signs_and_verifies() {
    run("softhsm_wrapped_key_signs_and_verifies", async |s, _| {
        conformance::wrapped_key_signs_and_verifies(s).await
    });
}

#[test]
fn softhsm_ecdh_matches_host() {
    run("softhsm_ecdh_matches_host", async |s, _| {
        conformance::ecdh_matches_host(s).await
    });
}

#[test]
fn softhsm_sealing_round_trips_and_authenticates() {
    run(
        "softhsm_sealing_round_trips_and_authenticates",
        async |s, _| conformance::sealing_round_trips_and_authenticates(s).await,
    );
}

#[test]
fn softhsm_unwrapped_key_is_never_extractable() {
    run(
        "softhsm_unwrapped_key_is_never_extractable",
        async |s, _| {
            conformance::unwrapped_key_is_never_extractable(s).await;
            // On a real token, also sensitive and honestly not local.
            use offline_signer::signer::Signer;
            let ids = s.ensure_storage_keys(None).await.unwrap();
            let pair = s.generate_wrapped_key_pair(&ids.kek).await.unwrap();
            let attrs = s.unwrapped_key_attributes(&pair.wrapped).await.unwrap();
            assert_eq!(attrs.sensitive, Some(true), "{attrs:?}");
            assert_eq!(attrs.local, Some(false), "{attrs:?}");
            // Nothing is left on the token: no session key pairs, no unwrapped keys.
            let inventory = s.inventory().await.unwrap();
            assert_eq!(
                inventory.objects.len(),
                2,
                "only KEK and DEK: {inventory:?}"
            );
            // Every temporary object (session key pair, unwrapped key, derived secret) was
            // destroyed by its guard.
            let device = offline_signer::model::PublicKey::from_p256(
                p256::SecretKey::random(&mut rand::rngs::OsRng).public_key(),
            );
            s.ecdh(&pair.wrapped, &device).await.unwrap();
            s.sign_digest(
                offline_signer::signer::KeyRef::Wrapped(&pair.wrapped),
                &[3; 32],
            )
            .await
            .unwrap();
            assert_eq!(
                temporary_objects_alive(),
                0,
                "temporary objects left behind"
            );
        },
    );
}

#[test]
fn softhsm_unknown_key_is_not_found() {
    run("softhsm_unknown_key_is_not_found", async |s, _| {
        conformance::unknown_key_is_not_found(s).await
    });
}

#[test]
fn softhsm_concurrent_signatures_verify() {
    run("softhsm_concurrent_signatures_verify", async |s, _| {
        conformance::concurrent_signatures_verify(s).await
    });
}
