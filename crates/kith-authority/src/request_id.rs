//! The id of the server request an operation runs for, carried to the
//! audit trail without passing through every signature: the server runs
//! each request's handler inside [`with_request_id`], and
//! [`Authority::audit`](crate::Authority::audit) reads it. Offline commands
//! run outside any scope and record none.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Longest request id honoured from a client (`x-request-id`).
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Run `f` as the request `id`: the audit records it writes carry the id.
pub async fn with_request_id<F: Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The request id of the running task, if it runs for a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A fresh request id: 64 random bits, hex.
pub fn new_request_id() -> String {
    let mut b = [0u8; 8];
    if crate::vault::random_fill(&mut b).is_err() {
        // No RNG (never seen): a counter still tells requests apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        b = NEXT
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes();
    }
    hex::encode(b)
}

/// Whether a client's request id may be kept as it is: 1 to
/// [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 . _ -` (nothing that
/// could forge a log line or a header).
pub fn valid_request_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_REQUEST_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_safe_ids_are_honoured() {
        assert!(valid_request_id("abc-123_X.y"));
        assert!(valid_request_id(&"a".repeat(MAX_REQUEST_ID_LEN)));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id(&"a".repeat(MAX_REQUEST_ID_LEN + 1)));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id("a\nb"));
        assert!(!valid_request_id("é"));
        assert!(valid_request_id(&new_request_id()));
    }

    #[tokio::test]
    async fn the_id_is_seen_inside_its_scope_only() {
        assert_eq!(current_request_id(), None);
        let inner = with_request_id("r1".into(), async { current_request_id() }).await;
        assert_eq!(inner.as_deref(), Some("r1"));
        assert_eq!(current_request_id(), None);
    }
}
