//! A team's working day (issue 12, "Agents"): ownership of assigned conversations, capacity
//! under concurrency, liveness by connection, background jobs once per cluster.

use std::sync::Arc;
use std::time::Instant;

use handoff_server::limits::LimitsConfig;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{Db, TestServer};

/// A conversation handed off to Ann (the only agent online): (visitor token, id).
async fn held_by_ann(s: &TestServer) -> (String, String) {
    let (vt, c) = s.conversation().await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!((st, v["agent"]["name"].as_str()), (200, Some("Ann")), "{v}");
    (vt, c)
}

fn code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

// Ownership: on an assigned conversation only its assignee sends as agent, resolves, declines
// or transfers; another agent gets 403 not_assignee. The secret key resolves and declines for
// the assignee, but the bot never speaks where a human holds the conversation, and transfers are
// the agents' own. A refused call changes nothing.
both_dbs!(ownership_matrix, |s: TestServer| async move {
    s.set_status(&s.agent1.0, "online").await;
    let ann = s.agent1.0.clone();
    let bo = s.agent2.0.clone();
    let sk = s.secret_key.clone();
    // (action, caller, expected status, expected code)
    let cases: [(&str, &str, &str, u16, Option<&str>); 12] = [
        ("messages", "assignee", &ann, 201, None),
        ("messages", "other agent", &bo, 403, Some("not_assignee")),
        ("messages", "secret key", &sk, 403, Some("not_assignee")),
        ("resolve", "assignee", &ann, 200, None),
        ("resolve", "other agent", &bo, 403, Some("not_assignee")),
        ("resolve", "secret key", &sk, 200, None),
        ("decline", "assignee", &ann, 200, None),
        ("decline", "other agent", &bo, 403, Some("not_assignee")),
        ("decline", "secret key", &sk, 200, None),
        ("transfer", "assignee", &ann, 200, None),
        ("transfer", "other agent", &bo, 403, Some("not_assignee")),
        ("transfer", "secret key", &sk, 403, Some("forbidden")),
    ];
    for (action, who, token, status, expected) in cases {
        let (vt, c) = held_by_ann(&s).await;
        let body = match action {
            "messages" => Some(json!({"body": format!("{who} writes")})),
            "transfer" => Some(json!({"to": "queue"})),
            _ => None,
        };
        let before = s.svc.store().conversation(&c.as_str().into()).await.unwrap().unwrap().last_seq;
        let (st, v) = s.call("POST", &format!("/api/conversations/{c}/{action}"), Some(token), body).await;
        assert_eq!((st, code(&v)), (status, expected), "{action} by {who}: {v}");
        let (_, after) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
        if status >= 400 {
            assert_eq!(
                (after["status"].as_str(), after["agent"]["name"].as_str()),
                (Some("assigned"), Some("Ann")),
                "{action} by {who} changed the conversation: {after}"
            );
            assert_eq!(after["last_seq"].as_u64(), Some(before.0), "a refused call wrote events");
        } else {
            let expected = match action {
                "messages" => "assigned",
                "resolve" => "resolved",
                _ => "queued", // nobody else is online: decline and transfer queue it
            };
            assert_eq!(after["status"].as_str(), Some(expected), "{action} by {who}: {after}");
        }
        // Tidy up so Ann's capacity (3) never gets in the way of the next case.
        if after["status"] != "resolved" {
            let (st, v) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&sk), None).await;
            assert_eq!(st, 200, "{v}");
        }
    }
    // Unassigned conversations are nobody's: the bot speaks while the customer waits, and any
    // agent may claim; a claim of a held conversation stays a 409.
    s.set_status(&ann, "away").await;
    let (vt, c) = s.conversation().await;
    s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&sk),
            Some(json!({"body": "hold on"})),
        )
        .await;
    assert_eq!(st, 201, "the bot speaks in a queued conversation: {v}");
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&bo), None).await;
    assert_eq!(st, 200);
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&ann), None).await;
    assert_eq!((st, code(&v)), (409, Some("invalid_transition")), "{v}");
    // A customer may not resolve or decline.
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&vt), None).await;
    assert_eq!(st, 403);
});

