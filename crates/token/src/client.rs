//! A small HTTP client for the service's REST API (`spec/api.md`), one method per endpoint.
//!
//! Both sides of an end-to-end flow use it: the token (register, commit, application detail, status)
//! and the "web application" (create payloads, verify codes, block, unblock, remove). Requests are
//! wrapped as `{"requestObject": {...}}`; a `{"status":"OK","responseObject":{...}}` answer yields the
//! response object, an `{"status":"ERROR","responseObject":{"code","message"}}` answer yields
//! [`ClientError::Service`] with the code and message. Plain HTTP only (no TLS in this build): the
//! client is meant for a service on localhost or behind a TLS-terminating proxy. Integration
//! credentials go as HTTP Basic on every request when given.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Environment variable holding the integration client token (as in `credentials.env`).
pub const CLIENT_TOKEN_ENV: &str = "OFFLINE_SIGNER_CLIENT_TOKEN";
/// Environment variable holding the integration client secret.
pub const CLIENT_SECRET_ENV: &str = "OFFLINE_SIGNER_CLIENT_SECRET";

/// What went wrong talking to the service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request did not reach the service or the answer could not be read.
    #[error("cannot reach the service at {url}: {source}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The service answered with its error envelope.
    #[error("the service refused {path}: {code}: {message} (HTTP {status})")]
    Service {
        /// The endpoint path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The error code, e.g. `ERR0009`.
        code: String,
        /// The English message.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected answer from {path} (HTTP {status}): {detail}")]
    Protocol {
        /// The endpoint path.
        path: String,
        /// HTTP status.
        status: u16,
        /// What was wrong (at most the first 200 characters of the body).
        detail: String,
    },
    /// The base URL cannot be used.
    #[error("invalid server URL {0:?}: use http://host:port")]
    InvalidUrl(String),
}

impl ClientError {
    /// The service error code, when the service answered with its error envelope.
    pub fn service_code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Integration credentials (client token and secret); `Debug` hides the secret.
#[derive(Clone)]
pub struct Credentials {
    /// The client token (user name of HTTP Basic).
    pub client_token: String,
    /// The client secret (password of HTTP Basic).
    pub client_secret: SecretString,
}

impl Credentials {
    /// Groups a token and a secret.
    pub fn new(client_token: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_token: client_token.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }

    /// Reads [`CLIENT_TOKEN_ENV`] and [`CLIENT_SECRET_ENV`]; `None` when either is unset or empty.
    pub fn from_env() -> Option<Self> {
        let token = std::env::var(CLIENT_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())?;
        let secret = std::env::var(CLIENT_SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty())?;
        Some(Self::new(token, secret))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_token", &self.client_token)
            .field("client_secret", &"REDACTED")
            .finish()
    }
}

/// Answer of `application/create` and `application/detail`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDetail {
    /// The application id.
    pub application_id: String,
    /// Roles (usually empty).
    #[serde(default)]
    pub application_roles: Vec<String>,
    /// Base64 of the newest master public key.
    pub master_public_key: String,
    /// The application versions (`spec/powerauth-activation.md` §5.1); empty from a server that
    /// does not list them.
    #[serde(default)]
    pub versions: Vec<ApplicationVersion>,
}

/// One entry of `versions[]` in `application/detail` (§5.1). `Debug` hides the secret and the
/// configuration that embeds it.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationVersion {
    /// The version id, e.g. `default`.
    pub application_version_id: String,
    /// `APP_KEY`: Base64 text of 16 bytes.
    pub application_key: String,
    /// `APP_SECRET`: Base64 text of 16 bytes.
    #[serde(deserialize_with = "secret")]
    pub application_secret: SecretString,
    /// The single-string SDK configuration (key, secret, master public key).
    #[serde(default, deserialize_with = "optional_secret")]
    pub mobile_sdk_config: Option<SecretString>,
    /// Whether the version is still accepted.
    #[serde(default = "yes")]
    pub supported: bool,
}

fn yes() -> bool {
    true
}

fn secret<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
    String::deserialize(deserializer).map(SecretString::from)
}

fn optional_secret<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(SecretString::from))
}

impl fmt::Debug for ApplicationVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationVersion")
            .field("application_version_id", &self.application_version_id)
            .field("application_key", &self.application_key)
            .field("supported", &self.supported)
            .finish_non_exhaustive()
    }
}

