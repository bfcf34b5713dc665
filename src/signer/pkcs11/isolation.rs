//! Isolation the token enforces: the KEK's policy (`CKA_TRUSTED`, `CKA_UNWRAP_TEMPLATE`), the key
//! ceremony that creates it with the security officer ([`provision_blocking`]), the probes that
//! try every forbidden operation and record the token's answer ([`probes`]), and the removal of
//! orphaned token objects ([`destroy_objects`]). `docs/key-isolation.md` says which attribute
//! enforces which promise and what SoftHSM 2.6 was measured to enforce.

use std::ffi::c_ulong;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::types::Ulong;

use super::ops::{Ctx, OpError, Temp, find_all, generate_session_pair, key_id_of};
use super::token;
use crate::model::KeyId;
use crate::signer::config::{PinSource, Pkcs11Config};
use crate::signer::{
    AUDIT_LABEL, DEK_LABEL, KEK_LABEL, LABEL_PREFIX, OpenError, ProbeResult, SignerError,
};

/// `CKA_UNWRAP_TEMPLATE` (`CKF_ARRAY_ATTRIBUTE | 0x212`).
const CKA_UNWRAP_TEMPLATE: c_ulong = 0x4000_0212;
const CKA_TOKEN: c_ulong = 0x001;
const CKA_PRIVATE: c_ulong = 0x002;
const CKA_SENSITIVE: c_ulong = 0x103;
const CKA_WRAP_WITH_TRUSTED: c_ulong = 0x210;

/// The encoding below writes pointers as `c_ulong`-sized words: only valid where they agree.
const _: () = assert!(size_of::<c_ulong>() == size_of::<usize>());

/// The `CK_BBOOL` values the encoded template points to. `static`: they live for the whole
/// program, so the module may read them at any time.
static CK_TRUE: u8 = 1;
static CK_FALSE: u8 = 0;

/// What every key the KEK unwraps must be: a session object, private (needs the user's login),
/// sensitive (`CKA_VALUE` never readable) and wrappable only under a `CKA_TRUSTED` key. Not
/// `CKA_EXTRACTABLE=false`: the key ceremony's rotation must re-wrap under a new trusted KEK.
const UNWRAP_POLICY: [(c_ulong, bool); 4] = [
    (CKA_TOKEN, false),
    (CKA_PRIVATE, true),
    (CKA_SENSITIVE, true),
    (CKA_WRAP_WITH_TRUSTED, true),
];

/// `CKA_UNWRAP_TEMPLATE` as cryptoki 0.12 can carry it: cryptoki has no array attributes, so the
/// `CK_ATTRIBUTE[]` value is laid out here as native-endian words (type, pointer, length) in a
/// byte attribute of that type. Sound without `unsafe` because every pointer is the address of a
/// `static` (valid for the program's life, read-only) and the module only reads them while the
/// call runs (SoftHSM copies the template into the object). Do not point at anything else.
pub(super) fn unwrap_template_attribute() -> Attribute {
    let mut bytes = Vec::with_capacity(UNWRAP_POLICY.len() * 3 * size_of::<usize>());
    for (kind, value) in UNWRAP_POLICY {
        let target: &'static u8 = if value { &CK_TRUE } else { &CK_FALSE };
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(std::ptr::from_ref(target) as usize).to_ne_bytes());
        bytes.extend_from_slice(&(1 as c_ulong).to_ne_bytes());
    }
    Attribute::VendorDefined((AttributeType::VendorDefined(CKA_UNWRAP_TEMPLATE), bytes))
}

/// The attributes a caller's unwrap template must carry to match [`UNWRAP_POLICY`] (SoftHSM
/// demands every attribute of the KEK's unwrap template in the caller's, with the same value).
pub(super) fn unwrap_policy_attributes() -> [Attribute; 4] {
    [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::WrapWithTrusted(true),
    ]
}

/// The KEK template: generated in the token, wrap/unwrap only, trusted, with the unwrap policy.
/// `CKA_PRIVATE=false` because only the security officer can set `CKA_TRUSTED` and a security
/// officer session can neither create nor see private objects (measured on SoftHSM 2.6).
fn kek_template(id: &KeyId) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(Ulong::from(32)),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Modifiable(false),
        Attribute::Trusted(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        unwrap_template_attribute(),
        Attribute::Label(KEK_LABEL.as_bytes().to_vec()),
        Attribute::Id(id.as_bytes().to_vec()),
    ]
}

/// What the key ceremony did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionOutcome {
    /// The trusted KEK's id.
    pub kek_id: KeyId,
    /// `true` when the KEK was generated now, `false` when a trusted one was already there.
    pub created: bool,
    /// KEK objects visible to the security officer that are not trusted (made before this
    /// version by the user; see `docs/key-isolation.md`, "Tokens made before").
    pub untrusted_keks: usize,
}

