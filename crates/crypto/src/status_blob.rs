//! The activation status blob (`spec/powerauth-activation.md` §6): its 32-byte layout, its
//! encryption with the transport key, challenge and nonce, and the client's counter check.
//!
//! ```text
//! offset 0  DE C0 DE D1   magic (the last byte is the format version, ≥ 1)
//!        4  STATUS        1 CREATED … 5 REMOVED
//!        5  CURRENT_VERSION, 6 UPGRADE_VERSION
//!        7  5 reserved bytes (random upstream)
//!       12  CTR_BYTE      counter & 0xFF
//!       13  FAIL_COUNT, 14 MAX_FAIL_COUNT, 15 CTR_LOOK_AHEAD
//!       16  CTR_DATA_HASH KDF_INTERNAL(KDF(KEY_TRANSPORT, 4000), ctr_data)
//! ```
//! Encryption: `AES-128-CBC/NoPadding(KEY_TRANSPORT, IV)` with
//! `IV = KDF_INTERNAL(KDF(KEY_TRANSPORT, 3000), challenge ‖ nonce)`.

use super::counter::CounterData;
use super::kdf::{self, SymmetricKey};
use super::{CryptoError, aes_cbc};

/// KDF index of `KEY_TRANSPORT_IV` (status blob IV key).
pub const INDEX_TRANSPORT_IV: u64 = 3000;
/// KDF index of `KEY_TRANSPORT_CTR` (status blob counter hash key).
pub const INDEX_TRANSPORT_CTR: u64 = 4000;
/// Length of the blob, plain and encrypted.
pub const BLOB_LEN: usize = 32;
/// Length of the status challenge (client) and nonce (server).
pub const CHALLENGE_LEN: usize = 16;
/// The first three magic bytes; the fourth is the blob format version.
pub const MAGIC_PREFIX: [u8; 3] = [0xDE, 0xC0, 0xDE];
/// The format version this server writes (`DE C0 DE D1`).
pub const FORMAT_VERSION: u8 = 1;
/// The largest counter look-ahead the SDK accepts.
pub const MAX_LOOK_AHEAD: u8 = 64;

/// Activation status, with PowerAuth's numeric codes (`powerauth-offline.md` §12): the byte the
/// status blob carries, and the byte the service's store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivationStatus {
    /// `1`: made by `activation/init`, no device key yet.
    Created = 1,
    /// `2`: the device's key is bound; waiting for `activation/commit`.
    PendingCommit = 2,
    /// `3`: usable.
    Active = 3,
    /// `4`: blocked by the bank or by too many failed attempts.
    Blocked = 4,
    /// `5`: removed for good (kept for audit, never reused).
    Removed = 5,
}

impl ActivationStatus {
    /// PowerAuth's numeric code (the blob byte).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status of a PowerAuth numeric code, if it is 1..=5.
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

/// The plain 32-byte status blob, field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBlob {
    /// `STATUS`.
    pub status: ActivationStatus,
    /// `CURRENT_VERSION`: the activation's version (3).
    pub current_version: u8,
    /// `UPGRADE_VERSION`: the highest version the server supports (3: no upgrade offered).
    pub upgrade_version: u8,
    /// The 5 reserved bytes (random upstream; pass random bytes).
    pub reserved: [u8; 5],
    /// `CTR_BYTE = counter & 0xFF`.
    pub ctr_byte: u8,
    /// `FAIL_COUNT`.
    pub failed_attempts: u8,
    /// `MAX_FAIL_COUNT`.
    pub max_failed_attempts: u8,
    /// `CTR_LOOK_AHEAD`, 1..=64 for the SDK.
    pub ctr_look_ahead: u8,
    /// `CTR_DATA_HASH` of the server's current `ctr_data` ([`ctr_data_hash`]).
    pub ctr_data_hash: [u8; 16],
}

