//! Pure PowerAuth cryptography and formats (`spec/powerauth-offline.md` §4, §6, §7, §8.1, §10;
//! `spec/powerauth-activation.md` §2, §3, §4, §5.1, §6).
//!
//! This module owns every byte-level rule of the protocol: P-256 key encodings, the ECDH fold and the
//! index KDF, the hash-based counter, the multi-factor signature codes, the `offlineData` QR payload,
//! the proximity TOTP, the activation fingerprint and the verifier's counter-window scan; and for
//! activation (protocol 3.3): ECIES, the activation code, the status blob and the temporary-key JWTs. It is pure:
//! no I/O, no async, no logging, no global state. Secrets live in zeroizing types whose `Debug` prints
//! `REDACTED`; codes are compared in constant time.
//!
//! Server-side functions never take a private key that lives in the HSM: they take what the HSM
//! computed (the ECDH x-coordinate) or return the bytes it must sign.
//!
//! Submodules:
//! - [`b64`]: canonical RFC 4648 Base64 (padding required, no stray bits), and `B64URL` for JWTs.
//! - [`keys`]: P-256 public keys (SEC1) and private keys (Java `BigInteger` bytes).
//! - [`kdf`]: ECDH x-coordinate, the 32→16 fold, `KDF`, `KDF_INTERNAL`, the derived key set.
//! - [`counter`]: the v3 hash-chain counter `CTR_DATA`.
//! - [`signature`]: signature types, factor keys, component MACs, decimal and Base64 codes.
//! - [`ecdsa`]: DER ECDSA signatures (sign, verify, DER ⇄ raw `r‖s`).
//! - [`offline_data`]: normalized request data and the `offlineData` QR payload.
//! - [`totp`]: the HMAC-SHA256 TOTP of the proximity check.
//! - [`fingerprint`]: the v3 device-key fingerprint.
//! - [`window`]: the verifier's counter-window scan.
//! - [`application`]: the application secret and `mobileSdkConfig`.
//! - [`ecies`]: PowerAuth ECIES 3.0–3.3 (envelope key, request/response, decryptor secrets).
//! - [`activation_code`]: activation codes (Base32 + CRC-16), their signed bytes and QR payload.
//! - [`status_blob`]: the 32-byte status blob, its encryption, the client's counter check.
//! - [`temporary_key`]: the HS256 request and ES256 response JWTs of `/keystore/create`.

#![warn(missing_docs)]

pub mod activation_code;
mod aes_cbc;
pub mod application;
pub mod b64;
pub mod counter;
pub mod ecdsa;
pub mod ecies;
mod error;
pub mod fingerprint;
pub mod kdf;
pub mod keys;
pub mod offline_data;
pub mod signature;
pub mod status_blob;
pub mod temporary_key;
pub mod totp;
pub mod window;

pub use counter::CounterData;
pub use ecdsa::DerSignature;
pub use error::CryptoError;
pub use kdf::{DerivedKeys, MasterSecret, SymmetricKey};
pub use keys::{PrivateKey, PublicKey};
pub use offline_data::{DataToSign, KeyIndicator, OfflineData, RequestData, UnsignedOfflineData};
pub use signature::{ComponentLength, FactorKeys, SignatureType};
pub use status_blob::ActivationStatus;
pub use window::{WindowMatch, WindowSearch};
