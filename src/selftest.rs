//! The conformance runner behind `offline-signer selftest --vectors DIR`.
//!
//! It checks upstream-format PowerAuth test-vector files (`spec/powerauth-offline.md` §10) and the
//! activation vectors (`spec/powerauth-activation.md` §8) against [`crate::crypto`]. Files are
//! recognised by name (see [`VectorKind`]); each holds
//! `{"description": ..., "data": [{"input": {...}, "output": {...}}, ...]}` with string values
//! (the activation files add an `intermediate` object, booleans, numbers and `null`;
//! `activation-flow.json` has one object per flow, with a part per step).
//! Every case is one pass or one failure: a malformed case (bad Base64, unknown type, missing
//! field) is a failure with a message, never a panic. The report has one line per failing case
//! (file, index, expected, got), one summary line per file, one line per skipped file, and as its
//! last line exactly `N passed, M failed`. This is the only vector checker: `tests/vectors.rs`
//! calls it too, so a failure always names its case.

#![warn(missing_docs)]

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use serde_json::Value;

use crate::crypto::signature::{self, ComponentLength, FactorKeys, SignatureType};
use crate::crypto::{
    self as c, CounterData, MasterSecret, PrivateKey, PublicKey, SymmetricKey, b64,
};

/// The vector files the runner knows, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorKind {
    /// `signatures-offline.json`: decimal codes, any type, L from `signatureComponentLength`.
    SignaturesOffline,
    /// `signatures-v3.json`: decimal codes with L = 8 unless the case says otherwise.
    SignaturesV3,
    /// `signatures-v31.json`: online Base64 codes (last 16 bytes of each component).
    SignaturesV31,
    /// `signatures-v2.json`: decimal codes, L = 8, with a numeric `counter`.
    SignaturesV2,
    /// `compute-derived-keys.json`: KDF indices 1, 2, 3, 1000, 2000.
    DerivedKeys,
    /// `compute-master-secret-key.json`: ECDH fold, both directions.
    MasterSecret,
    /// `verify-activation-data-signature-v3.json`: ECDSA over the activation code.
    ActivationSignatureV3,
    /// `public-key-fingerprint-v3.json`: the v3 activation fingerprint and minimal X coordinates.
    FingerprintV3,
    /// `activation-code.json`: code generation, validation, signature and QR payload.
    ActivationCode,
    /// `activation-ecies.json`: ECIES 3.0–3.3 both ways, with intermediates and decryptor secrets.
    ActivationEcies,
    /// `activation-flow.json`: whole 3.3 and 3.2 activations, init to first status blob.
    ActivationFlow,
    /// `activation-status-blob.json`: status blob layout, encryption and counter distance.
    ActivationStatusBlob,
    /// `activation-temporary-key.json`: the HS256 request and ES256 response JWTs.
    ActivationTemporaryKey,
}

impl VectorKind {
    /// All known kinds.
    pub const ALL: [Self; 13] = [
        Self::SignaturesOffline,
        Self::SignaturesV3,
        Self::SignaturesV31,
        Self::SignaturesV2,
        Self::DerivedKeys,
        Self::MasterSecret,
        Self::ActivationSignatureV3,
        Self::FingerprintV3,
        Self::ActivationCode,
        Self::ActivationEcies,
        Self::ActivationFlow,
        Self::ActivationStatusBlob,
        Self::ActivationTemporaryKey,
    ];

    /// The file name this kind is recognised by.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::SignaturesOffline => "signatures-offline.json",
            Self::SignaturesV3 => "signatures-v3.json",
            Self::SignaturesV31 => "signatures-v31.json",
            Self::SignaturesV2 => "signatures-v2.json",
            Self::DerivedKeys => "compute-derived-keys.json",
            Self::MasterSecret => "compute-master-secret-key.json",
            Self::ActivationSignatureV3 => "verify-activation-data-signature-v3.json",
            Self::FingerprintV3 => "public-key-fingerprint-v3.json",
            Self::ActivationCode => "activation-code.json",
            Self::ActivationEcies => "activation-ecies.json",
            Self::ActivationFlow => "activation-flow.json",
            Self::ActivationStatusBlob => "activation-status-blob.json",
            Self::ActivationTemporaryKey => "activation-temporary-key.json",
        }
    }

    /// The kind of a file name, if known.
    pub fn from_file_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.file_name() == name)
    }
}

