//! Queries on users, scopes, sessions, refresh tokens, devices, login failures and the audit log.

use super::DbConn;
use super::schema::{
    audit_log, devices, login_failures, refresh_tokens, sessions, unit_closure, user_scopes, users,
};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_default_value = false)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_us: i64,
    pub disabled_us: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
#[diesel(treat_none_as_default_value = false)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
    pub created_us: i64,
    pub last_seen_us: i64,
    pub ended_us: Option<i64>,
    pub end_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct RefreshRow {
    pub token_hash: String,
    pub session_id: String,
    pub created_us: i64,
    pub expires_us: i64,
    pub used_us: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = devices)]
#[diesel(treat_none_as_default_value = false)]
pub struct DeviceRow {
    pub device_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub created_us: i64,
    pub last_seen_us: i64,
    pub last_sync_us: Option<i64>,
    pub revoked_us: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
#[diesel(treat_none_as_default_value = false)]
pub struct AuditRow {
    pub id: String,
    pub at_us: i64,
    pub actor_user_id: Option<String>,
    pub subject_user_id: Option<String>,
    pub action: String,
    pub ip: Option<String>,
    pub detail: String,
}

// ---- users and scopes ----

pub fn user_by_username(conn: &mut DbConn, name: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::username.eq(name))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

pub fn user_by_id(conn: &mut DbConn, id: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

/// `(user_id, role)` of the given users.
pub fn roles_of(conn: &mut DbConn, ids: &[String]) -> QueryResult<Vec<(String, String)>> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(500) {
        rows.extend(
            users::table
                .filter(users::id.eq_any(chunk))
                .select((users::id, users::role))
                .load::<(String, String)>(conn)?,
        );
    }
    Ok(rows)
}

pub fn insert_user(conn: &mut DbConn, user: &UserRow, scope: &[String]) -> QueryResult<()> {
    diesel::insert_into(users::table).values(user).execute(conn)?;
    for unit in scope {
        diesel::insert_into(user_scopes::table)
            .values((user_scopes::user_id.eq(&user.id), user_scopes::unit_id.eq(unit)))
            .execute(conn)?;
    }
    Ok(())
}

pub fn set_disabled(conn: &mut DbConn, id: &str, disabled_us: Option<i64>) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::disabled_us.eq(disabled_us))
        .execute(conn)
}

pub fn scope_of(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<String>> {
    user_scopes::table
        .filter(user_scopes::user_id.eq(user_id))
        .select(user_scopes::unit_id)
        .order(user_scopes::unit_id)
        .load(conn)
}

/// `(user_id, unit_id)` scope rows of every user with at least one scope unit inside the
/// subtrees of `ancestors`.
pub fn scope_rows_touching(conn: &mut DbConn, ancestors: &[String]) -> QueryResult<Vec<(String, String)>> {
    let touching: Vec<String> = user_scopes::table
        .inner_join(unit_closure::table.on(unit_closure::descendant_id.eq(user_scopes::unit_id)))
        .filter(unit_closure::ancestor_id.eq_any(ancestors))
        .select(user_scopes::user_id)
        .distinct()
        .load(conn)?;
    let mut rows = Vec::new();
    for chunk in touching.chunks(500) {
        rows.extend(
            user_scopes::table
                .filter(user_scopes::user_id.eq_any(chunk))
                .select((user_scopes::user_id, user_scopes::unit_id))
                .load::<(String, String)>(conn)?,
        );
    }
    Ok(rows)
}

// ---- login failures ----

pub fn count_failures_since(conn: &mut DbConn, key: &str, since_us: i64) -> QueryResult<(i64, Option<i64>)> {
    let rows: Vec<i64> = login_failures::table
        .filter(login_failures::key.eq(key))
        .filter(login_failures::at_us.ge(since_us))
        .select(login_failures::at_us)
        .order(login_failures::at_us.asc())
        .load(conn)?;
    Ok((rows.len() as i64, rows.first().copied()))
}

pub fn record_failure(conn: &mut DbConn, id: &str, key: &str, at_us: i64) -> QueryResult<usize> {
    diesel::insert_into(login_failures::table)
        .values((
            login_failures::id.eq(id),
            login_failures::key.eq(key),
            login_failures::at_us.eq(at_us),
        ))
        .execute(conn)
}

pub fn prune_failures(conn: &mut DbConn, key: &str, before_us: i64) -> QueryResult<usize> {
    diesel::delete(
        login_failures::table
            .filter(login_failures::key.eq(key))
            .filter(login_failures::at_us.lt(before_us)),
    )
    .execute(conn)
}

// ---- sessions and refresh tokens ----

pub fn insert_session(conn: &mut DbConn, row: &SessionRow) -> QueryResult<usize> {
    diesel::insert_into(sessions::table).values(row).execute(conn)
}

/// Ends the open sessions matching the filter; returns how many.
pub fn end_sessions_of(
    conn: &mut DbConn,
    user_id: &str,
    device_id: Option<&str>,
    reason: &str,
    now_us: i64,
) -> QueryResult<usize> {
    let target = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::ended_us.is_null())
        .into_boxed();
    let target = match device_id {
        Some(d) => target.filter(sessions::device_id.eq(d.to_owned())),
        None => target,
    };
    let ids: Vec<String> = target.select(sessions::id).load(conn)?;
    diesel::update(sessions::table.filter(sessions::id.eq_any(&ids)))
        .set((sessions::ended_us.eq(now_us), sessions::end_reason.eq(reason)))
        .execute(conn)
}

