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

/// One key of each kind the faults are tried on: a master key, the storage keys, a wrapped
/// activation key pair and a secret sealed under the DEK.
struct Keys {
    master: offline_signer::signer::GeneratedKeyPair,
    ids: offline_signer::signer::StorageKeyIds,
    pair: offline_signer::signer::WrappedKeyPair,
    sealed: offline_signer::model::EncryptedSecret,
}

impl Keys {
    async fn make(signer: &Pkcs11Signer) -> Self {
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
        Self {
            master,
            ids,
            pair,
            sealed,
        }
    }
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
            let keys = Keys::make(&signer).await;
            let digest = [7u8; 32];
            signer
                .sign_digest(KeyRef::Token(&keys.master.id), &digest)
                .await
                .expect("sign before");

            // Take the token away.
            let folder = token_subdir(&token.tokens_dir());
            let away = token.dir.join("away");
            std::fs::rename(&folder, &away).expect("move the token folder out");

            for round in 0..3 {
                let r = no_hang(signer.sign_digest(KeyRef::Token(&keys.master.id), &digest)).await;
                assert_eq!(
                    r.unwrap_err(),
                    SignerError::TokenUnavailable,
                    "token sign, round {round}"
                );
                let r =
                    no_hang(signer.sign_digest(KeyRef::Wrapped(&keys.pair.wrapped), &digest)).await;
                assert_eq!(
                    r.unwrap_err(),
                    SignerError::TokenUnavailable,
                    "wrapped sign"
                );
                let r = no_hang(signer.decrypt_secret(&keys.ids.dek, b"act", &keys.sealed)).await;
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable, "decrypt");
                let r = no_hang(signer.public_key(&keys.master.id)).await;
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable, "public key");
                let r = no_hang(signer.ensure_storage_keys(None)).await;
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable, "ensure keys");
                assert_eq!(
                    no_hang(signer.health()).await,
                    Err(SignerError::TokenUnavailable)
                );
            }
            // Concurrent calls while it is gone also come back (no worker thread hangs).
            let calls =
                (0..16).map(|_| signer.sign_digest(KeyRef::Token(&keys.master.id), &digest));
            for r in no_hang(conformance::futures_join_all(calls)).await {
                assert_eq!(r.unwrap_err(), SignerError::TokenUnavailable);
            }

            // Give it back: the signer recovers by itself, without a restart.
            std::fs::rename(&away, &folder).expect("move the token folder back");
            let mut recovered = None;
            for _ in 0..300 {
                match no_hang(signer.sign_digest(KeyRef::Token(&keys.master.id), &digest)).await {
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
            let vk = p256::ecdsa::VerifyingKey::from(keys.master.public_key.as_p256());
            let parsed = p256::ecdsa::Signature::from_der(sig.as_bytes()).unwrap();
            vk.verify_prehash(&digest, &parsed)
                .expect("signature after recovery verifies");
            signer.health().await.expect("healthy again");
            signer
                .sign_digest(KeyRef::Wrapped(&keys.pair.wrapped), &digest)
                .await
                .expect("wrapped");
            let plain = signer
                .decrypt_secret(&keys.ids.dek, b"act", &keys.sealed)
                .await
                .expect("decrypt");
            assert_eq!(plain.expose(), b"factor");
            assert_eq!(
                signer.ensure_storage_keys(None).await.expect("same keys"),
                keys.ids
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

/// A token initialized without a user PIN is named as such (it is also what SoftHSM answers when
/// another process rewrites the token's file during this login; a start looks again for a few
/// seconds, then gives this answer).
#[test]
fn a_token_without_a_user_pin_is_named() {
    if !offline_signer_testkit::required::pkcs11_tool() {
        return;
    }
    with_token("a_token_without_a_user_pin_is_named", "faults", |token| {
        // A second token in the next free slot, with a security officer's PIN and no user PIN.
        let made = std::process::Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", token.dir.join("softhsm2.conf"))
            .args([
                "--module",
                softhsm::MODULE,
                "--slot-index",
                "1",
                "--init-token",
            ])
            .args(["--label", "nopin", "--so-pin", "87654321"])
            .output()
            .expect("pkcs11-tool runs");
        assert!(made.status.success(), "{made:?}");
        runtime().block_on(async {
            let mut cfg = token.config();
            cfg.token = TokenSelector::Label("nopin".into());
            let before = login_attempts();
            let err = Pkcs11Signer::open(&cfg).await.unwrap_err();
            assert_eq!(
                err,
                OpenError::UserPinNotInitialized {
                    selector: "label \"nopin\"".into()
                }
            );
            assert!(err.to_string().contains("no user PIN"), "{err}");
            assert!(login_attempts() > before, "the login was tried");
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

/// One signer call of a round, its answer reduced to success or the error.
type Call<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SignerError>> + 'a>>;

/// What the hook of [`token_removed_between_checkout_and_call_is_only_ever_unavailable`] shares
/// with the test: how many requests of this round have reached the window, and whether the token
/// is gone (then everyone goes on to make its call).
#[derive(Default)]
struct Window {
    arrived: usize,
    released: bool,
}

/// Issue 14: the token vanishes while requests have checked out their session and not yet made their
/// PKCS#11 call. A hook in the pool stops each of the round's requests exactly there; when all of
/// them are in the window, the last one takes the token folder away and lets them all go on. Every
/// answer must be a success (a call that was already done) or the unavailable kind (503), never
/// an internal error (500) or a failed signature (ERR0013). Repeated until the window was hit at
/// least [`WANTED_HITS`] times (counted), the token given back and the recovery awaited each time.
#[test]
fn token_removed_between_checkout_and_call_is_only_ever_unavailable() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    const WORKERS: usize = 4;
    const WANTED_HITS: usize = 100;
    with_token(
        "token_removed_between_checkout_and_call_is_only_ever_unavailable",
        "faults",
        |token| {
            runtime().block_on(async {
                let mut cfg = token.config();
                cfg.pool_size = NonZeroUsize::new(WORKERS).unwrap();
                let signer = Pkcs11Signer::open(&cfg).await.expect("open");
                let keys = Keys::make(&signer).await;
                let peer = offline_signer::crypto::PrivateKey::generate(&mut rand::rngs::OsRng)
                    .public_key();
                let digest = [9u8; 32];
                let folder = token_subdir(&token.tokens_dir());
                let away = token.dir.join("away");

                let hits = Arc::new(AtomicUsize::new(0));
                let mut unavailable = 0usize;
                let mut round = 0usize;
                while hits.load(Ordering::SeqCst) < WANTED_HITS {
                    round += 1;
                    assert!(round <= 4 * WANTED_HITS, "the window is not being reached");
                    // Every worker's session is open and the token is there: all the round's
                    // requests reach the window.
                    let window = Arc::new((Mutex::new(Window::default()), Condvar::new()));
                    let hook = {
                        let window = Arc::clone(&window);
                        let hits = Arc::clone(&hits);
                        let (folder, away) = (folder.clone(), away.clone());
                        offline_signer::signer::pkcs11::arm_before_call(move || {
                            let (state, wake) = &*window;
                            let mut st = state.lock().unwrap();
                            if st.released {
                                return; // a retry after the fault: not this round's arrival
                            }
                            st.arrived += 1;
                            if st.arrived == WORKERS {
                                std::fs::rename(&folder, &away).expect("take the token away");
                                hits.fetch_add(WORKERS, Ordering::SeqCst);
                                st.released = true;
                                wake.notify_all();
                                return;
                            }
                            // A hang guard only: the round's other requests arrive in
                            // microseconds; one that cannot lets everyone go uncounted.
                            let (st, waited) = wake
                                .wait_timeout_while(st, HANG, |st| !st.released)
                                .unwrap();
                            drop(st);
                            if waited.timed_out() {
                                window.0.lock().unwrap().released = true;
                                wake.notify_all();
                            }
                        })
                    };
                    let calls: Vec<Call<'_>> = (0..WORKERS)
                        .map(|i| -> Call<'_> {
                            match (round + i) % 5 {
                                0 => Box::pin(async {
                                    signer
                                        .sign_digest(KeyRef::Token(&keys.master.id), &digest)
                                        .await
                                        .map(drop)
                                }),
                                1 => Box::pin(async {
                                    signer
                                        .sign_digest(KeyRef::Wrapped(&keys.pair.wrapped), &digest)
                                        .await
                                        .map(drop)
                                }),
                                2 => Box::pin(async {
                                    signer
                                        .decrypt_secret(&keys.ids.dek, b"act", &keys.sealed)
                                        .await
                                        .map(drop)
                                }),
                                3 => Box::pin(async {
                                    signer.ecdh(&keys.pair.wrapped, &peer).await.map(drop)
                                }),
                                _ => Box::pin(async {
                                    signer
                                        .encrypt_secret(&keys.ids.dek, b"act", b"factor")
                                        .await
                                        .map(drop)
                                }),
                            }
                        })
                        .collect();
                    let results = no_hang(conformance::futures_join_all(calls)).await;
                    drop(hook);
                    for r in &results {
                        match r {
                            Ok(()) => {}
                            Err(
                                SignerError::TokenUnavailable
                                | SignerError::Busy
                                | SignerError::Timeout,
                            ) => unavailable += 1,
                            Err(other) => panic!(
                                "round {round}: the token vanished under a checked-out session \
                                 and the answer was {other:?}, not 'unavailable'"
                            ),
                        }
                    }
                    // Give the token back and wait for the signer to come back by itself.
                    std::fs::rename(&away, &folder).expect("give the token back");
                    let mut back = false;
                    for _ in 0..600 {
                        match no_hang(signer.health()).await {
                            Ok(()) => {
                                back = true;
                                break;
                            }
                            Err(SignerError::TokenUnavailable) => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(other) => panic!("recovering: {other:?}"),
                        }
                    }
                    assert!(back, "round {round}: the signer did not recover");
                    // Every worker has a session again before the next round (each opens its own).
                    let warm = (0..4 * WORKERS)
                        .map(|_| signer.sign_digest(KeyRef::Token(&keys.master.id), &digest));
                    for r in no_hang(conformance::futures_join_all(warm)).await {
                        r.expect("a sign once the token is back");
                    }
                }
                assert!(
                    unavailable > 0,
                    "some calls ran against the vanished token and were answered unavailable"
                );
                eprintln!(
                    "window hit {} times in {round} rounds; {unavailable} answers unavailable",
                    hits.load(Ordering::SeqCst)
                );
                no_hang(signer.shutdown()).await;
            })
        },
    );
}
