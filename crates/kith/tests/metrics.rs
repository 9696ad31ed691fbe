//! `--metrics-listen` on real `kith serve` and `kith agent` processes (issue
//! 14, "Metrics and health"): scraped with curl, the text judged by the
//! official Python prometheus-client parsers (OpenMetrics, what is served,
//! and the classic text parser); the expiry gauges equal what `openssl x509
//! -enddate` reads from the same certificates; counters move after a join,
//! a renewal and a revocation; routes are templates, never a client's raw
//! path; no token secret reaches the text. The agent tells systemd it is
//! ready only after its first refresh, over a real unix datagram socket
//! given as NOTIFY_SOCKET, and pets the watchdog.

mod common;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kith, start_server_with, tool, wait_for, Ca, Proc};
use serde_json::Value;

/// A port free now on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `curl` the URL: (HTTP status, body).
fn curl(url: &str) -> (u16, String) {
    let out = Command::new(tool("curl"))
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
            url,
        ])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The samples of a metrics text, `name{k="v",...}` (labels sorted, `le`
/// included) to value, as the official OpenMetrics parser reads them; the
/// classic Prometheus text parser must read the text without error too.
type Samples = BTreeMap<String, f64>;

const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
text = sys.stdin.read()
list(classic(text))
out = {}
for family in openmetrics(text):
    for s in family.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        out["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(out))
"#;

fn parse(text: &str) -> Samples {
    use std::io::Write;
    let mut child = Command::new(tool("python"))
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python (KITH_TOOLS_DIR=/work/main/.venv/bin)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the text");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "the prometheus-client parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser JSON")
}

fn scrape(port: u16) -> (String, Samples) {
    let (status, text) = curl(&format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(status, 200, "{text}");
    let samples = parse(&text);
    (text, samples)
}

fn get(s: &Samples, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key}; have:\n{:#?}",
            s.keys().collect::<Vec<_>>()
        )
    })
}

/// Unix time of `openssl x509 -enddate` of the first certificate in `pem`.
fn openssl_enddate(pem: &Path) -> i64 {
    let out = Command::new(tool("openssl"))
        .args(["x509", "-enddate", "-noout", "-dateopt", "iso_8601", "-in"])
        .arg(pem)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    // notAfter=2036-11-30 19:47:33Z
    let when = text.trim().trim_start_matches("notAfter=");
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(when, &fmt)
        .unwrap_or_else(|e| panic!("openssl said {text:?}: {e}"))
        .assume_utc()
        .unix_timestamp()
}

fn serial_in(dir: &Path) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity.json"))
            .expect("identity JSON");
    v["serial"].as_str().expect("serial").to_string()
}

