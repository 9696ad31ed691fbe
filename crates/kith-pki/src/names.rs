use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::Error;

/// Check a node name or role: one DNS label (RFC 1123): 1–63 characters of
/// `a-z`, `0-9` and `-`, not starting or ending with `-`. Lowercase only, so
/// that `Node-1` and `node-1` can never be two identities.
pub fn validate_label(what: &'static str, value: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidName {
            what,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() || value.len() > 63 {
        return bad("must be 1 to 63 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("only lowercase letters, digits and '-' are allowed");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return bad("must not start or end with '-'");
    }
    Ok(())
}

/// Check a cluster name: a DNS name of at least two labels (`prod.example`),
/// each a valid label, 253 characters at most. It names the trust domain and
/// is the domain of every node's DNS name.
pub fn validate_cluster_name(value: &str) -> Result<(), Error> {
    if value.len() > 253 || !value.contains('.') {
        return Err(Error::InvalidName {
            what: "cluster name",
            value: value.to_string(),
            reason: "must be a DNS name of at least two labels, e.g. prod.example",
        });
    }
    for label in value.split('.') {
        validate_label("cluster name", label).map_err(|_| Error::InvalidName {
            what: "cluster name",
            value: value.to_string(),
            reason: "each label must be 1-63 characters of a-z, 0-9 and '-'",
        })?;
    }
    Ok(())
}

/// The SPIFFE ID kith puts in every leaf: `spiffe://<cluster>/<role>/<node>`.
pub fn spiffe_id(cluster: &str, role: &str, node: &str) -> String {
    format!("spiffe://{cluster}/{role}/{node}")
}

/// A subject alternative name.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum San {
    /// A DNS name, lowercase.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
    /// A URI (kith only issues its own SPIFFE ID).
    Uri(String),
}

impl San {
    /// Check a DNS SAN's syntax: labels of letters, digits, `-`, optionally a
    /// leading `*.` wildcard label; 253 characters at most.
    pub(crate) fn check_dns_syntax(name: &str) -> Result<(), &'static str> {
        if name.is_empty() || name.len() > 253 {
            return Err("must be 1 to 253 characters");
        }
        let rest = name.strip_prefix("*.").unwrap_or(name);
        for label in rest.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err("each label must be 1 to 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err("labels are letters, digits and inner '-'");
            }
        }
        Ok(())
    }
}

impl FromStr for San {
    type Err = Error;

    /// `10.0.0.7` and `::1` are IP SANs, `uri:...` a URI, anything else a DNS name.
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        if let Some(uri) = s.strip_prefix("uri:") {
            return Ok(San::Uri(uri.to_string()));
        }
        let lower = s.to_ascii_lowercase();
        San::check_dns_syntax(&lower).map_err(|reason| Error::InvalidName {
            what: "DNS name",
            value: s.to_string(),
            reason,
        })?;
        Ok(San::Dns(lower))
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(validate_label("node name", "node-7").is_ok());
        for bad in ["", "-a", "a-", "Node", "a.b", "a_b", &"x".repeat(64)] {
            assert!(validate_label("node name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clusters() {
        assert!(validate_cluster_name("prod.example").is_ok());
        for bad in [
            "prod",
            "prod..example",
            ".prod.example",
            "Prod.example",
            "a_b.c",
        ] {
            assert!(validate_cluster_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sans() {
        assert_eq!(
            "10.0.0.1".parse::<San>().unwrap(),
            San::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            "Node.Example".parse::<San>().unwrap(),
            San::Dns("node.example".into())
        );
        assert!("bad name".parse::<San>().is_err());
        assert!("a..b".parse::<San>().is_err());
    }
}
