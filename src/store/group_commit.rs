//! Group commit: makes writes durable with as few `fsync`s as concurrency allows.
//!
//! A writer first applies its write (in memory, in sled's log buffers), then calls
//! [`GroupCommit::make_durable`], which gives it a ticket: the write sequence number `n`. Whoever finds no
//! flush running becomes the leader: it notes the highest ticket issued so far (`target`), runs one
//! flush outside the lock, marks everything up to `target` durable and wakes all waiters. A waiter whose
//! ticket is covered returns; the others elect the next leader among themselves. Because a ticket is
//! drawn only after its write is applied, a flush that starts after the ticket was drawn covers the
//! write. N writers that arrive while one flush runs therefore share the next flush.
//!
//! Gathering: a leader that arrives within [`GATHER_WINDOW`] of the end of a previous flush that
//! served more than one write (the store has concurrent writers) first waits up to that window for
//! the writers still applying their writes, so that one flush serves them too. Each flush costs far
//! more than its `fsync`: sled hands the write of its log buffer to its own I/O thread pool, whose
//! condition variable wakes every idle I/O thread (seven or more context switches per flush, measured
//! with `/proc/PID/task/*/status`). A writer that comes after a quiet spell flushes at once, and so
//! does a lone writer in a tight loop: each of its flushes serves one write, so there is nobody to
//! gather (the first form of this window, by time alone, made that writer wait the window every time:
//! 8.3k → 1.9k commits/s).
//!
//! A write that need not wait draws its ticket with [`GroupCommit::ticket`]; whoever later waits for it
//! with [`GroupCommit::wait_for`] flushes only if no flush covered it meanwhile.
//!
//! For tests, [`GroupCommit::hold`] stops leaders from starting a flush until the hold is dropped, so a
//! test can queue many writers deterministically and then see that one flush serves them all.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a leader under concurrent load waits for more writers before it flushes (see the module
/// documentation and `docs/performance.md`, "Round 2 work log").
const GATHER_WINDOW: Duration = Duration::from_micros(300);

/// The state shared by all writers of one store.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<FlushState>,
    wake: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Highest ticket handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// The most recent flush that failed covered tickets up to here (those writers get an error).
    failed_through: u64,
    /// Detail of that failure, for the error message.
    failure: String,
    /// A leader is flushing right now.
    flushing: bool,
    /// Test hook: no flush may start.
    held: bool,
    /// Writers currently inside `make_durable`.
    waiting: usize,
    /// Flushes performed.
    flushes: u64,
    /// When the most recent flush ended.
    last_flush_end: Option<Instant>,
    /// The highest ticket the most recent flush was started for.
    last_target: u64,
    /// How many tickets the most recent flush served (its target minus the one before).
    last_served: u64,
    /// Flushes whose leader waited for more writers first.
    gathered: u64,
}

