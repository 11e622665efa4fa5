//! The web dashboard under `/dashboard`: HTML pages for admins and viewers, served by
//! `hamlet serve` itself. Handlers are thin: they read the session cookie, check the CSRF token
//! of every POST, call the same services as the JSON API and render the result (or an HTML
//! error page: a client mistake is never a 500).

pub mod i18n;
pub mod pages;
pub mod session;

use crate::aggregates::Request;
use crate::aggregates::overview::{self, SortKey};
use crate::auth::{Principal, activity, service};
use crate::error::AppError;
use crate::state::AppState;
use crate::sync::{conflicts, push as push_service};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use hamlet_shared::sync::{Choice, ResolveRequest};
use hamlet_shared::{LoginRequest, Role, UnitId};
use i18n::Lang;
use pages::Chrome;
use session::{BROWSER_COOKIE, CookieKey, DashboardSettings, LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE};
use std::collections::HashMap;
use uuid::Uuid;

/// Settings and key of the dashboard, shared by every request.
pub struct Dashboard {
    pub settings: DashboardSettings,
    pub key: CookieKey,
}

/// Most rows a table shows.
const MAX_ROWS: usize = 500;
/// Default number of days after which a phone that has not synced is highlighted.
const DEFAULT_STALE_DAYS: i64 = 7;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes.
pub fn scope() -> actix_web::Scope {
    web::scope("/dashboard")
        .route("", web::get().to(home))
        .route("/", web::get().to(home))
        .route("/style.css", web::get().to(style))
        .route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login_submit))
        .route("/logout", web::post().to(logout))
        .route("/units/{id}", web::get().to(unit_page))
        .route("/units/{id}/export", web::get().to(export))
        .route("/units/{id}/activity", web::get().to(activity_page))
        .route(
            "/units/{id}/devices/{device}/revoke",
            web::post().to(revoke_device),
        )
        .route("/units/{id}/conflicts", web::get().to(conflicts_page))
        .route(
            "/units/{id}/conflicts/{conflict}/resolve",
            web::post().to(resolve_conflict),
        )
        .default_service(web::to(not_found))
}

/// A signed-in request.
struct Web {
    principal: Principal,
    csrf: String,
    lang: Lang,
}

impl Web {
    fn chrome<'a>(&'a self, unit: Option<UnitId>, here: &'a str) -> Chrome<'a> {
        Chrome {
            lang: self.lang,
            username: &self.principal.username,
            role: self.principal.role,
            csrf: &self.csrf,
            unit,
            here,
        }
    }
}

fn now_secs() -> i64 {
    crate::clock::now_us() / 1_000_000
}

/// An HTML response with the dashboard's security headers (and the language cookie when the
/// request chose a language).
fn html(req: &HttpRequest, state: &AppState, status: StatusCode, markup: maud::Markup) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    b.content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if let Some(lang) = Lang::asked(req) {
        b.cookie(state.dashboard.settings.cookie(
            req,
            LANG_COOKIE,
            lang.code().to_owned(),
            Some(CookieDuration::days(365)),
        ));
    }
    b.body(markup.into_string())
}

/// 303 to `location` (after a POST, or to the login page).
fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The error page of an [`AppError`], with the status the API would give it. An ended session
/// goes back to the login page instead.
fn fail(
    req: &HttpRequest,
    state: &AppState,
    web: Option<&Web>,
    unit: Option<UnitId>,
    err: AppError,
) -> HttpResponse {
    let lang = web.map_or_else(|| Lang::of(req), |w| w.lang);
    let t = lang.t();
    let message = match &err {
        AppError::Unauthorized(_) => {
            let mut r = redirect("/dashboard/login");
            let _ = r.add_cookie(&state.dashboard.settings.removal(req, SESSION_COOKIE));
            return r;
        }
        AppError::BadRequest(_)
        | AppError::Validation { .. }
        | AppError::PayloadTooLarge(_)
        | AppError::MethodNotAllowed(_) => t.error_bad_request,
        AppError::Forbidden(_) => t.error_forbidden,
        AppError::NotFound(_) => t.error_not_found,
        AppError::Conflict(_) => t.error_conflict,
        AppError::RateLimited { .. } => t.too_many_logins,
        AppError::Unavailable(m) | AppError::Unwritable(m) | AppError::Contention(m) => {
            tracing::warn!(error = %m, "dashboard: database unavailable");
            t.error_unavailable
        }
        AppError::Internal(m) => {
            tracing::error!(error = %m, "dashboard: internal error");
            t.error_internal
        }
    };
    let here = req.path().to_owned();
    let chrome = web.map(|w| w.chrome(unit, &here));
    let mut res = html(
        req,
        state,
        err.status_code(),
        pages::error(lang, chrome.as_ref(), message),
    );
    if let AppError::Unavailable(_) | AppError::Unwritable(_) | AppError::Contention(_) = err {
        res.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(crate::error::UNAVAILABLE_RETRY_AFTER_SECS),
        );
    }
    res
}

