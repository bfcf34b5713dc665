//! The HTTP load generator: the token's REST client ([`Client`], HTTP Basic with an integration
//! credential, keep-alive connections over loopback) against the routes of `spec/api.md`.
//!
//! - Creates run for a fixed time from `concurrency` tasks, each sending its next request as soon as
//!   the previous one is answered (closed loop).
//! - Verifies need one fresh nonce and one fresh code each. The payloads are created beforehand
//!   (non-personalized creates, outside the timed section; an application's nonce is valid for each
//!   of its activations) and every code is computed beforehand by the token ([`phone::sign`]), so the
//!   timed section only sends requests. Each task owns a disjoint set of activations and uses them
//!   round-robin, so the codes of one activation arrive in counter order, as from one phone.
//!
//! - Given several instances (one shared PostgreSQL store), every request goes to the next instance
//!   in turn ([`Target::spread`]).
//!
//! A request counts as done only when it is answered 200 (and, for verify, `signatureValid: true`);
//! anything else is counted as an error, and the run's figures say how many there were.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;

use crate::TokenState;
use crate::client::{Client, CreatePersonalized, Credentials, VerifyRequest};

use super::BenchError;
use super::phone::{self, payload_data};
use super::stats::{Latencies, Summary};

/// Which create method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `signature/offline/non-personalized/create` (the application's master key signs).
    NonPersonalized,
    /// `signature/offline/personalized/create` (the activation's own key signs).
    Personalized,
}

/// The server's counter of PKCS#11 object searches.
const OBJECT_SEARCHES: &str = "offline_signer_hsm_object_searches_total";
/// The server's counter of key look-ups answered from a session's cache of handles.
const HANDLE_CACHE_HITS: &str = "offline_signer_hsm_key_handle_cache_hits_total";

/// The servers' PKCS#11 look-up counters at one moment, summed over every instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HsmLookups {
    /// Object searches (`offline_signer_hsm_object_searches_total`).
    pub searches: f64,
    /// Look-ups answered from a session's cache of key handles
    /// (`offline_signer_hsm_key_handle_cache_hits_total`).
    pub cache_hits: f64,
}

/// Where and as whom requests go: one instance, or several serving one shared store, each request
/// sent to the next instance in turn.
#[derive(Debug, Clone)]
pub struct Target {
    clients: Arc<[Client]>,
    rotation: Arc<Rotation>,
}

impl Target {
    /// PKCS#11 object searches and key-handle cache hits so far, summed over every instance (an
    /// absent counter counts 0); `None` when an instance's `/metrics` cannot be read.
    pub async fn hsm_lookups(&self) -> Option<HsmLookups> {
        let mut total = HsmLookups {
            searches: 0.0,
            cache_hits: 0.0,
        };
        for client in self.clients.iter() {
            let text = client.metrics_text().await.ok()??;
            let counter = |name| super::cost::prometheus_counter(&text, name).unwrap_or(0.0);
            total.searches += counter(OBJECT_SEARCHES);
            total.cache_hits += counter(HANDLE_CACHE_HITS);
        }
        Some(total)
    }

    /// A target at `origin` (`http://HOST:PORT`) with an integration credential.
    pub fn new(origin: &str, credentials: Credentials) -> Result<Self, BenchError> {
        Self::spread(&[origin.to_owned()], credentials)
    }

