//! Faults of the PKCS#11 signer against SoftHSM: the token taken away and given back, a wrong
//! PIN (exactly one login attempt), start-up problems reported by name, back-pressure and
//! timeouts. Each test runs in its own child process with its own token.

use offline_signer_testkit::conformance;
use offline_signer_testkit::softhsm;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use offline_signer::signer::config::{PinSource, SignerConfig, TokenSelector};
use offline_signer::signer::pkcs11::{Pkcs11Signer, login_attempts};
use offline_signer::signer::{KeyRef, OpenError, Signer, SignerError, open_signer};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use softhsm::{runtime, with_token, with_token_custom};

/// Guards every await: a call that does not come back within this bound counts as a hang.
const HANG: Duration = Duration::from_secs(30);

async fn no_hang<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .expect("a signer call hung")
}

fn token_subdir(tokens: &std::path::Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(tokens)
        .expect("tokens dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "exactly one token folder: {dirs:?}");
    dirs.remove(0)
}

#[test]
fn token_taken_away_and_given_back() {
    with_token("token_taken_away_and_given_back", "faults", |token| {
        runtime().block_on(async {
            let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
            let master = signer.generate_master_key().await.expect("master");
            let ids = signer
                .ensure_storage_keys(None)
                .await
                .expect("storage keys");
            let pair = signer
                .generate_wrapped_key_pair(&ids.kek)
                .await
                .expect("pair");
            let sealed = signer
                .encrypt_secret(&ids.dek, b"act", b"factor")
                .await
                .expect("seal");
            let digest = [7u8; 32];
            signer
                .sign_digest(KeyRef::Token(&master.id), &digest)
                .await
                .expect("sign before");

            // Take the token away.
            let folder = token_subdir(&token.tokens_dir());
            let away = token.dir.join("away");
            std::fs::rename(&folder, &away).expect("move the token folder out");

            for round in 0..3 {
                let r = no_hang(signer.sign_digest(KeyRef::Token(&master.id), &digest)).await;
                assert_eq!(
                    r.unwrap_err(),
                    SignerError::TokenUnavailable,
                    "token sign, round {round}"
                );
                let r = no_hang(signer.sign_digest(KeyRef::Wrapped(&pair.wrapped), &digest)).await;
                assert_eq!(
                    r.unwrap_err(),
                    SignerError::TokenUnavailable,
                    "wrapped sign"
                );
                let r = no_hang(signer.decrypt_secret(&ids.dek, b"act", &sealed)).await;
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable, "decrypt");
                let r = no_hang(signer.public_key(&master.id)).await;
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable, "public key");
                let r = no_hang(signer.ensure_storage_keys(None)).await;
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable, "ensure keys");
                assert_eq!(
                    no_hang(signer.health()).await,
                    Err(SignerError::TokenUnavailable)
                );
            }
            // Concurrent calls while it is gone also come back (no worker thread hangs).
            let calls = (0..16).map(|_| signer.sign_digest(KeyRef::Token(&master.id), &digest));
            for r in no_hang(conformance::futures_join_all(calls)).await {
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable);
            }

            // Give it back: the signer recovers by itself, without a restart.
            std::fs::rename(&away, &folder).expect("move the token folder back");
            let mut recovered = None;
            for _ in 0..300 {
                match no_hang(signer.sign_digest(KeyRef::Token(&master.id), &digest)).await {
                    Ok(sig) => {
                        recovered = Some(sig);
                        break;
                    }
                    Err(SignerError::TokenUnavailable) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(other) => panic!("unexpected error while recovering: {other:?}"),
                }
            }
            let sig = recovered.expect("the signer came back after the token returned");
            let vk = p256::ecdsa::VerifyingKey::from(master.public_key.as_p256());
            let parsed = p256::ecdsa::Signature::from_der(sig.as_bytes()).unwrap();
            vk.verify_prehash(&digest, &parsed)
                .expect("signature after recovery verifies");
            signer.health().await.expect("healthy again");
            signer
                .sign_digest(KeyRef::Wrapped(&pair.wrapped), &digest)
                .await
                .expect("wrapped");
            let plain = signer
                .decrypt_secret(&ids.dek, b"act", &sealed)
                .await
                .expect("decrypt");
            assert_eq!(plain.expose(), b"factor");
            assert_eq!(
                signer.ensure_storage_keys(None).await.expect("same keys"),
                ids
            );
            // The outage never made the signer create a key.
            let inventory = signer.inventory().await.expect("inventory");
            assert_eq!(inventory.objects.len(), 4, "{inventory:?}");
            no_hang(signer.shutdown()).await;
        })
    });
}

