//! Retries with exponential backoff and full jitter (docs/sync-protocol.md §7).
//!
//! Only what is safe to send again is retried: pushes are idempotent by mutation id and pulls
//! only read. A `Retry-After` from the server is honoured as the least wait.

use crate::error::{Error, Result};
use std::time::Duration;

/// How often and how patiently to resend a request that got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The backoff unit: attempt `n` waits a random time in `[0, min(cap, base × 2^n)]`.
    pub base: Duration,
    /// The longest wait, `Retry-After` included.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

/// One retry about to happen, for progress messages.
#[derive(Debug)]
pub struct RetryEvent<'a> {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    pub wait: Duration,
    pub error: &'a Error,
}

/// A uniform random fraction in [0, 1). uuid's v4 generator is the random source, so jitter
/// needs no extra crate.
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (0-based), given the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.cap);
        match retry_after {
            // The server's wait, plus a little jitter so that phones told the same number of
            // seconds do not all come back in the same instant.
            Some(ra) => (ra + self.base.mul_f64(random_unit())).min(self.cap.max(ra)),
            None => exp.mul_f64(random_unit()),
        }
    }

    /// Runs `call` until it succeeds, fails for good, or the attempts run out.
    pub fn run<T>(&self, mut call: impl FnMut() -> Result<T>, notify: &dyn Fn(&RetryEvent)) -> Result<T> {
        let mut attempt = 0;
        loop {
            let err = match call() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            attempt += 1;
            if !err.is_transient() {
                return Err(err);
            }
            if attempt >= self.max_attempts.max(1) {
                return Err(Error::GaveUp {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            let wait = self.delay(attempt - 1, err.retry_after());
            notify(&RetryEvent {
                attempt,
                wait,
                error: &err,
            });
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(50),
        }
    }

    #[test]
    fn delays_grow_within_the_cap_and_honour_retry_after() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            let d = p.delay(attempt, None);
            assert!(d <= p.cap.min(p.base * 2u32.saturating_pow(attempt.min(30))));
        }
        let d = p.delay(0, Some(Duration::from_secs(5)));
        assert!(
            d >= Duration::from_secs(5) && d <= Duration::from_secs(6),
            "{d:?}"
        );
        // A Retry-After beyond the cap is still honoured: the server knows best.
        assert!(p.delay(0, Some(Duration::from_secs(600))) >= Duration::from_secs(600));
    }

    #[test]
    fn jitter_spreads() {
        let p = RetryPolicy::default();
        let waits: std::collections::HashSet<_> = (0..20).map(|_| p.delay(5, None)).collect();
        assert!(waits.len() > 10, "full jitter gives different waits");
    }

    #[test]
    fn retries_transient_errors_only() {
        let calls = Cell::new(0);
        let out = fast().run(
            || {
                calls.set(calls.get() + 1);
                if calls.get() < 3 {
                    Err(Error::Transport("reset".into()))
                } else {
                    Ok(7)
                }
            },
            &|_| {},
        );
        assert_eq!((out.unwrap(), calls.get()), (7, 3));

        calls.set(0);
        let out: Result<()> = fast().run(
            || {
                calls.set(calls.get() + 1);
                Err(Error::Invalid("no".into()))
            },
            &|_| {},
        );
        assert!(matches!(out, Err(Error::Invalid(_))));
        assert_eq!(calls.get(), 1);

        calls.set(0);
        let out: Result<()> = fast().run(
            || {
                calls.set(calls.get() + 1);
                Err(Error::Unreachable("down".into()))
            },
            &|_| {},
        );
        assert!(matches!(out, Err(Error::GaveUp { attempts: 4, .. })), "{out:?}");
        assert_eq!(calls.get(), 4);
    }
}
