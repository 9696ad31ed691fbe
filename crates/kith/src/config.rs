//! The configuration file of `kith serve` and `kith agent`: `--config FILE`,
//! else `KITH_CONFIG`, else `/etc/kith/kith.toml` if it exists.
//!
//! ```toml
//! [serve]
//! listen = "0.0.0.0:7443"
//! passphrase-file = "/etc/kith/passphrase"
//!
//! [agent]
//! dir = "/var/lib/kith"
//! secrets = ["db-password"]
//! secrets-dir = "/run/kith/secrets"
//! ```
//!
//! A table per command, its keys the command's long flag names. The file
//! is applied by the parser itself: every setting that neither a flag nor
//! an environment variable gave ([`clap::ArgMatches::value_source`]), and
//! that conflicts with none they gave, is appended to the command line as
//! `--key=value` and the line is parsed again, so the precedence is flag >
//! environment > file > default and a value from the file meets exactly
//! the checks a flag meets. Each value is checked on its own first, so that
//! a bad one is reported with the file and the key.
//!
//! The file can name commands to run (`exec`) and where the CA's keys are,
//! so it is read only if nobody but root or this user could have written
//! it ([`kith_nodedir::read_trusted_file`]), as sshd reads its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use kith_api::ErrorCode;

use crate::output::CliError;

/// Where the file is looked for when neither `--config` nor `KITH_CONFIG`
/// names one (its absence is fine).
pub(crate) const DEFAULT_CONFIG: &str = "/etc/kith/kith.toml";

/// The commands a configuration file configures, each by its own table.
pub(crate) const CONFIG_COMMANDS: [&str; 2] = ["serve", "agent"];

/// The id of the `--config` argument.
const CONFIG_ID: &str = "config";

/// A config file is an operator's few lines; anything this large is not one.
const MAX_CONFIG_BYTES: u64 = kith_nodedir::MAX_FILE_BYTES;

/// Give `serve` and `agent` their `--config FILE` (also `KITH_CONFIG`).
pub(crate) fn add_config_arg(mut command: Command) -> Command {
    for name in CONFIG_COMMANDS {
        command = command.mut_subcommand(name, |sc| {
            sc.arg(
                Arg::new(CONFIG_ID)
                    .long("config")
                    .env("KITH_CONFIG")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(format!(
                        "Configuration file: a [{name}] table whose keys are this command's long \
                         flag names. Flags and environment variables win over it. \
                         Default: {DEFAULT_CONFIG}, if it exists"
                    )),
            )
        });
    }
    command
}

/// The command line with the configuration file's settings added, or
/// `None` when there is no file to apply (another command, or no file).
pub(crate) fn with_file(
    command: &Command,
    args: &[OsString],
    matches: &ArgMatches,
) -> Result<Option<Vec<OsString>>, CliError> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(None);
    };
    if !CONFIG_COMMANDS.contains(&name) {
        return Ok(None);
    }
    let (path, explicit) = match sub.get_one::<PathBuf>(CONFIG_ID) {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let Some(table) = read(&path, explicit)? else {
        return Ok(None);
    };
    let mut built = command.clone();
    built.build();
    let error = |key: &str, why: String| {
        CliError::new(
            ErrorCode::InvalidConfig,
            format!("{}: key `{key}`: {why}", path.display()),
        )
    };
    let mut out = args.to_vec();
    // The running command's settings taken from the file, to find two
    // that cannot go together before clap does (it would not name the file).
    let mut applied: Vec<(String, &Arg)> = Vec::new();
    for (table_name, value) in table {
        // Both tables are checked, whichever command runs: a mistake in
        // one is found the first time either command starts.
        let Some(sc) = CONFIG_COMMANDS
            .contains(&table_name.as_str())
            .then(|| built.find_subcommand(&table_name))
            .flatten()
        else {
            return Err(error(
                &table_name,
                format!(
                    "unknown key: the file holds a table per command ({})",
                    CONFIG_COMMANDS.map(|c| format!("[{c}]")).join(", ")
                ),
            ));
        };
        let toml::Value::Table(settings) = value else {
            return Err(error(
                &table_name,
                format!("expected a table [{table_name}]"),
            ));
        };
        for (k, v) in settings {
            let full = format!("{table_name}.{k}");
            let arg = setting(sc, &k).map_err(|why| error(&full, why))?;
            let args = as_args(arg, &k, &v).map_err(|why| error(&full, why))?;
            // Only the running command's table applies, and only where
            // neither a flag nor an environment variable said otherwise.
            if table_name == name
                && !is_explicit(sub, arg)
                && !sc
                    .get_arguments()
                    .any(|other| is_explicit(sub, other) && conflict(sc, arg, other))
            {
                if let Some((other, _)) = applied.iter().find(|(_, a)| conflict(sc, arg, a)) {
                    return Err(error(
                        &full,
                        format!("cannot be used with key `{other}`: keep one of the two"),
                    ));
                }
                applied.push((full, arg));
                out.extend(args);
            }
        }
    }
    Ok(Some(out))
}

