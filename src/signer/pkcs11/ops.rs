//! The operations, each run on one worker's session: key generation with the templates of the
//! keys table, lookups that demand exactly one match, ECDSA, ECDH, AES-KWP wrapping, AES-GCM
//! sealing and attribute reads.
//!
//! Invariants kept here: a lookup that finds nothing is only reported as
//! [`SignerError::KeyNotFound`] after [`confirm_alive`] proved the token is present and the
//! session logged in (SoftHSM answers an empty list, not an error, when the token vanished); every
//! temporary object (unwrapped keys, session key pairs, derived secrets) is held by a [`Temp`]
//! guard that destroys it on every path.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;
use cryptoki::types::Ulong;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::model::{
    DerSignature, EncryptedSecret, KeyId, PublicKey, SEALED_IV_LEN, SEALED_TAG_LEN, WrappedKey,
};
use crate::signer::config::TokenSelector;
use crate::signer::{
    AUDIT_LABEL, DEK_LABEL, GeneratedKeyPair, Inventory, KEK_LABEL, LABEL_PREFIX, ObjectAttributes,
    PlainSecret, SharedSecret, SignerError, StorageKeyIds, TokenDescription, WrappedKeyPair,
    master_label,
};

/// DER of the P-256 curve OID 1.2.840.10045.3.1.7 (`CKA_EC_PARAMS`).
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// Why an operation failed, before the worker decides what it means.
#[derive(Debug)]
pub(crate) enum OpError {
    /// A PKCS#11 call failed; the worker classifies it.
    Ck(CkError),
    /// A domain error to hand to the caller as is.
    Signer(SignerError),
    /// [`confirm_alive`] found the token gone or the login lost.
    TokenLost,
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}

impl From<SignerError> for OpError {
    fn from(e: SignerError) -> Self {
        OpError::Signer(e)
    }
}

/// Everything an operation may touch.
pub(crate) struct Ctx<'a> {
    /// This worker's session.
    pub session: &'a Session,
    /// The handles of long-lived token keys this session has found (master keys, KEK, DEK).
    pub handles: &'a HandleCache,
    /// The library (for token info).
    pub lib: &'a Pkcs11,
    /// The token's slot.
    pub slot: Slot,
    /// How the token was chosen (to re-check its identity).
    pub selector: &'a TokenSelector,
}

/// Object searches (`C_FindObjects`) this process made. SoftHSM re-reads every token object file on
/// each search, so the hot path must make none: tests and the metrics watch this count.
static OBJECT_SEARCHES: AtomicU64 = AtomicU64::new(0);

/// How many object searches this process has made (also the metric
/// `offline_signer_hsm_object_searches_total`).
pub fn object_searches() -> u64 {
    OBJECT_SEARCHES.load(Ordering::Relaxed)
}

/// Look-ups of a long-lived token key answered from a session's cache of handles (no search).
static HANDLE_CACHE_HITS: AtomicU64 = AtomicU64::new(0);

/// How many key look-ups this process answered from a session's cache of handles (also the metric
/// `offline_signer_hsm_key_handle_cache_hits_total`); with [`object_searches`], the cache's hit rate.
pub fn key_handle_cache_hits() -> u64 {
    HANDLE_CACHE_HITS.load(Ordering::Relaxed)
}

/// The handles of long-lived token keys one session has looked up, by class, label and id. A handle
/// is valid for its session's connection: the cache lives and dies with the session (see
/// `pool::WorkerSession`), and a handle the token calls invalid is dropped and looked up again.
#[derive(Default)]
pub(crate) struct HandleCache(RefCell<HashMap<(u64, String, KeyId), ObjectHandle>>);

impl HandleCache {
    fn get(&self, class: ObjectClass, label: &str, id: &KeyId) -> Option<ObjectHandle> {
        self.0
            .borrow()
            .get(&(class_code(class), label.to_owned(), *id))
            .copied()
    }

    fn put(&self, class: ObjectClass, label: &str, id: &KeyId, handle: ObjectHandle) {
        self.0
            .borrow_mut()
            .insert((class_code(class), label.to_owned(), *id), handle);
    }

    fn forget(&self, class: ObjectClass, label: &str, id: &KeyId) {
        self.0
            .borrow_mut()
            .remove(&(class_code(class), label.to_owned(), *id));
    }
}

