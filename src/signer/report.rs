//! The key report for auditors: every object the service owns on the token (label prefix
//! `offline-signer/`), read from the token with its PKCS#11 attributes, a one-line verdict per key
//! against the keys table of `design.md`, and a description of the wrapped per-activation keys.
//!
//! JSON shape (`serde_json::to_string_pretty(&report)`):
//! `{"signerKind", "token": {label, serial, manufacturer, model}, "keys": [{"id", "label",
//! "purpose", "class", "keyType", "token", "private", "sensitive", "extractable",
//! "alwaysSensitive", "neverExtractable", "local", "valueReadable", "verdict", "ok"}],
//! "wrappedKeys": {"mechanism", "kekId", "kekLabel", "unwrappedAs", "count", "countAbsentBecause"},
//! "probes": [{"name", "target", "answer", "refused"}], "orphans", "orphansAbsentBecause",
//! "violations"}`.
//!
//! The probes are the proof: the token is asked to do what the keys table forbids and its answer
//! (a `CKR_…` return code) is shown; a probe the token lets through is a violation.

use serde::Serialize;

use super::{
    AUDIT_LABEL, DEK_LABEL, KEK_LABEL, LABEL_PREFIX, ObjectAttributes, ProbeResult, Signer,
    SignerError, SignerKind, TokenDescription,
};

/// What a reported key is for, derived from its label and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyPurpose {
    /// Private half of an application master key pair.
    MasterPrivate,
    /// Public half of an application master key pair.
    MasterPublic,
    /// The key-encryption key.
    Kek,
    /// The data-encryption key.
    Dek,
    /// Private half of the audit signing key pair (signs checkpoints).
    AuditPrivate,
    /// Public half of the audit signing key pair.
    AuditPublic,
    /// Carries our prefix but matches no row of the keys table.
    Unknown,
}

/// One reported key.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedKey {
    /// The key's purpose.
    pub purpose: KeyPurpose,
    /// The attributes read from the token.
    #[serde(flatten)]
    pub attributes: ObjectAttributes,
    /// One line: what the keys table demands and whether the token shows it.
    pub verdict: String,
    /// `false` when this key violates the table.
    pub ok: bool,
}

/// How per-activation private keys leave the token.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WrappedKeys {
    /// Always `CKM_AES_KEY_WRAP_PAD` (RFC 5649) for PKCS#11.
    pub mechanism: String,
    /// The KEK's id, when exactly one KEK is on the token.
    pub kek_id: Option<String>,
    /// The KEK's label.
    pub kek_label: String,
    /// How an unwrapped key lives while it is used.
    pub unwrapped_as: String,
    /// How many wrapped keys the store holds; filled in by the caller (the store knows).
    pub count: Option<u64>,
    /// Why `count` is absent (e.g. the store is held by the running server).
    pub count_absent_because: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyReport {
    /// Which signer produced it.
    pub signer_kind: SignerKind,
    /// The token.
    pub token: TokenDescription,
    /// Every object labelled `offline-signer/…`.
    pub keys: Vec<ReportedKey>,
    /// The wrapped per-activation keys.
    pub wrapped_keys: WrappedKeys,
    /// Forbidden operations tried on the token, with its answers.
    pub probes: Vec<ProbeResult>,
    /// Token objects under our label prefix that the store does not know (`label#id`); `None`
    /// when the store could not be read (see `orphans_absent_because`).
    pub orphans: Option<Vec<String>>,
    /// Why `orphans` is absent.
    pub orphans_absent_because: Option<String>,
    /// Same as [`KeyReport::violations`], for readers of the JSON.
    pub violations: usize,
}

impl KeyReport {
    /// Number of violations: keys that violate the keys table (a long-term private or secret
    /// key that is extractable, was ever extractable, is not sensitive, was ever not sensitive,
    /// a KEK that is not trusted, or whose attributes the token does not show) plus probes the
    /// token did not refuse.
    pub fn violations(&self) -> usize {
        self.keys.iter().filter(|k| !k.ok).count()
            + self.probes.iter().filter(|p| !p.refused).count()
    }
}

/// Reads the inventory from the signer, judges every key and runs the probes.
///
/// # Errors
/// [`SignerError`] when the token cannot be read.
pub async fn key_report(signer: &dyn Signer) -> Result<KeyReport, SignerError> {
    let inventory = signer.inventory().await?;
    let probes = signer.isolation_probes().await?;
    let keys: Vec<ReportedKey> = inventory.objects.into_iter().map(judge).collect();
    let keks: Vec<&ReportedKey> = keys
        .iter()
        .filter(|k| k.purpose == KeyPurpose::Kek)
        .collect();
    let kek_id = match keks.as_slice() {
        [one] => Some(one.attributes.id.clone()),
        _ => None,
    };
    let mut report = KeyReport {
        signer_kind: signer.kind(),
        token: inventory.token,
        keys,
        wrapped_keys: WrappedKeys {
            mechanism: "CKM_AES_KEY_WRAP_PAD".into(),
            kek_id,
            kek_label: KEK_LABEL.into(),
            unwrapped_as: "requested: session object (CKA_TOKEN=false), CKA_PRIVATE=true, \
                           CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, CKA_WRAP_WITH_TRUSTED=true, \
                           CKA_SIGN or CKA_DERIVE (one), destroyed after one operation; \
                           enforced: see probes"
                .into(),
            count: None,
            count_absent_because: Some("the store was not consulted".into()),
        },
        probes,
        orphans: None,
        orphans_absent_because: Some("the store was not consulted".into()),
        violations: 0,
    };
    report.violations = report.violations();
    Ok(report)
}

