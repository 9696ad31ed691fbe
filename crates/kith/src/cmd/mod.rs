//! One module per command group, each holding its clap arguments and its
//! `run`. Modules here share only the helper modules of the crate root
//! (`util`, `output`, `args`, `admin`, `node_files`, `store_args`), never each other,
//! except `serve --dev`, which runs `init`.

pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod audit;
pub(crate) mod authority;
pub(crate) mod backup;
pub(crate) mod ca;
pub(crate) mod cert;
pub(crate) mod crl;
pub(crate) mod exec;
pub(crate) mod init;
pub(crate) mod join;
pub(crate) mod node;
pub(crate) mod passphrase;
pub(crate) mod renew;
pub(crate) mod revoke;
pub(crate) mod rotate;
pub(crate) mod secret;
pub(crate) mod serve;
pub(crate) mod server;
pub(crate) mod settings;
pub(crate) mod shell;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod token;
pub(crate) mod vault;
