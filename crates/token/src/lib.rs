//! offline-token: the phone side of offline-signer, for development, tests and benchmarks.
//!
//! A software mobile token that activates against the service, checks QR payloads and shows offline
//! codes (`spec/powerauth-offline.md` §9), the QR rendering of payloads, and the HTTP load generator of
//! the benchmark. It knows the pure PowerAuth math ([`crypto`], the `offline-signer-crypto` crate) and
//! talks to the service over its public HTTP API only, as a phone and a bank's web application do.
//!
//! - [`Token::activate`]: makes a device key pair, registers and commits it through the
//!   [`client::Client`], checks the activation fingerprint, derives the factor keys and returns the
//!   [`TokenState`] to save. The device private key is dropped once the factor keys exist.
//! - [`Token::sign`]: parses an `offlineData` payload, refuses it unless its ECDSA signature verifies
//!   with the key its indicator names (server key for `1`, master key for `0`), decodes the operation
//!   for display ([`operation`]), computes the decimal code over
//!   `POST&B64(uriId)&NONCE&B64(OPERATION_ID&OPERATION_DATA[&TOTP])&offline` at the current counter,
//!   and advances the counter, as a phone does for every code it shows. The caller persists the state
//!   **before** showing the code ([`cli`] does).
//!
//! - [`Token::activate_with_code`]: activation by activation code, protocol 3.3, playing both the
//!   mobile SDK and the enrollment server ([`activation`]); [`Token::activate`] (register) stays as
//!   the test path that needs no code.
//! - [`Token::remote_status`]: `activation/status` with a fresh challenge, the decrypted status
//!   blob and the counter check of `spec/powerauth-activation.md` §6.3.
//!
//! Modules: [`activation`] (activation by code), [`state`] (the state file), [`operation`] (the §5 grammar), [`client`] (the REST client
//! both the token and a web application use), [`cli`] (the `offline-token` token subcommands),
//! [`qr`] (QR codes), [`input`] (reading a payload from stdin), [`bench`] (the benchmark driver).

use std::fmt;

use serde::Serialize;

use rand::RngCore as _;
use secrecy::ExposeSecret as _;

use crate::activation::{
    ActivatedKeys, ActivationServer, CodeActivation, EciesServerKey, OtpPlacement, SdkConfig,
};
use crate::crypto::activation_code::ActivationCode;
use crate::crypto::ecies::NONCE_LEN;
use crate::crypto::offline_data::DEFAULT_URI_ID;
use crate::crypto::signature::decimal_signature;
use crate::crypto::status_blob::{self, CounterSync, StatusBlob};
use crate::crypto::{
    ComponentLength, CounterData, CryptoError, DerSignature, KeyIndicator, OfflineData, PrivateKey,
    PublicKey, RequestData, SignatureType, SymmetricKey, b64, fingerprint,
};

pub mod activation;
pub mod bench;
pub mod cli;
pub mod client;
pub mod input;
pub mod operation;
pub mod qr;
pub mod state;

pub use offline_signer_crypto as crypto;

pub use operation::Operation;
pub use state::{StateFileError, TokenState};

/// Why the token refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The QR text is not an `offlineData` payload (§4.3).
    #[error("not an offline-signature QR payload: {0}")]
    MalformedPayload(CryptoError),
    /// The payload has fewer than 7 lines, so it is not a Web Flow operation this token can show.
    #[error("the QR payload is not a Web Flow operation (it needs at least 7 lines)")]
    NotWebFlow,
    /// The ECDSA signature does not verify with the key the indicator names.
    #[error(
        "REFUSED: the QR code's signature does not verify with the {0} key; it was not made by \
         your bank's server for this token, or it was altered"
    )]
    ForgedPayload(&'static str),
    /// Biometry was asked for but the operation's flags do not contain `B`.
    #[error("REFUSED: this operation does not allow biometry (no B flag); approve it with the PIN")]
    BiometryNotAllowed,
    /// A component length outside 4..=8.
    #[error("invalid code length: {0}")]
    InvalidLength(CryptoError),
    /// A key from the server is not a P-256 public key, or `ctrData` is malformed.
    #[error("the server sent an invalid {0}")]
    InvalidServerValue(&'static str),
    /// The fingerprint the server computed differs from ours: someone may sit in the middle.
    #[error(
        "REFUSED: activation fingerprint mismatch (server says {server}, token computed {local}); \
         the activation was not committed"
    )]
    FingerprintMismatch {
        /// What the server reported.
        server: String,
        /// What the token computed.
        local: String,
    },
    /// `mobileSdkConfig` is not the format of §5.1 (names the part, never a value).
    #[error("invalid mobileSdkConfig: {0}")]
    InvalidSdkConfig(&'static str),
    /// `application/detail` lists no supported version with a `mobileSdkConfig`.
    #[error("application {0:?} has no supported version with a mobileSdkConfig; pass --sdk-config")]
    NoApplicationVersion(String),
    /// The activation code (or its QR payload) is malformed.
    #[error("invalid activation code: {0}")]
    InvalidActivationCode(CryptoError),
    /// The activation code's signature does not verify with the master public key.
    #[error(
        "REFUSED: the activation code's signature does not verify with the application's master \
         public key; the code was not issued by this server, or it was altered"
    )]
    ActivationCodeSignature,
    /// The `keystore/create` answer does not verify or does not echo the request.
    #[error("REFUSED: the temporary key from keystore/create is not valid: {0}")]
    TemporaryKeyRejected(CryptoError),
    /// The temporary key expires before it was issued.
    #[error("REFUSED: the temporary key from keystore/create is already expired")]
    TemporaryKeyExpired,
    /// An ECIES step failed on the SDK side (bad MAC, padding or fields).
    #[error("ECIES {0} failed: {1}")]
    Ecies(&'static str, CryptoError),
    /// The enrollment side could not decrypt layer 1 with the `/ecies/decryptor` secrets.
    #[error("the enrollment server could not decrypt layer 1 with the secrets of ecies/decryptor")]
    EnrollmentDecryption,
    /// Two answers of the server disagree (e.g. the activation id in layer 2 and in prepare).
    #[error("REFUSED: the server's answers disagree on the {0}")]
    ActivationMismatch(&'static str),
    /// The state has no `KEY_TRANSPORT`, so the status blob cannot be read.
    #[error(
        "this token state has no transport key (written by an older version); activate again to \
         read the encrypted status"
    )]
    NoTransportKey,
    /// The status blob does not decrypt to a valid blob.
    #[error("the encrypted status blob is not valid: {0}")]
    StatusBlob(CryptoError),
    /// The REST call failed.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] StateFileError),
    /// Reading the payload from stdin or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// How to sign one operation.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// Possession + biometry instead of possession + knowledge (needs the `B` flag).
    pub biometry: bool,
    /// Digits per component, 4..=8.
    pub length: ComponentLength,
    /// The `uriId` of the normalized data; Web Flow's `/operation/authorize/offline` by default.
    pub uri_id: String,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            biometry: false,
            length: ComponentLength::DEFAULT,
            uri_id: DEFAULT_URI_ID.to_owned(),
        }
    }
}

