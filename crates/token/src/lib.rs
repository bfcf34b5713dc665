//! offline-token: the phone side of offline-signer, for development, tests and benchmarks.
//!
//! A software mobile token that activates against the service, checks QR payloads and shows offline
//! codes (`spec/powerauth-offline.md` §9), the QR rendering of payloads, and the HTTP load generator of
//! the benchmark. It knows the pure PowerAuth math ([`crypto`], the `offline-signer-crypto` crate) and
//! talks to the service over its public HTTP API only, as a phone and a bank's web application do.
//!
//! - [`Token::activate`]: makes a device key pair, registers and commits it through the
//!   [`client::Client`], checks the activation fingerprint, derives the factor keys and returns the
//!   [`TokenState`] to save. The device private key is dropped once the factor keys exist.
//! - [`Token::sign`]: parses an `offlineData` payload, refuses it unless its ECDSA signature verifies
//!   with the key its indicator names (server key for `1`, master key for `0`), decodes the operation
//!   for display ([`operation`]), computes the decimal code over
//!   `POST&B64(uriId)&NONCE&B64(OPERATION_ID&OPERATION_DATA[&TOTP])&offline` at the current counter,
//!   and advances the counter, as a phone does for every code it shows. The caller persists the state
//!   **before** showing the code ([`cli`] does).
//!
//! Modules: [`state`] (the state file), [`operation`] (the §5 grammar), [`client`] (the REST client
//! both the token and a web application use), [`cli`] (the `offline-token` token subcommands),
//! [`qr`] (QR codes), [`input`] (reading a payload from stdin), [`bench`] (the benchmark driver).

use std::fmt;

use serde::Serialize;

use crate::crypto::offline_data::DEFAULT_URI_ID;
use crate::crypto::signature::decimal_signature;
use crate::crypto::{
    ComponentLength, CounterData, CryptoError, FactorKeys, KeyIndicator, MasterSecret, OfflineData,
    PrivateKey, PublicKey, RequestData, SignatureType, fingerprint,
};

pub mod bench;
pub mod cli;
pub mod client;
pub mod input;
pub mod operation;
pub mod qr;
pub mod state;

pub use offline_signer_crypto as crypto;

pub use operation::Operation;
pub use state::{StateFileError, TokenState};

/// Why the token refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The QR text is not an `offlineData` payload (§4.3).
    #[error("not an offline-signature QR payload: {0}")]
    MalformedPayload(CryptoError),
    /// The payload has fewer than 7 lines, so it is not a Web Flow operation this token can show.
    #[error("the QR payload is not a Web Flow operation (it needs at least 7 lines)")]
    NotWebFlow,
    /// The ECDSA signature does not verify with the key the indicator names.
    #[error(
        "REFUSED: the QR code's signature does not verify with the {0} key; it was not made by \
         your bank's server for this token, or it was altered"
    )]
    ForgedPayload(&'static str),
    /// Biometry was asked for but the operation's flags do not contain `B`.
    #[error("REFUSED: this operation does not allow biometry (no B flag); approve it with the PIN")]
    BiometryNotAllowed,
    /// A component length outside 4..=8.
    #[error("invalid code length: {0}")]
    InvalidLength(CryptoError),
    /// A key from the server is not a P-256 public key, or `ctrData` is malformed.
    #[error("the server sent an invalid {0}")]
    InvalidServerValue(&'static str),
    /// The fingerprint the server computed differs from ours: someone may sit in the middle.
    #[error(
        "REFUSED: activation fingerprint mismatch (server says {server}, token computed {local}); \
         the activation was not committed"
    )]
    FingerprintMismatch {
        /// What the server reported.
        server: String,
        /// What the token computed.
        local: String,
    },
    /// The REST call failed.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] StateFileError),
    /// Reading the payload from stdin or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// How to sign one operation.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// Possession + biometry instead of possession + knowledge (needs the `B` flag).
    pub biometry: bool,
    /// Digits per component, 4..=8.
    pub length: ComponentLength,
    /// The `uriId` of the normalized data; Web Flow's `/operation/authorize/offline` by default.
    pub uri_id: String,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            biometry: false,
            length: ComponentLength::DEFAULT,
            uri_id: DEFAULT_URI_ID.to_owned(),
        }
    }
}

