//! Topic -> subscribers, with one serialization per broadcast, optionally shared by several
//! nodes through Redis pub/sub.
//!
//! # Fan-out
//! [`Hub::publish`] builds the broadcast frame once, encodes it at most once per serializer
//! (vsn 1.0.0 objects, vsn 2.0.0 arrays; realtime-js reads text arrays, so 2.0.0 sockets get
//! text too) and hands every subscriber a cheap clone of the same [`Utf8Bytes`]. Each socket has
//! a bounded outgoing queue; a socket whose queue is full is told to close (its client
//! reconnects and catches up by `seq`) instead of letting memory grow. Publishing never blocks
//! and never fails the caller: problems are logged.
//!
//! # Revocation
//! Every subscription remembers the hash of the token that authorized it.
//! [`Hub::revoke_token`] removes at once every subscription authorized by a token (so no
//! broadcast reaches it afterwards, whatever its socket is doing) and tells every socket of the
//! node through [`Hub::revocations`], so that each drops the token from its cache and sends
//! `phx_error` on the channels it authorized. With Redis, revocations travel to the other nodes
//! like events.
//!
//! # Several nodes
//! With [`Hub::with_redis`], every event is also published to one Redis pub/sub channel as
//! `{"node", "topic", "payload"}`, and every node delivers what it receives to its own
//! subscribers. A node delivers its own events locally at once and skips their echo from Redis
//! (by its random node id), so each event reaches each node's subscribers exactly once, and a
//! node's own subscribers keep getting events while Redis is down. Events published on other
//! nodes while this node's Redis subscription is reconnecting are missed; clients recover them
//! by `seq` catch-up, as after any gap.
//!
//! # Redis outages
//! Publishing and subscribing each hold their own connection and re-establish it themselves,
//! retrying every 50 ms rising to [`REDIS_RETRY_MAX`] (not the connection manager's backoff,
//! which left publishing dark for seconds after Redis was back). The subscription is pinged
//! every [`REDIS_PING_EVERY`]; one that does not answer within [`REDIS_TIMEOUT`] (a stalled
//! network path, which TCP does not report) is dropped and made again, along with whatever was
//! stuck in it. Events published meanwhile wait in the node's queue, in order, and go out when
//! the connection is back, pipelined ([`REDIS_BATCH`] per round trip, so that a backlog does not
//! hold newer events back): persisted ones (clients drop what they already have by `seq`), and
//! ephemeral ones (`typing`, `presence:updated`) only while younger than [`EPHEMERAL_MAX_AGE`],
//! the receiver's typing time-to-live: an older one would only show a stale indicator. A
//! receiving node drops them by the same rule, by the publisher's clock (`at`, Unix
//! milliseconds; nodes' clocks are assumed in step, as NTP keeps them).
//!
//! # Long-polls
//! A long-poll (`GET /api/conversations/{id}/events?wait=`) waits on its conversation's topic
//! with [`Hub::wait`]. Wherever the hub delivers a persisted event (one with a `seq`) to this
//! node's subscribers — published on this node, or received from another through Redis — it
//! also wakes the long-polls of this node waiting on that topic, so a write on any node answers
//! them. A waiter is registered only while its [`Waiter`] lives (the request), and a topic's
//! entry goes with its last waiter.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::StreamExt;
use handoff_protocol::phoenix::{codec, Frame, Payload, Vsn, BROADCAST};
use handoff_protocol::timing::typing::TYPING_TTL_MS;
use handoff_protocol::{Channel, Event, EventType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::AbortHandle;

/// Frames a socket may have queued before it counts as too slow and is closed.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// Frames of replies to a socket's own frames queued before the socket stops reading more of
/// its frames (backpressure; replies never make a socket count as too slow).
pub const DEFAULT_REPLY_CAPACITY: usize = 64;

/// Revocations a socket may be behind before it rechecks all its tokens instead.
const REVOCATION_QUEUE: usize = 256;

/// Events waiting to be published to Redis before new ones are dropped (and logged).
const REDIS_QUEUE: usize = 8192;

/// How old an ephemeral event (`typing`, `presence:updated`) may be and still be delivered
/// through Redis: the receiver's typing time-to-live.
pub const EPHEMERAL_MAX_AGE: Duration = Duration::from_millis(TYPING_TTL_MS);

/// How long a Redis connection attempt, a publish or a subscription's ping may take before the
/// connection counts as lost.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a node checks that its Redis subscription still answers.
pub const REDIS_PING_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to reach Redis again.
pub const REDIS_RETRY_MAX: Duration = Duration::from_millis(500);

/// Events published to Redis in one pipeline at most.
pub const REDIS_BATCH: usize = 256;

/// The first wait before reaching Redis again.
const REDIS_RETRY_MIN: Duration = Duration::from_millis(50);

/// Identifies one WebSocket connection.
pub type SocketId = u64;

/// Why the hub could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Redis refused the URL, the connection or the subscription.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A socket's outgoing queue as the socket and the hub share it: one ordered queue, with two
/// budgets. Fan-out broadcasts take a place of `queue_capacity` without waiting and close the
/// socket when there is none (it cannot keep up); replies to the socket's own frames wait for a
/// place of their own budget (backpressure: the socket stops reading until its writer drains),
/// so a client that reads everything never counts as too slow, however fast it sends. A frame
/// keeps its place until the writer has written it.
///
/// Small when idle (one allocation of about 200 bytes; the queue's storage exists only while
/// frames wait), since a server holds one per open socket.
#[derive(Clone, Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    queue_capacity: usize,
    reply_capacity: usize,
    /// Wakes the writer: a frame was queued, or the outbox closed.
    writer: Notify,
    /// Wakes those waiting for room for a reply, or for the socket to be told to close.
    room: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    /// Frames not yet taken by the writer.
    frames: VecDeque<Message>,
    /// Broadcasts and replies among `frames`.
    queued: (usize, usize),
    /// Broadcasts and replies the writer has taken and not yet written.
    writing: (usize, usize),
    /// The socket was told to close.
    killed: bool,
    /// No more frames come: the writer stops once it has written what is queued.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's end of an [`Outbox`]: takes the queued frames in order, a batch at a time.
#[derive(Debug)]
pub struct Outgoing {
    shared: Arc<Shared>,
}

impl Outgoing {
    /// Moves every queued frame, in order, into `batch` (which must be empty), waiting while
    /// there is none. `false` once the outbox is closed and everything queued was taken. The
    /// frames keep their places in the budgets until [`Outgoing::written`].
    pub async fn next_batch(&mut self, batch: &mut VecDeque<Message>) -> bool {
        debug_assert!(batch.is_empty());
        loop {
            {
                let mut q = self.shared.lock();
                if !q.frames.is_empty() {
                    // The queue gets the writer's empty buffer: its storage is reused.
                    std::mem::swap(&mut q.frames, batch);
                    q.writing = (q.writing.0 + q.queued.0, q.writing.1 + q.queued.1);
                    q.queued = (0, 0);
                    return true;
                }
                if q.closed {
                    return false;
                }
            }
            // A frame queued since the check left a permit: no wake-up is lost.
            self.shared.writer.notified().await;
        }
    }

    /// The frames of the last batch are written: their places are free again. A buffer that
    /// grew for a burst is given back (`batch` is the writer's buffer, now empty).
    pub fn written(&mut self, batch: &mut VecDeque<Message>) {
        if batch.capacity() > 16 {
            *batch = VecDeque::new();
        }
        let replies = {
            let mut q = self.shared.lock();
            let replies = q.writing.1;
            q.writing = (0, 0);
            replies
        };
        if replies > 0 {
            self.shared.room.notify_waiters();
        }
    }
}

impl Outbox {
    /// An outbox holding at most `queue_capacity` broadcasts and `reply_capacity` replies, and
    /// the writer's end.
    pub fn new(queue_capacity: usize, reply_capacity: usize) -> (Outbox, Outgoing) {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            queue_capacity: queue_capacity.max(1),
            reply_capacity: reply_capacity.max(1),
            writer: Notify::new(),
            room: Notify::new(),
        });
        (Outbox { shared: shared.clone() }, Outgoing { shared })
    }

    /// Queues a fan-out frame without waiting. `false` when the queue is full: the socket is
    /// told to close.
    pub fn broadcast(&self, msg: Message) -> bool {
        {
            let mut q = self.shared.lock();
            // A closed outbox means the socket is going away and unsubscribes itself.
            if q.closed {
                return true;
            }
            if q.queued.0 + q.writing.0 >= self.shared.queue_capacity {
                drop(q);
                self.kill();
                return false;
            }
            q.frames.push_back(msg);
            q.queued.0 += 1;
        }
        self.shared.writer.notify_one();
        true
    }

    /// Queues a reply, waiting for room. `false` when the socket is closing.
    pub async fn reply(&self, msg: Message) -> bool {
        loop {
            // Created before the check: `notify_waiters` reaches it even before it is polled.
            let room = self.shared.room.notified();
            {
                let mut q = self.shared.lock();
                if q.killed || q.closed {
                    return false;
                }
                if q.queued.1 + q.writing.1 < self.shared.reply_capacity {
                    q.frames.push_back(msg);
                    q.queued.1 += 1;
                    drop(q);
                    self.shared.writer.notify_one();
                    return true;
                }
            }
            room.await;
        }
    }

    /// No more frames: the writer stops once it has written what is queued.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.writer.notify_one();
        self.shared.room.notify_waiters();
    }

    /// Tells the socket to close.
    pub fn kill(&self) {
        self.shared.lock().killed = true;
        self.shared.room.notify_waiters();
    }

    /// Whether the socket was told to close.
    pub fn is_killed(&self) -> bool {
        self.shared.lock().killed
    }

    /// Resolves once the socket is told to close.
    pub async fn killed(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches it even before it is polled.
            let notified = self.shared.room.notified();
            if self.is_killed() {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct Subscriber {
    vsn: Vsn,
    outbox: Outbox,
    /// The hash of the token that authorized the subscription.
    token_hash: Option<Arc<str>>,
}

/// The subscribers of this node.
#[derive(Debug)]
struct Local {
    topics: RwLock<HashMap<String, HashMap<SocketId, Subscriber>>>,
    revocations: broadcast::Sender<Arc<str>>,
    /// Long-polls of this node, by wire topic; an entry lives while one of its [`Waiter`]s does.
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            topics: RwLock::default(),
            revocations: broadcast::channel(REVOCATION_QUEUE).0,
            waiters: Mutex::default(),
        }
    }
}

