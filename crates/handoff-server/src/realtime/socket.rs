//! The Phoenix WebSocket endpoint, as Supabase Realtime speaks it (DESIGN section 2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use handoff_protocol::channel::{may_join, Principal, PHOENIX_TOPIC};
use handoff_protocol::phoenix::{codec, Frame, FrameKind, Vsn};
use handoff_protocol::{Channel, Event};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, Notify};

use super::hub::{Hub, SocketId, DEFAULT_QUEUE_CAPACITY};
use super::RealtimeBackend;

/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 4096;

/// Settings of the realtime endpoint.
#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    /// A socket that sends nothing for this long is closed (60 s; realtime-js beats every 25 s).
    pub idle_timeout: Duration,
    /// Outgoing frames queued per socket before it counts as too slow.
    pub queue_capacity: usize,
    /// How long a join without a token waits for its `access_token` push before the server
    /// sends `phx_error`, which makes realtime-js rejoin (after 1 s) with the token it has by
    /// then in the join payload (1 s). realtime-js with an `accessToken` callback sends its
    /// first join before the callback resolves and, when the token was there before the join
    /// reply, never pushes it for that join: such a client is served about 2 s after joining.
    pub token_grace: Duration,
    /// How often a socket's tokens are checked again (on a heartbeat, once this long has passed
    /// since the last check): a token revoked since the join (agent logout) stops receiving;
    /// its channels get `phx_error`, and the client's rejoin is refused (60 s).
    pub token_recheck: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            idle_timeout: Duration::from_secs(60),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            token_grace: Duration::from_secs(1),
            token_recheck: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
struct Realtime {
    hub: Arc<Hub>,
    backend: Arc<dyn RealtimeBackend>,
    config: RealtimeConfig,
}

/// The router serving `GET /realtime/v1/websocket?apikey=...&vsn=2.0.0`.
pub fn routes(hub: Arc<Hub>, backend: Arc<dyn RealtimeBackend>, config: RealtimeConfig) -> Router {
    Router::new().route("/realtime/v1/websocket", get(upgrade)).with_state(Realtime { hub, backend, config })
}

#[derive(Deserialize)]
struct Params {
    vsn: Option<String>,
}

async fn upgrade(ws: WebSocketUpgrade, Query(params): Query<Params>, State(rt): State<Realtime>) -> Response {
    let vsn = match Vsn::from_param(params.vsn.as_deref()) {
        Ok(vsn) => vsn,
        Err(e) => return crate::error::AppError::bad_request(e.to_string()).into_response(),
    };
    // Small buffers: an idle socket should cost a few KiB, not tungstenite's default 128 KiB
    // read buffer. Client frames are small (joins, heartbeats, typing), so cap them too.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(READ_BUFFER)
        .max_message_size(handoff_protocol::api::MAX_REQUEST_BYTES)
        .max_frame_size(handoff_protocol::api::MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| run(socket, vsn, rt))
}

/// One joined topic on a socket.
struct Joined {
    join_ref: Option<String>,
    channel: Channel,
    /// The token the join is authorized with; `None` while waiting for an `access_token` push.
    token: Option<String>,
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
    tx: mpsc::Sender<Message>,
    kill: Arc<Notify>,
    joined: HashMap<String, Joined>,
    principals: HashMap<String, Principal>,
    /// When the tokens of the joined channels were last checked.
    checked: Instant,
}

