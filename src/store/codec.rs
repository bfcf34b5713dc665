//! The on-disk byte layout of every record: a compact, hand-written binary encoding.
//!
//! Every stored value starts with one **record-format byte** ([`RECORD_FORMAT_V1`]) so that a later
//! version can read old records and migrate them. After it come the fields in declaration order:
//! integers big-endian and fixed width, `Timestamp` as `i64` milliseconds, byte strings and UTF-8 strings
//! as `u32` length ‖ bytes, `Option<T>` as `00` or `01 ‖ T`, lists as `u32` count ‖ items, fixed arrays
//! raw. A decoder refuses trailing bytes. The same encoding (without the trailing hash) is the canonical
//! form that the audit chain hashes, so it must never change for format 1.

use super::audit::{AuditEntry, AuditOperation, AuditOutcome, AuditRecord, ChainId, Checkpoint};
use super::records::{
    Activation, Application, ApplicationVersion, Enrollment, IntegrationCredential, IssuedNonce,
    MasterKeyRef, NonceOwner, SecretHash, TemporaryKey,
};
use crate::model::{
    ActivationStatus, CommitPhase, CredentialScope, DerSignature, EncryptedSecret, KeyId,
    PublicKey, Timestamp, WrappedKey,
};

/// The first byte of records in the first layout (every kind of record).
pub(super) const RECORD_FORMAT_V1: u8 = 1;
/// The first byte of the second layout: applications (with versions), activations (optional device
/// key, enrollment details), integration credentials (id and scope) and audit records (actor and
/// subject). Records of format 1 stay readable (and audit records verifiable).
pub(super) const RECORD_FORMAT_V2: u8 = 2;

/// The third layout, of activations only: the same fields as format 2 in the same order, with
/// variable-length integers for lengths and counters and the KEK id written once (see
/// [`encode_activation`]). Activations of formats 1 and 2 stay readable.
pub(super) const RECORD_FORMAT_V3: u8 = 3;

/// Why bytes could not be decoded; turned into `StoreError::Corrupt` by the caller, who knows the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DecodeError(pub String);

type Decoded<T> = Result<T, DecodeError>;

/// Appends fields to a byte buffer.
#[derive(Default)]
pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn new() -> Self {
        Self(Vec::with_capacity(256))
    }
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn time(&mut self, v: Timestamp) {
        self.i64(v.unix_millis());
    }
    pub(super) fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub(super) fn bytes(&mut self, v: &[u8]) {
        // A record field over 4 GiB cannot reach us: sled values and HTTP bodies are far smaller.
        let len = u32::try_from(v.len()).expect("record fields are far below 4 GiB");
        self.u32(len);
        self.raw(v);
    }
    pub(super) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub(super) fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                put(self, x);
            }
        }
    }
    /// An unsigned integer in LEB128: seven bits per byte, low bits first, the high bit set on
    /// every byte but the last (1 byte below 128, at most 10).
    pub(super) fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    /// `var(length) ‖ bytes`.
    pub(super) fn var_bytes(&mut self, v: &[u8]) {
        self.var(v.len() as u64);
        self.raw(v);
    }
    /// `var(length) ‖ UTF-8`.
    pub(super) fn var_str(&mut self, v: &str) {
        self.var_bytes(v.as_bytes());
    }
    pub(super) fn strs(&mut self, v: &[String]) {
        let len = u32::try_from(v.len()).expect("record lists are far below 4 G entries");
        self.u32(len);
        for s in v {
            self.str(s);
        }
    }
}

/// Reads fields back from a byte slice, failing on truncation.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }
    fn fail<T>(&self, detail: &str) -> Decoded<T> {
        Err(DecodeError(format!("{}: {detail}", self.what)))
    }
    pub(super) fn raw(&mut self, n: usize) -> Decoded<&'a [u8]> {
        if self.buf.len() < n {
            return self.fail("truncated");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Decoded<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.raw(N)?);
        Ok(out)
    }
    pub(super) fn u8(&mut self) -> Decoded<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u32(&mut self) -> Decoded<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Decoded<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(super) fn i64(&mut self) -> Decoded<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub(super) fn time(&mut self) -> Decoded<Timestamp> {
        Ok(Timestamp::from_unix_millis(self.i64()?))
    }
    pub(super) fn bytes(&mut self) -> Decoded<Vec<u8>> {
        let len = self.u32()? as usize;
        Ok(self.raw(len)?.to_vec())
    }
    /// Reads [`Writer::var`]; refuses more than ten bytes, a value over 64 bits and a longer
    /// encoding than needed (so that each value has one encoding).
    pub(super) fn var(&mut self) -> Decoded<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                return self.fail("variable-length integer over 64 bits");
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return self.fail("variable-length integer not minimal");
                }
                return Ok(value);
            }
        }
        self.fail("variable-length integer over 10 bytes")
    }
    fn var_len(&mut self) -> Decoded<usize> {
        let len = self.var()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.buf.len() => Ok(len),
            _ => self.fail("truncated"),
        }
    }
    pub(super) fn var_bytes(&mut self) -> Decoded<Vec<u8>> {
        let len = self.var_len()?;
        Ok(self.raw(len)?.to_vec())
    }
    pub(super) fn var_str(&mut self) -> Decoded<String> {
        let bytes = self.var_bytes()?;
        match String::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => self.fail("string is not UTF-8"),
        }
    }
    fn var_u32(&mut self) -> Decoded<u32> {
        let v = self.var()?;
        u32::try_from(v).or_else(|_| self.fail("integer over 32 bits"))
    }
    pub(super) fn str(&mut self) -> Decoded<String> {
        let bytes = self.bytes()?;
        match String::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => self.fail("string is not UTF-8"),
        }
    }
    /// A P-256 public key stored as its SEC1 bytes; anything else is corrupt.
    pub(super) fn public_key(&mut self) -> Decoded<PublicKey> {
        let bytes = self.bytes()?;
        match PublicKey::from_sec1(&bytes) {
            Ok(key) => Ok(key),
            Err(_) => self.fail("public key is not a P-256 point"),
        }
    }
    pub(super) fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Decoded<T>,
    ) -> Decoded<Option<T>> {
        match self.u8()? {
            0 => Ok(None),
            1 => get(self).map(Some),
            _ => self.fail("bad option tag"),
        }
    }
    pub(super) fn strs(&mut self) -> Decoded<Vec<String>> {
        let count = self.u32()?;
        // Each string takes at least its 4-byte length: refuse counts the buffer cannot hold.
        if count as usize > self.buf.len() / 4 {
            return self.fail("list count larger than the record");
        }
        (0..count).map(|_| self.str()).collect()
    }
    /// Reads the record-format byte and refuses any format this version does not know.
    pub(super) fn format(&mut self) -> Decoded<u8> {
        self.format_of(&[RECORD_FORMAT_V1])
    }
    /// Reads the record-format byte and refuses any format not in `known`.
    pub(crate) fn format_of(&mut self, known: &[u8]) -> Decoded<u8> {
        let found = self.u8()?;
        if known.contains(&found) {
            Ok(found)
        } else {
            self.fail(&format!("unknown record format {found}"))
        }
    }
    /// Succeeds only if every byte was consumed.
    pub(super) fn finish(self) -> Decoded<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.fail("trailing bytes")
        }
    }
}

