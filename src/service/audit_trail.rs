//! Checking the audit trail against its signed checkpoints, and evidence bundles for disputes.
//!
//! - [`verify_checkpoints`]: every checkpoint (stored in the store, and every line of the external
//!   checkpoint file) must carry a valid signature by the audit key, and the record at its position
//!   must still hash to its head hash. Since every record's hash covers its predecessor's, an edit
//!   anywhere before a checkpoint (even with every later hash recomputed) changes the record at the
//!   checkpoint; a truncated chain or a store restored from an older copy no longer has it.
//! - [`build_evidence`] / [`verify_evidence`]: one activation's records, each with the chain segment
//!   that links it to a signed checkpoint. Verifying needs no store and no HSM: SHA-256 and one
//!   ECDSA P-256 verification per checkpoint, with the public key carried in the bundle (compare it
//!   with the operator's published `audit-public-key.pem`).

use serde::{Deserialize, Serialize};

use super::checkpoint::{CheckpointLine, checkpoint_signature_valid};
use crate::crypto::b64;
use crate::model::PublicKey;
use crate::store::{AuditEntry, AuditRecord, ChainId, Checkpoint, Store, StoreError};

/// The `format` of an evidence bundle.
pub const EVIDENCE_FORMAT: &str = "offline-signer/audit-evidence/v1";

/// What [`verify_checkpoints`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Checkpoints stored in the store, checked.
    pub stored: usize,
    /// Lines of the external checkpoint file, checked (`None`: no file).
    pub external: Option<usize>,
    /// The newest external checkpoint of each chain, as (chain, seq).
    pub newest_external: Vec<(ChainId, u64)>,
    /// The first problem, in words (`None`: every check passed).
    pub first_broken: Option<String>,
}

/// Why the record a checkpoint names does not match it, if it does not.
fn record_mismatch(store: &dyn Store, cp: &Checkpoint) -> Result<Option<String>, StoreError> {
    let when = CheckpointLine::from_checkpoint(cp)
        .time
        .unwrap_or_else(|| cp.time.unix_millis().to_string());
    if cp.seq == 0 {
        return Ok((cp.head_hash != cp.chain.genesis_hash()).then(|| {
            format!(
                "checkpoint of {when} names record 0 with a hash that is not the chain's genesis"
            )
        }));
    }
    let entries = match store.audit_chain_entries(&cp.chain, cp.seq, 1) {
        Ok(e) => e,
        Err(StoreError::NotFound { .. }) => {
            return Ok(Some(format!(
                "the chain is missing from the store, but was checkpointed at record {} on {when}",
                cp.seq
            )));
        }
        Err(e) => return Err(e),
    };
    Ok(match entries.first() {
        Some(AuditEntry::Record(rec)) if rec.seq == cp.seq => {
            (rec.compute_hash() != cp.head_hash).then(|| {
                format!(
                    "record {} changed since the checkpoint of {when} (its contents no longer hash to the signed head hash)",
                    cp.seq
                )
            })
        }
        Some(AuditEntry::Undecodable { seq, .. }) if *seq == cp.seq => Some(format!(
            "record {} does not decode, but was checkpointed on {when}",
            cp.seq
        )),
        _ => Some(format!(
            "record {} is missing: the store is older than, or was truncated before, the checkpoint of {when}",
            cp.seq
        )),
    })
}

/// Checks every stored checkpoint and every checkpoint of the external file (`external`, `None` when
/// there is no file) against `public_key` and the store. A storage failure is an error; a broken
/// check is the report.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn verify_checkpoints(
    store: &dyn Store,
    public_key: Option<&PublicKey>,
    external: Option<&[Checkpoint]>,
) -> Result<CheckpointReport, StoreError> {
    let stored = store.checkpoints()?;
    let mut report = CheckpointReport {
        stored: stored.len(),
        external: external.map(<[Checkpoint]>::len),
        newest_external: Vec::new(),
        first_broken: None,
    };
    for cp in external.unwrap_or_default() {
        match report
            .newest_external
            .iter_mut()
            .find(|(chain, _)| *chain == cp.chain)
        {
            Some((_, seq)) => *seq = (*seq).max(cp.seq),
            None => report.newest_external.push((cp.chain.clone(), cp.seq)),
        }
    }
    report.newest_external.sort();
    let Some(key) = public_key else {
        if !stored.is_empty() || external.is_some_and(|e| !e.is_empty()) {
            report.first_broken = Some(
                "the audit public key file is missing: the checkpoints cannot be checked".into(),
            );
        }
        return Ok(report);
    };
    let sources = stored.iter().map(|cp| ("stored", cp)).chain(
        external
            .unwrap_or_default()
            .iter()
            .map(|cp| ("external", cp)),
    );
    for (source, cp) in sources {
        let name = format!("{source} checkpoint {}#{}", cp.chain, cp.seq);
        if !checkpoint_signature_valid(cp, key) {
            report.first_broken = Some(format!(
                "{name}: the signature does not verify with the audit public key"
            ));
            return Ok(report);
        }
        if let Some(why) = record_mismatch(store, cp)? {
            report.first_broken = Some(format!("chain {}: {why} ({name})", cp.chain));
            return Ok(report);
        }
    }
    Ok(report)
}

