//! Every plan task through REST, asserting that its events reach exactly the catalog's channels;
//! the authorization matrix; bad input.

use std::collections::BTreeSet;

use handoff_protocol::event::PresenceState;
use handoff_protocol::phoenix::Vsn;
use handoff_protocol::Event;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{redis_url, Db, Socket, TestServer};

/// Sockets that watch every channel an event of a conversation could go to.
struct Watch {
    /// Agent 1: project queue, agent:{a1}, conversation, conversation agents.
    a1: Socket,
    /// Agent 2: agent:{a2}.
    a2: Socket,
    /// The customer: conversation.
    customer: Socket,
}

impl Watch {
    async fn new(s: &TestServer, conv: &str, visitor_token: &str) -> Watch {
        let mut a1 = s.socket(Vsn::V2).await;
        a1.join_ok(&format!("realtime:project:{}:queue", s.project), &s.agent1.0).await;
        a1.join_ok(&format!("realtime:agent:{}", s.agent1.1), &s.agent1.0).await;
        a1.join_ok(&format!("realtime:conversation:{conv}"), &s.agent1.0).await;
        a1.join_ok(&format!("realtime:conversation:{conv}:agents"), &s.agent1.0).await;
        let mut a2 = s.socket(Vsn::V1).await;
        a2.join_ok(&format!("realtime:agent:{}", s.agent2.1), &s.agent2.0).await;
        let mut customer = s.socket(Vsn::V2).await;
        customer.join_ok(&format!("realtime:conversation:{conv}"), visitor_token).await;
        // A coalesced queue broadcast of the setup may still be due: let it pass first.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        a1.drain_frames().await;
        a2.drain_frames().await;
        customer.drain_frames().await;
        Watch { a1, a2, customer }
    }

    /// (channel with `a1`/`a2`/`p`/`c` placeholders, event) seen by the agents since the last
    /// call, and the events the customer saw.
    async fn seen(&mut self, s: &TestServer, conv: &str) -> (BTreeSet<(String, String)>, Vec<String>) {
        // Queue broadcasts are coalesced: one may go out up to 250 ms after the change.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut agents = BTreeSet::new();
        let names = |topic: &str| {
            topic
                .trim_start_matches("realtime:")
                .replace(conv, "c")
                .replace(s.project.as_str(), "p")
                .replace(&s.agent1.1, "a1")
                .replace(&s.agent2.1, "a2")
        };
        for (topic, e) in self.a1.drain().await.into_iter().chain(self.a2.drain().await) {
            agents.insert((names(&topic), e.name().to_owned()));
        }
        let customer = self.customer.drain().await.into_iter().map(|(_, e)| e.name().to_owned()).collect();
        (agents, customer)
    }
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(c, e)| ((*c).to_owned(), (*e).to_owned())).collect()
}

// 1.2: handoff with nobody online queues the conversation and broadcasts queue positions.
both_dbs!(handoff_to_queue, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[
            ("conversation:c", "conversation:status_changed"),
            ("conversation:c", "queue:position_updated"),
            ("project:p:queue", "conversation:status_changed"),
            ("project:p:queue", "queue:updated"),
        ])
    );
    assert_eq!(customer, ["conversation:status_changed", "queue:position_updated"]);
    let (_, q) = s.call("GET", "/api/queue", Some(&s.agent1.0), None).await;
    assert_eq!(q["queue"][0]["position"], 1);
    assert_eq!(q["queue"][0]["preview"], "hello");
});

// 1.1: handoff with an agent online assigns directly.
both_dbs!(handoff_assigns_directly, |s: TestServer| async move {
    s.set_status(&s.agent1.0, "online").await;
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["status"], "assigned");
    assert_eq!(v["agent"]["name"], "Ann");
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[
            ("conversation:c", "conversation:status_changed"),
            ("conversation:c", "conversation:assigned"),
            ("project:p:queue", "conversation:status_changed"),
            ("project:p:queue", "conversation:assigned"),
            ("agent:a1", "conversation:assigned"),
        ])
    );
    assert_eq!(customer, ["conversation:status_changed", "conversation:assigned"]);
});

async fn queued(s: &TestServer) -> (String, String) {
    let (vt, c) = s.conversation().await;
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!(st, 200);
    (vt, c)
}

