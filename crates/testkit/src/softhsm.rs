//! Test helper: a throwaway SoftHSM token per test, made by `scripts/softhsm-init.sh`.
//!
//! SoftHSM reads `SOFTHSM2_CONF` at `C_Initialize`, and setting an environment variable inside
//! a running test is `unsafe` in edition 2024 (forbidden here). So [`with_token`] re-runs the
//! current test binary for just this test in a child process with `SOFTHSM2_CONF` set: the parent
//! makes the token and checks the child's exit status, the child runs the body.
//!
//! When SoftHSM is missing the test FAILS, unless `OFFLINE_SIGNER_ALLOW_MISSING=1` (see
//! [`crate::required`]).

use std::path::{Path, PathBuf};
use std::process::Command;

pub const MODULE: &str = crate::required::SOFTHSM_MODULE;
const CHILD_DIR: &str = "OFFLINE_SIGNER_TEST_SOFTHSM_DIR";
const CHILD_LABEL: &str = "OFFLINE_SIGNER_TEST_SOFTHSM_LABEL";
const CHILD_PROVISION: &str = "OFFLINE_SIGNER_TEST_SOFTHSM_PROVISION";

/// The token a child test runs against.
pub struct TestToken {
    /// The directory `softhsm-init.sh` filled (conf, tokens/, user.pin, so.pin).
    pub dir: PathBuf,
    /// The token label.
    pub label: String,
}

impl TestToken {
    pub fn user_pin_file(&self) -> PathBuf {
        self.dir.join("user.pin")
    }

    pub fn user_pin(&self) -> String {
        std::fs::read_to_string(self.user_pin_file()).expect("user.pin written by the init script")
    }

    /// The security officer's PIN file (`so.pin`, written by the init script).
    pub fn so_pin_file(&self) -> PathBuf {
        self.dir.join("so.pin")
    }

    /// Runs the key ceremony (`hsm provision`) on this token: a trusted KEK with the unwrap
    /// policy. Call it before opening a signer in this process.
    pub fn provision(&self) -> offline_signer::signer::pkcs11::ProvisionOutcome {
        offline_signer::signer::pkcs11::provision_blocking(
            &self.config(),
            &offline_signer::signer::config::PinSource::File(self.so_pin_file()),
        )
        .expect("the key ceremony runs on a fresh token")
    }

    pub fn tokens_dir(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    /// A PKCS#11 signer configuration for this token.
    pub fn config(&self) -> offline_signer::signer::config::Pkcs11Config {
        use offline_signer::signer::config::{PinSource, Pkcs11Config, TokenSelector};
        Pkcs11Config::new(
            PathBuf::from(MODULE),
            TokenSelector::Label(self.label.clone()),
            PinSource::File(self.user_pin_file()),
        )
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `true` when SoftHSM is usable; otherwise fails, or skips loudly when that is allowed.
pub fn softhsm_present() -> bool {
    crate::required::softhsm()
}

pub fn init_token(dir: &Path, label: &str, user_pin_file: Option<&Path>) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/softhsm-init.sh"))
        .arg(dir)
        .arg(label);
    if let Some(p) = user_pin_file {
        cmd.arg(p);
    }
    run_checked(cmd, "softhsm-init.sh");
}

/// Runs `body` in a child process of this test binary with a fresh token; `test_name` must be
/// the exact name of the calling `#[test]` function. `prepare` may customise the token directory
/// before the child starts (e.g. write a user PIN file first: it receives the directory).
pub fn with_token_prepared(
    test_name: &str,
    label: &str,
    user_pin: Option<&str>,
    body: impl FnOnce(TestToken),
) {
    with_token_custom(test_name, label, user_pin, |_| None, body)
}

/// The general form: `conf_override` receives the prepared directory and may return another
/// `SOFTHSM2_CONF` path for the child (e.g. a missing file).
///
/// The token is provisioned (the key ceremony, [`TestToken::provision`]) in the child before the
/// body runs, as `scripts/dev.sh` does before the first start, unless the configuration file was
/// overridden (the ceremony would fail on purpose there).
pub fn with_token_custom(
    test_name: &str,
    label: &str,
    user_pin: Option<&str>,
    conf_override: impl FnOnce(&Path) -> Option<PathBuf>,
    body: impl FnOnce(TestToken),
) {
    with_token_inner(test_name, label, user_pin, conf_override, true, body)
}

/// A fresh token WITHOUT the key ceremony: what a token made before it looks like (tests of the
/// migration and of probes that must be able to fail).
pub fn with_token_unprovisioned(test_name: &str, label: &str, body: impl FnOnce(TestToken)) {
    with_token_inner(test_name, label, None, |_| None, false, body)
}

fn with_token_inner(
    test_name: &str,
    label: &str,
    user_pin: Option<&str>,
    conf_override: impl FnOnce(&Path) -> Option<PathBuf>,
    provision: bool,
    body: impl FnOnce(TestToken),
) {
    if let (Ok(dir), Ok(label)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_LABEL)) {
        let token = TestToken {
            dir: PathBuf::from(dir),
            label,
        };
        if std::env::var_os(CHILD_PROVISION).is_some() {
            token.provision();
        }
        body(token);
        return;
    }
    if !softhsm_present() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let pin_file = user_pin.map(|pin| {
        let p = tmp.path().join("chosen.pin");
        std::fs::write(&p, pin).expect("write pin");
        p
    });
    let dir = tmp.path().join("hsm");
    init_token(&dir, label, pin_file.as_deref());
    let overridden = conf_override(&dir);
    let provision = provision && overridden.is_none();
    let conf = overridden.unwrap_or_else(|| dir.join("softhsm2.conf"));
    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe);
    if provision {
        child.env(CHILD_PROVISION, "1");
    }
    let out = child
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", conf)
        .env(CHILD_DIR, &dir)
        .env(CHILD_LABEL, label)
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child test {test_name} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "child did not run exactly the test {test_name}:\n{stdout}"
    );
}