/// An evidence bundle: one activation's audit records, each linked by a chain segment to a signed
/// checkpoint, and the public key that verifies the checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvidenceBundle {
    /// [`EVIDENCE_FORMAT`].
    pub format: String,
    /// The activation.
    pub activation_id: String,
    /// The audit public key, SPKI PEM.
    pub public_key_pem: String,
    /// The segments, each ending at its checkpoint.
    pub segments: Vec<EvidenceSegment>,
}

/// Consecutive records of one chain, from an activation record up to a checkpointed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvidenceSegment {
    /// The records, in chain order; the last one is the checkpoint's.
    pub records: Vec<EvidenceRecord>,
    /// The checkpoint covering them.
    pub checkpoint: CheckpointLine,
}

/// One record of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvidenceRecord {
    /// Its position in the chain.
    pub seq: u64,
    /// Its canonical bytes (what its hash covers), Base64.
    pub canonical: String,
    /// Its hash, hex.
    pub hash: String,
    /// Its fields, for the activation's own records only (other records are there to link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<serde_json::Value>,
}

/// A record's fields as JSON (what an evidence bundle shows of the activation's records).
pub fn record_json(rec: &AuditRecord) -> serde_json::Value {
    serde_json::json!({
        "seq": rec.seq,
        "timeMs": rec.time.unix_millis(),
        "activationId": rec.activation_id,
        "applicationId": rec.application_id,
        "operation": rec.operation.as_str(),
        "outcome": rec.outcome.as_str(),
        "signatureType": rec.signature_type,
        "counterBefore": rec.counter_before,
        "counterAfter": rec.counter_after,
        "nonceStatus": rec.nonce_status,
        "dataSha256": rec.data_sha256.map(hex::encode),
        "actor": rec.actor,
        "subject": rec.subject,
        "prevHash": hex::encode(rec.prev_hash),
    })
}

/// Why an evidence bundle cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record on the way to a checkpoint does not decode.
    #[error("audit record {seq} of chain {chain} does not decode; run `audit verify`")]
    Damaged {
        /// The chain.
        chain: String,
        /// The record.
        seq: u64,
    },
}

/// What [`build_evidence`] made.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The bundle.
    pub bundle: EvidenceBundle,
    /// The activation's records in the bundle.
    pub covered: usize,
    /// The activation's records newer than every valid checkpoint of their chain (not in the bundle:
    /// make the bundle again after the next checkpoint).
    pub uncovered: usize,
}

/// Records read at once while scanning.
const PAGE: usize = 1000;

/// Builds the evidence bundle of `activation_id`: scans every chain for its records and links each
/// to the first checkpoint at or after it whose signature verifies with `public_key` and whose
/// record still matches.
///
/// # Errors
/// [`EvidenceError`].
pub fn build_evidence(
    store: &dyn Store,
    activation_id: &str,
    public_key: &PublicKey,
) -> Result<Evidence, EvidenceError> {
    let checkpoints = store.checkpoints()?;
    let mut bundle = EvidenceBundle {
        format: EVIDENCE_FORMAT.into(),
        activation_id: activation_id.to_owned(),
        public_key_pem: public_key.to_spki_pem(),
        segments: Vec::new(),
    };
    let (mut covered, mut uncovered) = (0, 0);
    for chain in store.audit_chains()? {
        let mut valid: Vec<&Checkpoint> = Vec::new();
        for cp in checkpoints
            .iter()
            .filter(|cp| cp.chain == chain && cp.seq > 0)
        {
            if checkpoint_signature_valid(cp, public_key) && record_mismatch(store, cp)?.is_none() {
                valid.push(cp);
            }
        }
        valid.sort_by_key(|cp| cp.seq);
        // (first record of the activation, covering checkpoint), one per checkpoint used.
        let mut groups: Vec<(u64, &Checkpoint)> = Vec::new();
        let mut from = 1;
        loop {
            let page = store.audit_chain_entries(&chain, from, PAGE)?;
            let Some(last) = page.last().map(AuditEntry::seq) else {
                break;
            };
            for entry in &page {
                let AuditEntry::Record(rec) = entry else {
                    continue;
                };
                if rec.activation_id.as_deref() != Some(activation_id) {
                    continue;
                }
                match valid.iter().find(|cp| cp.seq >= rec.seq) {
                    Some(cp) => {
                        covered += 1;
                        if !groups.iter().any(|(_, c)| c.seq == cp.seq) {
                            groups.push((rec.seq, *cp));
                        }
                    }
                    None => uncovered += 1,
                }
            }
            if page.len() < PAGE {
                break;
            }
            from = last + 1;
        }
        for (first, cp) in groups {
            let mut records = Vec::new();
            let mut at = first;
            while at <= cp.seq {
                let limit = usize::try_from(cp.seq - at + 1).unwrap_or(PAGE).min(PAGE);
                let page = store.audit_chain_entries(&chain, at, limit)?;
                if page.is_empty() {
                    break;
                }
                for entry in page {
                    let rec = match entry {
                        AuditEntry::Record(rec) if rec.seq == at => rec,
                        other => {
                            return Err(EvidenceError::Damaged {
                                chain: chain.to_string(),
                                seq: other.seq().min(at),
                            });
                        }
                    };
                    let ours = rec.activation_id.as_deref() == Some(activation_id);
                    records.push(EvidenceRecord {
                        seq: rec.seq,
                        canonical: b64::encode(rec.canonical_bytes()),
                        hash: hex::encode(rec.hash),
                        decoded: ours.then(|| record_json(&rec)),
                    });
                    at += 1;
                }
            }
            bundle.segments.push(EvidenceSegment {
                records,
                checkpoint: CheckpointLine::from_checkpoint(cp),
            });
        }
    }
    Ok(Evidence {
        bundle,
        covered,
        uncovered,
    })
}

