//! Message throughput: messages per second sustained through the REST API with persistence on
//! SQLite (a file in WAL mode), each message persisted as an event with its `seq` and
//! published to the realtime hub.
//!
//! `cargo run --release -p handoff-server --example msg_bench [-- <messages> <conversations>]`
#![allow(clippy::unwrap_used, clippy::cast_precision_loss, missing_docs)]

use std::time::Instant;

use handoff_server::{app, service, Config};
use serde_json::{json, Value};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let total = args.first().copied().unwrap_or(5_000);
    let conversations = args.get(1).copied().unwrap_or(16);
    let dir = std::env::temp_dir().join(format!("handoff-msg-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config =
        Config { database_url: format!("sqlite://{}", dir.join("bench.db").display()), ..Config::default() };
    let svc = service(&config).await.unwrap();
    let (project, _) = svc.create_project("Bench", vec!["*".into()]).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app(svc, &config);
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
            .unwrap();
    });
    let http = reqwest::Client::new();
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
    let per = total / conversations;
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(token, id)| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                for i in 0..per {
                    let r = http
                        .post(format!("{base}/api/conversations/{id}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"body": format!("message {i}"), "client_msg_id": format!("m{i}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let sent = per * conversations;
    println!(
        "| {sent} messages, {conversations} conversations in parallel, SQLite WAL | {:.0} messages/s |",
        sent as f64 / secs
    );
    let _ = std::fs::remove_dir_all(&dir);
}
