//! The PIN never reaches a log line or an error message: a whole signer flow with a recognisable
//! PIN runs under a TRACE-level subscriber writing to a buffer, and every captured line and every
//! error's Display and Debug is searched for the PIN (and for the secrets that pass through).

use offline_signer_testkit::softhsm;

use std::io::Write;
use std::sync::{Arc, Mutex};

use offline_signer::signer::config::{PinSource, RawSignerConfig, SignerConfig, SoftwareConfig};
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::model::{EncryptedSecret, KeyId, PublicKey};
use offline_signer::signer::{KeyRef, OpenError, SignerError, key_report, open_signer};
use softhsm::{runtime, with_token_prepared};

const PIN: &str = "PIN-7355608-recognisable";
const WRONG_PIN: &str = "PIN-7355608-recognisable-WRONG";
const FACTOR: &[u8] = b"FACTOR-SECRET-0x9f3c";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("capture lock not poisoned")
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn show(shown: &mut Vec<String>, e: &(impl std::fmt::Display + std::fmt::Debug)) {
    shown.push(e.to_string());
    shown.push(format!("{e:?}"));
}

#[test]
fn pin_never_reaches_logs_or_errors() {
    with_token_prepared(
        "pin_never_reaches_logs_or_errors",
        "logs",
        Some(PIN),
        |token| {
            assert_eq!(
                token.user_pin(),
                PIN,
                "the token was made with the recognisable PIN"
            );
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();

            let mut shown: Vec<String> = Vec::new();
            let mut secrets_hex: Vec<String> = Vec::new();

            runtime().block_on(async {
                // A wrong PIN first (a process that is logged in would not ask again).
                let wrong_file = token.dir.join("wrong.pin");
                std::fs::write(&wrong_file, WRONG_PIN).unwrap();
                let mut wrong = token.config();
                wrong.pin = PinSource::File(wrong_file);
                let err = open_signer(&SignerConfig::Pkcs11(wrong.clone()))
                    .await
                    .unwrap_err();
                assert_eq!(err, OpenError::Token(SignerError::PinRejected));
                show(&mut shown, &err);

                // The flow: open → sign → ECDH → encrypt → decrypt → report.
                let cfg = SignerConfig::Pkcs11(token.config());
                shown.push(format!("{cfg:?}"));
                let signer = open_signer(&cfg).await.expect("open");
                shown.push(format!("{signer:?}"));
                signer.health().await.unwrap();
                let master = signer.generate_master_key().await.unwrap();
                signer
                    .sign_digest(KeyRef::Token(&master.id), &[1; 32])
                    .await
                    .unwrap();
                let ids = signer.ensure_storage_keys(None).await.unwrap();
                let pair = signer.generate_wrapped_key_pair(&ids.kek).await.unwrap();
                signer
                    .sign_digest(KeyRef::Wrapped(&pair.wrapped), &[2; 32])
                    .await
                    .unwrap();
                let device = p256::SecretKey::random(&mut rand::rngs::OsRng);
                let device_public = PublicKey::from_p256(device.public_key());
                let shared = signer.ecdh(&pair.wrapped, &device_public).await.unwrap();
                secrets_hex.push(hex::encode(shared.expose()));
                shown.push(format!("{shared:?}"));
                let sealed = signer
                    .encrypt_secret(&ids.dek, b"act-1", FACTOR)
                    .await
                    .unwrap();
                let plain = signer
                    .decrypt_secret(&ids.dek, b"act-1", &sealed)
                    .await
                    .unwrap();
                assert_eq!(plain.expose(), FACTOR);
                shown.push(format!("{plain:?}"));
                let report = key_report(signer.as_ref()).await.unwrap();
                shown.push(serde_json::to_string(&report).unwrap());

                // Errors along the way.
                show(
                    &mut shown,
                    &signer
                        .decrypt_secret(&ids.dek, b"act-2", &sealed)
                        .await
                        .unwrap_err(),
                );
                show(
                    &mut shown,
                    &signer
                        .public_key(&KeyId::from_bytes([4; 16]))
                        .await
                        .unwrap_err(),
                );
                let bogus = EncryptedSecret::from_bytes(vec![1; 40]).unwrap();
                show(
                    &mut shown,
                    &signer
                        .decrypt_secret(&ids.kek, b"x", &bogus)
                        .await
                        .unwrap_err(),
                );
                show(
                    &mut shown,
                    &signer
                        .sign_digest(KeyRef::Token(&master.id), &[0; 3])
                        .await
                        .unwrap_err(),
                );
                let mut unset = token.config();
                unset.pin = PinSource::Env("OFFLINE_SIGNER_TEST_UNSET".into());
                show(
                    &mut shown,
                    &open_signer(&SignerConfig::Pkcs11(unset)).await.unwrap_err(),
                );

                // A PIN written into the configuration is refused without echoing it.
                let raw: RawSignerConfig = toml::from_str(&format!(
                    "kind = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin = \"{PIN}\""
                ))
                .unwrap();
                shown.push(format!("{raw:?}"));
                let err = raw.validate().unwrap_err();
                shown.push(err.to_string());
                shown.push(format!("{err:?}"));

                // The software signer logs its warning through the same subscriber.
                let soft = SoftwareSigner::open(&SoftwareConfig::default()).unwrap();
                shown.push(format!("{soft:?}"));
                signer.shutdown().await;
            });

            let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
            assert!(
                logs.contains("PKCS#11 signer ready"),
                "capture works: {logs}"
            );
            assert!(logs.contains("software-insecure"), "capture works: {logs}");
            assert!(logs.lines().count() >= 3, "{logs}");
            let factor = std::str::from_utf8(FACTOR).unwrap();
            for (i, line) in logs.lines().enumerate() {
                assert!(
                    !line.contains("7355608"),
                    "log line {i} contains the PIN: {line}"
                );
                assert!(
                    !line.contains(factor),
                    "log line {i} contains factor-key material"
                );
                for s in &secrets_hex {
                    assert!(
                        !line.contains(s.as_str()),
                        "log line {i} contains the ECDH secret"
                    );
                }
            }
            assert!(shown.len() >= 15);
            for text in &shown {
                assert!(
                    !text.contains("7355608"),
                    "an error or Debug output shows the PIN: {text}"
                );
                assert!(
                    !text.contains(factor),
                    "an output shows factor-key material: {text}"
                );
                for s in &secrets_hex {
                    assert!(
                        !text.contains(s.as_str()),
                        "an output shows the ECDH secret: {text}"
                    );
                }
            }
        },
    );
}