/// The result of approving one operation: the code and what the web application needs to verify it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedOperation {
    /// The code to type, e.g. `29703108-68382858`.
    pub code: String,
    /// The exact `data` the web application sends to verify: `RequestData` WITHOUT the TOTP (the
    /// server appends the TOTP itself, §8.1).
    pub data: String,
    /// The nonce line of the QR.
    pub nonce: String,
    /// `POSSESSION_KNOWLEDGE` or `POSSESSION_BIOMETRY`.
    pub signature_type: &'static str,
    /// Whether the web application must send `allowBiometry: true` (the QR had the `B` flag).
    pub allow_biometry: bool,
    /// Digits per component.
    pub component_length: u8,
    /// Which key signed the QR: `personalized` (`1`) or `master` (`0`).
    pub key: &'static str,
    /// The proximity TOTP, when the QR had one.
    pub proximity: Option<Proximity>,
    /// The activation the code belongs to.
    pub activation_id: String,
    /// Codes made by this token so far (after this one).
    pub counter: u64,
    /// The decoded operation (not serialized; shown to the user).
    #[serde(skip)]
    pub operation: Operation,
}

impl fmt::Debug for SignedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedOperation")
            .field("code", &"REDACTED")
            .field("data", &self.data)
            .field("signature_type", &self.signature_type)
            .field("proximity", &self.proximity)
            .finish_non_exhaustive()
    }
}

/// The proximity part of a signed QR.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proximity {
    /// The TOTP line the server put into the QR; the phone signed over it.
    pub totp: String,
}

/// A software mobile token around one [`TokenState`].
#[derive(Debug, Clone)]
pub struct Token {
    state: TokenState,
}

/// What [`Token::activate`] needs besides the client.
#[derive(Debug, Clone)]
pub struct Activation {
    /// The application to activate in.
    pub application_id: String,
    /// The user to register.
    pub user_id: String,
    /// Failed attempts before the server blocks (server default when `None`).
    pub max_failed_attempts: Option<u32>,
}

/// The token side of an activation between "key pair made" and "registered": holds the device
/// private key until [`PendingActivation::complete`] has derived the factor keys, then drops it.
#[derive(Debug)]
pub struct PendingActivation {
    device_private: PrivateKey,
    server_url: String,
    application_id: String,
    user_id: String,
}

impl PendingActivation {
    /// Draws a fresh device key pair (OS CSPRNG).
    pub fn new(server_url: &str, activation: &Activation) -> Self {
        Self {
            device_private: PrivateKey::generate(&mut rand::rngs::OsRng),
            server_url: server_url.to_owned(),
            application_id: activation.application_id.clone(),
            user_id: activation.user_id.clone(),
        }
    }

    /// The device public key to register.
    pub fn device_public_key(&self) -> PublicKey {
        self.device_private.public_key()
    }

