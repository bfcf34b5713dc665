//! Property: a QR payload with any one byte changed is refused by the token, and a refusal changes
//! nothing in the token's state.
#![allow(clippy::unwrap_used)]

use offline_signer_crypto::{CounterData, FactorKeys, PrivateKey, SymmetricKey};
use offline_token::{SignOptions, Token, TokenError, TokenState};
use proptest::prelude::*;

/// The ECDSA check vector of `powerauth-offline.md` §11 (indicator `1`).
const WORKED_QR: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425\nB\nAD8bOO0Df73kNaIGb3Vmpg==\n1MEUCIQCe2urpMWYRSmx1/GIiOHImHe9wEPZLCHghRBhc8ssZ0wIgbdYNS2aRUmlLoQBEOSClWNLI3Z0Ys1d72o0MFAsvbZ8=";

fn state() -> TokenState {
    let server = PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
    let mut other = [0u8; 32];
    other[31] = 5;
    TokenState {
        server_url: "http://127.0.0.1:8080".into(),
        application_id: "demo".into(),
        user_id: "alice".into(),
        activation_id: "c564e700-7e86-4a87-b6c8-a5a0cc89683f".into(),
        device_public_key: server.public_key(),
        server_public_key: server.public_key(),
        // A different master key: flipping the indicator to '0' must not help.
        master_public_key: PrivateKey::from_scalar_bytes(&other).unwrap().public_key(),
        factor_keys: FactorKeys::new(
            SymmetricKey::from_bytes([1; 16]),
            SymmetricKey::from_bytes([2; 16]),
            SymmetricKey::from_bytes([3; 16]),
        ),
        counter_data: CounterData::from_bytes([7; 16]),
        counter: 0,
        transport_key: None,
        protocol_version: None,
    }
}

#[test]
fn the_untouched_payload_is_accepted() {
    let mut token = Token::new(state());
    assert!(token.sign(WORKED_QR, &SignOptions::default()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_changed_byte_is_refused(index in 0..WORKED_QR.len(), mask in 1u8..=255) {
        let mut bytes = WORKED_QR.as_bytes().to_vec();
        bytes[index] ^= mask;
        // Only text can be a QR payload for the token; invalid UTF-8 never reaches it.
        if let Ok(text) = String::from_utf8(bytes) {
            let mut token = Token::new(state());
            let result = token.sign(&text, &SignOptions::default());
            prop_assert!(
                matches!(
                    result,
                    Err(TokenError::ForgedPayload(_) | TokenError::MalformedPayload(_))
                ),
                "byte {} ^ {:#04x} was accepted", index, mask
            );
            prop_assert_eq!(token.state(), &state());
        }
    }
}
