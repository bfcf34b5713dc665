//! Upstream PowerAuth test vectors (`../shared/vectors`, `spec/powerauth-offline.md` §10), checked
//! through the one vector checker, [`offline_signer::selftest`], so that a failure names its case.
//! Without the folder the tests FAIL, unless `OFFLINE_SIGNER_ALLOW_MISSING=1` (then they say loudly that they checked nothing).

use std::path::Path;

use offline_signer::crypto::CounterData;
use offline_signer::selftest::{self, VectorKind};
use offline_signer_testkit::required::vectors_dir;
use offline_signer_testkit::vectors::check_file;
use serde_json::Value;

fn cases(dir: &Path, kind: VectorKind) -> Vec<Value> {
    let bytes = std::fs::read(dir.join(kind.file_name())).expect("vector file readable");
    let root: Value = serde_json::from_slice(&bytes).expect("vector file is JSON");
    root["data"]
        .as_array()
        .expect("vector file has a data array")
        .clone()
}

#[test]
fn signatures_offline() {
    check_file(VectorKind::SignaturesOffline, 200);
}

#[test]
fn compute_derived_keys() {
    check_file(VectorKind::DerivedKeys, 20);
}

#[test]
fn compute_master_secret_key_both_directions() {
    check_file(VectorKind::MasterSecret, 20);
}

#[test]
fn verify_activation_data_signature_v3() {
    check_file(VectorKind::ActivationSignatureV3, 20);
}

#[test]
fn whole_directory_passes_and_last_line_is_the_total() {
    let Some(dir) = vectors_dir() else { return };
    let mut report = Vec::new();
    let summary = selftest::run(&dir, &mut report).expect("vector folder readable");
    let report = String::from_utf8(report).expect("report is UTF-8");
    assert_eq!(summary.failed, 0, "{report}");
    assert!(summary.passed >= 260, "{report}");
    assert_eq!(
        report.lines().last(),
        Some(format!("{} passed, 0 failed", summary.passed).as_str())
    );
}

/// §10's free extra check: inside each 20-case block of `signatures-offline.json` (one key set per
/// block), `counterData[i+1] = NEXT(counterData[i])`. The block structure is verified first.
#[test]
fn adjacent_counters_in_offline_blocks_follow_the_hash_chain() {
    let Some(dir) = vectors_dir() else { return };
    let data = cases(&dir, VectorKind::SignaturesOffline);
    assert_eq!(
        data.len() % 20,
        0,
        "signatures-offline.json is not made of 20-case blocks"
    );
    let input = |case: &Value, key: &str| {
        case["input"][key]
            .as_str()
            .expect("string field")
            .to_owned()
    };
    let mut pairs = 0;
    for (b, block) in data.chunks(20).enumerate() {
        let keys = |case: &Value| {
            [
                "signaturePossessionKey",
                "signatureKnowledgeKey",
                "signatureBiometryKey",
            ]
            .map(|k| input(case, k))
        };
        assert!(
            block.iter().all(|case| keys(case) == keys(&block[0])),
            "block {b} does not share one key set: the block layout assumed here does not hold"
        );
        for (i, pair) in block.windows(2).enumerate() {
            let this =
                CounterData::from_base64(&input(&pair[0], "counterData")).expect("counterData");
            let next =
                CounterData::from_base64(&input(&pair[1], "counterData")).expect("counterData");
            assert_eq!(
                this.next(),
                next,
                "case {} → {}",
                b * 20 + i,
                b * 20 + i + 1
            );
            pairs += 1;
        }
    }
    assert_eq!(pairs, 190);
}
