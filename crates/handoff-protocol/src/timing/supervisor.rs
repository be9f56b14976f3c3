//! The connection supervisor: reconnect, then poll (DESIGN section 4).
//!
//! - Connect. On loss, reconnect after [`BACKOFF_MS`] (0.5 s, 1 s, 2 s, 5 s, then 10 s), each
//!   delay scaled by a random factor within ±[`JITTER_PERCENT`] %, so the first retry is fast
//!   and a crowd of clients does not come back at once.
//! - After [`POLL_AFTER_FAILURES`] failed attempts in a row, or [`POLL_AFTER_MS`] without a
//!   socket, switch to long-polling (`GET .../events?after=<seq>&wait=`[`LONG_POLL_WAIT_SECS`])
//!   and probe the socket every [`PROBE_INTERVAL_MS`]; when a probe connects, stop polling.
//! - While connected, send a Phoenix heartbeat every [`HEARTBEAT_INTERVAL_MS`]; a heartbeat
//!   whose reply has not come when the next is due means a dead socket. A connect attempt that
//!   hangs for [`CONNECT_TIMEOUT_MS`] counts as failed.
//! - Every transition (connected, reconnected, fell back to polling, back from polling) asks for
//!   a catch-up by `seq` ([`SupervisorAction::CatchUp`]).
//! - Broadcasts are fire-and-forget: one lost at the hub (or in Redis) is only noticed when a
//!   later event reveals the gap, and the last message of a quiet conversation would stay unseen.
//!   So while connected the supervisor also asks for a catch-up every [`CATCH_UP_INTERVAL_MS`]
//!   (the interval restarts at every catch-up, whatever asked for it), and whenever the page
//!   becomes visible. A catch-up is one cheap `GET .../events?after=<last applied seq>`.
//!   While polling, the long-poll is the catch-up.
//! - Background tabs: browsers run a hidden tab's timers late (once a minute). A deadline handled
//!   more than [`LATE_TIMER_SLACK_MS`] after it was due proves nothing about the socket, so a
//!   late heartbeat or connect-timeout check starts a fresh check instead of declaring the
//!   connection dead.
//! - `online` retries at once; `visibilitychange` to visible checks the socket at once.
//!
//! ```
//! use handoff_protocol::timing::supervisor::{ConnectionState, ConnectionSupervisor, SupervisorAction};
//!
//! let mut s = ConnectionSupervisor::new(42);
//! s.start(0);
//! assert_eq!(s.poll_action(), Some(SupervisorAction::StateChanged(ConnectionState::Connecting)));
//! assert_eq!(s.poll_action(), Some(SupervisorAction::Connect));
//! s.handle_connected(120);
//! assert_eq!(s.state(), ConnectionState::Connected);
//! ```

use super::{Clock, Jitter, Queue};

/// Reconnect delays after the 1st, 2nd, 3rd, 4th and later failures, before jitter.
pub const BACKOFF_MS: [u64; 5] = [500, 1_000, 2_000, 5_000, 10_000];
/// Each delay is scaled by a random factor within this many percent either way.
pub const JITTER_PERCENT: u64 = 20;
/// Failed attempts in a row after which the client long-polls.
pub const POLL_AFTER_FAILURES: u32 = 3;
/// Time without a socket after which the client long-polls.
pub const POLL_AFTER_MS: u64 = 10_000;
/// While polling, the socket is probed this often.
pub const PROBE_INTERVAL_MS: u64 = 30_000;
/// The `wait` of a long-poll request, in seconds.
pub const LONG_POLL_WAIT_SECS: u64 = 25;
/// Phoenix heartbeat interval (realtime-js uses the same).
pub const HEARTBEAT_INTERVAL_MS: u64 = 25_000;
/// A connect attempt without an answer for this long has failed.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// A timer handled this much later than due ran in a throttled background tab.
pub const LATE_TIMER_SLACK_MS: u64 = 5_000;
/// While connected, a catch-up at least this often (finds broadcasts that were lost).
pub const CATCH_UP_INTERVAL_MS: u64 = 60_000;
/// The shortest catch-up interval [`ConnectionSupervisor::set_catch_up_interval`] accepts.
pub const MIN_CATCH_UP_INTERVAL_MS: u64 = 1_000;

