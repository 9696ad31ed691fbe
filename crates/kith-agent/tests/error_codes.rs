//! The agent reads a server's error code into `ErrorCode`, and keeps one
//! it does not know (a newer server's) without taking it for more than it is.

use kith_agent::Error;
use kith_api::{ErrorCode, WireCode};

fn api(status: u16, code: &str) -> Error {
    Error::Api {
        status,
        code: WireCode::parse(code),
        message: "m".into(),
    }
}

#[test]
fn known_codes_decide_whether_only_a_new_token_helps() {
    for &code in ErrorCode::ALL {
        let e = api(code.http_status(), code.as_str());
        assert_eq!(e.code(), code.as_str());
        assert_eq!(e.error_code(), Some(code));
        assert_eq!(e.needs_new_token(), code.needs_new_token(), "{code}");
    }
    // The ones a renewing node gives up on.
    for c in [
        "certificate-revoked",
        "certificate-superseded",
        "node-removed",
        "renewal-window-passed",
        "unknown-certificate",
        "unknown-node",
        "identity-mismatch",
    ] {
        assert!(api(403, c).needs_new_token(), "{c}");
    }
    assert!(!api(403, "token-expired").needs_new_token());
}

#[test]
fn an_unknown_code_is_kept_and_judged_by_its_status() {
    let e = api(403, "quantum-flux-refused");
    assert_eq!(
        e.code(),
        "quantum-flux-refused",
        "printed as the server sent it"
    );
    assert_eq!(e.error_code(), None);
    assert!(!e.needs_new_token(), "never taken to need a new token");
    assert!(!e.is_transient(), "a 4xx is not retried");
    assert!(
        api(503, "quantum-flux-busy").is_transient(),
        "a 5xx is retried"
    );
    assert!(e.to_string().contains("quantum-flux-refused"), "{e}");
}
