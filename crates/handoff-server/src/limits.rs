//! Abuse limits: rate limits per client IP, project key, visitor token and agent account
//! (token buckets from `governor`), the login backoff, and the caps on long-polls. Over a limit
//! the caller gets `429 rate_limited` with `Retry-After`.
//!
//! The defaults are generous: a real site and a real support team never meet them; a script
//! hammering the public key does. Every bucket is keyed by what the attacker controls only
//! within bounds (an IP, an authenticated token), and idle buckets are forgotten by
//! [`Limits::forget_idle`] (run by the background jobs), so memory follows the number of
//! recently active clients, not the history.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use handoff_protocol::api::ErrorCode;

use crate::error::AppError;

/// What a request does, for the rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Any API request (a ceiling per IP).
    Api,
    /// `POST /api/widget/session` and `identify`.
    Session,
    /// `POST /api/conversations` and `handoff`.
    Conversation,
    /// Messages and notes.
    Message,
    /// Typing and presence.
    Ephemeral,
    /// What makes the server send mail: the offline form, transcripts by email.
    Offline,
    /// Agent login attempts.
    Login,
}

impl Action {
    const ALL: [Action; 7] = [
        Action::Api,
        Action::Session,
        Action::Conversation,
        Action::Message,
        Action::Ephemeral,
        Action::Offline,
        Action::Login,
    ];

    fn name(self) -> &'static str {
        match self {
            Action::Api => "api",
            Action::Session => "session",
            Action::Conversation => "conversation",
            Action::Message => "message",
            Action::Ephemeral => "ephemeral",
            Action::Offline => "offline",
            Action::Login => "login",
        }
    }
}

/// Who a bucket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client IP (IPv6 by its /64: one host usually has the whole prefix).
    Ip(IpAddr),
    /// A project, by id (its public key is in every page; this caps the project as a whole).
    Project(String),
    /// An authenticated caller: a visitor, an agent or a project's secret key.
    Caller(String),
}

impl Key {
    /// The key of a client IP.
    pub fn ip(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(_) => Key::Ip(ip),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Key::Ip(IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
            }
        }
    }

    fn kind(&self) -> KeyKind {
        match self {
            Key::Ip(_) => KeyKind::Ip,
            Key::Project(_) => KeyKind::Project,
            Key::Caller(_) => KeyKind::Caller,
        }
    }
}

/// The kind of a [`Key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Per client IP.
    Ip,
    /// Per project.
    Project,
    /// Per visitor token, agent account or secret key.
    Caller,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Ip => "ip",
            KeyKind::Project => "project",
            KeyKind::Caller => "caller",
        }
    }
}

/// A rate: `count` requests per `per`, with bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
    /// Requests allowed at once from a full bucket.
    pub burst: u32,
}

impl Rate {
    /// `count` per minute, bursts of `burst`.
    pub const fn per_minute(count: u32, burst: u32) -> Rate {
        Rate { count, per: Duration::from_secs(60), burst }
    }

    fn quota(self) -> Option<Quota> {
        let count = NonZeroU32::new(self.count)?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        let period = self.per.checked_div(count.get())?.max(Duration::from_nanos(1));
        Quota::with_period(period).map(|q| q.allow_burst(burst))
    }
}

