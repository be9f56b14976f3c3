//! The Phoenix WebSocket endpoint, as Supabase Realtime speaks it (DESIGN section 2).
//!
//! # Safe on the open internet
//! - The upgrade needs `apikey` = a project's public key (else 401, the JSON error body) and a
//!   place under the client IP's socket cap (else 429 `rate_limited` with `Retry-After`).
//! - Joins are only for that project (`project_mismatch`); customer joins also need the
//!   upgrade's `Origin` on the project's allow-list (`origin_not_allowed`); at most
//!   `max_channels` channels (`too_many_channels`).
//! - A socket without a channel joined with a valid token after `join_timeout`, or sending
//!   frames beyond its rate (governor), is closed with code 1008 and a reason.
//! - Replies to the client's own frames wait for room in the outgoing queue (the socket stops
//!   reading meanwhile), so only fan-out can find a client too slow (see [`Outbox`]).
//! - A token revoked through [`Hub::revoke_token`] loses its channels at once (`phx_error`),
//!   and the socket forgets it, so a rejoin with it is refused.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use handoff_protocol::api::ErrorCode;
use handoff_protocol::channel::{may_join, Principal, PHOENIX_TOPIC};
use handoff_protocol::phoenix::{codec, Frame, FrameKind, Vsn};
use handoff_protocol::{Channel, Event};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use super::hub::{Hub, Outbox, Outgoing, SocketId, DEFAULT_QUEUE_CAPACITY, DEFAULT_REPLY_CAPACITY};
use super::{RealtimeBackend, SocketProject};
use crate::error::AppError;
use crate::net::TrustedProxies;

/// Bytes read from a socket at a time: the read buffer every open socket keeps (tungstenite
/// allocates it whole and grows it only for a larger frame). Client frames are small (joins,
/// heartbeats, typing: a few hundred bytes).
const READ_BUFFER: usize = 1024;

/// Bytes of frames gathered before they are written: a burst goes out in writes this large.
/// The buffer grows only when used (a few hundred bytes for one broadcast).
const WRITE_BUFFER: usize = 4096;

/// The close code of a socket closed for breaking a rule (RFC 6455 "policy violation").
const POLICY_VIOLATION: u16 = 1008;

/// Join error reason: a customer token on a socket whose `Origin` the project does not allow.
pub const ORIGIN_NOT_ALLOWED: &str = "origin_not_allowed";
/// Join error reason: the socket already has `max_channels` channels.
pub const TOO_MANY_CHANNELS: &str = "too_many_channels";
/// Join error reason: the token belongs to another project than the socket's `apikey`.
pub const PROJECT_MISMATCH: &str = "project_mismatch";
/// Close reason: more frames than the socket's rate limit allows.
pub const RATE_LIMITED: &str = "rate_limited";
/// Close reason: no channel joined with a valid token within `join_timeout`.
pub const JOIN_TIMEOUT: &str = "join_timeout";

