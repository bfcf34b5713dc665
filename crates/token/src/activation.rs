//! Activation by activation code, protocol 3.3 (`spec/powerauth-activation.md` §1.1, §2, §3, §5).
//!
//! The simulator plays two parties so that the service sees exactly the bytes the real ones send:
//!
//! - the **mobile SDK**: configured from `mobileSdkConfig` ([`SdkConfig`]), it checks the activation
//!   code's signature, fetches a temporary key ([`temporary_key_request`],
//!   [`temporary_key_accept`]), encrypts layer 2 (activation layer 2 encryptor, `sh1 =
//!   /pa/activation`, application scope) around a fresh device public key, wraps it into layer 1
//!   (generic application encryptor, `sh1 = /pa/generic/application`), and at the end decrypts both
//!   response layers ([`read_layer2_response`]) and derives its keys ([`ActivatedKeys`]);
//! - the **enrollment server** (Wultra's, unmodified): it gets the layer-1 envelope key and
//!   `SH2_BASE` from `/ecies/decryptor`, decrypts layer 1 and encrypts its own layer-1 response with
//!   them ([`enrollment_decryptor`], the crypto crate's `SecretsDecryptor`), and forwards the untouched layer-2 cryptogram to
//!   `/activation/prepare`.
//!
//! Everything here is pure (no I/O, no clock): the HTTP choreography is in
//! [`crate::Token::activate_with_code`], through the [`ActivationServer`] trait, so that tests can
//! replace the service by an in-process fake. Only 3.2 and 3.3 are built (both have timestamps and
//! associated data); the HTTP flow uses 3.3, which the current SDK hard-codes.

use std::future::Future;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::TokenError;
use crate::client::{
    self, ApplicationDetail, CommitRequest, EciesDecryptorRequest, EciesDecryptorResponse,
    EciesRequestWire, EciesResponseWire, PrepareActivationRequest, PrepareActivationResponse,
};
use crate::crypto::application::ApplicationSecret;
use crate::crypto::ecies::{
    ClientEncryptor, DecryptorSecrets, EciesContext, EciesRequest, EciesResponse, Encryptor,
    EncryptorScope, NONCE_LEN, PointFormat, ProtocolVersion, SecretsDecryptor,
};
use crate::crypto::temporary_key::{self, TemporaryKeyClaims};
use crate::crypto::{
    CounterData, FactorKeys, MasterSecret, PrivateKey, PublicKey, SymmetricKey, b64,
};

/// The application's configuration as the SDK 1.9 takes it: one `mobileSdkConfig` string
/// (§5.1), `B64(0x01 ‖ 0x10 ‖ AK ‖ 0x10 ‖ AS ‖ count ‖ (id ‖ len ‖ master public key)…)`.
/// `Debug` hides the secret.
#[derive(Clone)]
pub struct SdkConfig {
    /// `APP_KEY` as Base64 text.
    pub application_key: String,
    /// `APP_SECRET`.
    pub application_secret: ApplicationSecret,
    /// `KEY_SERVER_MASTER_PUBLIC` (the one with the highest id when several are listed).
    pub master_public_key: PublicKey,
}

impl std::fmt::Debug for SdkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkConfig")
            .field("application_key", &self.application_key)
            .field("master_public_key", &self.master_public_key)
            .finish_non_exhaustive()
    }
}

