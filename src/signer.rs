//! The signer: every operation that touches key material the service must not hold.
//!
//! This module owns the [`Signer`] trait, the two secret types only the signer hands out
//! ([`SharedSecret`], [`PlainSecret`]), its errors ([`OpenError`] at start, [`SignerError`] per
//! operation), the `[signer]` configuration table ([`config::RawSignerConfig`] →
//! [`config::SignerConfig`]) and [`open_signer`], which builds the configured implementation. The
//! byte-level types that cross the trait (key ids, wrapped keys, sealed secrets, public keys, DER
//! signatures) are the shared vocabulary of [`crate::model`].
//!
//! - [`pkcs11::Pkcs11Signer`] talks to a PKCS#11 token through a pool of dedicated OS threads; it
//!   is the only code in the crate that imports `cryptoki`.
//! - [`software::SoftwareSigner`] keeps keys in process memory (`software-insecure`); it exists
//!   for unit tests and for running without an HSM, and warns at every construction.
//!
//! No method returns private or secret key bytes. What leaves the signer: public keys, DER
//! signatures, per-activation private keys wrapped under the KEK, factor-key material sealed under
//! the DEK, the 32-byte ECDH x-coordinate (in a zeroizing type) and decrypted factor-key material
//! (in a zeroizing type). [`report::key_report`] tells an auditor what the token holds.

pub mod config;
pub mod pkcs11;
pub mod report;
pub mod software;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::model::{DerSignature, EncryptedSecret, KeyId, PublicKey, WrappedKey};
pub use config::{RawSignerConfig, SignerConfig, SignerConfigError};
pub use report::{KeyReport, key_report};

/// Prefix of the `CKA_LABEL` of every object the service owns on the token.
pub const LABEL_PREFIX: &str = "offline-signer/";
/// `CKA_LABEL` of the key-encryption key (AES-256, wrap/unwrap only).
pub const KEK_LABEL: &str = "offline-signer/kek";
/// `CKA_LABEL` of the data-encryption key (AES-256, AES-GCM encrypt/decrypt only).
pub const DEK_LABEL: &str = "offline-signer/dek";

/// `CKA_LABEL` of the audit signing key pair (P-256, both halves): signs audit checkpoints only.
pub const AUDIT_LABEL: &str = "offline-signer/audit";

/// `CKA_LABEL` of an application master key pair (both halves carry it): `offline-signer/master/<hex id>`.
pub fn master_label(id: &KeyId) -> String {
    format!("{LABEL_PREFIX}master/{id}")
}

/// Length in bytes of a digest accepted by [`Signer::sign_digest`] (SHA-256).
pub const DIGEST_LEN: usize = 32;

/// Why the signer could not start: the configuration, the module or the token is not what it must
/// be. Fix it and start again; none of these is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The PIN could not be read from its configured source (named, never its content).
    #[error("cannot read the PIN from {source_name}: {reason}")]
    PinUnavailable {
        /// `file <path>` or `environment variable <NAME>`.
        source_name: String,
        /// Why, e.g. "empty" or the I/O error kind.
        reason: String,
    },
    /// The configured PKCS#11 module file does not exist.
    #[error("PKCS#11 module not found: {path}")]
    ModuleNotFound {
        /// The configured module path.
        path: String,
    },
    /// A configuration file the module needs does not exist (e.g. `SOFTHSM2_CONF`).
    #[error("configuration file not found: {path}")]
    ConfigMissing {
        /// The missing path.
        path: String,
    },
    /// The configuration's `signer.module_env` names a variable this process does not carry
    /// (the binary re-executes itself with it; an in-process caller must set it before starting).
    #[error(
        "signer.module_env wants {name}={value} in the environment before the module is loaded; \
         start the process with it (the offline-signer binary does this itself)"
    )]
    ModuleEnvNotApplied {
        /// The variable.
        name: String,
        /// The resolved value.
        value: String,
    },
    /// The token directory named in the SoftHSM configuration does not exist.
    #[error("token directory not found: {path}")]
    TokenDirMissing {
        /// The missing directory.
        path: String,
    },
    /// No token carries the configured label (or serial).
    #[error("no token with {selector}")]
    TokenNotFound {
        /// `label "<label>"` or `serial "<serial>"`.
        selector: String,
    },
    /// The token has no user PIN yet (`CKR_USER_PIN_NOT_INITIALIZED`): it was initialized without
    /// one, or (SoftHSM) its file was read while another process rewrote it, which a start retries.
    #[error(
        "the token with {selector} has no user PIN; set one when initializing it \
         (e.g. softhsm2-util --init-token … --pin, or the HSM vendor's tool)"
    )]
    UserPinNotInitialized {
        /// `label "<label>"` or `serial "<serial>"`.
        selector: String,
    },
    /// Several tokens carry the configured label (or serial).
    #[error("{count} tokens match {selector}; exactly one is required")]
    AmbiguousToken {
        /// `label "<label>"` or `serial "<serial>"`.
        selector: String,
        /// How many tokens matched.
        count: usize,
    },
    /// The software signer's key file is malformed.
    #[error("malformed software key file")]
    KeyFile,
    /// The token was reached but its first operations failed (PIN refused, mechanism missing…).
    #[error(transparent)]
    Token(#[from] SignerError),
}

