//! ECIES as PowerAuth 3.x does it (`spec/powerauth-activation.md` §2), byte-exact.
//!
//! One request and its one response share an **envelope key** of 48 bytes,
//! `X9.63-KDF-SHA256(Z, INFO1)` with `Z` the ECDH x-coordinate and `INFO1 = V ‖ SH1 ‖ EPH`
//! (`SH1 ‖ EPH` before 3.2); it splits into `K_ENC ‖ K_MAC ‖ K_IV`. A message is
//! `AES-128-CBC-PKCS#7(K_ENC, IV)` with `IV = KDF_INTERNAL(K_IV, nonce)` (zero before 3.1), and
//! `MAC = HMAC-SHA256(K_MAC, CT ‖ SH2)`, where `SH2` binds `sharedInfo2` base, nonce, timestamp,
//! ephemeral key (requests only) and the associated data (3.2+).
//!
//! The split between the parties follows where the keys live:
//! - the **server** never sees a private key here: [`ServerEncryptor`] starts from the 32-byte
//!   `Z` the HSM derived (`CKM_ECDH1_DERIVE` with the request's ephemeral key as peer);
//! - the **client** (the simulator, keys in memory) does the ECDH itself in [`ClientEncryptor`],
//!   with the ephemeral key drawn from a passed-in RNG or given, so that vectors reproduce.
//!
//! [`EciesContext`] holds what both sides must agree on besides the keys: version, encryptor
//! (`SH1`, scope), `sharedInfo2` base and associated data. Replay checks and time windows are the
//! caller's: this module has no clock.

use std::fmt;

use hmac::Mac as _;
use sha2::Digest as _;
use zeroize::Zeroizing;

use super::application::ApplicationSecret;
use super::kdf::{self, SymmetricKey};
use super::keys::{PrivateKey, PublicKey};
use super::{CryptoError, aes_cbc, b64};

use crate::signature::HmacSha256;

/// Length of the ECIES request and response nonces.
pub const NONCE_LEN: usize = 16;
/// Length of the envelope key `K_ENC ‖ K_MAC ‖ K_IV`.
pub const ENVELOPE_LEN: usize = 48;
/// Length of the ECIES MAC (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// A PowerAuth protocol version as sent in `protocolVersion`. This layer computes all four; which
/// ones a server accepts is configuration (§1.2 recommends 3.3, optionally 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// `"3.0"`: no nonce (zero IV), no timestamp, MAC over `SH2_BASE`.
    V3_0,
    /// `"3.1"`: request nonce (also the response IV), no timestamp, MAC over `SH2_BASE`.
    V3_1,
    /// `"3.2"`: version in `INFO1`, timestamps, full `SH2_REQ`/`SH2_RES` with associated data.
    V3_2,
    /// `"3.3"`: as 3.2, with a temporary server key named by `temporaryKeyId` (also in the AD).
    V3_3,
}

impl ProtocolVersion {
    /// Parses `"3.0"` … `"3.3"`; anything else is [`CryptoError::UnsupportedProtocolVersion`].
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        match text {
            "3.0" => Ok(Self::V3_0),
            "3.1" => Ok(Self::V3_1),
            "3.2" => Ok(Self::V3_2),
            "3.3" => Ok(Self::V3_3),
            other => Err(CryptoError::UnsupportedProtocolVersion(other.to_owned())),
        }
    }

    /// The wire text, e.g. `"3.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3_0 => "3.0",
            Self::V3_1 => "3.1",
            Self::V3_2 => "3.2",
            Self::V3_3 => "3.3",
        }
    }

    /// Whether requests carry a `nonce` (3.1+). Before that the IV is zero.
    pub fn has_nonce(self) -> bool {
        self != Self::V3_0
    }

    /// Whether messages carry a `timestamp`, responses their own nonce, and the MAC covers the full
    /// `SH2_REQ`/`SH2_RES` with associated data (3.2+).
    pub fn has_timestamp(self) -> bool {
        matches!(self, Self::V3_2 | Self::V3_3)
    }

    /// Whether requests name a temporary server key (`temporaryKeyId`, 3.3 only).
    pub fn has_temporary_key(self) -> bool {
        self == Self::V3_3
    }
}

/// Which key material `sharedInfo2` is bound to (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptorScope {
    /// Bound to the application: `SH2_BASE = SHA256(ASCII(APP_SECRET))`.
    Application,
    /// Bound to one activation: `SH2_BASE = HMAC(KEY_TRANSPORT, ASCII(APP_SECRET))`.
    Activation,
}

/// The ECIES encryptors and their `SHARED_INFO_1` constants (§2.2; upstream `EncryptorId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encryptor {
    /// Layer 1 of `/pa/v3/activation/create` and other application-scope endpoints.
    ApplicationScopeGeneric,
    /// Activation-scope endpoints of the enrollment server.
    ActivationScopeGeneric,
    /// Layer 2 of the activation: `/activation/prepare` and `/activation/create` on this server.
    ActivationLayer2,
    /// Protocol upgrade (out of scope here; constant kept for completeness).
    Upgrade,
    /// Vault unlock (out of scope here).
    VaultUnlock,
    /// Token creation (out of scope here).
    CreateToken,
    /// Recovery code confirmation (out of scope here).
    ConfirmRecoveryCode,
}

impl Encryptor {
    /// All encryptors.
    pub const ALL: [Self; 7] = [
        Self::ApplicationScopeGeneric,
        Self::ActivationScopeGeneric,
        Self::ActivationLayer2,
        Self::Upgrade,
        Self::VaultUnlock,
        Self::CreateToken,
        Self::ConfirmRecoveryCode,
    ];

