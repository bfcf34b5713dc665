//! What only the PostgreSQL store has to prove: races between many threads and several instances on one
//! database, one audit chain per instance, lost connections, concurrent migrations, pruning that never
//! waits for a verification, and no password in an error. (Everything a store must do in general is in
//! the shared scenarios of `store_records`, `store_audit` and `store_durability`.)

use offline_signer_testkit::postgres as postgres_server;
use offline_signer_testkit::store_fixtures as fixtures;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use fixtures::{activation, nonce_for, t, valid_commit, verify_draft};
use offline_signer::model::{CredentialScope, KeyId};
use offline_signer::store::{
    Activation, AuditOutcome, ChainBreak, ChainId, Conflict, IntegrationCredential, PgStore,
    PostgresSettings, SCHEMA_VERSION, SecretHash, Store, StoreError, VerificationReads, migrate,
    verify_audit_chain,
};
use postgres_server::{HeldLock, TestDatabase};

fn chain(id: &str) -> ChainId {
    ChainId::new(id).expect("valid chain id")
}

/// One lane per instance (`audit_lanes = 1`): the single-chain behaviour the older tests below pin.
fn open(db: &TestDatabase, chain_id: &str) -> PgStore {
    open_lanes(db, chain_id, 1)
}

fn open_lanes(db: &TestDatabase, chain_id: &str, lanes: usize) -> PgStore {
    PgStore::open(&db.settings(16).with_audit_lanes(lanes), chain(chain_id))
        .expect("open the store")
}

/// Holds the row of activation `id` (another session's transaction), so that a write of it waits.
fn hold_activation(db: &TestDatabase, id: &str) -> HeldLock {
    HeldLock::take(
        &db.url(),
        &format!("SELECT 1 FROM activations WHERE id = '{id}' FOR UPDATE"),
    )
}

/// A verification of `id` (whose row [`hold_activation`] holds) on a thread of its own, returned
/// once it waits for that row, `waiting` sessions waiting in all: it holds a lane of `store` until
/// the row is released.
fn stuck_verification(
    db: &TestDatabase,
    store: &Arc<PgStore>,
    id: &str,
    waiting: usize,
) -> std::thread::JoinHandle<Result<(u64, u64), StoreError>> {
    let store = Arc::clone(store);
    let id = id.to_owned();
    let writer = std::thread::spawn(move || verify_once(store.as_ref(), &id));
    db.wait_for_lock_waits(waiting);
    writer
}

/// Walks every chain of the database behind `store`: intact, with `chains` chains holding `records`
/// records in all.
fn assert_walk(store: &dyn Store, chains: usize, records: u64) {
    let report = verify_audit_chain(store).expect("walk");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.chains, report.records), (chains, records));
}

/// `store` with activation `id` (as stored) and an unexpired nonce `nonce` issued for it.
fn with_activation_and_nonce(store: PgStore, id: &str, nonce: &str) -> (PgStore, Activation) {
    let stored = store
        .insert_activation(&activation(id), None)
        .expect("insert")
        .activation;
    store
        .issue_nonce(&nonce_for(nonce, id, t(300_000)), None)
        .expect("issue");
    (store, stored)
}

/// Every lane's head seq, lane 0 first.
fn lane_heads(store: &dyn Store) -> Vec<u64> {
    store
        .audit_lanes()
        .iter()
        .map(|lane| store.audit_chain_head(lane).expect("head").seq)
        .collect()
}

/// Issues a nonce for `id` and consumes it in a verification; returns the new counter and audit seq.
fn verify_once(store: &dyn Store, id: &str) -> Result<(u64, u64), StoreError> {
    let a = store.activation(id)?.expect("activation exists");
    let nonce = nonce_for(&uuid::Uuid::new_v4().to_string(), id, t(300_000));
    store.issue_nonce(&nonce, None)?;
    let mut next = a.clone();
    next.counter += 1;
    let done = store.commit_verification(valid_commit(&a, next, Some(&nonce)))?;
    Ok((
        done.activation.counter,
        done.audit.expect("verification is audited").seq,
    ))
}

