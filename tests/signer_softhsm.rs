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

/// No object search on the hot path: once a worker session has found the master key and the DEK,
/// 1,000 signs and 1,000 decryptions make no further `C_FindObjects` (SoftHSM re-reads every token
/// object file on each search).
#[test]
fn softhsm_hot_path_makes_no_object_search() {
    use offline_signer::signer::pkcs11::{key_handle_cache_hits, object_searches};
    use offline_signer::signer::{KeyRef, Signer};
    with_token(
        "softhsm_hot_path_makes_no_object_search",
        "handles",
        |token| {
            runtime().block_on(async {
                let mut cfg = token.config();
                // One worker: every call lands on the session whose cache the warm-up filled.
                cfg.pool_size = std::num::NonZeroUsize::new(1).expect("one");
                let s = Pkcs11Signer::open(&cfg).await.expect("open the signer");
                let master = s.generate_master_key().await.unwrap();
                let ids = s.ensure_storage_keys(None).await.unwrap();
                let sealed = s.encrypt_secret(&ids.dek, b"aad", &[7; 48]).await.unwrap();
                s.sign_digest(KeyRef::Token(&master.id), &[1; 32])
                    .await
                    .unwrap();
                s.decrypt_secret(&ids.dek, b"aad", &sealed).await.unwrap();
                let searches = object_searches();
                let hits = key_handle_cache_hits();
                for i in 0..1000u32 {
                    let digest = [(i % 251) as u8; 32];
                    s.sign_digest(KeyRef::Token(&master.id), &digest)
                        .await
                        .unwrap();
                    let plain = s.decrypt_secret(&ids.dek, b"aad", &sealed).await.unwrap();
                    assert_eq!(plain.expose(), &[7; 48][..]);
                }
                assert_eq!(
                    object_searches(),
                    searches,
                    "the hot path searched for objects"
                );
                // Every one of those look-ups was answered by the cache (and counted as such).
                assert_eq!(key_handle_cache_hits() - hits, 2000);
                s.shutdown().await;
            })
        },
    );
}

/// SoftHSM keeps one object list per process and reads the token folder again only when the
/// token's generation moved since it last looked; a process that itself changes the token takes the
/// new generation as seen, so a key another process made just before stays invisible to it. Two
/// instances starting at once, or creating applications at once, meet exactly this. A key the
/// caller names by id and the signer does not find makes it read the token again, once.
#[test]
fn a_key_another_process_made_is_found_after_this_process_changed_the_token() {
    run(
        "a_key_another_process_made_is_found_after_this_process_changed_the_token",
        async |s, token| {
            use offline_signer::model::KeyId;
            use offline_signer::signer::{KeyRef, Signer, master_label};
            // The signer has read the token's object list.
            s.ensure_storage_keys(None).await.unwrap();
            // Another process makes an application master key.
            let theirs = KeyId::generate();
            softhsm::pkcs11_tool(
                token,
                &[
                    "--keypairgen",
                    "--key-type",
                    "EC:prime256v1",
                    "--usage-sign",
                    "--label",
                    &master_label(&theirs),
                    "--id",
                    &theirs.to_string(),
                ],
            );
            // This process changes the token before it looks again.
            s.generate_master_key().await.unwrap();
            s.sign_digest(KeyRef::Token(&theirs), &[7; 32])
                .await
                .expect("the other process's key is found");
        },
    );
}
