//! Admission control for the sync routes. At most as many pushes and pulls are worked on at
//! once as the process has database connections; the others wait *before their bodies are read*,
//! so memory stays bounded however many phones reach coverage at the same minute. Waiting is
//! first come, first served; a request not admitted within [`QUEUE_WAIT`] gets 503
//! `unavailable` with `Retry-After`.

use crate::error::AppError;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use actix_web::web::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let gate = req
        .path()
        .starts_with("/api/v1/sync/")
        .then(|| req.app_data::<web::Data<SyncGate>>().cloned())
        .flatten();
    let permit = match gate {
        Some(gate) => {
            let busy = || AppError::Contention("too many syncs at once".to_owned());
            match actix_web::rt::time::timeout(gate.wait, gate.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => return Err(busy().into()),
            }
        }
        None => None,
    };
    // The permit is held until the body has been handed on (to the compressor, outside this
    // middleware): a pull page is megabytes of JSON until then, and releasing the permit when
    // the handler returns let every phone's page sit in memory at once behind slow sockets.
    let res = next.call(req).await?;
    Ok(res.map_body(|_, body| Held {
        body: body.boxed(),
        permit,
    }))
}

/// A response body that keeps its sync permit until the body is fully read or dropped.
struct Held {
    body: BoxBody,
    permit: Option<OwnedSemaphorePermit>,
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(None) = next {
            this.permit = None;
        }
        next
    }
}
