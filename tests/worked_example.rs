//! The worked end-to-end example of `spec/powerauth-offline.md` §11 as our own test data (the values
//! are hard-coded from the spec, which cross-checked them against upstream's Java library).

use offline_signer::crypto::offline_data::{self, DEFAULT_URI_ID};
use offline_signer::crypto::signature::{self, compute_components};
use offline_signer::crypto::{
    ComponentLength, CounterData, DataToSign, FactorKeys, KeyIndicator, MasterSecret, OfflineData,
    PrivateKey, PublicKey, RequestData, SignatureType, WindowMatch, WindowSearch, totp,
};

const SERVER_PRIVATE: &str = "AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc";
const SERVER_PUBLIC: &str =
    "BP0G8/tV/kDLDaGCQmoeaOAabLQXjYF/6lgqVpUI3cS6FTTtIzPzOY137vyZFSthKorKvq0iih1PLUeeEFUkAGE=";
const DEVICE_PUBLIC: &str =
    "BH/XZpylbWzTHS9LWR7ckCfHPPOG0MrsP9C2hmXXgQYpzmKSP4w0SpZz5227RKpEGkIq3Jew6p3KxrbUGDTC+nU=";
const MASTER_SECRET: &str = "3dgzZJ/h4QsBXia/PIaRsQ==";
const KP: &str = "UUOQH89Hoa/Nw7ew5rGTPw==";
const KK: &str = "hjHWTy3HA3nQdDcdnJbRMw==";
const KB: &str = "S9fNvGUhUafp18upFWzCoA==";
const TRANSPORT: &str = "5mRJ2b9PS9heFpVuyzYYYA==";

const CTR: [(&str, &str); 5] = [
    (
        "AAECAwQFBgcICQoLDA0ODw==",
        "000102030405060708090a0b0c0d0e0f",
    ),
    (
        "/YNTdqZj00BmQB2s9BJ5bA==",
        "fd835376a663d34066401dacf412796c",
    ),
    (
        "1Qwi5BtkMbGCXgzl0VupGQ==",
        "d50c22e41b6431b1825e0ce5d15ba919",
    ),
    (
        "8VdaAjVJA9ZfvAZBcUPSSQ==",
        "f1575a02354903d65fbc06417143d249",
    ),
    (
        "hh+al6CkmfqaEWnM5qlUfQ==",
        "861f9a97a0a499fa9a1169cce6a9547d",
    ),
];

const OPERATION_ID: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6";
const OPERATION_DATA: &str = "A1*A100CZK*ICZ2730300000001165254011*D20180425";
const NONCE: &str = "AD8bOO0Df73kNaIGb3Vmpg==";
const REQUEST_DATA: &str = "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AD8bOO0Df73kNaIGb3Vmpg==&NWZmMWIxZWQtYTNjYy00NWEzLThhYjAtZWQ2MDk1MDMxMmI2JkExKkExMDBDWksqSUNaMjczMDMwMDAwMDAwMTE2NTI1NDAxMSpEMjAxODA0MjU=";
const REQUEST_DATA_TOTP: &str = "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AD8bOO0Df73kNaIGb3Vmpg==&NWZmMWIxZWQtYTNjYy00NWEzLThhYjAtZWQ2MDk1MDMxMmI2JkExKkExMDBDWksqSUNaMjczMDMwMDAwMDAwMTE2NTI1NDAxMSpEMjAxODA0MjUmNjI3OTM5MjM=";

/// (possession_knowledge L=8, possession_biometry L=8, possession_knowledge L=4) per ctr index.
const CODES: [(&str, &str, &str); 5] = [
    ("29703108-68382858", "29703108-17227518", "3108-2858"),
    ("86435449-95476512", "86435449-21970772", "5449-6512"),
    ("92510869-07292276", "92510869-15335316", "0869-2276"),
    ("26556379-88347212", "26556379-99597121", "6379-7212"),
    ("83974001-01909017", "83974001-60861972", "4001-9017"),
];

