//! The service-level scenarios of `powerauth-offline.md` §8 and `api.md`, written once and run against
//! every signer (`tests/service_software.rs`, `tests/service_softhsm.rs`).

use std::time::Duration;

use offline_signer::crypto::offline_data::{
    DEFAULT_URI_ID, KeyIndicator, OfflineData, RequestData,
};
use offline_signer::crypto::{CounterData, SignatureType, b64};
use offline_signer::model::ActivationStatus;
use offline_signer::service::{
    CreateNonPersonalized, CreatePersonalized, NoncePolicy, NonceStatus, ProximityCheck,
    RegisterActivation, ServiceError,
};
use offline_signer::store::{AuditOutcome, verify_audit_chain};

use super::service_harness::{
    Approval, Device, Harness, payload_totp, phone_request_data, verify_request,
};

const PK: SignatureType = SignatureType::PossessionKnowledge;
const PB: SignatureType = SignatureType::PossessionBiometry;

/// A wrong code of the right shape.
const WRONG: &str = "00000000-00000000";

pub async fn valid_code_moves_counter_and_resets_failures(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let before = h.stored(&phone);
    let (_, data) = h.payload(&phone, None).await;

    let wrong = h.verify(&phone, &data, WRONG).await;
    assert!(!wrong.signature_valid);
    assert_eq!(h.stored(&phone).failed_attempts, 1);

    let code = phone.sign(&data);
    let r = h.verify(&phone, &data, &code).await;
    assert!(r.signature_valid, "{r:?}");
    assert_eq!(r.activation_status, ActivationStatus::Active);
    assert_eq!(r.blocked_reason, None);
    assert_eq!(r.activation_id, phone.activation_id);
    assert_eq!(r.user_id.as_deref(), Some("alice"));
    assert_eq!(r.application_id.as_deref(), Some("app"));
    assert_eq!(r.signature_type, Some(PK));
    assert_eq!(r.remaining_attempts, Some(5));
    assert_eq!(r.activation_flags, vec!["FLAG_A".to_owned()]);
    assert!(r.application_roles.is_empty());
    assert_eq!(r.nonce_status, Some(NonceStatus::Valid));

    let after = h.stored(&phone);
    assert_eq!(after.counter, before.counter + 1);
    assert_eq!(
        after.ctr_data,
        *CounterData::from_bytes(before.ctr_data).next().as_bytes()
    );
    assert_eq!(after.failed_attempts, 0);
    assert!(after.last_used_at.is_some());
}

