//! `Token::activate_with_code` and `Token::remote_status` against an in-process fake of the
//! service's methods (`keystore/create`, `ecies/decryptor`, `activation/prepare`,
//! `activation/commit`, `activation/status`, `application/detail`), written with the crypto
//! crate's **server-side** functions (`ServerEncryptor`, `decryptor_secrets`, the response JWT,
//! the status blob). The real end-to-end test against the server binary comes after both
//! branches merge; this one proves the two halves of the crypto meet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use offline_signer_crypto::activation_code::ActivationCode;
use offline_signer_crypto::application::{ApplicationSecret, mobile_sdk_config};
use offline_signer_crypto::ecies::{
    EciesContext, EciesRequest, Encryptor, ProtocolVersion, ServerEncryptor, decryptor_secrets,
};
use offline_signer_crypto::status_blob::{self, StatusBlob};
use offline_signer_crypto::temporary_key::{self, RequestJwt, TemporaryKeyClaims};
use offline_signer_crypto::{
    ActivationStatus, CounterData, FactorKeys, MasterSecret, PrivateKey, PublicKey, SymmetricKey,
    b64, ecdsa, kdf,
};
use offline_token::activation::{ActivationServer, CodeActivation, DeviceInfo, OtpPlacement};
use offline_token::client::{
    self, ApplicationDetail, ClientError, CommitRequest, EciesDecryptorRequest,
    EciesDecryptorResponse, PrepareActivationRequest, PrepareActivationResponse,
};
use offline_token::{Token, TokenError};
use serde_json::json;

const APP_KEY: &str = "WC8gRAsMr/tDZndH2GvvZw==";
const APP_SECRET: &str = "YT5yMrV1XPhS+skTiASlrA==";
const ACTIVATION_ID: &str = "0b3c6a57-9a52-4b4e-8d0b-7f6f1c2e9a10";
const NOW_MS: i64 = 1_750_000_000_000;

struct Fake {
    master: PrivateKey,
    server: PrivateKey,
    code: ActivationCode,
    /// Commit at key exchange (answer `ACTIVE` from prepare).
    on_key_exchange: bool,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    temporary: Vec<(String, PrivateKey)>,
    device: Option<PublicKey>,
    ctr_data: Option<CounterData>,
    transport: Option<SymmetricKey>,
    status: Option<ActivationStatus>,
    commits: Vec<Option<String>>,
    layer2_otp: Option<String>,
}

fn refused(path: &str, code: &str) -> ClientError {
    ClientError::Service {
        path: path.to_owned(),
        status: 400,
        code: code.to_owned(),
        message: "refused by the fake".to_owned(),
    }
}

fn secret() -> ApplicationSecret {
    ApplicationSecret::from_text(APP_SECRET).unwrap()
}

impl Fake {
    fn new(on_key_exchange: bool) -> Self {
        let mut rng = rand::rngs::OsRng;
        Self {
            master: PrivateKey::generate(&mut rng),
            server: PrivateKey::generate(&mut rng),
            code: ActivationCode::generate(&mut rng),
            on_key_exchange,
            state: Mutex::new(FakeState::default()),
        }
    }

    fn signed_code(&self) -> String {
        let signature = ecdsa::sign(&self.master, self.code.signed_bytes());
        self.code.qr_payload(Some(&signature))
    }

    fn temporary_private(&self, id: Option<&str>) -> Result<PrivateKey, ClientError> {
        let state = self.state.lock().unwrap();
        state
            .temporary
            .iter()
            .find(|(known, _)| Some(known.as_str()) == id)
            .map(|(_, key)| key.clone())
            .ok_or_else(|| refused("temporary key", "ERR0045"))
    }
}

impl ActivationServer for Fake {
    fn base_url(&self) -> &str {
        "http://fake.invalid"
    }

    async fn application_detail(
        &self,
        application_id: &str,
    ) -> Result<ApplicationDetail, ClientError> {
        let config = mobile_sdk_config(APP_KEY, &secret(), &self.master.public_key()).unwrap();
        Ok(serde_json::from_value(json!({
            "applicationId": application_id,
            "applicationRoles": [],
            "masterPublicKey": self.master.public_key().to_base64(),
            "versions": [{
                "applicationVersionId": "default",
                "applicationKey": APP_KEY,
                "applicationSecret": APP_SECRET,
                "mobileSdkConfig": config,
                "supported": true
            }]
        }))
        .unwrap())
    }

