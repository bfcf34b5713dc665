//! The records the store keeps, as plain Rust values: applications, activations, issued nonces and
//! integration credentials, plus the small newtypes they are built from.
//!
//! Nothing here touches sled or knows how a record is laid out on disk (that is [`super::codec`]). Key
//! material only ever appears as opaque, already-protected blobs ([`WrappedKey`], [`EncryptedFactorKeys`]):
//! the service wraps or encrypts in the HSM before a record is built, so the store never sees a plaintext
//! secret.

use std::fmt;

use time::OffsetDateTime;

/// A point in time, stored as whole milliseconds since the Unix epoch (UTC).
///
/// Milliseconds, not `OffsetDateTime`, so that a record reads back exactly as it was written.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time, truncated to the millisecond.
    pub fn now() -> Self {
        Self::from_offset_date_time(OffsetDateTime::now_utc())
    }

    /// Wraps milliseconds since the Unix epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Truncates an `OffsetDateTime` to the millisecond (saturating far outside ±292 million years).
    pub fn from_offset_date_time(at: OffsetDateTime) -> Self {
        let millis = at.unix_timestamp_nanos() / 1_000_000;
        Self(i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX }))
    }

    /// The same instant as a UTC `OffsetDateTime`; `None` outside the range `time` can represent.
    pub fn to_offset_date_time(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }

    /// `self + duration`, saturating at the end of time.
    pub fn saturating_add(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// `self - duration`, saturating at the beginning of time.
    pub fn saturating_sub(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }
}

/// The random 16-byte `CKA_ID` that names a key object in the HSM.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 16]);

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", hex::encode(self.0))
    }
}

/// A P-256 public key as the 65-byte uncompressed SEC1 point `04 ‖ X ‖ Y`.
///
/// The store keeps the bytes it is given; checking that they are a point of the curve is the caller's job.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKeyBytes(pub Vec<u8>);

impl fmt::Debug for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKeyBytes({})", hex::encode(&self.0))
    }
}

/// A private key wrapped under the HSM's key-encryption key (`CKM_AES_KEY_WRAP_PAD`): opaque bytes.
///
/// `Debug` shows only the length: although the blob is ciphertext, it has no business in a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct WrappedKey(pub Vec<u8>);

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// The activation's factor keys, encrypted by the HSM's data-encryption key (AES-GCM): opaque bytes.
///
/// `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EncryptedFactorKeys(pub Vec<u8>);

impl fmt::Debug for EncryptedFactorKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedFactorKeys({} bytes)", self.0.len())
    }
}

/// One master key pair of an application: where its private half lives in the HSM and its public half.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MasterKeyRef {
    /// `CKA_ID` of the private key object in the HSM.
    pub key_id: KeyId,
    /// The public key, 65-byte uncompressed SEC1.
    pub public_key: PublicKeyBytes,
    pub created_at: Timestamp,
}

/// An application (PowerAuth's `applicationId`) with its roles and master key pairs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Application {
    /// The free-form, unique application name.
    pub id: String,
    pub roles: Vec<String>,
    /// Newest first: `master_keys[0]` signs non-personalized payloads.
    pub master_keys: Vec<MasterKeyRef>,
    pub created_at: Timestamp,
}

impl Application {
    /// The key that signs non-personalized payloads, if the application has one.
    pub fn newest_master_key(&self) -> Option<&MasterKeyRef> {
        self.master_keys.first()
    }
}

/// Activation status, with PowerAuth's numeric codes (`powerauth-offline.md` §12), which are also the
/// bytes stored on disk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ActivationStatus {
    Created = 1,
    PendingCommit = 2,
    Active = 3,
    Blocked = 4,
    Removed = 5,
}

impl ActivationStatus {
    /// PowerAuth's numeric code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status for a PowerAuth numeric code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Created),
            2 => Some(Self::PendingCommit),
            3 => Some(Self::Active),
            4 => Some(Self::Blocked),
            5 => Some(Self::Removed),
            _ => None,
        }
    }

    /// The upper-case wire name (`CREATED`, `PENDING_COMMIT`, `ACTIVE`, `BLOCKED`, `REMOVED`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::PendingCommit => "PENDING_COMMIT",
            Self::Active => "ACTIVE",
            Self::Blocked => "BLOCKED",
            Self::Removed => "REMOVED",
        }
    }
}

