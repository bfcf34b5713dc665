//! The phone simulator's activation bytes against upstream's vectors (`../shared/vectors`,
//! `spec/powerauth-activation.md` §8): pure, no server.
//!
//! - `activation-flow.json`: the SDK side builds layer 2 from the recorded keys, nonce and time and
//!   must produce the recorded `activation/prepare` request byte for byte; fed the recorded
//!   prepare answer it must find the same activation id, server key and `ctrData`, derive the same
//!   keys and fingerprint, and read the recorded status blob as ACTIVE and in sync.
//!
//! The enrollment server's half of layer 1 (`activation-ecies.json`) is the crypto crate's
//! `SecretsDecryptor`, checked against those vectors there.
//!
//! A missing vector folder FAILS unless `OFFLINE_SIGNER_ALLOW_MISSING=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use offline_signer_crypto::ecies::ProtocolVersion;
use offline_signer_crypto::status_blob::CounterSync;
use offline_signer_crypto::{DerSignature, PrivateKey, PublicKey, SymmetricKey, b64};
use offline_token::activation::{self, ActivatedKeys, DeviceInfo, EciesServerKey, SdkConfig};
use offline_token::client::{ActivationStatus, EciesRequestWire, PrepareActivationResponse};
use offline_token::{TokenState, check_remote_status};
use serde_json::Value;

fn vectors(name: &str) -> Option<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    let path = dir.join(name);
    if !path.is_file() {
        assert!(
            std::env::var("OFFLINE_SIGNER_ALLOW_MISSING").as_deref() == Ok("1"),
            "{} is missing, so this test cannot run (CI lays ../shared beside the checkout). \
             Set OFFLINE_SIGNER_ALLOW_MISSING=1 to skip such tests knowingly.",
            path.display()
        );
        eprintln!(
            "!!! SKIPPED: {} is missing; this test checked NOTHING.",
            path.display()
        );
        return None;
    }
    Some(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
}

fn text<'a>(value: &'a Value, path: &str) -> &'a str {
    path.split('.')
        .fold(value, |v, key| &v[key])
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn raw_key(value: &Value, path: &str) -> PrivateKey {
    PrivateKey::from_scalar_bytes(&b64::decode_array(text(value, path)).unwrap()).unwrap()
}

#[test]
fn activation_flow_vectors() {
    let Some(file) = vectors("activation-flow.json") else {
        return;
    };
    let cases = file["data"].as_array().unwrap();
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let name = format!(
            "activation-flow.json case {i} ({})",
            text(case, "protocolVersion")
        );
        check_flow_case(case, &name);
    }
}

