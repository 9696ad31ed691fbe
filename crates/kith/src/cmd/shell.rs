//! `kith completions SHELL` and `kith man DIR`: the parser itself, written
//! out for shells and for `man`, so they cannot drift from the flags.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use kith_api::ErrorCode;

use crate::output::CliError;

#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish (also elvish, powershell).
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub(crate) struct ManArgs {
    /// Directory to write the pages to (created if missing): kith.1 and one
    /// kith-<command>.1 per subcommand.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Print the completion script for `a.shell` on stdout.
pub(crate) fn completions(mut command: clap::Command, a: CompletionsArgs) -> Result<(), CliError> {
    // Into memory first: clap_complete panics when its writer fails (a
    // closed pipe), and a failed write here is an error like any other.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut command, "kith", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|e| {
            CliError::new(
                ErrorCode::IoError,
                format!("cannot write the completion script: {e}"),
            )
        })
}

/// Write a manual page per command and subcommand into `a.dir`.
pub(crate) fn man(command: clap::Command, a: ManArgs) -> Result<(), CliError> {
    let failed = |e: std::io::Error| {
        CliError::new(
            ErrorCode::IoError,
            format!("cannot write manual pages to {}: {e}", a.dir.display()),
        )
    };
    std::fs::create_dir_all(&a.dir).map_err(failed)?;
    clap_mangen::generate_to(command, &a.dir).map_err(failed)?;
    println!("manual pages written to {}", a.dir.display());
    Ok(())
}
