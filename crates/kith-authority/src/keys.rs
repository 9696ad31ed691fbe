//! Every store key the authority reads or writes, and every prefix it lists
//! or watches, built here and nowhere else. The spellings are the stored
//! data's format: changing one makes existing stores unreadable, so the
//! tests below pin each of them byte for byte.
//!
//! | key | record |
//! | --- | --- |
//! | `cluster/meta` | the cluster and its wrapped master key |
//! | `authority/<name>` | one CA hierarchy |
//! | `cert/<serial>` | an issued certificate |
//! | `nodecert/<node>/<serial>`, `opcert/…`, `servercert/…` | a holder's certificate index, one prefix per name space |
//! | `server/<name>` | a kith server name (its retirement) |
//! | `revoked/<authority>/<serial>` | a revocation |
//! | `crl/<authority>` | the CRL of the authority's first intermediate |
//! | `crl/<authority>/<generation>` | the CRL of a later intermediate (renewals) |
//! | `rootcrl/<authority>`, `rootcrl/<authority>/<generation>` | the CRL of the authority's first root, of a later one (root rotations) |
//! | `node/<name>` | a node |
//! | `token/<id>` | a join token |
//! | `tokenname/<node>/<id>` | a name reserved by a token minted for it |
//! | `ipclaim/<hex>`, `dnsclaim/<hex>` | an address or name held by a certificate |
//! | `secret/<name>` | a secret's metadata and versions |
//! | `secretval/<name>/<version, 20 digits>` | one sealed secret value |
//! | `audit/<writer>/<seq, 20 digits>` | one audit record, a link of its writer's chain |
//! | `audit/<nanos, 20 digits>-<random hex>` | a legacy (unchained) audit record: read, never written |
//! | `audithead/<writer>` | the head of a writer's audit chain: last sequence number and MAC |
//! | `auditkey/seed` | the seed of the audit MAC key, sealed by the master key |
//! | `chunk/<secs>-<random hex>/<n>` | part of a split value (built by `kith_store::chunked`) |
//! | `replica/<server name>` | a running replica: advertise URL, version, heartbeat |
//! | `lease/<name>` | who runs work meant for one replica at a time, until when |

use std::net::IpAddr;

use kith_pki::Namespace;

/// The cluster record.
pub(crate) const CLUSTER_KEY: &str = "cluster/meta";
/// What the keyring watches besides the authorities: the cluster record.
pub(crate) const CLUSTER_PREFIX: &str = "cluster/";

/// Every authority record.
pub(crate) const AUTHORITY_PREFIX: &str = "authority/";
pub(crate) fn authority_key(name: &str) -> String {
    format!("{AUTHORITY_PREFIX}{name}")
}

/// Every issued certificate.
pub(crate) const CERT_PREFIX: &str = "cert/";
pub(crate) fn cert_key(serial_hex: &str) -> String {
    format!("{CERT_PREFIX}{serial_hex}")
}

/// The index of a holder's certificates: one prefix per name space, so that
/// listing (and revoking) a node's certificates can never reach an
/// operator's or a server's of the same name.
pub(crate) fn holder_cert_prefix(ns: Namespace, name: &str) -> String {
    match ns {
        Namespace::Operator => format!("{OPERATOR_CERT_PREFIX}{name}/"),
        Namespace::Server => format!("{SERVER_CERT_PREFIX}{name}/"),
        _ => format!("nodecert/{name}/"),
    }
}
pub(crate) fn holder_cert_key(ns: Namespace, name: &str, serial_hex: &str) -> String {
    format!("{}{serial_hex}", holder_cert_prefix(ns, name))
}

/// Every operator's certificate index (`opcert/<name>/<serial>`).
pub(crate) const OPERATOR_CERT_PREFIX: &str = "opcert/";

/// Every server's certificate index (`servercert/<name>/<serial>`).
pub(crate) const SERVER_CERT_PREFIX: &str = "servercert/";
/// A kith server name's own record (its retirement).
pub(crate) fn server_key(name: &str) -> String {
    format!("server/{name}")
}

/// Every running replica's registration (`replica/<server name>`).
pub(crate) const REPLICA_PREFIX: &str = "replica/";
pub(crate) fn replica_key(server_name: &str) -> String {
    format!("{REPLICA_PREFIX}{server_name}")
}

/// A lease on work meant for one replica at a time.
pub(crate) const LEASE_PREFIX: &str = "lease/";
pub(crate) fn lease_key(name: &str) -> String {
    format!("{LEASE_PREFIX}{name}")
}

