//! Scoped integration credentials over the in-process HTTP API: every method as `ADMIN`, as an
//! `APPLICATION` credential in scope, and out of scope. A call outside the scope is 403
//! `ERR_AUTHORIZATION` and changes nothing; an activation of another application answers exactly as
//! an unknown one; `unblock` needs `ADMIN` or `canUnblock`; audit records name the acting credential.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::http::StatusCode;
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::store::{AuditOperation, Store};
use offline_signer_testkit::http_harness::{Api, assert_error};
use serde_json::{Value, json};

const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

struct World {
    api: Api,
    /// `APPLICATION` bound to `a`, without `canUnblock`.
    scoped: String,
    scoped_id: String,
    /// `APPLICATION` bound to `a`, with `canUnblock`.
    unblocker: String,
    /// A committed activation of application `a` and one of `b`.
    in_scope: String,
    out_of_scope: String,
    /// Well-formed `data` of a verification (from a payload of the in-scope activation).
    verify_data: String,
}

async fn world() -> World {
    let api = Api::new(Arc::new(SoftwareSigner::new_in_memory())).await;
    api.application("a").await;
    api.application("b").await;
    let phone = api.phone("a", true).await;
    let verify_data = Box::pin(api.payload(&phone)).await;
    let in_scope = phone.activation_id;
    let out_of_scope = api.phone("b", true).await.activation_id;
    let (scoped, created) = api
        .credential(json!({ "name": "bank-a", "role": "APPLICATION", "applications": ["a"] }))
        .await;
    let (unblocker, _) = api
        .credential(json!({
            "name": "bank-a-desk", "role": "APPLICATION", "applications": ["a"], "canUnblock": true,
        }))
        .await;
    World {
        api,
        scoped,
        scoped_id: created["id"].as_str().unwrap().to_owned(),
        unblocker,
        in_scope,
        out_of_scope,
        verify_data,
    }
}

/// Everything a refused call could have changed: the audit head and both activations' records.
fn state(w: &World) -> impl PartialEq + std::fmt::Debug {
    let store = &w.api.store;
    (
        store.audit_head().unwrap(),
        store.activation(&w.in_scope).unwrap(),
        store.activation(&w.out_of_scope).unwrap(),
        store.credentials().unwrap(),
        store.application("c").unwrap(),
    )
}

async fn forbidden(w: &World, authorization: &str, path: &str, object: Value) {
    let before = state(w);
    let expected = (StatusCode::FORBIDDEN, "ERR_AUTHORIZATION");
    refused(w, authorization, path, object, expected).await;
    assert_eq!(state(w), before, "{path}: a refused call changed something");
}

/// The call is answered with the error `expected` (status, code).
async fn refused(
    w: &World,
    authorization: &str,
    path: &str,
    object: Value,
    expected: (StatusCode, &str),
) {
    let (status, body) = w.api.call_as(authorization, path, object).await;
    assert_error(status, &body, expected.0, expected.1);
}

/// A personalized payload for the in-scope activation, made with the scoped credential.
async fn create_in_scope(w: &World, data: &str) -> Value {
    let object = json!({ "activationId": w.in_scope, "data": data });
    ok(
        w,
        &w.scoped,
        "/signature/offline/personalized/create",
        object,
    )
    .await
}

/// The call as the application-scoped credential.
async fn scoped(w: &World, path: &str, object: Value) -> (StatusCode, Value) {
    w.api.call_as(&w.scoped, path, object).await
}

async fn ok(w: &World, authorization: &str, path: &str, object: Value) -> Value {
    let (status, body) = w.api.call_as(authorization, path, object).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body["responseObject"].clone()
}