pub async fn invalid_codes_block_at_the_limit_and_unblock_restores(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", Some(3)).await;
    for remaining in [2, 1, 0] {
        let (_, data) = h.payload(&phone, None).await;
        let r = h.verify(&phone, &data, WRONG).await;
        assert!(!r.signature_valid);
        assert_eq!(
            r.signature_type,
            Some(PK),
            "the first allowed type is reported"
        );
        assert_eq!(r.remaining_attempts, Some(remaining));
        assert_eq!(r.user_id.as_deref(), Some("alice"));
        if remaining == 0 {
            assert_eq!(r.activation_status, ActivationStatus::Blocked);
            assert_eq!(r.blocked_reason.as_deref(), Some("MAX_FAILED_ATTEMPTS"));
        } else {
            assert_eq!(r.activation_status, ActivationStatus::Active);
            assert_eq!(r.blocked_reason, None);
        }
    }
    // Blocked: even the right code is refused with the bare §8.2 answer. (The payload is made while
    // briefly unblocked, since a blocked activation gets none; it is then blocked by an operator.)
    h.service
        .unblock_activation(&phone.activation_id)
        .await
        .expect("unblock");
    let (_, data) = h.payload(&phone, None).await;
    h.service
        .block_activation(&phone.activation_id, None)
        .await
        .expect("block again");
    let r = h
        .verify(&phone, &data, &phone.code_for(&data, Approval::PIN))
        .await;
    assert!(!r.signature_valid);
    assert_eq!(r.activation_status, ActivationStatus::Blocked);
    assert_eq!(r.user_id, None);
    assert_eq!(r.signature_type, None);
    assert_eq!(r.remaining_attempts, None);
    assert_eq!(r.nonce_status, None);
    assert_eq!(
        h.stored(&phone).blocked_reason.as_deref(),
        Some("NOT_SPECIFIED")
    );
    assert_create_refused(h, &phone).await;

    // Unblock: ACTIVE, failures cleared, counter untouched: the phone's next code works.
    let counter = h.stored(&phone).counter;
    let unblocked = h
        .service
        .unblock_activation(&phone.activation_id)
        .await
        .expect("unblock");
    assert_eq!(unblocked.status, ActivationStatus::Active);
    assert_eq!(unblocked.failed_attempts, 0);
    assert_eq!(unblocked.blocked_reason, None);
    assert_eq!(unblocked.counter, counter);
    let r = h.verify(&phone, &data, &phone.sign(&data)).await;
    assert!(r.signature_valid, "{r:?}");
    // Unblock of an active activation is idempotent, as in PowerAuth: ACTIVE, nothing changes.
    let before = h.stored(&phone);
    let again = h
        .service
        .unblock_activation(&phone.activation_id)
        .await
        .expect("a repeated unblock is answered");
    assert_eq!(again.status, ActivationStatus::Active);
    assert_eq!(
        h.stored(&phone),
        before,
        "a repeated unblock changed the record"
    );
}

pub async fn lookahead_edge_19_accepted_20_not(h: &Harness) {
    h.application("app").await;
    let ahead_19 = h.device("app", None).await;
    let ahead_20 = h.device("app", None).await;
    ahead_19.skip(19);
    ahead_20.skip(20);
    let (_, data) = h.payload(&ahead_19, None).await;
    let r = h.verify(&ahead_19, &data, &ahead_19.sign(&data)).await;
    assert!(r.signature_valid, "position 19 is inside a window of 20");
    assert_eq!(h.stored(&ahead_19).counter, 20);
    assert_eq!(
        h.stored(&ahead_19).ctr_data,
        *ahead_19.counter.get().as_bytes()
    );

    let (_, data) = h.payload(&ahead_20, None).await;
    let r = h.verify(&ahead_20, &data, &ahead_20.sign(&data)).await;
    assert!(!r.signature_valid, "position 20 is outside a window of 20");
    assert_eq!(h.stored(&ahead_20).counter, 0);
    assert_eq!(h.stored(&ahead_20).failed_attempts, 1);
}

pub async fn replay_is_rejected_as_consumed(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (payload, data) = h.payload(&phone, None).await;
    let code = phone.sign(&data);
    assert!(h.verify(&phone, &data, &code).await.signature_valid);
    let before = h.stored(&phone);
    let again = h.verify(&phone, &data, &code).await;
    assert!(!again.signature_valid);
    assert_eq!(again.nonce_status, Some(NonceStatus::Consumed));
    let after = h.stored(&phone);
    assert_eq!(after.counter, before.counter);
    assert_eq!(after.failed_attempts, before.failed_attempts);
    let stored_nonce = h
        .store
        .nonce(&payload.nonce)
        .expect("read")
        .expect("registered");
    assert!(stored_nonce.consumed_at.is_some());
}