/// The ECIES fields of an encrypted request on the wire (§2.4), in upstream's order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EciesRequestWire {
    /// The temporary key the request is encrypted to (3.3 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_key_id: Option<String>,
    /// Base64 of `EPH` as sent (the SDK sends 33 compressed bytes).
    pub ephemeral_public_key: String,
    /// Base64 of the ciphertext.
    pub encrypted_data: String,
    /// Base64 of the 32-byte MAC.
    pub mac: String,
    /// Base64 of the 16-byte nonce.
    pub nonce: String,
    /// Unix milliseconds.
    pub timestamp: i64,
}

/// The ECIES fields of an encrypted response on the wire (§2.5).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EciesResponseWire {
    /// Base64 of the ciphertext.
    pub encrypted_data: String,
    /// Base64 of the 32-byte MAC.
    pub mac: String,
    /// Base64 of the 16-byte response nonce.
    pub nonce: String,
    /// Unix milliseconds of the response.
    pub timestamp: i64,
}

/// Request of `ecies/decryptor` (§5.7), as the enrollment server sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EciesDecryptorRequest {
    /// Present for activation-scope requests only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_id: Option<String>,
    /// `APP_KEY`.
    pub application_key: String,
    /// The temporary key id (3.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_key_id: Option<String>,
    /// Base64 of `EPH` as the client sent it.
    pub ephemeral_public_key: String,
    /// Base64 of the request nonce (replay check).
    pub nonce: String,
    /// `"3.3"`.
    pub protocol_version: String,
    /// The request timestamp (replay check).
    pub timestamp: i64,
}

/// Answer of `ecies/decryptor`: the envelope key and `SH2_BASE` in clear (§2.6). `Debug` hides
/// both.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EciesDecryptorResponse {
    /// Base64 of the 48-byte envelope key.
    #[serde(deserialize_with = "secret")]
    pub secret_key: SecretString,
    /// Base64 of the 32-byte `SH2_BASE`.
    #[serde(deserialize_with = "secret")]
    pub shared_info2: SecretString,
}

impl fmt::Debug for EciesDecryptorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EciesDecryptorResponse(REDACTED)")
    }
}

/// Request of `activation/prepare` (§5.3): the activation code and application key around the
/// layer-2 request, which the enrollment server forwards untouched.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareActivationRequest {
    /// The activation code (without the signature).
    pub activation_code: String,
    /// `APP_KEY`.
    pub application_key: String,
    /// Always `false`: recovery codes are not supported.
    pub generate_recovery_codes: bool,
    /// `"3.3"`.
    pub protocol_version: String,
    /// Layer 2's ECIES fields, untouched.
    #[serde(flatten)]
    pub layer2: EciesRequestWire,
}

/// Answer of `activation/prepare` (§5.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareActivationResponse {
    /// The activation id.
    pub activation_id: String,
    /// The user id given at init.
    pub user_id: Option<String>,
    /// The application id.
    pub application_id: Option<String>,
    /// `PENDING_COMMIT`, or `ACTIVE` when the commit phase is `ON_KEY_EXCHANGE`.
    pub activation_status: String,
    /// The layer-2 response.
    #[serde(flatten)]
    pub layer2: EciesResponseWire,
}

/// Request of `activation/commit` with the fields of §5.5.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRequest {
    /// The activation to commit.
    pub activation_id: String,
    /// Who commits (the bank's user id), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    /// The activation OTP, when the activation was initialized with one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_optional"
    )]
    pub activation_otp: Option<SecretString>,
}

impl fmt::Debug for CommitRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitRequest")
            .field("activation_id", &self.activation_id)
            .field("external_user_id", &self.external_user_id)
            .field(
                "activation_otp",
                &self.activation_otp.as_ref().map(|_| "REDACTED"),
            )
            .finish()
    }
}

fn expose_optional<S: serde::Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) => serializer.serialize_some(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// Request of `activation/register`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The application id.
    pub application_id: String,
    /// The user id.
    pub user_id: String,
    /// Base64 of the device public key (SEC1).
    pub device_public_key: String,
    /// Failed attempts before blocking (1..=64); the server default when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failed_attempts: Option<u32>,
    /// Flags to attach to the activation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub activation_flags: Vec<String>,
}

/// Answer of `activation/register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    /// The new activation id.
    pub activation_id: String,
    /// `PENDING_COMMIT`.
    pub activation_status: String,
    /// Base64 of the activation's server public key.
    pub server_public_key: String,
    /// Base64 of the initial 16-byte counter data.
    pub ctr_data: String,
    /// The 8-digit v3 fingerprint the server computed.
    pub device_public_key_fingerprint: String,
}