const OFFLINE_DATA: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425\nB\nAD8bOO0Df73kNaIGb3Vmpg==\n1MEUCIQCe2urpMWYRSmx1/GIiOHImHe9wEPZLCHghRBhc8ssZ0wIgbdYNS2aRUmlLoQBEOSClWNLI3Z0Ys1d72o0MFAsvbZ8=";

fn keys() -> FactorKeys {
    let master = MasterSecret::agree(
        &PrivateKey::from_base64(SERVER_PRIVATE).expect("server private key"),
        &PublicKey::from_base64(DEVICE_PUBLIC).expect("device public key"),
    );
    FactorKeys::from_master_secret(&master)
}

fn ctr(i: usize) -> CounterData {
    CounterData::from_base64(CTR[i].0).expect("counter")
}

fn data_to_sign() -> DataToSign {
    RequestData::parse(REQUEST_DATA)
        .expect("four parts")
        .to_data_to_sign()
}

fn scan(
    counter: CounterData,
    types: &[SignatureType],
    candidates: &[DataToSign],
    lookahead: u32,
    code: &str,
) -> Option<WindowMatch> {
    WindowSearch {
        keys: &keys(),
        counter,
        allowed_types: types,
        candidates,
        lookahead,
        component_length: ComponentLength::DEFAULT,
        code,
    }
    .find()
}

const PK: SignatureType = SignatureType::PossessionKnowledge;
const PB: SignatureType = SignatureType::PossessionBiometry;

#[test]
fn master_secret_and_derived_keys() {
    let server = PrivateKey::from_base64(SERVER_PRIVATE).unwrap();
    assert_eq!(server.to_java_bytes().len(), 33, "leading 0x00 form");
    assert_eq!(server.public_key().to_base64(), SERVER_PUBLIC);
    let master = MasterSecret::agree(&server, &PublicKey::from_base64(DEVICE_PUBLIC).unwrap());
    assert_eq!(master.as_key().to_base64().as_str(), MASTER_SECRET);
    let derived = master.derive();
    assert_eq!(derived.possession.to_base64().as_str(), KP);
    assert_eq!(derived.knowledge.to_base64().as_str(), KK);
    assert_eq!(derived.biometry.to_base64().as_str(), KB);
    assert_eq!(derived.transport.to_base64().as_str(), TRANSPORT);
}

#[test]
fn counter_chain() {
    for (i, (b64, hex)) in CTR.iter().enumerate() {
        let c = ctr(0).advance(i as u32);
        assert_eq!(c.to_base64(), *b64, "ctr[{i}]");
        assert_eq!(hex::encode(c.as_bytes()), *hex, "ctr[{i}]");
    }
}

#[test]
fn request_data_and_data_to_sign() {
    let built =
        RequestData::for_operation(DEFAULT_URI_ID, NONCE, OPERATION_ID, OPERATION_DATA, None);
    assert_eq!(built.as_str(), REQUEST_DATA);
    assert_eq!(built.nonce(), NONCE);
    let d = built.to_data_to_sign();
    assert_eq!(d.as_bytes().len(), 191);
    assert_eq!(d.as_bytes(), format!("{REQUEST_DATA}&offline").as_bytes());
}

#[test]
fn intermediate_components_at_ctr0() {
    let k = keys();
    let comps = compute_components(&k.keys_for(PK), &ctr(0), data_to_sign().as_bytes()).unwrap();
    let c0 = hex::encode(comps[0].0);
    let c1 = hex::encode(comps[1].0);
    assert!(
        c0.starts_with("f7a3c42f") && c0.ends_with("ab7e62c4"),
        "{c0}"
    );
    assert!(
        c1.starts_with("4695c99c") && c1.ends_with("9beaf48a"),
        "{c1}"
    );
    assert_eq!(
        comps[0].decimal_value(ComponentLength::DEFAULT),
        729_703_108 % 100_000_000
    );
    assert_eq!(
        comps[1].decimal_value(ComponentLength::DEFAULT),
        468_382_858 % 100_000_000
    );
}