#[test]
fn of_128_threads_committing_one_version_and_nonce_exactly_one_wins() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (store, a) = with_activation_and_nonce(open(&db, "hot"), "act-hot", "the-nonce");
    let issued = store.nonce("the-nonce").expect("read").expect("issued");
    let store = Arc::new(store);
    let start = Arc::new(Barrier::new(128));
    let threads: Vec<_> = (0..128u64)
        .map(|i| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            let a = a.clone();
            let issued = issued.clone();
            std::thread::spawn(move || {
                let mut next = a.clone();
                next.counter = 1 + i;
                start.wait();
                store.commit_verification(valid_commit(&a, next, Some(&issued)))
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|th| th.join().expect("thread does not panic"))
        .collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one commit wins");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    StoreError::Conflict(Conflict::StaleVersion | Conflict::NonceConsumed)
                ),
                "a loser must see a conflict, not {e}"
            );
        }
    }
    let stored = store.activation("act-hot").expect("read").expect("exists");
    assert_eq!(stored, winners[0].activation);
    assert_eq!(stored.version, 2);
    assert!(
        store
            .nonce("the-nonce")
            .expect("read")
            .expect("registered")
            .consumed_at
            .is_some()
    );
    assert_eq!(store.audit_head().expect("head").seq, 1);
    assert!(
        verify_audit_chain(store.as_ref())
            .expect("walk")
            .is_intact()
    );
}

#[test]
fn instances_racing_to_record_storage_keys_agree_on_one_pair() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let stores: Vec<_> = (0..8)
        .map(|i| Arc::new(open(&db, &format!("instance-{i}"))))
        .collect();
    let start = Arc::new(Barrier::new(stores.len()));
    let threads: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let store = Arc::clone(store);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let ids = (
                    KeyId::from_bytes([i as u8; 16]),
                    KeyId::from_bytes([0x80 | i as u8; 16]),
                );
                start.wait();
                (ids, store.set_storage_keys(ids.0, ids.1))
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|th| th.join().expect("thread does not panic"))
        .collect();
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "one instance records its keys");
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    StoreError::AlreadyExists {
                        what: "storage key ids"
                    }
                ),
                "{e}"
            );
        }
    }
    let agreed = winners[0].0;
    for store in &stores {
        assert_eq!(store.storage_keys().expect("read"), Some(agreed));
    }
}

#[test]
fn with_one_lane_an_instance_has_exactly_its_own_chain() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = open_lanes(&db, "solo", 1);
    assert_eq!(store.audit_lanes(), vec![chain("solo")]);
    assert_eq!(store.audit_chains().expect("chains"), vec![chain("solo")]);
    store
        .insert_activation(&activation("act-solo"), None)
        .expect("insert");
    verify_once(&store, "act-solo").expect("verify");
    assert_eq!(store.audit_head().expect("head").seq, 1);
}

#[test]
fn a_busy_lane_is_skipped_and_a_free_one_taken_without_waiting() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = Arc::new(open_lanes(&db, "laned", 8));
    let lanes = store.audit_lanes();
    assert_eq!(lanes.len(), 8);
    assert_eq!(lanes[0], chain("laned"));
    assert_eq!(lanes[1], chain("laned.lane1"));
    assert_eq!(lanes[7], chain("laned.lane7"));
    // A lone writer stays on lane 0.
    store
        .insert_activation(&activation("act-l"), None)
        .expect("insert");
    verify_once(store.as_ref(), "act-l").expect("verify");
    assert_eq!(lane_heads(store.as_ref()), [1, 0, 0, 0, 0, 0, 0, 0]);
    // Lane 0 leased by a write that waits for a row lock: the next write takes lane 1 instead of
    // waiting behind it.
    store
        .insert_activation(&activation("act-stuck"), None)
        .expect("insert");
    let held = hold_activation(&db, "act-stuck");
    let stuck = stuck_verification(&db, &store, "act-stuck", 1);
    verify_once(store.as_ref(), "act-l").expect("verify");
    assert_eq!(lane_heads(store.as_ref()), [1, 1, 0, 0, 0, 0, 0, 0]);
    drop(held);
    stuck.join().expect("writer").expect("verify");
    assert_eq!(lane_heads(store.as_ref()), [2, 1, 0, 0, 0, 0, 0, 0]);
    // Every lane leased: the next write waits for one and lands when it is free.
    let held: Vec<(HeldLock, std::thread::JoinHandle<_>)> = (0..lanes.len())
        .map(|n| {
            let id = format!("act-stuck-{n}");
            store
                .insert_activation(&activation(&id), None)
                .expect("insert");
            let held = hold_activation(&db, &id);
            (held, stuck_verification(&db, &store, &id, n + 1))
        })
        .collect();
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || verify_once(store.as_ref(), "act-l"))
    };
    for (lock, stuck) in held {
        drop(lock);
        stuck.join().expect("writer").expect("verify");
    }
    writer.join().expect("writer").expect("verify");
    let heads = lane_heads(store.as_ref());
    assert_eq!(heads.iter().sum::<u64>(), 3 + 9, "{heads:?}");
    assert!(
        heads.iter().all(|seq| *seq > 0),
        "every lane was used: {heads:?}"
    );
    assert_walk(store.as_ref(), 8, 3 + 9);
}

