//! The activation vector files (`../shared/vectors/activation-*.json`,
//! `spec/powerauth-activation.md` §8.1), run through the one vector checker,
//! [`offline_signer::selftest`], so that a failure names its case.
//!
//! Missing vectors are a failure: the tests pass without them only when
//! `OFFLINE_SIGNER_ALLOW_MISSING=1` is set, and then say loudly that they checked nothing.

use offline_signer::selftest::{self, VectorKind};
use offline_signer_testkit::required::vectors_dir;
use offline_signer_testkit::vectors::check_file;
use serde_json::Value;

#[test]
fn activation_ecies() {
    check_file(VectorKind::ActivationEcies, 28);
}

#[test]
fn activation_code() {
    check_file(VectorKind::ActivationCode, 41);
}

#[test]
fn activation_status_blob() {
    check_file(VectorKind::ActivationStatusBlob, 12);
}

#[test]
fn activation_temporary_key() {
    check_file(VectorKind::ActivationTemporaryKey, 8);
}

#[test]
fn activation_flow() {
    check_file(VectorKind::ActivationFlow, 2);
}

/// Copies the five files into a scratch folder, applies `edit` to one case of one file, and
/// returns the report's failing lines.
fn failing_lines_after(file: &str, edit: impl FnOnce(&mut Value)) -> Option<Vec<String>> {
    let dir = vectors_dir()?;
    let tmp = tempfile::tempdir().expect("scratch folder");
    for kind in [
        VectorKind::ActivationCode,
        VectorKind::ActivationEcies,
        VectorKind::ActivationFlow,
        VectorKind::ActivationStatusBlob,
        VectorKind::ActivationTemporaryKey,
    ] {
        std::fs::copy(
            dir.join(kind.file_name()),
            tmp.path().join(kind.file_name()),
        )
        .expect("copy vector file");
    }
    let path = tmp.path().join(file);
    let mut root: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("vector file is JSON");
    edit(&mut root);
    std::fs::write(&path, serde_json::to_vec(&root).expect("serialize")).expect("write");
    let mut report = Vec::new();
    let summary = selftest::run(tmp.path(), &mut report).expect("scratch folder readable");
    let report = String::from_utf8(report).expect("report is UTF-8");
    assert_eq!(summary.failed, 1, "{report}");
    Some(
        report
            .lines()
            .filter(|line| line.contains(" #"))
            .map(str::to_owned)
            .collect(),
    )
}

/// Flips the first character of a Base64 value to another symbol of the alphabet.
fn altered(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn alter(value: &mut Value) {
    let text = value.as_str().expect("a string value").to_owned();
    *value = Value::String(altered(&text));
}

/// The checker is not blind: one altered value in each file is reported, naming file and case.
#[test]
fn an_altered_value_in_each_file_is_reported() {
    type Edit = fn(&mut Value);
    let cases: [(&str, &str, Edit); 6] = [
        ("activation-ecies.json", "#5: ", |v| {
            alter(&mut v["data"][5]["output"]["encryptedResponse"]["mac"])
        }),
        ("activation-ecies.json", "#26: ", |v| {
            alter(&mut v["data"][26]["output"]["encryptedRequest"]["encryptedData"])
        }),
        ("activation-code.json", "#3: ", |v| {
            alter(&mut v["data"][3]["output"]["activationSignature"])
        }),
        ("activation-status-blob.json", "#10: ", |v| {
            alter(&mut v["data"][10]["output"]["encryptedStatusBlob"])
        }),
        ("activation-temporary-key.json", "#6: ", |v| {
            let jwt = v["data"][6]["output"]["requestJwt"]
                .as_str()
                .expect("jwt")
                .to_owned();
            let (head, mac) = jwt.rsplit_once('.').expect("three parts");
            v["data"][6]["output"]["requestJwt"] =
                Value::String(format!("{head}.{}", altered(mac)));
        }),
        ("activation-flow.json", "#1: ", |v| {
            alter(&mut v["data"][1]["status"]["encryptedStatusBlob"])
        }),
    ];
    for (file, case, edit) in cases {
        let Some(lines) = failing_lines_after(file, edit) else {
            return;
        };
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("{file} {case}")),
            "{file} {case}: {lines:?}"
        );
    }
}