fn decode<T>(
    bytes: &[u8],
    what: &'static str,
    f: impl FnOnce(&mut Reader<'_>) -> Decoded<T>,
) -> Decoded<T> {
    let mut r = Reader::new(bytes, what);
    r.format()?;
    let value = f(&mut r)?;
    r.finish()?;
    Ok(value)
}

/// As [`decode`] for record types that have a format 2; `f` is told which format it reads.
fn decode_v2<T>(
    bytes: &[u8],
    what: &'static str,
    f: impl FnOnce(&mut Reader<'_>, u8) -> Decoded<T>,
) -> Decoded<T> {
    let mut r = Reader::new(bytes, what);
    let format = match r.u8()? {
        f @ (RECORD_FORMAT_V1 | RECORD_FORMAT_V2) => f,
        other => return r.fail(&format!("unknown record format {other}")),
    };
    let value = f(&mut r, format)?;
    r.finish()?;
    Ok(value)
}

fn opt_sealed(w: &mut Writer, v: Option<&EncryptedSecret>) {
    w.opt(v, |w, s| w.bytes(s.as_bytes()));
}

fn read_sealed(r: &mut Reader<'_>, what: &str) -> Decoded<EncryptedSecret> {
    let bytes = r.bytes()?;
    EncryptedSecret::from_bytes(bytes).or_else(|_| r.fail(&format!("malformed {what}")))
}

fn read_opt_sealed(r: &mut Reader<'_>, what: &str) -> Decoded<Option<EncryptedSecret>> {
    match r.u8()? {
        0 => Ok(None),
        1 => read_sealed(r, what).map(Some),
        _ => r.fail("bad option tag"),
    }
}

// ---- Application -----------------------------------------------------------------------------------

/// `02 ‖ id ‖ roles ‖ u32 n ‖ n × (key_id[16] ‖ public_key ‖ created_at) ‖ created_at ‖
/// u32 m ‖ m × (version_id ‖ application_key ‖ sealed secret ‖ supported(u8) ‖ created_at)`.
/// Format 1 is the same without the versions.
pub(super) fn encode_application(app: &Application) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V2);
    w.str(&app.id);
    w.strs(&app.roles);
    let n =
        u32::try_from(app.master_keys.len()).expect("an application has a handful of master keys");
    w.u32(n);
    for key in &app.master_keys {
        w.raw(key.key_id.as_bytes());
        w.bytes(&key.public_key.to_uncompressed());
        w.time(key.created_at);
    }
    w.time(app.created_at);
    let m = u32::try_from(app.versions.len()).expect("an application has a handful of versions");
    w.u32(m);
    for v in &app.versions {
        w.str(&v.id);
        w.str(&v.application_key);
        w.bytes(v.encrypted_secret.as_bytes());
        w.u8(u8::from(v.supported));
        w.time(v.created_at);
    }
    w.into_bytes()
}

pub(super) fn decode_application(bytes: &[u8]) -> Decoded<Application> {
    decode_v2(bytes, "application", |r, format| {
        let id = r.str()?;
        let roles = r.strs()?;
        let n = r.u32()?;
        let mut master_keys = Vec::new();
        for _ in 0..n {
            master_keys.push(MasterKeyRef {
                key_id: KeyId::from_bytes(r.array()?),
                public_key: r.public_key()?,
                created_at: r.time()?,
            });
        }
        let created_at = r.time()?;
        let mut versions = Vec::new();
        if format >= RECORD_FORMAT_V2 {
            let m = r.u32()?;
            for _ in 0..m {
                versions.push(ApplicationVersion {
                    id: r.str()?,
                    application_key: r.str()?,
                    encrypted_secret: read_sealed(r, "application secret")?,
                    supported: r.u8()? != 0,
                    created_at: r.time()?,
                });
            }
        }
        Ok(Application {
            id,
            roles,
            master_keys,
            created_at,
            versions,
        })
    })
}

// ---- Activation ------------------------------------------------------------------------------------