/// Settings of the realtime endpoint. The defaults are generous: a real page (one socket per
/// tab, a few channels, a heartbeat every 25 s) never reaches them.
#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    /// A socket that sends nothing for this long is closed (60 s; realtime-js beats every 25 s).
    pub idle_timeout: Duration,
    /// Fan-out broadcasts queued per socket before it counts as too slow and is closed (256).
    pub queue_capacity: usize,
    /// Replies to a socket's own frames queued before the server stops reading its frames until
    /// the client has read them (64). Replies never make a socket count as too slow.
    pub reply_capacity: usize,
    /// How long a join without a token waits for its `access_token` push before the server
    /// sends `phx_error`, which makes realtime-js rejoin (after 1 s) with the token it has by
    /// then in the join payload (1 s). realtime-js with an `accessToken` callback sends its
    /// first join before the callback resolves and, when the token was there before the join
    /// reply, never pushes it for that join: such a client is served about 2 s after joining.
    pub token_grace: Duration,
    /// How often a socket's tokens are checked again (on a heartbeat, once this long has passed
    /// since the last check): a token revoked since the join (agent logout) stops receiving;
    /// its channels get `phx_error`, and the client's rejoin is refused (60 s). Revocations
    /// published through the hub ([`Hub::revoke_token`]) act at once; this is the backstop.
    pub token_recheck: Duration,
    /// A socket that has not joined a channel with a valid token this long after it opened is
    /// closed (close code 1008, reason `join_timeout`) (10 s).
    pub join_timeout: Duration,
    /// Channels one socket may have joined at once; the join beyond gets the error reply
    /// `too_many_channels` (100).
    pub max_channels: usize,
    /// Open sockets per client IP; the upgrade beyond is refused with 429 `rate_limited` and
    /// `Retry-After` (200). The client IP is the peer's, or from `X-Forwarded-For` when the peer
    /// is one of `trusted_proxies`.
    pub max_sockets_per_ip: usize,
    /// Frames a socket may send per second, sustained (50).
    pub frames_per_second: u32,
    /// Frames a socket may send in one burst (2,000: a client may send 1,000 heartbeats at once
    /// and be served). A socket over the limit is closed with close code 1008, reason
    /// `rate_limited`.
    pub frame_burst: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client (copied from the server's
    /// `Config::trusted_proxies`).
    pub trusted_proxies: TrustedProxies,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            idle_timeout: Duration::from_secs(60),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            reply_capacity: DEFAULT_REPLY_CAPACITY,
            token_grace: Duration::from_secs(1),
            token_recheck: Duration::from_secs(60),
            join_timeout: Duration::from_secs(10),
            max_channels: 100,
            max_sockets_per_ip: 200,
            frames_per_second: 50,
            frame_burst: 2_000,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

#[derive(Clone)]
struct Realtime {
    hub: Arc<Hub>,
    backend: Arc<dyn RealtimeBackend>,
    config: RealtimeConfig,
    /// Open sockets per client IP (entries removed at zero).
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The router serving `GET /realtime/v1/websocket?apikey=...&vsn=2.0.0`.
pub fn routes(hub: Arc<Hub>, backend: Arc<dyn RealtimeBackend>, config: RealtimeConfig) -> Router {
    Router::new().route("/realtime/v1/websocket", get(upgrade)).with_state(Realtime {
        hub,
        backend,
        config,
        per_ip: Arc::default(),
    })
}

#[derive(Deserialize)]
struct Params {
    vsn: Option<String>,
    apikey: Option<String>,
}

/// One socket counted against its client IP; uncounted when dropped (also when the upgrade
/// never completes).
struct IpSlot {
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl IpSlot {
    fn take(rt: &Realtime, ip: IpAddr) -> Option<IpSlot> {
        let mut map = rt.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= rt.config.max_sockets_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot { ip, per_ip: rt.per_ip.clone() })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn upgrade(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    Query(params): Query<Params>,
    State(rt): State<Realtime>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let vsn = match Vsn::from_param(params.vsn.as_deref()) {
        Ok(vsn) => vsn,
        Err(e) => return AppError::bad_request(e.to_string()).into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return AppError::bad_request(e.body_text()).into_response(),
    };
    let Some(key) = params.apikey.filter(|k| !k.is_empty()) else {
        return AppError::new(
            ErrorCode::Unauthorized,
            "the apikey query parameter (the project's public key) is required",
        )
        .into_response();
    };
    // Without connect info (a router served without it) there is no peer to count.
    let mut slot = None;
    if let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<SocketAddr>>() {
        let ip = crate::net::client_ip(&headers, *peer, &rt.config.trusted_proxies);
        slot = IpSlot::take(&rt, ip);
        if slot.is_none() {
            tracing::debug!(%ip, "too many sockets from one address; upgrade refused");
            let mut resp = AppError::new(ErrorCode::RateLimited, "too many open sockets from this address")
                .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return resp;
        }
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let Some(project) = rt.backend.project_by_key(&key, origin).await else {
        return AppError::new(ErrorCode::Unauthorized, "the apikey is not a project's public key")
            .into_response();
    };
    // Small buffers: an idle socket should cost a few KiB, not tungstenite's default 128 KiB
    // read buffer. Client frames are small (joins, heartbeats, typing), so cap them too.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(handoff_protocol::api::MAX_REQUEST_BYTES)
        .max_frame_size(handoff_protocol::api::MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| run(socket, vsn, rt, project, slot))
}

/// One joined topic on a socket.
struct Joined {
    join_ref: Option<String>,
    channel: Channel,
    /// The token the join is authorized with; `None` while waiting for an `access_token` push.
    token: Option<String>,
    /// Its hash, as revocations name it.
    token_hash: Option<String>,
    /// For a join still without a token: when it gets `phx_error`.
    deadline: Option<Instant>,
    principal: Principal,
    ack: bool,
    echo: bool,
}

struct Conn {
    id: SocketId,
    vsn: Vsn,
    rt: Realtime,
    project: SocketProject,
    outbox: Outbox,
    joined: HashMap<String, Joined>,
    /// (Token, its hash, who it is): a list, grown one entry at a time: a socket mostly holds one token, and a map's
    /// smallest table would cost every idle socket about 400 bytes.
    principals: Vec<(String, String, Principal)>,
    /// When the tokens of the joined channels were last checked.
    checked: Instant,
    /// Until a channel is joined with a valid token: when the socket is closed.
    join_deadline: Option<Instant>,
    /// Agents with a channel joined with their token, as last told to the backend.
    agents: Vec<handoff_protocol::AgentId>,
}

/// Why the server closes a socket with a close frame.
type CloseReason = (u16, &'static str);

/// Serves one upgraded socket: a writer task draining its [`Outbox`] and the returned future,
/// which reads the client's frames.
///
/// Every open socket holds this future (in its task) while idle, so it is kept small: the socket
/// is split before the future is made (an `async fn` would keep its `WebSocket` argument for
/// good), one timer serves every deadline, and the rare, larger steps (handling a frame,
/// revocations, closing) are boxed while they run.
fn run(
    socket: WebSocket,
    vsn: Vsn,
    rt: Realtime,
    project: SocketProject,
    slot: Option<IpSlot>,
) -> impl std::future::Future<Output = ()> + Send {
    let (sink, stream) = socket.split();
    let (outbox, out) = Outbox::new(rt.config.queue_capacity, rt.config.reply_capacity);
    let writer = tokio::spawn(write(sink, out));
    let quota = Quota::per_second(NonZeroU32::new(rt.config.frames_per_second).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(rt.config.frame_burst).unwrap_or(NonZeroU32::MIN));
    let limiter = RateLimiter::direct(quota);
    let revocations = rt.hub.revocations();
    let conn = Conn {
        id: rt.hub.socket_id(),
        vsn,
        join_deadline: Some(Instant::now() + rt.config.join_timeout),
        rt,
        project,
        outbox,
        joined: HashMap::new(),
        principals: Vec::new(),
        checked: Instant::now(),
        agents: Vec::new(),
    };
    serve(conn, stream, revocations, limiter, writer, slot)
}

/// Writes what is queued, a batch at a time: frames queued together (a burst) go out in as few
/// writes as the write buffer allows, with one flush.
async fn write(mut sink: futures_util::stream::SplitSink<WebSocket, Message>, mut out: Outgoing) {
    let mut batch = VecDeque::new();
    'write: while out.next_batch(&mut batch).await {
        while let Some(msg) = batch.pop_front() {
            let close = matches!(msg, Message::Close(_));
            if sink.feed(msg).await.is_err() {
                break 'write;
            }
            if close {
                let _ = sink.flush().await;
                break 'write;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
        out.written(&mut batch);
    }
    let _ = sink.close().await;
}

/// The read side of [`run`].
async fn serve(
    mut conn: Conn,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    mut revocations: broadcast::Receiver<Arc<str>>,
    limiter: governor::DefaultDirectRateLimiter,
    mut writer: tokio::task::JoinHandle<()>,
    slot: Option<IpSlot>,
) {
    let idle = conn.rt.config.idle_timeout;
    let outbox = conn.outbox.clone();
    let mut close: Option<CloseReason> = None;
    // Only the client's own frames keep the socket open (not revocations or timers).
    let mut silent_at = Instant::now() + idle;
    loop {
        conn.sync_agents().await;
        let wake = conn.next_deadline().map_or(silent_at, |d| d.min(silent_at));
        let next = tokio::select! {
            () = outbox.killed() => break,
            revoked = revocations.recv() => {
                match revoked {
                    Ok(hash) => Box::pin(conn.revoked(&hash)).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => Box::pin(conn.recheck_tokens()).await,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
                continue;
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if silent_at <= now {
                    tracing::debug!(socket = conn.id, "closing a silent socket");
                    break;
                }
                if conn.join_deadline.is_some_and(|d| d <= now) {
                    tracing::debug!(socket = conn.id, "no join with a valid token in time; closing");
                    close = Some((POLICY_VIOLATION, JOIN_TIMEOUT));
                    break;
                }
                Box::pin(conn.expire_tokenless()).await;
                continue;
            }
            next = stream.next() => next,
        };
        let Some(Ok(msg)) = next else { break };
        silent_at = Instant::now() + idle;
        if matches!(msg, Message::Close(_)) {
            break;
        }
        if limiter.check().is_err() {
            tracing::debug!(socket = conn.id, "frame rate limit exceeded; closing");
            close = Some((POLICY_VIOLATION, RATE_LIMITED));
            break;
        }
        let frame = match msg {
            Message::Text(text) => codec::decode_text(conn.vsn, text.as_str()),
            Message::Binary(bytes) => codec::decode_binary(&bytes),
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) => continue,
        };
        Box::pin(async {
            // Revocations published before this frame was read apply to it, whatever the
            // select above picked first.
            conn.drain_revocations(&mut revocations).await;
            match frame {
                Ok(frame) => conn.handle(frame).await,
                Err(e) => tracing::debug!(socket = conn.id, error = %e, "undecodable frame ignored"),
            }
        })
        .await;
    }
    Box::pin(async move {
        for topic in conn.joined.keys() {
            conn.rt.hub.unsubscribe(topic, conn.id);
        }
        conn.joined.clear();
        conn.sync_agents().await;
        let killed = outbox.is_killed();
        if let Some(reason) = close {
            close_handshake(&outbox, &mut stream, reason).await;
        }
        drop(conn);
        outbox.close();
        drop(outbox);
        drop(slot);
        // A socket that could not keep up is dropped at once: its writer may be stuck on a
        // full TCP buffer. Otherwise the writer gets a moment to flush the last frames and the
        // close.
        if killed || tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
            writer.abort();
        }
    })
    .await;
}

/// Sends a close frame with a reason, then reads (and drops) what the client still sends until
/// its close, for a moment: closing the connection with unread frames would reset it, and the
/// client could lose the close frame with its reason.
async fn close_handshake(
    outbox: &Outbox,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    (code, reason): CloseReason,
) {
    let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    let _ = tokio::time::timeout(Duration::from_secs(1), outbox.reply(frame)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

impl Conn {
    /// Tells the backend which agents this socket holds now (channels joined with an agent's
    /// token), when that changed.
    async fn sync_agents(&mut self) {
        let now = self.agents_now();
        if now != self.agents {
            Box::pin(self.tell_agents(now)).await;
        }
    }

    /// Agents with a channel joined with their token, sorted.
    fn agents_now(&self) -> Vec<handoff_protocol::AgentId> {
        let mut now: Vec<handoff_protocol::AgentId> = self
            .joined
            .values()
            .filter(|j| j.token.is_some())
            .filter_map(|j| match &j.principal {
                Principal::Agent { agent_id, .. } => Some(agent_id.clone()),
                _ => None,
            })
            .collect();
        now.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        now.dedup();
        now
    }

    /// Tells the backend of the agents that came and went since the last call.
    async fn tell_agents(&mut self, now: Vec<handoff_protocol::AgentId>) {
        for a in now.iter().filter(|a| !self.agents.contains(a)) {
            self.rt.backend.agent_socket(a, true).await;
        }
        for a in self.agents.iter().filter(|a| !now.contains(a)) {
            self.rt.backend.agent_socket(a, false).await;
        }
        self.agents = now;
    }

    /// The earliest deadline: of a join still waiting for its token, or of the first join.
    fn next_deadline(&self) -> Option<Instant> {
        self.joined.values().filter_map(|j| j.deadline).chain(self.join_deadline).min()
    }

    /// Sends `phx_error` to every tokenless join whose grace has run out and forgets it: the
    /// client rejoins with the token it has by now (realtime-js updates its join payload when
    /// its token arrives but only pushes `access_token` for joined channels, so a join sent
    /// before the token resolved may otherwise never be authorized).
    async fn expire_tokenless(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .joined
            .iter()
            .filter(|(_, j)| j.deadline.is_some_and(|d| d <= now))
            .map(|(t, _)| t.clone())
            .collect();
        for topic in expired {
            if let Some(j) = self.joined.remove(&topic) {
                tracing::debug!(socket = self.id, topic, "no access_token after a tokenless join; phx_error");
                self.send(&Frame::error(j.join_ref, &topic)).await;
            }
        }
    }

    /// Queues a frame of this socket's own (a reply, `phx_close`, `phx_error`), waiting for
    /// room: a client that reads everything is never too slow for its own replies. A client
    /// that stops reading holds its own reads up, then is closed as silent.
    async fn send(&self, frame: &Frame) {
        match codec::encode_text(self.vsn, frame) {
            Ok(text) => {
                let reply = self.outbox.reply(Message::Text(text.into()));
                if tokio::time::timeout(self.rt.config.idle_timeout, reply).await.is_err() {
                    tracing::debug!(socket = self.id, "client reads none of its replies; closing");
                    self.outbox.kill();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode frame"),
        }
    }

    /// Applies every revocation already published.
    async fn drain_revocations(&mut self, revocations: &mut broadcast::Receiver<Arc<str>>) {
        loop {
            match revocations.try_recv() {
                Ok(hash) => self.revoked(&hash).await,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.recheck_tokens().await,
                Err(_) => return,
            }
        }
    }

    /// A token was revoked: forget it, and send `phx_error` on the channels it authorized (the
    /// hub has already stopped delivering to them); their rejoin is refused by authentication.
    async fn revoked(&mut self, hash: &str) {
        self.principals.retain(|(_, h, _)| h != hash);
        let topics: Vec<String> = self
            .joined
            .iter()
            .filter(|(_, j)| j.token_hash.as_deref() == Some(hash))
            .map(|(t, _)| t.clone())
            .collect();
        for topic in topics {
            if let Some(j) = self.joined.remove(&topic) {
                tracing::debug!(socket = self.id, topic, "token revoked; phx_error");
                self.rt.hub.unsubscribe(&topic, self.id);
                self.send(&Frame::error(j.join_ref, &topic)).await;
            }
        }
    }

    async fn handle(&mut self, frame: Frame) {
        match frame.kind() {
            FrameKind::Heartbeat if frame.topic == PHOENIX_TOPIC => {
                self.send(&Frame::reply_ok(None, frame.r#ref, PHOENIX_TOPIC, json!({}))).await;
                if self.checked.elapsed() >= self.rt.config.token_recheck {
                    self.recheck_tokens().await;
                }
            }
            FrameKind::Join => self.join(frame).await,
            FrameKind::AccessToken => self.access_token(&frame).await,
            FrameKind::Leave => {
                if let Some(j) = self.joined.remove(&frame.topic) {
                    self.rt.hub.unsubscribe(&frame.topic, self.id);
                    self.send(&Frame::reply_ok(
                        j.join_ref.clone(),
                        frame.r#ref.clone(),
                        &frame.topic,
                        json!({}),
                    ))
                    .await;
                    self.send(&Frame::close(j.join_ref, &frame.topic)).await;
                } else {
                    self.send(&Frame::reply_ok(frame.join_ref, frame.r#ref, &frame.topic, json!({}))).await;
                }
            }
            FrameKind::Broadcast => self.client_broadcast(frame).await,
            FrameKind::Presence => {
                self.send(&Frame::reply_error(
                    frame.join_ref,
                    frame.r#ref,
                    &frame.topic,
                    "presence is not supported; use the presence:updated event",
                ))
                .await;
            }
            _ => tracing::debug!(socket = self.id, event = frame.event, "ignored frame"),
        }
    }

    /// Authorizes every joined channel again with fresh answers (not the per-socket cache).
    /// A channel whose token no longer authorizes it (revoked by a logout, or the check
    /// failed) stops receiving and gets `phx_error`: the client rejoins, which is refused for
    /// a revoked token and accepted again after a passing database error.
    async fn recheck_tokens(&mut self) {
        self.checked = Instant::now();
        self.principals.clear();
        let joined: Vec<(String, Channel, String)> = self
            .joined
            .iter()
            .filter_map(|(topic, j)| Some((topic.clone(), j.channel.clone(), j.token.clone()?)))
            .collect();
        for (topic, channel, token) in joined {
            match self.authorize(&channel, &token).await {
                Ok((principal, _)) => {
                    if let Some(j) = self.joined.get_mut(&topic) {
                        j.principal = principal;
                    }
                }
                Err(reason) => {
                    tracing::debug!(socket = self.id, topic, reason, "token no longer authorizes; phx_error");
                    if let Some(j) = self.joined.remove(&topic) {
                        self.rt.hub.unsubscribe(&topic, self.id);
                        self.send(&Frame::error(j.join_ref, &topic)).await;
                    }
                }
            }
        }
    }

    /// Who a token is (cached per socket) and its hash.
    async fn principal(&mut self, token: &str) -> (Principal, String) {
        if let Some((_, hash, p)) = self.principals.iter().find(|(t, _, _)| t == token) {
            return (p.clone(), hash.clone());
        }
        let p = self.rt.backend.authenticate(token).await;
        let hash = crate::crypto::token_hash(token);
        if self.principals.len() > 16 {
            self.principals.clear();
        }
        self.principals.reserve_exact(1);
        self.principals.push((token.to_owned(), hash.clone(), p.clone()));
        (p, hash)
    }

    /// Whether `token` may join `channel` on this socket: the join rules, the socket's project
    /// (its `apikey`) and, for customers, the socket's origin. The principal and the token's hash.
    async fn authorize(&mut self, channel: &Channel, token: &str) -> Result<(Principal, String), String> {
        let (principal, hash) = self.principal(token).await;
        let project = match &principal {
            Principal::Customer { project_id, .. }
            | Principal::Agent { project_id, .. }
            | Principal::Server { project_id } => Some(project_id),
            _ => None,
        };
        if project.is_some_and(|p| *p != self.project.project_id) {
            return Err(PROJECT_MISMATCH.into());
        }
        if matches!(principal, Principal::Customer { .. }) && !self.project.origin_allowed {
            return Err(ORIGIN_NOT_ALLOWED.into());
        }
        let owner = match channel.conversation_id() {
            Some(id) => self.rt.backend.conversation_owner(id).await,
            None => None,
        };
        may_join(&principal, channel, owner.as_ref()).map_err(|e| e.to_string())?;
        Ok((principal, hash))
    }

    async fn join(&mut self, frame: Frame) {
        let topic = frame.topic.clone();
        let reply_error =
            |reason: &str| Frame::reply_error(frame.join_ref.clone(), frame.r#ref.clone(), &topic, reason);
        let channel = match Channel::from_topic(&topic) {
            Ok(c) => c,
            Err(e) => return self.send(&reply_error(&e.to_string())).await,
        };
        let payload = match frame.join_payload() {
            Ok(p) => p,
            Err(e) => return self.send(&reply_error(&e.to_string())).await,
        };
        if !self.joined.contains_key(&topic) && self.joined.len() >= self.rt.config.max_channels {
            return self.send(&reply_error(TOO_MANY_CHANNELS)).await;
        }
        // Last join wins: a second join of the same topic closes the first.
        if let Some(old) = self.joined.remove(&topic) {
            self.rt.hub.unsubscribe(&topic, self.id);
            self.send(&Frame::close(old.join_ref, &topic)).await;
        }
        let mut joined = Joined {
            join_ref: frame.join_ref.clone(),
            channel: channel.clone(),
            token: None,
            token_hash: None,
            deadline: None,
            principal: Principal::Anonymous,
            ack: payload.config.broadcast.ack,
            echo: payload.config.broadcast.self_,
        };
        if let Some(token) = payload.access_token {
            match self.authorize(&channel, &token).await {
                Ok((principal, hash)) => {
                    self.rt.hub.subscribe(&topic, self.id, self.vsn, self.outbox.clone(), Some(&hash));
                    joined.token = Some(token);
                    joined.token_hash = Some(hash);
                    joined.principal = principal;
                    self.join_deadline = None;
                }
                Err(reason) => return self.send(&reply_error(&reason)).await,
            }
        } else {
            joined.deadline = Some(Instant::now() + self.rt.config.token_grace);
        }
        // Without a token the join is accepted but delivers nothing until an `access_token`
        // push authorizes it (realtime-js may send its token right after the join).
        let authorized = joined.token.is_some();
        self.joined.insert(topic.clone(), joined);
        self.send(&Frame::reply_ok(frame.join_ref, frame.r#ref, &topic, json!({"postgres_changes": []})))
            .await;
        if authorized {
            self.greet(&channel, &topic).await;
        }
    }

    /// After an authorized join: the channel's current state, if it has one (the project's
    /// availability), to this socket only.
    async fn greet(&self, channel: &Channel, topic: &str) {
        if let Some(event) = self.rt.backend.joined(channel).await {
            self.send(&Frame::broadcast(topic, &event)).await;
        }
    }

    async fn access_token(&mut self, frame: &Frame) {
        let Some(token) = frame.access_token_value().map(str::to_owned) else { return };
        let Some(j) = self.joined.get(&frame.topic) else { return };
        if j.token.as_deref() == Some(token.as_str()) {
            return; // the common case: the same token on every heartbeat
        }
        let channel = j.channel.clone();
        let upgrade = j.token.is_none();
        match self.authorize(&channel, &token).await {
            Ok((principal, hash)) => {
                if upgrade {
                    self.greet(&channel, &frame.topic).await;
                }
                self.rt.hub.subscribe(&frame.topic, self.id, self.vsn, self.outbox.clone(), Some(&hash));
                if let Some(j) = self.joined.get_mut(&frame.topic) {
                    j.token = Some(token);
                    j.token_hash = Some(hash);
                    j.deadline = None;
                    j.principal = principal;
                }
                self.join_deadline = None;
            }
            Err(reason) => {
                tracing::debug!(
                    socket = self.id,
                    topic = frame.topic,
                    reason,
                    "access_token refused; closing channel"
                );
                if let Some(j) = self.joined.remove(&frame.topic) {
                    self.rt.hub.unsubscribe(&frame.topic, self.id);
                    self.send(&Frame::close(j.join_ref, &frame.topic)).await;
                }
            }
        }
    }

    async fn client_broadcast(&mut self, frame: Frame) {
        let refuse = async |conn: &Self, reason: &str| {
            conn.send(&Frame::reply_error(frame.join_ref.clone(), frame.r#ref.clone(), &frame.topic, reason))
                .await;
        };
        let Some(j) = self.joined.get(&frame.topic).filter(|j| j.token.is_some()) else {
            return refuse(self, "join the channel with a token first").await;
        };
        let (principal, channel, ack, echo) = (j.principal.clone(), j.channel.clone(), j.ack, j.echo);
        let event = match frame.broadcast_event() {
            Ok(event @ (Event::Typing(_) | Event::PresenceUpdated(_))) => event,
            Ok(_) => {
                return refuse(self, "only typing and presence:updated may be broadcast; use the REST API")
                    .await
            }
            Err(e) => return refuse(self, &e.to_string()).await,
        };
        match self.rt.backend.client_broadcast(&principal, &channel, event).await {
            Ok(event) => {
                self.rt.hub.publish_except(&channel, &event, (!echo).then_some(self.id));
                if ack {
                    self.send(&Frame::reply_ok(
                        frame.join_ref.clone(),
                        frame.r#ref.clone(),
                        &frame.topic,
                        json!({}),
                    ))
                    .await;
                }
            }
            Err(reason) => refuse(self, &reason).await,
        }
    }
}
