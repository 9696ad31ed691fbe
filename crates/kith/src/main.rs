//! `kith`: the command-line front of kith. CLI parsing and wiring only; the
//! work is done by kith-authority (CA engine), kith-pki and kith-nodedir.

mod admin;
mod args;
mod cmd;
mod config;
mod duration;
mod metrics_http;
mod node_files;
mod output;
mod store_args;
mod util;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, CommandFactory, FromArgMatches, Parser, Subcommand};

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

    /// Print JSON on stdout instead of text (errors too, as {"error": ...}).
    #[arg(long, global = true)]
    json: bool,

    #[command(
        flatten,
        next_help_heading = "Store (without --store: the database in --data-dir)"
    )]
    store: store_args::StoreArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a cluster CA: root and intermediate, encrypted keys, operator credential.
    Init(cmd::init::InitArgs),
    /// CA facts and key export.
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
    /// Manage authorities (separate CA hierarchies inside the cluster).
    #[command(subcommand)]
    Authority(cmd::authority::AuthorityCommand),
    /// Issue, sign, inspect and verify certificates.
    #[command(subcommand)]
    Cert(cmd::cert::CertCommand),
    /// Revoke a certificate by serial, or every certificate of a node or of a server.
    Revoke(cmd::revoke::RevokeArgs),
    /// Write the current CRL of an authority (DER by default).
    Crl(cmd::crl::CrlArgs),
    /// Run the CA server: join, renewal, CRLs, operator API (HTTPS, mutual TLS).
    #[command(after_help = LOG_HELP)]
    Serve(cmd::serve::ServeArgs),
    /// Join tokens (through the server, with the operator credential).
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// Nodes (through the server, with the operator credential).
    #[command(subcommand)]
    Node(cmd::node::NodeCommand),
    /// kith servers (replicas): names, states, certificates.
    #[command(subcommand)]
    Server(cmd::server::ServerCommand),
    /// Operator credentials: renew, add, list, revoke.
    #[command(subcommand)]
    Admin(cmd::admin::AdminCommand),
    /// Authorities, validity left, nodes by state, tokens, CRL numbers;
    /// exits non-zero when something needs an operator (see below).
    #[command(after_help = cmd::status::EXIT_HELP)]
    Status(admin::AdminArgs),
    /// Join a cluster with a token: key made here, certificate from the server.
    Join(cmd::join::JoinArgs),
    /// Renew this node's certificate now.
    Renew(cmd::renew::RenewArgs),
    /// Keep this node's certificate, CA bundle, CRL and secrets fresh, forever.
    #[command(after_help = LOG_HELP)]
    Agent(cmd::agent::AgentArgs),
    /// Cluster secrets: encrypted, versioned, readable only by the nodes allowed.
    #[command(subcommand)]
    Secret(cmd::secret::SecretCommand),
    /// Run a command with secrets in its environment (and nowhere else).
    Exec(cmd::exec::ExecArgs),
    /// The CA passphrase.
    #[command(subcommand)]
    Passphrase(cmd::passphrase::PassphraseCommand),
    /// The master key that seals CA keys and secrets.
    #[command(subcommand)]
    Vault(cmd::vault::VaultCommand),
    /// Settings every replica shares: CRL validity, largest secret, versions kept.
    #[command(subcommand)]
    Settings(cmd::settings::SettingsCommand),
    /// The CA's store as a whole: copy it between data directories and NATS.
    #[command(subcommand)]
    Store(cmd::store::StoreCommand),
    /// Write every record of the CA's store to a file, still sealed (0600).
    Backup(cmd::backup::BackupArgs),
    /// Restore a backup into an empty data directory or store.
    Restore(cmd::backup::RestoreArgs),
    /// Print a shell completion script: kith completions bash|zsh|fish.
    Completions(cmd::shell::CompletionsArgs),
    /// Write the manual pages, one per command, into a directory.
    Man(cmd::shell::ManArgs),
    /// The audit trail: list it, verify its chains.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
}

/// Commands that run on a node and work on its node directory (`--dir`):
/// the CA's `--data-dir` means nothing to them, so it is neither offered in
/// their help nor accepted.
const NODE_COMMANDS: [&str; 4] = ["join", "renew", "agent", "exec"];