/// `01 ‖ id ‖ application_id ‖ user_id ‖ status(u8, PowerAuth code) ‖ blocked_reason? ‖ flags ‖
/// device_public_key ‖ server_public_key ‖ wrapped_server_private_key ‖ wrapping_key_id[16] ‖
/// encrypted_factor_keys ‖ counter(u64) ‖ ctr_data[16] ‖ failed_attempts(u32) ‖ max_failed_attempts(u32) ‖
/// created_at ‖ last_used_at? ‖ version(u64)`
///
/// A removed activation's key material is stored as empty byte strings and a zero KEK id;
/// `wrapping_key_id` repeats the KEK id inside the wrapped key (the layout predates that) and must
/// agree with it.
///
/// Format 2 (written now) differs in two places: `device_public_key` may be an empty byte string
/// (no key exchange yet), and after `version` follows the enrollment: `activation_code? ‖
/// activation_signature? ‖ expires_at? ‖ commit_phase(u8: 1 ON_COMMIT, 2 ON_KEY_EXCHANGE) ‖
/// activation_otp(sealed)? ‖ transport_key(sealed)? ‖ protocol_version(u8) ‖ activation_name? ‖
/// platform? ‖ device_info? ‖ extras? ‖ external_id? ‖ last_changed_at?`.
/// Format 3 (written now): `03 ‖ id ‖ application_id ‖ user_id ‖ status(u8) ‖ blocked_reason? ‖
/// var(n) ‖ n × flag ‖ device_public_key ‖ server_public_key[65] ‖ (kek_id[16] ‖
/// wrapped_blob)? ‖ encrypted_factor_keys? ‖ var(counter) ‖ ctr_data[16] ‖ var(failed_attempts) ‖
/// var(max_failed_attempts) ‖ created_at ‖ last_used_at? ‖ var(version) ‖ enrollment`, where
/// strings and byte strings are `var(length) ‖ bytes` ([`Writer::var`]), `device_public_key` is
/// empty or the 65-byte uncompressed point, and the enrollment is format 2's. The same meaning
/// in about 60 fewer bytes than format 2 (public keys stay uncompressed: decompressing them would
/// cost a square root on every read).
pub(super) fn encode_activation(a: &Activation) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V3);
    w.var_str(&a.id);
    w.var_str(&a.application_id);
    w.var_str(&a.user_id);
    w.u8(a.status.code());
    w.opt(a.blocked_reason.as_deref(), Writer::var_str);
    w.var(a.flags.len() as u64);
    for flag in &a.flags {
        w.var_str(flag);
    }
    match &a.device_public_key {
        Some(key) => w.var_bytes(&key.to_uncompressed()),
        None => w.var_bytes(&[]),
    }
    w.raw(&a.server_public_key.to_uncompressed());
    w.opt(a.wrapped_server_private_key.as_ref(), |w, key| {
        w.raw(key.kek().as_bytes());
        w.var_bytes(key.blob());
    });
    w.opt(a.encrypted_factor_keys.as_ref(), |w, sealed| {
        w.var_bytes(sealed.as_bytes());
    });
    w.var(a.counter);
    w.raw(&a.ctr_data);
    w.var(u64::from(a.failed_attempts));
    w.var(u64::from(a.max_failed_attempts));
    w.time(a.created_at);
    w.opt(a.last_used_at, Writer::time);
    w.var(a.version);
    encode_enrollment(&mut w, &a.enrollment);
    w.into_bytes()
}

/// Format 2, as written before format 3 (kept to test that such records still decode).
#[cfg(test)]
fn encode_activation_v2(a: &Activation) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V2);
    w.str(&a.id);
    w.str(&a.application_id);
    w.str(&a.user_id);
    w.u8(a.status.code());
    w.opt(a.blocked_reason.as_deref(), Writer::str);
    w.strs(&a.flags);
    match &a.device_public_key {
        Some(key) => w.bytes(&key.to_uncompressed()),
        None => w.bytes(&[]),
    }
    w.bytes(&a.server_public_key.to_uncompressed());
    match &a.wrapped_server_private_key {
        Some(wrapped) => {
            w.bytes(&wrapped.to_bytes());
            w.raw(wrapped.kek().as_bytes());
        }
        None => {
            w.bytes(&[]);
            w.raw(&[0; 16]);
        }
    }
    w.bytes(
        a.encrypted_factor_keys
            .as_ref()
            .map_or(&[][..], EncryptedSecret::as_bytes),
    );
    w.u64(a.counter);
    w.raw(&a.ctr_data);
    w.u32(a.failed_attempts);
    w.u32(a.max_failed_attempts);
    w.time(a.created_at);
    w.opt(a.last_used_at, Writer::time);
    w.u64(a.version);
    encode_enrollment(&mut w, &a.enrollment);
    w.into_bytes()
}

/// The enrollment part of formats 2 and 3.
fn encode_enrollment(w: &mut Writer, e: &Enrollment) {
    w.opt(e.activation_code.as_deref(), Writer::str);
    w.opt(e.activation_signature.as_deref(), Writer::str);
    w.opt(e.expires_at, Writer::time);
    w.u8(match e.commit_phase {
        CommitPhase::OnCommit => 1,
        CommitPhase::OnKeyExchange => 2,
    });
    opt_sealed(w, e.activation_otp.as_ref());
    opt_sealed(w, e.encrypted_transport_key.as_ref());
    w.u8(e.protocol_version);
    for text in [
        &e.activation_name,
        &e.platform,
        &e.device_info,
        &e.extras,
        &e.external_id,
    ] {
        w.opt(text.as_deref(), Writer::str);
    }
    w.opt(e.last_changed_at, Writer::time);
}

fn decode_enrollment(r: &mut Reader<'_>) -> Decoded<Enrollment> {
    let activation_code = r.opt(Reader::str)?;
    let activation_signature = r.opt(Reader::str)?;
    let expires_at = r.opt(Reader::time)?;
    let commit_phase = match r.u8()? {
        1 => CommitPhase::OnCommit,
        2 => CommitPhase::OnKeyExchange,
        other => return r.fail(&format!("unknown commit phase {other}")),
    };
    Ok(Enrollment {
        activation_code,
        activation_signature,
        expires_at,
        commit_phase,
        activation_otp: read_opt_sealed(r, "activation OTP")?,
        encrypted_transport_key: read_opt_sealed(r, "transport key")?,
        protocol_version: r.u8()?,
        activation_name: r.opt(Reader::str)?,
        platform: r.opt(Reader::str)?,
        device_info: r.opt(Reader::str)?,
        extras: r.opt(Reader::str)?,
        external_id: r.opt(Reader::str)?,
        last_changed_at: r.opt(Reader::time)?,
    })
}

