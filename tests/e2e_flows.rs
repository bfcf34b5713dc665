//! End-to-end flows over a real socket: the real `offline-signer serve` binary against a throwaway
//! SoftHSM token (made by `scripts/softhsm-init.sh`), driven by the software token
//! (`offline_signer::token`) on the phone side and the REST client (`token::client::Client`) on the
//! web-application side.
//!
//! Each test starts its own server: a temp folder with the token, a config file, an integration
//! credential (`integration create`) and an application (`application create`), then `serve` with
//! `SOFTHSM2_CONF` in the child's environment. The server is stopped with SIGTERM (then SIGKILL if it
//! does not exit) when the test ends, pass or fail.
//!
//! When SoftHSM is missing the tests FAIL, unless `OFFLINE_SIGNER_ALLOW_MISSING=1`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use offline_signer_testkit::e2e_server::{Server, runtime, verify_request, with_server};
use offline_token::client::{
    Client, CreatePersonalized, Credentials, OfflinePayload, ProximityCheck, VerifyRequest,
    VerifyResponse,
};
use offline_token::{Activation, SignOptions, SignedOperation, Token, TokenState};

const APP: &str = "e2e-bank";
/// A Web Flow payment that allows biometry.
const PAYMENT: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPlatba 100 Kč\nPotvrďte prosím platbu\nA1*A100CZK*ICZ2730300000001165254011*D20250425\nB";
/// A Web Flow login without the B flag.
const LOGIN: &str =
    "0b7b1e6e-4c9e-4d0e-9a43-0d6c1d2a7f00\nLogin\nSign in to internet banking\nA2\n";
const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Activates a software token (state saved to `dir/<name>.json`) and returns it.
async fn activate(server: &Server, name: &str, max_failed_attempts: Option<u32>) -> Token {
    let path: PathBuf = server.dir.path().join(format!("{name}.json"));
    let activation = Activation {
        application_id: APP.to_owned(),
        user_id: name.to_owned(),
        max_failed_attempts,
    };
    let token = Token::activate(&server.client(), &activation, |state| {
        state.create(&path).map_err(Into::into)
    })
    .await
    .unwrap();
    assert_eq!(TokenState::load(&path).unwrap(), *token.state());
    token
}

/// A personalized-create request for `token`'s activation.
fn create_request(
    token: &Token,
    data: &str,
    proximity: Option<ProximityCheck>,
) -> CreatePersonalized {
    CreatePersonalized {
        activation_id: token.state().activation_id.clone(),
        data: data.to_owned(),
        nonce: None,
        proximity_check: proximity,
    }
}

async fn personalized(client: &Client, token: &Token, data: &str) -> OfflinePayload {
    client
        .create_personalized(&create_request(token, data, None))
        .await
        .unwrap()
}

async fn verify(client: &Client, token: &Token, signed: &SignedOperation) -> VerifyResponse {
    client.verify(&verify_request(token, signed)).await.unwrap()
}

/// The proximity check of these tests: TOTP over [`SEED`] with 30-second steps.
fn proximity(step_count: Option<u32>) -> ProximityCheck {
    ProximityCheck {
        seed: SEED.to_owned(),
        step_length: 30,
        step_count,
    }
}

fn pin() -> SignOptions {
    SignOptions::default()
}

