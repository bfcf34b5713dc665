//! The audit trail: what one audit record holds, how records are hash-chained, and the walk that checks
//! every chain (`offline-signer audit verify`).
//!
//! A store holds one or more chains, each named by a [`ChainId`]: sled has exactly one
//! ([`ChainId::embedded`]); the PostgreSQL store has one per writing instance, so that instances never
//! queue on one another to append. Within a chain, record `n` carries `prev_hash` = the `hash` of record
//! `n − 1` (for the first record, `seq` 1, the chain's [`ChainId::genesis_hash`]: 32 zero bytes for the
//! embedded chain, a hash of the chain's name for every other) and `hash = SHA-256("offline-signer/audit/v1" ‖ canonical bytes)`, where the canonical bytes
//! are every other field in the fixed layout of [`super::codec::audit_body`] (record-format byte first,
//! `prev_hash` last). Deleting, reordering or editing any record breaks the chain at that record; the chain
//! head kept beside the records catches a truncated tail. A record never holds the signed data or a code,
//! only `data_sha256`.

use sha2::{Digest, Sha256};

use super::codec;
use super::{Store, StoreError};
use crate::model::{DerSignature, Timestamp};

/// Domain-separation prefix of every audit hash.
const AUDIT_HASH_DOMAIN: &[u8] = b"offline-signer/audit/v1";

/// Domain-separation prefix of the genesis hash of a named chain.
const CHAIN_GENESIS_DOMAIN: &[u8] = b"offline-signer/audit/chain/v1";

/// The name of the single chain of an embedded (sled) store.
const EMBEDDED_CHAIN: &str = "embedded";

/// The name of one audit chain: 1 to 64 characters from `A–Z a–z 0–9 . _ : @ -`.
///
/// Each writing instance appends to its own chain. Two handles given the same id share the chain (their
/// appends then serialize on it): that is safe, only slower.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ChainId(String);

impl ChainId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps a chain name.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidChainId> {
        let id = id.into();
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
        if id.is_empty() || id.len() > Self::MAX_LEN || !id.chars().all(allowed) {
            return Err(InvalidChainId);
        }
        Ok(Self(id))
    }

    /// The longest suffix [`Self::lane`] adds (`.lane64`): an instance writing to more than one lane
    /// needs a base id at most [`Self::MAX_LEN`] minus this long.
    pub const LANE_SUFFIX_MAX: usize = 7;

    /// Lane `k` of the instance whose chain is `self`: lane 0 is `self` itself (so a database written
    /// before lanes keeps its chains), lane `k ≥ 1` is `<self>.lane<k>`. Fails when the result would be
    /// longer than [`Self::MAX_LEN`].
    pub fn lane(&self, k: usize) -> Result<Self, InvalidChainId> {
        if k == 0 {
            return Ok(self.clone());
        }
        Self::new(format!("{}.lane{k}", self.0))
    }

    /// The one chain of an embedded store (`embedded`).
    pub fn embedded() -> Self {
        Self(EMBEDDED_CHAIN.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `prev_hash` of the chain's first record and the head hash of an empty chain: 32 zero bytes for
    /// the embedded chain (its stores predate named chains), `SHA-256("offline-signer/audit/chain/v1" ‖
    /// name)` for every other. Binding the first link to the name means a record cannot be moved to the
    /// start of another chain unnoticed.
    pub fn genesis_hash(&self) -> [u8; 32] {
        if self.0 == EMBEDDED_CHAIN {
            return [0; 32];
        }
        let mut h = Sha256::new();
        h.update(CHAIN_GENESIS_DOMAIN);
        h.update(self.0.as_bytes());
        h.finalize().into()
    }

    /// The head of this chain while it has no record.
    pub fn empty_head(&self) -> ChainHead {
        ChainHead {
            seq: 0,
            hash: self.genesis_hash(),
        }
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chain id that is empty, longer than [`ChainId::MAX_LEN`] or has a character outside the allowed set.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("an audit chain id is 1 to 64 characters from A-Z a-z 0-9 . _ : @ -")]
pub struct InvalidChainId;

/// What was done. Stored as the stable upper-case name of [`Self::as_str`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AuditOperation {
    /// A personalized payload was signed.
    CreatePersonalized,
    /// A non-personalized payload was signed.
    CreateNonPersonalized,
    /// A code was verified (valid or not).
    Verify,
    /// An application was made.
    ApplicationCreate,
    /// A master key pair was added to an application.
    MasterKeyAdd,
    /// A device was registered directly (`activation/register`).
    ActivationRegister,
    /// An activation was committed.
    ActivationCommit,
    /// An activation was blocked.
    ActivationBlock,
    /// An activation was unblocked.
    ActivationUnblock,
    /// An activation was removed.
    ActivationRemove,
    /// An application version was made.
    ApplicationVersionCreate,
    /// `activation/init` made an activation code.
    ActivationInit,
    /// `activation/prepare` bound a device to an activation code.
    ActivationPrepare,
    /// An integration credential was made.
    IntegrationCreate,
    /// An integration credential was removed.
    IntegrationRemove,
}

impl AuditOperation {
    const ALL: [Self; 15] = [
        Self::CreatePersonalized,
        Self::CreateNonPersonalized,
        Self::Verify,
        Self::ApplicationCreate,
        Self::MasterKeyAdd,
        Self::ActivationRegister,
        Self::ActivationCommit,
        Self::ActivationBlock,
        Self::ActivationUnblock,
        Self::ActivationRemove,
        Self::ApplicationVersionCreate,
        Self::ActivationInit,
        Self::ActivationPrepare,
        Self::IntegrationCreate,
        Self::IntegrationRemove,
    ];

    /// Its upper-case wire name, as stored in the audit record.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreatePersonalized => "CREATE_PERSONALIZED",
            Self::CreateNonPersonalized => "CREATE_NON_PERSONALIZED",
            Self::Verify => "VERIFY",
            Self::ApplicationCreate => "APPLICATION_CREATE",
            Self::MasterKeyAdd => "MASTER_KEY_ADD",
            Self::ActivationRegister => "ACTIVATION_REGISTER",
            Self::ActivationCommit => "ACTIVATION_COMMIT",
            Self::ActivationBlock => "ACTIVATION_BLOCK",
            Self::ActivationUnblock => "ACTIVATION_UNBLOCK",
            Self::ActivationRemove => "ACTIVATION_REMOVE",
            Self::ApplicationVersionCreate => "APPLICATION_VERSION_CREATE",
            Self::ActivationInit => "ACTIVATION_INIT",
            Self::ActivationPrepare => "ACTIVATION_PREPARE",
            Self::IntegrationCreate => "INTEGRATION_CREATE",
            Self::IntegrationRemove => "INTEGRATION_REMOVE",
        }
    }

    /// The value of its wire name, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