/// The parser: [`Cli`], with `--data-dir` taken away from the node commands
/// (a hidden argument of the same id stops the global one from reaching
/// them, and refuses any value with the way to say what was meant).
fn cli_command() -> clap::Command {
    let mut command = Cli::command();
    for name in NODE_COMMANDS {
        command = command.mut_subcommand(name, |sc| {
            let sc_name = sc.get_name().to_string();
            let sc = refuse_store_args(sc);
            sc.arg(
                Arg::new("data_dir")
                    .long("data-dir")
                    .hide(true)
                    .value_name("DIR")
                    .value_parser(move |_: &str| -> Result<String, String> {
                        Err(format!(
                            "`kith {sc_name}` works on a node directory (--dir), not a CA data directory (--data-dir)"
                        ))
                    }),
            )
        });
    }
    config::add_config_arg(command)
}

/// The store options (`--store`, `--nats-*`, ...) taken away from a node
/// command as `--data-dir` is: hidden, and refused with what was meant.
fn refuse_store_args(mut sc: clap::Command) -> clap::Command {
    for (id, long) in store_args::STORE_ARG_IDS {
        let sc_name = sc.get_name().to_string();
        sc = sc.arg(
            Arg::new(id)
                .long(long)
                .hide(true)
                .value_name("VALUE")
                .value_parser(move |_: &str| -> Result<String, String> {
                    Err(format!(
                        "`kith {sc_name}` works on a node directory (--dir), not on the CA's store (--{long})"
                    ))
                }),
        );
    }
    sc
}

/// Why the command line was not understood.
enum ParseFailure {
    /// clap refused it (or it asked for help or the version).
    Clap(clap::Error),
    /// The configuration file cannot be applied.
    Config(CliError),
}

/// Parse the command line; for `serve` and `agent`, again with the
/// configuration file's settings added ([`config::with_file`]).
fn parse() -> Result<Cli, ParseFailure> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let command = cli_command();
    let (mut matches, missing) = match command.clone().try_get_matches_from(&args) {
        Ok(m) => (m, None),
        // The file may hold what is missing (`--secrets` from the
        // environment, `secrets-dir` from the file): find the file from a
        // lenient parse; the second parse, with the file, judges it all.
        Err(e) if e.kind() == clap::error::ErrorKind::MissingRequiredArgument => {
            match command
                .clone()
                .ignore_errors(true)
                .try_get_matches_from(&args)
            {
                Ok(m) => (m, Some(e)),
                Err(_) => return Err(ParseFailure::Clap(e)),
            }
        }
        Err(e) => return Err(ParseFailure::Clap(e)),
    };
    match config::with_file(&command, &args, &matches).map_err(ParseFailure::Config)? {
        Some(args) => {
            matches = command
                .try_get_matches_from(args)
                .map_err(ParseFailure::Clap)?;
        }
        None => {
            if let Some(e) = missing {
                return Err(ParseFailure::Clap(e));
            }
        }
    }
    Cli::from_arg_matches_mut(&mut matches).map_err(ParseFailure::Clap)
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(ParseFailure::Config(e)) => {
            e.report(false);
            return ExitCode::FAILURE;
        }
        // A value our own parsers refused (a duration too long, a bad key
        // type) is an invalid argument like any other: `error[code]`, exit 1.
        Err(ParseFailure::Clap(e)) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error[{}]: {message}", kith_api::ErrorCode::InvalidArgument);
            return ExitCode::FAILURE;
        }
        // Help, version and usage errors: clap's own text and status.
        Err(ParseFailure::Clap(e)) => e.exit(),
    };
    // Completions and manual pages need no runtime, data directory or log.
    match cli.command {
        Command::Completions(a) => {
            return report(cmd::shell::completions(cli_command(), a), cli.json)
        }
        Command::Man(a) => return report(cmd::shell::man(cli_command(), a), cli.json),
        _ => {}
    }
    // Long-running commands say what they do; one-shot commands only warn.
    let default_level = match cli.command {
        Command::Serve(_) | Command::Agent(_) => "info",
        _ => "warn",
    };
    init_logging(default_level);
    let json = cli.json;
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
    let result = runtime.block_on(run(cli.command, data_dir, cli.store, json));
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

