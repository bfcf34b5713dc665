//! Checkers of the activation vector files (`spec/powerauth-activation.md` §8.1). Each one
//! recomputes every value of its case that [`crate::crypto`] can produce: outputs byte-exact,
//! intermediates too, both directions where the protocol has two parties. The server side starts
//! from the ECDH x-coordinate, as it does with an HSM; the ECDH here stands in for the HSM.

use serde_json::{Map, Value};

use super::{CaseFailure, expect_eq};
use crate::crypto::activation_code::{self, ActivationCode};
use crate::crypto::application::{self, ApplicationSecret};
use crate::crypto::ecies::{
    self, ActivationBinding, ClientEncryptor, EciesContext, EciesRequest, EciesResponse, Encryptor,
    EncryptorScope, EnvelopeKey, EphemeralPublicKey, PointFormat, ProtocolVersion, ServerEncryptor,
};
use crate::crypto::status_blob::{self, ActivationStatus, CounterSync, StatusBlob};
use crate::crypto::temporary_key::{self, RequestJwt, TemporaryKeyClaims};
use crate::crypto::{
    CounterData, CryptoError, DerSignature, MasterSecret, PrivateKey, SymmetricKey, b64, ecdsa,
    fingerprint, kdf,
};

type CaseResult<T = ()> = Result<T, CaseFailure>;

