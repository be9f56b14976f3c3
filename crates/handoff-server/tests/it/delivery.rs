//! Delivery (issue 12): catch-up pages reach the conversation's latest `seq`, unread counts
//! follow the protocol's one rule, and multi-step writes commit together or not at all.

use handoff_protocol::api::EVENTS_PAGE_MAX;
use handoff_protocol::event::{
    AgentSummary, Author, AuthorKind, ConversationTransferred, Message, MessageNew, Note, TransferTarget,
};
use handoff_protocol::unread::counts_as_unread;
use handoff_protocol::{AgentId, ConversationId, Event, NoteId, Seq, Timestamp};
use handoff_server::store::{self, AppendRow, ConversationUpdate, StoreError};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{Db, TestServer};

fn update_of(row: &store::ConversationRow) -> ConversationUpdate {
    ConversationUpdate {
        status: row.status,
        agent_id: row.agent_id.clone(),
        queued_at: row.queued_at,
        takes_slot: false,
    }
}

async fn events(s: &TestServer, c: &str, token: &str, after: u64) -> Value {
    let (st, page) =
        s.call("GET", &format!("/api/conversations/{c}/events?after={after}"), Some(token), None).await;
    assert_eq!(st, 200, "{page}");
    page
}

fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["payload"]["seq"].as_u64().unwrap_or_else(|| e["payload"]["message"]["seq"].as_u64().unwrap())
        })
        .collect()
}

// `last_seq` is the conversation's latest seq even when the page stops at 500 events, and a
// reader that asks again after the last event it got while that is below `last_seq` gets all.
both_dbs!(events_pages_reach_the_latest_seq, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let id = ConversationId::new(c.as_str());
    let row = s.svc.store().conversation(&id).await.unwrap().unwrap();
    assert_eq!(row.last_seq, Seq(1));
    // 619 more messages (620 in all), written straight to the store: one transaction.
    let more: Vec<Event> = (2..=620u64)
        .map(|seq| {
            Event::MessageNew(MessageNew {
                message: Message {
                    id: store::new_message_id(),
                    conversation_id: id.clone(),
                    seq: Seq(seq),
                    author: Author { kind: AuthorKind::Customer, id: "v".into(), name: None },
                    body: format!("#{seq}"),
                    client_msg_id: None,
                    created_at: Timestamp(row.created_at + seq),
                },
            })
        })
        .collect();
    s.svc.store().append(&id, row.last_seq, &update_of(&row), &more, row.updated_at + 1).await.unwrap();

    let first = events(&s, &c, &vt, 0).await;
    assert_eq!(first["events"].as_array().unwrap().len(), EVENTS_PAGE_MAX as usize);
    assert_eq!(first["last_seq"], 620, "the conversation's latest seq, not the page's last");
    assert_eq!(seqs(&first).last(), Some(&500));

    // The documented reader: apply by each event's seq, ask again after the last one got.
    let mut got: Vec<u64> = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = events(&s, &c, &vt, after).await;
        pages += 1;
        let page_seqs = seqs(&page);
        got.extend(&page_seqs);
        match page_seqs.last() {
            Some(&last) if last < page["last_seq"].as_u64().unwrap() => after = last,
            _ => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(got, (1..=620).collect::<Vec<u64>>());

    // Nothing new: empty page, last_seq still the latest (with and without waiting).
    let page = events(&s, &c, &vt, 620).await;
    assert_eq!((page["events"].as_array().unwrap().len(), page["last_seq"].as_u64()), (0, Some(620)));
    let (_, page) =
        s.call("GET", &format!("/api/conversations/{c}/events?after=620&wait=1"), Some(&vt), None).await;
    assert_eq!((page["events"].as_array().unwrap().len(), page["last_seq"].as_u64()), (0, Some(620)));
    // Agents get the same.
    let page = events(&s, &c, &s.agent1.0, 100).await;
    assert_eq!(seqs(&page).first(), Some(&101));
    assert_eq!(page["last_seq"], 620);
});

// The inbox's `unread` and a live count over the same events with the protocol's rule agree
// after a mixed sequence: customer, bot, customer, another agent, customer.
both_dbs!(unread_counts_follow_the_one_rule, |s: TestServer| async move {
    let (vt, c) = s.conversation().await; // customer "hello"
    let post = |token: String, body: &'static str| {
        let path = format!("/api/conversations/{c}/messages");
        let s = &s;
        async move {
            let (st, v) = s.call("POST", &path, Some(&token), Some(json!({"body": body}))).await;
            assert_eq!(st, 201, "{body}: {v}");
        }
    };
    post(s.secret_key.clone(), "bot: how can I help?").await;
    post(vt.clone(), "customer: a human please").await;
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&s.secret_key), None).await;
    assert_eq!(st, 200);
    // Bo takes it first and answers, then hands it to Ann.
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent2.0), None).await;
    assert_eq!(st, 200, "{v}");
    post(s.agent2.0.clone(), "Bo: one moment").await;
    s.set_status(&s.agent1.0, "online").await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent2.0),
            Some(json!({"to": s.agent1.1})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    post(vt.clone(), "customer: still there?").await;

    // What the console counts live, with the same rule, from the events it gets.
    let live = |page: &Value, marker: u64| {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "message:new")
            .map(|e| &e["payload"]["message"])
            .filter(|m| m["seq"].as_u64().unwrap() > marker)
            .filter(|m| {
                let kind: AuthorKind = serde_json::from_value(m["author"]["kind"].clone()).unwrap();
                counts_as_unread(kind, AuthorKind::Agent)
            })
            .count()
    };
    let page = events(&s, &c, &s.agent1.0, 0).await;
    let inbox_unread = |inbox: &Value| {
        inbox.as_array().unwrap().iter().find(|i| i["conversation"]["id"] == c.as_str()).unwrap()["unread"]
            .as_u64()
            .unwrap()
    };
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&s.agent1.0), None).await;
    assert_eq!(inbox_unread(&inbox), 3, "the three customer messages: {inbox}");
    assert_eq!(live(&page, 0), 3);
    // After a read marker in the middle.
    let marker = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["payload"]["message"]["body"] == "Bo: one moment")
        .unwrap()["payload"]["message"]["seq"]
        .as_u64()
        .unwrap();
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/read"),
            Some(&s.agent1.0),
            Some(json!({"seq": marker})),
        )
        .await;
    assert_eq!(st, 204);
    let (_, inbox) = s.call("GET", "/api/inbox", Some(&s.agent1.0), None).await;
    assert_eq!(inbox_unread(&inbox), 1);
    assert_eq!(live(&page, marker), 1);
});