fn purpose_of(a: &ObjectAttributes) -> KeyPurpose {
    let master = a.label.starts_with(&format!("{LABEL_PREFIX}master/"));
    match (a.label.as_str(), a.class.as_str()) {
        (_, "privateKey") if master => KeyPurpose::MasterPrivate,
        (_, "publicKey") if master => KeyPurpose::MasterPublic,
        (KEK_LABEL, "secretKey") => KeyPurpose::Kek,
        (DEK_LABEL, "secretKey") => KeyPurpose::Dek,
        (AUDIT_LABEL, "privateKey") => KeyPurpose::AuditPrivate,
        (AUDIT_LABEL, "publicKey") => KeyPurpose::AuditPublic,
        _ => KeyPurpose::Unknown,
    }
}

/// Judges one object against the keys table.
fn judge(attributes: ObjectAttributes) -> ReportedKey {
    let purpose = purpose_of(&attributes);
    let a = &attributes;
    let (verdict, ok) = match purpose {
        KeyPurpose::MasterPublic | KeyPurpose::AuditPublic => {
            ("public key: may be read by anyone".to_owned(), true)
        }
        KeyPurpose::MasterPrivate
        | KeyPurpose::Kek
        | KeyPurpose::Dek
        | KeyPurpose::AuditPrivate
        | KeyPurpose::Unknown
            if a.class == "publicKey" =>
        {
            ("public key: may be read by anyone".to_owned(), true)
        }
        _ => {
            let mut problems = Vec::new();
            if a.token != Some(true) {
                problems.push("not a token object");
            }
            if a.sensitive != Some(true) {
                problems.push("not sensitive");
            }
            if a.always_sensitive != Some(true) {
                problems.push("was not always sensitive");
            }
            if a.extractable != Some(false) {
                problems.push("extractable");
            }
            if a.never_extractable != Some(true) {
                problems.push("was once extractable");
            }
            if a.local != Some(true) {
                problems.push("not generated in the token");
            }
            if a.value_readable == Some(true) {
                problems.push("value readable in clear");
            }
            if purpose == KeyPurpose::Unknown {
                problems.push("unknown key with our label prefix");
            }
            if purpose == KeyPurpose::Kek && a.trusted == Some(false) {
                problems.push("not CKA_TRUSTED (run `offline-signer hsm provision`)");
            }
            let row = match purpose {
                KeyPurpose::MasterPrivate => "master private key",
                KeyPurpose::Kek => "KEK",
                KeyPurpose::Dek => "DEK",
                KeyPurpose::AuditPrivate => "audit signing key",
                _ => "object",
            };
            if problems.is_empty() {
                (
                    format!(
                        "{row}: OK: never leaves the HSM (sensitive, never extractable, local)"
                    ),
                    true,
                )
            } else {
                (format!("{row}: VIOLATION: {}", problems.join(", ")), false)
            }
        }
    };
    ReportedKey {
        purpose,
        attributes,
        verdict,
        ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(label: &str, class: &str) -> ObjectAttributes {
        ObjectAttributes {
            id: "00".repeat(16),
            label: label.into(),
            class: class.into(),
            key_type: "AES".into(),
            token: Some(true),
            private: Some(true),
            sensitive: Some(true),
            extractable: Some(false),
            always_sensitive: Some(true),
            never_extractable: Some(true),
            local: Some(true),
            trusted: Some(true),
            wrap_with_trusted: Some(true),
            value_readable: Some(false),
        }
    }

    #[test]
    fn compliant_keys_pass_and_each_flaw_is_a_violation() {
        assert!(judge(good(KEK_LABEL, "secretKey")).ok);
        assert!(judge(good("offline-signer/master/ab", "privateKey")).ok);
        let audit = judge(good(AUDIT_LABEL, "privateKey"));
        assert!(audit.ok && audit.purpose == KeyPurpose::AuditPrivate);
        let flaws: [fn(&mut ObjectAttributes); 6] = [
            |a| a.sensitive = Some(false),
            |a| a.extractable = Some(true),
            |a| a.never_extractable = Some(false),
            |a| a.always_sensitive = None,
            |a| a.local = Some(false),
            |a| a.token = Some(false),
        ];
        for flaw in flaws {
            let mut a = good(DEK_LABEL, "secretKey");
            flaw(&mut a);
            let judged = judge(a);
            assert!(!judged.ok, "{}", judged.verdict);
            assert!(judged.verdict.contains("VIOLATION"));
        }
        let public = ObjectAttributes {
            sensitive: None,
            ..good("offline-signer/master/ab", "publicKey")
        };
        assert!(judge(public).ok);
        assert!(!judge(good("offline-signer/other", "secretKey")).ok);
        let untrusted = ObjectAttributes {
            trusted: Some(false),
            ..good(KEK_LABEL, "secretKey")
        };
        assert!(!judge(untrusted).ok);
    }
}
