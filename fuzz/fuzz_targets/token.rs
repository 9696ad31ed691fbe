//! Fuzz the join-token parser: any string parses or is refused, never a
//! panic, and what parses encodes back to the same token. `cargo fuzz run token`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = kith_api::JoinToken::parse(s) {
            let again = kith_api::JoinToken::parse(&t.encode()).expect("round trip");
            assert_eq!((again.pin, again.id, *again.secret), (t.pin, t.id, *t.secret));
        }
    }
});