#[test]
fn concurrent_writes_of_one_instance_use_its_lanes_and_every_lane_verifies() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = Arc::new(open_lanes(&db, "busy", 8));
    const THREADS: usize = 16;
    const PER_THREAD: u64 = 10;
    let start = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|n| {
            let id = format!("act-busy-{n}");
            store
                .insert_activation(&activation(&id), None)
                .expect("insert");
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..PER_THREAD {
                    verify_once(store.as_ref(), &id).expect("verify");
                }
            })
        })
        .collect();
    start.wait();
    for th in threads {
        th.join().expect("writer does not panic");
    }
    // Each verification is one audited write: every record landed on exactly one lane.
    let total = THREADS as u64 * PER_THREAD;
    let heads = lane_heads(store.as_ref());
    assert_eq!(heads.iter().sum::<u64>(), total, "{heads:?}");
    // 16 writers overlapping in none of 160 commits would take a scheduler that runs them one by
    // one; any overlap puts a commit on a second lane.
    let used = heads.iter().filter(|seq| **seq > 0).count();
    assert!(used >= 2, "concurrent writes stayed on one lane: {heads:?}");
    assert_walk(store.as_ref(), 8, total);
}

#[test]
fn a_database_written_with_one_lane_opens_with_eight_and_verifies() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let old = open_lanes(&db, "old", 1);
    old.insert_activation(&activation("act-old"), None)
        .expect("insert");
    verify_once(&old, "act-old").expect("verify");
    verify_once(&old, "act-old").expect("verify");
    verify_once(&old, "act-old").expect("verify");
    drop(old);
    let store = Arc::new(open_lanes(&db, "old", 8));
    assert_eq!(store.audit_chains().expect("chains").len(), 8);
    assert_eq!(lane_heads(store.as_ref()), [3, 0, 0, 0, 0, 0, 0, 0]);
    verify_once(store.as_ref(), "act-old").expect("verify on lane 0");
    store
        .insert_activation(&activation("act-stuck"), None)
        .expect("insert");
    let held = hold_activation(&db, "act-stuck");
    let stuck = stuck_verification(&db, &store, "act-stuck", 1);
    verify_once(store.as_ref(), "act-old").expect("verify on another lane");
    drop(held);
    stuck.join().expect("writer").expect("verify on lane 0");
    assert_eq!(lane_heads(store.as_ref()), [5, 1, 0, 0, 0, 0, 0, 0]);
    // Opening again (another instance of the same id, or a restart) creates nothing twice.
    let again = open_lanes(&db, "old", 8);
    assert_eq!(again.audit_chains().expect("chains").len(), 8);
    assert_walk(store.as_ref(), 8, 6);
}

#[test]
fn a_chain_id_too_long_for_its_lanes_is_refused() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    // `.lane63` is the longest suffix: 57 characters of base id is the most every lane count takes.
    let long = "x".repeat(ChainId::MAX_LEN - ChainId::LANE_SUFFIX_MAX + 1);
    let err = PgStore::open(&db.settings(4).with_audit_lanes(64), chain(&long))
        .expect_err("too long for 64 lanes");
    assert!(err.to_string().contains("audit_lanes"), "{err}");
    assert!(err.to_string().contains("at most 57"), "{err}");
    PgStore::open(&db.settings(4).with_audit_lanes(8), chain(&long)).expect("8 lanes fit");
    PgStore::open(&db.settings(4).with_audit_lanes(1), chain(&long)).expect("one lane fits");
    let fits = "y".repeat(ChainId::MAX_LEN - ChainId::LANE_SUFFIX_MAX);
    PgStore::open(&db.settings(4).with_audit_lanes(64), chain(&fits)).expect("64 lanes fit");
}

