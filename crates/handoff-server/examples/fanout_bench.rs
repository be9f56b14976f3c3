//! Fan-out benchmark of the realtime hub (not a test: it prints figures).
//!
//! ```text
//! cargo run --release -p handoff-server --example fanout_bench [-- 1000 10000]
//! ```
//!
//! For each count N, a child process (this same binary, `--clients`) opens N `WebSocket`s on
//! loopback and joins `conversation:c1` on each; the parent runs the server (hub + socket
//! endpoint, a fake backend) and measures:
//! - memory per idle socket: the server process's RSS growth (`VmRSS`, `/proc/self/status`)
//!   from before the clients connect to after they joined, divided by N (the client sockets
//!   live in the child, so they are not counted);
//! - fan-out latency: from `Hub::publish` of one `message:new` to the moment the last of the
//!   N sockets has received it (wall clock, both processes on one machine), 5 rounds.
//!
//! Each process holds N sockets plus a few, so N must stay below the open-file limit
//! (`ulimit -n`; 20000 on the development machines, so N = 10000 fits). Raise it with
//! `ulimit -n` before running larger counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss, clippy::missing_panics_doc)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use handoff_protocol::channel::{ConversationOwner, Principal};
use handoff_protocol::event::{Author, AuthorKind, Message, MessageNew};
use handoff_protocol::phoenix::{codec, Frame, FrameKind, JoinPayload, Vsn};
use handoff_protocol::{
    AgentId, Channel, ConversationId, Event, MessageId, ProjectId, Seq, Timestamp, VisitorId,
};
use handoff_server::realtime::{routes, Hub, RealtimeBackend, RealtimeConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message as Ws;

const ROUNDS: u64 = 5;
const TOPIC: &str = "realtime:conversation:c1";

struct Fake;

#[async_trait]
impl RealtimeBackend for Fake {
    async fn authenticate(&self, _token: &str) -> Principal {
        Principal::Agent { project_id: ProjectId::new("p1"), agent_id: AgentId::new("a1") }
    }
    async fn conversation_owner(&self, _id: &ConversationId) -> Option<ConversationOwner> {
        Some(ConversationOwner { project_id: ProjectId::new("p1"), visitor_id: VisitorId::new("v1") })
    }
    async fn client_broadcast(&self, _: &Principal, _: &Channel, _: Event) -> Result<Event, String> {
        Err("not in the benchmark".into())
    }
}

fn now_us() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn event(round: u64) -> Event {
    Event::MessageNew(MessageNew {
        message: Message {
            id: MessageId::new(format!("m{round}")),
            conversation_id: ConversationId::new("c1"),
            seq: Seq(round),
            author: Author { kind: AuthorKind::Agent, id: "a1".into(), name: Some("Ann".into()) },
            // The publish time travels in the body, for the child to measure against.
            body: now_us().to_string(),
            client_msg_id: None,
            created_at: Timestamp(0),
        },
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if args.get(1).map(String::as_str) == Some("--clients") {
        let n = args[2].parse().unwrap();
        rt.block_on(clients(&args[3], n));
    } else {
        let counts: Vec<usize> = if args.len() > 1 {
            args[1..].iter().map(|a| a.parse().unwrap()).collect()
        } else {
            vec![1000, 10_000]
        };
        rt.block_on(server(&counts));
    }
}

async fn server(counts: &[usize]) {
    let hub = Arc::new(Hub::new());
    let config = RealtimeConfig { idle_timeout: Duration::from_secs(600), ..RealtimeConfig::default() };
    let app = routes(hub.clone(), Arc::new(Fake), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/realtime/v1/websocket?apikey=bench&vsn=2.0.0", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let channel = Channel::Conversation(ConversationId::new("c1"));
    println!("fan-out of one message:new on loopback, vsn 2.0.0 text frames, {ROUNDS} rounds each");
    for &n in counts {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib();
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--clients", &n.to_string(), &url])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
        assert_eq!(hub.subscribers(TOPIC), n);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib();
        let per_socket = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
        let mut latencies = Vec::new();
        for round in 1..=ROUNDS {
            hub.publish(&channel, &event(round));
            let line = lines.next_line().await.unwrap().unwrap();
            let us: u64 = line.parse().unwrap();
            latencies.push(us);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        child.wait().await.unwrap();
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        println!(
            "{n:>6} sockets: last socket served after median {:.2} ms (min {:.2}, max {:.2}); \
             server RSS +{} KiB = {:.1} KiB per idle socket",
            sorted[sorted.len() / 2] as f64 / 1000.0,
            sorted[0] as f64 / 1000.0,
            sorted[sorted.len() - 1] as f64 / 1000.0,
            after.saturating_sub(before),
            per_socket / 1024.0,
        );
        while hub.subscribers(TOPIC) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The child: N sockets; prints `ready` once all joined, then per round the microseconds from
/// publish to the last socket's receipt.
async fn clients(url: &str, n: usize) {
    let joined = Arc::new(AtomicUsize::new(0));
    let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..=ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let latest: Arc<Vec<AtomicU64>> = Arc::new((0..=ROUNDS).map(|_| AtomicU64::new(0)).collect());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..n {
        let (url, joined, counts, latest, done_tx, connecting) = (
            url.to_owned(),
            joined.clone(),
            counts.clone(),
            latest.clone(),
            done_tx.clone(),
            connecting.clone(),
        );
        tokio::spawn(async move {
            let permit = connecting.acquire().await.unwrap();
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
            let join_ref = format!("j{i}");
            let payload = JoinPayload { access_token: Some("bench".into()), ..JoinPayload::default() };
            let join = codec::encode_text(Vsn::V2, &Frame::join(&join_ref, TOPIC, &payload)).unwrap();
            ws.send(Ws::Text(join.into())).await.unwrap();
            while let Some(Ok(msg)) = ws.next().await {
                let Ws::Text(text) = msg else { continue };
                let frame = codec::decode_text(Vsn::V2, text.as_str()).unwrap();
                if frame.kind() == FrameKind::Reply {
                    drop(permit);
                    joined.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
            while let Some(Ok(msg)) = ws.next().await {
                let arrived = now_us();
                let Ws::Text(text) = msg else { continue };
                let frame = codec::decode_text(Vsn::V2, text.as_str()).unwrap();
                let Ok(Event::MessageNew(m)) = frame.broadcast_event() else { continue };
                let round = m.message.seq.0;
                let sent: u64 = m.message.body.parse().unwrap();
                let slot = usize::try_from(round).unwrap();
                latest[slot].fetch_max(arrived, Ordering::SeqCst);
                if counts[slot].fetch_add(1, Ordering::SeqCst) + 1 == n {
                    done_tx.send((round, latest[slot].load(Ordering::SeqCst) - sent)).unwrap();
                }
                if round == ROUNDS {
                    break;
                }
            }
        });
    }
    drop(done_tx);
    while joined.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ready");
    for _ in 1..=ROUNDS {
        let (_, us) = done_rx.recv().await.unwrap();
        println!("{us}");
    }
}
