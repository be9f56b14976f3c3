//! The write path: messages are stored in batches (group commit). Concurrent sends to one
//! conversation and to many get distinct, gapless seqs in the order they were stored; each
//! `client_msg_id` is stored once however its retries race; a message refused inside a batch
//! fails alone.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use handoff_protocol::api::{ErrorCode, SendMessageRequest};
use handoff_protocol::ids::{ClientMsgId, ConversationId};
use handoff_protocol::phoenix::Vsn;
use handoff_protocol::Event;
use serde_json::{json, Value};

use crate::harness::{Db, TestServer};

/// The messages of a conversation's history: (seq, `client_msg_id`, id), in order.
async fn history(s: &TestServer, token: &str, conv: &str) -> (Vec<(u64, String, String)>, Vec<u64>) {
    let (status, page) =
        s.call("GET", &format!("/api/conversations/{conv}/events?after=0"), Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    let mut messages = Vec::new();
    let mut seqs = Vec::new();
    for e in page["events"].as_array().unwrap() {
        let p = &e["payload"];
        let seq = p["seq"].as_u64().or_else(|| p["message"]["seq"].as_u64()).unwrap();
        seqs.push(seq);
        if e["event"] == "message:new" {
            let m = &p["message"];
            messages.push((
                seq,
                m["client_msg_id"].as_str().unwrap_or_default().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    (messages, seqs)
}

/// Runs a test body on SQLite, then on PostgreSQL, on a server without rate limits (the
/// tests send hundreds of messages at once).
macro_rules! both_dbs_unlimited {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            async fn start(db: Db) -> Option<TestServer> {
                TestServer::start_config(db, |c| c.limits = handoff_server::limits::LimitsConfig::unlimited())
                    .await
            }
            #[tokio::test]
            async fn sqlite() {
                if let Some(s) = start(Db::Sqlite).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(s) = start(Db::Postgres).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

both_dbs_unlimited!(concurrent_sends_get_distinct_gapless_seqs, |s: TestServer| async move {
    // Three conversations (each with its first message at seq 1), 40 messages each, every
    // one sent twice at once (a retry racing its original): 240 requests in flight.
    let mut convs = Vec::new();
    for _ in 0..3 {
        convs.push(s.conversation().await);
    }
    let mut watcher = s.socket(Vsn::V2).await;
    watcher.join_ok(&format!("realtime:conversation:{}", convs[0].1), &convs[0].0).await;
    let s = &s;
    let sends = convs.iter().flat_map(|(token, conv)| {
        (0..40).flat_map(move |i| {
            (0..2).map(move |_| async move {
                let body = json!({"body": format!("message {i}"), "client_msg_id": format!("k{i}")});
                let path = format!("/api/conversations/{conv}/messages");
                let (status, v) = s.call("POST", &path, Some(token), Some(body)).await;
                (conv.clone(), i, status, v)
            })
        })
    });
    let answers: Vec<(String, usize, u16, Value)> = join_all(sends).await;
    // Per (conversation, client_msg_id): exactly one 201, one 200, and both the same message.
    let mut by_key: BTreeMap<(String, usize), Vec<(u16, Value)>> = BTreeMap::new();
    for (conv, i, status, v) in answers {
        by_key.entry((conv, i)).or_default().push((status, v));
    }
    for ((conv, i), answers) in &by_key {
        let mut statuses: Vec<u16> = answers.iter().map(|(st, _)| *st).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 201], "{conv} k{i}: {answers:?}");
        assert_eq!(answers[0].1["message"]["id"], answers[1].1["message"]["id"], "{conv} k{i}");
        assert_eq!(answers[0].1["message"]["seq"], answers[1].1["message"]["seq"], "{conv} k{i}");
    }
    for (token, conv) in &convs {
        let (messages, seqs) = history(s, token, conv).await;
        // Gapless and strictly increasing: 1 (the first message) to 41.
        assert_eq!(seqs, (1..=41).collect::<Vec<u64>>(), "{conv}");
        // Each client_msg_id once, with the seq and id its answers gave.
        let stored: BTreeSet<&str> =
            messages.iter().map(|(_, k, _)| k.as_str()).filter(|k| !k.is_empty()).collect();
        assert_eq!(stored.len(), 40, "{conv}");
        for (seq, key, id) in messages.iter().filter(|(_, k, _)| !k.is_empty()) {
            let i: usize = key.trim_start_matches('k').parse().unwrap();
            let (_, answer) = &by_key[&(conv.clone(), i)][0];
            assert_eq!(answer["message"]["id"].as_str(), Some(id.as_str()));
            assert_eq!(answer["message"]["seq"].as_u64(), Some(*seq));
        }
        let (_, c) = s.call("GET", &format!("/api/conversations/{conv}"), Some(token), None).await;
        assert_eq!(c["last_seq"], 41, "{c}");
    }
    // Published after the commit (before the answers), in seq order, each once.
    let published: Vec<u64> = watcher
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageNew(m) => Some(m.message.seq.0),
            _ => None,
        })
        .collect();
    assert_eq!(published, (2..=41).collect::<Vec<u64>>());
});

both_dbs_unlimited!(a_refused_message_does_not_fail_its_batch, |s: TestServer| async move {
    // Ann takes the first conversation; the second is another visitor's, in bot state.
    s.set_status(&s.agent1.0, "online").await;
    let (ann_vt, ann_conv) = s.conversation().await;
    let (status, v) =
        s.call("POST", &format!("/api/conversations/{ann_conv}/handoff"), Some(&ann_vt), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "assigned", "{v}");
    let (other_vt, other_conv) = s.conversation().await;
    let customer = s.svc.authenticate(&ann_vt).await.unwrap();
    let other = s.svc.authenticate(&other_vt).await.unwrap();
    let bo = s.svc.authenticate(&s.agent2.0).await.unwrap();
    let ann_id = ConversationId::new(ann_conv.as_str());
    let other_id = ConversationId::new(other_conv.as_str());
    let req = |body: &str, key: Option<&str>| SendMessageRequest {
        body: body.to_owned(),
        client_msg_id: key.map(ClientMsgId::new),
    };
    // Sent together, they are queued before the writer runs and stored in one batch.
    let (good, refused, foreign, other_good, twice) = tokio::join!(
        join_all((0..5).map(|i| s.svc.send_message(&customer, &ann_id, req(&format!("a{i}"), None)))),
        // Bo does not hold the conversation.
        s.svc.send_message(&bo, &ann_id, req("not mine", None)),
        // Another visitor cannot see it.
        s.svc.send_message(&other, &ann_id, req("not my conversation", None)),
        join_all((0..5).map(|i| s.svc.send_message(&other, &other_id, req(&format!("b{i}"), None)))),
        join_all((0..2).map(|_| s.svc.send_message(&customer, &ann_id, req("twice", Some("t1"))))),
    );
    assert_eq!(refused.unwrap_err().code, ErrorCode::NotAssignee);
    assert_eq!(foreign.unwrap_err().code, ErrorCode::NotFound);
    let good: Vec<u64> = good.into_iter().map(|r| r.unwrap().message.seq.0).collect();
    let other_good: Vec<u64> = other_good.into_iter().map(|r| r.unwrap().message.seq.0).collect();
    let twice: Vec<_> = twice.into_iter().map(Result::unwrap).collect();
    assert_eq!(twice.iter().filter(|r| r.duplicate).count(), 1);
    assert_eq!(twice[0].message.id, twice[1].message.id);
    // The refused messages took no seq: Ann's conversation is at 1 (hello), 2 (status), 3
    // (assigned), then the five and the one of "t1"; the other at 1, then its five.
    let mut ann_seqs = good.clone();
    ann_seqs.push(twice[0].message.seq.0);
    ann_seqs.sort_unstable();
    assert_eq!(ann_seqs, (4..=9).collect::<Vec<u64>>());
    assert_eq!(other_good, (2..=6).collect::<Vec<u64>>());
    let (_, seqs) = history(&s, &ann_vt, &ann_conv).await;
    assert_eq!(seqs, (1..=9).collect::<Vec<u64>>());
    let (messages, _) = history(&s, &other_vt, &other_conv).await;
    let bodies: Vec<u64> = messages.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(bodies, (1..=6).collect::<Vec<u64>>());
});
