//! The server's edge on the open internet: webhooks never reach private addresses (SSRF), every
//! error answer is the JSON error body, and the security and cache headers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::post;
use handoff_server::realtime::Hub;
use handoff_server::service::Service;
use handoff_server::store::SqlStore;
use handoff_server::webhook::Webhooks;
use handoff_server::{app, Config};
use serde_json::{json, Value};

use crate::bot::{next, receiver};
use crate::both_dbs;
use crate::harness::{Db, TestServer};

/// How long a test waits to be sure that no delivery comes (the first retry would come after
/// 500 ms).
const QUIET: Duration = Duration::from_millis(1500);

/// A counting receiver on 127.0.0.1 that answers `status` with `Location: location`.
async fn counter(status: u16, location: Option<String>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let seen = seen.clone();
            let location = location.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut r = axum::response::Response::new(axum::body::Body::empty());
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                if let Some(l) = location {
                    r.headers_mut().insert(header::LOCATION, l.parse().unwrap());
                }
                r
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), hits)
}

both_dbs!(webhook_private_targets_refused_when_set, |s: TestServer| async move {
    let (url, mut rx) = receiver(200).await;
    let port = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_owned();
    for bad in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0x7f000001:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::ffff:7f00:1]:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://app.localhost:{port}/hook"),
        format!("http://0.0.0.0:{port}/hook"),
        "http://10.0.0.1/hook".to_owned(),
        "http://172.16.5.4/hook".to_owned(),
        "http://192.168.0.1/hook".to_owned(),
        "http://100.64.0.1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fe80::1]/hook".to_owned(),
        "http://[fd00::1]/hook".to_owned(),
        "http://224.0.0.1/hook".to_owned(),
        "http://255.255.255.255/hook".to_owned(),
        "http://192.0.2.10/hook".to_owned(),
        "https://user:secret@bot.example.com/hook".to_owned(),
        "gopher://bot.example.com/hook".to_owned(),
    ] {
        let (st, v) =
            s.call("PUT", "/api/project/webhook", Some(&s.secret_key), Some(json!({"url": bad}))).await;
        assert_eq!((st, v["error"]["code"].as_str()), (422, Some("validation_failed")), "{bad}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with("webhook url"), "{bad}: {v}");
        // The CLI's entry point refuses it too.
        let e = s.svc.set_webhook_of(&s.project, Some(bad.clone())).await.unwrap_err();
        assert_eq!(e.code, handoff_protocol::api::ErrorCode::ValidationFailed, "{bad}");
    }
    // Nothing was stored, so nothing is delivered.
    let (_, v) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
    assert_eq!(v["config"]["bot"], false, "{v}");
    let _ = s.conversation().await;
    assert!(tokio::time::timeout(QUIET, rx.recv()).await.is_err(), "no delivery to a refused URL");
    // A public host name is accepted (it is checked again after resolution, at connect time).
    let (st, v) = s
        .call(
            "PUT",
            "/api/project/webhook",
            Some(&s.secret_key),
            Some(json!({"url": "https://bot.example.com/hook"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
});

// The CLI (`project set --webhook-url`) refuses a loopback URL, unless told that private
// addresses are fine.
#[tokio::test]
async fn webhook_cli_refuses_private_targets() {
    let dir =
        std::env::temp_dir().join(format!("handoff-edge-cli-{}", handoff_server::crypto::random_id("")));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("cli.db").display());
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff-server"))
            .args(args)
            .env("DATABASE_URL", &db)
            .env("RUST_LOG", "warn")
            .env_remove("HANDOFF_ALLOW_PRIVATE_WEBHOOKS")
            .output()
            .unwrap()
    };
    let out = cli(&["project", "create", "--name", "cli"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let id = stdout.lines().find_map(|l| l.strip_prefix("project_id=")).unwrap().to_owned();
    for url in ["http://127.0.0.1:8090/webhook", "http://2130706433/", "http://localhost/"] {
        let out = cli(&["project", "set", "--project", &id, "--webhook-url", url]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url} accepted");
        assert!(stderr.contains("--allow-private-webhooks"), "{url}: {stderr}");
    }
    let out = cli(&[
        "project",
        "set",
        "--project",
        &id,
        "--webhook-url",
        "http://127.0.0.1:8090/webhook",
        "--allow-private-webhooks",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("webhook_secret=whsec_"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resolver that maps every name to 127.0.0.1 (as a DNS name an attacker controls could).
struct ToLoopback;

impl reqwest::dns::Resolve for ToLoopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(([127, 0, 0, 1], 0).into()));
        Box::pin(async move { Ok(addrs) })
    }
}

/// A server (SQLite) whose service sends webhooks with `webhooks`: (base URL, public key,
/// secret key).
async fn server_with(webhooks: Webhooks) -> (String, String, String) {
    let dir = std::env::temp_dir().join(format!("handoff-edge-{}", handoff_server::crypto::random_id("")));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let store = Arc::new(SqlStore::connect(&url).await.unwrap());
    let svc = Arc::new(Service::new(store, Arc::new(Hub::new())).with_webhooks(webhooks));
    let (project, secret) = svc.create_project("Edge", vec!["*".into()]).await.unwrap();
    let config = Config { database_url: url, ..Config::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(svc, &config);
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
            .unwrap();
    });
    (format!("http://{addr}"), project.public_key, secret)
}

/// Sets `hook` on the server at `base` and starts a conversation in `bot` state.
async fn hook_and_chat(base: &str, public_key: &str, secret: &str, hook: &str) {
    let http = reqwest::Client::new();
    let r = http.put(format!("{base}/api/project/webhook")).bearer_auth(secret).json(&json!({"url": hook}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200, "{hook}: {}", r.text().await.unwrap());
    let v: Value = http
        .post(format!("{base}/api/widget/session"))
        .json(&json!({"project_key": public_key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vt = v["visitor_token"].as_str().unwrap();
    let r = http.post(format!("{base}/api/conversations")).bearer_auth(vt).json(&json!({"body": "hi bot"}));
    assert_eq!(r.send().await.unwrap().status(), 201);
}

// A public-looking host name that resolves to loopback is refused at connect time (a DNS answer
// is not trusted more than a literal address); with the opt-in the same name is delivered to,
// which shows that the resolver was the one used.
#[tokio::test]
async fn webhook_host_resolving_to_loopback_is_refused_at_connect() {
    let (url, hits) = counter(200, None).await;
    let port = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_owned();
    let hook = format!("http://bot.example.com:{port}/hook");

    let (base, pk, secret) = server_with(Webhooks::with_resolver(false, Arc::new(ToLoopback))).await;
    hook_and_chat(&base, &pk, &secret, &hook).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a name resolving to loopback was connected to");

    let (base, pk, secret) = server_with(Webhooks::with_resolver(true, Arc::new(ToLoopback))).await;
    hook_and_chat(&base, &pk, &secret, &hook).await;
    let start = std::time::Instant::now();
    while hits.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the opt-in delivers to the same name");
}

// A webhook answering a redirect is not followed (even to a target that would be allowed) and
// counts as a failed delivery that is not retried.
#[tokio::test]
async fn webhook_redirects_are_not_followed() {
    let (target, target_hits) = counter(200, None).await;
    let (hook, hook_hits) = counter(307, Some(target)).await;
    let (base, pk, secret) = server_with(Webhooks::with_policy(true)).await;
    hook_and_chat(&base, &pk, &secret, &hook).await;
    let start = std::time::Instant::now();
    while hook_hits.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(hook_hits.load(Ordering::SeqCst), 1, "delivered once, not retried");
    assert_eq!(target_hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

// With the opt-in, loopback is a fine target (local development, the demo's bot).
#[tokio::test]
async fn webhook_opt_in_delivers_to_loopback() {
    let s = TestServer::start_config(Db::Sqlite, |c| c.allow_private_webhooks = true).await.unwrap();
    let (url, mut rx) = receiver(200).await;
    let (st, v) = s.call("PUT", "/api/project/webhook", Some(&s.secret_key), Some(json!({"url": url}))).await;
    assert_eq!(st, 200, "{v}");
    let (_, c) = s.conversation().await;
    let (_, body) = next(&mut rx).await;
    let d: handoff_protocol::api::WebhookDelivery = serde_json::from_slice(&body).unwrap();
    assert_eq!(d.conversation_id.as_str(), c);
}

/// A raw answer: status, headers, body text.
async fn raw(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = s.http.request(method.parse().unwrap(), format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// Asserts a JSON error body with `code`.
fn assert_json_error(
    what: &str,
    (status, headers, text): &(u16, reqwest::header::HeaderMap, String),
    want: (u16, &str),
) {
    let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{what}: content-type {ct:?}, body {text:?}");
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"));
    assert_eq!((*status, v["error"]["code"].as_str()), (want.0, Some(want.1)), "{what}: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
}

/// A web assets folder like `cargo xtask web` makes, with a console and a hashed widget.
fn static_dir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("handoff-edge-web-{}", handoff_server::crypto::random_id("")));
    for sub in ["console", "widget", "sdk", "widget/i18n"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("console/index.html"), "<!doctype html><title>console</title>").unwrap();
    std::fs::write(dir.join("widget.js"), "import('/widget/handoff_widget.0123456789abcdef.js')").unwrap();
    std::fs::write(dir.join("widget/handoff_widget.0123456789abcdef.js"), "export default 1;").unwrap();
    std::fs::write(dir.join("sdk/index.js"), "export const x = 1;").unwrap();
    std::fs::write(dir.join("widget/i18n/de.0123456789abcdef.json"), r#"{"send":"Senden"}"#).unwrap();
    dir
}

// Every error answer is the JSON error body with the fitting status, with and without web
// assets installed (then unknown paths fall back to the assets, whose 404 is JSON too).
#[tokio::test]
async fn every_error_is_the_json_error_body() {
    let web = static_dir();
    let with_assets = Config { static_dir: Some(web.clone()), ..Config::default() };
    for config in [Config::default(), with_assets] {
        let assets = config.static_dir.is_some();
        let s = TestServer::start_config(Db::Sqlite, |c| {
            *c = Config { database_url: c.database_url.clone(), ..config }
        })
        .await
        .unwrap();
        let (vt, c) = s.conversation().await;
        let agent = s.agent1.0.clone();
        let cases = [
            (
                "oversized POST /api/conversations",
                "POST",
                "/api/conversations".to_owned(),
                Some(vt.as_str()),
                Some(vec![b' '; 70 * 1024]),
                (413, "payload_too_large"),
            ),
            (
                "bad query",
                "GET",
                "/api/offline-messages?handled=x".to_owned(),
                Some(agent.as_str()),
                None,
                (400, "bad_request"),
            ),
            (
                "bad path encoding",
                "GET",
                "/api/conversations/%FF/events".to_owned(),
                Some(vt.as_str()),
                None,
                (400, "bad_request"),
            ),
            (
                "bad wait",
                "GET",
                format!("/api/conversations/{c}/events?wait=soon"),
                Some(vt.as_str()),
                None,
                (400, "bad_request"),
            ),
            (
                "wrong method",
                "DELETE",
                format!("/api/conversations/{c}/events"),
                Some(vt.as_str()),
                None,
                (405, "method_not_allowed"),
            ),
            (
                "wrong method, no auth",
                "PATCH",
                "/api/widget/session".to_owned(),
                None,
                None,
                (405, "method_not_allowed"),
            ),
            (
                "wrong method on healthz",
                "POST",
                "/healthz".to_owned(),
                None,
                None,
                (405, "method_not_allowed"),
            ),
            ("unknown API route", "GET", "/api/nope".to_owned(), None, None, (404, "not_found")),
            (
                "unknown API route, POST",
                "POST",
                "/api/conversations/x/y/z".to_owned(),
                None,
                None,
                (404, "not_found"),
            ),
            ("unknown path", "GET", "/nope.txt".to_owned(), None, None, (404, "not_found")),
            (
                "unknown asset",
                "GET",
                "/widget/handoff_widget.ffffffffffffffff.js".to_owned(),
                None,
                None,
                (404, "not_found"),
            ),
            (
                "socket without upgrade",
                "GET",
                "/realtime/v1/websocket".to_owned(),
                None,
                None,
                (400, "bad_request"),
            ),
        ];
        for (what, method, path, token, body, want) in cases {
            let r = raw(&s, method, &path, token, body).await;
            assert_json_error(&format!("{what} (assets: {assets})"), &r, want);
            if want.0 == 405 {
                assert!(r.1.contains_key(header::ALLOW), "{what}: 405 without Allow: {:?}", r.1);
            }
        }
        // A wrong method on an existing static file is an error too.
        if assets {
            let r = raw(&s, "POST", "/widget.js", None, None).await;
            assert!(r.0 >= 400, "{r:?}");
            assert_json_error(
                "POST on an asset",
                &r,
                (r.0, if r.0 == 405 { "method_not_allowed" } else { "not_found" }),
            );
        }
        // Legitimate use is unchanged.
        let (st, v) = s.call("GET", &format!("/api/conversations/{c}/events"), Some(&vt), None).await;
        assert_eq!(st, 200, "{v}");
    }
    let _ = std::fs::remove_dir_all(web);
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

// Security headers on the API and the console; the widget and SDK keep loading on any site
// (CORS, no CSP or framing rule); content-hashed assets are immutable, the loader short-lived.
#[tokio::test]
async fn security_and_cache_headers() {
    let web = static_dir();
    let s = TestServer::start_config(Db::Sqlite, |c| c.static_dir = Some(web.clone())).await.unwrap();
    let (vt, c) = s.conversation().await;
    let api = raw(&s, "GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    let not_found = raw(&s, "GET", "/api/nope", None, None).await;
    let doc = raw(&s, "GET", "/api/openapi.json", None, None).await;
    assert_eq!((api.0, not_found.0, doc.0), (200, 404, 200));
    for (what, (_, h, _)) in [("API answer", &api), ("404", &not_found), ("openapi", &doc)] {
        assert_eq!(
            header(h, "content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{what}"
        );
        assert_eq!(header(h, "x-content-type-options"), Some("nosniff"), "{what}");
        assert_eq!(header(h, "referrer-policy"), Some("strict-origin-when-cross-origin"), "{what}");
        assert_eq!(header(h, "cache-control"), Some("no-store"), "{what}");
    }

    for path in ["/console/", "/console/index.html"] {
        let (st, h, body) = raw(&s, "GET", path, None, None).await;
        assert_eq!((st, body.contains("console")), (200, true), "{path}");
        let csp = header(&h, "content-security-policy").unwrap();
        for part in ["frame-ancestors 'none'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'"] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"), "{csp}");
        assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&h, "referrer-policy"), Some("strict-origin-when-cross-origin"));
    }

    // Embedded in other sites: loaded with CORS, no CSP or framing rule of ours.
    let embed = |path: &'static str| {
        let req = s.http.get(format!("{}{path}", s.base)).header("origin", "https://shop.example");
        async move { req.send().await.unwrap() }
    };
    let hashed = embed("/widget/handoff_widget.0123456789abcdef.js").await;
    let loader = embed("/widget.js").await;
    let sdk = embed("/sdk/index.js").await;
    // A language catalog is JSON among the widget's files, not an API answer: cached for good.
    let catalog = embed("/widget/i18n/de.0123456789abcdef.json").await;
    assert_eq!(header(catalog.headers(), "cache-control"), Some("public, max-age=31536000, immutable"));
    for (what, r) in [("hashed", &hashed), ("loader", &loader), ("sdk", &sdk), ("catalog", &catalog)] {
        let h = r.headers();
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(header(h, "access-control-allow-origin"), Some("*"), "{what}");
        assert_eq!(header(h, "content-security-policy"), None, "{what}");
        assert_eq!(header(h, "x-frame-options"), None, "{what}");
        assert_eq!(header(h, "x-content-type-options"), Some("nosniff"), "{what}");
    }
    assert_eq!(header(hashed.headers(), "cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(header(loader.headers(), "cache-control"), Some("public, max-age=300"));
    assert_ne!(header(sdk.headers(), "cache-control"), Some("public, max-age=31536000, immutable"));
    let _ = std::fs::remove_dir_all(web);
}
