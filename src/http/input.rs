//! Bounds on what a request may carry, checked on the parsed JSON before the typed request exists,
//! so before anything is looked up, logged or audited. The rules go by field name, wherever the
//! field appears in `requestObject`, so a new route is covered without extra code:
//!
//! | field | rule |
//! |---|---|
//! | `activationId` | canonical UUID, lower case: 36 characters `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` of `0-9 a-f` |
//! | `applicationId`, `applicationVersionId`, `userId`, `externalUserId`, `temporaryKeyId`, `activationCode`, `activationOtp`, `reason`, `protocol`, `protocolVersion`, `commitPhase`, `activationOtpValidation` | 1–255 bytes, no control character (C0, DEL, C1) and no line or paragraph separator (U+2028, U+2029) |
//! | `data` | at most 16384 bytes; control characters allowed (offline data is multi-line) |
//! | any other string | at most 8192 bytes |
//! | arrays | at most 64 elements |
//!
//! A refusal is `ERR0024`; its log line names the field and the rule, never the value.

use serde_json::Value;

/// Longest identifier-like string, in bytes (the service's name limit).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest `data` string, in bytes.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// Longest other string, in bytes.
pub const MAX_STRING_BYTES: usize = 8 * 1024;
/// Most elements in any array.
pub const MAX_ARRAY_LEN: usize = 64;

/// Fields that name things and are echoed into logs and the audit trail.
const NAME_FIELDS: &[&str] = &[
    "applicationId",
    "applicationVersionId",
    "userId",
    "externalUserId",
    "temporaryKeyId",
    "activationCode",
    "activationOtp",
    "reason",
    "protocol",
    "protocolVersion",
    "commitPhase",
    "activationOtpValidation",
];

/// Why a request object was refused: the field and the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The field name.
    pub field: String,
    /// The rule it broke.
    pub rule: &'static str,
}

/// Checks every field of `object` (recursively) against the table above.
///
/// # Errors
/// [`Refused`] for the first field that breaks its rule.
pub fn check(object: &Value) -> Result<(), Refused> {
    check_value(None, object, 0)
}

fn refused(field: Option<&str>, rule: &'static str) -> Refused {
    Refused {
        // Field names are the caller's too: keep only a short, printable form.
        field: field
            .unwrap_or("requestObject")
            .chars()
            .take(64)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect(),
        rule,
    }
}

fn check_value(field: Option<&str>, value: &Value, depth: usize) -> Result<(), Refused> {
    if depth > 16 {
        return Err(refused(field, "nested deeper than 16 levels"));
    }
    match value {
        Value::String(s) => check_string(field, s),
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_LEN {
                return Err(refused(field, "more than 64 elements"));
            }
            items
                .iter()
                .try_for_each(|item| check_value(field, item, depth + 1))
        }
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            if key.len() > 64 || key.chars().any(is_forbidden) {
                return Err(refused(Some(key), "field name too long or not printable"));
            }
            check_value(Some(key), item, depth + 1)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn check_string(field: Option<&str>, s: &str) -> Result<(), Refused> {
    match field {
        Some("activationId") => {
            if !is_canonical_uuid(s) {
                return Err(refused(field, "not a canonical lower-case UUID"));
            }
        }
        Some("data") => {
            if s.len() > MAX_DATA_BYTES {
                return Err(refused(field, "longer than 16384 bytes"));
            }
        }
        Some(name) if NAME_FIELDS.contains(&name) => {
            if s.is_empty() || s.len() > MAX_NAME_BYTES {
                return Err(refused(field, "empty or longer than 255 bytes"));
            }
            if s.chars().any(is_forbidden) {
                return Err(refused(field, "contains a control character"));
            }
        }
        _ => {
            if s.len() > MAX_STRING_BYTES {
                return Err(refused(field, "longer than 8192 bytes"));
            }
        }
    }
    Ok(())
}

/// Control characters and the Unicode line breaks that would start a new log line.
fn is_forbidden(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower-case hex.
pub fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn activation_ids_must_be_canonical() {
        assert!(is_canonical_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        for bad in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "",
        ] {
            assert!(!is_canonical_uuid(bad), "{bad}");
            assert!(check(&json!({ "activationId": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(
            check(&json!({ "userId": "alice@example.com", "applicationId": "demo app" })).is_ok()
        );
        let long = "a".repeat(256);
        let e = check(&json!({ "userId": long })).expect_err("too long");
        assert_eq!(e.field, "userId");
        for bad in ["a\nb", "a\rb", "a\u{1b}[31m", "a\u{2028}b", "a\u{85}b", ""] {
            assert!(check(&json!({ "applicationId": bad })).is_err(), "{bad:?}");
        }
        // Offline data is multi-line by design.
        assert!(check(&json!({ "data": "A1*T100\nline two" })).is_ok());
        assert!(check(&json!({ "data": "x".repeat(MAX_DATA_BYTES + 1) })).is_err());
        assert!(check(&json!({ "other": "x".repeat(MAX_STRING_BYTES + 1) })).is_err());
        assert!(check(&json!({ "flags": vec!["A"; 65] })).is_err());
    }

    #[test]
    fn refusals_never_carry_the_value() {
        let e =
            check(&json!({ "activationId": "forged\nINFO admin logged in" })).expect_err("refused");
        let shown = format!("{e:?}");
        assert!(!shown.contains("forged"), "{shown}");
    }
}
