//! The PKCS#11 signer: the only code in the crate that imports `cryptoki`.
//!
//! [`Pkcs11Signer`] turns each trait call into a job on a bounded crossbeam queue served by a pool
//! of dedicated OS threads, each owning its own session (`pool`); the async caller awaits a
//! tokio oneshot with the configured timeout, so no PKCS#11 call ever runs on a tokio worker and
//! no caller waits forever. A full queue answers [`SignerError::Busy`] at once.
//!
//! - `token`: start-up path checks, `C_Initialize`, token selection, the one counted login,
//!   return-code classification.
//! - `pool`: connection state, worker threads, session faults, re-initialization with back-off.
//! - `ops`: the operations and the key templates of the keys table.
//! - `isolation`: the KEK's policy, the key ceremony (security officer), the probes, orphan removal.

mod isolation;
mod ops;
mod pool;
mod token;

use std::time::Duration;

use async_trait::async_trait;

use super::config::Pkcs11Config;
use super::{
    GeneratedKeyPair, Inventory, KeyRef, ObjectAttributes, OpenError, PlainSecret, ProbeResult,
    SharedSecret, Signer, SignerError, SignerKind, StorageKeyIds, WrappedKeyPair, check_digest,
};
use crate::model::{DerSignature, EncryptedSecret, KeyId, PublicKey, WrappedKey};
use ops::{Ctx, OpError};
use pool::{Job, Shared};

pub use isolation::{ProvisionOutcome, provision_blocking};
pub use ops::{key_handle_cache_hits, object_searches, temporary_objects_alive};
#[doc(hidden)]
pub use pool::{BeforeCallHook, arm_before_call};

/// Longest wait for start-up (loading the module, `C_Initialize`, login) before
/// [`SignerError::Timeout`]; network HSMs can be slow to connect.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
pub use token::login_attempts;