/// The result of approving one operation: the code and what the web application needs to verify it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedOperation {
    /// The code to type, e.g. `29703108-68382858`.
    pub code: String,
    /// The exact `data` the web application sends to verify: `RequestData` WITHOUT the TOTP (the
    /// server appends the TOTP itself, §8.1).
    pub data: String,
    /// The nonce line of the QR.
    pub nonce: String,
    /// `POSSESSION_KNOWLEDGE` or `POSSESSION_BIOMETRY`.
    pub signature_type: &'static str,
    /// Whether the web application must send `allowBiometry: true` (the QR had the `B` flag).
    pub allow_biometry: bool,
    /// Digits per component.
    pub component_length: u8,
    /// Which key signed the QR: `personalized` (`1`) or `master` (`0`).
    pub key: &'static str,
    /// The proximity TOTP, when the QR had one.
    pub proximity: Option<Proximity>,
    /// The activation the code belongs to.
    pub activation_id: String,
    /// Codes made by this token so far (after this one).
    pub counter: u64,
    /// The decoded operation (not serialized; shown to the user).
    #[serde(skip)]
    pub operation: Operation,
}

impl fmt::Debug for SignedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedOperation")
            .field("code", &"REDACTED")
            .field("data", &self.data)
            .field("signature_type", &self.signature_type)
            .field("proximity", &self.proximity)
            .finish_non_exhaustive()
    }
}

/// The proximity part of a signed QR.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proximity {
    /// The TOTP line the server put into the QR; the phone signed over it.
    pub totp: String,
}

/// A software mobile token around one [`TokenState`].
#[derive(Debug, Clone)]
pub struct Token {
    state: TokenState,
}

/// What [`Token::activate`] needs besides the client.
#[derive(Debug, Clone)]
pub struct Activation {
    /// The application to activate in.
    pub application_id: String,
    /// The user to register.
    pub user_id: String,
    /// Failed attempts before the server blocks (server default when `None`).
    pub max_failed_attempts: Option<u32>,
}

/// The token side of an activation between "key pair made" and "registered": holds the device
/// private key until [`PendingActivation::complete`] has derived the factor keys, then drops it.
#[derive(Debug)]
pub struct PendingActivation {
    device_private: PrivateKey,
    server_url: String,
    application_id: String,
    user_id: String,
}

impl PendingActivation {
    /// Draws a fresh device key pair (OS CSPRNG).
    pub fn new(server_url: &str, activation: &Activation) -> Self {
        Self {
            device_private: PrivateKey::generate(&mut rand::rngs::OsRng),
            server_url: server_url.to_owned(),
            application_id: activation.application_id.clone(),
            user_id: activation.user_id.clone(),
        }
    }

    /// The device public key to register.
    pub fn device_public_key(&self) -> PublicKey {
        self.device_private.public_key()
    }

    /// Checks the server's answer to register and derives the token state: the server public key
    /// and `ctrData` must be well formed, and the server's fingerprint must equal
    /// `fingerprint_v3(device, activationId, server)` computed here (else
    /// [`TokenError::FingerprintMismatch`]). The factor keys come from
    /// `KDF(REDUCE(ECDH_X(devicePrivate, serverPublic)), 1|2|3)`; the device private key is dropped.
    pub fn complete(
        self,
        registered: &client::Registered,
        master_public_key: &str,
    ) -> Result<TokenState, TokenError> {
        let master_public_key = PublicKey::from_base64(master_public_key)
            .map_err(|_| TokenError::InvalidServerValue("master public key"))?;
        let server_public_key = PublicKey::from_base64(&registered.server_public_key)
            .map_err(|_| TokenError::InvalidServerValue("server public key"))?;
        let counter_data = CounterData::from_base64(&registered.ctr_data)
            .map_err(|_| TokenError::InvalidServerValue("ctrData"))?;
        let device_public_key = self.device_public_key();
        let local = fingerprint::fingerprint_v3(
            &device_public_key,
            &registered.activation_id,
            &server_public_key,
        );
        if local != registered.device_public_key_fingerprint {
            return Err(TokenError::FingerprintMismatch {
                server: registered.device_public_key_fingerprint.clone(),
                local,
            });
        }
        let master = MasterSecret::agree(&self.device_private, &server_public_key);
        Ok(TokenState {
            server_url: self.server_url,
            application_id: self.application_id,
            user_id: self.user_id,
            activation_id: registered.activation_id.clone(),
            device_public_key,
            server_public_key,
            master_public_key,
            factor_keys: FactorKeys::from_master_secret(&master),
            counter_data,
            counter: 0,
        })
    }
}