pub async fn rejected_nonces_touch_nothing(h: &Harness) {
    h.application("app").await;
    h.application("other").await;
    let phone = h.device("app", None).await;
    let neighbour = h.device("app", None).await;
    let stranger = h.device("other", None).await;

    let assert_untouched =
        |h: &Harness, status: NonceStatus, r: &offline_signer::service::VerifyResponse| {
            assert!(!r.signature_valid);
            assert_eq!(r.nonce_status, Some(status));
            assert_eq!(r.activation_status, ActivationStatus::Active);
            assert_eq!(r.remaining_attempts, Some(5));
            let stored = h.stored(&phone);
            assert_eq!(stored.counter, 0, "{status:?} moved the counter");
            assert_eq!(stored.failed_attempts, 0, "{status:?} counted a failure");
        };

    // UNKNOWN: a nonce this service never issued, with an otherwise correct code.
    let forged =
        RequestData::for_operation(DEFAULT_URI_ID, &b64::encode([7u8; 16]), "op", "A1", None);
    let r = h
        .verify(&phone, &forged, &phone.code_for(&forged, Approval::PIN))
        .await;
    assert_untouched(h, NonceStatus::Unknown, &r);

    // MISMATCH: a nonce issued for another activation.
    let (_, theirs) = h.payload(&neighbour, None).await;
    let r = h
        .verify(&phone, &theirs, &phone.code_for(&theirs, Approval::PIN))
        .await;
    assert_untouched(h, NonceStatus::Mismatch, &r);

    // MISMATCH: a non-personalized nonce of another application.
    let other_app = h.non_personalized_payload("other").await;
    let other_key = h.service.application_detail("other").await.expect("detail");
    let other_data = phone_request_data(
        &other_app.offline_data,
        &offline_signer::crypto::PublicKey::from_base64(&other_key.master_public_key).expect("key"),
    );
    let r = h
        .verify(
            &phone,
            &other_data,
            &phone.code_for(&other_data, Approval::PIN),
        )
        .await;
    assert_untouched(h, NonceStatus::Mismatch, &r);
    drop(stranger);

    // EXPIRED: issued for this activation, used after the TTL.
    let (_, late) = h.payload(&phone, None).await;
    h.clock.advance(Duration::from_secs(301));
    let r = h
        .verify(&phone, &late, &phone.code_for(&late, Approval::PIN))
        .await;
    assert_untouched(h, NonceStatus::Expired, &r);

    // And the counter really is where it was: the phone's next code still verifies at position 0.
    let (_, fresh) = h.payload(&phone, None).await;
    let r = h.verify(&phone, &fresh, &phone.sign(&fresh)).await;
    assert!(r.signature_valid);
    assert_eq!(h.stored(&phone).counter, 1);

    // Every rejection is in the audit trail.
    let records = h.store.audit_records(1, 10_000).expect("audit");
    let rejected = records
        .iter()
        .filter(|r| r.outcome == AuditOutcome::NonceRejected)
        .count();
    assert_eq!(rejected, 4);
}

pub async fn biometry_only_when_allowed(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (_, data) = h.payload(&phone, None).await;
    let code = phone.code_for(&data, Approval::BIOMETRY);
    let r = h.verify(&phone, &data, &code).await;
    assert!(!r.signature_valid, "biometry not allowed");
    assert_eq!(r.signature_type, Some(PK));
    assert_eq!(h.stored(&phone).failed_attempts, 1);

    let r = h
        .verify_with(
            &phone,
            &data,
            &phone.sign_as(&data, Approval::BIOMETRY),
            |v| v.allow_biometry = true,
        )
        .await;
    assert!(r.signature_valid, "{r:?}");
    assert_eq!(r.signature_type, Some(PB));
    assert_eq!(h.stored(&phone).failed_attempts, 0);

    // With biometry allowed, the knowledge code still works and is reported as such.
    let (_, data) = h.payload(&phone, None).await;
    let r = h
        .verify_with(&phone, &data, &phone.sign(&data), |v| {
            v.allow_biometry = true
        })
        .await;
    assert!(r.signature_valid);
    assert_eq!(r.signature_type, Some(PK));

    // A wrong code with biometry allowed: a failed attempt, reported as the first allowed type
    // (POSSESSION_KNOWLEDGE), as PowerAuth does (`powerauth-offline.md` §8.2).
    let (_, data) = h.payload(&phone, None).await;
    let r = h
        .verify_with(&phone, &data, WRONG, |v| v.allow_biometry = true)
        .await;
    assert!(!r.signature_valid);
    assert_eq!(r.signature_type, Some(PK));
    assert_eq!(r.remaining_attempts, Some(4));
    assert_eq!(h.stored(&phone).failed_attempts, 1);
}

