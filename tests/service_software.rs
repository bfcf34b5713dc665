//! The service scenarios (`offline_signer_testkit::service_suite`, listed once there) against the
//! in-process `software-insecure` signer.

use std::sync::Arc;

use offline_signer::service::Settings;
use offline_signer::signer::software::SoftwareSigner;
use offline_signer_testkit::service_harness::Harness;

fn run_with(_name: &str, settings: Settings, body: impl AsyncFnOnce(&Harness)) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let harness = Harness::new(Arc::new(SoftwareSigner::new_in_memory()), settings).await;
        body(&harness).await;
    });
}

offline_signer_testkit::service_scenarios!(run_with);