impl SdkConfig {
    /// Parses a `mobileSdkConfig` string. Counts are single bytes below 128 (the format's longer
    /// counts never occur for 16-byte credentials and P-256 keys and are refused).
    ///
    /// # Errors
    /// [`TokenError::InvalidSdkConfig`] naming the first part that does not fit; never a value.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let bytes = Zeroizing::new(
            b64::decode(text.trim()).map_err(|_| TokenError::InvalidSdkConfig("not Base64"))?,
        );
        let mut reader = Reader {
            bytes: &bytes,
            at: 0,
        };
        if reader.byte("format version")? != 1 {
            return Err(TokenError::InvalidSdkConfig("format version is not 1"));
        }
        let key = reader.counted("application key")?;
        let application_key = b64::encode(key);
        let secret = Zeroizing::new(b64::encode(reader.counted("application secret")?));
        let application_secret = ApplicationSecret::from_text(&secret)
            .map_err(|_| TokenError::InvalidSdkConfig("application secret is not 16 bytes"))?;
        if key.len() != 16 {
            return Err(TokenError::InvalidSdkConfig(
                "application key is not 16 bytes",
            ));
        }
        let count = reader.byte("master key count")?;
        let mut newest: Option<(u8, PublicKey)> = None;
        for _ in 0..count {
            let id = reader.byte("master key id")?;
            let key = PublicKey::from_sec1(reader.counted("master public key")?)
                .map_err(|_| TokenError::InvalidSdkConfig("master public key is not P-256"))?;
            if newest.as_ref().is_none_or(|(best, _)| id > *best) {
                newest = Some((id, key));
            }
        }
        if reader.at != bytes.len() {
            return Err(TokenError::InvalidSdkConfig("trailing bytes"));
        }
        let (_, master_public_key) =
            newest.ok_or(TokenError::InvalidSdkConfig("no master public key"))?;
        Ok(Self {
            application_key,
            application_secret,
            master_public_key,
        })
    }

    /// The configuration of the application as a bank's set-up reads it from
    /// `application/detail`: the first supported version that carries a `mobileSdkConfig`.
    ///
    /// # Errors
    /// [`TokenError::NoApplicationVersion`] when there is none; the parse errors of
    /// [`SdkConfig::parse`].
    pub fn from_detail(detail: &ApplicationDetail) -> Result<Self, TokenError> {
        let config = detail
            .versions
            .iter()
            .filter(|v| v.supported)
            .find_map(|v| v.mobile_sdk_config.as_ref())
            .ok_or_else(|| TokenError::NoApplicationVersion(detail.application_id.clone()))?;
        Self::parse(config.expose_secret())
    }

    /// An ECIES context of this application, application scope.
    fn context(
        &self,
        key: &EciesServerKey,
        encryptor: Encryptor,
    ) -> Result<EciesContext, TokenError> {
        EciesContext::new(
            key.version,
            encryptor,
            &self.application_key,
            &self.application_secret,
            None,
            key.temporary_key_id.as_deref(),
        )
        .map_err(|e| TokenError::Ecies("context", e))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, TokenError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(TokenError::InvalidSdkConfig(what))?;
        self.at += 1;
        Ok(b)
    }

    fn counted(&mut self, what: &'static str) -> Result<&'a [u8], TokenError> {
        let len = usize::from(self.byte(what)?);
        if len >= 0x80 {
            return Err(TokenError::InvalidSdkConfig(what));
        }
        let part = self
            .bytes
            .get(self.at..self.at + len)
            .ok_or(TokenError::InvalidSdkConfig(what))?;
        self.at += len;
        Ok(part)
    }
}

/// The server key an application-scope ECIES request is encrypted to: the temporary key (3.3) or
/// the master key (3.2).
#[derive(Debug, Clone)]
pub struct EciesServerKey {
    /// `3.3` or `3.2`.
    pub version: ProtocolVersion,
    /// The temporary public key (3.3) or the master public key (3.2).
    pub public_key: PublicKey,
    /// The temporary key id (3.3 only).
    pub temporary_key_id: Option<String>,
}

impl EciesServerKey {
    /// The 3.3 key from verified `keystore/create` claims.
    pub fn temporary(claims: &TemporaryKeyClaims) -> Self {
        Self {
            version: ProtocolVersion::V3_3,
            public_key: claims.public_key,
            temporary_key_id: Some(claims.key_id.clone()),
        }
    }
}

