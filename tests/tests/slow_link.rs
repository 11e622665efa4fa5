//! A village over 2G, short (the benchmark `village_2g` syncs 100 households): a phone pushes
//! its offline survey through ~50 kbit/s, 300 ms and connections cut mid-request, a second
//! phone pulls it from scratch; the server's records and aggregates equal the phones'.

use hamlet_tests::slow_link::LinkProfile;
use hamlet_tests::village::sync_village;
use hamlet_tests::{Backend, backend_tests};

fn a_small_village_syncs_over_2g(backend: Backend) {
    // Cut far more often than the benchmark's link, and early enough (300 bytes: inside the
    // headers) that every exchange on a cut connection fails, the small ones included: 64 % of
    // connections are cut one way or the other, so over the 11 or more connections of a run the
    // odds of no cut at all are about 1 in 75,000, and of one exchange failing 30 attempts in a
    // row about 1 in 600,000. A cut on the way down loses the answer to a request the server
    // has applied; one on the way up, a request it never saw whole.
    let profile = LinkProfile {
        cut: Some((0.4, 300)),
        cut_up: Some((0.4, 300)),
        ..LinkProfile::village_2g()
    };
    let report = sync_village(backend, 12, 3, profile);
    eprintln!("{report:?}");
    assert_eq!(report.records, 60);
    assert!(
        report.login_attempts + report.push_retries + report.pull_retries > 2,
        "the link cut nothing: {report:?}"
    );
}

backend_tests!(a_small_village_syncs_over_2g);