/// The key ceremony: logs in as the security officer and makes sure the token holds exactly one
/// trusted KEK with the unwrap policy (generates it when there is none). Idempotent. Blocking:
/// loads and initializes the module and finalizes it at the end; do not run it in a process that
/// has a signer open.
///
/// # Errors
/// [`OpenError`] naming the missing file, token or PIN, or the refused step.
pub fn provision_blocking(
    cfg: &Pkcs11Config,
    so_pin: &PinSource,
) -> Result<ProvisionOutcome, OpenError> {
    cfg.check_module_env()?;
    let lib = token::load(&cfg.module)?;
    let pin = so_pin.read()?;
    token::initialize(&lib).map_err(|e| token::internal("C_Initialize", &e))?;
    let result = provision_on(&lib, cfg, &pin);
    let _ = lib.finalize();
    result
}

fn provision_on(
    lib: &Pkcs11,
    cfg: &Pkcs11Config,
    pin: &secrecy::SecretString,
) -> Result<ProvisionOutcome, OpenError> {
    let slot = token::find_slot(lib, &cfg.token)?;
    let session = lib
        .open_rw_session(slot)
        .map_err(|e| token::internal("C_OpenSession", &e))?;
    match session.login(UserType::So, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => {
            return Err(match token::classify(&e) {
                token::Fault::Pin(err) => err.into(),
                _ => token::internal("C_Login (security officer)", &e).into(),
            });
        }
    }
    let result = ensure_trusted_kek(&session);
    let _ = session.logout();
    result.map_err(|e| token::internal("provisioning the KEK", &e).into())
}

fn ensure_trusted_kek(session: &Session) -> Result<ProvisionOutcome, CkError> {
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(KEK_LABEL.as_bytes().to_vec()),
    ])?;
    let mut trusted = Vec::new();
    let mut untrusted_keks = 0;
    for handle in found {
        let attrs = session.get_attributes(handle, &[AttributeType::Trusted, AttributeType::Id])?;
        let is_trusted = attrs.iter().any(|a| matches!(a, Attribute::Trusted(true)));
        let id = attrs.iter().find_map(|a| match a {
            Attribute::Id(v) => KeyId::from_slice(v),
            _ => None,
        });
        match (is_trusted, id) {
            (true, Some(id)) => trusted.push(id),
            _ => untrusted_keks += 1,
        }
    }
    if let Some(kek_id) = trusted.first() {
        return Ok(ProvisionOutcome {
            kek_id: *kek_id,
            created: false,
            untrusted_keks,
        });
    }
    let kek_id = KeyId::generate();
    session.generate_key(&Mechanism::AesKeyGen, &kek_template(&kek_id))?;
    Ok(ProvisionOutcome {
        kek_id,
        created: true,
        untrusted_keks,
    })
}

/// Whether the token marks this key `CKA_TRUSTED`.
pub(super) fn is_trusted(ctx: &Ctx<'_>, key: ObjectHandle) -> Result<bool, OpError> {
    let attrs = ctx.session.get_attributes(key, &[AttributeType::Trusted])?;
    Ok(attrs.iter().any(|a| matches!(a, Attribute::Trusted(true))))
}

/// `CKR_TEMPLATE_INCONSISTENT` from `TemplateInconsistent`.
fn ckr_name(rv: RvError) -> String {
    let debug = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in debug.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Records the token's answer to a forbidden operation. A success is a violation; the object a
/// successful probe created (if any) is destroyed by the caller's guard.
fn answer<T>(name: &str, target: String, result: &Result<T, CkError>) -> ProbeResult {
    let (answer, refused) = match result {
        Ok(_) => ("CKR_OK".to_owned(), false),
        Err(CkError::Pkcs11(rv, _)) => (ckr_name(*rv), true),
        Err(other) => (format!("error: {other}"), true),
    };
    ProbeResult {
        name: name.to_owned(),
        target,
        answer,
        refused,
    }
}

fn label_of(ctx: &Ctx<'_>, handle: ObjectHandle) -> String {
    match ctx.session.get_attributes(handle, &[AttributeType::Label]) {
        Ok(attrs) => attrs
            .iter()
            .find_map(|a| match a {
                Attribute::Label(l) => Some(String::from_utf8_lossy(l).into_owned()),
                _ => None,
            })
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A session AES key with no policy at all: what an attacker holding the user PIN can make.
fn attacker_key<'a>(ctx: &Ctx<'a>) -> Result<Temp<'a>, OpError> {
    let handle = ctx.session.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::from(32)),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ],
    )?;
    Ok(Temp::new(ctx.session, handle))
}

fn ec_unwrap_template(extra: &[Attribute]) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sign(true),
    ];
    t.extend_from_slice(extra);
    t
}

