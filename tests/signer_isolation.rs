//! Isolation the token enforces, proven on a real SoftHSM token: after the key ceremony every
//! probe of `key-report` is refused by the token; on a token whose KEK was made the old way
//! (no CKA_TRUSTED, no CKA_UNWRAP_TEMPLATE) the same probes go through, so they can fail; the
//! binary finds the token from the configuration alone (`signer.module_env`), reports orphans
//! and `hsm gc` removes a planted one after a dry run.

use std::path::Path;
use std::process::Command;

use offline_signer::model::PublicKey;
use offline_signer::signer::pkcs11::{Pkcs11Signer, temporary_objects_alive};
use offline_signer::signer::report::KeyPurpose;
use offline_signer::signer::{KeyRef, Signer, key_report};
use offline_signer_testkit::softhsm::{
    self, TestToken, runtime, with_token, with_token_unprovisioned,
};

fn device_public_key() -> PublicKey {
    PublicKey::from_p256(p256::SecretKey::random(&mut rand::rngs::OsRng).public_key())
}

#[test]
fn every_probe_is_refused_after_the_key_ceremony() {
    with_token(
        "every_probe_is_refused_after_the_key_ceremony",
        "isolation",
        |token| {
            // Idempotent: the test kit already ran it.
            let again = token.provision();
            assert!(!again.created);
            runtime().block_on(async {
                let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
                signer.generate_master_key().await.unwrap();
                let ids = signer.ensure_storage_keys(None).await.unwrap();
                assert_eq!(
                    ids.kek, again.kek_id,
                    "the service adopts the ceremony's KEK"
                );
                // The service's own operations still work under the policy.
                let pair = signer.generate_wrapped_key_pair(&ids.kek).await.unwrap();
                signer
                    .sign_digest(KeyRef::Wrapped(&pair.wrapped), &[7u8; 32])
                    .await
                    .expect("sign with an unwrapped key");
                signer
                    .ecdh(&pair.wrapped, &device_public_key())
                    .await
                    .expect("ECDH with an unwrapped key");
                let unwrapped = signer
                    .unwrapped_key_attributes(&pair.wrapped)
                    .await
                    .unwrap();
                assert_eq!(unwrapped.sensitive, Some(true));
                assert_eq!(unwrapped.extractable, Some(false));
                assert_eq!(unwrapped.wrap_with_trusted, Some(true));

                let before = signer.inventory().await.unwrap().objects.len();
                let report = key_report(&signer).await.expect("report");
                for key in &report.keys {
                    assert!(key.ok, "{}: {}", key.attributes.label, key.verdict);
                }
                let kek = report
                    .keys
                    .iter()
                    .find(|k| k.purpose == KeyPurpose::Kek)
                    .expect("KEK reported");
                assert_eq!(kek.attributes.trusted, Some(true));
                assert_eq!(kek.attributes.private, Some(false), "made by the SO");
                let answers: Vec<(&str, &str)> = report
                    .probes
                    .iter()
                    .map(|p| (p.name.as_str(), p.answer.as_str()))
                    .collect();
                for p in &report.probes {
                    assert!(p.refused, "the token let a probe through: {p:?}");
                }
                let expect = [
                    (
                        "unwrap an activation key as non-sensitive and extractable",
                        "CKR_TEMPLATE_INCONSISTENT",
                    ),
                    (
                        "unwrap an activation key as extractable without CKA_WRAP_WITH_TRUSTED",
                        "CKR_TEMPLATE_INCONSISTENT",
                    ),
                    (
                        "wrap an activation key under a non-trusted key",
                        "CKR_KEY_NOT_WRAPPABLE",
                    ),
                    (
                        "encrypt data with the KEK",
                        "CKR_KEY_FUNCTION_NOT_PERMITTED",
                    ),
                    ("wrap a key with the DEK", "CKR_KEY_FUNCTION_NOT_PERMITTED"),
                    (
                        "wrap a long-term private key under a non-trusted key",
                        "CKR_KEY_UNEXTRACTABLE",
                    ),
                    ("read CKA_VALUE in clear", "CKR_ATTRIBUTE_SENSITIVE"),
                ];
                for (name, answer) in expect {
                    assert!(
                        answers.contains(&(name, answer)),
                        "missing {name} -> {answer} in {answers:#?}"
                    );
                }
                // CKA_VALUE is probed on the KEK, the DEK and the master private key.
                let value_probes = report
                    .probes
                    .iter()
                    .filter(|p| p.name == "read CKA_VALUE in clear")
                    .count();
                assert_eq!(value_probes, 3, "{answers:#?}");
                assert_eq!(report.violations(), 0);
                // Probes leave nothing behind.
                assert_eq!(signer.inventory().await.unwrap().objects.len(), before);
                signer.shutdown().await;
                assert_eq!(temporary_objects_alive(), 0);
            });
        },
    );
}

/// Makes the KEK the way the service made it before the key ceremony: generated by the user, no
/// CKA_TRUSTED, no CKA_UNWRAP_TEMPLATE (with pkcs11-tool, not with the code under test).
fn make_old_kek(token: &TestToken) {
    softhsm::pkcs11_tool(
        token,
        &[
            "--keygen",
            "--key-type",
            "AES:32",
            "--usage-wrap",
            "--sensitive",
            "--private",
            "--label",
            "offline-signer/kek",
            "--id",
            "00112233445566778899aabbccddeeff",
        ],
    );
}

