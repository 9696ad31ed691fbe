//! How the CLI reports failure: `error[code]: message` on stderr (and a JSON
//! object on stdout with `--json`), exit status 1.

use std::fmt::Display;

/// A failure with a stable code, a message and an optional hint.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    /// The command already printed its JSON result (which names the problem).
    pub(crate) json_printed: bool,
    /// Only a new join token can fix this (revoked, removed, past the grace window).
    pub(crate) needs_new_token: bool,
}

impl CliError {
    pub(crate) fn new(code: &str, message: impl Display) -> Self {
        Self {
            code: code.to_string(),
            message: message.to_string(),
            hint: None,
            json_printed: false,
            needs_new_token: false,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Display) -> Self {
        self.hint = Some(hint.to_string());
        self
    }

    pub(crate) fn report(&self, json: bool) {
        if json && !self.json_printed {
            let v = serde_json::json!({"error": {"code": self.code, "message": self.message, "hint": self.hint}});
            println!("{v}");
        }
        eprintln!("error[{}]: {}", self.code, self.message);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
    }
}

impl From<kith_authority::Error> for CliError {
    fn from(e: kith_authority::Error) -> Self {
        let hint = match &e {
            kith_authority::Error::WrongPassphrase => {
                Some("pass the passphrase printed by `kith init` with --passphrase-file or KITH_PASSPHRASE")
            }
            kith_authority::Error::Store(kith_store::Error::Locked(_)) => {
                Some("another kith command or server is using this data directory; wait for it or stop it")
            }
            _ => None,
        };
        let mut out = CliError::new(e.code(), &e);
        out.hint = hint.map(str::to_string);
        out
    }
}

impl From<kith_pki::Error> for CliError {
    fn from(e: kith_pki::Error) -> Self {
        CliError::new(e.code(), &e)
    }
}

impl From<kith_store::Error> for CliError {
    fn from(e: kith_store::Error) -> Self {
        kith_authority::Error::from(e).into()
    }
}

impl From<kith_nodedir::Error> for CliError {
    fn from(e: kith_nodedir::Error) -> Self {
        CliError::new(e.code(), e)
    }
}

/// Print `v` as pretty JSON on stdout (a wire type prints its fields in order).
pub(crate) fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error[internal]: cannot encode JSON: {e}"),
    }
}

impl From<kith_agent::Error> for CliError {
    fn from(e: kith_agent::Error) -> Self {
        let hint = if e.needs_new_token() {
            Some("only a new token can help: ask the operator for one (`kith token create --role ROLE --name NODE`) and run `kith join` again")
        } else {
            match e.code() {
                "pin-mismatch" => Some(
                    "the token belongs to another cluster or the address reaches another server",
                ),
                "unreachable" => Some("is the server running and reachable at that address?"),
                "invalid-token" => Some("check that the token was copied whole"),
                "token-expired" | "token-used-up" | "token-revoked" => {
                    Some("ask the operator for a new token")
                }
                "client-certificate-required" | "admin-required" => {
                    Some("use the admin/ credential that `kith init` wrote (--admin-dir)")
                }
                _ => None,
            }
        };
        let mut out = CliError::new(e.code(), &e);
        out.hint = hint.map(str::to_string);
        out.needs_new_token = e.needs_new_token();
        out
    }
}
