//! Fan-out benchmark: how long one event takes to reach 1,000 and 10,000 subscribed sockets on
//! loopback, and the server's memory per idle socket.
//!
//! `cargo run --release -p handoff-server --example fanout_bench [-- 1000 10000]`
//!
//! The server runs in a child process (this same program with `--serve`), so its resident
//! memory is measured apart from the client sockets. Each socket joins the project queue
//! channel as an agent; an agent status change (`PUT /api/agents/me/status`) makes the server
//! publish `agent:status_changed` there; the time is from sending that request to the moment
//! the last socket has the event. Each size is measured 5 times; the median is printed.
#![allow(clippy::unwrap_used, clippy::cast_precision_loss, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use handoff_protocol::phoenix::{codec, Frame, JoinPayload, Vsn};
use handoff_server::realtime::RealtimeConfig;
use handoff_server::{app, service, Config};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn serve() {
    let dir = std::env::temp_dir().join(format!("handoff-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Config {
        database_url: format!("sqlite://{}", dir.join("bench.db").display()),
        realtime: RealtimeConfig {
            idle_timeout: Duration::from_secs(600),
            // Every bench socket comes from 127.0.0.1.
            max_sockets_per_ip: 1_000_000,
            ..RealtimeConfig::default()
        },
        ..Config::default()
    };
    let svc = service(&config).await.unwrap();
    let (project, _) = svc.create_project("Bench", vec!["*".into()]).await.unwrap();
    svc.create_agent(&project.id, "bench@bench.dev", "Bench", "bench-password").await.unwrap();
    let login = svc
        .login(
            &handoff_protocol::api::LoginRequest {
                email: "bench@bench.dev".into(),
                password: "bench-password".into(),
            },
            None,
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!(
        "READY {} {} {} {}",
        listener.local_addr().unwrap(),
        login.token,
        project.id,
        project.public_key
    );
    axum::serve(listener, app(svc, &config).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
        .unwrap();
}

async fn connect(
    url: String,
    topic: String,
    token: String,
    got: mpsc::UnboundedSender<Instant>,
    joined: mpsc::UnboundedSender<()>,
) {
    // Under a burst of connects the listen backlog can overflow: retry like a client would.
    let mut ws = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => break ws,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let join = Frame::join("1", &topic, &JoinPayload { access_token: Some(token), ..JoinPayload::default() });
    ws.send(Message::Text(codec::encode_text(Vsn::V2, &join).unwrap().into())).await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let frame = codec::decode_text(Vsn::V2, text.as_str()).unwrap();
        match frame.event.as_str() {
            "phx_reply" => {
                let _ = joined.send(());
            }
            "broadcast" => {
                let _ = got.send(Instant::now());
            }
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve().await;
    }
    let sizes: Vec<usize> =
        if args.is_empty() { vec![1_000, 10_000] } else { args.iter().map(|a| a.parse().unwrap()).collect() };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    let (addr, token, project, key) =
        (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned(), parts[4].to_owned());
    let url = format!("ws://{addr}/realtime/v1/websocket?apikey={key}&vsn=2.0.0");
    let topic = format!("realtime:project:{project}:queue");
    let http = reqwest::Client::new();
    let (got_tx, mut got_rx) = mpsc::unbounded_channel();
    let mut open = 0usize;
    let mut away = false;
    println!("| sockets | server RSS per idle socket | fan-out, median of 5 (send to last receive) |");
    println!("|---|---|---|");
    for &n in &sizes {
        let before = rss_kib(child.id());
        let (joined_tx, mut joined_rx) = mpsc::unbounded_channel();
        while open < n {
            let batch = (n - open).min(500);
            for _ in 0..batch {
                tokio::spawn(connect(
                    url.clone(),
                    topic.clone(),
                    token.clone(),
                    got_tx.clone(),
                    joined_tx.clone(),
                ));
            }
            for _ in 0..batch {
                joined_rx.recv().await.unwrap();
            }
            open += batch;
            eprint!("\r{open} sockets joined");
        }
        eprintln!();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let added = n - sizes.iter().filter(|&&m| m < n).max().copied().unwrap_or(0);
        let per_socket = (rss_kib(child.id()).saturating_sub(before) * 1024) as f64 / added.max(1) as f64;
        let mut times = Vec::new();
        for _ in 0..5 {
            // Each request must change the status, or nothing is published.
            away = !away;
            let status = if away { "away" } else { "online" };
            let start = Instant::now();
            let resp = http
                .put(format!("http://{addr}/api/agents/me/status"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"status": status}))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            let mut last = start;
            for _ in 0..open {
                last = last.max(got_rx.recv().await.unwrap());
            }
            times.push(last - start);
        }
        times.sort();
        println!("| {n} | {:.1} KiB | {:.1} ms |", per_socket / 1024.0, times[2].as_secs_f64() * 1000.0);
    }
    let _ = child.kill();
    let _ = child.wait();
}
