//! Sessions, threads and faults: the token connection state machine and the worker threads.
//!
//! One `Pkcs11` context per process ([`Shared::lib`]). While the token is usable the state is
//! [`State::Live`]: one logged-in session kept for the life of the connection (the login belongs
//! to it) and one session slot per worker thread, opened lazily. Worker `i` only ever touches slot
//! `i`, under a read lock of the state, so workers never contend.
//!
//! Faults: a session-level return code drops that worker's session and the operation is retried
//! once on a fresh one; a second failure tears the connection down (all sessions closed, then
//! `C_Finalize`) and re-connects (`C_Initialize`, find the token by label, log in once). While it
//! cannot, the state is [`State::Down`] and calls answer [`SignerError::TokenUnavailable`] at once
//! until the back-off delay has passed; the next call then tries again. PIN errors move to
//! [`State::Fatal`]: never retried.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use secrecy::SecretString;

use super::ops::{Ctx, HandleCache, OpError, confirm_alive};
use super::token::{self, Fault};
use crate::signer::config::TokenSelector;
use crate::signer::{OpenError, SignerError};

/// First back-off delay after a failed re-connection.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest back-off delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a start looks again for a token that is not found (see `Shared::connect_at_start`).
const START_TOKEN_WAIT: Duration = Duration::from_secs(3);
/// The pause between two looks.
const START_TOKEN_RETRY: Duration = Duration::from_millis(200);

/// Shortest time between two re-reads of the token asked for by a key that was not found
/// ([`Shared::reread`]), unless forced.
const REREAD_SPACING: Duration = Duration::from_secs(1);

/// Set while a [`BeforeCallHook`] is armed: the only cost of the hook when it is not (one relaxed
/// load per operation).
static BEFORE_CALL_ARMED: AtomicBool = AtomicBool::new(false);

/// The armed hook, if any.
type Hook = Arc<dyn Fn() + Send + Sync>;
static BEFORE_CALL: Mutex<Option<Hook>> = Mutex::new(None);

/// Test hook, not reachable from any configuration: while the returned guard lives, every
/// operation runs `hook` on its worker thread after it has checked out its session and before its
/// first PKCS#11 call (the window in which the token can vanish under a request that already holds
/// a session). One hook per process; arming another replaces it.
#[doc(hidden)]
pub fn arm_before_call(hook: impl Fn() + Send + Sync + 'static) -> BeforeCallHook {
    *lock(&BEFORE_CALL) = Some(Arc::new(hook));
    BEFORE_CALL_ARMED.store(true, Ordering::SeqCst);
    BeforeCallHook(())
}

/// Disarms the hook of [`arm_before_call`] when dropped.
#[doc(hidden)]
#[must_use = "the hook is disarmed when the guard is dropped"]
pub struct BeforeCallHook(());

impl Drop for BeforeCallHook {
    fn drop(&mut self) {
        BEFORE_CALL_ARMED.store(false, Ordering::SeqCst);
        *lock(&BEFORE_CALL) = None;
    }
}

