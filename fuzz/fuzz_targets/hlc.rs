//! The HLC parser: any string either fails cleanly or parses to a clock whose printed form
//! parses back to the same clock (clocks travel as text in pushes and are compared after parsing).
#![no_main]

use hamlet_shared::Hlc;
use hamlet_shared::hlc::{format_wall_ms, parse_wall_ms};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(h) = s.parse::<Hlc>() {
        let printed = h.to_string();
        let again: Hlc = printed.parse().expect("a printed HLC parses");
        assert_eq!(again, h);
        assert_eq!(again.to_string(), printed);
    }
    if let Ok(ms) = parse_wall_ms(s) {
        assert_eq!(parse_wall_ms(&format_wall_ms(ms)), Ok(ms));
    }
});