impl StatusBlob {
    /// The 32 bytes, with the magic `DE C0 DE D1`.
    pub fn to_bytes(&self) -> [u8; BLOB_LEN] {
        let mut out = [0u8; BLOB_LEN];
        out[..3].copy_from_slice(&MAGIC_PREFIX);
        out[3] = 0xD0 | FORMAT_VERSION;
        out[4] = self.status.code();
        out[5] = self.current_version;
        out[6] = self.upgrade_version;
        out[7..12].copy_from_slice(&self.reserved);
        out[12] = self.ctr_byte;
        out[13] = self.failed_attempts;
        out[14] = self.max_failed_attempts;
        out[15] = self.ctr_look_ahead;
        out[16..].copy_from_slice(&self.ctr_data_hash);
        out
    }

    /// Parses a plain blob with the SDK's checks (§6.2): 32 bytes, magic `DE C0 DE Dx` with
    /// x ≥ 1, status 1..=5, look-ahead 1..=64; else [`CryptoError::MalformedStatusBlob`].
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: &[u8; BLOB_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::MalformedStatusBlob("not 32 bytes"))?;
        if bytes[..3] != MAGIC_PREFIX || bytes[3] & 0xF0 != 0xD0 || bytes[3] & 0x0F == 0 {
            return Err(CryptoError::MalformedStatusBlob("wrong magic"));
        }
        let status = ActivationStatus::from_code(bytes[4])
            .ok_or(CryptoError::MalformedStatusBlob("status outside 1..=5"))?;
        if bytes[15] == 0 || bytes[15] > MAX_LOOK_AHEAD {
            return Err(CryptoError::MalformedStatusBlob(
                "counter look-ahead outside 1..=64",
            ));
        }
        let mut reserved = [0u8; 5];
        reserved.copy_from_slice(&bytes[7..12]);
        let mut ctr_data_hash = [0u8; 16];
        ctr_data_hash.copy_from_slice(&bytes[16..]);
        Ok(Self {
            status,
            current_version: bytes[5],
            upgrade_version: bytes[6],
            reserved,
            ctr_byte: bytes[12],
            failed_attempts: bytes[13],
            max_failed_attempts: bytes[14],
            ctr_look_ahead: bytes[15],
            ctr_data_hash,
        })
    }
}

/// `KEY_TRANSPORT_IV = KDF(KEY_TRANSPORT, 3000)`.
pub fn transport_iv_key(transport_key: &SymmetricKey) -> SymmetricKey {
    kdf::kdf(transport_key, INDEX_TRANSPORT_IV)
}

/// `KEY_TRANSPORT_CTR = KDF(KEY_TRANSPORT, 4000)`.
pub fn transport_ctr_key(transport_key: &SymmetricKey) -> SymmetricKey {
    kdf::kdf(transport_key, INDEX_TRANSPORT_CTR)
}

/// `CTR_DATA_HASH = KDF_INTERNAL(KEY_TRANSPORT_CTR, ctr_data)`.
pub fn ctr_data_hash(transport_key: &SymmetricKey, ctr_data: &CounterData) -> [u8; 16] {
    *kdf::kdf_internal(&transport_ctr_key(transport_key), ctr_data.as_bytes()).expose()
}

/// `STATUS_IV = KDF_INTERNAL(KEY_TRANSPORT_IV, challenge ‖ nonce)`.
pub fn status_iv(
    transport_key: &SymmetricKey,
    challenge: &[u8; CHALLENGE_LEN],
    nonce: &[u8; CHALLENGE_LEN],
) -> [u8; 16] {
    let mut message = [0u8; 2 * CHALLENGE_LEN];
    message[..CHALLENGE_LEN].copy_from_slice(challenge);
    message[CHALLENGE_LEN..].copy_from_slice(nonce);
    *kdf::kdf_internal(&transport_iv_key(transport_key), &message).expose()
}