/// The limits' settings. `HANDOFF_LIMITS` / `--limits` override single rates, e.g.
/// `message.caller=120/60s:40,login.ip=off` (see [`LimitsConfig::apply`]).
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// Rates by action and key kind; a missing pair is not limited.
    pub rates: HashMap<(Action, KeyKind), Rate>,
    /// Failed logins of one account from one IP, or from one IP, before the backoff starts.
    pub login_free_failures: u32,
    /// Failed logins of one account from all IPs before the backoff starts for the account
    /// (a guess spread over many addresses); higher, so one attacker cannot lock a person out.
    pub login_free_failures_account: u32,
    /// The first backoff, doubled at every further failure, up to `login_max_backoff`.
    pub login_backoff: Duration,
    /// The longest backoff.
    pub login_max_backoff: Duration,
    /// Threads verifying passwords (each ~20 ms of a core per check, 19 MiB of memory kept).
    pub password_threads: usize,
    /// Password checks waiting beyond those; more are refused with 429.
    pub password_queue: usize,
    /// Long-polls waiting on one conversation.
    pub long_polls_per_conversation: usize,
    /// Long-polls waiting in all.
    pub long_polls_total: usize,
    /// An agent token unused this long expires (sliding; 12 h).
    pub agent_token_idle: Duration,
    /// An agent token expires this long after sign-in, used or not (30 days).
    pub agent_token_max_age: Duration,
    /// A visitor token unseen this long expires (the widget then starts a new visitor; 90 days).
    pub visitor_token_idle: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        use Action as A;
        use KeyKind as K;
        let rates = HashMap::from([
            // A page view makes a few API calls; an agent's console a few per second at most.
            ((A::Api, K::Ip), Rate::per_minute(1_200, 300)),
            // A session per page load; an office or a school behind one IP loads many pages.
            ((A::Session, K::Ip), Rate::per_minute(120, 60)),
            ((A::Session, K::Project), Rate::per_minute(12_000, 2_000)),
            ((A::Conversation, K::Ip), Rate::per_minute(60, 30)),
            ((A::Conversation, K::Caller), Rate::per_minute(10, 10)),
            ((A::Conversation, K::Project), Rate::per_minute(3_000, 600)),
            ((A::Message, K::Ip), Rate::per_minute(600, 120)),
            ((A::Message, K::Caller), Rate::per_minute(120, 40)),
            ((A::Ephemeral, K::Ip), Rate::per_minute(1_200, 200)),
            ((A::Ephemeral, K::Caller), Rate::per_minute(240, 60)),
            ((A::Offline, K::Ip), Rate::per_minute(10, 5)),
            ((A::Offline, K::Caller), Rate::per_minute(5, 3)),
            ((A::Login, K::Ip), Rate::per_minute(30, 10)),
        ]);
        LimitsConfig {
            rates,
            login_free_failures: 5,
            login_free_failures_account: 50,
            login_backoff: Duration::from_secs(1),
            login_max_backoff: Duration::from_secs(15 * 60),
            password_threads: 2,
            password_queue: 64,
            long_polls_per_conversation: 16,
            long_polls_total: 10_000,
            agent_token_idle: Duration::from_secs(12 * 3_600),
            agent_token_max_age: Duration::from_secs(30 * 86_400),
            visitor_token_idle: Duration::from_secs(90 * 86_400),
        }
    }
}

impl LimitsConfig {
    /// No rate limits (tests of other features, benchmarks).
    pub fn unlimited() -> Self {
        LimitsConfig {
            rates: HashMap::new(),
            login_free_failures: u32::MAX,
            login_free_failures_account: u32::MAX,
            ..LimitsConfig::default()
        }
    }

    /// Applies overrides: comma-separated `action.key=COUNT/PERIOD[:BURST]` or `action.key=off`,
    /// where action is api, session, conversation, message, ephemeral, offline or login; key is
    /// ip, project or caller; PERIOD is like `1s`, `60s`, `1m`, `1h`. `off` alone turns every
    /// rate limit off.
    ///
    /// # Errors
    /// A message naming the part that does not parse.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "off" {
                self.rates.clear();
                continue;
            }
            let bad =
                || format!("limit `{part}`: expected action.key=COUNT/PERIOD[:BURST] or action.key=off");
            let (name, value) = part.split_once('=').ok_or_else(bad)?;
            let (action, kind) = name.split_once('.').ok_or_else(bad)?;
            let action = Action::ALL.into_iter().find(|a| a.name() == action).ok_or_else(bad)?;
            let kind = [KeyKind::Ip, KeyKind::Project, KeyKind::Caller]
                .into_iter()
                .find(|k| k.name() == kind)
                .ok_or_else(bad)?;
            if value == "off" {
                self.rates.remove(&(action, kind));
                continue;
            }
            let (rate, burst) = value.split_once(':').map_or((value, None), |(r, b)| (r, Some(b)));
            let (count, per) = rate.split_once('/').ok_or_else(bad)?;
            let count: u32 = count.parse().map_err(|_| bad())?;
            let per = parse_period(per).ok_or_else(bad)?;
            let burst = match burst {
                Some(b) => b.parse().map_err(|_| bad())?,
                None => count,
            };
            if count == 0 {
                return Err(bad());
            }
            self.rates.insert((action, kind), Rate { count, per, burst });
        }
        Ok(())
    }
}

fn parse_period(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?)).filter(|d| !d.is_zero())
}

/// The limiters of one server.
#[derive(Debug)]
pub struct Limits {
    config: LimitsConfig,
    buckets: HashMap<(Action, KeyKind), DefaultKeyedRateLimiter<Key>>,
    clock: DefaultClock,
    epoch: std::time::Instant,
    login_failures: std::sync::Mutex<HashMap<Key, Failures>>,
    long_polls: AtomicUsize,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    /// When (on the limiter's clock, ms) the next attempt is allowed.
    until_ms: u64,
    last_ms: u64,
}

