//! The handlers of the PowerAuth-compatible methods (`spec/api.md`), one per route, each a thin
//! translation: wire request → service call → wire response. The `#[utoipa::path]` on each is what
//! `/openapi.json` is generated from, so the document cannot drift from the routes.

use std::collections::BTreeMap;

use axum::extract::State;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

use super::error::{ApiError, ApiJson, ApiOk};
use super::wire::*;
use crate::model::{ActivationStatus, SignatureType};
use crate::service::{
    Cause, CreateNonPersonalized, CreatePersonalized, EciesDecryptorRequest, EciesFields,
    InitActivation, PrepareActivation, RegisterActivation, Service, ServiceError, VerifyRequest,
    VerifyResponse,
};

/// Result of every handler.
pub type ApiResult<T> = Result<ApiOk<T>, ApiError>;

/// The error answers an API method that uses the HSM shares with the others, besides its own 400s:
/// 401, 503 (HSM, queue, timeout), 415.
pub struct HsmMethodErrors;

/// The same for a method that does not use the HSM: its 503s are the queue's and the timeout's.
pub struct StoreMethodErrors;

impl utoipa::IntoResponses for HsmMethodErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        shared_errors(
            "ERR_HSM_UNAVAILABLE, ERR_BUSY, ERR_TIMEOUT, ERR_OUTCOME_UNKNOWN, ERR_STORE_UNAVAILABLE",
        )
    }
}

impl utoipa::IntoResponses for StoreMethodErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        shared_errors("ERR_BUSY, ERR_TIMEOUT, ERR_OUTCOME_UNKNOWN, ERR_STORE_UNAVAILABLE")
    }
}

/// The error answers of an `ADMIN`-only method besides its own 400s: 401 and 403.
pub struct AdminMethodErrors;

impl utoipa::IntoResponses for AdminMethodErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            ("401".to_owned(), error_response("ERR_AUTHENTICATION")),
            ("403".to_owned(), error_response("ERR_AUTHORIZATION")),
        ])
    }
}

/// 401, 415 and a 503 with `unavailable` as its description, each an [`ErrorEnvelope`].
fn shared_errors(unavailable: &str) -> BTreeMap<String, RefOr<Response>> {
    BTreeMap::from([
        ("401".to_owned(), error_response("ERR_AUTHENTICATION")),
        ("503".to_owned(), error_response(unavailable)),
        (
            "415".to_owned(),
            error_response(
                "ERROR_UNSUPPORTED_MEDIA_TYPE: the body is not sent as application/json",
            ),
        ),
    ])
}

/// One error answer: an [`ErrorEnvelope`] described by `description`.
fn error_response(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}

