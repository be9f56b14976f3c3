//! Bot webhooks (signed deliveries of customer messages in `bot` state), project settings by the
//! secret key, business hours and schema migrations.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use handoff_protocol::api::{WebhookDelivery, WEBHOOK_SIGNATURE_HEADER};
use handoff_server::hours::BusinessHours;
use handoff_server::store::{SqlStore, Store};
use serde_json::json;
use tokio::sync::mpsc;

use crate::both_dbs;
use crate::harness::{Db, TestServer};

/// A webhook receiver on 127.0.0.1: every request's signature header and body, in order.
pub async fn receiver(status: u16) -> (String, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let sig = headers
                    .get(WEBHOOK_SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send((sig, body));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
}

pub async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Bytes)>) -> (String, Bytes) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a webhook delivery").unwrap()
}

/// A server that delivers webhooks to loopback (where the tests' receivers listen).
async fn start_private(db: Db) -> Option<TestServer> {
    TestServer::start_config(db, |c| c.allow_private_webhooks = true).await
}

/// [`both_dbs!`] on servers started by [`start_private`].
macro_rules! both_dbs_private {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                if let Some(s) = start_private(Db::Sqlite).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(s) = start_private(Db::Postgres).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

both_dbs_private!(webhook_signed_deliveries_in_bot_state_only, |s: TestServer| async move {
    let (url, mut rx) = receiver(200).await;
    // Only the secret key sets it; the URL must be http(s).
    let (st, _) = s.call("PUT", "/api/project/webhook", Some(&s.agent1.0), Some(json!({"url": url}))).await;
    assert_eq!(st, 403);
    let (st, v) =
        s.call("PUT", "/api/project/webhook", Some(&s.secret_key), Some(json!({"url": "ftp://x/y"}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (422, Some("validation_failed")), "{v}");
    let (st, v) = s.call("PUT", "/api/project/webhook", Some(&s.secret_key), Some(json!({"url": url}))).await;
    assert_eq!(st, 200, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    // The widget learns that a bot answers (it then opens the chat even with no agent online).
    let bot_in_config = || async {
        let (_, v) =
            s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
        v["config"]["bot"].as_bool()
    };
    assert_eq!(bot_in_config().await, Some(true));

    // The first message (conversation start) and a later one both reach the bot, signed.
    let (vt, c) = s.conversation().await;
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&vt),
            Some(json!({"body": "and you?"})),
        )
        .await;
    assert_eq!(st, 201);
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let (sig, body) = next(&mut rx).await;
        let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
        assert!(handoff_server::crypto::hmac_verify(&secret, &body, hex), "signature verifies");
        assert!(!handoff_server::crypto::hmac_verify("whsec_wrong", &body, hex));
        let d: WebhookDelivery = serde_json::from_slice(&body).unwrap();
        assert_eq!((d.event.as_str(), d.conversation_id.as_str()), ("message:new", c.as_str()));
        assert_eq!(d.project_id, s.project);
        bodies.push(d.message.body);
    }
    bodies.sort();
    assert_eq!(bodies, ["and you?", "hello"]);

    // The bot answers and hands over with the secret key; its own message is not echoed back.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&s.secret_key),
            Some(json!({"body": "Let me get a human.", "client_msg_id": "bot-1"})),
        )
        .await;
    assert_eq!((st, v["message"]["author"]["kind"].as_str()), (201, Some("bot")), "{v}");
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&s.secret_key), None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("queued")), "{v}");
    // Queued: customer messages go to agents, not to the bot.
    s.call(
        "POST",
        &format!("/api/conversations/{c}/messages"),
        Some(&vt),
        Some(json!({"body": "still there?"})),
    )
    .await;
    // After removal nothing is sent either; a new conversation proves the receiver saw nothing.
    let (st, v) =
        s.call("PUT", "/api/project/webhook", Some(&s.secret_key), Some(json!({"url": null}))).await;
    assert_eq!((st, &v["secret"]), (200, &serde_json::Value::Null), "{v}");
    assert_eq!(bot_in_config().await, Some(false));
    let _ = s.conversation().await;
    // Put it back: the next delivery is the new conversation's first message, nothing earlier.
    let (_, v) = s.call("PUT", "/api/project/webhook", Some(&s.secret_key), Some(json!({"url": url}))).await;
    let secret = v["secret"].as_str().unwrap().to_owned();
    let (_, c2) = s.conversation().await;
    let (sig, body) = next(&mut rx).await;
    let d: WebhookDelivery = serde_json::from_slice(&body).unwrap();
    assert_eq!(d.conversation_id.as_str(), c2, "no delivery for queued or unhooked conversations");
    assert!(handoff_server::crypto::hmac_verify(&secret, &body, sig.strip_prefix("sha256=").unwrap()));
});

