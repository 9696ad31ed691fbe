//! How operator commands reach a running server: its address (flag,
//! variable, or the `server.json` that `kith serve` writes) and the operator
//! credential presented over mutual TLS.

use kith_api::ErrorCode;
use std::path::{Path, PathBuf};

use clap::Args;
use kith_agent::{Connection, ServerAddr};

use crate::output::CliError;

/// Written by `serve` in its data directory so admin commands on the same
/// machine find it.
pub(crate) const SERVER_FILE: &str = "server.json";

/// How admin commands find the server and the operator credential.
#[derive(Args, Debug, Clone)]
pub(crate) struct AdminArgs {
    /// Server address (else KITH_SERVER, else the server.json that `kith
    /// serve` writes in the data directory).
    #[arg(long, env = "KITH_SERVER", value_name = "ADDR")]
    pub(crate) server: Option<String>,
    /// Operator credential directory (else KITH_ADMIN_DIR, else <data-dir>/admin).
    #[arg(long, env = "KITH_ADMIN_DIR", value_name = "DIR")]
    admin_dir: Option<PathBuf>,
}

impl AdminArgs {
    /// The server to talk to, if one is configured anywhere.
    pub(crate) fn server(&self, data_dir: &Path) -> Result<Option<ServerAddr>, CliError> {
        if let Some(s) = &self.server {
            return Ok(Some(parse_server(s)?));
        }
        let f = data_dir.join(SERVER_FILE);
        let Ok(bytes) = std::fs::read(&f) else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::new(ErrorCode::InvalidConfig, format!("{}: {e}", f.display()))
        })?;
        let url = v["server"].as_str().ok_or_else(|| {
            CliError::new(
                ErrorCode::InvalidConfig,
                format!("{}: no \"server\"", f.display()),
            )
        })?;
        Ok(Some(parse_server(url)?))
    }

    pub(crate) async fn connect_to(
        &self,
        data_dir: &Path,
        server: &ServerAddr,
    ) -> Result<Connection, CliError> {
        let admin = self
            .admin_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("admin"));
        if !admin.join(kith_nodedir::KEY).exists() {
            return Err(CliError::new(
                ErrorCode::NoAdminCredential,
                format!("no operator credential in {}", admin.display()),
            )
            .hint("pass --admin-dir (the admin/ folder `kith init` wrote) or set KITH_ADMIN_DIR"));
        }
        let config = kith_agent::api_client_config(&admin)?;
        Ok(Connection::open(server, config).await?)
    }

    pub(crate) async fn connect(&self, data_dir: &Path) -> Result<Connection, CliError> {
        let server = self.server(data_dir)?.ok_or_else(|| {
            CliError::new(ErrorCode::NoServer, "which server? none is configured")
                .hint("pass --server HOST:PORT or set KITH_SERVER (run `kith serve` first)")
        })?;
        self.connect_to(data_dir, &server).await
    }
}

/// A server address as users write it (`host`, `host:port`, `https://host[:port]`).
pub(crate) fn parse_server(s: &str) -> Result<ServerAddr, CliError> {
    ServerAddr::parse(s).map_err(|e| CliError::new(e.code(), e))
}

/// A mutual-TLS connection as the node of directory `dir`, to the server
/// it records or, for a directory issued offline (`kith cert issue`,
/// which records none), to `server` (`--server` / `KITH_SERVER`).
pub(crate) async fn node_connect(dir: &Path, server: Option<&str>) -> Result<Connection, CliError> {
    let identity = kith_nodedir::NodeIdentity::load(dir)?;
    let addr = match (identity.server(dir), server) {
        (Ok(recorded), _) => recorded.clone(),
        (Err(_), Some(s)) => parse_server(s)?,
        (Err(e), None) => {
            return Err(CliError::from(e)
                .hint("pass --server HOST:PORT (or set KITH_SERVER) to name the server"))
        }
    };
    // Asks for the node's authority's chain, as the agent does.
    Ok(kith_agent::connect_to(dir, &identity, &addr).await?)
}
