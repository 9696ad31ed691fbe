//! The embedded store's cells: kith on a redb data directory (join,
//! renew, secret reads) and cfssl signing the same CSRs.

use super::*;

/// The embedded store: one `kith serve` on a redb data directory, every
/// cell, and cfssl on the same CSRs.
pub(crate) async fn embedded(
    load: &Load,
    tmp: &Path,
    pass: &Path,
    cs: &[usize],
    want: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) {
    let data = tmp.join("data");
    init_ca(&data, pass, &[]);
    let port = free_port();
    let server = spawn_serve(&["--data-dir".as_ref(), data.as_os_str()], pass, port);
    // cfssl with its own P-256 CA, made by openssl.
    let cf = tmp.join("cfssl");
    std::fs::create_dir_all(&cf).expect("dir");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=cfssl bench CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ])
        .arg(cf.join("ca-key.pem"))
        .arg("-out")
        .arg(cf.join("ca.pem")));
    let cf_port = free_port();
    let _cfssl = Proc(
        Command::new("cfssl")
            .args([
                "serve",
                "-loglevel",
                "2",
                "-address",
                "127.0.0.1",
                "-port",
                &cf_port.to_string(),
                "-ca",
            ])
            .arg(cf.join("ca.pem"))
            .arg("-ca-key")
            .arg(cf.join("ca-key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cfssl serve: install the Debian package golang-cfssl"),
    );
    wait_port(port);
    wait_port(cf_port);
    let t = Target {
        name: "embedded",
        tag: "",
        servers: Arc::new(vec![ServerAddr {
            host: "127.0.0.1".into(),
            port,
        }]),
        procs: vec![server],
        ca_pem: data.join("ca.pem"),
        admin: data.join("admin"),
    };
    let max_c = cs.iter().copied().max().unwrap_or(1);
    let (mut admin, tokens) = t.tokens(max_c).await;
    let _: kith_api::wire::SecretInfo = admin
        .json(
            Method::PUT,
            "/v1/admin/secrets/bench-secret",
            Some(&kith_api::wire::SecretPutRequest {
                value: {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.encode([7u8; 1024])
                },
                allow_roles: Some(vec!["bench".into()]),
                ..Default::default()
            }),
        )
        .await
        .expect("bench secret");
    let mut probe = Probe::new(t.pids(), None);
    let (server, ca_pem, public) = (
        t.servers[0].clone(),
        t.ca_pem.clone(),
        public_config(&t.ca_pem),
    );
    for &c in cs {
        join_and_renew(load, &t, &tokens, &[c], want, None, rows).await;

        // Secret reads: a node reads a 1 KiB secret over keep-alive mTLS
        // (policy check, unwrap, decrypt, audit record per read).
        if want("secret") {
            let (w2, t2, p2, s2, ca2) = (
                load.workers.clone(),
                tokens.clone(),
                public.clone(),
                server.clone(),
                ca_pem.clone(),
            );
            let mut cell = run_cell(c, load.secs, &mut probe, move |w| {
                let (workers, tokens, public, server, ca_pem) =
                    (w2.clone(), t2.clone(), p2.clone(), s2.clone(), ca2.clone());
                async move {
                    let node = format!("s{c}-{w}");
                    let conn = Arc::new(tokio::sync::Mutex::new(
                        joined_connection(&server, public, &ca_pem, &tokens[w], &node, &workers[w])
                            .await,
                    ));
                    Box::new(move || {
                        let conn = conn.clone();
                        Box::pin(async move {
                            let mut c = conn.lock().await;
                            kith_agent::secrets::fetch_with(&mut c, "bench-secret", None)
                                .await
                                .is_ok_and(|(_, v)| v.len() == 1024)
                        }) as BoxFut
                    }) as Op
                }
            })
            .await;
            print_row("embedded", "kith secret read (mTLS)", c, &mut cell);
            rows.push(row("embedded", "secret", c, &mut cell, &probe));
        }

        // cfssl: keep-alive plain HTTP, the same CSRs.
        if want("cfssl") {
            let w2 = load.workers.clone();
            let mut none = Probe::new(Vec::new(), None);
            let mut cell = run_cell(c, load.secs, &mut none, move |w| {
                let workers = w2.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", cf_port))
                        .await
                        .expect("cfssl connect");
                    let _ = tcp.set_nodelay(true);
                    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .expect("cfssl http");
                    tokio::spawn(conn);
                    let sender = Arc::new(tokio::sync::Mutex::new(sender));
                    let body = Bytes::from(
                        serde_json::to_vec(
                            &serde_json::json!({ "certificate_request": workers[w].csr_pem }),
                        )
                        .expect("json"),
                    );
                    Box::new(move || {
                        let (sender, body) = (sender.clone(), body.clone());
                        Box::pin(async move {
                            let req = Request::builder()
                                .method(Method::POST)
                                .uri("/api/v1/cfssl/sign")
                                .header("host", "127.0.0.1")
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .expect("request");
                            let mut s = sender.lock().await;
                            if s.ready().await.is_err() {
                                return false;
                            }
                            match s.send_request(req).await {
                                Ok(resp) => {
                                    let ok = resp.status().is_success();
                                    let body =
                                        resp.into_body().collect().await.map(|b| b.to_bytes());
                                    ok && body.is_ok_and(|b| {
                                        b.windows(14).any(|w| w == b"\"success\":true")
                                    })
                                }
                                Err(_) => false,
                            }
                        }) as BoxFut
                    }) as Op
                }
            })
            .await;
            print_row("embedded", "cfssl sign (keep-alive HTTP)", c, &mut cell);
            rows.push(row("embedded", "cfssl", c, &mut cell, &none));
        }
    }
}