impl Local {
    /// Wakes this node's long-polls waiting on a topic (a persisted event was published on it).
    fn wake(&self, topic: &str) {
        let notify = self.waiters.lock().unwrap_or_else(PoisonError::into_inner).get(topic).cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Delivers a broadcast frame to the topic's subscribers, encoding it at most once per
    /// serializer.
    fn deliver(&self, frame: &Frame, except: Option<SocketId>) {
        let mut encoded: [Option<Utf8Bytes>; 2] = [None, None];
        let mut too_slow = Vec::new();
        {
            let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
            let Some(subs) = topics.get(&frame.topic) else { return };
            for (&socket, sub) in subs {
                if Some(socket) == except {
                    continue;
                }
                let slot = &mut encoded[usize::from(sub.vsn == Vsn::V2)];
                let bytes = match slot {
                    Some(bytes) => bytes.clone(),
                    None => match codec::encode_text(sub.vsn, frame) {
                        Ok(text) => slot.insert(Utf8Bytes::from(text)).clone(),
                        Err(e) => {
                            tracing::error!(error = %e, topic = frame.topic, "cannot encode broadcast");
                            return;
                        }
                    },
                };
                if !sub.outbox.broadcast(Message::Text(bytes)) {
                    tracing::warn!(socket, topic = frame.topic, "socket cannot keep up; closing it");
                    too_slow.push(socket);
                }
            }
        }
        if !too_slow.is_empty() {
            let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(subs) = topics.get_mut(&frame.topic) {
                for socket in too_slow {
                    subs.remove(&socket);
                }
                if subs.is_empty() {
                    topics.remove(&frame.topic);
                }
            }
        }
    }

    /// Removes every subscription authorized by the token and tells this node's sockets.
    fn revoke(&self, token_hash: &str) {
        let removed = {
            let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
            let before: usize = topics.values().map(HashMap::len).sum();
            for subs in topics.values_mut() {
                subs.retain(|_, sub| sub.token_hash.as_deref() != Some(token_hash));
            }
            topics.retain(|_, subs| !subs.is_empty());
            before - topics.values().map(HashMap::len).sum::<usize>()
        };
        tracing::debug!(removed, "token revoked");
        // No receiver: no socket on this node.
        let _ = self.revocations.send(Arc::from(token_hash));
    }
}

/// What travels through Redis: an event (`topic` and `payload`) or a revocation (`revoke`).
#[derive(Serialize, Deserialize)]
struct WireEvent {
    /// The publishing node, so that it can skip its own echo.
    node: String,
    /// The wire topic, `realtime:<channel>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    /// The broadcast payload, `{"type": "broadcast", "event", "payload"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<Value>,
    /// The hash of a revoked token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoke: Option<String>,
    /// When it was published, in Unix milliseconds (absent from older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<u64>,
}

/// An event or revocation waiting to go to Redis.
#[derive(Debug)]
struct Queued {
    bytes: Vec<u8>,
    /// When it was queued, and whether it is ephemeral (dropped once older than
    /// [`EPHEMERAL_MAX_AGE`]).
    since: Instant,
    ephemeral: bool,
}

impl Queued {
    fn is_stale(&self) -> bool {
        self.ephemeral && self.since.elapsed() > EPHEMERAL_MAX_AGE
    }
}

#[derive(Debug)]
struct RedisLink {
    node: String,
    tx: mpsc::Sender<Queued>,
}

impl RedisLink {
    /// Queues an event or revocation for Redis, stamped with the time; never blocks.
    fn share(&self, mut wire: WireEvent) {
        wire.at = Some(unix_ms());
        let ephemeral = wire.payload.as_ref().is_some_and(is_ephemeral);
        match serde_json::to_vec(&wire) {
            Ok(bytes) => {
                if let Err(e) = self.tx.try_send(Queued { bytes, since: Instant::now(), ephemeral }) {
                    tracing::warn!(error = %e, topic = ?wire.topic, "redis publish queue full; not shared");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot serialize for redis"),
        }
    }
}

/// The fan-out hub: topic -> subscribed sockets. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Hub {
    local: Arc<Local>,
    next_socket: AtomicU64,
    redis: Option<RedisLink>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Hub {
    /// A hub that fans out within this process only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub that also shares every event with the other nodes through the Redis pub/sub
    /// `channel` (for example `handoff:realtime`; nodes of one deployment use the same one).
    /// Returns once this node is subscribed; afterwards a lost connection is re-established in
    /// the background with backoff, and logged. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`HubError::Redis`] when the URL is invalid or the first connection or subscription
    /// fails.
    pub async fn with_redis(url: &str, channel: impl Into<String>) -> Result<Hub, HubError> {
        let channel = channel.into();
        let client = redis::Client::open(url)?;
        let subscription = subscribe(&client, &channel).await?;
        let publisher = connect(&client).await?;
        let node = format!("{:016x}{:016x}", rand_u64(), rand_u64());
        let local = Arc::new(Local::default());
        let (tx, rx) = mpsc::channel(REDIS_QUEUE);
        let receiver = tokio::spawn(receive(
            subscription,
            client.clone(),
            channel.clone(),
            node.clone(),
            Arc::downgrade(&local),
        ));
        let sender = tokio::spawn(send(rx, client, publisher, channel.clone()));
        tracing::info!(channel, node, "realtime hub fans out through redis");
        Ok(Hub {
            local,
            next_socket: AtomicU64::new(0),
            redis: Some(RedisLink { node, tx }),
            tasks: vec![receiver.abort_handle(), sender.abort_handle()],
        })
    }

    /// Whether events are shared with other nodes through Redis.
    pub fn is_distributed(&self) -> bool {
        self.redis.is_some()
    }

    /// A fresh socket id.
    pub fn socket_id(&self) -> SocketId {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }

    /// Subscribes a socket to a wire topic (replacing an earlier subscription of the same
    /// socket). `outbox` is the socket's outgoing queue (a socket whose queue is full is told to
    /// close); `token_hash` is the hash of the token that authorized the subscription (see
    /// [`Hub::revoke_token`]).
    pub fn subscribe(
        &self,
        topic: &str,
        socket: SocketId,
        vsn: Vsn,
        outbox: Outbox,
        token_hash: Option<&str>,
    ) {
        let mut topics = self.local.topics.write().unwrap_or_else(PoisonError::into_inner);
        topics
            .entry(topic.to_owned())
            .or_default()
            .insert(socket, Subscriber { vsn, outbox, token_hash: token_hash.map(Arc::from) });
    }

    /// Revokes a token on every node: each subscription it authorized is removed at once, and
    /// every socket holding it (joined or cached) is told through [`Hub::revocations`].
    /// `token_hash` is [`crate::crypto::token_hash`] of the token. Never blocks.
    pub fn revoke_token(&self, token_hash: &str) {
        self.local.revoke(token_hash);
        if let Some(redis) = &self.redis {
            redis.share(WireEvent {
                node: redis.node.clone(),
                topic: None,
                payload: None,
                revoke: Some(token_hash.into()),
                at: None,
            });
        }
    }

    /// The hashes of tokens revoked from now on (on any node), for a socket to drop them.
    pub fn revocations(&self) -> broadcast::Receiver<Arc<str>> {
        self.local.revocations.subscribe()
    }

    /// Removes a socket's subscription to a topic; a topic left without subscribers is removed.
    pub fn unsubscribe(&self, topic: &str, socket: SocketId) {
        let mut topics = self.local.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(subs) = topics.get_mut(topic) {
            subs.remove(&socket);
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// How many sockets of this node are subscribed to a topic.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.local.topics.read().unwrap_or_else(PoisonError::into_inner).get(topic).map_or(0, HashMap::len)
    }

    /// How many topics have subscribers on this node.
    pub fn topics(&self) -> usize {
        self.local.topics.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Registers a long-poll of this node on a channel until the returned [`Waiter`] is dropped:
    /// [`Waiter::notified`] resolves when a persisted event (one with a `seq`) is published on
    /// the channel, on this node or, with Redis, on any other.
    pub fn wait(&self, channel: &Channel) -> Waiter<'_> {
        let topic = channel.topic();
        let notify = self
            .local
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.clone())
            .or_default()
            .clone();
        Waiter { local: &self.local, topic, notify }
    }

    /// How many long-polls of this node wait on a channel now.
    pub fn waiting(&self, channel: &Channel) -> usize {
        let waiters = self.local.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        // The map holds one reference, each waiter one.
        waiters.get(&channel.topic()).map_or(0, |n| Arc::strong_count(n) - 1)
    }

    /// How many channels have long-polls of this node waiting on them.
    pub fn waited_channels(&self) -> usize {
        self.local.waiters.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Publishes an event on a channel, to every subscriber on every node. Fire-and-forget:
    /// never blocks, never fails the caller.
    pub fn publish(&self, channel: &Channel, event: &Event) {
        self.publish_except(channel, event, None);
    }

    /// Publishes, skipping one socket of this node (a client broadcast with `self: false`).
    pub fn publish_except(&self, channel: &Channel, event: &Event, except: Option<SocketId>) {
        let frame = Frame::broadcast(&channel.topic(), event);
        if event.seq().is_some() {
            self.local.wake(&frame.topic);
        }
        self.local.deliver(&frame, except);
        if let Some(redis) = &self.redis {
            let Payload::Json(payload) = frame.payload else { return };
            redis.share(WireEvent {
                node: redis.node.clone(),
                topic: Some(frame.topic),
                payload: Some(payload),
                revoke: None,
                at: None,
            });
        }
    }
}

/// A long-poll's registration on a topic (see [`Hub::wait`]); the topic's entry goes with its
/// last waiter (on answer, timeout or a client that hung up).
#[derive(Debug)]
pub struct Waiter<'a> {
    local: &'a Local,
    topic: String,
    notify: Arc<Notify>,
}

impl Waiter<'_> {
    /// Resolves at the next persisted event on the topic. Created before the caller reads the
    /// state it waits on, it also sees an event published between that read and its `.await`.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiters = self.local.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and ours: nobody else waits.
        if waiters.get(&self.topic).is_some_and(|n| Arc::ptr_eq(n, &self.notify) && Arc::strong_count(n) <= 2)
        {
            waiters.remove(&self.topic);
        }
    }
}

/// Whether a broadcast payload from Redis (`{"type", "event", "payload"}`) carries a persisted
/// conversation event, one with a `seq` (as [`Event::seq`] tells for a typed event).
fn has_seq(payload: &Value) -> bool {
    payload
        .get("event")
        .and_then(Value::as_str)
        .and_then(|name| name.parse::<EventType>().ok())
        .is_some_and(|t| t.seq_path().is_some())
}

/// Whether a broadcast payload from Redis (`{"type", "event", "payload"}`) carries an ephemeral
/// event, one not worth delivering once older than [`EPHEMERAL_MAX_AGE`]: `typing` or
/// `presence:updated`.
fn is_ephemeral(payload: &Value) -> bool {
    payload
        .get("event")
        .and_then(Value::as_str)
        .and_then(|name| name.parse::<EventType>().ok())
        .is_some_and(|t| matches!(t, EventType::Typing | EventType::PresenceUpdated))
}

fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::warn!(error = %e, "no OS randomness for the node id; using the clock");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        return u64::try_from(nanos.as_nanos() & u128::from(u64::MAX)).unwrap_or(0)
            ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
}