fn class_code(class: ObjectClass) -> u64 {
    let raw: cryptoki::types::Ulong = (*class).into();
    raw.into()
}

/// A temporary object destroyed when the guard is dropped (on every path).
pub(super) struct Temp<'a> {
    session: &'a Session,
    /// The object.
    pub(super) handle: ObjectHandle,
}

/// Temporary objects created and not (yet) destroyed by this process.
static TEMPORARY_OBJECTS: AtomicI64 = AtomicI64::new(0);

/// How many temporary objects (session key pairs, unwrapped keys, derived secrets) this process
/// created and has not destroyed. Zero whenever no operation is running; tests check it.
pub fn temporary_objects_alive() -> i64 {
    TEMPORARY_OBJECTS.load(Ordering::SeqCst)
}

impl<'a> Temp<'a> {
    pub(super) fn new(session: &'a Session, handle: ObjectHandle) -> Self {
        TEMPORARY_OBJECTS.fetch_add(1, Ordering::SeqCst);
        Temp { session, handle }
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        match self.session.destroy_object(self.handle) {
            Ok(()) => {
                TEMPORARY_OBJECTS.fetch_sub(1, Ordering::SeqCst);
            }
            // A session object also dies with its session (dropped on session faults).
            Err(e) => tracing::debug!(error = %e, "destroying a temporary object failed"),
        }
    }
}

/// Maps a failed unwrap or authenticated decryption: SoftHSM answers a wrong tag with
/// `CKR_GENERAL_ERROR`, so that code only means "token lost" when the liveness probe says so.
fn auth_failure(ctx: &Ctx<'_>, e: CkError) -> OpError {
    use cryptoki::error::RvError;
    match &e {
        CkError::Pkcs11(
            RvError::GeneralError
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange,
            _,
        ) => match confirm_alive(ctx) {
            Ok(()) => SignerError::DecryptFailed.into(),
            Err(lost) => lost,
        },
        _ => e.into(),
    }
}

/// Proves the token is present, is the one we chose, and our session is logged in.
pub(crate) fn confirm_alive(ctx: &Ctx<'_>) -> Result<(), OpError> {
    let info = ctx.session.get_session_info()?;
    if !matches!(
        info.session_state(),
        SessionState::RwUser | SessionState::RoUser
    ) {
        return Err(OpError::TokenLost);
    }
    let token = ctx.lib.get_token_info(ctx.slot)?;
    let same = match ctx.selector {
        TokenSelector::Label(l) => token.label().trim_end() == l.trim_end(),
        TokenSelector::Serial(s) => token.serial_number().trim_end() == s.trim_end(),
    };
    if !same {
        return Err(OpError::TokenLost);
    }
    Ok(())
}

pub(super) fn find_all(
    ctx: &Ctx<'_>,
    class: ObjectClass,
    label: &str,
    id: Option<&KeyId>,
) -> Result<Vec<ObjectHandle>, OpError> {
    let mut template = vec![
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = id {
        template.push(Attribute::Id(id.as_bytes().to_vec()));
    }
    OBJECT_SEARCHES.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("offline_signer_hsm_object_searches_total").increment(1);
    let found = ctx.session.find_objects(&template)?;
    if found.is_empty() {
        // Zero objects is also what a vanished token or a lost login looks like.
        confirm_alive(ctx)?;
    }
    Ok(found)
}

fn find_one(
    ctx: &Ctx<'_>,
    class: ObjectClass,
    label: &str,
    id: &KeyId,
) -> Result<ObjectHandle, OpError> {
    let found = find_all(ctx, class, label, Some(id))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(SignerError::KeyNotFound {
            label: format!("{label}#{id}"),
        }
        .into()),
        more => Err(SignerError::AmbiguousKey {
            label: format!("{label}#{id}"),
            count: more.len(),
        }
        .into()),
    }
}

/// The handle of a long-lived token key: from the session's cache, or found once and cached.
fn cached_key(
    ctx: &Ctx<'_>,
    class: ObjectClass,
    label: &str,
    id: &KeyId,
) -> Result<ObjectHandle, OpError> {
    if let Some(handle) = ctx.handles.get(class, label, id) {
        HANDLE_CACHE_HITS.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("offline_signer_hsm_key_handle_cache_hits_total").increment(1);
        return Ok(handle);
    }
    let handle = find_one(ctx, class, label, id)?;
    ctx.handles.put(class, label, id, handle);
    Ok(handle)
}

