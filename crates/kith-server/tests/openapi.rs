//! The OpenAPI document against the real router, the file in docs/, the
//! served copy, and a validator nobody here wrote (`openapi-spec-validator`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use kith_authority::{Authority, InitOptions, KdfParams, ManualClock, Settings};
use kith_pki::KeyType;
use kith_store_redb::RedbStore;
use tower::ServiceExt;

/// The methods a route may take (HEAD and OPTIONS follow GET and are not
/// routes of their own).
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A bound (not yet running) server over a fresh CA.
async fn bound() -> (tempfile::TempDir, kith_server::Server) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(&tmp.path().join("kith.redb")).expect("open redb"));
    let authority = Authority::init(
        store,
        Arc::new(ManualClock::new(time::OffsetDateTime::now_utc())),
        InitOptions {
            cluster: "test.example".into(),
            key_type: KeyType::P256,
            kdf: KdfParams {
                t: 2,
                ..KdfParams::MINIMUM
            },
        },
        common::PASS,
        Settings::default(),
    )
    .await
    .expect("init");
    let opts = kith_server::Options::new("127.0.0.1:0".parse().expect("addr"));
    let server = kith_server::Server::bind(authority, opts)
        .await
        .expect("bind");
    (tmp, server)
}

/// Every path the router holds, read from the router itself (its `Debug`
/// lists each registered path as `RouteId(n): "/path"`), nested ones with
/// their prefix.
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    // The fallback router holds the fallbacks' catch-all paths: not routes.
    let routes = debug
        .split("fallback_router")
        .next()
        .expect("split yields at least one piece");
    let mut paths = BTreeSet::new();
    for piece in routes.split("RouteId(").skip(1) {
        if let Some((_, rest)) = piece.split_once("): \"") {
            if let Some((path, _)) = rest.split_once('"') {
                paths.insert(path.to_string());
            }
        }
    }
    assert!(
        paths.contains("/v1/ca") && paths.contains("/v1/admin/tokens"),
        "could not read the routes from the router's Debug (did axum change it?): {paths:?}"
    );
    paths
}

/// `/a/{b}/c` with every parameter filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "cluster" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// `(method, path)` of every route the real router serves: its paths, and
/// for each the methods it does not answer `405 method-not-allowed`.
async fn served(router: &axum::Router) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for path in router_paths(router) {
        for method in METHODS {
            let req = Request::builder()
                .method(method.clone())
                .uri(concrete(&path))
                .body(Body::empty())
                .expect("request");
            let answer = router.clone().oneshot(req).await.expect("infallible");
            if answer.status() != StatusCode::METHOD_NOT_ALLOWED {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

/// `(method, path)` of every operation of the document.
fn documented(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if method == "parameters" {
                continue;
            }
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

fn document() -> serde_json::Value {
    serde_json::from_str(kith_server::openapi_json()).expect("the document is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let (_tmp, server) = bound().await;
    let served = served(&server.router()).await;
    let documented = documented(&document());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "the router and the OpenAPI document (crates/kith-server/src/openapi.rs) disagree:\n\
         served but not documented: {undocumented:?}\n\
         documented but not served: {unserved:?}"
    );
    // The admin table, which the authorization tests walk, is among them.
    for (method, path) in kith_server::admin_routes() {
        assert!(
            served.contains(&(method.to_string(), path.clone())),
            "{method} {path}"
        );
    }
}

#[test]
fn gated_routes_name_mutual_tls_and_errors_list_every_code() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["mutualTLS"]["type"],
        "mutualTLS"
    );
    let security =
        |method: &str, path: &str| doc["paths"][path][method.to_lowercase()]["security"].clone();
    let mtls = serde_json::json!([{ "mutualTLS": [] }]);
    for (method, path) in kith_server::admin_routes() {
        assert_eq!(security(method.as_str(), &path), mtls, "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/v1/node"),
        ("GET", "/v1/secrets/{name}"),
        ("POST", "/v1/renew"),
    ] {
        assert_eq!(security(method, path), mtls, "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/v1/ca"),
        ("POST", "/v1/join"),
        ("GET", "/v1/openapi.json"),
    ] {
        assert!(
            security(method, path).is_null(),
            "{method} {path} is public"
        );
    }
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
        .as_array()
        .expect("the error code is an enum")
        .iter()
        .map(|c| c.as_str().expect("a string"))
        .collect();
    let all: Vec<&str> = kith_api::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, all);
    // Every operation answers its errors as an ErrorBody.
    for (method, path) in documented(&doc) {
        let responses = &doc["paths"][&path][method.to_lowercase()]["responses"];
        for class in ["4XX", "5XX"] {
            assert_eq!(
                responses[class]["$ref"], "#/components/responses/Error",
                "{method} {path} {class}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_document_without_a_client_certificate() {
    let env = common::Env::start().await;
    let served = env
        .public()
        .await
        .get_bytes("/v1/openapi.json")
        .await
        .expect("GET /v1/openapi.json");
    assert_eq!(
        std::str::from_utf8(&served).expect("UTF-8"),
        kith_server::openapi_json()
    );
}

fn docs_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// `KITH_WRITE_OPENAPI=1` writes the file instead of comparing.
#[test]
fn docs_openapi_json_is_what_the_code_generates() {
    let path = docs_file();
    let generated = kith_server::openapi_json();
    if std::env::var_os("KITH_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, generated).expect("write docs/openapi.json");
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == generated,
        "docs/openapi.json is stale (or missing): regenerate it with\n  \
         KITH_WRITE_OPENAPI=1 cargo test -p kith-server --test openapi docs_openapi_json\n\
         and commit it"
    );
}

/// Find an external tool or panic with the way to install it.
fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KITH_TOOLS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin"));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("required tool `{name}` not found: run ./scripts/test.sh, which installs a venv with it")
        })
}

/// Run the validator on `doc`; (accepted, its output).
fn validate(doc: &str) -> (bool, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, doc).expect("write");
    let out = std::process::Command::new(tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn openapi_spec_validator_accepts_the_document_and_refuses_a_broken_one() {
    let (ok, out) = validate(kith_server::openapi_json());
    assert!(ok, "openapi-spec-validator refused the document:\n{out}");
    // The validator judges: a response that is not an object is refused.
    let mut broken = document();
    broken["paths"]["/v1/ca"]["get"]["responses"]["200"] = serde_json::json!("ok");
    let (ok, out) = validate(&broken.to_string());
    assert!(!ok, "a broken document passed:\n{out}");
}
