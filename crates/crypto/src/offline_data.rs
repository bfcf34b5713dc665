//! Normalized request data (`spec/powerauth-offline.md` §7.1, §8.1) and the `offlineData` QR
//! payload (§4).
//!
//! - [`RequestData`]: `POST&B64(UTF8(uriId))&NONCE&B64(body)`, what the caller sends to verify.
//!   [`DataToSign`] = `UTF8(REQUEST_DATA ‖ "&offline")`, the message `D` of the signature code.
//! - [`UnsignedOfflineData`]: `DATA\n[TOTP\n]NONCE\n{indicator}`, the exact bytes the server signs.
//!   [`UnsignedOfflineData::finish`] appends `B64(DER signature)` to give the `offlineData` string.
//! - [`OfflineData`]: a parsed `offlineData`, checked as the mobile token checks it (§4.3).

use std::fmt;

use super::ecdsa::{self, DerSignature};
use super::keys::PublicKey;
use super::{CryptoError, b64, totp};

/// The literal application secret of offline mode, appended as `"&offline"`.
pub const OFFLINE_APPLICATION_SECRET: &str = "offline";
/// The default `uriId` of Web Flow and the mobile token SDKs.
pub const DEFAULT_URI_ID: &str = "/operation/authorize/offline";
/// Length of a nonce in bytes.
pub const NONCE_LEN: usize = 16;

/// Which server key signed an `offlineData` payload (the character before the signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyIndicator {
    /// `'0'`: the application's master server key (non-personalized payload).
    Master,
    /// `'1'`: the activation's server key (personalized payload).
    Personalized,
}

impl KeyIndicator {
    /// The indicator character, `'0'` or `'1'`.
    pub fn as_char(self) -> char {
        match self {
            Self::Master => '0',
            Self::Personalized => '1',
        }
    }

    fn from_char(c: char) -> Option<Self> {
        match c {
            '0' => Some(Self::Master),
            '1' => Some(Self::Personalized),
            _ => None,
        }
    }
}

/// Draws a fresh nonce: Base64 of 16 random bytes (24 characters).
pub fn generate_nonce(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> String {
    let mut bytes = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut bytes);
    b64::encode(bytes)
}

/// Checks that `nonce` is canonical Base64 of exactly 16 bytes and returns the bytes.
pub fn decode_nonce(nonce: &str) -> Result<[u8; NONCE_LEN], CryptoError> {
    b64::decode_array::<NONCE_LEN>(nonce)
}

/// Normalized request data `METHOD&B64(UTF8(uriId))&NONCE&B64(body)` with exactly four `&` parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestData(String);

impl RequestData {
    /// Builds `POST&B64(UTF8(uri_id))&nonce&B64(body)`; `nonce` is used as is.
    pub fn new(uri_id: &str, nonce: &str, body: &[u8]) -> Self {
        Self(format!(
            "POST&{}&{}&{}",
            b64::encode(uri_id),
            nonce,
            b64::encode(body)
        ))
    }

    /// Builds the Web Flow request data, body `OPERATION_ID&OPERATION_DATA[&TOTP]`.
    pub fn for_operation(
        uri_id: &str,
        nonce: &str,
        operation_id: &str,
        operation_data: &str,
        totp: Option<&str>,
    ) -> Self {
        let mut body = format!("{operation_id}&{operation_data}");
        if let Some(totp) = totp {
            body.push('&');
            body.push_str(totp);
        }
        Self::new(uri_id, nonce, body.as_bytes())
    }

    /// Accepts the verify request's `data`: it must split on `&` into exactly four parts
    /// (an empty body is an empty fourth part). The parts are not otherwise checked here.
    pub fn parse(data: &str) -> Result<Self, CryptoError> {
        if data.split('&').count() != 4 {
            return Err(CryptoError::MalformedRequestData(
                "expected exactly four '&'-separated parts",
            ));
        }
        Ok(Self(data.to_owned()))
    }

    /// The nonce string: the third `&` part, as is.
    pub fn nonce(&self) -> &str {
        self.parts()[2]
    }