    async fn keystore_create(&self, jwt: &str) -> Result<String, ClientError> {
        let request = RequestJwt::parse(jwt).map_err(|_| refused("keystore", "ERR0024"))?;
        assert_eq!(request.application_key.as_deref(), Some(APP_KEY));
        assert_eq!(request.activation_id, None, "application scope");
        request
            .verify(&temporary_key::request_key(&secret(), None))
            .map_err(|_| refused("keystore", "ERR0024"))?;
        let key = PrivateKey::generate(&mut rand::rngs::OsRng);
        let id = format!("tk-{}", self.state.lock().unwrap().temporary.len());
        let claims = TemporaryKeyClaims {
            key_id: id.clone(),
            application_key: APP_KEY.to_owned(),
            activation_id: None,
            challenge: request.challenge.unwrap(),
            public_key: key.public_key(),
            issued_at_ms: NOW_MS,
            expires_at_ms: NOW_MS + 300_000,
        };
        self.state.lock().unwrap().temporary.push((id, key));
        let input = claims.signing_input();
        Ok(temporary_key::assemble_response(
            &input,
            &ecdsa::sign(&self.master, input.as_bytes()),
        ))
    }

    async fn ecies_decryptor(
        &self,
        request: &EciesDecryptorRequest,
    ) -> Result<EciesDecryptorResponse, ClientError> {
        assert_eq!(request.protocol_version, "3.3");
        assert_eq!(request.activation_id, None);
        assert_eq!(request.application_key, APP_KEY);
        let key = self.temporary_private(request.temporary_key_id.as_deref())?;
        let context = EciesContext::new(
            ProtocolVersion::V3_3,
            Encryptor::ApplicationScopeGeneric,
            APP_KEY,
            &secret(),
            None,
            request.temporary_key_id.as_deref(),
        )
        .unwrap();
        let eph = offline_signer_crypto::ecies::EphemeralPublicKey::from_base64(
            &request.ephemeral_public_key,
        )
        .unwrap();
        assert_eq!(eph.as_bytes().len(), 33, "the SDK sends compressed points");
        let z = kdf::ecdh_x(&key, eph.public_key());
        let secrets = decryptor_secrets(&context, &z, &eph).unwrap();
        Ok(serde_json::from_value(json!({
            "secretKey": secrets.secret_key.to_base64().as_str(),
            "sharedInfo2": secrets.shared_info2.to_base64().as_str(),
        }))
        .unwrap())
    }

    async fn activation_prepare(
        &self,
        request: &PrepareActivationRequest,
    ) -> Result<PrepareActivationResponse, ClientError> {
        assert_eq!(request.protocol_version, "3.3");
        assert_eq!(request.application_key, APP_KEY);
        assert!(!request.generate_recovery_codes);
        let key = self.temporary_private(request.layer2.temporary_key_id.as_deref())?;
        let context = EciesContext::new(
            ProtocolVersion::V3_3,
            Encryptor::ActivationLayer2,
            APP_KEY,
            &secret(),
            None,
            request.layer2.temporary_key_id.as_deref(),
        )
        .unwrap();
        let ecies = EciesRequest::from_base64(
            &request.layer2.ephemeral_public_key,
            &request.layer2.encrypted_data,
            &request.layer2.mac,
            Some(&request.layer2.nonce),
            Some(request.layer2.timestamp),
        )
        .unwrap();
        let z = kdf::ecdh_x(&key, ecies.ephemeral_public_key.public_key());
        let (encryptor, plain) = ServerEncryptor::decrypt_request(&context, &z, &ecies)
            .map_err(|_| refused("prepare", "ERR0018"))?;
        if request.activation_code != self.code.as_str() {
            return Err(refused("prepare", "ERR0009"));
        }
        let plain: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        let device_text = plain["devicePublicKey"].as_str().unwrap();
        assert_eq!(
            b64::decode(device_text).unwrap().len(),
            33,
            "compressed device key"
        );
        let device = PublicKey::from_base64(device_text).unwrap();
        let ctr_data = CounterData::from_bytes(rand::random());
        let derived = MasterSecret::agree(&self.server, &device).derive();
        let status = if self.on_key_exchange {
            ActivationStatus::Active
        } else {
            ActivationStatus::PendingCommit
        };
        {
            let mut state = self.state.lock().unwrap();
            state.device = Some(device);
            state.ctr_data = Some(ctr_data);
            state.transport = Some(derived.transport.clone());
            state.status = Some(status);
            state.layer2_otp = plain["activationOtp"].as_str().map(str::to_owned);
        }
        let answer = json!({
            "activationId": ACTIVATION_ID,
            "serverPublicKey": self.server.public_key().to_base64(),
            "ctrData": ctr_data.to_base64(),
        });
        let response = encryptor
            .encrypt_response(answer.to_string().as_bytes(), rand::random(), NOW_MS + 1)
            .unwrap();
        Ok(serde_json::from_value(json!({
            "activationId": ACTIVATION_ID,
            "userId": "alice",
            "applicationId": "demo-app",
            "encryptedData": b64::encode(&response.encrypted_data),
            "mac": b64::encode(&response.mac),
            "nonce": b64::encode(response.nonce.unwrap()),
            "timestamp": response.timestamp_ms.unwrap(),
            "activationStatus": if self.on_key_exchange { "ACTIVE" } else { "PENDING_COMMIT" },
        }))
        .unwrap())
    }

