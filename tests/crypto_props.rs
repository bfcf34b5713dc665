//! Property tests of the laws in `crypto`: encode∘decode is the identity for every key and
//! signature encoding, and any flipped byte of the signed data, of the code or of `offlineData`
//! makes verification fail.

use offline_signer::crypto::offline_data::UnsignedOfflineData;
use offline_signer::crypto::signature::decimal_signature;
use offline_signer::crypto::{
    ComponentLength, CounterData, DataToSign, DerSignature, FactorKeys, KeyIndicator, OfflineData,
    PrivateKey, PublicKey, SignatureType, SymmetricKey, WindowSearch, b64, ecdsa,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

/// A valid private key from 32 random bytes (`prop_filter` drops the ~2^-32 invalid scalars).
fn private_key() -> impl Strategy<Value = PrivateKey> {
    any::<[u8; 32]>().prop_filter_map("scalar in 1..n", |b| PrivateKey::from_scalar_bytes(&b).ok())
}

fn factor_keys() -> impl Strategy<Value = FactorKeys> {
    any::<[[u8; 16]; 3]>().prop_map(|[p, k, b]| {
        FactorKeys::new(
            SymmetricKey::from_bytes(p),
            SymmetricKey::from_bytes(k),
            SymmetricKey::from_bytes(b),
        )
    })
}

/// Multi-factor types only: with a 1FA code of 4 digits, a flipped input would collide with one of
/// the 20 window positions with probability 2·10^-3, which a property test would hit; for 2FA and
/// 3FA the chance is at most 20·10^-8 per case.
fn multi_factor_type() -> impl Strategy<Value = SignatureType> {
    prop::sample::select(
        SignatureType::ALL
            .into_iter()
            .filter(|t| t.factors().len() >= 2)
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn public_key_round_trips(key in private_key()) {
        let public = key.public_key();
        prop_assert_eq!(PublicKey::from_sec1(&public.to_uncompressed()).unwrap(), public);
        prop_assert_eq!(PublicKey::from_sec1(&public.to_compressed()).unwrap(), public);
        prop_assert_eq!(PublicKey::from_base64(&public.to_base64()).unwrap(), public);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&public.to_uncompressed());
        prop_assert_eq!(PublicKey::from_ec_point(&wrapped).unwrap(), public);
        prop_assert_eq!(PublicKey::from_ec_point(&public.to_uncompressed()).unwrap(), public);
    }

    #[test]
    fn java_private_key_round_trips(key in private_key()) {
        let java = key.to_java_bytes();
        prop_assert!(java.len() <= 33);
        // Minimal two's complement: a leading 0x00 only when the next byte has its top bit set.
        prop_assert!(java[0] != 0 || (java.len() > 1 && java[1] & 0x80 != 0));
        prop_assert!(java[0] & 0x80 == 0, "never negative");
        let back = PrivateKey::from_java_bytes(&java).unwrap();
        prop_assert_eq!(back.to_scalar_bytes(), key.to_scalar_bytes());
        prop_assert_eq!(PrivateKey::from_base64(&key.to_base64()).unwrap().to_scalar_bytes(), key.to_scalar_bytes());
        // Extra leading zeros are tolerated on read.
        let mut padded = vec![0u8, 0];
        padded.extend_from_slice(&java);
        prop_assert_eq!(PrivateKey::from_java_bytes(&padded).unwrap().to_scalar_bytes(), key.to_scalar_bytes());
    }

    #[test]
    fn der_raw_round_trip(r in private_key(), s in private_key()) {
        let mut raw = [0u8; 64];
        raw[..32].copy_from_slice(&*r.to_scalar_bytes());
        raw[32..].copy_from_slice(&*s.to_scalar_bytes());
        let der = DerSignature::from_raw(&raw).unwrap();
        prop_assert_eq!(der.to_raw(), raw);
        prop_assert_eq!(DerSignature::from_der(der.as_bytes()).unwrap(), der.clone());
        prop_assert_eq!(DerSignature::from_base64(&der.to_base64()).unwrap(), der);
    }

    #[test]
    fn base64_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        prop_assert_eq!(b64::decode(&b64::encode(&bytes)).unwrap(), bytes);
    }

    #[test]
    fn flipped_data_or_code_fails_the_window_scan(
        keys in factor_keys(),
        counter in any::<[u8; 16]>(),
        data in prop::collection::vec(any::<u8>(), 1..300),
        t in multi_factor_type(),
        length in 4i64..=8,
        position in 0u32..20,
        flip_index in any::<prop::sample::Index>(),
        flip_code in any::<bool>(),
        mask in 1u8..=0x7f,
    ) {
        let length = ComponentLength::new(length).unwrap();
        let counter = CounterData::from_bytes(counter);
        let code = decimal_signature(&keys, t, &counter.advance(position), &data, length);
        let search = |data: &[u8], code: &str| {
            WindowSearch {
                keys: &keys,
                counter,
                allowed_types: &[t],
                candidates: &[DataToSign::from_bytes(data.to_vec())],
                lookahead: 20,
                component_length: length,
                code,
            }
            .find()
        };
        prop_assert_eq!(search(&data, &code).map(|m| m.position), Some(position));
        if flip_code {
            let mut bytes = code.clone().into_bytes();
            let i = flip_index.index(bytes.len());
            bytes[i] ^= mask;
            let flipped = String::from_utf8(bytes).expect("ASCII stays ASCII under a 7-bit mask");
            prop_assert!(search(&data, &flipped).is_none());
        } else {
            let mut flipped = data.clone();
            let i = flip_index.index(flipped.len());
            flipped[i] ^= mask;
            prop_assert!(search(&flipped, &code).is_none());
        }
    }

    #[test]
    fn flipped_offline_data_fails_verification(
        key in private_key(),
        lines in prop::collection::vec("[ -~]{0,40}", 1..7),
        nonce in any::<[u8; 16]>(),
        personalized in any::<bool>(),
        flip_index in any::<prop::sample::Index>(),
        mask in 1u8..=0x7f,
    ) {
        let indicator = if personalized { KeyIndicator::Personalized } else { KeyIndicator::Master };
        let unsigned = UnsignedOfflineData::new(&lines.join("\n"), None, &b64::encode(nonce), indicator);
        let signature = ecdsa::sign(&key, unsigned.signed_bytes());
        let text = unsigned.finish(&signature);
        let public = key.public_key();
        let parsed = OfflineData::parse(&text).unwrap();
        prop_assert!(parsed.verify(&public).is_ok());
        let mut bytes = text.into_bytes();
        let i = flip_index.index(bytes.len());
        bytes[i] ^= mask;
        let flipped = String::from_utf8(bytes).expect("ASCII stays ASCII under a 7-bit mask");
        prop_assert!(OfflineData::parse(&flipped).and_then(|p| p.verify(&public)).is_err());
    }
}