/// Runs `op` with a long-lived token key's cached handle. When the token says the handle is invalid
/// (the object was deleted and re-created by another process, say) the key is looked up again and
/// `op` runs once more. The outer error is the lookup's; the inner one is `op`'s.
fn with_key<T>(
    ctx: &Ctx<'_>,
    class: ObjectClass,
    label: &str,
    id: &KeyId,
    op: impl Fn(ObjectHandle) -> Result<T, CkError>,
) -> Result<Result<T, CkError>, OpError> {
    let handle = cached_key(ctx, class, label, id)?;
    match op(handle) {
        Err(CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)) => {
            ctx.handles.forget(class, label, id);
            let handle = cached_key(ctx, class, label, id)?;
            Ok(op(handle))
        }
        other => Ok(other),
    }
}

fn read_ec_point(ctx: &Ctx<'_>, public: ObjectHandle) -> Result<PublicKey, OpError> {
    let attrs = ctx
        .session
        .get_attributes(public, &[AttributeType::EcPoint])?;
    match attrs.first() {
        Some(Attribute::EcPoint(point)) => Ok(PublicKey::from_ec_point(point)
            .map_err(|_| SignerError::Malformed("CKA_EC_POINT from the token"))?),
        _ => Err(SignerError::Internal("token returned no CKA_EC_POINT".into()).into()),
    }
}

/// Generates an application master key pair as token objects.
pub(crate) fn generate_master(ctx: &Ctx<'_>) -> Result<GeneratedKeyPair, OpError> {
    let id = KeyId::generate();
    generate_token_pair(ctx, &master_label(&id), id)
}

/// Generates a long-term P-256 key pair as token objects labelled `label` with id `id`: the
/// private half sensitive, never extractable, sign only, wrappable only under a trusted key.
fn generate_token_pair(ctx: &Ctx<'_>, label: &str, id: KeyId) -> Result<GeneratedKeyPair, OpError> {
    let label = label.as_bytes().to_vec();
    let public_template = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(P256_OID.to_vec()),
        Attribute::Label(label.clone()),
        Attribute::Id(id.as_bytes().to_vec()),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        Attribute::WrapWithTrusted(true),
        Attribute::Label(label),
        Attribute::Id(id.as_bytes().to_vec()),
    ];
    let (public, private) = ctx.session.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &public_template,
        &private_template,
    )?;
    match read_ec_point(ctx, public) {
        Ok(public_key) => Ok(GeneratedKeyPair { id, public_key }),
        Err(e) => {
            // Leave nothing half-made behind.
            let _ = ctx.session.destroy_object(private);
            let _ = ctx.session.destroy_object(public);
            Err(e)
        }
    }
}

/// Finds (or, on first start, creates) the audit signing key pair; its id and public key. The
/// private half's handle goes into the session's cache, where checkpoint signing finds it.
pub(crate) fn ensure_audit(
    ctx: &Ctx<'_>,
    recorded: Option<KeyId>,
) -> Result<GeneratedKeyPair, OpError> {
    let id = match recorded {
        Some(id) => id,
        None => {
            // `find_all` confirmed the token alive if this is empty: generating is safe.
            let found = find_all(ctx, ObjectClass::PRIVATE_KEY, AUDIT_LABEL, None)?;
            match found.as_slice() {
                [] => return generate_token_pair(ctx, AUDIT_LABEL, KeyId::generate()),
                [one] => key_id_of(ctx, *one)?,
                more => {
                    return Err(SignerError::AmbiguousKey {
                        label: AUDIT_LABEL.into(),
                        count: more.len(),
                    }
                    .into());
                }
            }
        }
    };
    cached_key(ctx, ObjectClass::PRIVATE_KEY, AUDIT_LABEL, &id)?;
    let public = find_one(ctx, ObjectClass::PUBLIC_KEY, AUDIT_LABEL, &id)?;
    Ok(GeneratedKeyPair {
        id,
        public_key: read_ec_point(ctx, public)?,
    })
}

