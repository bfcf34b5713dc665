//! The composition root: configuration → signer → store → service, written once.
//!
//! `serve`, every administrative command, `key-report`, `audit verify` and the benchmark's ceilings
//! open what they need through these functions and nothing else, so that the wiring (which store,
//! which signer, in which order, with which settings) cannot differ between them.
//!
//! sled admits one process per data folder: [`open_store`] waits a few seconds for the lock and then
//! fails with [`AppError::OpenStore`], which is what a command run beside a running server sees.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::model::KeyId;
use crate::service::audit_trail::{self, CheckpointReport, Evidence, EvidenceError};
use crate::service::checkpoint::{self, AuditFileError, CheckpointLog};
use crate::service::{Credentials, Service, ServiceError, SystemClock};
use crate::signer::config::{PinSource, SignerConfig};
use crate::signer::pkcs11::ProvisionOutcome;
use crate::signer::report::KeyPurpose;
use crate::signer::{self, KeyReport, OpenError, Signer, SignerError};
use crate::store::{self, AuditEntry, ChainReport, KeyCensus, Store, StoreError};

/// Why the application could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store cannot be opened (missing folder, another process holds it, a newer format).
    #[error("opening the store {path}: {source}")]
    OpenStore {
        /// The data folder, or the database (`postgres user@host:port/db`).
        path: String,
        /// What the store said.
        source: StoreError,
    },
    /// The signer cannot be opened (module, token, PIN).
    #[error("opening the signer: {0}")]
    OpenSigner(#[from] OpenError),
    /// The signer opened but failed an operation.
    #[error("the signer failed: {0}")]
    Signer(#[from] SignerError),
    /// The store failed while reading.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The command needs a PKCS#11 token and the configuration names the software signer.
    #[error("this command needs signer.kind = \"pkcs11\"")]
    NotPkcs11,
    /// The service could not start (e.g. the KEK/DEK could not be found or made).
    #[error("starting the service: {0}")]
    Service(#[from] ServiceError),
    /// The checkpoint file or the audit public key file cannot be used.
    #[error("audit files: {0}")]
    AuditFile(#[from] AuditFileError),
    /// An evidence bundle cannot be made.
    #[error("audit evidence: {0}")]
    Evidence(#[from] EvidenceError),
}

/// Opens the configured store (`[store]`: sled, or PostgreSQL migrated to this build's schema).
///
/// # Errors
/// [`AppError::OpenStore`] naming the folder or database.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    // A sled folder is created 0700 before sled writes into it, so its files (which sled creates
    // with the process umask) are never reachable by others, even before they are tightened.
    let sled_dir = match &config.store {
        crate::store::StoreSettings::Sled { path, .. } => Some(path.clone()),
        crate::store::StoreSettings::Postgres { .. } => None,
    };
    if let Some(dir) = &sled_dir {
        crate::files::private_dir(dir).map_err(|e| AppError::OpenStore {
            path: dir.display().to_string(),
            source: crate::store::StoreError::Io {
                detail: e.to_string(),
            },
        })?;
    }
    let store = store::open(&config.store).map_err(|source| AppError::OpenStore {
        path: config.store.location(),
        source,
    })?;
    if let Some(dir) = &sled_dir
        && let Err(e) = crate::files::tighten_tree(dir)
    {
        tracing::warn!(path = %dir.display(), error = %e, "cannot make the data folder's files 0600");
    }
    Ok(store)
}

/// Opens the configured signer.
///
/// # Errors
/// [`AppError::OpenSigner`] naming what is missing or refused.
pub async fn open_signer(config: &Config) -> Result<Arc<dyn Signer>, AppError> {
    Ok(signer::open_signer(&config.signer).await?)
}

/// The whole service, with the handles it must release when it stops.
#[derive(Debug)]
pub struct App {
    service: Service,
    signer: Arc<dyn Signer>,
    checkpoints: Arc<CheckpointLog>,
    audit: checkpoint::AuditSettings,
}

impl App {
    /// Opens store, signer and service (the service finds or makes the KEK and DEK). On a failure
    /// after the signer opened, the signer is shut down before returning.
    ///
    /// # Errors
    /// [`AppError`] saying which part failed.
    pub async fn open(config: &Config) -> Result<App, AppError> {
        let store = open_store(config)?;
        let signer = open_signer(config).await?;
        let opened = async {
            let service = Service::open(
                Arc::clone(&signer),
                store,
                config.service,
                Arc::new(SystemClock),
            )
            .await?;
            // The public key first: a configuration pointing at another token must not append
            // checkpoints the published key cannot verify.
            checkpoint::export_public_key(
                &config.audit.public_key_file(),
                &service.audit_public_key(),
            )?;
            let checkpoints = Arc::new(CheckpointLog::open(&config.audit.checkpoint_file)?);
            Ok::<_, AppError>(App {
                service,
                signer: Arc::clone(&signer),
                checkpoints,
                audit: config.audit.clone(),
            })
        }
        .await;
        if opened.is_err() {
            signer.shutdown().await;
        }
        opened
    }

    /// Starts the checkpoint task ([`checkpoint::run_checkpoints`]); abort it before [`App::close`],
    /// which makes the last checkpoint.
    pub fn start_checkpoints(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(checkpoint::run_checkpoints(
            self.service.clone(),
            Arc::clone(&self.checkpoints),
            self.audit.clone(),
        ))
    }

    /// The checkpoint file of this process (its `subscribe` counts the lines appended).
    pub fn checkpoint_log(&self) -> &Arc<CheckpointLog> {
        &self.checkpoints
    }

    /// The service (cheap to clone).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Releases the HSM (sessions closed, library finalized) and drops the store. Every store write
    /// was durable when it returned, so nothing acknowledged is lost.
    /// A last checkpoint of the records this process appended is signed and written first.
    pub async fn close(self) {
        checkpoint::checkpoint_once(&self.service, &self.checkpoints).await;
        self.signer.shutdown().await;
    }
}

/// The integration-credential use cases over the configured store (no HSM needed).
///
/// # Errors
/// [`AppError::OpenStore`].
pub fn credentials(config: &Config) -> Result<Credentials, AppError> {
    Ok(Credentials::new(open_store(config)?))
}

/// `key-report`: every key the service owns on the token, read from the token itself, the
/// token's answers to the isolation probes and, when the store can be opened (sled: only while
/// the server is stopped), the wrapped-key count and the orphans (master key objects the store
/// does not know). When it cannot, the report says why those two are absent.
///
/// # Errors
/// [`AppError::OpenSigner`] or [`AppError::Signer`].
pub async fn key_report(config: &Config) -> Result<KeyReport, AppError> {
    let signer = open_signer(config).await?;
    let report = signer::key_report(signer.as_ref()).await;
    signer.shutdown().await;
    let mut report = report?;
    match open_store(config).and_then(|store| Ok(store.key_census()?)) {
        Ok(census) => {
            report.wrapped_keys.count =
                Some(census.wrapped_activation_keys + census.wrapped_temporary_keys);
            report.wrapped_keys.count_absent_because = None;
            report.orphans = Some(
                orphans(&report, &census)
                    .into_iter()
                    .map(|(label, id)| format!("{label}#{id}"))
                    .collect(),
            );
            report.orphans_absent_because = None;
        }
        Err(e) => {
            let why = format!(
                "the store could not be read ({e}); a sled store admits one process: \
                 run key-report while the server is stopped"
            );
            report.wrapped_keys.count_absent_because = Some(why.clone());
            report.orphans_absent_because = Some(why);
        }
    }
    Ok(report)
}

/// Master key objects on the token (label `offline-signer/master/<id>`) whose id the store does
/// not know, as (label, id), one entry per id.
fn orphans(report: &KeyReport, census: &KeyCensus) -> Vec<(String, KeyId)> {
    let mut out: Vec<(String, KeyId)> = Vec::new();
    for key in &report.keys {
        if !matches!(
            key.purpose,
            KeyPurpose::MasterPrivate | KeyPurpose::MasterPublic
        ) {
            continue;
        }
        let Ok(id) = key.attributes.id.parse::<KeyId>() else {
            continue;
        };
        let known = census.master_key_ids.binary_search(&id).is_ok();
        if !known && !out.iter().any(|(_, seen)| *seen == id) {
            out.push((key.attributes.label.clone(), id));
        }
    }
    out
}

/// What `hsm gc` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOutcome {
    /// The orphaned master keys (`label#id`), each standing for both halves.
    pub orphans: Vec<String>,
    /// Token objects destroyed (0 on a dry run).
    pub destroyed: usize,
}

/// `hsm gc`: finds the master key objects on the token that the store does not know (left behind
/// when a generation's answer was lost) and, with `remove`, destroys them. Needs the store (sled:
/// the server stopped).
///
/// # Errors
/// [`AppError::OpenStore`], [`AppError::OpenSigner`], [`AppError::Signer`], [`AppError::Store`].
pub async fn gc(config: &Config, remove: bool) -> Result<GcOutcome, AppError> {
    let store = open_store(config)?;
    let census = store.key_census()?;
    let signer = open_signer(config).await?;
    let result = async {
        let report = signer::key_report(signer.as_ref()).await?;
        let found = orphans(&report, &census);
        let destroyed = if remove && !found.is_empty() {
            signer.destroy_orphans(&found).await?
        } else {
            0
        };
        Ok::<_, SignerError>(GcOutcome {
            orphans: found
                .iter()
                .map(|(label, id)| format!("{label}#{id}"))
                .collect(),
            destroyed,
        })
    }
    .await;
    signer.shutdown().await;
    Ok(result?)
}

/// `hsm provision`: the key ceremony, as the security officer (PIN read from `so_pin_file`):
/// makes sure the token holds a trusted KEK with the unwrap policy. Run it before the first start.
///
/// # Errors
/// [`AppError::NotPkcs11`] for a software signer; [`AppError::OpenSigner`] naming what is
/// missing or refused.
pub fn provision(config: &Config, so_pin_file: &Path) -> Result<ProvisionOutcome, AppError> {
    let SignerConfig::Pkcs11(cfg) = &config.signer else {
        return Err(AppError::NotPkcs11);
    };
    Ok(signer::pkcs11::provision_blocking(
        cfg,
        &PinSource::File(so_pin_file.to_owned()),
    )?)
}

/// `store migrate`: brings a PostgreSQL database to this build's schema (safe while instances run);
/// `None` for sled, whose layout needs no migration step.
///
/// # Errors
/// [`AppError::OpenStore`] when the database does not answer or is newer than this build.
pub fn migrate_store(config: &Config) -> Result<Option<store::SchemaMigration>, AppError> {
    match &config.store {
        store::StoreSettings::Sled { .. } => Ok(None),
        store::StoreSettings::Postgres { settings, .. } => store::migrate(settings)
            .map(Some)
            .map_err(|source| AppError::OpenStore {
                path: config.store.location(),
                source,
            }),
    }
}

/// What `store copy` copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Applications (with their master key references).
    pub applications: usize,
    /// Activations (their record versions start again at 1).
    pub activations: usize,
    /// Registered nonces (consumed or not).
    pub nonces: usize,
    /// Integration credentials (hashes, ids and scopes).
    pub credentials: usize,
    /// Audit records, in every chain, with their hashes unchanged.
    pub audit_records: u64,
    /// Non-empty audit chains.
    pub audit_chains: usize,
}

/// Records read per step of `store copy`.
const COPY_PAGE: usize = 1000;

/// Why `store copy` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A store cannot be opened or failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// The destination already holds state; copying would mix two services.
    #[error(
        "the destination store {0} is not empty (it has applications, activations, credentials or storage keys)"
    )]
    DestinationNotEmpty(String),
    /// The source has an audit chain that sled, which keeps one, cannot hold.
    #[error(
        "the source has audit chain {0} (written by a PostgreSQL instance); a sled store keeps only the embedded chain, so it cannot hold this copy"
    )]
    ChainsDoNotFit(String),
    /// A source audit chain is damaged; `audit verify` says where.
    #[error("audit chain {chain} of the source is damaged at record {seq}; run `audit verify`")]
    DamagedChain {
        /// The chain.
        chain: String,
        /// The first undecodable record.
        seq: u64,
    },
}

