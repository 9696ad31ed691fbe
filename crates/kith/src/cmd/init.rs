//! `kith init`: a new cluster CA and its operator credential.

use kith_api::ErrorCode;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use kith_authority::{
    Authority, Identity, InitOptions, IssueRequest, KdfParams, Settings, SystemClock,
    DEFAULT_AUTHORITY,
};
use kith_nodedir as nodedir;
use kith_pki::{KeyType, PrivateKey, Profile};
use serde_json::json;
use time::OffsetDateTime;

use crate::args::key_type_parser;
use crate::node_files::{stage_node_files, write_bundle};
use crate::output::{print_json, CliError};
use crate::util::{self, relative, Home};

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Cluster (trust domain) name, a DNS name such as prod.example.
    #[arg(long)]
    cluster: String,
    /// CA key type: p256, p384, p521, ed25519, rsa2048, rsa3072, rsa4096.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    /// File holding the passphrase to encrypt the CA keys with (else
    /// KITH_PASSPHRASE; without either, a strong one is generated and printed once).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Argon2id memory cost in MiB (19 at least).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    kdf_memory_mib: u32,
    /// Set by `serve --dev`, which prints its own next steps.
    #[arg(skip)]
    dev: bool,
}

/// `init` for `serve --dev`: P-256, the Argon2id minimum (the passphrase
/// is random and the CA throwaway), passphrase from `passphrase_file`.
pub(crate) async fn init_quiet(
    dir: &Path,
    cluster: &str,
    passphrase_file: &Path,
) -> Result<(), CliError> {
    init(
        &Home::embedded(dir.to_path_buf()),
        InitArgs {
            cluster: cluster.to_string(),
            key_type: KeyType::P256,
            passphrase_file: Some(passphrase_file.to_path_buf()),
            kdf_memory_mib: 19,
            dev: true,
        },
        false,
    )
    .await
}

pub(crate) async fn init(dir: &Home, a: InitArgs, json: bool) -> Result<(), CliError> {
    kith_pki::validate_cluster_name(&a.cluster)?;
    // No prompt: without a file or variable, init generates the passphrase.
    let supplied = util::read_secret(a.passphrase_file.as_deref(), "KITH_PASSPHRASE", None)?;
    let (pass, generated) = match supplied {
        Some(p) => (p, false),
        None => (util::generate_passphrase()?, true),
    };
    let store = util::create_store(dir).await?;
    let kdf = KdfParams {
        m_kib: a.kdf_memory_mib.saturating_mul(1024),
        ..KdfParams::default()
    };
    let authority = Authority::init(
        store,
        Arc::new(SystemClock),
        InitOptions {
            cluster: a.cluster.clone(),
            key_type: a.key_type,
            kdf,
        },
        pass.as_bytes(),
        Settings::default(),
    )
    .await?;
    write_bundle(dir, &authority)?;

    // The operator credential for the online API: an admin-profile leaf.
    let key = tokio::task::spawn_blocking(move || PrivateKey::generate(a.key_type))
        .await
        .map_err(|e| CliError::new(ErrorCode::Internal, e))??;
    let issued = authority
        .issue(IssueRequest {
            identity: Identity {
                node: "admin".into(),
                role: "admin".into(),
                profile: Profile::Admin,
                authority: None,
                ttl: None,
            },
            public_key: key.public_key(),
            extra_sans: Vec::new(),
        })
        .await?;
    let admin_dir = dir.join("admin");
    let batch = nodedir::Batch::new();
    stage_node_files(&batch, &admin_dir, &key, &issued, authority.cluster(), &[])?;
    batch.commit()?;

    let pin = hex::encode(kith_pki::spki_pin(
        &authority.root_cert(DEFAULT_AUTHORITY)?,
    )?);
    let now = OffsetDateTime::now_utc();
    // Where the records went: NATS, or the database in the data directory.
    let store = match dir.store_args().nats()? {
        Some(opts) => crate::store_args::describe(&opts),
        None => dir.join(util::DB_FILE).display().to_string(),
    };
    if json {
        print_json(&json!({
            "cluster": authority.cluster(),
            "data_dir": &**dir,
            "store": store,
            "key_type": a.key_type,
            "root_pin_sha256": pin,
            "bundle": dir.join(nodedir::CA),
            "admin_dir": admin_dir,
            "generated_passphrase": if generated { Some(pass.as_str()) } else { None },
        }));
    } else {
        println!(
            "Initialised cluster {} in {}",
            authority.cluster(),
            dir.display()
        );
        println!(
            "  authority:   {DEFAULT_AUTHORITY} ({}), root and intermediate",
            a.key_type
        );
        println!("  store:       {store}");
        println!("  root pin:    sha256:{pin}");
        println!("  trust bundle: {}", dir.join(nodedir::CA).display());
        println!(
            "  operator credential: {}/ (admin profile, expires {})",
            admin_dir.display(),
            relative(issued.record.not_after, now)
        );
        if generated {
            println!();
            println!("CA PASSPHRASE (shown once; kith keeps no copy):");
            println!();
            println!("    {}", pass.as_str());
            println!();
            println!("Store it in your password manager now. Every command that uses the CA");
            println!("keys reads it from --passphrase-file FILE or the KITH_PASSPHRASE variable.");
        }
        if a.dev {
            return Ok(());
        }
        println!();
        println!("Next:");
        println!("  kith ca show");
        println!("  kith cert issue node-1 node-2 node-3 --role worker --out ./nodes");
        println!("  openssl verify -CAfile ./nodes/node-1/ca.pem -untrusted ./nodes/node-1/chain.pem ./nodes/node-1/cert.pem");
    }
    if generated {
        eprintln!("warning: a passphrase was generated and printed above; it is not stored anywhere and cannot be recovered");
    }
    Ok(())
}
