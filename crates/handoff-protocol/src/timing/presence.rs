//! Customer presence, as the widget reports it, and the server's expiry rules.
//!
//! While the widget is open, a heartbeat goes every [`PRESENCE_HEARTBEAT_MS`] carrying the
//! current state: `online` while the page is visible and the customer gave input within
//! [`PRESENCE_IDLE_AFTER_MS`], `idle` otherwise (a hidden page is idle). A change of state is
//! sent at once. On `pagehide` or when the widget closes, `offline` goes by
//! `navigator.sendBeacon` ([`PresenceAction::Beacon`]), and nothing more is sent.
//!
//! The server marks a customer offline after [`CUSTOMER_OFFLINE_AFTER_MS`] without a heartbeat,
//! which covers a crashed tab; background tabs whose timers Chrome throttles to once a minute
//! still beat in time.
//!
//! **Several tabs.** A visitor may have the same conversation open in several tabs, each with its
//! own tracker. Every report carries the tab's id (random per page load, [`is_valid_tab_id`]);
//! the server keeps one [`TabPresence`] per tab and shows agents the aggregate
//! ([`conversation_presence`]): `online` if any tab is active, `idle` if every tab left is idle,
//! `offline` when none is left (each closed by its beacon or silent for
//! [`CUSTOMER_OFFLINE_AFTER_MS`]). `presence:updated` goes out only when the aggregate changes,
//! so closing one of two tabs, or hiding one while another is in use, changes nothing an agent
//! sees. A report without a tab id (an older client) counts as the tab [`DEFAULT_TAB`].
//!
//! ```
//! use handoff_protocol::event::PresenceState;
//! use handoff_protocol::timing::presence::{PresenceAction, PresenceTracker};
//!
//! let mut p = PresenceTracker::new(0);
//! assert_eq!(p.poll_action(), Some(PresenceAction::Send(PresenceState::Online)));
//! assert_eq!(p.poll_timeout(), Some(30_000));
//! ```

use super::{Clock, Queue};
use crate::event::PresenceState;

/// A heartbeat goes this often while the widget is open.
pub const PRESENCE_HEARTBEAT_MS: u64 = 30_000;
/// The customer is idle after this long without input.
pub const PRESENCE_IDLE_AFTER_MS: u64 = 2 * 60_000;
/// The server marks a customer offline after this long without a heartbeat.
pub const CUSTOMER_OFFLINE_AFTER_MS: u64 = 75_000;
/// The server marks an agent offline this long after their last socket closed (and their last
/// REST call); see [`super::agent`].
pub use super::agent::AGENT_OFFLINE_AFTER_MS;

/// The tab id of reports that carry none (older clients): they share one entry.
pub const DEFAULT_TAB: &str = "";
/// Longest tab id, in bytes.
pub const MAX_TAB_ID_LEN: usize = 64;

/// [`is_valid_tab_id`] as a regular expression (for the OpenAPI document).
pub const TAB_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Whether `id` is an acceptable tab id: 1 to [`MAX_TAB_ID_LEN`] ASCII letters, digits, `-` or `_`.
pub fn is_valid_tab_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TAB_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One tab's last presence report, as the server keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TabPresence {
    /// The state it reported.
    pub state: PresenceState,
    /// When (ms) its last report came.
    pub last_heartbeat_ms: u64,
}

impl TabPresence {
    /// The state this tab counts with at `now_ms`: `offline` once its heartbeats stopped for
    /// [`CUSTOMER_OFFLINE_AFTER_MS`].
    pub fn state_at(&self, now_ms: u64) -> PresenceState {
        if now_ms.saturating_sub(self.last_heartbeat_ms) >= CUSTOMER_OFFLINE_AFTER_MS {
            PresenceState::Offline
        } else {
            self.state
        }
    }
}

/// The customer's presence from their tabs' states: `online` if any tab is online, else `idle`
/// if any is idle, else `offline` (no tab, or all offline; unknown states count as offline).
pub fn aggregate_presence<I: IntoIterator<Item = PresenceState>>(tabs: I) -> PresenceState {
    let mut out = PresenceState::Offline;
    for state in tabs {
        match state {
            PresenceState::Online => return PresenceState::Online,
            PresenceState::Idle => out = PresenceState::Idle,
            _ => {}
        }
    }
    out
}