/// How it ended. Stored as the stable upper-case name of [`Self::as_str`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AuditOutcome {
    /// A verification matched.
    Valid,
    /// A verification did not match (a failed attempt was counted).
    Invalid,
    /// The nonce was not `VALID`; nothing was counted.
    NonceRejected,
    /// The activation was not `ACTIVE`.
    Inactive,
    /// The activation reached its failure limit and was blocked before comparing.
    ForcedBlock,
    /// The activation or application does not exist.
    NotFound,
    /// A record was created (application, activation, payload).
    Created,
    /// A record changed state (commit, block, unblock, new master key).
    Changed,
    /// The activation was removed and its key material destroyed.
    Removed,
    /// The request was refused (e.g. wrong state); nothing changed.
    Refused,
}

impl AuditOutcome {
    const ALL: [Self; 10] = [
        Self::Valid,
        Self::Invalid,
        Self::NonceRejected,
        Self::Inactive,
        Self::ForcedBlock,
        Self::NotFound,
        Self::Created,
        Self::Changed,
        Self::Removed,
        Self::Refused,
    ];

    /// Its upper-case wire name, as stored in the audit record.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::Invalid => "INVALID",
            Self::NonceRejected => "NONCE_REJECTED",
            Self::Inactive => "INACTIVE",
            Self::ForcedBlock => "FORCED_BLOCK",
            Self::NotFound => "NOT_FOUND",
            Self::Created => "CREATED",
            Self::Changed => "CHANGED",
            Self::Removed => "REMOVED",
            Self::Refused => "REFUSED",
        }
    }

    /// The value of its wire name, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// An audit record before the store gives it its place in the chain (`seq`, `prev_hash`, `hash`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuditDraft {
    /// When it happened.
    pub time: Timestamp,
    /// The activation id (UUID v4, lower case).
    pub activation_id: Option<String>,
    /// The application id.
    pub application_id: Option<String>,
    /// What was done.
    pub operation: AuditOperation,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// `POSSESSION_KNOWLEDGE` / `POSSESSION_BIOMETRY`, for verifications.
    pub signature_type: Option<String>,
    /// The counter before the operation.
    pub counter_before: Option<u64>,
    /// The counter after the operation.
    pub counter_after: Option<u64>,
    /// `VALID`, `UNKNOWN`, `EXPIRED`, `CONSUMED`, `MISMATCH`, or `None` when the nonce policy is off.
    pub nonce_status: Option<String>,
    /// SHA-256 of the request `data`; never the data or the code themselves.
    pub data_sha256: Option<[u8; 32]>,
    /// Who acted: the integration credential's id, or `cli` for a local command. `None` only in
    /// records written before actors were recorded (record format 1).
    pub actor: Option<String>,
    /// What was acted on when it is neither an activation nor an application: the integration
    /// credential's id for `INTEGRATION_CREATE` and `INTEGRATION_REMOVE`.
    pub subject: Option<String>,
}