/// Creates an application and its first master key pair, generated inside the HSM.
#[utoipa::path(post, path = "/rest/v3/application/create", tag = "applications",
    request_body = RequestEnvelope<ApplicationRequest>,
    responses(
        (status = 200, description = "Created", body = ResponseEnvelope<ApplicationResponse>),
        (status = 400, description = "ERR0043 (the id exists), ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn create_application(
    State(service): State<Service>,
    ApiJson(request): ApiJson<ApplicationRequest>,
) -> ApiResult<ApplicationResponse> {
    let detail = service.create_application(&request.application_id).await?;
    Ok(ApiOk(detail.into()))
}

/// The application and its newest master public key.
#[utoipa::path(post, path = "/rest/v3/application/detail", tag = "applications",
    request_body = RequestEnvelope<ApplicationRequest>,
    responses(
        (status = 200, description = "Found", body = ResponseEnvelope<ApplicationResponse>),
        (status = 400, description = "ERR0015, ERR0003, ERR0024", body = ErrorEnvelope),
        StoreMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn application_detail(
    State(service): State<Service>,
    ApiJson(request): ApiJson<ApplicationRequest>,
) -> ApiResult<ApplicationResponse> {
    let detail = service.application_detail(&request.application_id).await?;
    Ok(ApiOk(detail.into()))
}

/// Adds an application version with a fresh application key and secret.
#[utoipa::path(post, path = "/rest/v3/application/version/create", tag = "applications",
    request_body = RequestEnvelope<ApplicationVersionRequest>,
    responses(
        (status = 200, description = "Created", body = ResponseEnvelope<ApplicationVersionResponse>),
        (status = 400, description = "ERR0015, ERR0043, ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn create_application_version(
    State(service): State<Service>,
    ApiJson(request): ApiJson<ApplicationVersionRequest>,
) -> ApiResult<ApplicationVersionResponse> {
    let version = service
        .create_application_version(&request.application_id, &request.application_version_id)
        .await?;
    Ok(ApiOk(version.into()))
}

/// Starts an activation by code: `CREATED`, with a code signed by the master key in the HSM.
#[utoipa::path(post, path = "/rest/v3/activation/init", tag = "activation by code",
    request_body = RequestEnvelope<InitRequest>,
    responses(
        (status = 200, description = "Initialized", body = ResponseEnvelope<InitResponse>),
        (status = 400, description = "ERR0002, ERR0003, ERR0015, ERR0040, ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn init_activation(
    State(service): State<Service>,
    ApiJson(request): ApiJson<InitRequest>,
) -> ApiResult<InitResponse> {
    let expires_at = match &request.timestamp_activation_expire {
        None => None,
        Some(date) => Some(date.to_timestamp().ok_or_else(|| {
            ApiError::Service(ServiceError::InvalidRequest(
                "timestampActivationExpire is neither ISO-8601 nor epoch milliseconds".into(),
            ))
        })?),
    };
    let initialized = service
        .init_activation(InitActivation {
            protocol: request.protocol,
            user_id: request.user_id,
            application_id: request.application_id,
            expires_at,
            max_failure_count: request.max_failure_count,
            activation_otp_validation: request.activation_otp_validation,
            commit_phase: request.commit_phase,
            activation_otp: request.activation_otp,
            flags: request.flags.unwrap_or_default(),
        })
        .await?;
    Ok(ApiOk(initialized.into()))
}

/// Protocol 3.3 temporary ECIES key: checks the SDK's HS256 JWT, answers an ES256 JWT naming a key
/// pair generated in the HSM.
#[utoipa::path(post, path = "/rest/v3/keystore/create", tag = "activation by code",
    request_body = RequestEnvelope<JwtBody>,
    responses(
        (status = 200, description = "Created", body = ResponseEnvelope<JwtBody>),
        (status = 400, description = "ERR0009, ERR0015, ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn create_temporary_key(
    State(service): State<Service>,
    ApiJson(request): ApiJson<JwtBody>,
) -> ApiResult<JwtBody> {
    let jwt = service.create_temporary_key(&request.jwt).await?;
    Ok(ApiOk(JwtBody { jwt }))
}

/// The envelope key and `sharedInfo2` of a generic-encryptor ECIES request, for the enrollment
/// server (protocol 3.3 only; timestamp window and replay checked first).
#[utoipa::path(post, path = "/rest/v3/ecies/decryptor", tag = "activation by code",
    request_body = RequestEnvelope<DecryptorRequest>,
    responses(
        (status = 200, description = "Secrets", body = ResponseEnvelope<DecryptorResponse>),
        (status = 400, description = "ERR0008, ERR0009, ERR0015, ERR0018, ERR0024, ERR0045", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn ecies_decryptor(
    State(service): State<Service>,
    ApiJson(request): ApiJson<DecryptorRequest>,
) -> ApiResult<DecryptorResponse> {
    let secrets = service
        .ecies_decryptor(EciesDecryptorRequest {
            activation_id: request.activation_id,
            application_key: request.application_key,
            ecies: EciesFields {
                protocol_version: request.protocol_version,
                temporary_key_id: request.temporary_key_id,
                ephemeral_public_key: request.ephemeral_public_key,
                encrypted_data: None,
                mac: None,
                nonce: request.nonce,
                timestamp: request.timestamp,
            },
        })
        .await?;
    Ok(ApiOk(secrets.into()))
}

/// Key exchange of an activation by code: decrypts layer 2, derives and stores the keys, answers
/// the encrypted layer-2 response. `PENDING_COMMIT` (or `ACTIVE` with `ON_KEY_EXCHANGE`).
#[utoipa::path(post, path = "/rest/v3/activation/prepare", tag = "activation by code",
    request_body = RequestEnvelope<PrepareRequest>,
    responses(
        (status = 200, description = "Prepared", body = ResponseEnvelope<PrepareResponse>),
        (status = 400, description = "ERR0007, ERR0009, ERR0011, ERR0018, ERR0024, ERR0031, ERR0045", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn prepare_activation(
    State(service): State<Service>,
    ApiJson(request): ApiJson<PrepareRequest>,
) -> ApiResult<PrepareResponse> {
    let prepared = service
        .prepare_activation(PrepareActivation {
            activation_code: request.activation_code,
            application_key: request.application_key,
            ecies: EciesFields {
                protocol_version: request.protocol_version,
                temporary_key_id: request.temporary_key_id,
                ephemeral_public_key: request.ephemeral_public_key,
                encrypted_data: request.encrypted_data,
                mac: request.mac,
                nonce: request.nonce,
                timestamp: request.timestamp,
            },
        })
        .await?;
    Ok(ApiOk(prepared.into()))
}

/// **[ext]** Registers a device directly: server key pair in the HSM, factor keys from ECDH, random
/// `ctrData`. The activation is `PENDING_COMMIT`.
#[utoipa::path(post, path = "/rest/v3/activation/register", tag = "activations",
    request_body = RequestEnvelope<RegisterRequest>,
    responses(
        (status = 200, description = "Registered", body = ResponseEnvelope<RegisterResponse>),
        (status = 400, description = "ERR0015, ERR0010, ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn register_activation(
    State(service): State<Service>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> ApiResult<RegisterResponse> {
    let registered = service
        .register_activation(RegisterActivation {
            application_id: request.application_id,
            user_id: request.user_id,
            device_public_key: request.device_public_key,
            max_failed_attempts: request.max_failed_attempts,
            activation_flags: request.activation_flags.unwrap_or_default(),
        })
        .await?;
    Ok(ApiOk(registered.into()))
}

/// `PENDING_COMMIT` → `ACTIVE`, checking the activation OTP where one was set.
#[utoipa::path(post, path = "/rest/v3/activation/commit", tag = "activations",
    request_body = RequestEnvelope<CommitRequest>,
    responses(
        (status = 200, description = "Committed", body = ResponseEnvelope<CommitResponse>),
        (status = 400, description = "ERR0009, ERR0008, ERR0007, ERR0031, ERR0024", body = ErrorEnvelope),
        StoreMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn commit_activation(
    State(service): State<Service>,
    ApiJson(request): ApiJson<CommitRequest>,
) -> ApiResult<CommitResponse> {
    service
        .commit_activation(&request.activation_id, request.activation_otp.as_deref())
        .await?;
    Ok(ApiOk(CommitResponse {
        activation_id: request.activation_id,
        activated: true,
    }))
}

/// The activation's status, counters and timestamps; with a `challenge`, the encrypted status
/// blob. An unknown activation answers 200 with `activationStatus: REMOVED` (PowerAuth parity).
#[utoipa::path(post, path = "/rest/v3/activation/status", tag = "activations",
    request_body = RequestEnvelope<StatusRequest>,
    responses(
        (status = 200, description = "Found (or REMOVED for an unknown id)", body = ResponseEnvelope<StatusResponse>),
        (status = 400, description = "ERR0024", body = ErrorEnvelope),
        StoreMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn activation_status(
    State(service): State<Service>,
    ApiJson(request): ApiJson<StatusRequest>,
) -> ApiResult<StatusResponse> {
    let info = service
        .activation_status(&request.activation_id, request.challenge.as_deref())
        .await?;
    Ok(ApiOk(info.into()))
}

/// `ACTIVE` → `BLOCKED` (reason defaults to `NOT_SPECIFIED`).
#[utoipa::path(post, path = "/rest/v3/activation/block", tag = "activations",
    request_body = RequestEnvelope<BlockRequest>,
    responses(
        (status = 200, description = "Blocked", body = ResponseEnvelope<StatusChangeResponse>),
        (status = 400, description = "ERR0009, ERR0008, ERR0024", body = ErrorEnvelope),
        StoreMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn block_activation(
    State(service): State<Service>,
    ApiJson(request): ApiJson<BlockRequest>,
) -> ApiResult<StatusChangeResponse> {
    let activation = service
        .block_activation(&request.activation_id, request.reason.as_deref())
        .await?;
    metrics::counter!("offline_signer_activations_blocked_total", "reason" => "api").increment(1);
    Ok(ApiOk(StatusChangeResponse {
        activation_id: activation.id,
        activation_status: activation.status.into(),
    }))
}

/// `BLOCKED` → `ACTIVE`; failed attempts back to 0, counter untouched.
#[utoipa::path(post, path = "/rest/v3/activation/unblock", tag = "activations",
    request_body = RequestEnvelope<ActivationRequest>,
    responses(
        (status = 200, description = "Unblocked", body = ResponseEnvelope<StatusChangeResponse>),
        (status = 400, description = "ERR0009, ERR0008, ERR0024", body = ErrorEnvelope),
        StoreMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn unblock_activation(
    State(service): State<Service>,
    ApiJson(request): ApiJson<ActivationRequest>,
) -> ApiResult<StatusChangeResponse> {
    let activation = service.unblock_activation(&request.activation_id).await?;
    Ok(ApiOk(StatusChangeResponse {
        activation_id: activation.id,
        activation_status: activation.status.into(),
    }))
}

/// Any state but `REMOVED` → `REMOVED`; the activation's wrapped key material is destroyed.
#[utoipa::path(post, path = "/rest/v3/activation/remove", tag = "activations",
    request_body = RequestEnvelope<ActivationRequest>,
    responses(
        (status = 200, description = "Removed", body = ResponseEnvelope<RemoveResponse>),
        (status = 400, description = "ERR0009, ERR0008, ERR0024", body = ErrorEnvelope),
        StoreMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn remove_activation(
    State(service): State<Service>,
    ApiJson(request): ApiJson<ActivationRequest>,
) -> ApiResult<RemoveResponse> {
    service.remove_activation(&request.activation_id).await?;
    Ok(ApiOk(RemoveResponse {
        activation_id: request.activation_id,
        removed: true,
    }))
}

/// `createPersonalizedOfflineSignaturePayload`: a QR payload signed in the HSM with the activation's
/// key (key indicator `1`). The activation must be `ACTIVE`.
#[utoipa::path(post, path = "/rest/v3/signature/offline/personalized/create", tag = "offline signatures",
    request_body = RequestEnvelope<CreatePersonalizedRequest>,
    responses(
        (status = 200, description = "Signed", body = ResponseEnvelope<OfflinePayloadResponse>),
        (status = 400, description = "ERR0009, ERR0008, ERR0013, ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn create_personalized(
    State(service): State<Service>,
    ApiJson(request): ApiJson<CreatePersonalizedRequest>,
) -> ApiResult<OfflinePayloadResponse> {
    let payload = service
        .create_personalized_payload(CreatePersonalized {
            activation_id: request.activation_id,
            data: request.data,
            nonce: request.nonce,
            proximity_check: request.proximity_check.map(Into::into),
        })
        .await?;
    Ok(ApiOk(payload.into()))
}

/// `createNonPersonalizedOfflineSignaturePayload`: a QR payload signed in the HSM with the
/// application's newest master key (key indicator `0`).
#[utoipa::path(post, path = "/rest/v3/signature/offline/non-personalized/create", tag = "offline signatures",
    request_body = RequestEnvelope<CreateNonPersonalizedRequest>,
    responses(
        (status = 200, description = "Signed", body = ResponseEnvelope<OfflinePayloadResponse>),
        (status = 400, description = "ERR0015, ERR0003, ERR0013, ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn create_non_personalized(
    State(service): State<Service>,
    ApiJson(request): ApiJson<CreateNonPersonalizedRequest>,
) -> ApiResult<OfflinePayloadResponse> {
    let payload = service
        .create_non_personalized_payload(CreateNonPersonalized {
            application_id: request.application_id,
            data: request.data,
        })
        .await?;
    Ok(ApiOk(payload.into()))
}

/// `verifyOfflineSignature`: checks a code against the counter window, moves the counter, counts
/// failures, blocks at the limit. An unknown activation is a 200 with `activationStatus: REMOVED`.
#[utoipa::path(post, path = "/rest/v3/signature/offline/verify", tag = "offline signatures",
    request_body = RequestEnvelope<VerifyRequestWire>,
    responses(
        (status = 200, description = "Verified (valid or not)", body = ResponseEnvelope<VerifyResponseWire>),
        (status = 400, description = "ERR0024", body = ErrorEnvelope),
        HsmMethodErrors,
    ),
    security(("basicAuth" = [])))]
pub async fn verify(
    State(service): State<Service>,
    ApiJson(request): ApiJson<VerifyRequestWire>,
) -> ApiResult<VerifyResponseWire> {
    let response = service
        .verify(VerifyRequest {
            activation_id: request.activation_id,
            data: request.data,
            signature: request.signature,
            allow_biometry: request.allow_biometry.unwrap_or(false),
            component_length: request.component_length,
            proximity_check: request.proximity_check.map(Into::into),
        })
        .await?;
    record_verification(&response);
    Ok(ApiOk(verify_response(response)?))
}

fn verify_response(r: VerifyResponse) -> Result<VerifyResponseWire, ApiError> {
    let signature_type = match r.signature_type {
        None => None,
        Some(SignatureType::PossessionKnowledge) => Some(SignatureTypeWire::PossessionKnowledge),
        Some(SignatureType::PossessionBiometry) => Some(SignatureTypeWire::PossessionBiometry),
        Some(
            SignatureType::Possession
            | SignatureType::Knowledge
            | SignatureType::Biometry
            | SignatureType::PossessionKnowledgeBiometry,
        ) => {
            return Err(ServiceError::Internal(Cause::Invariant(
                "verification reported a signature type offline codes never have",
            ))
            .into());
        }
    };
    Ok(VerifyResponseWire {
        signature_valid: r.signature_valid,
        activation_status: r.activation_status.into(),
        blocked_reason: r.blocked_reason,
        activation_id: r.activation_id,
        user_id: r.user_id,
        application_id: r.application_id,
        signature_type,
        remaining_attempts: r.remaining_attempts,
        application_roles: r.application_roles,
        activation_flags: r.activation_flags,
        nonce_status: r.nonce_status.map(Into::into),
    })
}

/// Verification outcomes by validity, nonce status and signature type; blocks caused by this attempt.
fn record_verification(r: &VerifyResponse) {
    let nonce = r.nonce_status.map_or("NONE", |s| s.as_str());
    let signature_type = match r.signature_type {
        Some(SignatureType::PossessionBiometry) => "POSSESSION_BIOMETRY",
        Some(_) => "POSSESSION_KNOWLEDGE",
        None => "NONE",
    };
    let valid = if r.signature_valid { "true" } else { "false" };
    metrics::counter!(
        "offline_signer_verifications_total",
        "valid" => valid,
        "nonce_status" => nonce,
        "signature_type" => signature_type,
        "activation_status" => r.activation_status.as_str(),
    )
    .increment(1);
    if !r.signature_valid
        && r.activation_status == ActivationStatus::Blocked
        && r.remaining_attempts == Some(0)
    {
        metrics::counter!(
            "offline_signer_activations_blocked_total",
            "reason" => "max_failed_attempts"
        )
        .increment(1);
    }
}