/// Why one signer operation failed, in domain words. None of them carries a PIN or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// The token is gone or failing; the signer keeps trying to get it back on its own.
    #[error("the HSM token is unavailable")]
    TokenUnavailable,
    /// The work queue is full (back-pressure): try again later.
    #[error("the signer is busy (work queue full)")]
    Busy,
    /// The operation did not finish within the configured timeout.
    #[error("the signer did not answer within the timeout")]
    Timeout,
    /// The token refused the user PIN. Never retried.
    #[error("the HSM token rejected the user PIN")]
    PinRejected,
    /// The token's user PIN is locked (or expired). Never retried.
    #[error("the HSM token's user PIN is locked")]
    PinLocked,
    /// No key with this label and id is on the token.
    #[error("key not found: {label}")]
    KeyNotFound {
        /// The `CKA_LABEL` searched for (contains only the public key id).
        label: String,
    },
    /// More than one object matches a label and id that must be unique.
    #[error("{count} objects match {label}; exactly one is required")]
    AmbiguousKey {
        /// The `CKA_LABEL` searched for.
        label: String,
        /// How many objects matched.
        count: usize,
    },
    /// The caller passed malformed input (e.g. a digest that is not 32 bytes).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The token does not offer a mechanism the service needs.
    #[error("the token does not support {0}")]
    Unsupported(String),
    /// Authenticated decryption failed: wrong key, wrong associated data or tampered bytes.
    #[error("decryption failed")]
    DecryptFailed,
    /// A stored blob (wrapped key, sealed secret) or a token answer is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Anything else; the text names the failing step and return code only.
    #[error("internal signer error: {0}")]
    Internal(String),
}

impl From<crate::model::Malformed> for SignerError {
    fn from(e: crate::model::Malformed) -> Self {
        SignerError::Malformed(e.0)
    }
}

/// A key pair generated in the token: its id and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKeyPair {
    /// The `CKA_ID` of both halves.
    pub id: KeyId,
    /// The public half.
    pub public_key: PublicKey,
}

/// The ids of the two storage keys, recorded by the caller (the store) after the first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageKeyIds {
    /// Key-encryption key (`offline-signer/kek`): wraps per-activation private keys.
    pub kek: KeyId,
    /// Data-encryption key (`offline-signer/dek`): seals factor-key material with AES-GCM.
    pub dek: KeyId,
}

/// A freshly generated per-activation key pair: the private half wrapped, the public half clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKeyPair {
    /// The private key wrapped under the KEK.
    pub wrapped: WrappedKey,
    /// The public key (sent to the device).
    pub public_key: PublicKey,
}

/// The 32-byte x-coordinate of an ECDH shared point; wiped on drop, redacted in `Debug`.
pub struct SharedSecret(Zeroizing<[u8; 32]>);

impl SharedSecret {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        SharedSecret(bytes)
    }

    /// The x-coordinate, big-endian.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret([REDACTED])")
    }
}

/// Decrypted factor-key material; wiped on drop, redacted in `Debug`.
pub struct PlainSecret(Zeroizing<Vec<u8>>);

impl PlainSecret {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        PlainSecret(bytes)
    }

    /// The plaintext.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PlainSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainSecret([REDACTED {} bytes])", self.0.len())
    }
}

/// Which private key to sign with.
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    /// A token key pair (an application master key) by its id.
    Token(&'a KeyId),
    /// A per-activation key, unwrapped for this one operation.
    Wrapped(&'a WrappedKey),
    /// The audit signing key (labelled [`AUDIT_LABEL`]) by its id: signs audit checkpoints.
    Audit(&'a KeyId),
}

/// Which implementation runs behind the trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SignerKind {
    /// A PKCS#11 token.
    #[serde(rename = "pkcs11")]
    Pkcs11,
    /// In-process keys: for tests and development only.
    #[serde(rename = "software-insecure")]
    SoftwareInsecure,
}

/// Identity of the token (or of the software stand-in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenDescription {
    /// `CKA_LABEL` of the token, trimmed.
    pub label: String,
    /// Serial number, trimmed.
    pub serial: String,
    /// Manufacturer id, trimmed.
    pub manufacturer: String,
    /// Model, trimmed.
    pub model: String,
}

