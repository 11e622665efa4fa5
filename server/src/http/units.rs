//! `/api/v1/units`: read the tree, create units (contract §2).

use crate::auth::{Action, Principal, authorize};
use crate::error::AppResult;
use crate::state::AppState;
use crate::units::{self, UnitDraft};
use actix_web::{HttpResponse, get, post, web};
use hamlet_shared::{
    ErrorBody, MergeUnits, MoveUnit, NewUnit, ReorgReport, Unit, UnitId, UnitList, UnitWithPath,
};

/// A unit with its path from the root.
#[utoipa::path(
    tag = "units",
    params(("id" = uuid::Uuid, Path, description = "Unit id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UnitWithPath),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
#[get("/units/{id}")]
pub async fn get_unit(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UnitId>,
) -> AppResult<web::Json<UnitWithPath>> {
    let id = id.into_inner();
    let unit = state
        .db(move |conn| {
            let unit = units::get_with_path(conn, id)?;
            authorize(conn, &principal, Action::ReadUnit(id))?;
            Ok(unit)
        })
        .await?;
    Ok(web::Json(unit))
}

/// The live children of a unit.
#[utoipa::path(
    tag = "units",
    params(("id" = uuid::Uuid, Path, description = "Unit id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UnitList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
#[get("/units/{id}/children")]
pub async fn get_children(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UnitId>,
) -> AppResult<web::Json<UnitList>> {
    let id = id.into_inner();
    let list = state
        .db(move |conn| {
            let children = units::children(conn, id)?;
            authorize(conn, &principal, Action::ReadUnit(id))?;
            Ok(UnitList { units: children })
        })
        .await?;
    Ok(web::Json(list))
}

/// Creates a unit under a parent in the caller's scope (admins).
#[utoipa::path(
    tag = "units",
    request_body = NewUnit,
    security(("bearer" = [])),
    responses(
        (status = 201, body = Unit),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[post("/units")]
pub async fn create_unit(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<NewUnit>,
) -> AppResult<HttpResponse> {
    let draft = UnitDraft::parse(body.into_inner())?;
    let unit = state
        .db(move |conn| units::create(conn, &principal, draft))
        .await?;
    Ok(HttpResponse::Created().json(unit))
}

/// Moves a unit and its subtree under another parent, effective on a date (admins of both).
#[utoipa::path(
    tag = "units",
    params(("id" = uuid::Uuid, Path, description = "Unit id (UUID)")),
    request_body = MoveUnit,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReorgReport),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[post("/units/{id}/move")]
pub async fn move_unit(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UnitId>,
    body: web::Json<MoveUnit>,
) -> AppResult<web::Json<ReorgReport>> {
    let (id, body) = (id.into_inner(), body.into_inner());
    let date = units::reorg::parse_effective(&body.effective_on)?;
    Ok(web::Json(
        state
            .db(move |conn| units::reorg::move_unit(conn, Some(&principal), id, body.parent_id, date))
            .await?,
    ))
}

/// Merges units into one: their children move under it and they are retired (admins of all).
#[utoipa::path(
    tag = "units",
    request_body = MergeUnits,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReorgReport),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[post("/units/merge")]
pub async fn merge_units(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<MergeUnits>,
) -> AppResult<web::Json<ReorgReport>> {
    let body = body.into_inner();
    let date = units::reorg::parse_effective(&body.effective_on)?;
    Ok(web::Json(
        state
            .db(move |conn| units::reorg::merge_units(conn, Some(&principal), &body.sources, body.into, date))
            .await?,
    ))
}
