//! Admission control for the sync routes. At most as many pushes and pulls are worked on at
//! once as the process has database connections; the others wait *before their bodies are read*,
//! so memory stays bounded however many phones reach coverage at the same minute. Waiting is
//! first come, first served; a request not admitted within [`QUEUE_WAIT`] gets 503
//! `unavailable` with `Retry-After`.

use crate::error::AppError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a sync request may queue for admission. Long enough for 256 phones behind one
/// process (a push takes a few hundred ms), short of a phone's request timeout.
pub const QUEUE_WAIT: Duration = Duration::from_secs(30);

/// The gate shared by one process's workers.
#[derive(Clone)]
pub struct SyncGate {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl SyncGate {
    pub fn new(permits: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            wait,
        }
    }
}

pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let gate = req
        .path()
        .starts_with("/api/v1/sync/")
        .then(|| req.app_data::<web::Data<SyncGate>>().cloned())
        .flatten();
    let _permit = match gate {
        Some(gate) => {
            let busy = || AppError::Contention("too many syncs at once".to_owned());
            match actix_web::rt::time::timeout(gate.wait, gate.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => return Err(busy().into()),
            }
        }
        None => None,
    };
    next.call(req).await
}