    /// Checks the server's answer to register and derives the token state: the server public key
    /// and `ctrData` must be well formed, and the server's fingerprint must equal
    /// `fingerprint_v3(device, activationId, server)` computed here (else
    /// [`TokenError::FingerprintMismatch`]). The factor keys come from
    /// `KDF(REDUCE(ECDH_X(devicePrivate, serverPublic)), 1|2|3)`; the device private key is dropped.
    pub fn complete(
        self,
        registered: &client::Registered,
        master_public_key: &str,
    ) -> Result<TokenState, TokenError> {
        let master_public_key = PublicKey::from_base64(master_public_key)
            .map_err(|_| TokenError::InvalidServerValue("master public key"))?;
        let server_public_key = PublicKey::from_base64(&registered.server_public_key)
            .map_err(|_| TokenError::InvalidServerValue("server public key"))?;
        let counter_data = CounterData::from_base64(&registered.ctr_data)
            .map_err(|_| TokenError::InvalidServerValue("ctrData"))?;
        let device_public_key = self.device_public_key();
        let local = fingerprint::fingerprint_v3(
            &device_public_key,
            &registered.activation_id,
            &server_public_key,
        );
        if local != registered.device_public_key_fingerprint {
            return Err(TokenError::FingerprintMismatch {
                server: registered.device_public_key_fingerprint.clone(),
                local,
            });
        }
        let keys = ActivatedKeys::derive(&self.device_private, &server_public_key);
        Ok(TokenState {
            server_url: self.server_url,
            application_id: self.application_id,
            user_id: self.user_id,
            activation_id: registered.activation_id.clone(),
            device_public_key,
            server_public_key,
            master_public_key,
            factor_keys: keys.factor_keys,
            counter_data,
            counter: 0,
            // The service derives and stores KEY_TRANSPORT at register too (§7.3).
            transport_key: Some(keys.transport_key),
            protocol_version: None,
        })
    }
}

impl Token {
    /// Wraps a state (loaded from a file or freshly activated).
    pub fn new(state: TokenState) -> Self {
        Self { state }
    }

    /// The state; persist it after [`Token::sign`] and before showing the code.
    pub fn state(&self) -> &TokenState {
        &self.state
    }

    /// Gives the state back.
    pub fn into_state(self) -> TokenState {
        self.state
    }

    /// Activates a new token: application detail (master key), a fresh device key pair, register,
    /// fingerprint check, commit. `persist` runs after the fingerprint check and **before** the
    /// commit, so that a committed activation always has its keys saved; if it fails nothing is
    /// committed.
    pub async fn activate(
        client: &client::Client,
        activation: &Activation,
        persist: impl FnOnce(&TokenState) -> Result<(), TokenError>,
    ) -> Result<Self, TokenError> {
        let detail = client
            .application_detail(&activation.application_id)
            .await?;
        let pending = PendingActivation::new(client.base_url(), activation);
        let registered = client
            .activation_register(&client::RegisterRequest {
                application_id: activation.application_id.clone(),
                user_id: activation.user_id.clone(),
                device_public_key: pending.device_public_key().to_base64(),
                max_failed_attempts: activation.max_failed_attempts,
                activation_flags: Vec::new(),
            })
            .await?;
        let state = pending.complete(&registered, &detail.master_public_key)?;
        persist(&state)?;
        client.activation_commit(&state.activation_id).await?;
        Ok(Self { state })
    }

