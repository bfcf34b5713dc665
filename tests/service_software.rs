//! The service scenarios (`offline_signer_testkit::service_suite`, listed once there) against the
//! in-process `software-insecure` signer.

use std::sync::Arc;

use offline_signer::service::Settings;
use offline_signer::signer::software::SoftwareSigner;
use offline_signer_testkit::service_harness::Harness;

fn run_with(_name: &str, settings: Settings, body: impl AsyncFnOnce(&Harness)) {
    offline_signer_testkit::runtime().block_on(async {
        let harness = Harness::new(Arc::new(SoftwareSigner::new_in_memory()), settings).await;
        body(&harness).await;
    });
}

offline_signer_testkit::service_scenarios!(run_with);