pub fn end_session(conn: &mut DbConn, id: &str, reason: &str, now_us: i64) -> QueryResult<usize> {
    diesel::update(sessions::table.find(id).filter(sessions::ended_us.is_null()))
        .set((sessions::ended_us.eq(now_us), sessions::end_reason.eq(reason)))
        .execute(conn)
}

/// An open session and its enabled user.
pub fn live_session(conn: &mut DbConn, sid: &str) -> QueryResult<Option<(SessionRow, UserRow)>> {
    sessions::table
        .inner_join(users::table.on(users::id.eq(sessions::user_id)))
        .filter(sessions::id.eq(sid))
        .filter(sessions::ended_us.is_null())
        .filter(users::disabled_us.is_null())
        .select((SessionRow::as_select(), UserRow::as_select()))
        .first(conn)
        .optional()
}

pub fn session(conn: &mut DbConn, sid: &str) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(sid)
        .select(SessionRow::as_select())
        .first(conn)
        .optional()
}

pub fn touch_session(conn: &mut DbConn, sid: &str, now_us: i64) -> QueryResult<usize> {
    diesel::update(sessions::table.find(sid))
        .set(sessions::last_seen_us.eq(now_us))
        .execute(conn)
}

pub fn insert_refresh(conn: &mut DbConn, row: &RefreshRow) -> QueryResult<usize> {
    diesel::insert_into(refresh_tokens::table)
        .values(row)
        .execute(conn)
}

pub fn find_refresh(conn: &mut DbConn, hash: &str) -> QueryResult<Option<RefreshRow>> {
    refresh_tokens::table
        .find(hash)
        .select(RefreshRow::as_select())
        .first(conn)
        .optional()
}

/// Marks a token used if it was not; 0 means someone used it first.
pub fn use_refresh(conn: &mut DbConn, hash: &str, now_us: i64) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .find(hash)
            .filter(refresh_tokens::used_us.is_null()),
    )
    .set(refresh_tokens::used_us.eq(now_us))
    .execute(conn)
}

// ---- devices ----

pub fn find_device(conn: &mut DbConn, device_id: &str, user_id: &str) -> QueryResult<Option<DeviceRow>> {
    devices::table
        .find((device_id, user_id))
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_device(conn: &mut DbConn, row: &DeviceRow) -> QueryResult<usize> {
    diesel::insert_into(devices::table).values(row).execute(conn)
}

/// A login on a known device: new name if given, seen now, no longer revoked.
pub fn relogin_device(
    conn: &mut DbConn,
    device_id: &str,
    user_id: &str,
    name: Option<&str>,
    now_us: i64,
) -> QueryResult<usize> {
    let target = devices::table.find((device_id, user_id));
    match name {
        Some(n) => diesel::update(target)
            .set((
                devices::name.eq(n),
                devices::last_seen_us.eq(now_us),
                devices::revoked_us.eq(None::<i64>),
            ))
            .execute(conn),
        None => diesel::update(target)
            .set((
                devices::last_seen_us.eq(now_us),
                devices::revoked_us.eq(None::<i64>),
            ))
            .execute(conn),
    }
}

pub fn touch_device(conn: &mut DbConn, device_id: &str, user_id: &str, now_us: i64) -> QueryResult<usize> {
    diesel::update(devices::table.find((device_id, user_id)))
        .set(devices::last_seen_us.eq(now_us))
        .execute(conn)
}

/// Devices of the given users, with each user's name, most recently seen first.
pub fn devices_of(conn: &mut DbConn, user_ids: &[String]) -> QueryResult<Vec<(DeviceRow, String)>> {
    devices::table
        .inner_join(users::table.on(users::id.eq(devices::user_id)))
        .filter(devices::user_id.eq_any(user_ids))
        .order(devices::last_seen_us.desc())
        .select((DeviceRow::as_select(), users::username))
        .load(conn)
}

/// The users who have used `device_id`.
pub fn users_of_device(conn: &mut DbConn, device_id: &str) -> QueryResult<Vec<String>> {
    devices::table
        .filter(devices::device_id.eq(device_id))
        .select(devices::user_id)
        .load(conn)
}

pub fn revoke_device(conn: &mut DbConn, device_id: &str, user_id: &str, now_us: i64) -> QueryResult<usize> {
    diesel::update(devices::table.find((device_id, user_id)))
        .set(devices::revoked_us.eq(now_us))
        .execute(conn)
}

// ---- audit ----

pub fn insert_audit(conn: &mut DbConn, row: &AuditRow) -> QueryResult<usize> {
    diesel::insert_into(audit_log::table).values(row).execute(conn)
}

/// Audit entries about the given users, or all entries when `subjects` is None; newest first.
pub fn audit_entries(
    conn: &mut DbConn,
    subjects: Option<&[String]>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    let query = audit_log::table
        .order(audit_log::at_us.desc())
        .limit(limit)
        .into_boxed();
    let query = match subjects {
        Some(ids) => query.filter(audit_log::subject_user_id.eq_any(ids.to_vec())),
        None => query,
    };
    query.select(AuditRow::as_select()).load(conn)
}