/// Security-relevant attributes of one object, as the token reports them.
///
/// `None` means the token did not reveal the attribute (absent, invalid for the class, or
/// unavailable) — never "false".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectAttributes {
    /// `CKA_ID` as hex (empty if absent).
    pub id: String,
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_CLASS`: `privateKey`, `publicKey`, `secretKey` or `other`.
    pub class: String,
    /// `CKA_KEY_TYPE`: `EC`, `AES`, `genericSecret` or `other`.
    pub key_type: String,
    /// `CKA_TOKEN`.
    pub token: Option<bool>,
    /// `CKA_PRIVATE`.
    pub private: Option<bool>,
    /// `CKA_SENSITIVE`.
    pub sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE`.
    pub extractable: Option<bool>,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: Option<bool>,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: Option<bool>,
    /// `CKA_LOCAL` (generated in the token).
    pub local: Option<bool>,
    /// `CKA_TRUSTED` (only the security officer can set it; the KEK must have it).
    pub trusted: Option<bool>,
    /// `CKA_WRAP_WITH_TRUSTED` (may be wrapped only under a trusted key).
    pub wrap_with_trusted: Option<bool>,
    /// Whether `CKA_VALUE` can be read in clear (`Some(false)`: the token refuses, as it must for
    /// a sensitive key; `None`: the object has no such attribute).
    pub value_readable: Option<bool>,
}

/// One forbidden operation tried on the token (`key-report`), and the token's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    /// What was tried, e.g. "encrypt data with the KEK".
    pub name: String,
    /// The key it was tried on (`label#id`).
    pub target: String,
    /// The token's return code, e.g. `CKR_KEY_FUNCTION_NOT_PERMITTED`; `CKR_OK` is a violation.
    pub answer: String,
    /// `true` when the token refused, as it must.
    pub refused: bool,
}

/// What the token holds for the service: every object whose label starts with [`LABEL_PREFIX`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The token.
    pub token: TokenDescription,
    /// The objects, in the token's order.
    pub objects: Vec<ObjectAttributes>,
}

/// The signer. Implementations are cheap to share (`Arc<dyn Signer>`); every method may be called
/// concurrently.
#[async_trait]
pub trait Signer: Send + Sync + fmt::Debug {
    /// Which implementation this is.
    fn kind(&self) -> SignerKind;

    /// Probes the token: logged in and answering. `Ok` when usable.
    async fn health(&self) -> Result<(), SignerError>;

    /// Generates an application master key pair (P-256) as token objects, labelled
    /// [`master_label`], with a fresh random [`KeyId`]. The private half is sensitive, not
    /// extractable, private, sign-only.
    async fn generate_master_key(&self) -> Result<GeneratedKeyPair, SignerError>;

    /// Finds or creates the KEK and DEK (AES-256 token objects generated in the token).
    ///
    /// `Some(ids)`: both must exist with their label and id, else [`SignerError::KeyNotFound`];
    /// never creates anything. `None` (first start): a label that exists exactly once is adopted,
    /// twice or more is [`SignerError::AmbiguousKey`], absent is generated. The caller records
    /// the returned ids.
    async fn ensure_storage_keys(
        &self,
        recorded: Option<StorageKeyIds>,
    ) -> Result<StorageKeyIds, SignerError>;

    /// Finds or creates the audit signing key pair (P-256 token objects labelled [`AUDIT_LABEL`];
    /// the private half sensitive, never extractable, private, sign-only) and returns its id and
    /// public key. Signing with it is [`Signer::sign_digest`] with [`KeyRef::Audit`].
    ///
    /// `Some(id)`: both halves must exist with that id, else [`SignerError::KeyNotFound`]; never
    /// creates anything. `None` (first start): a pair that exists exactly once is adopted, twice
    /// or more is [`SignerError::AmbiguousKey`], none is generated. The caller records the id.
    async fn ensure_audit_key(
        &self,
        recorded: Option<KeyId>,
    ) -> Result<GeneratedKeyPair, SignerError>;

    /// Generates a per-activation P-256 key pair; returns the private key wrapped under `kek`
    /// only, and the public key. Nothing is left on the token.
    async fn generate_wrapped_key_pair(&self, kek: &KeyId) -> Result<WrappedKeyPair, SignerError>;

    /// Signs a 32-byte SHA-256 digest (hashing is the caller's job) with ECDSA P-256; returns DER.
    /// Any other digest length is [`SignerError::InvalidInput`].
    async fn sign_digest(
        &self,
        key: KeyRef<'_>,
        digest: &[u8],
    ) -> Result<DerSignature, SignerError>;

    /// ECDH between a wrapped private key and a peer's public key (a validated P-256 point);
    /// returns the 32-byte x-coordinate.
    async fn ecdh(
        &self,
        key: &WrappedKey,
        peer_public: &PublicKey,
    ) -> Result<SharedSecret, SignerError>;

