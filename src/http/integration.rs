//! The integration-credential methods (`ADMIN` only): `integration/create` (the secret is shown
//! once), `integration/list` (never a secret) and `integration/remove`, with their JSON shapes.
//! A credential is `ADMIN`, or `APPLICATION` bound to a list of applications (plus `canUnblock`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{AdminMethodErrors, ApiResult};
use super::error::{ApiJson, ApiOk};
use super::wire::{ErrorEnvelope, RequestEnvelope, ResponseEnvelope, rfc3339};
use crate::model::CredentialScope;
use crate::service::{CredentialInfo, Service, ServiceError};

/// A credential's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RoleWire {
    /// Applications, integrations and every activation.
    Admin,
    /// The activations of the listed applications only.
    Application,
}

/// `integration/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationCreateRequest {
    /// Who uses the credential.
    pub name: String,
    /// `ADMIN` when missing (PowerAuth's integrations can do everything).
    pub role: Option<RoleWire>,
    /// For `APPLICATION`: the application ids (at least one); must be absent or empty for `ADMIN`.
    pub applications: Option<Vec<String>>,
    /// For `APPLICATION`: whether `activation/unblock` is allowed (default `false`).
    pub can_unblock: Option<bool>,
}

/// A credential just made; `clientSecret` is shown only in this answer. (No `Debug`: the secret
/// must not reach a log.)
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationCreateResponse {
    /// The credential's id (named in audit records and by `integration/remove`).
    pub id: String,
    /// Who uses the credential.
    pub name: String,
    /// The HTTP Basic user name.
    pub client_token: String,
    /// The HTTP Basic password; only its hash is stored.
    pub client_secret: String,
    /// `ADMIN` or `APPLICATION`.
    pub role: RoleWire,
    /// The applications an `APPLICATION` credential is bound to (empty for `ADMIN`).
    pub applications: Vec<String>,
    /// Whether `activation/unblock` is allowed (always for `ADMIN`).
    pub can_unblock: bool,
}

/// One listed credential (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationItem {
    /// The credential's id (named in audit records and by `integration/remove`).
    pub id: String,
    /// Who uses the credential.
    pub name: String,
    /// The HTTP Basic user name.
    pub client_token: String,
    /// `ADMIN` or `APPLICATION`.
    pub role: RoleWire,
    /// The applications an `APPLICATION` credential is bound to (empty for `ADMIN`).
    pub applications: Vec<String>,
    /// Whether `activation/unblock` is allowed (always for `ADMIN`).
    pub can_unblock: bool,
    /// When it was made (RFC 3339).
    pub timestamp_created: Option<String>,
}

/// `integration/list`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationListResponse {
    /// Every credential, by client token.
    pub items: Vec<IntegrationItem>,
}

/// `integration/list` takes an empty request object.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct IntegrationListRequest {}

/// `integration/remove`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationRemoveRequest {
    /// The credential's id (named in audit records and by `integration/remove`).
    pub id: String,
}

/// `integration/remove`: `removed` is `false` when no credential had that id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationRemoveResponse {
    /// The credential's id (named in audit records and by `integration/remove`).
    pub id: String,
    /// Whether a credential was removed.
    pub removed: bool,
}

/// The wire role, applications and `canUnblock` of a scope.
fn scope_wire(scope: &CredentialScope) -> (RoleWire, Vec<String>, bool) {
    match scope {
        CredentialScope::Admin => (RoleWire::Admin, Vec::new(), true),
        CredentialScope::Applications {
            application_ids,
            can_unblock,
        } => (RoleWire::Application, application_ids.clone(), *can_unblock),
    }
}