/// A lane's head as a handle last wrote it is a hint: two handles given one chain id (a
/// misconfiguration: two processes with one instance id), or a transaction that appended and then
/// failed to commit, leave it wrong. A verification that finds the stored head elsewhere reads it
/// again and seals its record anew, so the chain stays one line with nothing lost or forked.
#[test]
fn a_wrong_head_hint_costs_a_retry_never_a_fork() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let a = Arc::new(open(&db, "shared-id"));
    let b = Arc::new(open(&db, "shared-id"));
    a.insert_activation(&activation("act-a"), None)
        .expect("insert");
    b.insert_activation(&activation("act-b"), None)
        .expect("insert");
    // Strictly alternating: each handle's hint is stale at every write after its first.
    for round in 1..=4u64 {
        let (_, seq) = verify_once(a.as_ref(), "act-a").expect("verify on a");
        assert_eq!(seq, 2 * round - 1);
        let (_, seq) = verify_once(b.as_ref(), "act-b").expect("verify on b");
        assert_eq!(seq, 2 * round);
    }
    // Another audited write in between (a transaction, which reads the head under its lock).
    a.append_audit(verify_draft(&activation("act-a"), 0, AuditOutcome::Invalid))
        .expect("append");
    let (_, seq) = verify_once(b.as_ref(), "act-b").expect("verify on b");
    assert_eq!(seq, 10);
    // Concurrently: a write that keeps losing the head to the other handle may give up (an error
    // that names the likely cause), but every acknowledged one is on the one chain, once.
    let threads: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .enumerate()
        .map(|(n, store)| {
            let id = format!("act-c{n}");
            store
                .insert_activation(&activation(&id), None)
                .expect("insert");
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut landed = 0;
                for _ in 0..5 {
                    match verify_once(store.as_ref(), &id) {
                        Ok(_) => landed += 1,
                        Err(StoreError::Io { detail }) => {
                            assert!(detail.contains("same audit chain id"), "{detail}")
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                landed
            })
        })
        .collect();
    let landed: u64 = threads
        .into_iter()
        .map(|th| th.join().expect("writer does not panic"))
        .sum();
    assert!(landed > 0);
    assert_walk(a.as_ref(), 1, 10 + landed);
}

#[test]
fn two_instances_write_two_chains_and_the_walk_covers_both() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let a = Arc::new(open(&db, "instance-a"));
    let b = Arc::new(open(&db, "instance-b"));
    const PER_THREAD: u64 = 10;
    let mut threads = Vec::new();
    for (n, store) in [&a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let id = format!("act-{n}");
        store
            .insert_activation(&activation(&id), None)
            .expect("insert");
        let store = Arc::clone(store);
        threads.push(std::thread::spawn(move || {
            for _ in 0..PER_THREAD {
                verify_once(store.as_ref(), &id).expect("verify");
            }
        }));
    }
    for th in threads {
        th.join().expect("writer does not panic");
    }
    let per_chain = 3 * PER_THREAD;
    assert_eq!(a.audit_head().expect("head").seq, per_chain);
    assert_eq!(b.audit_head().expect("head").seq, per_chain);
    assert_eq!(
        a.audit_chains().expect("chains"),
        vec![chain("instance-a"), chain("instance-b")]
    );
    // Any instance walks every chain.
    assert_walk(a.as_ref(), 2, 2 * per_chain);

    // Each chain starts from its own genesis, so the two chains never share a link.
    let first_a = &a.audit_records(1, 1).expect("read")[0];
    let first_b = &b.audit_records(1, 1).expect("read")[0];
    assert_eq!(first_a.prev_hash, chain("instance-a").genesis_hash());
    assert_eq!(first_b.prev_hash, chain("instance-b").genesis_hash());

    // Damage in one chain is reported in that chain.
    b.remove_audit_raw(7).expect("hook");
    let report = verify_audit_chain(a.as_ref()).expect("walk");
    assert_eq!(report.broken_chain, Some(chain("instance-b")));
    assert_eq!(
        report.first_broken,
        Some((7, ChainBreak::Missing { found: Some(8) }))
    );
    assert_eq!(report.records, per_chain + 6);
}

