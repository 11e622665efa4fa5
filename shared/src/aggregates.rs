//! Aggregates on the wire (CONTRACT.md §7).

use crate::{UnitId, UnitLevel};
use serde::{Deserialize, Serialize};

/// The indicator keys, in the order responses list them.
pub const INDICATOR_KEYS: [&str; 9] = [
    "population_with_smartphone",
    "households_with_smartphone",
    "adults_with_transaction_account",
    "adults_with_smartphone",
    "adults_with_vneid_level2",
    "adults_using_online_public_services",
    "adults_using_cashless_payment",
    "adults_with_digital_signature",
    "households_with_fixed_broadband",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitRef {
    pub id: UnitId,
    pub name: String,
    pub level: UnitLevel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Indicator {
    pub key: String,
    pub numerator: i64,
    pub denominator: i64,
    /// Rows left out of the denominator for an unknown answer.
    pub unknown: i64,
    /// numerator / denominator, unrounded; null when the denominator is 0 (or the cell is suppressed).
    pub ratio: Option<f64>,
}

/// `GET /api/v1/aggregates/{unit_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Aggregate {
    pub unit: UnitRef,
    /// The date whose tree the figures are grouped by (YYYY-MM-DD).
    pub as_of: String,
    /// Ages are `reference_year - birth_year`.
    pub reference_year: i32,
    /// Members at least this old count as adults.
    pub adult_age: i32,
    pub households: i64,
    pub members: i64,
    pub indicators: Vec<Indicator>,
    /// True when ratios are withheld because the unit has too few households (viewers only).
    pub suppressed: bool,
}

/// `GET /api/v1/aggregates/{unit_id}/children`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildAggregates {
    pub unit: UnitRef,
    pub children: Vec<Aggregate>,
}