fn before_call() {
    if BEFORE_CALL_ARMED.load(Ordering::Relaxed) {
        let hook = lock(&BEFORE_CALL).clone();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// A unit of work for a worker: gets the shared state and the worker's index.
pub(crate) type Job = Box<dyn FnOnce(&Shared, usize) + Send>;

/// A usable connection.
pub(crate) struct Live {
    generation: u64,
    slot: Slot,
    /// Keeps the login for the life of the connection; never used for operations.
    login: Mutex<Option<Session>>,
    /// One session per worker, opened on first use, with the key handles it has found.
    sessions: Vec<Mutex<Option<WorkerSession>>>,
}

/// A worker's session and the handles of the token keys it has looked up. The handles belong to
/// the session's connection: they go with the session (a fault, a re-login), never outlive it.
pub(crate) struct WorkerSession {
    session: Session,
    handles: HandleCache,
}

impl WorkerSession {
    fn new(session: Session) -> Self {
        Self {
            session,
            handles: HandleCache::default(),
        }
    }

    fn close(self) {
        let _ = self.session.close();
    }
}

pub(crate) enum State {
    Live(Live),
    Down { retry_at: Instant, delay: Duration },
    Fatal(SignerError),
}

/// What all workers share.
pub(crate) struct Shared {
    lib: Pkcs11,
    selector: TokenSelector,
    pin: SecretString,
    workers: usize,
    state: RwLock<State>,
    generations: std::sync::atomic::AtomicU64,
    /// When the token was last read again on request ([`Shared::reread`]).
    last_reread: Mutex<Option<Instant>>,
    /// Told by the last worker once the shared state is gone: sessions closed, library finalized
    /// and unloaded.
    on_closed: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("selector", &self.selector)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning only means a panic elsewhere; the guarded session is still a plain handle.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Connects for the first time. Errors are returned as they are (start-up reports them).
    pub(crate) fn connect_first(
        lib: Pkcs11,
        selector: TokenSelector,
        pin: SecretString,
        requested_workers: usize,
    ) -> Result<Arc<Shared>, OpenError> {
        let mut shared = Shared {
            lib,
            selector,
            pin,
            workers: requested_workers,
            state: RwLock::new(State::Down {
                retry_at: Instant::now(),
                delay: BACKOFF_START,
            }),
            generations: std::sync::atomic::AtomicU64::new(0),
            last_reread: Mutex::new(None),
            on_closed: Mutex::new(None),
        };
        let live = shared.connect_at_start(requested_workers)?;
        let limit = shared.session_limit(live.slot);
        if let Some(limit) = limit {
            if requested_workers > limit {
                tracing::warn!(
                    requested = requested_workers,
                    allowed = limit,
                    "pool_size lowered to fit the token's session limit"
                );
                shared.workers = limit;
            }
        }
        let live = Live {
            sessions: (0..shared.workers).map(|_| Mutex::new(None)).collect(),
            ..live
        };
        shared.state = RwLock::new(State::Live(live));
        Ok(Arc::new(shared))
    }

    /// Registers the channel told when the shared state is finally dropped (by the last worker,
    /// after the drop: see [`start_workers`]).
    pub(crate) fn notify_when_closed(&self, tx: tokio::sync::oneshot::Sender<()>) {
        *lock(&self.on_closed) = Some(tx);
    }

    /// Number of worker threads to start.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Sessions the workers may open: the token's limit minus the login session.
    fn session_limit(&self, slot: Slot) -> Option<usize> {
        use cryptoki::slot::Limit;
        let info = self.lib.get_token_info(slot).ok()?;
        let cap = |l: Limit| match l {
            Limit::Max(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Limit::Unavailable | Limit::Infinite => None,
        };
        let max = match (
            cap(info.max_session_count()),
            cap(info.max_rw_session_count()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        Some(max.saturating_sub(1).max(1))
    }

    /// `C_Initialize`, find the token, open the login session, log in (once).
    /// On failure the library is finalized again so that the next try sees a fresh token list.
    /// [`Shared::connect`] for the first time, looking again for up to [`START_TOKEN_WAIT`] at a
    /// token that is not found or that has no user PIN: SoftHSM reads its token folder at
    /// `C_Initialize` and a token's own file at login, and a file another process is rewriting at
    /// that moment (a second instance starting at the same time: its login and its key generation
    /// rewrite the token's files) reads as no token, or as a token without a user PIN (seen in
    /// `tests/e2e_multi.rs`: `CKR_USER_PIN_NOT_INITIALIZED` about one start in twenty). Neither
    /// costs a PIN attempt. Any other error is final at once.
    fn connect_at_start(&self, workers: usize) -> Result<Live, OpenError> {
        let deadline = Instant::now() + START_TOKEN_WAIT;
        loop {
            match self.connect(workers) {
                Err(
                    OpenError::TokenNotFound { selector }
                    | OpenError::UserPinNotInitialized { selector },
                ) if Instant::now() < deadline => {
                    tracing::info!(token = %selector, "token not found or not readable yet; looking again");
                    std::thread::sleep(START_TOKEN_RETRY);
                }
                other => return other,
            }
        }
    }

    fn connect(&self, workers: usize) -> Result<Live, OpenError> {
        token::initialize(&self.lib).map_err(|e| match token::classify(&e) {
            Fault::Session(_) => SignerError::TokenUnavailable,
            Fault::Pin(err) | Fault::Other(err) => err,
        })?;
        let attempt = || -> Result<Live, OpenError> {
            let slot = token::find_slot(&self.lib, &self.selector)?;
            let login = self
                .lib
                .open_rw_session(slot)
                .map_err(|e| match token::classify(&e) {
                    Fault::Session(_) => SignerError::TokenUnavailable,
                    Fault::Pin(err) | Fault::Other(err) => err,
                })?;
            token::login(&login, &self.pin, &self.selector)?;
            let generation = self
                .generations
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            Ok(Live {
                generation,
                slot,
                login: Mutex::new(Some(login)),
                sessions: (0..workers).map(|_| Mutex::new(None)).collect(),
            })
        };
        match attempt() {
            Ok(live) => {
                tracing::info!(token = %self.selector, "logged in to the token");
                Ok(live)
            }
            Err(e) => {
                self.finalize();
                Err(e)
            }
        }
    }

    fn finalize(&self) {
        if let Err(e) = self.lib.clone().finalize() {
            tracing::debug!(error = %e, "C_Finalize failed");
        }
    }

    /// Closes every session of a connection, then finalizes the library.
    fn tear_down(&self, live: Live) {
        for slot in &live.sessions {
            if let Some(s) = lock(slot).take() {
                s.close();
            }
        }
        if let Some(s) = lock(&live.login).take() {
            let _ = s.close();
        }
        drop(live);
        self.finalize();
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Called after repeated session faults on connection `generation`.
    fn connection_lost(&self, generation: u64) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let live = match &*state {
            State::Live(l) if l.generation == generation => {
                match std::mem::replace(
                    &mut *state,
                    State::Down {
                        retry_at: Instant::now(),
                        delay: BACKOFF_START,
                    },
                ) {
                    State::Live(l) => l,
                    _ => unreachable!("checked to be Live under the same write lock"),
                }
            }
            _ => return, // someone else already handled it
        };
        tracing::warn!(token = %self.selector, "token connection lost; re-initializing");
        self.tear_down(live);
        self.reconnect_locked(&mut state);
    }

    /// Closes every session, finalizes the library and connects again at once, so that the library
    /// reads the token afresh; whether the connection is live afterwards.
    ///
    /// For a key the caller names by id that the token does not show: SoftHSM 2 keeps one object
    /// list per process and reads the token folder again only when the token's generation moved
    /// since it last looked, and a process that changes the token itself takes the new generation as
    /// seen; a key another process made just before stays invisible until the next change
    /// (docs/key-isolation.md). Unless `force`d, at most once per [`REREAD_SPACING`]: a key that is
    /// really missing must not make every request tear the connection down.
    pub(crate) fn reread(&self, force: bool) -> bool {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        {
            let mut last = lock(&self.last_reread);
            if !force && last.is_some_and(|at| at.elapsed() < REREAD_SPACING) {
                return matches!(*state, State::Live(_));
            }
            *last = Some(Instant::now());
        }
        let down = State::Down {
            retry_at: Instant::now(),
            delay: BACKOFF_START,
        };
        let live = match std::mem::replace(&mut *state, down) {
            State::Live(live) => live,
            other => {
                *state = other;
                return false;
            }
        };
        tracing::info!(token = %self.selector, "reading the token again (a named key was not found)");
        self.tear_down(live);
        self.reconnect_locked(&mut state);
        matches!(*state, State::Live(_))
    }

    /// Tries to re-connect if the back-off allows; the caller holds the write lock.
    fn reconnect_locked(&self, state: &mut State) {
        let delay = match state {
            State::Down { retry_at, delay } if Instant::now() >= *retry_at => *delay,
            _ => return,
        };
        match self.connect(self.workers) {
            Ok(live) => {
                tracing::info!(token = %self.selector, "token connection restored");
                *state = State::Live(live);
            }
            Err(OpenError::Token(e @ (SignerError::PinRejected | SignerError::PinLocked))) => {
                tracing::error!(error = %e, "the token refused the PIN; not retrying");
                *state = State::Fatal(e);
            }
            Err(e) => {
                tracing::debug!(error = %e, "token still unavailable");
                *state = State::Down {
                    retry_at: Instant::now() + delay,
                    delay: (delay * 2).min(BACKOFF_MAX),
                };
            }
        }
    }

    /// A read guard on a live connection, or the error to answer at once.
    fn live(&self) -> Result<RwLockReadGuard<'_, State>, SignerError> {
        for _ in 0..2 {
            let guard = self.read();
            match &*guard {
                State::Live(_) => return Ok(guard),
                State::Fatal(e) => return Err(e.clone()),
                State::Down { retry_at, .. } => {
                    if Instant::now() < *retry_at {
                        return Err(SignerError::TokenUnavailable);
                    }
                }
            }
            drop(guard);
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            self.reconnect_locked(&mut state);
        }
        Err(SignerError::TokenUnavailable)
    }

    /// Runs `op` on worker `idx`'s session with the fault rules of this module.
    pub(crate) fn execute<T>(
        &self,
        idx: usize,
        op: &dyn Fn(&Ctx<'_>) -> Result<T, OpError>,
    ) -> Result<T, SignerError> {
        for attempt in 0..2 {
            let guard = self.live()?;
            let State::Live(live) = &*guard else {
                return Err(SignerError::TokenUnavailable);
            };
            let Some(slot) = live.sessions.get(idx) else {
                return Err(SignerError::Internal("worker index out of range".into()));
            };
            let mut session = lock(slot);
            if session.is_none() {
                match self.lib.open_rw_session(live.slot) {
                    Ok(s) => *session = Some(WorkerSession::new(s)),
                    Err(e) => match token::classify(&e) {
                        Fault::Session(rv) => {
                            tracing::warn!(rv = ?rv, "opening a session failed");
                            let generation = live.generation;
                            drop(session);
                            drop(guard);
                            if attempt == 1 {
                                self.connection_lost(generation);
                            }
                            continue;
                        }
                        Fault::Pin(err) | Fault::Other(err) => return Err(err),
                    },
                }
            }
            let Some(s) = session.as_ref() else {
                return Err(SignerError::Internal(
                    "session slot empty after open".into(),
                ));
            };
            let ctx = Ctx {
                session: &s.session,
                handles: &s.handles,
                lib: &self.lib,
                slot: live.slot,
                selector: &self.selector,
            };
            before_call();
            let fault = match op(&ctx) {
                Ok(v) => return Ok(v),
                Err(OpError::Signer(e)) => return Err(e),
                Err(OpError::TokenLost) => None,
                Err(OpError::Ck(e)) => match token::classify(&e) {
                    Fault::Session(rv) => Some(rv),
                    Fault::Pin(err) | Fault::Other(err) => return Err(err),
                },
            };
            // CKR_GENERAL_ERROR is also SoftHSM's answer to some bad inputs: only a token that
            // fails the liveness probe counts as lost.
            if fault == Some(RvError::GeneralError) && confirm_alive(&ctx).is_ok() {
                return Err(SignerError::Internal(
                    "token answered CKR_GENERAL_ERROR".into(),
                ));
            }
            tracing::warn!(rv = ?fault, attempt, "session fault; dropping the session");
            if let Some(s) = session.take() {
                s.close();
            }
            let generation = live.generation;
            drop(session);
            drop(guard);
            if attempt == 1 {
                self.connection_lost(generation);
            }
        }
        Err(SignerError::TokenUnavailable)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = std::mem::replace(
            self.state.get_mut().unwrap_or_else(|p| p.into_inner()),
            State::Fatal(SignerError::TokenUnavailable),
        );
        if let State::Live(live) = state {
            self.tear_down(live);
        }
    }
}

/// Starts `shared.workers()` OS threads fed by a bounded queue of `depth` jobs.
pub(crate) fn start_workers(
    shared: &Arc<Shared>,
    depth: usize,
) -> Result<crossbeam_channel::Sender<Job>, SignerError> {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(depth);
    for idx in 0..shared.workers() {
        let rx = rx.clone();
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name(format!("pkcs11-worker-{idx}"))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    // A panicking job must not take the worker (and its session slot) down; its
                    // caller sees the dropped answer channel as TokenUnavailable.
                    let run = std::panic::AssertUnwindSafe(|| job(&shared, idx));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!(worker = idx, "a signer job panicked");
                    }
                }
                // The last worker out drops the shared state (closing the sessions, finalizing and
                // unloading the library) and only then says so: a process that exits when told must
                // not find the library still being unloaded on this thread (SoftHSM's static
                // destructors would run twice at once).
                if let Some(last) = Arc::into_inner(shared) {
                    let closed = lock(&last.on_closed).take();
                    drop(last);
                    if let Some(tx) = closed {
                        let _ = tx.send(());
                    }
                }
            })
            .map_err(|e| SignerError::Internal(format!("cannot start a worker thread: {e}")))?;
    }
    Ok(tx)
}
