//! Crash test of the verification path: a child process runs verifications and prints every answer it
//! received; the parent kills it with SIGKILL at random moments (more than 20 times), restarts it, and
//! after every kill checks, from the store on disk:
//! - no counter went back;
//! - every acknowledged verification (success or failure) is in the audit trail with its outcome;
//! - every acknowledged success consumed its nonce, and that nonce cannot be used again;
//! - the audit chain verifies.
//!
//! The child is this test binary re-run with `OFFLINE_SIGNER_CRASH_CHILD` set. The signer is the
//! software signer with its key file in the test directory, so the child and the parent see the same
//! keys across restarts.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use offline_signer::crypto::offline_data::{DEFAULT_URI_ID, OfflineData, RequestData};
use offline_signer::crypto::signature::decimal_signature;
use offline_signer::crypto::{
    ComponentLength, CounterData, FactorKeys, MasterSecret, PrivateKey, SignatureType,
};
use offline_signer::service::{
    CreatePersonalized, NonceStatus, Service, Settings, SystemClock, VerifyRequest,
};
use offline_signer::signer::config::SoftwareConfig;
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::store::{AuditOperation, AuditOutcome, SledStore, Store, verify_audit_chain};
use offline_signer_testkit::service_harness::register_and_commit;
use rand::Rng as _;

const CHILD_ENV: &str = "OFFLINE_SIGNER_CRASH_CHILD";
const ACTIVATIONS: usize = 3;
const KILLS: usize = 22;

/// The harness's defaults with a long nonce lifetime (the child's payloads outlive many kills).
fn settings() -> Settings {
    Settings {
        nonce_ttl: Duration::from_secs(3600),
        ..offline_signer_testkit::service_harness::default_settings()
    }
}

async fn open_service(dir: &Path) -> (Service, Arc<SledStore>) {
    let store = Arc::new(SledStore::open(&dir.join("data")).expect("open store"));
    let signer = SoftwareSigner::open(&SoftwareConfig {
        key_file: Some(dir.join("software-keys.json")),
    })
    .expect("software signer");
    let service = Service::open(
        Arc::new(signer),
        Arc::clone(&store) as Arc<dyn Store>,
        settings(),
        Arc::new(SystemClock),
    )
    .await
    .expect("service");
    (service, store)
}

/// One registered phone: its activation id and device private key (Base64, Java encoding).
fn devices_file(dir: &Path) -> PathBuf {
    dir.join("devices.txt")
}

fn factor_keys(store: &SledStore, id: &str, device: &PrivateKey) -> FactorKeys {
    let record = store.activation(id).expect("read").expect("exists");
    FactorKeys::from_master_secret(&MasterSecret::agree(device, &record.server_public_key))
}

fn read_devices(dir: &Path) -> Vec<(String, PrivateKey)> {
    std::fs::read_to_string(devices_file(dir))
        .expect("devices file")
        .lines()
        .map(|line| {
            let (id, key) = line.split_once(' ').expect("id key");
            (
                id.to_owned(),
                PrivateKey::from_base64(key).expect("device key"),
            )
        })
        .collect()
}