/// A nonce is valid up to, and not at, its expiry: one millisecond before `issued_at + ttl` it
/// verifies, at `issued_at + ttl` exactly it is `EXPIRED` and touches nothing.
pub async fn nonce_expires_exactly_at_its_expiry(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let ttl = h.service.settings().nonce_ttl;

    let (_, in_time) = h.payload(&phone, None).await;
    h.clock.advance(ttl - Duration::from_millis(1));
    let r = h.verify(&phone, &in_time, &phone.sign(&in_time)).await;
    assert_eq!(r.nonce_status, Some(NonceStatus::Valid), "{r:?}");
    assert!(r.signature_valid, "{r:?}");

    let (_, late) = h.payload(&phone, None).await;
    h.clock.advance(ttl);
    let before = h.stored(&phone);
    let r = h
        .verify(&phone, &late, &phone.code_for(&late, Approval::PIN))
        .await;
    assert_eq!(r.nonce_status, Some(NonceStatus::Expired), "{r:?}");
    assert!(!r.signature_valid);
    let after = h.stored(&phone);
    assert_eq!(after.counter, before.counter);
    assert_eq!(after.failed_attempts, before.failed_attempts);
}

pub async fn component_lengths_4_and_8(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (_, data) = h.payload(&phone, None).await;
    let short = phone.sign_as(&data, Approval::PIN.with_length(4));
    assert_eq!(short.len(), 9);
    let r = h
        .verify_with(&phone, &data, &short, |v| v.component_length = Some(4))
        .await;
    assert!(r.signature_valid, "{r:?}");

    let (_, data) = h.payload(&phone, None).await;
    let long = phone.code_for(&data, Approval::PIN);
    let r = h
        .verify_with(&phone, &data, &long, |v| v.component_length = Some(4))
        .await;
    assert!(!r.signature_valid, "an 8-digit code is not a 4-digit code");
    let r = h.verify(&phone, &data, &phone.sign(&data)).await;
    assert!(r.signature_valid, "default length 8");

    let before = h.stored(&phone);
    for bad in [3, 9, 0, -1] {
        let e = h
            .try_verify_with(&phone, &data, WRONG, |v| v.component_length = Some(bad))
            .await;
        assert!(
            matches!(e, Err(ServiceError::InvalidRequest(_))),
            "componentLength {bad}"
        );
    }
    let after = h.stored(&phone);
    assert_eq!(
        after.version, before.version,
        "refused requests change nothing"
    );
}

fn proximity(step_count: i64) -> ProximityCheck {
    ProximityCheck {
        seed: b64::encode((0u8..32).collect::<Vec<_>>()),
        step_length: 30,
        step_count,
    }
}