async fn claimed(s: &TestServer) -> (String, String, ConversationId) {
    let (vt, c) = s.conversation().await;
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!(st, 200);
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200, "{v}");
    let id = ConversationId::new(c.as_str());
    (vt, c, id)
}

// A transfer and its hand-over note commit together or not at all.
both_dbs!(transfer_and_note_are_one_write, |s: TestServer| async move {
    let (_vt, c, id) = claimed(&s).await;
    let before = s.svc.store().conversation(&id).await.unwrap().unwrap();

    // A note that fails validation: the transfer fails, nothing changed.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent1.0),
            Some(json!({"to": "queue", "note": "x".repeat(5001)})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let row = s.svc.store().conversation(&id).await.unwrap().unwrap();
    assert_eq!((row.status, row.last_seq), (before.status, before.last_seq));
    assert!(s.svc.store().notes(&id).await.unwrap().is_empty());

    // The note's row fails inside the transaction (its id is taken): the transfer's events and
    // state are rolled back with it.
    let (st, taken) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/notes"),
            Some(&s.agent1.0),
            Some(json!({"body": "first"})),
        )
        .await;
    assert_eq!(st, 201, "{taken}");
    let from = AgentSummary { id: AgentId::new(s.agent1.1.as_str()), name: "Ann".into() };
    let transferred = Event::ConversationTransferred(ConversationTransferred {
        conversation_id: id.clone(),
        seq: before.last_seq.next(),
        from_agent: from.clone(),
        to: TransferTarget::Queue,
        note: None,
    });
    let clash = Note {
        id: NoteId::new(taken["id"].as_str().unwrap()),
        conversation_id: id.clone(),
        author: from,
        body: "hand-over".into(),
        created_at: Timestamp(before.updated_at + 1),
    };
    let queued = ConversationUpdate {
        status: handoff_protocol::event::ConversationStatus::Queued,
        agent_id: None,
        queued_at: Some(before.updated_at + 1),
        takes_slot: false,
    };
    let r = s
        .svc
        .store()
        .append_with(
            &id,
            before.last_seq,
            &queued,
            &[transferred],
            &[AppendRow::Note(clash)],
            before.updated_at + 1,
        )
        .await;
    assert!(r.is_err(), "a taken note id must fail the write");
    let row = s.svc.store().conversation(&id).await.unwrap().unwrap();
    assert_eq!((row.status, row.last_seq, row.agent_id.is_some()), (before.status, before.last_seq, true));
    assert!(s.svc.store().events_after(&id, before.last_seq, 10).await.unwrap().is_empty());
    assert_eq!(s.svc.store().notes(&id).await.unwrap().len(), 1);

    // A good transfer with a note: both stored.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/transfer"),
            Some(&s.agent1.0),
            Some(json!({"to": "queue", "note": "billing question"})),
        )
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    let notes = s.svc.store().notes(&id).await.unwrap();
    assert_eq!(notes.iter().map(|n| n.body.as_str()).collect::<Vec<_>>(), ["first", "billing question"]);
    let after = s.svc.store().events_after(&id, before.last_seq, 10).await.unwrap();
    assert!(matches!(after.first(), Some(Event::ConversationTransferred(_))), "{after:?}");
});

// The decline record exists exactly when the decline happened.
both_dbs!(decline_and_its_record_are_one_write, |s: TestServer| async move {
    let (_vt, c, id) = claimed(&s).await;
    // Not the assignee: refused, nothing recorded.
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/decline"), Some(&s.agent2.0), None).await;
    assert_ne!(st, 200);
    assert!(s.svc.store().decliners(&id).await.unwrap().is_empty());

    // A write that loses the race (stale seq) stores no record either.
    let row = s.svc.store().conversation(&id).await.unwrap().unwrap();
    let stale = Seq(row.last_seq.0 - 1);
    let r = s
        .svc
        .store()
        .append_with(
            &id,
            stale,
            &update_of(&row),
            &[],
            &[AppendRow::Decline(AgentId::new(s.agent1.1.as_str()))],
            row.updated_at + 1,
        )
        .await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
    assert!(s.svc.store().decliners(&id).await.unwrap().is_empty());

    // The assignee declines: back to the queue, and the record is there.
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/decline"), Some(&s.agent1.0), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    assert_eq!(s.svc.store().decliners(&id).await.unwrap(), [AgentId::new(s.agent1.1.as_str())]);
});
