//! The store's record operations, on sled and on PostgreSQL from one scenario list: round trips,
//! compare-and-swap, the nonce registry, credentials, the format marker, and reopening; and the
//! records of activation by code: application versions, the activation-code index, temporary keys
//! and the ECIES replay registry.

use offline_signer_testkit::store_backends as backends;
use offline_signer_testkit::store_fixtures as fixtures;
use offline_signer_testkit::store_scenarios;

use std::sync::Arc;

use backends::Backend;
use fixtures::{APP, activation, application, nonce_for, t, verify_draft};
use offline_signer::model::{ActivationStatus, CredentialScope, KeyId};
use offline_signer::store::{
    ApplicationVersion, AuditDraft, AuditOperation, AuditOutcome, Conflict, IntegrationCredential,
    IssuedNonce, MasterKeyRef, NonceOwner, SecretHash, SledStore, Store, StoreError, TemporaryKey,
    VerificationCommit, verify_audit_chain,
};

store_scenarios!(
    application_round_trip_duplicate_and_new_master_key,
    activation_round_trip_and_compare_and_swap,
    remove_destroys_key_material,
    concurrent_compare_and_swap_loses_no_update,
    nonce_consumed_twice_is_a_conflict_and_keeps_the_first_state,
    racing_verifications_consume_a_nonce_once,
    nonce_owner_is_checked_at_consumption,
    a_refused_verification_leaves_its_nonce_unconsumed,
    rejected_attempt_commits_without_a_nonce,
    prune_deletes_only_old_nonces_and_is_bounded,
    credentials_put_get_list_remove,
    storage_keys_are_recorded_once,
    reopen_after_drop_keeps_every_acknowledged_write,
    a_store_from_a_newer_build_is_refused,
    probe_writes_durably_without_touching_records,
    application_versions_are_unique_and_found_by_key,
    activation_found_by_code_within_its_application,
    temporary_keys_put_get_remove,
    replay_registry_refuses_a_second_registration,
    prune_ecies_deletes_only_expired_entries_and_is_bounded,
    key_census_counts_wrapped_keys_and_lists_master_keys,
);

fn key_census_counts_wrapped_keys_and_lists_master_keys<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    assert_eq!(
        store.key_census().expect("census of an empty store"),
        offline_signer::store::KeyCensus::default()
    );
    store
        .create_application(&application(APP), None)
        .expect("application");
    let newer = MasterKeyRef {
        key_id: KeyId::from_bytes([0x05; 16]),
        public_key: fixtures::test_key(0x06),
        created_at: t(5),
    };
    store.add_master_key(APP, newer, None).expect("add key");
    for id in ["act-c1", "act-c2", "act-c3"] {
        store
            .insert_activation(&activation(id), None)
            .expect("insert");
    }
    let mut removed = store.activation("act-c3").expect("read").expect("there");
    removed.status = ActivationStatus::Removed;
    removed.destroy_key_material();
    store.update_activation(&removed, None).expect("remove");
    let census = store.key_census().expect("census");
    assert_eq!(
        census.wrapped_activation_keys, 2,
        "a removed one holds no key"
    );
    assert_eq!(census.wrapped_temporary_keys, 0);
    assert_eq!(
        census.master_key_ids,
        vec![KeyId::from_bytes([0x05; 16]), KeyId::from_bytes([0x11; 16])],
        "sorted"
    );
}

fn application_round_trip_duplicate_and_new_master_key<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let app = application(APP);
    store
        .create_application(&app, None)
        .expect("new application");
    assert_eq!(store.application(APP).expect("read"), Some(app.clone()));
    assert!(matches!(
        store.create_application(&app, None),
        Err(StoreError::AlreadyExists {
            what: "application"
        })
    ));
    assert_eq!(store.application("nope").expect("read"), None);

    let newer = MasterKeyRef {
        key_id: KeyId::from_bytes([0xAA; 16]),
        public_key: fixtures::test_key(0xAB),
        created_at: t(5),
    };
    let stored = store
        .add_master_key(APP, newer.clone(), None)
        .expect("add key");
    assert_eq!(stored.newest_master_key(), Some(&newer));
    assert_eq!(stored.master_keys.len(), 2);
    assert_eq!(store.application(APP).expect("read"), Some(stored));
    assert!(matches!(
        store.add_master_key("nope", newer, None),
        Err(StoreError::NotFound {
            what: "application"
        })
    ));
}

