//! Privacy duties over REST: a visitor's data export and erasure (secret key only, per
//! project), and the retention period with its background deletion (with an explicit `now`).

use std::time::Duration;

use handoff_protocol::ids::{AgentId, ConversationId, VisitorId};
use handoff_protocol::phoenix::{FrameKind, Vsn};
use handoff_protocol::Event;
use handoff_server::service::now_ms;
use serde_json::{json, Value};
use sqlx::Row;

use crate::both_dbs;
use crate::harness::{Db, TestServer};

const DAY_MS: u64 = 86_400_000;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// A raw connection to the test's database, to count what is left.
async fn db(s: &TestServer) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&s.config.database_url).await.unwrap()
}

/// Rows of every table that refers to the conversations `ids` (and the FTS index on SQLite).
async fn rows_of(pool: &sqlx::AnyPool, ids: &[&str], sqlite: bool) -> Vec<(String, i64)> {
    let mut tables = vec![
        ("conversations", "id"),
        ("events", "conversation_id"),
        ("messages", "conversation_id"),
        ("notes", "conversation_id"),
        ("read_markers", "conversation_id"),
        ("declines", "conversation_id"),
        ("presence_tabs", "conversation_id"),
        ("conversation_ratings", "conversation_id"),
        ("transcript_emails", "conversation_id"),
    ];
    if sqlite {
        tables.push(("messages_fts", "conversation_id"));
    }
    let mut out = Vec::new();
    for (table, column) in tables {
        let mut n = 0;
        for id in ids {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
            n += sqlx::query(&sql).bind(*id).fetch_one(pool).await.unwrap().get::<i64, _>(0);
        }
        out.push((table.to_owned(), n));
    }
    out
}

async fn count(pool: &sqlx::AnyPool, sql: &str, arg: &str) -> i64 {
    sqlx::query(sql).bind(arg).fetch_one(pool).await.unwrap().get::<i64, _>(0)
}