/// How an activation record writes its lengths, counts and integers.
#[derive(Clone, Copy)]
enum Widths {
    /// Formats 1 and 2: big-endian `u32` lengths and counts, `u32`/`u64` integers.
    Fixed,
    /// Format 3: LEB128 ([`Writer::var`]).
    Var,
}

impl Widths {
    fn str(self, r: &mut Reader<'_>) -> Decoded<String> {
        match self {
            Widths::Fixed => r.str(),
            Widths::Var => r.var_str(),
        }
    }
    fn strs(self, r: &mut Reader<'_>) -> Decoded<Vec<String>> {
        match self {
            Widths::Fixed => r.strs(),
            Widths::Var => {
                let count = r.var_len()?;
                (0..count).map(|_| r.var_str()).collect()
            }
        }
    }
    fn bytes(self, r: &mut Reader<'_>) -> Decoded<Vec<u8>> {
        match self {
            Widths::Fixed => r.bytes(),
            Widths::Var => r.var_bytes(),
        }
    }
    fn u32(self, r: &mut Reader<'_>) -> Decoded<u32> {
        match self {
            Widths::Fixed => r.u32(),
            Widths::Var => r.var_u32(),
        }
    }
    fn u64(self, r: &mut Reader<'_>) -> Decoded<u64> {
        match self {
            Widths::Fixed => r.u64(),
            Widths::Var => r.var(),
        }
    }
}

/// Reads an activation record of any format (see [`encode_activation`]): the fields in their one
/// order, with format 3's widths or formats 1 and 2's, and each format's layout of the key material.
pub(super) fn decode_activation(bytes: &[u8]) -> Decoded<Activation> {
    let mut r = Reader::new(bytes, "activation");
    let format = r.format_of(&[RECORD_FORMAT_V1, RECORD_FORMAT_V2, RECORD_FORMAT_V3])?;
    let widths = if format == RECORD_FORMAT_V3 {
        Widths::Var
    } else {
        Widths::Fixed
    };
    let id = widths.str(&mut r)?;
    let application_id = widths.str(&mut r)?;
    let user_id = widths.str(&mut r)?;
    let code = r.u8()?;
    let Some(status) = ActivationStatus::from_code(code) else {
        return r.fail(&format!("unknown status code {code}"));
    };
    let blocked_reason = r.opt(|r| widths.str(r))?;
    let flags = widths.strs(&mut r)?;
    let device_public_key = if format == RECORD_FORMAT_V1 {
        Some(r.public_key()?)
    } else {
        let device = widths.bytes(&mut r)?;
        if device.is_empty() {
            None
        } else {
            Some(
                PublicKey::from_sec1(&device)
                    .or_else(|_| r.fail("public key is not a P-256 point"))?,
            )
        }
    };
    let (server_public_key, wrapped_server_private_key, encrypted_factor_keys) =
        if format == RECORD_FORMAT_V3 {
            read_key_material_v3(&mut r)?
        } else {
            read_key_material_v1_v2(&mut r)?
        };
    let activation = Activation {
        id,
        application_id,
        user_id,
        status,
        blocked_reason,
        flags,
        device_public_key,
        server_public_key,
        wrapped_server_private_key,
        encrypted_factor_keys,
        counter: widths.u64(&mut r)?,
        ctr_data: r.array()?,
        failed_attempts: widths.u32(&mut r)?,
        max_failed_attempts: widths.u32(&mut r)?,
        created_at: r.time()?,
        last_used_at: r.opt(Reader::time)?,
        version: widths.u64(&mut r)?,
        enrollment: if format == RECORD_FORMAT_V1 {
            Enrollment::default()
        } else {
            decode_enrollment(&mut r)?
        },
    };
    r.finish()?;
    Ok(activation)
}

/// An activation's server public key, wrapped server private key and encrypted factor keys.
type KeyMaterial = (PublicKey, Option<WrappedKey>, Option<EncryptedSecret>);

/// Format 3's key material: the bare 65-byte server key, then each of the other two as an option.
fn read_key_material_v3(r: &mut Reader<'_>) -> Decoded<KeyMaterial> {
    let server = r.raw(65)?;
    let server_public_key =
        PublicKey::from_sec1(server).or_else(|_| r.fail("public key is not a P-256 point"))?;
    let wrapped_server_private_key = r.opt(|r| {
        let kek = KeyId::from_bytes(r.array()?);
        let blob = r.var_bytes()?;
        if blob.is_empty() {
            return r.fail("malformed wrapped server private key");
        }
        Ok(WrappedKey::new(kek, blob))
    })?;
    let encrypted_factor_keys = r.opt(|r| {
        let sealed = r.var_bytes()?;
        EncryptedSecret::from_bytes(sealed).or_else(|_| r.fail("malformed encrypted factor keys"))
    })?;
    Ok((
        server_public_key,
        wrapped_server_private_key,
        encrypted_factor_keys,
    ))
}

/// Formats 1 and 2's key material: removed keys are empty byte strings, and the KEK id follows the
/// wrapped key (which names it too; the two must agree).
fn read_key_material_v1_v2(r: &mut Reader<'_>) -> Decoded<KeyMaterial> {
    let server_public_key = r.public_key()?;
    let wrapped = r.bytes()?;
    let wrapping_key_id: [u8; 16] = r.array()?;
    let wrapped_server_private_key = if wrapped.is_empty() {
        None
    } else {
        let key = WrappedKey::from_bytes(&wrapped)
            .or_else(|_| r.fail("malformed wrapped server private key"))?;
        if key.kek().as_bytes() != &wrapping_key_id {
            return r.fail("wrapping key id disagrees with the wrapped key");
        }
        Some(key)
    };
    let sealed = r.bytes()?;
    let encrypted_factor_keys = if sealed.is_empty() {
        None
    } else {
        Some(
            EncryptedSecret::from_bytes(sealed)
                .or_else(|_| r.fail("malformed encrypted factor keys"))?,
        )
    };
    Ok((
        server_public_key,
        wrapped_server_private_key,
        encrypted_factor_keys,
    ))
}