impl Token {
    /// Wraps a state (loaded from a file or freshly activated).
    pub fn new(state: TokenState) -> Self {
        Self { state }
    }

    /// The state; persist it after [`Token::sign`] and before showing the code.
    pub fn state(&self) -> &TokenState {
        &self.state
    }

    /// Gives the state back.
    pub fn into_state(self) -> TokenState {
        self.state
    }

    /// Activates a new token: application detail (master key), a fresh device key pair, register,
    /// fingerprint check, commit. `persist` runs after the fingerprint check and **before** the
    /// commit, so that a committed activation always has its keys saved; if it fails nothing is
    /// committed.
    pub async fn activate(
        client: &client::Client,
        activation: &Activation,
        persist: impl FnOnce(&TokenState) -> Result<(), TokenError>,
    ) -> Result<Self, TokenError> {
        let detail = client
            .application_detail(&activation.application_id)
            .await?;
        let pending = PendingActivation::new(client.base_url(), activation);
        let registered = client
            .activation_register(&client::RegisterRequest {
                application_id: activation.application_id.clone(),
                user_id: activation.user_id.clone(),
                device_public_key: pending.device_public_key().to_base64(),
                max_failed_attempts: activation.max_failed_attempts,
                activation_flags: Vec::new(),
            })
            .await?;
        let state = pending.complete(&registered, &detail.master_public_key)?;
        persist(&state)?;
        client.activation_commit(&state.activation_id).await?;
        Ok(Self { state })
    }

