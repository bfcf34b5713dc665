//! The enrollment server's half of ECIES ([`SecretsDecryptor`]) against upstream's vectors
//! (`../shared/vectors/activation-ecies.json`, `spec/powerauth-activation.md` §2.6, §8): from the
//! recorded `/ecies/decryptor` answer alone it must decrypt the recorded request and produce the
//! recorded response, for both generic encryptors (application and activation scope) in 3.2 and
//! 3.3; a flipped MAC byte is refused.
//!
//! A missing vector folder FAILS unless `OFFLINE_SIGNER_ALLOW_MISSING=1` (this crate cannot use
//! the testkit, which depends on it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use offline_signer_crypto::b64;
use offline_signer_crypto::ecies::{
    DecryptorSecrets, EciesRequest, EncryptorScope, ProtocolVersion, SecretsDecryptor,
};
use serde_json::Value;

fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string"))
}

#[test]
fn secrets_decryptor_matches_the_generic_encryptor_vectors() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/activation-ecies.json");
    if !path.is_file() {
        assert!(
            std::env::var("OFFLINE_SIGNER_ALLOW_MISSING").as_deref() == Ok("1"),
            "{} is missing (set OFFLINE_SIGNER_ALLOW_MISSING=1 to skip knowingly)",
            path.display()
        );
        eprintln!(
            "!!! SKIPPED: {} is missing; nothing was checked",
            path.display()
        );
        return;
    }
    let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut checked = 0;
    for (i, case) in file["data"].as_array().unwrap().iter().enumerate() {
        let (input, output) = (&case["input"], &case["output"]);
        let scope = match field(input, "encryptorId") {
            "APPLICATION_SCOPE_GENERIC" => EncryptorScope::Application,
            "ACTIVATION_SCOPE_GENERIC" => EncryptorScope::Activation,
            _ => continue,
        };
        let name = format!(
            "activation-ecies.json case {i}: {}",
            field(case, "description")
        );
        let version = ProtocolVersion::parse(field(input, "protocolVersion")).unwrap();
        let answer = &output["eciesDecryptorResponse"];
        let secrets =
            DecryptorSecrets::from_base64(field(answer, "secretKey"), field(answer, "sharedInfo2"))
                .unwrap();
        let decryptor = SecretsDecryptor::new(
            version,
            scope,
            &secrets,
            field(input, "applicationKey"),
            input["activationId"].as_str(),
            input["temporaryKeyId"].as_str(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));

        let wire = &output["encryptedRequest"];
        let request = EciesRequest::from_base64(
            field(wire, "ephemeralPublicKey"),
            field(wire, "encryptedData"),
            field(wire, "mac"),
            Some(field(wire, "nonce")),
            wire["timestamp"].as_i64(),
        )
        .unwrap();
        let (server, plain) = decryptor
            .decrypt_request(&request)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            b64::encode(plain.as_slice()),
            field(input, "requestPlaintext"),
            "{name}"
        );

        let response = server
            .encrypt_response(
                &b64::decode(field(input, "responsePlaintext")).unwrap(),
                b64::decode_array(field(input, "responseNonce")).unwrap(),
                field(input, "responseTimestamp").parse().unwrap(),
            )
            .unwrap();
        let expected = &output["encryptedResponse"];
        assert_eq!(
            b64::encode(&response.encrypted_data),
            field(expected, "encryptedData"),
            "{name}"
        );
        assert_eq!(b64::encode(&response.mac), field(expected, "mac"), "{name}");
        assert_eq!(
            response.timestamp_ms,
            expected["timestamp"].as_i64(),
            "{name}"
        );

        let mut tampered = request.clone();
        tampered.mac[0] ^= 1;
        assert!(decryptor.decrypt_request(&tampered).is_err(), "{name}");
        checked += 1;
    }
    assert_eq!(
        checked, 16,
        "3.2 and 3.3 × application and activation scope × 4"
    );
}

#[test]
fn secrets_of_the_wrong_length_or_scope_are_refused() {
    let secrets =
        DecryptorSecrets::from_base64(&b64::encode([1u8; 48]), &b64::encode([2u8; 32])).unwrap();
    assert!(
        DecryptorSecrets::from_base64(&b64::encode([1u8; 47]), &b64::encode([2u8; 32])).is_err()
    );
    assert!(DecryptorSecrets::from_base64(&b64::encode([1u8; 48]), "not base64").is_err());
    for (scope, activation_id, temporary_key_id) in [
        (EncryptorScope::Application, Some("id"), Some("tk")),
        (EncryptorScope::Activation, None, Some("tk")),
        (EncryptorScope::Application, None, None),
    ] {
        assert!(
            SecretsDecryptor::new(
                ProtocolVersion::V3_3,
                scope,
                &secrets,
                "AK",
                activation_id,
                temporary_key_id,
            )
            .is_err(),
            "{scope:?} {activation_id:?} {temporary_key_id:?}"
        );
    }
    let decryptor = SecretsDecryptor::new(
        ProtocolVersion::V3_3,
        EncryptorScope::Application,
        &secrets,
        "AK",
        None,
        Some("tk"),
    )
    .unwrap();
    assert!(!format!("{decryptor:?}").contains("[1, 1"));
}
