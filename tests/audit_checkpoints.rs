//! Signed audit checkpoints against the attacks a plain hash chain cannot see (sled and PostgreSQL
//! through the store scenario list; checkpoints signed here with a test key, verified as
//! `audit verify` does): an edited record with every later hash and the head recomputed, a
//! truncated tail with the head fixed, a whole data folder restored from an older copy; and
//! evidence bundles that verify alone and fail on one changed byte.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use offline_signer::crypto::{PrivateKey, ecdsa};
use offline_signer::model::{PublicKey, Timestamp};
use offline_signer::service::audit_trail::{build_evidence, verify_checkpoints, verify_evidence};
use offline_signer::store::{
    AuditDraft, AuditOperation, AuditOutcome, AuditRecord, Checkpoint, SledStore, Store,
    verify_audit_chain,
};
use offline_signer_testkit::store_backends::{Backend, Sled};
use offline_signer_testkit::store_fixtures::copy_dir;
use offline_signer_testkit::store_fixtures::t;
use offline_signer_testkit::store_scenarios;

store_scenarios!(
    edited_record_with_every_hash_and_the_head_recomputed_is_caught,
    truncated_tail_with_the_head_fixed_is_caught,
    evidence_bundle_verifies_and_one_changed_byte_fails,
);

const ACTIVATION: &str = "3f0c1f43-4e3b-4d0a-9d6e-1b2c3d4e5f60";

/// What [`verify_checkpoints`] finds first wrong in `store` with `public` (and the `external`
/// copies), or `None`.
fn first_broken(
    store: &dyn Store,
    public: &PublicKey,
    external: Option<&[Checkpoint]>,
) -> Option<String> {
    verify_checkpoints(store, Some(public), external)
        .expect("the store answers")
        .first_broken
}

fn key() -> PrivateKey {
    PrivateKey::from_scalar_bytes(&[0x5A; 32]).unwrap()
}

/// Appends `n` records; every third is of [`ACTIVATION`].
fn fill(store: &dyn Store, n: u64) {
    for i in 0..n {
        let mut draft = AuditDraft::new(t(i as i64), AuditOperation::Verify, AuditOutcome::Valid);
        draft.actor = Some("cli".into());
        draft.counter_before = Some(i);
        draft.counter_after = Some(i + 1);
        draft.data_sha256 = Some([i as u8; 32]);
        draft.activation_id = Some(if i % 3 == 0 {
            ACTIVATION.to_owned()
        } else {
            format!("other-{i}")
        });
        store.append_audit(draft).unwrap();
    }
}

/// Signs the head of the store's chain with the test key, as the service does with the HSM's.
fn checkpoint(store: &dyn Store) -> Checkpoint {
    let chain = store.audit_chain();
    let head = store.audit_head().unwrap();
    let time = Timestamp::from_unix_millis(1_765_000_000_000 + head.seq as i64);
    let message = Checkpoint::signed_message(&chain, head.seq, &head.hash, time);
    let cp = Checkpoint {
        chain,
        seq: head.seq,
        head_hash: head.hash,
        time,
        signature: ecdsa::sign(&key(), &message),
    };
    store.put_checkpoint(&cp).unwrap();
    cp
}

fn all_records(store: &dyn Store) -> Vec<AuditRecord> {
    store.audit_records(1, 10_000).unwrap()
}

/// What an attacker with write access to the store can make: the same chain id holding `records`
/// with every hash recomputed from the first one on (so the chain walk and the head agree).
fn forged_store<B: Backend>(
    records: Vec<AuditRecord>,
    chain: &offline_signer::store::ChainId,
) -> Option<(B, B::Store)> {
    let place = B::fresh()?;
    let store = place.open();
    let mut prev = chain.genesis_hash();
    let rehashed: Vec<AuditRecord> = records
        .into_iter()
        .map(|mut r| {
            r.prev_hash = prev;
            r.hash = r.compute_hash();
            prev = r.hash;
            r
        })
        .collect();
    store.import_audit(chain, &rehashed).unwrap();
    Some((place, store))
}

