//! Team activity under a unit: the devices of the users an admin manages there, when each last
//! synced, and the villages no phone has synced for some days (the dashboard's "team activity").

use super::Principal;
use super::authz::{Action, authorize};
use super::service::{list_devices_of, users_covered_by};
use crate::db::{self, DbConn};
use crate::error::AppResult;
use crate::units::unit_from_row;
use hamlet_shared::{DeviceInfo, Role, Unit, UnitId, UnitLevel};
use std::collections::{HashMap, HashSet};

/// One device with the villages its user's scope covers under the unit.
#[derive(Debug, Clone)]
pub struct DeviceActivity {
    pub device: DeviceInfo,
    pub last_sync_us: Option<i64>,
    /// Names of the user's scope units (as assigned, any level).
    pub scope_names: Vec<String>,
    /// A phone of an enumerator that has not synced within the window (and is not revoked).
    pub stale: bool,
}

/// A village and the most recent sync of any enumerator's phone whose scope covers it.
#[derive(Debug, Clone)]
pub struct VillageActivity {
    pub village: Unit,
    pub last_sync_us: Option<i64>,
    pub devices: usize,
}

#[derive(Debug, Clone)]
pub struct TeamActivity {
    /// Stalest first (never synced, then oldest sync).
    pub devices: Vec<DeviceActivity>,
    /// Villages with no sync since the cut-off, stalest first.
    pub stale_villages: Vec<VillageActivity>,
    pub villages_total: usize,
}

/// Team activity under `unit` for an admin whose scope covers it. `stale_before_us`: a sync
/// older than this (or none) is stale.
pub fn team_activity(
    conn: &mut DbConn,
    principal: &Principal,
    unit: UnitId,
    stale_before_us: i64,
) -> AppResult<TeamActivity> {
    crate::units::get(conn, unit)?;
    authorize(conn, principal, Action::ManageUser { scope: &[unit] })?;
    let users = users_covered_by(conn, &[unit])?;
    let rows = db::auth::devices_of(conn, &users)?;
    // Only enumerators' phones sync; an admin's or viewer's browser never does.
    let enumerators: HashSet<String> = db::auth::roles_of(conn, &users)?
        .into_iter()
        .filter(|(_, role)| role == Role::Enumerator.as_str())
        .map(|(id, _)| id)
        .collect();
    let scope_rows = db::auth::scope_rows_touching(conn, &[unit.to_string()])?;
    let mut scope_of: HashMap<String, Vec<String>> = HashMap::new();
    for (user, u) in scope_rows {
        scope_of.entry(user).or_default().push(u);
    }
    let scope_units: Vec<String> = scope_of
        .values()
        .flatten()
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let names: HashMap<String, String> = db::units::find_many(conn, &scope_units)?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();

    let villages: Vec<Unit> = db::units::subtree(conn, &unit.to_string())?
        .into_iter()
        .filter(|u| u.level == UnitLevel::Village.as_str() && u.retired_us.is_none())
        .map(unit_from_row)
        .collect::<AppResult<_>>()?;
    let village_ids: Vec<String> = villages.iter().map(|v| v.id.to_string()).collect();
    // Which villages each scope unit covers.
    let mut villages_under: HashMap<String, Vec<String>> = HashMap::new();
    for row in db::units::ancestors_of(conn, &village_ids)? {
        villages_under
            .entry(row.ancestor_id)
            .or_default()
            .push(row.descendant_id);
    }

    let last_sync_of: HashMap<(String, String), Option<i64>> = rows
        .iter()
        .map(|(d, _)| ((d.device_id.clone(), d.user_id.clone()), d.last_sync_us))
        .collect();
    let infos = list_devices_of(rows)?;
    let mut latest: HashMap<String, (Option<i64>, usize)> = HashMap::new();
    let mut devices = Vec::with_capacity(infos.len());
    for info in infos {
        let user = info.user_id.to_string();
        let last_sync_us = last_sync_of
            .get(&(info.device_id.to_string(), user.clone()))
            .copied()
            .flatten();
        let scope = scope_of.get(&user).cloned().unwrap_or_default();
        let phone = enumerators.contains(&user) && !info.revoked;
        if phone {
            for v in scope
                .iter()
                .flat_map(|s| villages_under.get(s).into_iter().flatten())
            {
                let e = latest.entry(v.clone()).or_insert((None, 0));
                e.0 = e.0.max(last_sync_us);
                e.1 += 1;
            }
        }
        let mut scope_names: Vec<String> = scope.iter().filter_map(|s| names.get(s).cloned()).collect();
        scope_names.sort();
        devices.push(DeviceActivity {
            stale: phone && last_sync_us.is_none_or(|t| t < stale_before_us),
            device: info,
            last_sync_us,
            scope_names,
        });
    }
    devices.sort_by_key(|d| (d.device.revoked, d.last_sync_us, d.device.username.clone()));
    let villages_total = villages.len();
    let mut stale_villages: Vec<VillageActivity> = villages
        .into_iter()
        .filter_map(|v| {
            let (last_sync_us, devices) = latest.get(&v.id.to_string()).copied().unwrap_or((None, 0));
            last_sync_us
                .is_none_or(|t| t < stale_before_us)
                .then_some(VillageActivity {
                    village: v,
                    last_sync_us,
                    devices,
                })
        })
        .collect();
    stale_villages.sort_by(|a, b| (a.last_sync_us, &a.village.name).cmp(&(b.last_sync_us, &b.village.name)));
    Ok(TeamActivity {
        devices,
        stale_villages,
        villages_total,
    })
}