    /// `SHARED_INFO_1` as ASCII text.
    pub fn shared_info1(self) -> &'static str {
        match self {
            Self::ApplicationScopeGeneric => "/pa/generic/application",
            Self::ActivationScopeGeneric => "/pa/generic/activation",
            Self::ActivationLayer2 => "/pa/activation",
            Self::Upgrade => "/pa/upgrade",
            Self::VaultUnlock => "/pa/vault/unlock",
            Self::CreateToken => "/pa/token/create",
            Self::ConfirmRecoveryCode => "/pa/recovery/confirm",
        }
    }

    /// The scope the encryptor is fixed to.
    pub fn scope(self) -> EncryptorScope {
        match self {
            Self::ApplicationScopeGeneric | Self::ActivationLayer2 => EncryptorScope::Application,
            Self::ActivationScopeGeneric
            | Self::Upgrade
            | Self::VaultUnlock
            | Self::CreateToken
            | Self::ConfirmRecoveryCode => EncryptorScope::Activation,
        }
    }

    /// Upstream's enum name (`EncryptorId`), as the vector files write it.
    pub fn upstream_id(self) -> &'static str {
        match self {
            Self::ApplicationScopeGeneric => "APPLICATION_SCOPE_GENERIC",
            Self::ActivationScopeGeneric => "ACTIVATION_SCOPE_GENERIC",
            Self::ActivationLayer2 => "ACTIVATION_LAYER_2",
            Self::Upgrade => "UPGRADE",
            Self::VaultUnlock => "VAULT_UNLOCK",
            Self::CreateToken => "CREATE_TOKEN",
            Self::ConfirmRecoveryCode => "CONFIRM_RECOVERY_CODE",
        }
    }

    /// The encryptor with this `SHARED_INFO_1`, if any.
    pub fn from_shared_info1(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.shared_info1() == text)
    }

    /// The generic encryptor of a scope: what `/ecies/decryptor` uses (§2.6, §5.7).
    pub fn generic(scope: EncryptorScope) -> Self {
        match scope {
            EncryptorScope::Application => Self::ApplicationScopeGeneric,
            EncryptorScope::Activation => Self::ActivationScopeGeneric,
        }
    }
}

/// The activation an activation-scope encryptor is bound to.
#[derive(Debug, Clone, Copy)]
pub struct ActivationBinding<'a> {
    /// The activation id (`ACT_ID`, in the associated data).
    pub activation_id: &'a str,
    /// The activation's `KEY_TRANSPORT` (keys `SH2_BASE`).
    pub transport_key: &'a SymmetricKey,
}

/// What both sides must agree on for one encryptor use, besides the keys: version, encryptor,
/// `SH2_BASE` and the associated data `AD` (§2.2).
#[derive(Clone)]
pub struct EciesContext {
    version: ProtocolVersion,
    encryptor: Encryptor,
    shared_info2_base: Zeroizing<[u8; 32]>,
    associated_data: Option<Vec<u8>>,
}

impl EciesContext {
    /// Builds the context and checks that the parameters fit: `activation` is given exactly for
    /// activation-scope encryptors, `temporary_key_id` exactly for 3.3
    /// ([`CryptoError::MalformedEcies`] otherwise).
    ///
    /// `AD` (3.2+) is `LP(V) ‖ LP(AK) [‖ LP(ACT_ID)] [‖ LP(TK_ID)]`; before 3.2 there is none.
    pub fn new(
        version: ProtocolVersion,
        encryptor: Encryptor,
        application_key: &str,
        application_secret: &ApplicationSecret,
        activation: Option<ActivationBinding<'_>>,
        temporary_key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        let secret_text = application_secret.expose_text().as_bytes();
        let shared_info2_base = match (encryptor.scope(), activation) {
            (EncryptorScope::Application, None) => {
                Zeroizing::new(sha2::Sha256::digest(secret_text).into())
            }
            (EncryptorScope::Activation, Some(binding)) => {
                hmac_sha256(binding.transport_key.expose(), &[secret_text])
            }
            (EncryptorScope::Application, Some(_)) => {
                return Err(CryptoError::MalformedEcies(
                    "an application-scope encryptor takes no activation",
                ));
            }
            (EncryptorScope::Activation, None) => {
                return Err(CryptoError::MalformedEcies(
                    "an activation-scope encryptor needs the activation id and transport key",
                ));
            }
        };
        Self::with_shared_info2_base(
            version,
            encryptor,
            shared_info2_base,
            application_key,
            activation.map(|binding| binding.activation_id),
            temporary_key_id,
        )
    }

    /// The context around a known `SH2_BASE` (computed by [`EciesContext::new`], or handed out by
    /// `/ecies/decryptor`); `activation_id` is the activation scope's, already checked against the
    /// encryptor's scope by the caller.
    fn with_shared_info2_base(
        version: ProtocolVersion,
        encryptor: Encryptor,
        shared_info2_base: Zeroizing<[u8; 32]>,
        application_key: &str,
        activation_id: Option<&str>,
        temporary_key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        if version.has_temporary_key() != temporary_key_id.is_some() {
            return Err(CryptoError::MalformedEcies(
                "temporaryKeyId must be present in 3.3 and absent before",
            ));
        }
        let associated_data = version.has_timestamp().then(|| {
            let mut ad = Vec::new();
            push_lp(&mut ad, version.as_str().as_bytes());
            push_lp(&mut ad, application_key.as_bytes());
            if let Some(id) = activation_id {
                push_lp(&mut ad, id.as_bytes());
            }
            if let Some(id) = temporary_key_id {
                push_lp(&mut ad, id.as_bytes());
            }
            ad
        });
        Ok(Self {
            version,
            encryptor,
            shared_info2_base,
            associated_data,
        })
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The encryptor.
    pub fn encryptor(&self) -> Encryptor {
        self.encryptor
    }

    /// `SH2_BASE` (32 bytes). It is handed to the enrollment server in clear by `/ecies/decryptor`.
    pub fn shared_info2_base(&self) -> &[u8; 32] {
        &self.shared_info2_base
    }

    /// The associated data `AD` (3.2+), `None` before 3.2.
    pub fn associated_data(&self) -> Option<&[u8]> {
        self.associated_data.as_deref()
    }

    /// `SH2_REQ = LP(SH2_BASE) ‖ LP(NONCE) ‖ LP(BE64(TS)) ‖ LP(EPH) ‖ LP(AD)` (3.2+), or `SH2_BASE`
    /// alone before 3.2 (then `nonce` and `timestamp_ms` are not used).
    pub fn request_shared_info2(
        &self,
        ephemeral: &EphemeralPublicKey,
        nonce: &[u8; NONCE_LEN],
        timestamp_ms: i64,
    ) -> Vec<u8> {
        self.shared_info2(nonce, timestamp_ms, Some(ephemeral))
    }

    /// `SH2_RES = LP(SH2_BASE) ‖ LP(NONCE_R) ‖ LP(BE64(TS_R)) ‖ 00 00 00 00 ‖ LP(AD)` (3.2+), or
    /// `SH2_BASE` alone before 3.2.
    pub fn response_shared_info2(&self, nonce: &[u8; NONCE_LEN], timestamp_ms: i64) -> Vec<u8> {
        self.shared_info2(nonce, timestamp_ms, None)
    }

    fn shared_info2(
        &self,
        nonce: &[u8; NONCE_LEN],
        timestamp_ms: i64,
        ephemeral: Option<&EphemeralPublicKey>,
    ) -> Vec<u8> {
        let Some(ad) = &self.associated_data else {
            return self.shared_info2_base.to_vec();
        };
        let mut out = Vec::with_capacity(4 * 5 + 32 + NONCE_LEN + 8 + 65 + ad.len());
        push_lp(&mut out, self.shared_info2_base.as_slice());
        push_lp(&mut out, nonce);
        push_lp(&mut out, &timestamp_ms.to_be_bytes());
        match ephemeral {
            Some(key) => push_lp(&mut out, key.as_bytes()),
            None => out.extend_from_slice(&[0; 4]),
        }
        push_lp(&mut out, ad);
        out
    }
}

impl fmt::Debug for EciesContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EciesContext")
            .field("version", &self.version)
            .field("encryptor", &self.encryptor)
            .field("shared_info2_base", &"REDACTED")
            .finish()
    }
}

