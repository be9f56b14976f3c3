//! Agent liveness (DESIGN section 4): which inputs keep an agent available, and what their
//! status becomes after how long.
//!
//! | input | rule |
//! |---|---|
//! | a console socket joined with the agent's token, on any node | the agent is never expired while one is connected |
//! | the last socket closed, and no REST call since | `offline` after [`AGENT_OFFLINE_AFTER_MS`] (2 min), announced |
//! | no input in the console | `away` after [`AGENT_AWAY_AFTER_MS`] (30 min), by the console ([`AgentIdleTracker`]), never `offline` |
//!
//! The server side is [`AgentLiveness::expires`]: nodes that hold an agent's sockets write
//! "seen connected now" into the store at most every [`AGENT_SOCKET_REFRESH_MS`] and when the
//! last one closes, so the node that runs the expiry job sees sockets held elsewhere.
//!
//! ```
//! use handoff_protocol::event::AgentStatus;
//! use handoff_protocol::timing::agent::{AgentLiveness, AGENT_OFFLINE_AFTER_MS};
//!
//! let watching = AgentLiveness { status: AgentStatus::Online, local_sockets: 1, last_socket_seen: Some(0), last_request: 0 };
//! assert!(!watching.expires(10 * AGENT_OFFLINE_AFTER_MS));
//! let gone = AgentLiveness { local_sockets: 0, ..watching };
//! assert!(gone.expires(AGENT_OFFLINE_AFTER_MS));
//! ```

use super::{Clock, Queue};
use crate::event::AgentStatus;

/// An agent without a connected socket and without a REST call for this long goes offline.
pub const AGENT_OFFLINE_AFTER_MS: u64 = 2 * 60_000;
/// A console without input for this long sets its agent `away`.
pub const AGENT_AWAY_AFTER_MS: u64 = 30 * 60_000;
/// A node holding an agent's socket writes "seen connected" at most this often (well inside
/// [`AGENT_OFFLINE_AFTER_MS`], so a held socket is never taken for a closed one).
pub const AGENT_SOCKET_REFRESH_MS: u64 = 30_000;

/// What the server knows of an agent's connection when the expiry job looks at them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentLiveness {
    /// The agent's status.
    pub status: AgentStatus,
    /// Sockets joined with the agent's token on the node deciding.
    pub local_sockets: usize,
    /// When any node last saw one of the agent's sockets connected (ms), if ever.
    pub last_socket_seen: Option<u64>,
    /// The agent's last authenticated call (ms).
    pub last_request: u64,
}

impl AgentLiveness {
    /// Whether the agent goes `offline` at `now_ms`: not offline already, no socket here, and
    /// neither a socket seen elsewhere nor a REST call within [`AGENT_OFFLINE_AFTER_MS`].
    pub fn expires(&self, now_ms: u64) -> bool {
        self.expires_after(now_ms, AGENT_OFFLINE_AFTER_MS)
    }

    /// [`Self::expires`] with another grace (tests, settings).
    pub fn expires_after(&self, now_ms: u64, grace_ms: u64) -> bool {
        if self.status == AgentStatus::Offline || self.local_sockets > 0 {
            return false;
        }
        let last_seen = self.last_socket_seen.unwrap_or(0).max(self.last_request);
        now_ms >= last_seen.saturating_add(grace_ms)
    }
}

/// What the [`AgentIdleTracker`] asks the console to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentIdleAction {
    /// `PUT /api/agents/me/status` with this status.
    SetStatus(AgentStatus),
}

/// The console's input idleness: an `online` agent without input for
/// [`AGENT_AWAY_AFTER_MS`] is set `away`; input brings back an agent the tracker set away (not
/// one who chose `away` themself). It never sets anyone `offline`.
#[derive(Clone, Debug)]
pub struct AgentIdleTracker {
    clock: Clock,
    status: AgentStatus,
    last_input_at: u64,
    auto_away: bool,
    away_after_ms: u64,
    actions: Queue<AgentIdleAction>,
}

impl AgentIdleTracker {
    /// The console opened at `now_ms` with the agent in `status`.
    pub fn new(now_ms: u64, status: AgentStatus) -> Self {
        let mut clock = Clock::default();
        let now = clock.advance(now_ms);
        AgentIdleTracker {
            clock,
            status,
            last_input_at: now,
            auto_away: false,
            away_after_ms: AGENT_AWAY_AFTER_MS,
            actions: Queue::new(),
        }
    }

    /// The same tracker with another idle time before `away` (at least 1 s; the seed's rule is
    /// [`AGENT_AWAY_AFTER_MS`], shorter for tests and demos).
    #[must_use]
    pub fn with_away_after(mut self, ms: u64) -> Self {
        self.away_after_ms = ms.max(1_000);
        self
    }

    /// The agent's status as the tracker knows it.
    pub fn status(&self) -> AgentStatus {
        self.status
    }

    /// Keyboard, pointer or focus input in the console.
    pub fn handle_input(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        self.last_input_at = now;
        if self.auto_away {
            self.auto_away = false;
            self.status = AgentStatus::Online;
            self.actions.push_back(AgentIdleAction::SetStatus(AgentStatus::Online));
        }
    }

    /// The status changed by other means (the agent chose it, another tab, the server): the
    /// tracker follows, and forgets that it set `away` itself.
    pub fn handle_status(&mut self, now_ms: u64, status: AgentStatus) {
        let now = self.clock.advance(now_ms);
        if status != self.status {
            self.status = status;
            self.auto_away = false;
            if status == AgentStatus::Online {
                self.last_input_at = now;
            }
        }
    }