#[tokio::test]
async fn admin_only_methods_refuse_application_credentials() {
    let w = world().await;
    for auth in [&w.scoped, &w.unblocker] {
        forbidden(
            &w,
            auth,
            "/application/create",
            json!({ "applicationId": "c" }),
        )
        .await;
        forbidden(&w, auth, "/integration/create", json!({ "name": "x" })).await;
        forbidden(&w, auth, "/integration/list", json!({})).await;
        forbidden(
            &w,
            auth,
            "/integration/remove",
            json!({ "id": w.scoped_id }),
        )
        .await;
    }
    // The admin may do all of them.
    ok(
        &w,
        &w.api.authorization,
        "/application/create",
        json!({ "applicationId": "c" }),
    )
    .await;
    let list = ok(&w, &w.api.authorization, "/integration/list", json!({})).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn application_methods_follow_the_scope() {
    let w = world().await;
    let admin = w.api.authorization.clone();
    for auth in [&admin, &w.scoped] {
        ok(
            &w,
            auth,
            "/application/detail",
            json!({ "applicationId": "a" }),
        )
        .await;
        ok(&w, auth, "/signature/offline/non-personalized/create",
            json!({ "applicationId": "a", "data": "A1*A100CZK*Q238400856/0300**D20190629*NUtility" })).await;
    }
    ok(
        &w,
        &admin,
        "/application/detail",
        json!({ "applicationId": "b" }),
    )
    .await;
    // Out of scope: refused whether the application exists or not (no oracle either way).
    for app in ["b", "nonexistent"] {
        forbidden(
            &w,
            &w.scoped,
            "/application/detail",
            json!({ "applicationId": app }),
        )
        .await;
        forbidden(&w, &w.scoped, "/signature/offline/non-personalized/create",
            json!({ "applicationId": app, "data": "A1*A100CZK*Q238400856/0300**D20190629*NUtility" })).await;
        let device = offline_signer::crypto::PrivateKey::generate(&mut rand::rngs::OsRng);
        forbidden(
            &w,
            &w.scoped,
            "/activation/register",
            json!({
                "applicationId": app, "userId": "mallory",
                "devicePublicKey": device.public_key().to_base64(),
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn activations_of_other_applications_look_unknown() {
    let w = world().await;
    let data = "A1*A100CZK*Q238400856/0300**D20190629*NUtility";
    // activation/status: 200 REMOVED for an unknown id (PowerAuth parity), and exactly the same for
    // an activation of another application, but for the id it echoes.
    let status = "/activation/status";
    let (s1, mut unknown) = scoped(&w, status, json!({ "activationId": UNKNOWN })).await;
    let before = state(&w);
    let (s2, mut other) = scoped(&w, status, json!({ "activationId": w.out_of_scope })).await;
    assert_eq!(s1, StatusCode::OK);
    assert_eq!(unknown["responseObject"]["activationStatus"], "REMOVED");
    assert_eq!(
        other["responseObject"]["activationId"],
        w.out_of_scope.as_str()
    );
    unknown["responseObject"]["activationId"] = json!("");
    other["responseObject"]["activationId"] = json!("");
    assert_eq!((s2, &other), (s1, &unknown), "activation/status");
    assert_eq!(state(&w), before, "activation/status");

    for path in [
        "/activation/commit",
        "/activation/block",
        "/activation/remove",
    ] {
        let (s1, unknown) = scoped(&w, path, json!({ "activationId": UNKNOWN })).await;
        let before = state(&w);
        let (s2, other) = scoped(&w, path, json!({ "activationId": w.out_of_scope })).await;
        assert_error(s1, &unknown, StatusCode::BAD_REQUEST, "ERR0009");
        assert_eq!((s2, &other), (s1, &unknown), "{path}");
        assert_eq!(state(&w), before, "{path}");
    }
    let create = "/signature/offline/personalized/create";
    let (s1, unknown) = scoped(&w, create, json!({ "activationId": UNKNOWN, "data": data })).await;
    let (s2, other) = scoped(
        &w,
        create,
        json!({ "activationId": w.out_of_scope, "data": data }),
    )
    .await;
    assert_eq!((s2, &other), (s1, &unknown));

    // verify: 200 REMOVED with nothing but the id, exactly as for an id nobody knows.
    let verify = |id: &str| json!({ "activationId": id, "data": w.verify_data, "signature": "12345678-12345678" });
    let unknown = ok(&w, &w.scoped, "/signature/offline/verify", verify(UNKNOWN)).await;
    let before = w.api.store.activation(&w.out_of_scope).unwrap();
    let mut other = ok(
        &w,
        &w.scoped,
        "/signature/offline/verify",
        verify(&w.out_of_scope),
    )
    .await;
    assert_eq!(other["activationId"], w.out_of_scope.as_str());
    other["activationId"] = json!(UNKNOWN);
    assert_eq!(other, unknown);
    assert_eq!(unknown["activationStatus"], "REMOVED");
    assert_eq!(
        w.api.store.activation(&w.out_of_scope).unwrap(),
        before,
        "no failed attempt counted"
    );

    // In scope, the same calls work.
    ok(
        &w,
        &w.scoped,
        "/activation/status",
        json!({ "activationId": w.in_scope }),
    )
    .await;
    create_in_scope(&w, data).await;
    let answer = ok(
        &w,
        &w.scoped,
        "/signature/offline/verify",
        verify(&w.in_scope),
    )
    .await;
    assert_eq!(answer["activationStatus"], "ACTIVE");
    assert_eq!(answer["signatureValid"], false);
}

#[tokio::test]
async fn unblock_needs_admin_or_can_unblock() {
    let w = world().await;
    let block = json!({ "activationId": w.in_scope, "reason": "FRAUD" });
    ok(&w, &w.scoped, "/activation/block", block.clone()).await;
    let id = json!({ "activationId": w.in_scope });
    forbidden(&w, &w.scoped, "/activation/unblock", id.clone()).await;
    let unblocked = ok(&w, &w.unblocker, "/activation/unblock", id.clone()).await;
    assert_eq!(unblocked["activationStatus"], "ACTIVE");
    // canUnblock does not widen the scope: another application's activation stays unknown.
    let other = json!({ "activationId": w.out_of_scope });
    let unknown = (StatusCode::BAD_REQUEST, "ERR0009");
    refused(&w, &w.unblocker, "/activation/unblock", other, unknown).await;
    ok(&w, &w.scoped, "/activation/block", block).await;
    ok(&w, &w.api.authorization, "/activation/unblock", id).await;
}

#[tokio::test]
async fn integrations_over_http_show_the_secret_once_and_removal_is_immediate() {
    let w = world().await;
    let list = ok(&w, &w.api.authorization, "/integration/list", json!({})).await;
    for item in list["items"].as_array().unwrap() {
        let mut keys: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "applications",
                "canUnblock",
                "clientToken",
                "id",
                "name",
                "role",
                "timestampCreated"
            ]
        );
    }
    let listed = list.to_string();
    assert!(!listed.contains("ecret"), "{listed}");
    let scoped = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == w.scoped_id.as_str())
        .unwrap();
    assert_eq!(scoped["role"], "APPLICATION");
    assert_eq!(scoped["applications"], json!(["a"]));
    assert_eq!(scoped["canUnblock"], false);

    // Bad scopes are refused.
    for bad in [
        json!({ "name": "x", "role": "APPLICATION" }),
        json!({ "name": "x", "role": "APPLICATION", "applications": [] }),
        json!({ "name": "x", "role": "ADMIN", "applications": ["a"] }),
        json!({ "name": "", "role": "ADMIN" }),
    ] {
        let (status, body) = w.api.call("/integration/create", bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "ERR0024");
    }

    let removed = ok(
        &w,
        &w.api.authorization,
        "/integration/remove",
        json!({ "id": w.scoped_id }),
    )
    .await;
    assert_eq!(removed, json!({ "id": w.scoped_id, "removed": true }));
    let status = json!({ "activationId": w.in_scope });
    let unknown_credential = (StatusCode::UNAUTHORIZED, "ERR_AUTHENTICATION");
    refused(
        &w,
        &w.scoped,
        "/activation/status",
        status,
        unknown_credential,
    )
    .await;
    let again = ok(
        &w,
        &w.api.authorization,
        "/integration/remove",
        json!({ "id": w.scoped_id }),
    )
    .await;
    assert_eq!(again["removed"], false);
}

#[tokio::test]
async fn audit_records_name_the_acting_credential() {
    let w = world().await;
    let data = "A1*A100CZK*Q238400856/0300**D20190629*NUtility";
    create_in_scope(&w, data).await;
    let store = &w.api.store;
    let head = store.audit_head().unwrap();
    let last = store.audit_records(head.seq, 1).unwrap().remove(0);
    assert_eq!(last.operation, AuditOperation::CreatePersonalized);
    assert_eq!(last.actor.as_deref(), Some(w.scoped_id.as_str()));

    let records = store.audit_records(1, 1000).unwrap();
    let created: Vec<_> = records
        .iter()
        .filter(|r| r.operation == AuditOperation::IntegrationCreate)
        .collect();
    assert_eq!(created.len(), 3);
    let actors: Vec<_> = created
        .iter()
        .map(|r| r.actor.as_deref().unwrap())
        .collect();
    assert_eq!(
        actors[0], "cli",
        "the harness's first credential is made locally"
    );
    assert_ne!(
        actors[1], "cli",
        "the scoped ones were made over HTTP by the admin credential"
    );
    assert!(
        records.iter().all(|r| r.actor.is_some()),
        "every record names its actor"
    );
    assert!(
        created
            .iter()
            .any(|r| r.subject.as_deref() == Some(w.scoped_id.as_str())),
        "the record names the credential made"
    );

    // Removal is audited in the same write, naming the removed credential; the instance that removed
    // it refuses it from the next request on, although it used it just before.
    let status = json!({ "activationId": w.in_scope });
    ok(&w, &w.scoped, "/activation/status", status.clone()).await;
    ok(
        &w,
        &w.api.authorization,
        "/integration/remove",
        json!({ "id": w.scoped_id }),
    )
    .await;
    let (refused, _) = w.api.call_as(&w.scoped, "/activation/status", status).await;
    assert_eq!(refused, StatusCode::UNAUTHORIZED);
    let head = store.audit_head().unwrap();
    let last = store.audit_records(head.seq, 1).unwrap().remove(0);
    assert_eq!(last.operation, AuditOperation::IntegrationRemove);
    assert_eq!(last.subject.as_deref(), Some(w.scoped_id.as_str()));
    assert_ne!(last.actor.as_deref(), Some(w.scoped_id.as_str()));
    let report = offline_signer::store::verify_audit_chain(store.as_ref()).unwrap();
    assert!(report.is_intact(), "{report:?}");
}
