//! `kith store copy`: every record of a CA's store into an empty store,
//! between data directories (the embedded database) and NATS buckets.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use kith_api::ErrorCode;
use kith_store::{chunked, Entry, Store};
use serde_json::json;

use crate::output::{print_json, CliError};
use crate::store_args::{self, StoreArgs};
use crate::util::{self, Home};

#[derive(Subcommand, Debug)]
pub(crate) enum StoreCommand {
    /// Copy every record of a CA's store into an empty store (a data
    /// directory to NATS, NATS to a data directory, or between two of
    /// either), then read every record back from the copy and compare.
    #[command(after_help = COPY_HELP)]
    Copy(CopyArgs),
}

const COPY_HELP: &str = "Stop every kith process using the source first. An embedded source (a data \
directory) is opened exclusively, so a `kith serve` running on it is refused; a NATS source cannot be \
locked: stop every replica sharing it, or the copy may miss what they write meanwhile. The \
--store-bucket, --store-replicas and --nats-* options apply to the NATS side; when both sides are \
NATS they apply to both (one set of options). --store and --data-dir are not used here. Records are \
copied as they are (values stay encrypted; no passphrase is needed), except that each CRL record is \
marked to be re-signed by the first server on the copy, since the revisions it names are the source's. \
The operator credential (admin/) and ca.pem are files of a data directory, not records: copy them \
yourself where they are needed.";

#[derive(Args, Debug)]
pub(crate) struct CopyArgs {
    /// The store to copy: a data directory (its embedded database) or
    /// nats://host:port[,host:port...].
    #[arg(long, value_name = "DIR|URL")]
    from: String,
    /// The store to fill, which must hold no record: a data directory
    /// (created 0700 if missing) or nats://host:port[,host:port...].
    #[arg(long, value_name = "DIR|URL")]
    to: String,
}

pub(crate) async fn run(store: &StoreArgs, cmd: StoreCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        StoreCommand::Copy(a) => copy(store, a, json).await,
    }
}

/// One side of a copy.
enum Side {
    /// The embedded database of a data directory.
    Dir(PathBuf),
    /// A NATS bucket.
    Nats(kith_store_nats::NatsOptions),
}

impl Side {
    fn parse(s: &str, opts: &StoreArgs) -> Result<Self, CliError> {
        if s.starts_with("nats://") {
            return Ok(Self::Nats(opts.nats_for(s)?));
        }
        if s.contains("://") || s.is_empty() {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!("{s:?} is neither a data directory nor a NATS store (nats://host:port[,host:port...])"),
            ));
        }
        Ok(Self::Dir(PathBuf::from(s)))
    }

    fn describe(&self) -> String {
        match self {
            Self::Dir(d) => d.display().to_string(),
            Self::Nats(o) => store_args::describe(o),
        }
    }
}

/// How one record went into the copy.
enum Copied {
    /// As it is stored in the source.
    Verbatim(Entry),
    /// Its whole value, split anew for the destination's smaller limit.
    Resplit { key: String, value: Vec<u8> },
}