/// Server: `encryptedStatusBlob = AES-128-CBC/NoPadding(KEY_TRANSPORT, STATUS_IV, blob)`, with the
/// client's `challenge` and the server's fresh random `nonce` (sent back as
/// `encryptedStatusBlobNonce`).
pub fn encrypt(
    transport_key: &SymmetricKey,
    challenge: &[u8; CHALLENGE_LEN],
    nonce: &[u8; CHALLENGE_LEN],
    blob: &StatusBlob,
) -> [u8; BLOB_LEN] {
    let iv = status_iv(transport_key, challenge, nonce);
    aes_cbc::encrypt_32(transport_key, &iv, &blob.to_bytes())
}

/// Legacy clients that send no challenge (2.x/3.0): a zero IV. Upstream then fills the reserved
/// bytes, `CTR_BYTE`, `CTR_LOOK_AHEAD` and `CTR_DATA_HASH` with random bytes and returns no nonce;
/// the caller does that filling (§6.2, §9 item 7 leaves open whether to serve these clients).
pub fn encrypt_without_challenge(
    transport_key: &SymmetricKey,
    blob: &[u8; BLOB_LEN],
) -> [u8; BLOB_LEN] {
    aes_cbc::encrypt_32(transport_key, &[0; 16], blob)
}

/// Client: decrypts and parses a blob (checks as [`StatusBlob::parse`]).
pub fn decrypt(
    transport_key: &SymmetricKey,
    challenge: &[u8; CHALLENGE_LEN],
    nonce: &[u8; CHALLENGE_LEN],
    encrypted: &[u8; BLOB_LEN],
) -> Result<StatusBlob, CryptoError> {
    let iv = status_iv(transport_key, challenge, nonce);
    StatusBlob::parse(&aes_cbc::decrypt_32(transport_key, &iv, encrypted))
}

/// The hash distance of §6.3: the `d` in `0..look_ahead` for which
/// `CTR_DATA_HASH = hash(NEXT^d(local))`, i.e. how many steps the server's counter is ahead of
/// `local`; `None` if no such `d` (client ahead, or too far apart).
pub fn hash_distance(
    transport_key: &SymmetricKey,
    local: &CounterData,
    expected_hash: &[u8; 16],
    look_ahead: u8,
) -> Option<u8> {
    let key = transport_ctr_key(transport_key);
    let mut ctr = *local;
    for d in 0..look_ahead {
        let hash = kdf::kdf_internal(&key, ctr.as_bytes());
        // Counter data is not secret, and neither is its hash: a plain comparison is fine.
        if hash.expose() == expected_hash {
            return Some(d);
        }
        ctr = ctr.next();
    }
    None
}

/// What the client concludes from a blob about its counter (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterSync {
    /// The server holds the client's counter data.
    InSync,
    /// The client is ahead by `steps` (within the look-ahead); `sign_soon` when more than half of
    /// the look-ahead is used up ("calculate a signature soon").
    ClientAhead {
        /// How far ahead, by counter byte.
        steps: u8,
        /// More than half of the look-ahead used.
        sign_soon: bool,
    },
    /// The server is ahead by `steps`; the client adopts `counter_data` and advances its counter
    /// by `steps`.
    ServerAhead {
        /// How far ahead.
        steps: u8,
        /// The server's counter data, `NEXT^steps(local)`.
        counter_data: CounterData,
    },
    /// Neither fits: the activation is stuck (the SDK reports "deadlock").
    Deadlock,
}

