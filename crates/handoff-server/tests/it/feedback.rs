//! What the visitor sees of the agents' side and tells back: satisfaction ratings (CSAT) and
//! read receipts.

use handoff_protocol::phoenix::Vsn;
use handoff_protocol::{ConversationId, Event};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{Db, Socket, TestServer};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// A conversation claimed by Ann: (visitor token, conversation id).
async fn claimed(s: &TestServer) -> (String, String) {
    let (vt, c) = s.conversation().await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200, "{v}");
    (vt, c)
}

async fn rate(s: &TestServer, token: &str, c: &str, body: Value) -> (u16, Value) {
    s.call("POST", &format!("/api/conversations/{c}/rating"), Some(token), Some(body)).await
}

both_dbs!(rating_a_resolved_conversation, |s: TestServer| async move {
    let (vt, c) = claimed(&s).await;
    // Not resolved yet: nothing to rate.
    let (st, v) = rate(&s, &vt, &c, json!({"rating": 5})).await;
    assert_eq!((st, code(&v)), (409, "invalid_transition"), "{v}");
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200);

    let mut agent = s.socket(Vsn::V2).await;
    agent.join_ok(&format!("realtime:conversation:{c}"), &s.agent1.0).await;
    agent.join_ok(&format!("realtime:agent:{}", s.agent1.1), &s.agent1.0).await;
    let mut bo = s.socket(Vsn::V1).await;
    bo.join_ok(&format!("realtime:agent:{}", s.agent2.1), &s.agent2.0).await;
    agent.drain_frames().await;

    // Bad input stores nothing.
    for (body, want) in [
        (json!({"rating": 0}), 422),
        (json!({"rating": 6}), 422),
        (json!({"rating": 300}), 422),
        (json!({"rating": -1}), 400),
        (json!({"rating": 4.5}), 400),
        (json!({"rating": "5"}), 400),
        (json!({}), 400),
        (json!({"rating": 4, "comment": "x".repeat(1_001)}), 422),
        (json!({"rating": 4, "comment": "bell\u{7}"}), 422),
    ] {
        let (st, v) = rate(&s, &vt, &c, body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    // Only the conversation's own visitor rates it.
    let (st, v) = rate(&s, &s.agent1.0, &c, json!({"rating": 1})).await;
    assert_eq!((st, code(&v)), (403, "forbidden"));
    let (st, v) = rate(&s, &s.secret_key, &c, json!({"rating": 1})).await;
    assert_eq!((st, code(&v)), (403, "forbidden"));
    let other = s.visitor().await;
    let (st, v) = rate(&s, &other, &c, json!({"rating": 1})).await;
    assert_eq!((st, code(&v)), (404, "not_found"));
    let (st, _) = rate(&s, "vt_stolen", &c, json!({"rating": 1})).await;
    assert_eq!(st, 401);
    let (_, conv) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert!(conv.get("rating").is_none(), "{conv}");

    let comment = format!("  {}  ", "é".repeat(1_000));
    let (st, v) = rate(&s, &vt, &c, json!({"rating": 4, "comment": comment})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["rating"], 4);
    assert_eq!(v["comment"], "é".repeat(1_000));
    assert_eq!(v["agent_id"], s.agent1.1.as_str());

    // Live to the conversation and the rated agent; nobody else's channel.
    let events = agent.drain().await;
    let rated: Vec<_> = events
        .iter()
        .filter_map(|(topic, e)| match e {
            Event::ConversationRated(r) => Some((topic.clone(), r.rating, r.seq)),
            _ => None,
        })
        .collect();
    assert_eq!(rated.len(), 2, "{events:?}");
    assert!(rated.iter().any(|(t, _, _)| t == &format!("realtime:conversation:{c}")));
    assert!(rated.iter().any(|(t, _, _)| t == &format!("realtime:agent:{}", s.agent1.1)));
    assert!(bo.events().await.iter().all(|e| e.name() != "conversation:rated"));

    // In the history, the REST representation, the widget session, and the store's row.
    let (_, page) = s.call("GET", &format!("/api/conversations/{c}/events"), Some(&s.agent1.0), None).await;
    let last = page["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "conversation:rated");
    assert_eq!(last["payload"]["rating"], 4);
    assert_eq!(last["payload"]["seq"], page["last_seq"]);
    assert_eq!(page["status"], "resolved", "rating changes no status");
    for token in [&vt, &s.agent1.0] {
        let (_, conv) = s.call("GET", &format!("/api/conversations/{c}"), Some(token), None).await;
        assert_eq!(conv["rating"]["rating"], 4, "{conv}");
        assert_eq!(conv["status"], "resolved");
    }
    let (_, session) = s
        .call(
            "POST",
            "/api/widget/session",
            None,
            Some(json!({"project_key": s.public_key, "visitor_token": vt})),
        )
        .await;
    assert_eq!(session["conversation"]["rating"]["rating"], 4, "{session}");
    let row = s.svc.store().rating(&ConversationId::new(c.clone())).await.unwrap().unwrap();
    assert_eq!(row.agent_id.as_ref().map(handoff_protocol::AgentId::as_str), Some(s.agent1.1.as_str()));
    assert_eq!(row.project_id, s.project);
    assert_eq!(row.rating, 4);

    // Once per conversation, even after it reopens and is resolved again.
    let (st, v) = rate(&s, &vt, &c, json!({"rating": 1})).await;
    assert_eq!((st, code(&v)), (409, "already_rated"), "{v}");
    let (st, _) = s
        .call("POST", &format!("/api/conversations/{c}/messages"), Some(&vt), Some(json!({"body": "again"})))
        .await;
    assert_eq!(st, 201);
    let (st, v) = rate(&s, &vt, &c, json!({"rating": 1})).await;
    assert_eq!((st, code(&v)), (409, "already_rated"), "{v}");
    let row = s.svc.store().rating(&ConversationId::new(c.clone())).await.unwrap().unwrap();
    assert_eq!(row.rating, 4);
});

// A conversation resolved by the secret key (a bot backend) after Bo had it is Bo's rating;
// one no agent ever had has none.
both_dbs!(rating_goes_to_the_last_agent, |s: TestServer| async move {
    let (vt, c) = claimed(&s).await;
    s.set_status(&s.agent2.0, "online").await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent1.0),
            Some(json!({"to": s.agent2.1})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.secret_key), None).await;
    assert_eq!(st, 200);
    let (st, v) = rate(&s, &vt, &c, json!({"rating": 2, "comment": "   "})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["agent_id"], s.agent2.1.as_str());
    assert!(v.get("comment").is_none(), "a blank comment is none: {v}");

    let (vt, c) = s.conversation().await;
    s.set_status(&s.agent2.0, "offline").await;
    s.set_status(&s.agent1.0, "offline").await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.secret_key), None).await;
    assert_eq!(st, 200);
    let (st, v) = rate(&s, &vt, &c, json!({"rating": 5})).await;
    assert_eq!(st, 201, "{v}");
    assert!(v.get("agent_id").is_none(), "{v}");
});

