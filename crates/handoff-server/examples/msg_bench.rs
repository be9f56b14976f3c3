//! Message throughput: messages per second sustained through the REST API, each message
//! persisted as an event with its `seq` (committed before the answer) and published to the
//! realtime hub. The client runs in the same process: `in-flight` requests at once, over kept-alive
//! connections, spread over the conversations round-robin (several requests to one conversation
//! are in flight together).
//!
//! ```text
//! cargo run --release -p handoff-server --example msg_bench -- [database-url] [messages] [conversations] [in-flight]
//! ```
//!
//! The database is `DATABASE_URL` or the URL argument: `sqlite://...` (default: a new file in
//! WAL mode in a temporary directory) or `postgres://...`, on which the bench creates a fresh
//! database for the run and drops it afterwards. Defaults: 20,000 messages, 32 conversations,
//! 128 in flight.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines,
    missing_docs
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff_server::{app, service, Config};
use serde_json::{json, Value};

/// A database for the run, removed at the end.
enum BenchDb {
    Sqlite(std::path::PathBuf),
    Postgres { admin: String, name: String },
}

impl BenchDb {
    async fn create(url: Option<String>) -> (BenchDb, String) {
        match url {
            Some(url) if url.starts_with("postgres") => {
                let name = format!("handoff_bench_{}", std::process::id());
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
                let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
                let run = format!("{base}/{name}");
                (BenchDb::Postgres { admin: url, name }, run)
            }
            Some(url) => (BenchDb::Sqlite(std::path::PathBuf::new()), url),
            None => {
                let dir = std::env::temp_dir().join(format!("handoff-msg-bench-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}", dir.join("bench.db").display());
                (BenchDb::Sqlite(dir), url)
            }
        }
    }

    fn label(&self) -> &'static str {
        match self {
            BenchDb::Sqlite(_) => "SQLite (WAL)",
            BenchDb::Postgres { .. } => "PostgreSQL",
        }
    }

    async fn drop_it(self) {
        match self {
            BenchDb::Sqlite(dir) if !dir.as_os_str().is_empty() => {
                let _ = std::fs::remove_dir_all(dir);
            }
            BenchDb::Sqlite(_) => {}
            BenchDb::Postgres { admin, name } => {
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap();
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() {
    let mut url = std::env::var("DATABASE_URL").ok();
    let mut numbers = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.parse::<usize>() {
            Ok(n) => numbers.push(n),
            Err(_) => url = Some(arg),
        }
    }
    let total = numbers.first().copied().unwrap_or(20_000);
    let conversations = numbers.get(1).copied().unwrap_or(32);
    let in_flight = numbers.get(2).copied().unwrap_or(128);
    let (db, database_url) = BenchDb::create(url).await;
    // The bench is one client sending as fast as it can: no rate limits.
    let config = Config {
        database_url,
        limits: handoff_server::limits::LimitsConfig::unlimited(),
        ..Config::default()
    };
    let svc = service(&config).await.unwrap();
    let (project, _) = svc.create_project("Bench", vec!["*".into()]).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app(svc.clone(), &config);
    let serve = config.serve.clone();
    tokio::spawn(
        async move { handoff_server::serve(listener, router, &serve, std::future::pending()).await },
    );
    let http = reqwest::Client::builder().pool_max_idle_per_host(in_flight).build().unwrap();
    let mut clients = Vec::new();
    for _ in 0..conversations {
        let s: Value = http
            .post(format!("{base}/api/widget/session"))
            .json(&json!({"project_key": project.public_key}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = s["visitor_token"].as_str().unwrap().to_owned();
        let c: Value = http
            .post(format!("{base}/api/conversations"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        clients.push((token, c["id"].as_str().unwrap().to_owned()));
    }
    let clients = Arc::new(clients);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (http, base, clients, next) = (http.clone(), base.clone(), clients.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let (token, id) = &clients[i % clients.len()];
                    let sent = Instant::now();
                    let r = http
                        .post(format!("{base}/api/conversations/{id}/messages"))
                        .bearer_auth(token)
                        .json(&json!({"body": format!("message {i}"), "client_msg_id": format!("m{i}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    r.bytes().await.unwrap();
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    // Every message is there, each conversation's seqs gapless.
    for (_, id) in clients.iter() {
        let id = handoff_protocol::ids::ConversationId::new(id.as_str());
        let c = svc.store().conversation(&id).await.unwrap().unwrap();
        let sent = (0..total).filter(|i| clients[i % clients.len()].1 == id.as_str()).count();
        assert_eq!(c.last_seq.0, sent as u64, "seqs of {id}");
    }
    println!(
        "| {total} messages, {conversations} conversations, {in_flight} requests in flight, {} | {:.0} messages/s | p50 {:.1} ms, p99 {:.1} ms |",
        db.label(),
        total as f64 / secs,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
    svc.store().close().await;
    db.drop_it().await;
}
