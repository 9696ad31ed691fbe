//! Fuzz the CSR parser and the policy: any input must yield a CSR or a
//! refusal, never a panic. `cargo fuzz run csr` (nightly).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = kith_pki::parse_csr(data) {
        let policy = kith_pki::CsrPolicy::default();
        let _ = csr.approve(&policy, "fuzz.example", "worker", "node-1");
    }
});