// A transfer stored with its hand-over note in the event (as versions before the note became an
// internal note did) is served to the customer without it; agents still read it.
both_dbs!(stored_transfer_notes_stay_with_agents, |s: TestServer| async move {
    use handoff_protocol::event::{AgentSummary, ConversationTransferred, TransferTarget};
    use handoff_protocol::{AgentId, ConversationId, Seq};
    use handoff_server::store::ConversationUpdate;
    let (vt, c) = queued(&s).await;
    s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    let id = ConversationId::new(c.as_str());
    let row = s.svc.store().conversation(&id).await.unwrap().unwrap();
    let old = Event::ConversationTransferred(ConversationTransferred {
        conversation_id: id.clone(),
        seq: Seq(row.last_seq.0 + 1),
        from_agent: AgentSummary { id: AgentId::new(s.agent1.1.as_str()), name: "Ann".into() },
        to: TransferTarget::Queue,
        note: Some("legacy secret".into()),
    });
    let update = ConversationUpdate {
        status: row.status,
        agent_id: row.agent_id.clone(),
        queued_at: row.queued_at,
        takes_slot: false,
    };
    s.svc.store().append(&id, row.last_seq, &update, &[old], row.updated_at + 1).await.unwrap();
    let after = row.last_seq.0;
    for path in [
        format!("/api/conversations/{c}/events?after=0"),
        format!("/api/conversations/{c}/events?after={after}&wait=5"),
    ] {
        let (st, page) = s.call("GET", &path, Some(&vt), None).await;
        assert_eq!(st, 200, "{page}");
        assert!(page.to_string().contains("conversation:transferred"), "{page}");
        assert!(!page.to_string().contains("legacy secret"), "{path}: {page}");
    }
    let (_, page) =
        s.call("GET", &format!("/api/conversations/{c}/events?after={after}"), Some(&s.agent1.0), None).await;
    assert_eq!(page["events"][0]["payload"]["note"], "legacy secret", "{page}");
});

// 1.3: claim.
both_dbs!(claim, |s: TestServer| async move {
    let (vt, c) = queued(&s).await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("assigned")));
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[
            ("conversation:c", "agent:claimed"),
            ("conversation:c", "conversation:assigned"),
            ("conversation:c", "conversation:status_changed"),
            ("project:p:queue", "agent:claimed"),
            ("project:p:queue", "conversation:assigned"),
            ("project:p:queue", "conversation:status_changed"),
            ("project:p:queue", "queue:updated"),
            ("agent:a1", "conversation:assigned"),
        ])
    );
    assert_eq!(customer, ["agent:claimed", "conversation:assigned", "conversation:status_changed"]);
    // A second claim is a forbidden transition, and changes nothing.
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent2.0), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("invalid_transition")));
    assert_eq!(w.seen(&s, &c).await.0, set(&[]));
});

// 1.4 and 7.4: transfer to a named agent, then to the queue.
both_dbs!(transfer, |s: TestServer| async move {
    let (vt, c) = queued(&s).await;
    s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    let mut w = Watch::new(&s, &c, &vt).await;
    // Bo is offline: not available.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent1.0),
            Some(json!({"to": s.agent2.1})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("agent_unavailable")), "{v}");
    s.set_status(&s.agent2.0, "online").await;
    w.seen(&s, &c).await;
    // A second customer socket, to look at the payloads it gets live.
    let mut customer = s.socket(Vsn::V1).await;
    customer.join_ok(&format!("realtime:conversation:{c}"), &vt).await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent1.0),
            Some(json!({"to": s.agent2.1, "note": "billing"})),
        )
        .await;
    assert_eq!((st, v["agent"]["name"].as_str()), (200, Some("Bo")), "{v}");
    let live = customer.drain_frames().await;
    assert!(live.iter().any(|f| format!("{f:?}").contains("conversation:transferred")), "{live:?}");
    assert!(!format!("{live:?}").contains("billing"), "the note reached the customer live: {live:?}");
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[
            ("conversation:c", "conversation:transferred"),
            ("conversation:c", "conversation:assigned"),
            ("conversation:c:agents", "note:new"),
            ("project:p:queue", "conversation:transferred"),
            ("project:p:queue", "conversation:assigned"),
            ("agent:a1", "conversation:transferred"),
            ("agent:a2", "conversation:transferred"),
            ("agent:a2", "conversation:assigned"),
        ])
    );
    assert_eq!(customer, ["conversation:transferred", "conversation:assigned"]);
    // The hand-over note is internal: a note for agents, in no event the customer can read.
    let (_, history) =
        s.call("GET", &format!("/api/conversations/{c}/events?after=0"), Some(&vt), None).await;
    assert!(!history.to_string().contains("billing"), "{history}");
    let (_, history) =
        s.call("GET", &format!("/api/conversations/{c}/events?after=0"), Some(&s.agent2.0), None).await;
    assert!(!history.to_string().contains("billing"), "not in the shared event either: {history}");
    let (st, notes) = s.call("GET", &format!("/api/conversations/{c}/notes"), Some(&s.agent2.0), None).await;
    assert_eq!(st, 200, "{notes}");
    assert_eq!(notes[0]["body"], "billing", "{notes}");
    assert_eq!(notes[0]["author"]["name"], "Ann", "{notes}");
    // Ann no longer has it.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent1.0),
            Some(json!({"to": "queue"})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("not_assignee")), "{v}");
    s.set_status(&s.agent2.0, "away").await;
    w.seen(&s, &c).await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent2.0),
            Some(json!({"to": "queue"})),
        )
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")));
    let (agents, _) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[
            ("conversation:c", "conversation:transferred"),
            ("conversation:c", "conversation:status_changed"),
            ("conversation:c", "queue:position_updated"),
            ("project:p:queue", "conversation:transferred"),
            ("project:p:queue", "conversation:status_changed"),
            ("project:p:queue", "queue:updated"),
            ("agent:a2", "conversation:transferred"),
        ])
    );
});

