//! Signed audit checkpoints: the `[audit]` settings, the append-only checkpoint file outside the
//! data folder, the exported audit public key, and the background task that signs the head of each of
//! this instance's audit chains (its lanes, [`crate::store::Store::audit_lanes`]: one on sled, several
//! on PostgreSQL) that moved, every `checkpoint_every` records (counted over all lanes), every `checkpoint_interval_s` seconds
//! when there were new records, and once more at shutdown.
//!
//! A checkpoint is made by [`Service::checkpoint`] (HSM signature with the audit key, stored in the
//! store) and then appended here, as one JSON line written with one `write` on a file opened with
//! `O_APPEND` and `fsync`ed before the next one. The file is what a rollback of the whole data
//! folder cannot take back: `audit verify` demands that the store be at least as long as the newest
//! line of each chain. See `docs/auditing.md`.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Service;
use crate::model::{DerSignature, PublicKey, Timestamp};
use crate::store::{ChainId, Checkpoint};

/// Name of the exported audit public key, beside the checkpoint file.
pub const PUBLIC_KEY_FILE: &str = "audit-public-key.pem";
/// Default name of the checkpoint file, beside the configuration file.
pub const CHECKPOINT_FILE: &str = "audit-checkpoints.jsonl";

/// The `[audit]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditConfig {
    /// Sign a checkpoint after this many new records (default 1000).
    #[serde(default = "default_every")]
    pub checkpoint_every: u64,
    /// Sign a checkpoint this often when there were new records (default 10 seconds).
    #[serde(default = "default_interval")]
    pub checkpoint_interval_s: u64,
    /// The append-only checkpoint file (default `audit-checkpoints.jsonl` beside the configuration
    /// file; a relative path is resolved against the configuration file's folder).
    pub checkpoint_file: Option<PathBuf>,
}

fn default_every() -> u64 {
    1000
}

fn default_interval() -> u64 {
    10
}

impl Default for RawAuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: default_every(),
            checkpoint_interval_s: default_interval(),
            checkpoint_file: None,
        }
    }
}

impl RawAuditConfig {
    /// Checks the ranges and resolves the file against `base` (the configuration file's folder).
    /// `data_dir` is the sled data folder, if any: the file must not be inside it (a copy of the
    /// folder restored over it would take the file back too).
    ///
    /// # Errors
    /// The key at fault and the problem, in words.
    pub fn validate(
        self,
        base: &Path,
        data_dir: Option<&Path>,
    ) -> Result<AuditSettings, (&'static str, String)> {
        if !(1..=10_000_000).contains(&self.checkpoint_every) {
            return Err((
                "audit.checkpoint_every",
                format!("must be 1..=10000000, got {}", self.checkpoint_every),
            ));
        }
        if !(1..=86_400).contains(&self.checkpoint_interval_s) {
            return Err((
                "audit.checkpoint_interval_s",
                format!("must be 1..=86400, got {}", self.checkpoint_interval_s),
            ));
        }
        let file = base.join(
            self.checkpoint_file
                .unwrap_or_else(|| PathBuf::from(CHECKPOINT_FILE)),
        );
        if let Some(dir) = data_dir
            && file.starts_with(dir)
        {
            return Err((
                "audit.checkpoint_file",
                format!(
                    "must be outside the data folder {} (a restored copy of the folder must not \
                     take the checkpoints back)",
                    dir.display()
                ),
            ));
        }
        Ok(AuditSettings {
            checkpoint_every: self.checkpoint_every,
            checkpoint_interval: Duration::from_secs(self.checkpoint_interval_s),
            checkpoint_file: file,
        })
    }
}

/// The validated `[audit]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Records between two checkpoints, at most.
    pub checkpoint_every: u64,
    /// Longest time new records wait for a checkpoint.
    pub checkpoint_interval: Duration,
    /// The append-only checkpoint file.
    pub checkpoint_file: PathBuf,
}

