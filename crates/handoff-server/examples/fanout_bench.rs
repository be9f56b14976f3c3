//! Fan-out benchmark: how long one event takes to reach 1,000 and 10,000 sockets joined on one
//! channel, how many deliveries per second a burst of 20 events makes, and the server's memory
//! per idle socket; for Handoff and, side by side, for a Socket.IO 4 server doing the same
//! fan-out with the same driver.
//!
//! `cargo run --release -p handoff-server --example fanout_bench [-- [--socketio DIR] 1000 10000]`
//!
//! Each server runs in a child process, so its resident memory and CPU are measured apart from
//! the client sockets: Handoff is this same program with `--serve` (SQLite), the peer is
//! `node server.mjs` in `DIR` (`tests/bench/socketio`, whose packages `cargo xtask bench`
//! installs). Handoff's sockets join the project queue channel as an agent, and an agent status
//! change (`PUT /api/agents/me/status`) makes the server publish `agent:status_changed` there;
//! the peer's sockets join one room (Engine.IO v4 over a raw WebSocket: open packet `0{...}`,
//! connect `40`, `42["join","queue"]` with an ack), and `POST /emit` makes it emit the same
//! event with the same payload (the one Handoff sent) to the room. A figure is from sending the
//! first request to the moment the last socket has the last event.
//!
//! The driver is one process of small tasks that count frames containing the event's name
//! without decoding them (4 KiB read buffers, no JSON), so that it costs less than the servers;
//! it prints its own CPU time and the server's.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use handoff_protocol::phoenix::{codec, Frame, JoinPayload, Payload, Vsn};
use handoff_server::realtime::RealtimeConfig;
use handoff_server::{app, service, Config};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The event every fan-out sends.
const EVENT: &str = "agent:status_changed";
/// Events in a burst.
const BURST: usize = 20;
/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK` on Linux).
const CLK_TCK: f64 = 100.0;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds a process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, f)| f.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / CLK_TCK
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

/// Counts the events all sockets received, and wakes the driver when a goal is reached.
#[derive(Default)]
struct Tally {
    received: AtomicUsize,
    goal: AtomicUsize,
    done: Notify,
    /// The first event frame a Handoff socket received, to give the peer the same payload.
    sample: OnceLock<String>,
}

impl Tally {
    fn hit(&self) {
        let n = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.goal.load(Ordering::SeqCst) {
            self.done.notify_one();
        }
    }

    /// Arms the goal `more` events from now (all earlier events have arrived).
    fn expect(&self, more: usize) {
        self.goal.store(self.received.load(Ordering::SeqCst) + more, Ordering::SeqCst);
    }

    async fn wait(&self) {
        let arrived = tokio::time::timeout(Duration::from_secs(60), self.done.notified()).await;
        assert!(
            arrived.is_ok(),
            "events lost: {} of {} arrived",
            self.received.load(Ordering::SeqCst),
            self.goal.load(Ordering::SeqCst)
        );
    }
}

/// What a socket speaks.
enum Proto {
    /// Phoenix vsn 2.0.0, joining `topic` with `token`.
    Phoenix { topic: String, token: String },
    /// Engine.IO v4 / Socket.IO, joining the room `queue`.
    SocketIo,
}

async fn socket(url: Arc<str>, proto: Arc<Proto>, tally: Arc<Tally>, joined: mpsc::UnboundedSender<()>) {
    // tungstenite's default 128 KiB read buffer is zeroed on every read: small buffers keep the
    // driver cheap.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    // Under a burst of connects the listen backlog can overflow: retry like a client would.
    let mut ws = loop {
        match tokio_tungstenite::connect_async_with_config(&*url, Some(config), true).await {
            Ok((ws, _)) => break ws,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    match &*proto {
        Proto::Phoenix { topic, token } => {
            let payload = JoinPayload { access_token: Some(token.clone()), ..JoinPayload::default() };
            let join = codec::encode_text(Vsn::V2, &Frame::join("1", topic, &payload)).unwrap();
            ws.send(Message::Text(join.into())).await.unwrap();
        }
        // The server opens with `0{...}`; connect to the main namespace.
        Proto::SocketIo => ws.send(Message::Text("40".into())).await.unwrap(),
    }
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let text = text.as_str();
        match &*proto {
            Proto::Phoenix { .. } => {
                if text.contains(EVENT) {
                    tally.hit();
                    if tally.sample.get().is_none() {
                        let _ = tally.sample.set(text.to_owned());
                    }
                } else if text.contains("phx_reply") {
                    let _ = joined.send(());
                }
            }
            Proto::SocketIo => {
                if text.starts_with("42") && text.contains(EVENT) {
                    tally.hit();
                } else if text == "2" {
                    ws.send(Message::Text("3".into())).await.unwrap();
                } else if text.starts_with("40") {
                    ws.send(Message::Text(r#"420["join","queue"]"#.into())).await.unwrap();
                } else if text.starts_with("430") {
                    let _ = joined.send(());
                }
            }
        }
    }
}

/// A server under test, in its own process.
struct Server {
    name: &'static str,
    child: Child,
    url: Arc<str>,
    proto: Arc<Proto>,
    trigger: Box<dyn Fn(usize) -> reqwest::RequestBuilder>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The words after `READY` in the child's output; the rest of its output is drained.
fn ready_line(child: &mut Child) -> Vec<String> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let words = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("READY") => {
                break line.split_whitespace().skip(1).map(str::to_owned).collect();
            }
            Some(Ok(_)) => {}
            other => panic!("the server did not start: {other:?}"),
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    words
}

fn handoff(http: &reqwest::Client) -> Server {
    // `HANDOFF_BENCH_WRAP=heaptrack` runs the server under a heap profiler (or any wrapper);
    // the memory figures are then the wrapper's.
    let exe = std::env::current_exe().unwrap();
    let mut command = match std::env::var("HANDOFF_BENCH_WRAP") {
        Ok(wrap) if !wrap.is_empty() => {
            let mut c = Command::new(wrap);
            c.arg(exe);
            c
        }
        _ => Command::new(exe),
    };
    let mut child = command.arg("--serve").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let parts = ready_line(&mut child);
    let (addr, token, project, key) = (parts[0].clone(), parts[1].clone(), &parts[2], &parts[3]);
    let http = http.clone();
    let status_url = format!("http://{addr}/api/agents/me/status");
    let auth = token.clone();
    Server {
        name: "Handoff",
        child,
        url: format!("ws://{addr}/realtime/v1/websocket?apikey={key}&vsn=2.0.0").into(),
        proto: Arc::new(Proto::Phoenix { topic: format!("realtime:project:{project}:queue"), token }),
        // Each request must change the status, or nothing is published.
        trigger: Box::new(move |i| {
            let status = if i % 2 == 0 { "away" } else { "online" };
            http.put(&status_url).bearer_auth(&auth).json(&serde_json::json!({ "status": status }))
        }),
    }
}

fn socketio(http: &reqwest::Client, dir: &std::path::Path, payload: &serde_json::Value) -> Server {
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node in {}: {e}", dir.display()));
    let port = ready_line(&mut child).remove(0);
    let http = http.clone();
    let emit_url = format!("http://127.0.0.1:{port}/emit");
    let body = serde_json::json!({ "event": EVENT, "payload": payload });
    Server {
        name: "Socket.IO",
        child,
        url: format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket").into(),
        proto: Arc::new(Proto::SocketIo),
        trigger: Box::new(move |_| http.post(&emit_url).json(&body)),
    }
}

/// Figures of one server at one size.
#[derive(Clone, Copy, Default)]
struct Figures {
    /// Median of 5: one event, from the request to the last delivery, in ms.
    one_ms: f64,
    /// Median of 3: deliveries per second of a burst of [`BURST`] events.
    burst_per_s: f64,
    /// Server RSS growth per socket joined, in KiB.
    kib_per_socket: f64,
    /// CPU the driver and the server used while measuring, in % of one core.
    driver_cpu: f64,
    server_cpu: f64,
}

/// Opens sockets up to each size and measures; returns the figures per size.
async fn measure(server: &Server, sizes: &[usize], tally: &Arc<Tally>) -> Vec<Figures> {
    let pid = server.child.id();
    let me = std::process::id();
    let mut open = 0usize;
    let mut out = Vec::new();
    // Across sizes: Handoff's status must change with every request.
    let mut round = 0;
    for &n in sizes {
        let before = rss_kib(pid);
        let added = n - open;
        let (joined_tx, mut joined_rx) = mpsc::unbounded_channel();
        while open < n {
            let batch = (n - open).min(500);
            for _ in 0..batch {
                tokio::spawn(socket(
                    server.url.clone(),
                    server.proto.clone(),
                    tally.clone(),
                    joined_tx.clone(),
                ));
            }
            for _ in 0..batch {
                joined_rx.recv().await.unwrap();
            }
            open += batch;
            eprint!("\r{}: {open} sockets joined", server.name);
        }
        eprintln!();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kib_per_socket = rss_kib(pid).saturating_sub(before) as f64 / added.max(1) as f64;
        let (cpu_me, cpu_server, wall) = (cpu_secs(me), cpu_secs(pid), Instant::now());
        let mut one = Vec::new();
        for _ in 0..5 {
            tally.expect(open);
            let start = Instant::now();
            let resp = (server.trigger)(round).send().await.unwrap();
            round += 1;
            assert!(resp.status().is_success(), "{}", resp.status());
            tally.wait().await;
            one.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let mut burst = Vec::new();
        for _ in 0..3 {
            tally.expect(open * BURST);
            let start = Instant::now();
            for _ in 0..BURST {
                let resp = (server.trigger)(round).send().await.unwrap();
                round += 1;
                assert!(resp.status().is_success(), "{}", resp.status());
            }
            tally.wait().await;
            burst.push((open * BURST) as f64 / start.elapsed().as_secs_f64());
        }
        let wall = wall.elapsed().as_secs_f64();
        one.sort_by(f64::total_cmp);
        burst.sort_by(f64::total_cmp);
        out.push(Figures {
            one_ms: one[2],
            burst_per_s: burst[1],
            kib_per_socket,
            driver_cpu: (cpu_secs(me) - cpu_me) / wall * 100.0,
            server_cpu: (cpu_secs(pid) - cpu_server) / wall * 100.0,
        });
    }
    out
}

fn thousands(n: f64) -> String {
    let digits = format!("{n:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve().await;
    }
    let peer_dir = args.iter().position(|a| a == "--socketio").map(|i| {
        let dir = PathBuf::from(args.get(i + 1).expect("--socketio DIR"));
        args.drain(i..=i + 1);
        dir
    });
    let sizes: Vec<usize> =
        if args.is_empty() { vec![1_000, 10_000] } else { args.iter().map(|a| a.parse().unwrap()).collect() };
    let http = reqwest::Client::new();

    let tally = Arc::new(Tally::default());
    let server = handoff(&http);
    let ours = measure(&server, &sizes, &tally).await;
    drop(server);
    let theirs = match peer_dir {
        Some(dir) => {
            // The payload Handoff sent: `{"type": "broadcast", "event", "payload"}`.
            let sample = tally.sample.get().expect("no event arrived");
            let frame = codec::decode_text(Vsn::V2, sample).unwrap();
            let Payload::Json(payload) = frame.payload else { panic!("binary event frame") };
            let tally = Arc::new(Tally::default());
            let server = socketio(&http, &dir, &payload);
            let figures = measure(&server, &sizes, &tally).await;
            drop(server);
            Some(figures)
        }
        None => None,
    };

    println!("| figure | sockets | Handoff | Socket.IO 4 | Handoff / Socket.IO |\n|---|---|---|---|---|");
    for (i, &n) in sizes.iter().enumerate() {
        let (o, t) = (ours[i], theirs.as_ref().map(|t| t[i]));
        let n = thousands(n as f64);
        let row = |what: &str, ours: String, theirs: Option<String>, ratio: Option<f64>| {
            println!(
                "| {what} | {n} | {ours} | {} | {} |",
                theirs.unwrap_or_else(|| "-".into()),
                ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
            );
        };
        row(
            "one event, to the last delivery (median of 5)",
            format!("{:.1} ms", o.one_ms),
            t.map(|t| format!("{:.1} ms", t.one_ms)),
            t.map(|t| o.one_ms / t.one_ms),
        );
        row(
            "burst of 20 events, deliveries/s (median of 3)",
            thousands(o.burst_per_s),
            t.map(|t| thousands(t.burst_per_s)),
            t.map(|t| o.burst_per_s / t.burst_per_s),
        );
        row(
            "server memory per idle socket (RSS growth / sockets)",
            format!("{:.1} KiB", o.kib_per_socket),
            t.map(|t| format!("{:.1} KiB", t.kib_per_socket)),
            t.map(|t| o.kib_per_socket / t.kib_per_socket),
        );
        row(
            "CPU while measuring, server / driver (% of one core)",
            format!("{:.0} % / {:.0} %", o.server_cpu, o.driver_cpu),
            t.map(|t| format!("{:.0} % / {:.0} %", t.server_cpu, t.driver_cpu)),
            None,
        );
    }
}
