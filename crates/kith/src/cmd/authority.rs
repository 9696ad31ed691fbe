//! `kith authority add`.

use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{AuthorityAddRequest, CaAuthority, CaInfo};
use kith_api::ErrorCode;
use kith_authority::Settings;
use kith_nodedir as nodedir;
use kith_pki::KeyType;

use crate::admin::AdminArgs;
use crate::args::{key_type_parser, PassphraseArg};
use crate::node_files::write_bundle;
use crate::output::CliError;
use crate::util;
use crate::util::Home;

#[derive(Subcommand, Debug)]
pub(crate) enum AuthorityCommand {
    /// Add an authority with its own root and intermediate.
    Add(AuthorityAddArgs),
}

pub(crate) async fn run(dir: &Home, cmd: AuthorityCommand) -> Result<(), CliError> {
    match cmd {
        AuthorityCommand::Add(a) => authority_add(dir, a).await,
    }
}

#[derive(Args, Debug)]
pub(crate) struct AuthorityAddArgs {
    /// Name of the new authority (a DNS label, e.g. api).
    name: String,
    /// Key type of its root and intermediate.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn authority_add(dir: &Home, a: AuthorityAddArgs) -> Result<(), CliError> {
    kith_pki::validate_label("authority name", &a.name)?;
    let root = if let Some(mut conn) = a.admin.online(dir).await? {
        // The server holds the store: it adds the authority, and the
        // data directory's ca.pem (if this machine has one) gets its root.
        let body = AuthorityAddRequest {
            name: a.name.clone(),
            key_type: a.key_type.as_str().to_string(),
        };
        let added: CaAuthority = conn
            .json(Method::POST, "/v1/admin/authorities", Some(&body))
            .await?;
        let info: CaInfo = conn.json(Method::GET, "/v1/admin/ca", None::<&()>).await?;
        if dir.join(nodedir::CA).exists() {
            let bundle: String = info.authorities.iter().map(|x| x.root.as_str()).collect();
            nodedir::write_atomic(dir, nodedir::CA, bundle.as_bytes(), nodedir::PUBLIC_MODE)?;
        }
        kith_pki::certs_from_pem_or_der(added.root.as_bytes())?
            .into_iter()
            .next()
            .ok_or_else(|| CliError::new(ErrorCode::BadResponse, "no root in the answer"))?
    } else {
        let authority =
            util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
        authority.add_authority(&a.name, a.key_type).await?;
        write_bundle(dir, &authority)?;
        authority.root_cert(&a.name)?
    };
    let pin = hex::encode(kith_pki::spki_pin(&root)?);
    println!(
        "added authority {} ({}); root pin sha256:{pin}",
        a.name, a.key_type
    );
    println!(
        "issue from it with `kith cert issue ... --authority {}`",
        a.name
    );
    Ok(())
}
