//! Login, refresh, logout, users, devices and the audit log. Functions taking `&mut DbConn`
//! run on a blocking thread; the async ones split database work from password hashing so a
//! connection is never held while Argon2 runs.

use super::authz::{Action, authorize};
use super::tokens::{Claims, hash_refresh_token, new_refresh_token};
use super::{AuthSettings, Principal};
use crate::clock::{now_us, rfc3339};
use crate::db::auth::{AuditRow, DeviceRow, RefreshRow, SessionRow, UserRow};
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use actix_web::web;
use hamlet_shared::{
    AuditEntry, DeviceInfo, ErrorCode, ErrorDetail, LoginRequest, NewUser, Role, TokenResponse, UnitId,
    UserId, UserInfo, Username,
};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The one answer to a failed login, whatever failed.
const BAD_LOGIN: &str = "invalid username or password";
/// How stale `last_seen` may get before a request refreshes it (avoids a write per request).
const SEEN_RESOLUTION_US: i64 = 60_000_000;
/// Longest device name kept.
const MAX_DEVICE_NAME_CHARS: usize = 100;

fn parse_role(row: &UserRow) -> AppResult<Role> {
    row.role
        .parse()
        .map_err(|_| AppError::Internal(format!("user {} has a bad role", row.id)))
}

fn parse_ids<T: std::str::FromStr>(ids: &[String]) -> AppResult<Vec<T>> {
    ids.iter()
        .map(|s| {
            s.parse()
                .map_err(|_| AppError::Internal(format!("stored id {s:?} is not a UUID")))
        })
        .collect()
}

fn user_info(conn: &mut DbConn, row: &UserRow) -> AppResult<UserInfo> {
    Ok(UserInfo {
        id: row
            .id
            .parse()
            .map_err(|_| AppError::Internal("bad user id".to_owned()))?,
        username: row.username.clone(),
        role: parse_role(row)?,
        scope: parse_ids(&db::auth::scope_of(conn, &row.id)?)?,
    })
}

/// Appends one audit entry. `detail` must hold no personal data beyond ids and usernames.
pub fn audit(
    conn: &mut DbConn,
    actor: Option<&str>,
    subject: Option<&str>,
    action: &str,
    ip: Option<&str>,
    detail: serde_json::Value,
) -> AppResult<()> {
    db::auth::insert_audit(
        conn,
        &AuditRow {
            id: Uuid::now_v7().to_string(),
            at_us: now_us(),
            actor_user_id: actor.map(str::to_owned),
            subject_user_id: subject.map(str::to_owned),
            action: action.to_owned(),
            ip: ip.map(str::to_owned),
            detail: detail.to_string(),
        },
    )?;
    Ok(())
}

// ---- per-request authentication ----

/// Resolves verified claims to a principal: the session must be open and its user enabled.
pub fn authenticate(conn: &mut DbConn, claims: &Claims) -> AppResult<Principal> {
    let (session, user) = db::auth::live_session(conn, &claims.sid)?
        .filter(|(s, _)| s.user_id == claims.sub)
        .ok_or_else(|| AppError::Unauthorized("session has ended".to_owned()))?;
    let now = now_us();
    if now - session.last_seen_us > SEEN_RESOLUTION_US {
        db::auth::touch_session(conn, &session.id, now)?;
        db::auth::touch_device(conn, &session.device_id, &user.id, now)?;
    }
    let info = user_info(conn, &user)?;
    Ok(Principal {
        user_id: info.id,
        username: info.username,
        role: info.role,
        scope: info.scope,
        session_id: session.id,
        device_id: session
            .device_id
            .parse()
            .map_err(|_| AppError::Internal("bad device id".to_owned()))?,
    })
}

// ---- login ----

fn throttle_keys(username: &str, ip: Option<&str>) -> Vec<(String, u32)> {
    let mut keys = vec![(format!("user:{username}"), 0)];
    if let Some(ip) = ip {
        keys.push((format!("ip:{ip}"), 1));
    }
    keys
}

