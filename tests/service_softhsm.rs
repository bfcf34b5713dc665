//! The service scenarios against a real SoftHSM token (one throwaway token per test, each in its own
//! child process; see `common/softhsm.rs`).

use offline_signer_testkit::service_harness;
use offline_signer_testkit::service_suite;
use offline_signer_testkit::softhsm;

use std::sync::Arc;

use offline_signer::service::NoncePolicy;
use offline_signer::service::Settings;
use offline_signer::signer::pkcs11::Pkcs11Signer;
use service_harness::{Harness, default_settings};

fn run_with(name: &str, settings: Settings, body: impl AsyncFnOnce(&Harness)) {
    softhsm::with_token(name, "service", |token| {
        softhsm::runtime().block_on(async {
            let signer = Pkcs11Signer::open(&token.config())
                .await
                .expect("open the signer");
            let harness = Harness::new(Arc::new(signer), settings).await;
            body(&harness).await;
        })
    });
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            run_with(stringify!($name), default_settings(), async |h| service_suite::$name(h).await);
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

#[test]
fn policy_off_is_powerauth_behaviour() {
    let settings = Settings {
        activation: offline_signer::service::ActivationSettings::default(),
        nonce_policy: NoncePolicy::Off,
        ..default_settings()
    };
    run_with("policy_off_is_powerauth_behaviour", settings, async |h| {
        service_suite::policy_off_is_powerauth_behaviour(h).await
    });
}
