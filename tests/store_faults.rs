//! Faults of the store's durability (issue 14 item 4, issue 15 item 4), on sled:
//! - a flush that fails: the caller is told the outcome is unknown (never a success, never
//!   `ERR_TIMEOUT`), the process refuses to report anything until the store is reopened, and then the
//!   disk is the truth (counter, nonce and audit record together or not at all, chain intact) and a
//!   retry of the same code is accepted at most once;
//! - a nonce answered but not yet flushed, lost to SIGKILL (the flush hold keeps the window open): after
//!   the restart it is `UNKNOWN` and its code is refused, while a nonce flushed before the kill still
//!   verifies.
#![allow(clippy::unwrap_used)]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::http::StatusCode;
use offline_signer::crypto::RequestData;
use offline_signer::crypto::{CounterData, FactorKeys, MasterSecret, PrivateKey};
use offline_signer::http::router;
use offline_signer::service::{
    Clock, CreatePersonalized, NonceStatus, Service, SystemClock, VerifyRequest,
};
use offline_signer::signer::Signer;
use offline_signer::signer::config::SoftwareConfig;
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::store::{AuditOperation, AuditOutcome, SledStore, Store, verify_audit_chain};
use offline_signer_testkit::http_harness::{Api, api_settings, assert_error};
use offline_signer_testkit::service_harness::{
    Approval, Device, default_settings, phone_request_data, register_and_commit,
};
use serde_json::{Value, json};

async fn open_service(signer: Arc<dyn Signer>, data: &Path) -> (Service, Arc<SledStore>) {
    let store = Arc::new(SledStore::open(data).expect("open store"));
    let service = Service::open(
        signer,
        Arc::clone(&store) as Arc<dyn Store>,
        default_settings(),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    )
    .await
    .expect("service opens");
    (service, store)
}

/// The answer to a verification over HTTP: status and body.
async fn verify_http(api: &Api, device: &Device, data: &str, code: &str) -> (StatusCode, Value) {
    api.call(
        "/signature/offline/verify",
        json!({ "activationId": device.activation_id, "data": data, "signature": code }),
    )
    .await
}