/// How a client encodes its ephemeral public key on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointFormat {
    /// 33 bytes `02/03 ‖ X`: what the mobile SDK sends.
    Compressed,
    /// 65 bytes `04 ‖ X ‖ Y`: what Java clients send.
    Uncompressed,
}

/// `EPH`: the ephemeral public key **exactly as received** (33 or 65 bytes), validated as a P-256
/// point. These bytes enter `INFO1` and `SH2_REQ`; they are never re-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct EphemeralPublicKey {
    bytes: Vec<u8>,
    key: PublicKey,
}

impl EphemeralPublicKey {
    /// Validates SEC1 bytes (see [`PublicKey::from_sec1`]) and keeps them as they are.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            key: PublicKey::from_sec1(bytes)?,
            bytes: bytes.to_vec(),
        })
    }

    /// Decodes canonical Base64, then as [`EphemeralPublicKey::from_bytes`].
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        Self::from_bytes(&b64::decode(text).map_err(|_| CryptoError::InvalidPublicKey)?)
    }

    /// Encodes `key` in the given format (client side).
    pub fn encode(key: &PublicKey, format: PointFormat) -> Self {
        let bytes = match format {
            PointFormat::Compressed => key.to_compressed().to_vec(),
            PointFormat::Uncompressed => key.to_uncompressed().to_vec(),
        };
        Self { bytes, key: *key }
    }

    /// The bytes as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Base64 of the bytes as received (the wire `ephemeralPublicKey`).
    pub fn to_base64(&self) -> String {
        b64::encode(&self.bytes)
    }

    /// The point, e.g. as the peer of the HSM's ECDH.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

impl fmt::Debug for EphemeralPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EphemeralPublicKey")
            .field(&self.to_base64())
            .finish()
    }
}

/// `INFO1` of the X9.63 KDF: `ASCII(V) ‖ ASCII(SH1) ‖ EPH` (3.2+) or `ASCII(SH1) ‖ EPH` (3.0, 3.1).
pub fn kdf_info1(
    version: ProtocolVersion,
    encryptor: Encryptor,
    ephemeral: &EphemeralPublicKey,
) -> Vec<u8> {
    let mut info = Vec::new();
    if version.has_timestamp() {
        info.extend_from_slice(version.as_str().as_bytes());
    }
    info.extend_from_slice(encryptor.shared_info1().as_bytes());
    info.extend_from_slice(ephemeral.as_bytes());
    info
}

/// The 48-byte envelope key `K_ENC ‖ K_MAC ‖ K_IV` of one request and its response. Wiped on drop;
/// `Debug` is redacted.
#[derive(Clone)]
pub struct EnvelopeKey(Zeroizing<[u8; ENVELOPE_LEN]>);

impl EnvelopeKey {
    /// `ENVELOPE = first 48 bytes of SHA256(Z ‖ BE32(1) ‖ INFO1) ‖ SHA256(Z ‖ BE32(2) ‖ INFO1)`
    /// (ANSI X9.63 KDF with SHA-256), with `Z` the 32-byte ECDH x-coordinate.
    pub fn derive(
        shared_secret: &[u8; 32],
        version: ProtocolVersion,
        encryptor: Encryptor,
        ephemeral: &EphemeralPublicKey,
    ) -> Self {
        let info = kdf_info1(version, encryptor, ephemeral);
        let mut out = Zeroizing::new([0u8; ENVELOPE_LEN]);
        for (counter, chunk) in (1u32..).zip(out.chunks_mut(32)) {
            let mut hash = sha2::Sha256::new();
            hash.update(shared_secret);
            hash.update(counter.to_be_bytes());
            hash.update(&info);
            let block = Zeroizing::new(<[u8; 32]>::from(hash.finalize()));
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Self(out)
    }

    /// Wraps 48 known bytes (the enrollment server's side of `/ecies/decryptor`, tests).
    pub fn from_bytes(bytes: [u8; ENVELOPE_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The 48 bytes; call this only where they enter a primitive or the wire (`secretKey`).
    pub fn expose(&self) -> &[u8; ENVELOPE_LEN] {
        &self.0
    }

    /// Base64 of the 48 bytes, as `/ecies/decryptor` answers `secretKey`.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(self.0.as_slice()))
    }

    /// `K_ENC = ENVELOPE[0..16]`.
    pub fn enc_key(&self) -> SymmetricKey {
        self.part(0)
    }

    /// `K_MAC = ENVELOPE[16..32]`.
    pub fn mac_key(&self) -> SymmetricKey {
        self.part(1)
    }

    /// `K_IV = ENVELOPE[32..48]`.
    pub fn iv_key(&self) -> SymmetricKey {
        self.part(2)
    }

    /// The IV for a message with `nonce`: `KDF_INTERNAL(K_IV, nonce)` (3.1+), zero for 3.0.
    pub fn iv(&self, version: ProtocolVersion, nonce: &[u8; NONCE_LEN]) -> [u8; 16] {
        if version.has_nonce() {
            *kdf::kdf_internal(&self.iv_key(), nonce).expose()
        } else {
            [0; 16]
        }
    }

    fn part(&self, index: usize) -> SymmetricKey {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.0[16 * index..16 * (index + 1)]);
        SymmetricKey::from_bytes(bytes)
    }

    fn mac(&self, ciphertext: &[u8], shared_info2: &[u8]) -> Zeroizing<[u8; 32]> {
        hmac_sha256(self.mac_key().expose(), &[ciphertext, shared_info2])
    }

    fn verify_mac(
        &self,
        ciphertext: &[u8],
        shared_info2: &[u8],
        mac: &[u8],
    ) -> Result<(), CryptoError> {
        let mut check = <HmacSha256 as hmac::Mac>::new_from_slice(self.mac_key().expose())
            .expect("HMAC accepts keys of any length");
        check.update(ciphertext);
        check.update(shared_info2);
        check
            .verify_slice(mac)
            .map_err(|_| CryptoError::EciesDecryptionFailed)
    }
}

impl fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvelopeKey(REDACTED)")
    }
}