fn scope_from(request: &IntegrationCreateRequest) -> Result<CredentialScope, ServiceError> {
    let applications = request.applications.clone().unwrap_or_default();
    match request.role.unwrap_or(RoleWire::Admin) {
        RoleWire::Admin if !applications.is_empty() || request.can_unblock.is_some() => {
            Err(ServiceError::InvalidRequest(
                "applications and canUnblock apply to role APPLICATION only".into(),
            ))
        }
        RoleWire::Admin => Ok(CredentialScope::Admin),
        RoleWire::Application => Ok(CredentialScope::applications(
            applications,
            request.can_unblock.unwrap_or(false),
        )),
    }
}

/// **[ext]** Creates an integration credential (`ADMIN` only); the secret is in this answer only.
#[utoipa::path(post, path = "/rest/v3/integration/create", tag = "integrations",
    request_body = RequestEnvelope<IntegrationCreateRequest>,
    responses(
        (status = 200, description = "Created", body = ResponseEnvelope<IntegrationCreateResponse>),
        (status = 400, description = "ERR0024", body = ErrorEnvelope),
        AdminMethodErrors,
    ),
    security(("basicAuth" = [])))]
/// # Errors
/// [`ServiceError::Forbidden`] for a caller without `ADMIN`, [`ServiceError::InvalidRequest`] for a bad name or scope.
pub async fn create(
    State(service): State<Service>,
    ApiJson(request): ApiJson<IntegrationCreateRequest>,
) -> ApiResult<IntegrationCreateResponse> {
    let scope = scope_from(&request)?;
    let created = service.create_integration(request.name, scope).await?;
    let (role, applications, can_unblock) = scope_wire(&created.scope);
    Ok(ApiOk(IntegrationCreateResponse {
        id: created.id,
        name: created.name,
        client_token: created.client_token,
        client_secret: secrecy::ExposeSecret::expose_secret(&created.client_secret).to_owned(),
        role,
        applications,
        can_unblock,
    }))
}

/// **[ext]** Lists the integration credentials (`ADMIN` only), never a secret.
#[utoipa::path(post, path = "/rest/v3/integration/list", tag = "integrations",
    request_body = RequestEnvelope<IntegrationListRequest>,
    responses(
        (status = 200, description = "The credentials", body = ResponseEnvelope<IntegrationListResponse>),
        (status = 400, description = "ERR0024 (the body is not the request envelope)", body = ErrorEnvelope),
        AdminMethodErrors,
    ),
    security(("basicAuth" = [])))]
/// # Errors
/// [`ServiceError::Forbidden`] for a caller without `ADMIN`.
pub async fn list(
    State(service): State<Service>,
    ApiJson(_): ApiJson<IntegrationListRequest>,
) -> ApiResult<IntegrationListResponse> {
    let items = service
        .list_integrations()
        .await?
        .into_iter()
        .map(|c: CredentialInfo| {
            let (role, applications, can_unblock) = scope_wire(&c.scope);
            IntegrationItem {
                id: c.id,
                name: c.name,
                client_token: c.client_token,
                role,
                applications,
                can_unblock,
                timestamp_created: rfc3339(c.created_at),
            }
        })
        .collect();
    Ok(ApiOk(IntegrationListResponse { items }))
}

/// **[ext]** Removes an integration credential by id (`ADMIN` only); every instance refuses it from
/// then on.
#[utoipa::path(post, path = "/rest/v3/integration/remove", tag = "integrations",
    request_body = RequestEnvelope<IntegrationRemoveRequest>,
    responses(
        (status = 200, description = "Removed (or there was none)", body = ResponseEnvelope<IntegrationRemoveResponse>),
        (status = 400, description = "ERR0024", body = ErrorEnvelope),
        AdminMethodErrors,
    ),
    security(("basicAuth" = [])))]
/// # Errors
/// [`ServiceError::Forbidden`] for a caller without `ADMIN`.
pub async fn remove(
    State(service): State<Service>,
    ApiJson(request): ApiJson<IntegrationRemoveRequest>,
) -> ApiResult<IntegrationRemoveResponse> {
    let removed = service.remove_integration(request.id.clone()).await?;
    Ok(ApiOk(IntegrationRemoveResponse {
        id: request.id,
        removed,
    }))
}