/// Tries every operation the keys table forbids, on session objects only (destroyed on every
/// path), and returns the token's answer to each.
pub(crate) fn probes(ctx: &Ctx<'_>) -> Result<Vec<ProbeResult>, OpError> {
    let mut out = Vec::new();
    let attacker = attacker_key(ctx)?;
    let keks = find_all(ctx, ObjectClass::SECRET_KEY, KEK_LABEL, None)?;
    let deks = find_all(ctx, ObjectClass::SECRET_KEY, DEK_LABEL, None)?;
    for &kek in &keks {
        let kek_name = format!("{KEK_LABEL}#{}", key_id_of(ctx, kek)?);
        let trusted = is_trusted(ctx, kek)?;
        // A per-activation key made exactly as the service makes it for this KEK.
        let (_public, private) = generate_session_pair(ctx, trusted)?;
        let blob = ctx
            .session
            .wrap_key(&Mechanism::AesKeyWrapPad, kek, private.handle)?;
        let unwrap_probe = |name: &str, extra: &[Attribute]| {
            let result = ctx.session.unwrap_key(
                &Mechanism::AesKeyWrapPad,
                kek,
                &blob,
                &ec_unwrap_template(extra),
            );
            let probe = answer(name, kek_name.clone(), &result);
            if let Ok(h) = result {
                drop(Temp::new(ctx.session, h));
            }
            probe
        };
        out.push(unwrap_probe(
            "unwrap an activation key as non-sensitive and extractable",
            &[Attribute::Sensitive(false), Attribute::Extractable(true)],
        ));
        out.push(unwrap_probe(
            "unwrap an activation key as extractable without CKA_WRAP_WITH_TRUSTED",
            &[
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::WrapWithTrusted(false),
            ],
        ));
        let wrapped =
            ctx.session
                .wrap_key(&Mechanism::AesKeyWrapPad, attacker.handle, private.handle);
        out.push(answer(
            "wrap an activation key under a non-trusted key",
            kek_name.clone(),
            &wrapped,
        ));
        let encrypted = ctx.session.encrypt(&Mechanism::AesEcb, kek, &[0u8; 16]);
        out.push(answer(
            "encrypt data with the KEK",
            kek_name.clone(),
            &encrypted,
        ));
        for &dek in &deks {
            let dek_name = format!("{DEK_LABEL}#{}", key_id_of(ctx, dek)?);
            let wrapped = ctx
                .session
                .wrap_key(&Mechanism::AesKeyWrapPad, dek, private.handle);
            out.push(answer("wrap a key with the DEK", dek_name, &wrapped));
        }
    }
    for handle in ctx.session.find_objects(&[Attribute::Token(true)])? {
        let label = label_of(ctx, handle);
        if !label.starts_with(LABEL_PREFIX) {
            continue;
        }
        let class = ctx
            .session
            .get_attributes(handle, &[AttributeType::Class])?;
        let class = class.iter().find_map(|a| match a {
            Attribute::Class(c) => Some(*c),
            _ => None,
        });
        if class == Some(ObjectClass::PUBLIC_KEY) {
            continue;
        }
        let name = match key_id_of(ctx, handle) {
            Ok(id) => format!("{label}#{id}"),
            Err(_) => label.clone(),
        };
        if class == Some(ObjectClass::PRIVATE_KEY) {
            let wrapped = ctx
                .session
                .wrap_key(&Mechanism::AesKeyWrapPad, attacker.handle, handle);
            out.push(answer(
                "wrap a long-term private key under a non-trusted key",
                name.clone(),
                &wrapped,
            ));
        }
        let value = ctx
            .session
            .get_attribute_info(handle, &[AttributeType::Value])?;
        let (answer, refused) = match value.first() {
            Some(AttributeInfo::Available(_)) => ("CKR_OK".to_owned(), false),
            Some(AttributeInfo::Sensitive) => (ckr_name(RvError::AttributeSensitive), true),
            _ => (ckr_name(RvError::AttributeTypeInvalid), true),
        };
        out.push(ProbeResult {
            name: "read CKA_VALUE in clear".into(),
            target: name,
            answer,
            refused,
        });
    }
    Ok(out)
}

/// Destroys the token objects carrying one of these (label, id) pairs; returns how many.
pub(crate) fn destroy_objects(ctx: &Ctx<'_>, keys: &[(String, KeyId)]) -> Result<usize, OpError> {
    let mut destroyed = 0;
    for (label, id) in keys {
        if !label.starts_with(LABEL_PREFIX)
            || label == KEK_LABEL
            || label == DEK_LABEL
            || label == AUDIT_LABEL
        {
            return Err(
                SignerError::InvalidInput("only orphaned master keys may be destroyed").into(),
            );
        }
        let template = [
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.as_bytes().to_vec()),
        ];
        for handle in ctx.session.find_objects(&template)? {
            ctx.session.destroy_object(handle)?;
            destroyed += 1;
        }
    }
    Ok(destroyed)
}
