//! Root rotation in the authority (issue 13): prepare, activate, finish
//! and abort, each proven on a real redb store with an injected clock,
//! nodes joined through tokens and renewed as the server renews them, and
//! every certificate judged by openssl and pkilint (`KITH_TOOLS_DIR`).

mod common;
#[path = "root_rotation/helpers.rs"]
mod helpers;
#[path = "root_rotation/tools.rs"]
mod tools;

#[path = "root_rotation/aborts.rs"]
mod aborts;
#[path = "root_rotation/keys_and_replicas.rs"]
mod keys_and_replicas;
#[path = "root_rotation/phases.rs"]
mod phases;
