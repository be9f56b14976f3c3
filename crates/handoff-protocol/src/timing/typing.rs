//! Typing indicators, both ends.
//!
//! The sender sends `is_typing: true` when the first key arrives and at most once per
//! [`TYPING_DEBOUNCE_MS`] while keys keep arriving (each refresh keeps the receiver's indicator
//! alive); it sends `false` [`TYPING_IDLE_MS`] after the last key, when the message is sent, and
//! on blur. The receiver shows an indicator until `false` arrives or [`TYPING_TTL_MS`] pass
//! without a fresh `true`, so a lost `false` never leaves "Ann is typing…" on screen.
//!
//! ```
//! use handoff_protocol::timing::typing::{TypingAction, TypingSender};
//!
//! let mut s = TypingSender::new();
//! s.handle_input(0);
//! assert_eq!(s.poll_action(), Some(TypingAction::Send(true)));
//! s.handle_input(100); // inside the 300 ms window: nothing new
//! assert_eq!(s.poll_action(), None);
//! assert_eq!(s.poll_timeout(), Some(3_100));
//! s.handle_timeout(3_100);
//! assert_eq!(s.poll_action(), Some(TypingAction::Send(false)));
//! ```

use super::{Clock, Queue};
use crate::event::Author;

/// A `true` is sent at most once per this many milliseconds while keys arrive.
pub const TYPING_DEBOUNCE_MS: u64 = 300;
/// `false` is sent this long after the last key.
pub const TYPING_IDLE_MS: u64 = 3_000;
/// A receiver clears an indicator this long after the last `true`.
pub const TYPING_TTL_MS: u64 = 3_000;

/// What the sender asks its owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypingAction {
    /// Send a `typing` event with this `is_typing`.
    Send(bool),
}

/// The sending side: turns keystrokes into few `typing` events.
#[derive(Clone, Debug, Default)]
pub struct TypingSender {
    clock: Clock,
    typing: bool,
    last_true_at: u64,
    last_input_at: u64,
    actions: Queue<TypingAction>,
}

impl TypingSender {
    /// A sender that has sent nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A key was pressed (or the input changed).
    pub fn handle_input(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        self.last_input_at = now;
        if !self.typing || now - self.last_true_at >= TYPING_DEBOUNCE_MS {
            self.typing = true;
            self.last_true_at = now;
            self.actions.push_back(TypingAction::Send(true));
        }
    }

    /// The message was sent: typing stops at once.
    pub fn handle_send(&mut self, now_ms: u64) {
        self.clock.advance(now_ms);
        self.stop();
    }

    /// The input lost focus: typing stops at once.
    pub fn handle_blur(&mut self, now_ms: u64) {
        self.clock.advance(now_ms);
        self.stop();
    }

    /// The deadline of [`Self::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.typing && now >= self.last_input_at + TYPING_IDLE_MS {
            self.stop();
        }
    }

    fn stop(&mut self) {
        if self.typing {
            self.typing = false;
            self.actions.push_back(TypingAction::Send(false));
        }
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<TypingAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.typing.then_some(self.last_input_at + TYPING_IDLE_MS)
    }

    /// Whether the other side currently believes we type.
    pub fn is_typing(&self) -> bool {
        self.typing
    }
}

/// What the receiver tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypingChange {
    /// This actor started typing: show the indicator.
    Started(Author),
    /// This actor stopped (or their indicator expired): hide it.
    Stopped(Author),
}

/// The receiving side: who is typing now.
#[derive(Clone, Debug, Default)]
pub struct TypingReceiver {
    clock: Clock,
    shown: Vec<(Author, u64)>,
    actions: Queue<TypingChange>,
}

impl TypingReceiver {
    /// Nobody typing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `typing` event arrived.
    pub fn handle_typing(&mut self, now_ms: u64, actor: &Author, is_typing: bool) {
        let now = self.clock.advance(now_ms);
        let pos = self.shown.iter().position(|(a, _)| a.kind == actor.kind && a.id == actor.id);
        match (pos, is_typing) {
            (Some(i), true) => self.shown[i].1 = now + TYPING_TTL_MS,
            (None, true) => {
                self.shown.push((actor.clone(), now + TYPING_TTL_MS));
                self.actions.push_back(TypingChange::Started(actor.clone()));
            }
            (Some(i), false) => {
                let (a, _) = self.shown.remove(i);
                self.actions.push_back(TypingChange::Stopped(a));
            }
            (None, false) => {}
        }
    }

    /// A message from `actor` arrived: they are done typing it.
    pub fn handle_message(&mut self, now_ms: u64, actor: &Author) {
        self.handle_typing(now_ms, actor, false);
    }

