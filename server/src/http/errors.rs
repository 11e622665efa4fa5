//! Extractor error handlers and the catch-all that gives every error response the contract's
//! body, including the ones actix-web produces itself (unknown routes, wrong methods).

use crate::error::AppError;
use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

/// `web::JsonConfig` error handler: oversize → 413, anything else → 400 with a useful message.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let app = match &err {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            AppError::too_large(*limit)
        }
        JsonPayloadError::ContentType => {
            AppError::BadRequest("Content-Type must be application/json".to_owned())
        }
        JsonPayloadError::Deserialize(e) => AppError::BadRequest(format!("invalid JSON body: {e}")),
        JsonPayloadError::Payload(PayloadError::Overflow) => {
            AppError::PayloadTooLarge("request body is too large".to_owned())
        }
        other => AppError::BadRequest(format!("unreadable body: {other}")),
    };
    actix_web::error::InternalError::from_response(err, app.error_response()).into()
}

/// `web::PathConfig` error handler: a malformed id in the path, or a literal path such as
/// `/units/merge` asked with a method only a pattern (`GET /units/{id}`) takes.
pub fn path_error(err: PathError, req: &HttpRequest) -> actix_web::Error {
    let response = super::fallback::wrong_method_of_literal_path(req)
        .unwrap_or_else(|| AppError::BadRequest(format!("invalid path parameter: {err}")).error_response());
    actix_web::error::InternalError::from_response(err, response).into()
}

/// `web::QueryConfig` error handler.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let app = AppError::BadRequest(format!("invalid query string: {err}"));
    actix_web::error::InternalError::from_response(err, app.error_response()).into()
}

/// Middleware hook: replaces a non-JSON error body (one actix-web made itself) with the
/// contract's body, keeping the status and headers such as `Retry-After`. The dashboard's HTML
/// error pages are left as they are.
pub fn normalize_error_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let error = error_for_status(status);
    let (req, old) = res.into_parts();
    let mut new = error.error_response();
    *new.status_mut() = status;
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let new: HttpResponse<EitherBody<B, BoxBody>> = new.map_into_right_body();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, new)))
}

fn error_for_status(status: StatusCode) -> AppError {
    let reason = status.canonical_reason().unwrap_or("error").to_owned();
    match status {
        StatusCode::UNAUTHORIZED => AppError::Unauthorized(reason),
        StatusCode::FORBIDDEN => AppError::Forbidden(reason),
        StatusCode::NOT_FOUND => AppError::NotFound(reason),
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed(reason),
        StatusCode::CONFLICT => AppError::Conflict(reason),
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge("request body is too large".to_owned()),
        StatusCode::TOO_MANY_REQUESTS => AppError::RateLimited { retry_after_secs: 1 },
        StatusCode::SERVICE_UNAVAILABLE => AppError::Unavailable(reason),
        s if s.is_server_error() => AppError::Internal(reason),
        _ => AppError::BadRequest(reason),
    }
}