async fn copy(opts: &StoreArgs, a: CopyArgs, json: bool) -> Result<(), CliError> {
    let from = Side::parse(&a.from, opts)?;
    let to = Side::parse(&a.to, opts)?;
    if !matches!(from, Side::Nats(_)) && !matches!(to, Side::Nats(_)) {
        opts.refuse_stray_options("a nats:// --from or --to")?;
    }
    if let (Side::Dir(f), Side::Dir(t)) = (&from, &to) {
        let same = match (f.canonicalize(), t.canonicalize()) {
            (Ok(f), Ok(t)) => f == t,
            _ => false,
        };
        if same {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                "--from and --to are the same data directory",
            ));
        }
    }
    let (from_name, to_name) = (from.describe(), to.describe());

    // The source first: nothing is created for the destination unless
    // there is a CA to copy.
    let src = match from {
        Side::Dir(d) => util::open_store(&Home::embedded(d)).await?,
        Side::Nats(o) => util::connect_nats(o).await?,
    };
    if let Err(e) = kith_authority::ClusterInfo::load(&*src).await {
        let mut err = CliError::from(e);
        if err.code == ErrorCode::NotInitialized.as_str() {
            err.message = format!("no kith CA in {from_name} (it holds no cluster record)");
        }
        return Err(err);
    }
    let dst = match to {
        Side::Dir(d) => util::create_store(&Home::embedded(d)).await?,
        Side::Nats(o) => util::connect_nats(o).await?,
    };
    let present = dst.list("").await?.len();
    if present > 0 {
        return Err(CliError::new(
            ErrorCode::AlreadyInitialized,
            format!("{to_name} already holds {present} records; kith store copy writes only into an empty store"),
        )
        .hint("name a new data directory or an empty NATS bucket (--store-bucket) as --to"));
    }

    let entries = src.list("").await?;
    let bar = util::progress_bar(
        entries.len() as u64,
        !json && std::io::stderr().is_terminal(),
    );
    bar.set_message("copying");
    let written = write_all(&*src, &*dst, entries, &bar)
        .await
        .map_err(|e| partial(e, &to_name))?;
    bar.set_message("reading back");
    bar.set_position(0);
    verify(&*dst, &written, &bar)
        .await
        .map_err(|e| partial(e, &to_name))?;
    bar.finish_and_clear();
    // Verified as copied; now the one change a copy needs (see there).
    let stale = kith_authority::forget_crl_coverage(&*dst, SystemTime::now())
        .await
        .map_err(|e| partial(e.into(), &to_name))?;

    let records = written.len();
    let bytes: usize = written
        .iter()
        .map(|c| match c {
            Copied::Verbatim(e) => e.value.len(),
            Copied::Resplit { value, .. } => value.len(),
        })
        .sum();
    let resplit = written
        .iter()
        .filter(|c| matches!(c, Copied::Resplit { .. }))
        .count();
    drop((src, dst));
    if json {
        print_json(&json!({
            "from": from_name,
            "to": to_name,
            "records": records,
            "bytes": bytes,
            "resplit": resplit,
            "crls_to_resign": stale,
        }));
    } else {
        println!("Copied {records} records ({bytes} bytes) from {from_name} to {to_name}; every one read back and compared.");
        if resplit > 0 {
            println!("  {resplit} values larger than one value of the destination were split over chunk/ records anew.");
        }
        if stale > 0 {
            println!(
                "  {stale} CRLs will be re-signed (next number) by the first server on the copy."
            );
        }
        println!("  The operator credential (admin/) and ca.pem are files, not records: copy them yourself if needed.");
    }
    Ok(())
}

/// A failure once the destination may hold part of the copy.
fn partial(e: CliError, to: &str) -> CliError {
    e.hint(format!(
        "{to} may hold part of the copy: remove it (or delete the bucket) before copying again"
    ))
}

/// Write every entry of the source into the empty destination, each with
/// a create (so a writer racing us there is an error, not an overwrite).
///
/// Values go as they are, chunk heads and `chunk/` records included: a head
/// names its chunks by a random id, never by a revision, so it reads the
/// same in the copy. Only when a value is larger than the destination
/// takes (an embedded store holds up to 16 MiB in one value, NATS 1 MiB)
/// is every split or oversized value written anew through `chunked` (whole
/// value, new chunks), and the source's `chunk/` records are left behind.
async fn write_all(
    src: &dyn Store,
    dst: &dyn Store,
    entries: Vec<Entry>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Copied>, CliError> {
    let max = dst.limits().max_value;
    let resplit = entries.iter().any(|e| e.value.len() > max);
    let now = SystemTime::now();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        bar.inc(1);
        if !resplit {
            dst.create(&e.key, e.value.clone()).await?;
            out.push(Copied::Verbatim(e));
            continue;
        }
        if e.key.starts_with(chunked::CHUNK_PREFIX) {
            continue;
        }
        if e.value.len() <= max && !chunked::Head::of(&e).is_chunked() {
            dst.create(&e.key, e.value.clone()).await?;
            out.push(Copied::Verbatim(e));
            continue;
        }
        let key = e.key.clone();
        let Some(whole) = chunked::resolve(src, e).await? else {
            // Deleted while we copied: someone is writing to the source.
            return Err(CliError::new(
                ErrorCode::Contended,
                format!("{key} was deleted from the source during the copy: stop every kith process using it first"),
            ));
        };
        chunked::create(dst, &key, &whole.value, now).await?;
        out.push(Copied::Resplit {
            key,
            value: whole.value,
        });
    }
    Ok(out)
}