    /// A target spread over several instances (`http://HOST:PORT` each, at least one), requests
    /// taking them round-robin, with one integration credential valid on all of them.
    pub fn spread(origins: &[String], credentials: Credentials) -> Result<Self, BenchError> {
        if origins.is_empty() {
            return Err(BenchError::Failed("a load target needs an origin".into()));
        }
        let clients = origins
            .iter()
            .map(|o| Client::new(o, Some(credentials.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            rotation: Arc::new(Rotation::new(clients.len())),
            clients: clients.into(),
        })
    }

    /// How many instances requests are spread over.
    pub fn instances(&self) -> usize {
        self.clients.len()
    }

    /// The client of the instance the next request goes to.
    fn next(&self) -> &Client {
        &self.clients[self.rotation.next()]
    }

    /// `GET /health` answers 200 on every instance.
    pub async fn healthy(&self) -> bool {
        for client in self.clients.iter() {
            if !matches!(client.health().await, Ok(true)) {
                return false;
            }
        }
        true
    }

    /// Creates `count` non-personalized payloads for `application` (`concurrency` in flight) and
    /// returns their `offlineData`. Untimed preparation of verify runs.
    pub async fn issue_payloads(
        &self,
        application: &str,
        count: usize,
        concurrency: usize,
    ) -> Result<Vec<String>, BenchError> {
        let data: Arc<str> = payload_data().into();
        let application: Arc<str> = application.into();
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = count.div_ceil(concurrency.max(1));
        for _ in 0..concurrency.max(1) {
            let target = self.clone();
            let (data, application) = (Arc::clone(&data), Arc::clone(&application));
            tasks.spawn(async move {
                let mut payloads = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let answer = target
                        .next()
                        .create_non_personalized(&application, &data)
                        .await?;
                    payloads.push(answer.offline_data);
                }
                Ok::<_, BenchError>(payloads)
            });
        }
        let mut all = Vec::with_capacity(count);
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined.map_err(|e| BenchError::Failed(format!("payload task: {e}")))??);
        }
        all.truncate(count);
        Ok(all)
    }

    /// Closed-loop creates for `seconds` from `concurrency` tasks; personalized creates rotate over
    /// `activations` (a disjoint set per task).
    pub async fn run_create(
        &self,
        kind: Create,
        application: &str,
        activations: &[String],
        concurrency: usize,
        seconds: f64,
    ) -> Result<Summary, BenchError> {
        let data = payload_data();
        let mut plans = Vec::with_capacity(concurrency);
        for w in 0..concurrency {
            let requests: Vec<CreatePersonalized> = activations
                .iter()
                .skip(w)
                .step_by(concurrency)
                .map(|a| CreatePersonalized {
                    activation_id: a.clone(),
                    data: data.clone(),
                    nonce: None,
                    proximity_check: None,
                })
                .collect();
            if kind == Create::Personalized && requests.is_empty() {
                return Err(BenchError::Failed(format!(
                    "{concurrency} tasks need at least as many activations"
                )));
            }
            plans.push(requests);
        }
        let data: Arc<str> = data.into();
        let application: Arc<str> = application.into();
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for requests in plans {
            let target = self.clone();
            let (data, application) = (Arc::clone(&data), Arc::clone(&application));
            tasks.spawn(async move {
                let mut lat = Latencies::with_capacity(8192);
                let mut i = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let client = target.next();
                    let answer = match kind {
                        Create::NonPersonalized => {
                            client.create_non_personalized(&application, &data).await
                        }
                        Create::Personalized => {
                            i += 1;
                            client
                                .create_personalized(&requests[i % requests.len()])
                                .await
                        }
                    };
                    match answer {
                        Ok(_) => lat.record(t.elapsed()),
                        Err(_) => lat.error(),
                    }
                }
                lat
            });
        }
        collect(tasks, started).await
    }

    /// Sends one prepared verify per payload, `concurrency` tasks in flight. The tokens in
    /// `selection` (indices into `phones`) sign the payloads, each code `0..=max_skip` counter steps
    /// ahead (uniformly); each task owns the tokens `selection[j]` with `j ≡ task (mod concurrency)`.
    pub async fn run_verify(
        &self,
        phones: &mut [TokenState],
        selection: &[usize],
        payloads: Vec<String>,
        concurrency: usize,
        max_skip: u32,
    ) -> Result<Summary, BenchError> {
        let plans = plan_verifies(phones, selection, payloads, concurrency, max_skip)?;
        eprintln!(
            "bench: sending {} prepared verifies from {concurrency} tasks",
            plans.iter().map(Vec::len).sum::<usize>()
        );
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for requests in plans {
            let target = self.clone();
            tasks.spawn(async move {
                let mut lat = Latencies::with_capacity(requests.len());
                for request in requests {
                    let t = Instant::now();
                    match target.next().verify(&request).await {
                        Ok(answer) if answer.signature_valid => lat.record(t.elapsed()),
                        _ => lat.error(),
                    }
                }
                lat
            });
        }
        collect(tasks, started).await
    }
}

/// Round-robin over `n` instances, shared by every task of a run: consecutive requests, whichever
/// task sends them, go to consecutive instances.
#[derive(Debug)]
struct Rotation {
    n: usize,
    sent: AtomicUsize,
}

impl Rotation {
    fn new(n: usize) -> Self {
        Self {
            n: n.max(1),
            sent: AtomicUsize::new(0),
        }
    }

    /// The instance (index) of the next request.
    fn next(&self) -> usize {
        if self.n == 1 {
            return 0;
        }
        self.sent.fetch_add(1, Ordering::Relaxed) % self.n
    }
}

