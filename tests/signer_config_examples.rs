//! Every example in `hsm-config/` is a valid `[signer]` table, names its module and token, and
//! contains no PIN; the SoftHSM one says it was tested, the vendor ones say they were not.

use offline_signer::signer::config::{RawSignerConfig, SignerConfig};

const EXAMPLES: [&str; 6] = [
    "softhsm.toml",
    "thales-luna.toml",
    "entrust-nshield.toml",
    "utimaco.toml",
    "aws-cloudhsm.toml",
    "yubihsm2.toml",
];

#[test]
fn hsm_config_examples_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hsm-config");
    for name in EXAMPLES {
        let text = std::fs::read_to_string(dir.join(name)).expect(name);
        let mut table: toml::Table = toml::from_str(&text).expect(name);
        assert_eq!(table.len(), 1, "{name}: only a [signer] table");
        let signer = table.remove("signer").expect("a [signer] table");
        let raw: RawSignerConfig = signer.try_into().expect(name);
        let SignerConfig::Pkcs11(cfg) = raw.validate().expect(name) else {
            panic!("{name}: kind must be pkcs11")
        };
        assert!(cfg.module.is_absolute(), "{name}");
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("pin =")),
            "{name}"
        );
        let tested = text.contains("TESTED HERE: yes");
        let untested = text.contains("TESTED HERE: NO");
        assert_eq!(
            tested,
            name == "softhsm.toml",
            "{name}: says plainly what was tested"
        );
        assert_eq!(
            untested,
            name != "softhsm.toml",
            "{name}: says plainly what was not tested"
        );
    }
}