/// 429 when the username or the address has failed too often within the window.
fn check_throttle(
    conn: &mut DbConn,
    settings: &AuthSettings,
    username: &str,
    ip: Option<&str>,
) -> AppResult<()> {
    let limits = settings.limits;
    let window_us = limits.window_secs as i64 * 1_000_000;
    let now = now_us();
    for (key, kind) in throttle_keys(username, ip) {
        let max = if kind == 0 { limits.per_user } else { limits.per_ip };
        let (count, oldest) = db::auth::count_failures_since(conn, &key, now - window_us)?;
        if count >= i64::from(max) {
            let free_at = oldest.unwrap_or(now) + window_us;
            let retry_after_secs = ((free_at - now).max(1_000_000) / 1_000_000) as u64;
            return Err(AppError::RateLimited { retry_after_secs });
        }
    }
    Ok(())
}

fn record_failure(
    conn: &mut DbConn,
    settings: &AuthSettings,
    username: &str,
    ip: Option<&str>,
    user_id: Option<&str>,
) -> AppResult<()> {
    let now = now_us();
    let window_us = settings.limits.window_secs as i64 * 1_000_000;
    for (key, _) in throttle_keys(username, ip) {
        db::auth::prune_failures(conn, &key, now - window_us)?;
        db::auth::record_failure(conn, &Uuid::now_v7().to_string(), &key, now)?;
    }
    audit(
        conn,
        None,
        user_id,
        "login_failed",
        ip,
        serde_json::json!({ "username": username }),
    )
}

/// `POST /api/v1/auth/login`.
pub async fn login(state: &AppState, req: LoginRequest, ip: Option<String>) -> AppResult<TokenResponse> {
    // A name that cannot exist still costs a hash, like any unknown user.
    let username = Username::parse(&req.username)
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    let user = {
        let (username, ip, settings) = (username.clone(), ip.clone(), state.auth.clone());
        state
            .db(move |conn| {
                check_throttle(conn, &settings, &username, ip.as_deref())?;
                if username.is_empty() {
                    Ok(None)
                } else {
                    Ok(db::auth::user_by_username(conn, &username)?)
                }
            })
            .await?
    };
    let params = state.auth.password;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password = req.password;
    let verified = argon2(move || params.verify(&password, stored.as_deref())).await?;
    let enabled = user.as_ref().is_some_and(|u| u.disabled_us.is_none());

    let settings = state.auth.clone();
    state
        .db(move |conn| match user {
            Some(user) if verified && enabled => crate::db::tx::write(conn, |conn| {
                start_session(
                    conn,
                    &settings,
                    &user,
                    &req.device_id,
                    req.device_name.as_deref(),
                    ip.as_deref(),
                )
            }),
            user => {
                record_failure(
                    conn,
                    &settings,
                    &username,
                    ip.as_deref(),
                    user.as_ref().map(|u| u.id.as_str()),
                )?;
                Err(AppError::Unauthorized(BAD_LOGIN.to_owned()))
            }
        })
        .await
}

fn clean_device_name(name: Option<&str>) -> Option<String> {
    let name: String = name?
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_NAME_CHARS)
        .collect();
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn start_session(
    conn: &mut DbConn,
    settings: &AuthSettings,
    user: &UserRow,
    device_id: &Uuid,
    device_name: Option<&str>,
    ip: Option<&str>,
) -> AppResult<TokenResponse> {
    let now = now_us();
    let device = device_id.to_string();
    // One session per user and device: a new login replaces the old one.
    db::auth::end_sessions_of(conn, &user.id, Some(&device), "replaced", now)?;
    let session_id = Uuid::now_v7().to_string();
    db::auth::insert_session(
        conn,
        &SessionRow {
            id: session_id.clone(),
            user_id: user.id.clone(),
            device_id: device.clone(),
            created_us: now,
            last_seen_us: now,
            ended_us: None,
            end_reason: None,
        },
    )?;
    let name = clean_device_name(device_name);
    if db::auth::find_device(conn, &device, &user.id)?.is_some() {
        db::auth::relogin_device(conn, &device, &user.id, name.as_deref(), now)?;
    } else {
        db::auth::insert_device(
            conn,
            &DeviceRow {
                device_id: device.clone(),
                user_id: user.id.clone(),
                name,
                created_us: now,
                last_seen_us: now,
                last_sync_us: None,
                revoked_us: None,
            },
        )?;
    }
    db::auth::prune_failures(conn, &format!("user:{}", user.username), i64::MAX)?;
    audit(
        conn,
        Some(&user.id),
        Some(&user.id),
        "login",
        ip,
        serde_json::json!({ "device_id": device }),
    )?;
    issue_tokens(conn, settings, user, &session_id, now)
}