/// Checks an evidence bundle with nothing but its own contents: the public key parses, every
/// checkpoint's signature verifies, every segment's records are consecutive, decode from their
/// canonical bytes, link by `prev_hash`, and end at the checkpoint's head hash; every shown field,
/// hash and position matches the canonical bytes; and every decoded record is the activation's.
/// Returns the activation's records, in bundle order.
///
/// # Errors
/// The first problem, in words.
pub fn verify_evidence(bundle: &EvidenceBundle) -> Result<Vec<AuditRecord>, String> {
    if bundle.format != EVIDENCE_FORMAT {
        return Err(format!(
            "format {:?} is not {EVIDENCE_FORMAT:?}",
            bundle.format
        ));
    }
    let key = PublicKey::from_spki_pem(&bundle.public_key_pem)
        .map_err(|_| "publicKeyPem is not a P-256 public key in SPKI PEM".to_owned())?;
    let mut ours = Vec::new();
    for (i, segment) in bundle.segments.iter().enumerate() {
        let at = |what: String| format!("segment {}: {what}", i + 1);
        let cp = segment
            .checkpoint
            .to_checkpoint()
            .ok_or_else(|| at("the checkpoint is malformed".into()))?;
        // Every shown field (the readable time included) must be what the signed values give.
        if CheckpointLine::from_checkpoint(&cp) != segment.checkpoint {
            return Err(at("the checkpoint is not in its canonical form".into()));
        }
        if !checkpoint_signature_valid(&cp, &key) {
            return Err(at(format!(
                "the signature of checkpoint {}#{} does not verify",
                cp.chain, cp.seq
            )));
        }
        let mut prev: Option<[u8; 32]> = None;
        let mut expected_seq = None;
        for r in &segment.records {
            let bytes = b64::decode(&r.canonical)
                .map_err(|_| at(format!("record {}: canonical bytes are not Base64", r.seq)))?;
            let rec = AuditRecord::from_canonical_bytes(&bytes).ok_or_else(|| {
                at(format!(
                    "record {}: canonical bytes are not an audit record",
                    r.seq
                ))
            })?;
            if rec.seq != r.seq || expected_seq.is_some_and(|s| s != rec.seq) {
                return Err(at(format!("record {}: out of sequence", r.seq)));
            }
            if hex::encode(rec.hash) != r.hash {
                return Err(at(format!(
                    "record {}: the shown hash is not the hash of its bytes",
                    r.seq
                )));
            }
            if prev.is_some_and(|p| p != rec.prev_hash) {
                return Err(at(format!(
                    "record {}: does not link to record {}",
                    r.seq,
                    r.seq - 1
                )));
            }
            let is_ours = rec.activation_id.as_deref() == Some(bundle.activation_id.as_str());
            match &r.decoded {
                Some(shown) if !is_ours || *shown != record_json(&rec) => {
                    return Err(at(format!(
                        "record {}: the decoded fields do not match its bytes",
                        r.seq
                    )));
                }
                None if is_ours => {
                    return Err(at(format!(
                        "record {}: a record of the activation without its decoded fields",
                        r.seq
                    )));
                }
                _ => {}
            }
            if is_ours {
                ours.push(rec.clone());
            }
            prev = Some(rec.hash);
            expected_seq = Some(rec.seq + 1);
        }
        match (segment.records.last(), prev) {
            (Some(last), Some(hash)) if last.seq == cp.seq && hash == cp.head_hash => {}
            _ => {
                return Err(at(format!(
                    "the records do not end at the head of checkpoint {}#{}",
                    cp.chain, cp.seq
                )));
            }
        }
    }
    Ok(ours)
}
