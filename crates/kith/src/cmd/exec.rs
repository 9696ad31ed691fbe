//! `kith exec`: run a command with secrets in its environment (and nowhere else).

use kith_api::ErrorCode;
use std::path::PathBuf;

use clap::Args;

use crate::output::CliError;

fn check_name(name: &str) -> Result<(), CliError> {
    kith_api::validate_secret_name(name).map_err(|m| CliError::new(ErrorCode::InvalidArgument, m))
}

#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// Node directory whose certificate reads the secrets.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// Server to read from when --dir was issued offline (`kith cert issue`)
    /// and records none; a joined directory uses the server it joined.
    #[arg(long, env = "KITH_SERVER", value_name = "ADDR")]
    server: Option<String>,
    /// VAR=secret-name: put the secret in the child's environment as VAR (repeatable).
    #[arg(long = "env", value_name = "VAR=SECRET", required = true)]
    env: Vec<String>,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub(crate) async fn exec(a: ExecArgs) -> Result<(), CliError> {
    use std::os::unix::ffi::OsStringExt;
    use std::os::unix::process::CommandExt;
    let mut pairs = Vec::new();
    for e in &a.env {
        let (var, name) = e.split_once('=').ok_or_else(|| {
            CliError::new(
                ErrorCode::InvalidArgument,
                format!("--env {e:?}: expected VAR=secret-name"),
            )
        })?;
        let var_ok = !var.is_empty()
            && !var.as_bytes()[0].is_ascii_digit()
            && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !var_ok {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!("--env {e:?}: {var:?} is not a variable name"),
            ));
        }
        check_name(name)?;
        pairs.push((var.to_string(), name.to_string()));
    }
    let mut conn = crate::admin::node_connect(&a.dir, a.server.as_deref()).await?;
    let mut cmd = std::process::Command::new(&a.command[0]);
    cmd.args(&a.command[1..]);
    for (var, name) in &pairs {
        let (_, value) = kith_agent::secrets::fetch_with(&mut conn, name, None).await?;
        if value.contains(&0) {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "secret {name} holds a NUL byte and cannot go into an environment variable"
                ),
            ));
        }
        cmd.env(var, std::ffi::OsString::from_vec(value.to_vec()));
    }
    // Replaces this process: the values live only in the child's environment.
    let err = cmd.exec();
    Err(CliError::new(
        ErrorCode::ExecFailed,
        format!("{}: {err}", a.command[0]),
    ))
}