    /// The deadline of [`Self::poll_timeout`] passed: expired indicators go.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        let mut i = 0;
        while i < self.shown.len() {
            if self.shown[i].1 <= now {
                let (a, _) = self.shown.remove(i);
                self.actions.push_back(TypingChange::Stopped(a));
            } else {
                i += 1;
            }
        }
    }

    /// The next change, in order.
    pub fn poll_action(&mut self) -> Option<TypingChange> {
        self.actions.pop_front()
    }

    /// When the next indicator expires.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.shown.iter().map(|(_, at)| *at).min()
    }

    /// Who is typing now.
    pub fn typing(&self) -> impl Iterator<Item = &Author> {
        self.shown.iter().map(|(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AuthorKind;

    fn drain(s: &mut TypingSender) -> Vec<TypingAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    #[test]
    fn true_is_sent_at_most_once_per_300_ms_while_typing() {
        assert_eq!(TYPING_DEBOUNCE_MS, 300);
        let mut s = TypingSender::new();
        s.handle_input(1_000);
        assert_eq!(drain(&mut s), [TypingAction::Send(true)]);
        s.handle_input(1_150);
        s.handle_input(1_299);
        assert_eq!(drain(&mut s), [], "inside the window");
        s.handle_input(1_300);
        assert_eq!(drain(&mut s), [TypingAction::Send(true)], "at the window's end");
    }

    #[test]
    fn false_goes_3_s_after_the_last_key() {
        assert_eq!(TYPING_IDLE_MS, 3_000);
        let mut s = TypingSender::new();
        s.handle_input(0);
        s.handle_input(200);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(3_200));
        s.handle_timeout(3_199);
        assert_eq!(drain(&mut s), []);
        s.handle_timeout(3_200);
        assert_eq!(drain(&mut s), [TypingAction::Send(false)]);
        assert_eq!(s.poll_timeout(), None);
        assert!(!s.is_typing());
    }

    #[test]
    fn send_and_blur_stop_at_once_and_only_when_typing() {
        let mut s = TypingSender::new();
        s.handle_blur(0);
        assert_eq!(drain(&mut s), []);
        s.handle_input(10);
        s.handle_send(20);
        assert_eq!(drain(&mut s), [TypingAction::Send(true), TypingAction::Send(false)]);
        s.handle_input(30);
        s.handle_blur(40);
        assert_eq!(drain(&mut s), [TypingAction::Send(true), TypingAction::Send(false)]);
        s.handle_send(50);
        assert_eq!(drain(&mut s), []);
    }

    #[test]
    fn time_going_backwards_is_clamped() {
        let mut s = TypingSender::new();
        s.handle_input(5_000);
        s.handle_input(4_000); // clamped to 5_000: inside the window
        assert_eq!(drain(&mut s), [TypingAction::Send(true)]);
        assert_eq!(s.poll_timeout(), Some(8_000));
    }

    fn ann() -> Author {
        Author { kind: AuthorKind::Agent, id: "ann".into(), name: Some("Ann".into()) }
    }

    #[test]
    fn receiver_clears_3_s_after_the_last_true_even_without_false() {
        assert_eq!(TYPING_TTL_MS, 3_000);
        let mut r = TypingReceiver::new();
        r.handle_typing(0, &ann(), true);
        assert_eq!(r.poll_action(), Some(TypingChange::Started(ann())));
        r.handle_typing(1_000, &ann(), true);
        assert_eq!(r.poll_action(), None, "a refresh is not a change");
        assert_eq!(r.poll_timeout(), Some(4_000));
        r.handle_timeout(3_999);
        assert_eq!(r.poll_action(), None);
        assert_eq!(r.typing().count(), 1);
        r.handle_timeout(4_000);
        assert_eq!(r.poll_action(), Some(TypingChange::Stopped(ann())));
        assert_eq!(r.typing().count(), 0);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn receiver_clears_on_false_and_on_message() {
        let mut r = TypingReceiver::new();
        let bo = Author { kind: AuthorKind::Customer, id: "bo".into(), name: None };
        r.handle_typing(0, &ann(), true);
        r.handle_typing(0, &bo, true);
        r.handle_typing(10, &ann(), false);
        r.handle_message(20, &bo);
        r.handle_typing(30, &bo, false); // already gone: no change
        let changes: Vec<_> = std::iter::from_fn(|| r.poll_action()).collect();
        assert_eq!(
            changes,
            [
                TypingChange::Started(ann()),
                TypingChange::Started(bo.clone()),
                TypingChange::Stopped(ann()),
                TypingChange::Stopped(bo)
            ]
        );
    }
}
