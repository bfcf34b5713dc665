//! Record builders shared by the `store_*` integration tests.

use offline_signer::crypto::PrivateKey;
use offline_signer::model::{
    ActivationStatus, EncryptedSecret, KeyId, PublicKey, Timestamp, WrappedKey,
};
use offline_signer::store::{
    Activation, Application, AuditDraft, AuditOperation, AuditOutcome, IssuedNonce, MasterKeyRef,
    NonceOwner, VerificationCommit,
};

pub const APP: &str = "demo-app";

/// A fixed P-256 public key, different for each `n` in 1..=255.
pub fn test_key(n: u8) -> PublicKey {
    let mut scalar = [0u8; 32];
    scalar[31] = n;
    PrivateKey::from_scalar_bytes(&scalar)
        .expect("1..=255 are valid scalars")
        .public_key()
}

/// A well-formed sealed blob (version byte, IV, ciphertext and tag) filled with `fill`.
pub fn sealed(fill: u8, len: usize) -> EncryptedSecret {
    EncryptedSecret::from_bytes([vec![1], vec![fill; len]].concat())
        .expect("version byte and at least IV + tag")
}

pub fn t(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_764_000_000_000 + millis)
}

pub fn application(id: &str) -> Application {
    Application {
        id: id.to_owned(),
        roles: vec!["ROLE_A".into(), "ROLE_B".into()],
        master_keys: vec![MasterKeyRef {
            key_id: KeyId::from_bytes([0x11; 16]),
            public_key: test_key(0x22),
            created_at: t(0),
        }],
        created_at: t(0),
        versions: Vec::new(),
    }
}

pub fn activation(id: &str) -> Activation {
    Activation {
        id: id.to_owned(),
        application_id: APP.to_owned(),
        user_id: format!("user-of-{id}"),
        status: ActivationStatus::Active,
        blocked_reason: None,
        flags: vec!["FLAG".into()],
        device_public_key: Some(test_key(0x33)),
        server_public_key: test_key(0x44),
        wrapped_server_private_key: Some(WrappedKey::new(
            KeyId::from_bytes([0x66; 16]),
            vec![0x55; 80],
        )),
        encrypted_factor_keys: Some(sealed(0x77, 75)),
        counter: 0,
        ctr_data: [0x88; 16],
        failed_attempts: 0,
        max_failed_attempts: 5,
        created_at: t(1),
        last_used_at: None,
        version: 0,
        enrollment: Default::default(),
    }
}

pub fn nonce_for(nonce: &str, activation_id: &str, expires_at: Timestamp) -> IssuedNonce {
    IssuedNonce {
        nonce: nonce.to_owned(),
        issued_for: NonceOwner::Activation(activation_id.to_owned()),
        issued_at: t(2),
        expires_at,
        consumed_at: None,
    }
}

pub fn verify_draft(
    activation: &Activation,
    counter_after: u64,
    outcome: AuditOutcome,
) -> AuditDraft {
    AuditDraft {
        activation_id: Some(activation.id.clone()),
        application_id: Some(activation.application_id.clone()),
        signature_type: Some("POSSESSION_KNOWLEDGE".into()),
        counter_before: Some(activation.counter),
        counter_after: Some(counter_after),
        nonce_status: Some("VALID".into()),
        data_sha256: Some([0x99; 32]),
        ..AuditDraft::new(t(10), AuditOperation::Verify, outcome)
    }
}

/// The commit of a valid verification of `read` (as read) that stores `next` and consumes `nonce`
/// (as read).
pub fn valid_commit(
    read: &Activation,
    next: Activation,
    nonce: Option<&IssuedNonce>,
) -> VerificationCommit {
    VerificationCommit {
        audit: verify_draft(read, next.counter, AuditOutcome::Valid),
        activation: next,
        consume_nonce: nonce.cloned(),
    }
}

/// Copies a folder tree (a sled data folder at rest, to put back later as an "older copy").
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