/// The exit status of a command run outside the runtime, its error reported.
fn report(result: Result<(), CliError>, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report(json);
            ExitCode::FAILURE
        }
    }
}

/// What `serve --help` and `agent --help` say about logs.
const LOG_HELP: &str = "Logs go to stderr, one line per event: an RFC 3339 timestamp in UTC, the level, \
the message and its fields; in colour only when stderr is a terminal. KITH_LOG sets what is logged: \
a level (error, warn, info, debug, trace) or directives per module (KITH_LOG=info,kith_agent=debug); \
the default is info for serve and agent, warn for every other command.";

/// One log format for every command: RFC 3339 UTC timestamps, and ANSI
/// colours only on a terminal (a journal or a file gets plain text).
fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KITH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_timer(tracing_subscriber::fmt::time::UtcTime::rfc_3339())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn run(
    command: Command,
    data_dir: Option<PathBuf>,
    store: store_args::StoreArgs,
    json: bool,
) -> Result<(), CliError> {
    let dir = util::Home::new(util::data_dir(data_dir)?, store);
    match command {
        Command::Init(a) => cmd::init::init(&dir, a, json).await,
        Command::Ca(c) => cmd::ca::run(&dir, c, json).await,
        Command::Authority(c) => cmd::authority::run(&dir, c).await,
        Command::Cert(c) => cmd::cert::run(&dir, c, json).await,
        Command::Revoke(a) => cmd::revoke::revoke(&dir, a, json).await,
        Command::Crl(a) => cmd::crl::crl(&dir, a).await,
        Command::Serve(a) => cmd::serve::serve(&dir, a).await,
        Command::Token(c) => cmd::token::run(&dir, c, json).await,
        Command::Node(c) => cmd::node::run(&dir, c, json).await,
        Command::Server(c) => cmd::server::run(&dir, c, json).await,
        Command::Admin(c) => cmd::admin::run(&dir, c, json).await,
        Command::Status(a) => cmd::status::status(&dir, a, json).await,
        Command::Join(a) => cmd::join::join(a, json).await,
        Command::Renew(a) => cmd::renew::renew(a, json).await,
        Command::Agent(a) => cmd::agent::agent(a).await,
        Command::Secret(c) => cmd::secret::run(&dir, c, json).await,
        Command::Exec(a) => cmd::exec::exec(a).await,
        Command::Passphrase(c) => cmd::passphrase::run(&dir, c).await,
        Command::Vault(c) => cmd::vault::run(&dir, c, json).await,
        Command::Settings(c) => cmd::settings::run(&dir, c, json).await,
        Command::Store(c) => cmd::store::run(dir.store_args(), c, json).await,
        Command::Backup(a) => cmd::backup::backup(&dir, a, json).await,
        Command::Restore(a) => cmd::backup::restore(&dir, a, json).await,
        // Answered in `main`, before the runtime.
        Command::Completions(_) | Command::Man(_) => Ok(()),
        Command::Audit(c) => cmd::audit::run(&dir, c, json).await,
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (duplicate flags, bad defaults), which
    /// otherwise fire only when the offending command is first run.
    #[test]
    fn node_commands_do_not_offer_the_data_dir() {
        let mut command = super::cli_command();
        command.build();
        for name in super::NODE_COMMANDS {
            let sc = command.find_subcommand_mut(name).expect("a node command");
            let help = sc.render_long_help().to_string();
            assert!(!help.contains("--data-dir"), "kith {name} --help:\n{help}");
        }
        let serve = command.find_subcommand_mut("serve").expect("serve");
        assert!(serve.render_long_help().to_string().contains("--data-dir"));
    }

    #[test]
    fn node_commands_do_not_offer_the_store() {
        let mut command = super::cli_command();
        command.build();
        for name in super::NODE_COMMANDS {
            let sc = command.find_subcommand_mut(name).expect("a node command");
            let help = sc.render_long_help().to_string();
            for (_, long) in super::store_args::STORE_ARG_IDS {
                assert!(
                    !help.contains(&format!("--{long}")),
                    "kith {name} --help:\n{help}"
                );
            }
        }
        let init = command.find_subcommand_mut("init").expect("init");
        assert!(init
            .render_long_help()
            .to_string()
            .contains("--store <URL>"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        super::cli_command().debug_assert();
    }
}
