//! One function per command: parse what the user gave, call the authority,
//! write files, print. No CA logic lives here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use kith_api::ErrorCode;
use kith_authority::{
    Authority, ClusterInfo, Identity, InitOptions, IssueRequest, Issued, KdfParams, RevokeOutcome,
    Settings, SystemClock, DEFAULT_AUTHORITY, LOCAL_OPERATOR,
};
use kith_nodedir as nodedir;
use kith_pki::{
    pem_encode, pem_encode_many, CaKind, CsrPolicy, Inspected, KeyType, PrivateKey, Profile,
    RevocationReason, San, Serial,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::output::{print_json, CliError};
use crate::util::{self, relative, rfc3339};

fn key_type_parser(s: &str) -> Result<KeyType, String> {
    s.parse().map_err(|e: kith_pki::Error| e.to_string())
}
fn profile_parser(s: &str) -> Result<Profile, String> {
    s.parse().map_err(|e: kith_pki::Error| e.to_string())
}
fn reason_parser(s: &str) -> Result<RevocationReason, String> {
    s.parse().map_err(|e: kith_pki::Error| e.to_string())
}
fn which_parser(s: &str) -> Result<CaKind, String> {
    match s {
        "root" => Ok(CaKind::Root),
        "intermediate" => Ok(CaKind::Intermediate),
        _ => Err("expected root or intermediate".into()),
    }
}

/// The CA passphrase flag shared by every command that unlocks keys.
#[derive(Args, Debug)]
pub(crate) struct PassphraseArg {
    /// File holding the CA passphrase (else KITH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

// ---------------------------------------------------------------- init

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
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
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
        dir,
        InitArgs {
            cluster: cluster.to_string(),
            key_type: KeyType::P256,
            passphrase_file: Some(passphrase_file.to_path_buf()),
            kdf_memory_mib: 19,
            json: false,
            dev: true,
        },
    )
    .await
}