// Capacity is per agent and settable by the project's secret key (the CLI calls the same
// function); a claim above it is refused with 409 agent_unavailable; raising it offers the
// agent queued work at once.
both_dbs!(capacity_settable_and_claims_respect_it, |s: TestServer| async move {
    let path = format!("/api/agents/{}", s.agent1.1);
    let (st, v) = s.call("PATCH", &path, Some(&s.agent1.0), Some(json!({"capacity": 9}))).await;
    assert_eq!((st, code(&v)), (403, Some("forbidden")), "an agent does not set capacities: {v}");
    let (st, v) = s.call("PATCH", &path, Some(&s.secret_key), Some(json!({"capacity": 5000}))).await;
    assert_eq!((st, code(&v)), (422, Some("validation_failed")), "{v}");
    let (st, _) =
        s.call("PATCH", "/api/agents/agt_nobody", Some(&s.secret_key), Some(json!({"capacity": 1}))).await;
    assert_eq!(st, 404);
    let (st, v) = s.call("PATCH", &path, Some(&s.secret_key), Some(json!({"capacity": 1}))).await;
    assert_eq!((st, v["capacity"].as_u64()), (200, Some(1)), "{v}");
    let (st, v) = s.call("PATCH", &path, Some(&s.secret_key), Some(json!({}))).await;
    assert_eq!((st, v["capacity"].as_u64()), (200, Some(1)), "an empty patch changes nothing: {v}");

    // Nobody online: two conversations queue.
    let mut queued = Vec::new();
    for _ in 0..2 {
        let (vt, c) = s.conversation().await;
        let (_, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
        assert_eq!(v["status"], "queued");
        queued.push(c);
    }
    let (st, _) =
        s.call("POST", &format!("/api/conversations/{}/claim", queued[0]), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200);
    let (st, v) =
        s.call("POST", &format!("/api/conversations/{}/claim", queued[1]), Some(&s.agent1.0), None).await;
    assert_eq!((st, code(&v)), (409, Some("agent_unavailable")), "{v}");
    // Online with a raised capacity: the queue head is offered to Ann at once.
    s.set_status(&s.agent1.0, "online").await;
    let a = s.svc.set_agent_capacity(&handoff_protocol::AgentId::new(s.agent1.1.as_str()), 2).await.unwrap();
    assert_eq!((a.capacity, a.open), (2, 2));
    let (_, v) = s.call("GET", &format!("/api/conversations/{}", queued[1]), Some(&s.agent1.0), None).await;
    assert_eq!(v["agent"]["name"], "Ann", "{v}");
    // A transfer to a full agent is refused too.
    s.set_status(&s.agent2.0, "online").await;
    let (_, v) = s
        .call(
            "PATCH",
            &format!("/api/agents/{}", s.agent2.1),
            Some(&s.secret_key),
            Some(json!({"capacity": 0})),
        )
        .await;
    assert_eq!(v["capacity"], 0);
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{}/transfer", queued[0]),
            Some(&s.agent1.0),
            Some(json!({"to": s.agent2.1})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, Some("agent_unavailable")), "{v}");
});

/// 50 concurrent handoffs against Ann and Bo online with capacity 3: never more than 3 each,
/// the rest queued in arrival order (a handoff answered before another was sent is ahead of it).
async fn concurrent_handoffs(db: Db) {
    let Some(s) = TestServer::start_config(db, |c| c.limits = LimitsConfig::unlimited()).await else {
        return;
    };
    s.set_status(&s.agent1.0, "online").await;
    s.set_status(&s.agent2.0, "online").await;
    let mut convs = Vec::new();
    for _ in 0..50 {
        convs.push(s.conversation().await);
    }
    let s = Arc::new(s);
    let t0 = Instant::now();
    let tasks: Vec<_> = convs
        .iter()
        .cloned()
        .map(|(vt, c)| {
            let s = s.clone();
            tokio::spawn(async move {
                let start = t0.elapsed();
                let (st, v) =
                    s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
                (c, st, v, start, t0.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for (_, st, v, _, _) in &results {
        assert_eq!(*st, 200, "{v}");
    }
    let (_, agents) = s.call("GET", "/api/agents", Some(&s.agent1.0), None).await;
    for a in agents.as_array().unwrap() {
        assert_eq!(a["open_conversations"], 3, "{agents}");
    }
    let assigned = results.iter().filter(|(_, _, v, _, _)| v["status"] == "assigned").count();
    assert_eq!(assigned, 6);
    let (_, queue) = s.call("GET", "/api/queue", Some(&s.agent1.0), None).await;
    let queue = queue["queue"].as_array().unwrap().clone();
    assert_eq!(queue.len(), 44);
    let position = |c: &str| queue.iter().position(|e| e["conversation_id"] == c);
    let queued: Vec<_> = results.iter().filter(|(_, _, v, _, _)| v["status"] == "queued").collect();
    for (a, _, _, _, a_end) in &queued {
        for (b, _, _, b_start, _) in &queued {
            if a_end < b_start {
                assert!(position(a) < position(b), "{a} was queued before {b} was sent, but is behind it");
            }
        }
    }
    // Freeing a slot gives it to the head of the queue, and only one.
    let mine = results.iter().find(|(_, _, v, _, _)| v["agent"]["name"] == "Ann").unwrap();
    let (st, _) =
        s.call("POST", &format!("/api/conversations/{}/resolve", mine.0), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200);
    let head = queue[0]["conversation_id"].as_str().unwrap();
    let (_, v) = s.call("GET", &format!("/api/conversations/{head}"), Some(&s.agent1.0), None).await;
    assert_eq!(v["agent"]["name"], "Ann", "{v}");
    let (_, agents) = s.call("GET", "/api/agents", Some(&s.agent1.0), None).await;
    assert!(agents.as_array().unwrap().iter().all(|a| a["open_conversations"] == 3), "{agents}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_handoffs_respect_capacity_sqlite() {
    concurrent_handoffs(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_handoffs_respect_capacity_postgres() {
    concurrent_handoffs(Db::Postgres).await;
}