/// Totals of a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed (a file that cannot be read or parsed counts as one failed case).
    pub failed: usize,
    /// Names of files in the directory that are not recognised, sorted.
    pub skipped_files: Vec<String>,
}

/// Totals of one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
}

/// Why one case failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseFailure {
    /// A computed value differs from the expected one.
    Mismatch {
        /// Which value (e.g. `signature`, `transportKey`).
        what: String,
        /// The value in the file.
        expected: String,
        /// The value computed.
        got: String,
    },
    /// The case cannot be checked (missing field, bad Base64, unknown type, ...).
    Malformed(String),
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mismatch {
                what,
                expected,
                got,
            } => write!(f, "{what}: expected {expected}, got {got}"),
            Self::Malformed(message) => write!(f, "malformed case: {message}"),
        }
    }
}

/// Runs every recognised vector file in `dir` (sorted by name) and writes the report to `out`.
pub fn run(dir: &Path, out: &mut dyn Write) -> io::Result<Summary> {
    let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)?
        .map(|entry| {
            let entry = entry?;
            Ok((
                entry.file_name().to_string_lossy().into_owned(),
                entry.file_type()?.is_file(),
            ))
        })
        .collect::<io::Result<_>>()?;
    names.sort();
    let mut summary = Summary::default();
    for (name, is_file) in names {
        match VectorKind::from_file_name(&name).filter(|_| is_file) {
            Some(kind) => {
                let file = run_file(&dir.join(&name), kind, out)?;
                summary.passed += file.passed;
                summary.failed += file.failed;
            }
            None => {
                writeln!(out, "{name}: skipped (not a recognised vector file)")?;
                summary.skipped_files.push(name);
            }
        }
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

/// Checks one file as `kind`, writing a line per failing case and a summary line to `out`.
pub fn run_file(path: &Path, kind: VectorKind, out: &mut dyn Write) -> io::Result<FileSummary> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let cases = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()))
    {
        Ok(Value::Object(mut root)) => match root.remove("data") {
            Some(Value::Array(cases)) => Ok(cases),
            _ => Err("no \"data\" array".to_owned()),
        },
        Ok(_) => Err("top level is not an object".to_owned()),
        Err(e) => Err(e),
    };
    let cases = match cases {
        Ok(cases) => cases,
        Err(message) => {
            writeln!(out, "{name}: cannot be checked: {message}")?;
            writeln!(out, "{name}: 0 passed, 1 failed")?;
            return Ok(FileSummary {
                passed: 0,
                failed: 1,
            });
        }
    };
    let mut summary = FileSummary::default();
    for (index, case) in cases.iter().enumerate() {
        match check_case(kind, case) {
            Ok(()) => summary.passed += 1,
            Err(failure) => {
                summary.failed += 1;
                writeln!(out, "{name} #{index}: {failure}")?;
            }
        }
    }
    writeln!(
        out,
        "{name}: {} passed, {} failed",
        summary.passed, summary.failed
    )?;
    Ok(summary)
}

/// Checks one case of a file of `kind`: an `{"input": ..., "output": ...}` object, or for
/// [`VectorKind::ActivationFlow`] one flow object.
pub fn check_case(kind: VectorKind, case: &Value) -> Result<(), CaseFailure> {
    let io = |check: fn(&Case<'_>) -> Result<(), CaseFailure>| check(&Case::new(case)?);
    match kind {
        VectorKind::SignaturesOffline | VectorKind::SignaturesV3 | VectorKind::SignaturesV2 => {
            io(|c| check_signature(c, CodeFormat::Decimal))
        }
        VectorKind::SignaturesV31 => io(|c| check_signature(c, CodeFormat::Base64)),
        VectorKind::DerivedKeys => io(check_derived_keys),
        VectorKind::MasterSecret => io(check_master_secret),
        VectorKind::ActivationSignatureV3 => io(check_activation_signature),
        VectorKind::FingerprintV3 => io(check_fingerprint),
        VectorKind::ActivationCode => activation::check_code(case),
        VectorKind::ActivationEcies => activation::check_ecies(case),
        VectorKind::ActivationFlow => activation::check_flow(case),
        VectorKind::ActivationStatusBlob => activation::check_status_blob(case),
        VectorKind::ActivationTemporaryKey => activation::check_temporary_key(case),
    }
}

struct Case<'a> {
    input: &'a serde_json::Map<String, Value>,
    output: &'a serde_json::Map<String, Value>,
}

