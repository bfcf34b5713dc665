//! The administrative commands on a sled store: with the server stopped they create, list and
//! remove scoped credentials; while `serve` holds the store they fail saying which HTTP method does
//! the same. (Software signer: no HSM needed.)
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use offline_signer_testkit::e2e_server::{self, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_offline-signer");

fn run(args: &[&str], config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn stdout_of(args: &[&str], config: &Path) -> String {
    String::from_utf8(e2e_server::stdout_of_success(args, run(args, config))).unwrap()
}

#[test]
fn credentials_on_sled_stopped_and_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[store]\npath = \"data\"\n\
             [signer]\nkind = \"software-insecure\"\nsoftware_key_file = \"keys.json\"\n"
        ),
    )
    .unwrap();

    // Stopped: a scoped credential, listed with its scope, removed by id.
    let made = stdout_of(
        &[
            "integration",
            "create",
            "--name",
            "bank-a",
            "--role",
            "application",
            "--applications",
            "a,b",
            "--can-unblock",
        ],
        &config,
    );
    let id = made
        .lines()
        .find_map(|l| l.strip_prefix("OFFLINE_SIGNER_CLIENT_ID="))
        .unwrap()
        .to_owned();
    assert!(made.contains("OFFLINE_SIGNER_CLIENT_SECRET="));
    let listed = stdout_of(&["integration", "list"], &config);
    assert!(
        listed.contains(&format!("{id}\tbank-a\tAPPLICATION:a,b canUnblock")),
        "{listed}"
    );
    assert!(!listed.contains("SECRET"), "{listed}");
    let refused = run(
        &[
            "integration",
            "create",
            "--name",
            "x",
            "--applications",
            "a",
        ],
        &config,
    );
    assert!(
        !refused.status.success(),
        "--applications needs --role application"
    );
    stdout_of(&["integration", "remove", "--id", &id], &config);
    assert!(!stdout_of(&["integration", "list"], &config).contains(&id));

    // Serving: the commands say how to do the same over HTTP.
    let mut server = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the event (the port answers), not for a duration.
    let mut up = false;
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        assert!(server.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "serve never listened");
    for (args, method) in [
        (vec!["integration", "list"], "integration/list"),
        (
            vec!["integration", "create", "--name", "late"],
            "integration/create",
        ),
        (
            vec!["integration", "remove", "--id", "x"],
            "integration/remove",
        ),
    ] {
        let out = run(&args, &config);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(said.contains("in use"), "{said}");
        assert!(
            said.contains(&format!("http://127.0.0.1:{port}/rest/v3/{method}")),
            "{said}"
        );
    }
    e2e_server::stop(server);
}