/// A connection for publishing, given up after [`REDIS_TIMEOUT`].
async fn connect(client: &redis::Client) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// A subscription to `channel`, given up after [`REDIS_TIMEOUT`].
async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    tokio::time::timeout(REDIS_TIMEOUT, attempt).await.unwrap_or_else(|_| {
        Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis subscribe timed out",
        )))
    })
}

/// Delivers one message from Redis to this node's subscribers (skipping its own echo and
/// ephemeral events too old to matter).
fn handle(local: &Local, node: &str, channel: &str, bytes: &[u8]) {
    match serde_json::from_slice::<WireEvent>(bytes) {
        Ok(wire) if wire.node == node => {}
        Ok(WireEvent { revoke: Some(hash), .. }) => local.revoke(&hash),
        Ok(WireEvent { topic: Some(topic), payload: Some(payload), at, .. }) => {
            let age = at.map(|at| Duration::from_millis(unix_ms().saturating_sub(at)));
            if age.is_some_and(|age| age > EPHEMERAL_MAX_AGE) && is_ephemeral(&payload) {
                tracing::debug!(topic, ?age, "stale ephemeral event from redis dropped");
                return;
            }
            if has_seq(&payload) {
                local.wake(&topic);
            }
            let frame = Frame {
                join_ref: None,
                r#ref: None,
                topic,
                event: BROADCAST.to_owned(),
                payload: Payload::Json(payload),
            };
            local.deliver(&frame, None);
        }
        Ok(_) => tracing::warn!(channel, "message from redis without event nor revocation ignored"),
        Err(e) => tracing::warn!(error = %e, channel, "undecodable message from redis ignored"),
    }
}

