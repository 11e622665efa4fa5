//! Per-field merge of one mutation into one record. Pure: no I/O, no clock reads.
//!
//! Each field is a last-writer-wins register keyed by (HLC, mutation id). A write is
//! *sequential* when the phone had seen the field's current value (the field was last written at
//! or before the mutation's `base_version`): it applies. Otherwise it is *concurrent*: the later
//! clock wins, whichever arrives first, and the losing value is reported as a clash. Deletes
//! always win; a tombstone is restored only by an upsert whose base is the tombstone's version.

use hamlet_shared::records::{RecordType, default_value, missing_required_where};
use hamlet_shared::{ErrorCode, ErrorDetail, Hlc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// When and by which mutation a field was last written, and at which record version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldClock {
    #[serde(rename = "h", with = "hlc_text")]
    pub hlc: Hlc,
    #[serde(rename = "m")]
    pub mutation_id: i64,
    #[serde(rename = "v")]
    pub version: i64,
}

impl FieldClock {
    /// The total order of writes: clock first, then mutation id (a device's ids only grow).
    fn key(&self) -> (Hlc, i64) {
        (self.hlc, self.mutation_id)
    }

    fn later(self, other: FieldClock) -> FieldClock {
        if other.key() > self.key() { other } else { self }
    }
}

pub(crate) mod hlc_text {
    use hamlet_shared::Hlc;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Hlc, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(h)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hlc, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A record's field values by name. Names are the schema's own (`RecordType::fields`), so a
/// state is built and copied without allocating its keys.
pub type Fields = BTreeMap<&'static str, Value>;

/// Each field's clock, by the same names.
pub type Clocks = BTreeMap<&'static str, FieldClock>;

/// A record as the merge sees it: every field, each field's clock, version and tombstone flag.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordState {
    pub fields: Fields,
    pub clocks: Clocks,
    pub version: i64,
    pub deleted: bool,
}

/// One incoming write: validated fields and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub fields: &'a Fields,
    pub hlc: Hlc,
    pub mutation_id: i64,
    pub base_version: i64,
}

/// Two different values for one field from concurrent writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Clash {
    pub field: &'static str,
    pub winner: Value,
    pub winner_clock: FieldClock,
    pub loser: Value,
    pub loser_clock: FieldClock,
    /// Whether the mutation being merged is the one that lost.
    pub incoming_lost: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The mutation cannot apply at all (nothing to store but its rejection).
    Rejected(Vec<ErrorDetail>),
    /// At least part of the mutation applied. `changed`: a field or the tombstone changed, so the
    /// version went up; otherwise only clocks may have moved.
    Applied {
        state: RecordState,
        changed: bool,
        clashes: Vec<Clash>,
    },
    /// Every field lost (or the record stays deleted): nothing applied.
    Conflict { clashes: Vec<Clash> },
}

impl Outcome {
    /// Fields in which the incoming mutation lost.
    pub fn lost_fields(&self) -> Vec<String> {
        match self {
            Self::Applied { clashes, .. } | Self::Conflict { clashes } => clashes
                .iter()
                .filter(|c| c.incoming_lost)
                .map(|c| c.field.to_owned())
                .collect(),
            Self::Rejected(_) => Vec::new(),
        }
    }
}

