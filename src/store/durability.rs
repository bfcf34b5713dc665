//! When sled's writes reach the disk: the flush every durable write waits for ([`Durability`]), the
//! poison a failed flush leaves behind, and the background flush of writes that need not wait
//! ([`LazyFlusher`]: issued nonces).
//!
//! **A failed flush poisons the handle.** sled applies a write to its in-memory pages and log
//! buffers before the flush that makes it durable. When that flush fails, memory holds writes the
//! disk may never get, and a later flush that "succeeds" proves nothing: after a failed `fsync` the
//! kernel may already have dropped the dirty pages and marked them clean (the reason PostgreSQL
//! stops on a failed `fsync` rather than retrying it). So the first failed flush fails every writer
//! it covered with [`StoreError::OutcomeUnknown`] and poisons the handle: every later call, read or
//! write, answers [`StoreError::Unavailable`] (HTTP 503 `ERR_STORE_UNAVAILABLE`) without touching sled, and no further flush is tried. The
//! process therefore never reports a state the disk may lack; it reports nothing until the store is
//! reopened (the service restarted), and then the disk is the truth. sled writes its log in order
//! and replays a prefix of it, so what the disk holds is every acknowledged write plus possibly some
//! of the writes whose callers were told the outcome is unknown, each whole or not at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use super::StoreError;
use super::group_commit::{FlushHold, GroupCommit};

/// The flush shared by the writers of one sled database and its background flusher.
pub(super) struct Durability {
    db: sled::Db,
    commits: GroupCommit,
    /// Why the handle refuses work: set by the first failed flush, never cleared.
    poisoned: OnceLock<String>,
    /// Test hook: the next flush fails without writing anything (see [`Durability::fail_next_flush`]).
    fail_next: AtomicBool,
}

impl Durability {
    pub(super) fn new(db: sled::Db) -> Self {
        Self {
            db,
            commits: GroupCommit::default(),
            poisoned: OnceLock::new(),
            fail_next: AtomicBool::new(false),
        }
    }

    /// `Ok` unless a flush failed on this handle (module docs).
    pub(super) fn usable(&self) -> Result<(), StoreError> {
        match self.poisoned.get() {
            None => Ok(()),
            Some(why) => Err(StoreError::Unavailable {
                detail: format!(
                    "the store refuses work since a flush failed ({why}); \
                     restart the service to reopen it"
                ),
            }),
        }
    }

    /// One flush: everything applied so far reaches the disk, or the handle is poisoned.
    fn flush(&self) -> Result<(), String> {
        if let Some(why) = self.poisoned.get() {
            return Err(why.clone());
        }
        let outcome = if self.fail_next.load(Ordering::Relaxed)
            && self.fail_next.swap(false, Ordering::SeqCst)
        {
            Err("injected flush failure (test hook)".to_owned())
        } else {
            self.db.flush().map(drop).map_err(|e| e.to_string())
        };
        if let Err(why) = &outcome {
            tracing::error!(
                error = %why,
                "a store flush failed: the store refuses all work until the service restarts"
            );
            let _ = self.poisoned.set(why.clone());
        }
        outcome
    }

    /// Blocks until every write this thread has applied is on disk (group commit).
    pub(super) fn durable(&self) -> Result<(), StoreError> {
        self.commits
            .make_durable(|| self.flush())
            .map_err(|failed| StoreError::OutcomeUnknown { detail: failed.0 })
    }

    /// A ticket for a write this thread has applied, to be made durable without waiting.
    fn ticket(&self) -> u64 {
        self.commits.ticket()
    }

    /// Flushes performed by this handle.
    pub(super) fn flushes(&self) -> u64 {
        self.commits.flushes()
    }

    /// Writers waiting in [`Durability::durable`].
    pub(super) fn waiting(&self) -> usize {
        self.commits.waiting()
    }

    /// See [`GroupCommit::hold`].
    pub(super) fn hold(&self) -> FlushHold<'_> {
        self.commits.hold()
    }

    /// Test hook: the next flush fails as a failed `fsync` would, without writing anything.
    pub(super) fn fail_next_flush(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }
}

/// What the writers tell the background flusher.
#[derive(Default)]
struct LazyState {
    /// The highest ticket not yet handed to a flush.
    pending: Option<u64>,
    stop: bool,
}

/// A thread that makes writes durable without their writers waiting: a writer applies its write,
/// draws a ticket and calls [`LazyFlusher::soon`]; the thread then waits for that ticket like any
/// writer (sharing flushes with the waiting writers, held by a [`FlushHold`], refused by the poison).
/// A ticket another writer's flush already covered costs nothing.
pub(super) struct LazyFlusher {
    shared: Arc<(Mutex<LazyState>, Condvar)>,
    durability: Arc<Durability>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LazyFlusher {
    pub(super) fn start(durability: Arc<Durability>) -> Result<Self, StoreError> {
        let shared = Arc::new((Mutex::new(LazyState::default()), Condvar::new()));
        let thread = {
            let shared = Arc::clone(&shared);
            let durability = Arc::clone(&durability);
            std::thread::Builder::new()
                .name("store-lazy-flush".into())
                .spawn(move || run(&shared, &durability))
                .map_err(|e| StoreError::Io {
                    detail: format!("cannot start the store's flush thread: {e}"),
                })?
        };
        Ok(Self {
            shared,
            durability,
            thread: Some(thread),
        })
    }

    /// Makes the write this thread has just applied durable soon, without waiting for it.
    pub(super) fn soon(&self) {
        let ticket = self.durability.ticket();
        let (state, wake) = &*self.shared;
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        st.pending = Some(st.pending.map_or(ticket, |p| p.max(ticket)));
        wake.notify_one();
    }
}

fn run(shared: &(Mutex<LazyState>, Condvar), durability: &Durability) {
    let (state, wake) = shared;
    loop {
        let ticket = {
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(ticket) = st.pending.take() {
                    break ticket;
                }
                if st.stop {
                    return;
                }
                st = wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
        };
        // A failure poisons the handle (and is logged there); the writers were already answered.
        let _ = durability.commits.wait_for(ticket, || durability.flush());
    }
}

impl Drop for LazyFlusher {
    /// Flushes what is pending, then stops the thread (so that it lets go of the database).
    fn drop(&mut self) {
        {
            let (state, wake) = &*self.shared;
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            st.stop = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