impl From<StoreError> for CopyError {
    fn from(e: StoreError) -> Self {
        Self::App(AppError::Store(e))
    }
}

/// `store copy`: copies everything of the store of `from` into the empty store of `to` (sled to
/// PostgreSQL or back): storage-key ids, applications, activations, nonces, credentials and every
/// audit chain with its hashes unchanged, so `audit verify` on the copy is intact. Run it with no
/// instance serving on either store. sled keeps one audit chain, so a PostgreSQL store whose
/// instances wrote chains of their own cannot be copied into sled (the copy stops before writing
/// any audit record of such a chain, and says so).
///
/// # Errors
/// [`CopyError`]; a failed copy leaves a partial destination, to be dropped and copied again.
pub fn copy_store(from: &Config, to: &Config) -> Result<CopyReport, CopyError> {
    let source = open_store(from)?;
    let destination = open_store(to)?;
    let dest = destination.as_ref();
    if dest.storage_keys()?.is_some()
        || !dest.applications()?.is_empty()
        || !dest.credentials()?.is_empty()
        || !dest.activations_after(None, 1)?.is_empty()
    {
        return Err(CopyError::DestinationNotEmpty(to.store.location()));
    }
    if !to.store.is_shared() {
        for chain in source.audit_chains()? {
            if chain != store::ChainId::embedded() && source.audit_chain_head(&chain)?.seq > 0 {
                return Err(CopyError::ChainsDoNotFit(chain.to_string()));
            }
        }
    }
    let mut report = CopyReport::default();
    if let Some((kek, dek)) = source.storage_keys()? {
        dest.set_storage_keys(kek, dek)?;
    }
    for app in source.applications()? {
        dest.create_application(&app, None)?;
        report.applications += 1;
    }
    report.activations = copy_pages(
        |after| source.activations_after(after, COPY_PAGE),
        |activation| &activation.id,
        |activation| dest.insert_activation(activation, None).map(drop),
    )?;
    report.nonces = copy_pages(
        |after| source.nonces_after(after, COPY_PAGE),
        |nonce| &nonce.nonce,
        |nonce| dest.issue_nonce(nonce, None).map(drop),
    )?;
    for credential in source.credentials()? {
        dest.put_credential(&credential, None)?;
        report.credentials += 1;
    }
    for chain in source.audit_chains()? {
        if source.audit_chain_head(&chain)?.seq == 0 {
            continue;
        }
        report.audit_chains += 1;
        let mut from_seq = 1;
        loop {
            let mut records = Vec::new();
            for entry in source.audit_chain_entries(&chain, from_seq, COPY_PAGE)? {
                match entry {
                    AuditEntry::Record(rec) => records.push(rec),
                    AuditEntry::Undecodable { seq, .. } => {
                        return Err(CopyError::DamagedChain {
                            chain: chain.to_string(),
                            seq,
                        });
                    }
                }
            }
            let Some(last) = records.last().map(|r| r.seq) else {
                break;
            };
            dest.import_audit(&chain, &records)?;
            report.audit_records += records.len() as u64;
            from_seq = last + 1;
        }
    }
    Ok(report)
}

