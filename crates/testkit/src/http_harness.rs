//! Test helper: the whole HTTP router in process (`tower::ServiceExt::oneshot`), over any signer and a
//! sled store in a temp dir, with one integration credential; and a phone that registers and signs
//! over the JSON API (reusing `service_harness`'s device maths).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use offline_signer::crypto::{CounterData, FactorKeys, MasterSecret, PrivateKey, PublicKey};
use offline_signer::http::{ApiSettings, router};
use offline_signer::model::Timestamp;
use offline_signer::service::{Clock, Service, Settings, SystemClock};
use offline_signer::signer::Signer;
use offline_signer::store::{SledStore, Store};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::service_harness::{Device, default_settings, phone_request_data, web_flow_data};

pub const BODY_LIMIT: usize = 4096;

pub fn api_settings(restrict_access: bool) -> ApiSettings {
    ApiSettings {
        base_path: String::new(),
        restrict_access,
        body_limit_bytes: BODY_LIMIT,
        request_timeout: Duration::from_secs(30),
        max_concurrent_requests: offline_signer::http::DEFAULT_MAX_CONCURRENT_REQUESTS,
    }
}

pub struct Api {
    pub router: Router,
    pub service: Service,
    pub store: Arc<SledStore>,
    /// `Basic ...` header value of the test credential.
    pub authorization: String,
    pub client_token: String,
    pub dir: tempfile::TempDir,
}

impl Api {
    pub async fn new(signer: Arc<dyn Signer>) -> Self {
        Self::with(signer, default_settings(), api_settings(true)).await
    }

    pub async fn with(signer: Arc<dyn Signer>, settings: Settings, api: ApiSettings) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(&dir.path().join("data")).expect("open store"));
        let service = Service::open(
            signer,
            Arc::clone(&store) as Arc<dyn Store>,
            settings,
            Arc::new(SystemClock) as Arc<dyn Clock>,
        )
        .await
        .expect("service opens");
        let credential =
            offline_signer::service::Credentials::new(Arc::clone(&store) as Arc<dyn Store>)
                .create("tests", Timestamp::now())
                .expect("store credential");
        let authorization = basic(
            &credential.client_token,
            credential.client_secret.expose_secret(),
        );
        Self {
            router: router(service.clone(), api),
            service,
            store,
            authorization,
            client_token: credential.client_token,
            dir,
        }
    }

    /// Sends any request; returns status, headers and raw body.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .expect("body");
        (status, headers, body)
    }

    /// POSTs raw bytes to `/rest/v3{path}` with the test credential.
    pub async fn post_raw(&self, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::post(format!("/rest/v3{path}"))
            .header("content-type", "application/json")
            .header("authorization", &self.authorization)
            .body(body.into())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (
            status,
            serde_json::from_slice(&body).expect("every answer is JSON"),
        )
    }

    /// POSTs `{"requestObject": object}` to `/rest/v3{path}` with the test credential.
    pub async fn call(&self, path: &str, object: Value) -> (StatusCode, Value) {
        self.post_raw(path, json!({ "requestObject": object }).to_string())
            .await
    }

    /// POSTs `{"requestObject": object}` to `/rest/v3{path}` with another `Authorization` value.
    pub async fn call_as(
        &self,
        authorization: &str,
        path: &str,
        object: Value,
    ) -> (StatusCode, Value) {
        let request = Request::post(format!("/rest/v3{path}"))
            .header("content-type", "application/json")
            .header("authorization", authorization)
            .body(Body::from(json!({ "requestObject": object }).to_string()))
            .unwrap();
        // Boxed: the router's future is large, and tests await many of these in one function.
        let (status, _, body) = Box::pin(self.send(request)).await;
        (
            status,
            serde_json::from_slice(&body).expect("every answer is JSON"),
        )
    }

    /// Makes a credential over `integration/create` (as the test's admin credential) from `request`
    /// (`name`, `role`, `applications`, `canUnblock`); returns its `Authorization` value and the answer.
    pub async fn credential(&self, request: Value) -> (String, Value) {
        let created = self.ok("/integration/create", request).await;
        let authorization = basic(
            created["clientToken"].as_str().unwrap(),
            created["clientSecret"].as_str().unwrap(),
        );
        (authorization, created)
    }

    /// Like [`Self::call`] but asserts a 200 OK envelope and returns its `responseObject`.
    pub async fn ok(&self, path: &str, object: Value) -> Value {
        let (status, body) = self.call(path, object).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["status"], "OK", "{path}: {body}");
        body["responseObject"].clone()
    }

    /// Asserts an error envelope with `status` and `code`.
    pub async fn err(&self, path: &str, object: Value, status: StatusCode, code: &str) {
        let (got, body) = self.call(path, object).await;
        assert_error(got, &body, status, code);
    }

    /// GET without credentials.
    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// Creates application `id` over the API.
    pub async fn application(&self, id: &str) -> Value {
        self.ok("/application/create", json!({ "applicationId": id }))
            .await
    }

    /// Registers (and, if `commit`, commits) a phone of application `app` over the API.
    pub async fn phone(&self, app: &str, commit: bool) -> Device {
        let device_private = PrivateKey::generate(&mut rand::rngs::OsRng);
        let registered = self
            .ok(
                "/activation/register",
                json!({
                    "applicationId": app,
                    "userId": "alice",
                    "devicePublicKey": device_private.public_key().to_base64(),
                    "activationFlags": ["FLAG_A"],
                }),
            )
            .await;
        let device = device_from(&device_private, &registered);
        if commit {
            self.ok(
                "/activation/commit",
                json!({ "activationId": device.activation_id }),
            )
            .await;
        }
        device
    }

    /// A personalized payload for `device` and the `data` the web app sends to verify.
    pub async fn payload(&self, device: &Device) -> String {
        let payload = self
            .ok(
                "/signature/offline/personalized/create",
                json!({ "activationId": device.activation_id, "data": web_flow_data() }),
            )
            .await;
        let offline_data = payload["offlineData"].as_str().unwrap();
        phone_request_data(offline_data, &device.server_public_key)
            .as_str()
            .to_owned()
    }
}

/// The phone's state from a register answer.
pub fn device_from(device_private: &PrivateKey, registered: &Value) -> Device {
    let server_public_key =
        PublicKey::from_base64(registered["serverPublicKey"].as_str().unwrap()).unwrap();
    let master = MasterSecret::agree(device_private, &server_public_key);
    Device {
        master_secret: master.as_key().expose().to_vec(),
        activation_id: registered["activationId"].as_str().unwrap().to_owned(),
        keys: FactorKeys::from_master_secret(&master),
        counter: std::cell::Cell::new(
            CounterData::from_base64(registered["ctrData"].as_str().unwrap()).unwrap(),
        ),
        server_public_key,
    }
}

pub fn basic(token: &str, secret: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{token}:{secret}"));
    format!("Basic {enc}")
}

/// The error envelope: status, code, PowerAuth shape.
pub fn assert_error(got: StatusCode, body: &Value, status: StatusCode, code: &str) {
    assert_eq!(got, status, "{body}");
    assert_eq!(body["status"], "ERROR", "{body}");
    let object = body["responseObject"].as_object().expect("responseObject");
    assert_eq!(object["code"], code, "{body}");
    assert!(
        object["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(object.contains_key("localizedMessage"), "{body}");
    assert_eq!(object.len(), 3, "{body}");
}

/// The exact key set of a JSON object.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}
