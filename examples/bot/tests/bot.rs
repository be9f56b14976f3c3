//! The bot against a real Handoff server on 127.0.0.1: it registers its webhook, answers a
//! customer, and hands over when the customer asks for a human.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use handoff_example_bot::{register, Bot, Config};
use handoff_protocol::api::{Conversation, EventsPage, WidgetSession};
use handoff_protocol::event::{AuthorKind, ConversationStatus, Event};
use handoff_server::{app, Config as ServerConfig};
use serde_json::json;

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn answers_then_hands_over_on_request() {
    let dir = std::env::temp_dir().join(format!("handoff-bot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = ServerConfig {
        database_url: format!("sqlite://{}", dir.join("bot.db").display()),
        // The bot listens on loopback.
        allow_private_webhooks: true,
        ..Default::default()
    };
    let svc = handoff_server::service(&config).await.unwrap();
    let (project, secret_key) = svc.create_project("Bot test", vec!["*".into()]).await.unwrap();
    let server = serve(app(svc, &config)).await;

    // The bot's listener first, so its URL is known when it registers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhook", listener.local_addr().unwrap());
    let webhook_secret = register(&server, &secret_key, &hook).await.unwrap();
    let bot = Bot::new(Config { server: server.clone(), secret_key: secret_key.clone(), webhook_secret });
    tokio::spawn(async move { axum::serve(listener, bot.router()).await.unwrap() });

    // A forged delivery is refused.
    let http = reqwest::Client::new();
    let forged = http.post(&hook).header("x-handoff-signature", "sha256=00").body("{}").send().await.unwrap();
    assert_eq!(forged.status(), 401);

    // A customer starts a chat.
    let session: WidgetSession = http
        .post(format!("{server}/api/widget/session"))
        .json(&json!({"project_key": project.public_key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session.visitor_token;
    let c: Conversation = http
        .post(format!("{server}/api/conversations"))
        .bearer_auth(&token)
        .json(&json!({"body": "hello there"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Long-poll the customer's history until `pred` holds.
    let wait_for = |pred: fn(&[Event]) -> bool| {
        let (http, server, token, id) = (http.clone(), server.clone(), token.clone(), c.id.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let page: EventsPage = http
                    .get(format!("{server}/api/conversations/{id}/events?after=0"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if pred(&page.events) {
                    return page.events;
                }
                assert!(tokio::time::Instant::now() < deadline, "timed out; events: {:?}", page.events);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let bot_messages = |events: &[Event]| {
        events
            .iter()
            .filter_map(|e| match e {
                Event::MessageNew(m) if m.message.author.kind == AuthorKind::Bot => {
                    Some(m.message.body.clone())
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let events = wait_for(|e| {
        e.iter().any(|e| matches!(e, Event::MessageNew(m) if m.message.author.kind == AuthorKind::Bot))
    })
    .await;
    assert!(bot_messages(&events)[0].starts_with("Hi!"), "{events:?}");

    http.post(format!("{server}/api/conversations/{}/messages", c.id))
        .bearer_auth(&token)
        .json(&json!({"body": "I want to talk to a human"}))
        .send()
        .await
        .unwrap();
    let events = wait_for(|e| {
        e.iter().any(|e| matches!(e, Event::StatusChanged(s) if s.status == ConversationStatus::Queued))
    })
    .await;
    let said = bot_messages(&events);
    assert_eq!(said.len(), 2, "one answer per customer message: {said:?}");
    assert!(said[1].contains("person"), "{said:?}");
    let now: Conversation = http
        .get(format!("{server}/api/conversations/{}", c.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now.status, ConversationStatus::Queued);
    let _ = std::fs::remove_dir_all(&dir);
}