pub(crate) async fn init(dir: &Path, a: InitArgs) -> Result<(), CliError> {
    kith_pki::validate_cluster_name(&a.cluster)?;
    // No prompt: without a file or variable, init generates the passphrase.
    let supplied = util::read_secret(a.passphrase_file.as_deref(), "KITH_PASSPHRASE", None)?;
    let (pass, generated) = match supplied {
        Some(p) => (p, false),
        None => (util::generate_passphrase()?, true),
    };
    let store = util::create_store(dir)?;
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
    stage_node_files(&batch, &admin_dir, &key, &issued, authority.cluster())?;
    batch.commit()?;

    let pin = hex::encode(kith_pki::spki_pin(
        &authority.root_cert(DEFAULT_AUTHORITY)?,
    )?);
    let now = OffsetDateTime::now_utc();
    if a.json {
        print_json(&json!({
            "cluster": authority.cluster(),
            "data_dir": dir,
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

/// `<data-dir>/ca.pem`: every authority's root.
fn write_bundle(dir: &Path, authority: &Authority) -> Result<(), CliError> {
    let pem = pem_encode_many("CERTIFICATE", authority.roots().iter().map(Vec::as_slice));
    nodedir::write_atomic(dir, nodedir::CA, pem.as_bytes(), nodedir::PUBLIC_MODE)?;
    Ok(())
}

fn stage_node_files(
    batch: &nodedir::Batch,
    dir: &Path,
    key: &PrivateKey,
    issued: &Issued,
    cluster: &str,
) -> Result<(), CliError> {
    let cert = pem_encode("CERTIFICATE", &issued.record.der);
    let chain = pem_encode_many("CERTIFICATE", issued.chain.iter().map(Vec::as_slice));
    let full = format!("{cert}{chain}");
    let ca = pem_encode("CERTIFICATE", &issued.root);
    let identity = json!({
        "cluster": cluster,
        "node": issued.record.node,
        "role": issued.record.role,
        "profile": issued.record.profile,
        "authority": issued.record.authority,
        "serial": issued.record.serial,
        "not_after": rfc3339(issued.record.not_after),
        "server": null,
    });
    let identity =
        serde_json::to_vec_pretty(&identity).map_err(|e| CliError::new(ErrorCode::Internal, e))?;
    let key = key.pkcs8_pem();
    batch.stage_dir(
        dir,
        &[
            (nodedir::KEY, key.as_bytes(), nodedir::KEY_MODE),
            (nodedir::CERT, cert.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::CHAIN, chain.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::FULLCHAIN, full.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::CA, ca.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::IDENTITY, &identity, nodedir::PUBLIC_MODE),
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- ca show

pub(crate) async fn ca_show(dir: &Path, json_out: bool) -> Result<(), CliError> {
    let store = util::open_store(dir)?;
    let info = ClusterInfo::load(&*store).await?;
    let now = OffsetDateTime::now_utc();
    let describe = |der: &[u8]| -> Result<serde_json::Value, CliError> {
        let found = kith_pki::inspect(der)?;
        let Some(Inspected::Certificate(c)) = found.into_iter().next() else {
            return Err(CliError::new(
                ErrorCode::IntegrityError,
                "stored CA certificate is not a certificate",
            ));
        };
        Ok(json!({
            "subject": c.subject,
            "serial": c.serial,
            "not_before": rfc3339(c.not_before),
            "not_after": rfc3339(c.not_after),
            "days_left": (c.not_after - now).whole_days(),
            "sha256_fingerprint": c.sha256_fingerprint,
        }))
    };
    let mut auths = Vec::new();
    for a in &info.authorities {
        auths.push(json!({
            "name": a.name,
            "key_type": a.key_type,
            "root": describe(&a.root_cert)?,
            "intermediate": describe(&a.intermediate_cert)?,
            "root_pin_sha256": hex::encode(kith_pki::spki_pin(&a.root_cert)?),
        }));
    }
    if json_out {
        print_json(&json!({
            "cluster": info.cluster,
            "created": rfc3339(info.created),
            "authorities": auths,
        }));
        return Ok(());
    }
    println!(
        "cluster {} (initialised {})",
        info.cluster,
        rfc3339(info.created)
    );
    for a in &auths {
        println!();
        println!(
            "authority {} ({})",
            a["name"].as_str().unwrap_or("?"),
            a["key_type"].as_str().unwrap_or("?")
        );
        for which in ["root", "intermediate"] {
            let c = &a[which];
            println!(
                "  {which:<13} {}  expires {} ({} days left)",
                c["subject"].as_str().unwrap_or("?"),
                c["not_after"].as_str().unwrap_or("?"),
                c["days_left"]
            );
        }
        println!(
            "  {:<13} sha256:{}",
            "root pin",
            a["root_pin_sha256"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- ca export-key

#[derive(Args, Debug)]
pub(crate) struct ExportKeyArgs {
    /// Authority whose key to export.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Which key: root or intermediate.
    #[arg(long, value_parser = which_parser)]
    which: CaKind,
    /// Where to write the encrypted key (mode 0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// File holding the passphrase for the exported key (else
    /// KITH_EXPORT_PASSPHRASE, else a prompt). At least 12 characters.
    #[arg(long, value_name = "FILE")]
    export_passphrase_file: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
}

pub(crate) async fn export_key(dir: &Path, a: ExportKeyArgs) -> Result<(), CliError> {
    if a.out.exists() && !a.force {
        return Err(
            CliError::new(ErrorCode::Exists, format!("{} exists", a.out.display()))
                .hint("pass --force to replace it"),
        );
    }
    let export_pass = util::read_secret(
        a.export_passphrase_file.as_deref(),
        "KITH_EXPORT_PASSPHRASE",
        Some(util::Prompt {
            text: "Passphrase for the exported key: ",
            confirm: true,
        }),
    )?
    .ok_or_else(|| {
        CliError::new(
            ErrorCode::PassphraseRequired,
            "the exported key needs its own passphrase",
        )
        .hint("pass --export-passphrase-file FILE or set KITH_EXPORT_PASSPHRASE")
    })?;
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let pem = authority
        .export_key(
            &a.authority,
            a.which,
            export_pass.as_bytes(),
            LOCAL_OPERATOR,
        )
        .await?;
    let (parent, name) = split_path(&a.out)?;
    nodedir::write_atomic(&parent, &name, pem.as_bytes(), nodedir::KEY_MODE)?;
    eprintln!(
        "wrote the {} key of authority {} to {} (PKCS#8, PBES2 AES-256-CBC; `openssl pkey -in {} -passin file:...` reads it)",
        a.which.as_str(),
        a.authority,
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

fn split_path(p: &Path) -> Result<(PathBuf, String), CliError> {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            CliError::new(
                ErrorCode::InvalidArgument,
                format!("{} is not a file path", p.display()),
            )
        })?
        .to_string();
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

// ---------------------------------------------------------------- authority add

#[derive(Args, Debug)]
pub(crate) struct AuthorityAddArgs {
    /// Name of the new authority (a DNS label, e.g. api).
    name: String,
    /// Key type of its root and intermediate.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    #[command(flatten)]
    pass: PassphraseArg,
}

pub(crate) async fn authority_add(dir: &Path, a: AuthorityAddArgs) -> Result<(), CliError> {
    kith_pki::validate_label("authority name", &a.name)?;
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    authority.add_authority(&a.name, a.key_type).await?;
    write_bundle(dir, &authority)?;
    let pin = hex::encode(kith_pki::spki_pin(&authority.root_cert(&a.name)?)?);
    println!(
        "added authority {} ({}); root pin sha256:{pin}",
        a.name, a.key_type
    );
    println!(
        "issue from it with `kith cert issue ... --authority {}`",
        a.name
    );
    Ok(())
}

// ---------------------------------------------------------------- cert issue

#[derive(Args, Debug)]
pub(crate) struct IssueArgs {
    /// Node names (DNS labels), one folder each.
    #[arg(required = true, value_name = "NODE")]
    nodes: Vec<String>,
    /// Role of these nodes (a DNS label, e.g. worker).
    #[arg(long)]
    role: String,
    /// Profile: peer, server, client, admin.
    #[arg(long, default_value = "peer", value_parser = profile_parser)]
    profile: Profile,
    /// Extra SAN for every node: a DNS name or an IP address. Repeatable.
    #[arg(long = "san", value_name = "NAME|IP")]
    sans: Vec<String>,
    /// Directory under which each node's folder is created.
    #[arg(long, default_value = ".", value_name = "DIR")]
    out: PathBuf,
    /// Lifetime, e.g. 90d, 12h (default: the profile's, 90 days).
    #[arg(long, value_parser = util::parse_cert_ttl)]
    ttl: Option<Duration>,
    /// Key type of the node keys.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    /// Authority to issue from.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Replace node folders that already hold a key.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn cert_issue(dir: &Path, a: IssueArgs) -> Result<(), CliError> {
    // Check everything before touching keys or state.
    let mut seen = BTreeSet::new();
    for n in &a.nodes {
        kith_pki::validate_label("node name", n)?;
        if !seen.insert(n.as_str()) {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!("node {n} is named twice"),
            ));
        }
    }
    kith_pki::validate_label("role", &a.role)?;
    let sans: Vec<San> = a
        .sans
        .iter()
        .map(|s| s.parse::<San>())
        .collect::<Result<_, _>>()?;
    if !a.force {
        if let Some(n) = a
            .nodes
            .iter()
            .find(|n| a.out.join(n).join(nodedir::KEY).exists())
        {
            return Err(CliError::new(
                ErrorCode::Exists,
                format!("{} already holds a key", a.out.join(n).display()),
            )
            .hint("pass --force to issue a new key and certificate over it"));
        }
    }
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    authority.root_cert(&a.authority)?; // unknown authority: fail before generating keys

    let n = a.nodes.len();
    let bar = progress_bar(n as u64 * 4, n >= 50);
    bar.set_message("generating keys");
    let key_type = a.key_type;
    let keys = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            (0..n)
                .into_par_iter()
                .map(|_| {
                    let k = PrivateKey::generate(key_type);
                    bar.inc(1);
                    k
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| CliError::new(ErrorCode::Internal, e))??
    };
    bar.set_message("signing and recording");
    let reqs = a
        .nodes
        .iter()
        .zip(&keys)
        .map(|(node, key)| IssueRequest {
            identity: Identity {
                node: node.clone(),
                role: a.role.clone(),
                profile: a.profile,
                authority: Some(a.authority.clone()),
                ttl: a.ttl,
            },
            public_key: key.public_key(),
            extra_sans: sans.clone(),
        })
        .collect();
    let tick = bar.clone();
    let results = authority
        .issue_many(reqs, Arc::new(move || tick.inc(1)))
        .await;
    let issued: Vec<Issued> = results.into_iter().collect::<Result<_, _>>()?;

    bar.set_message("writing files");
    let out = a.out.clone();
    let cluster = authority.cluster().to_string();
    let written = {
        let bar = bar.clone();
        let issued = issued.clone();
        tokio::task::spawn_blocking(move || -> Result<(), CliError> {
            use rayon::prelude::*;
            nodedir::create_dir(&out)?;
            let batch = nodedir::Batch::new();
            keys.par_iter().zip(issued.par_iter()).try_for_each(
                |(key, iss)| -> Result<(), CliError> {
                    let node_dir = out.join(&iss.record.node);
                    stage_node_files(&batch, &node_dir, key, iss, &cluster)?;
                    bar.inc(1);
                    Ok(())
                },
            )?;
            batch.commit()?;
            Ok(())
        })
    };
    written
        .await
        .map_err(|e| CliError::new(ErrorCode::Internal, e))??;
    bar.finish_and_clear();

    let now = OffsetDateTime::now_utc();
    if let Some(t) = issued.iter().find(|i| i.truncated) {
        eprintln!(
            "warning: the lifetime was cut to the issuing intermediate's expiry ({})",
            rfc3339(t.record.not_after)
        );
    }
    if a.json {
        print_json(&json!(issued
            .iter()
            .map(|i| json!({
                "node": i.record.node,
                "serial": i.record.serial,
                "profile": i.record.profile,
                "not_after": rfc3339(i.record.not_after),
                "truncated": i.truncated,
                "dir": a.out.join(&i.record.node),
            }))
            .collect::<Vec<_>>()));
    } else if n <= 20 {
        for i in &issued {
            println!(
                "{:<20} serial {}  expires {}  {}",
                i.record.node,
                i.record.serial,
                relative(i.record.not_after, now),
                a.out.join(&i.record.node).display()
            );
        }
    } else {
        println!(
            "issued {n} {} certificates for role {} under {}",
            a.profile,
            a.role,
            a.out.display()
        );
    }
    Ok(())
}

pub(crate) fn progress_bar(len: u64, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {msg:24} [{bar:30}] {percent:>3}% {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

// ---------------------------------------------------------------- cert sign

#[derive(Args, Debug)]
pub(crate) struct SignArgs {
    /// The CSR (PEM or DER); `-` reads stdin.
    csr: PathBuf,
    /// Node name to issue to (the CSR's subject is ignored).
    #[arg(long)]
    name: String,
    /// Role.
    #[arg(long)]
    role: String,
    /// Profile: peer, server, client, admin.
    #[arg(long, default_value = "peer", value_parser = profile_parser)]
    profile: Profile,
    /// Lifetime, e.g. 90d.
    #[arg(long, value_parser = util::parse_cert_ttl)]
    ttl: Option<Duration>,
    /// Authority to issue from.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// A DNS name the CSR may ask for besides the node's own. Repeatable.
    #[arg(long = "allow-san", value_name = "DNS")]
    allow_san: Vec<String>,
    /// Allow wildcard names (each must also be given with --allow-san).
    #[arg(long)]
    allow_wildcards: bool,
    /// Refuse IP address SANs.
    #[arg(long)]
    no_ip_sans: bool,
    /// Write the chain PEM (leaf, then intermediate) here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    pass: PassphraseArg,
    /// Print JSON instead of PEM.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn cert_sign(dir: &Path, a: SignArgs) -> Result<(), CliError> {
    kith_pki::validate_label("node name", &a.name)?;
    kith_pki::validate_label("role", &a.role)?;
    // Read a little past the CSR limit so oversized input is named as such.
    let csr = util::read_input(&a.csr, 4 * 1024 * 1024)?;
    // Reject a bad CSR before asking for the passphrase.
    kith_pki::parse_csr(&csr).map_err(kith_authority::Error::from)?;
    let policy = CsrPolicy {
        allow_ip: !a.no_ip_sans,
        allow_wildcards: a.allow_wildcards,
        allowed_dns: a.allow_san.iter().map(|s| s.to_ascii_lowercase()).collect(),
        ..CsrPolicy::default()
    };
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let issued = authority
        .sign_csr(
            &csr,
            Identity {
                node: a.name.clone(),
                role: a.role.clone(),
                profile: a.profile,
                authority: Some(a.authority.clone()),
                ttl: a.ttl,
            },
            Some(&policy),
        )
        .await?;
    let pem = format!(
        "{}{}",
        pem_encode("CERTIFICATE", &issued.record.der),
        pem_encode_many("CERTIFICATE", issued.chain.iter().map(Vec::as_slice))
    );
    if issued.truncated {
        eprintln!(
            "warning: the lifetime was cut to the issuing intermediate's expiry ({})",
            rfc3339(issued.record.not_after)
        );
    }
    if let Some(out) = &a.out {
        let (parent, name) = split_path(out)?;
        nodedir::write_atomic(&parent, &name, pem.as_bytes(), nodedir::PUBLIC_MODE)?;
    }
    if a.json {
        print_json(&json!({
            "node": issued.record.node,
            "serial": issued.record.serial,
            "not_after": rfc3339(issued.record.not_after),
            "sans": issued.record.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "chain_pem": pem,
        }));
    } else if a.out.is_none() {
        print!("{pem}");
    } else {
        eprintln!(
            "issued serial {} to {}",
            issued.record.serial, issued.record.node
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- cert inspect

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// File to inspect (PEM or DER); `-` reads stdin.
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn cert_inspect(a: InspectArgs) -> Result<(), CliError> {
    let data = util::read_input(&a.file, 16 * 1024 * 1024)?;
    let found = kith_pki::inspect(&data)?;
    if a.json {
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

// ---------------------------------------------------------------- cert verify

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The certificate (leaf first; intermediates may follow, as in fullchain.pem).
    file: PathBuf,
    /// Require this node name.
    #[arg(long)]
    name: Option<String>,
    /// Require this role.
    #[arg(long)]
    role: Option<String>,
    /// Require the usages of this profile (default: the recorded profile).
    #[arg(long, value_parser = profile_parser)]
    profile: Option<Profile>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn cert_verify(dir: &Path, a: VerifyArgs) -> Result<(), CliError> {
    let data = util::read_input(&a.file, 1024 * 1024)?;
    let certs = kith_pki::certs_from_pem_or_der(&data)?;
    let leaf = &certs[0];
    let store = util::open_store(dir)?;
    let info = ClusterInfo::load(&*store).await?;
    let now = OffsetDateTime::now_utc();
    let Some(Inspected::Certificate(c)) = kith_pki::inspect(leaf)?.into_iter().next() else {
        return Err(CliError::new(
            ErrorCode::MalformedInput,
            "not a certificate",
        ));
    };
    let serial = Serial::parse(&c.serial).ok();
    let recorded = match &serial {
        Some(s) => match kith_authority::find_certificate(&*store, s).await {
            Ok(found) => Some(found),
            Err(kith_authority::Error::UnknownCertificate(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let profile = a
        .profile
        .or(recorded.as_ref().map(|(r, _)| r.profile))
        .unwrap_or(if c.extended_key_usage.iter().any(|e| e == "clientAuth") {
            Profile::Client
        } else {
            Profile::Server
        });
    // CRLs that are current are checked by the verifier; the store's own
    // revocation records (always current) are checked below as well.
    let mut crls = Vec::new();
    for auth in &info.authorities {
        if let Some(crl) = kith_authority::stored_crl(&*store, &auth.name).await? {
            if crl.next_update > now {
                crls.push(crl.der);
            }
        }
    }
    let mut intermediates = certs[1..].to_vec();
    intermediates.extend(info.intermediates());
    let mut problems: Vec<(ErrorCode, String)> = Vec::new();
    if let Err(e) = kith_pki::verify_chain(leaf, &intermediates, &info.roots(), &crls, now, profile)
    {
        problems.push((e.code(), e.to_string()));
    }
    if let Some((_, Some(rev))) = &recorded {
        if !problems.iter().any(|(c, _)| *c == ErrorCode::Revoked) {
            problems.push((
                ErrorCode::Revoked,
                format!("revoked {} ({})", rfc3339(rev.revoked_at), rev.reason),
            ));
        }
    }
    let cn = c.common_name.as_deref().unwrap_or("");
    let ou = c.organizational_unit.as_deref().unwrap_or("");
    if let Some(want) = &a.name {
        let fqdn = format!("DNS:{want}.{}", info.cluster);
        if cn != want || !c.sans.contains(&fqdn) {
            problems.push((
                ErrorCode::IdentityMismatch,
                format!("certificate is for {cn:?}, not {want:?}"),
            ));
        }
    }
    if let Some(want) = &a.role {
        if ou != want {
            problems.push((
                ErrorCode::IdentityMismatch,
                format!("certificate has role {ou:?}, not {want:?}"),
            ));
        }
    }
    let revoked = problems.iter().any(|(c, _)| *c == ErrorCode::Revoked);
    if a.json {
        print_json(&json!({
            "valid": problems.is_empty(),
            "serial": c.serial,
            "node": cn,
            "role": ou,
            "profile": profile,
            "not_after": rfc3339(c.not_after),
            "revoked": revoked,
            "recorded": recorded.is_some(),
            "problems": problems.iter().map(|(code, msg)| json!({"code": code, "message": msg})).collect::<Vec<_>>(),
        }));
    } else if problems.is_empty() {
        println!(
            "OK: {cn} (role {ou}, {profile}) chains to cluster {}, expires {}, not revoked",
            info.cluster,
            relative(c.not_after, now)
        );
    }
    match problems.first() {
        None => Ok(()),
        Some((code, _)) => {
            let all: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            let mut e = CliError::new(
                *code,
                format!("{} does not verify: {}", a.file.display(), all.join("; ")),
            );
            e.json_printed = a.json;
            Err(e)
        }
    }
}

// ---------------------------------------------------------------- cert ls

#[derive(Args, Debug)]
pub(crate) struct LsArgs {
    /// Only this node's certificates.
    #[arg(long)]
    node: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn cert_ls(dir: &Path, a: LsArgs) -> Result<(), CliError> {
    let store = util::open_store(dir)?;
    let mut all = kith_authority::list_certificates(&*store).await?;
    if let Some(n) = &a.node {
        all.retain(|(c, _)| c.node == *n);
    }
    all.sort_by(|(a, _), (b, _)| (&a.node, a.issued_at).cmp(&(&b.node, b.issued_at)));
    let now = OffsetDateTime::now_utc();
    if a.json {
        print_json(&json!(all
            .iter()
            .map(|(c, r)| json!({
                "serial": c.serial,
                "node": c.node,
                "role": c.role,
                "profile": c.profile,
                "authority": c.authority,
                "not_after": rfc3339(c.not_after),
                "fingerprint_sha256": c.fingerprint,
                "revoked": r.as_ref().map(|r| json!({"reason": r.reason, "at": rfc3339(r.revoked_at)})),
            }))
            .collect::<Vec<_>>()));
        return Ok(());
    }
    for (c, r) in &all {
        let state = match r {
            Some(r) => format!("revoked ({})", r.reason),
            None if c.not_after <= now => "expired".to_string(),
            None => relative(c.not_after, now),
        };
        println!(
            "{:<20} {:<10} {:<7} {}  {}",
            c.node,
            c.role,
            c.profile.as_str(),
            c.serial,
            state
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- revoke

#[derive(Args, Debug)]
pub(crate) struct RevokeArgs {
    /// Serial number (hex, as `kith cert inspect` or openssl prints it).
    #[arg(required_unless_present = "node", conflicts_with = "node")]
    serial: Option<String>,
    /// Revoke every unexpired certificate of this node instead.
    #[arg(long)]
    node: Option<String>,
    /// Reason: unspecified, key-compromise, ca-compromise, affiliation-changed,
    /// superseded, cessation-of-operation, privilege-withdrawn.
    #[arg(long, default_value = "unspecified", value_parser = reason_parser)]
    reason: RevocationReason,
    /// CRL validity for the CRL published after the revocation, e.g. 7d
    /// (offline only: a server uses its own).
    #[arg(long, value_parser = util::parse_crl_validity, default_value = "7d")]
    crl_validity: Duration,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: crate::online::AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn revoke(dir: &Path, a: RevokeArgs) -> Result<(), CliError> {
    let serial = a.serial.as_deref().map(Serial::parse).transpose()?;
    if let Some(n) = &a.node {
        kith_pki::validate_label("node name", n)?;
    }
    // A running server owns the store: go through it when one is configured.
    if crate::online::revoke_online(
        dir,
        &a.admin,
        serial.as_ref().map(Serial::to_hex).as_deref(),
        a.node.as_deref(),
        a.reason.as_str(),
        a.json,
    )
    .await?
    .is_some()
    {
        return Ok(());
    }
    let settings = Settings {
        crl_validity: a.crl_validity,
        ..Settings::default()
    };
    let authority = util::unlock(dir, a.pass.passphrase_file.as_deref(), settings).await?;
    let outcomes = match (&serial, &a.node) {
        (Some(s), _) => vec![authority.revoke(s, a.reason, LOCAL_OPERATOR).await?],
        (None, Some(n)) => authority.revoke_node(n, a.reason, LOCAL_OPERATOR).await?,
        (None, None) => {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                "give a SERIAL or --node NAME",
            ))
        }
    };
    let mut crl_numbers = Vec::new();
    for o in &outcomes {
        let auth = &o.record().authority;
        if !crl_numbers.iter().any(|(a, _)| a == auth) {
            let crl = authority.crl(auth).await?;
            crl_numbers.push((auth.clone(), crl.number));
        }
    }
    if a.json {
        print_json(&json!({
            "results": outcomes.iter().map(|o| {
                let r = o.record();
                json!({
                    "serial": r.serial,
                    "node": r.node,
                    "authority": r.authority,
                    "reason": r.reason,
                    "revoked_at": rfc3339(r.revoked_at),
                    "already_revoked": matches!(o, RevokeOutcome::AlreadyRevoked(_)),
                })
            }).collect::<Vec<_>>(),
            "crl_numbers": crl_numbers.iter().map(|(a, n)| json!({"authority": a, "number": n})).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    for o in &outcomes {
        let r = o.record();
        match o {
            RevokeOutcome::Revoked(_) => {
                println!(
                    "revoked {} (node {}, reason {})",
                    r.serial, r.node, r.reason
                )
            }
            RevokeOutcome::AlreadyRevoked(_) => println!(
                "{} (node {}) was already revoked at {} with reason {}; nothing changed",
                r.serial,
                r.node,
                rfc3339(r.revoked_at),
                r.reason
            ),
        }
    }
    for (auth, number) in crl_numbers {
        println!("CRL of authority {auth} is now number {number}: publish it with `kith crl --authority {auth} --out FILE`");
    }
    Ok(())
}

// ---------------------------------------------------------------- crl

#[derive(Args, Debug)]
pub(crate) struct CrlArgs {
    /// Authority whose CRL to write.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// PEM instead of DER.
    #[arg(long)]
    pem: bool,
    /// Validity of a newly signed CRL (nextUpdate − thisUpdate), e.g. 7d.
    #[arg(long, value_parser = util::parse_crl_validity, default_value = "7d")]
    validity: Duration,
    /// Sign a new CRL even if the stored one is still fresh.
    #[arg(long)]
    force_new: bool,
    #[command(flatten)]
    pass: PassphraseArg,
}

pub(crate) async fn crl(dir: &Path, a: CrlArgs) -> Result<(), CliError> {
    use std::io::{IsTerminal, Write};
    if a.out.is_none() && !a.pem && std::io::stdout().is_terminal() {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "refusing to write a binary CRL to a terminal",
        )
        .hint("pass --pem, or --out FILE"));
    }
    let settings = Settings {
        crl_validity: a.validity,
        ..Settings::default()
    };
    let authority = util::unlock(dir, a.pass.passphrase_file.as_deref(), settings).await?;
    let record = if a.force_new {
        authority.regenerate_crl(&a.authority).await?
    } else {
        authority.crl(&a.authority).await?
    };
    let bytes = if a.pem {
        pem_encode("X509 CRL", &record.der).into_bytes()
    } else {
        record.der.clone()
    };
    match &a.out {
        Some(out) => {
            let (parent, name) = split_path(out)?;
            nodedir::write_atomic(&parent, &name, &bytes, nodedir::PUBLIC_MODE)?;
            eprintln!(
                "CRL #{} of authority {}: {} entries, next update {}",
                record.number,
                a.authority,
                record.entries,
                rfc3339(record.next_update)
            );
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| CliError::new(ErrorCode::IoError, e))?,
    }
    Ok(())
}
