//! The incoming-event buffer: persisted events from the socket, long-polls and catch-ups come
//! in any order, some twice; they leave exactly once each, in `seq` order.
//!
//! An event whose `seq` is already applied is dropped, and so is a `message:new` whose message
//! id was already applied. An event after a gap is held, and if the gap is not filled within
//! [`GAP_CATCH_UP_MS`] the buffer asks for a catch-up (`GET .../events?after=<applied>`).
//! Ephemeral events (no `seq`: typing, presence, queue positions) pass straight through. At most
//! [`MAX_HELD`] events are held; past that the buffer drops them and asks for a catch-up, which
//! brings them again.
//!
//! A catch-up answer is a page of at most [`crate::api::EVENTS_PAGE_MAX`] events plus the
//! conversation's latest `seq` (`last_seq`). Its events go through [`EventBuffer::handle_event`]
//! like any other (applied by their own `seq`, never "up to `last_seq`"), then
//! [`EventBuffer::handle_page`] asks for the next page, after the page's last event, while that
//! is below `last_seq`: a catch-up pages until it is done.
//!
//! ```
//! use handoff_protocol::timing::buffer::{BufferAction, EventBuffer};
//! # use handoff_protocol::event::*;
//! # use handoff_protocol::ids::*;
//! # fn status(seq: u64) -> Event {
//! #     Event::StatusChanged(StatusChanged { conversation_id: "c".into(), seq: Seq(seq),
//! #         status: ConversationStatus::Queued, previous: ConversationStatus::Bot })
//! # }
//! let mut b = EventBuffer::<Event>::new(Seq(0));
//! b.handle_event(0, status(2)); // early: held
//! assert_eq!(b.poll_action(), None);
//! b.handle_event(10, status(1));
//! assert_eq!(b.poll_action(), Some(BufferAction::Apply(status(1))));
//! assert_eq!(b.poll_action(), Some(BufferAction::Apply(status(2))));
//! b.handle_event(20, status(2)); // duplicate: dropped
//! assert_eq!(b.poll_action(), None);
//! ```

use super::{Clock, Queue};
use crate::event::Event;
use crate::ids::Seq;

/// A gap not filled within this long triggers a catch-up.
pub const GAP_CATCH_UP_MS: u64 = 2_000;
/// Events held after a gap, at most.
pub const MAX_HELD: usize = 256;
/// Message ids remembered for dedupe.
const RECENT_MESSAGE_IDS: usize = 512;

/// What the buffer needs to know of an event. [`Event`] is one; the wasm client buffers the
/// wire JSON as `JSON.parse` gave it, reading these two facts with
/// [`EventType::seq_path`](crate::event::EventType::seq_path) and
/// [`EventType::message_id_path`](crate::event::EventType::message_id_path), so that no typed
/// decoder is compiled into the browser.
pub trait Sequenced {
    /// The conversation counter; `None` for an ephemeral event (passed straight through).
    fn seq(&self) -> Option<Seq>;
    /// The id of the message a `message:new` carries (dropped when already applied under another
    /// `seq`); `None` for other events.
    fn message_id(&self) -> Option<&str>;
}

impl Sequenced for Event {
    fn seq(&self) -> Option<Seq> {
        Event::seq(self)
    }

    fn message_id(&self) -> Option<&str> {
        match self {
            Event::MessageNew(m) => Some(m.message.id.as_str()),
            _ => None,
        }
    }
}

/// What the buffer asks its owner to do.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BufferAction<E = Event> {
    /// Apply this event to the UI or model: it is the next in order (or ephemeral).
    Apply(E),
    /// Fetch `GET .../events?after=<after>` and feed the result to `handle_event`.
    CatchUp {
        /// The last applied `seq`.
        after: Seq,
    },
}

/// Seq-ordered, deduplicated delivery of one conversation's events.
#[derive(Clone, Debug)]
pub struct EventBuffer<E = Event> {
    clock: Clock,
    applied: Seq,
    /// Events after a gap, sorted by `seq` (at most [`MAX_HELD`]: a sorted `Vec` is as quick as
    /// a map at that size, and much smaller in the wasm build).
    held: Vec<(Seq, E)>,
    gap_since: Option<u64>,
    recent_messages: Queue<String>,
    actions: Queue<BufferAction<E>>,
}