#[test]
fn killed_connections_fail_calls_with_io_and_the_pool_recovers() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = Arc::new(open(&db, "flaky"));
    let ids: Vec<String> = (0..6).map(|i| format!("act-k{i}")).collect();
    for id in &ids {
        store
            .insert_activation(&activation(id), None)
            .expect("insert");
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            let id = id.clone();
            std::thread::spawn(move || {
                let (mut acked, mut failed) = (Vec::new(), 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match verify_once(store.as_ref(), &id) {
                        Ok(ack) => acked.push(ack),
                        // A connection killed mid-COMMIT is an unknown outcome, not an I/O error.
                        Err(StoreError::Io { .. } | StoreError::OutcomeUnknown { .. }) => {
                            failed += 1
                        }
                        // A commit whose answer was lost may have landed; the retry then reads a
                        // fresh version, so a conflict here would be a store bug.
                        Err(e) => panic!("only I/O errors are expected, got {e}"),
                    }
                }
                (id, acked, failed)
            })
        })
        .collect();
    let mut kills = 0;
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        db.kill_sessions().expect("terminate the store's sessions");
        kills += 1;
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_failed = 0;
    let mut acks = Vec::new();
    for th in threads {
        let (id, acked, failed) = th.join().expect("writer does not panic");
        total_failed += failed;
        acks.push((id, acked));
    }
    eprintln!("{total_failed} calls failed with I/O errors across {kills} kills");
    assert!(total_failed > 0, "the kills must hit calls in flight");

    // The pool drops the dead connections and opens new ones: a few calls at most to get going again.
    let recovered = (0..5).any(|_| store.probe().is_ok());
    assert!(recovered, "the store answers again after the kills");
    let report = verify_audit_chain(store.as_ref()).expect("walk");
    assert!(report.is_intact(), "no half-written chain: {report:?}");
    for (id, acked) in acks {
        let stored = store.activation(&id).expect("read").expect("exists");
        for (counter, seq) in acked {
            assert!(
                stored.counter >= counter,
                "{id}: acknowledged {counter} lost"
            );
            let rec = &store.audit_records(seq, 1).expect("read")[0];
            assert_eq!(rec.counter_after, Some(counter));
            assert_eq!(rec.activation_id.as_deref(), Some(id.as_str()));
        }
    }
}

#[test]
fn concurrent_opens_migrate_once_and_a_newer_schema_is_refused() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let settings = db.settings(2);
    let start = Arc::new(Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let settings = settings.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                PgStore::open(&settings, chain(&format!("opener-{i}")))
            })
        })
        .collect();
    let stores: Vec<PgStore> = threads
        .into_iter()
        .map(|th| {
            th.join()
                .expect("thread does not panic")
                .expect("every concurrent open succeeds")
        })
        .collect();
    assert_eq!(stores[0].schema_version().expect("read"), SCHEMA_VERSION);
    let again = migrate(&settings).expect("migrate is idempotent");
    assert_eq!((again.from, again.to), (SCHEMA_VERSION, SCHEMA_VERSION));

    stores[0]
        .set_schema_version_raw(SCHEMA_VERSION + 1)
        .expect("hook");
    match migrate(&settings) {
        Err(StoreError::NewerFormat { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
    let err = PgStore::open(&settings, chain("late")).expect_err("refused");
    assert!(
        err.to_string().contains("newer than this build"),
        "clear message: {err}"
    );
}

#[test]
fn pruning_skips_a_nonce_a_verification_holds_instead_of_waiting() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = open(&db, "pruner");
    for i in 0..5 {
        store
            .issue_nonce(&nonce_for(&format!("old-{i}"), "a", t(i)), None)
            .expect("issue");
    }
    let held = HeldLock::take(
        &db.url(),
        "SELECT 1 FROM nonces WHERE nonce = 'old-0' FOR UPDATE",
    );
    let started = Instant::now();
    assert_eq!(store.prune_nonces(t(1000), 100).expect("prune"), 4);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "prune must not wait for the held row"
    );
    assert!(store.nonce("old-0").expect("read").is_some());
    drop(held);
    assert_eq!(store.prune_nonces(t(1000), 100).expect("prune"), 1);

    // Two instances pruning at once delete each nonce once.
    for i in 0..200 {
        store
            .issue_nonce(&nonce_for(&format!("batch-{i}"), "a", t(i)), None)
            .expect("issue");
    }
    let other = open(&db, "pruner-2");
    let (x, y) = std::thread::scope(|s| {
        let x = s.spawn(|| {
            (0..20)
                .map(|_| store.prune_nonces(t(1000), 10).expect("prune"))
                .sum::<usize>()
        });
        let y = s.spawn(|| {
            (0..20)
                .map(|_| other.prune_nonces(t(1000), 10).expect("prune"))
                .sum::<usize>()
        });
        (x.join().expect("x"), y.join().expect("y"))
    });
    assert_eq!(x + y, 200);
}

