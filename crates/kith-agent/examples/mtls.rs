//! Two processes talking mutual TLS with configurations from kith node
//! directories. Run `kith agent` beside each to keep the directories fresh;
//! both sides pick up renewed certificates and new CRLs without a restart.
//!
//! ```text
//! mtls serve   --dir ./node-1 --listen 127.0.0.1:9000 [--role worker]
//! mtls connect --dir ./node-2 --to 127.0.0.1:9000 --name node-1.prod.example [--count 1] [--every-ms 500]
//! ```
//! `serve` prints `listening on ADDR`, then answers each client with
//! `hello <client node> from <own node>`. `connect` prints `ok <answer>` or
//! `refused <why>` per attempt and exits 0 only if the last attempt succeeded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_agent::{PeerPolicy, TlsWatch};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn usage() -> ! {
    eprintln!("usage: mtls serve --dir DIR --listen ADDR [--role ROLE]\n       mtls connect --dir DIR --to ADDR --name DNS [--count N] [--every-ms MS]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = arg(&args, "--dir").map(PathBuf::from) else {
        usage()
    };
    let policy = PeerPolicy {
        node: None,
        role: arg(&args, "--role"),
    };
    // Re-read the directory every second: the agent's renewals and CRL
    // refreshes take effect on the next connection.
    let watch = match TlsWatch::start(dir.clone(), policy, Duration::from_secs(1)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("mtls: {e}");
            std::process::exit(1)
        }
    };
    let own = kith_agent::NodeIdentity::load(&dir)
        .map(|i| i.node)
        .unwrap_or_default();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(&args, watch, own).await,
        Some("connect") => connect(&args, watch).await,
        _ => usage(),
    }
}

async fn serve(args: &[String], watch: TlsWatch, own: String) {
    let listen = arg(args, "--listen").unwrap_or_else(|| usage());
    let listener = TcpListener::bind(&listen).await.unwrap_or_else(|e| {
        eprintln!("mtls: bind {listen}: {e}");
        std::process::exit(1)
    });
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    println!("listening on {addr}");
    let watch = Arc::new(watch);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        // The newest verified configuration, per connection.
        let acceptor = tokio_rustls::TlsAcceptor::from(watch.server());
        let own = own.clone();
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(mut tls) => {
                    let client = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| kith_pki::inspect(c).ok())
                        .and_then(|mut v| match v.pop() {
                            Some(kith_pki::Inspected::Certificate(i)) => i.common_name,
                            _ => None,
                        })
                        .unwrap_or_default();
                    let _ = tls
                        .write_all(format!("hello {client} from {own}\n").as_bytes())
                        .await;
                    let _ = tls.shutdown().await;
                    eprintln!("accepted {client} from {peer}");
                }
                Err(e) => eprintln!("refused {peer}: {e}"),
            }
        });
    }
}

async fn connect(args: &[String], watch: TlsWatch) {
    let to = arg(args, "--to").unwrap_or_else(|| usage());
    let name = arg(args, "--name").unwrap_or_else(|| usage());
    let count: u32 = arg(args, "--count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let every = Duration::from_millis(
        arg(args, "--every-ms")
            .and_then(|c| c.parse().ok())
            .unwrap_or(500),
    );
    let server_name = match rustls_pki_types::ServerName::try_from(name.clone()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("mtls: --name {name}: {e}");
            std::process::exit(2)
        }
    };
    let mut last_ok = false;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let attempt = async {
            let tcp = TcpStream::connect(&to).await.map_err(|e| e.to_string())?;
            let connector = tokio_rustls::TlsConnector::from(watch.client());
            let tls = connector
                .connect(server_name.clone(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut line = String::new();
            BufReader::new(tls)
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if line.is_empty() {
                return Err("closed without an answer".to_string());
            }
            Ok(line.trim().to_string())
        };
        match attempt.await {
            Ok(answer) => {
                println!("ok {answer}");
                last_ok = true;
            }
            Err(e) => {
                println!("refused {e}");
                last_ok = false;
            }
        }
    }
    std::process::exit(if last_ok { 0 } else { 1 })
}
