//! Containing panics of the embedded database.
//!
//! redb trusts its file: on pages it did not write (a flipped bit, a
//! truncated copy, a hostile edit) some of its checks are `unreachable!()`
//! or debug assertions, so reading a damaged file can panic deep inside it.
//! A CA must answer that with an error naming the file, never a crash, so
//! every call into redb runs under [`guarded`]: a panic becomes
//! [`Error::Corrupt`], and the panic hook stays quiet about it (the error
//! says what happened; a "panicked at" on stderr would read like a kith bug).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

use kith_store::{Error, Result};

thread_local! {
    /// How many guarded calls this thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// What the last contained panic of this thread said, and where.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Run `f`, turning a panic inside it into [`Error::Corrupt`] for `path`.
pub(crate) fn guarded<T>(path: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_hook();
    DEPTH.with(|d| d.set(d.get() + 1));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    let named = |detail| Error::Corrupt {
        path: path.to_string(),
        detail,
    };
    outcome
        .map(|r| {
            // A corruption reported as an error (not a panic) gets the file's name here.
            r.map_err(|e| match e {
                Error::Corrupt { path, detail } if path.is_empty() => named(detail),
                e => e,
            })
        })
        .unwrap_or_else(|payload| {
            let detail = LAST
                .with(|l| l.borrow_mut().take())
                .unwrap_or_else(|| payload_text(&*payload));
            tracing::debug!(file = path, detail = %detail, "contained a panic of the database");
            Err(named(detail))
        })
}

/// Wrap the process's panic hook once: a panic inside a guarded call is
/// recorded for the error instead of printed; every other panic goes to the
/// previous hook unchanged.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            if DEPTH.with(Cell::get) > 0 {
                let place = info
                    .location()
                    .map(|l| format!(" ({}:{})", short_path(l.file()), l.line()))
                    .unwrap_or_default();
                let text = format!("{}{place}", payload_text(info.payload()));
                LAST.with(|l| *l.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the database code failed".to_string())
}

/// `redb-4.6.0/src/tree_store/btree.rs` rather than the whole registry path.
fn short_path(file: &str) -> &str {
    file.find("redb-").map_or(file, |i| &file[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_becomes_corrupt_with_the_file_and_the_message() {
        let got: Result<()> = guarded("/data/kith.redb", || panic!("entered unreachable code"));
        match got {
            Err(Error::Corrupt { path, detail }) => {
                assert_eq!(path, "/data/kith.redb");
                assert!(detail.contains("entered unreachable code"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // The thread is usable afterwards, and no longer counts as guarded.
        assert_eq!(DEPTH.with(Cell::get), 0);
        assert_eq!(guarded("p", || Ok(7)).ok(), Some(7));
    }

    #[test]
    fn a_corruption_error_gets_the_file_name() {
        let got: Result<()> = guarded("/data/kith.redb", || {
            Err(Error::Corrupt {
                path: String::new(),
                detail: "bad checksum".into(),
            })
        });
        assert!(
            matches!(&got, Err(Error::Corrupt { path, .. }) if path == "/data/kith.redb"),
            "{got:?}"
        );
    }

    #[test]
    fn panics_outside_a_guarded_call_still_unwind() {
        install_hook();
        let outside = std::panic::catch_unwind(|| panic!("not the database"));
        assert!(outside.is_err());
        // Nothing was recorded for an error: the hook left it to the previous one.
        assert!(LAST.with(|l| l.borrow().is_none()));
    }
}