impl Limits {
    /// Limiters with these settings.
    pub fn new(config: LimitsConfig) -> Self {
        let buckets = config
            .rates
            .iter()
            .filter_map(|(k, rate)| Some((*k, RateLimiter::keyed(rate.quota()?))))
            .collect();
        Limits {
            config,
            buckets,
            clock: DefaultClock::default(),
            epoch: std::time::Instant::now(),
            login_failures: std::sync::Mutex::new(HashMap::new()),
            long_polls: AtomicUsize::new(0),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Counts one `action` against each key's bucket.
    ///
    /// # Errors
    /// 429 `rate_limited` with the wait when one of the buckets is empty.
    pub fn check(&self, action: Action, keys: &[Key]) -> Result<(), AppError> {
        for key in keys {
            let Some(limiter) = self.buckets.get(&(action, key.kind())) else { continue };
            if let Err(not_until) = limiter.check_key(key) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(rate_limited(wait, action));
            }
        }
        Ok(())
    }

    /// Forgets buckets that are full again (run periodically: keeps memory to the clients seen
    /// recently).
    pub fn forget_idle(&self) {
        for limiter in self.buckets.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = self.now_ms();
        let max = ms(self.config.login_max_backoff);
        let mut failures = self.failures();
        failures.retain(|_, f| now.saturating_sub(f.last_ms) < max.max(60_000));
        failures.shrink_to_fit();
    }

    /// How many keys the rate limiters hold now (for the abuse benchmark and tests).
    pub fn tracked_keys(&self) -> usize {
        self.buckets.values().map(governor::RateLimiter::len).sum::<usize>() + self.failures().len()
    }

    fn now_ms(&self) -> u64 {
        ms(self.epoch.elapsed())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.login_failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses a login attempt while an earlier failure's backoff for one of `keys` (the account,
    /// the IP) runs.
    ///
    /// # Errors
    /// 429 `rate_limited` with the wait.
    pub fn login_allowed(&self, keys: &[Key]) -> Result<(), AppError> {
        let now = self.now_ms();
        let failures = self.failures();
        let wait = keys.iter().filter_map(|k| failures.get(k)).map(|f| f.until_ms.saturating_sub(now)).max();
        match wait {
            Some(wait) if wait > 0 => Err(rate_limited(Duration::from_millis(wait), Action::Login)),
            _ => Ok(()),
        }
    }

    /// The backoff keys of a login attempt for `account` from `ip`: the account from this IP,
    /// the IP, and the account from anywhere.
    pub fn login_keys(account: &str, ip: Option<IpAddr>) -> Vec<Key> {
        let mut keys = vec![Key::Caller(format!("login:{account}"))];
        if let Some(ip) = ip {
            let Key::Ip(ip) = Key::ip(ip) else { unreachable!("Key::ip makes an Ip key") };
            keys.push(Key::Caller(format!("login:{account}|{ip}")));
            keys.push(Key::Ip(ip));
        }
        keys
    }

    /// Records a failed login for each key: after the free failures (more for the account as a
    /// whole, the first key), each failure doubles the wait before the next attempt.
    pub fn login_failed(&self, keys: &[Key]) {
        let now = self.now_ms();
        let cfg = &self.config;
        let mut failures = self.failures();
        for (i, key) in keys.iter().enumerate() {
            let free = if i == 0 { cfg.login_free_failures_account } else { cfg.login_free_failures };
            let f = failures.entry(key.clone()).or_insert(Failures { count: 0, until_ms: 0, last_ms: now });
            f.count = f.count.saturating_add(1);
            f.last_ms = now;
            if f.count >= free {
                let doublings = (f.count - free).min(20);
                let backoff = cfg.login_backoff.saturating_mul(1 << doublings).min(cfg.login_max_backoff);
                f.until_ms = now + ms(backoff);
            }
        }
    }

    /// Clears the failures of the account (from anywhere, and from this IP) after a successful
    /// login; the IP's stay: one right password does not clear a spray across accounts.
    pub fn login_succeeded(&self, keys: &[Key]) {
        let mut failures = self.failures();
        for key in keys.iter().filter(|k| matches!(k, Key::Caller(_))) {
            failures.remove(key);
        }
    }

    /// Takes a long-poll slot of `per_conversation` (the number already waiting on that
    /// conversation), or refuses.
    ///
    /// # Errors
    /// 429 when the conversation or the server has as many long-polls as allowed.
    pub fn long_poll(self: &Arc<Self>, per_conversation: usize) -> Result<LongPollSlot, AppError> {
        if per_conversation >= self.config.long_polls_per_conversation {
            return Err(rate_limited(Duration::from_secs(1), Action::Api)
                .with_message("too many long-polls wait on this conversation"));
        }
        let before = self.long_polls.fetch_add(1, Ordering::AcqRel);
        let slot = LongPollSlot(self.clone());
        if before >= self.config.long_polls_total {
            drop(slot);
            return Err(rate_limited(Duration::from_secs(1), Action::Api)
                .with_message("the server has too many long-polls waiting"));
        }
        Ok(slot)
    }

    /// Long-polls waiting now.
    pub fn long_polls(&self) -> usize {
        self.long_polls.load(Ordering::Acquire)
    }
}

/// A long-poll's place in the total; given back on drop.
#[derive(Debug)]
pub struct LongPollSlot(Arc<Limits>);

impl Drop for LongPollSlot {
    fn drop(&mut self) {
        self.0.long_polls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whole milliseconds of a duration (saturating).
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn rate_limited(wait: Duration, action: Action) -> AppError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    AppError::new(ErrorCode::RateLimited, format!("too many {} requests; retry in {secs} s", action.name()))
        .retry_after(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Key {
        Key::ip(s.parse().unwrap_or_else(|_| unreachable!()))
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_with_a_wait() {
        let mut config = LimitsConfig::unlimited();
        config.apply("message.caller=60/1m:3").unwrap_or_else(|e| panic!("{e}"));
        let limits = Limits::new(config);
        let me = [Key::Caller("vis_1".into())];
        for _ in 0..3 {
            assert!(limits.check(Action::Message, &me).is_ok());
        }
        let err = limits.check(Action::Message, &me).err().unwrap_or_else(|| panic!("limited"));
        assert_eq!(err.code, ErrorCode::RateLimited);
        assert_eq!(err.retry_after, Some(1));
        // Another caller, and another action, have their own buckets.
        assert!(limits.check(Action::Message, &[Key::Caller("vis_2".into())]).is_ok());
        assert!(limits.check(Action::Ephemeral, &me).is_ok());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_ne!(ip("10.0.0.1"), ip("10.0.0.2"));
    }

    #[test]
    fn login_backoff_starts_after_the_free_failures_and_doubles() {
        let config = LimitsConfig {
            login_free_failures: 2,
            login_free_failures_account: 2,
            login_backoff: Duration::from_secs(10),
            ..LimitsConfig::unlimited()
        };
        let limits = Limits::new(config);
        let keys = [Key::Caller("ann@test.dev".into()), ip("1.2.3.4")];
        limits.login_failed(&keys);
        assert!(limits.login_allowed(&keys).is_ok());
        limits.login_failed(&keys);
        let e = limits.login_allowed(&keys).err().unwrap_or_else(|| panic!("backoff"));
        assert!(e.retry_after.is_some_and(|s| (9..=10).contains(&s)), "{:?}", e.retry_after);
        limits.login_failed(&keys);
        let e = limits.login_allowed(&keys[..1]).err().unwrap_or_else(|| panic!("backoff"));
        assert!(e.retry_after.is_some_and(|s| (19..=20).contains(&s)), "{:?}", e.retry_after);
        // Success clears the account, not the IP.
        limits.login_succeeded(&keys);
        assert!(limits.login_allowed(&keys[..1]).is_ok());
        assert!(limits.login_allowed(&keys[1..]).is_err());
    }

    #[test]
    fn overrides_parse_and_bad_ones_say_why() {
        let mut c = LimitsConfig::default();
        c.apply("login.ip=off, message.caller=5/1s:9").unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.rates.contains_key(&(Action::Login, KeyKind::Ip)));
        assert_eq!(
            c.rates[&(Action::Message, KeyKind::Caller)],
            Rate { count: 5, per: Duration::from_secs(1), burst: 9 }
        );
        assert!(c.apply("message.nobody=1/1s").is_err());
        assert!(c.apply("message.ip=0/1s").is_err());
        assert!(c.apply("message.ip=3/1y").is_err());
        c.apply("off").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.rates.is_empty());
    }

    #[tokio::test]
    async fn long_poll_slots_are_counted_and_given_back() {
        let limits = Arc::new(Limits::new(LimitsConfig {
            long_polls_total: 2,
            long_polls_per_conversation: 5,
            ..LimitsConfig::unlimited()
        }));
        let a = limits.long_poll(0).unwrap_or_else(|e| panic!("{e}"));
        let _b = limits.long_poll(0).unwrap_or_else(|e| panic!("{e}"));
        assert!(limits.long_poll(0).is_err());
        assert!(limits.long_poll(5).is_err());
        drop(a);
        assert_eq!(limits.long_polls(), 1);
        assert!(limits.long_poll(0).is_ok());
    }
}
