//! The outbox: messages typed while disconnected (or while a send is in flight) wait here and
//! are sent in order, one at a time, each with a `client_msg_id` that stays the same across
//! retries, so a retry never creates a duplicate (the server answers a replayed id with the
//! message it stored).
//!
//! A send that fails for a retryable reason (network, 5xx, 429) is retried after
//! [`RETRY_BACKOFF_MS`]; a permanent failure (4xx: validation, forbidden) drops the item and
//! reports it. While offline nothing is sent; on reconnect the queue resumes.
//!
//! ```
//! use handoff_protocol::timing::outbox::{Outbox, OutboxAction};
//!
//! let mut o = Outbox::new("tab7");
//! o.set_online(0, true);
//! let id = o.push(0, "hello".into());
//! assert_eq!(o.poll_action(), Some(OutboxAction::Send { client_msg_id: id.clone(), body: "hello".into() }));
//! o.handle_sent(5, &id);
//! assert_eq!(o.pending().count(), 0);
//! ```

use std::collections::VecDeque;

use super::Clock;
use crate::ids::ClientMsgId;

/// Delays before the 1st, 2nd, 3rd and later retries of a failed send.
pub const RETRY_BACKOFF_MS: [u64; 4] = [1_000, 2_000, 5_000, 10_000];

/// A message waiting to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its idempotency key.
    pub client_msg_id: ClientMsgId,
    /// The text.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// What the outbox asks its owner to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxAction {
    /// `POST .../messages` with this body and id; report with `handle_sent` or `handle_failed`.
    Send {
        /// Idempotency key.
        client_msg_id: ClientMsgId,
        /// The text.
        body: String,
    },
    /// The server refused this message for good; tell the user.
    Failed {
        /// Which message.
        client_msg_id: ClientMsgId,
    },
}

/// Ordered, retried, idempotent sends.
#[derive(Clone, Debug)]
pub struct Outbox {
    clock: Clock,
    prefix: String,
    counter: u64,
    items: VecDeque<OutboxItem>,
    online: bool,
    in_flight: bool,
    retry_at: Option<u64>,
    actions: VecDeque<OutboxAction>,
}

impl Outbox {
    /// An empty, offline outbox. `prefix` makes ids unique across tabs and reloads (use a
    /// random string); ids are `<prefix>-<n>`.
    pub fn new(prefix: &str) -> Self {
        Outbox {
            clock: Clock::default(),
            prefix: prefix.to_owned(),
            counter: 0,
            items: VecDeque::new(),
            online: false,
            in_flight: false,
            retry_at: None,
            actions: VecDeque::new(),
        }
    }

    /// Queues a message; returns its `client_msg_id` (for an optimistic "sending…" bubble).
    pub fn push(&mut self, now_ms: u64, body: String) -> ClientMsgId {
        self.clock.advance(now_ms);
        self.counter += 1;
        let mut id = self.prefix.clone();
        id.push('-');
        id.push_str(&self.counter.to_string());
        let client_msg_id = ClientMsgId::new(id);
        self.items.push_back(OutboxItem { client_msg_id: client_msg_id.clone(), body, attempts: 0 });
        self.pump();
        client_msg_id
    }

    /// The transport can (or cannot) reach the server now.
    pub fn set_online(&mut self, now_ms: u64, online: bool) {
        let now = self.clock.advance(now_ms);
        self.online = online;
        if online && self.retry_at.is_some() {
            // A reconnect is a better signal than the backoff timer.
            self.retry_at = Some(now);
        }
        self.pump();
    }

    /// The server stored the message (or had it already).
    pub fn handle_sent(&mut self, now_ms: u64, client_msg_id: &ClientMsgId) {
        self.clock.advance(now_ms);
        if self.items.front().is_some_and(|i| &i.client_msg_id == client_msg_id) {
            self.items.pop_front();
            self.in_flight = false;
            self.pump();
        }
    }

