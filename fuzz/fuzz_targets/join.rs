//! Fuzz the join request decoder: the bytes of a `POST /v1/join` body go
//! through exactly what the server does before it touches the store (JSON
//! shape, token syntax, profile names), then each CSR through the parser and
//! policy the authority applies. Refusals must carry a 4xx status and a
//! code; nothing may panic. `cargo fuzz run join`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match kith_server::decode_join_request(data) {
        Ok((_token, node, csrs)) => {
            for (_profile, csr) in csrs {
                if let Ok(parsed) = kith_pki::parse_csr(&csr) {
                    let node = node.as_deref().unwrap_or("node-1");
                    let _ = parsed.approve(&kith_pki::CsrPolicy::default(), "fuzz.example", "worker", node);
                }
            }
        }
        Err((status, code)) => {
            assert!((400..500).contains(&status), "{status} {code}");
            assert!(!code.is_empty());
        }
    }
});