impl AuditDraft {
    /// A draft with only the required fields set.
    pub fn new(time: Timestamp, operation: AuditOperation, outcome: AuditOutcome) -> Self {
        Self {
            time,
            activation_id: None,
            application_id: None,
            operation,
            outcome,
            signature_type: None,
            counter_before: None,
            counter_after: None,
            nonce_status: None,
            data_sha256: None,
            actor: None,
            subject: None,
        }
    }

    /// Places the draft after the record with hash `prev_hash`, as number `seq`, and computes its hash.
    pub(crate) fn seal(self, seq: u64, prev_hash: [u8; 32]) -> AuditRecord {
        let mut rec = AuditRecord {
            seq,
            time: self.time,
            activation_id: self.activation_id,
            application_id: self.application_id,
            operation: self.operation,
            outcome: self.outcome,
            signature_type: self.signature_type,
            counter_before: self.counter_before,
            counter_after: self.counter_after,
            nonce_status: self.nonce_status,
            data_sha256: self.data_sha256,
            actor: self.actor,
            subject: self.subject,
            prev_hash,
            hash: [0; 32],
        };
        rec.hash = rec.compute_hash();
        rec
    }
}

/// One link of the audit chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuditRecord {
    /// 1 for the first record, then consecutive.
    pub seq: u64,
    /// When it happened.
    pub time: Timestamp,
    /// The activation id (UUID v4, lower case).
    pub activation_id: Option<String>,
    /// The application id.
    pub application_id: Option<String>,
    /// What was done.
    pub operation: AuditOperation,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The signature type matched, or reported.
    pub signature_type: Option<String>,
    /// The counter before the operation.
    pub counter_before: Option<u64>,
    /// The counter after the operation.
    pub counter_after: Option<u64>,
    /// The nonce registry verdict (`null` when the registry is off).
    pub nonce_status: Option<String>,
    /// SHA-256 of the signed data (never the data itself).
    pub data_sha256: Option<[u8; 32]>,
    /// Who acted (see [`AuditDraft::actor`]); `None` only in format-1 records.
    pub actor: Option<String>,
    /// What was acted on (see [`AuditDraft::subject`]).
    pub subject: Option<String>,
    /// `hash` of record `seq − 1`; 32 zero bytes for `seq` 1.
    pub prev_hash: [u8; 32],
    /// `SHA-256("offline-signer/audit/v1" ‖ codec::audit_body(self))`.
    pub hash: [u8; 32],
}

impl AuditRecord {
    /// The canonical bytes: every field but `hash`, in the fixed layout the hash covers (record
    /// format byte first, `prev_hash` last). `hash = SHA-256("offline-signer/audit/v1" ‖ these)`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        codec::audit_body(self)
    }

    /// The record whose [`Self::canonical_bytes`] are `bytes`, with its hash computed from them.
    /// `None` when the bytes are not exactly the canonical layout of a record (trailing bytes,
    /// unknown names, a non-canonical option tag…).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Option<Self> {
        let mut h = Sha256::new();
        h.update(AUDIT_HASH_DOMAIN);
        h.update(bytes);
        let hash: [u8; 32] = h.finalize().into();
        let mut stored = bytes.to_vec();
        stored.extend_from_slice(&hash);
        let rec = codec::decode_audit(&stored).ok()?;
        (codec::audit_body(&rec) == bytes).then_some(rec)
    }

    /// The hash this record should carry, from all its other fields.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(AUDIT_HASH_DOMAIN);
        h.update(codec::audit_body(self));
        h.finalize().into()
    }
}

