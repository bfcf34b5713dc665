//! Durability of acknowledged writes, on sled and on PostgreSQL from one scenario list: 64 concurrent
//! writers, and a child process that commits in a loop and is killed with SIGKILL at random moments.
//! sled's group commit (one flush for many queued writers) is checked on sled alone.

use offline_signer_testkit::store_backends as backends;
use offline_signer_testkit::store_fixtures as fixtures;
use offline_signer_testkit::store_scenarios;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use backends::Backend;
use fixtures::{APP, activation, application, nonce_for, t, verify_draft};
use offline_signer::store::{
    AuditDraft, AuditEntry, AuditOperation, AuditOutcome, SledStore, Store, StoreError,
    VerificationCommit, verify_audit_chain,
};
use rand::Rng;

store_scenarios!(
    many_threads_committing_freely_are_all_durable,
    commit_loop_acknowledges_durable_commits,
    acknowledged_commits_survive_sigkill,
);

/// One verification commit for activation `id`: issue a nonce, consume it, move the counter.
/// Returns `(counter, audit seq, nonce)` once the commit is durable.
fn verify_once(store: &dyn Store, id: &str) -> (u64, u64, String) {
    let a = store
        .activation(id)
        .expect("read")
        .expect("activation exists");
    let nonce = uuid::Uuid::new_v4().to_string();
    let issue_audit = AuditDraft {
        activation_id: Some(id.to_owned()),
        ..AuditDraft::new(
            t(5),
            AuditOperation::CreatePersonalized,
            AuditOutcome::Created,
        )
    };
    store
        .issue_nonce(&nonce_for(&nonce, id, t(300_000)), Some(issue_audit))
        .expect("issue nonce");
    let mut next = a.clone();
    next.counter += 1;
    let done = store
        .commit_verification(VerificationCommit {
            audit: verify_draft(&a, next.counter, AuditOutcome::Valid),
            activation: next,
            consume_nonce: Some(nonce_for(&nonce, id, t(300_000))),
        })
        .expect("commit verification");
    let seq = done.audit.expect("verification is audited").seq;
    (done.activation.counter, seq, nonce)
}

fn setup(store: &dyn Store, ids: &[String]) {
    match store.create_application(&application(APP), None) {
        Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => panic!("create application: {e}"),
    }
    for id in ids {
        match store.insert_activation(&activation(id), None) {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("insert activation: {e}"),
        }
    }
}

/// Every acknowledged commit `(activation id, counter, audit seq, nonce)` is in the store, and the chain
/// is intact.
fn check_acknowledged<B: Backend>(place: &B, acks: &[(String, u64, u64, String)]) {
    let store = place.open();
    let report = verify_audit_chain(&store).expect("walk the chain");
    assert_eq!(
        report.first_broken, None,
        "chain after {} records",
        report.records
    );
    for (id, counter, seq, nonce) in acks {
        let a = store
            .activation(id)
            .expect("read")
            .expect("acknowledged activation exists");
        assert!(
            a.counter >= *counter,
            "{id}: stored counter {} < acknowledged {counter}",
            a.counter
        );
        // The record is at `seq` of one of the writer's lanes (PostgreSQL spreads concurrent writes).
        let found = store.audit_lanes().iter().any(|lane| {
            store
                .audit_chain_entries(lane, *seq, 1)
                .expect("read audit")
                .into_iter()
                .any(|entry| match entry {
                    AuditEntry::Record(rec) => {
                        rec.seq == *seq
                            && rec.activation_id.as_deref() == Some(id.as_str())
                            && rec.counter_after == Some(*counter)
                    }
                    AuditEntry::Undecodable { .. } => false,
                })
        });
        assert!(found, "acknowledged audit record {seq} of {id} is missing");
        let n = store
            .nonce(nonce)
            .expect("read nonce")
            .expect("acknowledged nonce registered");
        assert!(
            n.consumed_at.is_some(),
            "acknowledged nonce {nonce} not consumed"
        );
    }
}

/// sled only: PostgreSQL groups commits inside the server, out of the store's sight.
#[test]
fn group_commit_serves_queued_writers_with_one_flush() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SledStore::open(dir.path()).expect("open"));
    let ids: Vec<String> = (0..64).map(|i| format!("gc-{i}")).collect();
    setup(store.as_ref(), &ids);
    for id in &ids {
        store
            .issue_nonce(&nonce_for(&format!("n-{id}"), id, t(300_000)), None)
            .expect("nonce");
    }

    // Issued nonces are flushed in the background: make them durable now, so that no flush of theirs
    // is still running when the count is read.
    store.sync().expect("sync");
    let before = store.flush_count();
    let hold = store.hold_flushes();
    let threads: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = Arc::clone(&store);
            let id = id.clone();
            std::thread::spawn(move || {
                let a = store.activation(&id).expect("read").expect("exists");
                let mut next = a.clone();
                next.counter = 1;
                store.commit_verification(VerificationCommit {
                    audit: verify_draft(&a, 1, AuditOutcome::Valid),
                    activation: next,
                    consume_nonce: Some(nonce_for(&format!("n-{id}"), &id, t(300_000))),
                })
            })
        })
        .collect();
    // Wait until every writer has applied its write and waits for a flush that cannot start yet. (A
    // writer that returns without waiting ends the wait too, and then fails the flush count below.)
    while store.durability_waiters() < ids.len() && !threads.iter().any(|th| th.is_finished()) {
        std::thread::yield_now();
    }
    assert_eq!(store.flush_count(), before, "no flush may run while held");
    drop(hold);
    for th in threads {
        th.join()
            .expect("writer does not panic")
            .expect("commit succeeds");
    }
    assert_eq!(
        store.flush_count() - before,
        1,
        "64 queued commits share one flush"
    );
    drop(store);

    let store = SledStore::open(dir.path()).expect("reopen");
    for id in &ids {
        assert_eq!(
            store.activation(id).expect("read").expect("exists").counter,
            1,
            "{id}"
        );
    }
    let report = verify_audit_chain(&store).expect("walk");
    assert_eq!((report.records, report.first_broken), (64, None));
}