/// The connection as the UI shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Not started.
    Idle,
    /// First connection attempt.
    Connecting,
    /// The socket is up.
    Connected,
    /// The socket was lost; retrying.
    Reconnecting,
    /// No socket; events come by long-polling, and the socket is probed.
    Polling,
    /// Closed by the owner.
    Closed,
}

/// What the supervisor asks its owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorAction {
    /// Open a socket (and join the channels); report with `handle_connected` or
    /// `handle_connect_failed`.
    Connect,
    /// Close the current socket or attempt: it is dead.
    Disconnect,
    /// Send a Phoenix heartbeat; report its reply with `handle_heartbeat_reply`.
    SendHeartbeat,
    /// Start the long-poll loop.
    StartPolling,
    /// Stop the long-poll loop.
    StopPolling,
    /// Fetch what was missed: `GET .../events?after=<last applied seq>`.
    CatchUp,
    /// The state changed (for the UI).
    StateChanged(ConnectionState),
}

/// The reconnect-then-poll machine.
#[derive(Clone, Debug)]
pub struct ConnectionSupervisor {
    clock: Clock,
    jitter: Jitter,
    state: ConnectionState,
    /// Failed attempts in a row.
    failures: u32,
    /// When the socket was last lost (or the first attempt began); `None` while connected.
    down_since: Option<u64>,
    /// A connect attempt in flight, started at.
    attempt_since: Option<u64>,
    /// The next reconnect attempt or probe.
    next_connect_at: Option<u64>,
    /// The next heartbeat while connected.
    next_heartbeat_at: Option<u64>,
    /// A heartbeat awaits its reply.
    awaiting_reply: bool,
    /// The next periodic catch-up while connected.
    next_catch_up_at: Option<u64>,
    catch_up_interval: u64,
    actions: Queue<SupervisorAction>,
}

impl ConnectionSupervisor {
    /// A supervisor whose jitter comes from `seed` (use a random seed in production).
    pub fn new(seed: u64) -> Self {
        ConnectionSupervisor {
            clock: Clock::default(),
            jitter: Jitter::new(seed),
            state: ConnectionState::Idle,
            failures: 0,
            down_since: None,
            attempt_since: None,
            next_connect_at: None,
            next_heartbeat_at: None,
            awaiting_reply: false,
            next_catch_up_at: None,
            catch_up_interval: CATCH_UP_INTERVAL_MS,
            actions: Queue::new(),
        }
    }

    /// Sets the periodic catch-up interval (default [`CATCH_UP_INTERVAL_MS`]; at least
    /// [`MIN_CATCH_UP_INTERVAL_MS`]); it applies from the next catch-up.
    pub fn set_catch_up_interval(&mut self, ms: u64) {
        self.catch_up_interval = ms.max(MIN_CATCH_UP_INTERVAL_MS);
    }

    /// The periodic catch-up interval.
    pub fn catch_up_interval(&self) -> u64 {
        self.catch_up_interval
    }