/// Domain-separation prefix of the message a checkpoint signs.
pub const CHECKPOINT_DOMAIN: &[u8] = b"offline-signer/audit/checkpoint/v1";

/// A signed statement that chain `chain` had `seq` records, the last of which hashes to
/// `head_hash`, at `time`. The signature is ECDSA P-256 (DER) by the HSM's audit key over
/// `SHA-256(`[`Checkpoint::signed_message`]`)`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Checkpoint {
    /// The chain.
    pub chain: ChainId,
    /// How many records the chain had (the position of its head record).
    pub seq: u64,
    /// The hash of record `seq` (the chain's genesis hash when `seq` is 0).
    pub head_hash: [u8; 32],
    /// When it was signed.
    pub time: Timestamp,
    /// The audit key's signature.
    pub signature: DerSignature,
}

impl Checkpoint {
    /// The canonical message a checkpoint signs:
    /// `"offline-signer/audit/checkpoint/v1" ‖ 0x00 ‖ u8 len(chain) ‖ chain (ASCII) ‖ u64 BE seq ‖
    /// head_hash[32] ‖ i64 BE time (Unix milliseconds)`. Every field has a fixed length or a length
    /// prefix, so two different checkpoints never share a message; the domain keeps the audit key's
    /// signatures from meaning anything else.
    pub fn signed_message(
        chain: &ChainId,
        seq: u64,
        head_hash: &[u8; 32],
        time: Timestamp,
    ) -> Vec<u8> {
        let name = chain.as_str().as_bytes();
        let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 2 + name.len() + 48);
        m.extend_from_slice(CHECKPOINT_DOMAIN);
        m.push(0);
        // A chain id is at most 64 bytes (`ChainId::MAX_LEN`).
        m.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        m.extend_from_slice(name);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(head_hash);
        m.extend_from_slice(&time.unix_millis().to_be_bytes());
        m
    }

    /// `SHA-256(signed_message)`: what the HSM signs.
    pub fn digest_of(chain: &ChainId, seq: u64, head_hash: &[u8; 32], time: Timestamp) -> [u8; 32] {
        Sha256::digest(Self::signed_message(chain, seq, head_hash, time)).into()
    }

    /// This checkpoint's [`Checkpoint::signed_message`].
    pub fn message(&self) -> Vec<u8> {
        Self::signed_message(&self.chain, self.seq, &self.head_hash, self.time)
    }
}

/// One entry read from the audit trail: a record, or bytes at position `seq` that do not decode.
// Nearly every entry is a record; boxing it would allocate twice per record for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AuditEntry {
    /// A record that decodes.
    Record(AuditRecord),
    /// Bytes at position `seq` that do not decode (damage to report, not to skip).
    Undecodable {
        /// Its position.
        seq: u64,
        /// What is wrong, in words.
        detail: String,
    },
}

impl AuditEntry {
    /// The position the entry was stored at.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Record(r) => r.seq,
            Self::Undecodable { seq, .. } => *seq,
        }
    }
}

/// The newest audit record's position and hash in one chain (`0` and the chain's
/// [`ChainId::genesis_hash`] for an empty chain).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChainHead {
    /// Position in its chain (1 is the first record).
    pub seq: u64,
    /// This record's hash.
    pub hash: [u8; 32],
}

impl ChainHead {
    /// The head of the empty embedded chain (zero hash).
    pub const EMPTY: Self = Self {
        seq: 0,
        hash: [0; 32],
    };
}

/// Why the chain is broken at a record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChainBreak {
    /// The stored bytes do not decode as an audit record.
    Undecodable(String),
    /// The record at this position is missing (the next one found, if any, is `found`).
    Missing {
        /// The position found instead (`None`: the chain ends early).
        found: Option<u64>,
    },
    /// `prev_hash` is not the hash of the previous record.
    PrevHashMismatch,
    /// `hash` does not match the record's contents.
    HashMismatch,
    /// The chain head says the trail is longer than (or differs from) what is stored.
    HeadMismatch {
        /// The position the head names.
        head_seq: u64,
    },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Undecodable(detail) => write!(f, "record does not decode ({detail})"),
            Self::Missing { found: Some(next) } => {
                write!(f, "record missing (next stored record is {next})")
            }
            Self::Missing { found: None } => write!(f, "record missing"),
            Self::PrevHashMismatch => {
                write!(f, "prev_hash does not match the previous record's hash")
            }
            Self::HashMismatch => write!(f, "hash does not match the record's contents"),
            Self::HeadMismatch { head_seq } => write!(
                f,
                "chain head names record {head_seq}, which is not the last intact record"
            ),
        }
    }
}