    /// The deadline of [`Self::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.status == AgentStatus::Online && now >= self.last_input_at + self.away_after_ms {
            self.status = AgentStatus::Away;
            self.auto_away = true;
            self.actions.push_back(AgentIdleAction::SetStatus(AgentStatus::Away));
        }
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<AgentIdleAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is due: only while `online`.
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.status == AgentStatus::Online).then_some(self.last_input_at + self.away_after_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentStatus::{Away, Offline, Online};

    const MIN: u64 = 60_000;

    #[test]
    fn thresholds() {
        assert_eq!(AGENT_OFFLINE_AFTER_MS, 2 * MIN);
        assert_eq!(AGENT_AWAY_AFTER_MS, 30 * MIN);
        const { assert!(AGENT_SOCKET_REFRESH_MS * 3 < AGENT_OFFLINE_AFTER_MS) };
    }

    #[test]
    fn a_connected_agent_never_expires() {
        // Only heartbeats for hours: the socket is held here, or refreshed by the node holding it.
        let here =
            AgentLiveness { status: Online, local_sockets: 1, last_socket_seen: Some(0), last_request: 0 };
        for now in [0, 2 * MIN, 31 * MIN, 24 * 60 * MIN] {
            assert!(!here.expires(now), "{now}");
        }
        let elsewhere = AgentLiveness { local_sockets: 0, ..here };
        let mut seen = 0;
        for now in (0..=120 * MIN).step_by(usize::try_from(AGENT_SOCKET_REFRESH_MS).unwrap()) {
            seen = now; // the holding node's refresh
            assert!(!AgentLiveness { last_socket_seen: Some(seen), ..elsewhere }.expires(now + 1_000));
        }
        assert!(seen > 60 * MIN);
    }

    #[test]
    fn offline_two_minutes_after_the_last_socket_and_request() {
        let closed = AgentLiveness {
            status: Online,
            local_sockets: 0,
            last_socket_seen: Some(10 * MIN),
            last_request: 0,
        };
        assert!(!closed.expires(12 * MIN - 1));
        assert!(closed.expires(12 * MIN));
        // A REST call after the socket closed holds the agent (a console polling over REST).
        let polling = AgentLiveness { last_request: 11 * MIN, ..closed };
        assert!(!polling.expires(12 * MIN));
        assert!(polling.expires(13 * MIN));
        // Away agents go offline the same way; offline ones have nothing to expire.
        assert!(AgentLiveness { status: Away, ..closed }.expires(12 * MIN));
        assert!(!AgentLiveness { status: Offline, ..closed }.expires(60 * MIN));
        // Never connected: the REST call alone counts.
        let rest_only = AgentLiveness { last_socket_seen: None, last_request: 5 * MIN, ..closed };
        assert!(!rest_only.expires(7 * MIN - 1));
        assert!(rest_only.expires(7 * MIN));
    }

    fn drain(t: &mut AgentIdleTracker) -> Vec<AgentIdleAction> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    #[test]
    fn idle_console_goes_away_never_offline_and_input_brings_it_back() {
        let mut t = AgentIdleTracker::new(0, Online);
        assert_eq!(t.poll_timeout(), Some(30 * MIN));
        t.handle_input(10 * MIN);
        t.handle_timeout(30 * MIN);
        assert_eq!(drain(&mut t), []);
        assert_eq!(t.poll_timeout(), Some(40 * MIN));
        t.handle_timeout(40 * MIN);
        assert_eq!(drain(&mut t), [AgentIdleAction::SetStatus(Away)]);
        assert_eq!(t.poll_timeout(), None);
        // Hours more of silence: still away, never offline.
        t.handle_timeout(600 * MIN);
        assert_eq!((drain(&mut t), t.status()), (vec![], Away));
        t.handle_input(601 * MIN);
        assert_eq!(drain(&mut t), [AgentIdleAction::SetStatus(Online)]);
        assert_eq!(t.poll_timeout(), Some(631 * MIN));
    }

    #[test]
    fn a_chosen_status_is_left_alone() {
        let mut t = AgentIdleTracker::new(0, Online);
        t.handle_status(MIN, Away); // the agent chose away
        t.handle_timeout(100 * MIN);
        t.handle_input(101 * MIN);
        assert_eq!(drain(&mut t), [], "input does not override a chosen away");
        t.handle_status(102 * MIN, Online);
        assert_eq!(t.poll_timeout(), Some(132 * MIN));
        // Set away by the tracker, then the agent picks offline: input does not bring them back.
        t.handle_timeout(132 * MIN);
        assert_eq!(drain(&mut t), [AgentIdleAction::SetStatus(Away)]);
        t.handle_status(133 * MIN, Offline);
        t.handle_input(134 * MIN);
        assert_eq!(drain(&mut t), []);
        // Time never goes backwards.
        t.handle_status(10, Online);
        assert_eq!(t.poll_timeout(), Some(134 * MIN + AGENT_AWAY_AFTER_MS));
    }

    #[test]
    fn the_idle_time_can_be_shortened_but_not_below_a_second() {
        let mut t = AgentIdleTracker::new(0, Online).with_away_after(5_000);
        assert_eq!(t.poll_timeout(), Some(5_000));
        t.handle_timeout(4_999);
        assert_eq!(drain(&mut t), []);
        t.handle_timeout(5_000);
        assert_eq!(drain(&mut t), [AgentIdleAction::SetStatus(Away)]);
        assert_eq!(AgentIdleTracker::new(0, Online).with_away_after(10).poll_timeout(), Some(1_000));
    }
}