/// SDK: the HS256 request JWT of `keystore/create` (application scope) and its fresh challenge.
pub fn temporary_key_request(
    config: &SdkConfig,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> (String, String) {
    let challenge = temporary_key::generate_challenge(rng);
    let key = temporary_key::request_key(&config.application_secret, None);
    let jwt = temporary_key::build_request(&config.application_key, None, &challenge, &key);
    (jwt, challenge)
}

/// SDK: verifies the ES256 response JWT with the master public key and that it echoes the
/// request; then that the key outlives its issue time. The SDK synchronizes its clock to `iat_ms`
/// in this very answer, so "not expired now" is `exp_ms > iat_ms` (§3.4).
///
/// # Errors
/// [`TokenError::TemporaryKeyRejected`] for a bad signature or wrong echo,
/// [`TokenError::TemporaryKeyExpired`] for a key that expires before it was issued.
pub fn temporary_key_accept(
    config: &SdkConfig,
    jwt: &str,
    challenge: &str,
) -> Result<TemporaryKeyClaims, TokenError> {
    let claims = temporary_key::verify_response(
        jwt,
        &config.master_public_key,
        &config.application_key,
        None,
        challenge,
    )
    .map_err(TokenError::TemporaryKeyRejected)?;
    if claims.expires_at_ms <= claims.issued_at_ms {
        return Err(TokenError::TemporaryKeyExpired);
    }
    Ok(claims)
}

/// What the user's phone tells the server about itself in layer 2.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// `activationName`, e.g. `My phone`.
    pub activation_name: String,
    /// `platform`, e.g. `ios` or `android`.
    pub platform: String,
    /// `deviceInfo`, e.g. `iPhone15,2`.
    pub device_info: String,
}

impl Default for DeviceInfo {
    fn default() -> Self {
        Self {
            activation_name: "offline-token".to_owned(),
            platform: "unknown".to_owned(),
            device_info: "offline-token simulator".to_owned(),
        }
    }
}

/// Layer-2 plaintext, field order as the SDK writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Layer2Plain<'a> {
    device_public_key: String,
    activation_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    activation_otp: Option<&'a str>,
    platform: &'a str,
    device_info: &'a str,
}

/// One encrypted request of the SDK: the encryptor that will read the response, and the wire.
#[derive(Debug)]
pub struct SdkRequest {
    /// Decrypts the one response to this request.
    pub encryptor: ClientEncryptor,
    /// The request as it goes on the wire.
    pub wire: EciesRequestWire,
}

/// SDK: layer 2 of the activation around `device_public` (sent **compressed**, as the SDK does),
/// with the activation OTP when it is to be checked at key exchange. The ephemeral key, nonce and
/// time are arguments so that vectors reproduce.
///
/// # Errors
/// [`TokenError::Ecies`] when the key and version do not fit together.
#[allow(clippy::too_many_arguments)]
pub fn layer2_request(
    config: &SdkConfig,
    server: &EciesServerKey,
    device_public: &PublicKey,
    device: &DeviceInfo,
    activation_otp: Option<&str>,
    ephemeral: &PrivateKey,
    nonce: [u8; NONCE_LEN],
    timestamp_ms: i64,
) -> Result<SdkRequest, TokenError> {
    let plain = Layer2Plain {
        device_public_key: b64::encode(device_public.to_compressed()),
        activation_name: &device.activation_name,
        activation_otp,
        platform: &device.platform,
        device_info: &device.device_info,
    };
    let json = Zeroizing::new(serde_json::to_vec(&plain).map_err(std::io::Error::other)?);
    sdk_encrypt(
        config,
        server,
        Encryptor::ActivationLayer2,
        &json,
        ephemeral,
        nonce,
        timestamp_ms,
    )
}

/// Layer-1 plaintext of `/pa/v3/activation/create` for an activation code.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer1Plain {
    #[serde(rename = "type")]
    kind: String,
    identity_attributes: IdentityAttributes,
    activation_data: EciesRequestWire,
}