/// An encrypted request (§2.4) without `temporaryKeyId`, which the [`EciesContext`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EciesRequest {
    /// `EPH`, as received.
    pub ephemeral_public_key: EphemeralPublicKey,
    /// `CT`.
    pub encrypted_data: Vec<u8>,
    /// `MAC` (32 bytes when well-formed; any other length fails the MAC check).
    pub mac: Vec<u8>,
    /// `NONCE`: present exactly in 3.1+.
    pub nonce: Option<[u8; NONCE_LEN]>,
    /// `TS`, Unix milliseconds: present exactly in 3.2+.
    pub timestamp_ms: Option<i64>,
}

impl EciesRequest {
    /// Decodes the Base64 wire fields. A nonce that is not 16 bytes, or bad Base64 in the data or
    /// MAC, is [`CryptoError::MalformedEcies`]; an ephemeral key that is not a P-256 point is
    /// [`CryptoError::InvalidPublicKey`].
    pub fn from_base64(
        ephemeral_public_key: &str,
        encrypted_data: &str,
        mac: &str,
        nonce: Option<&str>,
        timestamp_ms: Option<i64>,
    ) -> Result<Self, CryptoError> {
        let ephemeral_public_key = EphemeralPublicKey::from_base64(ephemeral_public_key)?;
        let (encrypted_data, mac, nonce) = decode_sealed(encrypted_data, mac, nonce)?;
        Ok(Self {
            ephemeral_public_key,
            encrypted_data,
            mac,
            nonce,
            timestamp_ms,
        })
    }

    /// §2.8 shape rules for `version`: `nonce` present iff 3.1+, `timestamp` present iff 3.2+
    /// (`temporaryKeyId` is checked by [`EciesContext::new`]).
    pub fn check_shape(&self, version: ProtocolVersion) -> Result<(), CryptoError> {
        if self.nonce.is_some() != version.has_nonce() {
            return Err(CryptoError::MalformedEcies(
                "nonce must be present exactly in 3.1+",
            ));
        }
        if self.timestamp_ms.is_some() != version.has_timestamp() {
            return Err(CryptoError::MalformedEcies(
                "timestamp must be present exactly in 3.2+",
            ));
        }
        Ok(())
    }
}

/// Ciphertext, MAC and the optional nonce: what a request and a response share.
type Sealed = (Vec<u8>, Vec<u8>, Option<[u8; NONCE_LEN]>);

/// Decodes the Base64 fields a request and a response share.
fn decode_sealed(
    encrypted_data: &str,
    mac: &str,
    nonce: Option<&str>,
) -> Result<Sealed, CryptoError> {
    Ok((
        b64::decode(encrypted_data)
            .map_err(|_| CryptoError::MalformedEcies("encryptedData is not Base64"))?,
        b64::decode(mac).map_err(|_| CryptoError::MalformedEcies("mac is not Base64"))?,
        nonce.map(decode_nonce).transpose()?,
    ))
}

/// An encrypted response (§2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EciesResponse {
    /// `CT_R`.
    pub encrypted_data: Vec<u8>,
    /// `MAC_R`.
    pub mac: Vec<u8>,
    /// `NONCE_R`: present exactly in 3.2+ (3.1 reuses the request nonce, 3.0 has none).
    pub nonce: Option<[u8; NONCE_LEN]>,
    /// `TS_R`, Unix milliseconds: present exactly in 3.2+.
    pub timestamp_ms: Option<i64>,
}

impl EciesResponse {
    /// Decodes the Base64 wire fields (errors as [`EciesRequest::from_base64`]).
    pub fn from_base64(
        encrypted_data: &str,
        mac: &str,
        nonce: Option<&str>,
        timestamp_ms: Option<i64>,
    ) -> Result<Self, CryptoError> {
        let (encrypted_data, mac, nonce) = decode_sealed(encrypted_data, mac, nonce)?;
        Ok(Self {
            encrypted_data,
            mac,
            nonce,
            timestamp_ms,
        })
    }

    /// Shape rules for `version`: `nonce` and `timestamp` present iff 3.2+.
    pub fn check_shape(&self, version: ProtocolVersion) -> Result<(), CryptoError> {
        let has = version.has_timestamp();
        if self.nonce.is_some() != has || self.timestamp_ms.is_some() != has {
            return Err(CryptoError::MalformedEcies(
                "response nonce and timestamp must be present exactly in 3.2+",
            ));
        }
        Ok(())
    }
}

/// Server side: decrypts one request from the HSM's `Z` and encrypts its one response.
pub struct ServerEncryptor {
    context: EciesContext,
    envelope: EnvelopeKey,
    request_nonce: Option<[u8; NONCE_LEN]>,
}

impl ServerEncryptor {
    /// Checks the shape, derives the envelope from `shared_secret` (`Z = ECDH_X(K_PRIV, EPH)`,
    /// computed by the HSM), checks the MAC in constant time and only then decrypts.
    ///
    /// A shape problem is [`CryptoError::MalformedEcies`]; a MAC or padding failure is
    /// [`CryptoError::EciesDecryptionFailed`]. Run the replay check before calling this.
    pub fn decrypt_request(
        context: &EciesContext,
        shared_secret: &[u8; 32],
        request: &EciesRequest,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        request.check_shape(context.version)?;
        let envelope = EnvelopeKey::derive(
            shared_secret,
            context.version,
            context.encryptor,
            &request.ephemeral_public_key,
        );
        Self::open(context.clone(), envelope, request)
    }