    /// Asks for a catch-up; while connected, the next periodic one is an interval from now.
    fn catch_up(&mut self, now: u64) {
        if self.state == ConnectionState::Connected {
            self.next_catch_up_at = Some(now + self.catch_up_interval);
        }
        if !self.actions.contains(&SupervisorAction::CatchUp) {
            self.actions.push_back(SupervisorAction::CatchUp);
        }
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Failed attempts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn set_state(&mut self, state: ConnectionState) {
        if self.state != state {
            self.state = state;
            self.actions.push_back(SupervisorAction::StateChanged(state));
        }
    }

    fn connect(&mut self, now: u64) {
        self.next_connect_at = None;
        self.attempt_since = Some(now);
        self.actions.push_back(SupervisorAction::Connect);
    }

    /// Starts connecting.
    pub fn start(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.state != ConnectionState::Idle {
            return;
        }
        self.down_since = Some(now);
        self.set_state(ConnectionState::Connecting);
        self.connect(now);
    }

    /// The socket opened and the channels joined.
    pub fn handle_connected(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if matches!(self.state, ConnectionState::Closed | ConnectionState::Connected | ConnectionState::Idle)
        {
            return;
        }
        if self.state == ConnectionState::Polling {
            self.actions.push_back(SupervisorAction::StopPolling);
        }
        self.failures = 0;
        self.down_since = None;
        self.attempt_since = None;
        self.next_connect_at = None;
        self.awaiting_reply = false;
        self.next_heartbeat_at = Some(now + HEARTBEAT_INTERVAL_MS);
        self.set_state(ConnectionState::Connected);
        self.catch_up(now);
    }

    /// A connect attempt failed.
    pub fn handle_connect_failed(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if self.attempt_since.take().is_none() {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        self.after_failure(now);
    }

    /// The connected socket closed or errored.
    pub fn handle_disconnected(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        match self.state {
            ConnectionState::Connected => self.lose(now),
            ConnectionState::Connecting | ConnectionState::Reconnecting | ConnectionState::Polling => {
                self.handle_connect_failed(now);
            }
            ConnectionState::Idle | ConnectionState::Closed => {}
        }
    }

    fn lose(&mut self, now: u64) {
        self.next_heartbeat_at = None;
        self.next_catch_up_at = None;
        self.awaiting_reply = false;
        self.down_since = Some(now);
        self.failures = 0;
        self.set_state(ConnectionState::Reconnecting);
        self.schedule_retry(now);
    }

    fn schedule_retry(&mut self, now: u64) {
        let i = usize::try_from(self.failures).unwrap_or(usize::MAX).min(BACKOFF_MS.len() - 1);
        self.next_connect_at = Some(now + self.jitter.apply(BACKOFF_MS[i], JITTER_PERCENT));
    }

    fn after_failure(&mut self, now: u64) {
        if self.state == ConnectionState::Polling {
            self.next_connect_at = Some(now + PROBE_INTERVAL_MS);
        } else if self.failures >= POLL_AFTER_FAILURES || self.down_too_long(now) {
            self.start_polling(now);
        } else {
            self.set_state(if self.state == ConnectionState::Connecting {
                ConnectionState::Connecting
            } else {
                ConnectionState::Reconnecting
            });
            self.schedule_retry(now);
        }
    }

    fn down_too_long(&self, now: u64) -> bool {
        self.down_since.is_some_and(|t| now >= t + POLL_AFTER_MS)
    }

    fn start_polling(&mut self, now: u64) {
        if self.attempt_since.take().is_some() {
            self.actions.push_back(SupervisorAction::Disconnect);
        }
        self.set_state(ConnectionState::Polling);
        self.actions.push_back(SupervisorAction::StartPolling);
        self.catch_up(now);
        self.next_connect_at = Some(now + PROBE_INTERVAL_MS);
    }

    /// The reply to the last heartbeat arrived.
    pub fn handle_heartbeat_reply(&mut self, now_ms: u64) {
        self.clock.advance(now_ms);
        self.awaiting_reply = false;
    }

    /// The browser is back `online`: retry (or probe) at once.
    pub fn handle_online(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if matches!(
            self.state,
            ConnectionState::Reconnecting | ConnectionState::Polling | ConnectionState::Connecting
        ) && self.attempt_since.is_none()
        {
            self.connect(now);
        }
    }

    /// The page became visible: check the socket at once (or reconnect at once), and catch up
    /// (a hidden tab's timers ran late, and what was lost meanwhile shows now).
    pub fn handle_visible(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        match self.state {
            ConnectionState::Idle | ConnectionState::Closed => return,
            ConnectionState::Connected if !self.awaiting_reply => {
                self.awaiting_reply = true;
                self.next_heartbeat_at = Some(now + HEARTBEAT_INTERVAL_MS);
                self.actions.push_back(SupervisorAction::SendHeartbeat);
            }
            ConnectionState::Connected => {}
            _ => self.handle_online(now),
        }
        self.catch_up(now);
    }

    /// The deadline of [`Self::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.clock.advance(now_ms);
        if let Some(due) = self.next_heartbeat_at.filter(|t| now >= *t) {
            let late = now - due > LATE_TIMER_SLACK_MS;
            if self.awaiting_reply && !late {
                self.actions.push_back(SupervisorAction::Disconnect);
                self.lose(now);
            } else {
                self.awaiting_reply = true;
                self.next_heartbeat_at = Some(now + HEARTBEAT_INTERVAL_MS);
                self.actions.push_back(SupervisorAction::SendHeartbeat);
            }
        }
        if let Some(since) = self.attempt_since.filter(|t| now >= t + CONNECT_TIMEOUT_MS) {
            if now - (since + CONNECT_TIMEOUT_MS) > LATE_TIMER_SLACK_MS {
                // Our timer ran late: give the attempt a fresh window instead of failing it.
                self.attempt_since = Some(now);
            } else {
                self.actions.push_back(SupervisorAction::Disconnect);
                self.handle_connect_failed(now);
            }
        }
        if self.state != ConnectionState::Polling
            && self.state != ConnectionState::Connected
            && self.down_too_long(now)
            && !matches!(self.state, ConnectionState::Idle | ConnectionState::Closed)
        {
            self.start_polling(now);
        }
        if self.next_connect_at.is_some_and(|t| now >= t) && self.attempt_since.is_none() {
            self.connect(now);
        }
        if self.state == ConnectionState::Connected && self.next_catch_up_at.is_some_and(|t| now >= t) {
            self.catch_up(now);
        }
    }

    /// Closes everything: the socket, the polling, every deadline.
    pub fn close(&mut self, now_ms: u64) {
        self.clock.advance(now_ms);
        if self.state == ConnectionState::Closed {
            return;
        }
        if self.state == ConnectionState::Polling {
            self.actions.push_back(SupervisorAction::StopPolling);
        }
        if self.state == ConnectionState::Connected || self.attempt_since.is_some() {
            self.actions.push_back(SupervisorAction::Disconnect);
        }
        self.attempt_since = None;
        self.next_connect_at = None;
        self.next_heartbeat_at = None;
        self.next_catch_up_at = None;
        self.down_since = None;
        self.set_state(ConnectionState::Closed);
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<SupervisorAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        let poll_deadline = match self.state {
            ConnectionState::Connecting | ConnectionState::Reconnecting => {
                self.down_since.map(|t| t + POLL_AFTER_MS)
            }
            _ => None,
        };
        [
            self.next_heartbeat_at,
            self.attempt_since.map(|t| t + CONNECT_TIMEOUT_MS),
            self.next_connect_at.filter(|_| self.attempt_since.is_none()),
            poll_deadline,
            self.next_catch_up_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ConnectionState::{Connected, Connecting, Polling, Reconnecting};
    use SupervisorAction::{
        CatchUp, Connect, Disconnect, SendHeartbeat, StartPolling, StateChanged, StopPolling,
    };

    fn drain(s: &mut ConnectionSupervisor) -> Vec<SupervisorAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn connected_at(t: u64) -> ConnectionSupervisor {
        let mut s = ConnectionSupervisor::new(1);
        s.start(t);
        s.handle_connected(t);
        drain(&mut s);
        s
    }

    #[test]
    fn the_numbers() {
        assert_eq!(BACKOFF_MS, [500, 1_000, 2_000, 5_000, 10_000]);
        assert_eq!(JITTER_PERCENT, 20);
        assert_eq!(POLL_AFTER_FAILURES, 3);
        assert_eq!(POLL_AFTER_MS, 10_000);
        assert_eq!(PROBE_INTERVAL_MS, 30_000);
        assert_eq!(LONG_POLL_WAIT_SECS, 25);
        assert_eq!(HEARTBEAT_INTERVAL_MS, 25_000);
    }

    #[test]
    fn first_connection_catches_up() {
        let mut s = ConnectionSupervisor::new(1);
        s.start(0);
        assert_eq!(drain(&mut s), [StateChanged(Connecting), Connect]);
        s.handle_connected(50);
        assert_eq!(drain(&mut s), [StateChanged(Connected), CatchUp]);
    }

    #[test]
    fn first_retry_is_fast_and_jittered() {
        for seed in 0..200 {
            let mut s = ConnectionSupervisor::new(seed);
            s.start(0);
            s.handle_connected(0);
            s.handle_disconnected(1_000);
            let drained = drain(&mut s);
            assert_eq!(drained.last(), Some(&StateChanged(Reconnecting)));
            let t = s.poll_timeout().unwrap();
            assert!((1_400..=1_600).contains(&t), "seed {seed}: retry at {t}");
            s.handle_timeout(t - 1);
            assert!(!drain(&mut s).contains(&Connect));
            s.handle_timeout(t);
            assert_eq!(drain(&mut s), [Connect]);
        }
    }

    #[test]
    fn backoff_grows_then_polls_after_3_failures() {
        let mut s = connected_at(0);
        s.handle_disconnected(0);
        drain(&mut s);
        let mut now;
        for (failure, base) in [(1u32, 1_000u64), (2, 2_000)] {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            assert_eq!(drain(&mut s), [Connect]);
            s.handle_connect_failed(now);
            assert_eq!(s.failures(), failure);
            let delay = s.poll_timeout().unwrap() - now;
            assert!(delay >= base * 80 / 100 && delay <= base * 120 / 100, "delay {delay} for base {base}");
            assert_eq!(s.state(), Reconnecting);
        }
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        drain(&mut s);
        s.handle_connect_failed(now);
        assert_eq!(drain(&mut s), [StateChanged(Polling), StartPolling, CatchUp]);
        assert_eq!(s.poll_timeout(), Some(now + PROBE_INTERVAL_MS));
    }

    #[test]
    fn polls_after_10_s_without_a_socket_even_mid_backoff() {
        let mut s = connected_at(0);
        s.handle_disconnected(1_000);
        drain(&mut s);
        // The attempt hangs: no answer at all.
        let t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        assert_eq!(drain(&mut s), [Connect]);
        assert_eq!(s.poll_timeout(), Some(11_000), "10 s after the loss comes first");
        s.handle_timeout(10_999);
        assert_eq!(drain(&mut s), []);
        s.handle_timeout(11_000);
        assert_eq!(drain(&mut s), [Disconnect, StateChanged(Polling), StartPolling, CatchUp]);
    }

    #[test]
    fn probes_every_30_s_and_stops_polling_when_one_connects() {
        let mut s = connected_at(0);
        s.handle_disconnected(0);
        s.handle_timeout(10_000);
        drain(&mut s);
        assert_eq!(s.state(), Polling);
        s.handle_timeout(39_999);
        assert_eq!(drain(&mut s), []);
        s.handle_timeout(40_000);
        assert_eq!(drain(&mut s), [Connect]);
        s.handle_connect_failed(40_100);
        assert_eq!(drain(&mut s), []);
        assert_eq!(s.state(), Polling);
        assert_eq!(s.poll_timeout(), Some(70_100));
        s.handle_timeout(70_100);
        assert_eq!(drain(&mut s), [Connect]);
        s.handle_connected(70_200);
        assert_eq!(drain(&mut s), [StopPolling, StateChanged(Connected), CatchUp]);
    }

    #[test]
    fn a_missed_heartbeat_reply_means_a_dead_socket() {
        let mut s = connected_at(0);
        assert_eq!(s.poll_timeout(), Some(25_000));
        s.handle_timeout(24_999);
        assert_eq!(drain(&mut s), []);
        s.handle_timeout(25_000);
        assert_eq!(drain(&mut s), [SendHeartbeat]);
        s.handle_heartbeat_reply(25_030);
        s.handle_timeout(50_000);
        assert_eq!(drain(&mut s), [SendHeartbeat], "reply came: just the next heartbeat");
        s.handle_timeout(75_000);
        assert_eq!(drain(&mut s), [Disconnect, StateChanged(Reconnecting)]);
    }

    #[test]
    fn a_late_timer_in_a_background_tab_is_not_a_disconnect() {
        let mut s = connected_at(0);
        s.handle_timeout(25_000);
        drain(&mut s);
        // The tab was throttled: the next check runs 60 s late, reply not processed yet.
        s.handle_timeout(50_000 + LATE_TIMER_SLACK_MS + 1);
        assert_eq!(drain(&mut s), [SendHeartbeat]);
        assert_eq!(s.state(), Connected);
        // On time and still no reply: dead.
        let due = s.next_heartbeat_at.unwrap();
        s.handle_timeout(due + LATE_TIMER_SLACK_MS);
        assert_eq!(drain(&mut s), [Disconnect, StateChanged(Reconnecting)]);
    }

    #[test]
    fn online_and_visible_act_at_once() {
        let mut s = connected_at(0);
        s.handle_visible(1_000);
        assert_eq!(drain(&mut s), [SendHeartbeat, CatchUp]);
        s.handle_disconnected(2_000);
        drain(&mut s);
        s.handle_online(2_001);
        assert_eq!(drain(&mut s), [Connect]);
        s.handle_online(2_002);
        assert_eq!(drain(&mut s), [], "one attempt at a time");
    }

    /// Runs the supervisor to `until`, answering every heartbeat; the times of its catch-ups.
    fn catch_ups_until(s: &mut ConnectionSupervisor, until: u64) -> Vec<u64> {
        let mut at = Vec::new();
        while let Some(t) = s.poll_timeout().filter(|t| *t <= until) {
            s.handle_timeout(t);
            for a in drain(s) {
                match a {
                    CatchUp => at.push(t),
                    SendHeartbeat => s.handle_heartbeat_reply(t + 20),
                    other => panic!("unexpected {other:?} at {t}"),
                }
            }
        }
        at
    }

    #[test]
    fn a_quiet_subscription_catches_up_every_60_s() {
        assert_eq!(CATCH_UP_INTERVAL_MS, 60_000);
        // Connected at 0 (that caught up once); then nothing arrives at all.
        let mut s = connected_at(0);
        assert_eq!(catch_ups_until(&mut s, 59_999), Vec::<u64>::new());
        assert_eq!(catch_ups_until(&mut s, 60_000), [60_000], "a lost last message shows within 60 s");
        assert_eq!(catch_ups_until(&mut s, 200_000), [120_000, 180_000]);
        assert_eq!(s.state(), Connected, "catching up is not reconnecting");
    }

    #[test]
    fn becoming_visible_catches_up_at_once_and_restarts_the_interval() {
        let mut s = connected_at(0);
        s.handle_visible(10_000);
        assert_eq!(drain(&mut s), [SendHeartbeat, CatchUp]);
        s.handle_heartbeat_reply(10_050);
        assert_eq!(catch_ups_until(&mut s, 69_999), Vec::<u64>::new());
        assert_eq!(catch_ups_until(&mut s, 70_000), [70_000]);
        // Visible again while the check is still out: no second heartbeat, still a catch-up.
        s.handle_visible(71_000);
        s.handle_visible(71_001);
        assert_eq!(drain(&mut s), [SendHeartbeat, CatchUp], "one pending catch-up at a time");
        // Visible while polling catches up too (and probes at once).
        let mut p = connected_at(0);
        p.handle_disconnected(0);
        p.handle_timeout(10_000);
        drain(&mut p);
        assert_eq!(p.state(), Polling);
        p.handle_visible(12_000);
        assert_eq!(drain(&mut p), [Connect, CatchUp]);
    }

    #[test]
    fn the_interval_is_settable_but_not_to_nothing() {
        let mut s = ConnectionSupervisor::new(1);
        s.set_catch_up_interval(2_000);
        s.start(0);
        s.handle_connected(0);
        drain(&mut s);
        assert_eq!(catch_ups_until(&mut s, 6_000), [2_000, 4_000, 6_000]);
        s.set_catch_up_interval(0);
        assert_eq!(s.catch_up_interval(), MIN_CATCH_UP_INTERVAL_MS);
    }

    #[test]
    fn no_periodic_catch_up_without_a_socket() {
        let mut s = connected_at(0);
        s.handle_disconnected(1_000);
        drain(&mut s);
        // Reconnecting: the reconnect catches up; polling: the long-poll is the catch-up.
        let mut now = 1_000;
        while now < 200_000 {
            let Some(t) = s.poll_timeout() else { break };
            now = t;
            s.handle_timeout(now);
            let actions = drain(&mut s);
            if actions.contains(&Connect) {
                s.handle_connect_failed(now);
                drain(&mut s);
            }
            let catch_ups = actions.iter().filter(|a| **a == CatchUp).count();
            assert!(catch_ups == 0 || actions.contains(&StartPolling), "{now}: {actions:?}");
        }
        assert_eq!(s.state(), Polling);
    }

    #[test]
    fn a_hanging_connect_times_out_after_10_s() {
        assert_eq!(CONNECT_TIMEOUT_MS, 10_000);
        let mut s = ConnectionSupervisor::new(3);
        s.start(0);
        drain(&mut s);
        s.handle_timeout(9_999);
        assert_eq!(drain(&mut s), []);
        s.handle_timeout(10_000);
        let actions = drain(&mut s);
        assert_eq!(actions.first(), Some(&Disconnect));
        assert!(actions.contains(&StartPolling), "10 s without a socket: {actions:?}");
    }

    #[test]
    fn close_stops_everything() {
        let mut s = connected_at(0);
        s.close(5);
        assert_eq!(drain(&mut s), [Disconnect, StateChanged(ConnectionState::Closed)]);
        assert_eq!(s.poll_timeout(), None);
        s.handle_disconnected(6);
        s.handle_online(7);
        s.handle_timeout(100_000);
        assert_eq!(drain(&mut s), []);
    }

    #[derive(Clone, Debug)]
    enum Input {
        Connected,
        Failed,
        Disconnected,
        Reply,
        Online,
        Visible,
        Timeout,
        Advance(u64),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::Connected),
            Just(Input::Failed),
            Just(Input::Disconnected),
            Just(Input::Reply),
            Just(Input::Online),
            Just(Input::Visible),
            Just(Input::Timeout),
            (0u64..70_000).prop_map(Input::Advance),
        ]
    }

    proptest! {
        #[test]
        fn random_inputs_never_panic_and_deadlines_stay_sane(
            seed in any::<u64>(),
            inputs in proptest::collection::vec(input(), 0..200),
        ) {
            let mut s = ConnectionSupervisor::new(seed);
            let mut now = 0u64;
            s.start(now);
            for i in inputs {
                match i {
                    Input::Connected => s.handle_connected(now),
                    Input::Failed => s.handle_connect_failed(now),
                    Input::Disconnected => s.handle_disconnected(now),
                    Input::Reply => s.handle_heartbeat_reply(now),
                    Input::Online => s.handle_online(now),
                    Input::Visible => s.handle_visible(now),
                    Input::Timeout => if let Some(t) = s.poll_timeout() { now = now.max(t); s.handle_timeout(now) },
                    Input::Advance(d) => now += d,
                }
                let mut last_change = None;
                while let Some(a) = s.poll_action() {
                    if let SupervisorAction::StateChanged(st) = a { last_change = Some(st); }
                }
                if let Some(st) = last_change { prop_assert_eq!(st, s.state()); }
                if let Some(t) = s.next_connect_at {
                    // A retry is never further out than the cap plus jitter, or a probe interval.
                    prop_assert!(t <= now + PROBE_INTERVAL_MS.max(BACKOFF_MS[4] * 120 / 100));
                }
                prop_assert_eq!(s.state() == ConnectionState::Connected, s.next_heartbeat_at.is_some());
                prop_assert_eq!(s.state() == ConnectionState::Connected, s.next_catch_up_at.is_some());
                // Connected, a catch-up is never further out than the interval.
                if let Some(t) = s.next_catch_up_at {
                    prop_assert!(t <= now + CATCH_UP_INTERVAL_MS);
                }
            }
        }
    }
}
