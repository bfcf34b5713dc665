//! The signer conformance suite: one body per property, listed once in [`signer_conformance!`] and
//! run against every implementation (`tests/signer_software.rs`, `tests/signer_softhsm.rs`).

use offline_signer::model::{EncryptedSecret, KeyId, PublicKey, WrappedKey};
use offline_signer::signer::{KeyRef, Signer, SignerError, StorageKeyIds};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::{Digest, Sha256};

fn digest(msg: &[u8]) -> [u8; 32] {
    Sha256::digest(msg).into()
}

fn verify(public: &PublicKey, digest: &[u8; 32], der: &[u8]) {
    let key = p256::ecdsa::VerifyingKey::from(public.as_p256());
    let sig = p256::ecdsa::Signature::from_der(der).expect("signature is valid DER");
    key.verify_prehash(digest, &sig)
        .expect("signature verifies with p256");
}

/// Token key: sign → verify with p256; public key read back equals the generated one; a digest
/// of the wrong length is refused.
pub async fn token_key_signs_and_verifies(s: &dyn Signer) {
    let master = s.generate_master_key().await.expect("generate master key");
    assert_eq!(
        s.public_key(&master.id).await.expect("read public key"),
        master.public_key
    );
    for msg in [&b"payload one"[..], b"payload two", b""] {
        let d = digest(msg);
        let sig = s
            .sign_digest(KeyRef::Token(&master.id), &d)
            .await
            .expect("sign");
        verify(&master.public_key, &d, sig.as_bytes());
    }
    // A signature over one digest does not verify over another.
    let sig = s
        .sign_digest(KeyRef::Token(&master.id), &digest(b"a"))
        .await
        .expect("sign");
    let key = p256::ecdsa::VerifyingKey::from(master.public_key.as_p256());
    let parsed = p256::ecdsa::Signature::from_der(sig.as_bytes()).expect("DER");
    assert!(key.verify_prehash(&digest(b"b"), &parsed).is_err());
    for bad in [&[0u8; 31][..], &[0u8; 33], &[]] {
        assert!(matches!(
            s.sign_digest(KeyRef::Token(&master.id), bad).await,
            Err(SignerError::InvalidInput(_))
        ));
    }
    // Two master keys are distinct.
    let other = s.generate_master_key().await.expect("second master key");
    assert_ne!(other.id, master.id);
    assert_ne!(other.public_key, master.public_key);
}

/// Storage keys: created once, found again by recorded id and by label.
pub async fn storage_keys_are_stable(s: &dyn Signer) -> StorageKeyIds {
    let ids = s
        .ensure_storage_keys(None)
        .await
        .expect("create storage keys");
    assert_ne!(ids.kek, ids.dek);
    assert_eq!(
        s.ensure_storage_keys(None).await.expect("find by label"),
        ids
    );
    assert_eq!(
        s.ensure_storage_keys(Some(ids)).await.expect("find by id"),
        ids
    );
    ids
}

/// Audit key: created once, found again by label and by recorded id, signs digests that verify
/// with its public key, is not a master key, and `destroy_key` removes it.
pub async fn audit_key_signs_and_is_stable(s: &dyn Signer) {
    let made = s
        .ensure_audit_key(None)
        .await
        .expect("create the audit key");
    let by_label = s.ensure_audit_key(None).await.expect("find by label");
    assert_eq!(by_label, made);
    let by_id = s.ensure_audit_key(Some(made.id)).await.expect("find by id");
    assert_eq!(by_id, made);
    for msg in [&b"checkpoint one"[..], b"checkpoint two"] {
        let d = digest(msg);
        let sig = s
            .sign_digest(KeyRef::Audit(&made.id), &d)
            .await
            .expect("sign with the audit key");
        verify(&made.public_key, &d, sig.as_bytes());
    }
    assert!(matches!(
        s.sign_digest(KeyRef::Audit(&made.id), &[0u8; 31]).await,
        Err(SignerError::InvalidInput(_))
    ));
    assert!(
        s.public_key(&made.id).await.is_err(),
        "the audit key is not a master key"
    );
    assert!(matches!(
        s.ensure_audit_key(Some(KeyId::generate())).await,
        Err(SignerError::KeyNotFound { .. })
    ));
    assert!(
        s.destroy_key(&made.id)
            .await
            .expect("destroy the audit key")
    );
    assert!(s.ensure_audit_key(Some(made.id)).await.is_err(), "gone");
}