#[test]
fn a_wrong_password_fails_without_naming_it() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    const WRONG: &str = "wrong-pw-8c1e55aa";
    let url = db.url();
    let (head, tail) = url.split_once('@').expect("the test URL has credentials");
    let user = head.rsplit_once(':').map_or(head, |(user, _)| user);
    let settings =
        PostgresSettings::from_url(&format!("{user}:{WRONG}@{tail}"), 1).expect("the URL parses");
    assert!(!format!("{settings:?}").contains(WRONG));
    let err = PgStore::open(&settings, chain("denied")).expect_err("authentication fails");
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(WRONG), "the password leaked: {shown}");
}

#[test]
fn usable_and_droppable_on_the_callers_tokio_runtime() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    offline_signer_testkit::runtime().block_on(async {
        // Opened, called and dropped on a worker thread of another runtime: the store never enters the
        // caller's runtime, so none of this may panic.
        let store = Arc::new(open(&db, "async-caller"));
        store.probe().expect("probe from a worker thread");
        let from_blocking = Arc::clone(&store);
        tokio::task::spawn_blocking(move || from_blocking.probe())
            .await
            .expect("blocking task")
            .expect("probe from a blocking thread");
        drop(store);
    });
}

/// The writes that pipeline their statements answer with the first statement that failed, not with
/// the "current transaction is aborted" of the statements sent after it, write nothing, and leave a
/// connection the next call can use. (A NUL in a text column is refused by the server itself; the
/// answer carries the server's SQLSTATE.)
#[test]
fn a_statement_refused_inside_a_pipelined_round_is_the_answer_and_nothing_is_written() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    // One connection: every call below runs on the connection the refused one used.
    let store = PgStore::open(&db.settings(1).with_audit_lanes(1), chain("pipelined"))
        .expect("open the store");
    let a = store
        .insert_activation(&activation("act-p"), None)
        .expect("insert")
        .activation;
    let head = store.audit_head().expect("head");
    // 22021: invalid byte sequence (the refused statement); not 25P02, "current transaction is
    // aborted" (the statements after it).
    let refused_by_the_server = |err: StoreError, what: &str| match err {
        StoreError::Io { detail } => {
            assert!(detail.ends_with("(SQLSTATE 22021)"), "{what}: {detail}")
        }
        other => panic!("{what}: expected the server's refusal, got {other}"),
    };

    // The nonce's insert fails; the lane lock sent after it is not the answer.
    let err = store
        .issue_nonce(
            &nonce_for("nul\0nonce", "act-p", t(300_000)),
            Some(verify_draft(&a, 0, AuditOutcome::Valid)),
        )
        .expect_err("a NUL in a text column is refused");
    refused_by_the_server(err, "issue");
    assert_eq!(store.audit_head().expect("head"), head, "no audit record");

    // The compare-and-swap succeeds, the nonce's consumption fails: the swap is rolled back.
    let mut next = a.clone();
    next.counter = 1;
    let err = store
        .commit_verification(valid_commit(
            &a,
            next,
            Some(&nonce_for("nul\0nonce", "act-p", t(300_000))),
        ))
        .expect_err("a NUL in a text column is refused");
    refused_by_the_server(err, "verification");
    assert_eq!(store.activation("act-p").expect("read"), Some(a.clone()));
    assert_eq!(store.audit_head().expect("head"), head, "no audit record");

    // The connection was left in no transaction: the next verification commits.
    let (counter, seq) = verify_once(&store, "act-p").expect("verification");
    assert_eq!((counter, seq), (1, head.seq + 1));
}

