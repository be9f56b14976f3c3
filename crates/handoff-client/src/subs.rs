//! The channels of one socket: refs, joins, replies, rejoins. Pure bookkeeping (no I/O, no
//! JSON), so it is tested natively: frames come in as an [`Inbound`] head (the wasm side reads
//! it from the browser's `JSON.parse`) and go out as a [`Push`] (written with `JSON.stringify`),
//! so that no JSON codec is compiled into the browser. Their wire shapes are those of the
//! protocol crate's [`Frame`](handoff_protocol::phoenix::Frame) constructors; the tests check
//! the two agree.
//!
//! Phoenix rules followed here: every push gets a fresh `ref` from one counter; a join's `ref`
//! is also its `join_ref`, and frames of an older join of the same topic are ignored; after a
//! reconnect every channel joins again; `phx_error` means "rejoin", `phx_close` means "gone".

use handoff_protocol::channel::{PHOENIX_TOPIC, TOPIC_PREFIX};
use handoff_protocol::phoenix::{FrameKind, ACCESS_TOKEN, BROADCAST, HEARTBEAT, PHX_JOIN, PHX_LEAVE};

/// Where a channel stands on the current socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubState {
    /// Not joined on this socket (no socket, or not sent yet).
    Pending,
    /// Join sent, no reply yet.
    Joining,
    /// Joined.
    Joined,
    /// The server refused the join or closed the channel.
    Failed,
}

#[derive(Clone, Debug)]
struct Sub {
    name: String,
    topic: String,
    join_ref: Option<String>,
    state: SubState,
    holders: u32,
}

/// What an incoming frame means for the owner.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Incoming {
    /// The channel `name` is joined.
    Joined(String),
    /// The server refused the join.
    JoinFailed {
        /// Channel name.
        channel: String,
        /// The server's reason.
        reason: String,
    },
    /// A broadcast on a joined channel (its payload is the caller's to read).
    Event {
        /// Channel name.
        channel: String,
    },
    /// The reply to the last heartbeat.
    HeartbeatReply,
    /// `phx_error`: the channel failed on the server; join it again.
    ChannelError(String),
    /// `phx_close`: the server closed the channel for good.
    ChannelClosed(String),
    /// Nothing to do (acks, presence, stale refs, unknown frames).
    Ignored,
}

/// The head of an incoming frame, and for a `phx_reply` its status and error reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inbound {
    /// The ref of the join the frame belongs to.
    pub join_ref: Option<String>,
    /// The message ref (a reply echoes its push's).
    pub r#ref: Option<String>,
    /// `realtime:<channel>` or `phoenix`.
    pub topic: String,
    /// The Phoenix event name.
    pub event: String,
    /// A reply's `status` (`"ok"`, `"error"`).
    pub status: Option<String>,
    /// An error reply's `response.reason`.
    pub reason: Option<String>,
}

/// What a push carries besides its head.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushKind {
    /// `phx_join` with `{config: {broadcast, presence, postgres_changes: [], private},
    /// access_token?}`.
    Join {
        /// The token that authorizes the join.
        access_token: Option<String>,
        /// Whether the channel is private (authorized by token).
        private: bool,
    },
    /// `phx_leave` with `{}`.
    Leave,
    /// `heartbeat` with `{}` on `phoenix`.
    Heartbeat,
    /// `access_token` with `{access_token}`.
    AccessToken(String),
    /// `broadcast` with `{type: "broadcast", event, payload}`: the caller adds those.
    Broadcast,
}

/// An outgoing frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The join ref (a join's is its own `ref`; none for heartbeats).
    pub join_ref: Option<String>,
    /// A fresh message ref.
    pub r#ref: String,
    /// The wire topic.
    pub topic: String,
    /// What it is.
    pub kind: PushKind,
}

impl Push {
    /// The Phoenix event name.
    pub fn event(&self) -> &'static str {
        match self.kind {
            PushKind::Join { .. } => PHX_JOIN,
            PushKind::Leave => PHX_LEAVE,
            PushKind::Heartbeat => HEARTBEAT,
            PushKind::AccessToken(_) => ACCESS_TOKEN,
            PushKind::Broadcast => BROADCAST,
        }
    }
}

/// The channels of one client, across sockets.
#[derive(Clone, Debug, Default)]
pub struct Subscriptions {
    next_ref: u64,
    subs: Vec<Sub>,
    heartbeat_ref: Option<String>,
    token: Option<String>,
    private: bool,
}