/// Copies records page by page: `page(after)` reads up to [`COPY_PAGE`] records whose keys come
/// after `after` (from the start when `None`), `key` names a record's key, `put` writes one record;
/// returns how many were copied.
fn copy_pages<T>(
    page: impl Fn(Option<&str>) -> Result<Vec<T>, StoreError>,
    key: impl Fn(&T) -> &String,
    put: impl Fn(&T) -> Result<(), StoreError>,
) -> Result<usize, StoreError> {
    let mut copied = 0;
    let mut after: Option<String> = None;
    loop {
        let records = page(after.as_deref())?;
        for record in &records {
            put(record)?;
        }
        copied += records.len();
        match records.last() {
            Some(last) if records.len() == COPY_PAGE => after = Some(key(last).clone()),
            _ => return Ok(copied),
        }
    }
}

/// What `audit verify` found.
#[derive(Debug, Clone)]
pub struct AuditVerification {
    /// The walk of every chain's links.
    pub chains: ChainReport,
    /// The checkpoints: signatures, checkpointed records, the external file.
    pub checkpoints: CheckpointReport,
    /// The external checkpoint file.
    pub checkpoint_file: std::path::PathBuf,
    /// The audit public key file.
    pub public_key_file: std::path::PathBuf,
}

impl AuditVerification {
    /// Whether every check passed.
    pub fn is_intact(&self) -> bool {
        self.chains.is_intact() && self.checkpoints.first_broken.is_none()
    }
}

