//! Activation by code, protocol 3.3, at the service level over the software signer with a manual
//! clock: init → keystore → decryptor → prepare → commit → status blob → personalized create →
//! verify, and the refusals (tampered MAC, replay, expired code, timestamp outside the window,
//! wrong OTP, old protocol versions), each leaving the activation unchanged.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use offline_signer::crypto::application::ApplicationSecret;
use offline_signer::crypto::ecies::{
    ClientEncryptor, EciesContext, EciesRequest, EciesResponse, Encryptor, ProtocolVersion,
};
use offline_signer::crypto::temporary_key::{
    build_request, generate_challenge, request_key, verify_response,
};
use offline_signer::crypto::{MasterSecret, PrivateKey, PublicKey, b64, status_blob};
use offline_signer::model::ActivationStatus;
use offline_signer::service::{
    EciesDecryptorRequest, EciesFields, InitActivation, PrepareActivation, ServiceError,
};
use offline_signer::signer::software::SoftwareSigner;
use offline_signer_testkit::http_harness::device_from;
use offline_signer_testkit::service_harness::{Harness, default_settings};
use serde_json::json;

struct App {
    key: String,
    secret: ApplicationSecret,
    master: PublicKey,
}

async fn setup() -> (Harness, App) {
    let h = Harness::new(
        Arc::new(SoftwareSigner::new_in_memory()),
        default_settings(),
    )
    .await;
    let detail = h.service.create_application("demo").await.unwrap();
    assert_eq!(detail.versions.len(), 1);
    let v = &detail.versions[0];
    assert_eq!(v.application_version_id, "default");
    let app = App {
        key: v.application_key.clone(),
        secret: ApplicationSecret::from_text(&v.application_secret).unwrap(),
        master: PublicKey::from_base64(&detail.master_public_key).unwrap(),
    };
    (h, app)
}

async fn init(h: &Harness, otp: Option<&str>) -> (String, String) {
    let r = h
        .service
        .init_activation(InitActivation {
            user_id: "alice".into(),
            application_id: Some("demo".into()),
            activation_otp: otp.map(str::to_owned),
            ..InitActivation::default()
        })
        .await
        .unwrap();
    (r.activation_id, r.activation_code)
}

/// keystore/create as the SDK does it; returns (key id, public key).
async fn temporary_key(h: &Harness, app: &App) -> (String, PublicKey) {
    let challenge = generate_challenge(&mut rand::rngs::OsRng);
    let jwt = build_request(&app.key, None, &challenge, &request_key(&app.secret, None));
    let answer = h.service.create_temporary_key(&jwt).await.unwrap();
    let claims = verify_response(&answer, &app.master, &app.key, None, &challenge).unwrap();
    (claims.key_id, claims.public_key)
}

fn fields(request: &EciesRequest, tk: &str, version: &str) -> EciesFields {
    EciesFields {
        protocol_version: Some(version.into()),
        temporary_key_id: Some(tk.into()),
        ephemeral_public_key: Some(request.ephemeral_public_key.to_base64()),
        encrypted_data: Some(b64::encode(&request.encrypted_data)),
        mac: Some(b64::encode(&request.mac)),
        nonce: request.nonce.map(b64::encode),
        timestamp: request.timestamp_ms,
    }
}

/// Layer 2 of the activation, encrypted to the temporary key at the service's time.
fn layer2(
    h: &Harness,
    app: &App,
    tk: &(String, PublicKey),
    device: &PrivateKey,
    otp: Option<&str>,
) -> (ClientEncryptor, EciesRequest) {
    let context = EciesContext::new(
        ProtocolVersion::V3_3,
        Encryptor::ActivationLayer2,
        &app.key,
        &app.secret,
        None,
        Some(&tk.0),
    )
    .unwrap();
    let plain = json!({
        "devicePublicKey": b64::encode(device.public_key().to_compressed()),
        "activationName": "My phone",
        "platform": "iOS",
        "activationOtp": otp,
    });
    ClientEncryptor::encrypt_request_random(
        &context,
        &tk.1,
        &mut rand::rngs::OsRng,
        plain.to_string().as_bytes(),
        h.clock.unix_seconds() as i64 * 1000,
    )
}

fn prepare_request(app: &App, code: &str, tk: &str, request: &EciesRequest) -> PrepareActivation {
    PrepareActivation {
        activation_code: Some(code.into()),
        application_key: Some(app.key.clone()),
        ecies: fields(request, tk, "3.3"),
    }
}

