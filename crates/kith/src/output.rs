//! How the CLI reports failure: `error[code]: message` on stderr (and a JSON
//! object on stdout with `--json`), exit status 1.

use std::fmt::Display;

use kith_api::ErrorCode;

/// A failure with a stable code, a message and an optional hint.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The code as printed: an [`ErrorCode`]'s spelling, or a newer
    /// server's code verbatim.
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    /// The command already printed its JSON result (which names the problem).
    pub(crate) json_printed: bool,
    /// Only a new join token can fix this (revoked, removed, past the grace window).
    pub(crate) needs_new_token: bool,
}

impl CliError {
    /// A failure with `code`, and the code's hint if it has one.
    pub(crate) fn new(code: ErrorCode, message: impl Display) -> Self {
        Self {
            code: code.as_str().to_string(),
            message: message.to_string(),
            hint: code.hint().map(str::to_string),
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
        CliError::new(e.code(), &e)
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
        Err(e) => eprintln!("error[{}]: cannot encode JSON: {e}", ErrorCode::Internal),
    }
}

impl From<kith_agent::Error> for CliError {
    fn from(e: kith_agent::Error) -> Self {
        let code = e.error_code();
        let hint = if e.needs_new_token() {
            Some(ErrorCode::NEW_TOKEN_HINT)
        } else {
            // A newer server's code: its message is all there is.
            code.and_then(ErrorCode::hint)
        };
        Self {
            code: e.code().to_string(),
            message: e.to_string(),
            hint: hint.map(str::to_string),
            json_printed: false,
            needs_new_token: e.needs_new_token(),
        }
    }
}
