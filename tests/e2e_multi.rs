//! Two real `offline-signer serve` processes on one PostgreSQL database and one SoftHSM token (the
//! shape of `e2e_flows.rs`): started at once on the empty database they agree on one KEK/DEK;
//! register and create on A, verify on B; 128 parallel verifications of one code over A and B accept
//! exactly one; a credential removed on A is refused by B (polled, generous deadline); SIGKILL of A
//! under verification load leaves B answering and loses no acknowledged verification.
//!
//! Needs SoftHSM and PostgreSQL; without them the test FAILS unless `OFFLINE_SIGNER_ALLOW_MISSING=1`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use offline_signer_testkit::e2e_server::{self, credentials_from, free_port};
use offline_signer_testkit::postgres::{self, TestDatabase};
use offline_signer_testkit::softhsm;
use offline_token::client::{Client, ClientError, Credentials, VerifyRequest, VerifyResponse};
use offline_token::{Activation, SignedOperation, Token};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_offline-signer");
const APP: &str = "multi-bank";
const LABEL: &str = "e2e-multi";
const PAYMENT: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPlatba 100 Kč\nPotvrďte prosím platbu\nA1*A100CZK*ICZ2730300000001165254011*D20250425\n";

/// One `serve` process with its own configuration (own port, own audit chain).
struct Instance {
    child: Option<Child>,
    name: &'static str,
    url: String,
    config: PathBuf,
    log: PathBuf,
}

/// The shared parts: a folder with the SoftHSM token and the database (and the CA of its TLS
/// certificate: instance `node-b` connects over TLS, `node-a` over plain TCP).
struct Cluster {
    dir: tempfile::TempDir,
    db: TestDatabase,
    ca: PathBuf,
}

impl Cluster {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("hsm/softhsm2.conf")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .env("SOFTHSM2_CONF", self.conf())
            .env("OFFLINE_SIGNER_DATABASE_URL", self.db.url());
        command
    }

    /// Writes the configuration of instance `name` and starts it (without waiting).
    fn start(&self, name: &'static str) -> Instance {
        let port = free_port();
        let config = self.dir.path().join(format!("{name}.toml"));
        let tls = if name == "node-b" {
            format!("tls_ca_file = \"{}\"\n", self.ca.display())
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n\
                 restrict_access = true\n\
                 [store]\n\
                 kind = \"postgres\"\n\
                 pool_size = 8\n\
                 audit_chain = \"{name}\"\n\
                 {tls}\
                 {signer}",
                signer = softhsm::signer_table(LABEL),
            ),
        )
        .unwrap();
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command()
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Instance {
            child: Some(child),
            name,
            url: format!("http://127.0.0.1:{port}"),
            config,
            log,
        }
    }

    /// Runs an administrative command beside the running instances; returns its stdout.
    fn admin(&self, args: &[&str], config: &Path) -> String {
        let out = self
            .command()
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap();
        String::from_utf8(e2e_server::stdout_of_success(args, out)).unwrap()
    }
}

