//! The service scenarios (`offline_signer_testkit::service_suite`, listed once there) against a real
//! SoftHSM token: one throwaway token per test, each in its own child process (see
//! `offline_signer_testkit::softhsm`).

use std::sync::Arc;

use offline_signer::service::Settings;
use offline_signer::signer::pkcs11::Pkcs11Signer;
use offline_signer_testkit::service_harness::Harness;
use offline_signer_testkit::softhsm;

fn run_with(name: &str, settings: Settings, body: impl AsyncFnOnce(&Harness)) {
    softhsm::with_token(name, "service", |token| {
        softhsm::runtime().block_on(async {
            let signer = Arc::new(
                Pkcs11Signer::open(&token.config())
                    .await
                    .expect("open the signer"),
            );
            let harness = Harness::new(Arc::clone(&signer) as _, settings).await;
            body(&harness).await;
            drop(harness);
            // Waits for the workers to close the sessions and finalize the library: left to
            // themselves they may still be inside SoftHSM when the process exits, whose
            // destructors then crash it (seen once: SIGSEGV after "1 passed").
            offline_signer::signer::Signer::shutdown(signer.as_ref()).await;
        })
    });
}

offline_signer_testkit::service_scenarios!(run_with);
