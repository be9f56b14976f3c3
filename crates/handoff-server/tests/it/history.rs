//! `GET /api/widget/conversations`: a visitor's transcripts, an identified user's across devices,
//! never another user's; the session continues a just-resolved conversation.

use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{Db, TestServer};

async fn history(s: &TestServer, vt: &str) -> Vec<Value> {
    let (st, v) = s.call("GET", "/api/widget/conversations", Some(vt), None).await;
    assert_eq!(st, 200, "{v}");
    v["conversations"].as_array().unwrap().clone()
}

fn bodies(h: &Value) -> Vec<String> {
    h["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "message:new")
        .map(|e| e["payload"]["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

async fn resolved_conversation(s: &TestServer, vt: &str, body: &str) -> String {
    let (st, c) = s.call("POST", "/api/conversations", Some(vt), Some(json!({"body": body}))).await;
    assert_eq!(st, 201, "{c}");
    let c = c["id"].as_str().unwrap().to_owned();
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(vt), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200, "{v}");
    c
}

async fn identify(s: &TestServer, vt: &str, user: &str) {
    let hmac = handoff_server::crypto::hmac_hex("id-secret", user.as_bytes());
    let (st, v) =
        s.call("POST", "/api/widget/identify", Some(vt), Some(json!({"user_id": user, "hmac": hmac}))).await;
    assert_eq!(st, 204, "{v}");
}

both_dbs!(history_of_a_returning_visitor, |s: TestServer| async move {
    s.set_status(&s.agent1.0, "online").await;
    let vt = s.visitor().await;
    assert!(history(&s, &vt).await.is_empty());
    let c = resolved_conversation(&s, &vt, "my tent leaks").await;

    let list = history(&s, &vt).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["conversation"]["id"], c.as_str());
    assert_eq!(list[0]["conversation"]["status"], "resolved");
    assert_eq!(bodies(&list[0]), ["my tent leaks"]);
    assert!(list[0]["events"].as_array().unwrap().iter().any(|e| e["event"] == "conversation:resolved"));

    // A reload right after: the session continues the resolved conversation, and writing
    // again reopens it ("write again to reopen" holds).
    let (st, session) = s
        .call(
            "POST",
            "/api/widget/session",
            None,
            Some(json!({"project_key": s.public_key, "visitor_token": vt})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(session["conversation"]["id"], c.as_str());
    assert_eq!(session["conversation"]["status"], "resolved");
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/conversations/{c}/messages"),
            Some(&vt),
            Some(json!({"body": "one more thing", "client_msg_id": "h-1"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (_, conv) = s.call("GET", &format!("/api/conversations/{c}"), Some(&vt), None).await;
    assert_eq!(conv["status"], "bot", "reopened");

    // A second conversation: newest first, both transcripts.
    let (_, v) = s.call("POST", &format!("/api/conversations/{c}/handoff"), Some(&vt), None).await;
    assert_eq!(v["status"], "assigned", "{v}");
    s.call("POST", &format!("/api/conversations/{c}/resolve"), Some(&s.agent1.0), None).await;
    let c2 = resolved_conversation(&s, &vt, "and the zip").await;
    let list = history(&s, &vt).await;
    let ids: Vec<_> = list.iter().map(|h| h["conversation"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [c2.as_str(), c.as_str()]);
    assert_eq!(bodies(&list[1]), ["my tent leaks", "one more thing"]);

    // Customers only; someone else's visitor sees nothing of it.
    let (st, v) = s.call("GET", "/api/widget/conversations", Some(&s.agent1.0), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (st, _) = s.call("GET", "/api/widget/conversations", Some(&s.secret_key), None).await;
    assert_eq!(st, 403);
    let (st, _) = s.call("GET", "/api/widget/conversations", None, None).await;
    assert_eq!(st, 401);
    let stranger = s.visitor().await;
    assert!(history(&s, &stranger).await.is_empty());
});

both_dbs!(history_of_an_identified_user_across_devices, |s: TestServer| async move {
    s.svc.store().set_identity(&s.project, Some("id-secret"), false).await.unwrap();
    s.set_status(&s.agent1.0, "online").await;
    // The laptop: user u1.
    let laptop = s.visitor().await;
    identify(&s, &laptop, "u1").await;
    let c = resolved_conversation(&s, &laptop, "from the laptop").await;
    // The phone: a new browser, the same user.
    let phone = s.visitor().await;
    assert!(history(&s, &phone).await.is_empty(), "not before identify");
    identify(&s, &phone, "u1").await;
    let list = history(&s, &phone).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["conversation"]["id"], c.as_str());
    assert_eq!(bodies(&list[0]), ["from the laptop"]);
    // Another user, and an unverified visitor, see none of it.
    let other = s.visitor().await;
    identify(&s, &other, "u2").await;
    assert!(history(&s, &other).await.is_empty());
    let anonymous = s.visitor().await;
    assert!(history(&s, &anonymous).await.is_empty());
});

both_dbs!(another_user_on_a_verified_visitor_is_refused, |s: TestServer| async move {
    s.svc.store().set_identity(&s.project, Some("id-secret"), false).await.unwrap();
    s.set_status(&s.agent1.0, "online").await;
    // User A on a shared browser: one resolved conversation, one still open.
    let browser = s.visitor().await;
    identify(&s, &browser, "user-a").await;
    let old = resolved_conversation(&s, &browser, "a's old question").await;
    let (st, open) =
        s.call("POST", "/api/conversations", Some(&browser), Some(json!({"body": "a's open chat"}))).await;
    assert_eq!(st, 201, "{open}");

    // User B signs in on the same browser: refused, and A's identity stays bound.
    let hmac_b = handoff_server::crypto::hmac_hex("id-secret", b"user-b");
    let (st, v) = s
        .call(
            "POST",
            "/api/widget/identify",
            Some(&browser),
            Some(json!({"user_id": "user-b", "hmac": hmac_b})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("identity_conflict")), "{v}");
    let list = history(&s, &browser).await;
    assert_eq!(list.len(), 2, "A's visitor is still A's");
    // A on another device still sees both; B's identify did not take A's place.
    let phone = s.visitor().await;
    identify(&s, &phone, "user-a").await;
    assert_eq!(history(&s, &phone).await.len(), 2);

    // The same user identifying again keeps working (idempotent), with a new name too.
    let hmac_a = handoff_server::crypto::hmac_hex("id-secret", b"user-a");
    let (st, v) = s
        .call(
            "POST",
            "/api/widget/identify",
            Some(&browser),
            Some(json!({"user_id": "user-a", "name": "Ann", "hmac": hmac_a})),
        )
        .await;
    assert_eq!(st, 204, "{v}");

    // B on a fresh visitor (a new session on the same browser): works, sees nothing of A's.
    let fresh = s.visitor().await;
    identify(&s, &fresh, "user-b").await;
    assert!(history(&s, &fresh).await.is_empty());
    let (st, session) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
    assert_eq!(st, 200);
    assert!(session["conversation"].is_null(), "{session}");
    let (st, c) = s.call("POST", "/api/conversations", Some(&fresh), Some(json!({"body": "b here"}))).await;
    assert_eq!(st, 201, "{c}");
    assert_ne!(c["id"], open["id"]);
    assert_ne!(c["id"].as_str(), Some(old.as_str()));
    let (st, _) = s
        .call("GET", &format!("/api/conversations/{}", open["id"].as_str().unwrap()), Some(&fresh), None)
        .await;
    assert_eq!(st, 404, "B cannot read A's conversation");

    // An anonymous visitor (never verified) may still become a user: the first identify binds.
    let anonymous = s.visitor().await;
    identify(&s, &anonymous, "user-c").await;
});