pub async fn proximity_current_and_previous_step(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;

    // Current step.
    let (payload, data) = h.payload(&phone, Some(proximity(0))).await;
    let totp = payload_totp(&payload.offline_data).expect("the QR carries the TOTP");
    assert_eq!(totp.len(), 8);
    let code = phone.sign_as(&data, Approval::PIN.with_totp(&totp));
    let r = h
        .verify_with(&phone, &data, &code, |v| {
            v.proximity_check = Some(proximity(0))
        })
        .await;
    assert!(r.signature_valid, "{r:?}");

    // Previous step: accepted with stepCount 1, refused with stepCount 0.
    let (payload, data) = h.payload(&phone, Some(proximity(0))).await;
    let totp = payload_totp(&payload.offline_data).expect("TOTP line");
    h.clock.advance(Duration::from_secs(30));
    let code = phone.code_for(&data, Approval::PIN.with_totp(&totp));
    let r = h
        .verify_with(&phone, &data, &code, |v| {
            v.proximity_check = Some(proximity(0))
        })
        .await;
    assert!(
        !r.signature_valid,
        "stepCount 0 accepts only the current step"
    );
    let r = h
        .verify_with(
            &phone,
            &data,
            &phone.sign_as(&data, Approval::PIN.with_totp(&totp)),
            |v| v.proximity_check = Some(proximity(1)),
        )
        .await;
    assert!(
        r.signature_valid,
        "stepCount 1 accepts the previous step: {r:?}"
    );

    // Without the proximity check the TOTP-bound code does not verify.
    let (payload, data) = h.payload(&phone, Some(proximity(0))).await;
    let totp = payload_totp(&payload.offline_data).expect("TOTP line");
    let r = h
        .verify(
            &phone,
            &data,
            &phone.code_for(&data, Approval::PIN.with_totp(&totp)),
        )
        .await;
    assert!(!r.signature_valid);

    // Bad proximity parameters are refused up front.
    let bad = ProximityCheck {
        step_length: 0,
        ..proximity(0)
    };
    let e = h
        .try_verify_with(&phone, &data, WRONG, |v| v.proximity_check = Some(bad))
        .await;
    assert!(matches!(e, Err(ServiceError::InvalidRequest(_))));
}

pub async fn removed_and_missing_and_pending(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (_, data) = h.payload(&phone, None).await;
    h.service
        .remove_activation(&phone.activation_id)
        .await
        .expect("remove");
    let stored = h.stored(&phone);
    assert_eq!(stored.status, ActivationStatus::Removed);
    assert!(stored.key_material_destroyed());
    let r = h
        .verify(&phone, &data, &phone.code_for(&data, Approval::PIN))
        .await;
    assert!(!r.signature_valid);
    assert_eq!(r.activation_status, ActivationStatus::Removed);
    assert_eq!(r.user_id, None);
    // Removing again is idempotent: 200, nothing written.
    let head = h.store.audit_head().expect("head");
    assert!(
        h.service
            .remove_activation(&phone.activation_id)
            .await
            .is_ok()
    );
    assert_eq!(h.store.audit_head().expect("head"), head);
    assert!(matches!(
        h.service
            .commit_activation(&phone.activation_id, None)
            .await,
        Err(ServiceError::ActivationExpired)
    ));

    // An unknown activation: 200-style answer, REMOVED, nothing else filled.
    let mut ghost = h.device("app", None).await;
    ghost.activation_id = "00000000-0000-4000-8000-000000000000".into();
    let r = h.verify(&ghost, &data, WRONG).await;
    assert!(!r.signature_valid);
    assert_eq!(r.activation_status, ActivationStatus::Removed);
    assert_eq!(r.activation_id, ghost.activation_id);
    assert_eq!(
        (
            r.user_id,
            r.application_id,
            r.signature_type,
            r.remaining_attempts
        ),
        (None, None, None, None)
    );
    assert_eq!(r.nonce_status, None);
    // Unknown activation in activation/status: REMOVED, not ERR0009 (PowerAuth parity).
    let unknown = h
        .service
        .activation_status(&ghost.activation_id, None)
        .await
        .expect("unknown activation answers");
    assert_eq!(unknown.activation_status, ActivationStatus::Removed);

    // PENDING_COMMIT: no payload, and verification answers with the status only.
    let pending = h.pending_device("app", None).await;
    let status = h
        .service
        .activation_status(&pending.activation_id, None)
        .await
        .expect("status");
    assert_eq!(status.activation_status, ActivationStatus::PendingCommit);
    assert_eq!(
        status
            .device_public_key_fingerprint
            .as_deref()
            .map(str::len),
        Some(8)
    );
    let r = h.verify(&pending, &data, WRONG).await;
    assert_eq!(r.activation_status, ActivationStatus::PendingCommit);
    assert_eq!(h.stored(&pending).failed_attempts, 0);
    assert_create_refused(h, &pending).await;
}