fn activation_round_trip_and_compare_and_swap<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let a = activation("act-1");
    let inserted = store
        .insert_activation(&a, None)
        .expect("insert")
        .activation;
    assert_eq!(inserted.version, 1);
    assert_eq!(
        store.activation("act-1").expect("read"),
        Some(inserted.clone())
    );
    assert!(matches!(
        store.insert_activation(&a, None),
        Err(StoreError::AlreadyExists { what: "activation" })
    ));

    // Two writers read version 1; the first wins, the second loses and changes nothing.
    let mut first = inserted.clone();
    first.status = ActivationStatus::Blocked;
    first.blocked_reason = Some("NOT_SPECIFIED".into());
    let mut second = inserted.clone();
    second.counter = 99;
    let won = store
        .update_activation(&first, None)
        .expect("first CAS wins")
        .activation;
    assert_eq!(won.version, 2);
    assert!(matches!(
        store.update_activation(&second, None),
        Err(StoreError::Conflict(Conflict::StaleVersion))
    ));
    assert_eq!(store.activation("act-1").expect("read"), Some(won.clone()));

    let mut ghost = activation("ghost");
    ghost.version = 1;
    assert!(matches!(
        store.update_activation(&ghost, None),
        Err(StoreError::NotFound { what: "activation" })
    ));
}

fn remove_destroys_key_material<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let mut a = store
        .insert_activation(&activation("act-r"), None)
        .expect("insert")
        .activation;
    assert!(!a.key_material_destroyed());
    a.status = ActivationStatus::Removed;
    a.destroy_key_material();
    let draft = AuditDraft {
        activation_id: Some(a.id.clone()),
        ..AuditDraft::new(
            t(9),
            AuditOperation::ActivationRemove,
            AuditOutcome::Removed,
        )
    };
    let done = store.update_activation(&a, Some(draft)).expect("remove");
    let stored = store
        .activation("act-r")
        .expect("read")
        .expect("kept for audit");
    assert!(stored.key_material_destroyed());
    assert_eq!(stored.status, ActivationStatus::Removed);
    assert_eq!(
        done.audit.expect("audit appended").operation,
        AuditOperation::ActivationRemove
    );
}