#[derive(Serialize, Deserialize)]
struct IdentityAttributes {
    code: String,
}

/// Layer-1 response plaintext of `/pa/v3/activation/create`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer1Response {
    activation_data: EciesResponseWire,
    #[serde(default)]
    custom_attributes: serde_json::Map<String, serde_json::Value>,
}

/// SDK: layer 1 (generic application encryptor) around the code and the layer-2 request.
///
/// # Errors
/// [`TokenError::Ecies`] when the key and version do not fit together.
pub fn layer1_request(
    config: &SdkConfig,
    server: &EciesServerKey,
    code: &str,
    layer2: &EciesRequestWire,
    ephemeral: &PrivateKey,
    nonce: [u8; NONCE_LEN],
    timestamp_ms: i64,
) -> Result<SdkRequest, TokenError> {
    let plain = Layer1Plain {
        kind: "CODE".to_owned(),
        identity_attributes: IdentityAttributes {
            code: code.to_owned(),
        },
        activation_data: layer2.clone(),
    };
    let json = Zeroizing::new(serde_json::to_vec(&plain).map_err(std::io::Error::other)?);
    sdk_encrypt(
        config,
        server,
        Encryptor::ApplicationScopeGeneric,
        &json,
        ephemeral,
        nonce,
        timestamp_ms,
    )
}

fn sdk_encrypt(
    config: &SdkConfig,
    server: &EciesServerKey,
    encryptor: Encryptor,
    plaintext: &[u8],
    ephemeral: &PrivateKey,
    nonce: [u8; NONCE_LEN],
    timestamp_ms: i64,
) -> Result<SdkRequest, TokenError> {
    let context = config.context(server, encryptor)?;
    let (encryptor, request) = ClientEncryptor::encrypt_request(
        &context,
        &server.public_key,
        ephemeral,
        PointFormat::Compressed,
        plaintext,
        nonce,
        timestamp_ms,
    );
    Ok(SdkRequest {
        encryptor,
        wire: request_to_wire(&request, server.temporary_key_id.as_deref()),
    })
}

/// The wire form of an encrypted request (3.2+: nonce and timestamp present).
pub fn request_to_wire(request: &EciesRequest, temporary_key_id: Option<&str>) -> EciesRequestWire {
    EciesRequestWire {
        temporary_key_id: temporary_key_id.map(str::to_owned),
        ephemeral_public_key: request.ephemeral_public_key.to_base64(),
        encrypted_data: b64::encode(&request.encrypted_data),
        mac: b64::encode(&request.mac),
        nonce: b64::encode(request.nonce.unwrap_or_default()),
        timestamp: request.timestamp_ms.unwrap_or_default(),
    }
}

/// Reads a wire request back (server or enrollment side).
///
/// # Errors
/// [`TokenError::Ecies`] for bad Base64, a nonce that is not 16 bytes or an invalid point.
pub fn request_from_wire(wire: &EciesRequestWire) -> Result<EciesRequest, TokenError> {
    EciesRequest::from_base64(
        &wire.ephemeral_public_key,
        &wire.encrypted_data,
        &wire.mac,
        Some(&wire.nonce),
        Some(wire.timestamp),
    )
    .map_err(|e| TokenError::Ecies("request fields", e))
}

/// The wire form of an encrypted response.
pub fn response_to_wire(response: &EciesResponse) -> EciesResponseWire {
    EciesResponseWire {
        encrypted_data: b64::encode(&response.encrypted_data),
        mac: b64::encode(&response.mac),
        nonce: b64::encode(response.nonce.unwrap_or_default()),
        timestamp: response.timestamp_ms.unwrap_or_default(),
    }
}

