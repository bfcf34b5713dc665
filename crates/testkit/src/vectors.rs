//! Running an upstream vector file through the one checker, [`offline_signer::selftest`], so that a
//! failure names its case.

use offline_signer::selftest::{self, VectorKind};

/// Runs the vector file of `kind` from `../shared/vectors` through the selftest checker; panics with
/// the checker's report on any failure, and when the number of cases is not `expected_cases` (so that
/// a file that shrank, or a checker that skips, cannot pass). Returns at once (after the loud notice
/// of [`crate::required`]) when the folder is absent and that is allowed.
pub fn check_file(kind: VectorKind, expected_cases: usize) {
    let Some(dir) = crate::required::vectors_dir() else {
        return;
    };
    let path = dir.join(kind.file_name());
    assert!(
        path.is_file(),
        "{} is missing from {}",
        kind.file_name(),
        dir.display()
    );
    let mut report = Vec::new();
    let summary = selftest::run_file(&path, kind, &mut report).expect("vector file readable");
    let report = String::from_utf8_lossy(&report);
    assert_eq!(summary.failed, 0, "{report}");
    assert_eq!(summary.passed, expected_cases, "{report}");
    assert_eq!(
        report.lines().last(),
        Some(format!("{}: {expected_cases} passed, 0 failed", kind.file_name()).as_str())
    );
}
