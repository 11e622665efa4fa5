//! HTTP layer: thin handlers (extract, authorize, call a service), the route table and the
//! OpenAPI document generated from it.

pub mod admission;
pub mod aggregates;
pub mod auth;
pub mod dashboard;
pub mod decompress;
pub mod errors;
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