    /// Activates a new token with an activation code, protocol 3.3, playing the mobile SDK and
    /// the enrollment server (see [`activation`]):
    ///
    /// 1. SDK: `mobileSdkConfig` from `activation.sdk_config` or `application/detail`; the code's
    ///    signature (when given) must verify with its master public key; `keystore/create` with the
    ///    HS256 request JWT, whose ES256 answer must verify with the master public key; the clock
    ///    offset to the server is taken from its `iat_ms`; layer 2 around a fresh device key pair,
    ///    layer 1 around the code and layer 2.
    /// 2. Enrollment server: `ecies/decryptor` for layer 1's envelope, decrypts layer 1,
    ///    `activation/prepare` with the code and the untouched layer 2, encrypts its layer-1
    ///    response.
    /// 3. SDK: decrypts both layers, checks the activation id, server public key and `ctrData`,
    ///    derives Kp, Kk, Kb and `KEY_TRANSPORT`; `persist` runs **before** the commit; then
    ///    `activation/commit` (with the OTP when it belongs there) unless prepare answered `ACTIVE`.
    ///
    /// # Errors
    /// Any refusal of the service ([`TokenError::Client`]), a code or signature that does not
    /// check, a temporary key or response that does not verify, or `persist`'s error; nothing is
    /// committed then.
    pub async fn activate_with_code<S: ActivationServer>(
        server: &S,
        activation: &CodeActivation,
        persist: impl FnOnce(&TokenState) -> Result<(), TokenError>,
    ) -> Result<Self, TokenError> {
        let mut rng = rand::rngs::OsRng;
        let (code, embedded) = ActivationCode::parse_qr_payload(activation.code.trim())
            .map_err(TokenError::InvalidActivationCode)?;
        let signature = match &activation.code_signature {
            Some(text) => Some(
                DerSignature::from_base64(text.trim())
                    .map_err(TokenError::InvalidActivationCode)?,
            ),
            None => embedded,
        };

        // --- the SDK ---
        let config = match &activation.sdk_config {
            Some(text) => SdkConfig::parse(text.expose_secret())?,
            None => SdkConfig::from_detail(
                &server
                    .application_detail(&activation.application_id)
                    .await?,
            )?,
        };
        if let Some(signature) = &signature {
            code.verify_signature(&config.master_public_key, signature)
                .map_err(|_| TokenError::ActivationCodeSignature)?;
        }
        let (jwt, challenge) = activation::temporary_key_request(&config, &mut rng);
        let answer = server.keystore_create(&jwt).await?;
        let claims = activation::temporary_key_accept(&config, &answer, &challenge)?;
        let offset_ms = claims.issued_at_ms.saturating_sub(now_ms());
        let server_now = || now_ms().saturating_add(offset_ms);
        let key = EciesServerKey::temporary(&claims);
        let device_private = PrivateKey::generate(&mut rng);
        let otp_in_layer2 = match activation.otp_placement {
            OtpPlacement::KeyExchange => activation
                .activation_otp
                .as_ref()
                .map(|otp| otp.expose_secret()),
            OtpPlacement::Commit => None,
        };
        let layer2 = activation::layer2_request(
            &config,
            &key,
            &device_private.public_key(),
            &activation.device,
            otp_in_layer2,
            &PrivateKey::generate(&mut rng),
            random_nonce(&mut rng),
            server_now(),
        )?;
        let layer1 = activation::layer1_request(
            &config,
            &key,
            code.as_str(),
            &layer2.wire,
            &PrivateKey::generate(&mut rng),
            random_nonce(&mut rng),
            server_now(),
        )?;

        // --- the enrollment server, receiving layer 1 ---
        let request = activation::request_from_wire(&layer1.wire)?;
        let secrets = server
            .ecies_decryptor(&client::EciesDecryptorRequest {
                activation_id: None,
                application_key: config.application_key.clone(),
                temporary_key_id: layer1.wire.temporary_key_id.clone(),
                ephemeral_public_key: layer1.wire.ephemeral_public_key.clone(),
                nonce: layer1.wire.nonce.clone(),
                protocol_version: key.version.as_str().to_owned(),
                timestamp: layer1.wire.timestamp,
            })
            .await?;
        let decryptor = activation::enrollment_decryptor(
            key.version,
            &secrets,
            &config.application_key,
            layer1.wire.temporary_key_id.as_deref(),
        )?;
        let (layer1_server, layer1_plain) = decryptor
            .decrypt_request(&request)
            .map_err(|_| TokenError::EnrollmentDecryption)?;
        let (enrolled_code, inner) = activation::read_layer1_request(&layer1_plain)?;
        let prepared = server
            .activation_prepare(&client::PrepareActivationRequest {
                activation_code: enrolled_code,
                application_key: config.application_key.clone(),
                generate_recovery_codes: false,
                protocol_version: key.version.as_str().to_owned(),
                layer2: inner,
            })
            .await?;
        let mut response_nonce = random_nonce(&mut rng);
        while request.nonce == Some(response_nonce) {
            response_nonce = random_nonce(&mut rng);
        }
        let layer1_response = layer1_server
            .encrypt_response(
                &activation::layer1_response_plaintext(&prepared.layer2),
                response_nonce,
                now_ms(),
            )
            .map_err(|e| TokenError::Ecies("layer-1 response", e))?;

        // --- the SDK, receiving the answer ---
        let layer2_response = activation::read_layer1_response(
            &layer1.encryptor,
            &activation::response_to_wire(&layer1_response),
        )?;
        let result = activation::read_layer2_response(&layer2.encryptor, &layer2_response)?;
        if result.activation_id != prepared.activation_id {
            return Err(TokenError::ActivationMismatch("activation id"));
        }
        let keys = ActivatedKeys::derive(&device_private, &result.server_public_key);
        let state = TokenState {
            server_url: server.base_url().to_owned(),
            application_id: prepared
                .application_id
                .clone()
                .unwrap_or_else(|| activation.application_id.clone()),
            user_id: prepared.user_id.clone().unwrap_or_default(),
            activation_id: result.activation_id,
            device_public_key: device_private.public_key(),
            server_public_key: result.server_public_key,
            master_public_key: config.master_public_key,
            factor_keys: keys.factor_keys,
            counter_data: result.ctr_data,
            counter: 0,
            transport_key: Some(keys.transport_key),
            protocol_version: Some(key.version),
        };
        persist(&state)?;
        match prepared.activation_status.as_str() {
            // Commit phase ON_KEY_EXCHANGE: the server committed at prepare.
            "ACTIVE" => {}
            "PENDING_COMMIT" => {
                server
                    .activation_commit(&client::CommitRequest {
                        activation_id: state.activation_id.clone(),
                        external_user_id: None,
                        activation_otp: match activation.otp_placement {
                            OtpPlacement::Commit => activation.activation_otp.clone(),
                            OtpPlacement::KeyExchange => None,
                        },
                    })
                    .await?
            }
            _ => {
                return Err(TokenError::InvalidServerValue(
                    "activation status after prepare",
                ));
            }
        }
        Ok(Self { state })
    }

