//! The benchmark against several instances: `offline-token bench run` takes `--config` once per
//! instance and refuses combinations that cannot run together, and the load generator sends
//! consecutive requests to the instances in turn (two stand-in HTTP servers count what they get).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use offline_token::bench::load::Target;
use offline_token::client::Credentials;

const BIN: &str = env!("CARGO_BIN_EXE_offline-token");

/// A stand-in for `offline-signer`: `bench info` describes the configuration by its file name
/// (`<store>-<port>.toml`); anything else fails.
fn fake_server_bin(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fake-offline-signer");
    std::fs::write(
        &path,
        r#"#!/bin/sh
config=""
while [ $# -gt 0 ]; do
    if [ "$1" = "--config" ]; then config=$2; fi
    shift
done
name=$(basename "$config" .toml)
store=${name%-*}
port=${name#*-}
echo "{\"listen\":\"127.0.0.1:$port\",\"store\":\"$store\",\"data_dir_bytes\":null,\"settings\":{}}"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn bench_run(dir: &Path, configs: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(["bench", "run", "--server-bin"])
        .arg(fake_server_bin(dir))
        .arg("--dir")
        .arg(dir.join("out"));
    for c in configs {
        command.arg("--config").arg(dir.join(c));
    }
    command.output().unwrap()
}

#[test]
fn every_config_is_one_instance_and_only_postgres_instances_run_together() {
    let dir = tempfile::tempdir().unwrap();

    let out = bench_run(dir.path(), &["sled-1.toml", "sled-2.toml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 instances need a shared store (postgres)"),
        "{stderr}"
    );

    let out = bench_run(dir.path(), &["postgres-1.toml", "postgres-1.toml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the same address"), "{stderr}");

    let out = Command::new(BIN)
        .args(["bench", "run", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "--config is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

/// Answers every HTTP/1.1 request on `listener` (keep-alive) with a non-personalized create answer
/// whose `offlineData` names `name`, counting requests in `hits`.
fn stand_in(listener: TcpListener, name: &'static str, hits: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let hits = Arc::clone(&hits);
            std::thread::spawn(move || serve_connection(stream, name, &hits));
        }
    });
}

fn serve_connection(stream: TcpStream, name: &str, hits: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((key, value)) = header.split_once(':')
                && key.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        hits.fetch_add(1, Ordering::SeqCst);
        let answer =
            format!(r#"{{"status":"OK","responseObject":{{"offlineData":"{name}","nonce":"n"}}}}"#);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_spread_over_the_instances_in_turn() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listen_a = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen_b = TcpListener::bind("127.0.0.1:0").unwrap();
    let origins = vec![
        format!("http://{}", listen_a.local_addr().unwrap()),
        format!("http://{}", listen_b.local_addr().unwrap()),
    ];
    stand_in(listen_a, "from-a", Arc::clone(&a));
    stand_in(listen_b, "from-b", Arc::clone(&b));

    let target = Target::spread(&origins, Credentials::new("token", "secret")).unwrap();
    assert_eq!(target.instances(), 2);
    // 10 payloads from 3 tasks: 12 requests (4 per task), then the list is cut to 10.
    let payloads = target.issue_payloads("bench", 10, 3).await.unwrap();
    assert_eq!(payloads.len(), 10);
    assert_eq!(a.load(Ordering::SeqCst), 6);
    assert_eq!(b.load(Ordering::SeqCst), 6);

    let one = Target::new(&origins[0], Credentials::new("token", "secret")).unwrap();
    let before = a.load(Ordering::SeqCst);
    let payloads = one.issue_payloads("bench", 4, 2).await.unwrap();
    assert!(payloads.iter().all(|p| p == "from-a"));
    assert_eq!(a.load(Ordering::SeqCst), before + 4);
    assert_eq!(
        b.load(Ordering::SeqCst),
        6,
        "a single target sends nothing to B"
    );
}