/// 403 for a form without a valid CSRF token.
fn csrf_refused(req: &HttpRequest, state: &AppState, lang: Lang) -> HttpResponse {
    html(
        req,
        state,
        StatusCode::FORBIDDEN,
        pages::error(lang, None, lang.t().error_csrf),
    )
}

/// The session behind the request's cookie, or the response to send instead (the login page).
async fn signed_in(req: &HttpRequest, state: &web::Data<AppState>) -> Result<Web, HttpResponse> {
    let lang = Lang::of(req);
    let dash = &state.dashboard;
    let max_age = dash.settings.session_hours as i64 * 3600;
    let claims = req
        .cookie(SESSION_COOKIE)
        .and_then(|c| dash.key.open_session(c.value(), now_secs(), max_age));
    let Some(claims) = claims else {
        return Err(redirect("/dashboard/login"));
    };
    let sid = claims.sid.clone();
    match state.db(move |conn| service::authenticate(conn, &claims)).await {
        Ok(principal) => Ok(Web {
            csrf: dash.key.csrf_for_session(&sid),
            principal,
            lang,
        }),
        Err(e) => Err(fail(req, state, None, None, e)),
    }
}

/// The fields of a urlencoded form body (an unreadable body is an empty form).
fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A signed-in POST whose CSRF token matches its session.
async fn signed_in_post(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    body: &[u8],
) -> Result<(Web, HashMap<String, String>), HttpResponse> {
    let fields = form(body);
    let web = signed_in(req, state).await.map_err(|r| {
        // Without a session there is no form to accept either.
        if r.status() == StatusCode::SEE_OTHER {
            csrf_refused(req, state, Lang::of(req))
        } else {
            r
        }
    })?;
    let token = fields.get("csrf").map_or("", String::as_str);
    if !state
        .dashboard
        .key
        .check_session_csrf(&web.principal.session_id, token)
    {
        return Err(csrf_refused(req, state, web.lang));
    }
    Ok((web, fields))
}

fn parse_unit(s: &str) -> Result<UnitId, AppError> {
    s.parse().map_err(|_| AppError::not_found("unit"))
}

/// [`signed_in`] on a page about `unit`: also the unit's id, or the not-found page.
async fn signed_in_at(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    unit: &str,
) -> Result<(Web, UnitId), HttpResponse> {
    let web = signed_in(req, state).await?;
    match parse_unit(unit) {
        Ok(id) => Ok((web, id)),
        Err(e) => Err(fail(req, state, Some(&web), None, e)),
    }
}

/// [`signed_in_post`] on a page about `unit`: also the unit's id, or the not-found page.
async fn signed_in_post_at(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    body: &[u8],
    unit: &str,
) -> Result<(Web, HashMap<String, String>, UnitId), HttpResponse> {
    let (web, fields) = signed_in_post(req, state, body).await?;
    match parse_unit(unit) {
        Ok(id) => Ok((web, fields, id)),
        Err(e) => Err(fail(req, state, Some(&web), None, e)),
    }
}

// ---- pages ----

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(pages::STYLE)
}

async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    fail(&req, &state, None, None, AppError::not_found("page"))
}

async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let web = match signed_in(&req, &state).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match web.principal.scope.as_slice() {
        [] => fail(
            &req,
            &state,
            Some(&web),
            None,
            AppError::Forbidden("no scope".to_owned()),
        ),
        [unit] => redirect(&format!("/dashboard/units/{unit}")),
        several => {
            // A user with several scope units picks one.
            let ids = several.to_vec();
            match state.db(move |conn| crate::units::names(conn, &ids)).await {
                Ok(names) => {
                    let mut units: Vec<(UnitId, String)> = names.into_iter().collect();
                    units.sort_by(|a, b| a.1.cmp(&b.1));
                    let here = req.path().to_owned();
                    let chrome = web.chrome(None, &here);
                    html(&req, &state, StatusCode::OK, pages::home(&chrome, &units))
                }
                Err(e) => fail(&req, &state, Some(&web), None, e),
            }
        }
    }
}

async fn login_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let lang = Lang::of(&req);
    if req.cookie(SESSION_COOKIE).is_some() && signed_in(&req, &state).await.is_ok() {
        return redirect("/dashboard");
    }
    let (nonce, fresh) = match req.cookie(LOGIN_COOKIE) {
        Some(c) if !c.value().is_empty() => (c.value().to_owned(), false),
        _ => (session::random_token(), true),
    };
    let csrf = state.dashboard.key.csrf_for_login(&nonce);
    let mut res = html(&req, &state, StatusCode::OK, pages::login(lang, &csrf, "", None));
    if fresh {
        let _ = res.add_cookie(&state.dashboard.settings.cookie(&req, LOGIN_COOKIE, nonce, None));
    }
    res
}

