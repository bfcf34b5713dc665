//! Activation by activation code, protocol 3.3 (`spec/powerauth-activation.md`): application
//! versions, `activation/init`, temporary keys (`keystore/create`), `ecies/decryptor`,
//! `activation/prepare`, `activation/commit` with the activation OTP and `activation/status` with
//! the encrypted status blob.
//!
//! Where the keys live (§7): every private key (master, per-activation server key, temporary key)
//! stays in the HSM or leaves it only wrapped; the ECDH x-coordinates come out of the HSM for one
//! request; the application secret, the activation OTP and `KEY_TRANSPORT` are stored sealed under
//! the DEK and opened per request.
//!
//! Every ECIES request passes [`Service::ecies_gate`] before anything is looked up: protocol 3.3
//! only, shape, the timestamp window and the durable replay registry. Each failure is ERR0024.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{
    ActivationInfo, ApplicationDetail, Service, ServiceError, activation_audit, check_name,
    factor_keys_aad, seal_factor_keys, signing_failed,
};
use crate::crypto::activation_code::ActivationCode;
use crate::crypto::application::{ApplicationSecret, generate_application_key, mobile_sdk_config};
use crate::crypto::ecies::{
    self, EciesContext, EciesRequest, Encryptor, EncryptorScope, EphemeralPublicKey,
    ProtocolVersion, ServerEncryptor,
};
use crate::crypto::status_blob::{self, StatusBlob};
use crate::crypto::temporary_key::{RequestJwt, TemporaryKeyClaims, assemble_response};
use crate::crypto::{CounterData, CryptoError, FactorKeys, MasterSecret, SymmetricKey, b64};
use crate::model::{ActivationStatus, CommitPhase, PublicKey, Timestamp};
use crate::signer::KeyRef;
use crate::store::{
    Activation, Application, ApplicationVersion, AuditOperation, AuditOutcome, Enrollment,
    StoreError, TemporaryKey,
};

/// The id of the version every application gets at creation (upstream's name).
pub(crate) const DEFAULT_VERSION_ID: &str = "default";
/// Domain separation of the sealed application secret (followed by the application key).
const APP_SECRET_AAD: &[u8] = b"offline-signer/application-secret/v1:";
/// Domain separation of the sealed `KEY_TRANSPORT` (followed by the activation id).
const TRANSPORT_KEY_AAD: &[u8] = b"offline-signer/transport-key/v1:";
/// Domain separation of the sealed activation OTP (followed by the activation id).
const OTP_AAD: &[u8] = b"offline-signer/activation-otp/v1:";
/// Attempts to draw an activation id and code that are not taken (upstream: 10).
const MAX_CODE_ATTEMPTS: usize = 10;
/// `CURRENT_VERSION` and `UPGRADE_VERSION` of the status blob.
const ACTIVATION_VERSION: u8 = 3;

/// One application version as `application/detail` and `application/version/create` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationVersionInfo {
    /// `applicationVersionId`.
    pub application_version_id: String,
    /// `AK`.
    pub application_key: String,
    /// `AS` (Base64 text). The protocol hands it to the administrator; it is built into the app.
    pub application_secret: String,
    /// The one string the SDK 1.9 is configured with (§5.1).
    pub mobile_sdk_config: String,
    /// Whether the version may activate devices.
    pub supported: bool,
}

/// `activation/init` request (§5.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitActivation {
    /// `powerauth` (default); anything else is refused.
    pub protocol: Option<String>,
    /// The user, 1..=255 characters.
    pub user_id: String,
    /// The application (missing: ERR0002).
    pub application_id: Option<String>,
    /// When prepare and commit must be done by (default: now + the configured validity).
    pub expires_at: Option<Timestamp>,
    /// 1..=64 (≤ 0: ERR0040); default from the configuration.
    pub max_failure_count: Option<i64>,
    /// Deprecated: only `NONE` (or absent) is accepted.
    pub activation_otp_validation: Option<String>,
    /// `ON_COMMIT` (default) or `ON_KEY_EXCHANGE`.
    pub commit_phase: Option<String>,
    /// An optional activation OTP (checked at prepare or commit, §4.4).
    pub activation_otp: Option<String>,
    /// Activation flags.
    pub flags: Vec<String>,
}

/// `activation/init` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitializedActivation {
    /// Random UUID v4.
    pub activation_id: String,
    /// `XXXXX-XXXXX-XXXXX-XXXXX`.
    pub activation_code: String,
    /// Base64 DER ECDSA signature of the code by the newest master key (made in the HSM).
    pub activation_signature: String,
    /// The user.
    pub user_id: String,
    /// The application.
    pub application_id: String,
}

/// The ECIES fields of a request (§2.4) as they arrive; all optional so that the gate can name what
/// is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EciesFields {
    /// `protocolVersion`.
    pub protocol_version: Option<String>,
    /// `temporaryKeyId` (3.3).
    pub temporary_key_id: Option<String>,
    /// `ephemeralPublicKey`.
    pub ephemeral_public_key: Option<String>,
    /// `encryptedData` (absent for `ecies/decryptor`).
    pub encrypted_data: Option<String>,
    /// `mac` (absent for `ecies/decryptor`).
    pub mac: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `timestamp`, Unix milliseconds.
    pub timestamp: Option<i64>,
}

/// `ecies/decryptor` request (§5.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EciesDecryptorRequest {
    /// Present for the activation scope.
    pub activation_id: Option<String>,
    /// `AK`.
    pub application_key: Option<String>,
    /// The ECIES fields (without data and MAC).
    pub ecies: EciesFields,
}

/// `ecies/decryptor` answer: handed out in clear, as the protocol requires (§2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EciesDecryptorSecrets {
    /// Base64 of the 48-byte envelope key.
    pub secret_key: String,
    /// Base64 of `SH2_BASE`.
    pub shared_info2: String,
}

