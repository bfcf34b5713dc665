//! Test helper: the real `offline-signer serve` binary on a free loopback port, against a throwaway
//! SoftHSM token, with an integration credential and one application; stopped on drop (SIGTERM, then
//! SIGKILL). Used by the end-to-end tests, whose phone side is `offline_token`.
//!
//! The folder holds the token (`hsm/`, with its own `softhsm2.conf`, given to every child process
//! as `SOFTHSM2_CONF`), `config.toml`, the store (`data/`) and the server's output (`server.log`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use offline_token::client::{Client, Credentials, VerifyRequest};
use offline_token::{SignedOperation, Token};

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
                 [signer]\n\
                 kind = \"pkcs11\"\n\
                 module = \"{module}\"\n\
                 token_label = \"{label}\"\n\
                 pin_file = \"hsm/user.pin\"\n\
                 pool_size = 2\n",
                module = softhsm::MODULE,
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
        let text = String::from_utf8(out).unwrap();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("integration create printed no {key}: {text}"))
                .to_owned()
        };
        let credentials = Credentials::new(
            value("OFFLINE_SIGNER_CLIENT_TOKEN"),
            value("OFFLINE_SIGNER_CLIENT_SECRET"),
        );
        admin(
            &conf,
            &["application", "create", "--id", application, "--config"],
            &config,
        );

        let mut server = Self {
            child: None,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            credentials,
            client_secret: value("OFFLINE_SIGNER_CLIENT_SECRET"),
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
        let client = Client::new(&self.url, None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for _ in 0..600 {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the server exited with {status} before answering:\n{}",
                    self.log()
                );
            }
            if rt.block_on(client.health()).unwrap_or(false) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server never answered /health:\n{}", self.log());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM lets the server release the HSM; SIGKILL if it is still there after 10 s.
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
}

/// Runs an administrative command (server stopped) and returns its stdout.
pub fn admin(conf: &Path, args: &[&str], config: &Path) -> Vec<u8> {
    let out = Command::new(binary())
        .args(args)
        .arg(config)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap();
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
        use secrecy::ExposeSecret as _;
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
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// A two-thread runtime for a test's async body.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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
