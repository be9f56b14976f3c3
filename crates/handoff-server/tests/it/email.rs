//! Email: transcripts on the visitor's request and offline messages to the agents, against an
//! SMTP sink started by the test; the refusals (no SMTP configured, bad or unknown address,
//! other people's conversations, floods).

use handoff_protocol::AgentId;
use handoff_server::limits::LimitsConfig;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{Db, Mail, SmtpSink, TestServer};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// A server mailing through a fresh sink, without rate limits but the database's own.
async fn with_sink(db: Db) -> Option<(TestServer, SmtpSink)> {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let s = TestServer::start_config(db, |c| {
        c.smtp_url = Some(url);
        c.smtp_from = Some("Support <support@test.dev>".into());
        c.limits = LimitsConfig::unlimited();
    })
    .await?;
    Some((s, sink))
}

macro_rules! with_sink {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                if let Some((s, sink)) = with_sink(Db::Sqlite).await {
                    ($body)(s, sink).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some((s, sink)) = with_sink(Db::Postgres).await {
                    ($body)(s, sink).await;
                }
            }
        }
    };
}

/// The headers of a mail (before the first blank line) and its body.
fn split(m: &Mail) -> (&str, &str) {
    m.data.split_once("\r\n\r\n").unwrap_or((&m.data, ""))
}

async fn transcript(s: &TestServer, token: &str, c: &str, body: Value) -> (u16, Value) {
    s.call("POST", &format!("/api/conversations/{c}/transcript"), Some(token), Some(body)).await
}

both_dbs!(email_is_off_without_smtp, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let (st, v) = transcript(&s, &vt, &c, json!({"email": "dana@example.com"})).await;
    assert_eq!((st, code(&v)), (403, "email_disabled"), "{v}");
    let (_, session) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
    assert_eq!(session["config"]["email"], false);
});