// 1.5 and the reopen rule: resolve, then the customer writes again.
both_dbs!(resolve_and_reopen, |s: TestServer| async move {
    let (vt, c) = queued(&s).await;
    s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("resolved")));
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[
            ("conversation:c", "conversation:resolved"),
            ("conversation:c", "conversation:status_changed"),
            ("project:p:queue", "conversation:resolved"),
            ("project:p:queue", "conversation:status_changed"),
            ("agent:a1", "conversation:resolved"),
        ])
    );
    assert_eq!(customer, ["conversation:resolved", "conversation:status_changed"]);
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&s.agent1.0),
            Some(json!({"body": "late"})),
        )
        .await;
    assert_eq!(st, 409, "agents cannot write in a resolved conversation");
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&vt),
            Some(json!({"body": "one more thing"})),
        )
        .await;
    assert_eq!(st, 201);
    let (_, conv) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert_eq!(conv["status"], "bot");
    let (_, customer) = w.seen(&s, &c).await;
    assert_eq!(customer, ["conversation:status_changed", "message:new"]);
});

// 1.6: an agent's message reaches the customer and the inbox preview.
both_dbs!(agent_message, |s: TestServer| async move {
    let (vt, c) = queued(&s).await;
    s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&s.agent1.0),
            Some(json!({"body": "Hi, Ann here", "client_msg_id": "a-1"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["message"]["author"], json!({"kind": "agent", "id": s.agent1.1, "name": "Ann"}));
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(agents, set(&[("conversation:c", "message:new"), ("project:p:queue", "message:new")]));
    assert_eq!(customer, ["message:new"]);
});

// 1.7: agent status.
both_dbs!(agent_status, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    s.set_status(&s.agent2.0, "online").await;
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(agents, set(&[("project:p:queue", "agent:status_changed")]));
    assert!(customer.is_empty());
    let (st, v) =
        s.call("PUT", "/api/agents/me/status", Some(&s.agent2.0), Some(json!({"status": "sleeping"}))).await;
    assert_eq!(st, 422, "{v}");
    let (_, list) = s.call("GET", "/api/agents", Some(&s.agent1.0), None).await;
    let bo = list.as_array().unwrap().iter().find(|a| a["name"] == "Bo").unwrap().clone();
    assert_eq!(bo["status"], "online");
});

// 4.1 and 4.6: typing both ways, on the conversation channel only.
both_dbs!(typing, |s: TestServer| async move {
    let (vt, c) = queued(&s).await;
    s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, _) = s
        .call("POST", &format!("/api/conversations/{c}/typing"), Some(&vt), Some(json!({"is_typing": true})))
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/typing"),
            Some(&s.agent1.0),
            Some(json!({"is_typing": true})),
        )
        .await;
    assert_eq!(st, 204);
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(agents, set(&[("conversation:c", "typing")]));
    assert_eq!(customer, ["typing", "typing"]);
});

// 5.1 and 5.6: presence, including the sendBeacon form.
both_dbs!(presence, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, _) = s
        .call("POST", &format!("/api/conversations/{c}/presence"), Some(&vt), Some(json!({"state": "idle"})))
        .await;
    assert_eq!(st, 204);
    // An agent opening the conversation now learns the current presence without waiting for
    // the next change.
    let (_, conv) = s.call("GET", &format!("/api/conversations/{c}"), Some(&s.agent1.0), None).await;
    assert_eq!(conv["presence"], "idle", "{conv}");
    let resp = s
        .http
        .post(format!("{}/api/conversations/{c}/presence", s.base))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(json!({"state": "offline", "token": vt}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let states: Vec<_> =
        w.a1.drain()
            .await
            .into_iter()
            .map(|(topic, e)| match e {
                Event::PresenceUpdated(p) => (topic, p.state),
                other => panic!("unexpected {}", other.name()),
            })
            .collect();
    let topic = format!("realtime:conversation:{c}");
    assert_eq!(states, [(topic.clone(), PresenceState::Idle), (topic, PresenceState::Offline)]);
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/presence"),
            Some(&s.agent1.0),
            Some(json!({"state": "idle"})),
        )
        .await;
    assert_eq!(st, 403, "agents do not report customer presence");
});

