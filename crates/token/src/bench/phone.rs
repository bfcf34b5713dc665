//! The benchmark's phones: one [`TokenState`] per registered activation, and the codes each shows,
//! made by the mobile-token simulator itself ([`Token::sign`]: the QR's ECDSA signature checked with
//! the master key, the code computed over the normalized data at the token's counter, the counter
//! advanced) so that the service is loaded with exactly what a phone would send.
//!
//! The seeding step writes every state as one line of JSON ([`TokenState::to_json_line`]) to a device
//! file (mode 0600, under `target/bench`; these are throwaway test devices on a throwaway token).

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use crate::{SignOptions, SignedOperation, Token, TokenError, TokenState};

use super::BenchError;

/// Operation id of every payload the benchmark signs and verifies (a Web Flow payment).
pub const OPERATION_ID: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6";
/// Operation data of every payload (amount, account, due date).
pub const OPERATION_DATA: &str = "A1*A100CZK*ICZ2730300000001165254011*D20180425";

/// The Web Flow `DATA` every create signs (a payment with the `B` flag).
pub fn payload_data() -> String {
    format!("{OPERATION_ID}\nPayment\nPlease confirm this payment\n{OPERATION_DATA}\nB")
}

/// Has the token approve `offline_data` with the PIN (possession + knowledge, 8 digits), after
/// moving its counter `skip` positions ahead, as if the phone had shown `skip` codes nobody typed.
/// The state keeps the advanced counter.
pub fn sign(
    state: &mut TokenState,
    offline_data: &str,
    skip: u32,
) -> Result<SignedOperation, TokenError> {
    let mut moved = state.clone();
    moved.counter_data = moved.counter_data.advance(skip);
    moved.counter += u64::from(skip);
    let mut token = Token::new(moved);
    let signed = token.sign(offline_data, &SignOptions::default())?;
    *state = token.into_state();
    Ok(signed)
}

/// Appends states to the device file (created with mode 0600 when missing), one JSON line each.
pub fn append(path: &Path, states: &[TokenState]) -> Result<(), BenchError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| io_error(path, &e))?;
    let mut out = std::io::BufWriter::new(file);
    for state in states {
        out.write_all(&state.to_json_line())
            .map_err(|e| io_error(path, &e))?;
    }
    out.flush().map_err(|e| io_error(path, &e))
}

/// Reads every state of the device file, in order.
pub fn load(path: &Path) -> Result<Vec<TokenState>, BenchError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut states = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = zeroize::Zeroizing::new(line.map_err(|e| io_error(path, &e))?);
        if !line.is_empty() {
            states.push(
                TokenState::from_json(line.as_bytes(), path)
                    .map_err(|e| BenchError::Devices(e.to_string()))?,
            );
        }
    }
    Ok(states)
}

fn io_error(path: &Path, e: &std::io::Error) -> BenchError {
    BenchError::Devices(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::offline_data::DEFAULT_URI_ID;
    use crate::crypto::{
        ComponentLength, CounterData, FactorKeys, KeyIndicator, MasterSecret, PrivateKey,
        RequestData, SignatureType, SymmetricKey, UnsignedOfflineData, WindowSearch, ecdsa,
    };

    fn state(master: &PrivateKey) -> TokenState {
        let server = PrivateKey::from_scalar_bytes(&[3; 32]).expect("a valid scalar");
        TokenState {
            server_url: "http://127.0.0.1:1".into(),
            application_id: "bench".into(),
            user_id: "bench-user".into(),
            activation_id: "a1".into(),
            device_public_key: server.public_key(),
            server_public_key: server.public_key(),
            master_public_key: master.public_key(),
            factor_keys: FactorKeys::from_master_secret(&MasterSecret::from_key(
                SymmetricKey::from_bytes([7; 16]),
            )),
            counter_data: CounterData::from_bytes([9; 16]),
            counter: 0,
            transport_key: None,
            protocol_version: None,
        }
    }

    #[test]
    fn device_file_round_trips() {
        let master = PrivateKey::from_scalar_bytes(&[5; 32]).expect("a valid scalar");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("devices.jsonl");
        let a = state(&master);
        let mut b = state(&master);
        b.activation_id = "a2".into();
        append(&path, std::slice::from_ref(&a)).expect("append");
        append(&path, std::slice::from_ref(&b)).expect("append");
        assert_eq!(load(&path).expect("load"), vec![a, b]);
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn codes_are_found_by_the_server_window_at_the_skipped_position() {
        let master = PrivateKey::from_scalar_bytes(&[5; 32]).expect("a valid scalar");
        let mut phone = state(&master);
        let start = phone.counter_data;
        let nonce = "AAAAAAAAAAAAAAAAAAAAAA==";
        let unsigned = UnsignedOfflineData::new(&payload_data(), None, nonce, KeyIndicator::Master);
        let signature = ecdsa::sign(&master, unsigned.signed_bytes());
        let qr = unsigned.finish(&signature);
        let signed = sign(&mut phone, &qr, 5).expect("the token accepts the QR");
        let expected =
            RequestData::for_operation(DEFAULT_URI_ID, nonce, OPERATION_ID, OPERATION_DATA, None);
        assert_eq!(signed.data, expected.as_str());
        let candidates = [expected.to_data_to_sign()];
        let found = WindowSearch {
            keys: &phone.factor_keys,
            counter: start,
            allowed_types: &[SignatureType::PossessionKnowledge],
            candidates: &candidates,
            lookahead: 20,
            component_length: ComponentLength::new(8).expect("valid"),
            code: &signed.code,
        }
        .find()
        .expect("the code is in the window");
        assert_eq!(found.position, 5);
        assert_eq!(phone.counter_data, start.advance(6));
        assert_eq!(phone.counter, 6);
    }
}