/// Merges an upsert into the current record (None: the record does not exist yet).
pub fn merge_upsert(record_type: RecordType, current: Option<&RecordState>, w: Write<'_>) -> Outcome {
    let Some(cur) = current else {
        let missing = missing_required_where(record_type, |name| w.fields.contains_key(name));
        if !missing.is_empty() {
            return Outcome::Rejected(missing);
        }
        let mut fields = w.fields.clone();
        for spec in record_type.fields() {
            fields.entry(spec.name).or_insert_with(|| default_value(spec));
        }
        let clock = FieldClock {
            hlc: w.hlc,
            mutation_id: w.mutation_id,
            version: 1,
        };
        let clocks = fields.keys().map(|&f| (f, clock)).collect();
        return Outcome::Applied {
            state: RecordState {
                fields,
                clocks,
                version: 1,
                deleted: false,
            },
            changed: true,
            clashes: Vec::new(),
        };
    };
    let next = cur.version + 1;
    let incoming = FieldClock {
        hlc: w.hlc,
        mutation_id: w.mutation_id,
        version: next,
    };

    if cur.deleted {
        if w.base_version != cur.version {
            // Edited from a base older than the delete: the record stays deleted.
            let clashes = w
                .fields
                .iter()
                .map(|(f, v)| Clash {
                    field: f,
                    winner: cur.fields.get(f).cloned().unwrap_or(Value::Null),
                    winner_clock: cur.clocks.get(f).copied().unwrap_or(incoming),
                    loser: v.clone(),
                    loser_clock: incoming,
                    incoming_lost: true,
                })
                .collect();
            return Outcome::Conflict { clashes };
        }
        // The phone saw the delete: restore, its fields over the record's last ones.
        let mut state = cur.clone();
        for (f, v) in w.fields {
            let clock = cur.clocks.get(f).map_or(incoming, |c| c.later(incoming));
            state.fields.insert(*f, v.clone());
            state.clocks.insert(
                *f,
                FieldClock {
                    version: next,
                    ..clock
                },
            );
        }
        state.deleted = false;
        state.version = next;
        return Outcome::Applied {
            state,
            changed: true,
            clashes: Vec::new(),
        };
    }

    let mut state = cur.clone();
    let mut changed = false;
    let mut clashes = Vec::new();
    let mut lost = 0;
    for (f, v) in w.fields {
        let current_value = cur.fields.get(f).cloned().unwrap_or(Value::Null);
        let same = &current_value == v;
        let Some(&clock) = cur.clocks.get(f) else {
            state.fields.insert(*f, v.clone());
            state.clocks.insert(*f, incoming);
            changed = true;
            continue;
        };
        let newer = incoming.key() > clock.key();
        // A device's own writes never conflict with each other: the later one supersedes.
        let same_device = clock.hlc.node == incoming.hlc.node;
        let concurrent = clock.version > w.base_version && !(same_device && newer);
        if newer || !concurrent {
            // Applies: a newer write, or one made after seeing the field's current value. The
            // register's clock only moves forward, and any move makes a new version: a phone that
            // pulled it then edits sequentially, and an older write arriving later loses.
            if !same || newer {
                state.clocks.insert(
                    *f,
                    FieldClock {
                        version: next,
                        ..clock.later(incoming)
                    },
                );
                changed = true;
            }
            if !same {
                state.fields.insert(*f, v.clone());
                if concurrent {
                    clashes.push(Clash {
                        field: f,
                        winner: v.clone(),
                        winner_clock: incoming,
                        loser: current_value,
                        loser_clock: clock,
                        incoming_lost: false,
                    });
                }
            }
        } else if !same && !same_device {
            lost += 1;
            clashes.push(Clash {
                field: f,
                winner: current_value,
                winner_clock: clock,
                loser: v.clone(),
                loser_clock: incoming,
                incoming_lost: true,
            });
        }
    }
    if lost > 0 && lost == w.fields.len() {
        return Outcome::Conflict { clashes };
    }
    if changed {
        state.version = next;
    }
    Outcome::Applied {
        state,
        changed,
        clashes,
    }
}