fn kith_ok(ca: &Ca, args: &[&str]) -> String {
    let out = kith(&ca.data).args(args).output().expect("kith");
    assert!(
        out.status.success(),
        "kith {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Wait until a scrape satisfies `f` (the store-read gauges refresh every
/// second here; the bound is generous for a loaded machine).
fn scrape_until(port: u16, what: &str, f: impl Fn(&Samples) -> bool) -> (String, Samples) {
    let mut last = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let (text, s) = scrape(port);
        if f(&s) {
            return (text, s);
        }
        last = Some(text);
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "{what}: not seen within 60 s; last scrape:\n{}",
        last.unwrap_or_default()
    );
}

#[test]
fn server_metrics_follow_joins_renewals_revocations_and_match_openssl() {
    let ca = Ca::init("p256");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_server, url) = start_server_with(
        &ca,
        "127.0.0.1:0",
        &ca.pass,
        &["--metrics-listen", &listen, "--metrics-refresh", "1s"],
    );
    // Only /metrics, only GET.
    for path in ["/", "/metrics/x", "/v1/ca", "/metricsx"] {
        let (status, _) = curl(&format!("http://127.0.0.1:{port}{path}"));
        assert_eq!(status, 404, "{path}");
    }
    let (_, before) = scrape(port);
    assert_eq!(
        before.get("kith_certificates_issued_total{authority=\"cluster\",profile=\"peer\"}"),
        None
    );

    let token_out = kith_ok(
        &ca,
        &[
            "token", "create", "--role", "worker", "--uses", "2", "--json",
        ],
    );
    let token: Value = serde_json::from_str(&token_out).expect("token JSON");
    let token = token["token"].as_str().expect("token").to_string();
    let secret = token.rsplit_once('.').expect("id.secret").1.to_string();
    let node = ca.join(&url, &token, "m1", &[]);

    // A path nobody routes: counted as `unmatched`, never by its text.
    let probe = "/v1/no-such-route-7f3a9c";
    let out = Command::new(tool("curl"))
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca.data.join("ca.pem"))
        .arg(format!("{url}{probe}"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    // Renew through the node's own mutual TLS, revoke through the operator.
    let first_serial = serial_in(&node);
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&node)
        .output()
        .expect("renew");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(serial_in(&node), first_serial);

    let (text, s) = scrape_until(port, "one active node and the refreshed gauges", |s| {
        s.get("kith_nodes{state=\"active\"}") == Some(&1.0)
    });
    assert_eq!(
        get(
            &s,
            "kith_certificates_issued_total{authority=\"cluster\",profile=\"peer\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &s,
            "kith_certificates_renewed_total{authority=\"cluster\",profile=\"peer\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &s,
            "kith_http_requests_total{code=\"ok\",route=\"/v1/join\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &s,
            "kith_http_requests_total{code=\"ok\",route=\"/v1/renew\"}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &s,
            "kith_http_requests_total{code=\"not-found\",route=\"unmatched\"}"
        ),
        1.0
    );
    assert!(
        get(
            &s,
            "kith_http_requests_total{code=\"ok\",route=\"/v1/crl/{authority}\"}"
        ) >= 1.0
    );
    assert_eq!(get(&s, "kith_join_duration_seconds_count{}"), 1.0);
    assert_eq!(get(&s, "kith_renew_duration_seconds_count{}"), 1.0);
    assert!(
        get(
            &s,
            "kith_store_operation_duration_seconds_count{op=\"get\"}"
        ) > 0.0
    );
    assert!(
        get(
            &s,
            "kith_store_operation_duration_seconds_count{op=\"create\"}"
        ) > 0.0
    );
    assert_eq!(
        get(&s, "kith_tokens_outstanding{}"),
        1.0,
        "one use left of two"
    );
    assert_eq!(get(&s, "kith_replicas_alive{}"), 1.0);
    assert!(get(&s, "kith_crl_number{authority=\"cluster\"}") >= 1.0);
    assert!(
        get(
            &s,
            "kith_crl_next_update_timestamp_seconds{authority=\"cluster\"}"
        ) > 1.7e9
    );
    assert!(
        !text.contains(probe.trim_start_matches("/v1/")),
        "a raw path in the labels"
    );
    assert!(
        !text.contains(&secret),
        "the token's secret is in the metrics"
    );
    assert!(!text.contains(&token), "the token is in the metrics");

    // Expiries: what openssl reads from the same certificates.
    let root_key = s
        .keys()
        .find(|k| {
            k.starts_with("kith_ca_not_after_timestamp_seconds{") && k.contains("role=\"root\"")
        })
        .expect("a root expiry")
        .clone();
    assert_eq!(
        get(&s, &root_key) as i64,
        openssl_enddate(&ca.data.join("ca.pem"))
    );
    let inter_key = s
        .keys()
        .find(|k| {
            k.starts_with("kith_ca_not_after_timestamp_seconds{")
                && k.contains("role=\"intermediate\"")
                && k.contains("state=\"active\"")
        })
        .expect("an intermediate expiry")
        .clone();
    assert_eq!(
        get(&s, &inter_key) as i64,
        openssl_enddate(&node.join("chain.pem"))
    );
    assert_eq!(
        get(
            &s,
            "kith_node_certificate_earliest_expiry_timestamp_seconds{}"
        ) as i64,
        openssl_enddate(&node.join("cert.pem"))
    );

    // A revocation, through the running server: the node's live
    // certificates, the current one and the one its renewal replaced.
    kith_ok(
        &ca,
        &["revoke", "--node", "m1", "--reason", "key-compromise"],
    );
    let (_, s) = scrape_until(port, "the revoked node", |s| {
        s.get("kith_nodes{state=\"revoked\"}") == Some(&1.0)
    });
    assert_eq!(
        get(
            &s,
            "kith_certificates_revoked_total{authority=\"cluster\",reason=\"key-compromise\"}"
        ),
        2.0
    );
    assert_eq!(get(&s, "kith_nodes{state=\"active\"}"), 0.0);
    // Re-signed for the revocation: past the first CRL.
    assert!(get(&s, "kith_crl_number{authority=\"cluster\"}") >= 2.0);
}