impl<E: Sequenced> EventBuffer<E> {
    /// A buffer that has applied everything up to `applied` (`Seq::ZERO` for a new client).
    pub fn new(applied: Seq) -> Self {
        EventBuffer {
            clock: Clock::default(),
            applied,
            held: Vec::new(),
            gap_since: None,
            recent_messages: Queue::new(),
            actions: Queue::new(),
        }
    }

    /// The last applied `seq`: the `after` of the next catch-up.
    pub fn last_applied(&self) -> Seq {
        self.applied
    }

    /// Whether events are held behind a gap.
    pub fn has_gap(&self) -> bool {
        !self.held.is_empty()
    }

    /// An event arrived (from the socket, a long-poll or a catch-up page).
    pub fn handle_event(&mut self, now_ms: u64, event: E) {
        let now = self.clock.advance(now_ms);
        let Some(seq) = event.seq() else {
            self.actions.push_back(BufferAction::Apply(event));
            return;
        };
        if seq <= self.applied {
            return;
        }
        let Err(at) = self.held.binary_search_by_key(&seq, |(s, _)| *s) else { return };
        if seq == self.applied.next() {
            self.apply(seq, event);
            // Everything held is above `applied`, in order: the next one, if here, is first.
            while self.held.first().is_some_and(|(s, _)| *s == self.applied.next()) {
                let (s, next) = self.held.remove(0);
                self.apply(s, next);
            }
            self.gap_since = if self.held.is_empty() { None } else { Some(now) };
        } else {
            self.held.insert(at, (seq, event));
            self.gap_since.get_or_insert(now);
            if self.held.len() > MAX_HELD {
                self.held.clear();
                self.gap_since = None;
                self.request_catch_up();
            }
        }
    }

    fn apply(&mut self, seq: Seq, event: E) {
        self.applied = seq;
        if let Some(id) = event.message_id() {
            if self.recent_messages.iter().any(|m| m == id) {
                return;
            }
            if self.recent_messages.len() == RECENT_MESSAGE_IDS {
                self.recent_messages.pop_front();
            }
            self.recent_messages.push_back(id.to_owned());
        }
        self.actions.push_back(BufferAction::Apply(event));
    }

    /// A catch-up or long-poll page was fed (its events through [`Self::handle_event`]):
    /// `last_event` is the `seq` of its last event (`None` when it had none), `latest` the page's
    /// `last_seq`. A page that stopped below the latest asks for the next one, after its last
    /// event. An empty page asks for nothing (the events after it may be ones this reader does
    /// not get), so a catch-up cannot loop.
    pub fn handle_page(&mut self, now_ms: u64, last_event: Option<Seq>, latest: Seq) {
        self.clock.advance(now_ms);
        if let Some(last) = last_event.filter(|last| *last < latest) {
            self.catch_up(last.max(self.applied));
        }
    }

    /// Asks for a catch-up now (the supervisor's `CatchUp`, after any transition).
    pub fn request_catch_up(&mut self) {
        self.catch_up(self.applied);
    }

    fn catch_up(&mut self, after: Seq) {
        let queued =
            self.actions.iter().any(|a| matches!(a, BufferAction::CatchUp { after: a } if *a == after));
        if !queued {
            self.actions.push_back(BufferAction::CatchUp { after });
        }
    }

