//! `/api/v1/aggregates` (contract §7).

use crate::aggregates::{self, Request, export as export_service};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use actix_web::{HttpResponse, get, web};
use hamlet_shared::aggregates::{Aggregate, ChildAggregates};
use hamlet_shared::{ErrorBody, UnitId};
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AggregateQuery {
    /// Reference year for ages (default: the current UTC year).
    #[param(minimum = 1900, maximum = 9999)]
    pub year: Option<i32>,
    /// The date whose administrative tree groups the figures (YYYY-MM-DD, default today).
    #[param(format = Date)]
    pub as_of: Option<String>,
}

/// Indicators of one unit and its whole subtree.
#[utoipa::path(
    tag = "aggregates",
    params(("unit_id" = uuid::Uuid, Path, description = "Unit id"), AggregateQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Aggregate), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[get("/aggregates/{unit_id}")]
pub async fn get_aggregate(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UnitId>,
    q: web::Query<AggregateQuery>,
) -> AppResult<web::Json<Aggregate>> {
    let req = Request::parse(q.year, q.as_of.as_deref())?;
    let (id, settings) = (id.into_inner(), state.aggregates);
    Ok(web::Json(
        state
            .db(move |conn| aggregates::aggregate(conn, &principal, id, &req, &settings))
            .await?,
    ))
}

/// Indicators of each child of a unit.
#[utoipa::path(
    tag = "aggregates",
    params(("unit_id" = uuid::Uuid, Path, description = "Unit id"), AggregateQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ChildAggregates), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[get("/aggregates/{unit_id}/children")]
pub async fn get_children(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UnitId>,
    q: web::Query<AggregateQuery>,
) -> AppResult<web::Json<ChildAggregates>> {
    let req = Request::parse(q.year, q.as_of.as_deref())?;
    let (id, settings) = (id.into_inner(), state.aggregates);
    Ok(web::Json(
        state
            .db(move |conn| aggregates::children(conn, &principal, id, &req, &settings))
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// `csv` or `xlsx`.
    #[param(pattern = "^(csv|xlsx)$")]
    pub format: String,
    #[param(minimum = 1900, maximum = 9999)]
    pub year: Option<i32>,
    /// Only today's date (the default) is supported for exports so far.
    #[param(format = Date)]
    pub as_of: Option<String>,
}

/// One row per unit of the subtree (the unit itself first): path, level, counts and every
/// indicator's numerator, denominator, unknown and ratio.
#[utoipa::path(
    tag = "aggregates",
    params(("unit_id" = uuid::Uuid, Path, description = "Unit id"), ExportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "CSV or XLSX, as `format` asks", content(
            (String = "text/csv"),
            (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`validation_failed`: an unknown format or a past `as_of`"),
    )
)]
#[get("/aggregates/{unit_id}/export")]
pub async fn export(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<UnitId>,
    q: web::Query<ExportQuery>,
) -> AppResult<HttpResponse> {
    let req = Request::parse(q.year, q.as_of.as_deref())?;
    export_response(state, principal, id.into_inner(), req, &q.format).await
}

/// The export of a unit as a download (CSV streamed, or XLSX); the API and the dashboard both
/// answer with this.
pub async fn export_response(
    state: web::Data<AppState>,
    principal: Principal,
    id: UnitId,
    req: Request,
    format: &str,
) -> AppResult<HttpResponse> {
    if req.as_of != time::OffsetDateTime::now_utc().date() {
        return Err(AppError::invalid(hamlet_shared::ErrorDetail::field(
            "as_of",
            hamlet_shared::ErrorCode::InvalidValue,
            "exports use the current tree; a past as_of is not supported for exports yet",
        )));
    }
    let settings = state.aggregates;
    let plan = state
        .db(move |conn| export_service::plan(conn, &principal, id))
        .await?;
    let filename = format!("hamlet-aggregates-{id}");
    match format {
        "csv" => {
            let state = state.clone();
            let plan = std::sync::Arc::new(plan);
            let stream = futures_util::stream::unfold(0usize, move |start| {
                let (state, plan) = (state.clone(), plan.clone());
                async move {
                    if start > 0 && start >= plan.units.len() {
                        return None;
                    }
                    let end = (start + export_service::CHUNK_UNITS).min(plan.units.len());
                    let result = state
                        .db(move |conn| {
                            let rows = export_service::chunk(
                                conn,
                                &plan.units[start..end],
                                &req,
                                &settings,
                                plan.role,
                            )?;
                            export_service::csv_bytes(&rows, start == 0)
                        })
                        .await
                        .map(web::Bytes::from)
                        .map_err(actix_web::Error::from);
                    Some((result, end.max(1)))
                }
            });
            Ok(HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .insert_header((
                    "Content-Disposition",
                    format!("attachment; filename=\"{filename}.csv\""),
                ))
                .streaming(stream))
        }
        "xlsx" => {
            let bytes = state
                .db(move |conn| export_service::xlsx(conn, &plan, &req, &settings))
                .await?;
            Ok(HttpResponse::Ok()
                .content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
                .insert_header((
                    "Content-Disposition",
                    format!("attachment; filename=\"{filename}.xlsx\""),
                ))
                .body(bytes))
        }
        other => Err(AppError::BadRequest(format!(
            "format must be csv or xlsx, not {other:?}"
        ))),
    }
}