    /// MAC check (constant time), then decryption, with a known envelope; the shape is checked.
    fn open(
        context: EciesContext,
        envelope: EnvelopeKey,
        request: &EciesRequest,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        let nonce = request.nonce.unwrap_or([0; NONCE_LEN]);
        let shared_info2 = context.request_shared_info2(
            &request.ephemeral_public_key,
            &nonce,
            request.timestamp_ms.unwrap_or(0),
        );
        envelope.verify_mac(&request.encrypted_data, &shared_info2, &request.mac)?;
        let iv = envelope.iv(context.version, &nonce);
        let plaintext = aes_cbc::decrypt_pkcs7(&envelope.enc_key(), &iv, &request.encrypted_data)?;
        let server = Self {
            context,
            envelope,
            request_nonce: request.nonce,
        };
        Ok((server, plaintext))
    }

    /// Encrypts the response with the request's envelope (§2.5).
    ///
    /// 3.2+: `nonce` must be fresh random bytes different from the request nonce
    /// ([`CryptoError::MalformedEcies`] if equal) and `timestamp_ms` the current time, which the
    /// SDK synchronizes its clock to. Before 3.2 both are ignored: 3.1 reuses the request nonce
    /// for the IV and 3.0 uses a zero IV, and neither sends them.
    pub fn encrypt_response(
        &self,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
        timestamp_ms: i64,
    ) -> Result<EciesResponse, CryptoError> {
        let version = self.context.version;
        let (iv_nonce, wire_nonce, wire_timestamp) = if version.has_timestamp() {
            if self.request_nonce == Some(nonce) {
                return Err(CryptoError::MalformedEcies(
                    "the response nonce must differ from the request nonce",
                ));
            }
            (nonce, Some(nonce), Some(timestamp_ms))
        } else {
            (self.request_nonce.unwrap_or([0; NONCE_LEN]), None, None)
        };
        let iv = self.envelope.iv(version, &iv_nonce);
        let encrypted_data = aes_cbc::encrypt_pkcs7(&self.envelope.enc_key(), &iv, plaintext);
        let shared_info2 = self
            .context
            .response_shared_info2(&iv_nonce, wire_timestamp.unwrap_or(0));
        let mac = self.envelope.mac(&encrypted_data, &shared_info2).to_vec();
        Ok(EciesResponse {
            encrypted_data,
            mac,
            nonce: wire_nonce,
            timestamp_ms: wire_timestamp,
        })
    }

    /// The envelope key of this exchange.
    pub fn envelope_key(&self) -> &EnvelopeKey {
        &self.envelope
    }
}

impl fmt::Debug for ServerEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEncryptor")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// What `/ecies/decryptor` hands the enrollment server (§2.6): the envelope key and `SH2_BASE`,
/// in clear (that is the protocol).
#[derive(Debug, Clone)]
pub struct DecryptorSecrets {
    /// `secretKey`: the 48-byte envelope key.
    pub secret_key: EnvelopeKey,
    /// `sharedInfo2`: `SH2_BASE`, 32 bytes.
    pub shared_info2: SharedInfo2Base,
}

/// `SH2_BASE` as handed out by `/ecies/decryptor`. Wiped on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct SharedInfo2Base(Zeroizing<[u8; 32]>);

impl SharedInfo2Base {
    /// The 32 bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Base64 of the 32 bytes (the wire `sharedInfo2`).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(self.0.as_slice()))
    }
}

impl fmt::Debug for SharedInfo2Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedInfo2Base(REDACTED)")
    }
}

impl DecryptorSecrets {
    /// Reads the `/ecies/decryptor` answer: `secretKey` (Base64 of 48 bytes) and `sharedInfo2`
    /// (Base64 of 32 bytes).
    ///
    /// # Errors
    /// [`CryptoError::MalformedEcies`] naming the field that is not Base64 of the right length.
    pub fn from_base64(secret_key: &str, shared_info2: &str) -> Result<Self, CryptoError> {
        let secret_key = Zeroizing::new(
            b64::decode_array::<ENVELOPE_LEN>(secret_key)
                .map_err(|_| CryptoError::MalformedEcies("secretKey is not 48 bytes"))?,
        );
        let shared_info2 = Zeroizing::new(
            b64::decode_array::<32>(shared_info2)
                .map_err(|_| CryptoError::MalformedEcies("sharedInfo2 is not 32 bytes"))?,
        );
        Ok(Self {
            secret_key: EnvelopeKey::from_bytes(*secret_key),
            shared_info2: SharedInfo2Base(shared_info2),
        })
    }
}

/// The enrollment server's half of a generic-encryptor exchange (§2.6): built from the
/// `/ecies/decryptor` secrets alone (no private key, no ECDH), it decrypts the one request they
/// were issued for and, through the returned [`ServerEncryptor`], encrypts its one response.
pub struct SecretsDecryptor {
    context: EciesContext,
    envelope: EnvelopeKey,
}

impl SecretsDecryptor {
    /// The generic encryptor of `scope` (`/pa/generic/application` or `/pa/generic/activation`)
    /// for `version`, keyed by `secrets`. `activation_id` is given exactly in activation scope,
    /// `temporary_key_id` exactly in 3.3; `AD` is built from them as in [`EciesContext::new`].
    ///
    /// # Errors
    /// [`CryptoError::MalformedEcies`] when the scope, activation id, version and temporary key id
    /// do not fit together.
    pub fn new(
        version: ProtocolVersion,
        scope: EncryptorScope,
        secrets: &DecryptorSecrets,
        application_key: &str,
        activation_id: Option<&str>,
        temporary_key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        if (scope == EncryptorScope::Activation) != activation_id.is_some() {
            return Err(CryptoError::MalformedEcies(
                "the activation id is given exactly for the activation scope",
            ));
        }
        let context = EciesContext::with_shared_info2_base(
            version,
            Encryptor::generic(scope),
            secrets.shared_info2.0.clone(),
            application_key,
            activation_id,
            temporary_key_id,
        )?;
        Ok(Self {
            context,
            envelope: secrets.secret_key.clone(),
        })
    }

    /// Checks the request's shape and MAC (constant time), then decrypts it; the returned
    /// encryptor answers it ([`ServerEncryptor::encrypt_response`]).
    ///
    /// # Errors
    /// [`CryptoError::MalformedEcies`] for a shape problem; [`CryptoError::EciesDecryptionFailed`]
    /// for a MAC or padding failure.
    pub fn decrypt_request(
        &self,
        request: &EciesRequest,
    ) -> Result<(ServerEncryptor, Zeroizing<Vec<u8>>), CryptoError> {
        request.check_shape(self.context.version)?;
        ServerEncryptor::open(self.context.clone(), self.envelope.clone(), request)
    }
}