impl<'a> Case<'a> {
    fn new(case: &'a Value) -> Result<Self, CaseFailure> {
        let part = |key: &str| {
            case.get(key)
                .and_then(Value::as_object)
                .ok_or_else(|| CaseFailure::Malformed(format!("no \"{key}\" object")))
        };
        Ok(Self {
            input: part("input")?,
            output: part("output")?,
        })
    }

    fn input(&self, key: &str) -> Result<&'a str, CaseFailure> {
        field(self.input, "input", key)
    }

    fn output(&self, key: &str) -> Result<&'a str, CaseFailure> {
        field(self.output, "output", key)
    }
}

fn field<'a>(
    map: &'a serde_json::Map<String, Value>,
    part: &str,
    key: &str,
) -> Result<&'a str, CaseFailure> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(CaseFailure::Malformed(format!(
            "{part}.{key} is not a string"
        ))),
        None => Err(CaseFailure::Malformed(format!("missing {part}.{key}"))),
    }
}

fn malformed(key: &str) -> impl Fn(c::CryptoError) -> CaseFailure + '_ {
    move |e| CaseFailure::Malformed(format!("{key}: {e}"))
}

fn expect_eq(what: &str, expected: &str, got: &str) -> Result<(), CaseFailure> {
    if expected == got {
        Ok(())
    } else {
        Err(CaseFailure::Mismatch {
            what: what.to_owned(),
            expected: expected.to_owned(),
            got: got.to_owned(),
        })
    }
}

fn symmetric_key(case: &Case<'_>, key: &str) -> Result<SymmetricKey, CaseFailure> {
    SymmetricKey::from_base64(case.input(key)?).map_err(malformed(key))
}

#[derive(Clone, Copy)]
enum CodeFormat {
    Decimal,
    Base64,
}

/// The counter input `C`: `counterData` (Base64 of 16 bytes), or else `counter`, which upstream
/// files use both for a v2 decimal counter (`"7"` → `0x00×8 ‖ BE64(7)`) and, in some v3 cases, for
/// Base64 counter data.
fn counter_input(case: &Case<'_>) -> Result<CounterData, CaseFailure> {
    if case.input.contains_key("counterData") || !case.input.contains_key("counter") {
        return CounterData::from_base64(case.input("counterData")?)
            .map_err(malformed("counterData"));
    }
    let text = case.input("counter")?;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let number = text.parse().map_err(|_| {
            CaseFailure::Malformed(format!("counter {text:?} does not fit 64 bits"))
        })?;
        Ok(CounterData::from_v2_counter(number))
    } else {
        CounterData::from_base64(text).map_err(malformed("counter"))
    }
}

fn check_signature(case: &Case<'_>, format: CodeFormat) -> Result<(), CaseFailure> {
    let signature_type =
        SignatureType::parse(case.input("signatureType")?).map_err(malformed("signatureType"))?;
    let length = match case.input.get("signatureComponentLength") {
        None => ComponentLength::DEFAULT,
        Some(_) => {
            let text = case.input("signatureComponentLength")?;
            let number: i64 = text.parse().map_err(|_| {
                CaseFailure::Malformed(format!("signatureComponentLength {text:?} is not a number"))
            })?;
            ComponentLength::new(number).map_err(malformed("signatureComponentLength"))?
        }
    };
    // Only the keys the type uses must be present; an unused absent key is never read.
    let unused = || SymmetricKey::from_bytes([0; 16]);
    let factor_key = |key: &str, needed: bool| {
        if needed || case.input.contains_key(key) {
            symmetric_key(case, key)
        } else {
            Ok(unused())
        }
    };
    let factors = signature_type.factors();
    let keys = FactorKeys::new(
        factor_key(
            "signaturePossessionKey",
            factors.contains(&signature::Factor::Possession),
        )?,
        factor_key(
            "signatureKnowledgeKey",
            factors.contains(&signature::Factor::Knowledge),
        )?,
        factor_key(
            "signatureBiometryKey",
            factors.contains(&signature::Factor::Biometry),
        )?,
    );
    let counter = counter_input(case)?;
    let data = b64::decode(case.input("data")?).map_err(malformed("data"))?;
    let expected = case.output("signature")?;
    let got = match format {
        CodeFormat::Decimal => {
            signature::decimal_signature(&keys, signature_type, &counter, &data, length)
        }
        CodeFormat::Base64 => signature::base64_signature(&keys, signature_type, &counter, &data),
    };
    expect_eq("signature", expected, &got)
}

