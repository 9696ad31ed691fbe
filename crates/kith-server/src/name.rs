//! The server's own name in the server name space: each replica has one,
//! so that one replica can be revoked without the others.

use kith_pki::DEFAULT_SERVER_NAME;

/// The longest host part of a derived name: `kith-server-` and it stay
/// within one DNS label (63 characters).
const MAX_HOST_PART: usize = 63 - DEFAULT_SERVER_NAME.len() - 1;

/// The default name of a server on a host named `host`:
/// `kith-server-<host>`, the host name lowercased, every character other
/// than `a-z`, `0-9` and `-` (dots included) turned into `-`, `-` trimmed
/// from both ends, cut to 51 characters (and trimmed again). A host name
/// with nothing left gives plain `kith-server`.
///
/// ```
/// assert_eq!(kith_server::server_name_for_host("CA1.prod.example"), "kith-server-ca1-prod-example");
/// assert_eq!(kith_server::server_name_for_host("_"), "kith-server");
/// ```
pub fn server_name_for_host(host: &str) -> String {
    let reduced: String = host
        .trim()
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = reduced.trim_matches('-');
    // Only ASCII is left, so cutting at a byte index is cutting at a character.
    let cut = trimmed[..trimmed.len().min(MAX_HOST_PART)].trim_end_matches('-');
    if cut.is_empty() {
        DEFAULT_SERVER_NAME.to_string()
    } else {
        format!("{DEFAULT_SERVER_NAME}-{cut}")
    }
}

/// The default name of a server on this machine: [`server_name_for_host`]
/// of its host name (`uname -n`), or plain `kith-server` if it has none.
pub fn default_server_name() -> String {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
    server_name_for_host(&host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_server_names() {
        for (host, want) in [
            ("ca1", "kith-server-ca1"),
            ("CA1.Prod.Example", "kith-server-ca1-prod-example"),
            ("my_host", "kith-server-my-host"),
            ("-edge-", "kith-server-edge"),
            ("", "kith-server"),
            ("...", "kith-server"),
            ("héllo", "kith-server-h-llo"),
        ] {
            let got = server_name_for_host(host);
            assert_eq!(got, want, "{host:?}");
            kith_pki::validate_server_name(&got).expect("a valid server name");
        }
        let long = server_name_for_host(&format!("{}.b", "a".repeat(100)));
        assert_eq!(long.len(), 63);
        kith_pki::validate_server_name(&long).expect("capped to one label");
        // A cut that ends on '-' is trimmed.
        let edge = server_name_for_host(&format!("{}-x", "a".repeat(50)));
        assert_eq!(edge, format!("kith-server-{}", "a".repeat(50)));
        kith_pki::validate_server_name(&default_server_name()).expect("this host's");
    }
}
