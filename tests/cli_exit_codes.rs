//! The exit status of the commands an auditor scripts: `key-report` (0 only when every key on the
//! token matches the keys table) and `audit verify` (0 only when the chain is intact), run as the real
//! binary against a real SoftHSM token and a real store.

use std::path::Path;
use std::process::{Command, Output};

use offline_signer::store::{AuditDraft, AuditOperation, AuditOutcome, SledStore, Store};
use offline_signer_testkit::store_fixtures::t;
use offline_signer_testkit::{e2e_server, softhsm};

const BIN: &str = env!("CARGO_BIN_EXE_offline-signer");

fn run(args: &[&str], config: &Path, softhsm_conf: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--log", "warn"])
        .args(args)
        .arg("--config")
        .arg(config);
    if let Some(conf) = softhsm_conf {
        cmd.env("SOFTHSM2_CONF", conf);
    }
    cmd.output().expect("the binary runs")
}

/// [`run`] with the token's `softhsm2.conf`; the command must succeed.
fn run_ok(args: &[&str], config: &Path, softhsm_conf: &Path) {
    e2e_server::stdout_of_success(args, run(args, config, Some(softhsm_conf)));
}

fn pkcs11_config(dir: &Path, label: &str) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n[signer]\nkind = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{label}\"\npin_file = \"hsm/user.pin\"\n",
            softhsm::MODULE
        ),
    )
    .expect("write config");
    config
}

#[test]
fn key_report_exits_0_for_the_keys_table_and_1_for_a_leaky_key() {
    if !softhsm::softhsm_present() || !offline_signer_testkit::required::pkcs11_tool() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let hsm = dir.path().join("hsm");
    softhsm::init_token(&hsm, "cli-report", None);
    let conf = hsm.join("softhsm2.conf");
    let config = pkcs11_config(dir.path(), "cli-report");

    // The key ceremony makes the trusted KEK (docs/key-isolation.md).
    let so_pin = hsm.join("so.pin");
    run_ok(
        &[
            "hsm",
            "provision",
            "--so-pin-file",
            so_pin.to_str().expect("utf-8 path"),
        ],
        &config,
        &conf,
    );
    // The service's own keys: an application master key pair, KEK and DEK, all generated in the token.
    run_ok(&["application", "create", "--id", "bank"], &config, &conf);
    let out = run(&["key-report"], &config, Some(&conf));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["violations"], 0, "{report}");

    // An extractable key with the service's label prefix: a violation, exit status 1.
    let token = softhsm::TestToken {
        dir: hsm.clone(),
        label: "cli-report".into(),
    };
    softhsm::plant_extractable_key(&token, "offline-signer/leaky", "0199");
    let out = run(&["key-report"], &config, Some(&conf));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a leaky key must fail the report"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    // The key itself, and the token handing out its CKA_VALUE to the probe.
    assert_eq!(report["violations"], 2, "{report}");
}

#[test]
fn audit_verify_exits_0_when_intact_and_1_when_a_record_was_edited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "data_dir = \"data\"\n[signer]\nkind = \"software-insecure\"\n",
    )
    .expect("write config");
    {
        let store = SledStore::open(&dir.path().join("data")).expect("open the store");
        for i in 0..5 {
            store
                .append_audit(AuditDraft::new(
                    t(i),
                    AuditOperation::ApplicationCreate,
                    AuditOutcome::Created,
                ))
                .expect("append");
        }
    }
    let out = run(&["audit", "verify"], &config, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    {
        let store = SledStore::open(&dir.path().join("data")).expect("reopen");
        store
            .tamper_audit_raw(3, |bytes| {
                let last = bytes.len() - 40;
                bytes[last] ^= 1;
            })
            .expect("tamper");
    }
    let out = run(&["audit", "verify"], &config, None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an edited record must fail the check"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("BROKEN"));
}
