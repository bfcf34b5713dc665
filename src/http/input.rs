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

use std::collections::BTreeSet;

use serde_json::Value;
use utoipa::openapi::schema::{Object, Schema, SchemaType, Type};
use utoipa::openapi::{OpenApi, RefOr};

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
    match StringRule::of(field) {
        StringRule::ActivationId => {
            if !is_canonical_uuid(s) {
                return Err(refused(field, "not a canonical lower-case UUID"));
            }
        }
        StringRule::Data => {
            if s.len() > MAX_DATA_BYTES {
                return Err(refused(field, "longer than 16384 bytes"));
            }
        }
        StringRule::Name => {
            if s.is_empty() || s.len() > MAX_NAME_BYTES {
                return Err(refused(field, "empty or longer than 255 bytes"));
            }
            if s.chars().any(is_forbidden) {
                return Err(refused(field, "contains a control character"));
            }
        }
        StringRule::Other => {
            if s.len() > MAX_STRING_BYTES {
                return Err(refused(field, "longer than 8192 bytes"));
            }
        }
    }
    Ok(())
}

/// The row of the table above that a string field falls under, by the field's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringRule {
    ActivationId,
    Data,
    Name,
    Other,
}

/// [`StringRule::ActivationId`] as a JSON Schema pattern.
const UUID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// [`StringRule::Name`]'s characters as a JSON Schema pattern: no C0, DEL, C1, U+2028, U+2029.
const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$";

impl StringRule {
    fn of(field: Option<&str>) -> Self {
        match field {
            Some("activationId") => Self::ActivationId,
            Some("data") => Self::Data,
            Some(name) if NAME_FIELDS.contains(&name) => Self::Name,
            _ => Self::Other,
        }
    }

    /// The rule as JSON Schema keywords: `minLength`, `maxLength` and `pattern` (lengths in
    /// characters where the check counts bytes: the same for the ASCII these fields carry).
    fn document(self, schema: &mut Object) {
        let (min, max, pattern) = match self {
            Self::ActivationId => (Some(36), 36, Some(UUID_PATTERN)),
            Self::Data => (None, MAX_DATA_BYTES, None),
            Self::Name => (Some(1), MAX_NAME_BYTES, Some(NAME_PATTERN)),
            Self::Other => (None, MAX_STRING_BYTES, None),
        };
        schema.min_length = min;
        schema.max_length = Some(max);
        schema.pattern = pattern.map(str::to_owned);
    }
}

/// Writes the bounds of [`check`] into the OpenAPI document: every string field of every request
/// body (followed through `$ref`s and `oneOf`/`allOf`/`anyOf`) gets its rule's `minLength`,
/// `maxLength` and `pattern`. One table serves the check and the document, so they cannot drift.
pub struct DocumentedBounds;

impl utoipa::Modify for DocumentedBounds {
    fn modify(&self, doc: &mut OpenApi) {
        let mut named = Vec::new();
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let bodies = operation.request_body.iter_mut();
                for content in bodies.flat_map(|body| body.content.values_mut()) {
                    if let Some(schema) = &mut content.schema {
                        document_fields(schema, &mut named);
                    }
                }
            }
        }
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        // The envelopes inline their request type, which utoipa also lists as a component of its
        // own (`RequestEnvelope_X` and `X`): that one is a request schema too.
        let inlined = components
            .schemas
            .keys()
            .filter_map(|name| name.strip_prefix("RequestEnvelope_").map(str::to_owned));
        named.extend(inlined.collect::<Vec<_>>());
        let mut done = BTreeSet::new();
        while let Some(name) = named.pop() {
            if done.insert(name.clone()) {
                if let Some(schema) = components.schemas.get_mut(&name) {
                    document_fields(schema, &mut named);
                }
            }
        }
    }
}

/// Documents the string properties of `schema`, recursing into inline schemas; the components it
/// refers to are pushed to `named`, to be documented once each.
fn document_fields(schema: &mut RefOr<Schema>, named: &mut Vec<String>) {
    let schema = match schema {
        RefOr::Ref(r) => {
            if let Some(name) = r.ref_location.strip_prefix("#/components/schemas/") {
                named.push(name.to_owned());
            }
            return;
        }
        RefOr::T(schema) => schema,
    };
    let parts = match schema {
        Schema::Object(object) => {
            for (name, property) in &mut object.properties {
                match property {
                    RefOr::T(Schema::Object(field)) if is_plain_string(field) => {
                        StringRule::of(Some(name)).document(field);
                    }
                    other => document_fields(other, named),
                }
            }
            return;
        }
        Schema::OneOf(one) => &mut one.items,
        Schema::AllOf(all) => &mut all.items,
        Schema::AnyOf(any) => &mut any.items,
        _ => return,
    };
    for part in parts {
        document_fields(part, named);
    }
}

/// A string (or string-or-null) schema that is not an enumeration.
fn is_plain_string(schema: &Object) -> bool {
    let string = match &schema.schema_type {
        SchemaType::Type(t) => *t == Type::String,
        SchemaType::Array(types) => types.contains(&Type::String),
        SchemaType::AnyValue => false,
    };
    string && schema.enum_values.is_none()
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