/// The result of walking the audit chains.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChainReport {
    /// How many records were checked and found intact: in every chain, up to its first break.
    pub records: u64,
    /// The position of the first broken record and why (in the first broken chain, by id order).
    pub first_broken: Option<(u64, ChainBreak)>,
    /// The chain `first_broken` is in; `None` when every chain is intact.
    pub broken_chain: Option<ChainId>,
    /// How many chains were walked.
    pub chains: usize,
}

impl ChainReport {
    /// Whether every chain is intact.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// How many records [`verify_audit_chain`] asks the store for at once.
const PAGE: usize = 512;

/// Walks every audit chain of the store from its record 1 and reports the first broken link.
///
/// Works with any [`Store`]; reads in pages, so memory stays bounded on a long trail. A storage failure
/// is an error; a damaged record is not (it is the report). Each chain must link from its genesis hash
/// without a gap and end exactly at its stored head, so a record missing, edited, reordered or forked
/// inside any chain is found. What the walk cannot see is a whole chain deleted with its head (the store
/// keeps no list of chains outside itself); signed checkpoints of every head are the answer to that.
pub fn verify_audit_chain(store: &dyn Store) -> Result<ChainReport, StoreError> {
    let mut report = ChainReport {
        records: 0,
        first_broken: None,
        broken_chain: None,
        chains: 0,
    };
    for chain in store.audit_chains()? {
        let (records, broken) = verify_one_chain(store, &chain)?;
        report.records += records;
        report.chains += 1;
        if report.first_broken.is_none() && broken.is_some() {
            report.first_broken = broken;
            report.broken_chain = Some(chain);
        }
    }
    Ok(report)
}

/// Walks one chain: the number of intact records before the first break, and the break.
fn verify_one_chain(
    store: &dyn Store,
    chain: &ChainId,
) -> Result<(u64, Option<(u64, ChainBreak)>), StoreError> {
    let mut expected = 1u64;
    let mut prev = chain.genesis_hash();
    loop {
        let page = store.audit_chain_entries(chain, expected, PAGE)?;
        let page_len = page.len();
        for entry in page {
            let broken = |seq, why| Ok((expected - 1, Some((seq, why))));
            if entry.seq() != expected {
                return broken(
                    expected,
                    ChainBreak::Missing {
                        found: Some(entry.seq()),
                    },
                );
            }
            let rec = match entry {
                AuditEntry::Undecodable { seq, detail } => {
                    return broken(seq, ChainBreak::Undecodable(detail));
                }
                AuditEntry::Record(rec) => rec,
            };
            if rec.prev_hash != prev {
                return broken(rec.seq, ChainBreak::PrevHashMismatch);
            }
            if rec.compute_hash() != rec.hash {
                return broken(rec.seq, ChainBreak::HashMismatch);
            }
            prev = rec.hash;
            expected += 1;
        }
        if page_len < PAGE {
            break;
        }
    }
    let records = expected - 1;
    let head = store.audit_chain_head(chain)?;
    if head.seq > records {
        return Ok((
            records,
            Some((expected, ChainBreak::Missing { found: None })),
        ));
    }
    if head.seq < records {
        // Records exist past the head: something appended around the store.
        let why = ChainBreak::HeadMismatch { head_seq: head.seq };
        return Ok((head.seq, Some((head.seq + 1, why))));
    }
    if head.hash != prev {
        let why = ChainBreak::HeadMismatch { head_seq: head.seq };
        return Ok((records, Some((records, why))));
    }
    Ok((records, None))
}

/// Checks that `rec` is the next link after `head` and is sealed correctly.
pub(crate) fn check_import(
    chain: &ChainId,
    head: ChainHead,
    rec: &AuditRecord,
) -> Result<(), StoreError> {
    if rec.seq != head.seq + 1 || rec.prev_hash != head.hash || rec.compute_hash() != rec.hash {
        return Err(StoreError::Corrupt {
            what: format!(
                "audit record {} does not follow record {} of chain {chain}",
                rec.seq, head.seq
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_zero_is_the_chain_itself_and_other_lanes_carry_a_suffix() {
        let base = ChainId::new("signer-1").unwrap();
        assert_eq!(base.lane(0).unwrap(), base);
        assert_eq!(base.lane(7).unwrap().as_str(), "signer-1.lane7");
        assert_ne!(base.lane(1).unwrap().genesis_hash(), base.genesis_hash());
        let longest =
            ChainId::new("x".repeat(ChainId::MAX_LEN - ChainId::LANE_SUFFIX_MAX)).unwrap();
        assert_eq!(longest.lane(63).unwrap().as_str().len(), ChainId::MAX_LEN);
        let too_long = ChainId::new("x".repeat(ChainId::MAX_LEN - 5)).unwrap();
        assert_eq!(too_long.lane(1), Err(InvalidChainId));
    }

    #[test]
    fn names_round_trip() {
        for op in AuditOperation::ALL {
            assert_eq!(AuditOperation::parse(op.as_str()), Some(op));
        }
        for o in AuditOutcome::ALL {
            assert_eq!(AuditOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(AuditOutcome::parse("valid"), None);
    }

    #[test]
    fn seal_links_and_every_field_changes_the_hash() {
        let mut draft = AuditDraft::new(
            Timestamp::from_unix_millis(5),
            AuditOperation::Verify,
            AuditOutcome::Valid,
        );
        draft.activation_id = Some("a".into());
        let first = draft.clone().seal(1, [0; 32]);
        assert_eq!(first.hash, first.compute_hash());
        let second = draft.clone().seal(2, first.hash);
        assert_ne!(first.hash, second.hash);

        let variants: Vec<AuditRecord> = vec![
            AuditRecord {
                seq: 9,
                ..first.clone()
            },
            AuditRecord {
                time: Timestamp::from_unix_millis(6),
                ..first.clone()
            },
            AuditRecord {
                activation_id: None,
                ..first.clone()
            },
            AuditRecord {
                application_id: Some(String::new()),
                ..first.clone()
            },
            AuditRecord {
                operation: AuditOperation::ActivationBlock,
                ..first.clone()
            },
            AuditRecord {
                outcome: AuditOutcome::Invalid,
                ..first.clone()
            },
            AuditRecord {
                signature_type: Some("POSSESSION_KNOWLEDGE".into()),
                ..first.clone()
            },
            AuditRecord {
                counter_before: Some(0),
                ..first.clone()
            },
            AuditRecord {
                counter_after: Some(0),
                ..first.clone()
            },
            AuditRecord {
                nonce_status: Some("VALID".into()),
                ..first.clone()
            },
            AuditRecord {
                data_sha256: Some([0; 32]),
                ..first.clone()
            },
            AuditRecord {
                prev_hash: [1; 32],
                ..first.clone()
            },
            AuditRecord {
                actor: Some("cli".into()),
                ..first.clone()
            },
            AuditRecord {
                subject: Some("cred".into()),
                ..first.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.compute_hash(), first.hash, "{v:?}");
        }
    }

    #[test]
    fn chain_ids_are_checked_and_named_chains_have_their_own_genesis() {
        assert!(ChainId::new("host-1:8080").is_ok());
        assert!(ChainId::new("").is_err());
        assert!(ChainId::new("a b").is_err());
        assert!(ChainId::new("x".repeat(65)).is_err());
        assert_eq!(ChainId::embedded().genesis_hash(), [0; 32]);
        assert_eq!(ChainId::embedded().empty_head(), ChainHead::EMPTY);
        let a = ChainId::new("a").expect("valid");
        let b = ChainId::new("b").expect("valid");
        assert_ne!(a.genesis_hash(), [0; 32]);
        assert_ne!(a.genesis_hash(), b.genesis_hash());
    }

    #[test]
    fn option_layout_is_unambiguous() {
        // activation_id = Some("") and application_id = None must differ from the reverse.
        let base = AuditDraft::new(
            Timestamp::from_unix_millis(0),
            AuditOperation::Verify,
            AuditOutcome::Valid,
        );
        let a = AuditDraft {
            activation_id: Some(String::new()),
            ..base.clone()
        }
        .seal(1, [0; 32]);
        let b = AuditDraft {
            application_id: Some(String::new()),
            ..base
        }
        .seal(1, [0; 32]);
        assert_ne!(a.hash, b.hash);
    }
}
