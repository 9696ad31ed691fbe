//! Every error code round-trips through its wire spelling, and the
//! spellings are the ones clients already know.

use std::collections::BTreeSet;

use kith_api::wire::ErrorBody;
use kith_api::{ErrorCode, UnknownErrorCode, WireCode};

#[test]
fn every_code_round_trips_through_its_string() {
    for &code in ErrorCode::ALL {
        let s = code.as_str();
        assert_eq!(s.parse::<ErrorCode>(), Ok(code), "FromStr of {s:?}");
        assert_eq!(code.to_string(), s, "Display of {code:?}");
        let json = serde_json::to_string(&code).expect("serialize");
        assert_eq!(json, format!("\"{s}\""), "serde writes the bare string");
        let back: ErrorCode = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, code, "serde of {s:?}");
        assert_eq!(WireCode::parse(s), WireCode::Known(code));
        assert!(code == s, "PartialEq<&str> of {s:?}");
    }
}

#[test]
fn spellings_are_distinct_and_kebab_case() {
    let mut seen = BTreeSet::new();
    for &code in ErrorCode::ALL {
        let s = code.as_str();
        assert!(seen.insert(s), "{s:?} is spelled twice");
        assert!(
            !s.is_empty()
                && !s.starts_with('-')
                && !s.ends_with('-')
                && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "{s:?} is not lower kebab case"
        );
    }
}

#[test]
fn unknown_codes_are_kept_not_refused() {
    let e = "some-code-from-a-newer-server".parse::<ErrorCode>();
    assert_eq!(
        e,
        Err(UnknownErrorCode("some-code-from-a-newer-server".into()))
    );
    assert!(serde_json::from_str::<ErrorCode>("\"nope\"").is_err());
    let w = WireCode::parse("some-code-from-a-newer-server");
    assert_eq!(w.known(), None);
    assert_eq!(w.as_str(), "some-code-from-a-newer-server");
    // An error body with an unknown code still decodes.
    let body: ErrorBody =
        serde_json::from_str(r#"{"code":"brand-new","message":"m"}"#).expect("decode");
    assert_eq!(body.wire_code(), WireCode::Unknown("brand-new".into()));
    assert_eq!(body.request_id, None, "request_id is optional");
}

#[test]
fn request_id_is_written_only_when_present() {
    let mut body = ErrorBody {
        code: ErrorCode::Internal.as_str().into(),
        message: "the server failed".into(),
        request_id: None,
    };
    let json = serde_json::to_value(&body).expect("encode");
    assert_eq!(json.get("request_id"), None);
    body.request_id = Some("0123456789abcdef".into());
    let json = serde_json::to_value(&body).expect("encode");
    assert_eq!(json["request_id"], "0123456789abcdef");
}

#[test]
fn statuses_keep_their_meaning() {
    // Server failures are 5xx, and only they answer with a request id.
    for &code in ErrorCode::ALL {
        let st = code.http_status();
        assert!((400..600).contains(&st), "{code}: {st}");
        assert_eq!(code.is_server_error(), st >= 500, "{code}");
        if code.needs_new_token() {
            assert_eq!(
                st,
                if code == ErrorCode::UnknownNode {
                    404
                } else {
                    403
                },
                "{code}"
            );
        }
    }
    // Some anchors clients rely on.
    let anchors = [
        (ErrorCode::InvalidToken, 401),
        (ErrorCode::TokenExpired, 403),
        (ErrorCode::NodeNameTaken, 409),
        (ErrorCode::UnknownSecret, 404),
        (ErrorCode::CsrTooLarge, 413),
        (ErrorCode::RateLimited, 429),
        (ErrorCode::MalformedCsr, 400),
        (ErrorCode::IntegrityError, 500),
        (ErrorCode::BuildFailed, 500),
        (ErrorCode::KeyError, 500),
        (ErrorCode::StoreUnavailable, 503),
    ];
    for (code, st) in anchors {
        assert_eq!(code.http_status(), st, "{code}");
    }
}

/// The wire spellings are a public contract: this list changes only by
/// adding to it.
#[test]
fn the_spellings_clients_know() {
    let known = [
        "wrong-passphrase",
        "not-initialized",
        "already-initialized",
        "unknown-authority",
        "authority-exists",
        "unknown-certificate",
        "unknown-node",
        "invalid-token",
        "unknown-token",
        "token-wrong-cluster",
        "token-revoked",
        "token-expired",
        "token-used-up",
        "node-name-taken",
        "node-name-mismatch",
        "node-name-retired",
        "node-name-reserved",
        "ip-taken",
        "certificate-superseded",
        "profile-not-allowed",
        "csr-key-mismatch",
        "certificate-revoked",
        "node-removed",
        "renewal-window-passed",
        "identity-mismatch",
        "unknown-secret",
        "unknown-secret-version",
        "secret-forbidden",
        "secret-too-large",
        "secret-conflict",
        "invalid-argument",
        "integrity-error",
        "store-locked",
        "store-unavailable",
        "store-corrupt",
        "store-error",
        "contended",
        "rate-limited",
        "internal",
        "malformed-input",
        "invalid-name",
        "key-error",
        "build-failed",
        "verify-failed",
        "revoked",
        "malformed-csr",
        "csr-too-large",
        "bad-signature",
        "weak-signature",
        "weak-key",
        "unsupported-key",
        "no-names",
        "san-not-allowed",
        "wildcard-not-allowed",
        "ip-not-allowed",
        "ca-not-allowed",
        "too-many-sans",
        "io-error",
        "insecure-permissions",
        "not-regular-file",
        "not-a-directory",
        "file-too-large",
        "malformed-request",
        "not-found",
        "method-not-allowed",
        "unsupported-media-type",
        "body-too-large",
        "unknown-profile",
        "not-ready",
        "malformed-token",
        "client-certificate-required",
        "certificate-expired",
        "node-required",
        "admin-required",
        "pin-mismatch",
        "not-kith-server",
        "server-name-mismatch",
        "bundle-refused",
        "unreachable",
        "bad-response",
        "http-error",
        "node-dir",
        "tls-config",
        "exists",
        "invalid-config",
        "no-server",
        "no-admin-credential",
        "passphrase-required",
        "input-too-large",
        "serve-failed",
        "exec-failed",
        "unknown-server",
        "server-name-retired",
        "unknown-operator",
        "last-operator",
        "rotation-not-ready",
        "audit-chain-broken",
    ];
    for s in known {
        assert!(s.parse::<ErrorCode>().is_ok(), "{s:?} is no longer a code");
    }
    assert_eq!(
        ErrorCode::ALL.len(),
        known.len(),
        "a code was added: list it here"
    );
}
