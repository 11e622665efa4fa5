//! Conflicts kept for review: listing and resolving (admins, in scope). A resolution is a new
//! version of the record, which phones pull like any other change.

use super::merge::FieldClock;
use super::push::Batch;
use super::{Ctx, store};
use crate::auth::{Action, Principal, authorize};
use crate::clock::rfc3339;
use crate::db::sync::ConflictRow;
use crate::db::{self, DbConn};
use crate::error::{AppError, AppResult};
use hamlet_shared::records::validate_value;
use hamlet_shared::sync::{Choice, ConflictInfo, ResolveRequest};
use hamlet_shared::{ErrorCode, ErrorDetail, Hlc, RecordType, UnitId};
use serde_json::Value;

pub const MAX_LIST: i64 = 1000;

fn info(row: ConflictRow) -> AppResult<ConflictInfo> {
    let bad = |what: &str| AppError::Internal(format!("conflict {} has a bad {what}", row.id));
    Ok(ConflictInfo {
        record_type: row.record_type.parse().map_err(|_| bad("type"))?,
        record_id: row.record_id.parse().map_err(|_| bad("record id"))?,
        village_id: row.village_id.parse().map_err(|_| bad("village id"))?,
        current_value: serde_json::from_str(&row.current_value).map_err(|_| bad("current value"))?,
        incoming_value: serde_json::from_str(&row.incoming_value).map_err(|_| bad("incoming value"))?,
        device_id: row.device_id.parse().map_err(|_| bad("device id"))?,
        created_at: rfc3339(row.created_us),
        resolved: row.resolved_us.is_some(),
        id: row.id,
        field: row.field,
        current_hlc: row.current_hlc,
        incoming_hlc: row.incoming_hlc,
    })
}

/// Conflicts under `unit` (default: every unit of the caller's scope), newest first.
pub fn list(
    conn: &mut DbConn,
    principal: &Principal,
    unit: Option<UnitId>,
    resolved: Option<bool>,
    limit: i64,
) -> AppResult<Vec<ConflictInfo>> {
    let units = match unit {
        Some(u) => {
            crate::units::get(conn, u)?;
            vec![u]
        }
        None => principal.scope.clone(),
    };
    let mut rows = Vec::new();
    for u in &units {
        authorize(conn, principal, Action::ManageConflicts(*u))?;
        rows.extend(db::sync::conflicts_under(conn, &u.to_string(), resolved, limit)?);
    }
    rows.sort_by(|a, b| (b.created_us, &b.id).cmp(&(a.created_us, &a.id)));
    rows.dedup_by(|a, b| a.id == b.id);
    rows.truncate(limit as usize);
    rows.into_iter().map(info).collect()
}

/// Resolves a conflict: keep the current value, take the incoming one, or set another value.
pub fn resolve(conn: &mut DbConn, ctx: &Ctx, id: &str, req: &ResolveRequest) -> AppResult<ConflictInfo> {
    crate::db::tx::write(conn, |conn| {
        let row =
            db::sync::conflict(conn, id)?.ok_or_else(|| AppError::not_found(format!("conflict {id}")))?;
        let village: UnitId = row
            .village_id
            .parse()
            .map_err(|_| AppError::Internal("bad village id".into()))?;
        authorize(conn, &ctx.principal, Action::ManageConflicts(village))?;
        if row.resolved_us.is_some() {
            return Err(AppError::Conflict("this conflict is already resolved".to_owned()));
        }
        let record_type: RecordType = row.record_type.parse().map_err(AppError::Internal)?;
        let record = store::load(conn, record_type, &row.record_id)?
            .ok_or_else(|| AppError::Internal(format!("conflict {id} names a missing record")))?;
        let spec = record_type
            .spec(&row.field)
            .ok_or_else(|| AppError::Internal("conflict on an unknown field".into()))?;
        let value = match (req.choose, &req.value) {
            (Choice::Current, _) => None,
            (Choice::Incoming, _) => Some(
                serde_json::from_str::<Value>(&row.incoming_value)
                    .map_err(|_| AppError::Internal("bad incoming value".into()))?,
            ),
            (Choice::Value, Some(v)) => {
                Some(validate_value(spec, v, ctx.current_year).map_err(AppError::invalid)?)
            }
            (Choice::Value, None) => {
                return Err(AppError::invalid(ErrorDetail::field(
                    "value",
                    ErrorCode::Required,
                    "choose \"value\" needs a value",
                )));
            }
        };
        let mut batch = Batch::new(ctx);
        let waiting_member = record_type == RecordType::Member && record.village.is_none();
        if waiting_member {
            // A member whose household lies outside its pusher's scope: attaching it is the choice.
            match req.choose {
                Choice::Current => {}
                Choice::Incoming => {
                    let mut state = record.state.clone();
                    state.version += 1;
                    batch.apply(conn, record_type, record.id.clone(), Some(record), state, true)?;
                }
                Choice::Value => {
                    return Err(AppError::invalid(ErrorDetail::field(
                        "choose",
                        ErrorCode::InvalidValue,
                        "a member waiting for its household is attached (incoming) or left waiting (current)",
                    )));
                }
            }
        } else {
            if record.state.deleted && value.is_some() {
                return Err(AppError::Conflict(
                    "the record is deleted; restore it before changing its values".into(),
                ));
            }
            match (&value, row.field.as_str()) {
                (Some(v), "village_id") => {
                    let target = v.as_str().unwrap_or_default().to_owned();
                    if !batch.is_village(conn, &target)? || !batch.covers(conn, &target)? {
                        return Err(AppError::Forbidden(
                            "the chosen village is not a village in your scope".into(),
                        ));
                    }
                }
                (Some(v), "household_id") => {
                    // The member follows its household: that household must be in the admin's scope.
                    if let Some(h) = db::records::household(conn, v.as_str().unwrap_or_default(), false)?
                        && !batch.covers(conn, &h.village_id)?
                    {
                        return Err(AppError::Forbidden(
                            "the chosen household is outside your scope".into(),
                        ));
                    }
                }
                _ => {}
            }
            let mut state = record.state.clone();
            state.version += 1;
            if let Some(v) = value {
                let resolution = FieldClock {
                    hlc: Hlc::new(ctx.now_us / 1000, 0, ctx.principal.device_id),
                    mutation_id: 0,
                    version: state.version,
                };
                let clock = state.clocks.get(spec.name).map_or(resolution, |c| {
                    let later = if (resolution.hlc, 0) > (c.hlc, c.mutation_id) {
                        resolution
                    } else {
                        *c
                    };
                    FieldClock {
                        version: state.version,
                        ..later
                    }
                });
                state.fields.insert(spec.name, v);
                state.clocks.insert(spec.name, clock);
            }
            batch.apply(conn, record_type, record.id.clone(), Some(record), state, true)?;
        }
        batch.flush(conn)?;
        db::sync::mark_resolved(conn, id, &ctx.principal.user_id.to_string(), ctx.now_us)?;
        let row =
            db::sync::conflict(conn, id)?.ok_or_else(|| AppError::Internal("conflict vanished".into()))?;
        info(row)
    })
}
