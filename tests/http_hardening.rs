//! Hostile clients and hostile input (issue 14, items 1–5): half-open connections, load shedding,
//! `/ready` floods, timeouts that must not lie, identifier bounds, content type, TLS and mTLS.
//! Everything runs in process over the software signer; real sockets where connections matter.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use offline_signer::http::{self, ApiSettings, ConnectionSettings, TlsSettings};
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::store::Store as _;
use offline_signer_testkit::http_harness::{Api, api_settings, assert_error};
use offline_signer_testkit::service_harness::default_settings;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tower::ServiceExt as _;

async fn api_with(settings: ApiSettings) -> Api {
    Api::with(
        Arc::new(SoftwareSigner::new_in_memory()),
        default_settings(),
        settings,
    )
    .await
}

/// A server on 127.0.0.1:<random> until the returned sender is dropped.
struct Running {
    address: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    api: Api,
}

async fn serve(settings: ApiSettings, connections: ConnectionSettings) -> Running {
    let api = api_with(settings.clone()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = api.service.clone();
    tokio::spawn(async move {
        http::serve(listener, None, service, settings, connections, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        address,
        _stop: stop,
        api,
    }
}

/// One HTTP/1.1 exchange on any stream (`Connection: close`): status and body.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    request: String,
) -> std::io::Result<(u16, String)> {
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

fn post(path: &str, authorization: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Authorization: {authorization}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Polls `condition` every 10 ms, at most `limit` times.
async fn eventually(limit: usize, mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

fn timeouts(phase: &str) -> u64 {
    let text = http::metrics_handle().expect("recorder").render();
    text.lines()
        .filter(|l| {
            l.starts_with("offline_signer_http_timeouts_total")
                && l.contains(&format!("phase=\"{phase}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_while_others_are_served() {
    let header_timeout = Duration::from_secs(1);
    let running = serve(
        api_settings(true),
        ConnectionSettings {
            header_read_timeout: header_timeout,
            ..ConnectionSettings::default()
        },
    )
    .await;
    let address = running.address;
    // 200 clients that send half a header and then nothing.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Half: ")
            .await
            .unwrap();
        let opened = tokio::time::Instant::now();
        slow.push(tokio::spawn(async move {
            // Read until the server closes (EOF or reset), whatever it sends first.
            let mut sink = Vec::new();
            let closed = tokio::time::timeout(
                header_timeout + Duration::from_secs(1),
                stream.read_to_end(&mut sink),
            )
            .await;
            (closed.is_ok(), opened.elapsed())
        }));
    }
    // A normal client keeps being served meanwhile.
    let detail = json!({ "requestObject": { "applicationId": "nobody" } }).to_string();
    for _ in 0..20 {
        let (status, _) = exchange(TcpStream::connect(address).await.unwrap(), get("/health"))
            .await
            .unwrap();
        assert_eq!(status, 200);
        let (status, body) = exchange(
            TcpStream::connect(address).await.unwrap(),
            post(
                "/rest/v3/application/detail",
                &running.api.authorization,
                &detail,
            ),
        )
        .await
        .unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("ERR0015"), "{body}");
    }
    for task in slow {
        let (closed, after) = task.await.unwrap();
        assert!(
            closed,
            "a half-open connection was still open after {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let running = serve(
        api_settings(true),
        ConnectionSettings {
            keep_alive_timeout: Duration::from_millis(300),
            ..ConnectionSettings::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the idle connection stayed open");
    assert!(String::from_utf8_lossy(&sink).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn full_concurrency_sheds_with_err_busy() {
    let api = api_with(ApiSettings {
        max_concurrent_requests: 1,
        ..api_settings(true)
    })
    .await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    // One verification stuck at its flush holds the only slot.
    let hold = api.store.hold_flushes();
    let router = api.router.clone();
    let request = |object: Value, authorization: &str| {
        Request::post("/rest/v3/signature/offline/verify")
            .header("content-type", "application/json")
            .header("authorization", authorization)
            .body(Body::from(json!({ "requestObject": object }).to_string()))
            .unwrap()
    };
    let stuck = tokio::spawn(router.clone().oneshot(request(
        json!({ "activationId": device.activation_id, "data": "A&B&C&D", "signature": "12345678-12345678" }),
        &api.authorization,
    )));
    assert!(eventually(1000, || api.store.durability_waiters() > 0).await);
    let (status, body) = api
        .call(
            "/activation/status",
            json!({ "activationId": device.activation_id }),
        )
        .await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "ERR_BUSY");
    // Operations endpoints are not API requests: still served.
    assert_eq!(api.get("/health").await.0, StatusCode::OK);
    drop(hold);
    assert_eq!(stuck.await.unwrap().unwrap().status(), StatusCode::OK);
    api.ok(
        "/activation/status",
        json!({ "activationId": device.activation_id }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_flood_during_verify_load_costs_no_api_call() {
    let api = Arc::new(api_with(api_settings(true)).await);
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let data = api.payload(&device).await;
    let flushes_before = api.store.flush_count();
    let started = std::time::Instant::now();
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let api = Arc::clone(&api);
            tokio::spawn(async move {
                for _ in 0..250 {
                    let (status, _, body) = api.get("/ready").await;
                    assert_eq!(status, StatusCode::OK, "{body:?}");
                }
            })
        })
        .collect();
    for _ in 0..30 {
        let (status, body) = api
            .call(
                "/signature/offline/verify",
                json!({ "activationId": device.activation_id, "data": data, "signature": "11111111-22222222" }),
            )
            .await;
        assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        // Keep the activation usable: unblock when the wrong codes blocked it.
        if body["responseObject"]["activationStatus"] == "BLOCKED" {
            api.ok(
                "/activation/unblock",
                json!({ "activationId": device.activation_id }),
            )
            .await;
        }
    }
    for task in flood {
        task.await.unwrap();
    }
    // 1000 readiness answers, at most one probe (one durable write) per second.
    let seconds = started.elapsed().as_secs();
    let probes = api.store.flush_count() - flushes_before;
    let verify_writes = 30 * 2; // each verification (and each unblock) is at most one write
    assert!(
        probes <= verify_writes + seconds + 2,
        "{probes} flushes in {seconds} s"
    );
}

#[tokio::test]
async fn a_verify_whose_commit_outlasts_the_timeout_answers_what_was_stored() {
    let api = api_with(ApiSettings {
        request_timeout: Duration::from_millis(200),
        ..api_settings(true)
    })
    .await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let data = api.payload(&device).await;
    let code = device.sign(&offline_signer::crypto::RequestData::parse(&data).unwrap());
    let after_write = timeouts("after_write");

    let hold = api.store.hold_flushes();
    let request = Request::post("/rest/v3/signature/offline/verify")
        .header("content-type", "application/json")
        .header("authorization", &api.authorization)
        .body(Body::from(
            json!({ "requestObject": { "activationId": device.activation_id, "data": data, "signature": code } })
                .to_string(),
        ))
        .unwrap();
    let answer = tokio::spawn(api.router.clone().oneshot(request));
    // The commit is applied and waits for its flush; the timeout passes while it waits.
    assert!(eventually(1000, || api.store.durability_waiters() > 0).await);
    assert!(eventually(1000, || timeouts("after_write") > after_write).await);
    drop(hold);
    let response = answer.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["responseObject"]["signatureValid"], true, "{body}");
    // What was answered is what is stored: the same code is now spent.
    let again = api
        .ok(
            "/signature/offline/verify",
            json!({ "activationId": device.activation_id, "data": data, "signature": code }),
        )
        .await;
    assert_eq!(again["signatureValid"], false, "{again}");
}

#[tokio::test]
async fn a_timed_out_request_past_its_write_outcome_unknown_then_status_tells() {
    let api = api_with(ApiSettings {
        request_timeout: Duration::from_millis(100),
        ..api_settings(true)
    })
    .await;
    api.application("demo").await;
    let device = api.phone("demo", true).await;
    let unknown = timeouts("outcome_unknown");
    let hold = api.store.hold_flushes();
    let router = api.router.clone();
    let authorization = api.authorization.clone();
    let activation_id = device.activation_id.clone();
    let blocked = tokio::spawn(async move {
        router
            .oneshot(
                Request::post("/rest/v3/activation/block")
                    .header("content-type", "application/json")
                    .header("authorization", authorization)
                    .body(Body::from(
                        json!({ "requestObject": { "activationId": activation_id } }).to_string(),
                    ))
                    .unwrap(),
            )
            .await
    });
    // Held past the timeout and the grace: the caller is told the outcome is unknown.
    let response = blocked.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        body["responseObject"]["code"], "ERR_OUTCOME_UNKNOWN",
        "{body}"
    );
    assert!(timeouts("outcome_unknown") > unknown);
    // The work was not cancelled: once the store flushes, the status shows it.
    drop(hold);
    assert!(
        eventually(1000, || api.store.durability_waiters() == 0).await,
        "the held write never finished"
    );
    let status = api
        .ok(
            "/activation/status",
            json!({ "activationId": device.activation_id }),
        )
        .await;
    assert_eq!(status["activationStatus"], "BLOCKED", "{status}");
}

#[tokio::test]
async fn hostile_identifiers_are_refused_before_logging_or_auditing() {
    use std::io::Write as _;
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A body limit that lets the 60,000-character identifiers reach the checks.
    let api = api_with(ApiSettings {
        body_limit_bytes: 1 << 20,
        ..api_settings(true)
    })
    .await;
    api.application("demo").await;
    let audit_before = api.store.audit_head().unwrap();
    let long = "a".repeat(60_000);
    let forged = "0f8fad5b-d9cb-469f-a165-70867728950e\n2026-01-01T00:00:00Z INFO forged line";
    for id in [long.as_str(), forged] {
        for path in [
            "/signature/offline/verify",
            "/activation/status",
            "/activation/block",
            "/signature/offline/personalized/create",
        ] {
            let (status, body) = api
                .call(
                    path,
                    json!({ "activationId": id, "data": "A&B&C&D", "signature": "1" }),
                )
                .await;
            assert_error(status, &body, StatusCode::BAD_REQUEST, "ERR0024");
        }
    }
    for field in ["userId", "applicationId"] {
        let mut object = json!({
            "applicationId": "demo", "userId": "alice",
            "devicePublicKey": "AAAA",
        });
        object[field] = json!("ok\nINFO forged line");
        let (status, body) = api.call("/activation/register", object.clone()).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "ERR0024");
        object[field] = json!("b".repeat(60_000));
        let (status, body) = api.call("/activation/register", object).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "ERR0024");
    }
    assert_eq!(
        format!("{:?}", api.store.audit_head().unwrap()),
        format!("{audit_before:?}"),
        "a refused request reached the audit trail"
    );
    let _ = std::io::stderr().flush();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(!logs.contains("forged"), "{logs}");
    assert!(
        !logs.contains(&"a".repeat(100)),
        "the long id reached the log"
    );
    assert!(
        !logs.contains(&"b".repeat(100)),
        "the long userId reached the log"
    );
    assert!(logs.contains("request refused"), "{logs}");
}

#[tokio::test]
async fn only_json_bodies_are_accepted() {
    let api = api_with(api_settings(true)).await;
    api.application("demo").await;
    let body = json!({ "requestObject": { "applicationId": "demo" } }).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = Request::post("/rest/v3/application/detail")
            .header("authorization", &api.authorization);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let (status, _, raw) = api
            .send(request.body(Body::from(body.clone())).unwrap())
            .await;
        let answer: Value = serde_json::from_slice(&raw).unwrap();
        assert_error(
            status,
            &answer,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ERROR_UNSUPPORTED_MEDIA_TYPE",
        );
    }
    let (status, _, _) = api
        .send(
            Request::post("/rest/v3/application/detail")
                .header("authorization", &api.authorization)
                .header("content-type", "application/json; charset=utf-8")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

// -------------------------------------------------------------------------------------------------
// TLS

struct Pki {
    dir: tempfile::TempDir,
    ca: rustls::pki_types::CertificateDer<'static>,
    client_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    client_key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, as PEM files.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["integration-1".into()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.path().join("server.crt"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    Pki {
        ca: ca.der().clone(),
        client_chain: vec![client.der().clone()],
        client_key: rustls::pki_types::PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
        dir,
    }
}

impl Pki {
    fn settings(&self, mtls: bool) -> TlsSettings {
        TlsSettings {
            cert_file: self.dir.path().join("server.crt"),
            key_file: self.dir.path().join("server.key"),
            client_ca_file: mtls.then(|| self.dir.path().join("ca.crt")),
        }
    }

    fn connector(&self, with_client_cert: bool) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            offline_signer::tls::crypto_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = if with_client_cert {
            builder
                .with_client_auth_cert(self.client_chain.clone(), self.client_key.clone_key())
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

async fn tls_get(
    connector: &tokio_rustls::TlsConnector,
    address: SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect(address).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await?;
    exchange(tls, get(path)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_refuses_plain_http() {
    let pki = pki();
    let running = serve(
        api_settings(true),
        ConnectionSettings {
            tls: Some(pki.settings(false)),
            ..ConnectionSettings::default()
        },
    )
    .await;
    let (status, body) = tls_get(&pki.connector(false), running.address, "/health")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("UP"), "{body}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = exchange(
        TcpStream::connect(running.address).await.unwrap(),
        get("/health"),
    )
    .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_requires_a_client_certificate() {
    let pki = pki();
    let running = serve(
        api_settings(true),
        ConnectionSettings {
            tls: Some(pki.settings(true)),
            ..ConnectionSettings::default()
        },
    )
    .await;
    let (status, _) = tls_get(&pki.connector(true), running.address, "/health")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let refused = tls_get(&pki.connector(false), running.address, "/health").await;
    assert!(
        refused.is_err(),
        "answered without a client certificate: {refused:?}"
    );
}

#[tokio::test]
async fn unusable_tls_files_are_named() {
    let pki = pki();
    let mut settings = pki.settings(false);
    settings.key_file = pki.dir.path().join("missing.key");
    let e = settings.acceptor().err().expect("refused");
    assert!(e.to_string().contains("missing.key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_listen_moves_the_operations_endpoints() {
    let settings = api_settings(true);
    let api = api_with(settings.clone()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (address, ops) = (
        listener.local_addr().unwrap(),
        ops_listener.local_addr().unwrap(),
    );
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = api.service.clone();
    tokio::spawn(async move {
        http::serve(
            listener,
            Some(ops_listener),
            service,
            settings,
            ConnectionSettings::default(),
            async move {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
    });
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        let (status, _) = exchange(TcpStream::connect(ops).await.unwrap(), get(path))
            .await
            .unwrap();
        assert_eq!(status, 200, "{path} on the operations listener");
        let (status, _) = exchange(TcpStream::connect(address).await.unwrap(), get(path))
            .await
            .unwrap();
        assert_eq!(status, 404, "{path} on the API listener");
    }
    // The API stays on its listener.
    let (status, body) = exchange(
        TcpStream::connect(address).await.unwrap(),
        post(
            "/rest/v3/application/detail",
            &api.authorization,
            &json!({ "requestObject": { "applicationId": "nobody" } }).to_string(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn unfit_request_ids_are_replaced() {
    let api = api_with(api_settings(true)).await;
    let long = "r".repeat(200);
    for (given, kept) in [
        ("abc-123.x_y:z", true),
        (long.as_str(), false),
        ("a b", false),
    ] {
        let (status, headers, _) = api
            .send(
                Request::get("/health")
                    .header("x-request-id", given)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let echoed = headers["x-request-id"].to_str().unwrap();
        assert_eq!(echoed == given, kept, "{given} -> {echoed}");
        assert!(echoed.len() <= 128);
    }
}