/// Reads a wire response back.
///
/// # Errors
/// [`TokenError::Ecies`] for bad Base64 or a nonce that is not 16 bytes.
pub fn response_from_wire(wire: &EciesResponseWire) -> Result<EciesResponse, TokenError> {
    EciesResponse::from_base64(
        &wire.encrypted_data,
        &wire.mac,
        Some(&wire.nonce),
        Some(wire.timestamp),
    )
    .map_err(|e| TokenError::Ecies("response fields", e))
}

/// Enrollment server: the decryptor of one application-scope layer-1 request (§2.6), keyed by the
/// `/ecies/decryptor` answer alone (the private key never leaves the service); it decrypts the
/// request and its [`crate::crypto::ecies::ServerEncryptor`] encrypts the response.
///
/// # Errors
/// [`TokenError::InvalidServerValue`] when `secretKey` is not 48 bytes or `sharedInfo2` not 32;
/// [`TokenError::Ecies`] for a temporary key id that does not fit the version.
pub fn enrollment_decryptor(
    version: ProtocolVersion,
    secrets: &EciesDecryptorResponse,
    application_key: &str,
    temporary_key_id: Option<&str>,
) -> Result<SecretsDecryptor, TokenError> {
    let secrets = DecryptorSecrets::from_base64(
        secrets.secret_key.expose_secret(),
        secrets.shared_info2.expose_secret(),
    )
    .map_err(|_| TokenError::InvalidServerValue("ecies/decryptor answer"))?;
    SecretsDecryptor::new(
        version,
        EncryptorScope::Application,
        &secrets,
        application_key,
        None,
        temporary_key_id,
    )
    .map_err(|e| TokenError::Ecies("enrollment decryptor", e))
}

/// Enrollment server: reads the decrypted layer-1 plaintext: the code and the layer-2 request.
///
/// # Errors
/// [`TokenError::InvalidServerValue`] when it is not a `CODE` activation of the expected shape.
pub fn read_layer1_request(plaintext: &[u8]) -> Result<(String, EciesRequestWire), TokenError> {
    let plain: Layer1Plain = serde_json::from_slice(plaintext)
        .map_err(|_| TokenError::InvalidServerValue("layer-1 request"))?;
    if plain.kind != "CODE" {
        return Err(TokenError::InvalidServerValue("layer-1 activation type"));
    }
    Ok((plain.identity_attributes.code, plain.activation_data))
}

/// Enrollment server: the layer-1 response plaintext around the layer-2 response.
pub fn layer1_response_plaintext(layer2: &EciesResponseWire) -> Zeroizing<Vec<u8>> {
    let plain = Layer1Response {
        activation_data: layer2.clone(),
        custom_attributes: serde_json::Map::new(),
    };
    Zeroizing::new(serde_json::to_vec(&plain).expect("a struct of strings serializes"))
}

/// SDK: decrypts the layer-1 response and returns the layer-2 response inside it.
///
/// # Errors
/// [`TokenError::Ecies`] for a bad MAC or padding; [`TokenError::InvalidServerValue`] for a
/// plaintext of the wrong shape.
pub fn read_layer1_response(
    encryptor: &ClientEncryptor,
    wire: &EciesResponseWire,
) -> Result<EciesResponseWire, TokenError> {
    let plain = encryptor
        .decrypt_response(&response_from_wire(wire)?)
        .map_err(|e| TokenError::Ecies("layer-1 response", e))?;
    let plain: Layer1Response = serde_json::from_slice(&plain)
        .map_err(|_| TokenError::InvalidServerValue("layer-1 response"))?;
    Ok(plain.activation_data)
}

/// The decrypted layer-2 response (§5.3 step 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer2Result {
    /// The activation id.
    pub activation_id: String,
    /// `KEY_SERVER_PUBLIC`.
    pub server_public_key: PublicKey,
    /// The initial counter data.
    pub ctr_data: CounterData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer2Plain2 {
    activation_id: String,
    server_public_key: String,
    ctr_data: String,
}