/// A payload for `device` is refused: its activation is not `ACTIVE`.
async fn assert_create_refused(h: &Harness, device: &Device) {
    let refused = h
        .service
        .create_personalized_payload(CreatePersonalized {
            activation_id: device.activation_id.clone(),
            data: "x".into(),
            nonce: None,
            proximity_check: None,
        })
        .await;
    assert!(matches!(refused, Err(ServiceError::IncorrectState)));
}

pub async fn forced_block_when_already_at_the_limit(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", Some(2)).await;
    let mut record = h.stored(&phone);
    record.failed_attempts = 2; // e.g. written by an older build that did not block
    h.store.update_activation(&record, None).expect("update");
    let (_, data) = h.payload(&phone, None).await;
    let r = h
        .verify(&phone, &data, &phone.code_for(&data, Approval::PIN))
        .await;
    assert!(!r.signature_valid);
    assert_eq!(r.activation_status, ActivationStatus::Blocked);
    assert_eq!(
        r.blocked_reason, None,
        "PowerAuth does not fill it in this answer"
    );
    assert_eq!(r.remaining_attempts, None);
    let stored = h.stored(&phone);
    assert_eq!(stored.status, ActivationStatus::Blocked);
    assert_eq!(
        stored.blocked_reason.as_deref(),
        Some("MAX_FAILED_ATTEMPTS")
    );
}

pub async fn non_personalized_payload_and_shared_nonce(h: &Harness) {
    let master = h.application("app").await;
    let first = h.device("app", None).await;
    let second = h.device("app", None).await;
    let payload = h.non_personalized_payload("app").await;
    let parsed = OfflineData::parse(&payload.offline_data).expect("parse");
    assert_eq!(parsed.indicator(), KeyIndicator::Master);
    assert_eq!(parsed.nonce(), payload.nonce);
    let data = phone_request_data(&payload.offline_data, &master);
    assert!(
        parsed.verify(&first.server_public_key).is_err(),
        "not signed by an activation key"
    );

    let r = h.verify(&first, &data, &first.sign(&data)).await;
    assert!(r.signature_valid);
    let r = h.verify(&second, &data, &second.sign(&data)).await;
    assert!(!r.signature_valid);
    assert_eq!(r.nonce_status, Some(NonceStatus::Consumed));

    assert!(matches!(
        h.service
            .create_non_personalized_payload(CreateNonPersonalized {
                application_id: "nope".into(),
                data: "x".into(),
            })
            .await,
        Err(ServiceError::ApplicationNotFound)
    ));
}

pub async fn policy_off_is_powerauth_behaviour(h: &Harness) {
    assert_eq!(h.service.settings().nonce_policy, NoncePolicy::Off);
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (payload, data) = h.payload(&phone, None).await;
    assert!(
        h.store.nonce(&payload.nonce).expect("read").is_none(),
        "nothing registered"
    );
    let code = phone.sign(&data);
    let r = h.verify(&phone, &data, &code).await;
    assert!(r.signature_valid);
    assert_eq!(r.nonce_status, None);
    let again = h.verify(&phone, &data, &code).await;
    assert!(!again.signature_valid, "behind the window now");
    assert_eq!(again.nonce_status, None);
    assert_eq!(
        again.remaining_attempts,
        Some(4),
        "a replay counts as a failed attempt"
    );
}

pub async fn one_of_32_concurrent_verifications_wins(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (_, data) = h.payload(&phone, None).await;
    let code = phone.sign(&data);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let service = h.service.clone();
        let request = verify_request(&phone, data.as_str(), &code);
        tasks.push(tokio::spawn(async move { service.verify(request).await }));
    }
    let mut valid = 0;
    for task in tasks {
        if task.await.expect("task").expect("answer").signature_valid {
            valid += 1;
        }
    }
    assert_eq!(
        valid, 1,
        "exactly one of 32 concurrent verifications of one code succeeds"
    );
    assert_eq!(h.stored(&phone).counter, 1);
}

