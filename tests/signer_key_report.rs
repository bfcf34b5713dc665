//! key-report against a real SoftHSM token: a fresh token with a master key pair, KEK and DEK
//! shows no violation; a key with our label prefix that is extractable or was imported does.

use offline_signer_testkit::softhsm;

use offline_signer::signer::pkcs11::Pkcs11Signer;
use offline_signer::signer::report::{KeyPurpose, KeyReport, ReportedKey};
use offline_signer::signer::{Signer, key_report};
use softhsm::{runtime, with_token};

#[test]
fn fresh_token_has_no_violation() {
    with_token("fresh_token_has_no_violation", "report", |token| {
        runtime().block_on(async {
            let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
            let master = signer.generate_master_key().await.unwrap();
            let ids = signer.ensure_storage_keys(None).await.unwrap();
            // Wrapped keys and their use leave nothing on the token.
            let pair = signer.generate_wrapped_key_pair(&ids.kek).await.unwrap();
            signer
                .unwrapped_key_attributes(&pair.wrapped)
                .await
                .unwrap();

            let report = key_report(&signer).await.expect("report");
            assert_eq!(report.token.label, "report");
            assert_eq!(report.token.manufacturer, "SoftHSM project");
            assert_eq!(report.keys.len(), 4, "{report:#?}");
            for key in &report.keys {
                assert!(key.ok, "{}: {}", key.attributes.label, key.verdict);
                let a = &key.attributes;
                assert_eq!(a.token, Some(true));
                if key.purpose != KeyPurpose::MasterPublic {
                    assert_eq!(a.sensitive, Some(true), "{a:?}");
                    assert_eq!(a.always_sensitive, Some(true), "{a:?}");
                    assert_eq!(a.extractable, Some(false), "{a:?}");
                    assert_eq!(a.never_extractable, Some(true), "{a:?}");
                    assert_eq!(a.local, Some(true), "{a:?}");
                    // The KEK is made by the security officer, who can only make public
                    // objects (docs/key-isolation.md); every other secret is private.
                    let private = key.purpose != KeyPurpose::Kek;
                    assert_eq!(a.private, Some(private), "{a:?}");
                    assert_eq!(a.value_readable, Some(false), "{a:?}");
                }
            }
            let purposes: Vec<KeyPurpose> = report.keys.iter().map(|k| k.purpose).collect();
            for p in [
                KeyPurpose::MasterPrivate,
                KeyPurpose::MasterPublic,
                KeyPurpose::Kek,
                KeyPurpose::Dek,
            ] {
                assert_eq!(purposes.iter().filter(|q| **q == p).count(), 1, "{p:?}");
            }
            assert_eq!(report.violations(), 0);
            assert_eq!(
                report.wrapped_keys.kek_id.as_deref(),
                Some(ids.kek.to_string().as_str())
            );
            let master_row = report
                .keys
                .iter()
                .find(|k| k.purpose == KeyPurpose::MasterPrivate)
                .unwrap();
            assert_eq!(master_row.attributes.id, master.id.to_string());

            let json: serde_json::Value = serde_json::to_value(&report).unwrap();
            let key0 = &json["keys"][0];
            for field in [
                "id",
                "label",
                "purpose",
                "class",
                "keyType",
                "sensitive",
                "extractable",
                "alwaysSensitive",
                "neverExtractable",
                "local",
                "verdict",
            ] {
                assert!(key0.get(field).is_some(), "missing {field} in {key0}");
            }
            for field in ["label", "serial", "manufacturer", "model"] {
                assert!(json["token"].get(field).is_some(), "missing token.{field}");
            }
            assert_eq!(json["wrappedKeys"]["mechanism"], "CKM_AES_KEY_WRAP_PAD");
            // The token alone cannot count wrapped keys (they live in the store): the report says
            // nothing rather than a number it did not read.
            assert_eq!(report.wrapped_keys.count, None);
            assert!(json["wrappedKeys"]["count"].is_null(), "{json}");
            assert_eq!(json["violations"], 0);
            signer.shutdown().await;
        })
    });
}

/// The reported key labelled `label` (it must be there).
fn reported<'a>(report: &'a KeyReport, label: &str) -> &'a ReportedKey {
    report
        .keys
        .iter()
        .find(|k| k.attributes.label == label)
        .unwrap_or_else(|| panic!("{label} is reported: {report:#?}"))
}

#[test]
fn foreign_keys_with_our_prefix_are_violations() {
    with_token(
        "foreign_keys_with_our_prefix_are_violations",
        "report",
        |token| {
            runtime().block_on(async {
                let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
                signer.ensure_storage_keys(None).await.unwrap();
                assert_eq!(key_report(&signer).await.unwrap().violations(), 0);

                // An AES key imported from a file (softhsm2-util): sensitive, but not generated in
                // the token, never "always sensitive": a violation of the keys table.
                let key_file = token.dir.join("imported.key");
                std::fs::write(&key_file, [0x42u8; 32]).unwrap();
                let pin = token.user_pin();
                softhsm::softhsm_util(&[
                    "--import",
                    key_file.to_str().unwrap(),
                    "--aes",
                    "--token",
                    "report",
                    "--label",
                    "offline-signer/imported",
                    "--id",
                    "0102",
                    "--pin",
                    &pin,
                ]);
                let report = key_report(&signer).await.unwrap();
                let imported = reported(&report, "offline-signer/imported");
                assert!(!imported.ok, "{}", imported.verdict);
                assert!(
                    imported.verdict.contains("not generated in the token"),
                    "{}",
                    imported.verdict
                );
                assert_eq!(report.violations(), 1, "{report:#?}");

                // An extractable key generated in the token with our prefix (pkcs11-tool is required:
                // without it this case would prove nothing).
                if !offline_signer_testkit::required::pkcs11_tool() {
                    return;
                }
                softhsm::plant_extractable_key(&token, "offline-signer/leaky", "0103");
                let report = key_report(&signer).await.unwrap();
                let leaky = reported(&report, "offline-signer/leaky");
                assert_eq!(leaky.attributes.extractable, Some(true));
                assert!(!leaky.ok);
                assert!(leaky.verdict.contains("extractable"), "{}", leaky.verdict);
                // Two keys off the table, and the token hands out the leaky key's value when the
                // probe asks for it.
                let through: Vec<_> = report.probes.iter().filter(|p| !p.refused).collect();
                assert_eq!(through.len(), 1, "{through:?}");
                assert_eq!(through[0].name, "read CKA_VALUE in clear");
                assert!(through[0].target.starts_with("offline-signer/leaky"));
                assert_eq!(report.violations(), 3);
                signer.shutdown().await;
            })
        },
    );
}