impl AuditSettings {
    /// `audit-public-key.pem` beside the checkpoint file.
    pub fn public_key_file(&self) -> PathBuf {
        self.checkpoint_file.with_file_name(PUBLIC_KEY_FILE)
    }
}

/// Why a checkpoint file or the public key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditFileError {
    /// Reading or writing failed.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// A line or the key does not parse.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong (and which line).
        what: String,
    },
    /// The existing public key file holds another key than the HSM's audit key.
    #[error(
        "{path} holds a different public key than the HSM's audit key; refusing to start. \
         Either this configuration points at another token or store, or the file was replaced. \
         Checkpoints signed by the old key would no longer verify: find out which, and move the \
         file aside only if the audit key was deliberately changed (docs/auditing.md)"
    )]
    DifferentKey {
        /// The file.
        path: String,
    },
}

fn io_error(path: &Path, e: &std::io::Error) -> AuditFileError {
    AuditFileError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// One line of the checkpoint file (also the form checkpoints take in an evidence bundle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointLine {
    /// The chain.
    pub chain: String,
    /// The number of records covered.
    pub seq: u64,
    /// The hash of record `seq`, hex.
    pub head_hash: String,
    /// When it was signed, Unix milliseconds (the signed value).
    pub time_ms: i64,
    /// The same time, RFC 3339 (for people; not signed).
    #[serde(default)]
    pub time: Option<String>,
    /// The audit key's ECDSA P-256 signature, DER, Base64.
    pub signature: String,
}

impl CheckpointLine {
    /// The line of a checkpoint.
    pub fn from_checkpoint(cp: &Checkpoint) -> Self {
        Self {
            chain: cp.chain.as_str().to_owned(),
            seq: cp.seq,
            head_hash: hex::encode(cp.head_hash),
            time_ms: cp.time.unix_millis(),
            time: cp.time.to_offset_date_time().and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            signature: cp.signature.to_base64(),
        }
    }

    /// The checkpoint of a line; `None` when a field is malformed.
    pub fn to_checkpoint(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            chain: ChainId::new(self.chain.clone()).ok()?,
            seq: self.seq,
            head_hash: <[u8; 32]>::try_from(hex::decode(&self.head_hash).ok()?).ok()?,
            time: Timestamp::from_unix_millis(self.time_ms),
            signature: DerSignature::from_base64(&self.signature).ok()?,
        })
    }
}

/// Whether `cp` carries a valid signature by `key` over its canonical message.
pub fn checkpoint_signature_valid(cp: &Checkpoint, key: &PublicKey) -> bool {
    crate::crypto::ecdsa::verify(key, &cp.message(), &cp.signature).is_ok()
}

/// The append-only checkpoint file of a running instance.
#[derive(Debug)]
pub struct CheckpointLog {
    path: PathBuf,
    file: Mutex<File>,
    appended: tokio::sync::watch::Sender<u64>,
}

impl CheckpointLog {
    /// Opens (creating, mode 0600) the file for appending (`O_APPEND`).
    ///
    /// # Errors
    /// [`AuditFileError::Io`] naming the file.
    pub fn open(path: &Path) -> Result<Self, AuditFileError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_error(path, &e))?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            appended: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line with one `write` and `fsync`s it. Blocking: call it off the async threads.
    ///
    /// # Errors
    /// [`AuditFileError::Io`].
    pub fn append(&self, cp: &Checkpoint) -> Result<(), AuditFileError> {
        let mut line = serde_json::to_vec(&CheckpointLine::from_checkpoint(cp)).map_err(|e| {
            AuditFileError::Io {
                path: self.path.display().to_string(),
                detail: e.to_string(),
            }
        })?;
        line.push(b'\n');
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut writer: &File = &file;
        writer
            .write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error(&self.path, &e))?;
        drop(file);
        self.appended.send_modify(|n| *n += 1);
        Ok(())
    }

    /// How many lines this process appended; changes with every append (for tests and the
    /// shutdown path, which wait for the event rather than for time).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