// 6.3, 6.5, 6.6: the offline form.
both_dbs!(offline_messages, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let path = format!("/api/projects/{}/offline-messages", s.project);
    let (st, v) = s
        .call(
            "POST",
            &path,
            Some(&vt),
            Some(json!({"name": "Dana", "email": "not-an-email", "message": "call me"})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (422, Some("validation_failed")));
    let (st, m) = s
        .call(
            "POST",
            &path,
            Some(&vt),
            Some(json!({"name": "Dana", "email": "dana@example.com", "message": "call me"})),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(agents, set(&[("project:p:queue", "offline_message:new")]));
    assert!(customer.is_empty(), "offline messages never reach a customer channel");
    let (st, _) = s.call("GET", "/api/offline-messages", Some(&vt), None).await;
    assert_eq!(st, 403);
    let (_, open) = s.call("GET", "/api/offline-messages?handled=false", Some(&s.agent2.0), None).await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    let id = m["id"].as_str().unwrap();
    let (st, _) =
        s.call("POST", &format!("/api/offline-messages/{id}/handled"), Some(&s.agent2.0), None).await;
    assert_eq!(st, 204);
    let (_, open) = s.call("GET", "/api/offline-messages?handled=false", Some(&s.agent2.0), None).await;
    assert_eq!(open.as_array().unwrap().len(), 0);
});

// 7.2: unread counts from read markers.
both_dbs!(unread_counts, |s: TestServer| async move {
    let (vt, c) = queued(&s).await;
    s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    s.call(
        "POST",
        &format!("/api/conversations/{c}/messages"),
        Some(&vt),
        Some(json!({"body": "are you there?"})),
    )
    .await;
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&s.agent1.0), None).await;
    let item = &inbox[0];
    assert_eq!(item["unread"], 2);
    assert_eq!(item["last_message"]["body"], "are you there?");
    let seq = item["conversation"]["last_seq"].clone();
    let (st, _) = s
        .call("POST", &format!("/api/conversations/{c}/read"), Some(&s.agent1.0), Some(json!({"seq": seq})))
        .await;
    assert_eq!(st, 204);
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&s.agent1.0), None).await;
    assert_eq!(inbox[0]["unread"], 0);
    s.call("POST", &format!("/api/conversations/{c}/messages"), Some(&vt), Some(json!({"body": "hello?"})))
        .await;
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&s.agent1.0), None).await;
    assert_eq!(inbox[0]["unread"], 1);
    // Markers only move forward, and hold up under concurrent writes (on SQLite a read-then-write
    // transaction failed here with "database is locked").
    let s = &s;
    let read = |seq: u64| {
        let path = format!("/api/conversations/{c}/read");
        let token = s.agent1.0.clone();
        async move { s.call("POST", &path, Some(&token), Some(json!({"seq": seq}))).await.0 }
    };
    let send = |i: u64| {
        let path = format!("/api/conversations/{c}/messages");
        let vt = vt.clone();
        async move { s.call("POST", &path, Some(&vt), Some(json!({"body": format!("ping {i}")}))).await.0 }
    };
    let (reads, sends) = tokio::join!(
        futures_util::future::join_all((1..=20).map(read)),
        futures_util::future::join_all((1..=20).map(send)),
    );
    assert!(reads.iter().all(|&st| st == 204), "{reads:?}");
    assert!(sends.iter().all(|&st| st == 201), "{sends:?}");
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&s.agent1.0), None).await;
    let last = inbox[0]["conversation"]["last_seq"].as_u64().unwrap();
    assert_eq!(read(last).await, 204);
    assert_eq!(read(1).await, 204, "an older marker is accepted and ignored");
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&s.agent1.0), None).await;
    assert_eq!(inbox[0]["unread"], 0);
});

// 7.3: internal notes are agent-only.
both_dbs!(notes, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, n) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/notes"),
            Some(&s.agent1.0),
            Some(json!({"body": "VIP"})),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    let (agents, customer) = w.seen(&s, &c).await;
    assert_eq!(agents, set(&[("conversation:c:agents", "note:new")]));
    assert!(customer.is_empty());
    let (st, _) = s.call("GET", &format!("/api/conversations/{c}/notes"), Some(&vt), None).await;
    assert_eq!(st, 403);
    let (st, _) =
        s.call("POST", &format!("/api/conversations/{c}/notes"), Some(&vt), Some(json!({"body": "x"}))).await;
    assert_eq!(st, 403);
    let (_, list) = s.call("GET", &format!("/api/conversations/{c}/notes"), Some(&s.agent2.0), None).await;
    assert_eq!(list[0]["body"], "VIP");
    let (_, reply) = w.customer.join(&format!("realtime:conversation:{c}:agents"), Some(&vt), false).await;
    assert_eq!(reply.reply().unwrap().reason(), Some("not allowed to join this channel"));
});

// 7.5: decline goes to another free agent, else back to the queue; routing never offers a
// conversation to an agent who declined it.
both_dbs!(decline, |s: TestServer| async move {
    s.set_status(&s.agent1.0, "online").await;
    let (vt, c) = s.conversation().await;
    let (_, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!(v["agent"]["name"], "Ann");
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/decline"), Some(&s.agent1.0), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    let (agents, _) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[
            ("conversation:c", "conversation:status_changed"),
            ("conversation:c", "queue:position_updated"),
            ("project:p:queue", "conversation:status_changed"),
            ("project:p:queue", "queue:updated"),
        ])
    );
    // Bo comes online: the queue head goes to him.
    s.set_status(&s.agent2.0, "online").await;
    let (_, v) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert_eq!(v["agent"]["name"], "Bo");
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/decline"), Some(&s.agent1.0), None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("not_assignee")),
        "only the assigned agent declines"
    );
    // Ann is free but declined it already: Bo's decline sends it back to the queue, and it stays
    // there while Ann frees more slots.
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/decline"), Some(&s.agent2.0), None).await;
    assert_eq!((st, v["status"].as_str(), &v["agent"]), (200, Some("queued"), &Value::Null), "{v}");
    s.set_status(&s.agent1.0, "away").await;
    s.set_status(&s.agent1.0, "online").await;
    let (_, v) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert_eq!(v["status"], "queued", "{v}");
    // Cy, who never declined it, comes online and gets it.
    s.svc.create_agent(&s.project, "cy@test.dev", "Cy", "pw-cy-123").await.unwrap();
    let (cy, _) = s.login("cy@test.dev", "pw-cy-123").await;
    s.set_status(&cy, "online").await;
    let (_, v) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert_eq!(v["agent"]["name"], "Cy", "{v}");
    // A decliner can still claim it by hand when it is queued again.
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/decline"), Some(&cy), None).await;
    assert_eq!(st, 200);
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    assert_eq!((st, v["agent"]["name"].as_str()), (200, Some("Ann")), "{v}");
});

