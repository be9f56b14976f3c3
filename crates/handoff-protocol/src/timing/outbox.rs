//! The outbox: messages typed while disconnected (or while a send is in flight) wait here and
//! are sent in order, one at a time, each with a `client_msg_id` that stays the same across
//! retries and reloads, so a retry never creates a duplicate (the server answers a replayed id
//! with the message it stored, `200` and `duplicate: true`).
//!
//! Rules:
//! - **Transient or final** ([`is_transient`]): a network error, a 5xx, `408`, `425` and `429`
//!   are transient: the same message is retried after [`RETRY_BACKOFF_MS`] (at once on
//!   reconnect). Any other 4xx is final: the message is marked failed, kept (for the user to
//!   [`Outbox::retry`] or [`Outbox::discard`]) and reported once; it never blocks the messages
//!   queued after it.
//! - **Order**: pending messages go oldest first, one at a time. A retried failed message goes
//!   to the back of the queue (it is sent now, after what was typed meanwhile).
//! - **Bounded**: at most [`MAX_ITEMS`] messages and [`MAX_BYTES`] bytes of text wait (pending
//!   and failed together); a push beyond either is refused ([`OutboxFull`]), so what is kept in
//!   storage is what is in memory.
//! - **Persisted**: the owner stores [`Outbox::items`] (per conversation) after every change and
//!   hands them back to [`Outbox::restore`] after a reload; [`Outbox::merge_stored`] keeps the
//!   items another tab stored.
//!
//! ```
//! use handoff_protocol::timing::outbox::{Outbox, OutboxAction};
//!
//! let mut o = Outbox::new("tab7");
//! o.set_online(0, true);
//! let id = o.push(0, "hello".into()).unwrap();
//! assert_eq!(o.poll_action(), Some(OutboxAction::Send { client_msg_id: id.clone(), body: "hello".into() }));
//! o.handle_sent(5, &id);
//! assert_eq!(o.pending().count(), 0);
//! ```

use serde::{Deserialize, Serialize};

use super::{Clock, Queue};
use crate::ids::ClientMsgId;

/// Delays before the 1st, 2nd, 3rd and later retries of a failed send.
pub const RETRY_BACKOFF_MS: [u64; 4] = [1_000, 2_000, 5_000, 10_000];

/// At most this many messages wait in an outbox (pending and failed).
pub const MAX_ITEMS: usize = 50;

/// At most this many bytes of message text wait in an outbox (pending and failed).
pub const MAX_BYTES: usize = 64 * 1024;

/// Whether a failed send is worth retrying: `status` is the HTTP status, `None` for a network
/// error (no answer). Transient: no answer, 5xx, `408`, `425`, `429`. Final: every other status
/// (a 4xx: validation, forbidden, not found; a 2xx or 3xx that carried no message).
pub fn is_transient(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => s >= 500 || matches!(s, 408 | 425 | 429),
    }
}

/// A message waiting to be sent, or refused for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Its idempotency key.
    pub client_msg_id: ClientMsgId,
    /// The text.
    pub body: String,
    /// Failed attempts so far (not persisted).
    #[serde(skip)]
    pub attempts: u32,
    /// The server refused it for good: it waits for `retry` or `discard`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

/// A push the outbox's bounds refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many unsent messages: wait until they are sent")]
pub struct OutboxFull;

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
    /// The server refused this message for good; tell the user (it stays, marked failed).
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
    items: Vec<OutboxItem>,
    /// Every id pushed or restored here (for [`Outbox::merge_stored`]): one page's sends, a
    /// `Vec` (a `HashSet` would compile a hasher and a hash table into the browser builds).
    known: Vec<ClientMsgId>,
    online: bool,
    /// The id of the send in flight.
    in_flight: Option<ClientMsgId>,
    retry_at: Option<u64>,
    actions: Queue<OutboxAction>,
}

impl Outbox {
    /// An empty, offline outbox. `prefix` makes ids unique across tabs and reloads (use a
    /// random string); ids are `<prefix>-<n>`.
    pub fn new(prefix: &str) -> Self {
        Outbox {
            clock: Clock::default(),
            prefix: prefix.to_owned(),
            counter: 0,
            items: Vec::new(),
            known: Vec::new(),
            online: false,
            in_flight: None,
            retry_at: None,
            actions: Queue::new(),
        }
    }