/// The child: verifies forever, printing `ACK <activation> <valid> <nonce> <data-sha256-hex> <code>`
/// after each answer it received.
async fn child(dir: &Path) {
    let (service, store) = open_service(dir).await;
    let devices = read_devices(dir);
    let keys: Vec<FactorKeys> = devices
        .iter()
        .map(|(id, key)| factor_keys(&store, id, key))
        .collect();
    let mut rng = rand::thread_rng();
    let mut out = std::io::stdout().lock();
    loop {
        // Payloads first, in a batch: creating one flushes the store, which would also make an earlier
        // verification durable and hide a verification that forgot its own flush.
        let mut batch = Vec::new();
        for _ in 0..16 {
            let i = rng.gen_range(0..devices.len());
            let payload = service
                .create_personalized_payload(CreatePersonalized {
                    activation_id: devices[i].0.clone(),
                    data: format!(
                        "op-{}\nT\nM\nA1*A{}EUR\n",
                        rng.r#gen::<u32>(),
                        rng.gen_range(1..999)
                    ),
                    nonce: None,
                    proximity_check: None,
                })
                .await;
            match payload {
                Ok(p) => batch.push((i, p)),
                Err(offline_signer::service::ServiceError::IncorrectState) => {
                    service
                        .unblock_activation(&devices[i].0)
                        .await
                        .expect("unblock");
                }
                Err(e) => panic!("payload: {e:?}"),
            }
        }
        for (i, payload) in batch {
            let id = &devices[i].0;
            let record = store.activation(id).expect("read").expect("exists");
            let parsed = OfflineData::parse(&payload.offline_data).expect("parse");
            let lines = parsed.data_lines();
            let data = RequestData::for_operation(
                DEFAULT_URI_ID,
                parsed.nonce(),
                lines[0],
                lines[3],
                None,
            );
            // A phone 0..3 positions ahead of the server, or a wrong code one time in five.
            let code = if rng.gen_range(0..5) == 0 {
                "11111111-22222222".to_owned()
            } else {
                let ahead = CounterData::from_bytes(record.ctr_data).advance(rng.gen_range(0..3));
                decimal_signature(
                    &keys[i],
                    SignatureType::PossessionKnowledge,
                    &ahead,
                    data.to_data_to_sign().as_bytes(),
                    ComponentLength::default(),
                )
            };
            let answer = service
                .verify(VerifyRequest {
                    activation_id: id.clone(),
                    data: data.as_str().to_owned(),
                    signature: code.clone(),
                    allow_biometry: false,
                    component_length: None,
                    proximity_check: None,
                })
                .await
                .expect("verify answers");
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                data.as_str().as_bytes(),
            ));
            writeln!(
                out,
                "ACK {id} {} {} {hash} {code} {}",
                // The §8.2 answer kind: a bare answer (no user) means the activation was not usable.
                match (answer.signature_valid, answer.user_id.is_some()) {
                    (true, _) => "valid",
                    (false, true) => "invalid",
                    (false, false) => "inactive",
                },
                payload.nonce,
                data.as_str()
            )
            .expect("stdout");
            out.flush().expect("flush");
        }
    }
}

struct Ack {
    activation: String,
    /// `valid`, `invalid` or `inactive` (blocked by an earlier attempt of the same batch).
    kind: String,
    nonce: String,
    hash: String,
    code: String,
    data: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut it = line.strip_prefix("ACK ")?.split(' ');
    Some(Ack {
        activation: it.next()?.to_owned(),
        kind: it.next()?.to_owned(),
        nonce: it.next()?.to_owned(),
        hash: it.next()?.to_owned(),
        code: it.next()?.to_owned(),
        data: it.next()?.to_owned(),
    })
}