/// Every revocation, of every authority.
pub(crate) const REVOKED_PREFIX: &str = "revoked/";
pub(crate) fn revoked_prefix(authority: &str) -> String {
    format!("{REVOKED_PREFIX}{authority}/")
}
pub(crate) fn revoked_key(authority: &str, serial_hex: &str) -> String {
    format!("{}{serial_hex}", revoked_prefix(authority))
}

/// Every authority's CRL.
pub(crate) const CRL_PREFIX: &str = "crl/";
pub(crate) fn crl_key(authority: &str) -> String {
    format!("{CRL_PREFIX}{authority}")
}
/// The CRL of the intermediate of `generation`: the first one's is
/// `crl/<authority>` (as before renewals existed), a later one's
/// `crl/<authority>/<generation>`.
pub(crate) fn intermediate_crl_key(authority: &str, generation: u32) -> String {
    match generation {
        0 | 1 => crl_key(authority),
        g => format!("{CRL_PREFIX}{authority}/{g}"),
    }
}

/// Every authority's root CRL (signed by the root: the intermediates it
/// revoked, usually none), for relying parties that check a CRL for every
/// CA of a chain (nginx, `openssl verify -crl_check_all`).
pub(crate) const ROOT_CRL_PREFIX: &str = "rootcrl/";
pub(crate) fn root_crl_key(authority: &str) -> String {
    format!("{ROOT_CRL_PREFIX}{authority}")
}
/// The CRL of the root of `generation`: the first one's is
/// `rootcrl/<authority>`, a later one's `rootcrl/<authority>/<generation>`.
pub(crate) fn root_crl_key_of(authority: &str, generation: u32) -> String {
    match generation {
        0 | 1 => root_crl_key(authority),
        g => format!("{ROOT_CRL_PREFIX}{authority}/{g}"),
    }
}

/// Every prefix whose records may be split over `chunk/` keys (kith-store's
/// `chunked`, which builds those keys): the orphan sweep keeps the chunks
/// their heads name. A new kind of split record adds its prefix here.
pub(crate) const SPLIT_PREFIXES: &[&str] = &[SECRET_VALUE_PREFIX, CRL_PREFIX, ROOT_CRL_PREFIX];

/// Every node record.
pub(crate) const NODE_PREFIX: &str = "node/";
pub(crate) fn node_key(name: &str) -> String {
    format!("{NODE_PREFIX}{name}")
}

/// Every token.
pub(crate) const TOKEN_PREFIX: &str = "token/";
/// A token by its id's hex spelling.
pub(crate) fn token_key(id_hex: &str) -> String {
    format!("{TOKEN_PREFIX}{id_hex}")
}
/// The reservations of node name `node`: `tokenname/<node>/<token id>`.
pub(crate) fn reservation_prefix(node: &str) -> String {
    format!("tokenname/{node}/")
}
pub(crate) fn reservation_key(node: &str, id_hex: &str) -> String {
    format!("{}{id_hex}", reservation_prefix(node))
}

/// The claim on an address (canonical octets, hex).
pub(crate) fn ip_claim_key(ip: IpAddr) -> String {
    let octets = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    format!("ipclaim/{}", hex::encode(octets))
}
/// The claim on a DNS name (lowercase, hex).
pub(crate) fn dns_claim_key(name: &str) -> String {
    format!("dnsclaim/{}", hex::encode(name.as_bytes()))
}

/// Every secret's metadata.
pub(crate) const SECRET_PREFIX: &str = "secret/";
pub(crate) fn secret_key(name: &str) -> String {
    format!("{SECRET_PREFIX}{name}")
}
/// Every sealed secret value, of every secret.
pub(crate) const SECRET_VALUE_PREFIX: &str = "secretval/";
pub(crate) fn secret_value_prefix(name: &str) -> String {
    format!("{SECRET_VALUE_PREFIX}{name}/")
}
pub(crate) fn secret_value_key(name: &str, version: u64) -> String {
    format!("{}{version:020}", secret_value_prefix(name))
}
/// Every audit record, chained or legacy.
pub(crate) const AUDIT_PREFIX: &str = "audit/";
/// Every audit chain head.
pub(crate) const AUDIT_HEAD_PREFIX: &str = "audithead/";
/// The sealed seed of the audit MAC key.
pub(crate) const AUDIT_KEY_KEY: &str = "auditkey/seed";