    /// The send failed; `retryable` for network errors, 5xx and 429.
    pub fn handle_failed(&mut self, now_ms: u64, client_msg_id: &ClientMsgId, retryable: bool) {
        let now = self.clock.advance(now_ms);
        let Some(front) = self.items.front_mut().filter(|i| &i.client_msg_id == client_msg_id) else {
            return;
        };
        self.in_flight = false;
        if retryable {
            let i = usize::try_from(front.attempts).unwrap_or(usize::MAX).min(RETRY_BACKOFF_MS.len() - 1);
            front.attempts += 1;
            self.retry_at = Some(now + RETRY_BACKOFF_MS[i]);
        } else {
            self.items.pop_front();
            self.actions.push_back(OutboxAction::Failed { client_msg_id: client_msg_id.clone() });
            self.pump();
        }
    }

    /// The deadline of [`Self::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.pump();
        }
    }

    fn pump(&mut self) {
        if !self.online || self.in_flight || self.retry_at.is_some_and(|t| self.clock.0 < t) {
            return;
        }
        self.retry_at = None;
        if let Some(item) = self.items.front() {
            self.in_flight = true;
            self.actions.push_back(OutboxAction::Send {
                client_msg_id: item.client_msg_id.clone(),
                body: item.body.clone(),
            });
        }
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<OutboxAction> {
        self.actions.pop_front()
    }

    /// When the next retry is due (only while online).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.retry_at.filter(|_| self.online && !self.in_flight)
    }

    /// Messages not yet stored by the server, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &OutboxItem> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &mut Outbox) -> Vec<OutboxAction> {
        std::iter::from_fn(|| o.poll_action()).collect()
    }

    fn send(id: &str, body: &str) -> OutboxAction {
        OutboxAction::Send { client_msg_id: ClientMsgId::new(id), body: body.into() }
    }

    #[test]
    fn offline_messages_wait_and_go_in_order_one_at_a_time() {
        let mut o = Outbox::new("t");
        let a = o.push(0, "a".into());
        let b = o.push(1, "b".into());
        assert_eq!(drain(&mut o), []);
        assert_eq!(o.pending().count(), 2);
        o.set_online(2, true);
        assert_eq!(drain(&mut o), [send("t-1", "a")]);
        o.handle_sent(3, &b); // not the one in flight: ignored
        assert_eq!(drain(&mut o), []);
        o.handle_sent(4, &a);
        assert_eq!(drain(&mut o), [send("t-2", "b")]);
        o.handle_sent(5, &b);
        assert_eq!(o.pending().count(), 0);
    }

    #[test]
    fn retries_keep_the_same_id_with_backoff() {
        assert_eq!(RETRY_BACKOFF_MS, [1_000, 2_000, 5_000, 10_000]);
        let mut o = Outbox::new("t");
        o.set_online(0, true);
        let a = o.push(0, "a".into());
        drain(&mut o);
        let mut now = 0;
        for delay in [1_000, 2_000, 5_000, 10_000, 10_000] {
            o.handle_failed(now, &a, true);
            assert_eq!(o.poll_timeout(), Some(now + delay));
            o.handle_timeout(now + delay - 1);
            assert_eq!(drain(&mut o), []);
            now += delay;
            o.handle_timeout(now);
            assert_eq!(drain(&mut o), [send("t-1", "a")]);
        }
        assert_eq!(o.pending().next().unwrap().attempts, 5);
    }

    #[test]
    fn reconnect_retries_at_once() {
        let mut o = Outbox::new("t");
        o.set_online(0, true);
        let a = o.push(0, "a".into());
        drain(&mut o);
        o.handle_failed(10, &a, true);
        o.set_online(11, false);
        assert_eq!(o.poll_timeout(), None);
        o.set_online(500, true);
        assert_eq!(drain(&mut o), [send("t-1", "a")]);
    }

    #[test]
    fn permanent_failures_are_dropped_and_reported() {
        let mut o = Outbox::new("t");
        o.set_online(0, true);
        let a = o.push(0, "a".into());
        o.push(0, "b".into());
        drain(&mut o);
        o.handle_failed(1, &a, false);
        assert_eq!(drain(&mut o), [OutboxAction::Failed { client_msg_id: a }, send("t-2", "b")]);
    }
}