/// Subscribes again, retrying every 50 ms rising to [`REDIS_RETRY_MAX`]; `None` once the hub is
/// gone.
async fn resubscribe(
    client: &redis::Client,
    channel: &str,
    local: &Weak<Local>,
) -> Option<redis::aio::PubSub> {
    let lost = Instant::now();
    let mut backoff = REDIS_RETRY_MIN;
    loop {
        if local.strong_count() == 0 {
            return None;
        }
        match subscribe(client, channel).await {
            Ok(pubsub) => {
                tracing::info!(channel, after = ?lost.elapsed(), "redis subscription restored");
                return Some(pubsub);
            }
            Err(e) => {
                tracing::debug!(error = %e, channel, "redis resubscribe failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(REDIS_RETRY_MAX);
            }
        }
    }
}

/// Delivers what other nodes publish. The subscription is pinged every [`REDIS_PING_EVERY`];
/// when it ends or stops answering, it is made again, retrying every 50 ms rising to
/// [`REDIS_RETRY_MAX`].
async fn receive(
    subscription: redis::aio::PubSub,
    client: redis::Client,
    channel: String,
    node: String,
    local: Weak<Local>,
) {
    let mut subscription = Some(subscription);
    loop {
        let pubsub = if let Some(pubsub) = subscription.take() {
            pubsub
        } else {
            let Some(pubsub) = resubscribe(&client, &channel, &local).await else { return };
            pubsub
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(REDIS_PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        tracing::warn!(channel, "redis subscription lost; reconnecting");
                        break;
                    };
                    let Some(local) = local.upgrade() else { return };
                    handle(&local, &node, &channel, msg.get_payload_bytes());
                }
                _ = ping.tick() => {
                    let answer = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(answer, Ok(Ok(_))) {
                        tracing::warn!(channel, "redis subscription does not answer; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// Publishes this node's events to Redis, in order, as many as are queued in one pipeline (at
/// most [`REDIS_BATCH`]: one round trip, so a backlog after an outage goes out at once instead
/// of holding newer events behind it). When the connection fails, the batch is tried again on a
/// new one (made every 50 ms rising to [`REDIS_RETRY_MAX`]) while later events wait; ephemeral
/// events older than [`EPHEMERAL_MAX_AGE`] are dropped instead. A batch that failed halfway may
/// reach other nodes twice: clients drop persisted events they have by `seq`.
async fn send(
    mut rx: mpsc::Receiver<Queued>,
    client: redis::Client,
    conn: redis::aio::MultiplexedConnection,
    channel: String,
) {
    let mut conn = Some(conn);
    let mut lost: Option<(Instant, usize)> = None;
    let mut backoff = REDIS_RETRY_MIN;
    let mut batch = Vec::with_capacity(REDIS_BATCH);
    while rx.recv_many(&mut batch, REDIS_BATCH).await > 0 {
        loop {
            let before = batch.len();
            batch.retain(|item| !item.is_stale());
            if let Some((_, dropped)) = &mut lost {
                *dropped += before - batch.len();
            }
            if batch.is_empty() {
                break;
            }
            let Some(c) = conn.as_mut() else {
                match connect(&client).await {
                    Ok(c) => {
                        conn = Some(c);
                        backoff = REDIS_RETRY_MIN;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, channel, "redis reconnect failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(REDIS_RETRY_MAX);
                    }
                }
                continue;
            };
            let mut pipe = redis::pipe();
            for item in &batch {
                pipe.cmd("PUBLISH").arg(&channel).arg(&item.bytes).ignore();
            }
            match pipe.query_async::<()>(c).await {
                Ok(()) => {
                    if let Some((since, dropped)) = lost.take() {
                        let after = since.elapsed();
                        tracing::info!(channel, ?after, stale_dropped = dropped, "redis publishing restored");
                    }
                    break;
                }
                Err(e) => {
                    if lost.is_none() {
                        tracing::warn!(error = %e, channel, "redis publish failed; reconnecting");
                        lost = Some((Instant::now(), 0));
                    }
                    conn = None;
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The text of every frame queued in an outbox (which this closes).
    async fn texts(outbox: &Outbox, out: &mut Outgoing) -> Vec<Utf8Bytes> {
        outbox.close();
        let mut batch = VecDeque::new();
        let mut texts = Vec::new();
        while out.next_batch(&mut batch).await {
            for msg in batch.drain(..) {
                match msg {
                    Message::Text(text) => texts.push(text),
                    other => panic!("not a text frame: {other:?}"),
                }
            }
            out.written(&mut batch);
        }
        texts
    }

    // One broadcast is encoded once per serializer: every subscriber of a serializer is handed
    // the same bytes (one buffer, not equal copies), and the socket left out gets nothing.
    #[tokio::test]
    async fn a_broadcast_is_encoded_once_per_serializer_and_shared() {
        let hub = Hub::new();
        let channel: Channel = "conversation:c1".parse().unwrap();
        let topic = channel.topic();
        let event: Event = serde_json::from_str(
            r#"{"event":"typing","payload":{"conversation_id":"c1",
                "actor":{"kind":"agent","id":"a1","name":"Ann"},"is_typing":true}}"#,
        )
        .unwrap();
        let mut rxs = Vec::new();
        for i in 0..6u8 {
            let (outbox, out) = Outbox::new(4, 4);
            let vsn = if i % 2 == 0 { Vsn::V1 } else { Vsn::V2 };
            let socket = hub.socket_id();
            hub.subscribe(&topic, socket, vsn, outbox.clone(), None);
            rxs.push((socket, vsn, outbox, out));
        }
        let except = rxs[5].0;
        hub.publish_except(&channel, &event, Some(except));
        let frame = Frame::broadcast(&topic, &event);
        let mut firsts: [Option<Utf8Bytes>; 2] = [None, None];
        for (socket, vsn, outbox, out) in &mut rxs {
            let got = texts(outbox, out).await;
            if *socket == except {
                assert!(got.is_empty());
                continue;
            }
            let [text] = got.as_slice() else { panic!("{} frames", got.len()) };
            assert_eq!(text.as_str(), codec::encode_text(*vsn, &frame).unwrap());
            let first = firsts[usize::from(*vsn == Vsn::V2)].get_or_insert_with(|| text.clone());
            assert_eq!(first.as_str().as_ptr(), text.as_str().as_ptr(), "{vsn:?} frames are copies");
        }
        let [Some(v1), Some(v2)] = firsts else { panic!("a serializer got nothing") };
        assert_ne!(v1.as_str(), v2.as_str());
    }
}