fn edited_record_with_every_hash_and_the_head_recomputed_is_caught<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    fill(&store, 5);
    let first = checkpoint(&store);
    fill(&store, 4);
    let second = checkpoint(&store);
    let external = vec![first.clone(), second.clone()];
    let public = key().public_key();
    let intact = verify_checkpoints(&store, Some(&public), Some(&external)).unwrap();
    assert_eq!(intact.first_broken, None);
    assert_eq!(intact.stored, 2);

    // Record 3 says a failed attempt succeeded; every later hash and the head are recomputed, and
    // the stored checkpoints are copied over.
    let mut records = all_records(&store);
    records[2].outcome = AuditOutcome::Invalid;
    let chain = store.audit_chain();
    let Some((_forged_place, forged)) = forged_store::<B>(records, &chain) else {
        return;
    };
    for cp in &external {
        forged.put_checkpoint(cp).unwrap();
    }
    assert!(
        verify_audit_chain(&forged).unwrap().is_intact(),
        "the chain alone cannot see it"
    );
    let why = first_broken(&forged, &public, Some(&external)).expect("caught");
    assert!(why.contains("record 5 changed"), "{why}");
    // Even with the stored checkpoints gone, the external file catches it.
    let Some((_p, bare)) = forged_store::<B>(
        {
            let mut r = all_records(&store);
            r[2].outcome = AuditOutcome::Invalid;
            r
        },
        &chain,
    ) else {
        return;
    };
    let why = first_broken(&bare, &public, Some(&external)).expect("caught by the file");
    assert!(why.contains("external checkpoint"), "{why}");
}

fn truncated_tail_with_the_head_fixed_is_caught<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    fill(&store, 6);
    let cp = checkpoint(&store);
    let mut records = all_records(&store);
    records.truncate(4);
    let chain = store.audit_chain();
    let Some((_forged_place, forged)) = forged_store::<B>(records, &chain) else {
        return;
    };
    forged.put_checkpoint(&cp).unwrap();
    assert!(verify_audit_chain(&forged).unwrap().is_intact());
    let public = key().public_key();
    let why = first_broken(&forged, &public, None).expect("caught");
    assert!(why.contains("record 6 is missing"), "{why}");
    // A checkpoint whose signature was made by another key is not accepted either.
    let other = PrivateKey::from_scalar_bytes(&[0x11; 32])
        .unwrap()
        .public_key();
    let why = first_broken(&store, &other, None).expect("wrong key");
    assert!(why.contains("signature does not verify"), "{why}");
}

fn evidence_bundle_verifies_and_one_changed_byte_fails<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = place.open();
    fill(&store, 7);
    checkpoint(&store);
    fill(&store, 5);
    checkpoint(&store);
    fill(&store, 1); // record 13, of the activation, not covered yet
    // The activation's records: 1, 4, 7 (first fill), 8, 11 (second), 13 (third).
    let public = key().public_key();
    let evidence = build_evidence(&store, ACTIVATION, &public).unwrap();
    assert_eq!((evidence.covered, evidence.uncovered), (5, 1));
    let records = verify_evidence(&evidence.bundle).expect("the bundle verifies");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 4, 7, 8, 11]);
    assert_eq!(evidence.bundle.segments.len(), 2);

    // One changed character anywhere in a record's bytes, its hash, the checkpoint or the key fails.
    let json = serde_json::to_string_pretty(&evidence.bundle).unwrap();
    let mut tried = 0;
    for (i, c) in json.char_indices() {
        if !c.is_ascii_alphanumeric() || i % 7 != 0 {
            continue;
        }
        let replacement = if c == 'A' { 'B' } else { 'A' };
        let mut changed = json.clone();
        changed.replace_range(i..i + 1, &replacement.to_string());
        let Ok(bundle) = serde_json::from_str(&changed) else {
            continue; // a changed key name or number: not a bundle any more
        };
        tried += 1;
        assert!(
            verify_evidence(&bundle).is_err(),
            "a change at byte {i} ({:?}) went unnoticed",
            &json[i.saturating_sub(30)..(i + 30).min(json.len())]
        );
    }
    assert!(tried > 100, "{tried}");
}

#[test]
fn an_older_copy_of_the_whole_data_folder_is_caught_by_the_external_file() {
    let place = Sled::fresh().unwrap();
    let dir = std::path::PathBuf::from(place.location());
    let backup = tempfile::tempdir().unwrap();
    let public = key().public_key();
    let first = {
        let store = place.open();
        fill(&store, 4);
        checkpoint(&store)
    };
    copy_dir(&dir, backup.path());
    let second = {
        let store = place.open();
        fill(&store, 3);
        checkpoint(&store)
    };
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(backup.path(), &dir);
    let store: SledStore = place.open();
    assert!(verify_audit_chain(&store).unwrap().is_intact());
    let external = vec![first, second];
    // The restored folder's own checkpoints agree with it: only the file outside knows better.
    assert_eq!(first_broken(&store, &public, None), None);
    let why = first_broken(&store, &public, Some(&external)).expect("rollback caught");
    assert!(why.contains("record 7 is missing"), "{why}");
    assert!(why.contains("older than"), "{why}");
}