/// A verification abandoned midway (its operation timed out while its compare-and-swap waited for
/// a row lock) leaves nothing behind: its statement is cancelled rather than left to commit when
/// the lock is released, and its connection does not go back to the pool, where the next caller's
/// statements would queue behind it.
#[test]
fn a_verification_abandoned_midway_leaves_no_open_transaction_behind() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    abandon_a_verification_midway(&db, db.settings(1));
}

/// The same over TLS: the cancel request goes out over TLS too (a client whose settings require TLS
/// does not send a plain one, and the statement would stay pending).
#[test]
fn a_verification_abandoned_midway_over_tls_is_cancelled_too() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let Some(settings) = db.tls_settings(1) else {
        return;
    };
    abandon_a_verification_midway(&db, settings);
}

fn abandon_a_verification_midway(db: &TestDatabase, settings: PostgresSettings) {
    // One connection: whatever the abandoned call leaves on it, the next call gets.
    let store = PgStore::open(&settings.with_audit_lanes(1), chain("abandon"))
        .expect("open the store")
        .with_operation_timeout(std::time::Duration::from_secs(1));
    store
        .insert_activation(&activation("a1"), None)
        .expect("insert");
    let before = store.activation("a1").expect("read").expect("activation");
    {
        let _held = HeldLock::take(
            &db.url(),
            "SELECT 1 FROM activations WHERE id = 'a1' FOR UPDATE",
        );
        let mut next = before.clone();
        next.counter += 1;
        let abandoned = store.commit_verification(valid_commit(&before, next, None));
        // A write past its time: its COMMIT could have been sent, so the outcome is unknown.
        assert!(
            matches!(abandoned, Err(StoreError::OutcomeUnknown { .. })),
            "{abandoned:?}"
        );
        // The abandoned statement was cancelled: nothing of this database waits for a lock now.
        db.wait_for_lock_waits(0);
    }
    // The lock is released: an abandoned statement still pending would now run. Neither this store
    // nor another connection sees any trace of it.
    let after = store.activation("a1").expect("read").expect("activation");
    assert_eq!(
        (after.version, after.counter),
        (before.version, before.counter)
    );
    let fresh = open(db, "observer");
    let seen = fresh.activation("a1").expect("read").expect("activation");
    assert_eq!(
        (seen.version, seen.counter),
        (before.version, before.counter)
    );
    // The next verification commits exactly once.
    assert_eq!(
        verify_once(&store, "a1").expect("verify").0,
        before.counter + 1
    );
    let seen = fresh.activation("a1").expect("read").expect("activation");
    assert_eq!(seen.counter, before.counter + 1);
    assert_eq!(seen.version, before.version + 1);
}