/// Why a write could not be made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FlushFailed(pub String);

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, FlushState> {
        // No code panics while holding this lock; if one ever did, the counters are still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until a write that has already been applied is durable, running `flush` if this caller is
    /// elected leader. `flush` must make every write applied before it starts durable.
    pub(super) fn make_durable<F>(&self, flush: F) -> Result<(), FlushFailed>
    where
        F: Fn() -> Result<(), String>,
    {
        let mut st = self.lock();
        st.issued += 1;
        let ticket = st.issued;
        st.waiting += 1;
        let (mut st, result) = self.wait_locked(st, ticket, &flush);
        st.waiting -= 1;
        result
    }

    /// A ticket for a write that has already been applied, without waiting for it: the next flush
    /// covers it. Hand it to [`GroupCommit::wait_for`] to wait later (or never).
    pub(super) fn ticket(&self) -> u64 {
        let mut st = self.lock();
        st.issued += 1;
        st.issued
    }

    /// Blocks until `ticket` is durable, flushing as leader if needed; returns at once, without a
    /// flush, when a flush already covered it. Not counted in [`GroupCommit::waiting`].
    pub(super) fn wait_for<F>(&self, ticket: u64, flush: F) -> Result<(), FlushFailed>
    where
        F: Fn() -> Result<(), String>,
    {
        self.wait_locked(self.lock(), ticket, &flush).1
    }

    fn wait_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, FlushState>,
        ticket: u64,
        flush: &dyn Fn() -> Result<(), String>,
    ) -> (MutexGuard<'a, FlushState>, Result<(), FlushFailed>) {
        loop {
            if st.durable >= ticket {
                return (st, Ok(()));
            }
            if st.failed_through >= ticket {
                let failure = FlushFailed(st.failure.clone());
                return (st, Err(failure));
            }
            if !st.flushing && !st.held {
                st.flushing = true;
                if gathers(st.last_served, st.last_flush_end.map(|end| end.elapsed())) {
                    st.gathered += 1;
                    // Wake-ups during the window (a hold released) only end it early.
                    st = self
                        .wake
                        .wait_timeout(st, GATHER_WINDOW)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                let target = st.issued;
                drop(st);
                let outcome = flush();
                st = self.lock();
                st.flushing = false;
                st.flushes += 1;
                st.last_flush_end = Some(Instant::now());
                st.last_served = target.saturating_sub(st.last_target);
                st.last_target = st.last_target.max(target);
                match outcome {
                    Ok(()) => st.durable = st.durable.max(target),
                    Err(detail) => {
                        st.failed_through = st.failed_through.max(target);
                        st.failure = detail;
                    }
                }
                self.wake.notify_all();
                continue;
            }
            st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Flushes performed so far.
    pub(super) fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    /// Flushes whose leader waited for more writers first (test hook).
    #[cfg(test)]
    fn gathered(&self) -> u64 {
        self.lock().gathered
    }

    /// Writers currently waiting for durability (test hook).
    pub(super) fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// Stops any flush from starting until the returned guard is dropped (test hook).
    pub(super) fn hold(&self) -> FlushHold<'_> {
        self.lock().held = true;
        FlushHold(self)
    }
}

/// Whether a new leader waits for more writers: only when the previous flush served more than one
/// write (there are concurrent writers) and ended less than [`GATHER_WINDOW`] ago (`since_last`).
fn gathers(last_served: u64, since_last: Option<Duration>) -> bool {
    last_served > 1 && since_last.is_some_and(|d| d < GATHER_WINDOW)
}

/// Holds back flushes while alive; see [`GroupCommit::hold`].
#[must_use = "flushes resume as soon as the hold is dropped"]
pub struct FlushHold<'a>(&'a GroupCommit);

impl Drop for FlushHold<'_> {
    fn drop(&mut self) {
        self.0.lock().held = false;
        self.0.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn queued_writers_share_one_flush() {
        let gc = Arc::new(GroupCommit::default());
        let calls = Arc::new(AtomicU64::new(0));
        let hold = gc.hold();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let gc = Arc::clone(&gc);
                let calls = Arc::clone(&calls);
                std::thread::spawn(move || {
                    gc.make_durable(|| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        while gc.waiting() < 16 {
            std::thread::yield_now();
        }
        drop(hold);
        for t in threads {
            assert_eq!(t.join().expect("writer thread does not panic"), Ok(()));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(gc.flushes(), 1);
    }

    #[test]
    fn a_lone_writer_never_waits_to_gather() {
        let gc = GroupCommit::default();
        for _ in 0..200 {
            assert_eq!(gc.make_durable(|| Ok(())), Ok(()));
        }
        assert_eq!(gc.flushes(), 200);
        assert_eq!(gc.gathered(), 0);
    }

    #[test]
    fn only_a_leader_right_after_a_shared_flush_gathers() {
        let soon = Some(GATHER_WINDOW / 2);
        let late = Some(GATHER_WINDOW * 2);
        assert!(gathers(4, soon));
        assert!(gathers(2, soon));
        // A lone writer's flush served one write; a flush long ago says nothing about now.
        assert!(!gathers(1, soon));
        assert!(!gathers(0, soon));
        assert!(!gathers(4, late));
        assert!(!gathers(4, None));
    }

    #[test]
    fn a_ticket_covered_by_another_flush_costs_no_flush() {
        let gc = GroupCommit::default();
        let lazy = gc.ticket();
        assert_eq!(gc.make_durable(|| Ok(())), Ok(()));
        assert_eq!(gc.wait_for(lazy, || Err("must not run".into())), Ok(()));
        assert_eq!(gc.flushes(), 1);
        let lazy = gc.ticket();
        assert_eq!(gc.wait_for(lazy, || Ok(())), Ok(()));
        assert_eq!(gc.flushes(), 2);
    }

    #[test]
    fn a_failed_flush_fails_its_writers_and_the_next_one_recovers() {
        let gc = GroupCommit::default();
        assert_eq!(
            gc.make_durable(|| Err("disk full".into())),
            Err(FlushFailed("disk full".into()))
        );
        assert_eq!(gc.make_durable(|| Ok(())), Ok(()));
        assert_eq!(gc.flushes(), 2);
    }
}