impl Instance {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/health` until it answers (at most 60 s); fails with the log if the process exits.
    async fn wait_until_healthy(&mut self) {
        e2e_server::wait_until_healthy(
            self.name,
            &self.url,
            self.child.as_mut().unwrap(),
            &self.log,
        )
        .await;
    }

    fn client(&self, credentials: &Credentials) -> Client {
        Client::new(&self.url, Some(credentials.clone())).unwrap()
    }

    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            e2e_server::stop(child);
        }
    }
}

async fn activate(client: &Client, dir: &Path, name: &str) -> Token {
    let path = dir.join(format!("{name}.json"));
    let activation = Activation {
        application_id: APP.to_owned(),
        user_id: name.to_owned(),
        max_failed_attempts: None,
    };
    Token::activate(client, &activation, |state| {
        state.create(&path).map_err(Into::into)
    })
    .await
    .unwrap()
}

/// A payload made on `create`, signed by the phone.
async fn signed(create: &Client, token: &mut Token) -> (VerifyRequest, SignedOperation) {
    let signed = e2e_server::create_and_sign(create, token, PAYMENT).await;
    (e2e_server::verify_request(token, &signed), signed)
}

#[test]
fn two_instances_on_one_database_and_one_token() {
    if !offline_signer_testkit::required::softhsm() {
        return;
    }
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let Some(ca) = postgres::server_ca_file().map_or_else(|why| postgres::missing(&why), Some)
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    softhsm::init_token(&dir.path().join("hsm"), LABEL, None);
    softhsm::provision_with_cli(
        std::path::Path::new(env!("CARGO_BIN_EXE_offline-signer")),
        &dir.path().join("hsm"),
        LABEL,
    );
    let cluster = Cluster { dir, db, ca };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(&cluster));
}

async fn scenario(cluster: &Cluster) {
    // Both start at once on the empty database: they must agree on one KEK/DEK (checked below by
    // decrypting on B what A encrypted at registration).
    let mut a = cluster.start("node-a");
    let mut b = cluster.start("node-b");
    a.wait_until_healthy().await;
    b.wait_until_healthy().await;
    // B's sessions are TLS, A's plain: one database serves both.
    let (tls, plain) = cluster.db.sessions_by_tls();
    assert!(
        tls >= 1 && plain >= 1,
        "{tls} TLS and {plain} plain sessions"
    );

    // One KEK and one DEK on the token: had both made a pair, the loser removed its own.
    let report: Value = serde_json::from_str(&cluster.admin(&["key-report"], &a.config)).unwrap();
    for label in ["offline-signer/kek", "offline-signer/dek"] {
        let count = report["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["label"] == label)
            .count();
        assert_eq!(count, 1, "{label}: {report}\n{}\n{}", a.log(), b.log());
    }

    // Administration while both run (PostgreSQL admits the commands beside them).
    let admin = credentials_from(&cluster.admin(
        &["integration", "create", "--name", "e2e", "--role", "admin"],
        &a.config,
    ));
    cluster.admin(&["application", "create", "--id", APP], &a.config);
    let (ca, cb) = (a.client(&admin), b.client(&admin));

    // Register and create on A, verify on B.
    let mut alice = activate(&ca, cluster.dir.path(), "alice").await;
    let (request, _) = signed(&ca, &mut alice).await;
    let answer = cb.verify(&request).await.unwrap();
    assert!(answer.signature_valid, "{answer:?}\n{}", b.log());

    // 128 parallel verifications of one code over A and B: exactly one is accepted.
    let (request, _) = signed(&cb, &mut alice).await;
    let mut tasks = Vec::new();
    for i in 0..128 {
        let client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            client.verify(&request).await.unwrap()
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        let answer: VerifyResponse = task.await.unwrap();
        if answer.signature_valid {
            accepted += 1;
        }
    }
    assert_eq!(
        accepted, 1,
        "exactly one of 128 concurrent verifications wins"
    );

    // A credential made and removed on A is refused by B (polled: B reuses a credential it read
    // for at most half a second).
    let made: Value = ca
        .call(
            "/rest/v3/integration/create",
            &json!({ "name": "temp", "role": "APPLICATION", "applications": [APP] }),
        )
        .await
        .unwrap();
    let temp = Credentials::new(
        made["clientToken"].as_str().unwrap(),
        made["clientSecret"].as_str().unwrap(),
    );
    let status_of_alice = |client: Client| {
        let id = alice.state().activation_id.clone();
        async move { client.activation_status(&id).await }
    };
    status_of_alice(b.client(&temp)).await.unwrap();
    let removed: Value = ca
        .call("/rest/v3/integration/remove", &json!({ "id": made["id"] }))
        .await
        .unwrap();
    assert_eq!(removed["removed"], true);
    let removed_at = Instant::now();
    loop {
        match status_of_alice(b.client(&temp)).await {
            Err(ClientError::Service { status: 401, .. }) => break,
            other => assert!(
                removed_at.elapsed() < Duration::from_secs(30),
                "B still accepts a removed credential: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // SIGKILL of A under verification load: B keeps answering and every verification A
    // acknowledged stays consumed (a replay on B is refused).
    let mut bob = activate(&cb, cluster.dir.path(), "bob").await;
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let load_client = ca.clone();
    let load = tokio::spawn(async move {
        loop {
            let Ok(signed) = e2e_server::try_create_and_sign(&load_client, &mut bob, PAYMENT).await
            else {
                return bob;
            };
            let request = e2e_server::verify_request(&bob, &signed);
            match load_client.verify(&request).await {
                Ok(answer) => {
                    assert!(answer.signature_valid, "{answer:?}");
                    let _ = acked_tx.send(request);
                }
                Err(_) => return bob,
            }
        }
    });
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 5 {
        acknowledged.push(acked_rx.recv().await.unwrap());
    }
    a.kill();
    let mut bob = load.await.unwrap();
    while let Ok(request) = acked_rx.try_recv() {
        acknowledged.push(request);
    }
    for request in &acknowledged {
        let replay = cb.verify(request).await.unwrap();
        assert!(
            !replay.signature_valid,
            "an acknowledged verification was lost"
        );
        assert_eq!(replay.nonce_status.as_deref(), Some("CONSUMED"));
    }
    let (request, _) = signed(&cb, &mut bob).await;
    let answer = cb.verify(&request).await.unwrap();
    assert!(answer.signature_valid, "B answers after A died: {answer:?}");

    // Every chain (one per instance) is intact.
    let verify = cluster
        .command()
        .args(["audit", "verify", "--config"])
        .arg(&b.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{said}");
    assert!(said.contains("intact"), "{said}");
}
