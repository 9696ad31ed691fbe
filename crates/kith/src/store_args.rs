//! Which store holds the CA's records: the embedded database in the data
//! directory (the default), or a NATS JetStream bucket that several
//! `kith serve` replicas share (`--store nats://...`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kith_api::ErrorCode;
use kith_store_nats::NatsOptions;

use crate::output::CliError;

/// `--store-replicas` by default: the backend's (3), as clap's type.
const DEFAULT_REPLICAS: u8 = kith_store_nats::DEFAULT_REPLICAS as u8;

/// The store options, global like `--data-dir`: `init`, `serve` and every
/// command that opens the CA's store read them; `kith store copy` applies
/// them to its NATS side(s).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct StoreArgs {
    /// The CA's store: a NATS JetStream cluster, nats://host:port[,host:port...],
    /// shared by several `kith serve` replicas. Without it, the embedded
    /// database in --data-dir. With it, --data-dir keeps only what is local
    /// to this machine (the operator credential copy admin/, server.json).
    #[arg(long, global = true, env = "KITH_STORE", value_name = "URL", value_parser = parse_store_url)]
    pub(crate) store: Option<String>,
    /// The NATS key-value bucket that holds the CA's records.
    #[arg(long, global = true, env = "KITH_STORE_BUCKET", value_name = "NAME", default_value = kith_store_nats::DEFAULT_BUCKET, value_parser = parse_bucket)]
    store_bucket: String,
    /// Replicas of the bucket's stream when kith creates it (1 to 5).
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_REPLICAS, value_parser = clap::value_parser!(u8).range(1..=5))]
    store_replicas: u8,
    /// NATS credentials file (JWT and nkey seed); must be readable by its owner only.
    #[arg(long, global = true, value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// CA certificates (PEM) that sign the NATS servers' certificates (requires TLS).
    #[arg(long, global = true, value_name = "FILE")]
    nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a NATS cluster that requires one; with --nats-key.
    #[arg(long, global = true, value_name = "FILE")]
    nats_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, owner-only); with --nats-cert.
    #[arg(long, global = true, value_name = "FILE")]
    nats_key: Option<PathBuf>,
    /// How long NATS operations are retried (leader elections, reconnects)
    /// before they fail, in seconds. Hidden: the default suits a cluster;
    /// tests shorten it.
    #[arg(long, global = true, hide = true, env = "KITH_STORE_RETRY_SECS", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    store_retry_secs: Option<u64>,
}

/// Ids of the arguments above, for the commands that refuse them (the node
/// commands, as they refuse `--data-dir`).
pub(crate) const STORE_ARG_IDS: [(&str, &str); 8] = [
    ("store", "store"),
    ("store_bucket", "store-bucket"),
    ("store_replicas", "store-replicas"),
    ("nats_creds", "nats-creds"),
    ("nats_ca", "nats-ca"),
    ("nats_cert", "nats-cert"),
    ("nats_key", "nats-key"),
    ("store_retry_secs", "store-retry-secs"),
];

/// `--store`: a NATS address list (checked as the backend parses it).
fn parse_store_url(s: &str) -> Result<String, String> {
    NatsOptions::from_url(s)?;
    Ok(s.to_string())
}

/// `--store-bucket`: NATS allows letters, digits, `-` and `_` in a bucket name.
fn parse_bucket(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "{s:?} is not a bucket name (1 to 64 letters, digits, '-' or '_')"
        ));
    }
    Ok(s.to_string())
}

impl StoreArgs {
    /// Whether `--store` names a NATS cluster.
    pub(crate) fn is_nats(&self) -> bool {
        self.store.is_some()
    }

    /// The NATS options of `--store`, or `None` for the embedded store. A
    /// `--nats-*` option without `--store` is refused rather than ignored.
    pub(crate) fn nats(&self) -> Result<Option<NatsOptions>, CliError> {
        match &self.store {
            Some(url) => self.nats_for(url).map(Some),
            None => {
                self.refuse_stray_options("--store nats://...")?;
                Ok(None)
            }
        }
    }

    /// A `--nats-*` option given where no NATS store is named.
    pub(crate) fn refuse_stray_options(&self, needs: &str) -> Result<(), CliError> {
        let given = [
            ("--nats-creds", self.nats_creds.is_some()),
            ("--nats-ca", self.nats_ca.is_some()),
            ("--nats-cert", self.nats_cert.is_some()),
            ("--nats-key", self.nats_key.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!("{flag} applies to a NATS store only: it needs {needs}"),
            ));
        }
        Ok(())
    }

    /// The options for the NATS store at `url` (`nats://host:port[,...]`),
    /// with the bucket, replicas, credentials and TLS files given. Every
    /// file is checked here, before anything is created or connected: the
    /// credentials and the client key as the data directory's key is
    /// (owner-only), the certificates readable.
    pub(crate) fn nats_for(&self, url: &str) -> Result<NatsOptions, CliError> {
        let mut opts =
            NatsOptions::from_url(url).map_err(|e| CliError::new(ErrorCode::InvalidArgument, e))?;
        opts.bucket = self.store_bucket.clone();
        opts.replicas = usize::from(self.store_replicas);
        if let Some(secs) = self.store_retry_secs {
            opts.retry_window = Duration::from_secs(secs);
        }
        if let Some(creds) = &self.nats_creds {
            check_secret_file(creds)?;
            opts.creds = Some(creds.clone());
        }
        if let Some(ca) = &self.nats_ca {
            check_readable(ca)?;
            opts.ca = Some(ca.clone());
        }
        opts.client_cert = match (&self.nats_cert, &self.nats_key) {
            (Some(cert), Some(key)) => {
                check_readable(cert)?;
                check_secret_file(key)?;
                Some((cert.clone(), key.clone()))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(CliError::new(
                    ErrorCode::InvalidArgument,
                    "--nats-cert needs --nats-key (the certificate's private key)",
                ))
            }
            (None, Some(_)) => {
                return Err(CliError::new(
                    ErrorCode::InvalidArgument,
                    "--nats-key needs --nats-cert (the certificate it belongs to)",
                ))
            }
        };
        Ok(opts)
    }
}

/// A NATS credentials file or private key, which the NATS client opens by
/// path: checked as a passphrase file is (owner-only, a regular file, a
/// link followed to what it reaches, in a directory others cannot write);
/// the bytes read are wiped at once.
fn check_secret_file(path: &Path) -> Result<(), CliError> {
    kith_nodedir::read_private_file(path)?;
    Ok(())
}

/// A certificate file given for NATS: there and readable (no secret in it).
fn check_readable(path: &Path) -> Result<(), CliError> {
    std::fs::File::open(path).map(drop).map_err(|e| {
        CliError::new(
            ErrorCode::InvalidArgument,
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

/// The addresses of a NATS store, as an error message names them.
pub(crate) fn describe(opts: &NatsOptions) -> String {
    format!("{} (bucket {})", opts.servers.join(","), opts.bucket)
}