fn check_derived_keys(case: &Case<'_>) -> Result<(), CaseFailure> {
    let master = MasterSecret::from_key(symmetric_key(case, "masterSecretKey")?);
    let keys = master.derive();
    for (name, key) in [
        ("signaturePossessionKey", &keys.possession),
        ("signatureKnowledgeKey", &keys.knowledge),
        ("signatureBiometryKey", &keys.biometry),
        ("transportKey", &keys.transport),
        ("vaultEncryptionKey", &keys.vault),
    ] {
        expect_eq(name, case.output(name)?, &key.to_base64())?;
    }
    Ok(())
}

fn check_master_secret(case: &Case<'_>) -> Result<(), CaseFailure> {
    let private = |key: &str| PrivateKey::from_base64(case.input(key)?).map_err(malformed(key));
    let public = |key: &str| PublicKey::from_base64(case.input(key)?).map_err(malformed(key));
    let expected = case.output("masterSecretKey")?;
    let server_side =
        MasterSecret::agree(&private("serverPrivateKey")?, &public("devicePublicKey")?);
    expect_eq(
        "masterSecretKey (server private, device public)",
        expected,
        &server_side.as_key().to_base64(),
    )?;
    let device_side =
        MasterSecret::agree(&private("devicePrivateKey")?, &public("serverPublicKey")?);
    expect_eq(
        "masterSecretKey (device private, server public)",
        expected,
        &device_side.as_key().to_base64(),
    )
}

fn check_activation_signature(case: &Case<'_>) -> Result<(), CaseFailure> {
    let code = case.input("activationCode")?;
    let private = PrivateKey::from_base64(case.input("masterPrivateKey")?)
        .map_err(malformed("masterPrivateKey"))?;
    let public_text = case.input("masterPublicKey")?;
    let public = PublicKey::from_base64(public_text).map_err(malformed("masterPublicKey"))?;
    expect_eq(
        "masterPublicKey (derived from masterPrivateKey)",
        public_text,
        &private.public_key().to_base64(),
    )?;
    let signature_text = case.output("activationSignature")?;
    let signature =
        c::DerSignature::from_base64(signature_text).map_err(malformed("activationSignature"))?;
    match c::ecdsa::verify(&public, code.as_bytes(), &signature) {
        Ok(()) => Ok(()),
        Err(e) => Err(CaseFailure::Mismatch {
            what: "activationSignature".to_owned(),
            expected: "a valid ECDSA signature over activationCode".to_owned(),
            got: e.to_string(),
        }),
    }
}

/// `activationId` sits in `output` in upstream's file although it is an input.
fn check_fingerprint(case: &Case<'_>) -> Result<(), CaseFailure> {
    let public = |key: &str| PublicKey::from_base64(case.input(key)?).map_err(malformed(key));
    let device = public("devicePublicKey")?;
    let server = public("serverPublicKey")?;
    for (name, key) in [
        ("devicePublicKeyCoordX", &device),
        ("serverPublicKeyCoordX", &server),
    ] {
        if case.output.contains_key(name) {
            expect_eq(
                name,
                case.output(name)?,
                &b64::encode(c::fingerprint::minimal_x(key)),
            )?;
        }
    }
    let activation_id = case.output("activationId")?;
    let got = c::fingerprint::fingerprint_v3(&device, activation_id, &server);
    expect_eq("fingerprint", case.output("fingerprint")?, &got)
}