/// Answer of `activation/status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationStatus {
    /// The activation id.
    pub activation_id: String,
    /// `CREATED | PENDING_COMMIT | ACTIVE | BLOCKED | REMOVED`.
    pub activation_status: String,
    /// Why it is blocked, if it is.
    pub blocked_reason: Option<String>,
    /// The user id.
    pub user_id: Option<String>,
    /// The application id.
    pub application_id: Option<String>,
    /// Failed attempts so far.
    #[serde(default)]
    pub failed_attempts: u32,
    /// Failed attempts allowed.
    #[serde(default)]
    pub max_failed_attempts: u32,
    /// The fingerprint.
    pub device_public_key_fingerprint: Option<String>,
    /// Base64 of the 32-byte encrypted status blob (§5.6, §6).
    #[serde(default)]
    pub encrypted_status_blob: Option<String>,
    /// Base64 of the server's 16-byte status nonce; present when a challenge was sent.
    #[serde(default)]
    pub encrypted_status_blob_nonce: Option<String>,
    /// The activation's protocol version (3 once a device key is bound).
    #[serde(default)]
    pub version: Option<u32>,
}

/// The proximity check of a create request (`seed`, `stepLength`) or a verify request (+ `stepCount`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProximityCheck {
    /// Base64 TOTP seed.
    pub seed: String,
    /// Seconds per TOTP step.
    pub step_length: u64,
    /// Earlier steps accepted by verify (not sent by create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_count: Option<u32>,
}

/// Request of `signature/offline/personalized/create`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatePersonalized {
    /// The activation the QR is for.
    pub activation_id: String,
    /// The Web Flow `DATA` (§5).
    pub data: String,
    /// A caller-chosen nonce (Base64 of 16 bytes); the server draws one when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Adds a proximity TOTP line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proximity_check: Option<ProximityCheck>,
}

/// Answer of both create methods.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflinePayload {
    /// The QR payload.
    pub offline_data: String,
    /// The nonce inside it; the web application keeps it.
    pub nonce: String,
}

/// Request of `signature/offline/verify`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    /// The activation.
    pub activation_id: String,
    /// `POST&B64(uriId)&NONCE&B64(body)` without the TOTP.
    pub data: String,
    /// The code the user typed, e.g. `12345678-90123456`.
    pub signature: String,
    /// Accept `POSSESSION_BIOMETRY` too.
    pub allow_biometry: bool,
    /// Digits per component (4..=8); the server default when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_length: Option<u8>,
    /// The proximity check, when the QR had a TOTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proximity_check: Option<ProximityCheck>,
}

/// Answer of `signature/offline/verify`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the code matched.
    pub signature_valid: bool,
    /// Status after this attempt.
    pub activation_status: String,
    /// Why the activation is blocked, if it is.
    pub blocked_reason: Option<String>,
    /// Echo of the activation id.
    pub activation_id: String,
    /// Owner of the activation.
    pub user_id: Option<String>,
    /// Application of the activation.
    pub application_id: Option<String>,
    /// `POSSESSION_KNOWLEDGE` or `POSSESSION_BIOMETRY`.
    pub signature_type: Option<String>,
    /// Attempts left before blocking.
    pub remaining_attempts: Option<u32>,
    /// `VALID | UNKNOWN | EXPIRED | CONSUMED | MISMATCH`, or `None` when the registry is off or the
    /// answer came before the nonce check.
    pub nonce_status: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    request_object: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    response_object: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ById<'a> {
    activation_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ByApplication<'a> {
    application_id: &'a str,
}

/// An HTTP client bound to one service base URL (e.g. `http://127.0.0.1:8080`).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
}

