//! The worked example of `spec/powerauth-activation.md` §8.2 (activation-flow case 0, protocol
//! 3.3), with every value taken from the text of the spec, so that it runs without the vector
//! files: application configuration, code and signature, the server side of the layer-2 ECIES
//! envelope, the keys after prepare, the fingerprint, and the first status blob as the phone
//! opens it.

use offline_signer::crypto::activation_code::ActivationCode;
use offline_signer::crypto::application::{ApplicationSecret, mobile_sdk_config};
use offline_signer::crypto::ecies::{
    self, EciesContext, Encryptor, EnvelopeKey, EphemeralPublicKey, ProtocolVersion,
};
use offline_signer::crypto::status_blob::{self, ActivationStatus, CounterSync};
use offline_signer::crypto::{
    CounterData, DerSignature, MasterSecret, PrivateKey, PublicKey, SymmetricKey, b64, fingerprint,
    kdf,
};

const AK: &str = "WC8gRAsMr/tDZndH2GvvZw==";
const AS: &str = "YT5yMrV1XPhS+skTiASlrA==";
const MASTER_PUBLIC: &str =
    "BNJbN+Ji4OQlzn7+jPNb//YWTB48lSVpa0J6EFiq6XOvi1eS/C+DVGZQOx2Th4Or5FREHrnTYwRnFkwb4mMquuU=";
const ACTIVATION_ID: &str = "b4ee3c97-8ad4-4f5b-9bb2-d6cd47cb7952";
const SERVER_PUBLIC: &str =
    "BHnJ5zxENQzLV/igQrihNLbTkqzMCnVTb4Dtz9bIv6PyQxlltRQTBcnaOiRtw1SBglNDaN2MUyC/9yib+StvxNQ=";
const TEMPORARY_KEY_ID: &str = "f3de9b5b-3ea7-4fa0-9542-b748a7999444";
const TEMPORARY_PRIVATE_RAW: &str = "43SEx1m6d0EMtp6YN7XJa4PMBzL5MqzPYw8W2X7UFuQ=";
const EPHEMERAL: &str = "AtInIqdy/Lu44gfe+c2RQsDyuxHtq4xCfHgNKJsVrbgs";
const NONCE: &str = "E0sEbYjSmAjDvYHPQHH3kA==";
const TIMESTAMP: i64 = 1_750_000_123_456;
const MASTER_SECRET: &str = "i743VBcpP3KjFFzROHgiog==";
const DEVICE_PUBLIC_AS_SENT: &str = "A1iVSPopMHl4VpHozrbX8PNJKXyeQgUmEtV9boKVBsyh";

#[test]
fn application_configuration() {
    let secret = ApplicationSecret::from_text(AS).unwrap();
    let master = PublicKey::from_base64(MASTER_PUBLIC).unwrap();
    assert_eq!(
        mobile_sdk_config(AK, &secret, &master).unwrap(),
        "ARBYLyBECwyv+0Nmd0fYa+9nEGE+cjK1dVz4UvrJE4gEpawBAUEE0ls34mLg5CXOfv6M81v/9hZMHjyVJWlrQnoQWKrpc6+LV5L8L4NUZlA7HZOHg6vkVEQeudNjBGcWTBviYyq65Q=="
    );
}

#[test]
fn init_code_and_signature() {
    let code = ActivationCode::parse("7XBLY-W77LR-RFFLM-K4S5Q").unwrap();
    let signature = DerSignature::from_base64(
        "MEYCIQDDaVSwDRv0ykTHF3gHosFddknuz14Tf3An3WbVrb5R1AIhAO4wY0A6gW8nd3rZsLjPwDNN7cNGV0R6wneROIrh/TdB",
    )
    .unwrap();
    let master = PublicKey::from_base64(MASTER_PUBLIC).unwrap();
    assert!(code.verify_signature(&master, &signature).is_ok());
    let random: [u8; 10] = code.code_bytes()[..10].try_into().unwrap();
    assert_eq!(ActivationCode::from_random_bytes(&random), code);
}

