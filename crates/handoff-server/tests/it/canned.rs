//! Canned responses over REST: CRUD by agents and the secret key, search, the rules of
//! shortcuts and contents, and who may see what.

use serde_json::{json, Value};

use crate::both_dbs;
use crate::harness::{Db, TestServer};

const PATH: &str = "/api/canned_responses";

async fn create(s: &TestServer, token: &str, shortcut: &str, content: &str) -> Value {
    let (st, v) =
        s.call("POST", PATH, Some(token), Some(json!({"shortcut": shortcut, "content": content}))).await;
    assert_eq!(st, 201, "{v}");
    v
}

/// The shortcuts of a search answer, in order.
async fn search(s: &TestServer, token: &str, q: &str) -> Vec<String> {
    let path = if q.is_empty() { PATH.to_owned() } else { format!("{PATH}?q={}", urlencode(q)) };
    let (st, v) = s.call("GET", &path, Some(token), None).await;
    assert_eq!(st, 200, "{v}");
    v.as_array().unwrap().iter().map(|c| c["shortcut"].as_str().unwrap().to_owned()).collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

both_dbs!(canned_responses_crud_and_search, |s: TestServer| async move {
    let ann = s.agent1.0.clone();
    let bo = s.agent2.0.clone();

    let greet = create(&s, &ann, "greet", "Hello! How can I help you today?").await;
    assert_eq!(greet["shortcut"], "greet");
    assert_eq!(greet["content"], "Hello! How can I help you today?");
    assert!(greet["id"].as_str().unwrap().starts_with("cr_"), "{greet}");
    assert_eq!(greet["created_at"], greet["updated_at"]);
    // Another agent and the secret key share the project's replies.
    create(&s, &bo, "Refund-Policy", "Refunds take 5 to 7 days. Say hello to the team!").await;
    create(&s, &s.secret_key, "bye", "Thanks for chatting, goodbye.").await;
    create(&s, &ann, "greet_formal", "Good day. 100% happy to help.").await;

    // Everything, by shortcut without regard to case.
    assert_eq!(search(&s, &bo, "").await, ["bye", "greet", "greet_formal", "Refund-Policy"]);
    assert_eq!(search(&s, &s.secret_key, "  ").await, ["bye", "greet", "greet_formal", "Refund-Policy"]);
    // A shortcut prefix.
    assert_eq!(search(&s, &bo, "gre").await, ["greet", "greet_formal"]);
    assert_eq!(search(&s, &bo, "REF").await, ["Refund-Policy"]);
    // Shortcut matches first, then contents that contain the text (any case).
    assert_eq!(search(&s, &ann, "hello").await, ["greet", "Refund-Policy"]);
    assert_eq!(search(&s, &ann, "g").await, ["greet", "greet_formal", "bye"]);
    // `%` and `_` are literal, not patterns.
    assert_eq!(search(&s, &ann, "100%").await, ["greet_formal"]);
    assert_eq!(search(&s, &ann, "%").await, ["greet_formal"]);
    assert!(search(&s, &ann, "h_ppy").await.is_empty(), "_ matched any character");
    assert_eq!(search(&s, &ann, "greet_").await, ["greet_formal"]);
    assert!(search(&s, &ann, "nothing like this").await.is_empty());
    // Control characters (a NUL, which PostgreSQL refuses in text) find nothing, without error.
    assert!(search(&s, &ann, "gre\u{0}").await.is_empty());
    assert!(search(&s, &ann, "\u{1b}").await.is_empty());

    // Update: only the fields given change.
    let id = greet["id"].as_str().unwrap();
    let (st, v) =
        s.call("PATCH", &format!("{PATH}/{id}"), Some(&bo), Some(json!({"content": "Hi there!"}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["shortcut"].as_str(), v["content"].as_str()), (Some("greet"), Some("Hi there!")));
    assert!(v["updated_at"].as_u64() >= greet["updated_at"].as_u64());
    assert_eq!(v["created_at"], greet["created_at"]);
    let (st, v) = s.call("PATCH", &format!("{PATH}/{id}"), Some(&ann), Some(json!({"shortcut": "hi"}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["shortcut"].as_str(), v["content"].as_str()), (Some("hi"), Some("Hi there!")));
    // An empty patch (or nulls) changes nothing.
    let (st, same) =
        s.call("PATCH", &format!("{PATH}/{id}"), Some(&ann), Some(json!({"shortcut": null}))).await;
    assert_eq!(st, 200, "{same}");
    assert_eq!(same, v);
    assert_eq!(search(&s, &ann, "").await, ["bye", "greet_formal", "hi", "Refund-Policy"]);
    // Renaming to its own shortcut in another case is no conflict.
    let (st, v) = s.call("PATCH", &format!("{PATH}/{id}"), Some(&ann), Some(json!({"shortcut": "HI"}))).await;
    assert_eq!((st, v["shortcut"].as_str()), (200, Some("HI")), "{v}");

    // Delete.
    let (st, v) = s.call("DELETE", &format!("{PATH}/{id}"), Some(&s.secret_key), None).await;
    assert_eq!(st, 204, "{v}");
    assert_eq!(v, Value::Null);
    assert_eq!(search(&s, &ann, "").await, ["bye", "greet_formal", "Refund-Policy"]);
    let (st, v) = s.call("DELETE", &format!("{PATH}/{id}"), Some(&ann), None).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    let (st, v) = s.call("PATCH", &format!("{PATH}/{id}"), Some(&ann), Some(json!({"content": "x"}))).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    // Its shortcut is free again.
    create(&s, &ann, "hi", "Hi again").await;
});

both_dbs!(canned_response_shortcuts_are_unique_per_project, |s: TestServer| async move {
    let ann = s.agent1.0.clone();
    let first = create(&s, &ann, "greet", "Hello!").await;
    for dup in ["greet", "GREET", "Greet"] {
        let (st, v) =
            s.call("POST", PATH, Some(&s.agent2.0), Some(json!({"shortcut": dup, "content": "Hi"}))).await;
        assert_eq!((st, code(&v)), (409, "shortcut_taken"), "{dup}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(dup), "{v}");
    }
    let other = create(&s, &ann, "bye", "Bye!").await;
    let (st, v) = s
        .call(
            "PATCH",
            &format!("{PATH}/{}", other["id"].as_str().unwrap()),
            Some(&ann),
            Some(json!({"shortcut": "gReEt"})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "shortcut_taken"), "{v}");
    // Nothing changed.
    let (_, all) = s.call("GET", PATH, Some(&ann), None).await;
    assert_eq!(all, json!([other, first]));

    // Another project may use the same shortcut, and sees none of these.
    let (p2, sk2) = s.svc.create_project("Other", vec!["*".into()]).await.unwrap();
    s.svc.create_agent(&p2.id, "cy@other.dev", "Cy", "pw-cy-12345").await.unwrap();
    let (cy, _) = s.login("cy@other.dev", "pw-cy-12345").await;
    assert!(search(&s, &cy, "").await.is_empty());
    assert!(search(&s, &sk2, "greet").await.is_empty());
    let mine = create(&s, &cy, "greet", "Hello from the other project").await;
    let id = first["id"].as_str().unwrap();
    // Another project's canned response is not found, for agents and secret keys alike.
    for token in [&cy, &sk2] {
        let (st, v) =
            s.call("PATCH", &format!("{PATH}/{id}"), Some(token), Some(json!({"content": "mine"}))).await;
        assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
        let (st, v) = s.call("DELETE", &format!("{PATH}/{id}"), Some(token), None).await;
        assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    }
    let (st, v) =
        s.call("DELETE", &format!("{PATH}/{}", mine["id"].as_str().unwrap()), Some(&ann), None).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    assert_eq!(search(&s, &ann, "greet").await, ["greet"]);
    assert_eq!(search(&s, &cy, "greet").await, ["greet"]);
    let (_, v) = s.call("GET", &format!("{PATH}?q=greet"), Some(&cy), None).await;
    assert_eq!(v[0]["content"], "Hello from the other project");
});

both_dbs!(canned_responses_authorization_and_input, |s: TestServer| async move {
    let ann = s.agent1.0.clone();
    let c = create(&s, &ann, "greet", "Hello!").await;
    let item = format!("{PATH}/{}", c["id"].as_str().unwrap());

    // Visitors: 403 with the error body, on every route; nothing changes.
    let vt = s.visitor().await;
    for (method, path, body) in [
        ("GET", PATH.to_owned(), None),
        ("POST", PATH.to_owned(), Some(json!({"shortcut": "x", "content": "y"}))),
        ("PATCH", item.clone(), Some(json!({"content": "y"}))),
        ("DELETE", item.clone(), None),
    ] {
        let (st, v) = s.call(method, &path, Some(&vt), body.clone()).await;
        assert_eq!((st, code(&v)), (403, "forbidden"), "{method} {path}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        // No token: 401.
        let (st, v) = s.call(method, &path, None, body).await;
        assert_eq!((st, code(&v)), (401, "unauthorized"), "{method} {path}: {v}");
    }
    assert_eq!(search(&s, &ann, "").await, ["greet"]);

    // Rules of shortcuts and contents: 422.
    let long_shortcut = "x".repeat(33);
    let long_content = "é".repeat(4001);
    for body in [
        json!({"shortcut": "", "content": "Hi"}),
        json!({"shortcut": "/greet", "content": "Hi"}),
        json!({"shortcut": "two words", "content": "Hi"}),
        json!({"shortcut": "café", "content": "Hi"}),
        json!({"shortcut": long_shortcut, "content": "Hi"}),
        json!({"shortcut": "ok", "content": "  \n "}),
        json!({"shortcut": "ok", "content": "bell\u{7}"}),
        json!({"shortcut": "ok", "content": long_content}),
    ] {
        let (st, v) = s.call("POST", PATH, Some(&ann), Some(body.clone())).await;
        assert_eq!((st, code(&v)), (422, "validation_failed"), "{body}: {v}");
    }
    // The longest allowed.
    let at_limit = create(&s, &ann, &"y".repeat(32), &"é".repeat(4000)).await;
    assert_eq!(at_limit["content"].as_str().unwrap().chars().count(), 4000);
    for body in [json!({"shortcut": "no spaces"}), json!({"content": ""}), json!({"content": "x\u{0}"})] {
        let (st, v) = s.call("PATCH", &item, Some(&ann), Some(body.clone())).await;
        assert_eq!((st, code(&v)), (422, "validation_failed"), "{body}: {v}");
    }
    // Malformed requests: 400.
    for body in [
        json!({"shortcut": "ok"}),
        json!({"content": "Hi"}),
        json!(["ok", "Hi"]),
        json!({"shortcut": 5, "content": "Hi"}),
    ] {
        let (st, v) = s.call("POST", PATH, Some(&ann), Some(body.clone())).await;
        assert_eq!((st, code(&v)), (400, "bad_request"), "{body}: {v}");
    }
    let (st, v) = s.call("PATCH", &item, Some(&ann), Some(json!({"content": 7}))).await;
    assert_eq!((st, code(&v)), (400, "bad_request"), "{v}");
    let (st, v) = s.call("DELETE", &format!("{PATH}/bad%20id"), Some(&ann), None).await;
    assert_eq!((st, code(&v)), (400, "bad_request"), "{v}");
    let (st, v) = s.call("GET", &format!("{PATH}?q={}", "a".repeat(101)), Some(&ann), None).await;
    assert_eq!((st, code(&v)), (400, "bad_request"), "{v}");
    let (st, v) = s.call("GET", &format!("{PATH}?q={}", "a".repeat(100)), Some(&ann), None).await;
    assert_eq!((st, v), (200, json!([])));
    // Nothing of that was stored.
    let (_, all) = s.call("GET", PATH, Some(&ann), None).await;
    assert_eq!(all, json!([c, at_limit]));
});

both_dbs!(canned_responses_are_in_the_api_document, |s: TestServer| async move {
    let (st, doc) = s.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(st, 200);
    let list = &doc["paths"]["/api/canned_responses"];
    let item = &doc["paths"]["/api/canned_responses/{id}"];
    assert!(list["get"]["responses"]["200"].is_object(), "{list}");
    assert!(list["get"]["responses"]["403"].is_object(), "{list}");
    assert!(list["post"]["responses"]["201"].is_object(), "{list}");
    assert!(list["post"]["responses"]["409"]["description"].as_str().unwrap().contains("shortcut_taken"));
    assert!(list["post"]["responses"]["422"].is_object(), "{list}");
    assert!(item["patch"]["responses"]["404"].is_object(), "{item}");
    assert!(item["patch"]["responses"]["409"].is_object(), "{item}");
    assert!(item["delete"]["responses"]["204"].is_object(), "{item}");
    let schema = &doc["components"]["schemas"]["CannedResponseRequest"]["properties"]["shortcut"];
    assert_eq!(schema["pattern"], handoff_protocol::api::SHORTCUT_PATTERN, "{schema}");
    assert_eq!(schema["maxLength"], 32, "{schema}");
    let content = &doc["components"]["schemas"]["CannedResponseRequest"]["properties"]["content"];
    assert_eq!(content["maxLength"], 4000, "{content}");
});