    async fn activation_commit(&self, request: &CommitRequest) -> Result<(), ClientError> {
        assert_eq!(request.activation_id, ACTIVATION_ID);
        let body = serde_json::to_value(request).unwrap();
        let mut state = self.state.lock().unwrap();
        if state.status != Some(ActivationStatus::PendingCommit) {
            return Err(refused("commit", "ERR0008"));
        }
        state.status = Some(ActivationStatus::Active);
        state
            .commits
            .push(body["activationOtp"].as_str().map(str::to_owned));
        Ok(())
    }

    async fn activation_status(
        &self,
        activation_id: &str,
        challenge: &str,
    ) -> Result<client::ActivationStatus, ClientError> {
        assert_eq!(activation_id, ACTIVATION_ID);
        let challenge: [u8; 16] = b64::decode_array(challenge).unwrap();
        let state = self.state.lock().unwrap();
        let transport = state.transport.clone().unwrap();
        let status = state.status.unwrap();
        let blob = StatusBlob {
            status,
            current_version: 3,
            upgrade_version: 3,
            reserved: rand::random(),
            ctr_byte: 0,
            failed_attempts: 0,
            max_failed_attempts: 5,
            ctr_look_ahead: 20,
            ctr_data_hash: status_blob::ctr_data_hash(&transport, &state.ctr_data.unwrap()),
        };
        let nonce: [u8; 16] = rand::random();
        let encrypted = status_blob::encrypt(&transport, &challenge, &nonce, &blob);
        Ok(serde_json::from_value(json!({
            "activationId": ACTIVATION_ID,
            "activationStatus": status.as_str(),
            "encryptedStatusBlob": b64::encode(encrypted),
            "encryptedStatusBlobNonce": b64::encode(nonce),
        }))
        .unwrap())
    }
}

fn request(fake: &Fake) -> CodeActivation {
    CodeActivation {
        application_id: "demo-app".into(),
        code: fake.signed_code(),
        code_signature: None,
        sdk_config: None,
        activation_otp: None,
        otp_placement: OtpPlacement::Commit,
        device: DeviceInfo::default(),
    }
}

