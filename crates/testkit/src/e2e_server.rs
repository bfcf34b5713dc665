//! Test helper: the real `offline-signer serve` binary on a free loopback port, against a throwaway
//! SoftHSM token, with an integration credential and one application; stopped on drop (SIGTERM, then
//! SIGKILL). Used by the end-to-end tests, whose phone side is `offline_token`.
//!
//! The folder holds the token (`hsm/`, with its own `softhsm2.conf`, given to every child process
//! as `SOFTHSM2_CONF`), `config.toml`, the store (`data/`) and the server's output (`server.log`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use offline_token::client::{Client, ClientError, CreatePersonalized, Credentials, VerifyRequest};
use offline_token::{SignOptions, SignedOperation, Token};
use secrecy::ExposeSecret as _;

use crate::softhsm;

/// The `offline-signer` binary built beside the running test.
pub fn binary() -> PathBuf {
    crate::required::workspace_binary("offline-signer")
}

/// A running server and everything it needs; stopped on drop.
pub struct Server {
    child: Option<Child>,
    /// The server's folder: `config.toml`, `hsm/`, `data/`, `server.log`.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The integration credential made by `integration create`.
    pub credentials: Credentials,
    /// The integration secret, to check that it never reaches the server's log.
    pub client_secret: String,
}

impl Server {
    /// Starts a server, or returns `None` (after a loud notice) when SoftHSM is missing outside CI.
    ///
    /// `extra_config` goes into `config.toml` before the `[signer]` table (top-level keys or whole
    /// tables); `application` is created with `application create`.
    pub fn start(label: &str, application: &str, extra_config: &str) -> Option<Self> {
        if !crate::required::softhsm() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let hsm = dir.path().join("hsm");
        softhsm::init_token(&hsm, label, None);
        let port = free_port();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n\
                 data_dir = \"data\"\n\
                 restrict_access = true\n\
                 {extra_config}\n\
                 {signer}",
                signer = softhsm::signer_table(label),
            ),
        )
        .unwrap();
        let conf = hsm.join("softhsm2.conf");

        // The key ceremony: the trusted KEK, made by the security officer before the first start.
        admin(
            &conf,
            &[
                "hsm",
                "provision",
                "--so-pin-file",
                hsm.join("so.pin").to_str().expect("a UTF-8 temp path"),
                "--config",
            ],
            &config,
        );
        let out = admin(
            &conf,
            &["integration", "create", "--name", "e2e", "--config"],
            &config,
        );
        let credentials = credentials_from(&String::from_utf8(out).unwrap());
        admin(
            &conf,
            &["application", "create", "--id", application, "--config"],
            &config,
        );

        let mut server = Self {
            child: None,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            client_secret: credentials.client_secret.expose_secret().to_owned(),
            credentials,
        };
        server.spawn();
        Some(server)
    }

    /// Starts `serve` on the server's folder (config, token, data) and waits until it answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(self.dir.path().join("config.toml"))
            .env("SOFTHSM2_CONF", self.dir.path().join("hsm/softhsm2.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_until_healthy();
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the server did not exit within 30 s of SIGTERM:\n{}",
            self.log()
        );
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(self.credentials.clone())).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Polls `/health` (every 100 ms, for at most 60 s) until it answers; fails with the server log
    /// if the process exits first or never answers.
    fn wait_until_healthy(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let log = self.dir.path().join("server.log");
        rt.block_on(wait_until_healthy(
            "the server",
            &self.url,
            self.child.as_mut().unwrap(),
            &log,
        ));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }
}

/// Stops a server process: SIGTERM lets it release the HSM; SIGKILL if it is still there after
/// 10 s.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `url`'s `/health` (every 100 ms, for at most 60 s) until it answers; fails with the log
/// at `log` if `child` exits first or never answers. `what` names the process in the message.
pub async fn wait_until_healthy(what: &str, url: &str, child: &mut Child, log: &Path) {
    let client = Client::new(url, None).unwrap();
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited with {status} before answering:\n{}", log());
        }
        if client.health().await.unwrap_or(false) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never answered /health:\n{}", log());
}

/// The integration credential that `integration create` printed (`KEY=value` lines).
pub fn credentials_from(printed: &str) -> Credentials {
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("integration create printed no {key}: {printed}"))
            .to_owned()
    };
    Credentials::new(
        value("OFFLINE_SIGNER_CLIENT_TOKEN"),
        value("OFFLINE_SIGNER_CLIENT_SECRET"),
    )
}

/// Runs an administrative command (server stopped) and returns its stdout.
pub fn admin(conf: &Path, args: &[&str], config: &Path) -> Vec<u8> {
    let out = Command::new(binary())
        .args(args)
        .arg(config)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap();
    stdout_of_success(args, out)
}

/// The stdout of a command that must have succeeded (else the test fails with `args` and its
/// stderr).
pub fn stdout_of_success(args: &[&str], out: std::process::Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Runs the `offline-token` binary with this server's integration credential in its
    /// environment; asserts that it succeeded and returns its stdout.
    pub fn token_cli(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new(crate::required::workspace_binary("offline-token"))
            .args(args)
            .env(
                "OFFLINE_SIGNER_CLIENT_TOKEN",
                &self.credentials.client_token,
            )
            .env(
                "OFFLINE_SIGNER_CLIENT_SECRET",
                self.credentials.client_secret.expose_secret(),
            )
            .output()
            .unwrap();
        stdout_of_success(args, out)
    }
}

/// The common shape of an end-to-end test: [`Server::start`], then `body` on a fresh [`runtime`]
/// with the server and a [`Server::client`]. Returns at once when [`Server::start`] does (SoftHSM
/// missing and that allowed); the server stops when the body is done.
pub fn with_server(
    label: &str,
    application: &str,
    extra_config: &str,
    body: impl AsyncFnOnce(&Server, Client),
) {
    let Some(server) = Server::start(label, application, extra_config) else {
        return;
    };
    runtime().block_on(async {
        let client = server.client();
        body(&server, client).await
    });
}

/// A two-thread runtime for a test's async body.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The web application creates a personalized payload for `data`; the phone signs it.
pub async fn create_and_sign(client: &Client, token: &mut Token, data: &str) -> SignedOperation {
    try_create_and_sign(client, token, data).await.unwrap()
}

/// [`create_and_sign`] that returns the service's refusal (or a server that is gone) as an error.
pub async fn try_create_and_sign(
    client: &Client,
    token: &mut Token,
    data: &str,
) -> Result<SignedOperation, ClientError> {
    let payload = client
        .create_personalized(&CreatePersonalized {
            activation_id: token.state().activation_id.clone(),
            data: data.to_owned(),
            nonce: None,
            proximity_check: None,
        })
        .await?;
    Ok(token
        .sign(&payload.offline_data, &SignOptions::default())
        .unwrap())
}

/// The web application's verify request for a code `token` made.
pub fn verify_request(token: &Token, signed: &SignedOperation) -> VerifyRequest {
    VerifyRequest {
        activation_id: token.state().activation_id.clone(),
        data: signed.data.clone(),
        signature: signed.code.clone(),
        allow_biometry: signed.allow_biometry,
        component_length: None,
        proximity_check: None,
    }
}