/// Signs with the audit key (its handle from the session's cache).
pub(crate) fn sign_audit(
    ctx: &Ctx<'_>,
    id: &KeyId,
    digest: &[u8; 32],
) -> Result<DerSignature, OpError> {
    let raw = with_key(ctx, ObjectClass::PRIVATE_KEY, AUDIT_LABEL, id, |key| {
        ctx.session.sign(&Mechanism::Ecdsa, key, digest)
    })??;
    der_signature(&raw)
}

#[derive(Clone, Copy)]
enum AesPurpose {
    Kek,
    Dek,
}

fn generate_aes(ctx: &Ctx<'_>, purpose: AesPurpose) -> Result<KeyId, OpError> {
    let id = KeyId::generate();
    // The KEK is made by the key ceremony (`isolation::provision_blocking`); here only the DEK.
    let (label, wrap, crypt) = match purpose {
        AesPurpose::Kek => (KEK_LABEL, true, false),
        AesPurpose::Dek => (DEK_LABEL, false, true),
    };
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(Ulong::from(32)),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(wrap),
        Attribute::Unwrap(wrap),
        Attribute::Encrypt(crypt),
        Attribute::Decrypt(crypt),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.as_bytes().to_vec()),
    ];
    ctx.session.generate_key(&Mechanism::AesKeyGen, &template)?;
    Ok(id)
}

pub(super) fn key_id_of(ctx: &Ctx<'_>, handle: ObjectHandle) -> Result<KeyId, OpError> {
    let attrs = ctx.session.get_attributes(handle, &[AttributeType::Id])?;
    match attrs.first() {
        Some(Attribute::Id(id)) => KeyId::from_slice(id)
            .ok_or_else(|| SignerError::Malformed("CKA_ID (not 16 bytes)").into()),
        _ => Err(SignerError::Malformed("CKA_ID (absent)").into()),
    }
}

fn ensure_one(ctx: &Ctx<'_>, purpose: AesPurpose) -> Result<KeyId, OpError> {
    let label = match purpose {
        AesPurpose::Kek => KEK_LABEL,
        AesPurpose::Dek => DEK_LABEL,
    };
    // `find_all` confirmed the token alive if this is empty: generating is safe.
    let found = find_all(ctx, ObjectClass::SECRET_KEY, label, None)?;
    match found.as_slice() {
        // Only the security officer can make a trusted KEK: the key ceremony does it.
        [] if matches!(purpose, AesPurpose::Kek) => Err(SignerError::KeyNotFound {
            label: format!(
                "{KEK_LABEL} (no KEK on the token: run the key ceremony, \
                 `offline-signer hsm provision --config FILE --so-pin-file FILE`)"
            ),
        }
        .into()),
        [] => generate_aes(ctx, purpose),
        [one] => key_id_of(ctx, *one),
        more => Err(SignerError::AmbiguousKey {
            label: label.into(),
            count: more.len(),
        }
        .into()),
    }
}

/// Finds (or, on first start, creates) the KEK and DEK.
pub(crate) fn ensure_storage(
    ctx: &Ctx<'_>,
    recorded: Option<StorageKeyIds>,
) -> Result<StorageKeyIds, OpError> {
    match recorded {
        Some(ids) => {
            find_one(ctx, ObjectClass::SECRET_KEY, KEK_LABEL, &ids.kek)?;
            find_one(ctx, ObjectClass::SECRET_KEY, DEK_LABEL, &ids.dek)?;
            Ok(ids)
        }
        None => Ok(StorageKeyIds {
            kek: ensure_one(ctx, AesPurpose::Kek)?,
            dek: ensure_one(ctx, AesPurpose::Dek)?,
        }),
    }
}

/// Destroys every object with CKA_ID `id` labelled as the KEK, the DEK, the audit key or master key `id` (never
/// anything without the service's label); whether any was found.
pub(crate) fn destroy_key(ctx: &Ctx<'_>, id: &KeyId) -> Result<bool, OpError> {
    let master = crate::signer::master_label(id);
    let mut destroyed = false;
    for (class, label) in [
        (ObjectClass::SECRET_KEY, KEK_LABEL),
        (ObjectClass::SECRET_KEY, DEK_LABEL),
        (ObjectClass::PRIVATE_KEY, AUDIT_LABEL),
        (ObjectClass::PUBLIC_KEY, AUDIT_LABEL),
        (ObjectClass::PRIVATE_KEY, master.as_str()),
        (ObjectClass::PUBLIC_KEY, master.as_str()),
    ] {
        for handle in find_all(ctx, class, label, Some(id))? {
            ctx.session.destroy_object(handle)?;
            destroyed = true;
        }
    }
    Ok(destroyed)
}

