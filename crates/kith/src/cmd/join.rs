//! `kith join`: a token in, a node directory out (kith-agent does the work).

use std::path::PathBuf;

use clap::Args;
use kith_pki::{KeyType, Profile};

use crate::args::key_type_parser;
use crate::node_files::print_identity;
use crate::output::CliError;

fn profile_parser(s: &str) -> Result<Profile, String> {
    s.trim().parse().map_err(|e: kith_pki::Error| e.to_string())
}

#[derive(Args, Debug)]
pub(crate) struct JoinArgs {
    /// Server address: host[:port] or https://host[:port]; several replicas
    /// comma-separated, tried in turn while one is out of service.
    #[arg(long, env = "KITH_SERVER")]
    server: String,
    /// The join token (KITH1-…); else KITH_TOKEN.
    #[arg(long, env = "KITH_TOKEN", hide_env_values = true)]
    token: String,
    /// Node name. Default: the name the token was minted for (`token create
    /// --name`), else this host's name.
    #[arg(long)]
    name: Option<String>,
    /// Extra name for the certificate, DNS or IP (repeatable). A DNS name
    /// needs a token that allows it (`kith token create --allow-san NAME`);
    /// an address another node holds is refused (`ip-taken`) unless the
    /// token allows it.
    #[arg(long)]
    san: Vec<String>,
    /// Node directory to write.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// Profiles, comma-separated: peer, server, client.
    #[arg(long, default_value = "peer", value_delimiter = ',', value_parser = profile_parser)]
    profile: Vec<Profile>,
    /// Key type for the node key.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    /// Do not put this host's interface addresses in the certificate (an
    /// address another live node holds is left out anyway).
    #[arg(long)]
    no_interface_ips: bool,
    /// Replace an identity already in --dir.
    #[arg(long)]
    force: bool,
}

pub(crate) async fn join(a: JoinArgs, json: bool) -> Result<(), CliError> {
    let servers = crate::admin::parse_servers(&a.server)?;
    // An existing directory (a package's /var/lib/kith is often 0755) is
    // made 0700, or refused if others can write it, before the token is sent.
    if a.dir.symlink_metadata().is_ok() {
        kith_nodedir::tighten_private_dir(&a.dir)?;
    }
    let named_sans = a.san.clone();
    let mut opts = kith_agent::JoinOptions {
        server: servers[0].clone(),
        token: a.token,
        node: a.name,
        sans: a.san,
        dir: a.dir.clone(),
        profiles: a.profile,
        key_type: a.key_type,
        interface_ips: !a.no_interface_ips,
        force: a.force,
    };
    // An RSA key takes seconds (4096 bits: up to a minute on a slow
    // machine): say so, rather than look hung.
    if opts.key_type.is_rsa() && !json {
        eprintln!(
            "generating an {} key for the node; RSA keys can take a while",
            opts.key_type
        );
    }
    // Each replica in turn while one is out of service (unreachable, 5xx);
    // a refusal is the answer.
    let mut attempt = 0;
    let id = loop {
        opts.server = servers[attempt].clone();
        match kith_agent::join(&opts).await {
            Err(e) if e.is_outage() && attempt + 1 < servers.len() => {
                tracing::warn!(server = %opts.server, error = %e, "server out of service; trying the next replica");
                attempt += 1;
            }
            other => break other?,
        }
    };
    print_identity(&id, &a.dir, "joined", json);
    if !json && !a.no_interface_ips {
        let left_out = left_out_addresses(&a.dir, &named_sans);
        if !left_out.is_empty() {
            println!(
                "left out of the certificate (another node holds them): {}",
                left_out.join(", ")
            );
        }
    }
    if !json {
        println!("keep it renewed: kith agent --dir {}", a.dir.display());
    }
    Ok(())
}

/// This host's interface addresses that the certificate just written does
/// not carry: the server left them out because another live node holds
/// them (several nodes on one host). Best effort: it only informs.
fn left_out_addresses(dir: &std::path::Path, named: &[String]) -> Vec<String> {
    let Ok(pem) = std::fs::read(dir.join(kith_nodedir::CERT)) else {
        return Vec::new();
    };
    let carried: Vec<String> = match kith_pki::inspect(&pem).ok().as_deref() {
        Some([kith_pki::Inspected::Certificate(c), ..]) => c.sans.clone(),
        _ => return Vec::new(),
    };
    kith_agent::interface_addresses()
        .into_iter()
        .map(|ip| ip.to_canonical().to_string())
        .filter(|ip| !named.contains(ip) && !carried.contains(&format!("IP:{ip}")))
        .collect()
}
