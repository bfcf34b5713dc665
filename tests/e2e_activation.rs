//! Activation by activation code (protocol 3.3) end to end: the real `offline-signer serve`
//! binary on a throwaway SoftHSM token (`offline_signer_testkit::e2e_server`), the bank calling
//! `activation/init` with the integration credential, and the phone simulator playing the mobile
//! SDK and the enrollment server over HTTP (`Token::activate_with_code`, and once the
//! `offline-token activate --code` binary): keystore/create → ecies/decryptor → activation/prepare
//! → activation/commit → the encrypted status blob → personalized create → code → verify.
//!
//! Each refusal (a tampered MAC, a replayed prepare, a timestamp outside the ECIES window, a wrong
//! OTP, an expired code) is checked against `activation/status` before and after: nothing changed
//! but what the protocol says (a wrong OTP counts as a failed attempt).
//!
//! When SoftHSM is missing the tests FAIL, unless `OFFLINE_SIGNER_ALLOW_MISSING=1`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use offline_signer_testkit::e2e_server::{
    Server, create_and_sign, runtime, verify_request, with_server,
};
use offline_token::activation::{
    self, ActivationServer, CodeActivation, DeviceInfo, EciesServerKey, OtpPlacement, SdkConfig,
};
use offline_token::client::{
    ActivationStatus, ApplicationDetail, Client, ClientError, CommitRequest, EciesDecryptorRequest,
    EciesDecryptorResponse, PrepareActivationRequest, PrepareActivationResponse,
};
use offline_token::crypto::PrivateKey;
use offline_token::{Token, TokenError, TokenState};
use secrecy::SecretString;
use serde_json::{Value, json};

const APP: &str = "e2e-act-bank";
/// A Web Flow payment that allows biometry.
const PAYMENT: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPlatba 100 Kč\nPotvrďte prosím platbu\nA1*A100CZK*ICZ2730300000001165254011*D20250425\nB";

/// What `activation/init` answered.
struct Initialized {
    activation_id: String,
    code: String,
    signature: String,
}

impl Initialized {
    /// The QR payload `CODE#SIGNATURE`.
    fn qr_payload(&self) -> String {
        format!("{}#{}", self.code, self.signature)
    }
}

/// The bank: `activation/init` for `user`, with `extra` fields merged into the request.
async fn init(client: &Client, user: &str, extra: Value) -> Initialized {
    let mut request = json!({"userId": user, "applicationId": APP});
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    let answer: Value = client
        .call("/rest/v3/activation/init", &request)
        .await
        .unwrap();
    assert_eq!(answer["userId"], user, "{answer}");
    assert_eq!(answer["applicationId"], APP, "{answer}");
    Initialized {
        activation_id: answer["activationId"].as_str().unwrap().to_owned(),
        code: answer["activationCode"].as_str().unwrap().to_owned(),
        signature: answer["activationSignature"].as_str().unwrap().to_owned(),
    }
}

/// `activation/status` as the bank reads it (no challenge).
async fn status(client: &Client, activation_id: &str) -> ActivationStatus {
    client.activation_status(activation_id).await.unwrap()
}

/// The fields of the activation's `activation/status` that a refusal must leave alone.
async fn observable(
    client: &Client,
    activation_id: &str,
) -> (String, u32, Option<String>, Option<u32>) {
    let s = status(client, activation_id).await;
    (
        s.activation_status.clone(),
        s.failed_attempts,
        s.device_public_key_fingerprint.clone(),
        s.version,
    )
}

/// The PowerAuth error code of a refusal.
fn error_code(error: &TokenError) -> &str {
    match error {
        TokenError::Client(ClientError::Service { code, .. }) => code,
        other => panic!("not a refusal of the service: {other}"),
    }
}

fn client_error_code(error: &ClientError) -> &str {
    match error {
        ClientError::Service { code, .. } => code,
        other => panic!("not a refusal of the service: {other}"),
    }
}