impl Client {
    /// A client for `base_url` (scheme `http`), sending `credentials` as HTTP Basic when given.
    /// Each request times out after 30 seconds.
    pub fn new(base_url: &str, credentials: Option<Credentials>) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: base.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            credentials,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /metrics`: the Prometheus text, or `Ok(None)` when the service answers anything but 200
    /// (metrics switched off, or served on `ops_listen` only).
    pub async fn metrics_text(&self) -> Result<Option<String>, ClientError> {
        let (url, response) = self.get("/metrics").await?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Unreachable { url, source })?;
        Ok(Some(text))
    }

    /// `GET /health`: `Ok(true)` on HTTP 200.
    pub async fn health(&self) -> Result<bool, ClientError> {
        Ok(self.get("/health").await?.1.status().is_success())
    }

    /// `GET` of an operations endpoint (no credential); the URL and the answer.
    async fn get(&self, path: &str) -> Result<(String, reqwest::Response), ClientError> {
        let url = format!("{}{path}", self.base);
        match self.http.get(&url).send().await {
            Ok(response) => Ok((url, response)),
            Err(source) => Err(ClientError::Unreachable { url, source }),
        }
    }

    /// `POST /rest/v3/application/create`.
    pub async fn application_create(
        &self,
        application_id: &str,
    ) -> Result<ApplicationDetail, ClientError> {
        self.call(
            "/rest/v3/application/create",
            &ByApplication { application_id },
        )
        .await
    }

    /// `POST /rest/v3/application/detail`.
    pub async fn application_detail(
        &self,
        application_id: &str,
    ) -> Result<ApplicationDetail, ClientError> {
        self.call(
            "/rest/v3/application/detail",
            &ByApplication { application_id },
        )
        .await
    }

    /// `POST /rest/v3/activation/register`.
    pub async fn activation_register(
        &self,
        request: &RegisterRequest,
    ) -> Result<Registered, ClientError> {
        self.call("/rest/v3/activation/register", request).await
    }

    /// `POST /rest/v3/activation/commit`.
    pub async fn activation_commit(&self, activation_id: &str) -> Result<(), ClientError> {
        self.call::<_, serde_json::Value>("/rest/v3/activation/commit", &ById { activation_id })
            .await
            .map(drop)
    }

    /// `POST /rest/v3/activation/status`.
    pub async fn activation_status(
        &self,
        activation_id: &str,
    ) -> Result<ActivationStatus, ClientError> {
        self.call("/rest/v3/activation/status", &ById { activation_id })
            .await
    }

    /// `POST /rest/v3/activation/status` with a status `challenge` (Base64 of 16 bytes), so that the
    /// answer carries the encrypted status blob and its nonce (§5.6).
    ///
    /// # Errors
    /// [`ClientError`]: transport failure, the service's error envelope, or an unexpected answer.
    pub async fn activation_status_with_challenge(
        &self,
        activation_id: &str,
        challenge: &str,
    ) -> Result<ActivationStatus, ClientError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Status<'a> {
            activation_id: &'a str,
            challenge: &'a str,
        }
        self.call(
            "/rest/v3/activation/status",
            &Status {
                activation_id,
                challenge,
            },
        )
        .await
    }

    /// `POST /rest/v3/keystore/create` with the SDK's HS256 request JWT; returns the ES256 response
    /// JWT (§3).
    ///
    /// # Errors
    /// [`ClientError`]: transport failure, the service's error envelope, or an unexpected answer.
    pub async fn keystore_create(&self, jwt: &str) -> Result<String, ClientError> {
        #[derive(Serialize)]
        struct Request<'a> {
            jwt: &'a str,
        }
        #[derive(Deserialize)]
        struct Response {
            jwt: String,
        }
        let answer: Response = self
            .call("/rest/v3/keystore/create", &Request { jwt })
            .await?;
        Ok(answer.jwt)
    }

    /// `POST /rest/v3/ecies/decryptor` (§5.7).
    ///
    /// # Errors
    /// [`ClientError`]: transport failure, the service's error envelope, or an unexpected answer.
    pub async fn ecies_decryptor(
        &self,
        request: &EciesDecryptorRequest,
    ) -> Result<EciesDecryptorResponse, ClientError> {
        self.call("/rest/v3/ecies/decryptor", request).await
    }

    /// `POST /rest/v3/activation/prepare` (§5.3).
    ///
    /// # Errors
    /// [`ClientError`]: transport failure, the service's error envelope, or an unexpected answer.
    pub async fn activation_prepare(
        &self,
        request: &PrepareActivationRequest,
    ) -> Result<PrepareActivationResponse, ClientError> {
        self.call("/rest/v3/activation/prepare", request).await
    }

    /// `POST /rest/v3/activation/commit` with the optional OTP and external user id (§5.5).
    ///
    /// # Errors
    /// [`ClientError`]: transport failure, the service's error envelope, or an unexpected answer.
    pub async fn activation_commit_with(&self, request: &CommitRequest) -> Result<(), ClientError> {
        self.call::<_, serde_json::Value>("/rest/v3/activation/commit", request)
            .await
            .map(drop)
    }

    /// `POST /rest/v3/activation/block` with an optional reason.
    pub async fn activation_block(
        &self,
        activation_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Block<'a> {
            activation_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
        }
        self.call::<_, serde_json::Value>(
            "/rest/v3/activation/block",
            &Block {
                activation_id,
                reason,
            },
        )
        .await
        .map(drop)
    }

    /// `POST /rest/v3/activation/unblock`.
    pub async fn activation_unblock(&self, activation_id: &str) -> Result<(), ClientError> {
        self.call::<_, serde_json::Value>("/rest/v3/activation/unblock", &ById { activation_id })
            .await
            .map(drop)
    }

    /// `POST /rest/v3/activation/remove`.
    pub async fn activation_remove(&self, activation_id: &str) -> Result<(), ClientError> {
        self.call::<_, serde_json::Value>("/rest/v3/activation/remove", &ById { activation_id })
            .await
            .map(drop)
    }

    /// `POST /rest/v3/signature/offline/personalized/create`.
    pub async fn create_personalized(
        &self,
        request: &CreatePersonalized,
    ) -> Result<OfflinePayload, ClientError> {
        self.call("/rest/v3/signature/offline/personalized/create", request)
            .await
    }

    /// `POST /rest/v3/signature/offline/non-personalized/create`.
    pub async fn create_non_personalized(
        &self,
        application_id: &str,
        data: &str,
    ) -> Result<OfflinePayload, ClientError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Create<'a> {
            application_id: &'a str,
            data: &'a str,
        }
        self.call(
            "/rest/v3/signature/offline/non-personalized/create",
            &Create {
                application_id,
                data,
            },
        )
        .await
    }

    /// `POST /rest/v3/signature/offline/verify`.
    pub async fn verify(&self, request: &VerifyRequest) -> Result<VerifyResponse, ClientError> {
        self.call("/rest/v3/signature/offline/verify", request)
            .await
    }

    /// Sends `{"requestObject": body}` to `path` and unwraps the answer envelope.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.post(&url).json(&Envelope {
            request_object: body,
        });
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.client_token, Some(c.client_secret.expose_secret()));
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Unreachable { url, source })?;
        let protocol = |detail: String| ClientError::Protocol {
            path: path.to_owned(),
            status,
            detail,
        };
        let answer: Answer = serde_json::from_str(&text)
            .map_err(|_| protocol(format!("not a JSON envelope: {}", excerpt(&text))))?;
        match answer.status.as_str() {
            "OK" if status == 200 => serde_json::from_value(answer.response_object)
                .map_err(|e| protocol(format!("response object: {e}"))),
            "ERROR" => {
                let field = |name: &str| {
                    answer
                        .response_object
                        .get(name)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                Err(ClientError::Service {
                    path: path.to_owned(),
                    status,
                    code: field("code"),
                    message: field("message"),
                })
            }
            other => Err(protocol(format!("status {other:?}"))),
        }
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_the_wire_names() {
        let verify = VerifyRequest {
            activation_id: "a".into(),
            data: "POST&x&y&z".into(),
            signature: "1-2".into(),
            allow_biometry: true,
            component_length: Some(4),
            proximity_check: Some(ProximityCheck {
                seed: "AA==".into(),
                step_length: 30,
                step_count: Some(1),
            }),
        };
        let json = serde_json::to_value(Envelope {
            request_object: &verify,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"requestObject": {
                "activationId": "a", "data": "POST&x&y&z", "signature": "1-2",
                "allowBiometry": true, "componentLength": 4,
                "proximityCheck": {"seed": "AA==", "stepLength": 30, "stepCount": 1}
            }})
        );
        let create = CreatePersonalized {
            activation_id: "a".into(),
            data: "d".into(),
            nonce: None,
            proximity_check: None,
        };
        assert_eq!(
            serde_json::to_value(&create).unwrap(),
            serde_json::json!({"activationId": "a", "data": "d"})
        );
    }

    #[test]
    fn base_url_must_be_plain_http() {
        assert!(Client::new("http://127.0.0.1:8080/", None).is_ok());
        assert_eq!(
            Client::new("http://127.0.0.1:8080/", None)
                .unwrap()
                .base_url(),
            "http://127.0.0.1:8080"
        );
        assert!(matches!(
            Client::new("https://bank.example", None),
            Err(ClientError::InvalidUrl(_))
        ));
        assert!(Client::new("127.0.0.1:8080", None).is_err());
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials::new("tok", "very-secret-value");
        assert!(!format!("{c:?}").contains("very-secret-value"));
    }
}