fn concurrent_compare_and_swap_loses_no_update<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = Arc::new(place.open());
    store
        .insert_activation(&activation("hot"), None)
        .expect("insert");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut conflicts = 0u32;
                for _ in 0..10 {
                    loop {
                        let mut a = store.activation("hot").expect("read").expect("exists");
                        a.counter += 1;
                        match store.update_activation(&a, None) {
                            Ok(_) => break,
                            Err(StoreError::Conflict(Conflict::StaleVersion)) => conflicts += 1,
                            Err(e) => panic!("unexpected store error: {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for th in threads {
        th.join().expect("writer thread does not panic");
    }
    let a = store.activation("hot").expect("read").expect("exists");
    assert_eq!(a.counter, 80);
    assert_eq!(a.version, 81);
}

fn nonce_consumed_twice_is_a_conflict_and_keeps_the_first_state<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let a = store
        .insert_activation(&activation("act-n"), None)
        .expect("insert")
        .activation;
    let issued = nonce_for("bm9uY2Utb25lLTE2Yg==", "act-n", t(300_000));
    store.issue_nonce(&issued, None).expect("issue");
    assert_eq!(
        store.nonce(&issued.nonce).expect("read"),
        Some(issued.clone())
    );
    assert!(matches!(
        store.issue_nonce(&issued, None),
        Err(StoreError::AlreadyExists { what: "nonce" })
    ));

    let mut next = a.clone();
    next.counter = 1;
    next.ctr_data = [1; 16];
    let first = store
        .commit_verification(VerificationCommit {
            activation: next,
            consume_nonce: Some(issued.clone()),
            audit: verify_draft(&a, 1, AuditOutcome::Valid),
        })
        .expect("first verification commits");
    let after_first = store.activation("act-n").expect("read").expect("exists");
    assert_eq!(after_first, first.activation);
    let consumed = store
        .nonce(&issued.nonce)
        .expect("read")
        .expect("still registered");
    assert_eq!(consumed.consumed_at, Some(t(10)));

    // A replay with an up-to-date version still cannot consume the nonce again.
    let mut replay = after_first.clone();
    replay.counter = 2;
    let head_before = store.audit_head().expect("head");
    let err = store
        .commit_verification(VerificationCommit {
            activation: replay,
            consume_nonce: Some(issued.clone()),
            audit: verify_draft(&after_first, 2, AuditOutcome::Valid),
        })
        .expect_err("second consumption must fail");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::NonceConsumed)),
        "{err}"
    );
    assert_eq!(store.activation("act-n").expect("read"), Some(after_first));
    assert_eq!(
        store.audit_head().expect("head"),
        head_before,
        "no audit record for a refused commit"
    );
}

fn racing_verifications_consume_a_nonce_once<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = Arc::new(place.open());
    let a = store
        .insert_activation(&activation("act-race"), None)
        .expect("insert")
        .activation;
    store
        .issue_nonce(&nonce_for("race", "act-race", t(300_000)), None)
        .expect("issue");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let a = a.clone();
            std::thread::spawn(move || {
                let mut next = a.clone();
                next.counter = 1 + i;
                store.commit_verification(VerificationCommit {
                    activation: next,
                    consume_nonce: Some(nonce_for("race", "act-race", t(300_000))),
                    audit: verify_draft(&a, 1 + i, AuditOutcome::Valid),
                })
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread does not panic"))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
        }
    }
    assert_eq!(store.audit_head().expect("head").seq, 1);
}

fn nonce_owner_is_checked_at_consumption<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let a = store
        .insert_activation(&activation("act-o"), None)
        .expect("insert")
        .activation;
    let other = nonce_for("other", "someone-else", t(300_000));
    store.issue_nonce(&other, None).expect("issue");
    let mut app_nonce = nonce_for("for-app", "x", t(300_000));
    app_nonce.issued_for = NonceOwner::Application(APP.into());
    store.issue_nonce(&app_nonce, None).expect("issue");

    let commit = |nonce: &IssuedNonce, version| {
        store.commit_verification(VerificationCommit {
            activation: offline_signer::store::Activation {
                version,
                ..a.clone()
            },
            consume_nonce: Some(nonce.clone()),
            audit: verify_draft(&a, 1, AuditOutcome::Valid),
        })
    };
    assert!(matches!(
        commit(&other, 1),
        Err(StoreError::Conflict(Conflict::NonceOwner))
    ));
    assert!(matches!(
        commit(&nonce_for("never-issued", "act-o", t(300_000)), 1),
        Err(StoreError::NotFound { what: "nonce" })
    ));
    let ok = commit(&app_nonce, 1).expect("an application nonce fits its activations");
    assert_eq!(ok.activation.version, 2);
}