/// One activation: a device registered to a user of an application, with its counter state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Activation {
    /// Random UUID v4, canonical lower case.
    pub id: String,
    pub application_id: String,
    pub user_id: String,
    pub status: ActivationStatus,
    pub blocked_reason: Option<String>,
    pub flags: Vec<String>,
    /// The device's public key, 65-byte uncompressed SEC1.
    pub device_public_key: PublicKeyBytes,
    /// The per-activation server public key, 65-byte uncompressed SEC1.
    pub server_public_key: PublicKeyBytes,
    /// The per-activation server private key, wrapped under the KEK named by `wrapping_key_id`.
    pub wrapped_server_private_key: WrappedKey,
    /// `CKA_ID` of the HSM key that wraps `wrapped_server_private_key`.
    pub wrapping_key_id: KeyId,
    /// The factor keys, encrypted in the HSM; the service defines the blob's layout.
    pub encrypted_factor_keys: EncryptedFactorKeys,
    /// Numeric counter (position in the hash chain).
    pub counter: u64,
    /// Hash-based counter value `CTR_DATA` (protocol v3).
    pub ctr_data: [u8; 16],
    pub failed_attempts: u32,
    pub max_failed_attempts: u32,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// Record revision for compare-and-swap: the store sets it to 1 on insert and adds one on every
    /// successful update. A caller passes back the revision it read.
    pub version: u64,
}

impl Activation {
    /// Destroys the activation's key material in this record (for `remove`): the wrapped server private
    /// key and the encrypted factor keys become empty. Storing the record makes it final.
    ///
    /// sled keeps superseded values in its log segments until it reclaims them; those bytes are the
    /// same wrapped/encrypted blobs, never plaintext.
    pub fn destroy_key_material(&mut self) {
        self.wrapped_server_private_key = WrappedKey::default();
        self.encrypted_factor_keys = EncryptedFactorKeys::default();
    }

    /// Whether [`Self::destroy_key_material`] has run (or the activation never had key material).
    pub fn key_material_destroyed(&self) -> bool {
        self.wrapped_server_private_key.0.is_empty() && self.encrypted_factor_keys.0.is_empty()
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
    pub issued_for: NonceOwner,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set once, by the successful verification that consumed it.
    pub consumed_at: Option<Timestamp>,
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
    pub client_token: String,
    pub name: String,
    /// The hashed secret; the plaintext secret never reaches the store.
    pub secret_hash: SecretHash,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_survives_offset_date_time_round_trip() {
        let t = Timestamp::from_unix_millis(1_764_000_000_123);
        let back = t
            .to_offset_date_time()
            .map(Timestamp::from_offset_date_time);
        assert_eq!(back, Some(t));
    }

    #[test]
    fn status_codes_round_trip_and_match_powerauth() {
        for (code, name) in [
            (1, "CREATED"),
            (2, "PENDING_COMMIT"),
            (3, "ACTIVE"),
            (4, "BLOCKED"),
            (5, "REMOVED"),
        ] {
            let status = ActivationStatus::from_code(code).expect("codes 1..=5 are defined");
            assert_eq!(status.code(), code);
            assert_eq!(status.as_str(), name);
        }
        assert_eq!(ActivationStatus::from_code(0), None);
        assert_eq!(ActivationStatus::from_code(6), None);
    }

    #[test]
    fn debug_of_key_material_shows_only_length() {
        let w = WrappedKey(vec![0xAB; 80]);
        assert_eq!(format!("{w:?}"), "WrappedKey(80 bytes)");
        let e = EncryptedFactorKeys(vec![0xCD; 76]);
        assert_eq!(format!("{e:?}"), "EncryptedFactorKeys(76 bytes)");
        let s = SecretHash(vec![0xEF; 32]);
        assert!(!format!("{s:?}").contains("ef"));
    }
}