    /// Seals `plaintext` under the DEK with AES-256-GCM, a random 12-byte IV and the caller's
    /// `associated_data`.
    async fn encrypt_secret(
        &self,
        dek: &KeyId,
        associated_data: &[u8],
        plaintext: &[u8],
    ) -> Result<EncryptedSecret, SignerError>;

    /// Opens what [`Signer::encrypt_secret`] sealed; wrong key, associated data or any changed
    /// byte is [`SignerError::DecryptFailed`].
    async fn decrypt_secret(
        &self,
        dek: &KeyId,
        associated_data: &[u8],
        sealed: &EncryptedSecret,
    ) -> Result<PlainSecret, SignerError>;

    /// Reads the public key of a token key pair.
    async fn public_key(&self, id: &KeyId) -> Result<PublicKey, SignerError>;

    /// Unwraps `key` exactly as signing does, reads the attributes of the unwrapped object and
    /// destroys it: proof of how unwrapped keys live (sensitive, not extractable, session-only).
    async fn unwrapped_key_attributes(
        &self,
        key: &WrappedKey,
    ) -> Result<ObjectAttributes, SignerError>;

    /// Lists the token and every object labelled with [`LABEL_PREFIX`], read from the token.
    async fn inventory(&self) -> Result<Inventory, SignerError>;

    /// Destroys the token objects with this id whose label is one of the service's (the KEK, DEK
    /// or audit-key label, or the master-key label of `id`): for keys this process generated and then found
    /// unused, e.g. the storage keys of an instance that lost the first-start race to another.
    /// `Ok(true)` when something was destroyed; `Ok(false)` when nothing matched, or when this
    /// signer cannot destroy keys (the default).
    ///
    /// # Errors
    /// [`SignerError`] when the token refuses or is unreachable.
    async fn destroy_key(&self, id: &KeyId) -> Result<bool, SignerError> {
        let _ = id;
        Ok(false)
    }

    /// Tries, on session objects that are destroyed afterwards, every operation the keys table
    /// forbids (unwrap an activation key as extractable or non-sensitive, wrap an activation or
    /// master key under a non-trusted key, encrypt with the KEK, wrap with the DEK, read
    /// `CKA_VALUE` of every secret) and returns the token's answer to each. Implementations
    /// without a token answer an empty list.
    async fn isolation_probes(&self) -> Result<Vec<ProbeResult>, SignerError> {
        Ok(Vec::new())
    }

    /// Destroys the token objects with these labels and ids (orphaned master keys only: the KEK
    /// and DEK are refused with [`SignerError::InvalidInput`]); returns how many objects went.
    async fn destroy_orphans(&self, keys: &[(String, KeyId)]) -> Result<usize, SignerError> {
        let _ = keys;
        Ok(0)
    }

    /// Stops accepting work, lets queued work finish, releases the token (sessions closed,
    /// library finalized) and returns when that is done. Later calls answer
    /// [`SignerError::TokenUnavailable`]. Call it before the process exits: a PKCS#11 module
    /// unloaded under a running call may crash the process at exit.
    async fn shutdown(&self) {}
}

/// Builds the configured signer. For PKCS#11 this loads the module, finds the token, logs in once
/// and starts the worker threads; every failure is reported by name.
///
/// # Errors
/// [`OpenError`] naming what is missing or refused.
pub async fn open_signer(cfg: &SignerConfig) -> Result<Arc<dyn Signer>, OpenError> {
    match cfg {
        SignerConfig::Pkcs11(p) => {
            let signer = pkcs11::Pkcs11Signer::open(p).await?;
            Ok(Arc::new(signer))
        }
        SignerConfig::SoftwareInsecure(s) => {
            let signer = software::SoftwareSigner::open(s)?;
            Ok(Arc::new(signer))
        }
    }
}

/// Checks a digest length before any work is queued.
pub(crate) fn check_digest(digest: &[u8]) -> Result<[u8; DIGEST_LEN], SignerError> {
    <[u8; DIGEST_LEN]>::try_from(digest)
        .map_err(|_| SignerError::InvalidInput("digest must be 32 bytes (SHA-256)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_length_is_enforced() {
        assert!(check_digest(&[0; 32]).is_ok());
        assert!(check_digest(&[0; 31]).is_err());
        assert!(check_digest(&[0; 64]).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = SharedSecret::new(Zeroizing::new([0xAB; 32]));
        assert!(!format!("{s:?}").contains("ab"));
        let p = PlainSecret::new(Zeroizing::new(vec![0xCD; 16]));
        assert!(!format!("{p:?}").to_lowercase().contains("cd"));
    }
}