/// `activation/prepare` request (§5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrepareActivation {
    /// The code the user entered.
    pub activation_code: Option<String>,
    /// `AK`.
    pub application_key: Option<String>,
    /// The layer-2 cryptogram.
    pub ecies: EciesFields,
}

/// `activation/prepare` answer: the layer-2 response, encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedActivation {
    /// The activation.
    pub activation_id: String,
    /// Its user.
    pub user_id: String,
    /// Its application.
    pub application_id: String,
    /// Base64 `CT_R`.
    pub encrypted_data: String,
    /// Base64 `MAC_R`.
    pub mac: String,
    /// Base64 `NONCE_R`.
    pub nonce: String,
    /// `TS_R`, Unix milliseconds.
    pub timestamp: i64,
    /// `PENDING_COMMIT` or `ACTIVE`.
    pub activation_status: ActivationStatus,
}

/// The decrypted layer-2 request (§5.3 step 6).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer2Request {
    #[serde(default)]
    device_public_key: Option<String>,
    #[serde(default)]
    activation_name: Option<String>,
    #[serde(default)]
    extras: Option<String>,
    #[serde(default)]
    activation_otp: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    device_info: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
}

/// What a passed ECIES gate hands on.
struct GatedRequest {
    version: ProtocolVersion,
    temporary_key_id: String,
    ephemeral: EphemeralPublicKey,
}

impl From<CryptoError> for ServiceError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::EciesDecryptionFailed | CryptoError::InvalidPublicKey => {
                ServiceError::DecryptionFailed
            }
            other => ServiceError::InvalidRequest(other.to_string()),
        }
    }
}

impl Service {
    // ---------------------------------------------------------------------------------------------
    // Application versions

    /// A fresh version: `AK`, `AS` from the CSPRNG, `AS` sealed under the DEK.
    pub(super) async fn new_application_version(
        &self,
        version_id: &str,
        now: Timestamp,
    ) -> Result<ApplicationVersion, ServiceError> {
        let mut rng = rand::rngs::OsRng;
        let application_key = generate_application_key(&mut rng);
        let secret = ApplicationSecret::generate(&mut rng);
        let encrypted_secret = self
            .seal(
                &app_secret_aad(&application_key),
                secret.expose_text().as_bytes(),
            )
            .await?;
        Ok(ApplicationVersion {
            id: version_id.to_owned(),
            application_key,
            encrypted_secret,
            supported: true,
            created_at: now,
        })
    }

    /// Opens a version's application secret (DEK decrypt).
    async fn application_secret(
        &self,
        version: &ApplicationVersion,
    ) -> Result<ApplicationSecret, ServiceError> {
        let plain = self
            .open_sealed(
                &app_secret_aad(&version.application_key),
                &version.encrypted_secret,
            )
            .await?;
        let text = std::str::from_utf8(plain.expose())
            .map_err(|_| ServiceError::invariant("an application secret is not UTF-8"))?;
        ApplicationSecret::from_text(text)
            .map_err(|_| ServiceError::invariant("an application secret is malformed"))
    }

    /// The detail of an application, its versions with their secrets and `mobileSdkConfig`.
    pub(super) async fn application_detail_of(
        &self,
        app: &Application,
    ) -> Result<ApplicationDetail, ServiceError> {
        let master = app
            .newest_master_key()
            .ok_or(ServiceError::NoMasterKeyPair)?;
        let mut versions = Vec::with_capacity(app.versions.len());
        for version in &app.versions {
            versions.push(self.version_info(version, &master.public_key).await?);
        }
        Ok(ApplicationDetail {
            application_id: app.id.clone(),
            application_roles: app.roles.clone(),
            master_public_key: master.public_key.to_base64(),
            versions,
        })
    }

    async fn version_info(
        &self,
        version: &ApplicationVersion,
        master_public_key: &PublicKey,
    ) -> Result<ApplicationVersionInfo, ServiceError> {
        let secret = self.application_secret(version).await?;
        let config = mobile_sdk_config(&version.application_key, &secret, master_public_key)
            .map_err(|_| ServiceError::invariant("a stored application key is malformed"))?;
        Ok(ApplicationVersionInfo {
            application_version_id: version.id.clone(),
            application_key: version.application_key.clone(),
            application_secret: secret.expose_text().to_owned(),
            mobile_sdk_config: config,
            supported: version.supported,
        })
    }