/// Read every copied record back from the destination and compare.
async fn verify(
    dst: &dyn Store,
    written: &[Copied],
    bar: &indicatif::ProgressBar,
) -> Result<(), CliError> {
    let mismatch = |key: &str| {
        CliError::new(
            ErrorCode::IntegrityError,
            format!("{key} reads back differently from the destination than it was copied"),
        )
    };
    for c in written {
        bar.inc(1);
        match c {
            Copied::Verbatim(e) => match dst.get(&e.key).await? {
                Some(got) if got.value == e.value => {}
                _ => return Err(mismatch(&e.key)),
            },
            Copied::Resplit { key, value } => match chunked::get(dst, key).await? {
                Some(got) if got.value == *value => {}
                _ => return Err(mismatch(key)),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_store::MemStore;

    fn bar() -> indicatif::ProgressBar {
        indicatif::ProgressBar::hidden()
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// A source whose limit the destination shares: every record, chunk
    /// heads and `chunk/` records included, goes over byte for byte.
    #[tokio::test]
    async fn same_limit_copies_every_record_verbatim() {
        let (src, dst) = (
            MemStore::with_max_value(64 * 1024),
            MemStore::with_max_value(64 * 1024),
        );
        let now = SystemTime::now();
        src.create("node/a", b"{}".to_vec()).await.expect("create");
        chunked::create(&src, "crl/cluster", &bytes(200_000, 1), now)
            .await
            .expect("split value");
        let entries = src.list("").await.expect("list");
        assert!(entries.iter().any(|e| e.key.starts_with("chunk/")));
        let written = write_all(&src, &dst, entries.clone(), &bar())
            .await
            .expect("copy");
        verify(&dst, &written, &bar()).await.expect("read back");
        let values = |v: Vec<Entry>| -> Vec<(String, Vec<u8>)> {
            v.into_iter().map(|e| (e.key, e.value)).collect()
        };
        assert_eq!(values(dst.list("").await.expect("list")), values(entries));
        let whole = chunked::get(&dst, "crl/cluster").await.expect("get");
        assert_eq!(whole.map(|v| v.value), Some(bytes(200_000, 1)));
    }

    /// A destination with smaller values (redb's 16 MiB to NATS's 1 MiB):
    /// a value too large for it inline, and one split into chunks too
    /// large for it, are split anew; each reads back whole, and no chunk
    /// of the source is left in the copy.
    #[tokio::test]
    async fn a_smaller_destination_gets_values_split_anew() {
        let (src, dst) = (
            MemStore::with_max_value(1 << 20),
            MemStore::with_max_value(256 * 1024),
        );
        let now = SystemTime::now();
        src.create("node/a", b"{}".to_vec()).await.expect("create");
        src.create("secretval/big/1", bytes(700_000, 2))
            .await
            .expect("inline, too large for the destination");
        chunked::create(&src, "crl/cluster", &bytes(3 << 20, 3), now)
            .await
            .expect("split in 1 MiB chunks");
        let entries = src.list("").await.expect("list");
        let written = write_all(&src, &dst, entries, &bar()).await.expect("copy");
        verify(&dst, &written, &bar()).await.expect("read back");
        let resplit = written
            .iter()
            .filter(|c| matches!(c, Copied::Resplit { .. }))
            .count();
        assert_eq!((written.len(), resplit), (3, 2));
        for (key, want) in [
            ("secretval/big/1", bytes(700_000, 2)),
            ("crl/cluster", bytes(3 << 20, 3)),
            ("node/a", b"{}".to_vec()),
        ] {
            let got = chunked::get(&dst, key).await.expect("get").expect("there");
            assert_eq!(got.value, want, "{key}");
        }
        let src_chunks: Vec<String> = src
            .list(chunked::CHUNK_PREFIX)
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.key)
            .collect();
        for e in dst.list(chunked::CHUNK_PREFIX).await.expect("list") {
            assert!(e.value.len() <= 256 * 1024, "{} too large", e.key);
            assert!(
                !src_chunks.contains(&e.key),
                "{} came from the source",
                e.key
            );
        }
    }

    /// A record that reads back differently is named.
    #[tokio::test]
    async fn a_mismatch_names_the_key() {
        let dst = MemStore::new();
        dst.create("node/a", b"{\"x\":1}".to_vec())
            .await
            .expect("create");
        let written = [Copied::Verbatim(Entry {
            key: "node/a".into(),
            value: b"{\"x\":2}".to_vec(),
            revision: 1,
        })];
        let err = verify(&dst, &written, &bar()).await.expect_err("differs");
        assert_eq!(err.code, ErrorCode::IntegrityError.as_str());
        assert!(err.message.contains("node/a"), "{}", err.message);
    }
}
