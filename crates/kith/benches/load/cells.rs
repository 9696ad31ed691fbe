//! The join and renew cells, against one or more `kith serve` replicas of
//! one CA (embedded or NATS store alike).

use super::*;

/// The `kith serve` processes of one CA under measurement.
pub(crate) struct Target {
    /// `embedded`, `nats1` or `nats3`: the table's store column.
    pub(crate) name: &'static str,
    /// Node-name prefix, so the runs sharing the NATS bucket never meet.
    pub(crate) tag: &'static str,
    pub(crate) servers: Arc<Vec<ServerAddr>>,
    pub(crate) procs: Vec<Proc>,
    pub(crate) ca_pem: PathBuf,
    pub(crate) admin: PathBuf,
}

impl Target {
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.0.id()).collect()
    }

    /// `n` bench tokens (one per worker, so that joins do not contend on
    /// one token's use count), and the admin connection that made them.
    pub(crate) async fn tokens(&self, n: usize) -> (Connection, Arc<Vec<String>>) {
        let cfg = kith_agent::api_client_config(&self.admin).expect("admin credential");
        let mut admin = Connection::open(&self.servers[0], cfg)
            .await
            .expect("admin connection");
        let mut tokens = Vec::new();
        for _ in 0..n {
            let t: TokenCreated = admin
                .json(
                    Method::POST,
                    "/v1/admin/tokens",
                    Some(&TokenCreateRequest {
                        role: "bench".into(),
                        ttl_seconds: Some(86_400),
                        uses: Some(1_000_000),
                        ..Default::default()
                    }),
                )
                .await
                .expect("token");
            tokens.push(t.token);
        }
        (admin, Arc::new(tokens))
    }
}

/// What the bench shares with every cell.
pub(crate) struct Load {
    pub(crate) secs: f64,
    pub(crate) workers: Arc<Vec<Worker>>,
}

pub(crate) type BoxFut = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

impl Load {
    /// Joins: a fresh TCP + TLS connection for each, worker `w` on replica
    /// `w mod replicas`.
    pub(crate) async fn join(
        &self,
        t: &Target,
        tokens: &Arc<Vec<String>>,
        c: usize,
        probe: &mut Probe<'_>,
    ) -> Cell {
        let (workers, tokens, servers) = (self.workers.clone(), tokens.clone(), t.servers.clone());
        let public = public_config(&t.ca_pem);
        let tag = t.tag;
        run_cell(c, self.secs, probe, move |w| {
            let (workers, tokens, public) = (workers.clone(), tokens.clone(), public.clone());
            let server = servers[w % servers.len()].clone();
            async move {
                let mut i = 0u64;
                Box::new(move || {
                    i += 1;
                    let body = JoinRequest {
                        token: tokens[w].clone(),
                        node: Some(format!("{tag}j{c}-{w}-{i}")),
                        csrs: vec![CsrSubmission {
                            profile: "peer".into(),
                            csr: workers[w].csr_pem.clone(),
                        }],
                        may_leave_out: Vec::new(),
                    };
                    let (public, server) = (public.clone(), server.clone());
                    Box::pin(async move {
                        let Ok(mut conn) = Connection::open(&server, public).await else {
                            return false;
                        };
                        conn.json::<IssueResponse>(Method::POST, "/v1/join", Some(&body))
                            .await
                            .is_ok()
                    }) as BoxFut
                }) as Op
            }
        })
        .await
    }

    /// Renewals: join once, then renew in a loop, each renewal over a new
    /// mTLS connection with the certificate the previous one returned
    /// (only the current certificate renews): a node's real cost.
    pub(crate) async fn renew(
        &self,
        t: &Target,
        tokens: &Arc<Vec<String>>,
        c: usize,
        probe: &mut Probe<'_>,
    ) -> Cell {
        let (workers, tokens, servers) = (self.workers.clone(), tokens.clone(), t.servers.clone());
        let public = public_config(&t.ca_pem);
        let (ca_pem, tag) = (Arc::new(t.ca_pem.clone()), t.tag);
        run_cell(c, self.secs, probe, move |w| {
            let (workers, tokens, public, ca_pem) = (
                workers.clone(),
                tokens.clone(),
                public.clone(),
                ca_pem.clone(),
            );
            let server = Arc::new(servers[w % servers.len()].clone());
            async move {
                let node = format!("{tag}r{c}-{w}");
                let csr = CsrSubmission {
                    profile: "peer".into(),
                    csr: workers[w].csr_pem.clone(),
                };
                let conn = Arc::new(tokio::sync::Mutex::new(
                    joined_connection(&server, public, &ca_pem, &tokens[w], &node, &workers[w])
                        .await,
                ));
                let body = RenewRequest {
                    node: Some(node),
                    csrs: vec![csr],
                };
                Box::new(move || {
                    let (conn, body) = (conn.clone(), body.clone());
                    let (server, ca_pem, workers) =
                        (server.clone(), ca_pem.clone(), workers.clone());
                    Box::pin(async move {
                        let mut conn = conn.lock().await;
                        let Ok(r) = conn
                            .json::<IssueResponse>(Method::POST, "/v1/renew", Some(&body))
                            .await
                        else {
                            return false;
                        };
                        // The next renewal presents the new certificate,
                        // as a node does (the old one renews no more).
                        *conn = mtls_connection(&server, &ca_pem, &workers[w], &r).await;
                        true
                    }) as BoxFut
                }) as Op
            }
        })
        .await
    }
}

/// One measured cell, for the summary and the breakdown.
pub(crate) struct Row {
    pub(crate) store: &'static str,
    pub(crate) op: &'static str,
    pub(crate) c: usize,
    pub(crate) rate: f64,
    pub(crate) mean: f64,
    pub(crate) p99: f64,
    pub(crate) usage: Option<Usage>,
}

pub(crate) fn print_row(store: &str, label: &str, c: usize, cell: &mut Cell) {
    println!(
        "{:<9} {:<31} {:>4} {:>10.0} {:>9.2} {:>9.2} {:>7}",
        store,
        label,
        c,
        cell.rate(),
        cell.pct(0.5),
        cell.pct(0.99),
        cell.errors
    );
}

pub(crate) fn row(
    store: &'static str,
    op: &'static str,
    c: usize,
    cell: &mut Cell,
    probe: &Probe,
) -> Row {
    Row {
        store,
        op,
        c,
        rate: cell.rate(),
        mean: cell.mean(),
        p99: cell.pct(0.99),
        usage: probe.last,
    }
}

/// The join and renew cells of one target, printed as they finish.
pub(crate) async fn join_and_renew(
    load: &Load,
    t: &Target,
    tokens: &Arc<Vec<String>>,
    cs: &[usize],
    want: &dyn Fn(&str) -> bool,
    nats: Option<(&NatsCluster, usize, &str)>,
    rows: &mut Vec<Row>,
) {
    let mut probe = Probe::new(t.pids(), nats);
    for &c in cs {
        if want("join") {
            let mut cell = load.join(t, tokens, c, &mut probe).await;
            print_row(t.name, "kith join (new TLS each)", c, &mut cell);
            rows.push(row(t.name, "join", c, &mut cell, &probe));
        }
        if want("renew") {
            let mut cell = load.renew(t, tokens, c, &mut probe).await;
            print_row(t.name, "kith renew (mTLS, current cert)", c, &mut cell);
            rows.push(row(t.name, "renew", c, &mut cell, &probe));
        }
    }
}
