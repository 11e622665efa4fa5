//! What the user sees: each record's server copy with its pending local edits on top.
//! Rejected edits are not shown on records (the server will never apply them); `status` lists
//! them instead.

use crate::error::Result;
use crate::outbox::{self, OutboxEntry};
use crate::store::{ServerCopy, server_copies};
use diesel::sqlite::SqliteConnection;
use hamlet_shared::records::{RecordType, with_defaults};
use hamlet_shared::sync::Op;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// One record as this device shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LocalRecord {
    #[serde(rename = "type")]
    pub record_type: RecordType,
    pub id: Uuid,
    /// The server copy's version; 0 when the server has not sent this record yet.
    pub version: i64,
    pub deleted: bool,
    /// The whole record when live; the placement only for a pulled tombstone.
    pub fields: Map<String, Value>,
    /// Local edits of this record not yet acknowledged by the server.
    pub pending: usize,
}

impl From<ServerCopy> for LocalRecord {
    fn from(s: ServerCopy) -> Self {
        Self {
            record_type: s.record_type,
            id: s.id,
            version: s.version,
            deleted: s.deleted,
            fields: s.fields,
            pending: 0,
        }
    }
}

/// The local records, of one record or of all, sorted by type and id.
pub(crate) fn local_records(
    c: &mut SqliteConnection,
    only: Option<(RecordType, Uuid)>,
) -> Result<Vec<LocalRecord>> {
    let copies = server_copies(c, only)?;
    let pending: Vec<OutboxEntry> = match only {
        Some((t, id)) => outbox::pending_of(c, t, id)?,
        None => outbox::entries(c, false)?,
    };
    let mut out: BTreeMap<(RecordType, Uuid), (LocalRecord, bool)> = copies
        .into_iter()
        .map(|s| ((s.record_type, s.id), (LocalRecord::from(s), true)))
        .collect();
    for e in pending {
        let (rec, _) = out.entry((e.record_type, e.record_id)).or_insert_with(|| {
            let blank = LocalRecord {
                record_type: e.record_type,
                id: e.record_id,
                version: 0,
                deleted: false,
                fields: Map::new(),
                pending: 0,
            };
            (blank, false)
        });
        rec.pending += 1;
        match e.op {
            Op::Upsert => {
                rec.deleted = false;
                rec.fields.extend(e.fields);
            }
            Op::Delete => rec.deleted = true,
        }
    }
    Ok(out
        .into_values()
        .map(|(mut rec, from_server)| {
            // A record only this device has: show every field, as a pulled one would.
            if !from_server && !rec.deleted {
                rec.fields = with_defaults(rec.record_type, &rec.fields);
            }
            rec
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Edit, enqueue};
    use crate::store::{Store, apply_change};
    use hamlet_shared::sync::Change;
    use serde_json::json;

    #[test]
    fn pending_edits_show_on_top_of_server_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let (h, new) = (Uuid::now_v7(), Uuid::now_v7());
        let fields = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let change = |version, deleted, f| Change {
            record_type: RecordType::Household,
            id: h,
            version,
            deleted,
            fields: fields(f),
        };
        s.write(|c| {
            apply_change(
                c,
                &change(2, false, json!({"head_name": "Server", "address": null})),
            )
        })
        .unwrap();
        // An older version arriving late changes nothing.
        assert!(
            !s.write(|c| apply_change(c, &change(1, false, json!({"head_name": "Old"}))))
                .unwrap()
        );
        let up = |id, f| Edit {
            record_type: RecordType::Household,
            id,
            op: Op::Upsert,
            base_version: 0,
            fields: fields(f),
        };
        s.write(|c| enqueue(c, up(h, json!({"address": "Local"})), 1))
            .unwrap();
        s.write(|c| enqueue(c, up(new, json!({"head_name": "New", "village_id": "v"})), 1))
            .unwrap();
        let view = s.read(|c| local_records(c, None)).unwrap();
        let shown = |id| view.iter().find(|r| r.id == id).cloned().unwrap();
        let hh = shown(h);
        assert_eq!((hh.version, hh.pending), (2, 1));
        assert_eq!(
            (hh.fields["head_name"].clone(), hh.fields["address"].clone()),
            (json!("Server"), json!("Local"))
        );
        let n = shown(new);
        assert_eq!(n.version, 0);
        assert_eq!(
            n.fields["fixed_broadband"], "unknown",
            "defaults fill a local-only record"
        );

        // A pulled tombstone keeps only the placement.
        s.write(|c| apply_change(c, &change(3, true, json!({"village_id": "v"}))))
            .unwrap();
        let copy = s
            .server_copies()
            .unwrap()
            .into_iter()
            .find(|r| r.id == h)
            .unwrap();
        assert_eq!((copy.deleted, copy.fields.len()), (true, 1));
    }
}
