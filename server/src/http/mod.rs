//! HTTP layer: thin handlers (extract, authorize, call a service), the route table and the
//! OpenAPI document generated from it.

pub mod admission;
pub mod aggregates;
pub mod auth;
pub mod compress;
pub mod dashboard;
pub mod decompress;
pub mod errors;
pub mod fallback;
pub mod metrics;
pub mod ops;
pub mod sync;
pub mod units;

use actix_web::dev::{ServiceFactory, ServiceRequest};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::{UtoipaApp, scope};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hamlet API",
        description = "Offline-first sync server for village digital-adoption surveys.",
    ),
    components(schemas(hamlet_shared::ErrorBody)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Registers every documented route. Used both to serve and to build the OpenAPI document,
/// so the document lists exactly the routes that exist.
pub fn routes<T>(app: UtoipaApp<T>) -> UtoipaApp<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    app.service(ops::healthz).service(ops::metrics).service(
        scope::scope("/api/v1")
            .service(auth::login)
            .service(auth::refresh)
            .service(auth::logout)
            .service(auth::create_user)
            .service(auth::disable_user)
            .service(auth::enable_user)
            .service(auth::list_devices)
            .service(auth::revoke_device)
            .service(auth::list_audit)
            .service(units::create_unit)
            .service(units::merge_units)
            .service(units::move_unit)
            .service(units::get_unit)
            .service(units::get_children)
            .service(sync::push)
            .service(sync::pull)
            .service(sync::list_conflicts)
            .service(sync::resolve_conflict)
            .service(aggregates::get_children)
            .service(aggregates::export)
            .service(aggregates::get_aggregate),
    )
}

/// The OpenAPI document of [`routes`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let mut doc = routes(actix_web::App::new().into_utoipa_app().openapi(ApiDoc::openapi()))
        .split_for_parts()
        .1;
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document_common_errors(&mut doc);
    doc.paths.paths.insert(
        "/api/v1/openapi.json".to_owned(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .operation_id(Some("openapi"))
                .tag("operations")
                .summary(Some("This document"))
                .response(
                    "200",
                    utoipa::openapi::ResponseBuilder::new()
                        .description("OpenAPI 3 document")
                        .build(),
                ),
        ),
    );
    doc
}

/// Adds to every operation the error statuses any route can answer, so clients (and
/// schemathesis) find each documented: 400 for a malformed parameter or body, 401 where a token
/// is needed, 413 for an oversize body, 503 `unavailable` when the database is down or busy.
/// A route's own declaration, with its description, wins.
fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            let has_input =
                op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description).into());
            };
            if has_input {
                add("400", "`bad_request`: a malformed parameter or body");
            }
            if secured {
                add(
                    "401",
                    "`unauthorized`: no valid access token, or its session has ended",
                );
            }
            if op.request_body.is_some() {
                add(
                    "413",
                    "`payload_too_large`: the body, once decompressed, is over the limit",
                );
            }
            add(
                "503",
                "`unavailable`: the database is down or busy; retry after `Retry-After` seconds",
            );
        }
    }
}