async fn read(s: &TestServer, token: &str, c: &str, seq: u64) {
    let (st, v) =
        s.call("POST", &format!("/api/conversations/{c}/read"), Some(token), Some(json!({"seq": seq}))).await;
    assert_eq!(st, 204, "{v}");
}

/// The `message:read` events among a socket's frames, as seqs.
async fn receipts(socket: &mut Socket) -> Vec<u64> {
    socket
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageRead(r) => Some(r.seq.0),
            _ => None,
        })
        .collect()
}

both_dbs!(read_receipts, |s: TestServer| async move {
    let (vt, c) = claimed(&s).await;
    let (vt2, c2) = claimed(&s).await;
    for body in ["one", "two"] {
        let (st, _) = s
            .call("POST", &format!("/api/conversations/{c}/messages"), Some(&vt), Some(json!({"body": body})))
            .await;
        assert_eq!(st, 201);
    }
    let mut customer = s.socket(Vsn::V2).await;
    customer.join_ok(&format!("realtime:conversation:{c}"), &vt).await;
    let mut other = s.socket(Vsn::V1).await;
    other.join_ok(&format!("realtime:conversation:{c2}"), &vt2).await;
    customer.drain_frames().await;
    other.drain_frames().await;
    let (_, conv) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert_eq!(conv["agent_read_seq"], 0);
    let last = conv["last_seq"].as_u64().unwrap();

    read(&s, &s.agent1.0, &c, last - 1).await;
    let frames = customer.events().await;
    let receipt = frames.iter().find_map(|e| match e {
        Event::MessageRead(r) => Some(r.clone()),
        _ => None,
    });
    let receipt = receipt.expect("a read receipt");
    assert_eq!(receipt.seq.0, last - 1);
    assert_eq!(receipt.conversation_id.as_str(), c);
    assert_eq!(receipt.reader.id, s.agent1.1);
    assert_eq!(receipt.reader.name.as_deref(), Some("Ann"));

    // Monotonic: a lower or equal seq (by this agent or another) announces nothing and moves
    // nothing back; a seq past the end counts as the end.
    read(&s, &s.agent1.0, &c, 1).await;
    read(&s, &s.agent1.0, &c, last - 1).await;
    read(&s, &s.agent2.0, &c, 2).await;
    assert_eq!(receipts(&mut customer).await, Vec::<u64>::new());
    read(&s, &s.agent1.0, &c, 1_000_000).await;
    assert_eq!(receipts(&mut customer).await, vec![last]);
    let (_, conv) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert_eq!(conv["agent_read_seq"], last);
    let (_, session) = s
        .call(
            "POST",
            "/api/widget/session",
            None,
            Some(json!({"project_key": s.public_key, "visitor_token": vt})),
        )
        .await;
    assert_eq!(session["conversation"]["agent_read_seq"], last, "{session}");

    // Never on another conversation's channel; a visitor cannot move a marker; an unknown
    // conversation is 404.
    assert_eq!(receipts(&mut other).await, Vec::<u64>::new());
    let (_, conv2) = s.call("GET", &format!("/api/conversations/{c2}"), Some(&vt2), None).await;
    assert_eq!(conv2["agent_read_seq"], 0);
    let (st, _) =
        s.call("POST", &format!("/api/conversations/{c}/read"), Some(&vt), Some(json!({"seq": last}))).await;
    assert_eq!(st, 403);
    let (st, _) =
        s.call("POST", "/api/conversations/conv_nope/read", Some(&s.agent1.0), Some(json!({"seq": 1}))).await;
    assert_eq!(st, 404);
    // Not persisted: the history holds no receipt.
    let (_, page) = s.call("GET", &format!("/api/conversations/{c}/events"), Some(&vt), None).await;
    assert!(page["events"].as_array().unwrap().iter().all(|e| e["event"] != "message:read"));
});