/// Whether a flag or an environment variable gave `arg`: then the file's
/// setting for it, or for any argument it conflicts with, is left out.
fn is_explicit(matches: &ArgMatches, arg: &Arg) -> bool {
    matches!(
        matches.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Whether `a` and `b` of the (built) command `sc` cannot be given
/// together, whichever of the two declares it.
fn conflict(sc: &Command, a: &Arg, b: &Arg) -> bool {
    // clap's walk for a global argument panics on a conflict with a group;
    // kith's global arguments (data directory, store, `--json`) have none.
    let declares = |x: &Arg, y: &Arg| {
        !x.is_global_set()
            && sc
                .get_arg_conflicts_with(x)
                .iter()
                .any(|c| c.get_id() == y.get_id())
    };
    a.get_id() != b.get_id() && (declares(a, b) || declares(b, a))
}

/// The file as a table; `None` when the default file is absent. Refused
/// unless only root or this user could have written it.
fn read(path: &Path, explicit: bool) -> Result<Option<toml::Table>, CliError> {
    let failed = |why: String| {
        CliError::new(
            ErrorCode::InvalidConfig,
            format!("{}: {why}", path.display()),
        )
    };
    let bytes = match kith_nodedir::read_trusted_file(path) {
        Ok(b) => b,
        Err(e) if e.is_not_found() && !explicit => return Ok(None),
        Err(e) if e.code() == ErrorCode::FileTooLarge => {
            return Err(failed(format!(
                "larger than {MAX_CONFIG_BYTES} bytes: not a configuration file"
            )))
        }
        Err(e) if e.code() == ErrorCode::IoError => {
            return Err(failed(format!("cannot read the configuration file: {e}")))
        }
        // Owner, mode or type: the message names the file or directory,
        // what is wrong and the chmod/chown that fixes it.
        Err(e) => {
            return Err(CliError::new(
                e.code(),
                format!("configuration file {}: {e}", path.display()),
            ))
        }
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| failed("not UTF-8 text".into()))?;
    text.parse::<toml::Table>()
        .map(Some)
        .map_err(|e| failed(format!("not valid TOML: {}", e.to_string().trim_end())))
}

/// The argument of `sc` that key `k` sets.
fn setting<'a>(sc: &'a Command, k: &str) -> Result<&'a Arg, String> {
    if k == "passphrase" {
        return Err(
            "a secret never lives in the configuration file: name the file that holds it \
             (passphrase-file)"
                .into(),
        );
    }
    if k == "dev" {
        // Left in /etc/kith/kith.toml it would turn every `kith serve` into
        // a throwaway CA, and no flag turns a switch from the file off.
        return Err(
            "a throwaway CA is asked for on the command line only (`kith serve --dev`): \
             remove the key"
                .into(),
        );
    }
    sc.get_arguments()
        .find(|a| {
            a.get_long() == Some(k)
                && !a.is_hide_set()
                && !matches!(a.get_id().as_str(), CONFIG_ID | "help" | "version")
        })
        .ok_or_else(|| {
            format!(
                "unknown key: `kith {}` has no flag --{k} (`kith {} --help` lists them)",
                sc.get_name(),
                sc.get_name()
            )
        })
}

/// `--k=value` arguments for `value`, each value checked by the flag's own
/// parser first.
fn as_args(arg: &Arg, k: &str, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let scalar = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            other => Err(format!(
                "expected a string or a number, found {}",
                other.type_str()
            )),
        }
    };
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => Ok(vec![format!("--{k}").into()]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            other => Err(format!(
                "expected true or false, found {}",
                other.type_str()
            )),
        },
        ArgAction::Set => {
            let v = scalar(value)?;
            check(arg, &v)?;
            Ok(vec![format!("--{k}={v}").into()])
        }
        ArgAction::Append => {
            let values = match value {
                toml::Value::Array(items) => {
                    items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?
                }
                v => vec![scalar(v)?],
            };
            values
                .into_iter()
                .map(|v| {
                    check(arg, &v)?;
                    Ok(format!("--{k}={v}").into())
                })
                .collect()
        }
        _ => Err("this flag cannot be set from the configuration file".into()),
    }
}

/// Run `value` through the flag's own parser (ranges, durations,
/// addresses, possible values): the reason is clap's.
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Command::new("config")
        .no_binary_name(true)
        .arg(
            Arg::new("value")
                .long("value")
                .value_parser(arg.get_value_parser().clone())
                .action(ArgAction::Set)
                .num_args(1)
                .allow_hyphen_values(true),
        )
        .try_get_matches_from([format!("--value={value}")]);
    match probe {
        Ok(_) => Ok(()),
        Err(e) => {
            // "error: invalid value 'x' for '--value <value>': REASON"
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            Err(match first.split_once("': ") {
                Some((_, reason)) => format!("invalid value {value:?}: {reason}"),
                None => first.strip_prefix("error: ").unwrap_or(first).to_string(),
            })
        }
    }
}
