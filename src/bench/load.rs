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
//! A request counts as done only when it is answered 200 (and, for verify, `signatureValid: true`);
//! anything else is counted as an error, and the run's figures say how many there were.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;

use crate::token::TokenState;
use crate::token::client::{Client, CreatePersonalized, Credentials, VerifyRequest};

use super::BenchError;
use super::phone::{self, payload_data};
use super::stats::{Latencies, Summary};

/// Which create method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    NonPersonalized,
    Personalized,
}

/// Where and as whom requests go.
#[derive(Debug, Clone)]
pub struct Target {
    client: Client,
}

impl Target {
    /// A target at `origin` (`http://HOST:PORT`) with an integration credential.
    pub fn new(origin: &str, credentials: Credentials) -> Result<Self, BenchError> {
        Ok(Self {
            client: Client::new(origin, Some(credentials))?,
        })
    }

    /// `GET /health` answers 200.
    pub async fn healthy(&self) -> bool {
        matches!(self.client.health().await, Ok(true))
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
            let client = self.client.clone();
            let (data, application) = (Arc::clone(&data), Arc::clone(&application));
            tasks.spawn(async move {
                let mut payloads = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let answer = client.create_non_personalized(&application, &data).await?;
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
            let client = self.client.clone();
            let (data, application) = (Arc::clone(&data), Arc::clone(&application));
            tasks.spawn(async move {
                let mut lat = Latencies::with_capacity(8192);
                let mut i = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
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
            let client = self.client.clone();
            tasks.spawn(async move {
                let mut lat = Latencies::with_capacity(requests.len());
                for request in requests {
                    let t = Instant::now();
                    match client.verify(&request).await {
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