fn issue_tokens(
    conn: &mut DbConn,
    settings: &AuthSettings,
    user: &UserRow,
    session_id: &str,
    now: i64,
) -> AppResult<TokenResponse> {
    let refresh = new_refresh_token()?;
    db::auth::insert_refresh(
        conn,
        &RefreshRow {
            token_hash: hash_refresh_token(&refresh),
            session_id: session_id.to_owned(),
            created_us: now,
            expires_us: now + settings.keys.refresh_ttl_secs as i64 * 1_000_000,
            used_us: None,
        },
    )?;
    let access = settings
        .keys
        .issue_access(&user.id, session_id, now / 1_000_000)?;
    Ok(TokenResponse {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer".to_owned(),
        expires_in: settings.keys.access_ttl_secs,
        user: user_info(conn, user)?,
    })
}

// ---- refresh and logout ----

/// `POST /api/v1/auth/refresh`: rotates the refresh token. A token presented twice ends its
/// session (the second presenter may be a thief), and that end is committed before the 401.
pub fn refresh(conn: &mut DbConn, settings: &AuthSettings, token: &str) -> AppResult<TokenResponse> {
    let invalid = || AppError::Unauthorized("invalid refresh token".to_owned());
    crate::db::tx::write(conn, |conn| {
        let now = now_us();
        let hash = hash_refresh_token(token);
        let Some(row) = db::auth::find_refresh(conn, &hash)? else {
            return Ok(Err(invalid()));
        };
        let session = db::auth::session(conn, &row.session_id)?.ok_or_else(invalid)?;
        if session.ended_us.is_some() {
            return Ok(Err(AppError::Unauthorized("session has ended".to_owned())));
        }
        if row.used_us.is_some() || db::auth::use_refresh(conn, &hash, now)? == 0 {
            db::auth::end_session(conn, &session.id, "refresh_reuse", now)?;
            audit(
                conn,
                None,
                Some(&session.user_id),
                "refresh_reuse",
                None,
                serde_json::json!({ "device_id": session.device_id }),
            )?;
            return Ok(Err(AppError::Unauthorized(
                "refresh token was already used; the session has been ended, log in again".to_owned(),
            )));
        }
        if row.expires_us < now {
            return Ok(Err(AppError::Unauthorized("refresh token expired".to_owned())));
        }
        let user = match db::auth::user_by_id(conn, &session.user_id)? {
            Some(u) if u.disabled_us.is_none() => u,
            _ => return Ok(Err(AppError::Unauthorized("session has ended".to_owned()))),
        };
        db::auth::touch_session(conn, &session.id, now)?;
        db::auth::touch_device(conn, &session.device_id, &user.id, now)?;
        issue_tokens(conn, settings, &user, &session.id, now).map(Ok)
    })?
}

/// `POST /api/v1/auth/logout`.
pub fn logout(conn: &mut DbConn, principal: &Principal) -> AppResult<()> {
    let uid = principal.user_id.to_string();
    db::auth::end_session(conn, &principal.session_id, "logout", now_us())?;
    audit(
        conn,
        Some(&uid),
        Some(&uid),
        "logout",
        None,
        serde_json::json!({ "device_id": principal.device_id }),
    )
}

// ---- users ----

/// A validated new user; the password is still clear text here and hashed by the caller.
pub struct UserDraft {
    pub username: Username,
    pub password: String,
    pub role: Role,
    pub scope: Vec<UnitId>,
}

impl UserDraft {
    pub fn parse(new: NewUser) -> AppResult<Self> {
        let mut details = Vec::new();
        let username = Username::parse(&new.username).map_err(|d| details.push(d)).ok();
        if let Err(d) = super::password::check_policy(&new.username, &new.password) {
            details.push(d);
        }
        let mut scope = new.scope;
        scope.sort();
        scope.dedup();
        if scope.is_empty() {
            details.push(ErrorDetail::field(
                "scope",
                ErrorCode::Required,
                "scope must name at least one unit",
            ));
        }
        match username {
            Some(username) if details.is_empty() => Ok(Self {
                username,
                password: new.password,
                role: new.role,
                scope,
            }),
            _ => Err(AppError::invalid_many(details)),
        }
    }
}