// ---- TemporaryKey ----------------------------------------------------------------------------------

/// `01 ‖ id ‖ application_key ‖ activation_id? ‖ wrapped_private_key ‖ public_key ‖ created_at ‖
/// expires_at`
pub(super) fn encode_temporary_key(k: &TemporaryKey) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V1);
    w.str(&k.id);
    w.str(&k.application_key);
    w.opt(k.activation_id.as_deref(), Writer::str);
    w.bytes(&k.wrapped_private_key.to_bytes());
    w.bytes(&k.public_key.to_uncompressed());
    w.time(k.created_at);
    w.time(k.expires_at);
    w.into_bytes()
}

pub(super) fn decode_temporary_key(bytes: &[u8]) -> Decoded<TemporaryKey> {
    decode(bytes, "temporary key", |r| {
        let id = r.str()?;
        let application_key = r.str()?;
        let activation_id = r.opt(Reader::str)?;
        let wrapped = r.bytes()?;
        let wrapped_private_key =
            WrappedKey::from_bytes(&wrapped).or_else(|_| r.fail("malformed wrapped key"))?;
        Ok(TemporaryKey {
            id,
            application_key,
            activation_id,
            wrapped_private_key,
            public_key: r.public_key()?,
            created_at: r.time()?,
            expires_at: r.time()?,
        })
    })
}

// ---- IssuedNonce -----------------------------------------------------------------------------------

/// `01 ‖ nonce ‖ owner tag (1 activation, 2 application) ‖ owner id ‖ issued_at ‖ expires_at ‖ consumed_at?`
pub(super) fn encode_nonce(n: &IssuedNonce) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V1);
    w.str(&n.nonce);
    match &n.issued_for {
        NonceOwner::Activation(id) => {
            w.u8(1);
            w.str(id);
        }
        NonceOwner::Application(id) => {
            w.u8(2);
            w.str(id);
        }
    }
    w.time(n.issued_at);
    w.time(n.expires_at);
    w.opt(n.consumed_at, Writer::time);
    w.into_bytes()
}

pub(super) fn decode_nonce(bytes: &[u8]) -> Decoded<IssuedNonce> {
    decode(bytes, "nonce", |r| {
        let nonce = r.str()?;
        let issued_for = match r.u8()? {
            1 => NonceOwner::Activation(r.str()?),
            2 => NonceOwner::Application(r.str()?),
            other => return Err(DecodeError(format!("nonce: unknown owner tag {other}"))),
        };
        Ok(IssuedNonce {
            nonce,
            issued_for,
            issued_at: r.time()?,
            expires_at: r.time()?,
            consumed_at: r.opt(Reader::time)?,
        })
    })
}

// ---- IntegrationCredential -------------------------------------------------------------------------

/// `02 ‖ client_token ‖ name ‖ secret_hash ‖ created_at ‖ id ‖ role(u8: 1 ADMIN, 2 APPLICATION) ‖
/// [application_ids ‖ can_unblock(u8)]` (the bracketed part for APPLICATION only).
///
/// Format 1 was `01 ‖ client_token ‖ name ‖ secret_hash ‖ created_at`; such a record decodes with
/// its client token as its id and the ADMIN role (every credential could do everything then).
pub(super) fn encode_credential(c: &IntegrationCredential) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V2);
    w.str(&c.client_token);
    w.str(&c.name);
    w.bytes(&c.secret_hash.0);
    w.time(c.created_at);
    w.str(&c.id);
    match &c.scope {
        CredentialScope::Admin => w.u8(1),
        CredentialScope::Applications {
            application_ids,
            can_unblock,
        } => {
            w.u8(2);
            w.strs(application_ids);
            w.u8(u8::from(*can_unblock));
        }
    }
    w.into_bytes()
}

pub(super) fn decode_credential(bytes: &[u8]) -> Decoded<IntegrationCredential> {
    let what = "integration credential";
    let mut r = Reader::new(bytes, what);
    let format = r.format_of(&[RECORD_FORMAT_V1, RECORD_FORMAT_V2])?;
    let client_token = r.str()?;
    let name = r.str()?;
    let secret_hash = SecretHash(r.bytes()?);
    let created_at = r.time()?;
    let (id, scope) = if format == RECORD_FORMAT_V1 {
        (client_token.clone(), CredentialScope::Admin)
    } else {
        let id = r.str()?;
        let scope = match r.u8()? {
            1 => CredentialScope::Admin,
            2 => {
                let ids = r.strs()?;
                let can_unblock = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return r.fail("bad can_unblock flag"),
                };
                CredentialScope::applications(ids, can_unblock)
            }
            other => return r.fail(&format!("unknown role {other}")),
        };
        (id, scope)
    };
    r.finish()?;
    Ok(IntegrationCredential {
        id,
        client_token,
        name,
        secret_hash,
        created_at,
        scope,
    })
}

// ---- AuditRecord -----------------------------------------------------------------------------------

