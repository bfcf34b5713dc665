//! The records the store keeps, as plain Rust values: applications, activations, issued nonces and
//! integration credentials, plus the small newtypes they are built from.
//!
//! Nothing here touches sled or knows how a record is laid out on disk (that is [`super::codec`]). Key
//! material only ever appears as opaque, already-protected blobs ([`WrappedKey`], [`EncryptedSecret`]):
//! the service wraps or encrypts in the HSM before a record is built, so the store never sees a plaintext
//! secret.

use std::fmt;

use crate::model::{
    ActivationStatus, CommitPhase, CredentialScope, EncryptedSecret, KeyId, PublicKey, Timestamp,
    WrappedKey,
};

/// One master key pair of an application: where its private half lives in the HSM and its public half.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MasterKeyRef {
    /// `CKA_ID` of the private key object in the HSM.
    pub key_id: KeyId,
    /// The public half.
    pub public_key: PublicKey,
    /// When it was generated.
    pub created_at: Timestamp,
}

/// An application (PowerAuth's `applicationId`) with its roles and master key pairs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Application {
    /// The free-form, unique application name.
    pub id: String,
    /// The application roles.
    pub roles: Vec<String>,
    /// Newest first: `master_keys[0]` signs non-personalized payloads.
    pub master_keys: Vec<MasterKeyRef>,
    /// When it was created.
    pub created_at: Timestamp,
    /// The application versions (`default` first), each with its own application key and secret.
    /// Empty for applications stored before versions existed (record format 1).
    pub versions: Vec<ApplicationVersion>,
}

impl Application {
    /// The key that signs non-personalized payloads, if the application has one.
    pub fn newest_master_key(&self) -> Option<&MasterKeyRef> {
        self.master_keys.first()
    }

    /// The version whose application key is `application_key`, if any.
    pub fn version_by_key(&self, application_key: &str) -> Option<&ApplicationVersion> {
        self.versions
            .iter()
            .find(|v| v.application_key == application_key)
    }
}

/// One application version (`spec/powerauth-activation.md` §5.1): the application key `AK` and
/// the application secret `AS` a mobile app is built with.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ApplicationVersion {
    /// `applicationVersionId`, unique within the application (`default` for the first one).
    pub id: String,
    /// `AK`: the Base64 text of 16 random bytes; unique across all applications (it is an index).
    pub application_key: String,
    /// `AS` (its Base64 text), sealed under the DEK by the service.
    pub encrypted_secret: EncryptedSecret,
    /// Whether the version may still activate devices.
    pub supported: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

/// What an activation made by activation code (protocol 3.3) carries besides the common fields;
/// all empty for activations made by `activation/register` (and for records of format 1).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Enrollment {
    /// The activation code (`XXXXX-XXXXX-XXXXX-XXXXX`), indexed per application for prepare.
    pub activation_code: Option<String>,
    /// Base64 DER signature of the code by the application's master key (made in the HSM at init).
    pub activation_signature: Option<String>,
    /// When the activation must be prepared and committed by; `None` for registered activations.
    pub expires_at: Option<Timestamp>,
    /// When the activation OTP is checked (`ON_COMMIT` or `ON_KEY_EXCHANGE`).
    pub commit_phase: CommitPhase,
    /// The activation OTP, sealed under the DEK; `None` when none was set.
    pub activation_otp: Option<EncryptedSecret>,
    /// `KEY_TRANSPORT`, sealed under the DEK; `None` before the key exchange and once removed.
    pub encrypted_transport_key: Option<EncryptedSecret>,
    /// Protocol major version of the activation: 0 before the key exchange, then 3.
    pub protocol_version: u8,
    /// The activation name.
    pub activation_name: Option<String>,
    /// Lower-cased platform (`ios`, `android`, …) as the device sent it.
    pub platform: Option<String>,
    /// The device description.
    pub device_info: Option<String>,
    /// Free-form extras the bank attached.
    pub extras: Option<String>,
    /// An external id the bank gave the activation.
    pub external_id: Option<String>,
    /// The last time the status changed.
    pub last_changed_at: Option<Timestamp>,
}

/// A temporary ECIES key pair of protocol 3.3 (`spec/powerauth-activation.md` §3.3), multi-use until
/// it expires.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TemporaryKey {
    /// `sub` of the JWT: a random UUID v4, lower case.
    pub id: String,
    /// The application key of the version it was issued for.
    pub application_key: String,
    /// The activation it is bound to (activation scope), or `None` (application scope).
    pub activation_id: Option<String>,
    /// The private key, wrapped under the KEK.
    pub wrapped_private_key: WrappedKey,
    /// The public half.
    pub public_key: PublicKey,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being valid.
    pub expires_at: Timestamp,
}

