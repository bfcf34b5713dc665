//! `store copy` from sled to PostgreSQL and back: everything arrives (applications, activations,
//! nonces, credentials, storage-key ids, audit records with their hashes), flows go on on the copy
//! with the same credential and phone, and `audit verify` on the copy is intact.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use offline_signer::app::{self, CopyError};
use offline_signer::config::Config;
use offline_signer::http::router;
use offline_signer::service::{Clock, Service, SystemClock};
use offline_signer::signer::Signer;
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::store::{self, Store, StoreSettings, verify_audit_chain};
use offline_signer_testkit::http_harness::{Api, api_settings};
use offline_signer_testkit::postgres::TestDatabase;
use offline_signer_testkit::service_harness::{
    Device, default_settings, phone_request_data, web_flow_data,
};
use serde_json::{Value, json};

/// A configuration of a sled store in `data`, with a software signer (not opened by `store copy`).
fn sled_config(dir: &Path, data: &str) -> Config {
    let text = format!(
        "[store]\nkind = \"sled\"\npath = \"{data}\"\n[signer]\nkind = \"software-insecure\"\n"
    );
    Config::from_toml(&dir.join("config.toml"), &text).unwrap()
}

/// The same, with its store on `db`.
fn postgres_config(dir: &Path, db: &TestDatabase) -> Config {
    let mut config = sled_config(dir, "unused");
    config.store = StoreSettings::Postgres {
        settings: Box::new(db.settings(4)),
        chain_file: dir.join("copy.audit-chain"),
    };
    config
}

async fn serve_on(signer: &Arc<dyn Signer>, store: Arc<dyn Store>) -> (axum::Router, Service) {
    let service = Service::open(
        Arc::clone(signer),
        store,
        default_settings(),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    )
    .await
    .unwrap();
    (router(service.clone(), api_settings(true)), service)
}

#[test]
fn sled_to_postgres_and_back() {
    // The test database is made and dropped outside the runtime (its helpers block).
    let Some(db) = TestDatabase::create() else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(copy_and_serve(&db));
}

const VERIFY: &str = "/signature/offline/verify";

/// The verify request object for a fresh personalized payload of `device`, signed by the phone.
async fn signed(api: &Api, device: &Device) -> Value {
    let payload = api
        .ok(
            "/signature/offline/personalized/create",
            json!({ "activationId": device.activation_id, "data": web_flow_data() }),
        )
        .await;
    let data = phone_request_data(
        payload["offlineData"].as_str().unwrap(),
        &device.server_public_key,
    );
    let code = device.sign(&data);
    json!({ "activationId": device.activation_id, "data": data.as_str(), "signature": code })
}

async fn copy_and_serve(db: &TestDatabase) {
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::new_in_memory());
    let api = Api::new(Arc::clone(&signer)).await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let pending = api.phone("demo", false).await;
    let (scoped, _) = api
        .credential(json!({ "name": "bank", "role": "APPLICATION", "applications": ["demo"] }))
        .await;
    // One verified code (a consumed nonce, a moved counter) and one outstanding payload.
    let first = signed(&api, &device).await;
    let verified = api.ok(VERIFY, first.clone()).await;
    assert_eq!(verified["signatureValid"], true);
    let original = api
        .store
        .activation(&device.activation_id)
        .unwrap()
        .unwrap();
    let records_before = api.store.audit_head().unwrap().seq;

    // Stop the "server": only the folder stays.
    let Api {
        router: r,
        service: s,
        store: st,
        authorization,
        dir,
        ..
    } = api;
    drop((r, s, st));

    let from = sled_config(dir.path(), "data");
    let to = postgres_config(dir.path(), db);
    let report = app::copy_store(&from, &to).unwrap();
    assert_eq!(report.applications, 1);
    assert_eq!(report.activations, 2);
    assert_eq!(report.nonces, 1);
    assert_eq!(report.credentials, 2);
    assert_eq!(report.audit_records, records_before);
    assert_eq!(report.audit_chains, 1);

    // A second copy into the same database is refused.
    assert!(matches!(
        app::copy_store(&from, &to),
        Err(CopyError::DestinationNotEmpty(_))
    ));

    // Back into an empty sled right away: everything equal.
    let back = sled_config(dir.path(), "back");
    let again = app::copy_store(&to, &back).unwrap();
    assert_eq!(again, report);
    {
        let copy = store::open(&back.store).unwrap();
        assert!(verify_audit_chain(copy.as_ref()).unwrap().is_intact());
        let mut a = copy.activation(&device.activation_id).unwrap().unwrap();
        a.version = original.version;
        assert_eq!(a, original);
        assert!(copy.activation(&pending.activation_id).unwrap().is_some());
    }

    // Flows go on on the PostgreSQL copy: same credentials, same phone, the next code verifies;
    // the consumed nonce stays consumed.
    let copy = store::open(&to.store).unwrap();
    assert!(verify_audit_chain(copy.as_ref()).unwrap().is_intact());
    let (router, _service) = serve_on(&signer, Arc::clone(&copy)).await;
    let copied = Api {
        router,
        service: _service,
        store: Arc::new(store::SledStore::open(&dir.path().join("spare")).unwrap()),
        authorization: scoped,
        client_token: String::new(),
        dir,
    };
    let replay = copied.ok(VERIFY, first).await;
    assert_eq!(replay["signatureValid"], false);
    assert_eq!(replay["nonceStatus"], "CONSUMED");
    let verified = copied.ok(VERIFY, signed(&copied, &device).await).await;
    assert_eq!(verified["signatureValid"], true, "{verified}");
    let (status, _) = copied
        .call_as(&authorization, "/integration/list", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "the admin credential came along");
    let report = verify_audit_chain(copy.as_ref()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        report.chains,
        1 + copy.audit_lanes().len(),
        "the copied chain and the copy's own lanes"
    );

    // sled keeps one chain: the copy, now with a chain of its own, no longer fits.
    let refused = app::copy_store(&to, &sled_config(copied.dir.path(), "third"));
    assert!(
        matches!(refused, Err(CopyError::ChainsDoNotFit(_))),
        "{refused:?}"
    );
}
