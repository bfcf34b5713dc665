//! The service scenarios against the in-process `software-insecure` signer.

use offline_signer_testkit::service_harness;
use offline_signer_testkit::service_suite;

use std::sync::Arc;

use offline_signer::service::NoncePolicy;
use offline_signer::service::Settings;
use offline_signer::signer::software::SoftwareSigner;
use service_harness::{Harness, default_settings};

async fn harness(settings: Settings) -> Harness {
    Harness::new(Arc::new(SoftwareSigner::new_in_memory()), settings).await
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            service_suite::$name(&harness(default_settings()).await).await;
        }
    )*};
}

scenarios!(
    valid_code_moves_counter_and_resets_failures,
    invalid_codes_block_at_the_limit_and_unblock_restores,
    lookahead_edge_19_accepted_20_not,
    replay_is_rejected_as_consumed,
    rejected_nonces_touch_nothing,
    biometry_only_when_allowed,
    component_lengths_4_and_8,
    proximity_current_and_previous_step,
    removed_and_missing_and_pending,
    forced_block_when_already_at_the_limit,
    non_personalized_payload_and_shared_nonce,
    one_of_32_concurrent_verifications_wins,
    bad_input_is_refused,
    audit_trail_is_complete_and_chained,
    no_secret_in_the_data_dir,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_off_is_powerauth_behaviour() {
    let settings = Settings {
        activation: offline_signer::service::ActivationSettings::default(),
        nonce_policy: NoncePolicy::Off,
        ..default_settings()
    };
    service_suite::policy_off_is_powerauth_behaviour(&harness(settings).await).await;
}