/// One activation: a device registered to a user of an application, with its counter state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Activation {
    /// Random UUID v4, canonical lower case.
    pub id: String,
    /// The application id.
    pub application_id: String,
    /// The user id.
    pub user_id: String,
    /// The status.
    pub status: ActivationStatus,
    /// Why the activation is blocked, if it is.
    pub blocked_reason: Option<String>,
    /// The activation flags.
    pub flags: Vec<String>,
    /// The device's public key; `None` while the activation is `CREATED` (no key exchange yet).
    pub device_public_key: Option<PublicKey>,
    /// The per-activation server public key.
    pub server_public_key: PublicKey,
    /// The per-activation server private key, wrapped under the KEK it names; `None` once removed.
    pub wrapped_server_private_key: Option<WrappedKey>,
    /// The factor keys, sealed under the DEK (the service defines the plaintext's layout); `None`
    /// once removed.
    pub encrypted_factor_keys: Option<EncryptedSecret>,
    /// Numeric counter (position in the hash chain).
    pub counter: u64,
    /// Hash-based counter value `CTR_DATA` (protocol v3).
    pub ctr_data: [u8; 16],
    /// Failed attempts since the last valid code.
    pub failed_attempts: u32,
    /// Failed attempts after which the activation is blocked.
    pub max_failed_attempts: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a code was last checked against it.
    pub last_used_at: Option<Timestamp>,
    /// Record revision for compare-and-swap: the store sets it to 1 on insert and adds one on every
    /// successful update. A caller passes back the revision it read.
    pub version: u64,
    /// Activation-by-code details (empty for registered activations).
    pub enrollment: Enrollment,
}

impl Activation {
    /// The record of an activation the service is about to create, with what every new activation
    /// starts from: status `CREATED`, no flags, no device key and no factor keys yet, no code checked
    /// (counter 0, zero `CTR_DATA`, no failed attempts, never used), version 0 (the store sets the
    /// first revision), created and last changed at `now`, and an otherwise empty enrollment. A way of
    /// creating an activation sets what it adds with struct update syntax (`..Activation::new(…)`).
    pub fn new(
        id: String,
        application_id: String,
        user_id: String,
        server_public_key: PublicKey,
        wrapped_server_private_key: WrappedKey,
        max_failed_attempts: u32,
        now: Timestamp,
    ) -> Self {
        Activation {
            id,
            application_id,
            user_id,
            status: ActivationStatus::Created,
            blocked_reason: None,
            flags: Vec::new(),
            device_public_key: None,
            server_public_key,
            wrapped_server_private_key: Some(wrapped_server_private_key),
            encrypted_factor_keys: None,
            counter: 0,
            ctr_data: [0; 16],
            failed_attempts: 0,
            max_failed_attempts,
            created_at: now,
            last_used_at: None,
            version: 0,
            enrollment: Enrollment {
                last_changed_at: Some(now),
                ..Enrollment::default()
            },
        }
    }

    /// Destroys the activation's key material in this record (for `remove`): the wrapped server private
    /// key and the encrypted factor keys become empty. Storing the record makes it final.
    ///
    /// sled keeps superseded values in its log segments until it reclaims them; those bytes are the
    /// same wrapped/encrypted blobs, never plaintext.
    pub fn destroy_key_material(&mut self) {
        self.wrapped_server_private_key = None;
        self.encrypted_factor_keys = None;
        self.enrollment.encrypted_transport_key = None;
        self.enrollment.activation_otp = None;
    }

    /// Whether [`Self::destroy_key_material`] has run (or the activation never had key material).
    pub fn key_material_destroyed(&self) -> bool {
        self.wrapped_server_private_key.is_none()
            && self.encrypted_factor_keys.is_none()
            && self.enrollment.encrypted_transport_key.is_none()
    }
}

/// What a nonce was issued for.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum NonceOwner {
    /// A personalized payload, by activation id.
    Activation(String),
    /// A non-personalized payload, by application id.
    Application(String),
}

/// A nonce put in an `offlineData` payload by this service (the nonce registry of `api.md`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IssuedNonce {
    /// The nonce exactly as it appears in `offlineData` (Base64 of 16 bytes).
    pub nonce: String,
    /// What it was issued for.
    pub issued_for: NonceOwner,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops being valid.
    pub expires_at: Timestamp,
    /// Set once, by the successful verification that consumed it.
    pub consumed_at: Option<Timestamp>,
}

impl IssuedNonce {
    /// Whether `activation` may consume it: it was issued for that activation, or for the
    /// application the activation belongs to.
    pub fn is_for(&self, activation: &Activation) -> bool {
        match &self.issued_for {
            NonceOwner::Activation(id) => *id == activation.id,
            NonceOwner::Application(id) => *id == activation.application_id,
        }
    }
}

/// A hash of an integration secret: opaque bytes chosen by the caller (e.g. SHA-256 of a 32-byte random
/// secret). `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(pub Vec<u8>);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({} bytes)", self.0.len())
    }
}

/// An integration credential for HTTP Basic authentication (`clientToken:clientSecret`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IntegrationCredential {
    /// The credential's id (a random UUID v4), named in audit records and by `integration/remove`.
    /// A credential stored before ids existed has its client token as its id.
    pub id: String,
    /// The client token (HTTP Basic user name).
    pub client_token: String,
    /// Its name.
    pub name: String,
    /// The hashed secret; the plaintext secret never reaches the store.
    pub secret_hash: SecretHash,
    /// When it was created.
    pub created_at: Timestamp,
    /// What it may do (a credential stored before roles existed is `ADMIN`).
    pub scope: CredentialScope,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_secret_hash_shows_only_length() {
        let s = SecretHash(vec![0xEF; 32]);
        assert!(!format!("{s:?}").contains("ef"));
    }
}