/// Every refusal of a verification that brings a valid nonce (stale version, unknown activation,
/// another owner's nonce) writes nothing: not the activation, not the nonce's consumption (which a
/// backend may have attempted in the same transaction), no audit record; the nonce then serves the
/// commit it belongs to, once.
fn a_refused_verification_leaves_its_nonce_unconsumed<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let a = store
        .insert_activation(&activation("act-r"), None)
        .expect("insert")
        .activation;
    let moved = store
        .update_activation(&a, None)
        .expect("version 2")
        .activation;
    let other = store
        .insert_activation(&activation("act-r2"), None)
        .expect("insert")
        .activation;
    let issued = nonce_for("cmVmdXNlZC1ub25jZQ==", "act-r", t(300_000));
    store.issue_nonce(&issued, None).expect("issue");
    let head_before = store.audit_head().expect("head");
    let commit = |activation: offline_signer::store::Activation| {
        store.commit_verification(VerificationCommit {
            audit: verify_draft(&activation, activation.counter + 1, AuditOutcome::Valid),
            activation,
            consume_nonce: Some(issued.clone()),
        })
    };
    let unchanged = |why: &str| {
        assert_eq!(
            store.nonce(&issued.nonce).expect("read"),
            Some(issued.clone()),
            "{why}: the nonce stays unconsumed"
        );
        assert_eq!(
            store.audit_head().expect("head"),
            head_before,
            "{why}: no audit record"
        );
        assert_eq!(
            store.activation("act-r").expect("read"),
            Some(moved.clone()),
            "{why}: the activation is unchanged"
        );
        assert_eq!(
            store.activation("act-r2").expect("read"),
            Some(other.clone()),
            "{why}: the other activation is unchanged"
        );
    };

    let err = commit(a.clone()).expect_err("version 1 is stale");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::StaleVersion)),
        "{err}"
    );
    unchanged("stale version");

    let err = commit(offline_signer::store::Activation {
        version: 1,
        ..activation("act-ghost")
    })
    .expect_err("no such activation");
    assert!(
        matches!(err, StoreError::NotFound { what: "activation" }),
        "{err}"
    );
    unchanged("unknown activation");

    let err = commit(other.clone()).expect_err("the nonce is act-r's");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::NonceOwner)),
        "{err}"
    );
    unchanged("another owner's nonce");

    let done = commit(moved.clone()).expect("the owner's commit consumes it");
    assert_eq!(done.activation.version, 3);
    assert_eq!(
        store
            .nonce(&issued.nonce)
            .expect("read")
            .and_then(|n| n.consumed_at),
        Some(done.audit.as_ref().expect("audited").time)
    );
    assert_eq!(store.audit_head().expect("head").seq, head_before.seq + 1);
}

fn rejected_attempt_commits_without_a_nonce<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let a = store
        .insert_activation(&activation("act-f"), None)
        .expect("insert")
        .activation;
    let mut failed = a.clone();
    failed.failed_attempts = 1;
    failed.last_used_at = Some(t(10));
    let done = store
        .commit_verification(VerificationCommit {
            activation: failed,
            consume_nonce: None,
            audit: verify_draft(&a, 0, AuditOutcome::Invalid),
        })
        .expect("commit");
    assert_eq!(done.activation.failed_attempts, 1);
    let rec = done.audit.expect("verification always audits");
    assert_eq!((rec.seq, rec.outcome), (1, AuditOutcome::Invalid));
}

fn prune_deletes_only_old_nonces_and_is_bounded<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    for i in 0..10 {
        store
            .issue_nonce(&nonce_for(&format!("n{i}"), "a", t(i * 1000)), None)
            .expect("issue");
    }
    // Expired before t(5000): n0..n4. At most 3 per call.
    assert_eq!(store.prune_nonces(t(5000), 3).expect("prune"), 3);
    assert_eq!(store.prune_nonces(t(5000), 3).expect("prune"), 2);
    assert_eq!(store.prune_nonces(t(5000), 3).expect("prune"), 0);
    for i in 0..10 {
        let present = store.nonce(&format!("n{i}")).expect("read").is_some();
        assert_eq!(present, i >= 5, "nonce n{i}");
    }
    // Negative timestamps sort before positive ones in the expiry index.
    store
        .issue_nonce(
            &nonce_for(
                "ancient",
                "a",
                offline_signer::model::Timestamp::from_unix_millis(-5),
            ),
            None,
        )
        .expect("issue");
    assert_eq!(store.prune_nonces(t(0), 100).expect("prune"), 1);
    assert_eq!(store.nonce("ancient").expect("read"), None);
}