/// Merges a delete. A delete of an unknown record is rejected; of a deleted one, a no-op.
pub fn merge_delete(current: Option<&RecordState>) -> Outcome {
    match current {
        None => Outcome::Rejected(vec![ErrorDetail::record(
            ErrorCode::NotFound,
            "no such record to delete",
        )]),
        Some(cur) if cur.deleted => Outcome::Applied {
            state: cur.clone(),
            changed: false,
            clashes: Vec::new(),
        },
        Some(cur) => {
            let mut state = cur.clone();
            state.deleted = true;
            state.version += 1;
            Outcome::Applied {
                state,
                changed: true,
                clashes: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn hlc(ms: i64, node: u128) -> Hlc {
        Hlc::new(1_763_600_000_000 + ms, 0, Uuid::from_u128(node))
    }

    /// A household's fields from a JSON object (every name must be a household field).
    fn obj(v: Value) -> Fields {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (RecordType::Household.spec(k).unwrap().name, v.clone()))
            .collect()
    }

    fn created() -> RecordState {
        let fields = obj(
            json!({ "village_id": "v", "head_name": "A", "address": null, "fixed_broadband": "unknown", "surveyed_on": null }),
        );
        let Outcome::Applied { state, .. } = merge_upsert(
            RecordType::Household,
            None,
            Write {
                fields: &fields,
                hlc: hlc(0, 1),
                mutation_id: 1,
                base_version: 0,
            },
        ) else {
            panic!()
        };
        state
    }

    fn upsert(cur: &RecordState, fields: Value, ms: i64, node: u128, base: i64) -> Outcome {
        let fields = obj(fields);
        merge_upsert(
            RecordType::Household,
            Some(cur),
            Write {
                fields: &fields,
                hlc: hlc(ms, node),
                mutation_id: ms,
                base_version: base,
            },
        )
    }

    fn applied(o: Outcome) -> RecordState {
        match o {
            Outcome::Applied { state, .. } => state,
            other => panic!("expected applied, got {other:?}"),
        }
    }

    #[test]
    fn create_needs_required_fields() {
        let fields = obj(json!({ "head_name": "A" }));
        let o = merge_upsert(
            RecordType::Household,
            None,
            Write {
                fields: &fields,
                hlc: hlc(0, 1),
                mutation_id: 1,
                base_version: 0,
            },
        );
        assert!(matches!(o, Outcome::Rejected(ref e) if e[0].field.as_deref() == Some("village_id")));
        let s = created();
        assert_eq!((s.version, s.deleted), (1, false));
        assert_eq!(s.fields["fixed_broadband"], "unknown");
    }

    #[test]
    fn different_fields_both_apply() {
        let s = created();
        let a = applied(upsert(&s, json!({ "head_name": "B" }), 10, 2, 1));
        let b = applied(upsert(&a, json!({ "address": "Xóm 3" }), 5, 3, 1));
        assert_eq!(
            (b.fields["head_name"].as_str(), b.fields["address"].as_str()),
            (Some("B"), Some("Xóm 3"))
        );
        assert_eq!(b.version, 3);
    }

    #[test]
    fn same_field_later_clock_wins_in_either_order() {
        let s = created();
        // Later clock first, then the earlier one: the earlier loses and is a conflict.
        let a = applied(upsert(&s, json!({ "head_name": "Later" }), 20, 2, 1));
        let o = upsert(&a, json!({ "head_name": "Earlier" }), 10, 3, 1);
        assert_eq!(o.lost_fields(), ["head_name"]);
        assert!(matches!(o, Outcome::Conflict { .. }));
        // Earlier first: the later one wins and the earlier value is reported as the loser.
        let b = applied(upsert(&s, json!({ "head_name": "Earlier" }), 10, 3, 1));
        let o = upsert(&b, json!({ "head_name": "Later" }), 20, 2, 1);
        let Outcome::Applied { state, clashes, .. } = o else {
            panic!()
        };
        assert_eq!(state.fields["head_name"], "Later");
        assert_eq!(clashes.len(), 1);
        assert_eq!(
            (clashes[0].loser.as_str(), clashes[0].incoming_lost),
            (Some("Earlier"), false)
        );
    }

    #[test]
    fn partial_loss_is_applied_with_conflicts() {
        let s = created();
        let a = applied(upsert(&s, json!({ "head_name": "Later" }), 20, 2, 1));
        let o = upsert(
            &a,
            json!({ "head_name": "Earlier", "address": "Xóm 1" }),
            10,
            3,
            1,
        );
        assert_eq!(o.lost_fields(), ["head_name"]);
        let state = applied(o);
        assert_eq!(
            (
                state.fields["head_name"].as_str(),
                state.fields["address"].as_str()
            ),
            (Some("Later"), Some("Xóm 1"))
        );
    }

    #[test]
    fn sequential_edit_applies_even_with_an_older_clock() {
        let s = created();
        let a = applied(upsert(&s, json!({ "head_name": "B" }), 20, 2, 1));
        // The phone saw version 2 (base 2), so its edit is sequential, not a conflict.
        let b = applied(upsert(&a, json!({ "head_name": "C" }), 10, 3, a.version));
        assert_eq!(b.fields["head_name"], "C");
    }

    #[test]
    fn an_older_write_after_a_same_value_newer_one_still_loses() {
        // Found by the convergence property: address is null at creation; a newer write of null
        // arrives first, then an older write of "Xóm 1". The newer write must win either way.
        let s = created();
        let newer_first = applied(upsert(&s, json!({ "address": null }), 20, 2, 1));
        let o = upsert(&newer_first, json!({ "address": "Xóm 1" }), 10, 3, 1);
        assert!(matches!(o, Outcome::Conflict { .. }), "{o:?}");
        let older_first = applied(upsert(&s, json!({ "address": "Xóm 1" }), 10, 3, 1));
        let end = applied(upsert(&older_first, json!({ "address": null }), 20, 2, 1));
        assert_eq!(end.fields["address"], Value::Null);
    }

    #[test]
    fn a_devices_own_writes_never_conflict() {
        // Created and then edited offline: both pushed with base 0 and 1 the same device.
        let s = created();
        let o = upsert(&s, json!({ "head_name": "Edited" }), 20, 1, 0);
        let Outcome::Applied { state, clashes, .. } = o else {
            panic!("{o:?}")
        };
        assert!(clashes.is_empty());
        assert_eq!(state.fields["head_name"], "Edited");
        // Its older write arriving late is superseded silently, not a conflict.
        let o = upsert(&state, json!({ "head_name": "Stale" }), 5, 1, 0);
        assert!(
            matches!(o, Outcome::Applied { changed: false, ref clashes, .. } if clashes.is_empty()),
            "{o:?}"
        );
    }

    #[test]
    fn a_clock_only_move_is_a_new_version() {
        let s = created();
        let o = upsert(&s, json!({ "head_name": "A" }), 20, 2, 1);
        let state = applied(o);
        assert_eq!(
            state.version, 2,
            "same value, newer clock: a version phones can base edits on"
        );
        // A phone that pulled version 2 edits with an older clock: sequential, it applies.
        let edited = applied(upsert(&state, json!({ "head_name": "B" }), 10, 3, 2));
        assert_eq!(edited.fields["head_name"], "B");
    }

    #[test]
    fn deletes_and_restores() {
        let s = created();
        let d = applied(merge_delete(Some(&s)));
        assert!(d.deleted);
        assert_eq!(d.version, 2);
        // Stale edit: conflict, stays deleted.
        let o = upsert(&d, json!({ "head_name": "X" }), 30, 2, 1);
        assert!(matches!(o, Outcome::Conflict { .. }));
        // The phone saw the delete: restore, fields over the last ones.
        let r = applied(upsert(&d, json!({ "address": "Xóm 9" }), 30, 2, d.version));
        assert!(!r.deleted);
        assert_eq!(
            (
                r.fields["head_name"].as_str(),
                r.fields["address"].as_str(),
                r.version
            ),
            (Some("A"), Some("Xóm 9"), 3)
        );
        // Deleting twice changes nothing; deleting the unknown is rejected.
        assert!(matches!(
            merge_delete(Some(&d)),
            Outcome::Applied { changed: false, .. }
        ));
        assert!(matches!(merge_delete(None), Outcome::Rejected(_)));
    }

    #[test]
    fn clocks_roundtrip_as_json() {
        let s = created();
        let text = serde_json::to_string(&s.clocks).unwrap();
        let back: BTreeMap<String, FieldClock> = serde_json::from_str(&text).unwrap();
        let expected: BTreeMap<String, FieldClock> =
            s.clocks.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        assert_eq!(back, expected);
    }

    mod convergence {
        //! Any interleaving and duplication of the same mutations converges to the same record.
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashSet;

        #[derive(Debug, Clone)]
        struct Mutation {
            device: u128,
            mutation_id: i64,
            wall: i64,
            delete: bool,
            fields: Fields,
        }

        fn field_edit() -> impl Strategy<Value = (&'static str, Value)> {
            prop_oneof![
                prop::sample::select(vec!["A", "B", "C"]).prop_map(|v| ("head_name", json!(v))),
                prop::sample::select(vec![json!("Xóm 1"), json!("Xóm 2"), Value::Null])
                    .prop_map(|v| ("address", v)),
                prop::sample::select(vec!["yes", "no", "unknown"])
                    .prop_map(|v| ("fixed_broadband", json!(v))),
            ]
        }

        /// Up to 4 devices with up to 4 mutations each, all made from the record's first version.
        fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
            prop::collection::vec(
                prop::collection::vec(
                    (
                        1i64..50,
                        prop::bool::weighted(0.1),
                        prop::collection::vec(field_edit(), 1..3),
                    ),
                    1..5,
                ),
                1..5,
            )
            .prop_map(|devices| {
                let mut out = Vec::new();
                for (d, list) in devices.into_iter().enumerate() {
                    for (i, (wall, delete, edits)) in list.into_iter().enumerate() {
                        out.push(Mutation {
                            device: d as u128 + 10,
                            mutation_id: i as i64 + 1,
                            wall: wall * 10 + i as i64,
                            delete,
                            fields: edits.into_iter().collect(),
                        });
                    }
                }
                out
            })
        }

        /// Applies mutations in the given order, skipping replays as the idempotency table does.
        fn replay(order: &[Mutation]) -> RecordState {
            let mut state = created();
            let mut seen = HashSet::new();
            for m in order {
                if !seen.insert((m.device, m.mutation_id)) {
                    continue;
                }
                let outcome = if m.delete {
                    merge_delete(Some(&state))
                } else {
                    let w = Write {
                        fields: &m.fields,
                        hlc: hlc(m.wall, m.device),
                        mutation_id: m.mutation_id,
                        base_version: 1,
                    };
                    merge_upsert(RecordType::Household, Some(&state), w)
                };
                if let Outcome::Applied { state: next, .. } = outcome {
                    assert!(next.version >= state.version, "versions never go down");
                    state = next;
                }
            }
            state
        }

        /// What a phone can observe: deleted or not, and the fields of a live record.
        fn visible(s: &RecordState) -> (bool, Option<Fields>) {
            (s.deleted, (!s.deleted).then(|| s.fields.clone()))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn any_order_with_duplicates_converges(
                ms in mutations(),
                seed_a in any::<u64>(),
                seed_b in any::<u64>(),
                dup_a in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
                dup_b in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let shuffled = |seed: u64, dups: &[prop::sample::Index]| {
                    let mut v = ms.clone();
                    v.extend(dups.iter().map(|i| ms[i.index(ms.len())].clone()));
                    // Fisher-Yates with a small LCG: deterministic per seed.
                    let mut x = seed | 1;
                    for i in (1..v.len()).rev() {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        v.swap(i, (x >> 33) as usize % (i + 1));
                    }
                    v
                };
                let a = replay(&shuffled(seed_a, &dup_a));
                let b = replay(&shuffled(seed_b, &dup_b));
                prop_assert_eq!(visible(&a), visible(&b));
            }
        }
    }
}