/// The verify requests of each task: payload `r` goes to task `r mod concurrency`, whose tokens sign
/// in turn.
fn plan_verifies(
    phones: &mut [TokenState],
    selection: &[usize],
    payloads: Vec<String>,
    concurrency: usize,
    max_skip: u32,
) -> Result<Vec<Vec<VerifyRequest>>, BenchError> {
    if concurrency == 0 || selection.len() < concurrency {
        return Err(BenchError::Failed(format!(
            "{concurrency} tasks need at least as many activations"
        )));
    }
    let mut rng = rand::thread_rng();
    let owned: Vec<Vec<usize>> = (0..concurrency)
        .map(|w| {
            selection
                .iter()
                .skip(w)
                .step_by(concurrency)
                .copied()
                .collect()
        })
        .collect();
    let mut plans: Vec<Vec<VerifyRequest>> = vec![Vec::new(); concurrency];
    for (r, payload) in payloads.into_iter().enumerate() {
        let w = r % concurrency;
        let mine = &owned[w];
        let state = &mut phones[mine[plans[w].len() % mine.len()]];
        let skip = if max_skip == 0 {
            0
        } else {
            rng.gen_range(0..=max_skip)
        };
        let signed = phone::sign(state, &payload, skip)?;
        plans[w].push(VerifyRequest {
            activation_id: signed.activation_id,
            data: signed.data,
            signature: signed.code,
            allow_biometry: signed.allow_biometry,
            component_length: None,
            proximity_check: None,
        });
    }
    Ok(plans)
}

async fn collect(
    mut tasks: tokio::task::JoinSet<Latencies>,
    started: Instant,
) -> Result<Summary, BenchError> {
    let mut all = Latencies::default();
    while let Some(joined) = tasks.join_next().await {
        all.merge(joined.map_err(|e| BenchError::Failed(format!("load task: {e}")))?);
    }
    Ok(all.summary(started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{
        CounterData, FactorKeys, KeyIndicator, MasterSecret, PrivateKey, SymmetricKey,
        UnsignedOfflineData, ecdsa,
    };

    fn states(master: &PrivateKey, n: u8) -> Vec<TokenState> {
        let server = PrivateKey::from_scalar_bytes(&[3; 32]).expect("a valid scalar");
        (0..n)
            .map(|i| TokenState {
                server_url: "http://127.0.0.1:1".into(),
                application_id: "bench".into(),
                user_id: "bench-user".into(),
                activation_id: format!("a{i}"),
                device_public_key: server.public_key(),
                server_public_key: server.public_key(),
                master_public_key: master.public_key(),
                factor_keys: FactorKeys::from_master_secret(&MasterSecret::from_key(
                    SymmetricKey::from_bytes([i; 16]),
                )),
                counter_data: CounterData::from_bytes([i; 16]),
                counter: 0,
                transport_key: None,
                protocol_version: None,
            })
            .collect()
    }

    fn payload(master: &PrivateKey, i: u8) -> String {
        let nonce = crate::crypto::b64::encode([i; 16]);
        let unsigned =
            UnsignedOfflineData::new(&payload_data(), None, &nonce, KeyIndicator::Master);
        let signature = ecdsa::sign(master, unsigned.signed_bytes());
        unsigned.finish(&signature)
    }

    #[test]
    fn requests_take_the_instances_in_turn() {
        let one = Rotation::new(1);
        assert!((0..5).all(|_| one.next() == 0));
        let three = Rotation::new(3);
        let picks: Vec<usize> = (0..7).map(|_| three.next()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(Rotation::new(0).next(), 0, "no instance is treated as one");
    }

    #[test]
    fn a_spread_target_needs_an_origin_and_valid_urls() {
        let creds = Credentials::new("t", "s");
        assert!(Target::spread(&[], creds.clone()).is_err());
        assert!(Target::spread(&["ftp://x".into()], creds.clone()).is_err());
        let two = Target::spread(
            &["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            creds,
        )
        .expect("two origins");
        assert_eq!(two.instances(), 2);
    }

    #[test]
    fn each_task_signs_with_its_own_tokens_in_turn() {
        let master = PrivateKey::from_scalar_bytes(&[5; 32]).expect("a valid scalar");
        let mut phones = states(&master, 5);
        let payloads: Vec<String> = (0..9).map(|i| payload(&master, i)).collect();
        // Tokens 1..=4 take part; task 0 owns a1 and a3, task 1 owns a2 and a4.
        let plans = plan_verifies(&mut phones, &[1, 2, 3, 4], payloads, 2, 0).expect("planned");
        let ids =
            |w: usize| -> Vec<&str> { plans[w].iter().map(|r| r.activation_id.as_str()).collect() };
        assert_eq!(ids(0), ["a1", "a3", "a1", "a3", "a1"]);
        assert_eq!(ids(1), ["a2", "a4", "a2", "a4"]);
        assert_eq!(
            phones[0].counter, 0,
            "a token outside the selection is untouched"
        );
        assert_eq!(phones[1].counter, 3);
        assert_eq!(phones[4].counter, 2);
        let codes: std::collections::HashSet<&str> = plans
            .iter()
            .flatten()
            .map(|r| r.signature.as_str())
            .collect();
        assert_eq!(codes.len(), 9, "every request carries its own code");
        assert!(plan_verifies(&mut phones, &[1], Vec::new(), 2, 0).is_err());
    }
}
