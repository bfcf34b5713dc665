//! The shared vocabulary: the types that cross layers, defined once.
//!
//! The signer makes them, the store keeps them, the service combines them and the HTTP layer shows
//! some of them; every layer uses these very types, so there is nothing to convert between layers.
//! This module depends on nothing of the crate but the pure [`crate::crypto`], whose P-256
//! [`PublicKey`], [`DerSignature`], [`SignatureType`] and [`ActivationStatus`] are part of the
//! vocabulary and re-exported here.
//!
//! Key material appears only as what the HSM hands out: a private key wrapped under the KEK
//! ([`WrappedKey`]) and secret bytes sealed under the DEK ([`EncryptedSecret`]). Their `Debug` shows
//! lengths, never bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use crate::crypto::{ActivationStatus, DerSignature, PublicKey, SignatureType};

/// Bytes that do not have the layout their type requires (a stored blob, a key id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct Malformed(pub &'static str);

/// What an integration credential may do (its role, and for an `APPLICATION` credential the
/// applications it is bound to). Stored with the credential; checked by the service on every call.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CredentialScope {
    /// `ADMIN`: applications, integrations and every activation.
    Admin,
    /// `APPLICATION`: activation and offline-signature methods for the activations of these
    /// applications only.
    Applications {
        /// The application ids, sorted, without duplicates.
        application_ids: Vec<String>,
        /// Whether `activation/unblock` is allowed (otherwise it needs `ADMIN`).
        can_unblock: bool,
    },
}

impl CredentialScope {
    /// A scope bound to `application_ids` (sorted and deduplicated here).
    pub fn applications(mut application_ids: Vec<String>, can_unblock: bool) -> Self {
        application_ids.sort();
        application_ids.dedup();
        Self::Applications {
            application_ids,
            can_unblock,
        }
    }

    /// Whether this is the `ADMIN` role.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin)
    }

    /// Whether the activations and payloads of `application_id` are within the scope.
    pub fn covers(&self, application_id: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Applications {
                application_ids, ..
            } => application_ids
                .binary_search_by(|id| id.as_str().cmp(application_id))
                .is_ok(),
        }
    }

    /// Whether `activation/unblock` is allowed.
    pub fn can_unblock(&self) -> bool {
        match self {
            Self::Admin => true,
            Self::Applications { can_unblock, .. } => *can_unblock,
        }
    }

    /// `ADMIN` or `APPLICATION`, as the API spells the role.
    pub fn role(&self) -> &'static str {
        match self {
            Self::Admin => "ADMIN",
            Self::Applications { .. } => "APPLICATION",
        }
    }
}

/// A point in time, kept as whole milliseconds since the Unix epoch (UTC).
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

/// A random 16-byte key identifier: the `CKA_ID` of a key object on the token, recorded in the store.
/// Displays as 32 lowercase hex digits; serializes as that string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 16]);

impl KeyId {
    /// A fresh random id from the operating system's CSPRNG.
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        KeyId(bytes)
    }

    /// Wraps 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        KeyId(bytes)
    }

    /// The 16 bytes (the `CKA_ID` value).
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses a `CKA_ID` value; `None` unless it is exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = Malformed;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| Malformed("key id"))?;
        KeyId::from_slice(&bytes).ok_or(Malformed("key id"))
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// When an activation created by code becomes `ACTIVE` (`spec/powerauth-activation.md` §4.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum CommitPhase {
    /// `PENDING_COMMIT` after prepare; `activation/commit` makes it `ACTIVE` (the default).
    #[default]
    OnCommit,
    /// `ACTIVE` right after the key exchange in prepare.
    OnKeyExchange,
}

impl CommitPhase {
    /// The wire and storage name, `ON_COMMIT` or `ON_KEY_EXCHANGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnCommit => "ON_COMMIT",
            Self::OnKeyExchange => "ON_KEY_EXCHANGE",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ON_COMMIT" => Some(Self::OnCommit),
            "ON_KEY_EXCHANGE" => Some(Self::OnKeyExchange),
            _ => None,
        }
    }
}

/// Version byte of [`WrappedKey::to_bytes`].
const WRAPPED_KEY_VERSION: u8 = 1;

/// A per-activation P-256 private key wrapped under the KEK.
///
/// Bytes (`to_bytes`): `version (1 byte, 0x01) ‖ KEK id (16 bytes) ‖ blob`, where the blob is the
/// signer's wrapping: `CKM_AES_KEY_WRAP_PAD` (RFC 5649) of the PKCS#8 private key for PKCS#11,
/// RFC 5649 of the 32-byte scalar for the software signer. A blob only unwraps with the signer kind
/// and KEK that made it.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    kek: KeyId,
    blob: Vec<u8>,
}

