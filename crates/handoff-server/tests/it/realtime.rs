//! The Phoenix socket as Supabase Realtime speaks it, and the official realtime-js client.

use std::time::Duration;

use handoff_protocol::event::{Author, AuthorKind, Typing};
use handoff_protocol::phoenix::{codec, Frame, FrameKind, ReplyStatus, Vsn};
use handoff_protocol::{Channel, ConversationId, Event};
use handoff_server::realtime::RealtimeConfig;
use serde_json::json;

use crate::harness::{Db, Socket, TestServer};

async fn agent_says(s: &TestServer, c: &str, body: &str) {
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&s.agent1.0),
            Some(json!({"body": body})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

fn bodies(events: &[(String, Event)]) -> Vec<String> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::MessageNew(m) => Some(m.message.body.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn both_serializers_join_beat_and_receive() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut v1 = s.socket(Vsn::V1).await;
    let mut v2 = s.socket(Vsn::V2).await;
    v1.join_ok(&topic, &vt).await;
    v2.join_ok(&topic, &vt).await;
    agent_says(&s, &c, "hi from Ann").await;
    assert_eq!(bodies(&v1.drain().await), ["hi from Ann"]);
    assert_eq!(bodies(&v2.drain().await), ["hi from Ann"]);
    // Raw wire check of a vsn 2.0.0 heartbeat reply.
    v2.send(&Frame::heartbeat("77")).await;
    let reply = v2.recv().await.unwrap();
    assert_eq!(
        codec::encode_text(Vsn::V2, &reply).unwrap(),
        r#"[null,"77","phoenix","phx_reply",{"response":{},"status":"ok"}]"#
    );
    let resp = s.http.get(format!("{}/realtime/v1/websocket?vsn=9.9.9", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_tokenless_join_waits_for_its_access_token() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut sock = s.socket(Vsn::V2).await;
    let (join_ref, reply) = sock.join(&topic, None, false).await;
    assert_eq!(reply.reply().unwrap().status, ReplyStatus::Ok);
    agent_says(&s, &c, "before the token").await;
    assert!(sock.drain().await.is_empty(), "nothing is delivered without a token");
    sock.send(&Frame::access_token(&join_ref, "9", &topic, &vt)).await;
    sock.send(&Frame::access_token(&join_ref, "10", &topic, &vt)).await; // the per-heartbeat repeat is a no-op
    sock.drain().await; // access_token gets no reply: sync on a heartbeat before publishing
    agent_says(&s, &c, "after the token").await;
    assert_eq!(bodies(&sock.drain().await), ["after the token"]);

    // A token that does not authorize the channel closes it.
    let mut other = s.socket(Vsn::V2).await;
    let (join_ref, _) = other.join(&topic, None, false).await;
    let stranger = s.visitor().await;
    other.send(&Frame::access_token(&join_ref, "3", &topic, &stranger)).await;
    let close = other.recv().await.unwrap();
    assert_eq!((close.kind(), close.join_ref.as_deref()), (FrameKind::Close, Some(join_ref.as_str())));
}

#[tokio::test]
async fn the_last_join_wins_and_leave_closes() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut sock = s.socket(Vsn::V2).await;
    let first = sock.join_ok(&topic, &vt).await;
    let join_ref = "500".to_owned();
    let payload =
        handoff_protocol::phoenix::JoinPayload { access_token: Some(vt.clone()), ..Default::default() };
    sock.send(&Frame::join(&join_ref, &topic, &payload)).await;
    let close = sock.recv().await.unwrap();
    assert_eq!((close.kind(), close.join_ref), (FrameKind::Close, Some(first)));
    let reply = sock.recv().await.unwrap();
    assert_eq!((reply.kind(), reply.r#ref.as_deref()), (FrameKind::Reply, Some("500")));
    agent_says(&s, &c, "once").await;
    assert_eq!(bodies(&sock.drain().await), ["once"], "delivered once, not per join");
    sock.send(&Frame::leave(&join_ref, "501", &topic)).await;
    let reply = sock.recv().await.unwrap();
    assert_eq!((reply.kind(), reply.r#ref.as_deref()), (FrameKind::Reply, Some("501")));
    assert_eq!(sock.recv().await.unwrap().kind(), FrameKind::Close);
    agent_says(&s, &c, "after leave").await;
    assert!(sock.drain().await.is_empty());
    let (_, reply) = sock.join("realtime:room:lobby", Some(&vt), false).await;
    assert_eq!(reply.reply().unwrap().reason(), Some("unknown channel `room:lobby`"));
}

#[tokio::test]
async fn client_typing_broadcasts_are_checked_acked_and_not_echoed() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut customer = s.socket(Vsn::V2).await;
    let (join_ref, _) = customer.join(&topic, Some(&vt), true).await;
    let mut agent = s.socket(Vsn::V1).await;
    agent.join_ok(&topic, &s.agent1.0).await;
    // The actor claims to be an agent; the server sets it from the token.
    let forged = Event::Typing(Typing {
        conversation_id: ConversationId::new(c.as_str()),
        actor: Author { kind: AuthorKind::Agent, id: "someone".into(), name: None },
        is_typing: true,
    });
    customer
        .send_binary(
            codec::encode_push_binary(&Frame::push_broadcast(&join_ref, "20", &topic, &forged)).unwrap(),
        )
        .await;
    let ack = customer.recv().await.unwrap();
    assert_eq!((ack.r#ref.as_deref(), ack.reply().unwrap().status), (Some("20"), ReplyStatus::Ok));
    let seen = agent.drain().await;
    assert_eq!(seen.len(), 1);
    let Event::Typing(t) = &seen[0].1 else { panic!("{seen:?}") };
    assert_eq!(t.actor.kind, AuthorKind::Customer);
    assert!(customer.drain().await.is_empty(), "self: false");
    // Persisted events must go through REST.
    let (_, page) = s.call("GET", &format!("/api/conversations/{c}/events"), Some(&vt), None).await;
    let message: Event = serde_json::from_value(page["events"][0].clone()).unwrap();
    customer.send(&Frame::push_broadcast(&join_ref, "21", &topic, &message)).await;
    let refused = customer.recv().await.unwrap();
    assert_eq!(refused.reply().unwrap().status, ReplyStatus::Error);
}

#[tokio::test]
async fn a_socket_that_cannot_keep_up_is_closed() {
    let config = RealtimeConfig { queue_capacity: 4, ..RealtimeConfig::default() };
    let s = TestServer::start_with(Db::Sqlite, config).await.unwrap();
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut slow: Socket = s.socket(Vsn::V2).await;
    slow.join_ok(&topic, &vt).await;
    let (_, page) = s.call("GET", &format!("/api/conversations/{c}/events"), Some(&vt), None).await;
    let event: Event = serde_json::from_value(page["events"][0].clone()).unwrap();
    let channel = Channel::Conversation(ConversationId::new(c.as_str()));
    for _ in 0..10_000 {
        s.svc.hub().publish(&channel, &event);
        if s.svc.hub().subscribers(&topic) == 0 {
            break;
        }
    }
    assert_eq!(s.svc.hub().subscribers(&topic), 0, "the slow socket was dropped from the topic");
    let mut frames = 0;
    while slow.recv().await.is_some() {
        frames += 1;
        assert!(frames < 10_000);
    }
}

#[tokio::test]
async fn a_silent_socket_is_closed() {
    let config = RealtimeConfig { idle_timeout: Duration::from_millis(300), ..RealtimeConfig::default() };
    let s = TestServer::start_with(Db::Sqlite, config).await.unwrap();
    let mut sock = s.socket(Vsn::V2).await;
    let started = std::time::Instant::now();
    assert!(sock.recv().await.is_none());
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// The official `@supabase/realtime-js` 2.119.1 (from npm) joins a conversation, stays through
/// heartbeats, receives `message:new` when an agent writes, and sends a typing broadcast
/// (a binary kind-3 frame) that the server acks and fans out.
#[tokio::test]
async fn supabase_realtime_js_interop() {
    realtime_js("set").await;
}

/// With the `accessToken` callback, realtime-js joins before its token resolves and never
/// pushes it for that join; the server's `phx_error` after the grace makes it rejoin with it.
#[tokio::test]
async fn supabase_realtime_js_interop_with_a_token_callback() {
    realtime_js("callback").await;
}

async fn realtime_js(auth: &str) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    if !dir.join("node_modules/@supabase/realtime-js").exists() {
        let ok = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "npm ci in tests/interop failed");
    }
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let (vt, c) = s.conversation().await;
    let mut agent = s.socket(Vsn::V2).await;
    agent.join_ok(&format!("realtime:conversation:{c}"), &s.agent1.0).await;
    let mut child = tokio::process::Command::new("node")
        .arg("realtime-js.mjs")
        .current_dir(&dir)
        .env("HANDOFF_WS", s.ws.split("/websocket").next().unwrap())
        .env("HANDOFF_APIKEY", &s.public_key)
        .env("HANDOFF_TOKEN", &vt)
        .env("HANDOFF_CONVERSATION", &c)
        .env("HANDOFF_AUTH", auth)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> serde_json::Value {
        let line =
            tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    };
    if auth == "callback" {
        assert_eq!(next().await, json!({"step": "subscribed", "n": 1}), "the tokenless join");
        assert_eq!(next().await, json!({"step": "channel_error"}), "phx_error after the grace");
        assert_eq!(next().await, json!({"step": "subscribed", "n": 2}), "the rejoin with the token");
    } else {
        assert_eq!(next().await, json!({"step": "subscribed", "n": 1}));
    }
    agent_says(&s, &c, "hello from a human").await;
    let m = next().await;
    assert_eq!(
        (m["step"].as_str(), m["body"].as_str()),
        (Some("message"), Some("hello from a human")),
        "{m}"
    );
    let hb = next().await;
    assert!(hb["count"].as_u64().unwrap() >= 2, "{hb}");
    assert_eq!(next().await, json!({"step": "typing", "ack": "ok"}));
    assert!(child.wait().await.unwrap().success());
    let seen = agent.drain().await;
    assert!(
        seen.iter().any(|(_, e)| matches!(e, Event::Typing(t) if t.actor.kind == AuthorKind::Customer)),
        "{seen:?}"
    );
}

/// Raw text frames of a socket until one carrying `agent:status_changed`, which is returned.
async fn raw_status_frame(socket: &mut Socket) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), socket.ws.next())
            .await
            .expect("a broadcast within 5 s")
            .expect("an open socket")
            .unwrap();
        if let Message::Text(text) = msg {
            if text.contains("agent:status_changed") {
                return text.as_str().to_owned();
            }
        }
    }
}

// Fan-out encodes a broadcast once per serializer and hands every subscriber the same text:
// 40 sockets, half vsn 1.0.0 and half 2.0.0, on the project queue; one status change reaches
// each exactly as the protocol crate encodes it.
#[tokio::test]
async fn every_subscriber_gets_the_exact_broadcast_frame() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let topic = format!("realtime:project:{}:queue", s.project);
    let mut sockets = Vec::new();
    for i in 0..40 {
        let mut socket = s.socket(if i % 2 == 0 { Vsn::V1 } else { Vsn::V2 }).await;
        socket.join_ok(&topic, &s.agent1.0).await;
        sockets.push(socket);
    }
    // What joining set off (the agent is online while connected) is behind us.
    for socket in &mut sockets {
        socket.drain_frames().await;
    }
    s.set_status(&s.agent1.0, "away").await;
    let mut texts: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for socket in &mut sockets {
        let text = raw_status_frame(socket).await;
        texts[usize::from(socket.vsn == Vsn::V2)].push(text);
    }
    for (vsn, texts) in [Vsn::V1, Vsn::V2].into_iter().zip(&texts) {
        assert_eq!(texts.len(), 20);
        let event = codec::decode_text(vsn, &texts[0]).unwrap().broadcast_event().unwrap();
        let Event::AgentStatusChanged(changed) = &event else { panic!("{event:?}") };
        assert_eq!(changed.status.as_str(), "away");
        let expected = codec::encode_text(vsn, &Frame::broadcast(&topic, &event)).unwrap();
        for text in texts {
            assert_eq!(*text, expected, "{vsn:?}");
        }
    }
}