fn many_threads_committing_freely_are_all_durable<B: Backend>() {
    let Some(place) = B::fresh() else { return };
    let store = Arc::new(place.open());
    let ids: Vec<String> = (0..64).map(|i| format!("free-{i}")).collect();
    setup(store.as_ref(), &ids);
    let before = B::flush_count(&store);
    let threads: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = Arc::clone(&store);
            let id = id.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| verify_once(store.as_ref(), &id))
                    .map(|(c, s, n)| (id.clone(), c, s, n))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acks: Vec<_> = threads
        .into_iter()
        .flat_map(|th| th.join().expect("writer does not panic"))
        .collect();
    // Each verify_once makes two durable writes; grouping can only lower the flush count.
    if let (Some(before), Some(after)) = (before, B::flush_count(&store)) {
        let writes = 2 * acks.len() as u64;
        assert!(after - before <= writes);
    }
    drop(store);
    check_acknowledged(&place, &acks);
    let store = place.open();
    for id in &ids {
        assert_eq!(
            store.activation(id).expect("read").expect("exists").counter,
            5
        );
    }
}

/// Set for the crash child: where its store lives ([`Backend::location`]).
const CHILD_LOCATION_ENV: &str = "OFFLINE_SIGNER_STORE_CRASH_CHILD_LOCATION";
const LOOP_TEST: &str = "commit_loop_acknowledges_durable_commits";
const WRITERS: usize = 4;

/// Commits in a loop from [`WRITERS`] threads and prints `ACK <id> <counter> <seq> <nonce>` after each
/// commit returns. Runs `iterations` per thread, or (as the crash child) until killed.
fn commit_loop<B: Backend>(place: &B, iterations: Option<u64>) -> Vec<(String, u64, u64, String)> {
    let store = Arc::new(place.open());
    let ids: Vec<String> = (0..WRITERS).map(|i| format!("crash-{i}")).collect();
    setup(store.as_ref(), &ids);
    let threads: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                // As the crash child, a safety cap stops an orphan that nobody kills.
                for _ in 0..iterations.unwrap_or(1_000_000) {
                    let (counter, seq, nonce) = verify_once(store.as_ref(), &id);
                    let line = format!("ACK {id} {counter} {seq} {nonce}\n");
                    if std::io::stdout().lock().write_all(line.as_bytes()).is_err() {
                        // The parent is gone.
                        std::process::exit(0);
                    }
                    acks.push((id.clone(), counter, seq, nonce));
                }
                acks
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|th| th.join().expect("writer does not panic"))
        .collect()
}

/// In-process, this is a bounded run of the same loop the crash child runs; as the crash child (the
/// environment variable set by `acknowledged_commits_survive_sigkill`) it loops until killed.
fn commit_loop_acknowledges_durable_commits<B: Backend>() {
    if let Ok(location) = std::env::var(CHILD_LOCATION_ENV) {
        commit_loop(&B::at_location(&location), None);
        return;
    }
    let Some(place) = B::fresh() else { return };
    let acks = commit_loop(&place, Some(25));
    assert_eq!(acks.len(), WRITERS * 25);
    check_acknowledged(&place, &acks);
}

fn parse_ack(line: &str) -> Option<(String, u64, u64, String)> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let id = parts.next()?.to_owned();
    let counter = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nonce = parts.next()?.to_owned();
    parts.next().is_none().then_some((id, counter, seq, nonce))
}

fn acknowledged_commits_survive_sigkill<B: Backend>() {
    const ROUNDS: u64 = 5;
    let Some(place) = B::fresh() else { return };
    let child_test = format!("{}::{LOOP_TEST}", B::NAME);
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut rng = rand::thread_rng();
    let mut all_acks = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([&child_test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_LOCATION_ENV, place.location())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the test binary as the crash child");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let kill_after = rng.gen_range(1..=60);
        let mut round_acks = Vec::new();
        while round_acks.len() < kill_after {
            match lines.next() {
                Some(Ok(line)) => round_acks.extend(parse_ack(&line)),
                Some(Err(e)) => panic!("reading the child's output: {e}"),
                None => {
                    panic!("round {round}: the child stopped on its own (see its stderr above)")
                }
            }
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert_eq!(
            status.code(),
            None,
            "round {round}: the child must die by the signal"
        );
        // Lines written before the kill are still in the pipe: they were acknowledged too. A torn last
        // line does not parse and is ignored (its commit may or may not be there).
        for line in lines.map_while(Result::ok) {
            round_acks.extend(parse_ack(&line));
        }
        all_acks.extend(round_acks);
        check_acknowledged(&place, &all_acks);
    }
    // Each round can leave at most one durable-but-unacknowledged commit per writer.
    let store = place.open();
    let mut max_acked: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, counter, _, _) in &all_acks {
        let m = max_acked.entry(id.as_str()).or_default();
        *m = (*m).max(*counter);
    }
    for (id, acked) in max_acked {
        let stored = store.activation(id).expect("read").expect("exists").counter;
        assert!(
            stored >= acked && stored - acked <= ROUNDS,
            "{id}: stored {stored}, acked {acked}"
        );
    }
}