/// The canonical bytes of an audit record without its hash:
/// `01 ‖ seq(u64) ‖ time ‖ activation_id? ‖ application_id? ‖ operation(str) ‖ outcome(str) ‖
/// signature_type? ‖ counter_before(u64)? ‖ counter_after(u64)? ‖ nonce_status? ‖ data_sha256[32]? ‖
/// prev_hash[32]`. The stored value is these bytes followed by the 32-byte hash.
///
/// Format 2 adds `actor? ‖ subject?` between `data_sha256` and `prev_hash`. A record with neither
/// keeps format 1, so records written before actors existed hash and verify exactly as they did.
pub(super) fn audit_body(rec: &AuditRecord) -> Vec<u8> {
    let v2 = rec.actor.is_some() || rec.subject.is_some();
    let mut w = Writer::new();
    w.u8(if v2 {
        RECORD_FORMAT_V2
    } else {
        RECORD_FORMAT_V1
    });
    w.u64(rec.seq);
    w.time(rec.time);
    w.opt(rec.activation_id.as_deref(), Writer::str);
    w.opt(rec.application_id.as_deref(), Writer::str);
    w.str(rec.operation.as_str());
    w.str(rec.outcome.as_str());
    w.opt(rec.signature_type.as_deref(), Writer::str);
    w.opt(rec.counter_before, Writer::u64);
    w.opt(rec.counter_after, Writer::u64);
    w.opt(rec.nonce_status.as_deref(), Writer::str);
    w.opt(rec.data_sha256.as_ref(), |w, h| w.raw(h));
    if v2 {
        w.opt(rec.actor.as_deref(), Writer::str);
        w.opt(rec.subject.as_deref(), Writer::str);
    }
    w.raw(&rec.prev_hash);
    w.into_bytes()
}

/// `audit_body ‖ hash[32]`
pub(super) fn encode_audit(rec: &AuditRecord) -> Vec<u8> {
    let mut bytes = audit_body(rec);
    bytes.extend_from_slice(&rec.hash);
    bytes
}

pub(super) fn decode_audit(bytes: &[u8]) -> Decoded<AuditRecord> {
    let mut reader = Reader::new(bytes, "audit record");
    let format = reader.format_of(&[RECORD_FORMAT_V1, RECORD_FORMAT_V2])?;
    let rec = decode_audit_fields(&mut reader, format)?;
    reader.finish()?;
    Ok(rec)
}

/// The audit record stored under `seq`, or why it cannot be read (undecodable, or a record that
/// names another seq than the key it is stored under).
pub(super) fn audit_entry(seq: u64, bytes: &[u8]) -> AuditEntry {
    match decode_audit(bytes) {
        Ok(rec) if rec.seq == seq => AuditEntry::Record(rec),
        Ok(rec) => AuditEntry::Undecodable {
            seq,
            detail: format!("record says seq {}", rec.seq),
        },
        Err(e) => AuditEntry::Undecodable { seq, detail: e.0 },
    }
}

fn decode_audit_fields(r: &mut Reader<'_>, format: u8) -> Decoded<AuditRecord> {
    {
        let seq = r.u64()?;
        let time = r.time()?;
        let activation_id = r.opt(Reader::str)?;
        let application_id = r.opt(Reader::str)?;
        let op = r.str()?;
        let Some(operation) = AuditOperation::parse(&op) else {
            return Err(DecodeError(format!(
                "audit record: unknown operation {op:?}"
            )));
        };
        let out = r.str()?;
        let Some(outcome) = AuditOutcome::parse(&out) else {
            return Err(DecodeError(format!(
                "audit record: unknown outcome {out:?}"
            )));
        };
        Ok(AuditRecord {
            seq,
            time,
            activation_id,
            application_id,
            operation,
            outcome,
            signature_type: r.opt(Reader::str)?,
            counter_before: r.opt(Reader::u64)?,
            counter_after: r.opt(Reader::u64)?,
            nonce_status: r.opt(Reader::str)?,
            data_sha256: r.opt(Reader::array::<32>)?,
            actor: if format == RECORD_FORMAT_V2 {
                r.opt(Reader::str)?
            } else {
                None
            },
            subject: if format == RECORD_FORMAT_V2 {
                r.opt(Reader::str)?
            } else {
                None
            },
            prev_hash: r.array()?,
            hash: r.array()?,
        })
    }
}

// ---- Checkpoint ------------------------------------------------------------------------------------

/// `01 ‖ chain(str) ‖ seq(u64) ‖ head_hash[32] ‖ time ‖ signature(bytes, DER)`.
pub(super) fn encode_checkpoint(cp: &Checkpoint) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V1);
    w.str(cp.chain.as_str());
    w.u64(cp.seq);
    w.raw(&cp.head_hash);
    w.time(cp.time);
    w.bytes(cp.signature.as_bytes());
    w.into_bytes()
}

pub(super) fn decode_checkpoint(bytes: &[u8]) -> Decoded<Checkpoint> {
    decode(bytes, "audit checkpoint", |r| {
        let chain =
            ChainId::new(r.str()?).map_err(|e| DecodeError(format!("audit checkpoint: {e}")))?;
        let seq = r.u64()?;
        let head_hash = r.array()?;
        let time = r.time()?;
        let signature = DerSignature::from_der(&r.bytes()?)
            .map_err(|_| DecodeError("audit checkpoint: signature is not DER".into()))?;
        Ok(Checkpoint {
            chain,
            seq,
            head_hash,
            time,
            signature,
        })
    })
}

// ---- Chain head (meta tree) ------------------------------------------------------------------------

/// `01 ‖ seq(u64) ‖ hash[32]`: the last appended audit record, or seq 0 and 32 zero bytes when empty.
pub(super) fn encode_head(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_FORMAT_V1);
    w.u64(seq);
    w.raw(hash);
    w.into_bytes()
}

