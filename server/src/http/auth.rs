//! `/api/v1/auth`, `/api/v1/users`, `/api/v1/devices`, `/api/v1/audit` (contract §3–§4).

use crate::auth::{Principal, service};
use crate::error::AppResult;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use hamlet_shared::{
    AuditList, DeviceList, ErrorBody, LoginRequest, NewUser, RefreshRequest, TokenResponse, UserId, UserInfo,
};
use serde::Deserialize;
use uuid::Uuid;

/// Logs a user in on a device.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many failed logins; see Retry-After"),
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> AppResult<web::Json<TokenResponse>> {
    let ip = req.peer_addr().map(|a| a.ip().to_string());
    Ok(web::Json(service::login(&state, body.into_inner(), ip).await?))
}

/// Trades a refresh token for a new pair. Presenting a used token ends the session.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> AppResult<web::Json<TokenResponse>> {
    let settings = state.auth.clone();
    let token = body.into_inner().refresh_token;
    Ok(web::Json(
        state
            .db(move |conn| service::refresh(conn, &settings, &token))
            .await?,
    ))
}

/// Ends the calling device's session.
#[utoipa::path(tag = "auth", security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody)))]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<AppState>, principal: Principal) -> AppResult<HttpResponse> {
    state.db(move |conn| service::logout(conn, &principal)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Creates a user with a scope inside the calling admin's.
#[utoipa::path(
    tag = "users",
    request_body = NewUser,
    security(("bearer" = [])),
    responses(
        (status = 201, body = UserInfo),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<NewUser>,
) -> AppResult<HttpResponse> {
    let user = service::create_user(&state, principal, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(user))
}

/// Disables a user and ends all their sessions at once.
#[utoipa::path(
    tag = "users",
    params(("id" = uuid::Uuid, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
#[post("/users/{id}/disable")]
pub async fn disable_user(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UserId>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    state
        .db(move |conn| service::set_user_disabled(conn, &principal, id, true))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Enables a disabled user.
#[utoipa::path(
    tag = "users",
    params(("id" = uuid::Uuid, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[post("/users/{id}/enable")]
pub async fn enable_user(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UserId>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    state
        .db(move |conn| service::set_user_disabled(conn, &principal, id, false))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Devices of the users the caller manages (admins) or the caller's own.
#[utoipa::path(tag = "devices", security(("bearer" = [])), responses((status = 200, body = DeviceList), (status = 401, body = ErrorBody)))]
#[get("/devices")]
pub async fn list_devices(
    state: web::Data<AppState>,
    principal: Principal,
) -> AppResult<web::Json<DeviceList>> {
    let devices = state
        .db(move |conn| service::list_devices(conn, &principal))
        .await?;
    Ok(web::Json(DeviceList { devices }))
}

/// Revokes a device: its access and refresh tokens stop working at once.
#[utoipa::path(
    tag = "devices",
    params(("device_id" = uuid::Uuid, Path, description = "Device id (UUID)")),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[post("/devices/{device_id}/revoke")]
pub async fn revoke_device(
    state: web::Data<AppState>,
    principal: Principal,
    device_id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let device_id = device_id.into_inner();
    state
        .db(move |conn| service::revoke_device(conn, &principal, device_id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Most entries returned, newest first (1 to 1000, default 100).
    pub limit: Option<i64>,
}

/// Security events about the users the calling admin manages.
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AuditList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
#[get("/audit")]
pub async fn list_audit(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<AuditQuery>,
) -> AppResult<web::Json<AuditList>> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .db(move |conn| service::list_audit(conn, &principal, limit))
        .await?;
    Ok(web::Json(AuditList { entries }))
}
