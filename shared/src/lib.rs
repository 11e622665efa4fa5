//! Protocol types shared by the Hamlet server and its clients.
//!
//! Nothing here knows about HTTP frameworks or databases: the server and the reference client
//! both depend on this crate, so the wire format cannot drift between them.

pub mod aggregates;
pub mod auth;
pub mod error;
pub mod hlc;
pub mod ids;
pub mod records;
pub mod sync;
pub mod units;

pub use auth::{
    AuditEntry, AuditList, DeviceInfo, DeviceList, LoginRequest, NewUser, RefreshRequest, Role,
    TokenResponse, UserInfo, Username,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, ErrorPayload};
pub use hlc::Hlc;
pub use ids::{UnitId, UserId};
pub use records::{RecordType, Tri};
pub use units::{
    MergeUnits, MoveUnit, NewUnit, PathEntry, ReorgReport, Unit, UnitCode, UnitLevel, UnitList, UnitName,
    UnitWithPath,
};

/// Body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` when the process serves requests.
    pub status: String,
    /// `ok` when the database answered, `unavailable` otherwise.
    pub database: String,
}