fn credentials_put_get_list_remove<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let cred = |token: &str| IntegrationCredential {
        id: format!("id-{token}"),
        scope: CredentialScope::applications(vec![format!("app-{token}")], token == "a"),
        client_token: token.into(),
        name: format!("client {token}"),
        secret_hash: SecretHash(vec![0xC0; 32]),
        created_at: t(3),
    };
    store.put_credential(&cred("b"), None).expect("put");
    store.put_credential(&cred("a"), None).expect("put");
    assert_eq!(store.credential("a").expect("get"), Some(cred("a")));
    assert_eq!(
        store.credentials().expect("list"),
        vec![cred("a"), cred("b")]
    );
    let mut renamed = cred("a");
    renamed.name = "renamed".into();
    store.put_credential(&renamed, None).expect("replace");
    assert_eq!(store.credential("a").expect("get"), Some(renamed));
    store.remove_credential("a", None).expect("remove");
    assert!(matches!(
        store.remove_credential("a", None),
        Err(StoreError::NotFound {
            what: "integration credential"
        })
    ));
    assert_eq!(store.credentials().expect("list"), vec![cred("b")]);
}

fn reopen_after_drop_keeps_every_acknowledged_write<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let (app, act, nonce, cred, head) = {
        let store = place.open();
        let app = application(APP);
        store.create_application(&app, None).expect("app");
        let a = store
            .insert_activation(&activation("act-d"), None)
            .expect("insert")
            .activation;
        let nonce = nonce_for("durable", "act-d", t(300_000));
        store.issue_nonce(&nonce, None).expect("nonce");
        let mut next = a.clone();
        next.counter = 7;
        let act = store
            .commit_verification(VerificationCommit {
                activation: next,
                consume_nonce: Some(nonce.clone()),
                audit: verify_draft(&a, 7, AuditOutcome::Valid),
            })
            .expect("commit")
            .activation;
        let cred = IntegrationCredential {
            id: "id-tok".into(),
            scope: CredentialScope::Admin,
            client_token: "tok".into(),
            name: "n".into(),
            secret_hash: SecretHash(vec![1; 32]),
            created_at: t(4),
        };
        store.put_credential(&cred, None).expect("cred");
        let nonce = store.nonce("durable").expect("read").expect("present");
        (app, act, nonce, cred, store.audit_head().expect("head"))
    };
    let store = place.open();
    assert_eq!(store.application(APP).expect("read"), Some(app));
    assert_eq!(store.activation("act-d").expect("read"), Some(act));
    assert_eq!(store.nonce("durable").expect("read"), Some(nonce));
    assert_eq!(store.credential("tok").expect("read"), Some(cred));
    assert_eq!(store.audit_head().expect("head"), head);
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!((report.records, report.first_broken), (1, None));
}

fn a_store_from_a_newer_build_is_refused<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let expected = {
        let store = place.open();
        B::mark_newer_format(&store)
    };
    match place.try_open() {
        Err(StoreError::NewerFormat { found, supported }) => {
            assert_eq!((found, supported), expected);
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer store format must be refused"),
    }
}

fn storage_keys_are_recorded_once<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    assert_eq!(store.storage_keys().expect("read"), None);
    store
        .set_storage_keys(KeyId::from_bytes([1; 16]), KeyId::from_bytes([2; 16]))
        .expect("first record");
    assert!(matches!(
        store.set_storage_keys(KeyId::from_bytes([3; 16]), KeyId::from_bytes([4; 16])),
        Err(StoreError::AlreadyExists {
            what: "storage key ids"
        })
    ));
    drop(store);
    let store = place.open();
    assert_eq!(
        store.storage_keys().expect("read"),
        Some((KeyId::from_bytes([1; 16]), KeyId::from_bytes([2; 16])))
    );
}