pub(super) fn decode_head(bytes: &[u8]) -> Decoded<(u64, [u8; 32])> {
    decode(bytes, "audit chain head", |r| Ok((r.u64()?, r.array()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_time() -> impl Strategy<Value = Timestamp> {
        any::<i64>().prop_map(Timestamp::from_unix_millis)
    }

    /// One of three fixed P-256 public keys.
    fn test_key(i: usize) -> PublicKey {
        let mut scalar = [0u8; 32];
        scalar[31] = u8::try_from(i + 1).expect("small index");
        crate::crypto::PrivateKey::from_scalar_bytes(&scalar)
            .expect("1..=3 are valid scalars")
            .public_key()
    }

    fn arb_activation() -> impl Strategy<Value = Activation> {
        (
            (
                "[a-z0-9-]{0,36}",
                ".{0,20}",
                ".{0,20}",
                1u8..=5,
                proptest::option::of(".{0,20}"),
            ),
            (
                proptest::collection::vec(".{0,10}", 0..4),
                0usize..3,
                0usize..3,
                proptest::option::of((
                    any::<[u8; 16]>(),
                    proptest::collection::vec(any::<u8>(), 1..100),
                )),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 29..100)),
            ),
            (any::<u64>(), any::<[u8; 16]>(), any::<u32>(), any::<u32>()),
            (arb_time(), proptest::option::of(arb_time()), any::<u64>()),
        )
            .prop_map(|(a, b, c, d)| Activation {
                id: a.0,
                application_id: a.1,
                user_id: a.2,
                status: ActivationStatus::from_code(a.3).expect("strategy yields 1..=5"),
                blocked_reason: a.4,
                flags: b.0,
                device_public_key: (b.1 > 0).then(|| test_key(b.1)),
                server_public_key: test_key(b.2),
                wrapped_server_private_key: b
                    .3
                    .map(|(kek, blob)| WrappedKey::new(KeyId::from_bytes(kek), blob)),
                encrypted_factor_keys: b.4.map(|mut bytes| {
                    bytes[0] = crate::model::SEALED_VERSION;
                    EncryptedSecret::from_bytes(bytes).expect("version byte set, 29+ bytes")
                }),
                counter: c.0,
                ctr_data: c.1,
                failed_attempts: c.2,
                max_failed_attempts: c.3,
                created_at: d.0,
                last_used_at: d.1,
                version: d.2,
                enrollment: arb_enrollment_from(c.0),
            })
    }

    /// A deterministic but varied enrollment (proptest's tuple arity is limited).
    fn arb_enrollment_from(seed: u64) -> Enrollment {
        if seed % 3 == 0 {
            return Enrollment::default();
        }
        let sealed = EncryptedSecret::from_bytes(vec![crate::model::SEALED_VERSION; 45])
            .expect("version byte set, 45 bytes");
        Enrollment {
            activation_code: Some("AAAAA-BBBBB-CCCCC-DDDDD".into()),
            activation_signature: (seed % 2 == 0).then(|| "MEUCIQ==".into()),
            expires_at: Some(Timestamp::from_unix_millis(seed as i64)),
            commit_phase: if seed % 2 == 0 {
                CommitPhase::OnCommit
            } else {
                CommitPhase::OnKeyExchange
            },
            activation_otp: (seed % 5 == 1).then(|| sealed.clone()),
            encrypted_transport_key: Some(sealed),
            protocol_version: 3,
            activation_name: Some("My phone".into()),
            platform: Some("ios".into()),
            device_info: None,
            extras: Some("{}".into()),
            external_id: None,
            last_changed_at: Some(Timestamp::from_unix_millis(7)),
        }
    }

    /// Size of a default enrollment in format 2 (what format 1 lacks at the end).
    const EMPTY_ENROLLMENT_LEN: usize = 13;

    #[test]
    fn format_1_activation_still_decodes() {
        let mut a = sample_activation();
        a.enrollment = Enrollment::default();
        let mut bytes = encode_activation_v2(&a);
        assert_eq!(bytes[0], RECORD_FORMAT_V2);
        bytes.truncate(bytes.len() - EMPTY_ENROLLMENT_LEN);
        bytes[0] = RECORD_FORMAT_V1;
        assert_eq!(decode_activation(&bytes), Ok(a));
    }

    #[test]
    fn format_1_application_still_decodes() {
        let app = Application {
            id: "demo".into(),
            roles: vec!["r".into()],
            master_keys: vec![MasterKeyRef {
                key_id: KeyId::from_bytes([4; 16]),
                public_key: test_key(1),
                created_at: Timestamp::from_unix_millis(3),
            }],
            created_at: Timestamp::from_unix_millis(5),
            versions: Vec::new(),
        };
        let mut bytes = encode_application(&app);
        bytes.truncate(bytes.len() - 4);
        bytes[0] = RECORD_FORMAT_V1;
        assert_eq!(decode_application(&bytes), Ok(app));
    }

    #[test]
    fn application_with_versions_round_trips() {
        let app = Application {
            id: "demo".into(),
            roles: vec![],
            master_keys: vec![],
            created_at: Timestamp::from_unix_millis(5),
            versions: vec![ApplicationVersion {
                id: "default".into(),
                application_key: "WC8gRAsMr/tDZndH2GvvZw==".into(),
                encrypted_secret: EncryptedSecret::from_bytes(vec![1; 61]).expect("well-formed"),
                supported: true,
                created_at: Timestamp::from_unix_millis(6),
            }],
        };
        assert_eq!(decode_application(&encode_application(&app)), Ok(app));
    }

    #[test]
    fn temporary_key_round_trips() {
        let k = TemporaryKey {
            id: "f3de9b5b-3ea7-4fa0-9542-b748a7999444".into(),
            application_key: "WC8gRAsMr/tDZndH2GvvZw==".into(),
            activation_id: Some("a".into()),
            wrapped_private_key: WrappedKey::new(KeyId::from_bytes([2; 16]), vec![5; 40]),
            public_key: test_key(2),
            created_at: Timestamp::from_unix_millis(1),
            expires_at: Timestamp::from_unix_millis(300_001),
        };
        assert_eq!(decode_temporary_key(&encode_temporary_key(&k)), Ok(k));
    }

    proptest! {
        #[test]
        fn activation_decode_inverts_encode(a in arb_activation()) {
            let bytes = encode_activation(&a);
            prop_assert_eq!(decode_activation(&bytes), Ok(a));
        }

        #[test]
        fn format_2_activation_still_decodes(a in arb_activation()) {
            let bytes = encode_activation_v2(&a);
            prop_assert_eq!(bytes[0], RECORD_FORMAT_V2);
            prop_assert_eq!(decode_activation(&bytes), Ok(a));
        }

        #[test]
        fn format_3_is_never_longer_than_format_2(a in arb_activation()) {
            prop_assert!(encode_activation(&a).len() <= encode_activation_v2(&a).len());
        }

        #[test]
        fn var_decode_inverts_encode(v in any::<u64>()) {
            let mut w = Writer::new();
            w.var(v);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes, "test");
            prop_assert_eq!(r.var(), Ok(v));
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn truncated_activation_never_decodes(a in arb_activation(), cut in any::<prop::sample::Index>()) {
            let bytes = encode_activation(&a);
            let cut = cut.index(bytes.len());
            prop_assert!(decode_activation(&bytes[..cut]).is_err());
        }

        #[test]
        fn nonce_decode_inverts_encode(nonce in ".{0,30}", app in any::<bool>(), owner in ".{0,30}",
                                       t1 in arb_time(), t2 in arb_time(), t3 in proptest::option::of(arb_time())) {
            let n = IssuedNonce {
                nonce,
                issued_for: if app { NonceOwner::Application(owner) } else { NonceOwner::Activation(owner) },
                issued_at: t1,
                expires_at: t2,
                consumed_at: t3,
            };
            prop_assert_eq!(decode_nonce(&encode_nonce(&n)), Ok(n));
        }
    }

    #[test]
    fn a_format_1_credential_decodes_as_admin_with_its_token_as_id() {
        let mut w = Writer::new();
        w.u8(RECORD_FORMAT_V1);
        w.str("tok-1");
        w.str("bank");
        w.bytes(&[7; 32]);
        w.time(Timestamp::from_unix_millis(5));
        let old = decode_credential(&w.into_bytes()).expect("format 1 still decodes");
        assert_eq!(old.id, "tok-1");
        assert_eq!(old.scope, CredentialScope::Admin);
        assert_eq!(old.name, "bank");
    }

    #[test]
    fn credential_decode_inverts_encode_for_both_roles() {
        for scope in [
            CredentialScope::Admin,
            CredentialScope::applications(vec!["b".into(), "a".into(), "a".into()], true),
        ] {
            let c = IntegrationCredential {
                id: "id-1".into(),
                client_token: "tok-1".into(),
                name: "bank".into(),
                secret_hash: SecretHash(vec![7; 32]),
                created_at: Timestamp::from_unix_millis(5),
                scope,
            };
            let bytes = encode_credential(&c);
            assert_eq!(bytes[0], RECORD_FORMAT_V2);
            assert_eq!(decode_credential(&bytes), Ok(c));
        }
    }

    #[test]
    fn audit_records_without_an_actor_keep_format_1() {
        let draft = super::super::audit::AuditDraft::new(
            Timestamp::from_unix_millis(1),
            AuditOperation::Verify,
            AuditOutcome::Valid,
        );
        let old = draft.clone().seal(1, [0; 32]);
        let bytes = encode_audit(&old);
        assert_eq!(bytes[0], RECORD_FORMAT_V1);
        let back = decode_audit(&bytes).expect("decodes");
        assert_eq!(back.compute_hash(), old.hash);

        let mut acted = draft;
        acted.actor = Some("cred-1".into());
        acted.subject = Some("cred-2".into());
        let new = acted.seal(2, old.hash);
        let bytes = encode_audit(&new);
        assert_eq!(bytes[0], RECORD_FORMAT_V2);
        let back = decode_audit(&bytes).expect("decodes");
        assert_eq!(back.actor.as_deref(), Some("cred-1"));
        assert_eq!(back.compute_hash(), new.hash);
        assert_eq!(back, new);
    }

    #[test]
    fn unknown_record_format_is_refused() {
        let mut bytes = encode_head(7, &[1; 32]);
        assert_eq!(decode_head(&bytes), Ok((7, [1; 32])));
        bytes[0] = 2;
        assert!(decode_head(&bytes).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_head(7, &[1; 32]);
        bytes.push(0);
        assert!(decode_head(&bytes).is_err());
    }

    #[test]
    fn non_minimal_or_oversized_var_is_refused() {
        for bytes in [
            &[0x80, 0x00][..],
            &[0xff; 10][..],
            &[0x80; 11][..],
            &[0x80][..],
        ] {
            assert!(Reader::new(bytes, "test").var().is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn a_typical_activation_is_smaller_in_format_3() {
        let a = sample_activation();
        let (v2, v3) = (encode_activation_v2(&a).len(), encode_activation(&a).len());
        assert_eq!(encode_activation(&a)[0], RECORD_FORMAT_V3);
        assert!(v3 + 50 <= v2, "format 3: {v3} bytes, format 2: {v2}");
    }

    #[test]
    fn a_typical_activation_is_far_below_4_kib() {
        let len = encode_activation(&sample_activation()).len();
        assert!(len < 1024, "activation record is {len} bytes");
    }

    fn sample_activation() -> Activation {
        Activation {
            id: "c564e700-7e86-4a87-b6c8-a5a0cc89683f".into(),
            application_id: "mobile-banking-app".into(),
            user_id: "user-0000000001".into(),
            status: ActivationStatus::Active,
            blocked_reason: Some("MAX_FAILED_ATTEMPTS".into()),
            flags: vec!["FLAG_ONE".into(), "FLAG_TWO".into()],
            device_public_key: Some(test_key(0)),
            server_public_key: test_key(1),
            wrapped_server_private_key: Some(WrappedKey::new(
                KeyId::from_bytes([1; 16]),
                vec![9; 80],
            )),
            encrypted_factor_keys: Some(
                EncryptedSecret::from_bytes([vec![1], vec![7; 12 + 48 + 16]].concat())
                    .expect("a well-formed sealed blob"),
            ),
            counter: 42,
            ctr_data: [3; 16],
            failed_attempts: 1,
            max_failed_attempts: 5,
            created_at: Timestamp::from_unix_millis(1),
            last_used_at: Some(Timestamp::from_unix_millis(2)),
            version: 9,
            enrollment: arb_enrollment_from(1),
        }
    }
}