/// Every checkpoint in a checkpoint file, in file order; an absent file is `Ok(None)`. A trailing
/// line without its newline (a write cut short by a crash) is ignored; any other malformed line is
/// an error.
///
/// # Errors
/// [`AuditFileError`] naming the file and the line.
pub fn read_checkpoint_file(path: &Path) -> Result<Option<Vec<Checkpoint>>, AuditFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, &e)),
    };
    let complete = bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let mut out = Vec::new();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() || (i == last && !complete) {
            continue;
        }
        let malformed = |what: String| AuditFileError::Malformed {
            path: path.display().to_string(),
            what: format!("line {}: {what}", i + 1),
        };
        let parsed: CheckpointLine =
            serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
        out.push(
            parsed
                .to_checkpoint()
                .ok_or_else(|| malformed("a field is malformed".into()))?,
        );
    }
    Ok(Some(out))
}

/// Reads a PEM public key file; `Ok(None)` when absent.
///
/// # Errors
/// [`AuditFileError`] naming the file.
pub fn read_public_key(path: &Path) -> Result<Option<PublicKey>, AuditFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, &e)),
    };
    PublicKey::from_spki_pem(&text)
        .map(Some)
        .map_err(|_| AuditFileError::Malformed {
            path: path.display().to_string(),
            what: "not a P-256 public key in SPKI PEM".into(),
        })
}

/// Writes `key` to `path` as SPKI PEM (mode 0600) unless the file exists; an existing file must hold
/// the same key ([`AuditFileError::DifferentKey`] otherwise).
///
/// # Errors
/// [`AuditFileError`].
pub fn export_public_key(path: &Path, key: &PublicKey) -> Result<(), AuditFileError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match read_public_key(path) {
        Ok(Some(existing)) if existing == *key => return Ok(()),
        Ok(Some(_)) | Err(AuditFileError::Malformed { .. }) => {
            return Err(AuditFileError::DifferentKey {
                path: path.display().to_string(),
            });
        }
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
    }
    // Written under a private name and linked into place: an instance starting beside this one
    // (same folder) either sees no file or the whole file, never half of it; of two racing, the
    // second finds the first's file and compares.
    let tmp = path.with_extension(format!("pem.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(key.to_spki_pem().as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return match read_public_key(path)? {
                Some(existing) if existing == *key => Ok(()),
                _ => Err(AuditFileError::DifferentKey {
                    path: path.display().to_string(),
                }),
            };
        }
        Err(e) => return Err(io_error(path, &e)),
    }
    tracing::info!(path = %path.display(), "audit public key exported");
    Ok(())
}

/// Makes one checkpoint if there are new records, and appends it to `log`. Failures are logged and
/// counted (`offline_signer_audit_checkpoint_failures_total`); they never stop the service.
pub async fn checkpoint_once(service: &Service, log: &std::sync::Arc<CheckpointLog>) {
    let fail = |stage: &'static str, error: String| {
        metrics::counter!("offline_signer_audit_checkpoint_failures_total", "stage" => stage)
            .increment(1);
        tracing::warn!(stage, %error, "audit checkpoint failed");
    };
    match service.checkpoint().await {
        Ok(made) if made.is_empty() => {}
        Ok(made) => {
            let log = std::sync::Arc::clone(log);
            let count = made.len();
            let appended =
                tokio::task::spawn_blocking(move || made.iter().try_for_each(|cp| log.append(cp)))
                    .await;
            match appended {
                Ok(Ok(())) => {
                    metrics::counter!("offline_signer_audit_checkpoints_total")
                        .increment(count as u64);
                    tracing::debug!(count, "audit checkpoints signed and appended");
                }
                Ok(Err(e)) => fail("file", e.to_string()),
                Err(e) => fail("file", e.to_string()),
            }
        }
        Err(e) => fail("sign", e.to_string()),
    }
}