#[tokio::test]
async fn a_failed_flush_is_outcome_unknown_and_memory_and_disk_agree() {
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::new_in_memory());
    let api = Api::with(Arc::clone(&signer), default_settings(), api_settings(true)).await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let data = api.payload(&device).await;
    let request_data = RequestData::parse(&data).unwrap();
    let code = device.code_for(&request_data, Approval::PIN);
    let before = api
        .store
        .activation(&device.activation_id)
        .unwrap()
        .unwrap();
    let head_before = verify_audit_chain(api.store.as_ref()).unwrap().records;
    // The payload's nonce is not waited for: make it durable first, so that the failing flush is
    // the verification's own.
    api.store.sync().unwrap();

    api.store.fail_next_flush();
    let (status, body) = verify_http(&api, &device, &data, &code).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_OUTCOME_UNKNOWN",
    );

    // The process reports nothing the disk may lack: reads, writes, a retry and readiness are refused
    // until the store is reopened.
    let (status, body) = api
        .call(
            "/activation/status",
            json!({ "activationId": device.activation_id }),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_STORE_UNAVAILABLE",
    );
    let (status, body) = verify_http(&api, &device, &data, &code).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_STORE_UNAVAILABLE",
    );
    assert_eq!(api.get("/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(api.store.activation(&device.activation_id).is_err());
    assert!(api.store.sync().is_err(), "no flush after a failed one");

    // Reopen (a restart of the service): the disk is the truth.
    let Api {
        router: old_router,
        service,
        store,
        authorization,
        client_token,
        dir,
    } = api;
    drop(old_router);
    drop(service);
    drop(store);
    let (service, store) = open_service(Arc::clone(&signer), &dir.path().join("data")).await;
    let api = Api {
        router: router(service.clone(), api_settings(true)),
        service,
        store,
        authorization,
        client_token,
        dir,
    };
    let report = verify_audit_chain(api.store.as_ref()).unwrap();
    assert_eq!(report.first_broken, None, "audit chain intact");
    let stored = api
        .store
        .activation(&device.activation_id)
        .unwrap()
        .unwrap();
    let nonce = request_data.nonce().to_owned();
    let issued = api
        .store
        .nonce(&nonce)
        .unwrap()
        .expect("the nonce was durable");
    let landed = stored.counter != before.counter;
    // All of the verification or none of it.
    assert_eq!(
        issued.consumed_at.is_some(),
        landed,
        "nonce and counter agree"
    );
    assert_eq!(
        report.records,
        head_before + u64::from(landed),
        "the audit record goes with the write"
    );
    if landed {
        let last = &api.store.audit_records(report.records, 1).unwrap()[0];
        assert_eq!(last.operation, AuditOperation::Verify);
        assert_eq!(last.outcome, AuditOutcome::Valid);
        assert_eq!(last.counter_after, Some(stored.counter));
    }
    // What the restarted process reports is what is on disk.
    let status = api
        .ok(
            "/activation/status",
            json!({ "activationId": device.activation_id }),
        )
        .await;
    assert_eq!(status["activationStatus"], "ACTIVE", "{status}");

    // The same code again: accepted exactly when the first attempt did not land, and never twice.
    let (status, body) = verify_http(&api, &device, &data, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["responseObject"]["signatureValid"], !landed, "{body}");
    if landed {
        assert_eq!(body["responseObject"]["nonceStatus"], "CONSUMED", "{body}");
    }
    let (status, body) = verify_http(&api, &device, &data, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["responseObject"]["signatureValid"], false, "{body}");
    let issued = api.store.nonce(&nonce).unwrap().unwrap();
    assert!(issued.consumed_at.is_some());
}

/// Set for the crash child: the directory of the set-up, and the activation to make payloads for.
const CHILD_DIR_ENV: &str = "OFFLINE_SIGNER_NONCE_CRASH_DIR";
const CHILD_ACTIVATION_ENV: &str = "OFFLINE_SIGNER_NONCE_CRASH_ACTIVATION";
const PAYLOAD_MARK: &str = "PAYLOAD ";
const CRASH_TEST: &str = "an_answered_nonce_lost_to_sigkill_is_refused_after_the_restart";

fn software_signer(dir: &Path) -> Arc<dyn Signer> {
    Arc::new(
        SoftwareSigner::open(&SoftwareConfig {
            key_file: Some(dir.join("software-keys.json")),
        })
        .expect("software signer"),
    )
}

async fn payload(service: &Service, activation_id: &str) -> String {
    service
        .create_personalized_payload(CreatePersonalized {
            activation_id: activation_id.to_owned(),
            data: offline_signer_testkit::service_harness::web_flow_data(),
            nonce: None,
            proximity_check: None,
        })
        .await
        .expect("payload")
        .offline_data
}

/// The crash child: one payload made durable, then one answered while every flush is held; prints
/// both (JSON strings, one per line) and waits to be killed with the hold in place.
async fn crash_child(dir: &Path, activation_id: &str) {
    let (service, store) = open_service(software_signer(dir), &dir.join("data")).await;
    let durable = payload(&service, activation_id).await;
    store.sync().expect("flush the first payload's nonce");
    let _hold = store.hold_flushes();
    let lost = payload(&service, activation_id).await;
    // The test harness may print "test NAME ... " on the same line: a marker finds the payloads.
    println!(
        "\n{PAYLOAD_MARK}{}",
        serde_json::to_string(&durable).unwrap()
    );
    println!("{PAYLOAD_MARK}{}", serde_json::to_string(&lost).unwrap());
    loop {
        std::thread::park();
    }
}

#[test]
fn an_answered_nonce_lost_to_sigkill_is_refused_after_the_restart() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let (Ok(dir), Ok(activation)) = (
        std::env::var(CHILD_DIR_ENV),
        std::env::var(CHILD_ACTIVATION_ENV),
    ) {
        runtime.block_on(crash_child(Path::new(&dir), &activation));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let device_private = PrivateKey::generate(&mut rand::rngs::OsRng);
    let activation_id = runtime.block_on(async {
        let (service, _store) = open_service(software_signer(dir), &dir.join("data")).await;
        service.create_application("crash").await.unwrap();
        register_and_commit(&service, "crash", &device_private.public_key()).await
    });

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CRASH_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ACTIVATION_ENV, &activation_id)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The test harness prints its own lines too: keep only the two marked JSON strings.
    let mut payloads = Vec::new();
    while payloads.len() < 2 {
        let line = lines
            .next()
            .expect("the child printed both payloads")
            .unwrap();
        if let Some((_, json)) = line.split_once(PAYLOAD_MARK) {
            payloads.push(serde_json::from_str::<String>(json).unwrap());
        }
    }
    // Both payloads were answered; the second one's nonce waits behind the hold. Crash now.
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().code(), None, "killed by the signal");

    runtime.block_on(async {
        let (service, store) = open_service(software_signer(dir), &dir.join("data")).await;
        let report = verify_audit_chain(store.as_ref()).unwrap();
        assert_eq!(
            report.first_broken, None,
            "audit chain intact after the crash"
        );
        let record = store.activation(&activation_id).unwrap().unwrap();
        let server_public_key = record.server_public_key;
        let master = MasterSecret::agree(&device_private, &server_public_key);
        let device = Device {
            master_secret: master.as_key().expose().to_vec(),
            activation_id: activation_id.clone(),
            keys: FactorKeys::from_master_secret(&master),
            counter: std::cell::Cell::new(CounterData::from_bytes(record.ctr_data)),
            server_public_key,
        };
        let durable = phone_request_data(&payloads[0], &server_public_key);
        let lost = phone_request_data(&payloads[1], &server_public_key);
        assert!(
            store.nonce(durable.nonce()).unwrap().is_some(),
            "the flushed nonce survived"
        );
        assert!(
            store.nonce(lost.nonce()).unwrap().is_none(),
            "the held nonce was lost with the process (the window was hit)"
        );
        let verify = |data: &RequestData| {
            let code = device.code_for(data, Approval::PIN);
            service.verify(VerifyRequest {
                activation_id: activation_id.clone(),
                data: data.as_str().to_owned(),
                signature: code,
                allow_biometry: false,
                component_length: None,
                proximity_check: None,
            })
        };
        // The lost nonce's code, correct as it is, is refused: UNKNOWN, nothing moved.
        for _ in 0..2 {
            let answer = verify(&lost).await.unwrap();
            assert!(!answer.signature_valid);
            assert_eq!(answer.nonce_status, Some(NonceStatus::Unknown));
        }
        let after = store.activation(&activation_id).unwrap().unwrap();
        assert_eq!(
            after.counter, record.counter,
            "a refused nonce moves nothing"
        );
        // The control: the nonce flushed before the crash verifies.
        let answer = verify(&durable).await.unwrap();
        assert!(answer.signature_valid, "{answer:?}");
        let report = verify_audit_chain(store.as_ref()).unwrap();
        assert_eq!(report.first_broken, None);
    });
}