#[test]
fn size_on_disk_counts_the_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    store
        .insert_activation(&activation("act-s"), None)
        .expect("insert");
    assert!(store.size_on_disk().expect("size") > 0);
}

fn probe_writes_durably_without_touching_records<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let before = B::flush_count(&store);
    store.probe().expect("probe");
    if let Some(before) = before {
        assert_eq!(
            B::flush_count(&store),
            Some(before + 1),
            "the probe reaches the disk"
        );
    }
    assert_eq!(store.audit_head().expect("head").seq, 0);
}

// ---- activation by code (protocol 3.3) ----

fn version(id: &str, application_key: &str) -> ApplicationVersion {
    ApplicationVersion {
        id: id.to_owned(),
        application_key: application_key.to_owned(),
        encrypted_secret: fixtures::sealed(0x5A, 60),
        supported: true,
        created_at: t(4),
    }
}

fn temporary_key(id: &str, expires_at: offline_signer::model::Timestamp) -> TemporaryKey {
    TemporaryKey {
        id: id.to_owned(),
        application_key: "AK-default".to_owned(),
        activation_id: None,
        wrapped_private_key: offline_signer::model::WrappedKey::new(
            KeyId::from_bytes([0x21; 16]),
            vec![0x31; 80],
        ),
        public_key: fixtures::test_key(0x41),
        created_at: t(0),
        expires_at,
    }
}

fn application_versions_are_unique_and_found_by_key<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    store
        .create_application(&application(APP), None)
        .expect("new application");
    store
        .create_application(&application("other-app"), None)
        .expect("second application");
    let stored = store
        .add_application_version(APP, version("default", "AK-default"), None)
        .expect("first version");
    assert_eq!(stored.versions, vec![version("default", "AK-default")]);
    let stored = store
        .add_application_version(APP, version("v2", "AK-v2"), None)
        .expect("second version");
    assert_eq!(stored.versions.len(), 2);
    assert_eq!(store.application(APP).expect("read"), Some(stored.clone()));

    // The same version id in the same application, or the same key anywhere: refused, unchanged.
    for (app, v) in [
        (APP, version("default", "AK-new")),
        ("other-app", version("other", "AK-v2")),
    ] {
        assert!(
            matches!(
                store.add_application_version(app, v, None),
                Err(StoreError::AlreadyExists { .. })
            ),
            "{app}"
        );
    }
    assert!(matches!(
        store.add_application_version("nope", version("default", "AK-x"), None),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.application(APP).expect("read"), Some(stored.clone()));
    assert_eq!(
        store
            .application("other-app")
            .expect("read")
            .expect("app")
            .versions,
        Vec::new()
    );

    assert_eq!(
        store.application_by_key("AK-v2").expect("by key"),
        Some(stored)
    );
    assert_eq!(store.application_by_key("AK-none").expect("by key"), None);
    // The index survives reopening.
    drop(store);
    let store = place.open();
    assert_eq!(
        store
            .application_by_key("AK-default")
            .expect("by key")
            .map(|a| a.id),
        Some(APP.to_owned())
    );
}