// Authorization matrix.
both_dbs!(authorization, |s: TestServer| async move {
    let (vt_a, c) = s.conversation().await;
    let vt_b = s.visitor().await;
    for (method, path, body) in [
        ("GET", format!("/api/conversations/{c}"), None),
        ("GET", format!("/api/conversations/{c}/events"), None),
        ("POST", format!("/api/conversations/{c}/messages"), Some(json!({"body": "hi"}))),
        ("POST", format!("/api/conversations/{c}/handoff"), None),
        ("POST", format!("/api/conversations/{c}/typing"), Some(json!({"is_typing": true}))),
        ("POST", format!("/api/conversations/{c}/presence"), Some(json!({"state": "online"}))),
    ] {
        let (st, v) = s.call(method, &path, Some(&vt_b), body).await;
        assert_eq!(st, 404, "{method} {path}: {v}");
    }
    for (method, path) in [
        ("POST", format!("/api/conversations/{c}/claim")),
        ("GET", "/api/inbox".to_owned()),
        ("GET", "/api/queue".to_owned()),
        ("GET", "/api/agents".to_owned()),
    ] {
        let (st, _) = s.call(method, &path, Some(&vt_a), None).await;
        assert_eq!(st, 403, "{method} {path}");
    }
    let (st, v) = s.call("GET", "/api/inbox", None, None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (st, _) = s.call("GET", "/api/inbox", Some("at_forged"), None).await;
    assert_eq!(st, 401);
    let mut sock = s.socket(Vsn::V2).await;
    for topic in [
        format!("realtime:conversation:{c}"),
        format!("realtime:conversation:{c}:agents"),
        format!("realtime:project:{}:queue", s.project),
        format!("realtime:agent:{}", s.agent1.1),
    ] {
        let (_, reply) = sock.join(&topic, Some(&vt_b), false).await;
        assert_eq!(reply.reply().unwrap().status, handoff_protocol::phoenix::ReplyStatus::Error, "{topic}");
    }
    // An agent of another project sees nothing of this one.
    let (q, _) = s.svc.create_project("Other", vec!["*".into()]).await.unwrap();
    s.svc.create_agent(&q.id, "zed@other.dev", "Zed", "pw-zed-123").await.unwrap();
    let (zt, _) = s.login("zed@other.dev", "pw-zed-123").await;
    let (st, _) = s.call("GET", &format!("/api/conversations/{c}"), Some(&zt), None).await;
    assert_eq!(st, 404);
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&zt), None).await;
    assert_eq!(st, 404);
    let (_, reply) = sock.join(&format!("realtime:project:{}:queue", s.project), Some(&zt), false).await;
    assert_eq!(reply.reply().unwrap().status, handoff_protocol::phoenix::ReplyStatus::Error);
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&zt), None).await;
    assert_eq!(inbox, json!([]));
});