    /// `application/version/create`: a new version with fresh `AK` and `AS`.
    ///
    /// # Errors
    /// [`ServiceError::ApplicationNotFound`], [`ServiceError::DuplicateApplication`] if the version
    /// id exists, [`ServiceError::NoMasterKeyPair`], HSM and store failures.
    pub async fn create_application_version(
        &self,
        application_id: &str,
        version_id: &str,
    ) -> Result<ApplicationVersionInfo, ServiceError> {
        super::require_admin()?;
        check_name("applicationVersionId", version_id)?;
        let app = self
            .stored_application(application_id)
            .await?
            .ok_or(ServiceError::ApplicationNotFound)?;
        if app.versions.iter().any(|v| v.id == version_id) {
            return Err(ServiceError::DuplicateApplication);
        }
        let master = app
            .newest_master_key()
            .ok_or(ServiceError::NoMasterKeyPair)?
            .public_key;
        let now = self.now();
        let version = self.new_application_version(version_id, now).await?;
        let mut audit = super::audit_draft(
            now,
            AuditOperation::ApplicationVersionCreate,
            AuditOutcome::Created,
        );
        audit.application_id = Some(app.id.clone());
        let stored = version.clone();
        let app_id = app.id.clone();
        match self
            .write(move |s| s.add_application_version(&app_id, stored, Some(audit)))
            .await
        {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ServiceError::DuplicateApplication);
            }
            Err(StoreError::NotFound { .. }) => return Err(ServiceError::ApplicationNotFound),
            Err(e) => return Err(e.into()),
        }
        self.version_info(&version, &master).await
    }

    // ---------------------------------------------------------------------------------------------
    // activation/init

    /// `activation/init`: a `CREATED` activation with a fresh code signed by the master key in the
    /// HSM, and its server key pair generated in the HSM (stored only wrapped).
    ///
    /// # Errors
    /// ERR0002/0015/0003/0024/0040 as §5.2 lists them, HSM and store failures.
    pub async fn init_activation(
        &self,
        request: InitActivation,
    ) -> Result<InitializedActivation, ServiceError> {
        if let Some(protocol) = request.protocol.as_deref()
            && protocol != "powerauth"
        {
            return Err(ServiceError::invalid("protocol must be powerauth"));
        }
        check_name("userId", &request.user_id)?;
        let application_id = request
            .application_id
            .ok_or(ServiceError::NoApplicationId)?;
        super::require_application_scope(&application_id)?;
        for flag in &request.flags {
            check_name("flags", flag)?;
        }
        if let Some(v) = request.activation_otp_validation.as_deref()
            && v != "NONE"
        {
            return Err(ServiceError::invalid(
                "activationOtpValidation is deprecated: only NONE is accepted, use commitPhase",
            ));
        }
        let commit_phase = match request.commit_phase.as_deref() {
            None => CommitPhase::OnCommit,
            Some(text) => CommitPhase::parse(text).ok_or_else(|| {
                ServiceError::invalid("commitPhase must be ON_COMMIT or ON_KEY_EXCHANGE")
            })?,
        };
        let max_failed_attempts = match request.max_failure_count {
            None => self.inner.settings.signature.max_failed_attempts,
            Some(n) if n <= 0 => return Err(ServiceError::InvalidActivationProperties),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n <= 64)
                .ok_or_else(|| ServiceError::invalid("maxFailureCount must be 1..=64"))?,
        };
        let otp = match request.activation_otp.as_deref() {
            Some(otp) if !otp.is_empty() => {
                check_name("activationOtp", otp)?;
                Some(Zeroizing::new(otp.to_owned()))
            }
            _ => None,
        };
        let now = self.now();
        let expires_at = request
            .expires_at
            .unwrap_or_else(|| now.saturating_add(self.inner.settings.activation.code_validity));
        if expires_at <= now {
            return Err(ServiceError::invalid(
                "timestampActivationExpire is in the past",
            ));
        }
        let app = self
            .stored_application(&application_id)
            .await?
            .ok_or(ServiceError::ApplicationNotFound)?;
        let master = app
            .newest_master_key()
            .ok_or(ServiceError::NoMasterKeyPair)?
            .key_id;
        let signer = &self.inner.signer;
        let pair = signer
            .generate_wrapped_key_pair(&self.inner.storage_keys.kek)
            .await?;

        for _ in 0..MAX_CODE_ATTEMPTS {
            let activation_id = uuid::Uuid::new_v4().to_string();
            let code = ActivationCode::generate(&mut rand::rngs::OsRng);
            let signature = signer
                .sign_digest(KeyRef::Token(&master), &code.signature_digest())
                .await
                .map_err(signing_failed)?;
            let activation_otp = match &otp {
                Some(otp) => Some(self.seal(&otp_aad(&activation_id), otp.as_bytes()).await?),
                None => None,
            };
            let created = Activation::new(
                activation_id.clone(),
                app.id.clone(),
                request.user_id.clone(),
                pair.public_key,
                pair.wrapped.clone(),
                max_failed_attempts,
                now,
            );
            let activation = Activation {
                flags: request.flags.clone(),
                enrollment: Enrollment {
                    activation_code: Some(code.as_str().to_owned()),
                    activation_signature: Some(signature.to_base64()),
                    expires_at: Some(expires_at),
                    commit_phase,
                    activation_otp,
                    ..created.enrollment
                },
                ..created
            };
            match self
                .insert_new_activation(now, activation, AuditOperation::ActivationInit)
                .await
            {
                Ok(()) => {
                    tracing::info!(activation_id = %activation_id, application_id = %app.id, "activation initialized");
                    return Ok(InitializedActivation {
                        activation_id,
                        activation_code: code.as_str().to_owned(),
                        activation_signature: signature.to_base64(),
                        user_id: request.user_id,
                        application_id: app.id,
                    });
                }
                // The id or the code is taken (practically never: 122 and 80 random bits); draw again.
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::invariant(
            "could not draw an unused activation id and code",
        ))
    }

    // ---------------------------------------------------------------------------------------------
    // keystore/create

    /// `keystore/create` (§3): checks the SDK's HS256 JWT, generates a temporary key pair in the HSM
    /// (stored only wrapped) and answers an ES256 JWT signed in the HSM.
    ///
    /// # Errors
    /// ERR0024 (malformed JWT, bad HMAC), ERR0015 (unknown application key), ERR0009 (activation
    /// scope: unknown or not `ACTIVE`/`BLOCKED`), HSM and store failures.
    pub async fn create_temporary_key(&self, jwt: &str) -> Result<String, ServiceError> {
        let request = RequestJwt::parse(jwt)
            .map_err(|_| ServiceError::invalid("the request JWT is malformed"))?;
        let application_key = match (&request.application_key, &request.activation_id) {
            (None, None) => {
                return Err(ServiceError::invalid(
                    "the JWT names neither applicationKey nor activationId",
                ));
            }
            (None, Some(_)) => return Err(ServiceError::ApplicationNotFound),
            (Some(key), _) => key.clone(),
        };
        let (app, version) = self.version_by_key(&application_key).await?;
        let version = version.ok_or(ServiceError::ApplicationNotFound)?;
        let secret = self.application_secret(&version).await?;
        let activation = match &request.activation_id {
            None => None,
            Some(id) => {
                let a = self
                    .visible_activation(id)
                    .await?
                    .filter(|a| {
                        a.application_id == app.id
                            && matches!(
                                a.status,
                                ActivationStatus::Active | ActivationStatus::Blocked
                            )
                    })
                    .ok_or(ServiceError::ActivationNotFound)?;
                Some(a)
            }
        };
        let transport = match &activation {
            Some(a) => Some(
                self.transport_key(a)
                    .await?
                    .ok_or(ServiceError::ActivationNotFound)?,
            ),
            None => None,
        };
        let jwt_key = crate::crypto::temporary_key::request_key(&secret, transport.as_ref());
        request
            .verify(&jwt_key)
            .map_err(|_| ServiceError::invalid("the request JWT does not verify"))?;
        let challenge = request
            .challenge
            .clone()
            .ok_or_else(|| ServiceError::invalid("the JWT has no challenge"))?;

        let signer = &self.inner.signer;
        let pair = signer
            .generate_wrapped_key_pair(&self.inner.storage_keys.kek)
            .await?;
        let now = self.now();
        let expires_at = now.saturating_add(self.inner.settings.activation.temporary_key_validity);
        let key = TemporaryKey {
            id: uuid::Uuid::new_v4().to_string(),
            application_key: application_key.clone(),
            activation_id: activation.as_ref().map(|a| a.id.clone()),
            wrapped_private_key: pair.wrapped,
            public_key: pair.public_key,
            created_at: now,
            expires_at,
        };
        let claims = TemporaryKeyClaims {
            key_id: key.id.clone(),
            application_key,
            activation_id: key.activation_id.clone(),
            challenge,
            public_key: key.public_key,
            issued_at_ms: now.unix_millis(),
            expires_at_ms: expires_at.unix_millis(),
        };
        let signing_input = claims.signing_input();
        let digest: [u8; 32] = Sha256::digest(signing_input.as_bytes()).into();
        let signature = match &activation {
            None => {
                let master = app
                    .newest_master_key()
                    .ok_or(ServiceError::NoMasterKeyPair)?
                    .key_id;
                signer.sign_digest(KeyRef::Token(&master), &digest).await
            }
            Some(a) => {
                let wrapped = a
                    .wrapped_server_private_key
                    .as_ref()
                    .ok_or(ServiceError::ActivationNotFound)?;
                signer.sign_digest(KeyRef::Wrapped(wrapped), &digest).await
            }
        }
        .map_err(signing_failed)?;
        self.write(move |s| s.put_temporary_key(&key)).await?;
        Ok(assemble_response(&signing_input, &signature))
    }

    // ---------------------------------------------------------------------------------------------
    // ECIES

    /// The checks every ECIES request passes before anything is looked up: protocol 3.3 only,
    /// shape, `|now − timestamp| ≤ window`, and the replay registry (the request is recorded until
    /// its timestamp leaves the window). Every failure is ERR0024.
    async fn ecies_gate(
        &self,
        fields: &EciesFields,
        activation_id: Option<&str>,
        with_payload: bool,
    ) -> Result<(GatedRequest, Option<EciesRequest>), ServiceError> {
        let text = fields
            .protocol_version
            .as_deref()
            .ok_or_else(|| ServiceError::invalid("protocolVersion is missing"))?;
        let version = match ProtocolVersion::parse(text) {
            Ok(ProtocolVersion::V3_3) => ProtocolVersion::V3_3,
            Ok(old) => {
                return Err(ServiceError::UnsupportedProtocolVersion(
                    old.as_str().to_owned(),
                ));
            }
            Err(_) => {
                return Err(ServiceError::invalid("unknown protocolVersion"));
            }
        };
        let temporary_key_id = fields
            .temporary_key_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ServiceError::invalid("temporaryKeyId is required in 3.3"))?;
        let (Some(eph), Some(nonce), Some(timestamp)) = (
            fields.ephemeral_public_key.as_deref(),
            fields.nonce.as_deref(),
            fields.timestamp,
        ) else {
            return Err(ServiceError::invalid(
                "ephemeralPublicKey, nonce and timestamp are required",
            ));
        };
        let request = if with_payload {
            let (Some(data), Some(mac)) = (fields.encrypted_data.as_deref(), fields.mac.as_deref())
            else {
                return Err(ServiceError::invalid("encryptedData and mac are required"));
            };
            Some(EciesRequest::from_base64(
                eph,
                data,
                mac,
                Some(nonce),
                Some(timestamp),
            )?)
        } else {
            None
        };
        let ephemeral = EphemeralPublicKey::from_base64(eph)?;
        let nonce: [u8; ecies::NONCE_LEN] = b64::decode_array(nonce)
            .map_err(|_| ServiceError::invalid("nonce must be Base64 of 16 bytes"))?;
        let now = self.now().unix_millis();
        let window = self.inner.settings.activation.ecies_window;
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        if !ecies::timestamp_is_fresh(timestamp, now, window_ms) {
            return Err(ServiceError::invalid(
                "timestamp is outside the accepted window",
            ));
        }
        let key = ecies::replay_key(&ephemeral, &nonce, activation_id);
        let keep_until = Timestamp::from_unix_millis(timestamp).saturating_add(window);
        match self
            .write(move |s| s.register_replay(&key, keep_until))
            .await
        {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ServiceError::invalid("the request was already used"));
            }
            Err(e) => return Err(e.into()),
        }
        Ok((
            GatedRequest {
                version,
                temporary_key_id,
                ephemeral,
            },
            request,
        ))
    }

    /// The temporary key `id`, if it is unexpired and issued for this application key and
    /// activation (none for the application scope); else ERR0045.
    async fn temporary_key_for(
        &self,
        id: &str,
        application_key: &str,
        activation_id: Option<&str>,
    ) -> Result<TemporaryKey, ServiceError> {
        let now = self.now();
        let key_id = id.to_owned();
        self.read(move |s| s.temporary_key(&key_id))
            .await?
            .filter(|k| {
                k.expires_at > now
                    && k.application_key == application_key
                    && k.activation_id.as_deref() == activation_id
            })
            .ok_or(ServiceError::TemporaryKeyNotFound)
    }

    async fn version_by_key(
        &self,
        application_key: &str,
    ) -> Result<(Application, Option<ApplicationVersion>), ServiceError> {
        let key = application_key.to_owned();
        let app = self
            .read(move |s| s.application_by_key(&key))
            .await?
            .ok_or(ServiceError::ApplicationNotFound)?;
        super::require_application_scope(&app.id)?;
        let version = app
            .version_by_key(application_key)
            .filter(|v| v.supported)
            .cloned();
        Ok((app, version))
    }

    /// `ecies/decryptor` (§5.7): the envelope key and `SH2_BASE` of a generic-encryptor request,
    /// for the enrollment server.
    ///
    /// # Errors
    /// ERR0024 (gate), ERR0015, ERR0009, ERR0008, ERR0045, ERR0018 as §5.7 lists them.
    pub async fn ecies_decryptor(
        &self,
        request: EciesDecryptorRequest,
    ) -> Result<EciesDecryptorSecrets, ServiceError> {
        let application_key = request
            .application_key
            .clone()
            .ok_or_else(|| ServiceError::invalid("applicationKey is required"))?;
        let activation_id = request.activation_id.as_deref().filter(|s| !s.is_empty());
        let (gated, _) = self
            .ecies_gate(&request.ecies, activation_id, false)
            .await?;
        let (app, version) = self.version_by_key(&application_key).await?;
        let version = version.ok_or(ServiceError::ApplicationNotFound)?;
        let secret = self.application_secret(&version).await?;
        let transport = match activation_id {
            None => None,
            Some(id) => {
                let a = self
                    .visible_activation(id)
                    .await?
                    .ok_or(ServiceError::ActivationNotFound)?;
                if a.status != ActivationStatus::Active {
                    return Err(ServiceError::IncorrectState);
                }
                if a.application_id != app.id {
                    return Err(ServiceError::ApplicationNotFound);
                }
                Some(
                    self.transport_key(&a)
                        .await?
                        .ok_or(ServiceError::invariant(
                            "an active activation has no transport key",
                        ))?,
                )
            }
        };
        let key = self
            .temporary_key_for(&gated.temporary_key_id, &application_key, activation_id)
            .await?;
        let shared = self
            .inner
            .signer
            .ecdh(&key.wrapped_private_key, gated.ephemeral.public_key())
            .await?;
        let binding = match (activation_id, &transport) {
            (Some(id), Some(kt)) => Some(ecies::ActivationBinding {
                activation_id: id,
                transport_key: kt,
            }),
            _ => None,
        };
        let scope = if binding.is_some() {
            EncryptorScope::Activation
        } else {
            EncryptorScope::Application
        };
        let context = EciesContext::new(
            gated.version,
            Encryptor::generic(scope),
            &application_key,
            &secret,
            binding,
            Some(&gated.temporary_key_id),
        )?;
        let secrets = ecies::decryptor_secrets(&context, shared.expose(), &gated.ephemeral)?;
        Ok(EciesDecryptorSecrets {
            secret_key: secrets.secret_key.to_base64().to_string(),
            shared_info2: secrets.shared_info2.to_base64().to_string(),
        })
    }

    // ---------------------------------------------------------------------------------------------
    // activation/prepare

    /// `activation/prepare` (§5.3): decrypts layer 2 with the temporary key (ECDH in the HSM),
    /// binds the device key, derives the factor keys and `KEY_TRANSPORT` once (ECDH with the
    /// wrapped server key in the HSM) and stores them sealed, and answers the encrypted layer-2
    /// response.
    ///
    /// # Errors
    /// ERR0024 (gate, malformed), ERR0007 (unknown application key, sic), ERR0045, ERR0018,
    /// ERR0011, ERR0009 (no `CREATED`, unexpired activation with this code, or an invalid device
    /// key), ERR0031 (OTP rules), HSM and store failures.
    pub async fn prepare_activation(
        &self,
        request: PrepareActivation,
    ) -> Result<PreparedActivation, ServiceError> {
        let (gated, ecies_request) = self.ecies_gate(&request.ecies, None, true).await?;
        let ecies_request =
            ecies_request.ok_or(ServiceError::invariant("the gate dropped the payload"))?;
        let application_key = request
            .application_key
            .clone()
            .ok_or(ServiceError::ActivationExpired)?;
        let (app, version) = self
            .version_by_key(&application_key)
            .await
            .map_err(|e| match e {
                ServiceError::ApplicationNotFound => ServiceError::ActivationExpired,
                other => other,
            })?;
        let version = version.ok_or(ServiceError::ActivationExpired)?;
        let key = self
            .temporary_key_for(&gated.temporary_key_id, &application_key, None)
            .await?;
        let secret = self.application_secret(&version).await?;
        let signer = &self.inner.signer;
        let shared = signer
            .ecdh(&key.wrapped_private_key, gated.ephemeral.public_key())
            .await?;
        let context = EciesContext::new(
            gated.version,
            Encryptor::ActivationLayer2,
            &application_key,
            &secret,
            None,
            Some(&gated.temporary_key_id),
        )?;
        let (encryptor, plaintext) =
            ServerEncryptor::decrypt_request(&context, shared.expose(), &ecies_request)?;
        drop(shared);
        let layer2: Layer2Request =
            serde_json::from_slice(&plaintext).map_err(|_| ServiceError::InvalidInputFormat)?;
        let device_key_text = layer2
            .device_public_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ServiceError::invalid("devicePublicKey is empty"))?;

        let code = request
            .activation_code
            .as_deref()
            .ok_or(ServiceError::ActivationNotFound)?;
        let now = self.now();
        let (application_id, asked) = (app.id.clone(), code.to_owned());
        let found = self
            .read(move |s| s.activation_by_code(&application_id, &asked))
            .await?
            .filter(|a| a.status == ActivationStatus::Created && !expired(a, now))
            .ok_or(ServiceError::ActivationNotFound)?;
        let _guard = self.inner.locks.lock(&found.id).await;
        let mut activation = self
            .visible_activation(&found.id)
            .await?
            .filter(|a| a.status == ActivationStatus::Created && !expired(a, now))
            .ok_or(ServiceError::ActivationNotFound)?;

        // OTP rules of §4.4 for prepare. A wrong OTP at key exchange counts as a failed attempt.
        let sent_otp = layer2.activation_otp.as_deref().filter(|o| !o.is_empty());
        let configured = activation.enrollment.activation_otp.is_some();
        let phase = activation.enrollment.commit_phase;
        match (configured, phase, sent_otp) {
            (_, CommitPhase::OnCommit, Some(_)) | (false, CommitPhase::OnKeyExchange, Some(_)) => {
                return Err(ServiceError::InvalidActivationOtp);
            }
            (true, CommitPhase::OnKeyExchange, None) => {
                return Err(ServiceError::InvalidActivationOtp);
            }
            (true, CommitPhase::OnKeyExchange, Some(otp))
                if !self.otp_matches(&activation, otp).await? =>
            {
                self.count_failed_otp(activation).await?;
                return Err(ServiceError::InvalidActivationOtp);
            }
            _ => {}
        }

        let device_key = b64::decode(device_key_text)
            .ok()
            .and_then(|bytes| PublicKey::from_sec1(&bytes).ok())
            .ok_or(ServiceError::ActivationNotFound)?;
        let wrapped =
            activation
                .wrapped_server_private_key
                .clone()
                .ok_or(ServiceError::invariant(
                    "a created activation has no server key",
                ))?;
        let z2 = signer.ecdh(&wrapped, &device_key).await?;
        let master_secret = MasterSecret::from_ecdh_x(z2.expose());
        drop(z2);
        let factor_keys = FactorKeys::from_master_secret(&master_secret);
        let transport = master_secret.derive().transport;
        let sealed_factors = self
            .seal(
                &factor_keys_aad(&activation.id),
                seal_factor_keys(&factor_keys).as_slice(),
            )
            .await?;
        let sealed_transport = self.seal_transport_key(&activation.id, &transport).await?;
        let ctr_data = CounterData::generate(&mut rand::rngs::OsRng);

        activation.device_public_key = Some(device_key);
        activation.encrypted_factor_keys = Some(sealed_factors);
        activation.ctr_data = *ctr_data.as_bytes();
        activation.counter = 0;
        activation.failed_attempts = 0;
        activation.status = match phase {
            CommitPhase::OnCommit => ActivationStatus::PendingCommit,
            CommitPhase::OnKeyExchange => ActivationStatus::Active,
        };
        let e = &mut activation.enrollment;
        e.encrypted_transport_key = Some(sealed_transport);
        e.protocol_version = ACTIVATION_VERSION;
        e.activation_name = layer2.activation_name;
        e.platform = Some(
            layer2
                .platform
                .map_or_else(|| "unknown".to_owned(), |p| p.to_lowercase()),
        );
        e.device_info = layer2.device_info;
        e.extras = layer2.extras;
        e.external_id = layer2.external_id;
        e.last_changed_at = Some(now);

        let response = serde_json::json!({
            "activationId": activation.id,
            "serverPublicKey": activation.server_public_key.to_base64(),
            "ctrData": ctr_data.to_base64(),
        });
        let response = Zeroizing::new(
            serde_json::to_vec(&response)
                .map_err(|_| ServiceError::invariant("a JSON object serializes"))?,
        );
        let mut nonce = [0u8; ecies::NONCE_LEN];
        loop {
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
            if ecies_request.nonce != Some(nonce) {
                break;
            }
        }
        let timestamp = self.now().unix_millis();
        let encrypted = encryptor.encrypt_response(&response, nonce, timestamp)?;

        let audit = activation_audit(
            now,
            &activation,
            AuditOperation::ActivationPrepare,
            AuditOutcome::Changed,
        );
        let committed = self
            .write(move |s| s.update_activation(&activation, Some(audit)))
            .await?
            .activation;
        tracing::info!(activation_id = %committed.id, status = committed.status.as_str(), "activation prepared");
        Ok(PreparedActivation {
            activation_id: committed.id,
            user_id: committed.user_id,
            application_id: committed.application_id,
            encrypted_data: b64::encode(&encrypted.encrypted_data),
            mac: b64::encode(&encrypted.mac),
            nonce: b64::encode(nonce),
            timestamp,
            activation_status: committed.status,
        })
    }

    // ---------------------------------------------------------------------------------------------
    // activation/commit

    /// `PENDING_COMMIT` → `ACTIVE`, checking the activation OTP where one was set (§4.4, §5.5).
    /// An expired activation becomes `REMOVED` (persisted) and answers ERR0007.
    ///
    /// # Errors
    /// ERR0009, ERR0007, ERR0008, ERR0031 (missing or wrong OTP — a wrong one counts as a failed
    /// attempt; an OTP sent where none was set, a deliberate deviation), store failures.
    pub async fn commit_activation(
        &self,
        activation_id: &str,
        otp: Option<&str>,
    ) -> Result<(), ServiceError> {
        let _guard = self.inner.locks.lock(activation_id).await;
        let mut activation = self
            .visible_activation(activation_id)
            .await?
            .ok_or(ServiceError::ActivationNotFound)?;
        let now = self.now();
        if self.expire_if_due(&mut activation, now).await? {
            return Err(ServiceError::ActivationExpired);
        }
        if activation.status == ActivationStatus::Removed {
            return Err(ServiceError::ActivationExpired);
        }
        if activation.status != ActivationStatus::PendingCommit
            || activation.enrollment.commit_phase != CommitPhase::OnCommit
        {
            return Err(ServiceError::IncorrectState);
        }
        let otp = otp.filter(|o| !o.is_empty());
        match (activation.enrollment.activation_otp.is_some(), otp) {
            (false, None) => {}
            (false, Some(_)) | (true, None) => return Err(ServiceError::InvalidActivationOtp),
            (true, Some(otp)) => {
                if !self.otp_matches(&activation, otp).await? {
                    self.count_failed_otp(activation).await?;
                    return Err(ServiceError::InvalidActivationOtp);
                }
            }
        }
        activation.status = ActivationStatus::Active;
        activation.failed_attempts = 0;
        activation.enrollment.last_changed_at = Some(now);
        let audit = activation_audit(
            now,
            &activation,
            AuditOperation::ActivationCommit,
            AuditOutcome::Changed,
        );
        self.write(move |s| s.update_activation(&activation, Some(audit)))
            .await?;
        tracing::info!(activation_id, "activation committed");
        Ok(())
    }

    async fn otp_matches(&self, activation: &Activation, otp: &str) -> Result<bool, ServiceError> {
        let sealed = activation
            .enrollment
            .activation_otp
            .as_ref()
            .ok_or(ServiceError::invariant("no activation OTP to compare"))?;
        let stored = self.open_sealed(&otp_aad(&activation.id), sealed).await?;
        let a: [u8; 32] = Sha256::digest(stored.expose()).into();
        let b: [u8; 32] = Sha256::digest(otp.as_bytes()).into();
        Ok(bool::from(a.ct_eq(&b)))
    }

    /// A wrong activation OTP: one more failed attempt; at the limit the activation is removed.
    async fn count_failed_otp(&self, mut activation: Activation) -> Result<(), ServiceError> {
        let now = self.now();
        activation.failed_attempts = activation.failed_attempts.saturating_add(1);
        let outcome = if activation.failed_attempts >= activation.max_failed_attempts {
            activation.status = ActivationStatus::Removed;
            activation.destroy_key_material();
            activation.enrollment.last_changed_at = Some(now);
            AuditOutcome::Removed
        } else {
            AuditOutcome::Refused
        };
        let audit = activation_audit(now, &activation, AuditOperation::ActivationCommit, outcome);
        self.write(move |s| s.update_activation(&activation, Some(audit)))
            .await?;
        Ok(())
    }

    /// §4.5: an expired `CREATED`/`PENDING_COMMIT` activation becomes `REMOVED` (persisted, key
    /// material destroyed). Call under the activation's lock. `true` if it did.
    async fn expire_if_due(
        &self,
        activation: &mut Activation,
        now: Timestamp,
    ) -> Result<bool, ServiceError> {
        if !matches!(
            activation.status,
            ActivationStatus::Created | ActivationStatus::PendingCommit
        ) || !expired(activation, now)
        {
            return Ok(false);
        }
        let mut next = activation.clone();
        next.status = ActivationStatus::Removed;
        next.destroy_key_material();
        next.enrollment.last_changed_at = Some(now);
        let audit = activation_audit(
            now,
            &next,
            AuditOperation::ActivationRemove,
            AuditOutcome::Removed,
        );
        *activation = self
            .write(move |s| s.update_activation(&next, Some(audit)))
            .await?
            .activation;
        Ok(true)
    }

    // ---------------------------------------------------------------------------------------------
    // activation/status

    /// `activation/status` (§5.6). With a `challenge` (Base64 of 16 bytes) and a transport key the
    /// answer carries the encrypted status blob and its nonce; `CREATED` (or removed before the key
    /// exchange) answers 32 random bytes instead; without a challenge there is no blob. An unknown
    /// id answers `REMOVED` (PowerAuth parity, not ERR0009).
    ///
    /// # Errors
    /// ERR0024 for a malformed challenge; HSM and store failures.
    pub async fn activation_status(
        &self,
        activation_id: &str,
        challenge: Option<&str>,
    ) -> Result<ActivationInfo, ServiceError> {
        let challenge: Option<[u8; status_blob::CHALLENGE_LEN]> = match challenge {
            None => None,
            Some(text) => Some(
                b64::decode_array(text)
                    .map_err(|_| ServiceError::invalid("challenge must be Base64 of 16 bytes"))?,
            ),
        };
        let Some(mut activation) = self.visible_activation(activation_id).await? else {
            return Ok(self.unknown_activation_info(activation_id, challenge.is_some()));
        };
        if matches!(
            activation.status,
            ActivationStatus::Created | ActivationStatus::PendingCommit
        ) && expired(&activation, self.now())
        {
            let _guard = self.inner.locks.lock(activation_id).await;
            if let Some(mut fresh) = self.visible_activation(activation_id).await? {
                self.expire_if_due(&mut fresh, self.now()).await?;
                activation = fresh;
            }
        }
        let mut info = activation_info(&activation);
        if let Some(challenge) = challenge {
            let mut nonce = [0u8; status_blob::CHALLENGE_LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
            let transport = if activation.device_public_key.is_some() {
                self.transport_key(&activation).await?
            } else {
                None
            };
            let blob = match transport {
                Some(kt) => {
                    let mut reserved = [0u8; 5];
                    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut reserved);
                    let lookahead = self.inner.settings.signature.lookahead.clamp(1, 64);
                    let plain = StatusBlob {
                        status: activation.status,
                        current_version: ACTIVATION_VERSION,
                        upgrade_version: ACTIVATION_VERSION,
                        reserved,
                        ctr_byte: (activation.counter & 0xFF) as u8,
                        failed_attempts: u8::try_from(activation.failed_attempts)
                            .unwrap_or(u8::MAX),
                        max_failed_attempts: u8::try_from(activation.max_failed_attempts)
                            .unwrap_or(u8::MAX),
                        ctr_look_ahead: u8::try_from(lookahead).unwrap_or(64),
                        ctr_data_hash: status_blob::ctr_data_hash(
                            &kt,
                            &CounterData::from_bytes(activation.ctr_data),
                        ),
                    };
                    status_blob::encrypt(&kt, &challenge, &nonce, &plain)
                }
                None => random_blob(),
            };
            info.encrypted_status_blob = Some(b64::encode(blob));
            info.encrypted_status_blob_nonce = Some(b64::encode(nonce));
        }
        Ok(info)
    }

    fn unknown_activation_info(&self, activation_id: &str, with_blob: bool) -> ActivationInfo {
        let mut nonce = [0u8; status_blob::CHALLENGE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        ActivationInfo {
            activation_id: activation_id.to_owned(),
            activation_status: ActivationStatus::Removed,
            blocked_reason: None,
            user_id: "unknown".to_owned(),
            application_id: String::new(),
            activation_flags: Vec::new(),
            failed_attempts: 0,
            max_failed_attempts: self.inner.settings.signature.max_failed_attempts,
            counter: 0,
            timestamp_created: Timestamp::from_unix_millis(0),
            timestamp_last_used: Some(Timestamp::from_unix_millis(0)),
            timestamp_last_change: Some(Timestamp::from_unix_millis(0)),
            device_public_key_fingerprint: None,
            activation_name: Some("unknown".to_owned()),
            commit_phase: CommitPhase::OnCommit,
            platform: None,
            device_info: None,
            extras: None,
            external_id: None,
            version: 0,
            activation_code: None,
            activation_signature: None,
            encrypted_status_blob: with_blob.then(|| b64::encode(random_blob())),
            encrypted_status_blob_nonce: with_blob.then(|| b64::encode(nonce)),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Transport key

    /// Seals `KEY_TRANSPORT` under the DEK, bound to the activation id.
    pub(super) async fn seal_transport_key(
        &self,
        activation_id: &str,
        key: &SymmetricKey,
    ) -> Result<crate::model::EncryptedSecret, ServiceError> {
        Ok(self
            .seal(&transport_key_aad(activation_id), key.expose())
            .await?)
    }

    /// The activation's `KEY_TRANSPORT`: opened from its sealed copy, or, for activations
    /// registered before it was stored, derived again by ECDH in the HSM (not stored: §7.3 allows
    /// both). `None` when the activation has no key exchange or its key material was destroyed.
    async fn transport_key(
        &self,
        activation: &Activation,
    ) -> Result<Option<SymmetricKey>, ServiceError> {
        if let Some(sealed) = &activation.enrollment.encrypted_transport_key {
            let plain = self
                .open_sealed(&transport_key_aad(&activation.id), sealed)
                .await?;
            return SymmetricKey::from_slice(plain.expose())
                .map(Some)
                .map_err(|_| ServiceError::invariant("a stored transport key is not 16 bytes"));
        }
        match (
            &activation.wrapped_server_private_key,
            &activation.device_public_key,
            &activation.encrypted_factor_keys,
        ) {
            (Some(wrapped), Some(device), Some(_)) => {
                let z = self.inner.signer.ecdh(wrapped, device).await?;
                Ok(Some(
                    MasterSecret::from_ecdh_x(z.expose()).derive().transport,
                ))
            }
            _ => Ok(None),
        }
    }
}

fn expired(activation: &Activation, now: Timestamp) -> bool {
    activation.enrollment.expires_at.is_some_and(|at| at <= now)
}

fn random_blob() -> [u8; status_blob::BLOB_LEN] {
    let mut blob = [0u8; status_blob::BLOB_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut blob);
    blob
}

fn app_secret_aad(application_key: &str) -> Vec<u8> {
    [APP_SECRET_AAD, application_key.as_bytes()].concat()
}

fn transport_key_aad(activation_id: &str) -> Vec<u8> {
    [TRANSPORT_KEY_AAD, activation_id.as_bytes()].concat()
}

fn otp_aad(activation_id: &str) -> Vec<u8> {
    [OTP_AAD, activation_id.as_bytes()].concat()
}

/// The status fields of a stored activation (no blob: the caller adds it).
pub(super) fn activation_info(a: &Activation) -> ActivationInfo {
    let e = &a.enrollment;
    let created = a.status == ActivationStatus::Created;
    ActivationInfo {
        activation_id: a.id.clone(),
        activation_status: a.status,
        blocked_reason: a.blocked_reason.clone(),
        user_id: a.user_id.clone(),
        application_id: a.application_id.clone(),
        activation_flags: a.flags.clone(),
        failed_attempts: a.failed_attempts,
        max_failed_attempts: a.max_failed_attempts,
        counter: a.counter,
        timestamp_created: a.created_at,
        timestamp_last_used: a.last_used_at,
        timestamp_last_change: e.last_changed_at,
        device_public_key_fingerprint: a.device_public_key.as_ref().map(|device| {
            crate::crypto::fingerprint::fingerprint_v3(device, &a.id, &a.server_public_key)
        }),
        activation_name: e.activation_name.clone(),
        commit_phase: e.commit_phase,
        platform: e.platform.clone(),
        device_info: e.device_info.clone(),
        extras: e.extras.clone(),
        external_id: e.external_id.clone(),
        version: if a.device_public_key.is_some() {
            ACTIVATION_VERSION
        } else {
            0
        },
        activation_code: if created {
            e.activation_code.clone()
        } else {
            None
        },
        activation_signature: if created {
            e.activation_signature.clone()
        } else {
            None
        },
        encrypted_status_blob: None,
        encrypted_status_blob_nonce: None,
    }
}
