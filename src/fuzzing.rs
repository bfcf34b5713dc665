//! Entry points for the coverage-guided fuzz targets in `fuzz/` (see `docs/robustness.md`); not an
//! API. Each function feeds outside bytes to the parsers and checks the service runs on them before
//! anything is looked up, and throws the results away: the fuzzer looks for panics, arithmetic
//! overflows (the fuzz build keeps overflow checks) and hangs, never for particular answers.

use serde::de::DeserializeOwned;

use crate::crypto::offline_data::{RequestData, decode_nonce};
use crate::crypto::{ComponentLength, b64, ecies};
use crate::http::wire::{
    ActivationRequest, ApplicationRequest, ApplicationVersionRequest, BlockRequest, CommitRequest,
    CreateNonPersonalizedRequest, CreatePersonalizedRequest, DecryptorRequest, InitRequest,
    JwtBody, PrepareRequest, RegisterRequest, RequestEnvelope, StatusRequest, VerifyRequestWire,
};
use crate::model::{CommitPhase, Timestamp};
use crate::service::ProximityCheck;

/// A fixed instant for the TOTP of proximity checks, so that a crash reproduces.
const FIXED_NOW: Timestamp = Timestamp::from_unix_millis(1_764_000_000_000);

/// The `Authorization` header parser of the HTTP layer (`Basic base64(token:secret)`).
pub fn basic_auth(header_value: &[u8]) {
    let _ = crate::http::auth::parse_basic(header_value);
}

/// Every stored-record decoder (applications, activations, temporary keys, nonces, credentials,
/// audit records, the audit head) and the model's byte encodings, over the same bytes.
pub fn store_records(bytes: &[u8]) {
    crate::store::fuzz_decode_records(bytes);
    let _ = crate::model::KeyId::from_slice(bytes);
    let _ = crate::model::WrappedKey::from_bytes(bytes);
    let _ = crate::model::EncryptedSecret::from_bytes(bytes.to_vec());
}

/// The body of every API request the way the router reads it (`{"requestObject": …}` into the wire
/// types), then the checks the service makes on the fields before it looks anything up.
pub fn api_request(body: &[u8]) {
    if let Some(r) = envelope::<VerifyRequestWire>(body) {
        verify_checks(r);
    }
    if let Some(r) = envelope::<CreatePersonalizedRequest>(body) {
        if let Some(nonce) = r.nonce.as_deref().filter(|n| !n.trim().is_empty()) {
            let _ = decode_nonce(nonce);
        }
        if let Some(p) = r.proximity_check {
            if let Ok(Some(valid)) = ProximityCheck::from(p).parse() {
                let _ = valid.totp_at(FIXED_NOW, 8);
            }
        }
    }
    if let Some(r) = envelope::<InitRequest>(body) {
        if let Some(date) = r.timestamp_activation_expire {
            let _ = date.to_timestamp();
        }
        if let Some(phase) = r.commit_phase {
            let _ = CommitPhase::parse(&phase);
        }
    }
    if let Some(r) = envelope::<DecryptorRequest>(body) {
        if let Some(version) = r.protocol_version {
            let _ = ecies::ProtocolVersion::parse(&version);
        }
        if let Some(key) = r.ephemeral_public_key {
            let _ = ecies::EphemeralPublicKey::from_base64(&key);
        }
        if let Some(nonce) = r.nonce {
            let _ = b64::decode(&nonce);
        }
    }
    if let Some(r) = envelope::<PrepareRequest>(body) {
        if let Some(code) = r.activation_code {
            let _ = crate::crypto::activation_code::ActivationCode::parse(&code);
        }
        if let (Some(key), Some(data), Some(mac)) =
            (r.ephemeral_public_key, r.encrypted_data, r.mac)
        {
            let _ = ecies::EciesRequest::from_base64(
                &key,
                &data,
                &mac,
                r.nonce.as_deref(),
                r.timestamp,
            );
        }
    }
    if let Some(r) = envelope::<JwtBody>(body) {
        let _ = crate::crypto::temporary_key::RequestJwt::parse(&r.jwt);
    }
    if let Some(r) = envelope::<RegisterRequest>(body) {
        let _ = crate::crypto::PublicKey::from_base64(&r.device_public_key);
    }
    if let Some(r) = envelope::<StatusRequest>(body) {
        if let Some(challenge) = r.challenge {
            let _ = b64::decode(&challenge);
        }
    }
    let _ = envelope::<CreateNonPersonalizedRequest>(body);
    let _ = envelope::<ApplicationRequest>(body);
    let _ = envelope::<ApplicationVersionRequest>(body);
    let _ = envelope::<CommitRequest>(body);
    let _ = envelope::<ActivationRequest>(body);
    let _ = envelope::<BlockRequest>(body);
}

fn envelope<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice::<RequestEnvelope<T>>(body)
        .ok()
        .map(|e| e.request_object)
}

/// What `Service::verify` checks before it takes the activation's lock, then the candidate messages
/// of a proximity check (the HMAC work a request can ask for).
fn verify_checks(r: VerifyRequestWire) {
    let Ok(data) = RequestData::parse(&r.data) else {
        return;
    };
    if let Some(length) = r.component_length {
        let _ = ComponentLength::new(length);
    }
    if let Some(p) = r.proximity_check {
        if let Ok(Some(valid)) = ProximityCheck::from(p).parse() {
            let _ = valid.candidates(&data, FIXED_NOW, 8);
        }
    }
}
