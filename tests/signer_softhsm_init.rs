//! `scripts/softhsm-init.sh` is idempotent: run twice, it leaves exactly one token with the
//! label, keeps the PINs it generated (mode 0600) and prints the variable to export.

use offline_signer_testkit::softhsm;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn softhsm_init_is_idempotent() {
    softhsm::with_token("softhsm_init_is_idempotent", "init-twice", |token| {
        let first_pin = token.user_pin();
        let first_so = std::fs::read_to_string(token.dir.join("so.pin")).unwrap();
        assert!(first_pin.len() >= 12, "a long random PIN");
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/softhsm-init.sh"
            ))
            .arg(&token.dir)
            .arg("init-twice")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let conf = token.dir.join("softhsm2.conf");
        assert_eq!(
            stdout.trim(),
            format!("export SOFTHSM2_CONF={}", conf.display())
        );
        assert_eq!(token.user_pin(), first_pin, "user PIN reused");
        assert_eq!(
            std::fs::read_to_string(token.dir.join("so.pin")).unwrap(),
            first_so
        );
        for f in ["user.pin", "so.pin"] {
            let mode = std::fs::metadata(token.dir.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let slots = Command::new("softhsm2-util")
            .arg("--show-slots")
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&slots.stdout);
        let count = listing
            .lines()
            .filter(|l| {
                l.trim_start().starts_with("Label:") && l.trim_end().ends_with("init-twice")
            })
            .count();
        assert_eq!(count, 1, "exactly one token with the label:\n{listing}");
        assert!(
            !std::fs::read_to_string(&conf)
                .unwrap()
                .contains("@TOKENDIR@")
        );
    });
}