    fn bytes(&self) -> usize {
        self.items.iter().map(|i| i.body.len()).sum()
    }

    /// Queues a message; returns its `client_msg_id` (for an optimistic "sending…" bubble).
    ///
    /// # Errors
    /// [`OutboxFull`] when [`MAX_ITEMS`] messages or [`MAX_BYTES`] bytes already wait.
    pub fn push(&mut self, now_ms: u64, body: String) -> Result<ClientMsgId, OutboxFull> {
        self.clock.advance(now_ms);
        if self.items.len() >= MAX_ITEMS || self.bytes() + body.len() > MAX_BYTES {
            return Err(OutboxFull);
        }
        self.counter += 1;
        let mut id = self.prefix.clone();
        id.push('-');
        id.push_str(&crate::ids::decimal(self.counter));
        let client_msg_id = ClientMsgId::new(id);
        self.known.push(client_msg_id.clone());
        self.items.push(OutboxItem {
            client_msg_id: client_msg_id.clone(),
            body,
            attempts: 0,
            failed: false,
        });
        self.pump();
        Ok(client_msg_id)
    }

    /// Puts back what was persisted before a reload (oldest first), ahead of anything pushed
    /// since; ids already here are skipped, and the bounds apply (the oldest are kept). Returns
    /// the items taken, for the owner to show.
    pub fn restore(&mut self, now_ms: u64, items: Vec<OutboxItem>) -> Vec<OutboxItem> {
        self.clock.advance(now_ms);
        let mut taken = Vec::new();
        let mut bytes = self.bytes();
        let mut count = self.items.len();
        for mut item in items {
            if self.known.contains(&item.client_msg_id)
                || count >= MAX_ITEMS
                || bytes + item.body.len() > MAX_BYTES
            {
                continue;
            }
            item.attempts = 0;
            bytes += item.body.len();
            count += 1;
            self.known.push(item.client_msg_id.clone());
            taken.push(item);
        }
        // Restored items are older than anything pushed in this page: they go first, but never
        // ahead of a send in flight.
        let at = usize::from(self.in_flight.is_some());
        for (k, item) in taken.iter().enumerate() {
            self.items.insert(at + k, item.clone());
        }
        self.pump();
        taken
    }

    /// What to persist after a change: the items stored by another tab (ids this outbox never
    /// had), then this outbox's own items. `stored` is what storage holds now.
    pub fn merge_stored(&self, stored: Vec<OutboxItem>) -> Vec<OutboxItem> {
        let mut out: Vec<OutboxItem> =
            stored.into_iter().filter(|i| !self.known.contains(&i.client_msg_id)).collect();
        out.extend(self.items.iter().cloned());
        out
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
        if self.in_flight.as_ref() == Some(client_msg_id) {
            self.in_flight = None;
            self.items.retain(|i| &i.client_msg_id != client_msg_id);
            self.pump();
        }
    }

    /// The send failed; `transient` as [`is_transient`] says of the answer.
    pub fn handle_failed(&mut self, now_ms: u64, client_msg_id: &ClientMsgId, transient: bool) {
        let now = self.clock.advance(now_ms);
        if self.in_flight.as_ref() != Some(client_msg_id) {
            return;
        }
        self.in_flight = None;
        let Some(item) = self.items.iter_mut().find(|i| &i.client_msg_id == client_msg_id) else {
            return;
        };
        if transient {
            let i = usize::try_from(item.attempts).unwrap_or(usize::MAX).min(RETRY_BACKOFF_MS.len() - 1);
            item.attempts += 1;
            self.retry_at = Some(now + RETRY_BACKOFF_MS[i]);
        } else {
            item.failed = true;
            item.attempts = 0;
            self.actions.push_back(OutboxAction::Failed { client_msg_id: client_msg_id.clone() });
            self.pump();
        }
    }

    /// Tries a failed message again: it goes to the back of the queue. `false` when no failed
    /// message has this id.
    pub fn retry(&mut self, now_ms: u64, client_msg_id: &ClientMsgId) -> bool {
        self.clock.advance(now_ms);
        let Some(k) = self.items.iter().position(|i| i.failed && &i.client_msg_id == client_msg_id) else {
            return false;
        };
        let mut item = self.items.remove(k);
        item.failed = false;
        self.items.push(item);
        self.pump();
        true
    }