    /// The deadline of [`Self::poll_timeout`] passed: a gap is still open, catch up.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.gap_since.is_some_and(|t| now >= t + GAP_CATCH_UP_MS) {
            self.gap_since = Some(now);
            self.request_catch_up();
        }
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<BufferAction<E>> {
        self.actions.pop_front()
    }

    /// When an open gap triggers a catch-up.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.gap_since.map(|t| t + GAP_CATCH_UP_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Author, AuthorKind, ConversationStatus, Message, MessageNew, StatusChanged, Typing};
    use crate::ids::{MessageId, Timestamp};
    use proptest::prelude::*;

    fn msg(seq: u64) -> Event {
        Event::MessageNew(MessageNew {
            message: Message {
                id: MessageId::new(format!("m{seq}")),
                conversation_id: "c".into(),
                seq: Seq(seq),
                author: Author { kind: AuthorKind::Customer, id: "v".into(), name: None },
                body: format!("#{seq}"),
                client_msg_id: None,
                created_at: Timestamp(seq),
            },
        })
    }

    fn drain(b: &mut EventBuffer) -> Vec<BufferAction> {
        std::iter::from_fn(|| b.poll_action()).collect()
    }

    fn applied_seqs(actions: &[BufferAction]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                BufferAction::Apply(e) => e.seq().map(|s| s.0),
                BufferAction::CatchUp { .. } => None,
            })
            .collect()
    }

    #[test]
    fn ephemeral_events_pass_straight_through() {
        let mut b = EventBuffer::<Event>::new(Seq(5));
        let t = Event::Typing(Typing {
            conversation_id: "c".into(),
            actor: Author { kind: AuthorKind::Agent, id: "a".into(), name: None },
            is_typing: true,
        });
        b.handle_event(0, t.clone());
        assert_eq!(drain(&mut b), [BufferAction::Apply(t)]);
    }

    #[test]
    fn a_gap_asks_for_catch_up_after_2_s() {
        assert_eq!(GAP_CATCH_UP_MS, 2_000);
        let mut b = EventBuffer::<Event>::new(Seq(0));
        b.handle_event(1_000, msg(1));
        b.handle_event(1_100, msg(3));
        assert_eq!(applied_seqs(&drain(&mut b)), [1]);
        assert!(b.has_gap());
        assert_eq!(b.poll_timeout(), Some(3_100));
        b.handle_timeout(3_099);
        assert_eq!(drain(&mut b), []);
        b.handle_timeout(3_100);
        assert_eq!(drain(&mut b), [BufferAction::CatchUp { after: Seq(1) }]);
        assert_eq!(b.poll_timeout(), Some(5_100), "asks again if the catch-up does not come");
        b.handle_event(3_200, msg(2));
        assert_eq!(applied_seqs(&drain(&mut b)), [2, 3]);
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn a_message_id_seen_before_is_dropped() {
        let mut b = EventBuffer::<Event>::new(Seq(0));
        b.handle_event(0, msg(1));
        let mut again = msg(2);
        if let Event::MessageNew(m) = &mut again {
            m.message.id = MessageId::new("m1");
        }
        b.handle_event(0, again);
        b.handle_event(0, msg(3));
        assert_eq!(applied_seqs(&drain(&mut b)), [1, 3]);
        assert_eq!(b.last_applied(), Seq(3));
    }

    #[test]
    fn too_many_held_events_turn_into_one_catch_up() {
        let mut b = EventBuffer::<Event>::new(Seq(0));
        for s in 2..=(MAX_HELD as u64 + 2) {
            b.handle_event(0, msg(s));
        }
        assert_eq!(drain(&mut b), [BufferAction::CatchUp { after: Seq(0) }]);
        assert!(!b.has_gap());
        b.request_catch_up();
        b.request_catch_up();
        assert_eq!(drain(&mut b).len(), 1, "one pending catch-up at a time");
    }

    /// A server that answers at most `limit` events per page of `total`, with `last_seq = total`.
    fn page(after: u64, limit: u64, total: u64) -> (Vec<Event>, Seq) {
        (((after + 1)..=(after + limit).min(total)).map(msg).collect(), Seq(total))
    }

    #[test]
    fn a_catch_up_pages_until_done() {
        // 620 events, pages of 500: the client asks again after 500 and gets all, once each.
        let mut b = EventBuffer::<Event>::new(Seq(0));
        b.request_catch_up();
        let mut applied = Vec::new();
        let mut requests = Vec::new();
        while let Some(a) = b.poll_action() {
            match a {
                BufferAction::Apply(e) => applied.push(e.seq().unwrap().0),
                BufferAction::CatchUp { after } => {
                    requests.push(after.0);
                    let (events, latest) = page(after.0, 500, 620);
                    let last = events.last().and_then(Event::seq);
                    for e in events {
                        b.handle_event(0, e);
                    }
                    b.handle_page(0, last, latest);
                }
            }
        }
        assert_eq!(requests, [0, 500]);
        assert_eq!(applied, (1..=620).collect::<Vec<_>>());
        assert_eq!(b.last_applied(), Seq(620));
    }

    #[test]
    fn last_seq_is_not_applied_up_to() {
        let mut b = EventBuffer::<Event>::new(Seq(0));
        // A truncated page: events 1..=3 of 10.
        for s in 1..=3 {
            b.handle_event(0, msg(s));
        }
        b.handle_page(0, Some(Seq(3)), Seq(10));
        let actions = drain(&mut b);
        assert_eq!(applied_seqs(&actions), [1, 2, 3]);
        assert_eq!(actions.last(), Some(&BufferAction::CatchUp { after: Seq(3) }));
        assert_eq!(b.last_applied(), Seq(3), "not 10");
        // A page that reaches the latest, or an empty one, asks for nothing more.
        b.handle_page(0, Some(Seq(10)), Seq(10));
        b.handle_page(0, None, Seq(12));
        assert_eq!(drain(&mut b), []);
    }

    #[test]
    fn status_events_count_too() {
        let mut b = EventBuffer::<Event>::new(Seq(0));
        let status = Event::StatusChanged(StatusChanged {
            conversation_id: "c".into(),
            seq: Seq(1),
            status: ConversationStatus::Resolved,
            previous: ConversationStatus::Assigned,
        });
        b.handle_event(0, status.clone());
        b.handle_event(0, status);
        assert_eq!(applied_seqs(&drain(&mut b)), [1]);
    }

    proptest! {
        #[test]
        fn duplicated_reordered_events_come_out_once_each_in_order(
            n in 1u64..60,
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..200),
            catch_up_every in 3usize..20,
        ) {
            // Deliveries: every seq at least once, plus random duplicates, in random order.
            let mut deliveries: Vec<u64> = (1..=n).collect();
            for (i, idx) in order.iter().enumerate() {
                if i % 2 == 0 {
                    deliveries.push(1 + idx.index(usize::try_from(n).unwrap()) as u64);
                } else {
                    let a = idx.index(deliveries.len());
                    let last = deliveries.len() - 1;
                    deliveries.swap(a, last);
                }
            }
            let mut b = EventBuffer::<Event>::new(Seq(0));
            let mut out = Vec::new();
            let mut now = 0;
            for (i, s) in deliveries.iter().enumerate() {
                now += 100;
                b.handle_event(now, msg(*s));
                if i % catch_up_every == 0 {
                    // A catch-up page: everything after the applied seq, in order.
                    b.request_catch_up();
                }
                for action in drain(&mut b) {
                    match action {
                        BufferAction::Apply(e) => out.push(e.seq().unwrap().0),
                        BufferAction::CatchUp { after } => {
                            prop_assert_eq!(after, b.last_applied());
                            for s in (after.0 + 1)..=n {
                                b.handle_event(now, msg(s));
                            }
                        }
                    }
                }
                // A gap is reported while events are held.
                prop_assert_eq!(b.has_gap(), b.poll_timeout().is_some());
            }
            // Whatever is still held comes with a final catch-up.
            b.request_catch_up();
            let mut rounds = 0;
            while let Some(action) = b.poll_action() {
                rounds += 1;
                prop_assert!(rounds < 1_000);
                match action {
                    BufferAction::Apply(e) => out.push(e.seq().unwrap().0),
                    BufferAction::CatchUp { after } => for s in (after.0 + 1)..=n { b.handle_event(now, msg(s)); },
                }
            }
            let expected: Vec<u64> = (1..=n).collect();
            prop_assert_eq!(out, expected);
        }
    }
}
