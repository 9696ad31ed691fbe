//! `kith cert`: issue, sign, inspect, verify and list certificates.

use clap::Subcommand;

use crate::output::CliError;
use crate::util::Home;

mod inspect;
mod issue;
mod ls;
mod sign;
mod verify;
mod verify_node;

pub(crate) use inspect::InspectArgs;
pub(crate) use issue::IssueArgs;
pub(crate) use ls::LsArgs;
pub(crate) use sign::SignArgs;
pub(crate) use verify::VerifyArgs;

#[derive(Subcommand, Debug)]
pub(crate) enum CertCommand {
    /// Generate keys and certificates for nodes, one folder per node.
    Issue(IssueArgs),
    /// Sign a CSR made elsewhere; the chain PEM goes to stdout or --out.
    Sign(SignArgs),
    /// Describe a certificate, chain, CSR, CRL or key (public parts only).
    Inspect(InspectArgs),
    /// Verify a certificate against the cluster: chain, validity, revocation, identity.
    Verify(VerifyArgs),
    /// List every certificate this CA has issued.
    Ls(LsArgs),
}

pub(crate) async fn run(dir: &Home, cmd: CertCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        CertCommand::Issue(a) => issue::cert_issue(dir, a, json).await,
        CertCommand::Sign(a) => sign::cert_sign(dir, a, json).await,
        CertCommand::Inspect(a) => inspect::cert_inspect(a, json),
        CertCommand::Verify(a) => verify::cert_verify(dir, a, json).await,
        CertCommand::Ls(a) => ls::cert_ls(dir, a, json).await,
    }
}
