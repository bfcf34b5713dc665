//! The HTTP API in process (router + `oneshot`) over the software signer: every method, every error
//! code the API can produce, authentication, limits, the envelope, and the exact JSON field names.
#![allow(clippy::unwrap_used)]

use offline_signer_testkit::http_harness;
use offline_signer_testkit::service_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_harness::{Api, BODY_LIMIT, api_settings, assert_error, basic, keys, sorted};
use offline_signer::crypto::PrivateKey;
use offline_signer::model::{
    DerSignature, EncryptedSecret, KeyId, PublicKey, Timestamp, WrappedKey,
};
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::signer::{
    GeneratedKeyPair, Inventory, KeyRef, ObjectAttributes, PlainSecret, SharedSecret, Signer,
    SignerError, SignerKind, StorageKeyIds, WrappedKeyPair,
};
use offline_signer::store::{Application, Store};
use serde_json::{Value, json};
use service_harness::{Approval, default_settings, web_flow_data};

async fn api() -> Api {
    Api::new(Arc::new(SoftwareSigner::new_in_memory())).await
}

const VERIFY_FIELDS: &[&str] = &[
    "signatureValid",
    "activationStatus",
    "blockedReason",
    "activationId",
    "userId",
    "applicationId",
    "signatureType",
    "remainingAttempts",
    "applicationRoles",
    "activationFlags",
    "nonceStatus",
];

#[tokio::test]
async fn application_create_and_detail() {
    let api = api().await;
    let created = api.application("demo").await;
    assert_eq!(
        keys(&created),
        sorted(&[
            "applicationId",
            "applicationRoles",
            "masterPublicKey",
            "versions"
        ])
    );
    assert_eq!(created["applicationId"], "demo");
    assert_eq!(created["applicationRoles"], json!([]));
    let master = created["masterPublicKey"].as_str().unwrap();
    let point = offline_signer::crypto::PublicKey::from_base64(master).unwrap();
    assert_eq!(
        point.to_base64(),
        master,
        "output is uncompressed, canonical Base64"
    );

    let detail = api
        .ok("/application/detail", json!({ "applicationId": "demo" }))
        .await;
    assert_eq!(detail, created);

    // Duplicate id: ERR0043 (PowerAuth parity); unknown: ERR0015.
    let bad = StatusCode::BAD_REQUEST;
    api.err(
        "/application/create",
        json!({ "applicationId": "demo" }),
        bad,
        "ERR0043",
    )
    .await;
    api.err(
        "/application/detail",
        json!({ "applicationId": "nope" }),
        bad,
        "ERR0015",
    )
    .await;
    api.err(
        "/signature/offline/non-personalized/create",
        json!({ "applicationId": "nope", "data": "x" }),
        bad,
        "ERR0015",
    )
    .await;
    api.err(
        "/application/create",
        json!({ "applicationId": " " }),
        bad,
        "ERR0024",
    )
    .await;
}

#[tokio::test]
async fn application_without_master_key_is_err0003() {
    let api = api().await;
    api.store
        .create_application(
            &Application {
                id: "keyless".into(),
                roles: vec![],
                master_keys: vec![],
                created_at: Timestamp::now(),
                versions: vec![],
            },
            None,
        )
        .unwrap();
    let bad = StatusCode::BAD_REQUEST;
    api.err(
        "/application/detail",
        json!({ "applicationId": "keyless" }),
        bad,
        "ERR0003",
    )
    .await;
    api.err(
        "/signature/offline/non-personalized/create",
        json!({ "applicationId": "keyless", "data": "x" }),
        bad,
        "ERR0003",
    )
    .await;
}

