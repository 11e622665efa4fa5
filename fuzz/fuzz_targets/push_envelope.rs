//! The push envelope and mutation parser, without a database: any bytes either fail to be a push
//! (a 400 at the HTTP layer) or each mutation parses into a valid mutation or a rejection that
//! says why, and a parsed mutation survives its own wire form unchanged.
#![no_main]

use hamlet_server::sync::push::check_envelope;
use hamlet_shared::sync::{PushRequest, mutation_id_of, parse_mutation};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // Only the placeholders and the principal are used; the database behind them stays idle.
    static FIXTURE: hamlet_fuzz::PushFixture = hamlet_fuzz::PushFixture::new();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    FIXTURE.with(|fixture| check(fixture, text));
});

fn check(fixture: &hamlet_fuzz::PushFixture, text: &str) {
    let Ok(mut req) = serde_json::from_str::<PushRequest>(&fixture.expand(text)) else {
        return;
    };
    let device = fixture.principal.device_id;
    req.device_id = device;
    if check_envelope(&fixture.principal, &req, 500).is_err() {
        return;
    }
    for raw in &req.mutations {
        match parse_mutation(raw, device) {
            Ok(m) => {
                assert_eq!(Some(m.mutation_id), mutation_id_of(raw));
                let again =
                    parse_mutation(&m.to_json(), device).expect("a parsed mutation's wire form parses");
                assert_eq!(again, m);
            }
            Err(rejection) => assert!(!rejection.errors.is_empty(), "a rejection without a reason"),
        }
    }
}