    /// Asks the service for the activation's status with a fresh random challenge and reads the
    /// encrypted status blob with `KEY_TRANSPORT` ([`check_remote_status`]). When the server's
    /// counter is ahead (§6.3), the token adopts it: persist the state afterwards if
    /// [`RemoteStatus::state_changed`].
    ///
    /// # Errors
    /// [`TokenError::NoTransportKey`] for old states; the service's refusal; a blob that does not
    /// decrypt or parse.
    pub async fn remote_status<S: ActivationServer>(
        &mut self,
        server: &S,
    ) -> Result<RemoteStatus, TokenError> {
        if self.state.transport_key.is_none() {
            return Err(TokenError::NoTransportKey);
        }
        let mut challenge = [0u8; status_blob::CHALLENGE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        let answer = server
            .activation_status(&self.state.activation_id, &b64::encode(challenge))
            .await?;
        let report = check_remote_status(&self.state, &challenge, &answer)?;
        if let CounterSync::ServerAhead {
            steps,
            counter_data,
        } = report.sync
        {
            self.state.counter_data = counter_data;
            self.state.counter += u64::from(steps);
        }
        Ok(RemoteStatus {
            counter: self.state.counter,
            ..report
        })
    }

    /// Checks and signs one QR payload, advancing the counter (see the module documentation).
    /// Nothing changes when it refuses.
    pub fn sign(
        &mut self,
        offline_data: &str,
        options: &SignOptions,
    ) -> Result<SignedOperation, TokenError> {
        let parsed = OfflineData::parse(offline_data).map_err(TokenError::MalformedPayload)?;
        let (key, key_name) = match parsed.indicator() {
            KeyIndicator::Personalized => (&self.state.server_public_key, "personalized"),
            KeyIndicator::Master => (&self.state.master_public_key, "master"),
        };
        parsed
            .verify(key)
            .map_err(|_| TokenError::ForgedPayload(key_name))?;
        let fields = parsed.web_flow().ok_or(TokenError::NotWebFlow)?;
        let operation = Operation::from_web_flow(&fields);
        if options.biometry && !fields.allows_biometry() {
            return Err(TokenError::BiometryNotAllowed);
        }
        let signature_type = if options.biometry {
            SignatureType::PossessionBiometry
        } else {
            SignatureType::PossessionKnowledge
        };
        let nonce = parsed.nonce();
        let signed = fields.request_data(&options.uri_id, nonce);
        let code = decimal_signature(
            &self.state.factor_keys,
            signature_type,
            &self.state.counter_data,
            signed.to_data_to_sign().as_bytes(),
            options.length,
        );
        self.state.counter_data = self.state.counter_data.next();
        self.state.counter += 1;
        let for_verify = RequestData::for_operation(
            &options.uri_id,
            nonce,
            fields.operation_id,
            fields.operation_data,
            None,
        );
        Ok(SignedOperation {
            code,
            data: for_verify.as_str().to_owned(),
            nonce: nonce.to_owned(),
            signature_type: signature_type.wire_name(),
            allow_biometry: fields.allows_biometry(),
            component_length: options.length.get(),
            key: key_name,
            proximity: fields.totp.map(|t| Proximity { totp: t.to_owned() }),
            activation_id: self.state.activation_id.clone(),
            counter: self.state.counter,
            operation,
        })
    }
}

/// The answer of [`Token::remote_status`], printed as JSON by `offline-token status --remote`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteStatus {
    /// The activation id.
    pub activation_id: String,
    /// The status inside the encrypted blob (authenticated by `KEY_TRANSPORT`).
    pub activation_status: &'static str,
    /// The status in the clear JSON of the answer.
    pub server_activation_status: String,
    /// Why the activation is blocked, if the server says.
    pub blocked_reason: Option<String>,
    /// The activation's protocol version (blob `CURRENT_VERSION`).
    pub current_version: u8,
    /// The highest version the server offers (blob `UPGRADE_VERSION`).
    pub upgrade_version: u8,
    /// Failed attempts so far (blob).
    pub failed_attempts: u8,
    /// Failed attempts allowed (blob).
    pub max_failed_attempts: u8,
    /// The server's counter look-ahead (blob).
    pub ctr_look_ahead: u8,
    /// The server's counter byte (blob `CTR_BYTE`).
    pub server_counter_byte: u8,
    /// The outcome of the counter check of §6.3.
    pub counter_sync: CounterSyncReport,
    /// The token's counter after the check.
    pub counter: u64,
    /// Whether the token adopted the server's counter (the state must be saved).
    pub state_changed: bool,
    /// The fingerprint the token computes.
    pub fingerprint: String,
    /// The fingerprint the server reports, if it does.
    pub server_fingerprint: Option<String>,
    /// The raw counter check, for callers.
    #[serde(skip)]
    pub sync: CounterSync,
}

/// The counter check of §6.3 as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSyncReport {
    /// `IN_SYNC`, `CLIENT_AHEAD`, `SERVER_AHEAD` or `DEADLOCK`.
    pub result: &'static str,
    /// How many steps apart (0 in sync; absent for a deadlock).
    pub steps: Option<u8>,
    /// More than half of the look-ahead used: make a signature soon.
    pub sign_soon: bool,
}

