//! `kith cert inspect`: describe certificates, CSRs, CRLs and keys.

use std::path::PathBuf;

use clap::Args;
use kith_pki::Inspected;
use time::OffsetDateTime;

use crate::output::{print_json, CliError};
use crate::util::{self, relative, rfc3339};

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// File to inspect (PEM or DER); `-` reads stdin.
    file: PathBuf,
}

pub(crate) fn cert_inspect(a: InspectArgs, json: bool) -> Result<(), CliError> {
    let data = util::read_input(&a.file, 16 * 1024 * 1024)?;
    let found = kith_pki::inspect(&data)?;
    if json {
        print_json(&found);
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    for (i, item) in found.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match item {
            Inspected::Certificate(c) => {
                println!("certificate");
                println!("  subject:     {}", c.subject);
                println!("  issuer:      {}", c.issuer);
                println!("  serial:      {}", c.serial);
                println!(
                    "  valid:       {} .. {} ({})",
                    rfc3339(c.not_before),
                    rfc3339(c.not_after),
                    relative(c.not_after, now)
                );
                println!("  key:         {}", c.key);
                println!("  signature:   {}", c.signature_algorithm);
                if c.is_ca {
                    match c.path_len {
                        Some(p) => println!("  CA:          yes, path length {p}"),
                        None => println!("  CA:          yes"),
                    }
                }
                if !c.sans.is_empty() {
                    println!("  SANs:        {}", c.sans.join(", "));
                }
                if !c.key_usage.is_empty() {
                    println!("  key usage:   {}", c.key_usage.join(", "));
                }
                if !c.extended_key_usage.is_empty() {
                    println!("  ext. usage:  {}", c.extended_key_usage.join(", "));
                }
                println!("  sha256:      {}", c.sha256_fingerprint);
                println!("  spki sha256: {}", c.spki_sha256);
            }
            Inspected::Csr(c) => {
                println!("certificate request");
                println!("  subject:     {}", c.subject);
                println!("  key:         {}", c.key);
                println!(
                    "  SANs:        {}",
                    if c.sans.is_empty() {
                        "(none)".to_string()
                    } else {
                        c.sans.join(", ")
                    }
                );
                println!(
                    "  signature:   {}",
                    if c.signature_valid {
                        "valid"
                    } else {
                        "INVALID"
                    }
                );
            }
            Inspected::Crl(c) => {
                println!("certificate revocation list");
                println!("  issuer:      {}", c.issuer);
                println!("  number:      {}", c.number.as_deref().unwrap_or("(none)"));
                println!("  this update: {}", rfc3339(c.this_update));
                match c.next_update {
                    Some(t) => println!("  next update: {} ({})", rfc3339(t), relative(t, now)),
                    None => println!("  next update: (none)"),
                }
                println!("  entries:     {}", c.revoked.len());
                for r in &c.revoked {
                    println!(
                        "    {}  {}  {}",
                        r.serial,
                        rfc3339(r.revoked_at),
                        r.reason.as_deref().unwrap_or("-")
                    );
                }
            }
            Inspected::Key(k) => {
                println!(
                    "{}",
                    if k.private {
                        "private key (secret parts not shown)"
                    } else {
                        "public key"
                    }
                );
                if k.encrypted {
                    println!("  encrypted:   yes (PKCS#8)");
                }
                if let Some(key) = &k.key {
                    println!("  key:         {key}");
                }
                if let Some(s) = &k.spki_sha256 {
                    println!("  spki sha256: {s}");
                }
            }
            _ => println!("(unsupported object)"),
        }
    }
    Ok(())
}
