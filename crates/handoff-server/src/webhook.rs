//! Bot webhooks: customer messages of conversations in `bot` state are sent with POST to the project's
//! webhook URL, signed with HMAC-SHA256 of the body (`X-Handoff-Signature: sha256=<hex>`).
//!
//! Delivery is after the commit and never fails the customer's request: it runs in the
//! background, with a timeout per attempt and a few retries with growing pauses for network
//! errors and 5xx answers (a 4xx answer is the bot's final word and is not retried). Every
//! outcome is logged.

use std::time::Duration;

use handoff_protocol::api::{WebhookDelivery, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_SIGNATURE_PREFIX};

use crate::crypto;

/// Pauses before the second, third, ... attempt.
const RETRY_PAUSES: [Duration; 3] =
    [Duration::from_millis(500), Duration::from_secs(2), Duration::from_secs(8)];

/// Longest wait for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `url` can be a webhook: an absolute `http://` or `https://` URL with a host.
pub fn is_valid_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()))
}

/// The value of [`WEBHOOK_SIGNATURE_HEADER`] for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("{WEBHOOK_SIGNATURE_PREFIX}{}", crypto::hmac_hex(secret, body))
}

/// Sends webhook deliveries.
#[derive(Clone, Debug)]
pub struct Webhooks {
    client: reqwest::Client,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self::new()
    }
}

impl Webhooks {
    /// A sender with its own connection pool.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("handoff-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Webhooks { client }
    }

    /// Sends `delivery` to `url` in the background.
    pub fn send(&self, url: String, secret: String, delivery: &WebhookDelivery) {
        let body = match serde_json::to_vec(delivery) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a webhook delivery");
                return;
            }
        };
        let client = self.client.clone();
        let id = delivery.id.clone();
        tokio::spawn(async move {
            let signature = signature(&secret, &body);
            for attempt in 0..=RETRY_PAUSES.len() {
                if attempt > 0 {
                    tokio::time::sleep(RETRY_PAUSES[attempt - 1]).await;
                }
                let result = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(WEBHOOK_SIGNATURE_HEADER, &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status().is_success() => {
                        tracing::debug!(delivery = %id, attempt, "webhook delivered");
                        return;
                    }
                    Ok(r) if r.status().is_client_error() => {
                        tracing::warn!(delivery = %id, status = %r.status(), "webhook refused; not retried");
                        return;
                    }
                    Ok(r) => tracing::warn!(delivery = %id, attempt, status = %r.status(), "webhook failed"),
                    Err(e) => tracing::warn!(delivery = %id, attempt, error = %e, "webhook failed"),
                }
            }
            tracing::error!(delivery = %id, "webhook given up after retries");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in ["http://127.0.0.1:9000/hook", "https://bot.example.com/handoff?x=1"] {
            assert!(is_valid_url(ok), "{ok}");
        }
        for bad in ["", "bot.example.com/hook", "ftp://example.com/", "javascript:alert(1)", "http://"] {
            assert!(!is_valid_url(bad), "{bad}");
        }
    }

    #[test]
    fn signature_is_prefixed_hmac_of_the_body() {
        let sig = signature("whsec_test", b"{\"a\":1}");
        let hex = sig.strip_prefix("sha256=").unwrap();
        assert!(crypto::hmac_verify("whsec_test", b"{\"a\":1}", hex));
        assert!(!crypto::hmac_verify("whsec_other", b"{\"a\":1}", hex));
    }
}