impl From<CounterSync> for CounterSyncReport {
    fn from(sync: CounterSync) -> Self {
        let (result, steps, sign_soon) = match sync {
            CounterSync::InSync => ("IN_SYNC", Some(0), false),
            CounterSync::ClientAhead { steps, sign_soon } => {
                ("CLIENT_AHEAD", Some(steps), sign_soon)
            }
            CounterSync::ServerAhead { steps, .. } => ("SERVER_AHEAD", Some(steps), false),
            CounterSync::Deadlock => ("DEADLOCK", None, false),
        };
        Self {
            result,
            steps,
            sign_soon,
        }
    }
}

/// Reads an `activation/status` answer to `challenge` with the state's `KEY_TRANSPORT`:
/// decrypts `encryptedStatusBlob` with `encryptedStatusBlobNonce` (§6.2), checks it (magic, status,
/// look-ahead) and runs the counter check of §6.3 against the state's counter data and the low
/// byte of its counter. Pure: the state is not changed (see [`Token::remote_status`]).
///
/// # Errors
/// [`TokenError::NoTransportKey`]; [`TokenError::InvalidServerValue`] for a missing or malformed
/// blob or nonce; [`TokenError::StatusBlob`] for a blob that does not decrypt to a valid one.
pub fn check_remote_status(
    state: &TokenState,
    challenge: &[u8; status_blob::CHALLENGE_LEN],
    answer: &client::ActivationStatus,
) -> Result<RemoteStatus, TokenError> {
    let transport: &SymmetricKey = state
        .transport_key
        .as_ref()
        .ok_or(TokenError::NoTransportKey)?;
    let encrypted: [u8; status_blob::BLOB_LEN] = answer
        .encrypted_status_blob
        .as_deref()
        .and_then(|text| b64::decode_array(text).ok())
        .ok_or(TokenError::InvalidServerValue("encryptedStatusBlob"))?;
    let nonce: [u8; status_blob::CHALLENGE_LEN] = answer
        .encrypted_status_blob_nonce
        .as_deref()
        .and_then(|text| b64::decode_array(text).ok())
        .ok_or(TokenError::InvalidServerValue("encryptedStatusBlobNonce"))?;
    let blob: StatusBlob = status_blob::decrypt(transport, challenge, &nonce, &encrypted)
        .map_err(TokenError::StatusBlob)?;
    let counter_byte = (state.counter & 0xFF) as u8;
    let sync = status_blob::counter_sync(transport, &state.counter_data, counter_byte, &blob);
    Ok(RemoteStatus {
        activation_id: state.activation_id.clone(),
        activation_status: blob.status.as_str(),
        server_activation_status: answer.activation_status.clone(),
        blocked_reason: answer.blocked_reason.clone(),
        current_version: blob.current_version,
        upgrade_version: blob.upgrade_version,
        failed_attempts: blob.failed_attempts,
        max_failed_attempts: blob.max_failed_attempts,
        ctr_look_ahead: blob.ctr_look_ahead,
        server_counter_byte: blob.ctr_byte,
        counter_sync: sync.into(),
        counter: state.counter,
        state_changed: matches!(sync, CounterSync::ServerAhead { .. }),
        fingerprint: state.fingerprint(),
        server_fingerprint: answer.device_public_key_fingerprint.clone(),
        sync,
    })
}