#[test]
fn an_unprotected_kek_lets_the_probes_through() {
    with_token_unprovisioned(
        "an_unprotected_kek_lets_the_probes_through",
        "old-kek",
        |token| {
            make_old_kek(&token);
            runtime().block_on(async {
                let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
                let ids = signer.ensure_storage_keys(None).await.unwrap();
                // Tokens made before keep working (without CKA_WRAP_WITH_TRUSTED, loudly).
                let pair = signer.generate_wrapped_key_pair(&ids.kek).await.unwrap();
                signer
                    .sign_digest(KeyRef::Wrapped(&pair.wrapped), &[1u8; 32])
                    .await
                    .unwrap();
                let report = key_report(&signer).await.expect("report");
                let through: Vec<&str> = report
                    .probes
                    .iter()
                    .filter(|p| !p.refused)
                    .map(|p| p.name.as_str())
                    .collect();
                assert!(
                    through.contains(&"unwrap an activation key as non-sensitive and extractable"),
                    "{:#?}",
                    report.probes
                );
                assert!(through.contains(&"wrap an activation key under a non-trusted key"));
                let kek = report
                    .keys
                    .iter()
                    .find(|k| k.purpose == KeyPurpose::Kek)
                    .unwrap();
                assert!(
                    !kek.ok && kek.verdict.contains("CKA_TRUSTED"),
                    "{}",
                    kek.verdict
                );
                assert!(report.violations() >= 3);
                signer.shutdown().await;
                assert_eq!(temporary_objects_alive(), 0);
            });
        },
    );
}

#[test]
fn without_the_key_ceremony_the_service_makes_no_kek() {
    with_token_unprovisioned(
        "without_the_key_ceremony_the_service_makes_no_kek",
        "no-kek",
        |token| {
            runtime().block_on(async {
                let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
                let err = signer.ensure_storage_keys(None).await.unwrap_err();
                assert!(err.to_string().contains("hsm provision"), "{err}");
                signer.shutdown().await;
            });
        },
    );
}

fn write_config(dir: &Path, token: &TestToken) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\n[signer]\nkind = \"pkcs11\"\n\
             module = \"{module}\"\ntoken_label = \"{label}\"\npin_file = \"{pin}\"\n\
             module_env = {{ SOFTHSM2_CONF = \"{conf}\" }}\n",
            module = softhsm::MODULE,
            label = token.label,
            pin = token.user_pin_file().display(),
            conf = token.dir.join("softhsm2.conf").display(),
        ),
    )
    .expect("write the configuration");
    config
}

/// Runs the binary as from a new terminal: no SOFTHSM2_CONF in its environment.
fn cli(args: &[&str], config: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_offline-signer"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("SOFTHSM2_CONF")
        .output()
        .expect("offline-signer runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_finds_the_token_from_the_config_and_gc_removes_an_orphan() {
    with_token(
        "the_cli_finds_the_token_from_the_config_and_gc_removes_an_orphan",
        "cli-gc",
        |token| {
            let dir = tempfile::tempdir().unwrap();
            let config = write_config(dir.path(), &token);
            let so_pin = token.so_pin_file();
            let so_pin = so_pin.to_str().unwrap();
            let (ok, out, err) = cli(&["hsm", "provision", "--so-pin-file", so_pin], &config);
            assert!(ok && out.contains("found trusted KEK"), "{out}\n{err}");
            let (ok, _, err) = cli(&["application", "create", "--id", "demo"], &config);
            assert!(ok, "{err}");

            // Plant an orphan: a master key pair the store never hears of.
            let orphan = runtime().block_on(async {
                let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
                let pair = signer.generate_master_key().await.unwrap();
                signer.shutdown().await;
                pair.id.to_string()
            });

            let (ok, out, err) = cli(&["key-report"], &config);
            assert!(ok, "key-report must pass: {out}\n{err}");
            let report: serde_json::Value = serde_json::from_str(&out).unwrap();
            let orphans = report["orphans"].as_array().expect("orphans listed");
            assert_eq!(orphans.len(), 1, "{orphans:?}");
            assert!(orphans[0].as_str().unwrap().ends_with(&orphan));
            assert_eq!(report["wrappedKeys"]["count"], 0);
            assert_eq!(report["violations"], 0);
            assert!(
                report["probes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["refused"] == true)
            );

            let (ok, out, err) = cli(&["hsm", "gc"], &config);
            assert!(
                ok && out.contains(&orphan) && out.contains("dry run"),
                "{out}\n{err}"
            );
            let (ok, out, _) = cli(&["key-report"], &config);
            assert!(ok);
            let report: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                report["orphans"].as_array().unwrap().len(),
                1,
                "dry run kept it"
            );

            let (ok, out, err) = cli(&["hsm", "gc", "--yes"], &config);
            assert!(
                ok && out.contains("destroyed 2 token object(s)"),
                "{out}\n{err}"
            );
            let (ok, out, err) = cli(&["key-report"], &config);
            assert!(ok, "{err}");
            let report: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(report["orphans"].as_array().unwrap().len(), 0);
            let masters = report["keys"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| k["purpose"] == "master-private")
                .count();
            assert_eq!(masters, 1, "the application's own key stays");
            let (ok, out, err) = cli(&["audit", "verify"], &config);
            assert!(ok, "{out}\n{err}");
        },
    );
}