/// [`with_token_prepared`] with a random PIN.
pub fn with_token(test_name: &str, label: &str, body: impl FnOnce(TestToken)) {
    with_token_prepared(test_name, label, None, body)
}

/// Runs `softhsm2-util` (inherits `SOFTHSM2_CONF`) and asserts success; returns its stdout.
pub fn softhsm_util(args: &[&str]) -> String {
    let mut cmd = Command::new("softhsm2-util");
    cmd.args(args);
    run_checked(cmd, "softhsm2-util")
}

/// Runs OpenSC's `pkcs11-tool` on `token`, logged in with its user PIN (module, token label and
/// login come first, then `args`), with `SOFTHSM2_CONF` naming the token's own configuration (so it
/// works in the parent and in the child of [`with_token`]); asserts success and returns stdout.
/// The tool stands for what an operator or another process holding the user PIN could do.
pub fn pkcs11_tool(token: &TestToken, args: &[&str]) -> String {
    let pin = token.user_pin();
    let mut cmd = Command::new("pkcs11-tool");
    cmd.env("SOFTHSM2_CONF", token.dir.join("softhsm2.conf"))
        .args(["--module", MODULE, "--token-label", &token.label])
        .args(["--login", "--pin", pin.trim()])
        .args(args);
    run_checked(cmd, "pkcs11-tool")
}

/// Runs `cmd`, asserts that it exits 0 (the message names `what` and shows its output) and returns
/// its stdout.
fn run_checked(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub use crate::runtime;

/// Generates, with OpenSC's `pkcs11-tool` (outside the service, as an operator with the user PIN
/// could), an EXTRACTABLE AES-256 key labelled `label` on `token`: the kind of key `key-report`
/// must flag.
pub fn plant_extractable_key(token: &TestToken, label: &str, id_hex: &str) {
    pkcs11_tool(
        token,
        &[
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            label,
            "--id",
            id_hex,
            "--extractable",
        ],
    );
}

/// The `[signer]` table of a configuration that uses the token `label` made by [`init_token`] in
/// the folder `hsm/` beside the configuration file (PIN in `hsm/user.pin`), two sessions.
pub fn signer_table(label: &str) -> String {
    format!(
        "[signer]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"{label}\"\n\
         pin_file = \"hsm/user.pin\"\npool_size = 2\n"
    )
}

/// The key ceremony from the command line, as an operator runs it: `offline-signer hsm provision`
/// against the token `label` made by [`init_token`] in `hsm_dir` (its `so.pin`), through a minimal
/// configuration written beside the token (`signer.module_env` names the token's `softhsm2.conf`).
pub fn provision_with_cli(offline_signer_bin: &Path, hsm_dir: &Path, label: &str) {
    let config = hsm_dir.join("provision.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"provision-data\"\n[signer]\nkind = \"pkcs11\"\nmodule = \"{MODULE}\"\n\
             token_label = \"{label}\"\npin_file = \"user.pin\"\n\
             module_env = {{ SOFTHSM2_CONF = \"softhsm2.conf\" }}\n"
        ),
    )
    .expect("write the provisioning configuration");
    let out = Command::new(offline_signer_bin)
        .args(["hsm", "provision", "--config"])
        .arg(&config)
        .arg("--so-pin-file")
        .arg(hsm_dir.join("so.pin"))
        .output()
        .expect("offline-signer runs");
    assert!(
        out.status.success(),
        "hsm provision failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