/// `audit verify`: walks the audit chains of the configured store, then checks every checkpoint
/// (stored, and in the external file) with the exported public key: no HSM is needed.
///
/// # Errors
/// [`AppError::OpenStore`], [`AppError::Store`] or [`AppError::AuditFile`] (a file that cannot be
/// read or parsed).
pub fn verify_audit(config: &Config) -> Result<AuditVerification, AppError> {
    let store = open_store(config)?;
    let chains = crate::store::verify_audit_chain(store.as_ref())?;
    let public_key_file = config.audit.public_key_file();
    let key = checkpoint::read_public_key(&public_key_file)?;
    let external = checkpoint::read_checkpoint_file(&config.audit.checkpoint_file)?;
    let checkpoints =
        audit_trail::verify_checkpoints(store.as_ref(), key.as_ref(), external.as_deref())?;
    Ok(AuditVerification {
        chains,
        checkpoints,
        checkpoint_file: config.audit.checkpoint_file.clone(),
        public_key_file,
    })
}

/// `audit evidence`: the evidence bundle of one activation, from the configured store and the
/// exported public key (no HSM needed).
///
/// # Errors
/// [`AppError::OpenStore`], [`AppError::AuditFile`] (the public key file is missing or
/// malformed), [`AppError::Evidence`].
pub fn audit_evidence(config: &Config, activation_id: &str) -> Result<Evidence, AppError> {
    let path = config.audit.public_key_file();
    let key = checkpoint::read_public_key(&path)?.ok_or_else(|| AuditFileError::Io {
        path: path.display().to_string(),
        detail: "absent: the service exports it at its first start".into(),
    })?;
    let store = open_store(config)?;
    Ok(audit_trail::build_evidence(
        store.as_ref(),
        activation_id,
        &key,
    )?)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// `copy_pages` over `total` keys `k00000…`: what it copied, and the `after` of each page read.
    fn copy_of(total: usize) -> (usize, Vec<String>, Vec<Option<String>>) {
        let keys: Vec<String> = (0..total).map(|i| format!("k{i:05}")).collect();
        let reads = RefCell::new(Vec::new());
        let copied = RefCell::new(Vec::new());
        let count = copy_pages(
            |after| {
                reads.borrow_mut().push(after.map(str::to_owned));
                let start = after.map_or(0, |a| keys.partition_point(|k| k.as_str() <= a));
                Ok(keys[start..].iter().take(COPY_PAGE).cloned().collect())
            },
            |key| key,
            |key| {
                copied.borrow_mut().push(key.clone());
                Ok(())
            },
        )
        .expect("no store error");
        (count, copied.into_inner(), reads.into_inner())
    }

    #[test]
    fn copy_pages_reads_every_page_once_and_stops_after_a_short_one() {
        for total in [
            0,
            1,
            COPY_PAGE - 1,
            COPY_PAGE,
            COPY_PAGE + 1,
            2 * COPY_PAGE + 7,
        ] {
            let (count, copied, reads) = copy_of(total);
            assert_eq!(count, total);
            let expected: Vec<String> = (0..total).map(|i| format!("k{i:05}")).collect();
            assert_eq!(copied, expected, "{total} records, each once, in order");
            // A full page asks for the next one; a short (or empty) page ends the copy.
            assert_eq!(reads.len(), total / COPY_PAGE + 1, "{total} records");
            assert_eq!(reads[0], None);
        }
    }
}