fn check_flow_case(case: &Value, name: &str) {
    let version = ProtocolVersion::parse(text(case, "protocolVersion")).unwrap();

    // mobileSdkConfig → the SDK's configuration.
    let config = SdkConfig::parse(text(case, "application.mobileSdkConfig")).unwrap();
    assert_eq!(
        config.application_key,
        text(case, "application.applicationKey"),
        "{name}"
    );
    assert_eq!(
        config.application_secret.expose_text(),
        text(case, "application.applicationSecret"),
        "{name}"
    );
    assert_eq!(
        config.master_public_key.to_base64(),
        text(case, "application.masterPublicKey"),
        "{name}"
    );

    // The activation code and its signature, as the SDK scans them.
    let payload = format!(
        "{}#{}",
        text(case, "init.activationCode"),
        text(case, "init.activationSignature")
    );
    let (code, signature) =
        offline_signer_crypto::activation_code::ActivationCode::parse_qr_payload(&payload).unwrap();
    let signature: DerSignature = signature.unwrap();
    code.verify_signature(&config.master_public_key, &signature)
        .unwrap_or_else(|e| panic!("{name}: code signature: {e}"));

    // Layer 2, byte for byte.
    let server = match version {
        ProtocolVersion::V3_3 => EciesServerKey {
            version,
            public_key: PublicKey::from_base64(text(case, "keystore.temporaryPublicKey")).unwrap(),
            temporary_key_id: Some(text(case, "keystore.temporaryKeyId").to_owned()),
        },
        _ => EciesServerKey {
            version,
            public_key: config.master_public_key,
            temporary_key_id: None,
        },
    };
    let device = raw_key(case, "prepare.devicePrivateKeyRaw32");
    assert_eq!(
        device.public_key().to_base64(),
        text(case, "prepare.devicePublicKey")
    );
    let recorded: Value = case["prepare"]["prepareActivationRequest"].clone();
    let plaintext: Value =
        serde_json::from_str(text(case, "prepare.layer2RequestPlaintext")).unwrap();
    let info = DeviceInfo {
        activation_name: plaintext["activationName"].as_str().unwrap().to_owned(),
        platform: plaintext["platform"].as_str().unwrap().to_owned(),
        device_info: plaintext["deviceInfo"].as_str().unwrap().to_owned(),
    };
    let layer2 = activation::layer2_request(
        &config,
        &server,
        &device.public_key(),
        &info,
        None,
        &raw_key(case, "prepare.ephemeralPrivateKeyRaw32"),
        b64::decode_array(text(&recorded, "nonce")).unwrap(),
        recorded["timestamp"].as_i64().unwrap(),
    )
    .unwrap();
    let expected = EciesRequestWire {
        temporary_key_id: recorded["temporaryKeyId"].as_str().map(str::to_owned),
        ephemeral_public_key: text(&recorded, "ephemeralPublicKey").to_owned(),
        encrypted_data: text(&recorded, "encryptedData").to_owned(),
        mac: text(&recorded, "mac").to_owned(),
        nonce: text(&recorded, "nonce").to_owned(),
        timestamp: recorded["timestamp"].as_i64().unwrap(),
    };
    assert_eq!(layer2.wire, expected, "{name}: layer-2 request");
    assert_eq!(
        b64::encode(layer2.encryptor.envelope_key().expose()),
        text(case, "prepare.envelopeKey"),
        "{name}"
    );

    // The recorded prepare answer, read by the SDK.
    let response: PrepareActivationResponse =
        serde_json::from_value(case["prepare"]["prepareActivationResponse"].clone()).unwrap();
    let result = activation::read_layer2_response(&layer2.encryptor, &response.layer2)
        .unwrap_or_else(|e| panic!("{name}: layer-2 response: {e}"));
    assert_eq!(
        result.activation_id,
        text(case, "init.activationId"),
        "{name}"
    );
    assert_eq!(result.activation_id, response.activation_id, "{name}");
    assert_eq!(
        result.server_public_key.to_base64(),
        text(case, "init.serverPublicKey"),
        "{name}"
    );
    assert_eq!(
        result.ctr_data.to_base64(),
        text(case, "prepare.ctrData"),
        "{name}"
    );
    // A flipped MAC byte is refused.
    let mut tampered = response.layer2.clone();
    tampered.mac = flip_first(&tampered.mac);
    assert!(
        activation::read_layer2_response(&layer2.encryptor, &tampered).is_err(),
        "{name}"
    );

    // Keys and fingerprint.
    let keys = ActivatedKeys::derive(&device, &result.server_public_key);
    let derived = &case["derivedKeys"];
    let sym = |field: &str| SymmetricKey::from_base64(text(derived, field)).unwrap();
    assert_eq!(
        keys.factor_keys.possession,
        sym("signaturePossessionKey"),
        "{name}"
    );
    assert_eq!(
        keys.factor_keys.knowledge,
        sym("signatureKnowledgeKey"),
        "{name}"
    );
    assert_eq!(
        keys.factor_keys.biometry,
        sym("signatureBiometryKey"),
        "{name}"
    );
    assert_eq!(keys.transport_key, sym("transportKey"), "{name}");
    let state = TokenState {
        server_url: "http://127.0.0.1:9".into(),
        application_id: text(case, "application.applicationId").into(),
        user_id: response.user_id.clone().unwrap_or_default(),
        activation_id: result.activation_id.clone(),
        device_public_key: device.public_key(),
        server_public_key: result.server_public_key,
        master_public_key: config.master_public_key,
        factor_keys: keys.factor_keys.clone(),
        counter_data: result.ctr_data,
        counter: 0,
        transport_key: Some(keys.transport_key.clone()),
        protocol_version: Some(version),
    };
    assert_eq!(
        state.fingerprint(),
        text(derived, "devicePublicKeyFingerprint"),
        "{name}"
    );

    // The first status after commit.
    let status = &case["status"];
    let answer: ActivationStatus = serde_json::from_value(serde_json::json!({
        "activationId": result.activation_id,
        "activationStatus": text(status, "activationStatus"),
        "encryptedStatusBlob": text(status, "encryptedStatusBlob"),
        "encryptedStatusBlobNonce": text(status, "encryptedStatusBlobNonce"),
        "devicePublicKeyFingerprint": text(derived, "devicePublicKeyFingerprint"),
    }))
    .unwrap();
    let challenge = b64::decode_array(text(status, "challenge")).unwrap();
    let report = check_remote_status(&state, &challenge, &answer)
        .unwrap_or_else(|e| panic!("{name}: status: {e}"));
    assert_eq!(report.activation_status, "ACTIVE", "{name}");
    assert_eq!(report.sync, CounterSync::InSync, "{name}");
    assert_eq!(report.counter_sync.result, "IN_SYNC", "{name}");
    let plain = hex(text(status, "statusBlobPlain"));
    assert_eq!(report.failed_attempts, plain[13], "{name}");
    assert_eq!(report.max_failed_attempts, plain[14], "{name}");
    assert_eq!(report.ctr_look_ahead, plain[15], "{name}");
    assert!(!report.state_changed);

    // Three codes later the client is ahead of the server's blob by three.
    let mut ahead = state.clone();
    ahead.counter_data = ahead.counter_data.advance(3);
    ahead.counter = 3;
    let report = check_remote_status(&ahead, &challenge, &answer).unwrap();
    assert_eq!(
        report.sync,
        CounterSync::ClientAhead {
            steps: 3,
            sign_soon: false
        },
        "{name}"
    );
    // A wrong challenge does not decrypt to a valid blob.
    let mut wrong = challenge;
    wrong[0] ^= 1;
    assert!(
        check_remote_status(&state, &wrong, &answer).is_err(),
        "{name}"
    );
}

fn flip_first(b64_text: &str) -> String {
    let mut bytes = b64::decode(b64_text).unwrap();
    bytes[0] ^= 1;
    b64::encode(bytes)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
