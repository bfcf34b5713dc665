//! The audit chain on sled and on PostgreSQL, from one scenario list: it verifies after a mixed flow,
//! and any tampering is reported at exactly the damaged record.

use offline_signer_testkit::store_backends as backends;
use offline_signer_testkit::store_fixtures as fixtures;
use offline_signer_testkit::store_scenarios;

use backends::Backend;
use fixtures::{APP, activation, application, nonce_for, t, verify_draft};
use offline_signer::model::ActivationStatus;
use offline_signer::store::{
    AuditDraft, AuditOperation, AuditOutcome, ChainBreak, ChainReport, NonceOwner, Store,
    VerificationCommit, verify_audit_chain,
};

store_scenarios!(
    chain_verifies_after_a_mixed_flow_and_links_every_record,
    edited_record_is_reported_at_its_seq,
    rewritten_record_with_recomputed_hash_breaks_the_next_link,
    garbled_record_is_reported_as_undecodable_at_its_seq,
    deleted_record_is_reported_as_missing,
    truncated_tail_is_caught_by_the_head,
    tampering_survives_reopen_and_is_still_found,
);

/// A flow touching every kind of audited write; returns the number of audit records it made.
fn mixed_flow(store: &dyn Store) -> u64 {
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
            (Some(issued.clone()), AuditOutcome::Valid)
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

/// The report of an intact store whose only writer is `store` (its lanes are its chains; a single
/// writer's records all land on lane 0).
fn intact(store: &dyn Store, records: u64) -> ChainReport {
    ChainReport {
        records,
        first_broken: None,
        broken_chain: None,
        chains: store.audit_lanes().len(),
    }
}

/// The report of a single-writer store broken at `seq`.
fn broken_at(store: &dyn Store, records: u64, seq: u64, why: ChainBreak) -> ChainReport {
    ChainReport {
        records,
        first_broken: Some((seq, why)),
        broken_chain: Some(store.audit_chain()),
        chains: store.audit_lanes().len(),
    }
}

fn chain_verifies_after_a_mixed_flow_and_links_every_record<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    assert_eq!(verify_audit_chain(&store).expect("walk"), intact(&store, 0));
    let n = mixed_flow(&store);
    assert_eq!(verify_audit_chain(&store).expect("walk"), intact(&store, n));

    let records = store.audit_records(1, 1000).expect("read");
    assert_eq!(records.len() as u64, n);
    assert_eq!(records[0].prev_hash, store.audit_chain().genesis_hash());
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
fn flip_data_hash_byte<B: Backend>(store: &B::Store, seq: u64) {
    let rec = &store.audit_records(seq, 1).expect("read")[0];
    assert!(
        rec.data_sha256.is_some(),
        "record {seq} must carry a data hash"
    );
    B::tamper_audit_raw(store, seq, |bytes| {
        let len = bytes.len();
        bytes[len - 65] ^= 0x01;
    });
}

fn edited_record_is_reported_at_its_seq<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let n = mixed_flow(&store);
    // Record 4 is the first verification (issue nonce = 3, verify = 4) and carries data_sha256.
    let target = store.audit_records(4, 1).expect("read")[0].clone();
    assert_eq!(target.operation, AuditOperation::Verify);
    assert!(target.data_sha256.is_some());
    flip_data_hash_byte::<B>(&store, 4);
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(report, broken_at(&store, 3, 4, ChainBreak::HashMismatch));
    assert!(n > 4);
}

fn rewritten_record_with_recomputed_hash_breaks_the_next_link<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    mixed_flow(&store);
    // An attacker who edits record 6 and recomputes its own hash is caught by record 7's prev_hash.
    let original = store.audit_records(6, 1).expect("read")[0].clone();
    let mut forged = original.clone();
    forged.counter_after = Some(1_000);
    forged.hash = forged.compute_hash();
    B::tamper_audit_raw(&store, 6, |bytes| {
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
    });
    assert_eq!(
        store.audit_records(6, 1).expect("the forgery decodes")[0],
        forged
    );
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(
        report,
        broken_at(&store, 6, 7, ChainBreak::PrevHashMismatch)
    );
}

fn garbled_record_is_reported_as_undecodable_at_its_seq<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    mixed_flow(&store);
    B::tamper_audit_raw(&store, 9, |bytes| bytes.truncate(10));
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(report.records, 8);
    assert!(
        matches!(report.first_broken, Some((9, ChainBreak::Undecodable(_)))),
        "{report:?}"
    );
}

fn deleted_record_is_reported_as_missing<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    mixed_flow(&store);
    B::remove_audit_raw(&store, 5);
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(
        report,
        broken_at(&store, 4, 5, ChainBreak::Missing { found: Some(6) })
    );
}

fn truncated_tail_is_caught_by_the_head<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    let n = mixed_flow(&store);
    B::remove_audit_raw(&store, n);
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(
        report,
        broken_at(&store, n - 1, n, ChainBreak::Missing { found: None })
    );
}

fn tampering_survives_reopen_and_is_still_found<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    {
        let store = place.open();
        mixed_flow(&store);
        flip_data_hash_byte::<B>(&store, 6);
    }
    let store = place.open();
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!(report.first_broken, Some((6, ChainBreak::HashMismatch)));
}