impl WrappedKey {
    /// Assembles a wrapped key (used by the signer implementations).
    pub fn new(kek: KeyId, blob: Vec<u8>) -> Self {
        WrappedKey { kek, blob }
    }

    /// The KEK it is wrapped under.
    pub fn kek(&self) -> &KeyId {
        &self.kek
    }

    /// The wrapped bytes, without version and KEK id.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// `0x01 ‖ KEK id ‖ blob`, as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.blob.len());
        out.push(WRAPPED_KEY_VERSION);
        out.extend_from_slice(self.kek.as_bytes());
        out.extend_from_slice(&self.blob);
        out
    }

    /// Parses [`WrappedKey::to_bytes`].
    ///
    /// # Errors
    /// [`Malformed`] for an unknown version or a blob that is too short.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Malformed> {
        match bytes.split_first() {
            Some((&WRAPPED_KEY_VERSION, rest)) if rest.len() > 16 => Ok(WrappedKey {
                kek: KeyId::from_slice(&rest[..16]).ok_or(Malformed("wrapped key"))?,
                blob: rest[16..].to_vec(),
            }),
            _ => Err(Malformed("wrapped key")),
        }
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WrappedKey {{ kek: {}, blob: {} bytes }}",
            self.kek,
            self.blob.len()
        )
    }
}

/// Version byte of [`EncryptedSecret`].
pub const SEALED_VERSION: u8 = 1;
/// AES-GCM nonce length used by [`EncryptedSecret`].
pub const SEALED_IV_LEN: usize = 12;
/// AES-GCM tag length used by [`EncryptedSecret`].
pub const SEALED_TAG_LEN: usize = 16;

/// Secret bytes (e.g. an activation's factor keys) sealed under the DEK with AES-256-GCM.
///
/// Bytes: `version (0x01) ‖ IV (12 random bytes) ‖ ciphertext ‖ tag (16 bytes)`. The associated
/// data (e.g. the activation id) is supplied by the caller at both ends and is not stored here.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedSecret(Vec<u8>);

impl EncryptedSecret {
    /// Assembles the bytes from parts.
    pub fn from_parts(iv: &[u8; SEALED_IV_LEN], ciphertext_and_tag: &[u8]) -> Self {
        let mut out = Vec::with_capacity(1 + SEALED_IV_LEN + ciphertext_and_tag.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(iv);
        out.extend_from_slice(ciphertext_and_tag);
        EncryptedSecret(out)
    }

    /// Checks version and minimum length.
    ///
    /// # Errors
    /// [`Malformed`] for an unknown version or fewer bytes than IV and tag need.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Malformed> {
        if bytes.len() < 1 + SEALED_IV_LEN + SEALED_TAG_LEN || bytes[0] != SEALED_VERSION {
            return Err(Malformed("encrypted secret"));
        }
        Ok(EncryptedSecret(bytes))
    }

    /// All bytes, as stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The 12-byte IV.
    pub fn iv(&self) -> [u8; SEALED_IV_LEN] {
        let mut iv = [0u8; SEALED_IV_LEN];
        iv.copy_from_slice(&self.0[1..1 + SEALED_IV_LEN]);
        iv
    }

    /// Ciphertext followed by the 16-byte tag.
    pub fn ciphertext_and_tag(&self) -> &[u8] {
        &self.0[1 + SEALED_IV_LEN..]
    }
}

impl fmt::Debug for EncryptedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedSecret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_hex_round_trip() {
        let id = KeyId::generate();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<KeyId>().unwrap(), id);
        assert!("abcd".parse::<KeyId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
    }

    #[test]
    fn wrapped_key_bytes_round_trip() {
        let wk = WrappedKey::new(KeyId::generate(), vec![1, 2, 3]);
        assert_eq!(WrappedKey::from_bytes(&wk.to_bytes()).unwrap(), wk);
        assert!(WrappedKey::from_bytes(&[2; 20]).is_err());
        assert!(WrappedKey::from_bytes(&[1; 17]).is_err());
    }

    #[test]
    fn sealed_secret_rejects_short_or_unknown_version() {
        assert!(EncryptedSecret::from_bytes(vec![1; 28]).is_err());
        assert!(EncryptedSecret::from_bytes(vec![2; 40]).is_err());
        let s = EncryptedSecret::from_bytes(vec![1; 40]).unwrap();
        assert_eq!(s.ciphertext_and_tag().len(), 27);
    }

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
        let w = WrappedKey::new(KeyId::from_bytes([0; 16]), vec![0xAB; 80]);
        assert!(!format!("{w:?}").contains("ab"));
        let e = EncryptedSecret::from_bytes(vec![1; 76]).unwrap();
        assert_eq!(format!("{e:?}"), "EncryptedSecret(76 bytes)");
    }
}