/// Generates a per-activation key pair as session objects: the private half sensitive, usable
/// for nothing but being wrapped (no `CKA_SIGN`, no `CKA_DERIVE`: the unwrapped copies get their one
/// purpose), and with `trusted_kek` wrappable only under a `CKA_TRUSTED` key
/// (`CKA_WRAP_WITH_TRUSTED`), which the trusted KEK is, so the wrap right after generation works.
pub(super) fn generate_session_pair<'a>(
    ctx: &Ctx<'a>,
    trusted_kek: bool,
) -> Result<(Temp<'a>, Temp<'a>), OpError> {
    let public_template = [
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(P256_OID.to_vec()),
    ];
    // Extractable only so that it can be wrapped; sensitive all along.
    let private_template = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::WrapWithTrusted(trusted_kek),
        Attribute::Sign(false),
        Attribute::Derive(false),
    ];
    let (public, private) = ctx.session.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &public_template,
        &private_template,
    )?;
    Ok((
        Temp::new(ctx.session, public),
        Temp::new(ctx.session, private),
    ))
}

/// Set once the untrusted-KEK warning was logged (once per process).
static UNTRUSTED_KEK_WARNED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Generates a session key pair, wraps the private half under the KEK, destroys both.
pub(crate) fn generate_wrapped(ctx: &Ctx<'_>, kek_id: &KeyId) -> Result<WrappedKeyPair, OpError> {
    let kek = find_one(ctx, ObjectClass::SECRET_KEY, KEK_LABEL, kek_id)?;
    let trusted = super::isolation::is_trusted(ctx, kek)?;
    if !trusted && !UNTRUSTED_KEK_WARNED.swap(true, Ordering::SeqCst) {
        // A token made before the key ceremony existed: keep working, say it loudly; key-report
        // shows the violation.
        tracing::warn!(
            kek = %kek_id,
            "the KEK is not CKA_TRUSTED: activation keys are generated without \
             CKA_WRAP_WITH_TRUSTED; run `offline-signer hsm provision` and rotate (docs/key-isolation.md)"
        );
    }
    let (public, private) = generate_session_pair(ctx, trusted)?;
    let blob = ctx
        .session
        .wrap_key(&Mechanism::AesKeyWrapPad, kek, private.handle)?;
    let public_key = read_ec_point(ctx, public.handle)?;
    Ok(WrappedKeyPair {
        wrapped: WrappedKey::new(*kek_id, blob),
        public_key,
    })
}

/// What an unwrapped per-activation key is for: exactly one purpose per session object.
#[derive(Clone, Copy)]
enum Use {
    /// ECDSA only.
    Sign,
    /// ECDH only.
    Derive,
}

/// Unwraps into a sensitive, non-extractable session object for one purpose, held by a guard.
/// The template carries the KEK's unwrap policy ([`super::isolation`]) with the same values, as
/// the token demands.
fn unwrap<'a>(ctx: &Ctx<'a>, wrapped: &WrappedKey, purpose: Use) -> Result<Temp<'a>, OpError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Extractable(false),
        Attribute::Sign(matches!(purpose, Use::Sign)),
        Attribute::Derive(matches!(purpose, Use::Derive)),
    ];
    template.extend(super::isolation::unwrap_policy_attributes());
    let handle = with_key(
        ctx,
        ObjectClass::SECRET_KEY,
        KEK_LABEL,
        wrapped.kek(),
        |kek| {
            ctx.session
                .unwrap_key(&Mechanism::AesKeyWrapPad, kek, wrapped.blob(), &template)
        },
    )?
    .map_err(|e| auth_failure(ctx, e))?;
    Ok(Temp::new(ctx.session, handle))
}

fn sign_with(ctx: &Ctx<'_>, key: ObjectHandle, digest: &[u8; 32]) -> Result<DerSignature, OpError> {
    der_signature(&ctx.session.sign(&Mechanism::Ecdsa, key, digest)?)
}

fn der_signature(raw: &[u8]) -> Result<DerSignature, OpError> {
    Ok(DerSignature::from_raw(raw)
        .map_err(|_| SignerError::Malformed("signature from the token"))?)
}

