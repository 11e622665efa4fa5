//! Sync (contract §6): push with per-field merge, the change feed behind pull, and conflicts.

pub mod conflicts;
pub mod merge;
pub mod pull;
pub mod push;
pub mod store;

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use hamlet_shared::ErrorDetail;
use hamlet_shared::sync::MutationResult;

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

/// What an idempotency record keeps of a result besides status and version.
pub(crate) fn outcome_json(result: &MutationResult) -> String {
    serde_json::json!({ "id": result.id, "conflicts": result.conflicts, "errors": result.errors }).to_string()
}

pub(crate) fn parse_outcome(text: &str) -> AppResult<(Option<String>, Vec<String>, Vec<ErrorDetail>)> {
    #[derive(serde::Deserialize)]
    struct Stored {
        id: Option<String>,
        conflicts: Vec<String>,
        errors: Vec<ErrorDetail>,
    }
    let s: Stored = serde_json::from_str(text)
        .map_err(|e| AppError::Internal(format!("unreadable stored outcome: {e}")))?;
    Ok((s.id, s.conflicts, s.errors))
}