// Bad input gets the documented error and changes nothing.
both_dbs!(bad_input, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let path = format!("/api/conversations/{c}/messages");
    let before = s.call("GET", &format!("/api/conversations/{c}/events"), Some(&vt), None).await.1["events"]
        .as_array()
        .unwrap()
        .len();
    let big = "x".repeat(70 * 1024);
    let (st, v) = s.call("POST", &path, Some(&vt), Some(json!({"body": big}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (413, Some("payload_too_large")), "{v}");
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(&vt)
        .header("content-type", "application/json")
        .body("{\"body\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    let (st, v) = s.call("POST", &path, Some(&vt), Some(json!({"body": "   "}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (422, Some("validation_failed")));
    let (st, v) = s.call("POST", &path, Some(&vt), Some(json!({"body": "x".repeat(5001)}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (422, Some("validation_failed")));
    let (st, v) =
        s.call("POST", "/api/conversations/conv_nope/messages", Some(&vt), Some(json!({"body": "hi"}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 409, "a bot conversation cannot be resolved");
    let (st, v) = s.call("POST", "/api/widget/session", None, Some(json!({"project_key": "pk_nope"}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
    // A replayed client_msg_id is answered with the stored message.
    let (st, first) =
        s.call("POST", &path, Some(&vt), Some(json!({"body": "once", "client_msg_id": "k1"}))).await;
    assert_eq!(st, 201);
    let (st, again) =
        s.call("POST", &path, Some(&vt), Some(json!({"body": "once", "client_msg_id": "k1"}))).await;
    assert_eq!(st, 200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message"], first["message"]);
    let after = s.call("GET", &format!("/api/conversations/{c}/events"), Some(&vt), None).await.1["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before + 1, "only the first send stored anything");
    let (st, _) = s.call("GET", "/api/nope", None, None).await;
    assert_eq!(st, 404);
});

// History, catch-up and long-poll.
both_dbs!(events_long_poll, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let (_, page) = s.call("GET", &format!("/api/conversations/{c}/events?after=0"), Some(&vt), None).await;
    assert_eq!(page["last_seq"], 1);
    assert_eq!(page["events"][0]["payload"]["message"]["body"], "hello");
    let started = std::time::Instant::now();
    let (_, page) =
        s.call("GET", &format!("/api/conversations/{c}/events?after=1&wait=1"), Some(&vt), None).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["last_seq"], 1);
    let poll = {
        let (http, url, vt) =
            (s.http.clone(), format!("{}/api/conversations/{c}/events?after=1&wait=20", s.base), vt.clone());
        tokio::spawn(async move {
            http.get(url).bearer_auth(vt).send().await.unwrap().json::<serde_json::Value>().await.unwrap()
        })
    };
    // The write comes while the long-poll is waiting (not before it started reading).
    let id = handoff_protocol::ConversationId::new(c.as_str());
    while s.svc.long_polls_waiting(&id) == 0 {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    s.call(
        "POST",
        &format!("/api/conversations/{c}/messages"),
        Some(&s.agent1.0),
        Some(json!({"body": "answer"})),
    )
    .await;
    let page = poll.await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the long-poll answers as soon as an event exists"
    );
    assert_eq!(page["events"][0]["payload"]["message"]["body"], "answer");
    assert_eq!(page["last_seq"], 2);
    let (st, _) = s.call("GET", &format!("/api/conversations/{c}/events?after=abc"), Some(&vt), None).await;
    assert_eq!(st, 400);
});

// Long-polls are woken through the hub: a visitor long-polling node B gets a message posted
// through node A (same PostgreSQL database, same Redis) at once, not at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_is_woken_by_a_write_on_another_node() {
    let Some(redis) = redis_url().await else { return };
    let Some(s) = TestServer::start_config(Db::Postgres, |c| c.redis_url = Some(redis.clone())).await else {
        return;
    };
    let (svc2, base2, _) = s.second_node().await;
    let (vt, c) = s.conversation().await;
    let id = handoff_protocol::ConversationId::new(c.as_str());
    for round in 0..3 {
        let after = 1 + round;
        let poll = {
            let (http, url, vt) = (
                s.http.clone(),
                format!("{base2}/api/conversations/{c}/events?after={after}&wait=10"),
                vt.clone(),
            );
            tokio::spawn(async move {
                let page = http.get(url).bearer_auth(vt).send().await.unwrap().json::<Value>().await.unwrap();
                (page, std::time::Instant::now())
            })
        };
        // The write comes while the long-poll waits on node B.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while svc2.long_polls_waiting(&id) == 0 {
            assert!(std::time::Instant::now() < deadline, "the long-poll never waited");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(s.svc.long_polls_waiting(&id), 0, "it waits on node B only");
        let body = format!("answer {round}");
        let started = std::time::Instant::now();
        let (st, _) = s
            .call(
                "POST",
                &format!("/api/conversations/{c}/messages"),
                Some(&s.agent1.0),
                Some(json!({"body": body})),
            )
            .await;
        assert_eq!(st, 201);
        let (page, answered) = poll.await.unwrap();
        let latency = answered.duration_since(started);
        eprintln!("long-poll on node B answered {latency:?} after the post to node A began");
        assert!(
            latency < std::time::Duration::from_secs(2),
            "the long-poll on the other node answers at once, not at its timeout: {latency:?}"
        );
        assert_eq!(page["events"][0]["payload"]["message"]["body"], body.as_str(), "{page}");
        assert_eq!(page["last_seq"], after + 1);
        assert_eq!(svc2.long_poll_conversations(), 0, "the answered long-poll left no waiter");
    }
}

#[tokio::test]
async fn openapi_is_generated_from_the_served_routes() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let (st, doc) = s.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(doc, serde_json::to_value(handoff_server::http::openapi()).unwrap());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{}", paths.len());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            // Each documented route is served (no 404 route-not-found, no 405).
            let url_path = path.replace("{id}", "x");
            let (st, v) = s.call(&method.to_uppercase(), &url_path, None, None).await;
            assert!(
                st != 405 && !(st == 404 && v["error"]["message"] == "route not found"),
                "{method} {path}: {st} {v}"
            );
            // Each route lists its error answers (no catch-all `4XX`), 429 with `Retry-After`.
            assert!(op["responses"].get("4XX").is_none(), "{method} {path}: 4XX");
            assert!(
                path == "/healthz"
                    || (op["responses"]["500"].is_object()
                        && op["responses"]["429"]["headers"]["Retry-After"].is_object()),
                "{method} {path}: error responses"
            );
        }
    }
    assert!(operations >= 27, "{operations}");
    // Every schema reference resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    // Request bodies carry their schemas, with the protocol crate's field names.
    let send = &doc["paths"]["/api/conversations/{id}/messages"]["post"];
    assert_eq!(
        send["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SendMessageRequest"
    );
    assert!(schemas["SendMessageRequest"]["required"].as_array().unwrap().contains(&json!("body")));
    let events = &doc["paths"]["/api/conversations/{id}/events"]["get"]["parameters"];
    let names: Vec<&str> = events.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "after", "wait"]);
    assert!(schemas["Event"]["properties"]["event"]["enum"]
        .as_array()
        .unwrap()
        .contains(&json!("message:new")));
    let (st, _) = s.call("GET", "/healthz", None, None).await;
    assert_eq!(st, 200);
}

// The document states what the server checks (Schemathesis, `cargo xtask contract`, tests the
// rest against a running server).
#[tokio::test]
async fn openapi_states_the_servers_rules() {
    use handoff_protocol::api::{MAX_BODY_CHARS, MAX_SEQ};
    let doc = serde_json::to_value(handoff_server::http::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    // The replayed `client_msg_id` and the continued conversation answer 200.
    let send = &doc["paths"]["/api/conversations/{id}/messages"]["post"]["responses"];
    assert!(send["200"].is_object() && send["201"].is_object());
    let create = &doc["paths"]["/api/conversations"]["post"];
    assert!(create["responses"]["200"].is_object() && create["responses"]["201"].is_object());
    // Its body is optional, but never `null`.
    assert_eq!(create["requestBody"]["required"], false);
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateConversationRequest"
    );
    let body = &schemas["SendMessageRequest"]["properties"]["body"];
    assert_eq!(
        (body["minLength"].as_u64(), body["maxLength"].as_u64()),
        (Some(1), Some(MAX_BODY_CHARS as u64))
    );
    assert_eq!(schemas["Seq"]["maximum"].as_u64(), Some(MAX_SEQ));
    // The catch-all `unknown` is no accepted value.
    for e in ["ErrorCode", "PresenceState", "AgentStatus", "ConversationStatus"] {
        let values = schemas[e]["enum"].as_array().unwrap();
        assert!(!values.is_empty() && !values.contains(&json!("unknown")), "{e}");
    }
    assert!(schemas["ConversationId"]["pattern"].is_string());
    let events = &doc["paths"]["/api/conversations/{id}/events"]["get"]["parameters"];
    assert_eq!(events[2]["schema"]["maximum"], 30);
}

// A request body is a JSON object: `null` and arrays (which serde would read as a struct's
// fields) are 400 with the error body.
both_dbs!(bodies_must_be_objects, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    for body in [json!(null), json!([null, null]), json!(["hi", "m1"]), json!("hi")] {
        for path in ["/api/conversations".to_owned(), format!("/api/conversations/{c}/messages")] {
            let (st, v) = s.call("POST", &path, Some(&vt), Some(body.clone())).await;
            assert_eq!((st, v["error"]["code"].as_str()), (400, Some("bad_request")), "{path} {body}: {v}");
        }
        let (st, v) =
            s.call("POST", &format!("/api/conversations/{c}/presence"), Some(&vt), Some(body.clone())).await;
        assert_eq!((st, v["error"]["code"].as_str()), (400, Some("bad_request")), "presence {body}: {v}");
    }
    // No body still starts (here: continues) a conversation.
    let (st, v) = s.call("POST", "/api/conversations", Some(&vt), None).await;
    assert_eq!((st, v["id"].as_str()), (200, Some(c.as_str())), "{v}");
});

// A bot backend writes with the project's secret key and hands off.
both_dbs!(bot_backend, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&s.secret_key),
            Some(json!({"body": "I am the bot"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["message"]["author"]["kind"], "bot");
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&s.secret_key), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    let (_, customer) = w.seen(&s, &c).await;
    assert_eq!(customer, ["message:new", "conversation:status_changed", "queue:position_updated"]);
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.secret_key), None).await;
    assert_eq!(st, 403, "a bot does not claim");
});