/// The enrollment server's calls, forwarded to the real service, with the prepare request
/// recorded (to replay it) and optionally its MAC flipped.
struct Enrollment<'a> {
    client: &'a Client,
    tamper_mac: bool,
    prepared: Mutex<Option<PrepareActivationRequest>>,
}

impl<'a> Enrollment<'a> {
    fn new(client: &'a Client) -> Self {
        Self {
            client,
            tamper_mac: false,
            prepared: Mutex::new(None),
        }
    }

    fn recorded_prepare(&self) -> PrepareActivationRequest {
        self.prepared.lock().unwrap().clone().unwrap()
    }
}

impl ActivationServer for Enrollment<'_> {
    fn base_url(&self) -> &str {
        self.client.base_url()
    }

    async fn application_detail(
        &self,
        application_id: &str,
    ) -> Result<ApplicationDetail, ClientError> {
        self.client.application_detail(application_id).await
    }

    async fn keystore_create(&self, jwt: &str) -> Result<String, ClientError> {
        self.client.keystore_create(jwt).await
    }

    async fn ecies_decryptor(
        &self,
        request: &EciesDecryptorRequest,
    ) -> Result<EciesDecryptorResponse, ClientError> {
        self.client.ecies_decryptor(request).await
    }

    async fn activation_prepare(
        &self,
        request: &PrepareActivationRequest,
    ) -> Result<PrepareActivationResponse, ClientError> {
        let mut request = request.clone();
        if self.tamper_mac {
            let mut mac = offline_token::crypto::b64::decode(&request.layer2.mac).unwrap();
            mac[0] ^= 1;
            request.layer2.mac = offline_token::crypto::b64::encode(mac);
        }
        *self.prepared.lock().unwrap() = Some(request.clone());
        self.client.activation_prepare(&request).await
    }

    async fn activation_commit(&self, request: &CommitRequest) -> Result<(), ClientError> {
        self.client.activation_commit_with(request).await
    }

    async fn activation_status(
        &self,
        activation_id: &str,
        challenge: &str,
    ) -> Result<ActivationStatus, ClientError> {
        self.client
            .activation_status_with_challenge(activation_id, challenge)
            .await
    }
}

fn code_activation(code: String, otp: Option<&str>) -> CodeActivation {
    CodeActivation {
        application_id: APP.to_owned(),
        code,
        code_signature: None,
        sdk_config: None,
        activation_otp: otp.map(|o| SecretString::from(o.to_owned())),
        otp_placement: OtpPlacement::Commit,
        device: DeviceInfo {
            activation_name: "e2e phone".to_owned(),
            platform: "android".to_owned(),
            device_info: "Pixel 8".to_owned(),
        },
    }
}

async fn activate(
    server: &impl ActivationServer,
    activation: &CodeActivation,
    path: &Path,
) -> Result<Token, TokenError> {
    Token::activate_with_code(server, activation, |state| {
        state.create(path).map_err(Into::into)
    })
    .await
}

/// Personalized create → code → verify; asserts `signatureValid: true`.
async fn sign_and_verify(client: &Client, token: &mut Token) {
    let signed = create_and_sign(client, token, PAYMENT).await;
    let answer = client
        .verify(&verify_request(token, &signed))
        .await
        .unwrap();
    assert!(answer.signature_valid, "{answer:?}");
}