#[tokio::test]
async fn full_flow_init_to_verified_code() {
    let (h, app) = setup().await;
    let (activation_id, code) = init(&h, None).await;
    let created = h
        .service
        .activation_status(&activation_id, None)
        .await
        .unwrap();
    assert_eq!(created.activation_status, ActivationStatus::Created);
    assert_eq!(created.activation_code.as_deref(), Some(code.as_str()));
    assert_eq!(created.device_public_key_fingerprint, None);

    let tk = temporary_key(&h, &app).await;

    // Layer 1: the enrollment server asks for the envelope key; it equals the client's.
    let l1_context = EciesContext::new(
        ProtocolVersion::V3_3,
        Encryptor::ApplicationScopeGeneric,
        &app.key,
        &app.secret,
        None,
        Some(&tk.0),
    )
    .unwrap();
    let (l1_client, l1_request) = ClientEncryptor::encrypt_request_random(
        &l1_context,
        &tk.1,
        &mut rand::rngs::OsRng,
        b"{}",
        h.clock.unix_seconds() as i64 * 1000,
    );
    let decryptor = EciesDecryptorRequest {
        activation_id: None,
        application_key: Some(app.key.clone()),
        ecies: EciesFields {
            encrypted_data: None,
            mac: None,
            ..fields(&l1_request, &tk.0, "3.3")
        },
    };
    let secrets = h.service.ecies_decryptor(decryptor.clone()).await.unwrap();
    assert_eq!(secrets.secret_key, *l1_client.envelope_key().to_base64());
    // The same layer-1 request again is a replay.
    assert!(matches!(
        h.service.ecies_decryptor(decryptor).await,
        Err(ServiceError::InvalidRequest(_))
    ));

    // Layer 2: prepare.
    let device = PrivateKey::generate(&mut rand::rngs::OsRng);
    let (client, request) = layer2(&h, &app, &tk, &device, None);
    let prepared = h
        .service
        .prepare_activation(prepare_request(&app, &code, &tk.0, &request))
        .await
        .unwrap();
    assert_eq!(prepared.activation_status, ActivationStatus::PendingCommit);
    let response = EciesResponse::from_base64(
        &prepared.encrypted_data,
        &prepared.mac,
        Some(&prepared.nonce),
        Some(prepared.timestamp),
    )
    .unwrap();
    let plain = client.decrypt_response(&response).unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(answer["activationId"], activation_id.as_str());
    let phone = device_from(&device, &answer);

    // Replaying the prepare stays ERR0024, even though the code is used.
    assert!(matches!(
        h.service
            .prepare_activation(prepare_request(&app, &code, &tk.0, &request))
            .await,
        Err(ServiceError::InvalidRequest(_))
    ));

    h.service
        .commit_activation(&activation_id, None)
        .await
        .unwrap();

    // Status with a challenge: the blob decrypts with the client's KEY_TRANSPORT.
    let challenge = [7u8; 16];
    let status = h
        .service
        .activation_status(&activation_id, Some(&b64::encode(challenge)))
        .await
        .unwrap();
    assert_eq!(status.activation_status, ActivationStatus::Active);
    assert_eq!(status.platform.as_deref(), Some("ios"));
    assert_eq!(status.version, 3);
    let server_public =
        PublicKey::from_base64(answer["serverPublicKey"].as_str().unwrap()).unwrap();
    let kt = MasterSecret::agree(&device, &server_public)
        .derive()
        .transport;
    let nonce: [u8; 16] = b64::decode_array(&status.encrypted_status_blob_nonce.unwrap()).unwrap();
    let blob: [u8; 32] = b64::decode_array(&status.encrypted_status_blob.unwrap()).unwrap();
    let blob = status_blob::decrypt(&kt, &challenge, &nonce, &blob).unwrap();
    assert_eq!(blob.status, ActivationStatus::Active);
    assert_eq!(
        blob.ctr_data_hash,
        status_blob::ctr_data_hash(&kt, &phone.counter.get())
    );
    // Without a challenge: no blob.
    let plain_status = h
        .service
        .activation_status(&activation_id, None)
        .await
        .unwrap();
    assert_eq!(plain_status.encrypted_status_blob, None);

    // The activation signs offline like a registered one.
    let (_, data) = h.payload(&phone, None).await;
    let r = h.verify(&phone, &data, &phone.sign(&data)).await;
    assert!(r.signature_valid);
}