/// 422 unless every scope unit is a live unit.
fn check_scope_exists(conn: &mut DbConn, scope: &[UnitId]) -> AppResult<()> {
    for (i, unit) in scope.iter().enumerate() {
        match crate::units::get(conn, *unit) {
            Ok(_) => {}
            Err(AppError::NotFound(_)) => {
                return Err(AppError::invalid(ErrorDetail::field(
                    format!("scope[{i}]"),
                    ErrorCode::InvalidValue,
                    "no such unit",
                )));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Stores a user whose password is already hashed. `actor` is None for the CLI.
pub fn insert_user(
    conn: &mut DbConn,
    draft: &UserDraft,
    password_hash: String,
    actor: Option<&Principal>,
) -> AppResult<UserInfo> {
    crate::db::tx::write(conn, |conn| {
        check_scope_exists(conn, &draft.scope)?;
        if let Some(p) = actor {
            authorize(conn, p, Action::ManageUser { scope: &draft.scope })?;
        }
        if db::auth::user_by_username(conn, draft.username.as_str())?.is_some() {
            return Err(AppError::Conflict(format!(
                "username {} is taken",
                draft.username.as_str()
            )));
        }
        let row = UserRow {
            id: UserId::new().to_string(),
            username: draft.username.as_str().to_owned(),
            password_hash,
            role: draft.role.as_str().to_owned(),
            created_us: now_us(),
            disabled_us: None,
        };
        let scope: Vec<String> = draft.scope.iter().map(ToString::to_string).collect();
        db::auth::insert_user(conn, &row, &scope)?;
        let actor_id = actor.map(|p| p.user_id.to_string());
        audit(
            conn,
            actor_id.as_deref(),
            Some(&row.id),
            "user_created",
            None,
            serde_json::json!({ "username": row.username, "role": row.role, "scope": scope }),
        )?;
        user_info(conn, &row)
    })
}

/// `POST /api/v1/users`: validate, authorize, then hash off the database connection.
pub async fn create_user(state: &AppState, principal: Principal, new: NewUser) -> AppResult<UserInfo> {
    let draft = UserDraft::parse(new)?;
    // Refuse early so an unauthorized caller cannot make the server hash for them.
    let (p, scope) = (principal.clone(), draft.scope.clone());
    state
        .db(move |conn| {
            check_scope_exists(conn, &scope)?;
            authorize(conn, &p, Action::ManageUser { scope: &scope })
        })
        .await?;
    let params = state.auth.password;
    let password = draft.password.clone();
    let hash = argon2(move || params.hash(&password))
        .await?
        .map_err(AppError::Internal)?;
    state
        .db(move |conn| insert_user(conn, &draft, hash, Some(&principal)))
        .await
}

/// `POST /api/v1/users/{id}/disable` and `/enable`. Disabling ends every session at once.
pub fn set_user_disabled(
    conn: &mut DbConn,
    principal: &Principal,
    user_id: UserId,
    disable: bool,
) -> AppResult<()> {
    crate::db::tx::write(conn, |conn| {
        let target = db::auth::user_by_id(conn, &user_id.to_string())?
            .ok_or_else(|| AppError::not_found(format!("user {user_id}")))?;
        let scope: Vec<UnitId> = parse_ids(&db::auth::scope_of(conn, &target.id)?)?;
        authorize(conn, principal, Action::ManageUser { scope: &scope })?;
        if disable && user_id == principal.user_id {
            return Err(AppError::Conflict(
                "you cannot disable your own account".to_owned(),
            ));
        }
        let now = now_us();
        if disable {
            if target.disabled_us.is_none() {
                db::auth::set_disabled(conn, &target.id, Some(now))?;
            }
            db::auth::end_sessions_of(conn, &target.id, None, "disabled", now)?;
        } else {
            db::auth::set_disabled(conn, &target.id, None)?;
        }
        let action = if disable { "user_disabled" } else { "user_enabled" };
        audit(
            conn,
            Some(&principal.user_id.to_string()),
            Some(&target.id),
            action,
            None,
            serde_json::json!({}),
        )
    })
}

/// Users every unit of whose scope lies inside `scope` (the users an admin manages).
pub fn users_covered_by(conn: &mut DbConn, scope: &[UnitId]) -> AppResult<Vec<String>> {
    let scope: Vec<String> = scope.iter().map(ToString::to_string).collect();
    let rows = db::auth::scope_rows_touching(conn, &scope)?;
    let units: Vec<String> = rows
        .iter()
        .map(|(_, u)| u.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let covered: HashSet<String> = db::units::covered(conn, &scope, &units)?.into_iter().collect();
    let mut all_covered: HashMap<String, bool> = HashMap::new();
    for (user, unit) in rows {
        *all_covered.entry(user).or_insert(true) &= covered.contains(&unit);
    }
    let mut users: Vec<String> = all_covered
        .into_iter()
        .filter_map(|(u, ok)| ok.then_some(u))
        .collect();
    users.sort();
    Ok(users)
}

// ---- devices ----

/// `GET /api/v1/devices`: an admin sees the devices of the users it manages and its own;
/// everyone else sees their own.
pub fn list_devices(conn: &mut DbConn, principal: &Principal) -> AppResult<Vec<DeviceInfo>> {
    let mut users = vec![principal.user_id.to_string()];
    if principal.role == Role::Admin {
        users.extend(users_covered_by(conn, &principal.scope)?);
        users.sort();
        users.dedup();
    }
    list_devices_of(db::auth::devices_of(conn, &users)?)
}

/// Device rows (with their users' names) as the API shows them.
pub fn list_devices_of(rows: Vec<(DeviceRow, String)>) -> AppResult<Vec<DeviceInfo>> {
    rows.into_iter()
        .map(|(d, username)| {
            Ok(DeviceInfo {
                device_id: d
                    .device_id
                    .parse()
                    .map_err(|_| AppError::Internal("bad device id".to_owned()))?,
                user_id: d
                    .user_id
                    .parse()
                    .map_err(|_| AppError::Internal("bad user id".to_owned()))?,
                username,
                name: d.name,
                last_seen: rfc3339(d.last_seen_us),
                last_sync: d.last_sync_us.map(rfc3339),
                revoked: d.revoked_us.is_some(),
            })
        })
        .collect()
}

/// `POST /api/v1/devices/{device_id}/revoke`: ends the device's sessions of every user the
/// caller may act for (itself; for an admin, the users it manages).
pub fn revoke_device(conn: &mut DbConn, principal: &Principal, device_id: Uuid) -> AppResult<()> {
    crate::db::tx::write(conn, |conn| {
        let device = device_id.to_string();
        let users = db::auth::users_of_device(conn, &device)?;
        if users.is_empty() {
            return Err(AppError::not_found(format!("device {device_id}")));
        }
        let me = principal.user_id.to_string();
        let managed: HashSet<String> = if principal.role == Role::Admin {
            users_covered_by(conn, &principal.scope)?.into_iter().collect()
        } else {
            HashSet::new()
        };
        let targets: Vec<&String> = users
            .iter()
            .filter(|u| **u == me || managed.contains(*u))
            .collect();
        if targets.is_empty() {
            return Err(AppError::Forbidden("you may not revoke this device".to_owned()));
        }
        let now = now_us();
        for user in targets {
            db::auth::revoke_device(conn, &device, user, now)?;
            db::auth::end_sessions_of(conn, user, Some(&device), "revoked", now)?;
            audit(
                conn,
                Some(&me),
                Some(user),
                "device_revoked",
                None,
                serde_json::json!({ "device_id": device }),
            )?;
        }
        Ok(())
    })
}

// ---- audit ----

/// `GET /api/v1/audit`: entries about the users the admin manages; an admin whose scope holds
/// a root unit sees everything, including failed logins of unknown names.
pub fn list_audit(conn: &mut DbConn, principal: &Principal, limit: i64) -> AppResult<Vec<AuditEntry>> {
    authorize(conn, principal, Action::ReadAudit)?;
    let rows = if db::units::any_root(conn, &principal.scope_ids())? {
        db::auth::audit_entries(conn, None, limit)?
    } else {
        let mut users = users_covered_by(conn, &principal.scope)?;
        users.push(principal.user_id.to_string());
        db::auth::audit_entries(conn, Some(&users), limit)?
    };
    rows.into_iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.id,
                at: rfc3339(r.at_us),
                actor_user_id: r
                    .actor_user_id
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|_| AppError::Internal("bad id".to_owned()))?,
                subject_user_id: r
                    .subject_user_id
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|_| AppError::Internal("bad id".to_owned()))?,
                action: r.action,
                ip: r.ip,
                detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}

/// Runs an Argon2 computation on a blocking thread, at most one per core at a time. Each one
/// holds its memory cost (19 MiB by default) and is CPU-bound, so more at once only add memory:
/// 256 phones logging in together held ~190 MB on ten blocking threads.
async fn argon2<T, F>(f: F) -> AppResult<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    static SLOTS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|_| AppError::Internal("the hashing gate is closed".into()))?;
    Ok(web::block(f).await?)
}
