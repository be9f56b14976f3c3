//! Conversation search and history over REST (full text on SQLite FTS5 and PostgreSQL), and
//! the paged inbox and queue.

use handoff_protocol::ids::VisitorId;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{Db, TestServer};

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A cursor as the server makes them, for a list `tag` (to check that lists refuse others').
fn hex_cursor(tag: &str, id: &str) -> String {
    hex::encode(format!("{tag}:1:{id}"))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// A visitor with a conversation whose first message is `body`, identified as `name`/`email`
/// when given: (visitor token, visitor id, conversation id).
async fn customer(s: &TestServer, body: &str, who: Option<(&str, &str)>) -> (String, String, String) {
    let (st, session) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
    assert_eq!(st, 200, "{session}");
    let vt = session["visitor_token"].as_str().unwrap().to_owned();
    let vid = session["visitor_id"].as_str().unwrap().to_owned();
    if let Some((name, email)) = who {
        let bound = s
            .svc
            .store()
            .identify_visitor(&VisitorId::new(vid.clone()), &format!("u-{vid}"), Some(name), Some(email))
            .await
            .unwrap();
        assert!(bound);
    }
    let (st, c) = s.call("POST", "/api/conversations", Some(&vt), Some(json!({"body": body}))).await;
    assert_eq!(st, 201, "{c}");
    (vt, vid, c["id"].as_str().unwrap().to_owned())
}

async fn search(s: &TestServer, token: &str, query: &str) -> Value {
    let (st, v) = s.call("GET", &format!("/api/conversations/search?{query}"), Some(token), None).await;
    assert_eq!(st, 200, "{query}: {v}");
    v
}

/// The conversation ids of a search answer, in order.
fn ids(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["conversation"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_finds_messages_and_customers_sqlite() {
    search_finds_messages_and_customers(Db::Sqlite).await;
}

#[tokio::test]
async fn search_finds_messages_and_customers_postgres() {
    search_finds_messages_and_customers(Db::Postgres).await;
}

async fn search_finds_messages_and_customers(db: Db) {
    // Some forty searches in a row: more than one agent's burst.
    let Some(s) = TestServer::start_config(db, |c| c.limits.apply("search.caller=off").unwrap()).await else {
        return;
    };
    let ann = s.agent1.0.clone();
    let (_, _, refund) = customer(
        &s,
        "Where is my REFUND? It has been 10 days.",
        Some(("Alice Martin", "alice@shop.example")),
    )
    .await;
    let (_, _, shipping) =
        customer(&s, "My parcel was shipped to the wrong address", Some(("Bob Stone", "bob@mail.example")))
            .await;
    let (vt3, _, other) = customer(&s, "Crème brûlée recipe: café au lait 東京", None).await;
    // A later message of the third conversation, which then has the newest activity.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{other}/messages"),
            Some(&vt3),
            Some(json!({"body": "also a refund question", "client_msg_id": "m2"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");

    // Message words, without regard to case, as words or word starts; newest activity first.
    let v = search(&s, &ann, "q=refund").await;
    assert_eq!(ids(&v), [other.as_str(), refund.as_str()], "{v}");
    let hit = &v["hits"][1];
    assert_eq!(hit["match"], "message");
    assert_eq!(hit["customer_email"], "alice@shop.example");
    assert_eq!(hit["conversation"]["customer_name"], "Alice Martin");
    assert_eq!(hit["conversation"]["status"], "bot");
    assert_eq!(hit["snippet"], "Where is my REFUND? It has been 10 days.");
    assert!(hit["message_id"].as_str().unwrap().starts_with("msg_"), "{hit}");
    assert_eq!(hit["message_seq"], 1);
    assert_eq!(v["hits"][0]["snippet"], "also a refund question");
    assert!(v.get("next_cursor").is_none(), "{v}");
    assert_eq!(ids(&search(&s, &ann, "q=REFU").await), [other.as_str(), refund.as_str()]);
    // Every word must be there.
    assert_eq!(ids(&search(&s, &ann, "q=wrong%20address").await), [shipping.as_str()]);
    assert!(ids(&search(&s, &ann, "q=wrong%20refund").await).is_empty());
    // Unicode words.
    assert_eq!(ids(&search(&s, &ann, &format!("q={}", enc("brûlée"))).await), [other.as_str()]);
    assert_eq!(ids(&search(&s, &ann, &format!("q={}", enc("東京"))).await), [other.as_str()]);
    // The customer's name or email (part of it, any case).
    let v = search(&s, &ann, "q=alice").await;
    assert_eq!(ids(&v), [refund.as_str()]);
    assert_eq!(v["hits"][0]["match"], "customer");
    assert_eq!(v["hits"][0]["snippet"], "Where is my REFUND? It has been 10 days.");
    assert_eq!(ids(&search(&s, &ann, "q=BOB%40MAIL").await), [shipping.as_str()]);
    assert_eq!(ids(&search(&s, &s.secret_key, "q=stone").await), [shipping.as_str()]);

    // Hostile text is words, never query syntax: no error, sensible answers.
    for q in [
        "\"refund",
        "refund\"",
        "refund*",
        "*",
        "NEAR(refund days)",
        "-refund",
        "refund -days",
        "refund OR x",
        "(refund",
        "refund)",
        "refund:",
        "'refund'",
        "refund & days",
        "!refund",
        "refund | x",
        "\\",
        "^",
        "'':*",
        "%",
        "_",
        "\u{0}refund",
        "refund\u{1b}",
        "   ",
    ] {
        let (st, v) =
            s.call("GET", &format!("/api/conversations/search?q={}", enc(q)), Some(&ann), None).await;
        assert_eq!(st, 200, "{q:?}: {v}");
    }
    assert_eq!(
        ids(&search(&s, &ann, &format!("q={}", enc("\"refund*\""))).await),
        [other.as_str(), refund.as_str()]
    );
    assert_eq!(
        ids(&search(&s, &ann, &format!("q={}", enc("NEAR(refund days)"))).await),
        Vec::<String>::new()
    );
    assert_eq!(ids(&search(&s, &ann, &format!("q={}", enc("refund -days"))).await), [refund.as_str()]);
    assert!(ids(&search(&s, &ann, "q=%25").await).is_empty());

    // No text: history, every conversation, newest activity first.
    assert_eq!(ids(&search(&s, &ann, "").await), [other.as_str(), shipping.as_str(), refund.as_str()]);
    assert_eq!(search(&s, &ann, "q=").await["hits"][0]["match"], "all");

    // Resolved conversations are found, and the status filter works.
    let (st, v) =
        s.call("POST", &format!("/api/conversations/{shipping}/handoff"), Some(&s.secret_key), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) =
        s.call("POST", &format!("/api/conversations/{shipping}/resolve"), Some(&s.secret_key), None).await;
    assert_eq!(st, 200, "{v}");
    let v = search(&s, &ann, "q=parcel&status=resolved").await;
    assert_eq!(ids(&v), [shipping.as_str()]);
    assert_eq!(v["hits"][0]["conversation"]["status"], "resolved");
    assert!(ids(&search(&s, &ann, "q=parcel&status=bot").await).is_empty());
    assert_eq!(ids(&search(&s, &ann, "status=resolved").await), [shipping.as_str()]);
}

both_dbs!(search_pages_and_refusals, |s: TestServer| async move {
    let ann = s.agent1.0.clone();
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(customer(&s, &format!("invoice number {i}"), None).await.2);
    }
    // Newest activity first (conversations made in the same millisecond: by id).
    let everything = ids(&search(&s, &ann, "q=invoice&limit=100").await);
    let mut sorted = everything.clone();
    sorted.sort();
    made.sort();
    assert_eq!(sorted, made);
    let made = everything;
    // Pages of 2, by cursor, without gaps or repeats.
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            Some(c) => format!("q=invoice&limit=2&cursor={c}"),
            None => "q=invoice&limit=2".to_owned(),
        };
        let v = search(&s, &ann, &q).await;
        assert!(v["hits"].as_array().unwrap().len() <= 2);
        got.extend(ids(&v));
        cursor = v["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(got, made);

    // Another project's conversations are never found (not even by its own words).
    let (other_project, other_secret) = s.svc.create_project("Other", vec!["*".into()]).await.unwrap();
    let (st, session) = s
        .call("POST", "/api/widget/session", None, Some(json!({"project_key": other_project.public_key})))
        .await;
    assert_eq!(st, 200);
    let vt = session["visitor_token"].as_str().unwrap();
    let (st, _) =
        s.call("POST", "/api/conversations", Some(vt), Some(json!({"body": "invoice secret zebra"}))).await;
    assert_eq!(st, 201);
    assert!(ids(&search(&s, &ann, "q=zebra").await).is_empty());
    assert_eq!(ids(&search(&s, &ann, "q=invoice&limit=100").await).len(), 5);
    assert_eq!(ids(&search(&s, &other_secret, "q=invoice").await).len(), 1);

    // Searching is rate-limited per agent (bursts of 30).
    let mut limited = false;
    for _ in 0..40 {
        let (st, v) = s.call("GET", "/api/conversations/search?q=x", Some(&s.agent2.0), None).await;
        if st == 429 {
            assert_eq!(code(&v), "rate_limited");
            limited = true;
            break;
        }
    }
    assert!(limited, "40 searches in a row were never limited");

    // Visitors may not search; no token is 401.
    let (st, v) = s.call("GET", "/api/conversations/search?q=invoice", Some(vt), None).await;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    let (st, _) = s.call("GET", "/api/conversations/search?q=invoice", None, None).await;
    assert_eq!(st, 401);

    // Bad input: clear 422s (400 for a malformed number).
    let long = "a".repeat(1_000);
    for (query, status) in [
        (format!("q={long}"), 422),
        ("status=open".to_owned(), 422),
        ("status=".to_owned(), 422),
        ("limit=0".to_owned(), 422),
        ("limit=101".to_owned(), 422),
        ("limit=x".to_owned(), 400),
        ("cursor=nothex".to_owned(), 422),
        (format!("cursor={}", "ab".repeat(600)), 422),
    ] {
        let (st, v) = s.call("GET", &format!("/api/conversations/search?{query}"), Some(&ann), None).await;
        assert_eq!(st, status, "{query}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty(), "{v}");
    }
    let (st, v) =
        s.call("GET", &format!("/api/conversations/search?q={}", "a".repeat(200)), Some(&ann), None).await;
    assert_eq!(st, 200, "{v}");
    // Only the first 12 words count: a 13th that is in no message does not empty the answer.
    let words = format!("{} nowhereword", "invoice ".repeat(12));
    assert_eq!(ids(&search(&s, &ann, &format!("q={}", enc(&words))).await).len(), 5);
    // Another list's cursor is no search cursor.
    let queue_cursor = hex_cursor("q", &made[0]);
    let (st, v) =
        s.call("GET", &format!("/api/conversations/search?cursor={queue_cursor}"), Some(&ann), None).await;
    assert_eq!((st, code(&v)), (422, "validation_failed"), "{v}");
});

#[tokio::test]
async fn inbox_and_queue_page_beyond_fifty_sqlite() {
    inbox_and_queue_page_beyond_fifty(Db::Sqlite).await;
}

#[tokio::test]
async fn inbox_and_queue_page_beyond_fifty_postgres() {
    inbox_and_queue_page_beyond_fifty(Db::Postgres).await;
}

async fn inbox_and_queue_page_beyond_fifty(db: Db) {
    // 55 conversations from one address: without the per-IP rate limits.
    let Some(s) = TestServer::start_config(db, |c| c.limits.apply("off").unwrap()).await else { return };
    let ann = s.agent1.0.clone();
    let mut queued = Vec::new();
    for _ in 0..55 {
        let (_, id) = s.conversation().await;
        let (st, v) =
            s.call("POST", &format!("/api/conversations/{id}/handoff"), Some(&s.secret_key), None).await;
        assert_eq!(st, 200, "{v}");
        queued.push(id);
    }
    // The queue: 50 by default, then the rest by cursor, positions counted from the head.
    let (st, page) = s.call("GET", "/api/queue", Some(&ann), None).await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["queue"].as_array().unwrap().len(), 50);
    assert_eq!(page["queue_length"], 55);
    assert_eq!(page["queue"][0]["position"], 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (st, rest) = s.call("GET", &format!("/api/queue?cursor={cursor}"), Some(&ann), None).await;
    assert_eq!(st, 200, "{rest}");
    assert_eq!(rest["queue"].as_array().unwrap().len(), 5);
    assert_eq!(rest["queue"][0]["position"], 51);
    assert!(rest.get("next_cursor").is_none(), "{rest}");
    let mut all: Vec<String> = page["queue"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["queue"].as_array().unwrap())
        .map(|e| e["conversation_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all, queued);

    // The inbox: newest first, 50 by default, then from the last item's cursor.
    let (st, first) = s.call("GET", "/api/inbox", Some(&ann), None).await;
    assert_eq!(st, 200, "{first}");
    let first = first.as_array().unwrap().clone();
    assert_eq!(first.len(), 50);
    let cursor = first.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    let (st, second) =
        s.call("GET", &format!("/api/inbox?cursor={cursor}&limit=100"), Some(&ann), None).await;
    assert_eq!(st, 200, "{second}");
    let second = second.as_array().unwrap().clone();
    assert_eq!(second.len(), 5);
    all = first.iter().chain(&second).map(|i| i["conversation"]["id"].as_str().unwrap().to_owned()).collect();
    all.sort();
    let mut expected = queued.clone();
    expected.sort();
    assert_eq!(all, expected);
    // Cursors belong to their list; limits are checked.
    let (st, v) = s.call("GET", &format!("/api/queue?cursor={cursor}"), Some(&ann), None).await;
    assert_eq!((st, code(&v)), (422, "validation_failed"), "{v}");
    for q in ["limit=0", "limit=101", "cursor=zz"] {
        let (st, v) = s.call("GET", &format!("/api/inbox?{q}"), Some(&ann), None).await;
        assert_eq!((st, code(&v)), (422, "validation_failed"), "{q}: {v}");
    }
    let (st, v) = s.call("GET", "/api/queue?limit=7", Some(&ann), None).await;
    assert_eq!((st, v["queue"].as_array().unwrap().len()), (200, 7));
}

/// Migration 8 indexes the messages stored before it (SQLite's FTS table is filled from them;
/// PostgreSQL's index is an expression index over the table, so it covers them by definition).
#[tokio::test]
async fn the_migration_indexes_messages_stored_before_it() {
    use handoff_protocol::ids::ProjectId;
    use handoff_server::store::{SearchQuery, SqlStore, Store, MIGRATIONS};
    sqlx::any::install_default_drivers();
    let path = std::env::temp_dir().join(format!("handoff-migrate-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}", path.display());
    {
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v < 8) {
            for sql in *statements {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
                .bind(version)
                .execute(&pool)
                .await
                .unwrap();
        }
        for sql in [
            "INSERT INTO projects (id, name, public_key, secret_key_hash, allowed_origins, enforce_identity, theme, created_at) \
             VALUES ('prj_old', 'Old', 'pk_old', 'h', '[]', 0, '{}', 0)",
            "INSERT INTO visitors (id, project_id, token_hash, verified, created_at) VALUES ('vis_old', 'prj_old', 't', 0, 0)",
            "INSERT INTO conversations (id, project_id, visitor_id, status, last_seq, presence, created_at, updated_at) \
             VALUES ('conv_old', 'prj_old', 'vis_old', 'resolved', 1, 'offline', 0, 0)",
            "INSERT INTO messages (id, conversation_id, seq, author_kind, body, created_at) \
             VALUES ('msg_old', 'conv_old', 1, 'customer', 'A legacy question about invoices', 0)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = SqlStore::connect(&url).await.unwrap();
    let project = ProjectId::new("prj_old");
    let terms = vec!["legacy".to_owned(), "invoice".to_owned()];
    let query = SearchQuery {
        project: &project,
        terms: &terms,
        customer: None,
        status: None,
        after: None,
        limit: 10,
    };
    let hits = store.search(&query).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].message_matched);
    assert_eq!(hits[0].message.as_ref().map(|m| m.0.as_str()), Some("msg_old"));
    store.close().await;
    let _ = std::fs::remove_file(&path);
}