/// SDK: decrypts the layer-2 response and checks its values: a P-256 server public key, 16 bytes
/// of `ctrData`, an activation id.
///
/// # Errors
/// [`TokenError::Ecies`] for a bad MAC or padding; [`TokenError::InvalidServerValue`] otherwise.
pub fn read_layer2_response(
    encryptor: &ClientEncryptor,
    wire: &EciesResponseWire,
) -> Result<Layer2Result, TokenError> {
    let plain = encryptor
        .decrypt_response(&response_from_wire(wire)?)
        .map_err(|e| TokenError::Ecies("layer-2 response", e))?;
    let plain: Layer2Plain2 = serde_json::from_slice(&plain)
        .map_err(|_| TokenError::InvalidServerValue("layer-2 response"))?;
    if plain.activation_id.is_empty() {
        return Err(TokenError::InvalidServerValue("activation id"));
    }
    Ok(Layer2Result {
        server_public_key: PublicKey::from_base64(&plain.server_public_key)
            .map_err(|_| TokenError::InvalidServerValue("server public key"))?,
        ctr_data: CounterData::from_base64(&plain.ctr_data)
            .map_err(|_| TokenError::InvalidServerValue("ctrData"))?,
        activation_id: plain.activation_id,
    })
}

/// The keys a device derives after the key exchange:
/// `KEY_MASTER_SECRET = REDUCE(ECDH_X(devicePrivate, serverPublic))`, then `Kp, Kk, Kb` (1, 2, 3) and
/// `KEY_TRANSPORT` (1000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatedKeys {
    /// Kp, Kk, Kb.
    pub factor_keys: FactorKeys,
    /// `KEY_TRANSPORT`.
    pub transport_key: SymmetricKey,
}

impl ActivatedKeys {
    /// Derives the keys from the device private key and the server public key.
    pub fn derive(device_private: &PrivateKey, server_public: &PublicKey) -> Self {
        let derived = MasterSecret::agree(device_private, server_public).derive();
        Self {
            factor_keys: FactorKeys::from_derived(&derived),
            transport_key: derived.transport.clone(),
        }
    }
}

/// The service methods an activation by code and a remote status use; [`client::Client`] calls
/// them over HTTP, tests may answer them in process.
pub trait ActivationServer {
    /// The service's base URL (kept in the state file).
    fn base_url(&self) -> &str;
    /// `application/detail`.
    fn application_detail(
        &self,
        application_id: &str,
    ) -> impl Future<Output = Result<ApplicationDetail, client::ClientError>> + Send;
    /// `keystore/create`: request JWT in, response JWT out.
    fn keystore_create(
        &self,
        jwt: &str,
    ) -> impl Future<Output = Result<String, client::ClientError>> + Send;
    /// `ecies/decryptor`.
    fn ecies_decryptor(
        &self,
        request: &EciesDecryptorRequest,
    ) -> impl Future<Output = Result<EciesDecryptorResponse, client::ClientError>> + Send;
    /// `activation/prepare`.
    fn activation_prepare(
        &self,
        request: &PrepareActivationRequest,
    ) -> impl Future<Output = Result<PrepareActivationResponse, client::ClientError>> + Send;
    /// `activation/commit`.
    fn activation_commit(
        &self,
        request: &CommitRequest,
    ) -> impl Future<Output = Result<(), client::ClientError>> + Send;
    /// `activation/status` with a challenge.
    fn activation_status(
        &self,
        activation_id: &str,
        challenge: &str,
    ) -> impl Future<Output = Result<client::ActivationStatus, client::ClientError>> + Send;
}

impl ActivationServer for client::Client {
    fn base_url(&self) -> &str {
        client::Client::base_url(self)
    }

    async fn application_detail(
        &self,
        application_id: &str,
    ) -> Result<ApplicationDetail, client::ClientError> {
        client::Client::application_detail(self, application_id).await
    }