pub async fn bad_input_is_refused(h: &Harness) {
    h.application("app").await;
    assert!(matches!(
        h.service.create_application("app").await,
        Err(ServiceError::DuplicateApplication)
    ));
    assert!(matches!(
        h.service.create_application("  ").await,
        Err(ServiceError::InvalidRequest(_))
    ));
    assert!(matches!(
        h.service.application_detail("nope").await,
        Err(ServiceError::ApplicationNotFound)
    ));
    let register = |app: &str, key: String, max: Option<u32>| RegisterActivation {
        application_id: app.into(),
        user_id: "bob".into(),
        device_public_key: key,
        max_failed_attempts: max,
        activation_flags: vec![],
    };
    let good_key = offline_signer::crypto::PrivateKey::generate(&mut rand::rngs::OsRng)
        .public_key()
        .to_base64();
    let mut off_curve = vec![4u8];
    off_curve.extend([1u8; 64]);
    for (request, expect) in [
        (register("nope", good_key.clone(), None), "ERR0015"),
        (register("app", "not base64!".into(), None), "ERR0024"),
        (register("app", b64::encode(&off_curve), None), "ERR0010"),
        (register("app", good_key.clone(), Some(0)), "ERR0024"),
        (register("app", good_key.clone(), Some(65)), "ERR0024"),
    ] {
        let got = match h.service.register_activation(request).await {
            Err(ServiceError::ApplicationNotFound) => "ERR0015",
            Err(ServiceError::InvalidRequest(_)) => "ERR0024",
            Err(ServiceError::InvalidKeyFormat) => "ERR0010",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(got, expect);
    }
    let phone = h.device("app", None).await;
    for nonce in ["short", "AAAA", &b64::encode([1u8; 17])] {
        let r = h
            .service
            .create_personalized_payload(CreatePersonalized {
                activation_id: phone.activation_id.clone(),
                data: "x".into(),
                nonce: Some(nonce.into()),
                proximity_check: None,
            })
            .await;
        assert!(
            matches!(r, Err(ServiceError::InvalidRequest(_))),
            "nonce {nonce:?}"
        );
    }
    // A caller's nonce is used verbatim; repeating it for the same activation while it is unexpired
    // and unconsumed is accepted (a web page redrawing its QR, PowerAuth parity), but a nonce issued
    // for another activation is refused.
    let chosen = b64::encode([9u8; 16]);
    let create = || CreatePersonalized {
        activation_id: phone.activation_id.clone(),
        data: "x".into(),
        nonce: Some(chosen.clone()),
        proximity_check: None,
    };
    let p = h
        .service
        .create_personalized_payload(create())
        .await
        .expect("create");
    assert_eq!(p.nonce, chosen);
    assert!(p.offline_data.starts_with(&format!("x\n{chosen}\n1")));
    let again = h
        .service
        .create_personalized_payload(create())
        .await
        .expect("the same nonce again, for the same activation");
    assert_eq!(again.nonce, chosen);
    let neighbour = h.device("app", None).await;
    assert!(matches!(
        h.service
            .create_personalized_payload(CreatePersonalized {
                activation_id: neighbour.activation_id.clone(),
                ..create()
            })
            .await,
        Err(ServiceError::InvalidRequest(_))
    ));
    assert!(matches!(
        h.service
            .verify(verify_request(&phone, "POST&a&b", WRONG))
            .await,
        Err(ServiceError::InvalidRequest(_))
    ));
}

/// The audit chain verifies and records each verification with the hash of its data, never the data.
pub async fn audit_trail_is_complete_and_chained(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (_, data) = h.payload(&phone, None).await;
    assert!(
        h.verify(&phone, &data, WRONG)
            .await
            .signature_valid
            .eq(&false)
    );
    assert!(
        h.verify(&phone, &data, &phone.sign(&data))
            .await
            .signature_valid
    );
    let report = verify_audit_chain(h.store.as_ref()).expect("walk");
    assert_eq!(report.first_broken, None);
    let records = h.store.audit_records(1, 1000).expect("records");
    assert_eq!(report.records, records.len() as u64);
    let hash: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        data.as_str().as_bytes(),
    ))
    .into();
    let verifies: Vec<_> = records
        .iter()
        .filter(|r| r.operation == offline_signer::store::AuditOperation::Verify)
        .collect();
    assert_eq!(verifies.len(), 2);
    assert_eq!(verifies[0].outcome, AuditOutcome::Invalid);
    assert_eq!(verifies[1].outcome, AuditOutcome::Valid);
    assert!(verifies.iter().all(|r| r.data_sha256 == Some(hash)));
    assert_eq!(verifies[1].counter_before, Some(0));
    assert_eq!(verifies[1].counter_after, Some(1));
    assert_eq!(
        verifies[1].signature_type.as_deref(),
        Some("POSSESSION_KNOWLEDGE")
    );
}