    /// The request data string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The proximity transformation of §8.1: the last part becomes
    /// `B64(UTF8(text(B64D(last)) ‖ "&" ‖ totp))`. Invalid UTF-8 in the decoded body is replaced by
    /// U+FFFD, as Java's `new String(bytes, UTF_8)` does; a non-canonical Base64 body is an error.
    pub fn with_proximity_totp(&self, totp: &str) -> Result<Self, CryptoError> {
        let parts = self.parts();
        let body = b64::decode(parts[3])?;
        let text = format!("{}&{}", String::from_utf8_lossy(&body), totp);
        Ok(Self(format!(
            "{}&{}&{}&{}",
            parts[0],
            parts[1],
            parts[2],
            b64::encode(text)
        )))
    }

    /// The candidate messages of §8.1 with a proximity check: for each TOTP of
    /// [`totp::totp_candidates`] (current step first, then `step_count` earlier steps),
    /// `DATA_TO_SIGN` of [`RequestData::with_proximity_totp`].
    pub fn proximity_candidates(
        &self,
        seed: &[u8],
        now_unix_seconds: u64,
        step_seconds: u64,
        step_count: u32,
        digits: u32,
    ) -> Result<Vec<DataToSign>, CryptoError> {
        totp::totp_candidates(seed, now_unix_seconds, step_seconds, step_count, digits)?
            .iter()
            .map(|otp| Ok(self.with_proximity_totp(otp)?.to_data_to_sign()))
            .collect()
    }

    /// `DATA_TO_SIGN = UTF8(self ‖ "&offline")`.
    pub fn to_data_to_sign(&self) -> DataToSign {
        DataToSign(format!("{}&{}", self.0, OFFLINE_APPLICATION_SECRET).into_bytes())
    }

    fn parts(&self) -> [&str; 4] {
        let mut it = self.0.split('&');
        let mut next = || it.next().expect("RequestData has exactly four parts");
        [next(), next(), next(), next()]
    }
}

impl fmt::Display for RequestData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The exact message bytes `D` of a signature code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataToSign(Vec<u8>);

impl DataToSign {
    /// Wraps raw message bytes (vector files MAC random bytes, not normalized strings).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The signed part of an `offlineData` payload: `DATA "\n" [TOTP "\n"] NONCE "\n" INDICATOR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedOfflineData(String);

impl UnsignedOfflineData {
    /// Lays out the payload of §4.1. `data` and `nonce` are used as is.
    pub fn new(data: &str, totp: Option<&str>, nonce: &str, indicator: KeyIndicator) -> Self {
        let mut text = String::with_capacity(data.len() + nonce.len() + 16);
        text.push_str(data);
        text.push('\n');
        if let Some(totp) = totp {
            text.push_str(totp);
            text.push('\n');
        }
        text.push_str(nonce);
        text.push('\n');
        text.push(indicator.as_char());
        Self(text)
    }

    /// The bytes the ECDSA signature covers (UTF-8 of the text, indicator included).
    pub fn signed_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// `SHA-256(signed_bytes)`: what an HSM signs with `CKM_ECDSA`.
    pub fn digest(&self) -> [u8; 32] {
        ecdsa::message_digest(self.signed_bytes())
    }

    /// The final `offlineData`: the signed text followed directly by `B64(DER signature)`.
    pub fn finish(self, signature: &DerSignature) -> String {
        let mut text = self.0;
        text.push_str(&signature.to_base64());
        text
    }
}

/// The Web Flow fields of an `offlineData` payload with at least 7 lines (§4.3, §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebFlowFields<'a> {
    /// Line 0: the operation id.
    pub operation_id: &'a str,
    /// Line 1: the title.
    pub title: &'a str,
    /// Line 2: the message.
    pub message: &'a str,
    /// Line 3: the operation data, e.g. `A1*A100CZK*...`.
    pub operation_data: &'a str,
    /// Line 4: the flags, e.g. `B`.
    pub flags: &'a str,
    /// Line 5 when there are more than 7 lines: the proximity TOTP.
    pub totp: Option<&'a str>,
}

