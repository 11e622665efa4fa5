//! The run's own corner of the map, made through the admin API: a fresh commune and villages,
//! one enumerator per village, one login (session) per simulated phone.

use crate::Args;
use hamlet_client::api::Api;
use hamlet_shared::{NewUnit, NewUser, Role, UnitId, UnitLevel, UserId};
use uuid::Uuid;

/// Logins run this many at a time: each costs the server an argon2 hash (19 MiB, on purpose).
const LOGIN_PARALLELISM: usize = 4;

pub struct Device {
    pub id: Uuid,
    /// Index into [`Site::villages`].
    pub village: usize,
    pub api: Api,
}

pub struct Site {
    pub admin: Api,
    pub commune: UnitId,
    pub villages: Vec<UnitId>,
    /// The team member of each village (all its phones log in as them), by village index.
    pub users: Vec<UserId>,
    pub devices: Vec<Device>,
}

fn api(args: &Args) -> Api {
    Api::new(&args.server).with_gzip_requests(args.gzip)
}

pub fn prepare(args: &Args, villages: usize) -> Result<Site, String> {
    let tokens = api(args)
        .login(
            &args.admin,
            &args.admin_password,
            Uuid::new_v4(),
            Some("hamlet-load"),
        )
        .map_err(|e| format!("admin login as {}: {e}", args.admin))?;
    let parent = match args.parent {
        Some(p) => UnitId::from(p),
        None => *tokens
            .user
            .scope
            .first()
            .ok_or("the admin has an empty scope: pass --parent")?,
    };
    let admin = api(args).with_token(tokens.access_token);
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let commune = admin
        .create_unit(&NewUnit {
            code: None,
            name: format!("Xã tải thử {run}"),
            level: UnitLevel::Commune,
            parent_id: parent,
        })
        .map_err(|e| format!("creating the run's commune under {parent}: {e}"))?
        .id;
    let mut village_ids = Vec::with_capacity(villages);
    let mut users = Vec::with_capacity(villages);
    let mut user_ids = Vec::with_capacity(villages);
    for i in 0..villages {
        let village = admin
            .create_unit(&NewUnit {
                code: None,
                name: format!("Thôn {} ({run})", i + 1),
                level: UnitLevel::Village,
                parent_id: commune,
            })
            .map_err(|e| format!("creating village {i}: {e}"))?
            .id;
        let username = format!("load-{run}-{i}");
        let password = Uuid::new_v4().simple().to_string();
        let user = admin
            .create_user(&NewUser {
                username: username.clone(),
                password: password.clone(),
                role: Role::Enumerator,
                scope: vec![village],
            })
            .map_err(|e| format!("creating user {username}: {e}"))?;
        user_ids.push(user.id);
        village_ids.push(village);
        users.push((username, password));
    }
    // Device d works in village d mod V: every village has devices / V phones.
    let mut devices = Vec::with_capacity(args.devices);
    let indices: Vec<usize> = (0..args.devices).collect();
    for chunk in indices.chunks(LOGIN_PARALLELISM) {
        let logged: Vec<Result<Device, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&d| {
                    let (user, password) = &users[d % villages];
                    s.spawn(move || {
                        let id = Uuid::new_v4();
                        let t = api(args)
                            .login(user, password, id, Some(&format!("load phone {d}")))
                            .map_err(|e| format!("device {d} login: {e}"))?;
                        Ok(Device {
                            id,
                            village: d % villages,
                            api: api(args).with_token(t.access_token),
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a login thread panicked".into())))
                .collect()
        });
        for d in logged {
            devices.push(d?);
        }
    }
    Ok(Site {
        admin,
        commune,
        villages: village_ids,
        users: user_ids,
        devices,
    })
}