    /// Checks and signs one QR payload, advancing the counter (see the module documentation).
    /// Nothing changes when it refuses.
    pub fn sign(
        &mut self,
        offline_data: &str,
        options: &SignOptions,
    ) -> Result<SignedOperation, TokenError> {
        let parsed = OfflineData::parse(offline_data).map_err(TokenError::MalformedPayload)?;
        let (key, key_name) = match parsed.indicator() {
            KeyIndicator::Personalized => (&self.state.server_public_key, "personalized"),
            KeyIndicator::Master => (&self.state.master_public_key, "master"),
        };
        parsed
            .verify(key)
            .map_err(|_| TokenError::ForgedPayload(key_name))?;
        let fields = parsed.web_flow().ok_or(TokenError::NotWebFlow)?;
        let operation = Operation::decode(
            fields.operation_id,
            fields.title,
            fields.message,
            fields.operation_data,
            fields.flags,
        );
        if options.biometry && !fields.allows_biometry() {
            return Err(TokenError::BiometryNotAllowed);
        }
        let signature_type = if options.biometry {
            SignatureType::PossessionBiometry
        } else {
            SignatureType::PossessionKnowledge
        };
        let nonce = parsed.nonce();
        let signed = fields.request_data(&options.uri_id, nonce);
        let code = decimal_signature(
            &self.state.factor_keys,
            signature_type,
            &self.state.counter_data,
            signed.to_data_to_sign().as_bytes(),
            options.length,
        );
        self.state.counter_data = self.state.counter_data.next();
        self.state.counter += 1;
        let for_verify = RequestData::for_operation(
            &options.uri_id,
            nonce,
            fields.operation_id,
            fields.operation_data,
            None,
        );
        Ok(SignedOperation {
            code,
            data: for_verify.as_str().to_owned(),
            nonce: nonce.to_owned(),
            signature_type: signature_type.wire_name(),
            allow_biometry: fields.allows_biometry(),
            component_length: options.length.get(),
            key: key_name,
            proximity: fields.totp.map(|t| Proximity { totp: t.to_owned() }),
            activation_id: self.state.activation_id.clone(),
            counter: self.state.counter,
            operation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{SymmetricKey, UnsignedOfflineData, ecdsa};

    // §11 of powerauth-offline.md.
    const SERVER_PRIVATE: &str = "AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc";
    const DEVICE_PUBLIC: &str =
        "BH/XZpylbWzTHS9LWR7ckCfHPPOG0MrsP9C2hmXXgQYpzmKSP4w0SpZz5227RKpEGkIq3Jew6p3KxrbUGDTC+nU=";
    const WORKED_QR: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425\nB\nAD8bOO0Df73kNaIGb3Vmpg==\n1MEUCIQCe2urpMWYRSmx1/GIiOHImHe9wEPZLCHghRBhc8ssZ0wIgbdYNS2aRUmlLoQBEOSClWNLI3Z0Ys1d72o0MFAsvbZ8=";
    const WORKED_DATA: &str = "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AD8bOO0Df73kNaIGb3Vmpg==&NWZmMWIxZWQtYTNjYy00NWEzLThhYjAtZWQ2MDk1MDMxMmI2JkExKkExMDBDWksqSUNaMjczMDMwMDAwMDAwMTE2NTI1NDAxMSpEMjAxODA0MjU=";
    const NONCE: &str = "AD8bOO0Df73kNaIGb3Vmpg==";
    const WEB_FLOW: &str = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425";

    fn server_key() -> PrivateKey {
        PrivateKey::from_base64(SERVER_PRIVATE).unwrap()
    }

    /// A state holding the §11 keys at counter `ctr[index]`; the master key is a different key.
    fn worked_state(index: u32) -> TokenState {
        let mut zero_to_15 = [0u8; 16];
        for (i, b) in zero_to_15.iter_mut().enumerate() {
            *b = i as u8;
        }
        TokenState {
            server_url: "http://127.0.0.1:8080".into(),
            application_id: "demo".into(),
            user_id: "alice".into(),
            activation_id: "c564e700-7e86-4a87-b6c8-a5a0cc89683f".into(),
            device_public_key: PublicKey::from_base64(DEVICE_PUBLIC).unwrap(),
            server_public_key: server_key().public_key(),
            master_public_key: master_key().public_key(),
            factor_keys: FactorKeys::new(
                SymmetricKey::from_base64("UUOQH89Hoa/Nw7ew5rGTPw==").unwrap(),
                SymmetricKey::from_base64("hjHWTy3HA3nQdDcdnJbRMw==").unwrap(),
                SymmetricKey::from_base64("S9fNvGUhUafp18upFWzCoA==").unwrap(),
            ),
            counter_data: CounterData::from_bytes(zero_to_15).advance(index),
            counter: u64::from(index),
        }
    }

    fn master_key() -> PrivateKey {
        let mut scalar = [0u8; 32];
        scalar[31] = 0x2a;
        PrivateKey::from_scalar_bytes(&scalar).unwrap()
    }

    fn qr(data: &str, totp: Option<&str>, indicator: KeyIndicator, key: &PrivateKey) -> String {
        let unsigned = UnsignedOfflineData::new(data, totp, NONCE, indicator);
        let sig = ecdsa::sign(key, unsigned.signed_bytes());
        unsigned.finish(&sig)
    }

    #[test]
    fn worked_example_codes_at_every_counter() {
        let expected = [
            ("29703108-68382858", "29703108-17227518", "3108-2858"),
            ("86435449-95476512", "86435449-21970772", "5449-6512"),
            ("92510869-07292276", "92510869-15335316", "0869-2276"),
            ("26556379-88347212", "26556379-99597121", "6379-7212"),
            ("83974001-01909017", "83974001-60861972", "4001-9017"),
        ];
        for (i, (pin, bio, short)) in expected.iter().enumerate() {
            let i = i as u32;
            let mut token = Token::new(worked_state(i));
            let signed = token.sign(WORKED_QR, &SignOptions::default()).unwrap();
            assert_eq!(signed.code, *pin, "possession_knowledge at ctr[{i}]");
            assert_eq!(signed.data, WORKED_DATA);
            assert_eq!(signed.nonce, NONCE);
            assert_eq!(signed.signature_type, "POSSESSION_KNOWLEDGE");
            assert!(signed.allow_biometry);
            assert_eq!(signed.key, "personalized");
            assert!(signed.proximity.is_none());
            assert_eq!(token.state().counter_data, worked_state(i + 1).counter_data);
            assert_eq!(token.state().counter, u64::from(i) + 1);

            let mut token = Token::new(worked_state(i));
            let options = SignOptions {
                biometry: true,
                ..SignOptions::default()
            };
            let signed = token.sign(WORKED_QR, &options).unwrap();
            assert_eq!(signed.code, *bio, "possession_biometry at ctr[{i}]");
            assert_eq!(signed.signature_type, "POSSESSION_BIOMETRY");

            let mut token = Token::new(worked_state(i));
            let options = SignOptions {
                length: ComponentLength::new(4).unwrap(),
                ..SignOptions::default()
            };
            assert_eq!(token.sign(WORKED_QR, &options).unwrap().code, *short);
        }
    }

    #[test]
    fn each_code_advances_the_counter() {
        let mut token = Token::new(worked_state(0));
        let codes: Vec<_> = (0..3)
            .map(|_| token.sign(WORKED_QR, &SignOptions::default()).unwrap().code)
            .collect();
        assert_eq!(
            codes,
            [
                "29703108-68382858",
                "86435449-95476512",
                "92510869-07292276"
            ]
        );
        assert_eq!(token.state().counter, 3);
    }

    #[test]
    fn proximity_code_signs_over_the_totp_but_data_omits_it() {
        let qr = qr(
            &format!("{WEB_FLOW}\nB"),
            Some("62793923"),
            KeyIndicator::Personalized,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        let signed = token.sign(&qr, &SignOptions::default()).unwrap();
        assert_eq!(signed.code, "69974790-64981258");
        assert_eq!(
            signed.data, WORKED_DATA,
            "the web application's data has no TOTP"
        );
        assert_eq!(signed.proximity.as_ref().unwrap().totp, "62793923");
        let json = serde_json::to_value(&signed).unwrap();
        assert_eq!(json["proximity"]["totp"], "62793923");
        assert_eq!(json["code"], "69974790-64981258");
        assert_eq!(json["signatureType"], "POSSESSION_KNOWLEDGE");
        assert_eq!(json["allowBiometry"], true);
        assert_eq!(json["data"], WORKED_DATA);
        assert_eq!(json["nonce"], NONCE);
    }

    #[test]
    fn non_personalized_qr_checks_the_master_key() {
        let qr0 = qr(
            &format!("{WEB_FLOW}\n"),
            None,
            KeyIndicator::Master,
            &master_key(),
        );
        let mut token = Token::new(worked_state(0));
        let signed = token.sign(&qr0, &SignOptions::default()).unwrap();
        assert_eq!(signed.key, "master");
        assert_eq!(signed.code, "29703108-68382858");
        assert!(!signed.allow_biometry);
        // The same content signed by the activation's key but claiming indicator 0 is refused.
        let wrong = qr(
            &format!("{WEB_FLOW}\n"),
            None,
            KeyIndicator::Master,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        assert!(matches!(
            token.sign(&wrong, &SignOptions::default()),
            Err(TokenError::ForgedPayload("master"))
        ));
    }

    #[test]
    fn refuses_a_tampered_qr_and_keeps_the_counter() {
        let bytes = WORKED_QR.as_bytes();
        for position in [0, 40, 60, 100, bytes.len() - 130, bytes.len() - 5] {
            let mut tampered = bytes.to_vec();
            tampered[position] ^= 0x01;
            let Ok(text) = String::from_utf8(tampered) else {
                continue;
            };
            let mut token = Token::new(worked_state(0));
            let err = token.sign(&text, &SignOptions::default()).unwrap_err();
            assert!(
                matches!(
                    err,
                    TokenError::ForgedPayload(_) | TokenError::MalformedPayload(_)
                ),
                "byte {position}: {err}"
            );
            assert_eq!(token.state(), &worked_state(0), "nothing advanced");
        }
    }

    #[test]
    fn refuses_a_qr_signed_by_the_wrong_key() {
        let other = PrivateKey::generate(&mut rand::rngs::OsRng);
        let forged = qr(
            &format!("{WEB_FLOW}\nB"),
            None,
            KeyIndicator::Personalized,
            &other,
        );
        let mut token = Token::new(worked_state(0));
        let err = token.sign(&forged, &SignOptions::default()).unwrap_err();
        assert!(matches!(err, TokenError::ForgedPayload("personalized")));
        assert!(err.to_string().contains("REFUSED"));
        assert_eq!(token.state().counter, 0);
    }

    #[test]
    fn biometry_needs_the_b_flag() {
        let no_b = qr(
            &format!("{WEB_FLOW}\nX"),
            None,
            KeyIndicator::Personalized,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        let options = SignOptions {
            biometry: true,
            ..SignOptions::default()
        };
        assert!(matches!(
            token.sign(&no_b, &options),
            Err(TokenError::BiometryNotAllowed)
        ));
        assert_eq!(token.state().counter, 0, "a refusal does not advance");
        assert!(token.sign(&no_b, &SignOptions::default()).is_ok());
    }

    #[test]
    fn refuses_non_web_flow_payloads() {
        let short = qr(
            "just one line",
            None,
            KeyIndicator::Personalized,
            &server_key(),
        );
        let mut token = Token::new(worked_state(0));
        assert!(matches!(
            token.sign(&short, &SignOptions::default()),
            Err(TokenError::NotWebFlow)
        ));
        assert!(matches!(
            token.sign("garbage", &SignOptions::default()),
            Err(TokenError::MalformedPayload(_))
        ));
    }

    #[test]
    fn activation_checks_the_fingerprint_and_derives_the_server_keys() {
        let activation = Activation {
            application_id: "demo".into(),
            user_id: "alice".into(),
            max_failed_attempts: None,
        };
        let pending = PendingActivation::new("http://127.0.0.1:8080", &activation);
        let device = pending.device_public_key();
        // Play the server: its own key pair, the same ECDH, the same KDF.
        let server = PrivateKey::generate(&mut rand::rngs::OsRng);
        let id = "0d2b7c1e-6f3a-4b8e-9c1d-2e3f4a5b6c7d";
        let mut registered = client::Registered {
            activation_id: id.into(),
            activation_status: "PENDING_COMMIT".into(),
            server_public_key: server.public_key().to_base64(),
            ctr_data: "AAECAwQFBgcICQoLDA0ODw==".into(),
            device_public_key_fingerprint: fingerprint::fingerprint_v3(
                &device,
                id,
                &server.public_key(),
            ),
        };
        let master = master_key().public_key().to_base64();
        let right = registered.device_public_key_fingerprint.clone();
        registered.device_public_key_fingerprint = "12345678".into();
        let again = PendingActivation {
            device_private: pending.device_private.clone(),
            ..PendingActivation::new("http://x", &activation)
        };
        assert!(matches!(
            again.complete(&registered, &master),
            Err(TokenError::FingerprintMismatch { .. })
        ));
        registered.device_public_key_fingerprint = right;
        let state = pending.complete(&registered, &master).unwrap();
        let expected = FactorKeys::from_master_secret(&MasterSecret::agree(&server, &device));
        assert_eq!(state.factor_keys, expected);
        assert_eq!(state.activation_id, id);
        assert_eq!(state.counter, 0);
        assert_eq!(
            state.fingerprint(),
            registered.device_public_key_fingerprint
        );
    }

    #[test]
    fn debug_hides_the_code() {
        let mut token = Token::new(worked_state(0));
        let signed = token.sign(WORKED_QR, &SignOptions::default()).unwrap();
        assert!(!format!("{signed:?}").contains("29703108"));
    }
}