mod activation;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn upstream_dir() -> Option<PathBuf> {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors"));
        if dir.is_dir() {
            return Some(dir);
        }
        // The project's rule for missing tools: fail, unless skipping is asked for explicitly.
        assert!(
            std::env::var("OFFLINE_SIGNER_ALLOW_MISSING").as_deref() == Ok("1"),
            "the upstream vectors are missing at {}; set OFFLINE_SIGNER_ALLOW_MISSING=1 to skip",
            dir.display()
        );
        eprintln!(
            "!!!!! SKIPPED: upstream vectors not found at {}; this test checks NOTHING !!!!!",
            dir.display()
        );
        None
    }

    fn case_count(dir: &Path, name: &str) -> usize {
        let v: Value = serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        v["data"].as_array().unwrap().len()
    }

    fn run_to_string(dir: &Path) -> (Summary, String) {
        let mut out = Vec::new();
        let summary = run(dir, &mut out).unwrap();
        (summary, String::from_utf8(out).unwrap())
    }

    #[test]
    fn upstream_vectors_all_pass() {
        let Some(dir) = upstream_dir() else { return };
        let (summary, report) = run_to_string(&dir);
        let mut total = 0;
        for kind in VectorKind::ALL {
            if dir.join(kind.file_name()).is_file() {
                total += case_count(&dir, kind.file_name());
            }
        }
        assert!(
            total >= 260,
            "expected at least the four files of §10, got {total} cases"
        );
        assert_eq!(summary.failed, 0, "{report}");
        assert_eq!(summary.passed, total, "{report}");
        assert_eq!(
            report.lines().last().unwrap(),
            format!("{total} passed, 0 failed")
        );
    }

    #[test]
    fn one_altered_expected_value_is_reported() {
        let Some(dir) = upstream_dir() else { return };
        let tmp = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
        let path = tmp.path().join("signatures-offline.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let original = v["data"][37]["output"]["signature"]
            .as_str()
            .unwrap()
            .to_owned();
        let altered: String = original
            .chars()
            .map(|ch| {
                if ch.is_ascii_digit() {
                    char::from(b'0' + ((ch as u8 - b'0' + 1) % 10))
                } else {
                    ch
                }
            })
            .collect();
        v["data"][37]["output"]["signature"] = json!(altered);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "not a vector file").unwrap();

        let (summary, report) = run_to_string(tmp.path());
        assert_eq!(summary.failed, 1, "{report}");
        let failing: Vec<&str> = report.lines().filter(|l| l.contains(" #")).collect();
        assert_eq!(
            failing,
            [format!(
                "signatures-offline.json #37: signature: expected {altered}, got {original}"
            )],
            "{report}"
        );
        assert!(
            report.contains("signatures-offline.json: 199 passed, 1 failed"),
            "{report}"
        );
        assert_eq!(summary.skipped_files, ["notes.txt"]);
        assert_eq!(
            report.lines().last().unwrap(),
            format!("{} passed, 1 failed", summary.passed)
        );
    }

    // ---- synthetic files written at run time, expected values by the §7.3 formula written out ----

    type Mac = hmac::Hmac<sha2::Sha256>;

    fn hm(key: &[u8], msg: &[u8]) -> [u8; 32] {
        use hmac::Mac as _;
        let mut m = <Mac as hmac::Mac>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// §7.3 and §7.4 written out independently of `crypto::signature`.
    fn independent_code(keys: &[[u8; 16]], ctr: &[u8], data: &[u8], digits: u32) -> String {
        let mut parts = Vec::new();
        for i in 0..keys.len() {
            let mut kd = hm(&keys[i], ctr);
            for j in 0..i {
                kd = hm(&hm(&keys[j + 1], ctr), &kd);
            }
            let comp = hm(&kd, data);
            let x = u32::from_be_bytes([comp[28], comp[29], comp[30], comp[31]]) & 0x7FFF_FFFF;
            parts.push(format!(
                "{:0w$}",
                x % 10u32.pow(digits),
                w = digits as usize
            ));
        }
        parts.join("-")
    }

    const KP: &str = "UUOQH89Hoa/Nw7ew5rGTPw==";
    const KK: &str = "hjHWTy3HA3nQdDcdnJbRMw==";
    const KB: &str = "S9fNvGUhUafp18upFWzCoA==";
    const CTR0: &str = "AAECAwQFBgcICQoLDA0ODw==";
    const REQUEST_DATA: &str = "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AD8bOO0Df73kNaIGb3Vmpg==&NWZmMWIxZWQtYTNjYy00NWEzLThhYjAtZWQ2MDk1MDMxMmI2JkExKkExMDBDWksqSUNaMjczMDMwMDAwMDAwMTE2NTI1NDAxMSpEMjAxODA0MjU=";

    fn key_bytes(b: &str) -> [u8; 16] {
        b64::decode_array(b).unwrap()
    }

    fn ordered(t: &str) -> Vec<[u8; 16]> {
        t.split('_')
            .map(|f| match f {
                "possession" => key_bytes(KP),
                "knowledge" => key_bytes(KK),
                "biometry" => key_bytes(KB),
                other => panic!("{other}"),
            })
            .collect()
    }

    fn signature_case(
        t: &str,
        length: Option<u32>,
        ctr: &str,
        data: &[u8],
        expected: &str,
    ) -> Value {
        let mut input = json!({
            "signaturePossessionKey": KP, "signatureKnowledgeKey": KK, "signatureBiometryKey": KB,
            "signatureType": t, "counterData": ctr, "data": b64::encode(data),
        });
        if let Some(l) = length {
            input["signatureComponentLength"] = json!(l.to_string());
        }
        json!({"input": input, "output": {"signature": expected}})
    }

    fn write_vectors(dir: &Path, name: &str, cases: Vec<Value>) {
        let file = json!({"description": "synthetic, written by the test", "data": cases});
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    }

    #[test]
    fn synthetic_v3_file_with_1fa_and_3fa_types() {
        let data = format!("{REQUEST_DATA}&offline").into_bytes();
        let ctr = b64::decode(CTR0).unwrap();
        // The spec table value for possession_knowledge at ctr[0], and the written-out formula agrees.
        assert_eq!(
            independent_code(&ordered("possession_knowledge"), &ctr, &data, 8),
            "29703108-68382858"
        );
        assert_eq!(
            independent_code(&ordered("possession_biometry"), &ctr, &data, 8),
            "29703108-17227518"
        );
        let mut cases = vec![signature_case(
            "possession_knowledge",
            None,
            CTR0,
            &data,
            "29703108-68382858",
        )];
        for t in [
            "knowledge",
            "biometry",
            "possession_knowledge_biometry",
            "possession",
        ] {
            let expected = independent_code(&ordered(t), &ctr, &data, 8);
            cases.push(signature_case(t, None, CTR0, &data, &expected));
        }
        let tmp = tempfile::tempdir().unwrap();
        write_vectors(tmp.path(), "signatures-v3.json", cases);
        let (summary, report) = run_to_string(tmp.path());
        assert_eq!((summary.passed, summary.failed), (5, 0), "{report}");
    }

    #[test]
    fn synthetic_offline_file_with_every_type_and_length() {
        let tmp = tempfile::tempdir().unwrap();
        let ctr = CounterData::from_base64(CTR0).unwrap();
        let mut cases = Vec::new();
        for (i, t) in SignatureType::ALL.iter().enumerate() {
            for l in 4..=8u32 {
                let c = ctr.advance(i as u32 + l);
                let data = vec![i as u8; (l as usize) * 17];
                let expected = independent_code(&ordered(t.header_name()), c.as_bytes(), &data, l);
                cases.push(signature_case(
                    t.header_name(),
                    Some(l),
                    &c.to_base64(),
                    &data,
                    &expected,
                ));
            }
        }
        // Empty data is allowed.
        cases.push(signature_case(
            "possession",
            Some(8),
            CTR0,
            b"",
            &independent_code(&ordered("possession"), ctr.as_bytes(), b"", 8),
        ));
        write_vectors(tmp.path(), "signatures-offline.json", cases);
        let (summary, report) = run_to_string(tmp.path());
        assert_eq!((summary.passed, summary.failed), (31, 0), "{report}");
    }

    /// A few cases copied from upstream's `signatures-v2.json`, `signatures-v3.json`,
    /// `signatures-v31.json` and `public-key-fingerprint-v3.json` (wultra/powerauth-crypto,
    /// `powerauth-docs/test-vectors`), which are
    /// not in `../shared/vectors`. They cover 3FA, the numeric v2 `counter`, the Base64 format,
    /// and upstream's v3 cases that name their Base64 counter data `counter`.
    #[test]
    fn upstream_excerpts_of_v2_v3_v31_files() {
        fn case(
            keys: [&str; 3],
            t: &str,
            counter: (&str, &str),
            data: &str,
            expected: &str,
        ) -> Value {
            let mut input = json!({
                "signaturePossessionKey": keys[0], "signatureKnowledgeKey": keys[1], "signatureBiometryKey": keys[2],
                "signatureType": t, "data": data,
            });
            input[counter.0] = json!(counter.1);
            json!({"input": input, "output": {"signature": expected}})
        }
        let v2_keys = [
            "iWasXMeSxqhx2+PNjF+ljg==",
            "xEOxGbtWPAZ5S2ua2oFFSQ==",
            "n7VnDt9AG4jqDfQp/+hHeg==",
        ];
        let v3_keys = [
            "AsmonII6Gb3vyNgjD36jUQ==",
            "PMy2u+1UVXUN4Wq15sI8hw==",
            "xf4XBLyIyaXLO4RZD3LQZg==",
        ];
        let v31_keys = [
            "NtqvzzwtSRbWkO40XbaJcQ==",
            "F8SfFX2UWeibws+9zojlwA==",
            "X6hHHDRPcumP2a2NKCX5bQ==",
        ];
        let tmp = tempfile::tempdir().unwrap();
        write_vectors(
            tmp.path(),
            "signatures-v2.json",
            vec![
                case(
                    v2_keys,
                    "possession",
                    ("counter", "1"),
                    "BNfOm/mFIDeb4bMV85LD4TR46NgvhOUVxvOTVK9qT6j/3QwySDQdVZZcHLWE9d6KO1tisCycteE1pFRyGAdr3HI9T67XkcpUQqBexPDm4//NLPEA1hJc",
                    "66149845",
                ),
                case(
                    v2_keys,
                    "possession_knowledge",
                    ("counter", "5"),
                    "YmdvHBCGcg==",
                    "05098148-00322369",
                ),
                case(
                    v2_keys,
                    "possession_knowledge_biometry",
                    ("counter", "0"),
                    "ZZNmfAjGgbPTRo8=",
                    "78036932-37837466-10658519",
                ),
            ],
        );
        write_vectors(
            tmp.path(),
            "signatures-v3.json",
            vec![
                case(
                    v3_keys,
                    "possession",
                    ("counterData", "ySsZoq+YHdZBwsV/CFsdxw=="),
                    "T494euhSV0zLzJwX0bR12s+XtwGdMPTJ",
                    "90702949",
                ),
                case(
                    v3_keys,
                    "possession_knowledge",
                    ("counter", "NEhM6/Doc10A8JJHeFFmwQ=="),
                    "QqQbYGaoVYcSW/rnBMKeSJdx4xwstj6LnHJoEnGsWp/dICUGRo7o/XNS1Xpd",
                    "74300064-78535396",
                ),
                case(
                    v3_keys,
                    "possession_knowledge_biometry",
                    ("counter", "NzE23Yyd70quwsHWwQ3Isg=="),
                    "g4UNS2tsXtEkmUXULVwVbyWgWok5LLaFbrw0AUb5Ikw04yBrauQHwXNX6wZn6WoJEL4ycdDXkHHmh+OUF1eZzF2fWdjy7qj2gNo9",
                    "96308725-53396610-80105355",
                ),
            ],
        );
        write_vectors(
            tmp.path(),
            "signatures-v31.json",
            vec![
                case(
                    v31_keys,
                    "possession",
                    ("counterData", "oJPoaEwdNltsQo0aEbWKWw=="),
                    "7sNuLSwM9XcZlWpc0EGrs7aCntDkiWY=",
                    "NbxajPzaV2b1C5q0WsHsVw==",
                ),
                case(
                    v31_keys,
                    "possession_knowledge",
                    ("counterData", "64H8UkXgWHtwWOJ4a1FIQQ=="),
                    "",
                    "Q5Qzf5y1Kfw0UklQY60dHJLnY4TELSR+E8kD6iuEjwQ=",
                ),
                case(
                    v31_keys,
                    "possession_knowledge_biometry",
                    ("counterData", "puQ9pOV22qasClkapLPtAg=="),
                    "RPGzeTRdVJ4Hq2oirwEhnAYGssqG2ek0JGSExWAOD1+d",
                    "D9ogIYFrSNdNDASGFF8sgZGG4p6utvo60uWT0WTnbGh7M8Ho1jqEGqNJ+xfF3Efr",
                ),
            ],
        );
        write_vectors(
            tmp.path(),
            "public-key-fingerprint-v3.json",
            vec![json!({
                "input": {
                    "devicePublicKey": "BHS5kLb7nQkN4D8hMNbYs7uAj1yVHShh5l/YKIZowo8cN4CK6Q/9X5jb0mQruk/RB4AenmNB9jSKv00T9J8EneA=",
                    "serverPublicKey": "BLVfJ2NrOBByBZhfS4UtEQU3fLhnzYbWdp3ZVEQPfKtTGXzXIpKqxCVwpRl3X++4OJQJoemybZ/cmkLU5fY2SZE=",
                },
                "output": {
                    "devicePublicKeyCoordX": "dLmQtvudCQ3gPyEw1tizu4CPXJUdKGHmX9gohmjCjxw=",
                    "serverPublicKeyCoordX": "tV8nY2s4EHIFmF9LhS0RBTd8uGfNhtZ2ndlURA98q1M=",
                    "activationId": "6ae8cd16-67a7-4840-8d37-33d9aab6ea51",
                    "fingerprint": "80201993",
                },
            })],
        );
        let (summary, report) = run_to_string(tmp.path());
        assert_eq!((summary.passed, summary.failed), (10, 0), "{report}");
    }

    #[test]
    fn malformed_cases_fail_with_a_message() {
        let tmp = tempfile::tempdir().unwrap();
        let good = signature_case("possession", Some(8), CTR0, b"x", "00000000");
        let mut bad_type = good.clone();
        bad_type["input"]["signatureType"] = json!("possession_everything");
        let mut bad_b64 = good.clone();
        bad_b64["input"]["counterData"] = json!("AAECAwQFBgcICQoLDA0ODw");
        let mut bad_len = good.clone();
        bad_len["input"]["signatureComponentLength"] = json!("9");
        let mut not_number = good.clone();
        not_number["input"]["signatureComponentLength"] = json!("eight");
        let mut missing = good.clone();
        missing["input"].as_object_mut().unwrap().remove("data");
        write_vectors(
            tmp.path(),
            "signatures-offline.json",
            vec![bad_type, bad_b64, bad_len, not_number, missing, json!(42)],
        );
        std::fs::write(tmp.path().join("compute-derived-keys.json"), "{ not json").unwrap();
        let (summary, report) = run_to_string(tmp.path());
        assert_eq!((summary.passed, summary.failed), (0, 7), "{report}");
        for needle in [
            "#0: malformed case: signatureType",
            "#1: malformed case: counterData: invalid Base64",
            "#2: malformed case: signatureComponentLength",
            "#3: malformed case: signatureComponentLength \"eight\" is not a number",
            "#4: malformed case: missing input.data",
            "#5: malformed case: no \"input\" object",
            "compute-derived-keys.json: cannot be checked",
        ] {
            assert!(report.contains(needle), "{needle} not in\n{report}");
        }
        assert_eq!(report.lines().last().unwrap(), "0 passed, 7 failed");
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(run(&tmp.path().join("nope"), &mut Vec::new()).is_err());
    }
}