#[test]
fn activation_code_to_signature_valid() {
    let Some(server) = Server::start("e2e-act", APP, "") else {
        return;
    };
    runtime().block_on(async {
        let client = server.client();
        let init = init(&client, "alice", json!({})).await;
        let before = status(&client, &init.activation_id).await;
        assert_eq!(before.activation_status, "CREATED");

        let enrollment = Enrollment::new(&client);
        let path = server.dir.path().join("alice.json");
        let mut token = activate(
            &enrollment,
            &code_activation(init.qr_payload(), None),
            &path,
        )
        .await
        .unwrap();
        assert_eq!(token.state().activation_id, init.activation_id);
        assert_eq!(TokenState::load(&path).unwrap(), *token.state());

        let after = status(&client, &init.activation_id).await;
        assert_eq!(after.activation_status, "ACTIVE");
        assert_eq!(after.version, Some(3));
        assert_eq!(
            after.device_public_key_fingerprint.as_deref(),
            Some(token.state().fingerprint().as_str())
        );

        // The encrypted status blob, read with KEY_TRANSPORT.
        let remote = token.remote_status(&enrollment).await.unwrap();
        assert_eq!(remote.activation_status, "ACTIVE");
        assert_eq!(remote.server_activation_status, "ACTIVE");
        assert_eq!(remote.current_version, 3);
        assert_eq!(remote.failed_attempts, 0);

        sign_and_verify(&client, &mut token).await;
        let remote = token.remote_status(&enrollment).await.unwrap();
        assert_eq!(remote.counter, 1);

        // The very same prepare again (the enrollment server replaying it): refused before
        // anything is looked up, and the activation is as it was.
        let before = observable(&client, &init.activation_id).await;
        let replay = client
            .activation_prepare(&enrollment.recorded_prepare())
            .await
            .unwrap_err();
        assert_eq!(client_error_code(&replay), "ERR0024", "{replay}");
        assert_eq!(observable(&client, &init.activation_id).await, before);
        sign_and_verify(&client, &mut token).await;
    });
    assert!(
        !server.log().contains(&server.client_secret),
        "the integration secret reached the log"
    );
}

#[test]
fn token_cli_activates_with_a_code() {
    let Some(server) = Server::start("e2e-act-cli", APP, "") else {
        return;
    };
    let rt = runtime();
    let client = server.client();
    let init = rt.block_on(init(&client, "bob", json!({})));
    let state = server.dir.path().join("bob.json");
    let state_arg = state.to_str().unwrap();
    let run = |args: &[&str]| String::from_utf8(server.token_cli(args)).unwrap();
    let printed = run(&[
        "activate",
        "--server",
        &server.url,
        "--application",
        APP,
        "--code",
        &init.qr_payload(),
        "--state",
        state_arg,
    ]);
    assert_eq!(printed.trim(), init.activation_id);
    let remote: Value =
        serde_json::from_str(&run(&["status", "--state", state_arg, "--remote"])).unwrap();
    assert_eq!(remote["activationStatus"], "ACTIVE", "{remote}");
    assert_eq!(remote["counterSync"]["result"], "IN_SYNC", "{remote}");
    assert_eq!(
        remote["fingerprint"], remote["serverFingerprint"],
        "{remote}"
    );
    let mut token = Token::new(TokenState::load(&state).unwrap());
    rt.block_on(sign_and_verify(&client, &mut token));
}