/// Unix milliseconds of the local clock (0 before 1970).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn random_nonce(rng: &mut impl rand::RngCore) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{FactorKeys, MasterSecret, UnsignedOfflineData, ecdsa};

    // §11 of powerauth-offline.md.
    const SERVER_PRIVATE: &str = "AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc";
    const DEVICE_PUBLIC: &str =
        "BH/XZpylbWzTHS9LWR7ckCfHPPOG0MrsP9C2hmXXgQYpzmKSP4w0SpZz5227RKpEGkIq3Jew6p3KxrbUGDTC+nU=";
    const WORKED_QR: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425\nB\nAD8bOO0Df73kNaIGb3Vmpg==\n1MEUCIQCe2urpMWYRSmx1/GIiOHImHe9wEPZLCHghRBhc8ssZ0wIgbdYNS2aRUmlLoQBEOSClWNLI3Z0Ys1d72o0MFAsvbZ8=";
    const WORKED_DATA: &str = "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AD8bOO0Df73kNaIGb3Vmpg==&NWZmMWIxZWQtYTNjYy00NWEzLThhYjAtZWQ2MDk1MDMxMmI2JkExKkExMDBDWksqSUNaMjczMDMwMDAwMDAwMTE2NTI1NDAxMSpEMjAxODA0MjU=";
    const NONCE: &str = "AD8bOO0Df73kNaIGb3Vmpg==";
    const WEB_FLOW: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425";

    fn server_key() -> PrivateKey {
        PrivateKey::from_base64(SERVER_PRIVATE).unwrap()
    }

    /// A state holding the §11 keys at counter `ctr[index]`; the master key is a different key.
    fn worked_state(index: u32) -> TokenState {
        let mut zero_to_15 = [0u8; 16];
        for (i, b) in zero_to_15.iter_mut().enumerate() {
            *b = i as u8;
        }
        TokenState {
            server_url: "http://127.0.0.1:8080".into(),
            application_id: "demo".into(),
            user_id: "alice".into(),
            activation_id: "c564e700-7e86-4a87-b6c8-a5a0cc89683f".into(),
            device_public_key: PublicKey::from_base64(DEVICE_PUBLIC).unwrap(),
            server_public_key: server_key().public_key(),
            master_public_key: master_key().public_key(),
            factor_keys: FactorKeys::new(
                SymmetricKey::from_base64("UUOQH89Hoa/Nw7ew5rGTPw==").unwrap(),
                SymmetricKey::from_base64("hjHWTy3HA3nQdDcdnJbRMw==").unwrap(),
                SymmetricKey::from_base64("S9fNvGUhUafp18upFWzCoA==").unwrap(),
            ),
            counter_data: CounterData::from_bytes(zero_to_15).advance(index),
            counter: u64::from(index),
            transport_key: None,
            protocol_version: None,
        }
    }

    fn master_key() -> PrivateKey {
        let mut scalar = [0u8; 32];
        scalar[31] = 0x2a;
        PrivateKey::from_scalar_bytes(&scalar).unwrap()
    }

    fn qr(data: &str, totp: Option<&str>, indicator: KeyIndicator, key: &PrivateKey) -> String {
        let unsigned = UnsignedOfflineData::new(data, totp, NONCE, indicator);
        let sig = ecdsa::sign(key, unsigned.signed_bytes());
        unsigned.finish(&sig)
    }

    #[test]
    fn worked_example_codes_at_every_counter() {
        let expected = [
            ("29703108-68382858", "29703108-17227518", "3108-2858"),
            ("86435449-95476512", "86435449-21970772", "5449-6512"),
            ("92510869-07292276", "92510869-15335316", "0869-2276"),
            ("26556379-88347212", "26556379-99597121", "6379-7212"),
            ("83974001-01909017", "83974001-60861972", "4001-9017"),
        ];
        for (i, (pin, bio, short)) in expected.iter().enumerate() {
            let i = i as u32;
            let mut token = Token::new(worked_state(i));
            let signed = token.sign(WORKED_QR, &SignOptions::default()).unwrap();
            assert_eq!(signed.code, *pin, "possession_knowledge at ctr[{i}]");
            assert_eq!(signed.data, WORKED_DATA);
            assert_eq!(signed.nonce, NONCE);
            assert_eq!(signed.signature_type, "POSSESSION_KNOWLEDGE");
            assert!(signed.allow_biometry);
            assert_eq!(signed.key, "personalized");
            assert!(signed.proximity.is_none());
            assert_eq!(token.state().counter_data, worked_state(i + 1).counter_data);
            assert_eq!(token.state().counter, u64::from(i) + 1);

            let mut token = Token::new(worked_state(i));
            let options = SignOptions {
                biometry: true,
                ..SignOptions::default()
            };
            let signed = token.sign(WORKED_QR, &options).unwrap();
            assert_eq!(signed.code, *bio, "possession_biometry at ctr[{i}]");
            assert_eq!(signed.signature_type, "POSSESSION_BIOMETRY");

            let mut token = Token::new(worked_state(i));
            let options = SignOptions {
                length: ComponentLength::new(4).unwrap(),
                ..SignOptions::default()
            };
            assert_eq!(token.sign(WORKED_QR, &options).unwrap().code, *short);
        }
    }

    #[test]
    fn each_code_advances_the_counter() {
        let mut token = Token::new(worked_state(0));
        let codes: Vec<_> = (0..3)
            .map(|_| token.sign(WORKED_QR, &SignOptions::default()).unwrap().code)
            .collect();
        assert_eq!(
            codes,
            [
                "29703108-68382858",
                "86435449-95476512",
                "92510869-07292276"
            ]
        );
        assert_eq!(token.state().counter, 3);
    }

    #[test]
    fn proximity_code_signs_over_the_totp_but_data_omits_it() {
        let qr = qr(
            &format!("{WEB_FLOW}\nB"),
            Some("62793923"),
            KeyIndicator::Personalized,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        let signed = token.sign(&qr, &SignOptions::default()).unwrap();
        assert_eq!(signed.code, "69974790-64981258");
        assert_eq!(
            signed.data, WORKED_DATA,
            "the web application's data has no TOTP"
        );
        assert_eq!(signed.proximity.as_ref().unwrap().totp, "62793923");
        let json = serde_json::to_value(&signed).unwrap();
        assert_eq!(json["proximity"]["totp"], "62793923");
        assert_eq!(json["code"], "69974790-64981258");
        assert_eq!(json["signatureType"], "POSSESSION_KNOWLEDGE");
        assert_eq!(json["allowBiometry"], true);
        assert_eq!(json["data"], WORKED_DATA);
        assert_eq!(json["nonce"], NONCE);
    }

    #[test]
    fn non_personalized_qr_checks_the_master_key() {
        let qr0 = qr(
            &format!("{WEB_FLOW}\n"),
            None,
            KeyIndicator::Master,
            &master_key(),
        );
        let mut token = Token::new(worked_state(0));
        let signed = token.sign(&qr0, &SignOptions::default()).unwrap();
        assert_eq!(signed.key, "master");
        assert_eq!(signed.code, "29703108-68382858");
        assert!(!signed.allow_biometry);
        // The same content signed by the activation's key but claiming indicator 0 is refused.
        let wrong = qr(
            &format!("{WEB_FLOW}\n"),
            None,
            KeyIndicator::Master,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        assert!(matches!(
            token.sign(&wrong, &SignOptions::default()),
            Err(TokenError::ForgedPayload("master"))
        ));
    }

    #[test]
    fn refuses_a_tampered_qr_and_keeps_the_counter() {
        let bytes = WORKED_QR.as_bytes();
        for position in [0, 40, 60, 100, bytes.len() - 130, bytes.len() - 5] {
            let mut tampered = bytes.to_vec();
            tampered[position] ^= 0x01;
            let Ok(text) = String::from_utf8(tampered) else {
                continue;
            };
            let mut token = Token::new(worked_state(0));
            let err = token.sign(&text, &SignOptions::default()).unwrap_err();
            assert!(
                matches!(
                    err,
                    TokenError::ForgedPayload(_) | TokenError::MalformedPayload(_)
                ),
                "byte {position}: {err}"
            );
            assert_eq!(token.state(), &worked_state(0), "nothing advanced");
        }
    }

    #[test]
    fn refuses_a_qr_signed_by_the_wrong_key() {
        let other = PrivateKey::generate(&mut rand::rngs::OsRng);
        let forged = qr(
            &format!("{WEB_FLOW}\nB"),
            None,
            KeyIndicator::Personalized,
            &other,
        );
        let mut token = Token::new(worked_state(0));
        let err = token.sign(&forged, &SignOptions::default()).unwrap_err();
        assert!(matches!(err, TokenError::ForgedPayload("personalized")));
        assert!(err.to_string().contains("REFUSED"));
        assert_eq!(token.state().counter, 0);
    }

    #[test]
    fn biometry_needs_the_b_flag() {
        let no_b = qr(
            &format!("{WEB_FLOW}\nX"),
            None,
            KeyIndicator::Personalized,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        let options = SignOptions {
            biometry: true,
            ..SignOptions::default()
        };
        assert!(matches!(
            token.sign(&no_b, &options),
            Err(TokenError::BiometryNotAllowed)
        ));
        assert_eq!(token.state().counter, 0, "a refusal does not advance");
        assert!(token.sign(&no_b, &SignOptions::default()).is_ok());
    }

    #[test]
    fn refuses_non_web_flow_payloads() {
        let short = qr(
            "just one line",
            None,
            KeyIndicator::Personalized,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        assert!(matches!(
            token.sign(&short, &SignOptions::default()),
            Err(TokenError::NotWebFlow)
        ));
        assert!(matches!(
            token.sign("garbage", &SignOptions::default()),
            Err(TokenError::MalformedPayload(_))
        ));
    }

    #[test]
    fn activation_checks_the_fingerprint_and_derives_the_server_keys() {
        let activation = Activation {
            application_id: "demo".into(),
            user_id: "alice".into(),
            max_failed_attempts: None,
        };
        let pending = PendingActivation::new("http://127.0.0.1:8080", &activation);
        let device = pending.device_public_key();
        // Play the server: its own key pair, the same ECDH, the same KDF.
        let server = PrivateKey::generate(&mut rand::rngs::OsRng);
        let id = "0d2b7c1e-6f3a-4b8e-9c1d-2e3f4a5b6c7d";
        let mut registered = client::Registered {
            activation_id: id.into(),
            activation_status: "PENDING_COMMIT".into(),
            server_public_key: server.public_key().to_base64(),
            ctr_data: "AAECAwQFBgcICQoLDA0ODw==".into(),
            device_public_key_fingerprint: fingerprint::fingerprint_v3(
                &device,
                id,
                &server.public_key(),
            ),
        };
        let master = master_key().public_key().to_base64();
        let right = registered.device_public_key_fingerprint.clone();
        registered.device_public_key_fingerprint = "12345678".into();
        let again = PendingActivation {
            device_private: pending.device_private.clone(),
            ..PendingActivation::new("http://x", &activation)
        };
        assert!(matches!(
            again.complete(&registered, &master),
            Err(TokenError::FingerprintMismatch { .. })
        ));
        registered.device_public_key_fingerprint = right;
        let state = pending.complete(&registered, &master).unwrap();
        let expected = FactorKeys::from_master_secret(&MasterSecret::agree(&server, &device));
        assert_eq!(state.factor_keys, expected);
        assert_eq!(state.activation_id, id);
        assert_eq!(state.counter, 0);
        assert_eq!(
            state.fingerprint(),
            registered.device_public_key_fingerprint
        );
    }

    #[test]
    fn debug_hides_the_code() {
        let mut token = Token::new(worked_state(0));
        let signed = token.sign(WORKED_QR, &SignOptions::default()).unwrap();
        assert!(!format!("{signed:?}").contains("29703108"));
    }
}
