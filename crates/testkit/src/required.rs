//! What a test does when something it needs is not on the machine (SoftHSM, `pkcs11-tool`, the
//! upstream vector folder, PostgreSQL): it FAILS, so that `cargo test` never shows green for what
//! did not run. A person who knowingly runs without it sets `OFFLINE_SIGNER_ALLOW_MISSING=1`; the
//! test then prints a loud notice and returns early, and the notice says it checked nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The one variable that turns "missing" from a failure into a loud skip.
pub const ALLOW_MISSING: &str = "OFFLINE_SIGNER_ALLOW_MISSING";

/// The SoftHSM module every SoftHSM test loads.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Whether `OFFLINE_SIGNER_ALLOW_MISSING=1` is set.
pub fn missing_allowed() -> bool {
    std::env::var(ALLOW_MISSING).as_deref() == Ok("1")
}

/// Reports that `what` is missing: panics (the test fails) unless missing tools are allowed, in which
/// case it prints a loud notice. Returns `false` so that callers can write
/// `if !present { return missing(...) }`.
///
/// # Panics
/// Unless `OFFLINE_SIGNER_ALLOW_MISSING=1`.
pub fn missing(what: &str, how_to_get_it: &str) -> bool {
    assert!(
        missing_allowed(),
        "{what} is missing, so this test cannot run ({how_to_get_it}). \
         Set {ALLOW_MISSING}=1 to skip such tests knowingly."
    );
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPED: {what} is missing; this test checked NOTHING.");
    eprintln!("!!! {how_to_get_it}");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    false
}

/// Whether SoftHSM (module and `softhsm2-util`) is installed; see [`missing`] for what happens
/// when it is not.
pub fn softhsm() -> bool {
    let util = Command::new("softhsm2-util").arg("--version").output();
    let present =
        Path::new(SOFTHSM_MODULE).is_file() && util.map(|o| o.status.success()).unwrap_or(false);
    present
        || missing(
            "SoftHSM (libsofthsm2.so / softhsm2-util)",
            "scripts/softhsm-init.sh installs it with apt-get; scripts/test.sh runs it",
        )
}

/// Whether OpenSC's `pkcs11-tool` is installed; see [`missing`].
pub fn pkcs11_tool() -> bool {
    let ok = Command::new("pkcs11-tool")
        .arg("--help")
        .output()
        .is_ok();
    ok || missing("pkcs11-tool (OpenSC)", "apt-get install opensc; scripts/test.sh does")
}

/// The upstream vector folder `../shared/vectors` beside the workspace, if present; see
/// [`missing`] for what happens when it is not.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    if dir.is_dir() {
        return Some(dir);
    }
    missing(
        &format!("the upstream vector folder {}", dir.display()),
        "CI lays ../shared beside the checkout",
    );
    None
}

/// A binary of this workspace built beside the running test (`target/<profile>/<name>`): the tests
/// of one package cannot name another package's binaries through Cargo.
///
/// # Panics
/// When the binary was not built (run the tests from the workspace root, which builds every member).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests from the workspace root (cargo test / cargo nextest run \
         build every member's binaries)",
        path.display()
    );
    path
}