#[tokio::test]
async fn activation_by_code_meets_the_server_side_crypto() {
    let fake = Fake::new(false);
    let mut saved = None;
    let mut token = Token::activate_with_code(&fake, &request(&fake), |state| {
        // Persisted before the commit.
        assert_eq!(
            fake.state.lock().unwrap().status,
            Some(ActivationStatus::PendingCommit)
        );
        saved = Some(state.clone());
        Ok(())
    })
    .await
    .unwrap();
    let state = token.state().clone();
    assert_eq!(saved.as_ref(), Some(&state));
    assert_eq!(state.activation_id, ACTIVATION_ID);
    assert_eq!(state.user_id, "alice");
    assert_eq!(state.protocol_version, Some(ProtocolVersion::V3_3));
    assert_eq!(state.master_public_key, fake.master.public_key());
    assert_eq!(state.server_public_key, fake.server.public_key());
    {
        let server = fake.state.lock().unwrap();
        assert_eq!(server.device, Some(state.device_public_key));
        assert_eq!(server.ctr_data, Some(state.counter_data));
        assert_eq!(server.transport, state.transport_key);
        let derived = MasterSecret::agree(&fake.server, &state.device_public_key).derive();
        assert_eq!(state.factor_keys, FactorKeys::from_derived(&derived));
        assert_eq!(server.status, Some(ActivationStatus::Active));
        assert_eq!(server.commits, vec![None]);
    }

    let report = token.remote_status(&fake).await.unwrap();
    assert_eq!(report.activation_status, "ACTIVE");
    assert_eq!(report.counter_sync.result, "IN_SYNC");
    assert!(!report.state_changed);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["counterSync"]["result"], "IN_SYNC");
    assert_eq!(json["maxFailedAttempts"], 5);

    // After two codes the server (which saw none) is behind: the client is ahead by 2.
    let mut state = token.into_state();
    state.counter_data = state.counter_data.advance(2);
    state.counter = 2;
    let report = Token::new(state).remote_status(&fake).await.unwrap();
    assert_eq!(report.counter_sync.result, "CLIENT_AHEAD");
    assert_eq!(report.counter_sync.steps, Some(2));
}

#[tokio::test]
async fn otp_goes_to_commit_or_into_layer2() {
    let fake = Fake::new(false);
    let mut activation = request(&fake);
    activation.activation_otp = Some("12345".to_owned().into());
    Token::activate_with_code(&fake, &activation, |_| Ok(()))
        .await
        .unwrap();
    {
        let server = fake.state.lock().unwrap();
        assert_eq!(server.commits, vec![Some("12345".to_owned())]);
        assert_eq!(server.layer2_otp, None);
    }

    // ON_KEY_EXCHANGE: the OTP travels in layer 2 and the server commits itself.
    let fake = Fake::new(true);
    let mut activation = request(&fake);
    activation.activation_otp = Some("12345".to_owned().into());
    activation.otp_placement = OtpPlacement::KeyExchange;
    Token::activate_with_code(&fake, &activation, |_| Ok(()))
        .await
        .unwrap();
    let server = fake.state.lock().unwrap();
    assert_eq!(server.layer2_otp.as_deref(), Some("12345"));
    assert!(server.commits.is_empty(), "no commit after ACTIVE");
}

#[tokio::test]
async fn a_forged_code_signature_is_refused_before_anything_is_sent() {
    let fake = Fake::new(false);
    let other = PrivateKey::generate(&mut rand::rngs::OsRng);
    let mut activation = request(&fake);
    activation.code = fake
        .code
        .qr_payload(Some(&ecdsa::sign(&other, fake.code.signed_bytes())));
    let err = Token::activate_with_code(&fake, &activation, |_| panic!("nothing is saved"))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::ActivationCodeSignature), "{err}");
    assert!(fake.state.lock().unwrap().temporary.is_empty());
}

#[tokio::test]
async fn a_failed_persist_commits_nothing() {
    let fake = Fake::new(false);
    let err = Token::activate_with_code(&fake, &request(&fake), |_| {
        Err(TokenError::Io(std::io::Error::other("disk full")))
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TokenError::Io(_)));
    let server = fake.state.lock().unwrap();
    assert!(server.commits.is_empty());
    assert_eq!(server.status, Some(ActivationStatus::PendingCommit));
}

#[tokio::test]
async fn an_explicit_sdk_config_skips_application_detail() {
    let fake = Fake::new(false);
    let mut activation = request(&fake);
    activation.sdk_config = Some(
        mobile_sdk_config(APP_KEY, &secret(), &fake.master.public_key())
            .unwrap()
            .into(),
    );
    activation.application_id = "not-asked".into();
    let token = Token::activate_with_code(&fake, &activation, |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(
        token.state().application_id,
        "demo-app",
        "from prepare's answer"
    );
}