/// `destroy_key` removes exactly the named key (a master key pair, a storage key), and says whether
/// it found one.
pub async fn destroy_key_removes_only_that_key(s: &dyn Signer) {
    let ids = s.ensure_storage_keys(None).await.expect("storage keys");
    let master = s.generate_master_key().await.expect("master key");
    let other = s.generate_master_key().await.expect("another master key");
    assert!(s.destroy_key(&master.id).await.expect("destroy"));
    assert!(s.public_key(&master.id).await.is_err(), "the key is gone");
    assert!(!s.destroy_key(&master.id).await.expect("destroy again"));
    assert!(!s.destroy_key(&KeyId::generate()).await.expect("unknown id"));
    assert_eq!(
        s.public_key(&other.id).await.expect("untouched"),
        other.public_key
    );
    assert_eq!(
        s.ensure_storage_keys(Some(ids)).await.expect("untouched"),
        ids
    );
    assert!(s.destroy_key(&ids.dek).await.expect("destroy the DEK"));
    assert!(
        s.ensure_storage_keys(Some(ids)).await.is_err(),
        "the DEK is gone"
    );
}

/// Wrapped key: generate → (store bytes) → unwrap → sign → verify, twice.
pub async fn wrapped_key_signs_and_verifies(s: &dyn Signer) {
    let ids = s.ensure_storage_keys(None).await.expect("storage keys");
    let pair = s
        .generate_wrapped_key_pair(&ids.kek)
        .await
        .expect("generate wrapped pair");
    assert_eq!(pair.wrapped.kek(), &ids.kek);
    let stored = pair.wrapped.to_bytes();
    let restored = WrappedKey::from_bytes(&stored).expect("parse stored wrapped key");
    for msg in [&b"first"[..], b"second"] {
        let d = digest(msg);
        let sig = s
            .sign_digest(KeyRef::Wrapped(&restored), &d)
            .await
            .expect("sign wrapped");
        verify(&pair.public_key, &d, sig.as_bytes());
    }
    let other = s
        .generate_wrapped_key_pair(&ids.kek)
        .await
        .expect("second pair");
    assert_ne!(other.public_key, pair.public_key);
    assert_ne!(other.wrapped, pair.wrapped);
    // A tampered blob does not unwrap.
    let mut bytes = stored.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = WrappedKey::from_bytes(&bytes).expect("still parses");
    let err = s
        .sign_digest(KeyRef::Wrapped(&tampered), &digest(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err, SignerError::DecryptFailed, "tampered wrapped key");
}

/// ECDH equals the host computation with the device private key; bad points are refused first.
pub async fn ecdh_matches_host(s: &dyn Signer) {
    let ids = s.ensure_storage_keys(None).await.expect("storage keys");
    let server = s
        .generate_wrapped_key_pair(&ids.kek)
        .await
        .expect("server pair");
    let device = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let device_public = device.public_key();
    let host = p256::ecdh::diffie_hellman(
        device.to_nonzero_scalar(),
        server.public_key.as_p256().as_affine(),
    );
    let uncompressed = device_public.to_encoded_point(false);
    let peer = PublicKey::from_sec1(uncompressed.as_bytes()).expect("a curve point");
    let shared = s.ecdh(&server.wrapped, &peer).await.expect("ecdh");
    assert_eq!(&shared.expose()[..], &host.raw_secret_bytes()[..]);
    let compressed = device_public.to_encoded_point(true);
    let peer2 = PublicKey::from_sec1(compressed.as_bytes()).expect("a compressed curve point");
    let shared2 = s
        .ecdh(&server.wrapped, &peer2)
        .await
        .expect("ecdh compressed");
    assert_eq!(shared2.expose(), shared.expose());

    // The peer reaches the signer as a validated point: what is not one never gets that far
    // (SoftHSM would answer an off-curve point with CKR_GENERAL_ERROR).
    let mut off_curve = uncompressed.as_bytes().to_vec();
    off_curve[64] ^= 0x01;
    for bad in [&off_curve[..], &[0x04; 65][..], &[][..], &[0x00][..]] {
        assert!(PublicKey::from_sec1(bad).is_err(), "{bad:?}");
    }
}

/// decrypt(encrypt(x)) = x; wrong associated data, a flipped byte or the wrong key fail.
pub async fn sealing_round_trips_and_authenticates(s: &dyn Signer) {
    let ids = s.ensure_storage_keys(None).await.expect("storage keys");
    let secret = [0x5Au8; 48];
    let sealed = s
        .encrypt_secret(&ids.dek, b"activation-1", &secret)
        .await
        .expect("encrypt");
    assert_eq!(sealed.as_bytes().len(), 1 + 12 + secret.len() + 16);
    assert_eq!(sealed.as_bytes()[0], 1, "version byte");
    let plain = s
        .decrypt_secret(&ids.dek, b"activation-1", &sealed)
        .await
        .expect("decrypt");
    assert_eq!(plain.expose(), &secret[..]);
    // Random IV: sealing twice differs.
    let again = s
        .encrypt_secret(&ids.dek, b"activation-1", &secret)
        .await
        .expect("encrypt");
    assert_ne!(again.as_bytes(), sealed.as_bytes());
    // Empty plaintext works too.
    let empty = s
        .encrypt_secret(&ids.dek, b"a", b"")
        .await
        .expect("encrypt empty");
    assert!(
        s.decrypt_secret(&ids.dek, b"a", &empty)
            .await
            .expect("decrypt")
            .expose()
            .is_empty()
    );

    assert_eq!(
        s.decrypt_secret(&ids.dek, b"activation-2", &sealed)
            .await
            .unwrap_err(),
        SignerError::DecryptFailed
    );
    for i in [1, 13, sealed.as_bytes().len() - 1] {
        let mut bytes = sealed.as_bytes().to_vec();
        bytes[i] ^= 0x80;
        let tampered = EncryptedSecret::from_bytes(bytes).expect("layout still valid");
        assert_eq!(
            s.decrypt_secret(&ids.dek, b"activation-1", &tampered)
                .await
                .unwrap_err(),
            SignerError::DecryptFailed,
            "flipped byte {i}"
        );
    }
    // The KEK is not a DEK: one purpose per key.
    assert!(matches!(
        s.decrypt_secret(&ids.kek, b"activation-1", &sealed).await,
        Err(SignerError::KeyNotFound { .. })
    ));
    assert!(matches!(
        s.encrypt_secret(&ids.kek, b"a", b"x").await,
        Err(SignerError::KeyNotFound { .. })
    ));
}

/// An unwrapped key is a non-extractable session object.
pub async fn unwrapped_key_is_never_extractable(s: &dyn Signer) {
    let ids = s.ensure_storage_keys(None).await.expect("storage keys");
    let pair = s.generate_wrapped_key_pair(&ids.kek).await.expect("pair");
    let attrs = s
        .unwrapped_key_attributes(&pair.wrapped)
        .await
        .expect("attributes");
    assert_eq!(attrs.extractable, Some(false), "{attrs:?}");
    assert_eq!(
        attrs.token,
        Some(false),
        "must be a session object: {attrs:?}"
    );
    assert_eq!(attrs.class, "privateKey");
    assert_eq!(attrs.value_readable, Some(false), "{attrs:?}");
}

/// Unknown ids are `KeyNotFound`, never a reason to create a key.
pub async fn unknown_key_is_not_found(s: &dyn Signer) {
    let unknown = KeyId::generate();
    assert!(matches!(
        s.sign_digest(KeyRef::Token(&unknown), &[1; 32]).await,
        Err(SignerError::KeyNotFound { .. })
    ));
    assert!(matches!(
        s.public_key(&unknown).await,
        Err(SignerError::KeyNotFound { .. })
    ));
    assert!(matches!(
        s.ensure_storage_keys(Some(StorageKeyIds {
            kek: unknown,
            dek: KeyId::generate()
        }))
        .await,
        Err(SignerError::KeyNotFound { .. })
    ));
    assert!(matches!(
        s.generate_wrapped_key_pair(&unknown).await,
        Err(SignerError::KeyNotFound { .. })
    ));
    let orphan = WrappedKey::new(unknown, vec![0u8; 40]);
    assert!(matches!(
        s.sign_digest(KeyRef::Wrapped(&orphan), &[1; 32]).await,
        Err(SignerError::KeyNotFound { .. })
    ));
    assert!(matches!(
        s.encrypt_secret(&unknown, b"a", b"x").await,
        Err(SignerError::KeyNotFound { .. })
    ));
    // The lookups created nothing: still no storage keys to adopt... and a master key id of a
    // different key pair is not a storage key.
    let master = s.generate_master_key().await.expect("master");
    assert!(matches!(
        s.encrypt_secret(&master.id, b"a", b"x").await,
        Err(SignerError::KeyNotFound { .. })
    ));
    let inventory = s.inventory().await.expect("inventory");
    assert!(
        !inventory
            .objects
            .iter()
            // The KEK may be there: the key ceremony makes it before the first start
            // (docs/key-isolation.md); the service itself only ever makes the DEK.
            .any(|o| o.label.ends_with("/dek")),
        "a failed lookup must not create storage keys: {inventory:?}"
    );
}

/// Many concurrent signatures all verify.
pub async fn concurrent_signatures_verify(s: &dyn Signer) {
    let master = s.generate_master_key().await.expect("master");
    let digests: Vec<[u8; 32]> = (0u32..24).map(|i| digest(&i.to_be_bytes())).collect();
    let futures = digests
        .iter()
        .map(|d| s.sign_digest(KeyRef::Token(&master.id), d));
    let sigs = futures_join_all(futures).await;
    for (d, sig) in digests.iter().zip(sigs) {
        verify(
            &master.public_key,
            d,
            sig.expect("concurrent sign").as_bytes(),
        );
    }
}

/// Minimal join_all (no extra dependency): polls all futures concurrently on this task.
pub async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in set.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("all futures completed"))
        .collect()
}

/// Instantiates every conformance scenario of this module once for one signer. `$run` is a function
/// `fn(name: &str, body: impl AsyncFnOnce(&dyn Signer))` that runs `body` against a fresh signer of
/// that kind; the generated tests are named `conformance_suite::<scenario>`.
#[macro_export]
macro_rules! signer_conformance {
    ($run:ident) => {
        $crate::signer_conformance!(@each $run;
            token_key_signs_and_verifies,
            storage_keys_are_stable,
            audit_key_signs_and_is_stable,
            destroy_key_removes_only_that_key,
            wrapped_key_signs_and_verifies,
            ecdh_matches_host,
            sealing_round_trips_and_authenticates,
            unwrapped_key_is_never_extractable,
            unknown_key_is_not_found,
            concurrent_signatures_verify,
        );
    };
    (@each $run:ident; $($name:ident),* $(,)?) => {
        /// The conformance scenarios, one test each.
        mod conformance_suite {
            $(
                #[test]
                fn $name() {
                    super::$run(
                        concat!("conformance_suite::", stringify!($name)),
                        async |s| {
                            let _ = $crate::conformance::$name(s).await;
                        },
                    );
                }
            )*
        }
    };
}