/// The client-side counter check of §6.3 for the client's `local` counter data and numeric
/// counter's low byte `local_ctr_byte`.
///
/// Hash distance `d` found: `0` → in sync; `d > 0` with the byte distance `-d` → server ahead.
/// Otherwise, client counter byte ahead of `CTR_BYTE` by 1..=look-ahead → client ahead. Else
/// deadlock.
pub fn counter_sync(
    transport_key: &SymmetricKey,
    local: &CounterData,
    local_ctr_byte: u8,
    blob: &StatusBlob,
) -> CounterSync {
    let client_ahead = local_ctr_byte.wrapping_sub(blob.ctr_byte);
    match hash_distance(
        transport_key,
        local,
        &blob.ctr_data_hash,
        blob.ctr_look_ahead,
    ) {
        Some(0) => CounterSync::InSync,
        Some(d) if blob.ctr_byte.wrapping_sub(local_ctr_byte) == d => CounterSync::ServerAhead {
            steps: d,
            counter_data: local.advance(u32::from(d)),
        },
        _ if (1..=blob.ctr_look_ahead).contains(&client_ahead) => CounterSync::ClientAhead {
            steps: client_ahead,
            sign_soon: client_ahead > blob.ctr_look_ahead / 2,
        },
        _ => CounterSync::Deadlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;
    use proptest::prelude::*;

    /// `spec/powerauth-activation.md` §8.2: the first status after commit, from the text, as the
    /// server makes it (IV, plain and encrypted blob). `tests/activation_worked_example.rs` reads
    /// the same blob the way the phone does, with the keys of the example's earlier steps.
    #[test]
    fn worked_example_status() {
        let kt = SymmetricKey::from_base64("UgYWpZCvGXD4FMnje+CHiQ==").unwrap();
        let ctr = CounterData::from_base64("C2t1yFMbxW/6yg8g9TQEfA==").unwrap();
        let challenge = b64::decode_array("Si/DW5OsPDvcnuwMDFqQtA==").unwrap();
        let nonce = b64::decode_array("keHHiNrfkTRQMg7y5yGjBQ==").unwrap();
        assert_eq!(
            b64::encode(status_iv(&kt, &challenge, &nonce)),
            "MbTkWZwki0Sl72+nbBRcTA=="
        );
        let blob = StatusBlob {
            status: ActivationStatus::Active,
            current_version: 3,
            upgrade_version: 3,
            reserved: [0xb2, 0xc9, 0xd2, 0xba, 0x39],
            ctr_byte: 0,
            failed_attempts: 0,
            max_failed_attempts: 5,
            ctr_look_ahead: 20,
            ctr_data_hash: ctr_data_hash(&kt, &ctr),
        };
        assert_eq!(
            hex::encode(blob.to_bytes()),
            concat!(
                "dec0ded1",                         // magic
                "03",                               // STATUS: ACTIVE
                "03",                               // CURRENT_VERSION
                "03",                               // UPGRADE_VERSION
                "b2c9d2ba39",                       // reserved
                "00",                               // CTR_BYTE
                "00",                               // FAIL_COUNT
                "05",                               // MAX_FAIL_COUNT
                "14",                               // CTR_LOOK_AHEAD
                "2dfd28225f4eecdb5f7d9add3989dd7e"  // CTR_DATA_HASH
            )
        );
        let encrypted = encrypt(&kt, &challenge, &nonce, &blob);
        assert_eq!(
            b64::encode(encrypted),
            "JNny2oSGOqKz8zu1sOIl6nfWudwRwIaRfvTx7VHzcEs="
        );
        let back = decrypt(&kt, &challenge, &nonce, &encrypted).unwrap();
        assert_eq!(back, blob);
        assert_eq!(counter_sync(&kt, &ctr, 0, &back), CounterSync::InSync);
    }

    #[test]
    fn parse_rejects_what_the_sdk_rejects() {
        let good = StatusBlob {
            status: ActivationStatus::Blocked,
            current_version: 3,
            upgrade_version: 3,
            reserved: [0; 5],
            ctr_byte: 9,
            failed_attempts: 1,
            max_failed_attempts: 5,
            ctr_look_ahead: 64,
            ctr_data_hash: [7; 16],
        }
        .to_bytes();
        assert!(StatusBlob::parse(&good).is_ok());
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            StatusBlob::parse(&b)
        };
        assert!(with(3, 0xD7).is_ok(), "a later format version");
        assert_eq!(
            with(3, 0xD0),
            Err(CryptoError::MalformedStatusBlob("wrong magic"))
        );
        assert_eq!(
            with(0, 0xDF),
            Err(CryptoError::MalformedStatusBlob("wrong magic"))
        );
        assert!(with(4, 0).is_err());
        assert!(with(4, 6).is_err());
        assert!(with(15, 0).is_err());
        assert!(with(15, 65).is_err());
        assert!(StatusBlob::parse(&good[..31]).is_err());
    }

    fn blob_for(
        kt: &SymmetricKey,
        server_ctr: &CounterData,
        ctr_byte: u8,
        look_ahead: u8,
    ) -> StatusBlob {
        StatusBlob {
            status: ActivationStatus::Active,
            current_version: 3,
            upgrade_version: 3,
            reserved: [0; 5],
            ctr_byte,
            failed_attempts: 0,
            max_failed_attempts: 5,
            ctr_look_ahead: look_ahead,
            ctr_data_hash: ctr_data_hash(kt, server_ctr),
        }
    }

    #[test]
    fn counter_sync_cases() {
        let kt = SymmetricKey::from_bytes([4; 16]);
        let c0 = CounterData::from_bytes([1; 16]);
        // Server 3 ahead (bytes 250 → 253 across no wrap), client adopts.
        let blob = blob_for(&kt, &c0.advance(3), 253, 20);
        assert_eq!(
            counter_sync(&kt, &c0, 250, &blob),
            CounterSync::ServerAhead {
                steps: 3,
                counter_data: c0.advance(3)
            }
        );
        // Client 4 ahead across the byte wrap (server byte 254, client byte 2).
        let blob = blob_for(&kt, &c0, 254, 20);
        assert_eq!(
            counter_sync(&kt, &c0.advance(4), 2, &blob),
            CounterSync::ClientAhead {
                steps: 4,
                sign_soon: false
            }
        );
        assert_eq!(
            counter_sync(&kt, &c0.advance(11), 9, &blob),
            CounterSync::ClientAhead {
                steps: 11,
                sign_soon: true
            }
        );
        // Client too far ahead, server too far ahead, hash and byte disagreeing.
        assert_eq!(
            counter_sync(&kt, &c0.advance(21), 19, &blob),
            CounterSync::Deadlock
        );
        let blob = blob_for(&kt, &c0.advance(20), 20, 20);
        assert_eq!(counter_sync(&kt, &c0, 0, &blob), CounterSync::Deadlock);
        let blob = blob_for(&kt, &c0.advance(2), 5, 20);
        assert_eq!(counter_sync(&kt, &c0, 0, &blob), CounterSync::Deadlock);
    }

    proptest! {
        #[test]
        fn encrypt_then_decrypt_is_identity(
            key in any::<[u8; 16]>(), challenge in any::<[u8; 16]>(), nonce in any::<[u8; 16]>(),
            status in 1u8..=5, reserved in any::<[u8; 5]>(), bytes in any::<[u8; 3]>(),
            look_ahead in 1u8..=64, hash in any::<[u8; 16]>(),
        ) {
            let kt = SymmetricKey::from_bytes(key);
            let blob = StatusBlob {
                status: ActivationStatus::from_code(status).unwrap(),
                current_version: 3, upgrade_version: 3, reserved,
                ctr_byte: bytes[0], failed_attempts: bytes[1], max_failed_attempts: bytes[2],
                ctr_look_ahead: look_ahead, ctr_data_hash: hash,
            };
            let encrypted = encrypt(&kt, &challenge, &nonce, &blob);
            prop_assert_eq!(decrypt(&kt, &challenge, &nonce, &encrypted).unwrap(), blob);
            prop_assert_eq!(StatusBlob::parse(&blob.to_bytes()).unwrap(), blob);
        }

        #[test]
        fn hash_distance_finds_the_server_step(steps in 0u8..30, look_ahead in 1u8..=64) {
            let kt = SymmetricKey::from_bytes([9; 16]);
            let local = CounterData::from_bytes([steps; 16]);
            let hash = ctr_data_hash(&kt, &local.advance(u32::from(steps)));
            let expected = (steps < look_ahead).then_some(steps);
            prop_assert_eq!(hash_distance(&kt, &local, &hash, look_ahead), expected);
        }
    }
}
