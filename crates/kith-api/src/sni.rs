//! The TLS server names (SNI) by which a node tells the kith server which
//! authority's chain to present. An authority is a trust domain of its own:
//! a node trusts only its authority's root, so the server must answer with
//! that authority's chain. A node that has joined names its authority
//! (`<authority>.authority.kith`); a joining node knows only its token's pin
//! and names that (`<first 32 hex digits of the pin>.pin.kith`). Any other
//! name, or none (another TLS stack, a browser, `curl`), gets the default
//! authority's chain. The node still checks the server's name against the
//! address it dialled, not against this one.

/// Suffix of a server name that selects an authority by name.
pub const AUTHORITY_SNI_SUFFIX: &str = ".authority.kith";
/// Suffix of a server name that selects an authority by its root's pin.
pub const PIN_SNI_SUFFIX: &str = ".pin.kith";
/// Hex digits of the pin a server name carries (128 bits: enough to tell
/// a cluster's few authorities apart; the node verifies the whole pin).
pub const PIN_SNI_HEX: usize = 32;

/// What a server name asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SniSelector {
    /// The authority of this name.
    Authority(String),
    /// The authority whose root's SPKI pin starts with these (lowercase hex) digits.
    PinPrefix(String),
}

/// The server name that asks for `authority`'s chain.
pub fn authority_sni(authority: &str) -> String {
    format!("{authority}{AUTHORITY_SNI_SUFFIX}")
}

/// The server name that asks for the chain of the root pinned by `pin`.
pub fn pin_sni(pin: &[u8; 32]) -> String {
    let mut hex = String::with_capacity(64);
    for b in pin {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(PIN_SNI_HEX);
    format!("{hex}{PIN_SNI_SUFFIX}")
}

/// Read a server name sent by a client: `None` for any name that is not
/// one of the two forms above (the default authority then answers).
pub fn parse_sni(name: &str) -> Option<SniSelector> {
    let name = name.to_ascii_lowercase();
    if let Some(a) = name.strip_suffix(AUTHORITY_SNI_SUFFIX) {
        return (!a.is_empty() && !a.contains('.')).then(|| SniSelector::Authority(a.to_string()));
    }
    let p = name.strip_suffix(PIN_SNI_SUFFIX)?;
    (p.len() == PIN_SNI_HEX && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| SniSelector::PinPrefix(p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(
            parse_sni(&authority_sni("api")),
            Some(SniSelector::Authority("api".into()))
        );
        let pin = [0xab; 32];
        assert_eq!(
            parse_sni(&pin_sni(&pin)),
            Some(SniSelector::PinPrefix("ab".repeat(16)))
        );
        for other in [
            "ca.prod.example",
            "authority.kith",
            ".authority.kith",
            "a.b.authority.kith",
            "abc.pin.kith",
            "localhost",
        ] {
            assert_eq!(parse_sni(other), None, "{other}");
        }
    }
}
