//! A small bot backend for Handoff, on the protocol crate's types.
//!
//! The server sends every customer message of a conversation in `bot` state to the project's
//! webhook, signed with `X-Handoff-Signature: sha256=<HMAC of the body>`. This bot checks the
//! signature, answers through the REST API with the project's secret key, and hands the
//! conversation to a human when the customer asks for one.
//!
//! Retried deliveries are harmless: the answer's `client_msg_id` is derived from the delivery id,
//! so the server stores it once, and a second handoff is refused as an invalid transition.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use handoff_protocol::api::{
    SendMessageRequest, WebhookDelivery, WebhookRequest, WebhookSettings, WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_SIGNATURE_PREFIX,
};
use handoff_protocol::event::AuthorKind;
use handoff_protocol::ids::{ClientMsgId, ConversationId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the bot does with a customer message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer and stay in charge.
    Answer(&'static str),
    /// Answer, then ask for a human.
    Handoff(&'static str),
}

const HUMAN_WORDS: &[&str] = &["human", "agent", "person", "operator", "representative", "someone", "people"];

/// The bot's whole brain: a few keywords. A real bot would call a model here.
pub fn reply_to(text: &str) -> Reply {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has = |options: &[&str]| words.iter().any(|w| options.contains(w));
    if has(HUMAN_WORDS) {
        Reply::Handoff("Sure, I am bringing in a person from our team. Please stay on this page.")
    } else if has(&["hours", "open", "opening", "when"]) {
        Reply::Answer("Our team answers Monday to Friday, 9:00 to 17:00. Type \"human\" to reach them.")
    } else if has(&["price", "prices", "pricing", "cost", "plan", "plans"]) {
        Reply::Answer("Every plan starts with a free trial. Type \"human\" for a quote from our team.")
    } else if has(&["hi", "hello", "hey", "hallo", "bonjour"]) {
        Reply::Answer("Hi! I am the Handoff bot. Ask me anything, or type \"human\" to talk to a person.")
    } else {
        Reply::Answer("I am only a bot and may not know that. Type \"human\" and I will bring in a person.")
    }
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` with `secret`, checked in
/// constant time.
pub fn verify_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix(WEBHOOK_SIGNATURE_PREFIX) else { return false };
    let Ok(signature) = hex::decode(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Where the bot's Handoff server is and how it signs in.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The project's secret key (`sk_...`).
    pub secret_key: String,
    /// The webhook signing secret (`whsec_...`), from [`register`] or `project set`.
    pub webhook_secret: String,
}

/// A failed call to the Handoff server.
#[derive(Debug)]
pub struct CallError(pub String);

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CallError {}

/// Registers `webhook_url` as the project's webhook; returns the signing secret.
///
/// # Errors
/// When the server cannot be reached or refuses (a wrong secret key, a bad URL).
pub async fn register(server: &str, secret_key: &str, webhook_url: &str) -> Result<String, CallError> {
    let resp = reqwest::Client::new()
        .put(format!("{server}/api/project/webhook"))
        .bearer_auth(secret_key)
        .json(&WebhookRequest { url: Some(webhook_url.to_owned()) })
        .send()
        .await
        .map_err(|e| CallError(format!("cannot reach {server}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(CallError(format!("webhook registration refused ({status}): {body}")));
    }
    let settings: WebhookSettings = resp.json().await.map_err(|e| CallError(e.to_string()))?;
    settings.secret.ok_or_else(|| CallError("the server returned no webhook secret".into()))
}

/// The bot: an axum router with `POST /webhook`.
#[derive(Clone, Debug)]
pub struct Bot {
    config: Arc<Config>,
    http: reqwest::Client,
}

impl Bot {
    /// A bot for `config`.
    pub fn new(config: Config) -> Self {
        Bot { config: Arc::new(config), http: reqwest::Client::new() }
    }

    /// `POST /webhook`: 401 for a bad signature, 400 for a body that is not a delivery, else 202
    /// at once (the answer is sent in the background so the server's delivery never waits on it).
    pub fn router(self) -> Router {
        Router::new().route("/webhook", post(webhook)).with_state(self)
    }

    /// Answers one delivery (and hands over when asked).
    ///
    /// # Errors
    /// When the server refuses the answer or cannot be reached.
    pub async fn handle(&self, delivery: &WebhookDelivery) -> Result<(), CallError> {
        if delivery.message.author.kind != AuthorKind::Customer {
            return Ok(());
        }
        let (text, hand_over) = match reply_to(&delivery.message.body) {
            Reply::Answer(text) => (text, false),
            Reply::Handoff(text) => (text, true),
        };
        let id = &delivery.conversation_id;
        let answer = SendMessageRequest {
            body: text.to_owned(),
            client_msg_id: Some(ClientMsgId::new(format!("bot-{}", delivery.message.id))),
        };
        self.call(id, "messages", Some(&answer)).await?;
        if hand_over {
            self.call::<()>(id, "handoff", None).await?;
        }
        Ok(())
    }

    async fn call<T: serde::Serialize>(
        &self,
        id: &ConversationId,
        action: &str,
        body: Option<&T>,
    ) -> Result<(), CallError> {
        let mut req = self
            .http
            .post(format!("{}/api/conversations/{id}/{action}", self.config.server))
            .bearer_auth(&self.config.secret_key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| CallError(format!("{action}: {e}")))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            // Already handed over (a retried delivery): nothing left to do.
            StatusCode::CONFLICT if action == "handoff" => Ok(()),
            s => Err(CallError(format!("{action} refused ({s}): {}", resp.text().await.unwrap_or_default()))),
        }
    }
}

async fn webhook(State(bot): State<Bot>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get(WEBHOOK_SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !verify_signature(&bot.config.webhook_secret, &body, signature) {
        tracing::warn!("webhook with a bad signature refused");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(delivery) = serde_json::from_slice::<WebhookDelivery>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    tokio::spawn(async move {
        if let Err(e) = bot.handle(&delivery).await {
            tracing::error!(conversation = %delivery.conversation_id, error = %e, "cannot answer");
        }
    });
    StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_a_human_hand_over() {
        for text in ["I want a HUMAN", "can I talk to an agent?", "real person please", "Operator!"] {
            assert!(matches!(reply_to(text), Reply::Handoff(_)), "{text}");
        }
        for text in ["hello", "what are your opening hours", "pricing?", "humane society", "this"] {
            assert!(matches!(reply_to(text), Reply::Answer(_)), "{text}");
        }
        assert_ne!(reply_to("hi"), reply_to("this"), "whole words only");
    }

    #[test]
    fn signatures() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_x").unwrap();
        mac.update(b"{}");
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify_signature("whsec_x", b"{}", &good));
        assert!(!verify_signature("whsec_y", b"{}", &good));
        assert!(!verify_signature("whsec_x", b"{ }", &good));
        assert!(!verify_signature("whsec_x", b"{}", good.trim_start_matches("sha256=")));
        assert!(!verify_signature("whsec_x", b"{}", "sha256=zz"));
    }
}
