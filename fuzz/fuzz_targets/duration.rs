//! Fuzz the CLI's duration parser (`crates/kith/src/duration.rs`, compiled
//! here as it is in the binary): any string, against any limit, ends in a
//! duration within the limit or a refusal, never a panic; what is accepted
//! can be added to any date a CA meets and reads back the same.
//! `cargo fuzz run duration`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::Duration;

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/kith/src/duration.rs"]
mod duration;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit, the rest is the flag's value.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let max = match pick % 6 {
        0 => Duration::seconds(1),
        1 => Duration::days(30),
        2 => Duration::days(365),
        3 => Duration::days(1825),
        4 => duration::MAX_DURATION,
        _ => Duration::MAX,
    };
    if let Ok(d) = duration::parse_duration_at_most(s, max) {
        assert!(d > Duration::ZERO && d <= max && d <= duration::MAX_DURATION);
        let late = time::macros::datetime!(9000-01-01 0:00 UTC);
        assert!(late.checked_add(d).is_some());
        let again = duration::parse_duration_at_most(&format!("{}s", d.whole_seconds()), max);
        assert_eq!(again, Ok(d));
    }
});