#[tokio::test]
async fn refusals_change_nothing() {
    let (h, app) = setup().await;
    let (activation_id, code) = init(&h, None).await;
    let tk = temporary_key(&h, &app).await;
    let device = PrivateKey::generate(&mut rand::rngs::OsRng);
    let before = h.store.activation(&activation_id).unwrap();

    // Tampered MAC → ERR0018.
    let (_, mut request) = layer2(&h, &app, &tk, &device, None);
    request.mac[0] ^= 1;
    assert!(matches!(
        h.service
            .prepare_activation(prepare_request(&app, &code, &tk.0, &request))
            .await,
        Err(ServiceError::DecryptionFailed)
    ));
    // Timestamp outside the window (both directions) → ERR0024.
    for shift in [-61_000i64, 61_000] {
        let (_, mut request) = layer2(&h, &app, &tk, &device, None);
        request.timestamp_ms = request.timestamp_ms.map(|t| t + shift);
        assert!(matches!(
            h.service
                .prepare_activation(prepare_request(&app, &code, &tk.0, &request))
                .await,
            Err(ServiceError::InvalidRequest(_))
        ));
    }
    // Protocol 3.2 → ERR0024 with its own message.
    let (_, request) = layer2(&h, &app, &tk, &device, None);
    let mut old = prepare_request(&app, &code, &tk.0, &request);
    old.ecies.protocol_version = Some("3.2".into());
    assert!(matches!(
        h.service.prepare_activation(old).await,
        Err(ServiceError::UnsupportedProtocolVersion(_))
    ));
    // An OTP where none was set → ERR0031 (deviation).
    let (_, request) = layer2(&h, &app, &tk, &device, Some("12345"));
    assert!(matches!(
        h.service
            .prepare_activation(prepare_request(&app, &code, &tk.0, &request))
            .await,
        Err(ServiceError::InvalidActivationOtp)
    ));
    assert_eq!(h.store.activation(&activation_id).unwrap(), before);

    // Expired code: prepare does not find it; status turns it REMOVED.
    h.clock.advance(Duration::from_secs(301));
    let tk = temporary_key(&h, &app).await;
    let (_, request) = layer2(&h, &app, &tk, &device, None);
    assert!(matches!(
        h.service
            .prepare_activation(prepare_request(&app, &code, &tk.0, &request))
            .await,
        Err(ServiceError::ActivationNotFound)
    ));
    let status = h
        .service
        .activation_status(&activation_id, None)
        .await
        .unwrap();
    assert_eq!(status.activation_status, ActivationStatus::Removed);
}

#[tokio::test]
async fn activation_otp_is_checked_at_commit() {
    let (h, app) = setup().await;
    let (activation_id, code) = init(&h, Some("otp-123")).await;
    let tk = temporary_key(&h, &app).await;
    let device = PrivateKey::generate(&mut rand::rngs::OsRng);
    let (_, request) = layer2(&h, &app, &tk, &device, None);
    h.service
        .prepare_activation(prepare_request(&app, &code, &tk.0, &request))
        .await
        .unwrap();
    for wrong in [None, Some("otp-999")] {
        assert!(matches!(
            h.service.commit_activation(&activation_id, wrong).await,
            Err(ServiceError::InvalidActivationOtp)
        ));
        let a = h.store.activation(&activation_id).unwrap().unwrap();
        assert_eq!(a.status, ActivationStatus::PendingCommit);
    }
    h.service
        .commit_activation(&activation_id, Some("otp-123"))
        .await
        .unwrap();
    let a = h.store.activation(&activation_id).unwrap().unwrap();
    assert_eq!((a.status, a.failed_attempts), (ActivationStatus::Active, 0));
}

#[tokio::test]
async fn parity_decisions() {
    let (h, _app) = setup().await;
    // Duplicate application → ERR0043; duplicate version too.
    assert!(matches!(
        h.service.create_application("demo").await,
        Err(ServiceError::DuplicateApplication)
    ));
    let v2 = h
        .service
        .create_application_version("demo", "v2")
        .await
        .unwrap();
    assert_eq!(v2.application_version_id, "v2");
    assert!(matches!(
        h.service.create_application_version("demo", "v2").await,
        Err(ServiceError::DuplicateApplication)
    ));
    assert_eq!(
        h.service
            .application_detail("demo")
            .await
            .unwrap()
            .versions
            .len(),
        2
    );
    // Unknown activation → REMOVED, with a random blob when a challenge is given.
    let ghost = h
        .service
        .activation_status(
            "00000000-0000-4000-8000-000000000000",
            Some(&b64::encode([1u8; 16])),
        )
        .await
        .unwrap();
    assert_eq!(ghost.activation_status, ActivationStatus::Removed);
    assert!(ghost.encrypted_status_blob.is_some());
    // Deprecated OTP validation values other than NONE → ERR0024.
    assert!(matches!(
        h.service
            .init_activation(InitActivation {
                user_id: "bob".into(),
                application_id: Some("demo".into()),
                activation_otp_validation: Some("ON_COMMIT".into()),
                ..InitActivation::default()
            })
            .await,
        Err(ServiceError::InvalidRequest(_))
    ));
    // Block twice and unblock twice: 200, the second writes nothing.
    let phone = h.device("demo", None).await;
    h.service
        .block_activation(&phone.activation_id, None)
        .await
        .unwrap();
    let head = h.store.audit_head().unwrap();
    h.service
        .block_activation(&phone.activation_id, None)
        .await
        .unwrap();
    assert_eq!(h.store.audit_head().unwrap(), head);
    h.service
        .unblock_activation(&phone.activation_id)
        .await
        .unwrap();
    let head = h.store.audit_head().unwrap();
    h.service
        .unblock_activation(&phone.activation_id)
        .await
        .unwrap();
    assert_eq!(h.store.audit_head().unwrap(), head);
}
