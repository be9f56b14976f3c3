//! The chaos run (issue 14): two `handoff-server` nodes on one PostgreSQL database and one
//! Redis, customers and agents spread over both, while things break.
//!
//! - A Redis of its own (`redis-server` on an OS-picked port; the machine's shared one is never
//!   touched), a fresh database `handoff_chaos_<pid>` (dropped at the end), two nodes on
//!   OS-picked ports: node A reaches Redis directly, node B through a TCP proxy in this process
//!   (so that its Redis path can be stalled).
//! - Every conversation has a customer and an agent (who claimed it from the queue); each writes
//!   messages with a `client_msg_id` and retries a failed send with the same id, on the other
//!   node, like the SDK's outbox, and says it is typing before every fifth message. Each reads
//!   either on a Phoenix socket (catching up by `seq` after every (re)connect and every gap, as
//!   the SDK does) or, one in four, by long-polling.
//! - Faults: 1% of the sockets dropped every second; node B killed with SIGKILL and restarted;
//!   Redis killed with SIGKILL and restarted; node B's Redis connections stalled (bytes held in
//!   the proxy, no reset) for 10 s.
//! - A probe conversation, written every 100 ms through each node in turn and read live on a
//!   socket on each node, times how long cross-node live delivery takes to come back after each
//!   fault.
//!
//! At the end every reader does one last catch-up (the SDK does one at least every 60 s), then
//! the run checks against the stored events (REST) that every acknowledged message is stored
//! exactly once and that every reader has every event of its conversation exactly once, in
//! `seq` order, without a gap. It prints the counts, delivery latency, how many typing
//! indicators arrived stale and recovery times, and exits non-zero when a check fails.
//!
//! ```sh
//! cargo build -p handoff-server && cargo run -p handoff-server --example chaos               # short
//! cargo build --release -p handoff-server && \
//!   cargo run --release -p handoff-server --example chaos -- \
//!     --messages 100000 --conversations 200 --duration 300
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines,
    missing_docs
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use handoff_protocol::event::AuthorKind;
use handoff_protocol::phoenix::{
    codec, BroadcastConfig, Frame, FrameKind, JoinConfig, JoinPayload, ReplyStatus, Vsn,
};
use handoff_protocol::Event;
use handoff_server::realtime::EPHEMERAL_MAX_AGE;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Message as Ws;

// ---------------------------------------------------------------------------------------------
// Settings

struct Args {
    messages: usize,
    conversations: usize,
    send: Duration,
}

