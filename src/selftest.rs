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

/// Checkers of the activation vector files (`spec/powerauth-activation.md` §8.1). Each one
/// recomputes every value of its case that [`crate::crypto`] can produce: outputs byte-exact,
/// intermediates too, both directions where the protocol has two parties. The server side starts
/// from the ECDH x-coordinate, as it does with an HSM; the ECDH here stands in for the HSM.
mod activation {
    use serde_json::{Map, Value};

    use super::{CaseFailure, expect_eq};
    use crate::crypto::activation_code::{self, ActivationCode};
    use crate::crypto::application::{self, ApplicationSecret};
    use crate::crypto::ecies::{
        self, ActivationBinding, ClientEncryptor, EciesContext, EciesRequest, EciesResponse,
        Encryptor, EncryptorScope, EnvelopeKey, EphemeralPublicKey, PointFormat, ProtocolVersion,
        ServerEncryptor,
    };
    use crate::crypto::status_blob::{self, ActivationStatus, CounterSync, StatusBlob};
    use crate::crypto::temporary_key::{self, RequestJwt, TemporaryKeyClaims};
    use crate::crypto::{
        CounterData, CryptoError, DerSignature, MasterSecret, PrivateKey, SymmetricKey, b64, ecdsa,
        fingerprint, kdf,
    };

    type Checked<T = ()> = Result<T, CaseFailure>;

