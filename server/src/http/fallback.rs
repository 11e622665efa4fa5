//! What answers a request that no route takes: `405 method_not_allowed` with an `Allow` header
//! when the path is one of the API's with another method, else `404 not_found`. actix-web's
//! route macros guard the method on the resource itself, so a wrong method falls through to
//! the default service; the OpenAPI document knows every path and its methods.

use crate::error::AppError;
use actix_web::dev::ResourceDef;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::PathItem;

/// Every documented path pattern with the methods it takes, as an `Allow` value.
pub struct RouteMethods(Vec<(ResourceDef, String)>);

/// The methods of one documented path.
pub fn methods_of(item: &PathItem) -> Vec<&'static str> {
    [
        (&item.get, "GET"),
        (&item.post, "POST"),
        (&item.put, "PUT"),
        (&item.patch, "PATCH"),
        (&item.delete, "DELETE"),
    ]
    .into_iter()
    .filter_map(|(op, name)| op.is_some().then_some(name))
    .collect()
}

impl RouteMethods {
    pub fn from_openapi(doc: &OpenApi) -> Self {
        let mut routes: Vec<_> = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| (ResourceDef::new(path.as_str()), methods_of(item).join(", ")))
            .collect();
        // `/units/merge` before `/units/{id}`: a literal path is matched before a pattern.
        routes.sort_by_key(|(def, _)| def.is_prefix() || def.pattern().is_some_and(|p| p.contains('{')));
        Self(routes)
    }

    /// The route pattern that takes `path` and its `Allow` value, `None` for a path the API
    /// does not serve.
    fn route(&self, path: &str) -> Option<(&ResourceDef, &str)> {
        self.0
            .iter()
            .find(|(def, _)| def.is_match(path))
            .map(|(def, methods)| (def, methods.as_str()))
    }

    /// The `Allow` value for a path the API serves, `None` for a path it does not.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        self.route(path).map(|(_, methods)| methods)
    }
}

/// The app's default service.
pub async fn no_route(req: HttpRequest, routes: web::Data<RouteMethods>) -> HttpResponse {
    match routes.allowed(req.path()) {
        Some(allowed) => method_not_allowed(&req, allowed),
        None => AppError::NotFound("no such route".to_owned()).error_response(),
    }
}

/// The 405 for a request whose path a pattern took (`GET /units/merge` reaching
/// `GET /units/{id}`) although a literal route of that path takes other methods; `None` when
/// the path is not such a literal one.
pub fn wrong_method_of_literal_path(req: &HttpRequest) -> Option<HttpResponse> {
    let routes = req.app_data::<web::Data<RouteMethods>>()?;
    let (def, allowed) = routes.route(req.path())?;
    let literal = def.pattern().is_some_and(|p| !p.contains('{'));
    let takes_method = allowed.split(", ").any(|m| m == req.method().as_str());
    (literal && !takes_method).then(|| method_not_allowed(req, allowed))
}

fn method_not_allowed(req: &HttpRequest, allowed: &str) -> HttpResponse {
    let mut res = AppError::MethodNotAllowed(format!(
        "{} is not allowed on this route; it takes {allowed}",
        req.method()
    ))
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(allowed) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_name_their_methods() {
        let routes = RouteMethods::from_openapi(&crate::http::openapi());
        assert_eq!(routes.allowed("/healthz"), Some("GET"));
        assert_eq!(routes.allowed("/api/v1/sync/push"), Some("POST"));
        assert_eq!(
            routes.allowed("/api/v1/units/0190f3a4-0000-7000-8000-000000000000"),
            Some("GET")
        );
        assert_eq!(routes.allowed("/api/v1/units"), Some("POST"));
        assert_eq!(routes.allowed("/api/v1/units/merge"), Some("POST"));
        assert_eq!(routes.allowed("/api/v1/nope"), None);
        assert_eq!(routes.allowed("/api/v1/units/a/b/c"), None);
    }
}
