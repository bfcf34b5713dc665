//! The audit key and signed checkpoints on a real SoftHSM token, end to end: the service signs a
//! checkpoint every N records and at shutdown, appends each to the external file, exports the
//! public key once (and refuses a different one); `key-report` shows the audit key and the token
//! refusing to let it out; the CLI's `audit verify`, `audit evidence` and `audit verify-evidence`
//! accept the honest trail and catch a restored older data folder and a changed byte.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use offline_signer_testkit::store_fixtures::copy_dir;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use offline_signer::app::{self, App};
use offline_signer::config::Config;
use offline_signer::crypto::PrivateKey;
use offline_signer::signer::report::KeyPurpose;
use offline_signer_testkit::service_harness::register_and_commit;
use offline_signer_testkit::softhsm::{self, runtime, with_token};

const BIN: &str = env!("CARGO_BIN_EXE_offline-signer");

fn cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Registers and commits one activation; its id.
async fn activation(app: &App, application: &str) -> String {
    let device = PrivateKey::generate(&mut rand::rngs::OsRng);
    register_and_commit(app.service(), application, &device.public_key()).await
}

#[test]
fn checkpoints_are_signed_in_the_hsm_and_the_cli_checks_them() {
    with_token(
        "checkpoints_are_signed_in_the_hsm_and_the_cli_checks_them",
        "audit",
        |token| {
            token.provision();
            let dir = tempfile::tempdir().unwrap();
            let config_path = dir.path().join("config.toml");
            std::fs::write(
                &config_path,
                format!(
                    "[store]\npath = \"data\"\n\
                     [audit]\ncheckpoint_every = 4\ncheckpoint_interval_s = 3600\n\
                     checkpoint_file = \"external/cp.jsonl\"\n\
                     [signer]\nkind = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\n\
                     pin_file = \"{}\"\npool_size = 2\n",
                    softhsm::MODULE,
                    token.label,
                    token.user_pin_file().display()
                ),
            )
            .unwrap();
            let config = Config::load(&config_path).unwrap();
            let cp_file = dir.path().join("external/cp.jsonl");
            let pem = dir.path().join("external/audit-public-key.pem");
            let data = dir.path().join("data");
            let config_arg = config_path.to_str().unwrap().to_owned();

            let first_activation = runtime().block_on(async {
                let app = App::open(&config).await.unwrap();
                let task = app.start_checkpoints();
                let mut appended = app.checkpoint_log().subscribe();
                app.service().create_application("bank").await.unwrap();
                let first = activation(&app, "bank").await;
                activation(&app, "bank").await;
                // At least 4 records now: the task signs one without waiting for the interval.
                tokio::time::timeout(Duration::from_secs(120), appended.wait_for(|n| *n >= 1))
                    .await
                    .expect("a checkpoint after checkpoint_every records")
                    .unwrap();
                app.service().block_activation(&first, None).await.unwrap();
                task.abort();
                let _ = task.await;
                let before = *appended.borrow();
                app.close().await; // the shutdown checkpoint
                assert_eq!(lines(&cp_file).len() as u64, before + 1);
                first
            });
            let written = lines(&cp_file);
            assert!(written[0]["seq"].as_u64().unwrap() >= 4, "{written:?}");
            let store = app::open_store(&config).unwrap();
            let head = store.audit_head().unwrap().seq;
            drop(store);
            assert_eq!(written.last().unwrap()["seq"].as_u64().unwrap(), head);
            assert!(
                std::fs::read_to_string(&pem)
                    .unwrap()
                    .starts_with("-----BEGIN PUBLIC KEY-----")
            );
            use std::os::unix::fs::PermissionsExt as _;
            for f in [&cp_file, &pem] {
                let mode = std::fs::metadata(f).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", f.display());
            }

            // The key report lists the audit key, and the token refuses to let it out.
            let report = runtime().block_on(app::key_report(&config)).unwrap();
            let audit = report
                .keys
                .iter()
                .find(|k| k.purpose == KeyPurpose::AuditPrivate)
                .expect("the audit key is reported");
            assert!(audit.ok, "{}", audit.verdict);
            assert_eq!(audit.attributes.extractable, Some(false));
            assert_eq!(audit.attributes.sensitive, Some(true));
            assert_eq!(audit.attributes.local, Some(true));
            let probes: Vec<_> = report
                .probes
                .iter()
                .filter(|p| p.target.starts_with("offline-signer/audit#"))
                .collect();
            assert!(probes.len() >= 2, "{:?}", report.probes);
            assert!(probes.iter().all(|p| p.refused), "{probes:?}");

            // The CLI: the honest trail verifies.
            let out = cli(&["audit", "verify", "--config", &config_arg]);
            let said = text(&out);
            assert!(out.status.success(), "{said}");
            assert!(said.contains("audit chain intact"), "{said}");
            assert!(said.contains("audit checkpoints intact"), "{said}");
            assert!(
                said.contains("not older than the checkpoint file"),
                "{said}"
            );

            // Evidence: verifies alone, and one changed byte makes it fail.
            let bundle = dir.path().join("evidence.json");
            let out = cli(&[
                "audit",
                "evidence",
                "--activation",
                &first_activation,
                "--config",
                &config_arg,
                "--out",
                bundle.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "{}", text(&out));
            let out = cli(&["audit", "verify-evidence", bundle.to_str().unwrap()]);
            let said = text(&out);
            assert!(out.status.success(), "{said}");
            assert!(said.contains("evidence valid: 3 record(s)"), "{said}");
            assert!(said.contains("ACTIVATION_BLOCK"), "{said}");
            let json = std::fs::read_to_string(&bundle).unwrap();
            let at = json.find("\"canonical\": \"").unwrap() + 20;
            let mut bytes = json.into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            std::fs::write(&bundle, bytes).unwrap();
            let out = cli(&["audit", "verify-evidence", bundle.to_str().unwrap()]);
            assert!(!out.status.success(), "{}", text(&out));
            assert!(text(&out).contains("evidence INVALID"), "{}", text(&out));

            // A different public key file: the service refuses to start, and says why.
            let saved_pem = std::fs::read(&pem).unwrap();
            let other = PrivateKey::from_scalar_bytes(&[3; 32])
                .unwrap()
                .public_key();
            std::fs::write(&pem, other.to_spki_pem()).unwrap();
            let refused = runtime().block_on(App::open(&config)).unwrap_err();
            assert!(
                refused.to_string().contains("different public key"),
                "{refused}"
            );
            std::fs::write(&pem, saved_pem).unwrap();

            // Roll the data folder back to this copy after more records were checkpointed.
            let backup = dir.path().join("backup");
            copy_dir(&data, &backup);
            runtime().block_on(async {
                let app = App::open(&config).await.unwrap();
                activation(&app, "bank").await;
                app.close().await;
            });
            let out = cli(&["audit", "verify", "--config", &config_arg]);
            assert!(out.status.success(), "{}", text(&out));
            std::fs::remove_dir_all(&data).unwrap();
            copy_dir(&backup, &data);
            let out = cli(&["audit", "verify", "--config", &config_arg]);
            let said = text(&out);
            assert_eq!(out.status.code(), Some(1), "{said}");
            assert!(said.contains("audit chain intact"), "{said}");
            assert!(said.contains("audit checkpoints BROKEN"), "{said}");
            assert!(said.contains("older than"), "{said}");
        },
    );
}