    /// One JSON object of a case, with its path for messages (`output.encryptedRequest`).
    #[derive(Clone)]
    struct Obj<'a> {
        path: String,
        map: &'a Map<String, Value>,
    }

    impl<'a> Obj<'a> {
        fn root(value: &'a Value, path: &str) -> Checked<Self> {
            value
                .as_object()
                .map(|map| Self {
                    path: path.to_owned(),
                    map,
                })
                .ok_or_else(|| malformed(format!("{path} is not an object")))
        }

        fn name(&self, key: &str) -> String {
            format!("{}.{key}", self.path)
        }

        fn has(&self, key: &str) -> bool {
            self.map.get(key).is_some_and(|v| !v.is_null())
        }

        fn obj(&self, key: &str) -> Checked<Obj<'a>> {
            match self.map.get(key) {
                Some(value) => Obj::root(value, &self.name(key)),
                None => Err(malformed(format!("missing {}", self.name(key)))),
            }
        }

        fn str(&self, key: &str) -> Checked<&'a str> {
            match self.map.get(key) {
                Some(Value::String(s)) => Ok(s),
                Some(_) => Err(malformed(format!("{} is not a string", self.name(key)))),
                None => Err(malformed(format!("missing {}", self.name(key)))),
            }
        }

        /// A string that may be absent or `null`.
        fn opt_str(&self, key: &str) -> Checked<Option<&'a str>> {
            if self.has(key) {
                self.str(key).map(Some)
            } else {
                Ok(None)
            }
        }

        fn bool(&self, key: &str) -> Checked<bool> {
            self.map
                .get(key)
                .and_then(Value::as_bool)
                .ok_or_else(|| malformed(format!("{} is not a boolean", self.name(key))))
        }

        /// A JSON integer (wire `timestamp`).
        fn int(&self, key: &str) -> Checked<i64> {
            self.map
                .get(key)
                .and_then(Value::as_i64)
                .ok_or_else(|| malformed(format!("{} is not an integer", self.name(key))))
        }

        fn opt_int(&self, key: &str) -> Checked<Option<i64>> {
            if self.has(key) {
                self.int(key).map(Some)
            } else {
                Ok(None)
            }
        }

        /// An integer written as a decimal string (`"1750000000000"`).
        fn num<T: std::str::FromStr>(&self, key: &str) -> Checked<T> {
            let text = self.str(key)?;
            text.parse()
                .map_err(|_| malformed(format!("{} = {text:?} is not a number", self.name(key))))
        }

        fn opt_num(&self, key: &str) -> Checked<Option<i64>> {
            if self.has(key) {
                self.num(key).map(Some)
            } else {
                Ok(None)
            }
        }

        fn b64(&self, key: &str) -> Checked<Vec<u8>> {
            b64::decode(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
        }

        fn b64_array<const N: usize>(&self, key: &str) -> Checked<[u8; N]> {
            b64::decode_array(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
        }

        fn hex(&self, key: &str) -> Checked<Vec<u8>> {
            hex::decode(self.str(key)?)
                .map_err(|_| malformed(format!("{} is not hex", self.name(key))))
        }

        fn symmetric_key(&self, key: &str) -> Checked<SymmetricKey> {
            SymmetricKey::from_base64(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
        }

        fn secret(&self, key: &str) -> Checked<ApplicationSecret> {
            ApplicationSecret::from_text(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
        }

        /// `{prefix}PrivateKey` (Java form) and `{prefix}PrivateKeyRaw32` must be one scalar, and
        /// `{prefix}PublicKey` (when present) its public key.
        fn key_pair(&self, prefix: &str) -> Checked<PrivateKey> {
            let java = format!("{prefix}PrivateKey");
            let private = PrivateKey::from_base64(self.str(&java)?)
                .map_err(|e| crypto(&self.name(&java), e))?;
            let raw = format!("{prefix}PrivateKeyRaw32");
            if self.has(&raw) {
                let scalar = self.b64_array::<32>(&raw)?;
                let from_raw = PrivateKey::from_scalar_bytes(&scalar)
                    .map_err(|e| crypto(&self.name(&raw), e))?;
                if from_raw.to_scalar_bytes() != private.to_scalar_bytes() {
                    return Err(mismatch(
                        &self.name(&raw),
                        "the scalar of the Java-form key",
                        "a different scalar",
                    ));
                }
            }
            let public = format!("{prefix}PublicKey");
            if self.has(&public) {
                expect_eq(
                    &format!("{} (derived from the private key)", self.name(&public)),
                    self.str(&public)?,
                    &private.public_key().to_base64(),
                )?;
            }
            Ok(private)
        }
    }

    fn malformed(message: String) -> CaseFailure {
        CaseFailure::Malformed(message)
    }

    fn crypto(what: &str, error: CryptoError) -> CaseFailure {
        CaseFailure::Malformed(format!("{what}: {error}"))
    }

    fn mismatch(what: &str, expected: &str, got: &str) -> CaseFailure {
        CaseFailure::Mismatch {
            what: what.to_owned(),
            expected: expected.to_owned(),
            got: got.to_owned(),
        }
    }

    /// A step that must succeed: its error is a mismatch against "success".
    fn must<T>(what: &str, result: Result<T, CryptoError>) -> Checked<T> {
        result.map_err(|e| mismatch(what, "success", &e.to_string()))
    }

    fn b64_eq(what: &str, expected: &str, got: &[u8]) -> Checked {
        expect_eq(what, expected, &b64::encode(got))
    }

    fn hex_eq(what: &str, expected: &[u8], got: &[u8]) -> Checked {
        expect_eq(what, &hex::encode(expected), &hex::encode(got))
    }

    fn bool_eq(what: &str, expected: bool, got: bool) -> Checked {
        expect_eq(what, &expected.to_string(), &got.to_string())
    }

    fn opt_eq<T: std::fmt::Debug + PartialEq>(
        what: &str,
        expected: Option<T>,
        got: Option<T>,
    ) -> Checked {
        if expected == got {
            Ok(())
        } else {
            Err(mismatch(
                what,
                &format!("{expected:?}"),
                &format!("{got:?}"),
            ))
        }
    }

    // ---- activation-code.json ----

    pub(super) fn check_code(case: &Value) -> Checked {
        let case = Obj::root(case, "case")?;
        let input = case.obj("input")?;
        let output = case.obj("output")?;
        // Generated cases carry the code as an output, the fixed ones as an input.
        let text = match input.opt_str("activationCode")? {
            Some(text) => text,
            None => output.str("activationCode")?,
        };
        let valid = output.bool("valid")?;
        let parsed = ActivationCode::parse(text);
        bool_eq(
            &format!(
                "output.valid ({})",
                parsed
                    .as_ref()
                    .err()
                    .map_or("accepted".to_owned(), ToString::to_string)
            ),
            valid,
            parsed.is_ok(),
        )?;
        if !input.has("randomBytes") {
            return Ok(());
        }
        // A generated code: the whole of §4.1 and §4.3.
        let random: [u8; activation_code::RANDOM_LEN] = input
            .hex("randomBytes")?
            .try_into()
            .map_err(|_| malformed("input.randomBytes is not 10 bytes".to_owned()))?;
        let code = ActivationCode::from_random_bytes(&random);
        expect_eq(
            "activationCode (from randomBytes)",
            output.str("activationCode")?,
            code.as_str(),
        )?;
        expect_eq(
            "crc16",
            output.str("crc16")?,
            &format!("{:04x}", activation_code::crc16_arc(&random)),
        )?;
        hex_eq("codeBytes", &output.hex("codeBytes")?, &code.code_bytes())?;
        let master = input.key_pair("master")?;
        let signature = DerSignature::from_base64(output.str("activationSignature")?)
            .map_err(|e| crypto("output.activationSignature", e))?;
        must(
            "activationSignature (verify with masterPublicKey)",
            code.verify_signature(&master.public_key(), &signature),
        )?;
        must(
            "activationSignature (verify over signature_digest)",
            ecdsa::verify_digest(&master.public_key(), &code.signature_digest(), &signature),
        )?;
        let payload = output.str("qrCodePayload")?;
        expect_eq("qrCodePayload", payload, &code.qr_payload(Some(&signature)))?;
        let (back, back_signature) = must(
            "qrCodePayload (parse)",
            ActivationCode::parse_qr_payload(payload),
        )?;
        expect_eq("qrCodePayload (parsed code)", code.as_str(), back.as_str())?;
        opt_eq(
            "qrCodePayload (parsed signature)",
            Some(&signature),
            back_signature.as_ref(),
        )
    }

    // ---- activation-ecies.json ----

    fn scope_name(scope: EncryptorScope) -> &'static str {
        match scope {
            EncryptorScope::Application => "APPLICATION_SCOPE",
            EncryptorScope::Activation => "ACTIVATION_SCOPE",
        }
    }

    pub(super) fn check_ecies(case: &Value) -> Checked {
        let case = Obj::root(case, "case")?;
        let input = case.obj("input")?;
        let mid = case.obj("intermediate")?;
        let output = case.obj("output")?;

        let version = ProtocolVersion::parse(input.str("protocolVersion")?)
            .map_err(|e| crypto("input.protocolVersion", e))?;
        let sh1 = input.str("sharedInfo1")?;
        let encryptor = Encryptor::from_shared_info1(sh1)
            .ok_or_else(|| malformed(format!("unknown sharedInfo1 {sh1:?}")))?;
        expect_eq(
            "encryptorId",
            input.str("encryptorId")?,
            encryptor.upstream_id(),
        )?;
        expect_eq("scope", input.str("scope")?, scope_name(encryptor.scope()))?;

        let server_private = input.key_pair("server")?;
        let ephemeral_private = input.key_pair("ephemeral")?;
        let format = if input.bool("ephemeralPublicKeyCompressed")? {
            PointFormat::Compressed
        } else {
            PointFormat::Uncompressed
        };
        let ephemeral = EphemeralPublicKey::encode(&ephemeral_private.public_key(), format);
        expect_eq(
            "ephemeralPublicKeyAsSent",
            input.str("ephemeralPublicKeyAsSent")?,
            &ephemeral.to_base64(),
        )?;

        let secret = input.secret("applicationSecret")?;
        let transport_key = match input.opt_str("transportKey")? {
            Some(_) => Some(input.symmetric_key("transportKey")?),
            None => None,
        };
        let binding = match (input.opt_str("activationId")?, &transport_key) {
            (Some(activation_id), Some(transport_key)) => Some(ActivationBinding {
                activation_id,
                transport_key,
            }),
            (None, None) => None,
            _ => {
                return Err(malformed(
                    "activationId and transportKey come together".to_owned(),
                ));
            }
        };
        let temporary_key_id = input.opt_str("temporaryKeyId")?;
        let context = EciesContext::new(
            version,
            encryptor,
            input.str("applicationKey")?,
            &secret,
            binding,
            temporary_key_id,
        )
        .map_err(|e| crypto("ECIES context", e))?;

        // Intermediates.
        let info1 = ecies::kdf_info1(version, encryptor, &ephemeral);
        hex_eq("kdfInfo", &mid.hex("kdfInfo")?, &info1)?;
        hex_eq(
            "sharedInfo1Bytes",
            &mid.hex("sharedInfo1Bytes")?,
            &info1[..info1.len() - ephemeral.as_bytes().len()],
        )?;
        let z = kdf::ecdh_x(&server_private, ephemeral.public_key());
        b64_eq(
            "sharedSecret (server side)",
            mid.str("sharedSecret")?,
            z.as_slice(),
        )?;
        let z_client = kdf::ecdh_x(&ephemeral_private, &server_private.public_key());
        b64_eq(
            "sharedSecret (client side)",
            mid.str("sharedSecret")?,
            z_client.as_slice(),
        )?;
        let envelope = EnvelopeKey::derive(&z, version, encryptor, &ephemeral);
        b64_eq("envelopeKey", mid.str("envelopeKey")?, envelope.expose())?;
        b64_eq("encKey", mid.str("encKey")?, envelope.enc_key().expose())?;
        b64_eq("macKey", mid.str("macKey")?, envelope.mac_key().expose())?;
        b64_eq("ivKey", mid.str("ivKey")?, envelope.iv_key().expose())?;
        b64_eq(
            "sharedInfo2Base",
            mid.str("sharedInfo2Base")?,
            context.shared_info2_base(),
        )?;
        let ad_expected = match mid.opt_str("associatedData")? {
            Some(_) => Some(mid.hex("associatedData")?),
            None => None,
        };
        opt_eq(
            "associatedData",
            ad_expected.as_deref().map(hex::encode),
            context.associated_data().map(hex::encode),
        )?;

        let request_nonce: Option<[u8; 16]> = match input.opt_str("requestNonce")? {
            Some(_) => Some(input.b64_array("requestNonce")?),
            None => None,
        };
        let request_ts = input.opt_num("requestTimestamp")?;
        let response_nonce: Option<[u8; 16]> = match input.opt_str("responseNonce")? {
            Some(_) => Some(input.b64_array("responseNonce")?),
            None => None,
        };
        let response_ts = input.opt_num("responseTimestamp")?;
        let zero = [0u8; 16];
        let iv_request_nonce = request_nonce.unwrap_or(zero);
        b64_eq(
            "requestIv",
            mid.str("requestIv")?,
            &envelope.iv(version, &iv_request_nonce),
        )?;
        hex_eq(
            "requestSharedInfo2",
            &mid.hex("requestSharedInfo2")?,
            &context.request_shared_info2(&ephemeral, &iv_request_nonce, request_ts.unwrap_or(0)),
        )?;
        // 3.2+ responses have their own nonce; 3.1 reuses the request's; 3.0 has none.
        let iv_response_nonce = response_nonce.unwrap_or(iv_request_nonce);
        b64_eq(
            "responseIv",
            mid.str("responseIv")?,
            &envelope.iv(version, &iv_response_nonce),
        )?;
        hex_eq(
            "responseSharedInfo2",
            &mid.hex("responseSharedInfo2")?,
            &context.response_shared_info2(&iv_response_nonce, response_ts.unwrap_or(0)),
        )?;

        // The request: the server decrypts the wire form, the client re-creates it byte-exact.
        let wire = output.obj("encryptedRequest")?;
        opt_eq(
            "encryptedRequest.temporaryKeyId",
            temporary_key_id,
            wire.opt_str("temporaryKeyId")?,
        )?;
        let request = wire_request(&wire)?;
        let request_plain = input.b64("requestPlaintext")?;
        let (server, plain) = must(
            "encryptedRequest (server decrypts)",
            ServerEncryptor::decrypt_request(&context, &z, &request),
        )?;
        b64_eq(
            "requestPlaintext (decrypted)",
            input.str("requestPlaintext")?,
            &plain,
        )?;
        let (client, again) = ClientEncryptor::encrypt_request(
            &context,
            &server_private.public_key(),
            &ephemeral_private,
            format,
            &request_plain,
            iv_request_nonce,
            request_ts.unwrap_or(0),
        );
        compare_request(&wire, &again)?;

        // The response: the server re-encrypts byte-exact, the client decrypts the wire form.
        let wire = output.obj("encryptedResponse")?;
        let response_plain = input.b64("responsePlaintext")?;
        let response = must(
            "encryptedResponse (server encrypts)",
            server.encrypt_response(
                &response_plain,
                response_nonce.unwrap_or(zero),
                response_ts.unwrap_or(0),
            ),
        )?;
        compare_response(&wire, &response)?;
        let received = wire_response(&wire)?;
        let plain = must(
            "encryptedResponse (client decrypts)",
            client.decrypt_response(&received),
        )?;
        b64_eq(
            "responsePlaintext (decrypted)",
            input.str("responsePlaintext")?,
            &plain,
        )?;

        // `/ecies/decryptor`: exactly for the generic encryptors.
        let generic = encryptor == Encryptor::generic(encryptor.scope());
        bool_eq(
            "output.eciesDecryptorResponse present (generic encryptor)",
            generic,
            output.has("eciesDecryptorResponse"),
        )?;
        if generic {
            let answer = output.obj("eciesDecryptorResponse")?;
            let secrets = must(
                "eciesDecryptorResponse",
                ecies::decryptor_secrets(&context, &z, &ephemeral),
            )?;
            expect_eq(
                "eciesDecryptorResponse.secretKey",
                answer.str("secretKey")?,
                &secrets.secret_key.to_base64(),
            )?;
            expect_eq(
                "eciesDecryptorResponse.sharedInfo2",
                answer.str("sharedInfo2")?,
                &secrets.shared_info2.to_base64(),
            )?;
        }
        Ok(())
    }

    fn wire_request(wire: &Obj<'_>) -> Checked<EciesRequest> {
        EciesRequest::from_base64(
            wire.str("ephemeralPublicKey")?,
            wire.str("encryptedData")?,
            wire.str("mac")?,
            wire.opt_str("nonce")?,
            wire.opt_int("timestamp")?,
        )
        .map_err(|e| crypto(&wire.path, e))
    }

    fn wire_response(wire: &Obj<'_>) -> Checked<EciesResponse> {
        EciesResponse::from_base64(
            wire.str("encryptedData")?,
            wire.str("mac")?,
            wire.opt_str("nonce")?,
            wire.opt_int("timestamp")?,
        )
        .map_err(|e| crypto(&wire.path, e))
    }

    fn compare_request(wire: &Obj<'_>, got: &EciesRequest) -> Checked {
        let name = |key: &str| format!("{} (client encrypts)", wire.name(key));
        expect_eq(
            &name("ephemeralPublicKey"),
            wire.str("ephemeralPublicKey")?,
            &got.ephemeral_public_key.to_base64(),
        )?;
        b64_eq(
            &name("encryptedData"),
            wire.str("encryptedData")?,
            &got.encrypted_data,
        )?;
        b64_eq(&name("mac"), wire.str("mac")?, &got.mac)?;
        opt_eq(
            &name("nonce"),
            wire.opt_str("nonce")?.map(str::to_owned),
            got.nonce.map(b64::encode),
        )?;
        opt_eq(
            &name("timestamp"),
            wire.opt_int("timestamp")?,
            got.timestamp_ms,
        )
    }

    fn compare_response(wire: &Obj<'_>, got: &EciesResponse) -> Checked {
        let name = |key: &str| format!("{} (server encrypts)", wire.name(key));
        b64_eq(
            &name("encryptedData"),
            wire.str("encryptedData")?,
            &got.encrypted_data,
        )?;
        b64_eq(&name("mac"), wire.str("mac")?, &got.mac)?;
        opt_eq(
            &name("nonce"),
            wire.opt_str("nonce")?.map(str::to_owned),
            got.nonce.map(b64::encode),
        )?;
        opt_eq(
            &name("timestamp"),
            wire.opt_int("timestamp")?,
            got.timestamp_ms,
        )
    }

    // ---- activation-status-blob.json ----

    pub(super) fn check_status_blob(case: &Value) -> Checked {
        let case = Obj::root(case, "case")?;
        let input = case.obj("input")?;
        let mid = case.obj("intermediate")?;
        let output = case.obj("output")?;

        let server = input.key_pair("server")?;
        let device = input.key_pair("device")?;
        let master = MasterSecret::agree(&server, &device.public_key());
        let expected_master = mid.str("masterSecretKey")?;
        expect_eq(
            "masterSecretKey (server side)",
            expected_master,
            &master.as_key().to_base64(),
        )?;
        let device_side = MasterSecret::agree(&device, &server.public_key());
        expect_eq(
            "masterSecretKey (device side)",
            expected_master,
            &device_side.as_key().to_base64(),
        )?;
        let kt = master.derive().transport;
        expect_eq("transportKey", mid.str("transportKey")?, &kt.to_base64())?;
        expect_eq(
            "keyTransportIv",
            mid.str("keyTransportIv")?,
            &status_blob::transport_iv_key(&kt).to_base64(),
        )?;
        expect_eq(
            "keyTransportCtr",
            mid.str("keyTransportCtr")?,
            &status_blob::transport_ctr_key(&kt).to_base64(),
        )?;

        let initial = CounterData::from_base64(input.str("initialCtrData")?)
            .map_err(|e| crypto("input.initialCtrData", e))?;
        let steps: u8 = input.num("serverStepsAhead")?;
        let server_ctr = initial.advance(u32::from(steps));
        expect_eq(
            "serverCtrData (NEXT^serverStepsAhead(initialCtrData))",
            input.str("serverCtrData")?,
            &server_ctr.to_base64(),
        )?;
        let hash = status_blob::ctr_data_hash(&kt, &server_ctr);
        b64_eq("ctrDataHash", mid.str("ctrDataHash")?, &hash)?;
        let counter: u64 = input.num("counter")?;
        let ctr_byte = counter.to_le_bytes()[0];
        hex_eq("ctrByte", &mid.hex("ctrByte")?, &[ctr_byte])?;
        let status_code: u8 = input.num("activationStatus")?;
        let status = ActivationStatus::from_code(status_code)
            .ok_or_else(|| malformed(format!("activationStatus {status_code} outside 1..=5")))?;
        let reserved: [u8; 5] = input
            .hex("reserved")?
            .try_into()
            .map_err(|_| malformed("input.reserved is not 5 bytes".to_owned()))?;
        let blob = StatusBlob {
            status,
            current_version: input.num("currentVersion")?,
            upgrade_version: input.num("upgradeVersion")?,
            reserved,
            ctr_byte,
            failed_attempts: input.num("failedAttempts")?,
            max_failed_attempts: input.num("maxFailedAttempts")?,
            ctr_look_ahead: input.num("ctrLookAhead")?,
            ctr_data_hash: hash,
        };
        hex_eq(
            "statusBlobPlain",
            &mid.hex("statusBlobPlain")?,
            &blob.to_bytes(),
        )?;

        let challenge: [u8; 16] = input.b64_array("challenge")?;
        let nonce: [u8; 16] = input.b64_array("nonce")?;
        expect_eq(
            "encryptedStatusBlobNonce",
            output.str("encryptedStatusBlobNonce")?,
            input.str("nonce")?,
        )?;
        b64_eq(
            "statusIv",
            mid.str("statusIv")?,
            &status_blob::status_iv(&kt, &challenge, &nonce),
        )?;
        let encrypted = status_blob::encrypt(&kt, &challenge, &nonce, &blob);
        b64_eq(
            "encryptedStatusBlob",
            output.str("encryptedStatusBlob")?,
            &encrypted,
        )?;

        // The client: decrypt the file's blob, then the §6.3 counter check from initialCtrData
        // with the counter byte the client has when the server is `steps` ahead.
        let wire: [u8; 32] = output.b64_array("encryptedStatusBlob")?;
        let received = must(
            "encryptedStatusBlob (client decrypts)",
            status_blob::decrypt(&kt, &challenge, &nonce, &wire),
        )?;
        if received != blob {
            return Err(mismatch(
                "encryptedStatusBlob (client decrypts)",
                &format!("{blob:?}"),
                &format!("{received:?}"),
            ));
        }
        let distance = status_blob::hash_distance(
            &kt,
            &initial,
            &received.ctr_data_hash,
            received.ctr_look_ahead,
        );
        expect_eq(
            "clientCounterDistance",
            output.str("clientCounterDistance")?,
            &distance.map_or(-1, i16::from).to_string(),
        )?;
        let client_byte = ctr_byte.wrapping_sub(steps);
        let expected = match distance {
            Some(0) => CounterSync::InSync,
            Some(d) => CounterSync::ServerAhead {
                steps: d,
                counter_data: server_ctr,
            },
            None => CounterSync::Deadlock,
        };
        let got = status_blob::counter_sync(&kt, &initial, client_byte, &received);
        if got != expected {
            return Err(mismatch(
                "counter check (§6.3)",
                &format!("{expected:?}"),
                &format!("{got:?}"),
            ));
        }
        Ok(())
    }

    // ---- activation-temporary-key.json ----

    pub(super) fn check_temporary_key(case: &Value) -> Checked {
        let case = Obj::root(case, "case")?;
        let input = case.obj("input")?;
        let output = case.obj("output")?;

        let application_key = input.str("applicationKey")?;
        let secret = input.secret("applicationSecret")?;
        let activation_id = input.opt_str("activationId")?;
        let transport_key = match input.opt_str("transportKey")? {
            Some(_) => Some(input.symmetric_key("transportKey")?),
            None => None,
        };
        bool_eq(
            "activationId and transportKey together",
            activation_id.is_some(),
            transport_key.is_some(),
        )?;
        let challenge = input.str("challenge")?;
        let key = temporary_key::request_key(&secret, transport_key.as_ref());
        expect_eq(
            "requestHmacKey",
            output.str("requestHmacKey")?,
            &key.to_base64(),
        )?;

        // Request: the SDK's JWT byte-exact, and the server's parse and HMAC check of the file's.
        let request_jwt = output.str("requestJwt")?;
        expect_eq(
            "requestJwt (client builds)",
            request_jwt,
            &temporary_key::build_request(application_key, activation_id, challenge, &key),
        )?;
        let parsed = must("requestJwt (server parses)", RequestJwt::parse(request_jwt))?;
        opt_eq(
            "requestJwt applicationKey",
            Some(application_key),
            parsed.application_key.as_deref(),
        )?;
        opt_eq(
            "requestJwt activationId",
            activation_id,
            parsed.activation_id.as_deref(),
        )?;
        opt_eq(
            "requestJwt challenge",
            Some(challenge),
            parsed.challenge.as_deref(),
        )?;
        must("requestJwt (server verifies the HMAC)", parsed.verify(&key))?;

        // Response: the signing input byte-exact; the file's JWT verifies as the SDK checks it,
        // and assembling the file's DER signature gives the file's JWT.
        let signer = input.key_pair("signing")?;
        let temporary = input.key_pair("temporary")?;
        let claims = TemporaryKeyClaims {
            key_id: input.str("temporaryKeyId")?.to_owned(),
            application_key: application_key.to_owned(),
            activation_id: activation_id.map(str::to_owned),
            challenge: challenge.to_owned(),
            public_key: temporary.public_key(),
            issued_at_ms: input.num("iatMs")?,
            expires_at_ms: input.num("expMs")?,
        };
        let response_jwt = output.str("responseJwt")?;
        let signing_input = claims.signing_input();
        let file_input = response_jwt
            .rsplit_once('.')
            .map_or(response_jwt, |(head, _)| head);
        expect_eq(
            "responseJwt header.payload (signing input)",
            file_input,
            &signing_input,
        )?;
        let verified = must(
            "responseJwt (client verifies with signingPublicKey)",
            temporary_key::verify_response(
                response_jwt,
                &signer.public_key(),
                application_key,
                activation_id,
                challenge,
            ),
        )?;
        if verified != claims {
            return Err(mismatch(
                "responseJwt claims",
                &format!("{claims:?}"),
                &format!("{verified:?}"),
            ));
        }
        let der = DerSignature::from_base64(output.str("responseSignatureDer")?)
            .map_err(|e| crypto("output.responseSignatureDer", e))?;
        expect_eq(
            "responseJwt (assembled from responseSignatureDer)",
            response_jwt,
            &temporary_key::assemble_response(&signing_input, &der),
        )?;
        expect_eq(
            "responseJwt (assembled from raw r||s)",
            response_jwt,
            &must(
                "responseSignatureDer as raw",
                temporary_key::assemble_response_raw(&signing_input, &der.to_raw()),
            )?,
        )
    }

    // ---- activation-flow.json ----

    pub(super) fn check_flow(case: &Value) -> Checked {
        let flow = Obj::root(case, "flow")?;
        let version = ProtocolVersion::parse(flow.str("protocolVersion")?)
            .map_err(|e| crypto("protocolVersion", e))?;
        let app = flow.obj("application")?;
        let init = flow.obj("init")?;
        let prepare = flow.obj("prepare")?;
        let keys = flow.obj("derivedKeys")?;
        let status = flow.obj("status")?;

        // Application.
        let application_key = app.str("applicationKey")?;
        let secret = app.secret("applicationSecret")?;
        let master = app.key_pair("master")?;
        expect_eq(
            "application.mobileSdkConfig",
            app.str("mobileSdkConfig")?,
            &must(
                "application.mobileSdkConfig",
                application::mobile_sdk_config(application_key, &secret, &master.public_key()),
            )?,
        )?;

        // Init: a valid code, signed by the master key; the server key pair.
        let code = must(
            "init.activationCode",
            ActivationCode::parse(init.str("activationCode")?),
        )?;
        let signature = DerSignature::from_base64(init.str("activationSignature")?)
            .map_err(|e| crypto("init.activationSignature", e))?;
        must(
            "init.activationSignature (verify with masterPublicKey)",
            code.verify_signature(&master.public_key(), &signature),
        )?;
        let server = init.key_pair("server")?;
        let activation_id = init.str("activationId")?;

        // Prepare: who holds the ECIES private key depends on the version.
        let request_wire = prepare.obj("prepareActivationRequest")?;
        expect_eq(
            "prepareActivationRequest.activationCode",
            code.as_str(),
            request_wire.str("activationCode")?,
        )?;
        expect_eq(
            "prepareActivationRequest.applicationKey",
            application_key,
            request_wire.str("applicationKey")?,
        )?;
        expect_eq(
            "prepareActivationRequest.protocolVersion",
            version.as_str(),
            request_wire.str("protocolVersion")?,
        )?;
        let temporary_key_id = request_wire.opt_str("temporaryKeyId")?;
        let ecies_private = if version.has_temporary_key() {
            let keystore = flow.obj("keystore")?;
            opt_eq(
                "prepareActivationRequest.temporaryKeyId",
                Some(keystore.str("temporaryKeyId")?),
                temporary_key_id,
            )?;
            keystore.key_pair("temporary")?
        } else {
            master.clone()
        };
        let device = prepare.key_pair("device")?;
        let device_sent = EphemeralPublicKey::encode(&device.public_key(), PointFormat::Compressed);
        expect_eq(
            "prepare.devicePublicKeyAsSent",
            prepare.str("devicePublicKeyAsSent")?,
            &device_sent.to_base64(),
        )?;
        let ephemeral_private = prepare.key_pair("ephemeral")?;
        let context = EciesContext::new(
            version,
            Encryptor::ActivationLayer2,
            application_key,
            &secret,
            None,
            temporary_key_id,
        )
        .map_err(|e| crypto("ECIES context", e))?;
        let request = wire_request(&request_wire)?;
        let z = kdf::ecdh_x(&ecies_private, request.ephemeral_public_key.public_key());
        let (ecies_server, plain) = must(
            "prepareActivationRequest (server decrypts layer 2)",
            ServerEncryptor::decrypt_request(&context, &z, &request),
        )?;
        b64_eq(
            "prepare.envelopeKey",
            prepare.str("envelopeKey")?,
            ecies_server.envelope_key().expose(),
        )?;
        let plain_text = String::from_utf8_lossy(&plain);
        expect_eq(
            "prepare.layer2RequestPlaintext",
            prepare.str("layer2RequestPlaintext")?,
            &plain_text,
        )?;
        let layer2: Value = serde_json::from_slice(&plain)
            .map_err(|_| malformed("layer-2 plaintext is not JSON".to_owned()))?;
        let layer2 = Obj::root(&layer2, "layer2RequestPlaintext")?;
        expect_eq(
            "layer2RequestPlaintext.devicePublicKey",
            &device_sent.to_base64(),
            layer2.str("devicePublicKey")?,
        )?;
        // The client (SDK) side of the same request, byte-exact.
        let nonce: [u8; 16] = request_wire.b64_array("nonce")?;
        let (client, again) = ClientEncryptor::encrypt_request(
            &context,
            &ecies_private.public_key(),
            &ephemeral_private,
            PointFormat::Compressed,
            prepare.str("layer2RequestPlaintext")?.as_bytes(),
            nonce,
            request_wire.int("timestamp")?,
        );
        compare_request(&request_wire, &again)?;

        // The layer-2 response: server encrypts byte-exact, client decrypts.
        let response_wire = prepare.obj("prepareActivationResponse")?;
        expect_eq(
            "prepareActivationResponse.activationId",
            activation_id,
            response_wire.str("activationId")?,
        )?;
        let response_plain = prepare.str("layer2ResponsePlaintext")?;
        let response = must(
            "prepareActivationResponse (server encrypts)",
            ecies_server.encrypt_response(
                response_plain.as_bytes(),
                response_wire.b64_array("nonce")?,
                response_wire.int("timestamp")?,
            ),
        )?;
        compare_response(&response_wire, &response)?;
        let received = must(
            "prepareActivationResponse (client decrypts)",
            client.decrypt_response(&wire_response(&response_wire)?),
        )?;
        expect_eq(
            "prepare.layer2ResponsePlaintext (decrypted)",
            response_plain,
            &String::from_utf8_lossy(&received),
        )?;
        let layer2 = serde_json::from_slice::<Value>(&received)
            .map_err(|_| malformed("layer-2 response is not JSON".to_owned()))?;
        let layer2 = Obj::root(&layer2, "layer2ResponsePlaintext")?;
        expect_eq(
            "layer2ResponsePlaintext.activationId",
            activation_id,
            layer2.str("activationId")?,
        )?;
        expect_eq(
            "layer2ResponsePlaintext.serverPublicKey",
            &server.public_key().to_base64(),
            layer2.str("serverPublicKey")?,
        )?;
        expect_eq(
            "layer2ResponsePlaintext.ctrData",
            prepare.str("ctrData")?,
            layer2.str("ctrData")?,
        )?;

        // Keys after prepare, both sides, and the fingerprint.
        let master_secret = MasterSecret::agree(&server, &device.public_key());
        let device_side = MasterSecret::agree(&device, &server.public_key());
        let expected_master = keys.str("masterSecretKey")?;
        expect_eq(
            "masterSecretKey (server side)",
            expected_master,
            &master_secret.as_key().to_base64(),
        )?;
        expect_eq(
            "masterSecretKey (device side)",
            expected_master,
            &device_side.as_key().to_base64(),
        )?;
        let derived = master_secret.derive();
        for (name, key) in [
            ("signaturePossessionKey", &derived.possession),
            ("signatureKnowledgeKey", &derived.knowledge),
            ("signatureBiometryKey", &derived.biometry),
            ("transportKey", &derived.transport),
            ("vaultEncryptionKey", &derived.vault),
        ] {
            expect_eq(name, keys.str(name)?, &key.to_base64())?;
        }
        expect_eq(
            "devicePublicKeyFingerprint",
            keys.str("devicePublicKeyFingerprint")?,
            &fingerprint::fingerprint_v3(&device.public_key(), activation_id, &server.public_key()),
        )?;

        // First status after commit: counter 0, server ctr_data = ctrData.
        let kt = &derived.transport;
        let ctr = CounterData::from_base64(prepare.str("ctrData")?)
            .map_err(|e| crypto("prepare.ctrData", e))?;
        let challenge: [u8; 16] = status.b64_array("challenge")?;
        let nonce: [u8; 16] = status.b64_array("encryptedStatusBlobNonce")?;
        b64_eq(
            "status.statusIv",
            status.str("statusIv")?,
            &status_blob::status_iv(kt, &challenge, &nonce),
        )?;
        let plain: [u8; 32] = status
            .hex("statusBlobPlain")?
            .try_into()
            .map_err(|_| malformed("status.statusBlobPlain is not 32 bytes".to_owned()))?;
        let parsed = must("status.statusBlobPlain (parse)", StatusBlob::parse(&plain))?;
        let blob = StatusBlob {
            status: ActivationStatus::Active,
            current_version: 3,
            upgrade_version: 3,
            reserved: parsed.reserved,
            ctr_byte: 0,
            failed_attempts: 0,
            max_failed_attempts: parsed.max_failed_attempts,
            ctr_look_ahead: parsed.ctr_look_ahead,
            ctr_data_hash: status_blob::ctr_data_hash(kt, &ctr),
        };
        expect_eq(
            "status.activationStatus",
            "ACTIVE",
            status.str("activationStatus")?,
        )?;
        hex_eq("status.statusBlobPlain", &plain, &blob.to_bytes())?;
        b64_eq(
            "status.encryptedStatusBlob",
            status.str("encryptedStatusBlob")?,
            &status_blob::encrypt(kt, &challenge, &nonce, &blob),
        )?;
        let received = must(
            "status.encryptedStatusBlob (client decrypts)",
            status_blob::decrypt(
                kt,
                &challenge,
                &nonce,
                &status.b64_array("encryptedStatusBlob")?,
            ),
        )?;
        let sync = status_blob::counter_sync(kt, &ctr, 0, &received);
        if sync != CounterSync::InSync {
            return Err(mismatch(
                "status counter check (§6.3)",
                "InSync",
                &format!("{sync:?}"),
            ));
        }
        Ok(())
    }
}

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
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the vectors are missing at {}",
            dir.display()
        );
        eprintln!(
            "!!!!! NOTICE: upstream vectors not found at {}; this test checks nothing !!!!!",
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

    type HmacSha256 = hmac::Hmac<sha2::Sha256>;

    fn hm(key: &[u8], msg: &[u8]) -> [u8; 32] {
        use hmac::Mac as _;
        let mut m = <HmacSha256 as hmac::Mac>::new_from_slice(key).unwrap();
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
