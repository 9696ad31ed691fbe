//! `kith`: the command-line front of kith. CLI parsing and wiring only; the
//! work is done by kith-authority (CA engine), kith-pki and kith-nodedir.

mod commands;
mod duration;
mod online;
mod output;
mod secret_cmds;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::output::CliError;

/// kith: cluster identity. A certificate authority for the nodes of a
/// distributed system: issue, inspect, verify, revoke.
#[derive(Parser, Debug)]
#[command(name = "kith", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Data directory of the CA (database, ca.pem, admin credential).
    /// Default: $XDG_DATA_HOME/kith or ~/.local/share/kith.
    #[arg(long, global = true, env = "KITH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a cluster CA: root and intermediate, encrypted keys, operator credential.
    Init(commands::InitArgs),
    /// CA facts and key export.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Manage authorities (separate CA hierarchies inside the cluster).
    #[command(subcommand)]
    Authority(AuthorityCommand),
    /// Issue, sign, inspect and verify certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Revoke a certificate by serial, or every certificate of a node.
    Revoke(commands::RevokeArgs),
    /// Write the current CRL of an authority (DER by default).
    Crl(commands::CrlArgs),
    /// Run the CA server: join, renewal, CRLs, operator API (HTTPS, mutual TLS).
    Serve(online::ServeArgs),
    /// Join tokens (through the server, with the operator credential).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Nodes (through the server, with the operator credential).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Authorities, validity left, nodes by state, tokens, CRL numbers.
    Status(online::AdminJsonArgs),
    /// Join a cluster with a token: key made here, certificate from the server.
    Join(online::JoinArgs),
    /// Renew this node's certificate now.
    Renew(online::RenewArgs),
    /// Keep this node's certificate, CA bundle, CRL and secrets fresh, forever.
    Agent(online::AgentArgs),
    /// Cluster secrets: encrypted, versioned, readable only by the nodes allowed.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Run a command with secrets in its environment (and nowhere else).
    Exec(secret_cmds::ExecArgs),
    /// The CA passphrase.
    #[command(subcommand)]
    Passphrase(PassphraseCommand),
    /// The master key that seals CA keys and secrets.
    #[command(subcommand)]
    Vault(VaultCommand),
}

#[derive(Subcommand, Debug)]
enum SecretCommand {
    /// Write a new version (value from --from-file or stdin).
    Put(secret_cmds::PutArgs),
    /// Read a value (as an operator, or as a node with --dir).
    #[command(disable_version_flag = true)]
    Get(secret_cmds::GetArgs),
    /// Secrets: name, versions, size, who may read, updated; never values.
    Ls(online::AdminJsonArgs),
    /// A secret's versions.
    History(secret_cmds::HistoryArgs),
    /// Remove a secret, or one version.
    #[command(disable_version_flag = true)]
    Rm(secret_cmds::RmArgs),
}

#[derive(Subcommand, Debug)]
enum PassphraseCommand {
    /// Wrap the master key under a new passphrase (nothing else is rewritten).
    Change(secret_cmds::PassphraseChangeArgs),
}

#[derive(Subcommand, Debug)]
enum VaultCommand {
    /// A new master key: reseal every CA key and secret data key under it.
    Rotate(secret_cmds::RotateArgs),
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Mint a join token (printed once; only its hash is kept).
    Create(online::TokenCreateArgs),
    /// List tokens (never their secrets).
    Ls(online::AdminJsonArgs),
    /// Revoke a token so it can no longer be used.
    Revoke(online::TokenRevokeArgs),
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Nodes: name, role, state, serial, expiry, last renewal.
    Ls(online::AdminJsonArgs),
    /// Remove a node: revoke its certificates; it can never renew again.
    Rm(online::NodeRmArgs),
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Authorities, roots, intermediates, validity left and SPKI pins.
    Show(JsonFlag),
    /// Export a CA private key as PKCS#8 ENCRYPTED PRIVATE KEY (openssl reads it).
    ExportKey(commands::ExportKeyArgs),
}

#[derive(Subcommand, Debug)]
enum AuthorityCommand {
    /// Add an authority with its own root and intermediate.
    Add(commands::AuthorityAddArgs),
}

#[derive(Subcommand, Debug)]
enum CertCommand {
    /// Generate keys and certificates for nodes, one folder per node.
    Issue(commands::IssueArgs),
    /// Sign a CSR made elsewhere; the chain PEM goes to stdout or --out.
    Sign(commands::SignArgs),
    /// Describe a certificate, chain, CSR, CRL or key (public parts only).
    Inspect(commands::InspectArgs),
    /// Verify a certificate against the cluster: chain, validity, revocation, identity.
    Verify(commands::VerifyArgs),
    /// List every certificate this CA has issued.
    Ls(commands::LsArgs),
}

