//! The conformance suite (listed once in `offline_signer_testkit::conformance`) against a real SoftHSM
//! token, plus PKCS#11-only checks. Each test makes its own token and runs in a child process (see
//! `offline_signer_testkit::softhsm`).

use offline_signer_testkit::conformance;
use offline_signer_testkit::softhsm;

use offline_signer::signer::pkcs11::{Pkcs11Signer, temporary_objects_alive};
use softhsm::{TestToken, runtime, with_token};

fn run_with(name: &str, body: impl AsyncFnOnce(&dyn offline_signer::signer::Signer)) {
    run(name, async |s, _| body(s).await);
}

offline_signer_testkit::signer_conformance!(run_with);

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
