//! What waiting for an `fsync` costs a payload creation (issue 15 item 4): issued nonces per second
//! on a scratch sled store in the given folder (default: a temporary folder under `$TMPDIR`), with
//! 1 and 32 writer threads, issued the way the service issues them (`issue_nonce`, not waited for)
//! and the way it did before (`issue_nonce` followed by a flush the writer waits for, group commit).
//!
//! `cargo run --example nonce_fsync [--release] [DIR] [SECONDS]`. Prints one line per figure. A
//! measurement for ARCHITECTURE.md, not a test: nothing asserts on a duration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use offline_signer::model::Timestamp;
use offline_signer::store::{IssuedNonce, NonceOwner, SledStore, Store, StoreError};

fn run(
    store: &Arc<SledStore>,
    writers: usize,
    wait: bool,
    seconds: f64,
) -> Result<f64, StoreError> {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(store);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> Result<u64, StoreError> {
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let now = Timestamp::now();
                    store.issue_nonce(
                        &IssuedNonce {
                            nonce: uuid::Uuid::new_v4().to_string(),
                            issued_for: NonceOwner::Activation(format!("activation-{w}")),
                            issued_at: now,
                            expires_at: now.saturating_add(Duration::from_secs(300)),
                            consumed_at: None,
                        },
                        None,
                    )?;
                    if wait {
                        store.sync()?;
                    }
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| StoreError::Io {
            detail: "a writer panicked".into(),
        })??;
    }
    // The writes issued without waiting are made durable before the next figure starts.
    store.sync()?;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let scratch = tempfile::tempdir()?;
    let dir = args
        .next()
        .map_or_else(|| scratch.path().join("store"), std::path::PathBuf::from);
    let seconds: f64 = args.next().map_or(Ok(3.0), |s| s.parse())?;
    let store = Arc::new(SledStore::open(&dir)?);
    for writers in [1, 32] {
        for wait in [true, false] {
            let flushes = store.flush_count();
            let rate = run(&store, writers, wait, seconds)?;
            println!(
                "writers={writers:>2} {:<28} {rate:>9.0} nonces/s  ({} flushes)",
                if wait {
                    "issue + wait for the flush"
                } else {
                    "issue, flush not waited for"
                },
                store.flush_count() - flushes
            );
        }
    }
    Ok(())
}