/// The request path's calls as futures ([`offline_signer::store::RemoteStore`]) answer exactly as
/// the blocking calls of the same names; a stale commit is the same conflict; and a commit whose
/// future is dropped unawaited still lands (a request that gives up cannot half-write).
#[test]
fn the_remote_calls_answer_as_the_blocking_ones_and_a_dropped_commit_still_lands() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (store, a) = with_activation_and_nonce(open(&db, "remote"), "act-r", "nonce-r");
    let issued = store.nonce("nonce-r").expect("read").expect("issued");
    store
        .create_application(&fixtures::application(fixtures::APP), None)
        .expect("application");
    let credential = IntegrationCredential {
        id: "cred-r".into(),
        client_token: "token-r".into(),
        name: "remote test".into(),
        secret_hash: SecretHash(vec![0x5a; 32]),
        created_at: t(3),
        scope: CredentialScope::Admin,
    };
    store.put_credential(&credential, None).expect("credential");

    offline_signer_testkit::runtime().block_on(async {
        let remote = store.remote().expect("PostgreSQL offers the remote calls");
        let both = remote
            .verification_reads("act-r", Some("nonce-r"))
            .await
            .expect("reads");
        assert_eq!(both.activation, store.activation("act-r").expect("read"));
        assert_eq!(both.nonce, store.nonce("nonce-r").expect("read"));
        assert!(both.activation.is_some() && both.nonce.is_some());
        let only = remote
            .verification_reads("act-r", None)
            .await
            .expect("reads");
        assert_eq!((only.activation.is_some(), only.nonce), (true, None));
        let unknown = remote
            .verification_reads("act-unknown", Some("nonce-unknown"))
            .await
            .expect("reads");
        assert_eq!(unknown, VerificationReads::default());

        assert_eq!(
            remote.application(fixtures::APP).await.expect("read"),
            store.application(fixtures::APP).expect("read")
        );
        assert_eq!(remote.application("no-app").await.expect("read"), None);
        assert_eq!(
            remote.credential("token-r").await.expect("read"),
            Some(credential.clone())
        );
        assert_eq!(remote.credential("no-token").await.expect("read"), None);

        let mut stale = a.clone();
        stale.version = 7;
        let refused = remote
            .commit_verification(valid_commit(&a, stale, Some(&issued)))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(Conflict::StaleVersion))),
            "{refused:?}"
        );

        // Handed over and dropped: the write lands anyway.
        let mut next = a.clone();
        next.counter = 1;
        drop(remote.commit_verification(valid_commit(&a, next, Some(&issued))));
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let landed = loop {
        let stored = store.activation("act-r").expect("read").expect("exists");
        if stored.version == a.version + 1 || Instant::now() > deadline {
            break stored;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((landed.version, landed.counter), (a.version + 1, 1));
    let nonce = store.nonce("nonce-r").expect("read").expect("exists");
    assert!(
        nonce.consumed_at.is_some(),
        "the nonce was consumed with it"
    );
    assert_eq!(store.audit_head().expect("head").seq, 1);
    assert!(verify_audit_chain(&store).expect("walk").is_intact());
}

/// With `tls_ca_file`, every session of the store is TLS, the server's certificate must chain to that
/// CA and name the host the URL names; there is no fallback to plain TCP.
#[test]
fn tls_sessions_check_the_servers_certificate_and_name() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let Some(settings) = db.tls_settings(4) else {
        return;
    };
    assert!(settings.uses_tls());
    assert!(!db.settings(4).uses_tls());
    let store = PgStore::open(&settings, chain("tls")).expect("open over TLS");
    store.insert_activation(&activation("t1"), None).unwrap();
    assert!(store.activation("t1").unwrap().is_some());
    let (tls, plain) = db.sessions_by_tls();
    assert!(
        tls >= 1 && plain == 0,
        "{tls} TLS and {plain} plain sessions"
    );
    drop(store);

    // A CA that did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger-ca.pem");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(&stranger, other.cert.pem()).unwrap();
    let refused = PgStore::open(
        &db.settings_with(1, Some(stranger)).expect("settings"),
        chain("tls"),
    )
    .expect_err("a server certificate from another CA is refused");
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");

    // The right CA, but the URL names a host the certificate does not (reached at 127.0.0.1).
    let url = db.url();
    let (before, after) = url
        .split_once("@127.0.0.1:")
        .expect("the test URL names 127.0.0.1");
    let misnamed = format!("{before}@db.invalid:{after}?hostaddr=127.0.0.1");
    let ca = postgres_server::server_ca_file().expect("the CA tls_settings used");
    let settings = offline_signer::store::RawPostgresSettings {
        tls_ca_file: Some(ca),
        ..Default::default()
    }
    .validate_with_env(std::path::Path::new("/"), |name| {
        (name == offline_signer::store::DATABASE_URL_ENV).then(|| misnamed.clone())
    })
    .expect("settings");
    let refused = PgStore::open(&settings, chain("tls")).expect_err("a misnamed server is refused");
    assert!(
        refused
            .to_string()
            .contains("not valid for name \"db.invalid\""),
        "{refused}"
    );

    // A file that holds no certificate is refused when the settings are checked.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = db
        .settings_with(1, Some(empty))
        .expect_err("no certificate");
    assert!(
        e.contains("tls_ca_file") && e.contains("no CERTIFICATE"),
        "{e}"
    );
}