fn args() -> Args {
    let mut a = Args { messages: 5_000, conversations: 40, send: Duration::from_secs(90) };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| {
            panic!("usage: chaos [--messages N] [--conversations N] [--duration SECONDS]")
        });
        match pair[0].as_str() {
            "--messages" => a.messages = value as usize,
            "--conversations" => a.conversations = value as usize,
            "--duration" => a.send = Duration::from_secs(value),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The processes of this run still running, for the hard time limit to kill.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// How long node B's Redis path is stalled.
const STALL: Duration = Duration::from_secs(10);
/// How long a killed node or Redis stays down before it is started again.
const DOWN: Duration = Duration::from_secs(3);
/// A tiny deterministic generator (xorshift64*): which sockets drop, jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: Redis, the nodes, the proxy, the database

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("HANDOFF_SERVER_BIN") {
        return bin.into();
    }
    // target/<profile>/examples/chaos -> target/<profile>/handoff-server
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|p| p.parent()).unwrap().join("handoff-server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `redis-server` of this run's own, on a fixed port so that it can be restarted there.
struct RedisProc {
    port: u16,
    child: Option<Child>,
}

impl RedisProc {
    async fn start() -> RedisProc {
        let mut r = RedisProc { port: free_port(), child: None };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) is needed for the chaos run");
        CHILDREN.lock().unwrap().push(child.id());
        self.child = Some(child);
        wait_port(self.port, "redis-server").await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
            CHILDREN.lock().unwrap().retain(|pid| *pid != c.id());
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `handoff-server serve` process on a fixed port.
struct NodeProc {
    name: &'static str,
    port: u16,
    database_url: String,
    redis_url: String,
    log: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(binary())
            .args([
                "serve",
                "--addr",
                &format!("127.0.0.1:{}", self.port),
                "--limits",
                "off",
                "--ws-max-sockets-per-ip",
                "100000",
            ])
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("RUST_LOG", "warn,handoff_server::realtime=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        CHILDREN.lock().unwrap().push(child.id());
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = http.get(format!("http://127.0.0.1:{}/healthz", self.port)).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not start; see {}",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
            CHILDREN.lock().unwrap().retain(|pid| *pid != c.id());
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The run's database, dropped at the end (also after a panic).
struct Database {
    name: String,
}

impl Database {
    async fn create() -> Database {
        let name = format!("handoff_chaos_{}", std::process::id());
        sqlx::any::install_default_drivers();
        let mut conn =
            <sqlx::AnyConnection as sqlx::Connection>::connect("postgres://postgres@127.0.0.1:5432/test")
                .await
                .expect(
                    "PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) is needed for the chaos run",
                );
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        Database { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .output();
    }
}

/// A TCP proxy to Redis that can be stalled: while stalled it neither reads nor forwards
/// anything (the bytes wait in the kernel's buffers, nobody gets a reset), and new connections
/// are accepted but not connected onward — a network path gone silent.
async fn proxy(listener: TcpListener, upstream: u16, stall: watch::Receiver<bool>) {
    async fn flowing(stall: &mut watch::Receiver<bool>) {
        let _ = stall.wait_for(|stalled| !*stalled).await;
    }
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut stall: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            flowing(&mut stall).await;
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            flowing(&mut stall).await;
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }
    while let Ok((down, _)) = listener.accept().await {
        let mut stall = stall.clone();
        tokio::spawn(async move {
            flowing(&mut stall).await;
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
            // As Redis and its clients do: without it, Nagle's algorithm holds small writes
            // back while the peer delays its ACK, and a busy stream falls seconds behind.
            let _ = up.set_nodelay(true);
            let _ = down.set_nodelay(true);
            let (down_r, down_w) = down.into_split();
            let (up_r, up_w) = up.into_split();
            tokio::join!(pump(down_r, up_w, stall.clone()), pump(up_r, down_w, stall));
        });
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Clone)]
struct Cluster {
    http: reqwest::Client,
    base: [String; 2],
    ws: [String; 2],
}

impl Cluster {
    async fn call(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base[node])).timeout(timeout);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A call that must succeed (setup and verification), retried on either node.
    async fn must(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut last = String::new();
        for attempt in 0..40 {
            let node = attempt % 2;
            match self.call(node, method.clone(), path, token, body.clone(), Duration::from_secs(30)).await {
                Ok((200 | 201, v)) => return v,
                Ok((st, v)) if st < 500 && st != 408 && st != 429 => panic!("{method} {path}: {st} {v}"),
                Ok((st, v)) => last = format!("{st} {v}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{method} {path}: {last}");
    }
}

// ---------------------------------------------------------------------------------------------
// What every task reports

#[derive(Default)]
struct Stats {
    /// `client_msg_id` -> when its first send began.
    sent_at: Mutex<HashMap<String, Instant>>,
    /// `client_msg_id` -> the stored message's id, for acknowledged sends.
    acked: Mutex<HashMap<String, String>>,
    sent: AtomicUsize,
    retried: AtomicUsize,
    refused: AtomicUsize,
    gave_up: AtomicUsize,
    /// Delivery latencies of messages (send began -> applied by a reader), by how they came.
    latency_live: Mutex<Vec<Duration>>,
    latency_poll: Mutex<Vec<Duration>>,
    latency_catch_up: Mutex<Vec<Duration>>,
    by_final: AtomicUsize,
    socket_drops: AtomicUsize,
    reconnects: AtomicUsize,
    gaps: AtomicUsize,
    live_duplicates: AtomicUsize,
    /// (conversation, "customer" or "agent") -> when that writer last said it was typing.
    typing_sent: Mutex<HashMap<(usize, &'static str), Instant>>,
    typing_received: AtomicUsize,
    /// Typing indicators received more than the typing time-to-live after their sender's
    /// latest `typing` call: certainly stale.
    typing_stale: AtomicUsize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    Live,
    LongPoll,
    CatchUp,
    Final,
}

enum Applied {
    Yes,
    Old,
    Gap,
    NoSeq,
}

// ---------------------------------------------------------------------------------------------
// Writers

struct Writer {
    conv: usize,
    id: String,
    token: String,
    role: &'static str,
    count: usize,
    node: usize,
}

async fn write(w: Writer, cluster: Cluster, stats: Arc<Stats>, start: tokio::time::Instant, span: Duration) {
    let interval = span.checked_div(w.count.max(1) as u32).unwrap_or_default();
    // Writers start spread over the first interval.
    let offset = interval.mul_f64((w.conv % 17) as f64 / 17.0);
    for k in 0..w.count {
        tokio::time::sleep_until(start + offset + interval * k as u32).await;
        let cmid = format!("chaos-{}-{}-{k}", w.conv, w.role);
        stats.sent_at.lock().unwrap().insert(cmid.clone(), Instant::now());
        stats.sent.fetch_add(1, Ordering::Relaxed);
        if k % 5 == 0 {
            // Typing before every fifth message, fire-and-forget, as the widget does.
            stats.typing_sent.lock().unwrap().insert((w.conv, w.role), Instant::now());
            let _ = cluster
                .call(
                    w.node,
                    reqwest::Method::POST,
                    &format!("/api/conversations/{}/typing", w.id),
                    Some(&w.token),
                    Some(json!({"is_typing": true})),
                    Duration::from_secs(2),
                )
                .await;
        }
        let give_up = Instant::now() + Duration::from_secs(120);
        let mut node = w.node;
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let answer = cluster
                .call(
                    node,
                    reqwest::Method::POST,
                    &format!("/api/conversations/{}/messages", w.id),
                    Some(&w.token),
                    Some(json!({"body": cmid, "client_msg_id": cmid})),
                    Duration::from_secs(10),
                )
                .await;
            match answer {
                Ok((200 | 201, v)) => {
                    let id = v["message"]["id"].as_str().unwrap_or_default().to_owned();
                    stats.acked.lock().unwrap().insert(cmid.clone(), id);
                    if attempts > 1 {
                        stats.retried.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Ok((st, v)) if st != 408 && st != 429 && st < 500 => {
                    eprintln!("chaos: {cmid} refused for good: {st} {v}");
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(_) | Err(_) => {}
            }
            if Instant::now() > give_up {
                stats.gave_up.fetch_add(1, Ordering::Relaxed);
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            node = 1 - node; // the load balancer sends the retry elsewhere
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Readers

struct Reader {
    conv: usize,
    id: String,
    token: String,
    node: usize,
    long_poll: bool,
    vsn: Vsn,
    last_seq: u64,
    /// What it applied: (seq, message id for `message:new`).
    log: Vec<(u64, Option<String>)>,
    drop: Arc<Notify>,
}

impl Reader {
    fn apply(&mut self, event: &Event, how: How, stats: &Stats) -> Applied {
        let Some(seq) = event.seq() else { return Applied::NoSeq };
        if seq.0 <= self.last_seq {
            if how == How::Live {
                stats.live_duplicates.fetch_add(1, Ordering::Relaxed);
            }
            return Applied::Old;
        }
        if seq.0 > self.last_seq + 1 {
            return Applied::Gap;
        }
        self.last_seq = seq.0;
        let message = match event {
            Event::MessageNew(m) => Some(m),
            _ => None,
        };
        self.log.push((seq.0, message.map(|m| m.message.id.to_string())));
        let cmid = message.and_then(|m| m.message.client_msg_id.as_ref()).map(ToString::to_string);
        if let Some(cmid) = cmid.filter(|c| c.starts_with("chaos-")) {
            let sent = stats.sent_at.lock().unwrap().get(&cmid).copied();
            if let Some(sent) = sent {
                let latency = sent.elapsed();
                match how {
                    How::Live => stats.latency_live.lock().unwrap().push(latency),
                    How::LongPoll => stats.latency_poll.lock().unwrap().push(latency),
                    How::CatchUp => stats.latency_catch_up.lock().unwrap().push(latency),
                    How::Final => {
                        stats.by_final.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Applied::Yes
    }

    /// Fetches everything after `last_seq` from `node`, page by page. With `wait`, one long-poll.
    async fn fetch(
        &mut self,
        cluster: &Cluster,
        node: usize,
        how: How,
        wait: Option<u64>,
        stats: &Stats,
    ) -> bool {
        loop {
            let path = match wait {
                Some(w) => format!("/api/conversations/{}/events?after={}&wait={w}", self.id, self.last_seq),
                None => format!("/api/conversations/{}/events?after={}", self.id, self.last_seq),
            };
            let timeout = Duration::from_secs(wait.unwrap_or(0) + 10);
            let Ok((200, page)) =
                cluster.call(node, reqwest::Method::GET, &path, Some(&self.token), None, timeout).await
            else {
                return false;
            };
            let events = page["events"].as_array().cloned().unwrap_or_default();
            for e in &events {
                let Ok(event) = serde_json::from_value::<Event>(e.clone()) else { continue };
                if let Applied::Gap = self.apply(&event, how, stats) {
                    eprintln!("chaos: a page skipped a seq in {} (after {})", self.id, self.last_seq);
                    return false;
                }
            }
            if wait.is_some() || events.is_empty() || self.last_seq >= page["last_seq"].as_u64().unwrap_or(0)
            {
                return true;
            }
        }
    }
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn send_frame(ws: &mut WsStream, vsn: Vsn, frame: &Frame) -> bool {
    let text = codec::encode_text(vsn, frame).unwrap();
    ws.send(Ws::Text(text.into())).await.is_ok()
}

fn decode(vsn: Vsn, msg: &Ws) -> Option<Frame> {
    match msg {
        Ws::Text(t) => codec::decode_text(vsn, t.as_str()).ok(),
        Ws::Binary(b) => codec::decode_binary(b).ok(),
        _ => None,
    }
}

/// Connects and joins the conversation channel; `None` when either fails.
async fn connect_and_join(url: &str, vsn: Vsn, topic: &str, token: &str) -> Option<WsStream> {
    let url = format!("{url}&vsn={}", vsn.as_str());
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(3), tokio_tungstenite::connect_async(url))
        .await
        .ok()?
        .ok()?;
    let payload = JoinPayload {
        config: JoinConfig {
            broadcast: BroadcastConfig { self_: false, ack: false },
            private: true,
            ..JoinConfig::default()
        },
        access_token: Some(token.to_owned()),
    };
    if !send_frame(&mut ws, vsn, &Frame::join("1", topic, &payload)).await {
        return None;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()?;
        let Some(frame) = decode(vsn, &msg) else { continue };
        if frame.kind() == FrameKind::Reply && frame.r#ref.as_deref() == Some("1") {
            return (frame.reply().ok()?.status == ReplyStatus::Ok).then_some(ws);
        }
    }
}

async fn read_socket(
    mut r: Reader,
    cluster: Cluster,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) -> Reader {
    let topic = format!("realtime:conversation:{}", r.id);
    let mut failures = 0u32;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((r.conv as u64 + 1) * 7919));
    'session: loop {
        if *stop.borrow() {
            break;
        }
        let node = r.node;
        let Some(mut ws) = connect_and_join(&cluster.ws[node], r.vsn, &topic, &r.token).await else {
            failures += 1;
            if failures >= 3 {
                // Like a load balancer taking a dead node out: the next attempts go elsewhere.
                r.node = 1 - r.node;
                failures = 0;
            }
            tokio::time::sleep(Duration::from_millis(200 + rng.below(300))).await;
            continue;
        };
        failures = 0;
        // Catch up after every (re)connect, as the SDK's supervisor does.
        if !r.fetch(&cluster, node, How::CatchUp, None, &stats).await {
            continue;
        }
        let mut heartbeat = tokio::time::interval(Duration::from_secs(20));
        let mut hb_ref = 100u64;
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let Some(Ok(msg)) = msg else { break };
                    if let Ws::Close(_) = msg { break; }
                    let Some(frame) = decode(r.vsn, &msg) else { continue };
                    match frame.kind() {
                        FrameKind::Broadcast => {
                            let Ok(event) = frame.broadcast_event() else { continue };
                            if let Event::Typing(t) = &event {
                                stats.typing_received.fetch_add(1, Ordering::Relaxed);
                                let role =
                                    if t.actor.kind == AuthorKind::Customer { "customer" } else { "agent" };
                                let sent = stats.typing_sent.lock().unwrap().get(&(r.conv, role)).copied();
                                if sent.is_some_and(|s| s.elapsed() > EPHEMERAL_MAX_AGE) {
                                    stats.typing_stale.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if let Applied::Gap = r.apply(&event, How::Live, &stats) {
                                stats.gaps.fetch_add(1, Ordering::Relaxed);
                                if !r.fetch(&cluster, node, How::CatchUp, None, &stats).await {
                                    break;
                                }
                                // The event itself, if the page did not have it yet.
                                r.apply(&event, How::CatchUp, &stats);
                            }
                        }
                        FrameKind::Error | FrameKind::Close => break,
                        _ => {}
                    }
                }
                _ = heartbeat.tick() => {
                    hb_ref += 1;
                    if !send_frame(&mut ws, r.vsn, &Frame::heartbeat(&hb_ref.to_string())).await {
                        break;
                    }
                }
                () = r.drop.notified() => {
                    stats.socket_drops.fetch_add(1, Ordering::Relaxed);
                    break; // dropped without a close frame
                }
                _ = stop.changed() => break 'session,
            }
        }
        drop(ws);
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        // A fast first retry with jitter.
        tokio::time::sleep(Duration::from_millis(100 + rng.below(400))).await;
    }
    r
}

async fn read_long_poll(
    mut r: Reader,
    cluster: Cluster,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) -> Reader {
    loop {
        if *stop.borrow() {
            break;
        }
        let node = r.node;
        let ok = tokio::select! {
            ok = r.fetch(&cluster, node, How::LongPoll, Some(10), &stats) => ok,
            _ = stop.changed() => break,
        };
        if !ok {
            r.node = 1 - r.node;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    r
}

// ---------------------------------------------------------------------------------------------
// The probe: time to recover cross-node live delivery after each fault

#[derive(Default)]
struct Probe {
    /// Probe number -> (node it was written through, when the write began).
    sent: Mutex<HashMap<u64, (usize, Instant)>>,
    /// (probe number, node whose socket got it live, when, when it was committed: the message's
    /// `created_at`, so that a slow HTTP answer does not count as slow delivery). Probe `k` is
    /// written through node `k % 2`.
    received: Mutex<Vec<(u64, usize, Instant, Instant)>>,
}

async fn probe_writer(
    cluster: Cluster,
    id: String,
    token: String,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for k in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let node = (k % 2) as usize;
        let body = format!("probe-{k}");
        let started = Instant::now();
        let (cluster, id, token, probe) = (cluster.clone(), id.clone(), token.clone(), probe.clone());
        // Not awaited in turn: a dead node must not hold back the probes through the other.
        tokio::spawn(async move {
            let path = format!("/api/conversations/{id}/messages");
            let answer = cluster
                .call(
                    node,
                    reqwest::Method::POST,
                    &path,
                    Some(&token),
                    Some(json!({"body": body})),
                    Duration::from_secs(30),
                )
                .await;
            if let Ok((201, _)) = answer {
                probe.sent.lock().unwrap().insert(k, (node, started));
            }
        });
    }
}

async fn probe_reader(
    cluster: Cluster,
    node: usize,
    id: String,
    token: String,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) {
    let topic = format!("realtime:conversation:{id}");
    loop {
        let ws = tokio::select! {
            ws = connect_and_join(&cluster.ws[node], Vsn::V2, &topic, &token) => ws,
            _ = stop.changed() => return,
        };
        let Some(mut ws) = ws else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut heartbeat = tokio::time::interval(Duration::from_secs(20));
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let Some(Ok(msg)) = msg else { break };
                    let Some(frame) = decode(Vsn::V2, &msg) else { continue };
                    if frame.kind() != FrameKind::Broadcast { continue; }
                    if let Ok(Event::MessageNew(m)) = frame.broadcast_event() {
                        if let Some(k) = m.message.body.strip_prefix("probe-").and_then(|k| k.parse().ok()) {
                            let now = Instant::now();
                            let age = Duration::from_millis(unix_ms().saturating_sub(m.message.created_at.0));
                            let committed = now.checked_sub(age).unwrap_or(now);
                            probe.received.lock().unwrap().push((k, node, now, committed));
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if !send_frame(&mut ws, Vsn::V2, &Frame::heartbeat("hb")).await { break; }
                }
                _ = stop.changed() => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Probe {
    /// After a fault ended at `end`: how long until a probe committed after `end` through node
    /// A reached node B's socket live, and the other way round.
    fn recovery(&self, end: Instant) -> [Option<Duration>; 2] {
        let received = self.received.lock().unwrap();
        [0, 1].map(|from| {
            received
                .iter()
                .filter(|(k, at, _, committed)| (k % 2) as usize == from && *at != from && *committed >= end)
                .map(|(_, _, when, _)| when.saturating_duration_since(end))
                .min()
        })
    }

    /// The median cross-node latency (commit -> a socket of the other node) of the probes
    /// written through node `from`, by 10-second window of the run.
    fn latency_by_window(&self, from: usize, origin: Instant) -> Vec<String> {
        let received = self.received.lock().unwrap();
        let mut windows: Vec<Vec<Duration>> = Vec::new();
        for (k, at, when, committed) in received.iter() {
            if (k % 2) as usize != from || *at == from {
                continue;
            }
            let w = (committed.saturating_duration_since(origin).as_secs() / 10) as usize;
            if windows.len() <= w {
                windows.resize(w + 1, Vec::new());
            }
            windows[w].push(when.saturating_duration_since(*committed));
        }
        windows
            .iter_mut()
            .map(|w| if w.is_empty() { "-".to_owned() } else { format!("{:.0}", ms(percentile(w, 0.5))) })
            .collect()
    }

    /// Probes seen live on the other node's socket, and probes written.
    fn cross_node(&self) -> (usize, usize) {
        let received = self.received.lock().unwrap();
        let crossed = received.iter().filter(|(k, at, _, _)| (k % 2) as usize != *at).count();
        (crossed, self.sent.lock().unwrap().len())
    }
}

// ---------------------------------------------------------------------------------------------
// The run

struct Fault {
    name: &'static str,
    end: Instant,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Runs a future on a thread of its own with a single-threaded runtime.
fn on_own_thread<F, Fut>(f: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(f());
    })
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn cli(database_url: &str, args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).env("DATABASE_URL", database_url).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = args();
    let run_started = Instant::now();
    // Stops by itself whatever happens.
    let hard_limit = args.send + Duration::from_secs(240);
    std::thread::spawn(move || {
        std::thread::sleep(hard_limit);
        eprintln!("chaos: the run took longer than {hard_limit:?}; giving up");
        // `exit` runs no destructors: kill what this run started and drop its database here.
        for pid in CHILDREN.lock().unwrap().iter() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        drop(Database { name: format!("handoff_chaos_{}", std::process::id()) });
        std::process::exit(3);
    });

    let dir = std::env::temp_dir().join(format!("handoff-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Database::create().await;
    let database_url = db.url();

    // Project and agents (agents stay offline: conversations queue, and agents claim them).
    let project = cli(&database_url, &["project", "create", "--name", "Chaos"]);
    let public_key = value(&project, "public_key").to_owned();
    let project_id = value(&project, "project_id").to_owned();
    let agents = 4;
    for i in 0..agents {
        let email = format!("agent{i}@chaos.test");
        let out = cli(
            &database_url,
            &[
                "agent",
                "create",
                "--project",
                &project_id,
                "--email",
                &email,
                "--name",
                &format!("Agent {i}"),
                "--password",
                "chaos-pw-123",
            ],
        );
        let id = value(&out, "agent_id").to_owned();
        cli(&database_url, &["agent", "set", "--agent", &id, "--capacity", "1000"]);
    }

    let mut redis = RedisProc::start().await;
    let (stall_tx, stall_rx) = watch::channel(false);
    // The proxy and the probe run on threads of their own, so that the load of the readers and
    // writers in this process does not delay what they forward or time.
    let proxy_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = proxy_listener.local_addr().unwrap().port();
    let redis_port = redis.port;
    on_own_thread(move || async move {
        proxy_listener.set_nonblocking(true).unwrap();
        proxy(TcpListener::from_std(proxy_listener).unwrap(), redis_port, stall_rx).await;
    });
    let mut node_a = NodeProc {
        name: "A",
        port: free_port(),
        database_url: database_url.clone(),
        redis_url: format!("redis://127.0.0.1:{}", redis.port),
        log: dir.join("node-a.log"),
        child: None,
    };
    let mut node_b = NodeProc {
        name: "B",
        port: free_port(),
        database_url: database_url.clone(),
        redis_url: format!("redis://127.0.0.1:{proxy_port}"),
        log: dir.join("node-b.log"),
        child: None,
    };
    node_a.spawn().await;
    node_b.spawn().await;
    let cluster = Cluster {
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        base: [format!("http://127.0.0.1:{}", node_a.port), format!("http://127.0.0.1:{}", node_b.port)],
        ws: [
            format!("ws://127.0.0.1:{}/realtime/v1/websocket?apikey={public_key}", node_a.port),
            format!("ws://127.0.0.1:{}/realtime/v1/websocket?apikey={public_key}", node_b.port),
        ],
    };

    let mut agent_tokens = Vec::new();
    for i in 0..agents {
        let v = cluster
            .must(
                reqwest::Method::POST,
                "/api/agents/login",
                None,
                Some(json!({"email": format!("agent{i}@chaos.test"), "password": "chaos-pw-123"})),
            )
            .await;
        agent_tokens
            .push((v["token"].as_str().unwrap().to_owned(), v["agent"]["id"].as_str().unwrap().to_owned()));
    }

    // Conversations: a visitor starts one, asks for a human, an agent claims it.
    let start_conversation = |i: usize| {
        let cluster = cluster.clone();
        let public_key = public_key.clone();
        let agent = agent_tokens[i % agents].clone();
        let agent_tokens = agent_tokens.clone();
        async move {
            let s = cluster
                .must(
                    reqwest::Method::POST,
                    "/api/widget/session",
                    None,
                    Some(json!({"project_key": public_key})),
                )
                .await;
            let vt = s["visitor_token"].as_str().unwrap().to_owned();
            let c = cluster
                .must(reqwest::Method::POST, "/api/conversations", Some(&vt), Some(json!({"body": "hello"})))
                .await;
            let id = c["id"].as_str().unwrap().to_owned();
            cluster
                .must(
                    reqwest::Method::POST,
                    &format!("/api/conversations/{id}/handoff"),
                    Some(&vt),
                    Some(json!({})),
                )
                .await;
            let claimed = cluster
                .call(
                    0,
                    reqwest::Method::POST,
                    &format!("/api/conversations/{id}/claim"),
                    Some(&agent.0),
                    None,
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            // Assigned to someone else meanwhile (an agent who came online): that one answers.
            let assignee = if claimed.0 == 200 {
                agent.0
            } else {
                let c = cluster
                    .must(reqwest::Method::GET, &format!("/api/conversations/{id}"), Some(&agent.0), None)
                    .await;
                let who = c["assigned_agent"]["id"]
                    .as_str()
                    .or(c["agent"]["id"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                agent_tokens
                    .iter()
                    .find(|(_, aid)| *aid == who)
                    .map_or_else(|| panic!("claim: {claimed:?}; {c}"), |(t, _)| t.clone())
            };
            (id, vt, assignee)
        }
    };
    let mut conversations = Vec::new();
    let indices: Vec<usize> = (0..=args.conversations).collect();
    for chunk in indices.chunks(8) {
        conversations.extend(join_all(chunk.iter().map(|&i| start_conversation(i))).await);
    }
    let (probe_id, _, probe_agent) = conversations.pop().unwrap();
    println!(
        "chaos: {} conversations on 2 nodes (PostgreSQL {}, Redis on port {}, node B through a proxy); setup {:.1} s",
        conversations.len(),
        db.name,
        redis.port,
        run_started.elapsed().as_secs_f64()
    );

    // Readers and writers.
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::new();
    let mut drops = Vec::new();
    let mut n = 0usize;
    for (i, (id, vt, at)) in conversations.iter().enumerate() {
        for token in [vt, at] {
            let drop = Arc::new(Notify::new());
            let r = Reader {
                conv: i,
                id: id.clone(),
                token: token.clone(),
                node: n % 2,
                long_poll: n % 4 == 3,
                vsn: if n % 3 == 0 { Vsn::V1 } else { Vsn::V2 },
                last_seq: 0,
                log: Vec::new(),
                drop: drop.clone(),
            };
            if !r.long_poll {
                drops.push(drop);
            }
            let (cluster, stats, stop) = (cluster.clone(), stats.clone(), stop_rx.clone());
            readers.push(if r.long_poll {
                tokio::spawn(read_long_poll(r, cluster, stats, stop))
            } else {
                tokio::spawn(read_socket(r, cluster, stats, stop))
            });
            n += 1;
        }
    }
    let probe = Arc::new(Probe::default());
    let probe_thread = {
        let (base, ws, probe, stop) =
            (cluster.base.clone(), cluster.ws.clone(), probe.clone(), stop_rx.clone());
        let (id, token) = (probe_id.clone(), probe_agent.clone());
        on_own_thread(move || async move {
            let cluster = Cluster { http: reqwest::Client::new(), base, ws };
            let readers: Vec<_> = (0..2)
                .map(|node| {
                    tokio::spawn(probe_reader(
                        cluster.clone(),
                        node,
                        id.clone(),
                        token.clone(),
                        probe.clone(),
                        stop.clone(),
                    ))
                })
                .collect();
            // Let the sockets join before the writes begin.
            tokio::time::sleep(Duration::from_secs(2)).await;
            probe_writer(cluster, id, token, probe, stop).await;
            for r in readers {
                let _ = r.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let per_writer = args.messages.div_ceil(conversations.len() * 2);
    let start = tokio::time::Instant::now();
    let mut writers = Vec::new();
    let mut total = 0;
    for (i, (id, vt, at)) in conversations.iter().enumerate() {
        for (role, token) in [("customer", vt), ("agent", at)] {
            let count = per_writer.min(args.messages - total);
            total += count;
            let w = Writer {
                conv: i,
                id: id.clone(),
                token: token.clone(),
                role,
                count,
                node: (i + usize::from(role == "agent")) % 2,
            };
            writers.push(tokio::spawn(write(w, cluster.clone(), stats.clone(), start, args.send)));
        }
    }
    println!(
        "chaos: {} messages over {:.0} s from {} writers; {} readers ({} on sockets, {} long-polling)",
        total,
        args.send.as_secs_f64(),
        writers.len(),
        readers.len(),
        drops.len(),
        readers.len() - drops.len()
    );

    // Socket drops: 1% of the sockets every second.
    let dropper = {
        let drops = drops.clone();
        tokio::spawn(async move {
            let mut rng = Rng(0x2545_F491_4F6C_DD1D);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for d in &drops {
                    if rng.below(100) == 0 {
                        d.notify_one();
                    }
                }
            }
        })
    };

    // The faults, spread over the sending time.
    let mut faults = Vec::new();
    let at = |share: f64| start + args.send.mul_f64(share);
    tokio::time::sleep_until(at(0.2)).await;
    node_b.kill();
    println!("chaos: {:6.1} s  node B killed (SIGKILL)", run_started.elapsed().as_secs_f64());
    tokio::time::sleep(DOWN).await;
    let end = Instant::now();
    node_b.spawn().await;
    println!(
        "chaos: {:6.1} s  node B restarted (serving after {:.2} s)",
        run_started.elapsed().as_secs_f64(),
        end.elapsed().as_secs_f64()
    );
    faults.push(Fault { name: "node B killed for 3 s", end });

    tokio::time::sleep_until(at(0.45)).await;
    redis.kill();
    println!("chaos: {:6.1} s  redis killed (SIGKILL)", run_started.elapsed().as_secs_f64());
    tokio::time::sleep(DOWN).await;
    let end = Instant::now();
    redis.spawn().await;
    println!("chaos: {:6.1} s  redis restarted", run_started.elapsed().as_secs_f64());
    faults.push(Fault { name: "redis killed for 3 s", end });

    tokio::time::sleep_until(at(0.65)).await;
    stall_tx.send_replace(true);
    println!("chaos: {:6.1} s  node B's redis connections stalled", run_started.elapsed().as_secs_f64());
    tokio::time::sleep(STALL).await;
    let end = Instant::now();
    stall_tx.send_replace(false);
    println!("chaos: {:6.1} s  node B's redis connections flow again", run_started.elapsed().as_secs_f64());
    faults.push(Fault { name: "node B's redis stalled for 10 s", end });

    for w in writers {
        w.await.unwrap();
    }
    println!("chaos: {:6.1} s  every writer is done", run_started.elapsed().as_secs_f64());
    dropper.abort();
    // Live deliveries in flight settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send_replace(true);
    let mut finished = Vec::new();
    for r in readers {
        finished.push(r.await.unwrap());
    }
    let _ = tokio::task::spawn_blocking(move || probe_thread.join()).await;
    // One last catch-up each (the SDK does one at least every 60 s while connected).
    for r in &mut finished {
        let node = r.node;
        assert!(
            r.fetch(&cluster, node, How::Final, None, &stats).await
                || r.fetch(&cluster, 1 - node, How::Final, None, &stats).await
        );
    }

    // Verify against what is stored.
    let acked = stats.acked.lock().unwrap().clone();
    let mut stored = 0usize;
    let mut duplicates = 0usize;
    let mut missing = 0usize;
    let mut store_gaps = 0usize;
    let mut reader_mismatch = 0usize;
    let mut by_conv: HashMap<usize, Vec<&Reader>> = HashMap::new();
    for r in &finished {
        by_conv.entry(r.conv).or_default().push(r);
    }
    for (i, (id, _, agent)) in conversations.iter().enumerate() {
        let mut events: Vec<(u64, Option<String>, Option<String>)> = Vec::new();
        loop {
            let after = events.last().map_or(0, |e| e.0);
            let page = cluster
                .must(
                    reqwest::Method::GET,
                    &format!("/api/conversations/{id}/events?after={after}"),
                    Some(agent),
                    None,
                )
                .await;
            let page_events = page["events"].as_array().cloned().unwrap_or_default();
            for e in &page_events {
                let event: Event = serde_json::from_value(e.clone()).unwrap();
                let Some(seq) = event.seq() else { continue };
                let (mid, cmid) = match &event {
                    Event::MessageNew(m) => (
                        Some(m.message.id.to_string()),
                        m.message.client_msg_id.as_ref().map(ToString::to_string),
                    ),
                    _ => (None, None),
                };
                events.push((seq.0, mid, cmid));
            }
            if page_events.is_empty() || after >= page["last_seq"].as_u64().unwrap_or(0) {
                break;
            }
        }
        if events.iter().enumerate().any(|(k, e)| e.0 != k as u64 + 1) {
            store_gaps += 1;
            eprintln!("chaos: the stored seqs of {id} are not 1..n");
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for cmid in events.iter().filter_map(|e| e.2.as_deref()).filter(|c| c.starts_with("chaos-")) {
            *seen.entry(cmid).or_default() += 1;
        }
        stored += seen.len();
        duplicates += seen.values().map(|n| n - 1).sum::<usize>();
        let prefix = format!("chaos-{i}-");
        for (cmid, mid) in acked.iter().filter(|(c, _)| c.starts_with(&prefix)) {
            if !seen.contains_key(cmid.as_str()) {
                missing += 1;
                eprintln!("chaos: acknowledged {cmid} ({mid}) is not stored");
            }
        }
        let expected: Vec<(u64, Option<String>)> = events.iter().map(|e| (e.0, e.1.clone())).collect();
        for r in by_conv.get(&i).into_iter().flatten() {
            if r.log != expected {
                reader_mismatch += 1;
                let first = r
                    .log
                    .iter()
                    .zip(&expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(r.log.len().min(expected.len()));
                eprintln!(
                    "chaos: a reader of {id} ({}) has {} events, {} stored; first difference at index {first}",
                    if r.long_poll { "long-poll" } else { "socket" },
                    r.log.len(),
                    expected.len()
                );
            }
        }
    }

    let sent = stats.sent.load(Ordering::Relaxed);
    let mut live = stats.latency_live.lock().unwrap().clone();
    let mut poll = stats.latency_poll.lock().unwrap().clone();
    let mut catch_up = stats.latency_catch_up.lock().unwrap().clone();
    let by_final = stats.by_final.load(Ordering::Relaxed);
    let mut all: Vec<Duration> = live.iter().chain(&poll).chain(&catch_up).copied().collect();
    let deliveries = all.len() + by_final;
    println!("chaos: results after {:.1} s", run_started.elapsed().as_secs_f64());
    println!(
        "  messages: sent {sent}, acknowledged {}, stored {stored}, duplicates {duplicates}, missing {missing} (retried {}, refused {}, given up {})",
        acked.len(),
        stats.retried.load(Ordering::Relaxed),
        stats.refused.load(Ordering::Relaxed),
        stats.gave_up.load(Ordering::Relaxed)
    );
    println!(
        "  readers: {} ({} with every event exactly once in seq order, {} not); conversations whose stored seqs are not 1..n: {store_gaps}",
        finished.len(),
        finished.len() - reader_mismatch,
        reader_mismatch
    );
    println!(
        "  deliveries of messages to readers: {deliveries}: live on a socket {}, by long-poll {}, by catch-up after a reconnect or gap {}, by the last catch-up {by_final}",
        live.len(),
        poll.len(),
        catch_up.len()
    );
    println!(
        "  latency, send began -> applied: all p50 {:.1} ms p99 {:.1} ms; live on a socket p50 {:.1} ms p99 {:.1} ms; long-poll p50 {:.1} ms p99 {:.1} ms; catch-up p50 {:.0} ms p99 {:.0} ms",
        ms(percentile(&mut all, 0.5)),
        ms(percentile(&mut all, 0.99)),
        ms(percentile(&mut live, 0.5)),
        ms(percentile(&mut live, 0.99)),
        ms(percentile(&mut poll, 0.5)),
        ms(percentile(&mut poll, 0.99)),
        ms(percentile(&mut catch_up, 0.5)),
        ms(percentile(&mut catch_up, 0.99)),
    );
    println!(
        "  sockets: {} dropped on purpose, {} reconnects in all; {} gaps noticed live; {} live events already applied (dropped by seq)",
        stats.socket_drops.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed),
        stats.gaps.load(Ordering::Relaxed),
        stats.live_duplicates.load(Ordering::Relaxed)
    );
    println!(
        "  typing: {} indicators received on sockets, {} of them more than {} s after their sender's latest typing call",
        stats.typing_received.load(Ordering::Relaxed),
        stats.typing_stale.load(Ordering::Relaxed),
        EPHEMERAL_MAX_AGE.as_secs()
    );
    let (crossed, probes_sent) = probe.cross_node();
    println!("  probe: {probes_sent} written, {crossed} seen live on the other node's socket");
    for f in &faults {
        let [ab, ba] = probe.recovery(f.end);
        let secs = |d: Option<Duration>| {
            d.map_or_else(|| "never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        println!(
            "  after {}: cross-node live delivery back {} (A to B) and {} (B to A) after the fault ended",
            f.name,
            secs(ab),
            secs(ba)
        );
    }
    println!(
        "  probe latency, median per 10 s of the run, in ms: A to B {}",
        probe.latency_by_window(0, run_started).join(" ")
    );
    println!(
        "  probe latency, median per 10 s of the run, in ms: B to A {}",
        probe.latency_by_window(1, run_started).join(" ")
    );
    // What the nodes say about their Redis links.
    for (name, log) in [("A", &node_a.log), ("B", &node_b.log)] {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("redis")) {
            let mut clean = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    chars.by_ref().find(char::is_ascii_alphabetic);
                } else {
                    clean.push(c);
                }
            }
            println!("  node {name}: {clean}");
        }
    }
    let ok = missing == 0
        && duplicates == 0
        && reader_mismatch == 0
        && store_gaps == 0
        && stats.refused.load(Ordering::Relaxed) == 0
        && stats.gave_up.load(Ordering::Relaxed) == 0
        && faults.iter().all(|f| probe.recovery(f.end).iter().all(Option::is_some));
    node_a.kill();
    node_b.kill();
    redis.kill();
    drop(db);
    if ok {
        let _ = std::fs::remove_dir_all(&dir);
        println!("chaos: ok");
        std::process::ExitCode::SUCCESS
    } else {
        println!("chaos: FAILED (node logs in {})", dir.display());
        std::process::ExitCode::FAILURE
    }
}
