//! Seeding: registers and commits activations through the service's real register path
//! ([`Service::register_activation`], HSM key generation, ECDH and sealing included), in-process
//! against the configured data directory and token, before the server starts (sled allows one process
//! per data directory). Each registered device's phone state is appended to the device file.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::service::{RegisterActivation, Service, SystemClock};
use crate::signer::{self, Signer};
use crate::store::{SledStore, Store};
use crate::token::client::Registered;
use crate::token::{Activation, PendingActivation, TokenState};

use super::BenchError;
use super::phone;

/// What seeding did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SeedReport {
    /// Activations registered and committed in this step.
    pub count: usize,
    /// Wall time of registering and committing them.
    pub seconds: f64,
    /// Registrations per second.
    pub per_s: f64,
    /// `SledStore::size_on_disk` before this step.
    pub disk_bytes_before: u64,
    /// `SledStore::size_on_disk` after this step.
    pub disk_bytes_after: u64,
}

/// Opens the configured signer and store, creates `application` (if missing), then registers and
/// commits `count` activations with `concurrency` requests in flight, appending each phone to `devices`.
pub async fn run(
    config: &Config,
    application: &str,
    count: usize,
    concurrency: usize,
    devices: &Path,
) -> Result<SeedReport, BenchError> {
    let store = Arc::new(SledStore::open(&config.data_dir)?);
    let signer = signer::open_signer(&config.signer).await?;
    let result = seed(
        config,
        &store,
        &signer,
        application,
        count,
        concurrency,
        devices,
    )
    .await;
    signer.shutdown().await;
    result
}

async fn seed(
    config: &Config,
    store: &Arc<SledStore>,
    signer: &Arc<dyn Signer>,
    application: &str,
    count: usize,
    concurrency: usize,
    devices: &Path,
) -> Result<SeedReport, BenchError> {
    let service = Service::open(
        Arc::clone(signer),
        Arc::clone(store) as Arc<dyn Store>,
        crate::server::service_settings(config),
        Arc::new(SystemClock),
    )
    .await?;
    if store.application(application)?.is_none() {
        service.create_application(application).await?;
    }
    let master_public_key: Arc<str> = service
        .application_detail(application)
        .await?
        .master_public_key
        .into();
    let server_url: Arc<str> = format!("http://{}", config.listen).into();
    let activation = Arc::new(Activation {
        application_id: application.to_owned(),
        user_id: "bench-user".to_owned(),
        max_failed_attempts: None,
    });
    let disk_bytes_before = store.size_on_disk()?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let service = service.clone();
        let next = Arc::clone(&next);
        let (server_url, activation, master) = (
            Arc::clone(&server_url),
            Arc::clone(&activation),
            Arc::clone(&master_public_key),
        );
        tasks.spawn(async move {
            let mut phones = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                phones.push(register(&service, &server_url, &activation, &master).await?);
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
        disk_bytes_before,
        disk_bytes_after: store.size_on_disk()?,
    })
}

/// One device, activated the way [`crate::token::Token::activate`] does it but with the service called
/// in-process: a fresh device key pair, register, the token's fingerprint check and key derivation
/// ([`PendingActivation::complete`]), commit.
async fn register(
    service: &Service,
    server_url: &str,
    activation: &Activation,
    master_public_key: &str,
) -> Result<TokenState, BenchError> {
    let pending = PendingActivation::new(server_url, activation);
    let registered = service
        .register_activation(RegisterActivation {
            application_id: activation.application_id.clone(),
            user_id: activation.user_id.clone(),
            device_public_key: pending.device_public_key().to_base64(),
            max_failed_attempts: None,
            activation_flags: Vec::new(),
        })
        .await?;
    let state = pending.complete(
        &Registered {
            activation_id: registered.activation_id,
            activation_status: "PENDING_COMMIT".to_owned(),
            server_public_key: registered.server_public_key,
            ctr_data: registered.ctr_data,
            device_public_key_fingerprint: registered.device_public_key_fingerprint,
        },
        master_public_key,
    )?;
    service.commit_activation(&state.activation_id).await?;
    Ok(state)
}