/// The conversation's presence at `now_ms` from its tabs (expired tabs count as offline).
pub fn conversation_presence<'a, I: IntoIterator<Item = &'a TabPresence>>(
    tabs: I,
    now_ms: u64,
) -> PresenceState {
    aggregate_presence(tabs.into_iter().map(|t| t.state_at(now_ms)))
}

/// What the tracker asks its owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceAction {
    /// Report this state (`POST .../presence` or a socket broadcast).
    Send(PresenceState),
    /// Report this state with `navigator.sendBeacon`, because the page is going away.
    Beacon(PresenceState),
}

/// The customer's presence, from page visibility and input.
#[derive(Clone, Debug)]
pub struct PresenceTracker {
    clock: Clock,
    state: PresenceState,
    visible: bool,
    closed: bool,
    last_input_at: u64,
    last_sent_at: u64,
    actions: Queue<PresenceAction>,
}

impl PresenceTracker {
    /// The widget opened at `now_ms` on a visible page: reports `online` at once.
    pub fn new(now_ms: u64) -> Self {
        let mut clock = Clock::default();
        let now = clock.advance(now_ms);
        PresenceTracker {
            clock,
            state: PresenceState::Online,
            visible: true,
            closed: false,
            last_input_at: now,
            last_sent_at: now,
            actions: Queue(vec![PresenceAction::Send(PresenceState::Online)]),
        }
    }

    /// The state last reported.
    pub fn state(&self) -> PresenceState {
        self.state
    }

    fn report(&mut self, now: u64, state: PresenceState) {
        self.state = state;
        self.last_sent_at = now;
        self.actions.push_back(PresenceAction::Send(state));
    }

    /// Keyboard, pointer or scroll input.
    pub fn handle_input(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.closed {
            return;
        }
        self.last_input_at = now;
        if self.visible && self.state != PresenceState::Online {
            self.report(now, PresenceState::Online);
        }
    }

    /// The page became visible or hidden (`visibilitychange`).
    pub fn handle_visibility(&mut self, now_ms: u64, visible: bool) {
        let now = self.clock.advance(now_ms);
        if self.closed || visible == self.visible {
            return;
        }
        self.visible = visible;
        if visible {
            // Coming back to the page counts as input.
            self.last_input_at = now;
            self.report(now, PresenceState::Online);
        } else if self.state != PresenceState::Idle {
            self.report(now, PresenceState::Idle);
        }
    }

    /// `pagehide`, or the widget was closed: `offline` by beacon, then silence.
    pub fn handle_close(&mut self, now_ms: u64) {
        self.clock.advance(now_ms);
        if !self.closed {
            self.closed = true;
            self.state = PresenceState::Offline;
            self.actions.push_back(PresenceAction::Beacon(PresenceState::Offline));
        }
    }

    /// The page was shown again after `pagehide` (back-forward cache): start over as online.
    pub fn handle_reopen(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.closed {
            self.closed = false;
            self.visible = true;
            self.last_input_at = now;
            self.report(now, PresenceState::Online);
        }
    }