#[tokio::test]
async fn register_commit_status_create_verify() {
    let api = api().await;
    api.application("demo").await;
    let private = PrivateKey::generate(&mut rand::rngs::OsRng);
    let registered = api
        .ok(
            "/activation/register",
            json!({
                "applicationId": "demo",
                "userId": "alice",
                "devicePublicKey": private.public_key().to_base64(),
                "maxFailedAttempts": 3,
                "activationFlags": ["FLAG_A"],
                "someFutureField": {"ignored": true},
            }),
        )
        .await;
    assert_eq!(
        keys(&registered),
        sorted(&[
            "activationId",
            "activationStatus",
            "serverPublicKey",
            "ctrData",
            "devicePublicKeyFingerprint"
        ])
    );
    assert_eq!(registered["activationStatus"], "PENDING_COMMIT");
    let id = registered["activationId"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(id, id.to_lowercase());
    let fingerprint = registered["devicePublicKeyFingerprint"].as_str().unwrap();
    assert!(fingerprint.len() == 8 && fingerprint.bytes().all(|b| b.is_ascii_digit()));
    let device = http_harness::device_from(&private, &registered);

    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert_eq!(
        keys(&status),
        sorted(&[
            "activationId",
            "activationStatus",
            "blockedReason",
            "userId",
            "applicationId",
            "activationFlags",
            "failedAttempts",
            "maxFailedAttempts",
            "timestampCreated",
            "timestampLastUsed",
            "devicePublicKeyFingerprint",
            "timestampLastChange",
            "activationOtpValidation",
            "commitPhase",
            "activationName",
            "extras",
            "protocol",
            "externalId",
            "platform",
            "deviceInfo",
            "version",
            "activationCode",
            "activationSignature",
            "encryptedStatusBlob",
            "encryptedStatusBlobNonce",
            "applicationRoles"
        ])
    );
    assert_eq!(status["activationStatus"], "PENDING_COMMIT");
    assert_eq!(status["blockedReason"], Value::Null);
    assert_eq!(status["timestampLastUsed"], Value::Null);
    assert_eq!(status["userId"], "alice");
    assert_eq!(status["applicationId"], "demo");
    assert_eq!(status["activationFlags"], json!(["FLAG_A"]));
    assert_eq!(status["failedAttempts"], 0);
    assert_eq!(status["maxFailedAttempts"], 3);
    assert_eq!(status["devicePublicKeyFingerprint"], fingerprint);
    let created = status["timestampCreated"].as_str().unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");

    // Not committed yet: no payload.
    api.err(
        "/signature/offline/personalized/create",
        json!({ "activationId": id, "data": web_flow_data() }),
        StatusCode::BAD_REQUEST,
        "ERR0008",
    )
    .await;

    let committed = api
        .ok("/activation/commit", json!({ "activationId": id }))
        .await;
    assert_eq!(committed, json!({ "activationId": id, "activated": true }));
    api.err(
        "/activation/commit",
        json!({ "activationId": id }),
        StatusCode::BAD_REQUEST,
        "ERR0008",
    )
    .await;

    // Create a payload, check its shape, sign it like the phone and verify.
    let payload = api
        .ok(
            "/signature/offline/personalized/create",
            json!({ "activationId": id, "data": web_flow_data() }),
        )
        .await;
    assert_eq!(keys(&payload), sorted(&["offlineData", "nonce"]));
    let offline_data = payload["offlineData"].as_str().unwrap();
    assert!(offline_data.contains(&format!("\n{}\n1", payload["nonce"].as_str().unwrap())));
    let data = service_harness::phone_request_data(offline_data, &device.server_public_key);
    let code = device.sign(&data);

    let verified = api
        .ok(
            "/signature/offline/verify",
            json!({ "activationId": id, "data": data.as_str(), "signature": code }),
        )
        .await;
    assert_eq!(keys(&verified), sorted(VERIFY_FIELDS));
    assert_eq!(
        verified,
        json!({
            "signatureValid": true,
            "activationStatus": "ACTIVE",
            "blockedReason": null,
            "activationId": id,
            "userId": "alice",
            "applicationId": "demo",
            "signatureType": "POSSESSION_KNOWLEDGE",
            "remainingAttempts": 3,
            "applicationRoles": [],
            "activationFlags": ["FLAG_A"],
            "nonceStatus": "VALID",
        })
    );

    // The same code again: the nonce was consumed.
    let replay = api
        .ok(
            "/signature/offline/verify",
            json!({ "activationId": id, "data": data.as_str(), "signature": code }),
        )
        .await;
    assert_eq!(replay["signatureValid"], false);
    assert_eq!(replay["nonceStatus"], "CONSUMED");

    // Biometry when allowed, with a caller-chosen nonce and component length 4.
    let nonce = "AAECAwQFBgcICQoLDA0ODw==";
    let payload = api
        .ok(
            "/signature/offline/personalized/create",
            json!({ "activationId": id, "data": web_flow_data(), "nonce": nonce }),
        )
        .await;
    assert_eq!(payload["nonce"], nonce);
    let data = service_harness::phone_request_data(
        payload["offlineData"].as_str().unwrap(),
        &device.server_public_key,
    );
    let code = device.sign_as(&data, Approval::BIOMETRY.with_length(4));
    let verified = api
        .ok(
            "/signature/offline/verify",
            json!({
                "activationId": id, "data": data.as_str(), "signature": code,
                "allowBiometry": true, "componentLength": 4,
            }),
        )
        .await;
    assert_eq!(verified["signatureValid"], true, "{verified}");
    assert_eq!(verified["signatureType"], "POSSESSION_BIOMETRY");

    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert!(status["timestampLastUsed"].is_string());

    // Verification outcomes are counted by validity, nonce status and signature type.
    let (_, _, body) = api.get("/metrics").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let counted = text.lines().any(|line| {
        line.starts_with("offline_signer_verifications_total{")
            && line.contains(r#"valid="true""#)
            && line.contains(r#"nonce_status="VALID""#)
            && line.contains(r#"signature_type="POSSESSION_BIOMETRY""#)
    });
    assert!(counted, "{text}");
}

#[tokio::test]
async fn wrong_codes_block_and_unblock_restores() {
    let api = api().await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let id = device.activation_id.clone();
    for remaining in (0..5).rev() {
        let data = api.payload(&device).await;
        let answer = api
            .ok(
                "/signature/offline/verify",
                json!({ "activationId": id, "data": data, "signature": "00000000-00000000" }),
            )
            .await;
        assert_eq!(keys(&answer), sorted(VERIFY_FIELDS));
        assert_eq!(answer["signatureValid"], false);
        assert_eq!(answer["signatureType"], "POSSESSION_KNOWLEDGE");
        assert_eq!(answer["remainingAttempts"], remaining);
        assert_eq!(answer["nonceStatus"], "VALID");
        if remaining == 0 {
            assert_eq!(answer["activationStatus"], "BLOCKED");
            assert_eq!(answer["blockedReason"], "MAX_FAILED_ATTEMPTS");
        } else {
            assert_eq!(answer["activationStatus"], "ACTIVE");
            assert_eq!(answer["blockedReason"], Value::Null);
        }
    }
    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert_eq!(status["activationStatus"], "BLOCKED");
    assert_eq!(status["failedAttempts"], 5);
    let unblocked = api
        .ok("/activation/unblock", json!({ "activationId": id }))
        .await;
    assert_eq!(
        unblocked,
        json!({ "activationId": id, "activationStatus": "ACTIVE" })
    );
    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert_eq!(status["failedAttempts"], 0);
    assert_eq!(status["blockedReason"], Value::Null);
}

#[tokio::test]
async fn block_unblock_remove_lifecycle_and_err0009() {
    let api = api().await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let id = device.activation_id.clone();
    let bad = StatusCode::BAD_REQUEST;

    let blocked = api
        .ok("/activation/block", json!({ "activationId": id }))
        .await;
    assert_eq!(
        blocked,
        json!({ "activationId": id, "activationStatus": "BLOCKED" })
    );
    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert_eq!(status["blockedReason"], "NOT_SPECIFIED");
    // Repeating is idempotent (PowerAuth parity): 200, nothing changes.
    api.ok("/activation/block", json!({ "activationId": id }))
        .await;
    // A blocked activation: verify answers 200 with the bare status, nonceStatus null.
    let answer = api
        .ok(
            "/signature/offline/verify",
            json!({ "activationId": id, "data": "POST&YQ==&AAECAwQFBgcICQoLDA0ODw==&Yg==", "signature": "1" }),
        )
        .await;
    assert_eq!(answer["activationStatus"], "BLOCKED");
    assert_eq!(answer["nonceStatus"], Value::Null);
    assert_eq!(answer["userId"], Value::Null);

    api.ok("/activation/unblock", json!({ "activationId": id }))
        .await;
    // Repeating is idempotent (PowerAuth parity): 200, nothing changes.
    api.ok("/activation/unblock", json!({ "activationId": id }))
        .await;
    let blocked = api
        .ok(
            "/activation/block",
            json!({ "activationId": id, "reason": "LOST_PHONE" }),
        )
        .await;
    assert_eq!(blocked["activationStatus"], "BLOCKED");
    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert_eq!(status["blockedReason"], "LOST_PHONE");

    let removed = api
        .ok("/activation/remove", json!({ "activationId": id }))
        .await;
    assert_eq!(removed, json!({ "activationId": id, "removed": true }));
    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert_eq!(status["activationStatus"], "REMOVED");
    // Repeating is idempotent (PowerAuth parity): 200, nothing changes.
    api.ok("/activation/remove", json!({ "activationId": id }))
        .await;
    api.err(
        "/signature/offline/personalized/create",
        json!({ "activationId": id, "data": "x" }),
        bad,
        "ERR0008",
    )
    .await;

    let unknown = json!({ "activationId": "00000000-0000-4000-8000-000000000000" });
    for path in [
        "/activation/commit",
        "/activation/block",
        "/activation/unblock",
        "/activation/remove",
    ] {
        api.err(path, unknown.clone(), bad, "ERR0009").await;
    }
    // activation/status of an unknown id: 200 with REMOVED (PowerAuth parity).
    let ghost = api.ok("/activation/status", unknown.clone()).await;
    assert_eq!(ghost["activationStatus"], "REMOVED");
    api.err(
        "/signature/offline/personalized/create",
        json!({ "activationId": "00000000-0000-4000-8000-0000000000aa", "data": "x" }),
        bad,
        "ERR0009",
    )
    .await;
}

#[tokio::test]
async fn register_errors() {
    let api = api().await;
    api.application("demo").await;
    let bad = StatusCode::BAD_REQUEST;
    let key = PrivateKey::generate(&mut rand::rngs::OsRng)
        .public_key()
        .to_base64();
    let register = |app: &str, device: &str, extra: Value| {
        let mut object =
            json!({ "applicationId": app, "userId": "bob", "devicePublicKey": device });
        if let (Some(o), Some(e)) = (object.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        object
    };
    api.err(
        "/activation/register",
        register("nope", &key, json!({})),
        bad,
        "ERR0015",
    )
    .await;
    api.err(
        "/activation/register",
        register("demo", "not base64!", json!({})),
        bad,
        "ERR0024",
    )
    .await;
    // Valid Base64 of 65 bytes that are not a point of P-256.
    let mut off_curve = vec![4u8];
    off_curve.extend_from_slice(&[1u8; 64]);
    let off_curve = offline_signer::crypto::b64::encode(&off_curve);
    api.err(
        "/activation/register",
        register("demo", &off_curve, json!({})),
        bad,
        "ERR0010",
    )
    .await;
    for extra in [
        json!({ "maxFailedAttempts": 0 }),
        json!({ "maxFailedAttempts": 65 }),
        json!({ "maxFailedAttempts": -1 }),
        json!({ "maxFailedAttempts": "5" }),
        json!({ "activationFlags": "FLAG" }),
        json!({ "userId": null }),
    ] {
        api.err(
            "/activation/register",
            register("demo", &key, extra),
            bad,
            "ERR0024",
        )
        .await;
    }
    // Compressed keys are accepted.
    let compressed = offline_signer::crypto::b64::encode(
        PrivateKey::generate(&mut rand::rngs::OsRng)
            .public_key()
            .to_compressed(),
    );
    api.ok(
        "/activation/register",
        register("demo", &compressed, json!({ "activationFlags": null })),
    )
    .await;
}

#[tokio::test]
async fn bad_verify_input_is_err0024_never_500() {
    let api = api().await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let data = api.payload(&device).await;
    let id = device.activation_id.clone();
    let bad = StatusCode::BAD_REQUEST;
    let verify = |extra: Value| {
        let mut object =
            json!({ "activationId": id, "data": data, "signature": "12345678-12345678" });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() && k.starts_with('-') {
                object.as_object_mut().unwrap().remove(&k[1..]);
            } else {
                object.as_object_mut().unwrap().insert(k.clone(), v.clone());
            }
        }
        object
    };
    for extra in [
        json!({ "allowBiometry": "yes" }),
        json!({ "componentLength": "8" }),
        json!({ "componentLength": 9 }),
        json!({ "componentLength": 3 }),
        json!({ "componentLength": 8.5 }),
        json!({ "data": "POST&YQ==&Yg==" }),
        json!({ "signature": null }),
        json!({ "-signature": null }),
        json!({ "-activationId": null }),
        json!({ "-data": null }),
        json!({ "activationId": 5 }),
        json!({ "proximityCheck": { "seed": "AAAA", "stepLength": 0, "stepCount": 0 } }),
        json!({ "proximityCheck": { "seed": "***", "stepLength": 30 } }),
        json!({ "proximityCheck": "yes" }),
    ] {
        let (status, body) = api
            .call("/signature/offline/verify", verify(extra.clone()))
            .await;
        assert_error(status, &body, bad, "ERR0024");
    }
    // Envelope-level errors.
    for raw in [
        "",
        "not json",
        "{",
        "[]",
        "{}",
        r#"{"requestObject": null}"#,
        r#"{"requestObject": "x"}"#,
        r#"{"object": {}}"#,
        r#"{"requestObject": {"activationId": "a", "data": "a&b&c&d", "signature": "1", "componentLength": 99999999999999999999}}"#,
        r#"{"requestObject": {"activationId": "a", "data": "a&b&c&d", "signature": "1"}"#,
    ] {
        let (status, body) = api.post_raw("/signature/offline/verify", raw).await;
        assert_error(status, &body, bad, "ERR0024");
    }
    // Nothing above counted as a failed attempt.
    let status = api
        .ok("/activation/status", json!({ "activationId": id }))
        .await;
    assert_eq!(status["failedAttempts"], 0);

    // allowBiometry null = false, componentLength absent = 8, unknown fields ignored.
    let code = device.sign(&offline_signer::crypto::RequestData::parse(&data).unwrap());
    let answer = api
        .ok(
            "/signature/offline/verify",
            verify(json!({ "allowBiometry": null, "signature": code, "biometryAllowed": true })),
        )
        .await;
    assert_eq!(answer["signatureValid"], true, "{answer}");

    // Unknown activation: 200, REMOVED, every scalar null, lists empty.
    let answer = api
        .ok(
            "/signature/offline/verify",
            json!({ "activationId": "00000000-0000-4000-8000-0000000000bb", "data": data, "signature": "1" }),
        )
        .await;
    assert_eq!(
        answer,
        json!({
            "signatureValid": false, "activationStatus": "REMOVED", "blockedReason": null,
            "activationId": "00000000-0000-4000-8000-0000000000bb", "userId": null, "applicationId": null,
            "signatureType": null, "remainingAttempts": null, "applicationRoles": [],
            "activationFlags": [], "nonceStatus": null,
        })
    );

    // A nonce never issued here.
    let foreign = "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AAECAwQFBgcICQoLDA0ODw==&e30=";
    let answer = api
        .ok(
            "/signature/offline/verify",
            json!({ "activationId": id, "data": foreign, "signature": "1" }),
        )
        .await;
    assert_eq!(answer["nonceStatus"], "UNKNOWN");

    // Personalized create: bad nonce and bad proximity are ERR0024.
    for extra in [
        json!({ "nonce": "c2hvcnQ=" }),
        json!({ "proximityCheck": { "seed": "AAAA", "stepLength": 0 } }),
        json!({ "data": 5 }),
    ] {
        let mut object = json!({ "activationId": id, "data": "x" });
        object
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        api.err(
            "/signature/offline/personalized/create",
            object,
            bad,
            "ERR0024",
        )
        .await;
    }
}

#[tokio::test]
async fn non_personalized_payload() {
    let api = api().await;
    let app = api.application("demo").await;
    let payload = api
        .ok(
            "/signature/offline/non-personalized/create",
            json!({ "applicationId": "demo", "data": web_flow_data() }),
        )
        .await;
    assert_eq!(keys(&payload), sorted(&["offlineData", "nonce"]));
    let master =
        offline_signer::crypto::PublicKey::from_base64(app["masterPublicKey"].as_str().unwrap())
            .unwrap();
    let parsed =
        offline_signer::crypto::OfflineData::parse(payload["offlineData"].as_str().unwrap())
            .unwrap();
    parsed.verify(&master).expect("signed with the master key");
    assert_eq!(parsed.nonce(), payload["nonce"].as_str().unwrap());
}

#[tokio::test]
async fn authentication_happens_first() {
    let api = api().await;
    let send = |authorization: Option<String>, body: String| {
        let mut request =
            Request::post("/rest/v3/application/create").header("content-type", "application/json");
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        request.body(Body::from(body)).unwrap()
    };
    let create = json!({ "requestObject": { "applicationId": "x" } }).to_string();
    let unauthorized = StatusCode::UNAUTHORIZED;
    for authorization in [
        None,
        Some(basic(&api.client_token, "wrong-secret")),
        Some(basic("unknown-token", "wrong-secret")),
        Some("Bearer abc".to_owned()),
        Some("Basic !!!".to_owned()),
    ] {
        let (status, headers, body) = api.send(send(authorization, create.clone())).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_error(status, &body, unauthorized, "ERR_AUTHENTICATION");
        assert!(headers.contains_key("www-authenticate"));
    }
    // Nothing was done.
    assert!(api.store.application("x").unwrap().is_none());
    // 401 before the body is looked at: malformed and oversized bodies still get 401.
    for body in ["not json".to_owned(), "x".repeat(BODY_LIMIT * 4)] {
        let (status, _, body) = api.send(send(None, body)).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_error(status, &body, unauthorized, "ERR_AUTHENTICATION");
    }
    // The right credential works.
    let (status, _, _) = api
        .send(send(Some(api.authorization.clone()), create))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(api.store.application("x").unwrap().is_some());
    // Operations endpoints need none.
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        let (status, _, _) = api.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn base_path_prefixes_every_method_like_powerauth_server() {
    let mut settings = api_settings(true);
    settings.base_path = "/powerauth-java-server".to_owned();
    let api = Api::with(
        Arc::new(SoftwareSigner::new_in_memory()),
        default_settings(),
        settings,
    )
    .await;
    let post = |path: &str| {
        Request::post(path)
            .header("content-type", "application/json")
            .header("authorization", &api.authorization)
            .body(Body::from(
                json!({ "requestObject": { "applicationId": "demo" } }).to_string(),
            ))
            .unwrap()
    };
    let (status, _, body) = api
        .send(post("/powerauth-java-server/rest/v3/application/create"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (status, _, _) = api.send(post("/rest/v3/application/detail")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Operations stay at the root; the document lists the methods where they now are.
    let (status, _, body) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        doc["paths"]["/powerauth-java-server/rest/v3/signature/offline/verify"]["post"].is_object()
    );
    assert!(doc["paths"]["/rest/v3/signature/offline/verify"].is_null());
    assert!(doc["paths"]["/health"]["get"].is_object());

    let (_, _, body) = api.get("/metrics").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains(
            r#"offline_signer_http_requests_total{method="/application/create",outcome="OK"}"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn open_access_needs_no_credentials() {
    let api = Api::with(
        Arc::new(SoftwareSigner::new_in_memory()),
        default_settings(),
        api_settings(false),
    )
    .await;
    let request = Request::post("/rest/v3/application/create")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({ "requestObject": { "applicationId": "x" } }).to_string(),
        ))
        .unwrap();
    let (status, _, _) = api.send(request).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn limits_and_fallbacks() {
    let api = api().await;
    // Over the body limit: 413 with the envelope.
    let big = json!({ "requestObject": { "applicationId": "x".repeat(BODY_LIMIT) } }).to_string();
    let (status, body) = api.post_raw("/application/create", big).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "ERR0024");
    // Unknown path: PowerAuth's 404 envelope, localizedMessage null.
    let (status, _, body) = api.get("/rest/v3/nothing/here").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(status, &body, StatusCode::NOT_FOUND, "ERROR_NOT_FOUND");
    assert_eq!(body["responseObject"]["localizedMessage"], Value::Null);
    assert_eq!(body["responseObject"]["message"], "Resource not found.");
    // Wrong method on an API path.
    let (status, _, body) = api.get("/rest/v3/signature/offline/verify").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "ERROR_METHOD_NOT_ALLOWED",
    );
}

#[tokio::test]
async fn operations_endpoints() {
    let api = api().await;
    let (status, headers, body) = api.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({ "status": "UP" })
    );
    let (status, _, body) = api.get("/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({ "status": "UP" })
    );

    api.application("demo").await;
    let (status, _, body) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains(
            r#"offline_signer_http_requests_total{method="/application/create",outcome="OK"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("offline_signer_http_request_duration_seconds_bucket"),
        "{text}"
    );

    let (status, _, body) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "application/create",
        "application/detail",
        "activation/register",
        "activation/commit",
        "activation/status",
        "activation/block",
        "activation/unblock",
        "activation/remove",
        "signature/offline/personalized/create",
        "signature/offline/non-personalized/create",
        "signature/offline/verify",
    ] {
        let op = &doc["paths"][format!("/rest/v3/{path}")]["post"];
        assert!(op.is_object(), "{path} missing from the OpenAPI document");
        assert!(op["requestBody"].is_object(), "{path} has no request body");
    }
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["basicAuth"]["scheme"],
        "basic"
    );
    // An independent OpenAPI 3.1 parser accepts the document and finds every operation.
    let spec = oas3::from_json(doc.to_string()).expect("a well-formed OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    assert_eq!(spec.operations().count(), 23);
    // Every reference points at a component that exists.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external reference {reference}"));
        assert!(doc.pointer(pointer).is_some(), "dangling {reference}");
    }
    // The verify response schema names every field of the contract.
    let text = doc.to_string();
    for field in VERIFY_FIELDS {
        assert!(text.contains(&format!("\"{field}\"")), "{field}");
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

// -------------------------------------------------------------------------------------------------
// Faults: a signer that misbehaves on demand (signing only).

const NORMAL: u8 = 0;
const BUSY: u8 = 1;
const BROKEN: u8 = 2;
const PANIC: u8 = 3;
const SLOW: u8 = 4;

#[derive(Debug)]
struct FaultySigner {
    inner: SoftwareSigner,
    mode: AtomicU8,
}

#[async_trait]
impl Signer for FaultySigner {
    fn kind(&self) -> SignerKind {
        self.inner.kind()
    }
    async fn health(&self) -> Result<(), SignerError> {
        match self.mode.load(Ordering::SeqCst) {
            NORMAL => Ok(()),
            _ => Err(SignerError::TokenUnavailable),
        }
    }
    async fn generate_master_key(&self) -> Result<GeneratedKeyPair, SignerError> {
        self.inner.generate_master_key().await
    }
    async fn ensure_storage_keys(
        &self,
        recorded: Option<StorageKeyIds>,
    ) -> Result<StorageKeyIds, SignerError> {
        self.inner.ensure_storage_keys(recorded).await
    }
    async fn ensure_audit_key(
        &self,
        recorded: Option<KeyId>,
    ) -> Result<GeneratedKeyPair, SignerError> {
        self.inner.ensure_audit_key(recorded).await
    }
    async fn generate_wrapped_key_pair(&self, kek: &KeyId) -> Result<WrappedKeyPair, SignerError> {
        self.inner.generate_wrapped_key_pair(kek).await
    }
    async fn sign_digest(
        &self,
        key: KeyRef<'_>,
        digest: &[u8],
    ) -> Result<DerSignature, SignerError> {
        match self.mode.load(Ordering::SeqCst) {
            BUSY => Err(SignerError::Busy),
            BROKEN => Err(SignerError::Internal("simulated failure".into())),
            PANIC => panic!("simulated bug in the signer"),
            SLOW => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                self.inner.sign_digest(key, digest).await
            }
            _ => self.inner.sign_digest(key, digest).await,
        }
    }
    async fn ecdh(&self, key: &WrappedKey, peer: &PublicKey) -> Result<SharedSecret, SignerError> {
        self.inner.ecdh(key, peer).await
    }
    async fn encrypt_secret(
        &self,
        dek: &KeyId,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<EncryptedSecret, SignerError> {
        self.inner.encrypt_secret(dek, aad, plaintext).await
    }
    async fn decrypt_secret(
        &self,
        dek: &KeyId,
        aad: &[u8],
        sealed: &EncryptedSecret,
    ) -> Result<PlainSecret, SignerError> {
        self.inner.decrypt_secret(dek, aad, sealed).await
    }
    async fn public_key(&self, id: &KeyId) -> Result<PublicKey, SignerError> {
        self.inner.public_key(id).await
    }
    async fn unwrapped_key_attributes(
        &self,
        key: &WrappedKey,
    ) -> Result<ObjectAttributes, SignerError> {
        self.inner.unwrapped_key_attributes(key).await
    }
    async fn inventory(&self) -> Result<Inventory, SignerError> {
        self.inner.inventory().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_faults_map_to_503_500_and_timeouts() {
    let signer = Arc::new(FaultySigner {
        inner: SoftwareSigner::new_in_memory(),
        mode: AtomicU8::new(NORMAL),
    });
    let mut settings = api_settings(true);
    settings.request_timeout = Duration::from_millis(300);
    let api = Api::with(
        Arc::clone(&signer) as Arc<dyn Signer>,
        default_settings(),
        settings,
    )
    .await;
    api.application("demo").await;
    let create = json!({ "applicationId": "demo", "data": "x" });
    let path = "/signature/offline/non-personalized/create";

    signer.mode.store(BUSY, Ordering::SeqCst);
    api.err(
        path,
        create.clone(),
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_HSM_UNAVAILABLE",
    )
    .await;
    let (status, _, body) = api.get("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "DOWN");
    assert!(body["reason"].as_str().unwrap().starts_with("HSM"));

    // The HSM answers but cannot sign: ERR0013, without the signer's detail.
    signer.mode.store(BROKEN, Ordering::SeqCst);
    let (status, body) = api.call(path, create.clone()).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "ERR0013");
    assert!(
        !body.to_string().contains("simulated"),
        "no detail leaks: {body}"
    );

    signer.mode.store(PANIC, Ordering::SeqCst);
    let (status, body) = api.call(path, create.clone()).await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR, "ERR0000");

    signer.mode.store(SLOW, Ordering::SeqCst);
    api.err(
        path,
        create.clone(),
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_TIMEOUT",
    )
    .await;

    signer.mode.store(NORMAL, Ordering::SeqCst);
    api.ok(path, create).await;
}

#[tokio::test]
async fn a_caller_nonce_repeated_for_the_same_activation_is_answered_again() {
    let api = api().await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let other = api.phone("demo", true).await;
    let nonce = "AAECAwQFBgcICQoLDA0ODw==";
    let create = |activation_id: &str| json!({ "activationId": activation_id, "data": web_flow_data(), "nonce": nonce });
    let path = "/signature/offline/personalized/create";
    let first = api.ok(path, create(&device.activation_id)).await;
    assert_eq!(first["nonce"], nonce);
    // A web page redrawing its QR: the same nonce for the same activation, unexpired and
    // unconsumed, is answered again (PowerAuth parity).
    let again = api.ok(path, create(&device.activation_id)).await;
    assert_eq!(again["nonce"], nonce);
    // Issued for something else: still refused.
    api.err(
        path,
        create(&other.activation_id),
        StatusCode::BAD_REQUEST,
        "ERR0024",
    )
    .await;
}

#[tokio::test]
async fn activation_by_code_routes_answer_powerauth_codes() {
    let api = api().await;
    let created = api.application("demo").await;
    let version = &created["versions"][0];
    assert_eq!(version["applicationVersionId"], "default");
    assert_eq!(
        keys(version),
        sorted(&[
            "applicationVersionId",
            "applicationVersionName",
            "applicationKey",
            "applicationSecret",
            "mobileSdkConfig",
            "supported",
        ])
    );
    let application_key = version["applicationKey"].as_str().unwrap().to_owned();

    // Duplicates are ERR0043 (application and version); an unknown application ERR0015.
    api.err(
        "/application/create",
        json!({ "applicationId": "demo" }),
        StatusCode::BAD_REQUEST,
        "ERR0043",
    )
    .await;
    let v2 = api
        .ok(
            "/application/version/create",
            json!({ "applicationId": "demo", "applicationVersionId": "v2" }),
        )
        .await;
    assert_eq!(v2["supported"], true);
    for (body, code) in [
        (
            json!({ "applicationId": "demo", "applicationVersionId": "v2" }),
            "ERR0043",
        ),
        (
            json!({ "applicationId": "nope", "applicationVersionId": "v1" }),
            "ERR0015",
        ),
    ] {
        api.err(
            "/application/version/create",
            body,
            StatusCode::BAD_REQUEST,
            code,
        )
        .await;
    }

    // activation/init: missing application ERR0002, unknown ERR0015, bad max ERR0040.
    let init = api
        .ok(
            "/activation/init",
            json!({ "userId": "alice", "applicationId": "demo" }),
        )
        .await;
    assert_eq!(
        keys(&init),
        sorted(&[
            "activationId",
            "activationCode",
            "activationSignature",
            "userId",
            "applicationId",
        ])
    );
    for (body, code) in [
        (json!({ "userId": "alice" }), "ERR0002"),
        (
            json!({ "userId": "alice", "applicationId": "nope" }),
            "ERR0015",
        ),
        (
            json!({ "userId": "alice", "applicationId": "demo", "maxFailureCount": 0 }),
            "ERR0040",
        ),
    ] {
        api.err("/activation/init", body, StatusCode::BAD_REQUEST, code)
            .await;
    }
    let status = api
        .ok(
            "/activation/status",
            json!({ "activationId": init["activationId"] }),
        )
        .await;
    assert_eq!(status["activationStatus"], "CREATED");
    assert_eq!(status["activationCode"], init["activationCode"]);
    assert_eq!(status["version"], 0);

    // An unknown activation answers like PowerAuth: 200, REMOVED.
    let unknown = api
        .ok(
            "/activation/status",
            json!({ "activationId": "00000000-0000-4000-8000-000000000000",
                    "challenge": "AAECAwQFBgcICQoLDA0ODw==" }),
        )
        .await;
    assert_eq!(unknown["activationStatus"], "REMOVED");
    assert!(unknown["encryptedStatusBlob"].is_string());

    // An OTP sent where none was set: ERR0031 (a documented deviation); nothing changes.
    let pending = api.phone("demo", false).await;
    api.err(
        "/activation/commit",
        json!({ "activationId": pending.activation_id, "activationOtp": "12345678" }),
        StatusCode::BAD_REQUEST,
        "ERR0031",
    )
    .await;
    let still = api
        .ok(
            "/activation/status",
            json!({ "activationId": pending.activation_id }),
        )
        .await;
    assert_eq!(still["activationStatus"], "PENDING_COMMIT");

    // Malformed protocol requests are ERR0024 before anything is looked up.
    api.err(
        "/keystore/create",
        json!({ "jwt": "not.a-jwt" }),
        StatusCode::BAD_REQUEST,
        "ERR0024",
    )
    .await;
    api.err(
        "/ecies/decryptor",
        json!({ "protocolVersion": "3.3", "ephemeralPublicKey": "AAAA" }),
        StatusCode::BAD_REQUEST,
        "ERR0024",
    )
    .await;
    api.err(
        "/activation/prepare",
        json!({ "activationCode": init["activationCode"], "applicationKey": application_key,
                "protocolVersion": "3.3" }),
        StatusCode::BAD_REQUEST,
        "ERR0024",
    )
    .await;
    // Protocols before 3.3 are refused.
    api.err(
        "/ecies/decryptor",
        json!({ "applicationKey": application_key, "ephemeralPublicKey": "AAAA",
                "nonce": "AAECAwQFBgcICQoLDA0ODw==", "protocolVersion": "3.1",
                "timestamp": 0 }),
        StatusCode::BAD_REQUEST,
        "ERR0024",
    )
    .await;

    // The OpenAPI document lists the new operations and fields.
    let (status, _, body) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    for path in [
        "application/version/create",
        "activation/init",
        "keystore/create",
        "ecies/decryptor",
        "activation/prepare",
    ] {
        let op = &doc["paths"][format!("/rest/v3/{path}")]["post"];
        assert!(op.is_object(), "{path} missing from the OpenAPI document");
        assert!(op["requestBody"].is_object(), "{path} has no request body");
    }
    let text = doc.to_string();
    for field in [
        "encryptedStatusBlob",
        "encryptedStatusBlobNonce",
        "mobileSdkConfig",
        "activationOtp",
        "commitPhase",
        "temporaryKeyId",
        "sharedInfo2",
        "versions",
    ] {
        assert!(text.contains(&format!("\"{field}\"")), "{field}");
    }
}
