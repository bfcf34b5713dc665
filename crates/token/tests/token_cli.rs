//! `offline-signer token sign|status` through the real binary, with a state file holding the keys of
//! the worked example (`powerauth-offline.md` §11): codes, pure JSON on stdout, the counter saved,
//! refusals that exit non-zero and leave the state alone.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use offline_signer_crypto::{KeyIndicator, PrivateKey, UnsignedOfflineData, ecdsa};
use offline_token::TokenState;

const BIN: &str = env!("CARGO_BIN_EXE_offline-token");
use offline_token::state::WORKED_SERVER_PRIVATE_KEY as SERVER_PRIVATE;
const WORKED_QR: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425\nB\nAD8bOO0Df73kNaIGb3Vmpg==\n1MEUCIQCe2urpMWYRSmx1/GIiOHImHe9wEPZLCHghRBhc8ssZ0wIgbdYNS2aRUmlLoQBEOSClWNLI3Z0Ys1d72o0MFAsvbZ8=";
const WORKED_DATA: &str = "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AD8bOO0Df73kNaIGb3Vmpg==&NWZmMWIxZWQtYTNjYy00NWEzLThhYjAtZWQ2MDk1MDMxMmI2JkExKkExMDBDWksqSUNaMjczMDMwMDAwMDAwMTE2NTI1NDAxMSpEMjAxODA0MjU=";

fn worked_state() -> TokenState {
    TokenState::worked_example("http://127.0.0.1:9")
}

fn token(state: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--state")
        .arg(state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    worked_state().create(&path).unwrap();
    (dir, path)
}

#[test]
fn sign_json_is_pure_json_and_the_counter_is_saved() {
    let (_dir, state) = setup();
    let out = token(
        &state,
        &["sign", "--json", "--offline-data", WORKED_QR],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["code"], "29703108-68382858");
    assert_eq!(json["data"], WORKED_DATA);
    assert_eq!(json["nonce"], "AD8bOO0Df73kNaIGb3Vmpg==");
    assert_eq!(json["signatureType"], "POSSESSION_KNOWLEDGE");
    assert_eq!(json["allowBiometry"], true);
    assert_eq!(json["proximity"], serde_json::Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("100 CZK"), "{stderr}");
    assert!(stderr.contains("2018-04-25"), "{stderr}");
    assert!(
        stderr.contains("Code to type: 29703108-68382858"),
        "{stderr}"
    );

    let saved = TokenState::load(&state).unwrap();
    assert_eq!(saved.counter, 1);
    assert_eq!(saved.counter_data.to_base64(), "/YNTdqZj00BmQB2s9BJ5bA==");
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The next code comes from the next counter position; the QR arrives on stdin with a newline.
    let out = token(
        &state,
        &["sign", "--field", "code"],
        Some(&format!("{WORKED_QR}\n")),
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "86435449-95476512\n");
}

#[test]
fn biometry_and_short_codes() {
    let (_dir, state) = setup();
    let out = token(
        &state,
        &[
            "sign",
            "--biometry",
            "--length",
            "4",
            "--offline-data",
            WORKED_QR,
        ],
        None,
    );
    assert!(out.status.success());
    // ctr[0], possession_biometry, L=4: the last four digits of 29703108-17227518.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3108-7518\n");
    let out = token(
        &state,
        &["sign", "--length", "9", "--offline-data", WORKED_QR],
        None,
    );
    assert!(!out.status.success(), "length 9 is refused");
}

#[test]
fn tampered_qr_is_refused_and_nothing_moves() {
    let (_dir, state) = setup();
    let before = std::fs::read(&state).unwrap();
    let tampered = WORKED_QR.replace("A100CZK", "A900CZK");
    let out = token(&state, &["sign", "--offline-data", &tampered], None);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no code is shown");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REFUSED"), "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert_eq!(std::fs::read(&state).unwrap(), before);
}

#[test]
fn wrong_key_qr_is_refused() {
    let (_dir, state) = setup();
    let other = PrivateKey::generate(&mut rand::rngs::OsRng);
    let unsigned = UnsignedOfflineData::new(
        "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPay\nA1*A1CZK\nB",
        None,
        "AD8bOO0Df73kNaIGb3Vmpg==",
        KeyIndicator::Personalized,
    );
    let sig = ecdsa::sign(&other, unsigned.signed_bytes());
    let out = token(
        &state,
        &["sign", "--offline-data", &unsigned.finish(&sig)],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REFUSED"));
    assert_eq!(TokenState::load(&state).unwrap().counter, 0);
}

#[test]
fn biometry_without_b_flag_is_refused() {
    let (_dir, state) = setup();
    let server = PrivateKey::from_base64(SERVER_PRIVATE).unwrap();
    let unsigned = UnsignedOfflineData::new(
        "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPay\nA1*A1CZK\nF",
        None,
        "AD8bOO0Df73kNaIGb3Vmpg==",
        KeyIndicator::Personalized,
    );
    let sig = ecdsa::sign(&server, unsigned.signed_bytes());
    let qr = unsigned.finish(&sig);
    let out = token(&state, &["sign", "--biometry", "--offline-data", &qr], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not allow biometry"));
    assert_eq!(TokenState::load(&state).unwrap().counter, 0);
    let out = token(&state, &["sign", "--offline-data", &qr], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fraud"));
}

#[test]
fn status_shows_position_and_fingerprint() {
    let (_dir, state) = setup();
    token(&state, &["sign", "--offline-data", WORKED_QR], None);
    let out = token(&state, &["status"], None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("c564e700-7e86-4a87-b6c8-a5a0cc89683f"),
        "{text}"
    );
    assert!(text.contains("codes made   1"), "{text}");
    let fp = worked_state().fingerprint();
    assert!(text.contains(&fp), "{text}");
    assert!(!text.contains("UUOQH89H"), "no key in the output");
}

#[test]
fn activate_refuses_an_existing_state_file() {
    let (_dir, state) = setup();
    let out = Command::new(BIN)
        .args([
            "activate",
            "--server",
            "http://127.0.0.1:9",
            "--application",
            "demo",
            "--user",
            "alice",
            "--state",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