async fn run(socket: WebSocket, vsn: Vsn, rt: Realtime) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(rt.config.queue_capacity);
    let kill = Arc::new(Notify::new());
    let mut writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let idle = rt.config.idle_timeout;
    let mut conn = Conn {
        id: rt.hub.socket_id(),
        vsn,
        rt,
        tx,
        kill: kill.clone(),
        joined: HashMap::new(),
        principals: HashMap::new(),
        checked: Instant::now(),
    };
    let mut killed = false;
    loop {
        let grace = conn.next_deadline();
        let next = tokio::select! {
            () = kill.notified() => {
                killed = true;
                break;
            }
            () = sleep_until(grace) => {
                conn.expire_tokenless();
                continue;
            }
            next = tokio::time::timeout(idle, stream.next()) => next,
        };
        let msg = match next {
            Err(_) => {
                tracing::debug!(socket = conn.id, "closing a silent socket");
                break;
            }
            Ok(None | Some(Err(_))) => break,
            Ok(Some(Ok(msg))) => msg,
        };
        let frame = match msg {
            Message::Text(text) => codec::decode_text(vsn, text.as_str()),
            Message::Binary(bytes) => codec::decode_binary(&bytes),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        match frame {
            Ok(frame) => conn.handle(frame).await,
            Err(e) => tracing::debug!(socket = conn.id, error = %e, "undecodable frame ignored"),
        }
    }
    for topic in conn.joined.keys() {
        conn.rt.hub.unsubscribe(topic, conn.id);
    }
    drop(conn);
    // A socket that could not keep up is dropped at once: its writer may be stuck on a full
    // TCP buffer. Otherwise the writer gets a moment to flush the last frames and the close.
    if killed || tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    /// The earliest deadline of a join still waiting for its token.
    fn next_deadline(&self) -> Option<Instant> {
        self.joined.values().filter_map(|j| j.deadline).min()
    }

    /// Sends `phx_error` to every tokenless join whose grace has run out and forgets it: the
    /// client rejoins with the token it has by now (realtime-js updates its join payload when
    /// its token arrives but only pushes `access_token` for joined channels, so a join sent
    /// before the token resolved may otherwise never be authorized).
    fn expire_tokenless(&mut self) {
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
                self.send(&Frame::error(j.join_ref, &topic));
            }
        }
    }

    fn send(&self, frame: &Frame) {
        match codec::encode_text(self.vsn, frame) {
            Ok(text) => {
                if self.tx.try_send(Message::Text(text.into())).is_err() {
                    self.kill.notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode frame"),
        }
    }

    async fn handle(&mut self, frame: Frame) {
        match frame.kind() {
            FrameKind::Heartbeat if frame.topic == PHOENIX_TOPIC => {
                self.send(&Frame::reply_ok(None, frame.r#ref, PHOENIX_TOPIC, json!({})));
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
                    ));
                    self.send(&Frame::close(j.join_ref, &frame.topic));
                } else {
                    self.send(&Frame::reply_ok(frame.join_ref, frame.r#ref, &frame.topic, json!({})));
                }
            }
            FrameKind::Broadcast => self.client_broadcast(frame).await,
            FrameKind::Presence => {
                self.send(&Frame::reply_error(
                    frame.join_ref,
                    frame.r#ref,
                    &frame.topic,
                    "presence is not supported; use the presence:updated event",
                ));
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
                Ok(principal) => {
                    if let Some(j) = self.joined.get_mut(&topic) {
                        j.principal = principal;
                    }
                }
                Err(reason) => {
                    tracing::debug!(socket = self.id, topic, reason, "token no longer authorizes; phx_error");
                    if let Some(j) = self.joined.remove(&topic) {
                        self.rt.hub.unsubscribe(&topic, self.id);
                        self.send(&Frame::error(j.join_ref, &topic));
                    }
                }
            }
        }
    }

    async fn principal(&mut self, token: &str) -> Principal {
        if let Some(p) = self.principals.get(token) {
            return p.clone();
        }
        let p = self.rt.backend.authenticate(token).await;
        if self.principals.len() > 16 {
            self.principals.clear();
        }
        self.principals.insert(token.to_owned(), p.clone());
        p
    }

    async fn authorize(&mut self, channel: &Channel, token: &str) -> Result<Principal, String> {
        let principal = self.principal(token).await;
        let owner = match channel.conversation_id() {
            Some(id) => self.rt.backend.conversation_owner(id).await,
            None => None,
        };
        may_join(&principal, channel, owner.as_ref()).map(|()| principal).map_err(|e| e.to_string())
    }

    async fn join(&mut self, frame: Frame) {
        let topic = frame.topic.clone();
        let reply_error =
            |reason: &str| Frame::reply_error(frame.join_ref.clone(), frame.r#ref.clone(), &topic, reason);
        let channel = match Channel::from_topic(&topic) {
            Ok(c) => c,
            Err(e) => return self.send(&reply_error(&e.to_string())),
        };
        let payload = match frame.join_payload() {
            Ok(p) => p,
            Err(e) => return self.send(&reply_error(&e.to_string())),
        };
        // Last join wins: a second join of the same topic closes the first.
        if let Some(old) = self.joined.remove(&topic) {
            self.rt.hub.unsubscribe(&topic, self.id);
            self.send(&Frame::close(old.join_ref, &topic));
        }
        let mut joined = Joined {
            join_ref: frame.join_ref.clone(),
            channel: channel.clone(),
            token: None,
            deadline: None,
            principal: Principal::Anonymous,
            ack: payload.config.broadcast.ack,
            echo: payload.config.broadcast.self_,
        };
        if let Some(token) = payload.access_token {
            match self.authorize(&channel, &token).await {
                Ok(principal) => {
                    joined.token = Some(token);
                    joined.principal = principal;
                    self.rt.hub.subscribe(&topic, self.id, self.vsn, self.tx.clone(), self.kill.clone());
                }
                Err(reason) => return self.send(&reply_error(&reason)),
            }
        } else {
            joined.deadline = Some(Instant::now() + self.rt.config.token_grace);
        }
        // Without a token the join is accepted but delivers nothing until an `access_token`
        // push authorizes it (realtime-js may send its token right after the join).
        self.joined.insert(topic.clone(), joined);
        self.send(&Frame::reply_ok(frame.join_ref, frame.r#ref, &topic, json!({"postgres_changes": []})));
    }

    async fn access_token(&mut self, frame: &Frame) {
        let Some(token) = frame.access_token_value().map(str::to_owned) else { return };
        let Some(j) = self.joined.get(&frame.topic) else { return };
        if j.token.as_deref() == Some(token.as_str()) {
            return; // the common case: the same token on every heartbeat
        }
        let channel = j.channel.clone();
        match self.authorize(&channel, &token).await {
            Ok(principal) => {
                if let Some(j) = self.joined.get_mut(&frame.topic) {
                    j.token = Some(token);
                    j.deadline = None;
                    j.principal = principal;
                }
                self.rt.hub.subscribe(&frame.topic, self.id, self.vsn, self.tx.clone(), self.kill.clone());
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
                    self.send(&Frame::close(j.join_ref, &frame.topic));
                }
            }
        }
    }

    async fn client_broadcast(&mut self, frame: Frame) {
        let refuse = |conn: &Self, reason: &str| {
            conn.send(&Frame::reply_error(frame.join_ref.clone(), frame.r#ref.clone(), &frame.topic, reason));
        };
        let Some(j) = self.joined.get(&frame.topic).filter(|j| j.token.is_some()) else {
            return refuse(self, "join the channel with a token first");
        };
        let (principal, channel, ack, echo) = (j.principal.clone(), j.channel.clone(), j.ack, j.echo);
        let event = match frame.broadcast_event() {
            Ok(event @ (Event::Typing(_) | Event::PresenceUpdated(_))) => event,
            Ok(_) => {
                return refuse(self, "only typing and presence:updated may be broadcast; use the REST API")
            }
            Err(e) => return refuse(self, &e.to_string()),
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
                    ));
                }
            }
            Err(reason) => refuse(self, &reason),
        }
    }
}
