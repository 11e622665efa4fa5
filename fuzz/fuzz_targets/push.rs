//! A whole push through the real service on SQLite: whatever the mutations, the push answers
//! (per-record rejections, or a client error for the envelope) and never fails internally, every
//! mutation gets exactly one result, and the counters stay equal to a recomputation.
#![no_main]

use hamlet_server::error::AppError;
use hamlet_server::sync::push::{check_envelope, context, push};
use hamlet_server::verify::verify;
use hamlet_shared::sync::PushRequest;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::cell::RefCell;

/// Pushes into one database accumulate (later inputs edit what earlier ones created) until this
/// many have run; then the database starts over, so it stays small and fast.
const PUSHES_PER_DATABASE: u32 = 500;

thread_local! {
    static STATE: RefCell<(hamlet_fuzz::PushFixture, u32)> =
        RefCell::new((hamlet_fuzz::PushFixture::new(), 0));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    STATE.with_borrow_mut(|(fixture, runs)| {
        *runs += 1;
        if *runs > PUSHES_PER_DATABASE {
            *fixture = hamlet_fuzz::PushFixture::new();
            *runs = 1;
        }
        let Ok(mutations) = serde_json::from_str::<Vec<Value>>(&fixture.expand(text)) else {
            return;
        };
        let req = PushRequest {
            device_id: fixture.principal.device_id,
            mutations,
        };
        if check_envelope(&fixture.principal, &req, 500).is_err() {
            return;
        }
        let ctx = context(fixture.principal.clone(), 300_000);
        match push(&mut fixture.conn, &ctx, &req) {
            Ok(resp) => assert_eq!(resp.results.len(), req.mutations.len()),
            Err(
                e @ (AppError::Internal(_)
                | AppError::Unavailable(_)
                | AppError::Unwritable(_)
                | AppError::Contention(_)),
            ) => {
                panic!("a push failed on the server's side: {e}")
            }
            Err(_) => {}
        }
        let report = verify(&mut fixture.conn, false).expect("verify");
        assert!(
            report.is_clean(),
            "counters differ from a recomputation: {:?}",
            report.problems
        );
    });
});