// A bot that fails with 5xx gets the same delivery again (same id); a 4xx is final.
#[tokio::test]
async fn webhook_retries_server_errors_with_the_same_id() {
    let s = start_private(Db::Sqlite).await.unwrap();
    let (url, mut rx) = receiver(503).await;
    s.svc.set_webhook_of(&s.project, Some(url)).await.unwrap();
    let _ = s.conversation().await;
    let (_, first) = next(&mut rx).await;
    let (_, again) = next(&mut rx).await;
    assert_eq!(first, again, "a retry repeats the delivery byte for byte");

    let (url, mut rx) = receiver(400).await;
    s.svc.set_webhook_of(&s.project, Some(url)).await.unwrap();
    let _ = s.conversation().await;
    let _ = next(&mut rx).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await.is_err(),
        "a 4xx answer is not retried (the first retry would come after 500 ms)"
    );
}

both_dbs!(business_hours_show_the_offline_form, |s: TestServer| async move {
    s.set_status(&s.agent1.0, "online").await;
    let session = || async {
        let (st, v) =
            s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
        assert_eq!(st, 200, "{v}");
        v["config"].clone()
    };
    let cfg = session().await;
    assert_eq!(
        (cfg["within_business_hours"].as_bool(), cfg["show_offline_form"].as_bool()),
        (Some(true), Some(false))
    );
    // Open every day but for one minute that is never now: closed.
    let now_min = u16::try_from(handoff_server::service::now_ms() / 60_000 % 1440).unwrap();
    let (open, close) = if now_min >= 720 { (0, 1) } else { (1438, 1439) };
    let mut hours = BusinessHours::default();
    for d in &mut hours.days {
        d.push((open, close));
    }
    s.svc.store().set_business_hours(&s.project, Some(&hours)).await.unwrap();
    let cfg = session().await;
    assert_eq!(
        (cfg["within_business_hours"].as_bool(), cfg["show_offline_form"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(cfg["agents_online"], 1);
    // Open all day every day.
    let hours = BusinessHours::parse("mon-sun 00:00-24:00", 0).unwrap();
    s.svc.store().set_business_hours(&s.project, Some(&hours)).await.unwrap();
    let cfg = session().await;
    assert_eq!(cfg["show_offline_form"], false);
    s.svc.store().set_business_hours(&s.project, None).await.unwrap();
    assert_eq!(session().await["within_business_hours"], true);
});

// A database made before versioned migrations (the first schema, no `schema_migrations`) is
// brought up to date, and connecting again changes nothing.
#[tokio::test]
async fn migrations_upgrade_an_unversioned_database() {
    let dir = std::env::temp_dir().join(format!("handoff-migrate-{}", handoff_server::crypto::random_id("")));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("old.db").display());
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(
            "CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL, public_key TEXT NOT NULL UNIQUE,
             secret_key_hash TEXT NOT NULL UNIQUE, allowed_origins TEXT NOT NULL, identity_secret TEXT,
             enforce_identity BIGINT NOT NULL, theme TEXT NOT NULL, webhook_url TEXT, webhook_secret TEXT,
             created_at BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO projects VALUES ('prj_old', 'Old', 'pk_old', 'h', '[\"*\"]', NULL, 0, '{}', NULL, NULL, 1)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    for _ in 0..2 {
        let store = SqlStore::connect(&url).await.unwrap();
        let p = store.project(&handoff_protocol::ProjectId::new("prj_old")).await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), &p.business_hours), ("Old", &None));
        let hours = BusinessHours::parse("mon 09:00-10:00", 60).unwrap();
        store.set_business_hours(&p.id, Some(&hours)).await.unwrap();
        store.set_business_hours(&p.id, None).await.unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&sqlx::AnyPool::connect(&url).await.unwrap())
            .await
            .unwrap();
        assert_eq!(versions.last().copied(), Some(handoff_server::store::SCHEMA_VERSION));
        store.close().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// Server nodes starting together on one fresh PostgreSQL database all come up: the migrations
// run once, behind an advisory lock, instead of colliding.
#[tokio::test]
async fn concurrent_migrations_on_postgres() {
    if std::env::var_os("HANDOFF_SKIP_PG").is_some() {
        return;
    }
    let name = format!("handoff_migrate_{}", handoff_server::crypto::random_id(""));
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect("postgres://postgres@127.0.0.1:5432/test").await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let nodes = futures_util::future::join_all((0..4).map(|_| SqlStore::connect(&url))).await;
    for node in &nodes {
        assert!(node.is_ok(), "{node:?}");
    }
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&sqlx::AnyPool::connect(&url).await.unwrap())
        .await
        .unwrap();
    let expected: Vec<i64> = handoff_server::store::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(versions, expected);
    for node in nodes {
        node.unwrap().close().await;
    }
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
}