/// A visitor identified as `name`/`email`, with a conversation that an agent claimed, wrote in,
/// annotated, read, and that has a tab's presence: (token, visitor id, conversation id).
async fn busy_customer(s: &TestServer, name: &str, email: &str) -> (String, String, String) {
    let (st, session) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
    assert_eq!(st, 200);
    let vt = session["visitor_token"].as_str().unwrap().to_owned();
    let vid = session["visitor_id"].as_str().unwrap().to_owned();
    assert!(s
        .svc
        .store()
        .identify_visitor(&VisitorId::new(vid.clone()), &format!("u-{vid}"), Some(name), Some(email))
        .await
        .unwrap());
    let (st, c) =
        s.call("POST", "/api/conversations", Some(&vt), Some(json!({"body": "my secret order 4711"}))).await;
    assert_eq!(st, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    let ann = &s.agent1.0;
    s.set_status(ann, "online").await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{id}/handoff"), Some(&vt), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "assigned", "{v}");
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            Some(ann),
            Some(json!({"body": "Checking order 4711", "client_msg_id": "a1"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{id}/notes"),
            Some(ann),
            Some(json!({"body": "VIP customer"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) =
        s.call("POST", &format!("/api/conversations/{id}/read"), Some(ann), Some(json!({"seq": 2}))).await;
    assert_eq!(st, 204, "{v}");
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{id}/presence"),
            Some(&vt),
            Some(json!({"state": "online", "tab": "tab-1"})),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    // Bo declined it once (a decline's record hangs off the conversation too).
    let bo = AgentId::new(s.agent2.1.clone());
    s.svc.store().add_decline(&ConversationId::new(id.clone()), &bo, now_ms()).await.unwrap();
    // A rating and a transcript email of it (written directly: the fixture fills every table).
    let pool = db(s).await;
    sqlx::query("INSERT INTO conversation_ratings (conversation_id, project_id, agent_id, rating, comment, created_at) VALUES ($1, $2, NULL, 5, 'great', 0)")
        .bind(id.as_str())
        .bind(s.project.to_string())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO transcript_emails (id, conversation_id, visitor_id, email, created_at) VALUES ($1, $2, $3, $4, 0)")
        .bind(format!("te_{id}"))
        .bind(id.as_str())
        .bind(vid.as_str())
        .bind(email)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    (vt, vid, id)
}

both_dbs!(export_has_everything_of_the_visitor, |s: TestServer| async move {
    let (_vt, vid, id) = busy_customer(&s, "Alice Martin", "Alice@Shop.example").await;
    // An offline message with the same email (any case) belongs to the export; another's not.
    let project = s.project.to_string();
    for (email, message) in [("alice@shop.example", "call me back"), ("zed@else.example", "not hers")] {
        let vt = s.visitor().await;
        let (st, v) = s
            .call(
                "POST",
                &format!("/api/projects/{project}/offline-messages"),
                Some(&vt),
                Some(json!({"name": "A", "email": email, "message": message})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }

    let (st, x) = s.call("GET", &format!("/api/visitors/{vid}/export"), Some(&s.secret_key), None).await;
    assert_eq!(st, 200, "{x}");
    assert_eq!(x["visitor"]["id"], vid.as_str());
    assert_eq!(x["visitor"]["name"], "Alice Martin");
    assert_eq!(x["visitor"]["email"], "Alice@Shop.example");
    assert_eq!(x["visitor"]["verified"], true);
    assert!(x["visitor"].get("token_hash").is_none(), "{x}");
    assert!(!x.to_string().contains("token"), "no token or hash in an export: {x}");
    let convs = x["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1);
    let c = &convs[0];
    assert_eq!(c["conversation"]["id"], id.as_str());
    let events: Vec<&str> =
        c["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(events.contains(&"message:new") && events.contains(&"conversation:assigned"), "{events:?}");
    let bodies: Vec<&str> = c["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["payload"]["message"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["my secret order 4711", "Checking order 4711"]);
    assert_eq!(c["notes"][0]["body"], "VIP customer");
    assert_eq!(c["presence"][0]["tab_id"], "tab-1");
    assert_eq!(c["presence"][0]["state"], "online");
    let offline: Vec<&str> =
        x["offline_messages"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(offline, ["call me back"]);

    // Secret key only, and only the caller's project.
    let (st, v) = s.call("GET", &format!("/api/visitors/{vid}/export"), Some(&s.agent1.0), None).await;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    let vt = s.visitor().await;
    let (st, v) = s.call("GET", &format!("/api/visitors/{vid}/export"), Some(&vt), None).await;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    let (_, other_secret) = s.svc.create_project("Other", vec!["*".into()]).await.unwrap();
    let (st, v) = s.call("GET", &format!("/api/visitors/{vid}/export"), Some(&other_secret), None).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    let (st, v) = s.call("DELETE", &format!("/api/visitors/{vid}"), Some(&other_secret), None).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    let (st, v) = s.call("GET", "/api/visitors/v_nobody/export", Some(&s.secret_key), None).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    let (st, v) = s.call("GET", "/api/visitors/bad%20id/export", Some(&s.secret_key), None).await;
    assert_eq!((st, code(&v)), (400, "bad_request"), "{v}");
});

both_dbs!(erasure_removes_everything_of_the_visitor, |s: TestServer| async move {
    let sqlite = s.config.database_url.starts_with("sqlite");
    let pool = db(&s).await;
    let (vt, vid, id) = busy_customer(&s, "Bob Stone", "bob@mail.example").await;
    // A second, resolved conversation of the same visitor.
    let (st, v) = s.call("POST", &format!("/api/conversations/{id}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200, "{v}");
    let (keep_vt, keep_id) = s.conversation().await;
    let vt_project = s.project.to_string();
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/projects/{vt_project}/offline-messages"),
            Some(&keep_vt),
            Some(json!({"name": "B", "email": "BOB@mail.example", "message": "later"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let before = rows_of(&pool, &[&id], sqlite).await;
    assert!(before.iter().all(|(_, n)| *n > 0), "the fixture fills every table: {before:?}");
    // The search finds the conversation before.
    let (st, v) = s.call("GET", "/api/conversations/search?q=4711", Some(&s.agent1.0), None).await;
    assert_eq!((st, v["hits"].as_array().unwrap().len()), (200, 1), "{v}");

    // An agent watching the conversation and the queue.
    let mut sock = s.socket(Vsn::V2).await;
    sock.join_ok(&format!("realtime:conversation:{id}"), &s.agent1.0).await;
    // The customer's own socket.
    let mut customer_sock = s.socket(Vsn::V2).await;
    customer_sock.join_ok(&format!("realtime:conversation:{id}"), &vt).await;

    // Agents may not erase.
    let (st, v) = s.call("DELETE", &format!("/api/visitors/{vid}"), Some(&s.agent1.0), None).await;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    let (st, v) = s.call("DELETE", &format!("/api/visitors/{vid}"), Some(&vt), None).await;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");

    let (st, v) = s.call("DELETE", &format!("/api/visitors/{vid}"), Some(&s.secret_key), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["visitor_id"], vid.as_str());
    assert_eq!(v["conversations"], 1);
    assert_eq!(v["messages"], 2);
    assert_eq!(v["offline_messages"], 1);

    // Nothing is left of them, in any table.
    let after = rows_of(&pool, &[&id], sqlite).await;
    assert!(after.iter().all(|(_, n)| *n == 0), "{after:?}");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM visitors WHERE id = $1", &vid).await, 0);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM offline_messages WHERE LOWER(email) = $1", "bob@mail.example")
            .await,
        0
    );
    // Others' data stays.
    assert!(rows_of(&pool, &[&keep_id], sqlite).await.iter().any(|(t, n)| t == "messages" && *n == 1));

    // The watcher is told; the token no longer works; search finds nothing; again is 404.
    let deleted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            for e in sock.events().await {
                if let Event::ConversationDeleted(d) = e {
                    return d.conversation_id.to_string();
                }
            }
        }
    })
    .await
    .expect("conversation:deleted");
    assert_eq!(deleted, id);
    // The erased visitor's socket is cut like a revoked token's: its channel gets `phx_error`.
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(f) = customer_sock.recv().await {
            if f.kind() == FrameKind::Error {
                return f.topic;
            }
        }
        String::new()
    })
    .await
    .expect("phx_error on the customer's channel");
    assert_eq!(cut, format!("realtime:conversation:{id}"));
    let (st, _) = s.call("GET", &format!("/api/conversations/{id}"), Some(&vt), None).await;
    assert_eq!(st, 401);
    let (st, v) = s
        .call(
            "POST",
            "/api/widget/session",
            None,
            Some(json!({"project_key": s.public_key, "visitor_token": vt})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_ne!(v["visitor_id"], vid.as_str(), "a fresh visitor, not the erased one");
    for q in ["4711", "bob", "stone"] {
        let (st, v) =
            s.call("GET", &format!("/api/conversations/search?q={q}"), Some(&s.agent1.0), None).await;
        assert_eq!(st, 200);
        assert!(v["hits"].as_array().unwrap().is_empty(), "{q}: {v}");
    }
    let (st, v) = s.call("DELETE", &format!("/api/visitors/{vid}"), Some(&s.secret_key), None).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
});

both_dbs!(retention_deletes_old_resolved_conversations, |s: TestServer| async move {
    let sqlite = s.config.database_url.starts_with("sqlite");
    let pool = db(&s).await;
    let (_, _, old) = busy_customer(&s, "Old One", "old@x.example").await;
    let (st, v) = s.call("POST", &format!("/api/conversations/{old}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200, "{v}");
    let (_, open) = s.conversation().await;
    let resolved_at = now_ms();

    // Bad settings are refused and change nothing.
    for (body, status) in [
        (json!({"retention_days": 0}), 422),
        (json!({"retention_days": 36_501}), 422),
        (json!({"retention_days": "x"}), 400),
        (json!({"retention_days": 1.5}), 400),
        (json!({"retention_days": -1}), 400),
    ] {
        let (st, v) = s.call("PUT", "/api/project/retention", Some(&s.secret_key), Some(body.clone())).await;
        assert_eq!(st, status, "{body}: {v}");
    }
    let (st, v) =
        s.call("PUT", "/api/project/retention", Some(&s.agent1.0), Some(json!({"retention_days": 1}))).await;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    // Without a period nothing is deleted, however old.
    assert_eq!(s.svc.expire_retention(resolved_at + 10_000 * DAY_MS).await, 0);

    // A whole number written as a float is a whole number.
    let (st, v) = s
        .call("PUT", "/api/project/retention", Some(&s.secret_key), Some(json!({"retention_days": 30.0})))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["retention_days"], 30);
    assert_eq!(s.svc.store().project(&s.project).await.unwrap().unwrap().retention_days, Some(30));
    // Another project's period does not apply to this one.
    let (_, other_secret) = s.svc.create_project("Other", vec!["*".into()]).await.unwrap();
    let (st, _) = s
        .call("PUT", "/api/project/retention", Some(&other_secret), Some(json!({"retention_days": 1})))
        .await;
    assert_eq!(st, 200);

    // A day before the period ends: kept. After: deleted, with everything of it; the open
    // conversation stays.
    assert_eq!(s.svc.expire_retention(resolved_at + 29 * DAY_MS).await, 0);
    assert!(rows_of(&pool, &[&old], sqlite).await.iter().all(|(_, n)| *n > 0));
    let mut sock = s.socket(Vsn::V2).await;
    sock.join_ok(&format!("realtime:conversation:{old}"), &s.agent1.0).await;
    assert_eq!(s.svc.expire_retention(resolved_at + 31 * DAY_MS).await, 1);
    let left = rows_of(&pool, &[&old], sqlite).await;
    assert!(left.iter().all(|(_, n)| *n == 0), "{left:?}");
    assert!(rows_of(&pool, &[&open], sqlite).await.iter().any(|(t, n)| t == "conversations" && *n == 1));
    let deleted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            for e in sock.events().await {
                if let Event::ConversationDeleted(d) = e {
                    return d.conversation_id.to_string();
                }
            }
        }
    })
    .await
    .expect("conversation:deleted");
    assert_eq!(deleted, old);

    // The background job does it, once per cluster (the lease holder), at an explicit `now`.
    // (A month on, the agents' tokens expire in the same run: no agent calls after it.)
    let (_, _, old2) = busy_customer(&s, "Old Two", "old2@x.example").await;
    let (st, v) =
        s.call("POST", &format!("/api/conversations/{old2}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200, "{v}");
    let resolved_at = now_ms();
    let lease = handoff_server::jobs::lease_ttl(Duration::from_secs(5));
    let jobs = |now| handoff_server::jobs::run_once(&s.svc, now, lease);
    assert_eq!(jobs(resolved_at + 29 * DAY_MS).await.expect("this node holds the lease").retention, 0);
    assert_eq!(jobs(resolved_at + 31 * DAY_MS).await.expect("this node holds the lease").retention, 1);
    assert!(rows_of(&pool, &[&old2], sqlite).await.iter().all(|(_, n)| *n == 0));
    // Another node does not run the jobs while this one holds the lease.
    let other = handoff_server::store::SqlStore::connect(&s.config.database_url).await.unwrap();
    let other = handoff_server::service::Service::new(
        std::sync::Arc::new(other),
        std::sync::Arc::new(handoff_server::realtime::Hub::new()),
    );
    assert!(handoff_server::jobs::run_once(&other, resolved_at + 31 * DAY_MS, lease).await.is_none());

    // Nothing more to do; removing the period keeps everything again.
    assert_eq!(s.svc.expire_retention(resolved_at + 400 * DAY_MS).await, 0);
    let (st, v) = s
        .call("PUT", "/api/project/retention", Some(&s.secret_key), Some(json!({"retention_days": null})))
        .await;
    assert_eq!((st, v["retention_days"].clone()), (200, Value::Null), "{v}");
});
