//! kith keys ↔ NATS subjects, and what a stored message means.

use async_nats::HeaderMap;

/// Where the bucket's listing fence lives (see `list.rs`): never a key of
/// kith's, and left out of every listing.
pub(crate) const FENCE_KEY_PREFIX: &str = "_kith_fence/";

/// The header JetStream deduplicates writes by.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
/// The KV operation header: a delete or purge marker, not a value.
pub(crate) const KV_OPERATION: &str = "KV-Operation";

/// `$KV.<bucket>.` followed by the key with `/` as `.` (keys never hold a
/// `.`: `kith_store::validate_key`).
pub(crate) fn subject(prefix: &str, key: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + key.len());
    s.push_str(prefix);
    s.extend(key.chars().map(|c| if c == '/' { '.' } else { c }));
    s
}

/// The key of a subject under `prefix`, if it is one.
pub(crate) fn key(prefix: &str, subject: &str) -> Option<String> {
    subject
        .strip_prefix(prefix)
        .map(|k| k.chars().map(|c| if c == '.' { '/' } else { c }).collect())
}

/// The subject filter that covers every key starting with `prefix`
/// (a string prefix): the tokens before its last `/` followed by `>`.
/// Keys it also covers but that do not start with `prefix` are dropped by
/// the caller.
pub(crate) fn filter(subject_prefix: &str, prefix: &str) -> String {
    match prefix.rfind('/') {
        Some(i) => format!("{}.>", subject(subject_prefix, &prefix[..i])),
        None => format!("{subject_prefix}>"),
    }
}

/// Whether a message is a delete or purge marker.
pub(crate) fn is_marker(headers: Option<&HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get(KV_OPERATION))
        .map(|v| matches!(v.as_str(), "DEL" | "PURGE"))
        .unwrap_or(false)
}

/// The write id a message was published with.
pub(crate) fn write_id(headers: Option<&HeaderMap>) -> Option<String> {
    headers
        .and_then(|h| h.get(MSG_ID))
        .map(|v| v.as_str().to_string())
}

/// A fresh write id: 128 random bits, hex.
pub(crate) fn new_write_id() -> String {
    let mut b = [0u8; 16];
    // The system RNG failing leaves no way to make an id: a process that
    // cannot get randomness cannot run a CA either.
    aws_lc_rs::rand::fill(&mut b).expect("the system random number generator works");
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_filters() {
        let p = "$KV.kith.";
        assert_eq!(subject(p, "node/a-1/x"), "$KV.kith.node.a-1.x");
        assert_eq!(key(p, "$KV.kith.node.a-1.x").as_deref(), Some("node/a-1/x"));
        assert_eq!(key(p, "$KV.other.node"), None);
        assert_eq!(filter(p, ""), "$KV.kith.>");
        assert_eq!(filter(p, "node"), "$KV.kith.>");
        assert_eq!(filter(p, "node/"), "$KV.kith.node.>");
        assert_eq!(filter(p, "node/ab"), "$KV.kith.node.>");
        assert_eq!(filter(p, "a/b/"), "$KV.kith.a.b.>");
    }
}