#[test]
fn all_fifteen_codes() {
    let k = keys();
    let d = data_to_sign();
    let l4 = ComponentLength::new(4).unwrap();
    for (i, (pk8, pb8, pk4)) in CODES.iter().enumerate() {
        let c = ctr(i);
        assert_eq!(
            signature::decimal_signature(&k, PK, &c, d.as_bytes(), ComponentLength::DEFAULT),
            *pk8,
            "ctr {i}"
        );
        assert_eq!(
            signature::decimal_signature(&k, PB, &c, d.as_bytes(), ComponentLength::DEFAULT),
            *pb8,
            "ctr {i}"
        );
        assert_eq!(
            signature::decimal_signature(&k, PK, &c, d.as_bytes(), l4),
            *pk4,
            "ctr {i}"
        );
    }
}

#[test]
fn lookahead_scenario_and_replay() {
    let d = [data_to_sign()];
    let m = scan(ctr(0), &[PK], &d, 20, CODES[3].0).expect("index 3 is inside the window");
    assert_eq!(m.position, 3);
    assert_eq!(m.signature_type, PK);
    assert_eq!(m.candidate, 0);
    assert_eq!(m.counter_data, ctr(3));
    assert_eq!(m.next_counter_data, ctr(4));
    assert_eq!(m.next_counter_data.to_base64(), "hh+al6CkmfqaEWnM5qlUfQ==");
    // Same code again at the new state (ctr[4]) is behind the window.
    assert!(scan(m.next_counter_data, &[PK], &d, 20, CODES[3].0).is_none());
    // Biometry only when allowed, and tried after POSSESSION_KNOWLEDGE.
    assert!(scan(ctr(0), &[PK], &d, 20, CODES[3].1).is_none());
    let b = scan(ctr(0), &[PK, PB], &d, 20, CODES[3].1).expect("biometry allowed");
    assert_eq!(
        (b.position, b.signature_type, b.next_counter_data),
        (3, PB, ctr(4))
    );
}

#[test]
fn l4_codes_match_with_length_four() {
    let d = [data_to_sign()];
    let m = WindowSearch {
        keys: &keys(),
        counter: ctr(0),
        allowed_types: &[PK],
        candidates: &d,
        lookahead: 20,
        component_length: ComponentLength::new(4).unwrap(),
        code: CODES[2].2,
    }
    .find()
    .expect("L=4 code");
    assert_eq!(m.position, 2);
}

#[test]
fn lookahead_edge() {
    let k = keys();
    let d = [data_to_sign()];
    let at = |p: u32| {
        signature::decimal_signature(
            &k,
            PK,
            &ctr(0).advance(p),
            d[0].as_bytes(),
            ComponentLength::DEFAULT,
        )
    };
    assert_eq!(
        scan(ctr(0), &[PK], &d, 20, &at(19)).map(|m| m.position),
        Some(19)
    );
    assert!(scan(ctr(0), &[PK], &d, 20, &at(20)).is_none());
    assert_eq!(
        scan(ctr(0), &[PK], &d, 21, &at(20)).map(|m| m.position),
        Some(20)
    );
    assert!(scan(ctr(0), &[PK], &d, 0, CODES[0].0).is_none());
}