/// Signs with a token master key.
pub(crate) fn sign_token(
    ctx: &Ctx<'_>,
    id: &KeyId,
    digest: &[u8; 32],
) -> Result<DerSignature, OpError> {
    let raw = with_key(
        ctx,
        ObjectClass::PRIVATE_KEY,
        &master_label(id),
        id,
        |key| ctx.session.sign(&Mechanism::Ecdsa, key, digest),
    )??;
    der_signature(&raw)
}

/// Signs with a wrapped key (unwrapped for this call only).
pub(crate) fn sign_wrapped(
    ctx: &Ctx<'_>,
    wrapped: &WrappedKey,
    digest: &[u8; 32],
) -> Result<DerSignature, OpError> {
    let key = unwrap(ctx, wrapped, Use::Sign)?;
    sign_with(ctx, key.handle, digest)
}

/// ECDH with a wrapped key; `peer` is a validated uncompressed point.
pub(crate) fn ecdh(
    ctx: &Ctx<'_>,
    wrapped: &WrappedKey,
    peer: &PublicKey,
) -> Result<SharedSecret, OpError> {
    let key = unwrap(ctx, wrapped, Use::Derive)?;
    let point = peer.to_uncompressed();
    let params = Ecdh1DeriveParams::new(EcKdf::null(), &point);
    // The derived secret is a short-lived session object whose value we read once.
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::ValueLen(Ulong::from(32)),
    ];
    let derived = ctx
        .session
        .derive_key(&Mechanism::Ecdh1Derive(params), key.handle, &template)?;
    let derived = Temp::new(ctx.session, derived);
    let mut attrs = ctx
        .session
        .get_attributes(derived.handle, &[AttributeType::Value])?;
    let mut out = Zeroizing::new([0u8; 32]);
    let result = match attrs.first_mut() {
        Some(Attribute::Value(v)) if v.len() == 32 => {
            out.copy_from_slice(v);
            Ok(SharedSecret::new(out))
        }
        _ => Err(SignerError::Internal("ECDH derive gave no 32-byte value".into()).into()),
    };
    for a in attrs.iter_mut() {
        if let Attribute::Value(v) = a {
            zeroize::Zeroize::zeroize(v);
        }
    }
    result
}

/// Seals with AES-256-GCM under the DEK.
pub(crate) fn encrypt(
    ctx: &Ctx<'_>,
    dek_id: &KeyId,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<EncryptedSecret, OpError> {
    let mut iv = [0u8; SEALED_IV_LEN];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let ct = with_key(ctx, ObjectClass::SECRET_KEY, DEK_LABEL, dek_id, |dek| {
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, Ulong::from(8 * SEALED_TAG_LEN as u64))?;
        ctx.session
            .encrypt(&Mechanism::AesGcm(params), dek, plaintext)
    })??;
    if ct.len() != plaintext.len() + SEALED_TAG_LEN {
        return Err(SignerError::Internal("AES-GCM output has an unexpected length".into()).into());
    }
    Ok(EncryptedSecret::from_parts(&iv, &ct))
}

/// Opens what [`encrypt`] sealed.
pub(crate) fn decrypt(
    ctx: &Ctx<'_>,
    dek_id: &KeyId,
    aad: &[u8],
    sealed: &EncryptedSecret,
) -> Result<PlainSecret, OpError> {
    let pt = with_key(ctx, ObjectClass::SECRET_KEY, DEK_LABEL, dek_id, |dek| {
        let mut iv = sealed.iv();
        let params = GcmParams::new(&mut iv, aad, Ulong::from(8 * SEALED_TAG_LEN as u64))?;
        ctx.session
            .decrypt(&Mechanism::AesGcm(params), dek, sealed.ciphertext_and_tag())
    })?
    .map_err(|e| auth_failure(ctx, e))?;
    Ok(PlainSecret::new(Zeroizing::new(pt)))
}

/// Reads a master public key.
pub(crate) fn public_key(ctx: &Ctx<'_>, id: &KeyId) -> Result<PublicKey, OpError> {
    let public = find_one(ctx, ObjectClass::PUBLIC_KEY, &master_label(id), id)?;
    read_ec_point(ctx, public)
}