#[test]
fn refusals_change_nothing() {
    with_server("e2e-act-refuse", APP, "", async |server, client| {
        // A tampered layer-2 MAC: ERR0018, the activation stays CREATED and its code still works.
        let init_a = init(&client, "carol", json!({})).await;
        let before = observable(&client, &init_a.activation_id).await;
        let mut tampering = Enrollment::new(&client);
        tampering.tamper_mac = true;
        let path = server.dir.path().join("carol.json");
        let refused = activate(
            &tampering,
            &code_activation(init_a.qr_payload(), None),
            &path,
        )
        .await
        .unwrap_err();
        assert_eq!(error_code(&refused), "ERR0018", "{refused}");
        assert_eq!(observable(&client, &init_a.activation_id).await, before);
        activate(
            &Enrollment::new(&client),
            &code_activation(init_a.code.clone(), None),
            &server.dir.path().join("carol-2.json"),
        )
        .await
        .unwrap();

        // A layer 2 whose timestamp is ten minutes old (outside the 60 s window): ERR0024.
        let init_b = init(&client, "dave", json!({})).await;
        let before = observable(&client, &init_b.activation_id).await;
        let stale = stale_prepare(&client, &init_b.code).await;
        let refused = client.activation_prepare(&stale).await.unwrap_err();
        assert_eq!(client_error_code(&refused), "ERR0024", "{refused}");
        assert_eq!(observable(&client, &init_b.activation_id).await, before);

        // A wrong OTP at commit: ERR0031, still PENDING_COMMIT (one failed attempt, as PowerAuth
        // counts it); the right OTP then commits.
        let init_c = init(&client, "erin", json!({"activationOtp": "24681357"})).await;
        let path = server.dir.path().join("erin.json");
        let refused = activate(
            &Enrollment::new(&client),
            &code_activation(init_c.qr_payload(), Some("11111111")),
            &path,
        )
        .await
        .unwrap_err();
        assert_eq!(error_code(&refused), "ERR0031", "{refused}");
        let after = status(&client, &init_c.activation_id).await;
        assert_eq!(after.activation_status, "PENDING_COMMIT");
        assert_eq!(after.failed_attempts, 1);
        client
            .activation_commit_with(&CommitRequest {
                activation_id: init_c.activation_id.clone(),
                external_user_id: None,
                activation_otp: Some(SecretString::from("24681357".to_owned())),
            })
            .await
            .unwrap();
        let mut token = Token::new(TokenState::load(&path).unwrap());
        assert_eq!(
            status(&client, &init_c.activation_id)
                .await
                .activation_status,
            "ACTIVE"
        );
        sign_and_verify(&client, &mut token).await;
    });
}

/// A prepare request built as the SDK would, but stamped ten minutes ago (the enrollment server
/// forwards layer 2 untouched, so this is what reaches the service).
async fn stale_prepare(client: &Client, code: &str) -> PrepareActivationRequest {
    let mut rng = rand::rngs::OsRng;
    let config = SdkConfig::from_detail(&client.application_detail(APP).await.unwrap()).unwrap();
    let (jwt, challenge) = activation::temporary_key_request(&config, &mut rng);
    let claims = activation::temporary_key_accept(
        &config,
        &client.keystore_create(&jwt).await.unwrap(),
        &challenge,
    )
    .unwrap();
    let key = EciesServerKey::temporary(&claims);
    let layer2 = activation::layer2_request(
        &config,
        &key,
        &PrivateKey::generate(&mut rng).public_key(),
        &DeviceInfo::default(),
        None,
        &PrivateKey::generate(&mut rng),
        [7; 16],
        claims.issued_at_ms - 600_000,
    )
    .unwrap();
    PrepareActivationRequest {
        activation_code: code.to_owned(),
        application_key: config.application_key.clone(),
        generate_recovery_codes: false,
        protocol_version: key.version.as_str().to_owned(),
        layer2: layer2.wire,
    }
}

#[test]
fn an_expired_code_is_refused() {
    let Some(server) = Server::start(
        "e2e-act-expiry",
        APP,
        "[activation]\ncode_validity_seconds = 1\n",
    ) else {
        return;
    };
    runtime().block_on(async {
        let client = server.client();
        let init = init(&client, "frank", json!({})).await;
        // The event: the service itself reports the activation REMOVED once it expired.
        let mut polls = 0;
        while status(&client, &init.activation_id).await.activation_status != "REMOVED" {
            polls += 1;
            assert!(polls < 600, "the activation never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = observable(&client, &init.activation_id).await;
        let refused = activate(
            &Enrollment::new(&client),
            &code_activation(init.qr_payload(), None),
            &server.dir.path().join("frank.json"),
        )
        .await
        .unwrap_err();
        assert_eq!(error_code(&refused), "ERR0009", "{refused}");
        assert_eq!(observable(&client, &init.activation_id).await, before);
    });
}