#[test]
fn sigkill_during_verifications_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(child(Path::new(&dir)));
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    // Set-up: an application and a few active phones.
    runtime.block_on(async {
        let (service, _store) = open_service(dir).await;
        service.create_application("crash").await.expect("app");
        let mut lines = String::new();
        for _ in 0..ACTIVATIONS {
            let device = PrivateKey::generate(&mut rand::rngs::OsRng);
            let activation_id = register_and_commit(&service, "crash", &device.public_key()).await;
            lines.push_str(&format!("{} {}\n", activation_id, *device.to_base64()));
        }
        std::fs::write(devices_file(dir), lines).expect("devices file");
    });

    let mut acks: Vec<Ack> = Vec::new();
    let mut last_counters: HashMap<String, u64> = HashMap::new();
    let mut rng = rand::thread_rng();
    for round in 0..KILLS {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([
                "sigkill_during_verifications_loses_nothing_acknowledged",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped");
        // Kill at a random point of the child's work: after its k-th acknowledgment (an event, not
        // a duration, so a slow machine changes nothing), k random in 1..=6. Only complete lines
        // count: the kill may cut the last one short.
        let kill_after = rng.gen_range(1..=6);
        let (reached, reached_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut got = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                match std::io::BufRead::read_line(&mut reader, &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.ends_with('\n') => {
                        if let Some(ack) = parse_ack(line.trim_end()) {
                            got.push(ack);
                            if got.len() == kill_after {
                                let _ = reached.send(());
                            }
                        }
                    }
                    Ok(_) => break,
                }
            }
            got
        });
        reached_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the child acknowledged verifications before the kill");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let got = reader.join().expect("reader");
        acks.extend(got);

        // Everything acknowledged so far must be on disk.
        let store = SledStore::open(&dir.join("data")).expect("reopen after kill");
        let report = verify_audit_chain(&store).expect("walk the chain");
        assert_eq!(
            report.first_broken, None,
            "round {round}: audit chain broken"
        );
        // One data string can have several records (the replay check below adds one).
        let mut audited: HashMap<[u8; 32], Vec<AuditOutcome>> = HashMap::new();
        for record in store.audit_records(1, usize::MAX).expect("audit") {
            if let (AuditOperation::Verify, Some(hash)) = (record.operation, record.data_sha256) {
                audited.entry(hash).or_default().push(record.outcome);
            }
        }
        for ack in &acks {
            let hash: [u8; 32] = hex::decode(&ack.hash).expect("hex").try_into().expect("32");
            let expected: &[AuditOutcome] = match ack.kind.as_str() {
                "valid" => &[AuditOutcome::Valid],
                "invalid" => &[AuditOutcome::Invalid],
                _ => &[AuditOutcome::Inactive, AuditOutcome::ForcedBlock],
            };
            let outcomes = audited.get(&hash).map(Vec::as_slice).unwrap_or_default();
            assert!(
                outcomes.iter().any(|o| expected.contains(o)),
                "round {round}: acknowledged {} lost (audit has {outcomes:?})",
                ack.kind
            );
            if ack.kind == "valid" {
                let nonce = store.nonce(&ack.nonce).expect("read").expect("registered");
                assert!(
                    nonce.consumed_at.is_some(),
                    "round {round}: acknowledged success did not consume its nonce"
                );
            }
        }
        for (id, _) in read_devices(dir) {
            let counter = store
                .activation(&id)
                .expect("read")
                .expect("exists")
                .counter;
            let before = last_counters.insert(id.clone(), counter).unwrap_or(0);
            assert!(
                counter >= before,
                "round {round}: counter of {id} went back from {before} to {counter}"
            );
        }
        drop(store);

        // A nonce consumed before the crash cannot be used again after it.
        if let Some(ack) = acks.iter().rev().find(|a| a.kind == "valid") {
            runtime.block_on(async {
                let (service, _store) = open_service(dir).await;
                let replay = service
                    .verify(VerifyRequest {
                        activation_id: ack.activation.clone(),
                        data: ack.data.clone(),
                        signature: ack.code.clone(),
                        allow_biometry: false,
                        component_length: None,
                        proximity_check: None,
                    })
                    .await
                    .expect("verify answers");
                assert!(
                    !replay.signature_valid,
                    "round {round}: a consumed code was accepted again"
                );
                assert_eq!(replay.nonce_status, Some(NonceStatus::Consumed));
            });
        }
    }
    let valid = acks.iter().filter(|a| a.kind == "valid").count();
    assert!(
        acks.len() >= KILLS,
        "too few acknowledged verifications ({}) to mean anything",
        acks.len()
    );
    assert!(
        valid > 0 && valid < acks.len(),
        "both outcomes must occur: {valid} of {}",
        acks.len()
    );
    eprintln!(
        "{KILLS} kills, {} acknowledged verifications ({valid} valid) all durable",
        acks.len()
    );
}
