//! The audit chain on a real sled store: it verifies after a mixed flow, and any tampering is reported
//! at exactly the damaged record.

#[path = "common/store_fixtures.rs"]
mod fixtures;

use fixtures::{APP, activation, application, nonce_for, t, verify_draft};
use offline_signer::store::{
    ActivationStatus, AuditDraft, AuditOperation, AuditOutcome, ChainBreak, ChainReport,
    NonceOwner, SledStore, Store, VerificationCommit, verify_audit_chain,
};

/// A flow touching every kind of audited write; returns the number of audit records it made.
fn mixed_flow(store: &SledStore) -> u64 {
    let draft = |op, outcome| AuditDraft {
        application_id: Some(APP.into()),
        ..AuditDraft::new(t(20), op, outcome)
    };
    store
        .create_application(
            &application(APP),
            Some(draft(
                AuditOperation::ApplicationCreate,
                AuditOutcome::Created,
            )),
        )
        .expect("app");
    let mut a = store
        .insert_activation(
            &activation("act-m"),
            Some(draft(
                AuditOperation::ActivationRegister,
                AuditOutcome::Created,
            )),
        )
        .expect("insert")
        .activation;
    for i in 0..6u64 {
        let nonce = format!("nonce-{i}");
        let mut issued = nonce_for(&nonce, "act-m", t(300_000));
        if i % 2 == 1 {
            issued.issued_for = NonceOwner::Application(APP.into());
        }
        store
            .issue_nonce(
                &issued,
                Some(draft(
                    AuditOperation::CreatePersonalized,
                    AuditOutcome::Created,
                )),
            )
            .expect("nonce");
        let mut next = a.clone();
        let (consume, outcome) = if i % 3 == 2 {
            next.failed_attempts += 1;
            (None, AuditOutcome::Invalid)
        } else {
            next.counter += 1;
            (Some(nonce), AuditOutcome::Valid)
        };
        let audit = verify_draft(&a, next.counter, outcome);
        a = store
            .commit_verification(VerificationCommit {
                activation: next,
                consume_nonce: consume,
                audit,
            })
            .expect("verify")
            .activation;
    }
    store
        .append_audit(draft(AuditOperation::Verify, AuditOutcome::NotFound))
        .expect("standalone audit");
    a.status = ActivationStatus::Blocked;
    store
        .update_activation(
            &a,
            Some(draft(
                AuditOperation::ActivationBlock,
                AuditOutcome::Changed,
            )),
        )
        .expect("block");
    2 + 6 * 2 + 1 + 1
}

fn intact(records: u64) -> ChainReport {
    ChainReport {
        records,
        first_broken: None,
    }
}

#[test]
fn chain_verifies_after_a_mixed_flow_and_links_every_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    assert_eq!(verify_audit_chain(&store).expect("walk"), intact(0));
    let n = mixed_flow(&store);
    assert_eq!(verify_audit_chain(&store).expect("walk"), intact(n));

    let records = store.audit_records(1, 1000).expect("read");
    assert_eq!(records.len() as u64, n);
    assert_eq!(records[0].prev_hash, [0; 32]);
    for (i, pair) in records.windows(2).enumerate() {
        assert_eq!(pair[0].seq, i as u64 + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let head = store.audit_head().expect("head");
    assert_eq!((head.seq, head.hash), (n, records[records.len() - 1].hash));
    // Paging from the middle.
    let page = store.audit_records(5, 3).expect("read");
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
}

/// Flips the last byte of the stored `data_sha256` of record `seq`: the record still decodes, but its
/// hash no longer fits. The stored layout ends `… ‖ data_sha256[32] ‖ prev_hash[32] ‖ hash[32]`.
fn flip_data_hash_byte(store: &SledStore, seq: u64) {
    let rec = &store.audit_records(seq, 1).expect("read")[0];
    assert!(
        rec.data_sha256.is_some(),
        "record {seq} must carry a data hash"
    );
    store
        .tamper_audit_raw(seq, |bytes| {
            let len = bytes.len();
            bytes[len - 65] ^= 0x01;
        })
        .expect("tamper hook");
}

#[test]
fn edited_record_is_reported_at_its_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    let n = mixed_flow(&store);
    // Record 4 is the first verification (issue nonce = 3, verify = 4) and carries data_sha256.
    let target = store.audit_records(4, 1).expect("read")[0].clone();
    assert_eq!(target.operation, AuditOperation::Verify);
    assert!(target.data_sha256.is_some());
    flip_data_hash_byte(&store, 4);
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(
        report,
        ChainReport {
            records: 3,
            first_broken: Some((4, ChainBreak::HashMismatch))
        }
    );
    assert!(n > 4);
}

#[test]
fn rewritten_record_with_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    mixed_flow(&store);
    // An attacker who edits record 6 and recomputes its own hash is caught by record 7's prev_hash.
    let original = store.audit_records(6, 1).expect("read")[0].clone();
    let mut forged = original.clone();
    forged.counter_after = Some(1_000);
    forged.hash = forged.compute_hash();
    store
        .tamper_audit_raw(6, |bytes| {
            // Same layout and length: patch counter_after's 8 bytes (the last occurrence, after
            // counter_before) and the trailing hash.
            let old = original
                .counter_after
                .expect("verify records carry counters")
                .to_be_bytes();
            let at = bytes
                .windows(8)
                .rposition(|w| w == old)
                .expect("old counter_after stored");
            bytes[at..at + 8].copy_from_slice(&1_000u64.to_be_bytes());
            let len = bytes.len();
            bytes[len - 32..].copy_from_slice(&forged.hash);
        })
        .expect("tamper hook");
    assert_eq!(
        store.audit_records(6, 1).expect("the forgery decodes")[0],
        forged
    );
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(
        report,
        ChainReport {
            records: 6,
            first_broken: Some((7, ChainBreak::PrevHashMismatch))
        }
    );
}

#[test]
fn garbled_record_is_reported_as_undecodable_at_its_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    mixed_flow(&store);
    store
        .tamper_audit_raw(9, |bytes| bytes.truncate(10))
        .expect("tamper hook");
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(report.records, 8);
    assert!(
        matches!(report.first_broken, Some((9, ChainBreak::Undecodable(_)))),
        "{report:?}"
    );
}

#[test]
fn deleted_record_is_reported_as_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    mixed_flow(&store);
    store.remove_audit_raw(5).expect("hook");
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(
        report,
        ChainReport {
            records: 4,
            first_broken: Some((5, ChainBreak::Missing { found: Some(6) }))
        }
    );
}

#[test]
fn truncated_tail_is_caught_by_the_head() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    let n = mixed_flow(&store);
    store.remove_audit_raw(n).expect("hook");
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(
        report,
        ChainReport {
            records: n - 1,
            first_broken: Some((n, ChainBreak::Missing { found: None }))
        }
    );
}

#[test]
fn tampering_survives_reopen_and_is_still_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = SledStore::open(dir.path()).expect("open");
        mixed_flow(&store);
        flip_data_hash_byte(&store, 6);
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(report.first_broken, Some((6, ChainBreak::HashMismatch)));
}