// Identity verification: when a project enforces it, every customer call of an unverified
// visitor is refused, not only `identify`.
both_dbs!(identity_enforced, |s: TestServer| async move {
    s.svc.store().set_identity(&s.project, Some("id-secret"), true).await.unwrap();
    let vt = s.visitor().await;
    let (st, v) = s.call("POST", "/api/conversations", Some(&vt), Some(json!({"body": "hi"}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("identity_required")));
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/projects/{}/offline-messages", s.project),
            Some(&vt),
            Some(json!({"name": "a", "email": "a@b.co", "message": "m"})),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) =
        s.call("POST", "/api/widget/identify", Some(&vt), Some(json!({"user_id": "u1", "hmac": "00"}))).await;
    assert_eq!(st, 403, "a wrong HMAC is refused");
    let hmac = handoff_server::crypto::hmac_hex("id-secret", b"u1");
    let (st, v) = s
        .call(
            "POST",
            "/api/widget/identify",
            Some(&vt),
            Some(json!({"user_id": "u1", "name": "Uma", "hmac": hmac})),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let (st, c) = s.call("POST", "/api/conversations", Some(&vt), Some(json!({"body": "hi"}))).await;
    assert_eq!(st, 201);
    assert_eq!(c["customer_name"], "Uma");
    // On the socket, an unverified visitor's token authorizes nothing.
    let other = s.visitor().await;
    let mut sock = s.socket(Vsn::V2).await;
    let (_, reply) =
        sock.join(&format!("realtime:conversation:{}", c["id"].as_str().unwrap()), Some(&other), false).await;
    assert_eq!(reply.reply().unwrap().status, handoff_protocol::phoenix::ReplyStatus::Error);
});

// Background jobs: silent customers go offline, agents without a socket go offline, both
// announced.
both_dbs!(expiry_jobs, |s: TestServer| async move {
    s.set_status(&s.agent2.0, "online").await;
    let (vt, c) = s.conversation().await;
    let mut w = Watch::new(&s, &c, &vt).await;
    // Before and after the deadline, on the service's clock argument (no sleeping): the
    // heartbeat and the agent's activity are from before `t0`.
    let t0 = handoff_server::service::now_ms();
    assert_eq!(s.svc.expire_presence(t0, 60_000).await, 0, "a fresh heartbeat is not stale");
    assert_eq!(s.svc.expire_agents(t0, 60_000).await, 0);
    assert!(w.seen(&s, &c).await.0.is_empty());
    assert_eq!(s.svc.expire_presence(t0 + 60_001, 60_000).await, 1);
    // Bo's socket (the watch's) keeps him online however long he is quiet; once it closed,
    // he goes after the grace.
    assert_eq!(s.svc.expire_agents(t0 + 60_001, 60_000).await, 0, "a connected agent stays");
    w.a2 = s.socket(Vsn::V1).await;
    let bo = handoff_protocol::AgentId::new(s.agent2.1.as_str());
    while s.svc.agent_sockets(&bo) > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // (The run above saw his socket at its `now`: the clock goes on from there.)
    let t1 = handoff_server::service::now_ms().max(t0 + 60_001);
    assert_eq!(s.svc.expire_agents(t1 + 60_001, 60_000).await, 1);
    let (agents, _) = w.seen(&s, &c).await;
    assert_eq!(
        agents,
        set(&[("conversation:c", "presence:updated"), ("project:p:queue", "agent:status_changed")])
    );
    let (_, list) = s.call("GET", "/api/agents", Some(&s.agent1.0), None).await;
    assert!(list.as_array().unwrap().iter().all(|a| a["status"] == "offline"));
});

// Sign out: the token stops working; other sessions of the same agent go on.
both_dbs!(logout_revokes_the_token, |s: TestServer| async move {
    let other = s.login("ann@test.dev", "pw-ann-123").await;
    let (st, _) = s.call("POST", "/api/agents/logout", Some(&s.agent1.0), None).await;
    assert_eq!(st, 204);
    let (st, v) = s.call("GET", "/api/agents/me", Some(&s.agent1.0), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let (st, v) = s.call("GET", "/api/agents/me", Some(&other.0), None).await;
    assert_eq!((st, v["name"].as_str()), (200, Some("Ann")), "{v}");
    let (st, _) = s.call("POST", "/api/agents/logout", None, None).await;
    assert_eq!(st, 401);
});

// A socket joined with a token that is revoked later stops receiving: its tokens are checked
// again on a heartbeat (here every 200 ms), and its channel gets phx_error; a rejoin with the
// revoked token is refused. Other sessions go on.
#[tokio::test]
async fn a_revoked_token_loses_its_channels() {
    use handoff_protocol::phoenix::{FrameKind, ReplyStatus};
    use handoff_server::realtime::RealtimeConfig;
    let config =
        RealtimeConfig { token_recheck: std::time::Duration::from_millis(200), ..RealtimeConfig::default() };
    let s = TestServer::start_with(Db::Sqlite, config).await.unwrap();
    let (vt, c) = s.conversation().await;
    let topic = format!("realtime:conversation:{c}");
    let mut revoked = s.socket(Vsn::V2).await;
    revoked.join_ok(&topic, &s.agent1.0).await;
    let mut other = s.socket(Vsn::V1).await;
    other.join_ok(&topic, &s.agent2.0).await;
    let (st, _) = s.call("POST", "/api/agents/logout", Some(&s.agent1.0), None).await;
    assert_eq!(st, 204);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The logout's revocation reaches the socket at once (before this heartbeat's reply);
    // without it, this heartbeat triggers the check and what it finds comes after the reply.
    let mut frames = revoked.drain_frames().await;
    let (st, _) = s
        .call("POST", &format!("/api/conversations/{c}/messages"), Some(&vt), Some(json!({"body": "after"})))
        .await;
    assert_eq!(st, 201);
    frames.extend(revoked.drain_frames().await);
    assert!(frames.iter().any(|f| f.kind() == FrameKind::Error && f.topic == topic), "{frames:?}");
    assert!(!frames.iter().any(|f| f.kind() == FrameKind::Broadcast), "{frames:?}");
    let (_, reply) = revoked.join(&topic, Some(&s.agent1.0), false).await;
    assert_eq!(reply.reply().unwrap().status, ReplyStatus::Error, "{reply:?}");
    // Bo's session is untouched.
    let seen = other.events().await;
    assert!(seen.iter().any(|e| e.name() == "message:new"), "{seen:?}");
}