    async fn keystore_create(&self, jwt: &str) -> Result<String, client::ClientError> {
        client::Client::keystore_create(self, jwt).await
    }

    async fn ecies_decryptor(
        &self,
        request: &EciesDecryptorRequest,
    ) -> Result<EciesDecryptorResponse, client::ClientError> {
        client::Client::ecies_decryptor(self, request).await
    }

    async fn activation_prepare(
        &self,
        request: &PrepareActivationRequest,
    ) -> Result<PrepareActivationResponse, client::ClientError> {
        client::Client::activation_prepare(self, request).await
    }

    async fn activation_commit(&self, request: &CommitRequest) -> Result<(), client::ClientError> {
        client::Client::activation_commit_with(self, request).await
    }

    async fn activation_status(
        &self,
        activation_id: &str,
        challenge: &str,
    ) -> Result<client::ActivationStatus, client::ClientError> {
        client::Client::activation_status_with_challenge(self, activation_id, challenge).await
    }
}

/// Where the activation OTP goes (§4.4): into layer 2 for commit phase `ON_KEY_EXCHANGE`, or into
/// `activation/commit` for `ON_COMMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtpPlacement {
    /// Sent with `activation/commit` (commit phase `ON_COMMIT`, the default).
    #[default]
    Commit,
    /// Sent inside layer 2 to `activation/prepare` (commit phase `ON_KEY_EXCHANGE`).
    KeyExchange,
}

/// What [`crate::Token::activate_with_code`] needs besides the server.
#[derive(Debug, Clone)]
pub struct CodeActivation {
    /// The application (to fetch `mobileSdkConfig` when `sdk_config` is `None`, and for the state).
    pub application_id: String,
    /// The activation code, or the QR payload `CODE#SIGNATURE`.
    pub code: String,
    /// The activation signature (Base64 DER), when not part of `code`.
    pub code_signature: Option<String>,
    /// `mobileSdkConfig`; fetched from `application/detail` when `None`.
    pub sdk_config: Option<SecretString>,
    /// The activation OTP, if the activation was initialized with one.
    pub activation_otp: Option<SecretString>,
    /// Where the OTP goes.
    pub otp_placement: OtpPlacement,
    /// What the device says about itself.
    pub device: DeviceInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    // `spec/powerauth-activation.md` §8.2.
    const CONFIG: &str = "ARBYLyBECwyv+0Nmd0fYa+9nEGE+cjK1dVz4UvrJE4gEpawBAUEE0ls34mLg5CXOfv6M81v/9hZMHjyVJWlrQnoQWKrpc6+LV5L8L4NUZlA7HZOHg6vkVEQeudNjBGcWTBviYyq65Q==";

    #[test]
    fn sdk_config_parses_the_worked_example_and_refuses_damage() {
        let config = SdkConfig::parse(CONFIG).unwrap();
        assert_eq!(config.application_key, "WC8gRAsMr/tDZndH2GvvZw==");
        assert_eq!(
            config.application_secret.expose_text(),
            "YT5yMrV1XPhS+skTiASlrA=="
        );
        assert!(!format!("{config:?}").contains("YT5yMrV1"));
        let bytes = b64::decode(CONFIG).unwrap();
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        let mut long_count = bytes.clone();
        long_count[1] = 0x81;
        let mut trailing = bytes.clone();
        trailing.push(0);
        for (bad, why) in [
            (b64::encode(&bytes[..bytes.len() - 1]), "master public key"),
            (b64::encode(&wrong_version), "format version is not 1"),
            (b64::encode(&long_count), "application key"),
            (b64::encode(&trailing), "trailing bytes"),
            ("not base64".to_owned(), "not Base64"),
        ] {
            match SdkConfig::parse(&bad) {
                Err(TokenError::InvalidSdkConfig(reason)) => assert_eq!(reason, why),
                other => panic!("{why}: {other:?}"),
            }
        }
    }
}