    /// Drops a message that is not in flight (a failed one, or one still waiting). `false` when
    /// there is none with this id, or it is on its way.
    pub fn discard(&mut self, now_ms: u64, client_msg_id: &ClientMsgId) -> bool {
        self.clock.advance(now_ms);
        if self.in_flight.as_ref() == Some(client_msg_id) {
            return false;
        }
        let before = self.items.len();
        self.items.retain(|i| &i.client_msg_id != client_msg_id);
        before != self.items.len()
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
        if !self.online || self.in_flight.is_some() || self.retry_at.is_some_and(|t| self.clock.0 < t) {
            return;
        }
        self.retry_at = None;
        if let Some(item) = self.items.iter().find(|i| !i.failed) {
            self.in_flight = Some(item.client_msg_id.clone());
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
        self.retry_at.filter(|_| self.online && self.in_flight.is_none())
    }

    /// Messages not yet stored by the server and not failed, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &OutboxItem> {
        self.items.iter().filter(|i| !i.failed)
    }

    /// Messages the server refused for good, oldest first.
    pub fn failed(&self) -> impl Iterator<Item = &OutboxItem> {
        self.items.iter().filter(|i| i.failed)
    }

    /// Every message kept (pending and failed), in queue order: what to persist.
    pub fn items(&self) -> impl Iterator<Item = &OutboxItem> {
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

    fn item(id: &str, body: &str, failed: bool) -> OutboxItem {
        OutboxItem { client_msg_id: ClientMsgId::new(id), body: body.into(), attempts: 0, failed }
    }

    #[test]
    fn offline_messages_wait_and_go_in_order_one_at_a_time() {
        let mut o = Outbox::new("t");
        let a = o.push(0, "a".into()).unwrap();
        let b = o.push(1, "b".into()).unwrap();
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
        let a = o.push(0, "a".into()).unwrap();
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
        let a = o.push(0, "a".into()).unwrap();
        drain(&mut o);
        o.handle_failed(10, &a, true);
        o.set_online(11, false);
        assert_eq!(o.poll_timeout(), None);
        o.set_online(500, true);
        assert_eq!(drain(&mut o), [send("t-1", "a")]);
    }

    #[test]
    fn transient_or_final_by_status() {
        for transient in [None, Some(500), Some(502), Some(503), Some(408), Some(425), Some(429)] {
            assert!(is_transient(transient), "{transient:?}");
        }
        for last in [Some(400), Some(401), Some(403), Some(404), Some(409), Some(413), Some(422), Some(200)] {
            assert!(!is_transient(last), "{last:?}");
        }
    }

    #[test]
    fn a_refused_message_is_kept_as_failed_and_does_not_block_the_next() {
        let mut o = Outbox::new("t");
        o.set_online(0, true);
        let a = o.push(0, "a".into()).unwrap();
        let b = o.push(0, "b".into()).unwrap();
        drain(&mut o);
        o.handle_failed(1, &a, is_transient(Some(422)));
        assert_eq!(drain(&mut o), [OutboxAction::Failed { client_msg_id: a.clone() }, send("t-2", "b")]);
        assert_eq!(o.failed().map(|i| i.body.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(o.pending().map(|i| i.body.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(o.poll_timeout(), None, "a failed message is not retried on its own");
        o.handle_sent(2, &b);
        assert_eq!(drain(&mut o), []);
        // A new message goes out although the failed one is still there.
        let c = o.push(3, "c".into()).unwrap();
        assert_eq!(drain(&mut o), [send("t-3", "c")]);
        o.handle_sent(4, &c);
        assert_eq!(o.items().count(), 1);
    }

    #[test]
    fn retry_sends_a_failed_message_again_after_the_queue_and_discard_drops_it() {
        let mut o = Outbox::new("t");
        o.set_online(0, true);
        let a = o.push(0, "a".into()).unwrap();
        drain(&mut o);
        o.handle_failed(1, &a, false);
        let b = o.push(2, "b".into()).unwrap();
        assert_eq!(drain(&mut o), [OutboxAction::Failed { client_msg_id: a.clone() }, send("t-2", "b")]);
        assert!(!o.retry(3, &b), "only failed messages are retried");
        assert!(o.retry(3, &a));
        assert_eq!(drain(&mut o), [], "b is in flight");
        assert!(!o.discard(3, &b), "in flight");
        o.handle_sent(4, &b);
        assert_eq!(drain(&mut o), [send("t-1", "a")], "the retried message went to the back");
        o.handle_failed(5, &a, false);
        assert_eq!(drain(&mut o), [OutboxAction::Failed { client_msg_id: a.clone() }]);
        assert!(o.discard(6, &a));
        assert!(!o.discard(6, &a));
        assert_eq!(o.items().count(), 0);
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut o = Outbox::new("t");
        for _ in 0..MAX_ITEMS {
            o.push(0, "x".into()).unwrap();
        }
        assert_eq!(o.push(0, "x".into()), Err(OutboxFull));
        let mut o = Outbox::new("t");
        o.push(0, "x".repeat(MAX_BYTES - 10)).unwrap();
        assert_eq!(o.push(0, "y".repeat(11)), Err(OutboxFull));
        o.push(0, "y".repeat(10)).unwrap();
    }

    #[test]
    fn restored_items_go_first_with_their_ids_once() {
        let mut o = Outbox::new("new");
        let c = o.push(0, "typed after reload".into()).unwrap();
        let stored = vec![item("old-1", "a", false), item("old-2", "b", true)];
        let taken = o.restore(1, stored.clone());
        assert_eq!(taken, stored);
        assert_eq!(o.restore(1, stored).len(), 0, "restoring twice changes nothing");
        o.set_online(2, true);
        assert_eq!(drain(&mut o), [send("old-1", "a")], "restored first, failed skipped");
        o.handle_sent(3, &ClientMsgId::new("old-1"));
        assert_eq!(drain(&mut o), [send("new-1", "typed after reload")]);
        o.handle_sent(4, &c);
        assert_eq!(o.failed().count(), 1);
    }

    #[test]
    fn restore_respects_the_bounds_and_the_send_in_flight() {
        let mut o = Outbox::new("t");
        o.set_online(0, true);
        o.push(0, "mine".into()).unwrap();
        assert_eq!(drain(&mut o), [send("t-1", "mine")]);
        let stored: Vec<_> = (0..60).map(|n| item(&format!("s-{n}"), "x", false)).collect();
        assert_eq!(o.restore(1, stored).len(), MAX_ITEMS - 1);
        assert_eq!(o.items().next().unwrap().body, "mine", "the send in flight stays at the head");
    }

    #[test]
    fn persisting_keeps_other_tabs_items_and_drops_what_this_tab_sent() {
        let mut o = Outbox::new("t");
        o.set_online(0, true);
        o.restore(0, vec![item("old-1", "a", false)]);
        let b = o.push(0, "b".into()).unwrap();
        // Another tab stored its own message meanwhile.
        let stored = vec![item("old-1", "a", false), item("other-1", "z", false)];
        let merged = o.merge_stored(stored);
        let ids: Vec<_> = merged.iter().map(|i| i.client_msg_id.as_str()).collect();
        assert_eq!(ids, ["other-1", "old-1", "t-1"]);
        o.handle_sent(1, &ClientMsgId::new("old-1"));
        drain(&mut o);
        o.handle_sent(2, &b);
        let merged = o.merge_stored(merged);
        let ids: Vec<_> = merged.iter().map(|i| i.client_msg_id.as_str()).collect();
        assert_eq!(ids, ["other-1"], "what this tab sent is gone from storage");
    }

    #[test]
    fn persisted_form_is_small_json() {
        let json = serde_json::to_string(&[item("a-1", "hi", false), item("a-2", "no", true)]).unwrap();
        assert_eq!(
            json,
            r#"[{"client_msg_id":"a-1","body":"hi"},{"client_msg_id":"a-2","body":"no","failed":true}]"#
        );
        let back: Vec<OutboxItem> = serde_json::from_str(&json).unwrap();
        assert!(back[1].failed);
    }
}