impl fmt::Debug for SecretsDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsDecryptor")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The `/ecies/decryptor` answer for `ephemeral` and the HSM's `Z` (§2.6, §5.7). The context must
/// use the generic encryptor of its scope ([`Encryptor::generic`]); any other is
/// [`CryptoError::MalformedEcies`]. The request's nonce and timestamp only feed the caller's replay
/// check.
pub fn decryptor_secrets(
    context: &EciesContext,
    shared_secret: &[u8; 32],
    ephemeral: &EphemeralPublicKey,
) -> Result<DecryptorSecrets, CryptoError> {
    if context.encryptor != Encryptor::generic(context.encryptor.scope()) {
        return Err(CryptoError::MalformedEcies(
            "/ecies/decryptor serves the generic encryptors only",
        ));
    }
    Ok(DecryptorSecrets {
        secret_key: EnvelopeKey::derive(
            shared_secret,
            context.version,
            context.encryptor,
            ephemeral,
        ),
        shared_info2: SharedInfo2Base(context.shared_info2_base.clone()),
    })
}

/// Client side: encrypts one request and decrypts its one response (the simulator, tests).
pub struct ClientEncryptor {
    context: EciesContext,
    envelope: EnvelopeKey,
    request_nonce: Option<[u8; NONCE_LEN]>,
}

impl ClientEncryptor {
    /// Encrypts `plaintext` to `server_public` with the given ephemeral key, nonce and time.
    ///
    /// The request carries the nonce only in 3.1+ and the timestamp only in 3.2+ (3.0 uses a zero
    /// IV). Use [`ClientEncryptor::encrypt_request_random`] outside tests.
    pub fn encrypt_request(
        context: &EciesContext,
        server_public: &PublicKey,
        ephemeral_private: &PrivateKey,
        format: PointFormat,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
        timestamp_ms: i64,
    ) -> (Self, EciesRequest) {
        let version = context.version;
        let ephemeral = EphemeralPublicKey::encode(&ephemeral_private.public_key(), format);
        let shared_secret = kdf::ecdh_x(ephemeral_private, server_public);
        let envelope = EnvelopeKey::derive(&shared_secret, version, context.encryptor, &ephemeral);
        let nonce = if version.has_nonce() {
            nonce
        } else {
            [0; NONCE_LEN]
        };
        let timestamp_ms = if version.has_timestamp() {
            timestamp_ms
        } else {
            0
        };
        let iv = envelope.iv(version, &nonce);
        let encrypted_data = aes_cbc::encrypt_pkcs7(&envelope.enc_key(), &iv, plaintext);
        let shared_info2 = context.request_shared_info2(&ephemeral, &nonce, timestamp_ms);
        let mac = envelope.mac(&encrypted_data, &shared_info2).to_vec();
        let request_nonce = version.has_nonce().then_some(nonce);
        let request = EciesRequest {
            ephemeral_public_key: ephemeral,
            encrypted_data,
            mac,
            nonce: request_nonce,
            timestamp_ms: version.has_timestamp().then_some(timestamp_ms),
        };
        let client = Self {
            context: context.clone(),
            envelope,
            request_nonce,
        };
        (client, request)
    }

    /// As the SDK does it: a fresh ephemeral key from `rng`, sent compressed, and a random nonce.
    pub fn encrypt_request_random(
        context: &EciesContext,
        server_public: &PublicKey,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        plaintext: &[u8],
        timestamp_ms: i64,
    ) -> (Self, EciesRequest) {
        let ephemeral = PrivateKey::generate(rng);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        Self::encrypt_request(
            context,
            server_public,
            &ephemeral,
            PointFormat::Compressed,
            plaintext,
            nonce,
            timestamp_ms,
        )
    }

    /// Checks the response's shape and MAC (constant time), then decrypts it.
    pub fn decrypt_response(
        &self,
        response: &EciesResponse,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let version = self.context.version;
        response.check_shape(version)?;
        let nonce = match response.nonce {
            Some(nonce) => nonce,
            None => self.request_nonce.unwrap_or([0; NONCE_LEN]),
        };
        let shared_info2 = self
            .context
            .response_shared_info2(&nonce, response.timestamp_ms.unwrap_or(0));
        self.envelope
            .verify_mac(&response.encrypted_data, &shared_info2, &response.mac)?;
        let iv = self.envelope.iv(version, &nonce);
        aes_cbc::decrypt_pkcs7(&self.envelope.enc_key(), &iv, &response.encrypted_data)
    }

    /// The envelope key of this exchange.
    pub fn envelope_key(&self) -> &EnvelopeKey {
        &self.envelope
    }
}

impl fmt::Debug for ClientEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEncryptor")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The replay-store key of a request (§2.8, upstream `DefaultReplayVerificationService`):
/// `B64(EPH ‖ NONCE ‖ ASCII(activation id))`, the id only in activation scope. Layer 1 and layer 2
/// of one activation have their own `EPH` and nonce, so they do not collide.
pub fn replay_key(
    ephemeral: &EphemeralPublicKey,
    nonce: &[u8; NONCE_LEN],
    activation_id: Option<&str>,
) -> String {
    let mut bytes = ephemeral.as_bytes().to_vec();
    bytes.extend_from_slice(nonce);
    if let Some(id) = activation_id {
        bytes.extend_from_slice(id.as_bytes());
    }
    b64::encode(bytes)
}

/// The recommended strict freshness rule of §2.8: `|now − TS| ≤ window` (all Unix milliseconds).
/// Upstream only rejects `TS > now + 60 s`; the window and whether to apply it are configuration.
pub fn timestamp_is_fresh(timestamp_ms: i64, now_ms: i64, window_ms: i64) -> bool {
    timestamp_ms.abs_diff(now_ms) <= window_ms.unsigned_abs()
}

fn decode_nonce(text: &str) -> Result<[u8; NONCE_LEN], CryptoError> {
    b64::decode_array(text).map_err(|_| CryptoError::MalformedEcies("nonce is not 16 bytes"))
}