    /// The deadline of [`Self::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.closed {
            return;
        }
        if self.state == PresenceState::Online && now >= self.last_input_at + PRESENCE_IDLE_AFTER_MS {
            self.report(now, PresenceState::Idle);
        } else if now >= self.last_sent_at + PRESENCE_HEARTBEAT_MS {
            self.report(now, self.state);
        }
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<PresenceAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let heartbeat = self.last_sent_at + PRESENCE_HEARTBEAT_MS;
        if self.state == PresenceState::Online {
            Some(heartbeat.min(self.last_input_at + PRESENCE_IDLE_AFTER_MS))
        } else {
            Some(heartbeat)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceState::{Idle, Offline, Online};

    #[test]
    fn aggregate_is_online_if_any_tab_is_idle_if_all_are_and_offline_when_none_is_left() {
        assert_eq!(aggregate_presence([]), Offline);
        assert_eq!(aggregate_presence([Online, Offline]), Online);
        assert_eq!(aggregate_presence([Idle, Online, Idle]), Online);
        assert_eq!(aggregate_presence([Idle, Idle]), Idle);
        assert_eq!(aggregate_presence([Idle, Offline]), Idle);
        assert_eq!(aggregate_presence([Offline, PresenceState::Unknown]), Offline);
    }

    #[test]
    fn a_silent_tab_stops_counting_after_the_heartbeat_timeout() {
        let visible = TabPresence { state: Online, last_heartbeat_ms: 0 };
        let hidden = TabPresence { state: Idle, last_heartbeat_ms: 50_000 };
        assert_eq!(conversation_presence(&[visible, hidden], 74_999), Online);
        // The visible tab crashed: its entry expires, the hidden one still counts.
        assert_eq!(conversation_presence(&[visible, hidden], 75_000), Idle);
        assert_eq!(conversation_presence(&[visible, hidden], 125_000), Offline);
    }

    #[test]
    fn tab_ids_are_short_and_plain() {
        assert!(is_valid_tab_id("t-3f9a_Z"));
        assert!(!is_valid_tab_id(DEFAULT_TAB));
        assert!(!is_valid_tab_id("a b"));
        assert!(!is_valid_tab_id("ü"));
        assert!(!is_valid_tab_id(&"x".repeat(MAX_TAB_ID_LEN + 1)));
        assert!(is_valid_tab_id(&"x".repeat(MAX_TAB_ID_LEN)));
    }

    fn drain(p: &mut PresenceTracker) -> Vec<PresenceAction> {
        std::iter::from_fn(|| p.poll_action()).collect()
    }

    /// Runs the tracker to `until`, firing every deadline on time; returns what it sent.
    fn run(p: &mut PresenceTracker, until: u64) -> Vec<(u64, PresenceAction)> {
        let mut out = Vec::new();
        while let Some(t) = p.poll_timeout().filter(|t| *t <= until) {
            p.handle_timeout(t);
            out.extend(drain(p).into_iter().map(|a| (t, a)));
        }
        out
    }

    #[test]
    fn server_side_thresholds() {
        assert_eq!(CUSTOMER_OFFLINE_AFTER_MS, 75_000);
        assert_eq!(AGENT_OFFLINE_AFTER_MS, 120_000);
    }

    #[test]
    fn heartbeat_every_30_s_while_active() {
        assert_eq!(PRESENCE_HEARTBEAT_MS, 30_000);
        let mut p = PresenceTracker::new(0);
        assert_eq!(drain(&mut p), [PresenceAction::Send(Online)]);
        p.handle_timeout(29_999);
        assert_eq!(drain(&mut p), []);
        p.handle_timeout(30_000);
        assert_eq!(drain(&mut p), [PresenceAction::Send(Online)]);
        p.handle_input(45_000);
        assert_eq!(p.poll_timeout(), Some(60_000));
    }

    #[test]
    fn idle_after_2_min_without_input_then_online_on_input() {
        assert_eq!(PRESENCE_IDLE_AFTER_MS, 120_000);
        let mut p = PresenceTracker::new(0);
        drain(&mut p);
        p.handle_input(10_000);
        let sent = run(&mut p, 129_999);
        assert!(sent.iter().all(|(_, a)| *a == PresenceAction::Send(Online)), "{sent:?}");
        let sent = run(&mut p, 130_000);
        assert_eq!(sent, [(130_000, PresenceAction::Send(Idle))]);
        // Idle heartbeats keep the server from marking the customer offline.
        assert_eq!(run(&mut p, 160_000), [(160_000, PresenceAction::Send(Idle))]);
        p.handle_input(170_000);
        assert_eq!(drain(&mut p), [PresenceAction::Send(Online)]);
    }

    #[test]
    fn hidden_page_is_idle_and_coming_back_is_online() {
        let mut p = PresenceTracker::new(0);
        drain(&mut p);
        p.handle_visibility(5_000, false);
        assert_eq!(drain(&mut p), [PresenceAction::Send(Idle)]);
        p.handle_input(6_000); // input on a hidden page (rare) does not make it online
        assert_eq!(drain(&mut p), []);
        assert_eq!(p.poll_timeout(), Some(35_000));
        p.handle_visibility(7_000, true);
        assert_eq!(drain(&mut p), [PresenceAction::Send(Online)]);
        assert_eq!(p.poll_timeout(), Some(37_000));
    }

    #[test]
    fn close_sends_offline_by_beacon_once_then_nothing() {
        let mut p = PresenceTracker::new(0);
        drain(&mut p);
        p.handle_close(1_000);
        p.handle_close(1_001);
        assert_eq!(drain(&mut p), [PresenceAction::Beacon(Offline)]);
        assert_eq!(p.state(), Offline);
        assert_eq!(p.poll_timeout(), None);
        p.handle_input(2_000);
        p.handle_timeout(100_000);
        assert_eq!(drain(&mut p), []);
        p.handle_reopen(200_000);
        assert_eq!(drain(&mut p), [PresenceAction::Send(Online)]);
    }
}
