//! Seeding: registers and commits activations through the service's public API, exactly as
//! [`crate::Token::activate`] does (a fresh device key pair, `activation/register`, the fingerprint
//! check and key derivation, `activation/commit`), with many requests in flight. The server runs; each
//! phone's state is appended to the device file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::client::Client;
use crate::{Activation, Token, TokenState};

use super::{BenchError, phone};

/// What seeding did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SeedReport {
    /// Activations registered and committed in this step.
    pub count: usize,
    /// Wall time of registering and committing them.
    pub seconds: f64,
    /// Registrations per second.
    pub per_s: f64,
}

/// Creates `application` over the API if it does not exist, then registers and commits `count`
/// activations with `concurrency` requests in flight, appending each phone to `devices`.
pub async fn run(
    client: &Client,
    application: &str,
    count: usize,
    concurrency: usize,
    devices: &Path,
) -> Result<SeedReport, BenchError> {
    if client.application_detail(application).await.is_err() {
        client.application_create(application).await?;
    }
    let activation = Arc::new(Activation {
        application_id: application.to_owned(),
        user_id: "bench-user".to_owned(),
        max_failed_attempts: None,
    });
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, activation) =
            (client.clone(), Arc::clone(&next), Arc::clone(&activation));
        tasks.spawn(async move {
            let mut phones: Vec<TokenState> = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let token = Token::activate(&client, &activation, |_| Ok(())).await?;
                phones.push(token.into_state());
            }
            Ok::<_, BenchError>(phones)
        });
    }
    let mut phones = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        let mut part =
            joined.map_err(|e| BenchError::Failed(format!("seeding task failed: {e}")))??;
        phones.append(&mut part);
    }
    let seconds = started.elapsed().as_secs_f64();
    phone::append(devices, &phones)?;
    Ok(SeedReport {
        count,
        seconds,
        per_s: count as f64 / seconds.max(f64::MIN_POSITIVE),
    })
}