#[test]
fn prepare_layer2_envelope_server_side() {
    let temporary =
        PrivateKey::from_scalar_bytes(&b64::decode_array(TEMPORARY_PRIVATE_RAW).unwrap()).unwrap();
    let eph = EphemeralPublicKey::from_base64(EPHEMERAL).unwrap();
    assert_eq!(eph.as_bytes().len(), 33);
    // What the HSM computes with CKM_ECDH1_DERIVE; here the key is in memory.
    let z = kdf::ecdh_x(&temporary, eph.public_key());
    assert_eq!(
        hex::encode(z.as_slice()),
        "0f1f80d633a5d22d9b6b68960dc77f8ac88398678e62ae701c1ae6142fcc75c2"
    );
    let version = ProtocolVersion::parse("3.3").unwrap();
    assert_eq!(
        hex::encode(ecies::kdf_info1(version, Encryptor::ActivationLayer2, &eph)),
        concat!(
            "332e33",
            "2f70612f61637469766174696f6e",
            "02d22722a772fcbbb8e207def9cd9142c0f2bb11edab8c427c780d289b15adb82c"
        )
    );
    let envelope = EnvelopeKey::derive(&z, version, Encryptor::ActivationLayer2, &eph);
    assert_eq!(
        hex::encode(envelope.enc_key().expose()),
        "a293bc0716d76d58b0d885ba2c0e2c62"
    );
    assert_eq!(
        hex::encode(envelope.mac_key().expose()),
        "48afed726aacf0a59668d53166a5ceda"
    );
    assert_eq!(
        hex::encode(envelope.iv_key().expose()),
        "99025906c0765dca2639f8ccdaaf860a"
    );

    let context = EciesContext::new(
        version,
        Encryptor::ActivationLayer2,
        AK,
        &ApplicationSecret::from_text(AS).unwrap(),
        None,
        Some(TEMPORARY_KEY_ID),
    )
    .unwrap();
    assert_eq!(
        hex::encode(context.shared_info2_base()),
        "532fa549c456c2c1bfe26a164adec3d8c5526361a89c2d0077d27d474381f8b4"
    );
    let mut ad = hex::decode("00000003332e3300000018").unwrap();
    ad.extend_from_slice(AK.as_bytes());
    ad.extend_from_slice(&hex::decode("00000024").unwrap());
    ad.extend_from_slice(TEMPORARY_KEY_ID.as_bytes());
    assert_eq!(ad.len(), 75);
    assert_eq!(context.associated_data(), Some(ad.as_slice()));

    let nonce: [u8; 16] = b64::decode_array(NONCE).unwrap();
    assert_eq!(
        hex::encode(envelope.iv(version, &nonce)),
        "da221cb2cc53d83ce7a759277da65821"
    );
    assert_eq!(
        context.request_shared_info2(&eph, &nonce, TIMESTAMP).len(),
        184
    );
    assert_eq!(
        context.response_shared_info2(&[9; 16], TIMESTAMP).len(),
        151
    );
}

#[test]
fn keys_after_prepare_and_fingerprint() {
    let master = MasterSecret::from_key(SymmetricKey::from_base64(MASTER_SECRET).unwrap());
    let keys = master.derive();
    assert_eq!(
        keys.possession.to_base64().as_str(),
        "4VB4rVV+rgiqMSOzIJK/AQ=="
    );
    assert_eq!(
        keys.knowledge.to_base64().as_str(),
        "9ZISsN1hnmVqGwjQTEqejg=="
    );
    assert_eq!(
        keys.biometry.to_base64().as_str(),
        "qaegH3O09sfmNdvKOxdIxQ=="
    );
    assert_eq!(
        keys.transport.to_base64().as_str(),
        "UgYWpZCvGXD4FMnje+CHiQ=="
    );
    let device = PublicKey::from_base64(DEVICE_PUBLIC_AS_SENT).unwrap();
    let server = PublicKey::from_base64(SERVER_PUBLIC).unwrap();
    assert_eq!(
        fingerprint::fingerprint_v3(&device, ACTIVATION_ID, &server),
        "43323483"
    );
}

/// The phone's side of the first status: the spec's encrypted blob opens with `KEY_TRANSPORT` as
/// derived from the master secret of the step before and says `ACTIVE`, in sync at counter 0. How
/// the server builds the blob byte by byte (IV, layout, encryption) is the crypto crate's
/// `status_blob` unit test of the same example.
#[test]
fn first_status_blob_opens_with_the_derived_transport_key() {
    let transport = MasterSecret::from_key(SymmetricKey::from_base64(MASTER_SECRET).unwrap())
        .derive()
        .transport;
    let ctr = CounterData::from_base64("C2t1yFMbxW/6yg8g9TQEfA==").unwrap();
    let challenge: [u8; 16] = b64::decode_array("Si/DW5OsPDvcnuwMDFqQtA==").unwrap();
    let nonce: [u8; 16] = b64::decode_array("keHHiNrfkTRQMg7y5yGjBQ==").unwrap();
    let encrypted: [u8; 32] =
        b64::decode_array("JNny2oSGOqKz8zu1sOIl6nfWudwRwIaRfvTx7VHzcEs=").unwrap();
    let received = status_blob::decrypt(&transport, &challenge, &nonce, &encrypted).unwrap();
    assert_eq!(received.status, ActivationStatus::Active);
    assert_eq!((received.current_version, received.upgrade_version), (3, 3));
    assert_eq!(
        (received.failed_attempts, received.max_failed_attempts),
        (0, 5)
    );
    assert_eq!(
        status_blob::counter_sync(&transport, &ctr, 0, &received),
        CounterSync::InSync
    );
}
