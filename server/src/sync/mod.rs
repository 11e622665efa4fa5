//! Sync (contract §6): push with per-field merge, the change feed behind pull, and conflicts.

pub mod conflicts;
pub mod merge;
pub mod pull;
pub mod push;
pub mod store;

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use hamlet_shared::ErrorDetail;
use hamlet_shared::sync::{MutationResult, MutationStatus};

/// Sync limits and clock rules.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct SyncSettings {
    /// Most mutations one push may carry.
    #[arg(long = "max-mutations", env = "HAMLET_MAX_MUTATIONS", default_value_t = hamlet_shared::sync::MAX_MUTATIONS)]
    pub max_mutations: usize,
    /// A clock further ahead of the server's than this (seconds) is clamped to it.
    #[arg(
        long = "max-clock-skew-secs",
        env = "HAMLET_MAX_CLOCK_SKEW_SECS",
        default_value_t = 300
    )]
    pub max_clock_skew_secs: i64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            max_mutations: hamlet_shared::sync::MAX_MUTATIONS,
            max_clock_skew_secs: 300,
        }
    }
}

/// Who pushes, and the server's clock for the whole request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    pub now_us: i64,
    /// Clocks whose wall time is beyond this are clamped to it.
    pub max_wall_ms: i64,
    /// Birth years run up to this (UTC).
    pub current_year: i32,
}

/// Change feed rows for `changes` (village, record type, id), in the order they happened: one
/// row per village and record type, each record listed once, at its last change.
pub(crate) fn feed_rows(
    changes: &[(String, hamlet_shared::RecordType, String)],
    now_us: i64,
) -> Vec<crate::db::sync::NewChange> {
    use foldhash::{HashMap, HashMapExt};
    // Keyed by record ids: foldhash, as the push's other per-request maps (SipHash was most of
    // this function's instructions).
    let mut last: HashMap<&(String, hamlet_shared::RecordType, String), usize> =
        HashMap::with_capacity(changes.len());
    for (i, c) in changes.iter().enumerate() {
        last.insert(c, i);
    }
    let mut rows: Vec<crate::db::sync::NewChange> = Vec::new();
    let mut row_of: HashMap<(&str, hamlet_shared::RecordType), usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if last[c] != i {
            continue;
        }
        let (village, record_type, id) = c;
        let at = *row_of.entry((village.as_str(), *record_type)).or_insert_with(|| {
            rows.push(crate::db::sync::NewChange {
                village_id: village.clone(),
                record_type: record_type.as_str().to_owned(),
                record_ids: String::new(),
                created_us: now_us,
            });
            rows.len() - 1
        });
        let ids = &mut rows[at].record_ids;
        if !ids.is_empty() {
            ids.push(',');
        }
        ids.push_str(id);
    }
    rows
}

/// A mutation's first answer as its idempotency record keeps it: one element of a push's
/// `sync_batches.results`. Short keys: a push stores up to a thousand of them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredResult {
    #[serde(rename = "m")]
    pub mutation_id: i64,
    #[serde(rename = "s")]
    pub status: String,
    #[serde(rename = "v")]
    pub version: Option<i64>,
    #[serde(rename = "o")]
    pub outcome: StoredOutcome,
}

/// What a stored answer keeps besides status and version. Empty lists are left out (a plain
/// answer is a fifth shorter); every binary reads them back as empty.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredOutcome {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorDetail>,
}

impl StoredResult {
    pub fn of(result: &MutationResult) -> Self {
        Self {
            mutation_id: result.mutation_id,
            status: result.status.as_str().to_owned(),
            version: result.version,
            outcome: StoredOutcome {
                id: result.id.clone(),
                conflicts: result.conflicts.clone(),
                errors: result.errors.clone(),
            },
        }
    }

    /// The first answer, replayed.
    pub fn replay(self) -> MutationResult {
        MutationResult {
            mutation_id: self.mutation_id,
            id: self.outcome.id,
            status: MutationStatus::Duplicate,
            version: self.version,
            conflicts: self.outcome.conflicts,
            errors: self.outcome.errors,
            original_status: MutationStatus::parse(&self.status),
        }
    }

    pub fn encode_all(results: &[StoredResult]) -> AppResult<String> {
        serde_json::to_string(results)
            .map_err(|e| AppError::Internal(format!("cannot store push results: {e}")))
    }

    pub fn decode_all(text: &str) -> AppResult<Vec<StoredResult>> {
        serde_json::from_str(text)
            .map_err(|e| AppError::Internal(format!("unreadable stored push results: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> StoredResult {
        StoredResult {
            mutation_id: 7,
            status: "applied".to_owned(),
            version: Some(2),
            outcome: StoredOutcome {
                id: Some("0190a0e0-0000-7000-8000-000000000001".to_owned()),
                ..StoredOutcome::default()
            },
        }
    }

    #[test]
    fn a_plain_answer_is_stored_without_its_empty_lists_and_reads_back() {
        let text = StoredResult::encode_all(&[plain()]).unwrap();
        assert_eq!(
            text,
            r#"[{"m":7,"s":"applied","v":2,"o":{"id":"0190a0e0-0000-7000-8000-000000000001"}}]"#
        );
        assert_eq!(StoredResult::decode_all(&text).unwrap(), vec![plain()]);
        // Rows written before, with the empty lists, read the same.
        let old = r#"[{"m":7,"s":"applied","v":2,"o":{"id":"0190a0e0-0000-7000-8000-000000000001","conflicts":[],"errors":[]}}]"#;
        assert_eq!(StoredResult::decode_all(old).unwrap(), vec![plain()]);
        // Lists that are not empty are kept.
        let mut clashed = plain();
        clashed.outcome.conflicts = vec!["head_name".to_owned()];
        let text = StoredResult::encode_all(std::slice::from_ref(&clashed)).unwrap();
        assert!(text.contains(r#""conflicts":["head_name"]"#), "{text}");
        assert_eq!(StoredResult::decode_all(&text).unwrap(), vec![clashed]);
    }
}