impl WebFlowFields<'_> {
    /// Whether the `B` flag (biometry allowed) is set.
    pub fn allows_biometry(&self) -> bool {
        self.flags.contains('B')
    }

    /// The request data the app signs: body `OPERATION_ID&OPERATION_DATA[&TOTP]` under `uri_id`.
    pub fn request_data(&self, uri_id: &str, nonce: &str) -> RequestData {
        RequestData::for_operation(
            uri_id,
            nonce,
            self.operation_id,
            self.operation_data,
            self.totp,
        )
    }
}

/// A parsed and shape-checked `offlineData` payload. The signature is checked by [`OfflineData::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineData {
    text: String,
    signed_len: usize,
    indicator: KeyIndicator,
    signature: DerSignature,
}

impl OfflineData {
    /// Parses `DATA\n...\nNONCE\n{0|1}B64(DER)` (§4.3): at least 3 lines; last line = indicator
    /// `'0'`/`'1'` + canonical Base64 of a 64..=255-byte strict DER signature; the line before it =
    /// a 24-character nonce that decodes to 16 bytes.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() < 3 {
            return Err(CryptoError::MalformedOfflineData("fewer than 3 lines"));
        }
        let last = lines[lines.len() - 1];
        let mut chars = last.chars();
        let indicator = chars.next().and_then(KeyIndicator::from_char).ok_or(
            CryptoError::MalformedOfflineData("key indicator is not '0' or '1'"),
        )?;
        let signature_b64 = chars.as_str();
        let der = b64::decode(signature_b64)
            .map_err(|_| CryptoError::MalformedOfflineData("signature is not Base64"))?;
        if !(64..=255).contains(&der.len()) {
            return Err(CryptoError::MalformedOfflineData(
                "signature length outside 64..=255 bytes",
            ));
        }
        let signature = DerSignature::from_der(&der)
            .map_err(|_| CryptoError::MalformedOfflineData("signature is not DER"))?;
        let nonce = lines[lines.len() - 2];
        if nonce.len() != 24 || decode_nonce(nonce).is_err() {
            return Err(CryptoError::MalformedOfflineData(
                "nonce is not Base64 of 16 bytes",
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            signed_len: text.len() - signature_b64.len(),
            indicator,
            signature,
        })
    }

    /// The whole payload text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Which key signed it.
    pub fn indicator(&self) -> KeyIndicator {
        self.indicator
    }

    /// The signed bytes: everything before the Base64 signature, indicator included.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.text.as_bytes()[..self.signed_len]
    }

    /// The DER signature.
    pub fn signature(&self) -> &DerSignature {
        &self.signature
    }

    /// The nonce line (24 characters, Base64 of 16 bytes).
    pub fn nonce(&self) -> &str {
        let lines = self.lines();
        lines[lines.len() - 2]
    }

    /// The lines before the nonce: the caller's data (and the TOTP line, if any).
    pub fn data_lines(&self) -> Vec<&str> {
        let lines = self.lines();
        lines[..lines.len() - 2].to_vec()
    }

    /// The Web Flow view (§4.3): `None` with fewer than 7 lines; line 5 is the TOTP when there are
    /// more than 7 lines.
    pub fn web_flow(&self) -> Option<WebFlowFields<'_>> {
        let lines = self.lines();
        if lines.len() < 7 {
            return None;
        }
        Some(WebFlowFields {
            operation_id: lines[0],
            title: lines[1],
            message: lines[2],
            operation_data: lines[3],
            flags: lines[4],
            totp: (lines.len() > 7).then(|| lines[5]),
        })
    }

    /// Verifies the ECDSA signature over [`OfflineData::signed_bytes`] with `key` (the master
    /// public key for indicator `'0'`, the activation's server public key for `'1'`).
    pub fn verify(&self, key: &PublicKey) -> Result<(), CryptoError> {
        ecdsa::verify(key, self.signed_bytes(), &self.signature)
    }

    fn lines(&self) -> Vec<&str> {
        self.text.split('\n').collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;

    const NONCE: &str = "AD8bOO0Df73kNaIGb3Vmpg==";

    #[test]
    fn request_data_of_worked_example() {
        let rd = RequestData::for_operation(
            DEFAULT_URI_ID,
            NONCE,
            "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6",
            "A1*A100CZK*ICZ2730300000001165254011*D20180425",
            None,
        );
        assert_eq!(
            rd.as_str(),
            "POST&L29wZXJhdGlvbi9hdXRob3JpemUvb2ZmbGluZQ==&AD8bOO0Df73kNaIGb3Vmpg==&NWZmMWIxZWQtYTNjYy00NWEzLThhYjAtZWQ2MDk1MDMxMmI2JkExKkExMDBDWksqSUNaMjczMDMwMDAwMDAwMTE2NTI1NDAxMSpEMjAxODA0MjU="
        );
        assert_eq!(rd.to_data_to_sign().as_bytes().len(), 191);
        assert_eq!(RequestData::parse(rd.as_str()).unwrap().nonce(), NONCE);
        let with_totp = RequestData::for_operation(
            DEFAULT_URI_ID,
            NONCE,
            "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6",
            "A1*A100CZK*ICZ2730300000001165254011*D20180425",
            Some("62793923"),
        );
        assert_eq!(rd.with_proximity_totp("62793923").unwrap(), with_totp);
    }

    #[test]
    fn request_data_needs_four_parts() {
        assert!(RequestData::parse("POST&a&b").is_err());
        assert!(RequestData::parse("POST&a&b&c&d").is_err());
        let empty_body = RequestData::parse("POST&a&b&").unwrap();
        assert_eq!(
            empty_body.to_data_to_sign().as_bytes(),
            b"POST&a&b&&offline"
        );
        assert!(
            RequestData::parse("POST&a&b&!!")
                .unwrap()
                .with_proximity_totp("1")
                .is_err()
        );
    }

    #[test]
    fn build_parse_verify() {
        let key = PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
        let data = "op\nTitle\nMsg\nA1*A1CZK\nB";
        let unsigned =
            UnsignedOfflineData::new(data, Some("12345678"), NONCE, KeyIndicator::Personalized);
        let signed = unsigned.signed_bytes().to_vec();
        assert!(signed.ends_with(b"\n12345678\nAD8bOO0Df73kNaIGb3Vmpg==\n1"));
        let sig = ecdsa::sign(&key, &signed);
        let text = unsigned.finish(&sig);
        let parsed = OfflineData::parse(&text).unwrap();
        assert_eq!(parsed.signed_bytes(), signed.as_slice());
        assert_eq!(parsed.nonce(), NONCE);
        assert_eq!(parsed.indicator(), KeyIndicator::Personalized);
        let wf = parsed.web_flow().unwrap();
        assert_eq!(wf.totp, Some("12345678"));
        assert!(wf.allows_biometry());
        assert!(parsed.verify(&key.public_key()).is_ok());
    }

    #[test]
    fn parse_rejects_bad_shapes() {
        let key = PrivateKey::from_base64("AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc").unwrap();
        let sig = ecdsa::sign(&key, b"x").to_base64();
        assert!(OfflineData::parse(&format!("d\n{NONCE}\n1{sig}")).is_ok());
        assert!(
            OfflineData::parse(&format!("d\n{NONCE}\n2{sig}")).is_err(),
            "indicator"
        );
        assert!(
            OfflineData::parse(&format!("{NONCE}\n1{sig}")).is_err(),
            "too few lines"
        );
        assert!(
            OfflineData::parse(&format!("d\nAD8bOO0Df73kNaIGb3Vm\n1{sig}")).is_err(),
            "short nonce"
        );
        assert!(
            OfflineData::parse(&format!("d\n{NONCE}\n1{sig}\n")).is_err(),
            "trailing newline"
        );
        assert!(
            OfflineData::parse(&format!("d\n{NONCE}\n1AAAA")).is_err(),
            "short signature"
        );
        assert!(
            OfflineData::parse(&format!("d\n{NONCE}\n1")).is_err(),
            "no signature"
        );
    }
}
