//! Sanity checks of the plaintext scanner (`tests/common/scan.rs`) against a real store directory: it
//! finds what the store was given in opaque key-material fields, and finds nothing the store was never
//! given. The service's end-to-end test reuses the scanner to show that no plaintext key reaches disk.

use offline_signer_testkit::scan;
use offline_signer_testkit::store_fixtures as fixtures;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fixtures::{APP, activation, application, t};
use offline_signer::model::{CredentialScope, EncryptedSecret, KeyId, WrappedKey};
use offline_signer::store::{IntegrationCredential, SecretHash, SledStore, Store};

/// Stands for a wrapped blob's contents: given to the store, so it must be found.
const GIVEN: [u8; 16] = *b"GIVEN-BLOB-6d1f2";
/// Stands for the plaintext a wrapped blob hides: never given to the store, so it must not be found.
const NEVER_GIVEN: [u8; 16] = *b"PLAINTEXT-KEY-9q";

#[test]
fn scanner_finds_stored_blobs_and_nothing_the_store_was_not_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = SledStore::open(dir.path()).expect("open");
        store
            .create_application(&application(APP), None)
            .expect("app");
        let mut a = activation("act-scan");
        a.wrapped_server_private_key = Some(WrappedKey::new(
            KeyId::from_bytes([0xA5; 16]),
            [&[0xA5; 8][..], &GIVEN, &[0xA5; 56]].concat(),
        ));
        a.encrypted_factor_keys = Some(
            EncryptedSecret::from_bytes([&[1][..], &[0x5A; 12], &GIVEN, &[0x5A; 48]].concat())
                .expect("a well-formed sealed blob"),
        );
        store.insert_activation(&a, None).expect("insert");
        store
            .put_credential(
                &IntegrationCredential {
                    id: "id-scan".into(),
                    client_token: "tok".into(),
                    name: "scan".into(),
                    scope: CredentialScope::Admin,
                    secret_hash: SecretHash(vec![0xEE; 32]),
                    created_at: t(0),
                },
                None,
            )
            .expect("credential");
    }
    let given = scan::scan_dir(dir.path(), &GIVEN).expect("scan");
    assert!(
        given.iter().any(|hit| hit.form == "raw"),
        "the scanner must see the stored opaque blob (positive control), got {given:?}"
    );
    let never = scan::scan_dir(dir.path(), &NEVER_GIVEN).expect("scan");
    assert!(
        never.is_empty(),
        "the store wrote bytes it was never given: {never:?}"
    );
}

#[test]
fn scanner_finds_hex_and_base64_at_every_alignment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = NEVER_GIVEN;
    std::fs::write(
        dir.path().join("hex.txt"),
        format!("key={}", hex::encode(secret)),
    )
    .expect("write");
    std::fs::write(dir.path().join("HEX.txt"), hex::encode_upper(secret)).expect("write");
    for shift in 0..3 {
        let mut blob = vec![0x41u8; shift];
        blob.extend_from_slice(&secret);
        blob.extend_from_slice(b"tail");
        std::fs::write(
            dir.path().join(format!("b64-{shift}.txt")),
            STANDARD.encode(&blob),
        )
        .expect("write");
    }
    std::fs::create_dir(dir.path().join("nested")).expect("mkdir");
    std::fs::write(
        dir.path().join("nested").join("raw.bin"),
        [&[0u8; 3][..], &secret].concat(),
    )
    .expect("write");
    std::fs::write(dir.path().join("clean.txt"), "nothing to see").expect("write");

    let hits = scan::scan_dir(dir.path(), &secret).expect("scan");
    let mut files: Vec<String> = hits
        .iter()
        .map(|h| {
            h.file
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files.dedup();
    assert_eq!(
        files,
        [
            "HEX.txt",
            "b64-0.txt",
            "b64-1.txt",
            "b64-2.txt",
            "hex.txt",
            "raw.bin"
        ]
    );
}