/// The PKCS#11 implementation of [`Signer`]. Dropping it stops the workers, closes the sessions
/// and finalizes the library once the queued work is done; [`Signer::shutdown`] does the same and
/// waits for it.
///
/// One per process: the library is initialized and finalized per process, so a second signer on
/// the same module would share (and, when it shuts down, finalize) the first one's library.
pub struct Pkcs11Signer {
    /// `None` after [`Signer::shutdown`].
    queue: std::sync::Mutex<Option<crossbeam_channel::Sender<Job>>>,
    timeout: Duration,
    /// Worker threads (the workers alone hold the shared state, so that closing the sessions
    /// and `C_Finalize` run on a worker thread, never on an async runtime thread).
    workers: usize,
    /// Fires when the workers have closed every session, finalized the library and unloaded it.
    closed: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("timeout", &self.timeout)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Checks the paths, reads the PIN, loads and initializes the module, finds the token, logs in
    /// (exactly one attempt) and starts the workers. Runs the blocking part on a dedicated thread.
    ///
    /// # Errors
    /// [`OpenError`] naming the missing file, the token that is not there, or the refusal.
    pub async fn open(cfg: &Pkcs11Config) -> Result<Self, OpenError> {
        let cfg = cfg.clone();
        let timeout = cfg.timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("pkcs11-open".into())
            .spawn(move || {
                let _ = tx.send(Self::open_blocking(&cfg));
            })
            .map_err(|e| SignerError::Internal(format!("cannot start the open thread: {e}")))?;
        match tokio::time::timeout(OPEN_TIMEOUT.max(timeout), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SignerError::Internal("the open thread died".into()).into()),
            // The thread may still finish; the signer it builds is then dropped, which releases
            // the token.
            Err(_) => Err(SignerError::Timeout.into()),
        }
    }

    /// The blocking body of [`Pkcs11Signer::open`]; do not call it on an async runtime thread.
    ///
    /// # Errors
    /// As [`Pkcs11Signer::open`].
    pub fn open_blocking(cfg: &Pkcs11Config) -> Result<Self, OpenError> {
        cfg.check_module_env()?;
        let lib = token::load(&cfg.module)?;
        let pin = cfg.pin.read()?;
        let shared = Shared::connect_first(lib, cfg.token.clone(), pin, cfg.pool_size.get())?;
        let queue = pool::start_workers(&shared, cfg.queue_depth.get())?;
        tracing::info!(
            module = %cfg.module.display(),
            token = %cfg.token,
            workers = shared.workers(),
            queue_depth = cfg.queue_depth.get(),
            "PKCS#11 signer ready"
        );
        let workers = shared.workers();
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        shared.notify_when_closed(closed_tx);
        drop(shared);
        Ok(Pkcs11Signer {
            queue: std::sync::Mutex::new(Some(queue)),
            timeout: cfg.timeout,
            workers,
            closed: tokio::sync::Mutex::new(Some(closed)),
        })
    }

    /// Queues `op` and awaits its answer within the timeout.
    async fn run<T, F>(&self, op: F) -> Result<T, SignerError>
    where
        T: Send + 'static,
        F: Fn(&Ctx<'_>) -> Result<T, OpError> + Send + 'static,
    {
        self.queue(op, None).await
    }

    /// Runs `op`, which looks up a key by the id the caller recorded; when the token answers
    /// [`SignerError::KeyNotFound`], reads the token again ([`Shared::reread`]; `force` skips its
    /// spacing, for start-up) and runs `op` once more.
    async fn run_named<T, F>(&self, op: F, force: bool) -> Result<T, SignerError>
    where
        T: Send + 'static,
        F: Fn(&Ctx<'_>) -> Result<T, OpError> + Clone + Send + 'static,
    {
        match self.run(op.clone()).await {
            Err(SignerError::KeyNotFound { .. }) => self.queue(op, Some(force)).await,
            answer => answer,
        }
    }

    /// Queues `op` (after a re-read of the token when `reread` is `Some(force)`) and awaits its
    /// answer within the timeout.
    async fn queue<T, F>(&self, op: F, reread: Option<bool>) -> Result<T, SignerError>
    where
        T: Send + 'static,
        F: Fn(&Ctx<'_>) -> Result<T, OpError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |shared: &Shared, idx: usize| {
            if tx.is_closed() {
                return; // the caller timed out while the job was queued
            }
            if let Some(force) = reread {
                shared.reread(force);
            }
            let _ = tx.send(shared.execute(idx, &op));
        });
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(SignerError::TokenUnavailable)?;
        let started = std::time::Instant::now();
        let sent = queue.try_send(job);
        metrics::gauge!("offline_signer_hsm_queue_depth").set(queue.len() as f64);
        sent.map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => {
                metrics::counter!("offline_signer_hsm_rejected_total", "reason" => "busy")
                    .increment(1);
                SignerError::Busy
            }
            crossbeam_channel::TrySendError::Disconnected(_) => SignerError::TokenUnavailable,
        })?;
        let result = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SignerError::TokenUnavailable),
            Err(_) => Err(SignerError::Timeout),
        };
        // Queueing included: what a request waits for the HSM.
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!("offline_signer_hsm_operation_duration_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait]
impl Signer for Pkcs11Signer {
    fn kind(&self) -> SignerKind {
        SignerKind::Pkcs11
    }

    async fn health(&self) -> Result<(), SignerError> {
        self.run(ops::confirm_alive).await
    }

    async fn generate_master_key(&self) -> Result<GeneratedKeyPair, SignerError> {
        self.run(ops::generate_master).await
    }

    async fn ensure_storage_keys(
        &self,
        recorded: Option<StorageKeyIds>,
    ) -> Result<StorageKeyIds, SignerError> {
        let op = move |ctx: &Ctx<'_>| ops::ensure_storage(ctx, recorded);
        if recorded.is_some() {
            self.run_named(op, true).await
        } else {
            self.run(op).await
        }
    }

    async fn ensure_audit_key(
        &self,
        recorded: Option<KeyId>,
    ) -> Result<GeneratedKeyPair, SignerError> {
        let op = move |ctx: &Ctx<'_>| ops::ensure_audit(ctx, recorded);
        if recorded.is_some() {
            self.run_named(op, true).await
        } else {
            self.run(op).await
        }
    }

    async fn destroy_key(&self, id: &KeyId) -> Result<bool, SignerError> {
        let id = *id;
        self.run(move |ctx| ops::destroy_key(ctx, &id)).await
    }

    async fn generate_wrapped_key_pair(&self, kek: &KeyId) -> Result<WrappedKeyPair, SignerError> {
        let kek = *kek;
        self.run(move |ctx| ops::generate_wrapped(ctx, &kek)).await
    }

    async fn sign_digest(
        &self,
        key: KeyRef<'_>,
        digest: &[u8],
    ) -> Result<DerSignature, SignerError> {
        let digest = check_digest(digest)?;
        match key {
            KeyRef::Token(id) => {
                let id = *id;
                self.run_named(move |ctx| ops::sign_token(ctx, &id, &digest), false)
                    .await
            }
            KeyRef::Wrapped(w) => {
                let w = w.clone();
                self.run(move |ctx| ops::sign_wrapped(ctx, &w, &digest))
                    .await
            }
            KeyRef::Audit(id) => {
                let id = *id;
                self.run(move |ctx| ops::sign_audit(ctx, &id, &digest))
                    .await
            }
        }
    }

    async fn ecdh(
        &self,
        key: &WrappedKey,
        peer_public: &PublicKey,
    ) -> Result<SharedSecret, SignerError> {
        // The type guarantees a point of the curve (SoftHSM answers an off-curve point with
        // CKR_GENERAL_ERROR).
        let peer = *peer_public;
        let key = key.clone();
        self.run(move |ctx| ops::ecdh(ctx, &key, &peer)).await
    }

    async fn encrypt_secret(
        &self,
        dek: &KeyId,
        associated_data: &[u8],
        plaintext: &[u8],
    ) -> Result<EncryptedSecret, SignerError> {
        let dek = *dek;
        let aad = associated_data.to_vec();
        let plaintext = zeroize::Zeroizing::new(plaintext.to_vec());
        self.run(move |ctx| ops::encrypt(ctx, &dek, &aad, &plaintext))
            .await
    }

    async fn decrypt_secret(
        &self,
        dek: &KeyId,
        associated_data: &[u8],
        sealed: &EncryptedSecret,
    ) -> Result<PlainSecret, SignerError> {
        let dek = *dek;
        let aad = associated_data.to_vec();
        let sealed = sealed.clone();
        self.run(move |ctx| ops::decrypt(ctx, &dek, &aad, &sealed))
            .await
    }

    async fn public_key(&self, id: &KeyId) -> Result<PublicKey, SignerError> {
        let id = *id;
        self.run(move |ctx| ops::public_key(ctx, &id)).await
    }

    async fn unwrapped_key_attributes(
        &self,
        key: &WrappedKey,
    ) -> Result<ObjectAttributes, SignerError> {
        let key = key.clone();
        self.run(move |ctx| ops::unwrapped_attributes(ctx, &key))
            .await
    }

    async fn inventory(&self) -> Result<Inventory, SignerError> {
        self.run(ops::inventory).await
    }

    async fn isolation_probes(&self) -> Result<Vec<ProbeResult>, SignerError> {
        self.run(isolation::probes).await
    }

    async fn destroy_orphans(&self, keys: &[(String, KeyId)]) -> Result<usize, SignerError> {
        let keys = keys.to_vec();
        self.run(move |ctx| isolation::destroy_objects(ctx, &keys))
            .await
    }

    async fn shutdown(&self) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(queue);
        // Workers stop once the queue is empty and every in-flight caller's clone is gone; the
        // last one closes the sessions, finalizes the library and fires `closed`.
        if let Some(closed) = self.closed.lock().await.take() {
            let _ = closed.await;
        }
    }
}