/// Read notifications from `sock` for up to `within`, until `done` says so.
fn notifications(
    sock: &UnixDatagram,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within && !done(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(String::from_utf8_lossy(&buf[..n]).lines().map(String::from));
        }
    }
    got
}

#[test]
fn agent_metrics_and_systemd_readiness_after_the_first_refresh() {
    let ca = Ca::init("p256");
    let api_port = free_port();
    let api = format!("127.0.0.1:{api_port}");
    let (server, url) = start_server_with(&ca, &api, &ca.pass, &[]);
    let node = ca.join_new(&url, "worker", "a1");
    // The server goes away: the agent cannot refresh, so it is not ready.
    drop(server);

    let sock_path = ca.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = ca.path("agent.log");
    let agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args([
                "agent",
                "--refresh",
                "1s",
                "--metrics-listen",
                &listen,
                "--dir",
            ])
            .arg(&node)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("kith agent"),
    );
    let early = notifications(&sock, Duration::from_secs(5), |_| false);
    assert!(
        early.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2,
        "the watchdog is petted every 200 ms: {early:?}"
    );
    assert!(
        !early.iter().any(|l| l == "READY=1"),
        "READY=1 before any refresh succeeded: {early:?}\n{}",
        String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
    );
    let (_, s) = scrape(port);
    assert_eq!(get(&s, "kith_agent_crl_refresh_timestamp_seconds{}"), 0.0);
    assert_eq!(
        get(&s, "kith_agent_certificate_not_after_timestamp_seconds{}") as i64,
        openssl_enddate(&node.join("cert.pem"))
    );

    // The server is back on its address: the next refresh makes it ready.
    let (_server, _) = start_server_with(&ca, &api, &ca.pass, &[]);
    let later = notifications(&sock, Duration::from_secs(60), |got| {
        got.iter().any(|l| l == "READY=1")
    });
    assert!(
        later.iter().any(|l| l == "READY=1"),
        "no READY=1 once the server answered: {later:?}\n{}",
        String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
    );
    let (_, s) = scrape_until(port, "a refresh", |s| {
        s.get("kith_agent_crl_refresh_timestamp_seconds{}")
            .is_some_and(|t| *t > 1.7e9)
    });
    assert!(get(&s, "kith_agent_bundle_refresh_timestamp_seconds{}") > 1.7e9);
    assert_eq!(get(&s, "kith_agent_renewals_total{}"), 0.0);

    // SIGHUP renews now: the renewal counter, timestamp and expiry move.
    let before = serial_in(&node);
    let ok = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    wait_for("the renewal", Duration::from_secs(60), || {
        (serial_in(&node) != before).then_some(())
    });
    let (_, s) = scrape_until(port, "the renewal counted", |s| {
        s.get("kith_agent_renewals_total{}") == Some(&1.0)
    });
    assert!(get(&s, "kith_agent_last_renewal_timestamp_seconds{}") > 1.7e9);
    assert_eq!(
        get(&s, "kith_agent_certificate_not_after_timestamp_seconds{}") as i64,
        openssl_enddate(&node.join("cert.pem"))
    );
    drop(_server);
    // The server gone again: a renewal fails, counted by its code.
    let ok = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let (text, _) = scrape_until(port, "a renewal failure", |s| {
        s.iter()
            .any(|(k, v)| k.starts_with("kith_agent_renewal_failures_total{") && *v >= 1.0)
    });
    assert!(
        text.contains("kith_agent_renewal_failures_total{code=\""),
        "{text}"
    );
    let _ = std::fs::remove_file(&sock_path);
}

#[test]
fn the_shipped_agent_unit_waits_for_ready_and_has_a_watchdog() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/kith-agent.service"),
    )
    .expect("the agent unit");
    let service: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "[Service]")
        .take_while(|l| *l != "[Install]")
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(service.contains(&"Type=notify"), "{service:?}");
    let watchdog = service
        .iter()
        .find_map(|l| l.strip_prefix("WatchdogSec="))
        .expect("WatchdogSec=");
    assert!(!watchdog.is_empty() && watchdog != "0", "{watchdog}");
    // The agent is the main process and sends the notifications itself.
    assert!(
        service
            .iter()
            .all(|l| !l.starts_with("NotifyAccess=") || *l == "NotifyAccess=main"),
        "{service:?}"
    );
    assert!(unit.contains("KITH_AGENT_METRICS_LISTEN"));
}