/// `LP(x) = BE32(len(x)) ‖ x`.
fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("ECIES fields are far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut mac =
        <HmacSha256 as hmac::Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    Zeroizing::new(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AK: &str = "WC8gRAsMr/tDZndH2GvvZw==";
    const AS: &str = "YT5yMrV1XPhS+skTiASlrA==";
    const TK_ID: &str = "f3de9b5b-3ea7-4fa0-9542-b748a7999444";
    const ACT_ID: &str = "b4ee3c97-8ad4-4f5b-9bb2-d6cd47cb7952";

    fn secret() -> ApplicationSecret {
        ApplicationSecret::from_text(AS).unwrap()
    }

    fn key(byte: u8) -> PrivateKey {
        let mut d = [0u8; 32];
        d[31] = byte;
        d[0] = 0x11;
        PrivateKey::from_scalar_bytes(&d).unwrap()
    }

    fn app_context(version: ProtocolVersion) -> EciesContext {
        let tk = version.has_temporary_key().then_some(TK_ID);
        EciesContext::new(
            version,
            Encryptor::ActivationLayer2,
            AK,
            &secret(),
            None,
            tk,
        )
        .unwrap()
    }

    /// `spec/powerauth-activation.md` §8.2: server side of the worked example, from the text.
    #[test]
    fn worked_example_envelope_and_shared_info() {
        let temporary = PrivateKey::from_scalar_bytes(
            &b64::decode_array("43SEx1m6d0EMtp6YN7XJa4PMBzL5MqzPYw8W2X7UFuQ=").unwrap(),
        )
        .unwrap();
        let eph = EphemeralPublicKey::from_base64("AtInIqdy/Lu44gfe+c2RQsDyuxHtq4xCfHgNKJsVrbgs")
            .unwrap();
        let z = kdf::ecdh_x(&temporary, eph.public_key());
        assert_eq!(
            hex::encode(z.as_slice()),
            "0f1f80d633a5d22d9b6b68960dc77f8ac88398678e62ae701c1ae6142fcc75c2"
        );
        let info = kdf_info1(ProtocolVersion::V3_3, Encryptor::ActivationLayer2, &eph);
        assert_eq!(info.len(), 50);
        assert_eq!(
            hex::encode(&info),
            "332e332f70612f61637469766174696f6e02d22722a772fcbbb8e207def9cd9142c0f2bb11edab8c427c780d289b15adb82c"
        );
        let envelope =
            EnvelopeKey::derive(&z, ProtocolVersion::V3_3, Encryptor::ActivationLayer2, &eph);
        assert_eq!(
            hex::encode(envelope.expose()),
            "a293bc0716d76d58b0d885ba2c0e2c6248afed726aacf0a59668d53166a5ceda99025906c0765dca2639f8ccdaaf860a"
        );
        let context = app_context(ProtocolVersion::V3_3);
        assert_eq!(
            hex::encode(context.shared_info2_base()),
            "532fa549c456c2c1bfe26a164adec3d8c5526361a89c2d0077d27d474381f8b4"
        );
        let ad = context.associated_data().unwrap();
        assert_eq!(ad.len(), 75);
        assert_eq!(ad[..7], hex::decode("00000003332e33").unwrap());
        let nonce = b64::decode_array("E0sEbYjSmAjDvYHPQHH3kA==").unwrap();
        assert_eq!(
            hex::encode(envelope.iv(ProtocolVersion::V3_3, &nonce)),
            "da221cb2cc53d83ce7a759277da65821"
        );
        assert_eq!(
            context
                .request_shared_info2(&eph, &nonce, 1_750_000_123_456)
                .len(),
            184
        );
        assert_eq!(context.response_shared_info2(&nonce, 1).len(), 151);
    }

    #[test]
    fn context_checks_scope_and_temporary_key() {
        let kt = SymmetricKey::from_bytes([3; 16]);
        let binding = ActivationBinding {
            activation_id: ACT_ID,
            transport_key: &kt,
        };
        let v33 = ProtocolVersion::V3_3;
        let s = secret();
        assert!(
            EciesContext::new(
                v33,
                Encryptor::ActivationLayer2,
                AK,
                &s,
                Some(binding),
                Some(TK_ID)
            )
            .is_err()
        );
        assert!(
            EciesContext::new(
                v33,
                Encryptor::ActivationScopeGeneric,
                AK,
                &s,
                None,
                Some(TK_ID)
            )
            .is_err()
        );
        assert!(EciesContext::new(v33, Encryptor::ActivationLayer2, AK, &s, None, None).is_err());
        assert!(
            EciesContext::new(
                ProtocolVersion::V3_2,
                Encryptor::ActivationLayer2,
                AK,
                &s,
                None,
                Some(TK_ID)
            )
            .is_err()
        );
        let activation = EciesContext::new(
            v33,
            Encryptor::ActivationScopeGeneric,
            AK,
            &s,
            Some(binding),
            Some(TK_ID),
        )
        .unwrap();
        // 4+3 + 4+24 + 4+36 + 4+36
        assert_eq!(activation.associated_data().unwrap().len(), 115);
        assert_ne!(
            activation.shared_info2_base(),
            app_context(v33).shared_info2_base()
        );
        assert_eq!(
            format!("{activation:?}"),
            "EciesContext { version: V3_3, encryptor: ActivationScopeGeneric, shared_info2_base: \"REDACTED\" }"
        );
    }

    #[test]
    fn replay_key_and_freshness() {
        let eph = EphemeralPublicKey::from_base64("AtInIqdy/Lu44gfe+c2RQsDyuxHtq4xCfHgNKJsVrbgs")
            .unwrap();
        let nonce = [0xAB; 16];
        let app = b64::decode(&replay_key(&eph, &nonce, None)).unwrap();
        assert_eq!(app.len(), 33 + 16);
        assert_eq!(app[..33], *eph.as_bytes());
        assert_eq!(app[33..], nonce);
        let act = b64::decode(&replay_key(&eph, &nonce, Some(ACT_ID))).unwrap();
        assert_eq!(act[..49], app[..]);
        assert_eq!(act[49..], *ACT_ID.as_bytes());
        assert!(timestamp_is_fresh(1_000, 61_000, 60_000));
        assert!(timestamp_is_fresh(61_000, 1_000, 60_000));
        assert!(!timestamp_is_fresh(1_000, 61_001, 60_000));
        assert!(!timestamp_is_fresh(i64::MIN, i64::MAX, 60_000));
    }

    #[test]
    fn versions_and_encryptors_parse() {
        for v in ["3.0", "3.1", "3.2", "3.3"] {
            assert_eq!(ProtocolVersion::parse(v).unwrap().as_str(), v);
        }
        assert!(ProtocolVersion::parse("3.4").is_err());
        for e in Encryptor::ALL {
            assert_eq!(Encryptor::from_shared_info1(e.shared_info1()), Some(e));
        }
        assert_eq!(Encryptor::from_shared_info1("/pa/other"), None);
    }

    #[test]
    fn shape_rules_per_version() {
        let context = app_context(ProtocolVersion::V3_3);
        let server = key(7).public_key();
        let (_, mut request) = ClientEncryptor::encrypt_request(
            &context,
            &server,
            &key(9),
            PointFormat::Compressed,
            b"{}",
            [1; 16],
            5,
        );
        assert!(request.check_shape(ProtocolVersion::V3_3).is_ok());
        assert!(request.check_shape(ProtocolVersion::V3_1).is_err());
        request.timestamp_ms = None;
        assert_eq!(
            request.check_shape(ProtocolVersion::V3_3),
            Err(CryptoError::MalformedEcies(
                "timestamp must be present exactly in 3.2+"
            ))
        );
        assert!(request.check_shape(ProtocolVersion::V3_1).is_ok());
        request.nonce = None;
        assert!(request.check_shape(ProtocolVersion::V3_0).is_ok());
    }

    #[test]
    fn response_nonce_must_differ_and_secrets_redact() {
        let context = app_context(ProtocolVersion::V3_3);
        let server_key = key(7);
        let (_, request) = ClientEncryptor::encrypt_request(
            &context,
            &server_key.public_key(),
            &key(9),
            PointFormat::Uncompressed,
            b"x",
            [1; 16],
            5,
        );
        let z = kdf::ecdh_x(&server_key, request.ephemeral_public_key.public_key());
        let (server, _) = ServerEncryptor::decrypt_request(&context, &z, &request).unwrap();
        assert!(server.encrypt_response(b"y", [1; 16], 6).is_err());
        assert_eq!(
            format!("{:?}", server.envelope_key()),
            "EnvelopeKey(REDACTED)"
        );
        assert!(decryptor_secrets(&context, &z, &request.ephemeral_public_key).is_err());
    }

    fn round_trip(
        version: ProtocolVersion,
        format: PointFormat,
        request_plain: &[u8],
        response_plain: &[u8],
        nonces: ([u8; 16], [u8; 16]),
    ) -> (EciesRequest, EciesResponse) {
        let context = app_context(version);
        let server_key = key(7);
        let (client, request) = ClientEncryptor::encrypt_request(
            &context,
            &server_key.public_key(),
            &key(9),
            format,
            request_plain,
            nonces.0,
            1_750_000_000_000,
        );
        let z = kdf::ecdh_x(&server_key, request.ephemeral_public_key.public_key());
        let (server, plain) = ServerEncryptor::decrypt_request(&context, &z, &request).unwrap();
        assert_eq!(plain.as_slice(), request_plain);
        assert_eq!(
            server.envelope_key().expose(),
            client.envelope_key().expose()
        );
        let response = server
            .encrypt_response(response_plain, nonces.1, 1_750_000_000_001)
            .unwrap();
        assert_eq!(
            client.decrypt_response(&response).unwrap().as_slice(),
            response_plain
        );
        (request, response)
    }

    proptest! {
        #[test]
        fn encrypt_then_decrypt_is_identity(
            version in prop_oneof![
                Just(ProtocolVersion::V3_0), Just(ProtocolVersion::V3_1),
                Just(ProtocolVersion::V3_2), Just(ProtocolVersion::V3_3)],
            compressed in any::<bool>(),
            request_plain in proptest::collection::vec(any::<u8>(), 0..80),
            response_plain in proptest::collection::vec(any::<u8>(), 0..80),
            nonce in any::<[u8; 16]>(),
        ) {
            let format = if compressed { PointFormat::Compressed } else { PointFormat::Uncompressed };
            let mut response_nonce = nonce;
            response_nonce[0] ^= 1;
            round_trip(version, format, &request_plain, &response_plain, (nonce, response_nonce));
        }

        #[test]
        fn any_flipped_byte_fails_the_mac(
            version in prop_oneof![Just(ProtocolVersion::V3_2), Just(ProtocolVersion::V3_3)],
            plain in proptest::collection::vec(any::<u8>(), 0..40),
            index in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (request, response) =
                round_trip(version, PointFormat::Compressed, &plain, &plain, ([5; 16], [6; 16]));
            let context = app_context(version);
            let server_key = key(7);
            let z = kdf::ecdh_x(&server_key, request.ephemeral_public_key.public_key());
            // Every request field the MAC covers: data, MAC, nonce, timestamp.
            let data_len = request.encrypted_data.len();
            let i = index.index(data_len + 32 + 16 + 8);
            let mut bad = request.clone();
            if i < data_len {
                bad.encrypted_data[i] ^= 1 << bit;
            } else if i < data_len + 32 {
                bad.mac[i - data_len] ^= 1 << bit;
            } else if i < data_len + 48 {
                bad.nonce.as_mut().unwrap()[i - data_len - 32] ^= 1 << bit;
            } else {
                bad.timestamp_ms = Some(request.timestamp_ms.unwrap() ^ (1 << ((i - data_len - 48) * 8 + usize::from(bit))));
            }
            prop_assert_eq!(
                ServerEncryptor::decrypt_request(&context, &z, &bad).map(|_| ()),
                Err(CryptoError::EciesDecryptionFailed)
            );
            // And the response, through the client.
            let (client, _) = ClientEncryptor::encrypt_request(
                &context, &server_key.public_key(), &key(9), PointFormat::Compressed, &plain, [5; 16], 1_750_000_000_000);
            let j = index.index(response.encrypted_data.len() + 32);
            let mut bad = response.clone();
            if j < response.encrypted_data.len() {
                bad.encrypted_data[j] ^= 1 << bit;
            } else {
                bad.mac[j - response.encrypted_data.len()] ^= 1 << bit;
            }
            prop_assert_eq!(client.decrypt_response(&bad).map(|_| ()), Err(CryptoError::EciesDecryptionFailed));
        }
    }

    #[test]
    fn another_context_fails_the_mac() {
        let (request, _) = round_trip(
            ProtocolVersion::V3_3,
            PointFormat::Compressed,
            b"a",
            b"b",
            ([1; 16], [2; 16]),
        );
        let z = kdf::ecdh_x(&key(7), request.ephemeral_public_key.public_key());
        let other = EciesContext::new(
            ProtocolVersion::V3_3,
            Encryptor::ActivationLayer2,
            AK,
            &secret(),
            None,
            Some("another-temporary-key"),
        )
        .unwrap();
        assert_eq!(
            ServerEncryptor::decrypt_request(&other, &z, &request).map(|_| ()),
            Err(CryptoError::EciesDecryptionFailed)
        );
    }
}