/// Record `seq` of `writer`'s chain (zero-padded, so that keys list in
/// chain order).
pub(crate) fn audit_record_key(writer: &str, seq: u64) -> String {
    format!("{AUDIT_PREFIX}{writer}/{seq:020}")
}

/// The head of `writer`'s chain.
/// Where a record found past a gap in its writer's chain is moved aside
/// (see `audit_chain::adopt_forward`): kept for `verify` to report, out of
/// the way of the chain.
pub(crate) const AUDIT_ORPHAN_PREFIX: &str = "auditorphan/";
pub(crate) fn audit_orphan_key(writer: &str, seq: u64, random: &str) -> String {
    format!("{AUDIT_ORPHAN_PREFIX}{writer}/{seq:020}-{random}")
}

pub(crate) fn audit_head_key(writer: &str) -> String {
    format!("{AUDIT_HEAD_PREFIX}{writer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored spellings, byte for byte: existing stores must stay readable.
    #[test]
    fn spellings() {
        let v4: IpAddr = "10.0.0.7".parse().expect("an IPv4 address");
        let v6: IpAddr = "2001:db8::1".parse().expect("an IPv6 address");
        let table: &[(String, &str)] = &[
            (CLUSTER_KEY.into(), "cluster/meta"),
            (CLUSTER_PREFIX.into(), "cluster/"),
            (AUTHORITY_PREFIX.into(), "authority/"),
            (authority_key("api"), "authority/api"),
            (CERT_PREFIX.into(), "cert/"),
            (cert_key("0a1b"), "cert/0a1b"),
            (holder_cert_prefix(Namespace::Node, "n1"), "nodecert/n1/"),
            (
                holder_cert_prefix(Namespace::Operator, "alice"),
                "opcert/alice/",
            ),
            (
                holder_cert_prefix(Namespace::Server, "kith-server"),
                "servercert/kith-server/",
            ),
            (
                holder_cert_key(Namespace::Node, "n1", "0a1b"),
                "nodecert/n1/0a1b",
            ),
            (
                holder_cert_key(Namespace::Operator, "alice", "0a1b"),
                "opcert/alice/0a1b",
            ),
            (
                holder_cert_key(Namespace::Server, "s", "0a1b"),
                "servercert/s/0a1b",
            ),
            (SERVER_CERT_PREFIX.into(), "servercert/"),
            (OPERATOR_CERT_PREFIX.into(), "opcert/"),
            (server_key("kith-server-a"), "server/kith-server-a"),
            (REPLICA_PREFIX.into(), "replica/"),
            (replica_key("kith-server-a"), "replica/kith-server-a"),
            (lease_key("maintenance"), "lease/maintenance"),
            (REVOKED_PREFIX.into(), "revoked/"),
            (revoked_prefix("cluster"), "revoked/cluster/"),
            (revoked_key("cluster", "0a1b"), "revoked/cluster/0a1b"),
            (CRL_PREFIX.into(), "crl/"),
            (crl_key("cluster"), "crl/cluster"),
            (ROOT_CRL_PREFIX.into(), "rootcrl/"),
            (root_crl_key("cluster"), "rootcrl/cluster"),
            (NODE_PREFIX.into(), "node/"),
            (node_key("n1"), "node/n1"),
            (TOKEN_PREFIX.into(), "token/"),
            (token_key("00ff00ff00ff00ff"), "token/00ff00ff00ff00ff"),
            (reservation_prefix("n1"), "tokenname/n1/"),
            (reservation_key("n1", "00ff"), "tokenname/n1/00ff"),
            (ip_claim_key(v4), "ipclaim/0a000007"),
            (ip_claim_key(v6), "ipclaim/20010db8000000000000000000000001"),
            (dns_claim_key("db.example"), "dnsclaim/64622e6578616d706c65"),
            (SECRET_PREFIX.into(), "secret/"),
            (secret_key("db/password"), "secret/db/password"),
            (SECRET_VALUE_PREFIX.into(), "secretval/"),
            (secret_value_prefix("db/password"), "secretval/db/password/"),
            (
                secret_value_key("db/password", 7),
                "secretval/db/password/00000000000000000007",
            ),
            (
                audit_record_key("kith-server-a", 7),
                "audit/kith-server-a/00000000000000000007",
            ),
            (audit_head_key("kith-server-a"), "audithead/kith-server-a"),
        ];
        for (built, expected) in table {
            assert_eq!(built, expected);
        }
    }
}