async fn login_submit(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let lang = Lang::of(&req);
    let fields = form(&body);
    let dash = &state.dashboard;
    let nonce = req
        .cookie(LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let token = fields.get("csrf").map_or("", String::as_str);
    if !dash.key.check_login_csrf(&nonce, token) {
        return csrf_refused(&req, &state, lang);
    }
    let username = fields.get("username").cloned().unwrap_or_default();
    let password = fields.get("password").cloned().unwrap_or_default();
    // One device per browser, so the team activity page is not filled with a device per login.
    let device_id = req
        .cookie(BROWSER_COOKIE)
        .and_then(|c| c.value().parse::<Uuid>().ok())
        .unwrap_or_else(Uuid::new_v4);
    let ip = req.peer_addr().map(|a| a.ip().to_string());
    let login = LoginRequest {
        username: username.clone(),
        password,
        device_id,
        device_name: Some("Web dashboard".to_owned()),
    };
    let result = service::login(&state, login, ip).await;
    let again = |status: StatusCode, message: String| {
        let csrf = dash.key.csrf_for_login(&nonce);
        html(
            &req,
            &state,
            status,
            pages::login(lang, &csrf, &username, Some(message)),
        )
    };
    let tokens = match result {
        Ok(tokens) => tokens,
        Err(AppError::Unauthorized(_)) => {
            return again(StatusCode::UNAUTHORIZED, lang.t().bad_login.to_owned());
        }
        Err(AppError::RateLimited { retry_after_secs }) => {
            let mut res = again(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{} {retry_after_secs}", lang.t().too_many_logins),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after_secs));
            return res;
        }
        Err(e) => return fail(&req, &state, None, None, e),
    };
    let claims = match state.auth.keys.verify_access(&tokens.access_token) {
        Ok(c) => c,
        Err(e) => return fail(&req, &state, None, None, e),
    };
    let mut res = redirect("/dashboard");
    let settings = &dash.settings;
    let value = dash.key.session_value(&claims.sid, &claims.sub, now_secs());
    let _ = res.add_cookie(&settings.cookie(&req, SESSION_COOKIE, value, None));
    let _ = res.add_cookie(&settings.cookie(
        &req,
        BROWSER_COOKIE,
        device_id.to_string(),
        Some(CookieDuration::days(365)),
    ));
    // A new nonce for the next login form.
    let _ = res.add_cookie(&settings.removal(&req, LOGIN_COOKIE));
    res
}

async fn logout(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let (web, _) = match signed_in_post(&req, &state, &body).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let principal = web.principal.clone();
    if let Err(e) = state.db(move |conn| service::logout(conn, &principal)).await {
        return fail(&req, &state, Some(&web), None, e);
    }
    let mut res = redirect("/dashboard/login");
    let _ = res.add_cookie(&state.dashboard.settings.removal(&req, SESSION_COOKIE));
    res
}

async fn unit_page(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let (web, id) = match signed_in_at(&req, &state, &path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let q = query(&req);
    let sort = SortKey::parse(q.get("sort").map(String::as_str));
    let descending = q.get("dir").is_some_and(|d| d == "desc");
    let (principal, settings) = (web.principal.clone(), state.aggregates);
    let (sort2, req_figures) = (sort.clone(), Request::parse(None, None));
    let result = match req_figures {
        Ok(r) => {
            state
                .db(move |conn| overview::overview(conn, &principal, id, &r, &settings, &sort2, descending))
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(o) => {
            let here = req.path().to_owned();
            let chrome = web.chrome(Some(id), &here);
            let params = pages::OverviewParams {
                sort: &sort,
                descending,
            };
            html(
                &req,
                &state,
                StatusCode::OK,
                pages::overview(&chrome, &o, &params),
            )
        }
        Err(e) => fail(&req, &state, Some(&web), None, e),
    }
}

async fn export(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let (web, id) = match signed_in_at(&req, &state, &path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let format = query(&req)
        .get("format")
        .cloned()
        .unwrap_or_else(|| "csv".to_owned());
    let result = match Request::parse(None, None) {
        Ok(r) => {
            crate::http::aggregates::export_response(state.clone(), web.principal.clone(), id, r, &format)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(res) => res,
        Err(e) => fail(&req, &state, Some(&web), Some(id), e),
    }
}

async fn activity_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let (web, id) = match signed_in_at(&req, &state, &path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let q = query(&req);
    let days = q
        .get("days")
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(DEFAULT_STALE_DAYS)
        .clamp(1, 365);
    let cutoff = crate::clock::now_us() - days * 86_400_000_000;
    let principal = web.principal.clone();
    let result = state
        .db(move |conn| {
            let unit = crate::units::get(conn, id)?;
            let a = activity::team_activity(conn, &principal, id, cutoff)?;
            Ok((unit, a))
        })
        .await;
    match result {
        Ok((unit, a)) => {
            let here = req.path().to_owned();
            let chrome = web.chrome(Some(id), &here);
            let done = q
                .get("done")
                .filter(|d| *d == "revoked")
                .map(|_| web.lang.t().device_revoked);
            html(
                &req,
                &state,
                StatusCode::OK,
                pages::activity(&chrome, &unit.name, &a, days, done, MAX_ROWS),
            )
        }
        Err(e) => fail(&req, &state, Some(&web), Some(id), e),
    }
}

async fn revoke_device(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (unit, device) = path.into_inner();
    let (web, _, id) = match signed_in_post_at(&req, &state, &body, &unit).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(device) = device.parse::<Uuid>() else {
        return fail(&req, &state, Some(&web), Some(id), AppError::not_found("device"));
    };
    let principal = web.principal.clone();
    match state
        .db(move |conn| service::revoke_device(conn, &principal, device))
        .await
    {
        Ok(()) => redirect(&format!("/dashboard/units/{id}/activity?done=revoked")),
        Err(e) => fail(&req, &state, Some(&web), Some(id), e),
    }
}

async fn conflicts_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let (web, id) = match signed_in_at(&req, &state, &path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if web.principal.role != Role::Admin {
        return fail(
            &req,
            &state,
            Some(&web),
            Some(id),
            AppError::Forbidden("admins only".to_owned()),
        );
    }
    let principal = web.principal.clone();
    let result = state
        .db(move |conn| {
            let unit = crate::units::get(conn, id)?;
            let list = conflicts::list(conn, &principal, Some(id), Some(false), MAX_ROWS as i64)?;
            let villages: Vec<UnitId> = list.iter().map(|c| c.village_id).collect();
            let names = crate::units::names(conn, &villages)?;
            Ok((unit, list, names))
        })
        .await;
    match result {
        Ok((unit, list, names)) => {
            let here = req.path().to_owned();
            let chrome = web.chrome(Some(id), &here);
            let q = query(&req);
            let done = q
                .get("done")
                .filter(|d| *d == "resolved")
                .map(|_| web.lang.t().conflict_resolved);
            html(
                &req,
                &state,
                StatusCode::OK,
                pages::conflicts(&chrome, &unit.name, &list, &names, done),
            )
        }
        Err(e) => fail(&req, &state, Some(&web), Some(id), e),
    }
}

async fn resolve_conflict(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (unit, conflict) = path.into_inner();
    let (web, fields, id) = match signed_in_post_at(&req, &state, &body, &unit).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if hamlet_shared::records::canonical_uuid(&conflict).is_none() {
        return fail(
            &req,
            &state,
            Some(&web),
            Some(id),
            AppError::not_found("conflict"),
        );
    }
    // The value the admin typed: a number where the form asked for one, text otherwise; the
    // service validates it against the field like a pushed value.
    let value = match (fields.get("value_number"), fields.get("value")) {
        (Some(n), _) => match n.trim().parse::<i64>() {
            Ok(n) => Some(serde_json::Value::from(n)),
            Err(_) => {
                return fail(
                    &req,
                    &state,
                    Some(&web),
                    Some(id),
                    AppError::BadRequest("not a number".to_owned()),
                );
            }
        },
        (None, Some(v)) => Some(serde_json::Value::String(v.clone())),
        (None, None) => None,
    };
    let choose = match fields.get("choose").map(String::as_str) {
        Some("current") => Choice::Current,
        Some("incoming") => Choice::Incoming,
        Some("value") if value.is_some() => Choice::Value,
        _ => {
            return fail(
                &req,
                &state,
                Some(&web),
                Some(id),
                AppError::BadRequest("choose current, incoming or a value".to_owned()),
            );
        }
    };
    let ctx = push_service::context(web.principal.clone(), state.sync.max_clock_skew_secs * 1000);
    let value = if choose == Choice::Value { value } else { None };
    let resolve = ResolveRequest { choose, value };
    match state
        .db(move |conn| conflicts::resolve(conn, &ctx, &conflict, &resolve))
        .await
    {
        Ok(_) => redirect(&format!("/dashboard/units/{id}/conflicts?done=resolved")),
        Err(e) => fail(&req, &state, Some(&web), Some(id), e),
    }
}