#[test]
fn proximity_variant() {
    let seed: Vec<u8> = (0u8..32).collect();
    assert_eq!(
        offline_signer::crypto::b64::encode(&seed),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    );
    assert_eq!(totp::totp(&seed, 1_700_000_000, 30, 8).unwrap(), "62793923");
    assert_eq!(
        totp::totp(&seed, 1_700_000_000 - 30, 30, 8).unwrap(),
        "81909593"
    );

    let plain = RequestData::parse(REQUEST_DATA).unwrap();
    let with_totp = plain.with_proximity_totp("62793923").unwrap();
    assert_eq!(with_totp.as_str(), REQUEST_DATA_TOTP);
    let code = "69974790-64981258";
    assert_eq!(
        signature::decimal_signature(
            &keys(),
            PK,
            &ctr(0),
            with_totp.to_data_to_sign().as_bytes(),
            ComponentLength::DEFAULT
        ),
        code
    );

    // Server side: candidates from the TOTP-less data, current step first.
    let candidates_at = |now: u64| -> Vec<DataToSign> {
        totp::totp_candidates(&seed, now, 30, 1, 8)
            .unwrap()
            .iter()
            .map(|otp| plain.with_proximity_totp(otp).unwrap().to_data_to_sign())
            .collect()
    };
    let now = candidates_at(1_700_000_000);
    assert_eq!(
        scan(ctr(0), &[PK], &now, 20, code).map(|m| (m.position, m.candidate)),
        Some((0, 0))
    );
    // One step later the code still matches through the previous-step candidate.
    let later = candidates_at(1_700_000_000 + 30);
    assert_eq!(
        scan(ctr(0), &[PK], &later, 20, code).map(|m| m.candidate),
        Some(1)
    );
    assert_eq!(
        plain
            .proximity_candidates(&seed, 1_700_000_000 + 30, 30, 1, 8)
            .unwrap(),
        later
    );
    // Two steps later it is outside stepCount = 1; without proximity it never matches.
    assert!(scan(ctr(0), &[PK], &candidates_at(1_700_000_000 + 60), 20, code).is_none());
    assert!(scan(ctr(0), &[PK], &[plain.to_data_to_sign()], 20, code).is_none());
}

#[test]
fn ecdsa_check_vector() {
    let parsed = OfflineData::parse(OFFLINE_DATA).expect("parses");
    assert_eq!(parsed.indicator(), KeyIndicator::Personalized);
    assert_eq!(parsed.nonce(), NONCE);
    assert_eq!(parsed.signature().as_bytes().len(), 71);
    assert!(
        parsed
            .signed_bytes()
            .ends_with(b"\nAD8bOO0Df73kNaIGb3Vmpg==\n1")
    );
    let server_public = PublicKey::from_base64(SERVER_PUBLIC).unwrap();
    parsed
        .verify(&server_public)
        .expect("the spec's signature verifies");
    assert!(
        parsed
            .verify(&PublicKey::from_base64(DEVICE_PUBLIC).unwrap())
            .is_err(),
        "wrong key"
    );

    let web = parsed.web_flow().expect("7 lines");
    assert_eq!(
        (
            web.operation_id,
            web.title,
            web.operation_data,
            web.flags,
            web.totp
        ),
        (OPERATION_ID, "Payment", OPERATION_DATA, "B", None)
    );
    assert!(web.allows_biometry());
    assert_eq!(
        web.request_data(DEFAULT_URI_ID, parsed.nonce()).as_str(),
        REQUEST_DATA
    );

    // A flipped byte anywhere makes parsing or verification fail.
    for i in 0..OFFLINE_DATA.len() {
        let mut bytes = OFFLINE_DATA.as_bytes().to_vec();
        bytes[i] ^= 0x01;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let ok = OfflineData::parse(&text).and_then(|p| p.verify(&server_public));
        assert!(ok.is_err(), "flipping byte {i} still verified");
    }
}

#[test]
fn create_side_reproduces_signed_bytes() {
    let data = OFFLINE_DATA
        .split('\n')
        .take(5)
        .collect::<Vec<_>>()
        .join("\n");
    let unsigned =
        offline_data::UnsignedOfflineData::new(&data, None, NONCE, KeyIndicator::Personalized);
    let parsed = OfflineData::parse(OFFLINE_DATA).unwrap();
    assert_eq!(unsigned.signed_bytes(), parsed.signed_bytes());
    assert_eq!(unsigned.clone().finish(parsed.signature()), OFFLINE_DATA);
    let server_public = PublicKey::from_base64(SERVER_PUBLIC).unwrap();
    offline_signer::crypto::ecdsa::verify_digest(
        &server_public,
        &unsigned.digest(),
        parsed.signature(),
    )
    .unwrap();
}