/// After a flow, nothing the store keeps (sled's files, PostgreSQL's rows) holds a factor key or the
/// master secret in any common encoding.
pub async fn no_secret_in_the_data_dir(h: &Harness) {
    h.application("app").await;
    let phone = h.device("app", None).await;
    let (_, data) = h.payload(&phone, None).await;
    assert!(
        h.verify(&phone, &data, &phone.sign(&data))
            .await
            .signature_valid
    );
    h.service
        .remove_activation(&phone.activation_id)
        .await
        .expect("remove");
    let mut secrets: Vec<Vec<u8>> = [
        SignatureType::Possession,
        SignatureType::Knowledge,
        SignatureType::Biometry,
    ]
    .into_iter()
    .map(|t| phone.keys.keys_for(t)[0].expose().to_vec())
    .collect();
    secrets.push(phone.master_secret.clone());
    // The scan sees what is stored: the activation's id is there.
    assert!(
        !h.kept.hits(phone.activation_id.as_bytes()).is_empty(),
        "the scan found not even the activation id"
    );
    for secret in &secrets {
        let hits = h.kept.hits(secret);
        assert!(hits.is_empty(), "a factor key is stored: {hits:?}");
    }
}

/// Instantiates every service scenario of this module once for one backend. `$run` is a function
/// `fn(name: &str, settings: Settings, body: impl AsyncFnOnce(&Harness))` that runs `body` against a
/// fresh harness of that backend (a signer, a store, a clock). The list is written here once; each
/// backend's test file is one line: `offline_signer_testkit::service_scenarios!(run_with);`.
#[macro_export]
macro_rules! service_scenarios {
    ($run:path) => {
        $crate::service_scenarios!(@each $run;
            valid_code_moves_counter_and_resets_failures,
            invalid_codes_block_at_the_limit_and_unblock_restores,
            lookahead_edge_19_accepted_20_not,
            replay_is_rejected_as_consumed,
            rejected_nonces_touch_nothing,
            nonce_expires_exactly_at_its_expiry,
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
            let settings = $crate::service_harness::Settings {
                nonce_policy: $crate::service_harness::NoncePolicy::Off,
                ..$crate::service_harness::default_settings()
            };
            $run("policy_off_is_powerauth_behaviour", settings, async |h| {
                $crate::service_suite::policy_off_is_powerauth_behaviour(h).await
            });
        }
    };
    (@each $run:path; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            $run(
                stringify!($name),
                $crate::service_harness::default_settings(),
                async |h| $crate::service_suite::$name(h).await,
            );
        }
    )*};
}
