//! `/api/v1/sync/*` and `/api/v1/conflicts` (contract §6).

use crate::auth::Principal;
use crate::error::AppResult;
use crate::http::compress::PackedJson;
use crate::state::AppState;
use crate::sync::{conflicts, pull as pull_service, push as push_service};
use actix_web::{get, post, web};
use hamlet_shared::ErrorBody;
use hamlet_shared::UnitId;
use hamlet_shared::sync::{
    ConflictInfo, ConflictList, PullResponse, PushRequest, PushResponse, ResolveRequest,
};
use serde::Deserialize;

/// Pushes a batch of mutations from the calling device.
#[utoipa::path(
    tag = "sync",
    request_body = PushRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = PushResponse, description = "Per-mutation outcomes"),
        (status = 400, body = ErrorBody, description = "The body is not a push envelope"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Another device's id, or a viewer"),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Too many mutations, or mutation ids not increasing"),
        (status = 503, body = ErrorBody),
    )
)]
#[post("/sync/push")]
pub async fn push(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<push_service::PushBody>,
) -> AppResult<PackedJson<PushResponse>> {
    let ctx = push_service::context(principal, state.sync.max_clock_skew_secs * 1000);
    let body = body.into_inner();
    push_service::check_envelope(&ctx.principal, &body, state.sync.max_mutations)?;
    let mutations = push_service::parse_body(&body, &ctx);
    // The raw text goes once parsed: a push's memory is its parsed mutations only.
    drop(body);
    push_service::check_mutation_ids(&mutations)?;
    Ok(PackedJson(
        state
            .db(move |conn| push_service::push(conn, &ctx, &mutations))
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PullQuery {
    /// The cursor of the previous pull; absent to start from the beginning.
    pub cursor: Option<String>,
    /// Most changes in the page (1 to 5000, default 500).
    pub limit: Option<i64>,
}

/// The records of the caller's scope that changed after the cursor.
#[utoipa::path(
    tag = "sync",
    params(PullQuery),
    security(("bearer" = [])),
    responses((status = 200, body = PullResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
#[get("/sync/pull")]
pub async fn pull(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PullQuery>,
) -> AppResult<web::Json<pull_service::Page>> {
    let PullQuery { cursor, limit } = query.into_inner();
    Ok(web::Json(
        state
            .db(move |conn| pull_service::pull(conn, &principal, cursor.as_deref(), limit))
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConflictQuery {
    /// Only conflicts in this unit's subtree (default: the caller's whole scope).
    pub unit_id: Option<UnitId>,
    /// `true` or `false` to filter on resolution; absent for both.
    pub resolved: Option<bool>,
    /// Most conflicts returned, newest first (1 to 1000, default 200).
    pub limit: Option<i64>,
}

/// Conflicts kept for review in the calling admin's scope.
#[utoipa::path(
    tag = "sync",
    params(ConflictQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ConflictList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[get("/conflicts")]
pub async fn list_conflicts(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ConflictQuery>,
) -> AppResult<web::Json<ConflictList>> {
    let ConflictQuery {
        unit_id,
        resolved,
        limit,
    } = query.into_inner();
    let limit = limit.unwrap_or(200).clamp(1, conflicts::MAX_LIST);
    let list = state
        .db(move |conn| conflicts::list(conn, &principal, unit_id, resolved, limit))
        .await?;
    Ok(web::Json(ConflictList { conflicts: list }))
}

/// Resolves a conflict; the record gets a new version that phones pull.
#[utoipa::path(
    tag = "sync",
    params(("id" = uuid::Uuid, Path, description = "Conflict id")),
    request_body = ResolveRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConflictInfo),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[post("/conflicts/{id}/resolve")]
pub async fn resolve_conflict(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Json<ResolveRequest>,
) -> AppResult<web::Json<ConflictInfo>> {
    let (id, req) = (id.into_inner(), body.into_inner());
    // Conflict ids are UUIDs: anything else names no conflict (and is not sent to the database,
    // where PostgreSQL would refuse a NUL byte in it as an error).
    if hamlet_shared::records::canonical_uuid(&id).is_none() {
        return Err(crate::error::AppError::not_found("conflict"));
    }
    let ctx = push_service::context(principal, state.sync.max_clock_skew_secs * 1000);
    Ok(web::Json(
        state
            .db(move |conn| conflicts::resolve(conn, &ctx, &id, &req))
            .await?,
    ))
}