/// One JSON object of a case, with its path for messages (`output.encryptedRequest`).
#[derive(Clone)]
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn root(value: &'a Value, path: &str) -> CaseResult<Self> {
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

    fn obj(&self, key: &str) -> CaseResult<Obj<'a>> {
        match self.map.get(key) {
            Some(value) => Obj::root(value, &self.name(key)),
            None => Err(malformed(format!("missing {}", self.name(key)))),
        }
    }

    fn str(&self, key: &str) -> CaseResult<&'a str> {
        match self.map.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(malformed(format!("{} is not a string", self.name(key)))),
            None => Err(malformed(format!("missing {}", self.name(key)))),
        }
    }

    /// A string that may be absent or `null`.
    fn opt_str(&self, key: &str) -> CaseResult<Option<&'a str>> {
        self.optional(key, Self::str)
    }

    /// `read(key)` when the key is present and not `null`.
    fn optional<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Self, &str) -> CaseResult<T>,
    ) -> CaseResult<Option<T>> {
        if self.has(key) {
            read(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn bool(&self, key: &str) -> CaseResult<bool> {
        self.map
            .get(key)
            .and_then(Value::as_bool)
            .ok_or_else(|| malformed(format!("{} is not a boolean", self.name(key))))
    }

    /// A JSON integer (wire `timestamp`).
    fn int(&self, key: &str) -> CaseResult<i64> {
        self.map
            .get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| malformed(format!("{} is not an integer", self.name(key))))
    }

    fn opt_int(&self, key: &str) -> CaseResult<Option<i64>> {
        self.optional(key, Self::int)
    }

    /// An integer written as a decimal string (`"1750000000000"`).
    fn num<T: std::str::FromStr>(&self, key: &str) -> CaseResult<T> {
        let text = self.str(key)?;
        text.parse()
            .map_err(|_| malformed(format!("{} = {text:?} is not a number", self.name(key))))
    }

    fn opt_num(&self, key: &str) -> CaseResult<Option<i64>> {
        self.optional(key, Self::num)
    }

    fn b64(&self, key: &str) -> CaseResult<Vec<u8>> {
        b64::decode(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
    }

    fn b64_array<const N: usize>(&self, key: &str) -> CaseResult<[u8; N]> {
        b64::decode_array(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
    }

    fn hex(&self, key: &str) -> CaseResult<Vec<u8>> {
        hex::decode(self.str(key)?).map_err(|_| malformed(format!("{} is not hex", self.name(key))))
    }

    fn symmetric_key(&self, key: &str) -> CaseResult<SymmetricKey> {
        SymmetricKey::from_base64(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
    }

    fn secret(&self, key: &str) -> CaseResult<ApplicationSecret> {
        ApplicationSecret::from_text(self.str(key)?).map_err(|e| crypto(&self.name(key), e))
    }

    /// `{prefix}PrivateKey` (Java form) and `{prefix}PrivateKeyRaw32` must be one scalar, and
    /// `{prefix}PublicKey` (when present) its public key.
    fn key_pair(&self, prefix: &str) -> CaseResult<PrivateKey> {
        let java = format!("{prefix}PrivateKey");
        let private =
            PrivateKey::from_base64(self.str(&java)?).map_err(|e| crypto(&self.name(&java), e))?;
        let raw = format!("{prefix}PrivateKeyRaw32");
        if self.has(&raw) {
            let scalar = self.b64_array::<32>(&raw)?;
            let from_raw =
                PrivateKey::from_scalar_bytes(&scalar).map_err(|e| crypto(&self.name(&raw), e))?;
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
fn must<T>(what: &str, result: Result<T, CryptoError>) -> CaseResult<T> {
    result.map_err(|e| mismatch(what, "success", &e.to_string()))
}

fn b64_eq(what: &str, expected: &str, got: &[u8]) -> CaseResult {
    expect_eq(what, expected, &b64::encode(got))
}

fn hex_eq(what: &str, expected: &[u8], got: &[u8]) -> CaseResult {
    expect_eq(what, &hex::encode(expected), &hex::encode(got))
}

fn bool_eq(what: &str, expected: bool, got: bool) -> CaseResult {
    expect_eq(what, &expected.to_string(), &got.to_string())
}

fn opt_eq<T: std::fmt::Debug + PartialEq>(
    what: &str,
    expected: Option<T>,
    got: Option<T>,
) -> CaseResult {
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

pub(super) fn check_code(case: &Value) -> CaseResult {
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

pub(super) fn check_ecies(case: &Value) -> CaseResult {
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

/// The wire fields a request and a response share: ciphertext, MAC, nonce, timestamp.
type SealedWire<'a> = (&'a str, &'a str, Option<&'a str>, Option<i64>);

fn wire_sealed<'a>(wire: &Obj<'a>) -> CaseResult<SealedWire<'a>> {
    Ok((
        wire.str("encryptedData")?,
        wire.str("mac")?,
        wire.opt_str("nonce")?,
        wire.opt_int("timestamp")?,
    ))
}

fn wire_request(wire: &Obj<'_>) -> CaseResult<EciesRequest> {
    let (data, mac, nonce, timestamp) = wire_sealed(wire)?;
    EciesRequest::from_base64(wire.str("ephemeralPublicKey")?, data, mac, nonce, timestamp)
        .map_err(|e| crypto(&wire.path, e))
}

fn wire_response(wire: &Obj<'_>) -> CaseResult<EciesResponse> {
    let (data, mac, nonce, timestamp) = wire_sealed(wire)?;
    EciesResponse::from_base64(data, mac, nonce, timestamp).map_err(|e| crypto(&wire.path, e))
}

fn compare_request(wire: &Obj<'_>, got: &EciesRequest) -> CaseResult {
    let side = "client encrypts";
    expect_eq(
        &format!("{} ({side})", wire.name("ephemeralPublicKey")),
        wire.str("ephemeralPublicKey")?,
        &got.ephemeral_public_key.to_base64(),
    )?;
    compare_sealed(
        wire,
        side,
        (&got.encrypted_data, &got.mac, got.nonce, got.timestamp_ms),
    )
}

fn compare_response(wire: &Obj<'_>, got: &EciesResponse) -> CaseResult {
    compare_sealed(
        wire,
        "server encrypts",
        (&got.encrypted_data, &got.mac, got.nonce, got.timestamp_ms),
    )
}

/// What one side encrypted: ciphertext, MAC, nonce, timestamp.
type EncryptedParts<'a> = (&'a [u8], &'a [u8], Option<[u8; 16]>, Option<i64>);

/// Compares ciphertext, MAC, nonce and timestamp of `wire` with what `side` produced.
fn compare_sealed(
    wire: &Obj<'_>,
    side: &str,
    (data, mac, nonce, timestamp): EncryptedParts<'_>,
) -> CaseResult {
    let name = |key: &str| format!("{} ({side})", wire.name(key));
    b64_eq(&name("encryptedData"), wire.str("encryptedData")?, data)?;
    b64_eq(&name("mac"), wire.str("mac")?, mac)?;
    opt_eq(
        &name("nonce"),
        wire.opt_str("nonce")?.map(str::to_owned),
        nonce.map(b64::encode),
    )?;
    opt_eq(&name("timestamp"), wire.opt_int("timestamp")?, timestamp)
}

// ---- activation-status-blob.json ----

pub(super) fn check_status_blob(case: &Value) -> CaseResult {
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

pub(super) fn check_temporary_key(case: &Value) -> CaseResult {
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

pub(super) fn check_flow(case: &Value) -> CaseResult {
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
