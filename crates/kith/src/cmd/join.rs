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
    /// Server address: host[:port] or https://host[:port].
    #[arg(long, env = "KITH_SERVER")]
    server: String,
    /// The join token (KITH1-…); else KITH_TOKEN.
    #[arg(long, env = "KITH_TOKEN", hide_env_values = true)]
    token: String,
    /// Node name (default: this host's name).
    #[arg(long)]
    name: Option<String>,
    /// Extra name for the certificate, DNS or IP (repeatable).
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
    /// Do not put this host's interface addresses in the certificate.
    #[arg(long)]
    no_interface_ips: bool,
    /// Replace an identity already in --dir.
    #[arg(long)]
    force: bool,
}

pub(crate) async fn join(a: JoinArgs, json: bool) -> Result<(), CliError> {
    let server = crate::admin::parse_server(&a.server)?;
    // An existing directory (a package's /var/lib/kith is often 0755) is
    // made 0700, or refused if others can write it, before the token is sent.
    if a.dir.symlink_metadata().is_ok() {
        kith_nodedir::tighten_private_dir(&a.dir)?;
    }
    let opts = kith_agent::JoinOptions {
        server,
        token: a.token,
        node: a.name,
        sans: a.san,
        dir: a.dir.clone(),
        profiles: a.profile,
        key_type: a.key_type,
        interface_ips: !a.no_interface_ips,
        force: a.force,
    };
    let id = kith_agent::join(&opts).await?;
    print_identity(&id, &a.dir, "joined", json);
    if !json {
        println!("keep it renewed: kith agent --dir {}", a.dir.display());
    }
    Ok(())
}