with_sink!(transcript_by_email, |s: TestServer, sink: SmtpSink| async move {
    let (_, session) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
    assert_eq!(session["config"]["email"], true);

    let (vt, c) = s.conversation().await;
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!(st, 200);
    s.call("POST", &format!("/api/conversations/{c}/claim"), Some(&s.agent1.0), None).await;
    for (token, body) in [
        (&s.agent1.0, "Hi, I am Ann. How can I help?"),
        (&vt, "My parcel is late.\r\n.\r\nRCPT TO:<evil@example.com>\r\nBcc: evil@example.com"),
    ] {
        let (st, v) = s
            .call(
                "POST",
                &format!("/api/conversations/{c}/messages"),
                Some(token),
                Some(json!({"body": body})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }

    // Refusals store and send nothing.
    for (body, want) in [
        (json!({}), (422, "validation_failed")), // no address known yet
        (json!({"email": "not-an-address"}), (422, "validation_failed")),
        (json!({"email": "dana@example.com\r\nBcc: evil@example.com"}), (422, "validation_failed")),
        (json!({"email": "dana@example.com>, evil@example.com"}), (422, "validation_failed")),
    ] {
        let (st, v) = transcript(&s, &vt, &c, body.clone()).await;
        assert_eq!((st, code(&v)), want, "{body}: {v}");
    }
    let (st, v) = transcript(&s, &s.agent1.0, &c, json!({"email": "ann@example.com"})).await;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    let other = s.visitor().await;
    let (st, v) = transcript(&s, &other, &c, json!({"email": "x@example.com"})).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    let (st, _) = transcript(&s, "vt_forged", &c, json!({"email": "x@example.com"})).await;
    assert_eq!(st, 401);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(sink.mails().is_empty(), "{:?}", sink.mails());

    // To the address typed.
    let (st, v) = transcript(&s, &vt, &c, json!({"email": " dana@example.com "})).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["email"], "dana@example.com");
    let mails = sink.wait_for(1).await;
    let m = &mails[0];
    assert_eq!(m.from, "support@test.dev");
    assert_eq!(m.to, ["dana@example.com"]);
    let (headers, body) = split(m);
    assert!(headers.contains("Subject: Your conversation with Chat with us"), "{headers}");
    assert!(headers.contains("To: dana@example.com"), "{headers}");
    assert!(!headers.contains("evil"), "message text never reaches a header: {headers}");
    assert!(body.contains("] Ann:\r\n    Hi, I am Ann. How can I help?"), "{body}");
    assert!(body.contains("] You:\r\n    hello"), "{body}");
    assert!(
        body.contains("] You:\r\n    My parcel is late.\r\n    .\r\n    RCPT TO:<evil@example.com>"),
        "{body}"
    );
    assert!(body.contains(" UTC] "), "each message with its time in UTC: {body}");
    assert!(body.contains("--- Ann joined the conversation"), "{body}");

    // The offline form's address is the default one.
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/projects/{}/offline-messages", s.project),
            Some(&vt),
            Some(json!({"name": "Dana", "email": "dana.form@example.com", "message": "Call me"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, v) = transcript(&s, &vt, &c, json!({})).await;
    assert_eq!((st, v["email"].as_str()), (202, Some("dana.form@example.com")), "{v}");
    let mails = sink.wait_for(4).await; // the transcript, and the offline message to Ann and Bo
    assert!(mails.iter().any(|m| m.to == ["dana.form@example.com"]), "{mails:?}");

    // Three per conversation an hour; then 429 with Retry-After, and nothing sent.
    let (st, _) = transcript(&s, &vt, &c, json!({"email": "dana@example.com"})).await;
    assert_eq!(st, 202);
    let resp = s
        .http
        .post(format!("{}/api/conversations/{c}/transcript", s.base))
        .bearer_auth(&vt)
        .json(&json!({"email": "dana@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "3600");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(code(&v), "rate_limited");

    // And three per visitor: a new conversation of the same visitor is refused too.
    let (st, _) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200);
    let (st, c2) = s.call("POST", "/api/conversations", Some(&vt), Some(json!({"body": "new"}))).await;
    assert_eq!(st, 201, "{c2}");
    let c2 = c2["id"].as_str().unwrap().to_owned();
    assert_ne!(c2, c);
    let (st, v) = transcript(&s, &vt, &c2, json!({"email": "dana@example.com"})).await;
    assert_eq!((st, code(&v)), (429, "rate_limited"), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mails = sink.mails();
    let transcripts = mails.iter().filter(|m| m.data.contains("Subject: Your conversation with")).count();
    assert_eq!(transcripts, 3, "{mails:?}");
    // Besides them, the offline message went to both agents (nobody was online).
    assert_eq!(mails.len(), 5, "{mails:?}");
    assert!(mails.iter().all(|m| !m.to.iter().any(|t| t.contains("evil"))));
});

with_sink!(offline_messages_mailed_to_agents, |s: TestServer, sink: SmtpSink| async move {
    // Bo is disabled: only Ann gets it. Nobody is online.
    s.svc.set_agent_disabled(&AgentId::new(s.agent2.1.clone()), true).await.unwrap();
    let vt = s.visitor().await;
    let path = format!("/api/projects/{}/offline-messages", s.project);
    let body = json!({"name": "Dana", "email": "dana@example.com", "message": "Please call me back.\nBcc: evil@example.com"});
    let (st, v) = s.call("POST", &path, Some(&vt), Some(body)).await;
    assert_eq!(st, 201, "{v}");
    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "support@test.dev");
    assert_eq!(m.to, ["ann@test.dev"]);
    let (headers, body) = split(m);
    assert!(headers.contains("Subject: [Test] Offline message from Dana"), "{headers}");
    assert!(headers.contains("Reply-To: dana@example.com"), "{headers}");
    assert!(!headers.contains("evil"), "{headers}");
    assert!(body.contains("Dana <dana@example.com> left a message at "), "{body}");
    assert!(body.contains("\r\n    Please call me back.\r\n    Bcc: evil@example.com"), "{body}");

    // With an agent online, the console shows it live: no mail.
    let ann = s.login("ann@test.dev", "pw-ann-123").await;
    s.set_status(&ann.0, "online").await;
    let (st, _) = s
        .call(
            "POST",
            &path,
            Some(&vt),
            Some(json!({"name": "Dana", "email": "dana@example.com", "message": "Again"})),
        )
        .await;
    assert_eq!(st, 201);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sink.mails().len(), 1);
});

// An SMTP server that is down costs the visitor nothing: the answers come at once, the
// failure is logged.
async fn smtp_down_never_blocks(db: Db) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Some(s) = TestServer::start_config(db, |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{closed}"));
        c.smtp_from = Some("support@test.dev".into());
    })
    .await
    else {
        return;
    };
    let (vt, c) = s.conversation().await;
    let started = std::time::Instant::now();
    let (st, v) = transcript(&s, &vt, &c, json!({"email": "dana@example.com"})).await;
    assert_eq!(st, 202, "{v}");
    let path = format!("/api/projects/{}/offline-messages", s.project);
    let (st, _) = s
        .call(
            "POST",
            &path,
            Some(&vt),
            Some(json!({"name": "Dana", "email": "dana@example.com", "message": "Hi"})),
        )
        .await;
    assert_eq!(st, 201);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn smtp_down_never_blocks_sqlite() {
    smtp_down_never_blocks(Db::Sqlite).await;
}

#[tokio::test]
async fn smtp_down_never_blocks_postgres() {
    smtp_down_never_blocks(Db::Postgres).await;
}