/// The background task: a checkpoint every `checkpoint_every` records (counted from the service's
/// store writes, confirmed against the chain head) and every `checkpoint_interval` when there were
/// new records. Runs until aborted; the caller makes the last checkpoint at shutdown.
pub async fn run_checkpoints(
    service: Service,
    log: std::sync::Arc<CheckpointLog>,
    settings: AuditSettings,
) {
    let mut tick = tokio::time::interval(settings.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = service.store_writes();
    // An upper bound of the records since the last checkpoint (every record is one write).
    let mut pending: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = service.store_written() => {
                let now = service.store_writes();
                pending = pending.saturating_add(now.saturating_sub(seen));
                seen = now;
                if pending < settings.checkpoint_every {
                    continue;
                }
                match service.records_since_checkpoint().await {
                    Ok(n) if n < settings.checkpoint_every => {
                        pending = n;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reading the audit chain head failed"),
                }
            }
        }
        pending = 0;
        checkpoint_once(&service, &log).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_beside_the_config_and_refuse_the_data_folder() {
        let s = RawAuditConfig::default()
            .validate(Path::new("/etc/os"), Some(Path::new("/var/os")))
            .expect("defaults");
        assert_eq!(s.checkpoint_every, 1000);
        assert_eq!(s.checkpoint_interval, Duration::from_secs(10));
        assert_eq!(
            s.checkpoint_file,
            Path::new("/etc/os/audit-checkpoints.jsonl")
        );
        assert_eq!(
            s.public_key_file(),
            Path::new("/etc/os/audit-public-key.pem")
        );
        let inside = RawAuditConfig {
            checkpoint_file: Some("data/cp.jsonl".into()),
            ..RawAuditConfig::default()
        };
        let err = inside
            .validate(Path::new("/etc/os"), Some(Path::new("/etc/os/data")))
            .expect_err("inside the data folder");
        assert_eq!(err.0, "audit.checkpoint_file");
        let zero = RawAuditConfig {
            checkpoint_every: 0,
            ..RawAuditConfig::default()
        };
        assert!(zero.validate(Path::new("/"), None).is_err());
    }

    #[test]
    fn lines_round_trip_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp.jsonl");
        let key = crate::crypto::PrivateKey::from_scalar_bytes(&[7; 32]).expect("scalar");
        let chain = ChainId::embedded();
        let time = Timestamp::from_unix_millis(1_700_000_000_000);
        let message = Checkpoint::signed_message(&chain, 3, &[9; 32], time);
        let cp = Checkpoint {
            chain,
            seq: 3,
            head_hash: [9; 32],
            time,
            signature: crate::crypto::ecdsa::sign(&key, &message),
        };
        assert!(checkpoint_signature_valid(&cp, &key.public_key()));
        let log = CheckpointLog::open(&path).expect("open");
        log.append(&cp).expect("append");
        log.append(&cp).expect("append");
        assert_eq!(*log.subscribe().borrow(), 2);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("reopen");
        f.write_all(b"{\"chain\":\"emb").expect("torn write");
        let read = read_checkpoint_file(&path).expect("read").expect("exists");
        assert_eq!(read, vec![cp.clone(), cp]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_public_key_is_exported_once_and_a_different_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(PUBLIC_KEY_FILE);
        let a = crate::crypto::PrivateKey::from_scalar_bytes(&[1; 32])
            .expect("scalar")
            .public_key();
        let b = crate::crypto::PrivateKey::from_scalar_bytes(&[2; 32])
            .expect("scalar")
            .public_key();
        export_public_key(&path, &a).expect("first export");
        export_public_key(&path, &a).expect("same key again");
        assert!(matches!(
            export_public_key(&path, &b),
            Err(AuditFileError::DifferentKey { .. })
        ));
        assert_eq!(read_public_key(&path).expect("read"), Some(a));
    }
}