/// PostgreSQL with lanes: the service checkpoints the head of every lane of its instance that moved
/// (and only those), and the checkpoint check then covers every lane.
#[test]
fn the_service_checkpoints_every_lane_that_moved() {
    use offline_signer::service::checkpoint::checkpoint_signature_valid;
    use offline_signer::service::{Clock, Service};
    use offline_signer::signer::software::SoftwareSigner;
    use offline_signer::store::{ChainId, PgStore};
    use offline_signer_testkit::postgres::{HeldLock, TestDatabase};
    use offline_signer_testkit::service_harness::{ManualClock, default_settings};
    use std::sync::Arc;

    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = Arc::new(
        PgStore::open(
            &db.settings(8).with_audit_lanes(4),
            ChainId::new("cp-lanes").unwrap(),
        )
        .unwrap(),
    );
    let lanes = store.audit_lanes();
    assert_eq!(lanes.len(), 4);
    let heads = |store: &PgStore| -> Vec<(ChainId, u64, [u8; 32])> {
        lanes
            .iter()
            .map(|lane| {
                let head = store.audit_chain_head(lane).unwrap();
                (lane.clone(), head.seq, head.hash)
            })
            .collect()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let service = Service::open(
            Arc::new(SoftwareSigner::new_in_memory()),
            Arc::clone(&store) as Arc<dyn Store>,
            default_settings(),
            Arc::new(ManualClock::new()) as Arc<dyn Clock>,
        )
        .await
        .unwrap();
        let public = service.audit_public_key();
        service.create_application("bank").await.unwrap();
        {
            // Lane 0 busy (an audited write that waits for a row lock): this write lands on lane 1.
            let stuck = store
                .insert_activation(
                    &offline_signer_testkit::store_fixtures::activation("a"),
                    None,
                )
                .unwrap()
                .activation;
            let held = HeldLock::take(
                &db.url(),
                "SELECT 1 FROM activations WHERE id = 'a' FOR UPDATE",
            );
            let writer = {
                let store = Arc::clone(&store);
                let draft = offline_signer_testkit::store_fixtures::verify_draft(
                    &stuck,
                    0,
                    offline_signer::store::AuditOutcome::Invalid,
                );
                std::thread::spawn(move || store.update_activation(&stuck, Some(draft)))
            };
            db.wait_for_lock_waits(1);
            service.create_application("bank-2").await.unwrap();
            drop(held);
            writer.join().unwrap().unwrap();
        }
        let now = heads(&store);
        assert!(now[0].1 > 0 && now[1].1 > 0, "{now:?}");
        assert_eq!((now[2].1, now[3].1), (0, 0), "{now:?}");
        assert_eq!(
            service.records_since_checkpoint().await.unwrap(),
            now.iter().map(|h| h.1).sum::<u64>()
        );

        let made = service.checkpoint().await.unwrap();
        let signed: Vec<_> = made
            .iter()
            .map(|cp| (cp.chain.clone(), cp.seq, cp.head_hash))
            .collect();
        assert_eq!(
            signed,
            now[..2].to_vec(),
            "every lane that moved, and only those"
        );
        assert!(
            made.iter()
                .all(|cp| checkpoint_signature_valid(cp, &public))
        );
        assert!(service.checkpoint().await.unwrap().is_empty());
        assert_eq!(service.records_since_checkpoint().await.unwrap(), 0);

        // Only lane 0 moves: only lane 0 is checkpointed again.
        service.create_application("bank-3").await.unwrap();
        let again = service.checkpoint().await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].chain, lanes[0]);
        assert_eq!(again[0].seq, heads(&store)[0].1);

        let mut external = made.clone();
        external.extend(again);
        let report = verify_checkpoints(store.as_ref(), Some(&public), Some(&external)).unwrap();
        assert_eq!(report.first_broken, None, "{report:?}");
        assert_eq!(report.stored, 3);
        assert_eq!(report.newest_external.len(), 2, "{report:?}");
    });
    assert!(verify_audit_chain(store.as_ref()).unwrap().is_intact());
}