fn class_name(class: ObjectClass) -> &'static str {
    if class == ObjectClass::PRIVATE_KEY {
        "privateKey"
    } else if class == ObjectClass::PUBLIC_KEY {
        "publicKey"
    } else if class == ObjectClass::SECRET_KEY {
        "secretKey"
    } else {
        "other"
    }
}

fn key_type_name(key_type: KeyType) -> &'static str {
    if key_type == KeyType::EC {
        "EC"
    } else if key_type == KeyType::AES {
        "AES"
    } else if key_type == KeyType::GENERIC_SECRET {
        "genericSecret"
    } else {
        "other"
    }
}

/// Reads the security-relevant attributes of one object. Attributes the token does not reveal
/// stay `None`; `CKA_VALUE` is probed with `C_GetAttributeValue` sizes only (never read).
pub(crate) fn attributes(ctx: &Ctx<'_>, handle: ObjectHandle) -> Result<ObjectAttributes, OpError> {
    let wanted = [
        AttributeType::Id,
        AttributeType::Label,
        AttributeType::Class,
        AttributeType::KeyType,
        AttributeType::Token,
        AttributeType::Private,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::AlwaysSensitive,
        AttributeType::NeverExtractable,
        AttributeType::Local,
        AttributeType::Trusted,
        AttributeType::WrapWithTrusted,
    ];
    let mut out = ObjectAttributes {
        id: String::new(),
        label: String::new(),
        class: "other".into(),
        key_type: "other".into(),
        token: None,
        private: None,
        sensitive: None,
        extractable: None,
        always_sensitive: None,
        never_extractable: None,
        local: None,
        trusted: None,
        wrap_with_trusted: None,
        value_readable: None,
    };
    for attr in ctx.session.get_attributes(handle, &wanted)? {
        match attr {
            Attribute::Id(v) => out.id = hex::encode(v),
            Attribute::Label(v) => out.label = String::from_utf8_lossy(&v).into_owned(),
            Attribute::Class(c) => out.class = class_name(c).into(),
            Attribute::KeyType(k) => out.key_type = key_type_name(k).into(),
            Attribute::Token(b) => out.token = Some(b),
            Attribute::Private(b) => out.private = Some(b),
            Attribute::Sensitive(b) => out.sensitive = Some(b),
            Attribute::Extractable(b) => out.extractable = Some(b),
            Attribute::AlwaysSensitive(b) => out.always_sensitive = Some(b),
            Attribute::NeverExtractable(b) => out.never_extractable = Some(b),
            Attribute::Local(b) => out.local = Some(b),
            Attribute::Trusted(b) => out.trusted = Some(b),
            Attribute::WrapWithTrusted(b) => out.wrap_with_trusted = Some(b),
            _ => {}
        }
    }
    let value = ctx
        .session
        .get_attribute_info(handle, &[AttributeType::Value])?;
    out.value_readable = match value.first() {
        Some(AttributeInfo::Available(_)) => Some(true),
        Some(AttributeInfo::Sensitive) => Some(false),
        _ => None,
    };
    Ok(out)
}

/// Unwraps, reads the unwrapped object's attributes, destroys it.
pub(crate) fn unwrapped_attributes(
    ctx: &Ctx<'_>,
    wrapped: &WrappedKey,
) -> Result<ObjectAttributes, OpError> {
    let key = unwrap(ctx, wrapped, Use::Sign)?;
    attributes(ctx, key.handle)
}

/// The token's identity and every object labelled with our prefix.
pub(crate) fn inventory(ctx: &Ctx<'_>) -> Result<Inventory, OpError> {
    confirm_alive(ctx)?;
    let info = ctx.lib.get_token_info(ctx.slot)?;
    let token = TokenDescription {
        label: info.label().trim_end().to_owned(),
        serial: info.serial_number().trim_end().to_owned(),
        manufacturer: info.manufacturer_id().trim_end().to_owned(),
        model: info.model().trim_end().to_owned(),
    };
    let mut objects = Vec::new();
    for handle in ctx.session.find_objects(&[Attribute::Token(true)])? {
        let labels = ctx
            .session
            .get_attributes(handle, &[AttributeType::Label])?;
        let ours = labels
            .iter()
            .any(|a| matches!(a, Attribute::Label(l) if l.starts_with(LABEL_PREFIX.as_bytes())));
        if ours {
            objects.push(attributes(ctx, handle)?);
        }
    }
    Ok(Inventory { token, objects })
}