#[test]
fn wrong_pin_fails_fast_with_one_login_attempt() {
    with_token(
        "wrong_pin_fails_fast_with_one_login_attempt",
        "faults",
        |token| {
            runtime().block_on(async {
                let wrong = token.dir.join("wrong.pin");
                let mut pin = token.user_pin();
                pin.push('9');
                std::fs::write(&wrong, pin).unwrap();
                let mut cfg = token.config();
                cfg.pin = PinSource::File(wrong);
                assert_eq!(login_attempts(), 0);
                let err = no_hang(Pkcs11Signer::open(&cfg)).await.unwrap_err();
                assert_eq!(err, OpenError::Token(SignerError::PinRejected));
                // Proof of "exactly one": the signer counts every C_Login it makes.
                assert_eq!(
                    login_attempts(),
                    1,
                    "a rejected PIN must be tried exactly once"
                );

                // The same through open_signer; one more attempt, not more.
                let err = no_hang(open_signer(&SignerConfig::Pkcs11(cfg)))
                    .await
                    .unwrap_err();
                assert_eq!(err, OpenError::Token(SignerError::PinRejected));
                assert_eq!(login_attempts(), 2);

                // The right PIN still works afterwards (one attempt).
                let signer = Pkcs11Signer::open(&token.config())
                    .await
                    .expect("open with right PIN");
                assert_eq!(login_attempts(), 3);
                signer.health().await.expect("healthy");
                no_hang(signer.shutdown()).await;
            })
        },
    );
}

#[test]
fn start_up_problems_are_named() {
    with_token("start_up_problems_are_named", "faults", |token| {
        runtime().block_on(async {
            let mut cfg = token.config();
            cfg.module = PathBuf::from("/nonexistent/libpkcs11.so");
            assert_eq!(
                Pkcs11Signer::open(&cfg).await.unwrap_err(),
                OpenError::ModuleNotFound {
                    path: "/nonexistent/libpkcs11.so".into()
                }
            );
            let mut cfg = token.config();
            cfg.token = TokenSelector::Label("no-such-token".into());
            let err = Pkcs11Signer::open(&cfg).await.unwrap_err();
            assert_eq!(
                err,
                OpenError::TokenNotFound {
                    selector: "label \"no-such-token\"".into()
                }
            );
            assert!(err.to_string().contains("no-such-token"));
            let mut cfg = token.config();
            cfg.pin = PinSource::Env("OFFLINE_SIGNER_TEST_UNSET_PIN_VARIABLE".into());
            let err = Pkcs11Signer::open(&cfg).await.unwrap_err();
            assert!(
                err.to_string()
                    .contains("OFFLINE_SIGNER_TEST_UNSET_PIN_VARIABLE"),
                "{err}"
            );
            assert_eq!(login_attempts(), 0, "no login without a token or a PIN");
        })
    });
}

#[test]
fn two_tokens_with_the_label_are_refused() {
    with_token("two_tokens_with_the_label_are_refused", "twice", |token| {
        let so = std::fs::read_to_string(token.dir.join("so.pin")).unwrap();
        let user = token.user_pin();
        softhsm::softhsm_util(&[
            "--init-token",
            "--free",
            "--label",
            "twice",
            "--so-pin",
            &so,
            "--pin",
            &user,
        ]);
        runtime().block_on(async {
            let err = Pkcs11Signer::open(&token.config()).await.unwrap_err();
            assert_eq!(
                err,
                OpenError::AmbiguousToken {
                    selector: "label \"twice\"".into(),
                    count: 2
                }
            );
        })
    });
}

#[test]
fn missing_softhsm_conf_is_named() {
    with_token_custom(
        "missing_softhsm_conf_is_named",
        "faults",
        None,
        |dir| Some(dir.join("absent.conf")),
        |token| {
            runtime().block_on(async {
                let err = Pkcs11Signer::open(&token.config()).await.unwrap_err();
                let expected = token.dir.join("absent.conf").display().to_string();
                assert_eq!(err, OpenError::ConfigMissing { path: expected });
            })
        },
    );
}

#[test]
fn missing_token_dir_is_named() {
    with_token_custom(
        "missing_token_dir_is_named",
        "faults",
        None,
        |dir| {
            let conf = dir.join("other.conf");
            let text = format!(
                "directories.tokendir = {}/gone/\nobjectstore.backend = file\n",
                dir.display()
            );
            std::fs::write(&conf, text).unwrap();
            Some(conf)
        },
        |token| {
            runtime().block_on(async {
                let err = Pkcs11Signer::open(&token.config()).await.unwrap_err();
                let expected = format!("{}/gone/", token.dir.display());
                assert_eq!(err, OpenError::TokenDirMissing { path: expected });
            })
        },
    );
}