impl Subscriptions {
    /// No channels. `private` goes into every join's config (true for Handoff's server, whose
    /// channels are all authorized by token; Supabase public broadcast channels need false).
    pub fn new(private: bool) -> Self {
        Subscriptions { private, ..Subscriptions::default() }
    }

    /// A fresh message ref.
    pub fn next_ref(&mut self) -> String {
        self.next_ref += 1;
        handoff_protocol::ids::decimal(self.next_ref)
    }

    /// The access token sent with every join.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// `access_token` pushes for every joined channel (after a token refresh).
    pub fn token_pushes(&mut self) -> Vec<Push> {
        let Some(token) = self.token.clone() else { return Vec::new() };
        let joined: Vec<(String, String)> = self
            .subs
            .iter()
            .filter(|s| s.state == SubState::Joined)
            .filter_map(|s| Some((s.join_ref.clone()?, s.topic.clone())))
            .collect();
        joined
            .into_iter()
            .map(|(join_ref, topic)| {
                let r#ref = self.next_ref();
                Push { join_ref: Some(join_ref), r#ref, topic, kind: PushKind::AccessToken(token.clone()) }
            })
            .collect()
    }

    /// Holds channel `name` (another holder of the same channel shares it); `true` when it is new
    /// and needs a join.
    pub fn add(&mut self, name: &str) -> bool {
        if let Some(s) = self.subs.iter_mut().find(|s| s.name == name) {
            s.holders += 1;
            if s.state == SubState::Failed {
                s.state = SubState::Pending;
                return true;
            }
            return false;
        }
        let mut topic = String::from(TOPIC_PREFIX);
        topic.push_str(name);
        self.subs.push(Sub {
            name: name.to_owned(),
            topic,
            join_ref: None,
            state: SubState::Pending,
            holders: 1,
        });
        true
    }

    /// Releases one hold on `name`; when the last goes, the channel is dropped and, if it was
    /// joined, the `phx_leave` to send is returned.
    pub fn remove(&mut self, name: &str) -> Option<Push> {
        let i = self.subs.iter().position(|s| s.name == name)?;
        self.subs[i].holders = self.subs[i].holders.saturating_sub(1);
        if self.subs[i].holders > 0 {
            return None;
        }
        let sub = self.subs.remove(i);
        let join_ref = sub.join_ref.filter(|_| matches!(sub.state, SubState::Joined | SubState::Joining))?;
        let r#ref = self.next_ref();
        Some(Push { join_ref: Some(join_ref), r#ref, topic: sub.topic, kind: PushKind::Leave })
    }

    /// Whether `name` is held.
    pub fn contains(&self, name: &str) -> bool {
        self.subs.iter().any(|s| s.name == name)
    }

    /// The state of `name`.
    pub fn state(&self, name: &str) -> Option<SubState> {
        self.subs.iter().find(|s| s.name == name).map(|s| s.state)
    }

    /// The join of `name` (a fresh `join_ref`), if it is held and not joined or joining.
    pub fn join(&mut self, name: &str) -> Option<Push> {
        let i = self.subs.iter().position(|s| s.name == name && s.state == SubState::Pending)?;
        let join_ref = self.next_ref();
        let kind = PushKind::Join { access_token: self.token.clone(), private: self.private };
        let sub = &mut self.subs[i];
        sub.state = SubState::Joining;
        sub.join_ref = Some(join_ref.clone());
        Some(Push { join_ref: Some(join_ref.clone()), r#ref: join_ref, topic: sub.topic.clone(), kind })
    }

    /// The joins of every pending channel (a socket just opened).
    pub fn join_all(&mut self) -> Vec<Push> {
        let names: Vec<String> =
            self.subs.iter().filter(|s| s.state == SubState::Pending).map(|s| s.name.clone()).collect();
        names.iter().filter_map(|n| self.join(n)).collect()
    }

    /// The socket is gone: every channel must join again on the next one.
    pub fn reset(&mut self) {
        self.heartbeat_ref = None;
        for s in &mut self.subs {
            if s.state != SubState::Failed {
                s.state = SubState::Pending;
            }
            s.join_ref = None;
        }
    }

    /// No join awaits its reply.
    pub fn settled(&self) -> bool {
        self.subs.iter().all(|s| s.state != SubState::Joining)
    }

    /// A heartbeat, remembering its ref for the reply.
    pub fn heartbeat(&mut self) -> Push {
        let r#ref = self.next_ref();
        self.heartbeat_ref = Some(r#ref.clone());
        Push { join_ref: None, r#ref, topic: PHOENIX_TOPIC.to_owned(), kind: PushKind::Heartbeat }
    }

    /// A client broadcast push on joined channel `name` (the caller adds event and payload).
    pub fn broadcast(&mut self, name: &str) -> Option<Push> {
        let sub = self.subs.iter().find(|s| s.name == name && s.state == SubState::Joined)?;
        let (join_ref, topic) = (sub.join_ref.clone()?, sub.topic.clone());
        let r#ref = self.next_ref();
        Some(Push { join_ref: Some(join_ref), r#ref, topic, kind: PushKind::Broadcast })
    }

    /// Interprets an incoming frame.
    pub fn handle(&mut self, frame: &Inbound) -> Incoming {
        let kind = FrameKind::of(&frame.event);
        if frame.topic == PHOENIX_TOPIC {
            if kind == FrameKind::Reply && frame.r#ref.is_some() && frame.r#ref == self.heartbeat_ref {
                self.heartbeat_ref = None;
                return Incoming::HeartbeatReply;
            }
            return Incoming::Ignored;
        }
        let Some(sub) = self.subs.iter_mut().find(|s| s.topic == frame.topic) else {
            return Incoming::Ignored;
        };
        // A frame of an older join of this topic: ignore (broadcasts from the server carry no
        // join_ref and are always for the current join).
        if frame.join_ref.is_some() && frame.join_ref != sub.join_ref {
            return Incoming::Ignored;
        }
        match kind {
            FrameKind::Reply if sub.state == SubState::Joining && frame.r#ref == sub.join_ref => {
                match frame.status.as_deref() {
                    Some("ok") => {
                        sub.state = SubState::Joined;
                        Incoming::Joined(sub.name.clone())
                    }
                    Some(_) => {
                        sub.state = SubState::Failed;
                        let reason = frame.reason.clone().unwrap_or_else(|| "join refused".to_owned());
                        Incoming::JoinFailed { channel: sub.name.clone(), reason }
                    }
                    None => Incoming::Ignored,
                }
            }
            FrameKind::Broadcast if sub.state == SubState::Joined => {
                Incoming::Event { channel: sub.name.clone() }
            }
            FrameKind::Error => {
                sub.state = SubState::Pending;
                sub.join_ref = None;
                Incoming::ChannelError(sub.name.clone())
            }
            FrameKind::Close if sub.state != SubState::Pending => {
                sub.state = SubState::Failed;
                Incoming::ChannelClosed(sub.name.clone())
            }
            _ => Incoming::Ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_protocol::event::{Author, AuthorKind, Typing};
    use handoff_protocol::phoenix::{codec, Frame, JoinConfig, JoinPayload, ReplyStatus, Vsn};
    use handoff_protocol::Event;
    use serde_json::json;

    /// The protocol crate's frame of a push: the wire shape the wasm side writes.
    fn frame(p: &Push) -> Frame {
        let (j, r, t) = (p.join_ref.as_deref().unwrap_or_default(), p.r#ref.as_str(), p.topic.as_str());
        match &p.kind {
            PushKind::Join { access_token, private } => {
                let config = JoinConfig { private: *private, ..JoinConfig::default() };
                Frame::join(j, t, &JoinPayload { config, access_token: access_token.clone() })
            }
            PushKind::Leave => Frame::leave(j, r, t),
            PushKind::Heartbeat => Frame::heartbeat(r),
            PushKind::AccessToken(token) => Frame::access_token(j, r, t, token),
            PushKind::Broadcast => Frame::push_broadcast(j, r, t, &typing()),
        }
    }

    /// What the wasm side reads of an incoming frame.
    fn inbound(f: &Frame) -> Inbound {
        let reply = (f.event == "phx_reply").then(|| f.reply().ok()).flatten();
        Inbound {
            join_ref: f.join_ref.clone(),
            r#ref: f.r#ref.clone(),
            topic: f.topic.clone(),
            event: f.event.clone(),
            status: reply
                .as_ref()
                .map(|r| if r.status == ReplyStatus::Ok { "ok" } else { "error" }.to_owned()),
            reason: reply.as_ref().and_then(|r| r.reason().map(str::to_owned)),
        }
    }

    fn typing() -> Event {
        Event::Typing(Typing {
            conversation_id: "c1".into(),
            actor: Author { kind: AuthorKind::Agent, id: "a1".into(), name: Some("Ann".into()) },
            is_typing: true,
        })
    }

    #[test]
    fn join_reply_broadcast_and_rejoin_after_reset() {
        let mut s = Subscriptions::new(true);
        s.set_token(Some("tok".into()));
        assert!(s.add("conversation:c1"));
        let joins = s.join_all();
        assert_eq!(joins.len(), 1);
        assert_eq!(
            codec::encode_text(Vsn::V2, &frame(&joins[0])).unwrap(),
            r#"["1","1","realtime:conversation:c1","phx_join",{"access_token":"tok","config":{"broadcast":{"ack":false,"self":false},"postgres_changes":[],"presence":{"enabled":false,"key":""},"private":true}}]"#
        );
        assert!(!s.settled());
        let ok = Frame::reply_ok(
            Some("1".into()),
            Some("1".into()),
            "realtime:conversation:c1",
            json!({"postgres_changes": []}),
        );
        assert_eq!(s.handle(&inbound(&ok)), Incoming::Joined("conversation:c1".into()));
        assert!(s.settled());
        let b = Frame::broadcast("realtime:conversation:c1", &typing());
        assert_eq!(s.handle(&inbound(&b)), Incoming::Event { channel: "conversation:c1".into() });

        s.reset();
        assert_eq!(s.state("conversation:c1"), Some(SubState::Pending));
        assert_eq!(s.handle(&inbound(&b)), Incoming::Ignored, "no events before the rejoin");
        let again = s.join_all();
        assert_eq!(again[0].join_ref.as_deref(), Some("2"));
        // The old join's late reply is ignored.
        assert_eq!(s.handle(&inbound(&ok)), Incoming::Ignored);
    }

    #[test]
    fn refused_joins_and_server_closes() {
        let mut s = Subscriptions::new(true);
        s.add("agent:a2");
        let j = s.join("agent:a2").unwrap();
        let err = Frame::reply_error(
            j.join_ref.clone(),
            Some(j.r#ref.clone()),
            &j.topic,
            "not allowed to join this channel",
        );
        assert_eq!(
            s.handle(&inbound(&err)),
            Incoming::JoinFailed {
                channel: "agent:a2".into(),
                reason: "not allowed to join this channel".into()
            }
        );
        assert!(s.settled());
        assert!(s.join_all().is_empty(), "a refused channel is not retried on its own");
        assert!(s.add("agent:a2"), "subscribing again retries it");

        s.add("project:p1:queue");
        let j = s.join("project:p1:queue").unwrap();
        s.handle(&inbound(&Frame::reply_ok(j.join_ref.clone(), Some(j.r#ref.clone()), &j.topic, json!({}))));
        assert_eq!(
            s.handle(&inbound(&Frame::error(j.join_ref.clone(), &j.topic))),
            Incoming::ChannelError("project:p1:queue".into())
        );
        assert!(s.join("project:p1:queue").is_some(), "phx_error means rejoin");
    }

    #[test]
    fn holders_share_a_channel_and_the_last_leaves() {
        let mut s = Subscriptions::new(true);
        assert!(s.add("conversation:c1"));
        assert!(!s.add("conversation:c1"));
        let j = s.join("conversation:c1").unwrap();
        s.handle(&inbound(&Frame::reply_ok(j.join_ref.clone(), Some(j.r#ref.clone()), &j.topic, json!({}))));
        assert_eq!(s.remove("conversation:c1"), None);
        let leave = s.remove("conversation:c1").unwrap();
        assert_eq!(leave.event(), "phx_leave");
        assert_eq!(frame(&leave).event, "phx_leave");
        assert_eq!(leave.join_ref, j.join_ref);
        assert!(!s.contains("conversation:c1"));
        assert_eq!(s.remove("conversation:c1"), None);
    }

    #[test]
    fn heartbeats_and_token_pushes() {
        let mut s = Subscriptions::new(false);
        let hb = s.heartbeat();
        assert_eq!(hb.topic, "phoenix");
        let reply = Frame::reply_ok(None, Some(hb.r#ref.clone()), "phoenix", json!({}));
        assert_eq!(s.handle(&inbound(&reply)), Incoming::HeartbeatReply);
        assert_eq!(s.handle(&inbound(&reply)), Incoming::Ignored, "a reply counts once");

        s.add("room");
        let j = s.join("room").unwrap();
        assert!(!frame(&j).join_payload().unwrap().config.private);
        s.handle(&inbound(&Frame::reply_ok(j.join_ref.clone(), Some(j.r#ref.clone()), &j.topic, json!({}))));
        assert!(s.token_pushes().is_empty(), "no token, nothing to push");
        s.set_token(Some("new".into()));
        let pushes = s.token_pushes();
        assert_eq!(frame(&pushes[0]).access_token_value(), Some("new"));
        let b = s.broadcast("room").unwrap();
        assert_eq!(frame(&b).broadcast_event().unwrap(), typing());
        assert_eq!(b.join_ref, j.join_ref);
        assert!(s.broadcast("nope").is_none());
    }
}
