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

/// Write a manual page per command and subcommand into `a.dir`, each
/// rendered in memory and written as a new file renamed over the old one:
/// a link planted under a page's name (`sudo kith man /tmp/man`) is
/// replaced, never written through.
pub(crate) fn man(command: clap::Command, a: ManArgs) -> Result<(), CliError> {
    let failed = |e: String| {
        CliError::new(
            ErrorCode::IoError,
            format!("cannot write manual pages to {}: {e}", a.dir.display()),
        )
    };
    std::fs::create_dir_all(&a.dir).map_err(|e| failed(e.to_string()))?;
    // As clap_mangen::generate_to walks it, but into memory.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    render_pages(command, &mut pages).map_err(|e| failed(e.to_string()))?;
    for (name, page) in pages {
        kith_nodedir::write_atomic(&a.dir, &name, &page, 0o644)
            .map_err(|e| failed(e.to_string()))?;
    }
    println!("manual pages written to {}", a.dir.display());
    Ok(())
}

/// `(file name, page)` for `command` and every visible subcommand under it.
fn render_pages(command: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    for sc in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_pages(sc.clone(), pages)?;
    }
    let man = clap_mangen::Man::new(command);
    let mut page = Vec::new();
    man.render(&mut page)?;
    pages.push((man.get_filename(), page));
    Ok(())
}