#[test]
fn full_queue_answers_busy_at_once() {
    with_token("full_queue_answers_busy_at_once", "faults", |token| {
        runtime().block_on(async {
            let mut cfg = token.config();
            cfg.pool_size = NonZeroUsize::new(1).unwrap();
            cfg.queue_depth = NonZeroUsize::new(1).unwrap();
            cfg.timeout = Duration::from_secs(20);
            let signer = Pkcs11Signer::open(&cfg).await.unwrap();
            // Key generation takes milliseconds: 64 concurrent requests overflow a queue of 1.
            let calls = (0..64).map(|_| signer.generate_master_key());
            let results = no_hang(conformance::futures_join_all(calls)).await;
            let busy = results
                .iter()
                .filter(|r| matches!(r, Err(SignerError::Busy)))
                .count();
            let ok = results.iter().filter(|r| r.is_ok()).count();
            assert!(busy > 0, "expected some Busy answers");
            assert_eq!(busy + ok, 64, "only Busy or success: {results:?}");
            assert!(ok >= 1);
            no_hang(signer.shutdown()).await;
        })
    });
}

#[test]
fn slow_calls_answer_timeout() {
    with_token("slow_calls_answer_timeout", "faults", |token| {
        runtime().block_on(async {
            let mut cfg = token.config();
            cfg.pool_size = NonZeroUsize::new(1).unwrap();
            // A zero timeout: an answer that is not there at the first look is late. The 32nd of 32
            // key generations queued on one worker thread cannot be there at its first look (31
            // generations come before it), whatever the machine's speed.
            cfg.timeout = Duration::ZERO;
            let signer = Pkcs11Signer::open(&cfg).await.unwrap();
            let calls = (0..32).map(|_| signer.generate_master_key());
            let results = no_hang(conformance::futures_join_all(calls)).await;
            assert!(
                results
                    .iter()
                    .any(|r| matches!(r, Err(SignerError::Timeout))),
                "32 key generations on one thread with a zero timeout: {results:?}"
            );
            assert!(
                results
                    .iter()
                    .all(|r| matches!(r, Ok(_) | Err(SignerError::Timeout)))
            );
            no_hang(signer.shutdown()).await;
        })
    });
}

#[test]
fn token_chosen_by_serial_and_closed_cleanly() {
    with_token(
        "token_chosen_by_serial_and_closed_cleanly",
        "faults",
        |token| {
            runtime().block_on(async {
                let signer = Pkcs11Signer::open(&token.config())
                    .await
                    .expect("open by label");
                let master = signer.generate_master_key().await.unwrap();
                let serial = signer.inventory().await.unwrap().token.serial;
                assert!(!serial.is_empty());
                no_hang(signer.shutdown()).await;
                let mut cfg = token.config();
                cfg.token = TokenSelector::Serial(serial);
                let signer = Pkcs11Signer::open(&cfg).await.expect("open by serial");
                assert_eq!(
                    signer.public_key(&master.id).await.unwrap(),
                    master.public_key
                );
                assert_eq!(login_attempts(), 2);
                no_hang(signer.shutdown()).await;
            })
        },
    );
}

#[test]
fn pin_rejected_on_reconnect_is_fatal_and_never_retried() {
    with_token(
        "pin_rejected_on_reconnect_is_fatal_and_never_retried",
        "faults",
        |token| {
            runtime().block_on(async {
                let signer = Pkcs11Signer::open(&token.config()).await.expect("open");
                let master = signer.generate_master_key().await.unwrap();
                assert_eq!(login_attempts(), 1);
                // Replace the token by one with the same label and another user PIN.
                let new_pin = token.dir.join("new.pin");
                std::fs::write(&new_pin, "another-pin-2468").unwrap();
                softhsm::init_token(&token.dir, &token.label, Some(&new_pin));

                // Call until the signer has tried the re-login (an event, however long the back-off
                // takes on this machine), then ten more times.
                let mut answers = Vec::new();
                let hang_guard = std::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let r = no_hang(signer.sign_digest(KeyRef::Token(&master.id), &[1; 32])).await;
                    let rejected = r == Err(SignerError::PinRejected);
                    answers.push(r.map(|_| ()));
                    if rejected {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < hang_guard,
                        "the signer never tried to log in again: {answers:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                for _ in 0..10 {
                    let r = no_hang(signer.sign_digest(KeyRef::Token(&master.id), &[1; 32])).await;
                    answers.push(r.map(|_| ()));
                }
                assert!(
                    answers.iter().all(|a| matches!(
                        a,
                        Err(SignerError::TokenUnavailable | SignerError::PinRejected)
                    )),
                    "{answers:?}"
                );
                let first_rejection = answers
                    .iter()
                    .position(|a| *a == Err(SignerError::PinRejected))
                    .expect("the re-login is rejected");
                assert!(
                    answers[first_rejection..]
                        .iter()
                        .all(|a| *a == Err(SignerError::PinRejected)),
                    "once rejected, always rejected: {answers:?}"
                );
                assert_eq!(
                    login_attempts(),
                    2,
                    "one login at open, exactly one on reconnect"
                );
                assert_eq!(signer.health().await, Err(SignerError::PinRejected));
                no_hang(signer.shutdown()).await;
            })
        },
    );
}