fn activation_found_by_code_within_its_application<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let code = "AAAAA-BBBBB-CCCCC-DDDDD";
    let mut created = activation("a-code");
    created.status = ActivationStatus::Created;
    created.device_public_key = None;
    created.enrollment.activation_code = Some(code.to_owned());
    created.enrollment.expires_at = Some(t(300_000));
    store.insert_activation(&created, None).expect("insert");
    let stored = store
        .activation_by_code(APP, code)
        .expect("by code")
        .expect("found");
    assert_eq!(stored.id, "a-code");
    assert_eq!(stored.enrollment, created.enrollment);
    assert_eq!(
        store
            .activation_by_code("other-app", code)
            .expect("by code"),
        None
    );
    assert_eq!(
        store
            .activation_by_code(APP, "AAAAA-BBBBB-CCCCC-EEEEE")
            .expect("by code"),
        None
    );

    // A second activation with the same code in the same application is refused; nothing written.
    let mut twin = created.clone();
    twin.id = "a-twin".to_owned();
    assert!(matches!(
        store.insert_activation(&twin, None),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(store.activation("a-twin").expect("read"), None);
    // In another application the same code is another activation.
    twin.application_id = "other-app".to_owned();
    store.insert_activation(&twin, None).expect("other app");
    assert_eq!(
        store
            .activation_by_code("other-app", code)
            .expect("by code")
            .map(|a| a.id),
        Some("a-twin".to_owned())
    );

    // An update (the key exchange) keeps the code findable.
    let mut prepared = stored;
    prepared.status = ActivationStatus::PendingCommit;
    prepared.device_public_key = Some(fixtures::test_key(0x35));
    store.update_activation(&prepared, None).expect("update");
    let found = store
        .activation_by_code(APP, code)
        .expect("by code")
        .expect("found");
    assert_eq!(found.status, ActivationStatus::PendingCommit);
}

fn temporary_keys_put_get_remove<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let key = temporary_key("tk-1", t(300_000));
    store.put_temporary_key(&key).expect("put");
    assert!(matches!(
        store.put_temporary_key(&temporary_key("tk-1", t(1))),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.temporary_key("tk-1").expect("read"),
        Some(key.clone())
    );
    assert_eq!(store.temporary_key("tk-2").expect("read"), None);
    let mut bound = temporary_key("tk-2", t(300_000));
    bound.activation_id = Some("a-1".to_owned());
    store.put_temporary_key(&bound).expect("put bound");
    drop(store);
    let store = place.open();
    assert_eq!(store.temporary_key("tk-2").expect("read"), Some(bound));
    assert!(store.remove_temporary_key("tk-1").expect("remove"));
    assert!(!store.remove_temporary_key("tk-1").expect("remove again"));
    assert_eq!(store.temporary_key("tk-1").expect("read"), None);
}

fn replay_registry_refuses_a_second_registration<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    store
        .register_replay("EPH-NONCE-1", t(60_000))
        .expect("first");
    assert!(matches!(
        store.register_replay("EPH-NONCE-1", t(120_000)),
        Err(StoreError::AlreadyExists { .. })
    ));
    store
        .register_replay("EPH-NONCE-2", t(60_000))
        .expect("another");
    // Still recorded after reopening.
    drop(store);
    let store = place.open();
    assert!(matches!(
        store.register_replay("EPH-NONCE-1", t(60_000)),
        Err(StoreError::AlreadyExists { .. })
    ));
}

fn prune_ecies_deletes_only_expired_entries_and_is_bounded<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    for i in 0..4 {
        store
            .register_replay(&format!("r{i}"), t(i * 1000))
            .expect("register");
        store
            .put_temporary_key(&temporary_key(&format!("tk{i}"), t(i * 1000)))
            .expect("put");
    }
    // Expired before t(2000): r0, r1, tk0, tk1. At most 3 per call.
    assert_eq!(store.prune_ecies(t(2000), 3).expect("prune"), 3);
    assert_eq!(store.prune_ecies(t(2000), 3).expect("prune"), 1);
    assert_eq!(store.prune_ecies(t(2000), 3).expect("prune"), 0);
    for i in 0..4 {
        let kept = i >= 2;
        assert_eq!(
            store
                .temporary_key(&format!("tk{i}"))
                .expect("read")
                .is_some(),
            kept,
            "tk{i}"
        );
        // A pruned replay entry can be registered again; a kept one cannot.
        assert_eq!(
            store.register_replay(&format!("r{i}"), t(9000)).is_ok(),
            !kept,
            "r{i}"
        );
    }
}
