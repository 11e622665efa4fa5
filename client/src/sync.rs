//! Push the outbox, then pull from the persisted cursor (docs/sync-protocol.md §5, §7, §8).

use crate::api::Api;
use crate::client::Client;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::outbox::{self, BatchOutcome};
use crate::store::{self, apply_change, now_us, set_cursor};
use hamlet_shared::sync::PushSummary;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Requests that got an answer.
    pub batches: usize,
    /// The server's counts over every batch.
    pub summary: PushSummary,
    /// Mutations rejected for good (see `status`).
    pub rejected: usize,
    /// Mutations that lost every field to a concurrent edit.
    pub conflicts: usize,
}

impl PushReport {
    fn add(&mut self, o: &BatchOutcome) {
        self.batches += 1;
        self.summary.applied += o.summary.applied;
        self.summary.duplicate += o.summary.duplicate;
        self.summary.conflict += o.summary.conflict;
        self.summary.rejected += o.summary.rejected;
        self.rejected += o.rejected;
        self.conflicts += o.conflicts;
    }
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    pub pages: usize,
    /// Changes received.
    pub changes: usize,
    /// Changes that replaced a server copy (the rest were already held).
    pub applied: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub push: PushReport,
    pub pull: PullReport,
}

impl Client {
    /// The API with the session's access token.
    fn authorized(&mut self) -> Result<Api> {
        let session = self.store.session()?.ok_or(Error::NotLoggedIn)?;
        Ok(self.api()?.with_token(session.access_token))
    }

    /// Runs `call` with retries; on 401 refreshes the tokens once and runs it again.
    fn call<T>(&mut self, call: impl Fn(&Api) -> Result<T>) -> Result<T> {
        let api = self.authorized()?;
        match self.options.retry.run(|| call(&api), &*self.notify) {
            Err(e) if e.status() == Some(401) => {
                self.refresh()?;
                let api = self.authorized()?;
                self.options.retry.run(|| call(&api), &*self.notify)
            }
            other => other,
        }
    }

    /// Trades the refresh token for a new pair, kept before it is used. Refresh tokens are single
    /// use: when the answer may have been lost the session is given up (a retry would present a
    /// used token and end it anyway), and the user logs in again. Nothing local is lost.
    pub fn refresh(&mut self) -> Result<()> {
        let session = self.store.session()?.ok_or(Error::NotLoggedIn)?;
        match self.api()?.refresh(&session.refresh_token) {
            Ok(tokens) => {
                self.store.write(|c| store::save_tokens(c, &tokens))?;
                Ok(())
            }
            // Never sent, or answered "not now": the refresh token is still unused.
            Err(e @ Error::Unreachable(_)) => Err(e),
            Err(e @ Error::Status { .. }) if !matches!(e.status(), Some(400 | 401 | 403)) => Err(e),
            Err(e) => {
                self.store.write(store::clear_session)?;
                Err(Error::LoginRequired(match e {
                    Error::Status { .. } => "the server refused the refresh token".to_owned(),
                    other => format!("the refresh answer was lost: {other}"),
                }))
            }
        }
    }

    /// Sends every pending mutation, in id order, in batches. Acknowledged mutations leave the
    /// outbox; rejected ones stay visible with the server's errors; the rest stay pending.
    pub fn push(&mut self) -> Result<PushReport> {
        let device_id = self.device_id()?;
        let mut size = self.batch_size();
        let mut report = PushReport::default();
        loop {
            let batch = self.store.write(|c| outbox::take_batch(c, size))?;
            if batch.is_empty() {
                return Ok(report);
            }
            let sent: Vec<i64> = batch.iter().map(|m| m.mutation_id).collect();
            let answer = match self.call(|api| api.push_mutations(device_id, &batch)) {
                Ok(answer) => answer,
                // Too large: the same mutations, unchanged, in smaller pushes.
                Err(e) if e.status() == Some(413) && batch.len() > 1 => {
                    size = batch.len() / 2;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let now = now_ms();
            let outcome = self
                .store
                .write(|c| outbox::apply_results(c, &sent, &answer, now))?;
            report.add(&outcome);
            if !outcome.unanswered.is_empty() {
                return Err(Error::Invalid(format!(
                    "the server's answer left out mutations {:?}; they stay pending",
                    outcome.unanswered
                )));
            }
        }
    }

    /// Pulls every change since the persisted cursor. Each page and its cursor are stored in one
    /// transaction, so an interrupted pull resumes where it stopped.
    pub fn pull(&mut self) -> Result<PullReport> {
        let limit = self.options.pull_limit.clamp(1, 5000);
        let mut report = PullReport::default();
        let mut restarted = false;
        loop {
            // Read each time: a refresh that changed the scope resets the cursor.
            let cursor = self.store.state()?.pull_cursor;
            let page = match self.call(|api| api.pull(cursor.as_deref(), limit)) {
                Ok(page) => page,
                // A cursor the server cannot read: start over; applying changes twice is harmless.
                Err(e) if e.status() == Some(400) && cursor.is_some() && !restarted => {
                    restarted = true;
                    self.store.write(|c| set_cursor(c, None))?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let applied = self.store.write(|c| {
                let mut applied = 0;
                for change in &page.changes {
                    applied += usize::from(apply_change(c, change)?);
                }
                set_cursor(c, Some(&page.cursor))?;
                Ok(applied)
            })?;
            report.pages += 1;
            report.changes += page.changes.len();
            report.applied += applied;
            if !page.has_more {
                return Ok(report);
            }
        }
    }

    /// Push, then pull (the pushed changes come back with their versions), then note the time.
    pub fn sync(&mut self) -> Result<SyncReport> {
        let push = self.push()?;
        let pull = self.pull()?;
        let at = now_us();
        self.store.write(|c| store::set_last_sync(c, at))?;
        Ok(SyncReport { push, pull })
    }
}
