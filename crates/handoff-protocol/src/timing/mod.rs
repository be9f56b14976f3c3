//! Sans-IO client timing machines (DESIGN section 4).
//!
//! Every machine has the same shape, after quinn-proto and str0m: inputs and the current time
//! go in through `handle_*(now_ms, ...)`; actions come out of `poll_action()` in the order they
//! were decided; `poll_timeout()` gives the next absolute deadline, at which the owner calls
//! `handle_timeout(now_ms)`. No machine reads a clock or owns a timer: `now_ms` is whatever the
//! owner's monotonic clock says (`performance.now()` in the browser), and a time that goes
//! backwards is clamped to the latest time seen.
//!
//! | machine | rule |
//! |---|---|
//! | [`typing::TypingSender`] | `true` at most once per 300 ms while keys arrive; `false` after 3 s idle, on send, on blur |
//! | [`typing::TypingReceiver`] | an indicator dies 3 s after the last `true` |
//! | [`presence::PresenceTracker`] | heartbeat every 30 s; `idle` after 2 min without input; `offline` by beacon on close |
//! | [`agent::AgentIdleTracker`] | an agent's console sets `away` after 30 min without input, never `offline` |
//! | [`agent::AgentLiveness`] | (server) an agent with a connected socket never expires; `offline` 2 min after the last closed |
//! | [`supervisor::ConnectionSupervisor`] | jittered reconnect; long-poll after 3 failures or 10 s; probe every 30 s; catch up on every transition, on visibility and every 60 s while connected |
//! | [`outbox::Outbox`] | ordered sends with a stable `client_msg_id`, retried with backoff |
//! | [`buffer::EventBuffer`] | applies persisted events once each in `seq` order; asks for catch-up on gaps; pages a catch-up until the latest `seq` |

pub mod agent;
pub mod buffer;
pub mod outbox;
pub mod presence;
pub mod supervisor;
pub mod typing;

/// The actions a machine decided, oldest first: a `Vec` drained from the front. Queues hold a
/// handful of actions and are drained at once, and each `VecDeque<T>` would compile its ring
/// buffer (grow, wrap, slices) once per action type into the browser builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Queue<T>(Vec<T>);

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue(Vec::new())
    }
}

impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Queue(Vec::new())
    }

    pub(crate) fn push_back(&mut self, item: T) {
        self.0.push(item);
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T: PartialEq> Queue<T> {
    pub(crate) fn contains(&self, item: &T) -> bool {
        self.0.contains(item)
    }
}

/// A monotonic clock reading that never goes backwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Clock(u64);

impl Clock {
    /// Advances to `now_ms`, or stays where it is if `now_ms` is in the past; returns the time.
    pub(crate) fn advance(&mut self, now_ms: u64) -> u64 {
        self.0 = self.0.max(now_ms);
        self.0
    }
}

/// Jittered delays from a small deterministic generator (splitmix64), so that a thousand
/// widgets that lost the same server do not all come back in the same millisecond, while tests
/// stay reproducible from a seed.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Jitter(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `base` scaled by a random factor in `[100 - percent, 100 + percent]` percent.
    pub(crate) fn apply(&mut self, base: u64, percent: u64) -> u64 {
        let factor = 100 - percent + self.next() % (2 * percent + 1);
        base * factor / 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_never_goes_backwards() {
        let mut c = Clock::default();
        assert_eq!(c.advance(10), 10);
        assert_eq!(c.advance(5), 10);
        assert_eq!(c.advance(11), 11);
    }

    #[test]
    fn jitter_stays_in_bounds_and_varies() {
        let mut j = Jitter::new(7);
        let values: Vec<u64> = (0..1000).map(|_| j.apply(1000, 20)).collect();
        assert!(values.iter().all(|v| (800..=1200).contains(v)));
        assert!(values.iter().min() < Some(&850) && values.iter().max() > Some(&1150));
    }
}
