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

/// The SPIFFE ID kith puts in every node's leaf: `spiffe://<cluster>/<role>/<node>`.
pub fn spiffe_id(cluster: &str, role: &str, node: &str) -> String {
    format!("spiffe://{cluster}/{role}/{node}")
}

/// The role reserved for kith's own identities: no node may hold it, so no
/// node's SPIFFE ID can start with `spiffe://<cluster>/kith/`.
pub const RESERVED_ROLE: &str = "kith";

/// The three name spaces of certificate holders, kept apart so that a node
/// can never be issued an operator's or a server's identity, and revoking a
/// node by name never touches an operator or a server.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Namespace {
    /// A cluster member: `spiffe://<cluster>/<role>/<node>`.
    #[default]
    Node,
    /// An operator credential (`admin` profile): `spiffe://<cluster>/kith/admin/<name>`.
    Operator,
    /// A kith server: `spiffe://<cluster>/kith/server/<name>`.
    Server,
}

impl Namespace {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Operator => "operator",
            Self::Server => "server",
        }
    }

    /// The SPIFFE ID of `name` (with `role`, for nodes) in this name space.
    pub fn spiffe_id(self, cluster: &str, role: &str, name: &str) -> String {
        match self {
            Self::Node => spiffe_id(cluster, role, name),
            Self::Operator => format!("spiffe://{cluster}/{RESERVED_ROLE}/admin/{name}"),
            Self::Server => format!("spiffe://{cluster}/{RESERVED_ROLE}/server/{name}"),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `name` is kept out of the node name space: `admin` and `kith`
/// (which read as the operator's or the CA's own) and every `kith-*` name.
pub fn is_reserved_node_name(name: &str) -> bool {
    name == "admin" || name == RESERVED_ROLE || name.starts_with("kith-")
}

/// Check a node name: a DNS label ([`validate_label`]) that is not reserved
/// ([`is_reserved_node_name`]).
pub fn validate_node_name(value: &str) -> Result<(), Error> {
    validate_label("node name", value)?;
    if is_reserved_node_name(value) {
        return Err(Error::InvalidName {
            what: "node name",
            value: value.to_string(),
            reason: "reserved for kith's own identities (admin, kith, kith-*): choose another name",
        });
    }
    Ok(())
}

/// Check a node's role: a DNS label other than the reserved `kith`.
pub fn validate_node_role(value: &str) -> Result<(), Error> {
    validate_label("role", value)?;
    if value == RESERVED_ROLE {
        return Err(Error::InvalidName {
            what: "role",
            value: value.to_string(),
            reason: "reserved for kith's own identities: choose another role",
        });
    }
    Ok(())
}

/// Check a name and role for a certificate in name space `ns`: labels
/// ([`validate_label`]). Reserved node names are refused where a node
/// identity is created ([`validate_new_node`]), not here, so that a node
/// named before the reservation still renews (and can be removed).
pub fn validate_holder(ns: Namespace, name: &str, role: &str) -> Result<(), Error> {
    let what = match ns {
        Namespace::Node => "node name",
        _ => "name",
    };
    validate_label(what, name)?;
    validate_label("role", role)
}

/// The name a kith server takes when it has no name of its own: the one
/// every server had before servers were named one by one.
pub const DEFAULT_SERVER_NAME: &str = "kith-server";

/// Check a kith server's name: a DNS label ([`validate_label`]) in the
/// server name space, `kith-server` or `kith-server-*`. Node names can never
/// be of that shape ([`is_reserved_node_name`]), so a server name never
/// reads as a node's.
pub fn validate_server_name(value: &str) -> Result<(), Error> {
    validate_label("server name", value)?;
    let in_space = value == DEFAULT_SERVER_NAME
        || value
            .strip_prefix(DEFAULT_SERVER_NAME)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'));
    if !in_space {
        return Err(Error::InvalidName {
            what: "server name",
            value: value.to_string(),
            reason:
                "a server name is kith-server or starts with kith-server- (e.g. kith-server-ca1)",
        });
    }
    Ok(())
}

/// Check the name and role of a node identity being created (a join, a
/// token, an offline issuance): [`validate_node_name`] and
/// [`validate_node_role`].
pub fn validate_new_node(name: &str, role: &str) -> Result<(), Error> {
    validate_node_name(name)?;
    validate_node_role(role)
}

/// The server name in a kith server SPIFFE ID of `cluster`
/// (`spiffe://<cluster>/kith/server/<name>`), or `None` for any other URI.
/// With `cluster` `None`, any trust domain matches and is returned too.
pub fn parse_server_id<'a>(uri: &'a str, cluster: Option<&str>) -> Option<(&'a str, &'a str)> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    if cluster.is_some_and(|c| c != domain) || validate_cluster_name(domain).is_err() {
        return None;
    }
    let name = path.strip_prefix(RESERVED_ROLE)?.strip_prefix("/server/")?;
    validate_label("name", name).ok()?;
    Some((domain, name))
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
    fn reserved_names_and_ids() {
        for reserved in ["admin", "kith", "kith-server", "kith-server-ca1", "kith-x"] {
            assert!(validate_node_name(reserved).is_err(), "{reserved}");
        }
        for fine in ["node-1", "administrator", "kithx", "my-kith"] {
            assert!(validate_node_name(fine).is_ok(), "{fine}");
        }
        assert!(validate_node_role("kith").is_err());
        assert!(validate_holder(Namespace::Server, "kith-server", "kith").is_ok());
        for fine in ["kith-server", "kith-server-ca1", "kith-server-a-b"] {
            assert!(validate_server_name(fine).is_ok(), "{fine}");
        }
        for bad in [
            "kith-serverx",
            "kith-server-",
            "node-1",
            "kith",
            "Kith-server",
            "",
        ] {
            assert!(validate_server_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_new_node("kith-server", "worker").is_err());
        assert!(validate_new_node("node-1", "kith").is_err());
        assert!(validate_new_node("node-1", "worker").is_ok());
        let id = Namespace::Server.spiffe_id("prod.example", "kith", "kith-server");
        assert_eq!(id, "spiffe://prod.example/kith/server/kith-server");
        assert_eq!(
            parse_server_id(&id, Some("prod.example")),
            Some(("prod.example", "kith-server"))
        );
        assert_eq!(
            parse_server_id(&id, None),
            Some(("prod.example", "kith-server"))
        );
        assert_eq!(parse_server_id(&id, Some("other.example")), None);
        // Node IDs, operator IDs and near misses are not server IDs.
        for not in [
            spiffe_id("prod.example", "worker", "node-1"),
            spiffe_id("prod.example", "kith", "server"),
            Namespace::Operator.spiffe_id("prod.example", "admin", "admin"),
            "spiffe://prod.example/kith/server/".into(),
            "spiffe://prod.example/kith/server/a/b".into(),
            "spiffe://prod.example/kith/servers/x".into(),
            "https://prod.example/kith/server/x".into(),
        ] {
            assert_eq!(parse_server_id(&not, None), None, "{not}");
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