/// `--json`: machine-readable output on stdout.
#[derive(Args, Debug)]
struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A value our own parsers refused (a duration too long, a bad key
        // type) is an invalid argument like any other: `error[code]`, exit 1.
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error[{}]: {message}", kith_api::ErrorCode::InvalidArgument);
            return ExitCode::FAILURE;
        }
        // Help, version and usage errors: clap's own text and status.
        Err(e) => e.exit(),
    };
    // Long-running commands say what they do; one-shot commands only warn.
    let default_level = match cli.command {
        Command::Serve(_) | Command::Agent(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KITH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let json = cli_wants_json(&cli.command);
    let is_agent = matches!(cli.command, Command::Agent(_));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "error[{}]: cannot start the async runtime: {e}",
                kith_api::ErrorCode::Internal
            );
            return ExitCode::FAILURE;
        }
    };
    let data_dir = cli.data_dir.clone();
    let result = runtime.block_on(run(cli.command, data_dir));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report(json);
            // The agent says "only a new token can help" with its own
            // status, so a service manager knows not to restart it.
            if is_agent && e.needs_new_token {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn cli_wants_json(cmd: &Command) -> bool {
    match cmd {
        Command::Init(a) => a.json,
        Command::Ca(CaCommand::Show(j)) => j.json,
        Command::Cert(CertCommand::Issue(a)) => a.json,
        Command::Cert(CertCommand::Sign(a)) => a.json,
        Command::Cert(CertCommand::Inspect(a)) => a.json,
        Command::Cert(CertCommand::Verify(a)) => a.json,
        Command::Cert(CertCommand::Ls(a)) => a.json,
        Command::Revoke(a) => a.json,
        Command::Token(TokenCommand::Create(a)) => a.json,
        Command::Token(TokenCommand::Ls(a)) => a.json,
        Command::Token(TokenCommand::Revoke(a)) => a.json,
        Command::Node(NodeCommand::Ls(a)) => a.json,
        Command::Node(NodeCommand::Rm(a)) => a.json,
        Command::Status(a) => a.json,
        Command::Join(a) => a.json,
        Command::Renew(a) => a.json,
        Command::Secret(SecretCommand::Put(a)) => a.json,
        Command::Secret(SecretCommand::Get(a)) => a.json,
        Command::Secret(SecretCommand::Ls(a)) => a.json,
        Command::Secret(SecretCommand::History(a)) => a.json,
        Command::Secret(SecretCommand::Rm(a)) => a.json,
        Command::Vault(VaultCommand::Rotate(a)) => a.json,
        _ => false,
    }
}

async fn run(cmd: Command, data_dir: Option<PathBuf>) -> Result<(), CliError> {
    let dir = util::data_dir(data_dir)?;
    match cmd {
        Command::Init(a) => commands::init(&dir, a).await,
        Command::Ca(CaCommand::Show(j)) => commands::ca_show(&dir, j.json).await,
        Command::Ca(CaCommand::ExportKey(a)) => commands::export_key(&dir, a).await,
        Command::Authority(AuthorityCommand::Add(a)) => commands::authority_add(&dir, a).await,
        Command::Cert(CertCommand::Issue(a)) => commands::cert_issue(&dir, a).await,
        Command::Cert(CertCommand::Sign(a)) => commands::cert_sign(&dir, a).await,
        Command::Cert(CertCommand::Inspect(a)) => commands::cert_inspect(a),
        Command::Cert(CertCommand::Verify(a)) => commands::cert_verify(&dir, a).await,
        Command::Cert(CertCommand::Ls(a)) => commands::cert_ls(&dir, a).await,
        Command::Revoke(a) => commands::revoke(&dir, a).await,
        Command::Crl(a) => commands::crl(&dir, a).await,
        Command::Serve(a) => online::serve(&dir, a).await,
        Command::Token(TokenCommand::Create(a)) => online::token_create(&dir, a).await,
        Command::Token(TokenCommand::Ls(a)) => online::token_ls(&dir, a).await,
        Command::Token(TokenCommand::Revoke(a)) => online::token_revoke(&dir, a).await,
        Command::Node(NodeCommand::Ls(a)) => online::node_ls(&dir, a).await,
        Command::Node(NodeCommand::Rm(a)) => online::node_rm(&dir, a).await,
        Command::Status(a) => online::status(&dir, a).await,
        Command::Join(a) => online::join(a).await,
        Command::Renew(a) => online::renew(a).await,
        Command::Agent(a) => online::agent(a).await,
        Command::Secret(SecretCommand::Put(a)) => secret_cmds::put(&dir, a).await,
        Command::Secret(SecretCommand::Get(a)) => secret_cmds::get(&dir, a).await,
        Command::Secret(SecretCommand::Ls(a)) => secret_cmds::ls(&dir, a).await,
        Command::Secret(SecretCommand::History(a)) => secret_cmds::history(&dir, a).await,
        Command::Secret(SecretCommand::Rm(a)) => secret_cmds::rm(&dir, a).await,
        Command::Exec(a) => secret_cmds::exec(a).await,
        Command::Passphrase(PassphraseCommand::Change(a)) => {
            secret_cmds::passphrase_change(&dir, a).await
        }
        Command::Vault(VaultCommand::Rotate(a)) => secret_cmds::vault_rotate(&dir, a).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (duplicate flags, bad defaults), which
    /// otherwise fire only when the offending command is first run.
    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
