//! The abuse benchmark (issue 11): what the attacks of the security review cost a release
//! server today. Starts `handoff-server` (the release binary beside this example) on a fresh
//! SQLite file and prints:
//! - `/healthz` p50/p99 alone and during a flood of 500 wrong-password logins (concurrency 16);
//! - server RSS before and after two rounds of 10,000 bogus long-polls;
//! - handoff latency at queue length 1 and 1,000;
//! - server RSS per idle joined WebSocket (2,000 sockets).
//!
//! `cargo build --release -p handoff-server && cargo run --release -p handoff-server --example abuse_bench`
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines,
    missing_docs
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

struct Server {
    child: Child,
    base: String,
    public_key: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("HANDOFF_SERVER_BIN") {
        return bin.into();
    }
    // target/release/examples/abuse_bench -> target/release/handoff-server
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|p| p.parent()).unwrap().join("handoff-server")
}

fn cli(db: &str, args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).env("DATABASE_URL", db).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap()
}

fn start(name: &str, extra: &[&str]) -> Server {
    let dir = std::env::temp_dir().join(format!("handoff-abuse-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("bench.db").display());
    let project = cli(&db, &["project", "create", "--name", "Bench"]);
    let project_id = value(&project, "project_id").to_owned();
    let public_key = value(&project, "public_key").to_owned();
    cli(
        &db,
        &[
            "agent",
            "create",
            "--project",
            &project_id,
            "--email",
            "ann@bench.dev",
            "--name",
            "Ann",
            "--password",
            "pw-ann-123",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(binary())
        .args(["serve", "--addr", &addr, "--trusted-proxy", "127.0.0.1"])
        .args(extra)
        .env("DATABASE_URL", &db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, base, public_key, dir }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

async fn post(
    http: &reqwest::Client,
    url: String,
    ip: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = http.post(url).header("x-forwarded-for", ip).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn healthz_samples(http: &reqwest::Client, base: &str, n: usize, gap: Duration) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        http.get(format!("{base}/healthz")).send().await.unwrap();
        out.push(t.elapsed());
        tokio::time::sleep(gap).await;
    }
    out
}

async fn visitor(http: &reqwest::Client, s: &Server, ip: &str) -> String {
    let (status, v) =
        post(http, format!("{}/api/widget/session", s.base), ip, None, json!({"project_key": s.public_key}))
            .await;
    assert_eq!(status, 200, "{v}");
    v["visitor_token"].as_str().unwrap().to_owned()
}

#[tokio::main]
async fn main() {
    let http = reqwest::Client::new();

    // 1. A login flood against the default limits.
    let s = start("login", &[]);
    let pid = s.child.id();
    let mut alone = healthz_samples(&http, &s.base, 200, Duration::from_millis(2)).await;
    let rss_before = rss_kib(pid);
    let probe = {
        let (http, base) = (http.clone(), s.base.clone());
        tokio::spawn(async move { healthz_samples(&http, &base, 300, Duration::from_millis(10)).await })
    };
    let started = Instant::now();
    let mut statuses = Vec::new();
    for chunk in (0..500).collect::<Vec<_>>().chunks(16) {
        let calls = chunk.iter().map(|i| {
            let url = format!("{}/api/agents/login", s.base);
            post(
                &http,
                url,
                "203.0.113.1",
                None,
                json!({"email": "ann@bench.dev", "password": format!("guess-{i}")}),
            )
        });
        statuses.extend(join_all(calls).await.into_iter().map(|(st, _)| st));
    }
    let flood_time = started.elapsed();
    let mut during = probe.await.unwrap();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    println!(
        "login flood: 500 wrong-password logins at concurrency 16 in {:.0} ms: {limited} answered 429, {} 401",
        ms(flood_time),
        statuses.iter().filter(|s| **s == 401).count()
    );
    println!(
        "  /healthz alone p50 {:.2} ms p99 {:.2} ms; during the flood p50 {:.2} ms p99 {:.2} ms; RSS {} -> {} KiB",
        ms(percentile(&mut alone, 0.5)),
        ms(percentile(&mut alone, 0.99)),
        ms(percentile(&mut during, 0.5)),
        ms(percentile(&mut during, 0.99)),
        rss_before,
        rss_kib(pid)
    );
    drop(s);

    // 2.-4. Without rate limits (they would hide the costs measured here).
    let s = start("costs", &["--limits", "off"]);
    let pid = s.child.id();
    let vt = visitor(&http, &s, "198.51.100.1").await;
    let long = "x".repeat(2_000);
    // Two rounds: memory bounded by legitimate use grows in the first at most (allocator
    // warm-up), not again in the second.
    let mut rss = vec![rss_kib(pid)];
    let started = Instant::now();
    for round in 0..2 {
        for chunk in (0..10_000).collect::<Vec<_>>().chunks(64) {
            let calls = chunk.iter().map(|i| {
                // Half with oversized ids, half with well-formed ids of no conversation.
                let id = if i % 2 == 0 {
                    format!("conv_{long}{round}{i}")
                } else {
                    format!("conv_missing{round}x{i}")
                };
                let req =
                    http.get(format!("{}/api/conversations/{id}/events?wait=25", s.base)).bearer_auth(&vt);
                async move { req.send().await.unwrap().status().as_u16() }
            });
            let statuses = join_all(calls).await;
            assert!(statuses.iter().all(|s| *s == 400 || *s == 404), "{statuses:?}");
        }
        rss.push(rss_kib(pid));
    }
    println!(
        "bogus long-polls: 2 x 10,000 (half 2,000-character ids) in {:.0} ms; server RSS {} -> {} -> {} KiB",
        ms(started.elapsed()),
        rss[0],
        rss[1],
        rss[2]
    );

    // Handoff latency as the queue grows (no agent online: every handoff queues).
    let mut at = Vec::new();
    for i in 0..1_000 {
        let ip = format!("10.{}.{}.1", i / 250, i % 250);
        let vt = visitor(&http, &s, &ip).await;
        let (st, c) =
            post(&http, format!("{}/api/conversations", s.base), &ip, Some(&vt), json!({"body": "help"}))
                .await;
        assert_eq!(st, 201, "{c}");
        let id = c["id"].as_str().unwrap().to_owned();
        let t = Instant::now();
        let (st, v) =
            post(&http, format!("{}/api/conversations/{id}/handoff", s.base), &ip, Some(&vt), json!(null))
                .await;
        assert_eq!(st, 200, "{v}");
        at.push(t.elapsed());
    }
    let mut first: Vec<_> = at[..10].to_vec();
    let mut last: Vec<_> = at[990..].to_vec();
    println!(
        "handoff latency: median {:.2} ms at queue length 1-10, {:.2} ms at 991-1,000",
        ms(percentile(&mut first, 0.5)),
        ms(percentile(&mut last, 0.5))
    );

    // Idle memory per joined socket.
    let (st, login) = post(
        &http,
        format!("{}/api/agents/login", s.base),
        "198.51.100.2",
        None,
        json!({"email": "ann@bench.dev", "password": "pw-ann-123"}),
    )
    .await;
    assert_eq!(st, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    let project = login["agent"]["project_id"].as_str().unwrap().to_owned();
    let ws_url = format!(
        "ws{}/realtime/v1/websocket?apikey={}&vsn=1.0.0",
        s.base.trim_start_matches("http"),
        s.public_key
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);
    let mut sockets = Vec::new();
    for i in 0..2_000u32 {
        let mut req = ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("x-forwarded-for", format!("10.9.{}.{}", i / 200, i % 200).parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let join = json!({"topic": format!("realtime:project:{project}:queue"), "event": "phx_join", "ref": "1", "join_ref": "1",
            "payload": {"config": {"broadcast": {"self": false, "ack": false}, "presence": {"key": "", "enabled": false}, "postgres_changes": [], "private": true}, "access_token": token}});
        ws.send(Message::Text(join.to_string().into())).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert!(reply.to_text().unwrap().contains("\"ok\""), "{reply:?}");
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);
    println!(
        "idle sockets: 2,000 joined; server RSS {rss_before} -> {rss_after} KiB, {:.1} KiB per socket",
        (rss_after.saturating_sub(rss_before)) as f64 / 2_000.0
    );
    drop(sockets);
}