#[test]
fn personalized_replay_lookahead_biometry_and_short_codes() {
    with_server("e2e-personalized", APP, "", async |server, client| {
        let mut token = activate(server, "alice", None).await;
        let status = client
            .activation_status(&token.state().activation_id)
            .await
            .unwrap();
        assert_eq!(status.activation_status, "ACTIVE");
        assert_eq!(
            status.device_public_key_fingerprint.as_deref(),
            Some(token.state().fingerprint().as_str())
        );

        // Personalized payment, approved with the PIN.
        let payload = personalized(&client, &token, PAYMENT).await;
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        assert_eq!(signed.nonce, payload.nonce);
        assert_eq!(signed.key, "personalized");
        assert_eq!(signed.operation.title, "Platba 100 Kč");
        let answer = verify(&client, &token, &signed).await;
        assert!(answer.signature_valid, "{answer:?}");
        assert_eq!(
            answer.signature_type.as_deref(),
            Some("POSSESSION_KNOWLEDGE")
        );
        assert_eq!(answer.user_id.as_deref(), Some("alice"));
        assert_eq!(answer.nonce_status.as_deref(), Some("VALID"));

        // The same code again is a replay and is rejected.
        let replay = verify(&client, &token, &signed).await;
        assert!(!replay.signature_valid, "{replay:?}");
        assert_eq!(replay.nonce_status.as_deref(), Some("CONSUMED"));

        // Lookahead: the phone showed 19 codes nobody typed; the 20th is still inside the window.
        let payload = personalized(&client, &token, PAYMENT).await;
        for _ in 0..19 {
            token.sign(&payload.offline_data, &pin()).unwrap();
        }
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        assert!(verify(&client, &token, &signed).await.signature_valid);

        // Biometry (the QR has the B flag): valid only when the web application allows it.
        let payload = personalized(&client, &token, PAYMENT).await;
        let bio = SignOptions {
            biometry: true,
            ..SignOptions::default()
        };
        let signed = token.sign(&payload.offline_data, &bio).unwrap();
        let mut request = verify_request(&token, &signed);
        request.allow_biometry = false;
        let refused = client.verify(&request).await.unwrap();
        assert!(
            !refused.signature_valid,
            "biometry not allowed: {refused:?}"
        );
        request.allow_biometry = true;
        let answer = client.verify(&request).await.unwrap();
        assert!(answer.signature_valid, "{answer:?}");
        assert_eq!(
            answer.signature_type.as_deref(),
            Some("POSSESSION_BIOMETRY")
        );

        // Component length 4.
        let payload = personalized(&client, &token, LOGIN).await;
        let short = SignOptions {
            length: offline_signer::crypto::ComponentLength::new(4).unwrap(),
            ..SignOptions::default()
        };
        let signed = token.sign(&payload.offline_data, &short).unwrap();
        assert_eq!(signed.code.len(), 9);
        assert!(!signed.allow_biometry);
        let mut request = verify_request(&token, &signed);
        request.component_length = Some(4);
        let answer = client.verify(&request).await.unwrap();
        assert!(answer.signature_valid, "{answer:?}");

        // The PKCS#11 signer reports its queue depth and operation latency.
        let metrics = reqwest::get(format!("{}/metrics", server.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "offline_signer_hsm_queue_depth",
            "offline_signer_hsm_operation_duration_seconds_bucket",
            "offline_signer_verifications_total",
        ] {
            assert!(metrics.contains(name), "{name} missing:\n{metrics}");
        }
    });
}

#[test]
fn beyond_the_lookahead_window_fails() {
    with_server(
        "e2e-window",
        APP,
        "[signature]\nlookahead = 5\n",
        async |server, client| {
            let mut token = activate(server, "bob", Some(10)).await;
            let payload = personalized(&client, &token, PAYMENT).await;
            // Positions 0..=4 are in the window; the sixth code (position 5) is not.
            for _ in 0..5 {
                token.sign(&payload.offline_data, &pin()).unwrap();
            }
            let signed = token.sign(&payload.offline_data, &pin()).unwrap();
            let answer = verify(&client, &token, &signed).await;
            assert!(!answer.signature_valid, "{answer:?}");
            assert_eq!(answer.remaining_attempts, Some(9));
        },
    );
}

#[test]
fn non_personalized_and_proximity() {
    with_server("e2e-nonpers", APP, "", async |server, client| {
        let mut token = activate(server, "carol", None).await;

        // Non-personalized: signed with the application's master key (indicator 0).
        let payload = client.create_non_personalized(APP, LOGIN).await.unwrap();
        assert!(
            payload
                .offline_data
                .contains(&format!("\n{}\n0", payload.nonce))
        );
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        assert_eq!(signed.key, "master");
        let answer = verify(&client, &token, &signed).await;
        assert!(answer.signature_valid, "{answer:?}");

        // Proximity TOTP: the QR carries it, the code covers it, the web application's data does not.
        let payload = client
            .create_personalized(&create_request(&token, PAYMENT, Some(proximity(None))))
            .await
            .unwrap();
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        let totp = signed.proximity.as_ref().expect("a TOTP line").totp.clone();
        assert_eq!(totp.len(), 8);
        assert!(!signed.data.contains(&totp));
        let mut request = verify_request(&token, &signed);
        request.proximity_check = Some(proximity(Some(1)));
        let answer = client.verify(&request).await.unwrap();
        assert!(answer.signature_valid, "{answer:?}");

        // Without the proximity check the server does not append the TOTP: the code does not match.
        let payload = client
            .create_personalized(&create_request(&token, PAYMENT, Some(proximity(None))))
            .await
            .unwrap();
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        let answer = verify(&client, &token, &signed).await;
        assert!(!answer.signature_valid, "{answer:?}");
    });
}

#[test]
fn blocking_unblock_and_remove() {
    with_server("e2e-block", APP, "", async |server, client| {
        let mut token = activate(server, "dave", Some(3)).await;
        let id = token.state().activation_id.clone();

        // Three wrong codes block the activation.
        let payload = personalized(&client, &token, PAYMENT).await;
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        let mut wrong = verify_request(&token, &signed);
        wrong.signature = "00000000-00000000".to_owned();
        let mut last = None;
        for expected_remaining in [2, 1, 0] {
            let answer = client.verify(&wrong).await.unwrap();
            assert!(!answer.signature_valid);
            assert_eq!(answer.remaining_attempts, Some(expected_remaining));
            last = Some(answer);
        }
        let last = last.unwrap();
        assert_eq!(last.activation_status, "BLOCKED");
        assert_eq!(last.blocked_reason.as_deref(), Some("MAX_FAILED_ATTEMPTS"));

        // Even the right code is refused while blocked, and creating a QR is refused.
        let answer = verify(&client, &token, &signed).await;
        assert!(!answer.signature_valid);
        assert_eq!(answer.activation_status, "BLOCKED");
        let err = client
            .create_personalized(&create_request(&token, PAYMENT, None))
            .await
            .unwrap_err();
        assert_eq!(err.service_code(), Some("ERR0008"), "{err}");

        // Unblock: the failure count resets; the code the phone showed is still good (its nonce
        // was never consumed and the counter did not move).
        client.activation_unblock(&id).await.unwrap();
        let status = client.activation_status(&id).await.unwrap();
        assert_eq!(status.activation_status, "ACTIVE");
        assert_eq!(status.failed_attempts, 0);
        let answer = verify(&client, &token, &signed).await;
        assert!(answer.signature_valid, "{answer:?}");

        // An administrative block and unblock.
        client
            .activation_block(&id, Some("LOST_PHONE"))
            .await
            .unwrap();
        let status = client.activation_status(&id).await.unwrap();
        assert_eq!(status.activation_status, "BLOCKED");
        assert_eq!(status.blocked_reason.as_deref(), Some("LOST_PHONE"));
        client.activation_unblock(&id).await.unwrap();
        let payload = personalized(&client, &token, PAYMENT).await;
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        assert!(verify(&client, &token, &signed).await.signature_valid);

        // Remove: no more QR codes, and verification answers REMOVED.
        let payload = personalized(&client, &token, PAYMENT).await;
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        client.activation_remove(&id).await.unwrap();
        let answer = verify(&client, &token, &signed).await;
        assert!(!answer.signature_valid);
        assert_eq!(answer.activation_status, "REMOVED");
        let err = client
            .create_personalized(&create_request(&token, PAYMENT, None))
            .await
            .unwrap_err();
        assert_eq!(err.service_code(), Some("ERR0008"), "{err}");
    });
}

#[test]
fn wrong_credentials_are_refused() {
    let Some(server) = Server::start("e2e-auth", APP, "") else {
        return;
    };
    runtime().block_on(async {
        let client = Client::new(&server.url, Some(Credentials::new("nobody", "wrong"))).unwrap();
        let err = client.application_detail(APP).await.unwrap_err();
        assert_eq!(err.service_code(), Some("ERR_AUTHENTICATION"), "{err}");
        let anonymous = Client::new(&server.url, None).unwrap();
        assert!(anonymous.health().await.unwrap());
        assert!(anonymous.application_detail(APP).await.is_err());
    });
}

/// The command line on both sides: `token activate`, `token sign --json`, `token status --remote`.
#[test]
fn token_cli_against_the_server() {
    let Some(server) = Server::start("e2e-cli", APP, "") else {
        return;
    };
    let state = server.dir.path().join("cli-token.json");
    let run = |args: &[&str]| server.token_cli(args);
    let state_arg = state.to_str().unwrap();
    let out = run(&[
        "activate",
        "--server",
        &server.url,
        "--application",
        APP,
        "--user",
        "erin",
        "--state",
        state_arg,
    ]);
    let activation_id = String::from_utf8(out).unwrap().trim().to_owned();
    assert_eq!(activation_id.len(), 36);

    let client = server.client();
    runtime().block_on(async {
        let payload = client
            .create_personalized(&CreatePersonalized {
                activation_id: activation_id.clone(),
                data: PAYMENT.to_owned(),
                nonce: None,
                proximity_check: None,
            })
            .await
            .unwrap();
        let out = run(&[
            "sign",
            "--state",
            state_arg,
            "--json",
            "--offline-data",
            &payload.offline_data,
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let answer = client
            .verify(&VerifyRequest {
                activation_id: activation_id.clone(),
                data: json["data"].as_str().unwrap().to_owned(),
                signature: json["code"].as_str().unwrap().to_owned(),
                allow_biometry: json["allowBiometry"].as_bool().unwrap(),
                component_length: None,
                proximity_check: None,
            })
            .await
            .unwrap();
        assert!(answer.signature_valid, "{answer:?}");
    });
    // `register` stores KEY_TRANSPORT too, so --remote reads the encrypted status blob (JSON).
    let out = run(&["status", "--state", state_arg, "--remote"]);
    let remote: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(remote["activationStatus"], "ACTIVE", "{remote}");
    assert_eq!(remote["counter"], 1, "{remote}");
    assert_eq!(remote["counterSync"]["result"], "IN_SYNC", "{remote}");
    assert_eq!(
        remote["fingerprint"], remote["serverFingerprint"],
        "{remote}"
    );
}

/// One phone and one web-application session in a loop: create a personalized payload, sign it,
/// verify the code. Returns every verify request the server acknowledged as valid; stops at the first
/// transport error (the server is going away).
async fn approve_until_refused(
    client: Client,
    mut token: Token,
    progress: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<VerifyRequest> {
    let mut acknowledged = Vec::new();
    loop {
        let Ok(payload) = client
            .create_personalized(&create_request(&token, PAYMENT, None))
            .await
        else {
            return acknowledged;
        };
        let signed = token.sign(&payload.offline_data, &pin()).unwrap();
        let request = verify_request(&token, &signed);
        match client.verify(&request).await {
            Ok(answer) => {
                assert!(answer.signature_valid, "under load: {answer:?}");
                acknowledged.push(request);
                progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Err(_) => return acknowledged,
        }
    }
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_verification() {
    let Some(mut server) = Server::start("e2e-sigterm", APP, "") else {
        return;
    };
    let rt = runtime();
    let tokens = rt.block_on(async {
        let mut tokens = Vec::new();
        for i in 0..8 {
            tokens.push(activate(&server, &format!("user{i}"), None).await);
        }
        tokens
    });

    // Eight sessions approve payments back to back; SIGTERM arrives while they do, once the load has
    // demonstrably run (8 acknowledged verifications; waited for as an event, not a duration).
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            rt.spawn(approve_until_refused(
                server.client(),
                token,
                std::sync::Arc::clone(&progress),
            ))
        })
        .collect();
    let hang_guard = std::time::Instant::now() + Duration::from_secs(120);
    while progress.load(std::sync::atomic::Ordering::SeqCst) < 8 {
        assert!(
            std::time::Instant::now() < hang_guard,
            "the load never got going:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = server.terminate();
    assert!(
        status.success(),
        "serve must exit 0 after SIGTERM, got {status}:\n{}",
        server.log()
    );
    let acknowledged: Vec<VerifyRequest> = rt.block_on(async {
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.unwrap());
        }
        all
    });
    assert!(
        acknowledged.len() >= 8,
        "the load did not run: {} verifications acknowledged",
        acknowledged.len()
    );
    let log = server.log();
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("HTTP server drained"), "{log}");
    // Hundreds of requests later, the log holds no code, no payload data and no credential secret.
    assert!(!log.contains(&server.client_secret), "secret in the log");
    assert!(!log.contains("Platba"), "payload data in the log");
    for request in &acknowledged {
        assert!(!log.contains(&request.signature), "a code in the log");
        assert!(!log.contains(&request.data), "request data in the log");
    }

    // Every acknowledged verification survived the shutdown: its nonce is consumed (the counter moved
    // in the same atomic write), so the very same request is now refused.
    server.spawn();
    rt.block_on(async {
        let client = server.client();
        for request in &acknowledged {
            let again = client.verify(request).await.unwrap();
            assert!(!again.signature_valid, "acknowledged, then lost: {again:?}");
            assert_eq!(again.nonce_status.as_deref(), Some("CONSUMED"), "{again:?}");
        }
    });

    // The audit trail is intact after the shutdown.
    server.terminate();
    let out = Command::new(offline_signer_testkit::e2e_server::binary())
        .args(["audit", "verify", "--config"])
        .arg(server.dir.path().join("config.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
