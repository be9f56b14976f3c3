//! The realtime socket under attack (issue 11), against a real server: one test per attack row,
//! each also checking that a legitimate visitor and agent keep working meanwhile.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use handoff_protocol::event::{Author, AuthorKind, Typing};
use handoff_protocol::phoenix::{Frame, FrameKind, ReplyStatus, Vsn};
use handoff_protocol::{ConversationId, Event};
use handoff_server::realtime::RealtimeConfig;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::harness::{Db, Socket, TestServer};

/// Runs a test body on SQLite, then on PostgreSQL, with a realtime config.
macro_rules! both_dbs_with {
    ($name:ident, $config:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                if let Some(s) = TestServer::start_with(Db::Sqlite, $config).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(s) = TestServer::start_with(Db::Postgres, $config).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

fn queue_topic(s: &TestServer) -> String {
    format!("realtime:project:{}:queue", s.project)
}

/// The URL of the server's socket with another `apikey` query (`None`: without one).
fn url_with_key(s: &TestServer, key: Option<&str>) -> String {
    let base = s.ws.split('?').next().unwrap();
    match key {
        Some(k) => format!("{base}?apikey={k}"),
        None => format!("{base}?x=1"),
    }
}

/// The status, JSON body and headers of a refused upgrade.
fn refusal(e: WsError) -> (u16, Value, tokio_tungstenite::tungstenite::http::HeaderMap) {
    match e {
        WsError::Http(resp) => {
            let body = resp.body().as_deref().map_or(Value::Null, |b| serde_json::from_slice(b).unwrap());
            (resp.status().as_u16(), body, resp.headers().clone())
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Reads until the close frame: its code and reason (`None` when the stream ends without one).
async fn close_frame(s: &mut Socket, within: Duration) -> Option<(CloseCode, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| (f.code, f.reason.to_string())),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

/// Waits for a broadcast matching `pred` (other frames are skipped).
async fn wait_event(s: &mut Socket, what: &str, pred: impl Fn(&str, &Event) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(f) = s.recv_within(Duration::from_secs(5)).await {
            if f.kind() == FrameKind::Broadcast && pred(&f.topic, &f.broadcast_event().unwrap()) {
                return;
            }
        }
    }
    panic!("no {what} within 5 s");
}

/// A legitimate visitor and agent still work: the agent sees the visitor's new message on the
/// conversation channel, the visitor sees the agent's.
async fn legit_users_work(s: &TestServer) {
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut visitor = s.socket(Vsn::V2).await;
    visitor.join_ok(&topic, &vt).await;
    let mut agent = s.socket(Vsn::V1).await;
    agent.join_ok(&topic, &s.agent2.0).await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&vt),
            Some(json!({"body": "still here"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&s.agent2.0),
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let message = |body: &'static str| move |_: &str, e: &Event| matches!(e, Event::MessageNew(m) if m.message.body == body);
    wait_event(&mut agent, "the visitor's message", message("still here")).await;
    wait_event(&mut visitor, "the agent's message", message("hi")).await;
}

/// A second project with its own agent and visitor: (id, public key, agent token, visitor
/// token, secret key).
async fn other_project(s: &TestServer) -> (String, String, String, String, String) {
    let (p, secret) = s.svc.create_project("Other", vec!["*".into()]).await.unwrap();
    s.svc.create_agent(&p.id, "eve@other.dev", "Eve", "pw-eve-123").await.unwrap();
    let (agent, _) = s.login("eve@other.dev", "pw-eve-123").await;
    let (st, v) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": p.public_key}))).await;
    assert_eq!(st, 200, "{v}");
    (p.id.to_string(), p.public_key, agent, v["visitor_token"].as_str().unwrap().to_owned(), secret)
}

fn reason(reply: &Frame) -> Option<String> {
    let r = reply.reply().unwrap();
    assert_eq!(r.status, ReplyStatus::Error, "{reply:?}");
    r.reason().map(str::to_owned)
}

// Socket key: a missing, garbage or unknown `apikey` is refused with the JSON error body; a socket
// opened with another project's key joins nothing of this project, with any kind of token.
crate::both_dbs!(socket_key_must_be_the_projects_public_key, |s: TestServer| async move {
    for key in [None, Some("garbage"), Some("pk_doesnotexist"), Some("")] {
        let e = Socket::connect_with(&url_with_key(&s, key), Vsn::V2, &[]).await.err().expect("refused");
        let (status, body, _) = refusal(e);
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{key:?}: {body}");
    }
    let (other_id, other_key, other_agent, other_visitor, other_secret) = other_project(&s).await;
    let (vt, c) = s.conversation().await;
    let mut wrong = Socket::connect_with(&url_with_key(&s, Some(&other_key)), Vsn::V2, &[]).await.unwrap();
    for (topic, token) in [
        (format!("realtime:conversation:{c}"), vt.as_str()),
        (format!("realtime:conversation:{c}"), s.agent1.0.as_str()),
        (format!("realtime:agent:{}", s.agent1.1), s.agent1.0.as_str()),
        (queue_topic(&s), s.secret_key.as_str()),
    ] {
        let (_, reply) = wrong.join(&topic, Some(token), false).await;
        assert_eq!(reason(&reply).as_deref(), Some("project_mismatch"), "{topic}");
    }
    // The other project's own agent is welcome on the socket of its key ...
    wrong.join_ok(&format!("realtime:project:{other_id}:queue"), &other_agent).await;
    // ... and project B's tokens are refused on project A's socket.
    let mut right = s.socket(Vsn::V2).await;
    for token in [&other_agent, &other_visitor, &other_secret] {
        let (_, reply) = right.join(&queue_topic(&s), Some(token), false).await;
        assert_eq!(reason(&reply).as_deref(), Some("project_mismatch"));
    }
    // The project's own key works, and the agent's sign-in answers carry it for the SDK.
    right.join_ok(&queue_topic(&s), &s.agent1.0).await;
    let (st, me) = s.call("GET", "/api/agents/me", Some(&s.agent1.0), None).await;
    assert_eq!((st, me["project_key"].as_str()), (200, Some(s.public_key.as_str())), "{me}");
    legit_users_work(&s).await;
});

// Socket origin: a socket from an origin the project does not allow can neither join a customer
// channel nor write on it; an allowed origin can; agents are not origin-checked (as on REST).
crate::both_dbs!(socket_origin_is_checked_for_customers, |s: TestServer| async move {
    let (p, _) = s.svc.create_project("Shop", vec!["https://shop.example".into()]).await.unwrap();
    s.svc.create_agent(&p.id, "sam@shop.dev", "Sam", "pw-sam-123").await.unwrap();
    let (agent, _) = s.login("sam@shop.dev", "pw-sam-123").await;
    let (st, v) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": p.public_key}))).await;
    assert_eq!(st, 200, "{v}");
    let vt = v["visitor_token"].as_str().unwrap().to_owned();
    let (st, conv) = s.call("POST", "/api/conversations", Some(&vt), Some(json!({"body": "hello"}))).await;
    assert_eq!(st, 201, "{conv}");
    let topic = format!("realtime:conversation:{}", conv["id"].as_str().unwrap());
    let url = url_with_key(&s, Some(&p.public_key));

    let mut evil = Socket::connect_with(&url, Vsn::V2, &[("origin", "https://evil.example")]).await.unwrap();
    let (_, reply) = evil.join(&topic, Some(&vt), true).await;
    assert_eq!(reason(&reply).as_deref(), Some("origin_not_allowed"));
    // A tokenless join upgraded by an access_token push is refused the same way (phx_close).
    let (join_ref, reply) = evil.join(&topic, None, true).await;
    assert_eq!(reply.reply().unwrap().status, ReplyStatus::Ok);
    let r = evil.r#ref();
    evil.send(&Frame::access_token(&join_ref, &r, &topic, &vt)).await;
    let typing = Event::Typing(Typing {
        conversation_id: ConversationId::new(conv["id"].as_str().unwrap()),
        actor: Author { kind: AuthorKind::Customer, id: "x".into(), name: None },
        is_typing: true,
    });
    let r = evil.r#ref();
    evil.send(&Frame::push_broadcast(&join_ref, &r, &topic, &typing)).await;
    let frames = evil.drain_frames().await;
    assert!(frames.iter().any(|f| f.kind() == FrameKind::Close && f.topic == topic), "{frames:?}");
    let refused =
        frames.iter().find(|f| f.r#ref.as_deref() == Some(r.as_str())).expect("a reply to the write");
    assert_eq!(refused.reply().unwrap().status, ReplyStatus::Error, "{refused:?}");
    // The agent may use a socket from any origin.
    evil.join_ok(&topic, &agent).await;

    let mut good = Socket::connect_with(&url, Vsn::V2, &[("origin", "https://shop.example")]).await.unwrap();
    let (join_ref, reply) = good.join(&topic, Some(&vt), true).await;
    assert_eq!(reply.reply().unwrap().status, ReplyStatus::Ok, "{reply:?}");
    let r = good.r#ref();
    good.send(&Frame::push_broadcast(&join_ref, &r, &topic, &typing)).await;
    assert_eq!(good.reply_to(&r).await.reply().unwrap().status, ReplyStatus::Ok);
    wait_event(&mut evil, "the customer's typing", |_, e| matches!(e, Event::Typing(_))).await;
    legit_users_work(&s).await;
});

// Revoked token: after logout, a socket kept alive by WebSocket pings alone gets phx_error on
// every channel the token authorized within 1 s, receives no further broadcast, and cannot join
// again with that token (although it had cached who the token was). Other sessions go on.
crate::both_dbs!(a_revoked_tokens_socket_is_cut_within_a_second, |s: TestServer| async move {
    let own = format!("realtime:agent:{}", s.agent1.1);
    let queue = queue_topic(&s);
    let mut revoked = s.socket(Vsn::V2).await;
    revoked.join_ok(&queue, &s.agent1.0).await;
    revoked.join_ok(&own, &s.agent1.0).await;
    let mut other = s.socket(Vsn::V1).await;
    other.join_ok(&queue, &s.agent2.0).await;
    revoked.ws.send(Message::Ping(b"alive".to_vec().into())).await.unwrap();

    let (st, _) = s.call("POST", "/api/agents/logout", Some(&s.agent1.0), None).await;
    assert_eq!(st, 204);
    let logged_out = Instant::now();
    let mut errors = Vec::new();
    while errors.len() < 2 {
        let f = revoked.recv_within(Duration::from_secs(1)).await.expect("phx_error within 1 s");
        assert_ne!(f.kind(), FrameKind::Broadcast, "{f:?}");
        if f.kind() == FrameKind::Error {
            errors.push(f.topic.clone());
        }
    }
    assert!(logged_out.elapsed() < Duration::from_secs(1), "{:?}", logged_out.elapsed());
    errors.sort();
    let mut expected = vec![own.clone(), queue.clone()];
    expected.sort();
    assert_eq!(errors, expected);

    // Queue activity: the other agent sees it, the revoked socket (pinging only) nothing.
    revoked.ws.send(Message::Ping(b"alive".to_vec().into())).await.unwrap();
    let (vt, c) = s.conversation().await;
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!(st, 200);
    wait_event(&mut other, "the handoff on the queue", |t, _| t == queue).await;
    let frames = revoked.drain_frames().await;
    assert!(!frames.iter().any(|f| f.kind() == FrameKind::Broadcast), "{frames:?}");
    // Rejoining with the revoked token is refused, on this socket and on a fresh one.
    for topic in [&own, &queue] {
        let (_, reply) = revoked.join(topic, Some(&s.agent1.0), false).await;
        assert_eq!(reply.reply().unwrap().status, ReplyStatus::Error, "{reply:?}");
    }
    let mut fresh = s.socket(Vsn::V2).await;
    let (_, reply) = fresh.join(&own, Some(&s.agent1.0), false).await;
    assert_eq!(reply.reply().unwrap().status, ReplyStatus::Error, "{reply:?}");
    legit_users_work(&s).await;
});

// Slow clients: sockets that open and never join with a valid token (none, or a bad one) are
// closed after the join timeout with a close frame; joined ones stay.
both_dbs_with!(
    sockets_without_a_join_are_closed,
    RealtimeConfig {
        join_timeout: Duration::from_millis(500),
        max_sockets_per_ip: 10_000,
        ..RealtimeConfig::default()
    },
    |s: TestServer| async move {
        const IDLE: usize = 400;
        let (vt, c) = s.conversation().await;
        let topic = format!("realtime:conversation:{c}");
        let mut visitor = s.socket(Vsn::V2).await;
        visitor.join_ok(&topic, &vt).await;
        let mut agent = s.socket(Vsn::V1).await;
        agent.join_ok(&topic, &s.agent1.0).await;
        let mut idle = Vec::new();
        for i in 0..IDLE {
            let mut sock = s.socket(Vsn::V2).await;
            if i % 10 == 0 {
                let (_, reply) = sock.join(&topic, Some("vt_forged"), false).await;
                assert_eq!(reply.reply().unwrap().status, ReplyStatus::Error);
            }
            idle.push(sock);
        }
        let started = Instant::now();
        let closes = futures_util::future::join_all(
            idle.iter_mut().map(|sock| close_frame(sock, Duration::from_secs(10))),
        )
        .await;
        for close in closes {
            assert_eq!(close, Some((CloseCode::Policy, "join_timeout".to_owned())));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // The joined ones were not touched.
        visitor.drain().await;
        agent.drain().await;
        legit_users_work(&s).await;
    }
);

// Heartbeat burst: 1,000 heartbeats at once from a client that reads everything, while
// broadcasts arrive on its channel: every reply arrives and the socket stays open.
crate::both_dbs!(a_heartbeat_burst_is_answered_in_full, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut sock = s.socket(Vsn::V2).await;
    sock.join_ok(&topic, &s.agent1.0).await;
    let (mut tx, mut rx) = sock.ws.split();
    let reader = tokio::spawn(async move {
        let (mut replies, mut broadcasts) = (0, 0);
        while replies < 1_000 {
            let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(10), rx.next()).await else {
                break;
            };
            let Message::Text(text) = msg else { continue };
            let f = handoff_protocol::phoenix::codec::decode_text(Vsn::V2, text.as_str()).unwrap();
            match f.kind() {
                FrameKind::Reply if f.topic == "phoenix" => replies += 1,
                FrameKind::Broadcast => broadcasts += 1,
                _ => {}
            }
        }
        (replies, broadcasts, rx)
    });
    for i in 0..1_000 {
        let text =
            handoff_protocol::phoenix::codec::encode_text(Vsn::V2, &Frame::heartbeat(&format!("hb{i}")))
                .unwrap();
        tx.feed(Message::Text(text.into())).await.unwrap();
    }
    tx.flush().await.unwrap();
    for i in 0..5 {
        let (st, _) = s
            .call(
                "POST",
                &format!("/api/conversations/{c}/messages"),
                Some(&vt),
                Some(json!({"body": format!("m{i}")})),
            )
            .await;
        assert_eq!(st, 201);
    }
    let (replies, _broadcasts, rx) = reader.await.unwrap();
    assert_eq!(replies, 1_000);
    let mut sock = reunite(tx, rx);
    // Still open and served.
    let events = sock.events().await;
    assert!(events.iter().all(|e| e.name() == "message:new"), "{events:?}");
    legit_users_work(&s).await;
});

fn reunite(
    tx: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        Message,
    >,
    rx: futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    >,
) -> Socket {
    Socket::from_ws(tx.reunite(rx).unwrap(), Vsn::V2)
}

// Channels per socket: the join beyond the cap is refused (`too_many_channels`); rejoining a
// joined topic and joining after a leave still work.
both_dbs_with!(
    channels_per_socket_are_capped,
    RealtimeConfig { max_channels: 3, ..RealtimeConfig::default() },
    |s: TestServer| async move {
        let (_, c) = s.conversation().await;
        let topics = [
            queue_topic(&s),
            format!("realtime:agent:{}", s.agent1.1),
            format!("realtime:conversation:{c}"),
            format!("realtime:conversation:{c}:agents"),
        ];
        let mut sock = s.socket(Vsn::V2).await;
        let mut join_refs = Vec::new();
        for t in &topics[..3] {
            join_refs.push(sock.join_ok(t, &s.agent1.0).await);
        }
        let (_, reply) = sock.join(&topics[3], Some(&s.agent1.0), false).await;
        assert_eq!(reason(&reply).as_deref(), Some("too_many_channels"));
        sock.join_ok(&topics[0], &s.agent1.0).await; // last join wins, no new channel
        let r = sock.r#ref();
        sock.send(&Frame::leave(&join_refs[1], &r, &topics[1])).await;
        sock.reply_to(&r).await;
        sock.join_ok(&topics[3], &s.agent1.0).await;
        legit_users_work(&s).await;
    }
);

// Sockets per client IP: beyond the cap the upgrade is refused with 429 `rate_limited` and
// `Retry-After`; other clients (here told apart by a trusted proxy's X-Forwarded-For) connect;
// a closed socket frees its place.
both_dbs_with!(
    sockets_per_ip_are_capped,
    RealtimeConfig {
        max_sockets_per_ip: 5,
        trusted_proxies: handoff_server::net::TrustedProxies(vec!["127.0.0.1".parse().unwrap()]),
        ..RealtimeConfig::default()
    },
    |s: TestServer| async move {
        let attacker = [("x-forwarded-for", "203.0.113.9")];
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(Socket::connect_with(&s.ws, Vsn::V2, &attacker).await.unwrap());
        }
        let e = Socket::connect_with(&s.ws, Vsn::V2, &attacker).await.err().expect("refused");
        let (status, body, headers) = refusal(e);
        assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
        assert!(headers.get("retry-after").is_some(), "{headers:?}");
        // A legitimate visitor and agent (other addresses) are served meanwhile.
        let (vt, c) = s.conversation().await;
        let topic = format!("realtime:conversation:{c}");
        let mut visitor =
            Socket::connect_with(&s.ws, Vsn::V2, &[("x-forwarded-for", "198.51.100.7")]).await.unwrap();
        visitor.join_ok(&topic, &vt).await;
        let mut agent =
            Socket::connect_with(&s.ws, Vsn::V1, &[("x-forwarded-for", "198.51.100.8")]).await.unwrap();
        agent.join_ok(&topic, &s.agent1.0).await;
        // Closing one frees a place (once the server has seen the close).
        let mut first = held.pop().unwrap();
        first.ws.close(None).await.unwrap();
        while let Some(Ok(_)) = first.ws.next().await {}
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Socket::connect_with(&s.ws, Vsn::V2, &attacker).await {
                Ok(sock) => {
                    held.push(sock);
                    break;
                }
                Err(e) => {
                    assert_eq!(refusal(e).0, 429);
                    assert!(Instant::now() < deadline, "the closed socket's place was not freed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        legit_users_work(&s).await;
    }
);

// Frame flood: a socket sending more frames than its rate limit is closed with close code 1008
// and the reason `rate_limited`; others are served meanwhile.
both_dbs_with!(
    a_frame_flood_is_closed_with_a_reason,
    RealtimeConfig { frames_per_second: 20, frame_burst: 100, ..RealtimeConfig::default() },
    |s: TestServer| async move {
        let (vt, c) = s.conversation().await;
        let topic = format!("realtime:conversation:{c}");
        let mut flood = s.socket(Vsn::V2).await;
        flood.join_ok(&topic, &vt).await;
        let (mut tx, mut rx) = flood.ws.split();
        let reader = tokio::spawn(async move {
            while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
                if let Message::Close(frame) = msg {
                    return frame.map(|f| (f.code, f.reason.to_string()));
                }
            }
            None
        });
        for i in 0..1_000 {
            let text =
                handoff_protocol::phoenix::codec::encode_text(Vsn::V2, &Frame::heartbeat(&format!("f{i}")))
                    .unwrap();
            if tx.send(Message::Text(text.into())).await.is_err() {
                break; // closed by the server
            }
        }
        assert_eq!(reader.await.unwrap(), Some((CloseCode::Policy, "rate_limited".to_owned())));
        legit_users_work(&s).await;
    }
);
