//! Phoenix Channels frames as Supabase Realtime speaks them (DESIGN section 2).
//!
//! A [`Frame`] is the five-part Phoenix message (`join_ref`, `ref`, `topic`, `event`,
//! `payload`). [`codec`] turns frames into the bytes of each serializer: vsn 1.0.0 (JSON
//! objects), vsn 2.0.0 (JSON arrays, plus the binary broadcast frames of kind 3, client push,
//! and kind 4, server broadcast, that `@supabase/realtime-js` uses).
//!
//! ```
//! use handoff_protocol::phoenix::{codec, Frame, FrameKind, Vsn};
//!
//! let frame = codec::decode_text(Vsn::V2, r#"["1","1","phoenix","heartbeat",{}]"#).unwrap();
//! assert_eq!(frame.kind(), FrameKind::Heartbeat);
//! let reply = Frame::reply_ok(None, frame.r#ref.clone(), "phoenix", serde_json::json!({}));
//! assert_eq!(
//!     codec::encode_text(Vsn::V2, &reply).unwrap(),
//!     r#"[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]"#
//! );
//! ```

pub mod codec;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use codec::{CodecError, Encoded, Vsn};

use crate::channel::PHOENIX_TOPIC;
use crate::event::Event;

/// Wire name of a join.
pub const PHX_JOIN: &str = "phx_join";
/// Wire name of a leave.
pub const PHX_LEAVE: &str = "phx_leave";
/// Wire name of a reply.
pub const PHX_REPLY: &str = "phx_reply";
/// Wire name of a channel close (realtime-js drops the channel for good).
pub const PHX_CLOSE: &str = "phx_close";
/// Wire name of a channel error (realtime-js rejoins after a second).
pub const PHX_ERROR: &str = "phx_error";
/// Wire name of a heartbeat (topic `phoenix`).
pub const HEARTBEAT: &str = "heartbeat";
/// Wire name of a token refresh push (no reply).
pub const ACCESS_TOKEN: &str = "access_token";
/// Wire name of a broadcast.
pub const BROADCAST: &str = "broadcast";
/// Wire name of a presence snapshot.
pub const PRESENCE_STATE: &str = "presence_state";
/// Wire name of a presence change.
pub const PRESENCE_DIFF: &str = "presence_diff";
/// Wire name of a presence track/untrack push.
pub const PRESENCE: &str = "presence";

/// The payload of a frame: JSON, or the raw bytes of a binary-encoded broadcast.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// A JSON payload (every frame but binary broadcasts).
    Json(Value),
    /// A broadcast whose user payload is binary (encoding 0 of kind 3 and 4 frames).
    BinaryBroadcast {
        /// The user event name.
        event: String,
        /// The metadata JSON, if any.
        meta: Option<Value>,
        /// The raw user payload.
        data: Vec<u8>,
    },
}

/// One Phoenix message.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The ref of the join this frame belongs to.
    pub join_ref: Option<String>,
    /// The message ref, echoed by its reply. Any string; need not be contiguous.
    pub r#ref: Option<String>,
    /// `realtime:<channel>` or `phoenix`.
    pub topic: String,
    /// The Phoenix event name.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

/// What a frame is, from its event name. Unknown names map to [`FrameKind::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// `phx_join`
    Join,
    /// `phx_leave`
    Leave,
    /// `phx_reply`
    Reply,
    /// `phx_close`
    Close,
    /// `phx_error`
    Error,
    /// `heartbeat`
    Heartbeat,
    /// `access_token`
    AccessToken,
    /// `broadcast`
    Broadcast,
    /// `presence_state`, `presence_diff` or `presence`
    Presence,
    /// Anything else (`postgres_changes`, `system`, newer events): ignored, never fatal.
    Unknown,
}

impl FrameKind {
    /// The kind of a frame with this event name.
    pub fn of(event: &str) -> FrameKind {
        match event {
            PHX_JOIN => FrameKind::Join,
            PHX_LEAVE => FrameKind::Leave,
            PHX_REPLY => FrameKind::Reply,
            PHX_CLOSE => FrameKind::Close,
            PHX_ERROR => FrameKind::Error,
            HEARTBEAT => FrameKind::Heartbeat,
            ACCESS_TOKEN => FrameKind::AccessToken,
            BROADCAST => FrameKind::Broadcast,
            PRESENCE_STATE | PRESENCE_DIFF | PRESENCE => FrameKind::Presence,
            _ => FrameKind::Unknown,
        }
    }
}

/// The `config` of a Supabase join.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinConfig {
    /// Broadcast options.
    #[serde(default)]
    pub broadcast: BroadcastConfig,
    /// Presence options (accepted, not implemented by Handoff's server).
    #[serde(default)]
    pub presence: PresenceConfig,
    /// Postgres changes subscriptions (always empty for Handoff).
    #[serde(default)]
    pub postgres_changes: Vec<Value>,
    /// Whether the channel is private (authorized by token).
    #[serde(default)]
    pub private: bool,
}

/// Broadcast options of a join.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastConfig {
    /// Whether the sender receives its own broadcasts.
    #[serde(default, rename = "self")]
    pub self_: bool,
    /// Whether client broadcasts get a `phx_reply`.
    #[serde(default)]
    pub ack: bool,
}

/// Presence options of a join.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceConfig {
    /// Presence key.
    #[serde(default)]
    pub key: String,
    /// Whether presence is enabled.
    #[serde(default)]
    pub enabled: bool,
}

/// The payload of `phx_join`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinPayload {
    /// Channel options.
    #[serde(default)]
    pub config: JoinConfig,
    /// The token that authorizes the join; realtime-js may send it later as `access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

/// Status of a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplyStatus {
    /// Success.
    Ok,
    /// Failure; `response.reason` says why.
    Error,
    /// Another status (`timeout` is client-side only).
    #[serde(other)]
    Unknown,
}

/// The payload of `phx_reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Ok or error.
    pub status: ReplyStatus,
    /// The response (`{"reason": ...}` for errors).
    #[serde(default)]
    pub response: Value,
}

impl Reply {
    /// The error reason, for error replies.
    pub fn reason(&self) -> Option<&str> {
        self.response.get("reason").and_then(Value::as_str)
    }
}

impl Frame {
    fn json(
        join_ref: Option<String>,
        r#ref: Option<String>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Frame {
        Frame {
            join_ref,
            r#ref,
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload: Payload::Json(payload),
        }
    }

    /// A join; in Phoenix the join's `ref` is also its `join_ref`.
    pub fn join(join_ref: &str, topic: &str, payload: &JoinPayload) -> Frame {
        let payload = serde_json::to_value(payload).unwrap_or(Value::Null);
        Frame::json(Some(join_ref.to_owned()), Some(join_ref.to_owned()), topic, PHX_JOIN, payload)
    }

    /// A successful reply.
    pub fn reply_ok(join_ref: Option<String>, r#ref: Option<String>, topic: &str, response: Value) -> Frame {
        let mut reply = serde_json::Map::new();
        reply.insert("status".to_owned(), Value::String("ok".to_owned()));
        reply.insert("response".to_owned(), response);
        Frame::json(join_ref, r#ref, topic, PHX_REPLY, Value::Object(reply))
    }

    /// An error reply with a reason.
    pub fn reply_error(join_ref: Option<String>, r#ref: Option<String>, topic: &str, reason: &str) -> Frame {
        Frame::json(
            join_ref,
            r#ref,
            topic,
            PHX_REPLY,
            json!({"status": "error", "response": {"reason": reason}}),
        )
    }

    /// The server's broadcast of an event to a topic: no refs, so the encoded bytes are the same
    /// for every subscriber.
    pub fn broadcast(topic: &str, event: &Event) -> Frame {
        Frame::json(None, None, topic, BROADCAST, broadcast_payload(event))
    }

    /// A client's broadcast push of an event on a joined topic.
    pub fn push_broadcast(join_ref: &str, r#ref: &str, topic: &str, event: &Event) -> Frame {
        Frame::json(
            Some(join_ref.to_owned()),
            Some(r#ref.to_owned()),
            topic,
            BROADCAST,
            broadcast_payload(event),
        )
    }

    /// A heartbeat on the `phoenix` topic.
    pub fn heartbeat(r#ref: &str) -> Frame {
        Frame::json(None, Some(r#ref.to_owned()), PHOENIX_TOPIC, HEARTBEAT, json!({}))
    }

    /// A token refresh for a joined topic.
    pub fn access_token(join_ref: &str, r#ref: &str, topic: &str, token: &str) -> Frame {
        Frame::json(
            Some(join_ref.to_owned()),
            Some(r#ref.to_owned()),
            topic,
            ACCESS_TOKEN,
            json!({"access_token": token}),
        )
    }

    /// A leave.
    pub fn leave(join_ref: &str, r#ref: &str, topic: &str) -> Frame {
        Frame::json(Some(join_ref.to_owned()), Some(r#ref.to_owned()), topic, PHX_LEAVE, json!({}))
    }

    /// The server closes a channel for good.
    pub fn close(join_ref: Option<String>, topic: &str) -> Frame {
        Frame::json(join_ref.clone(), join_ref, topic, PHX_CLOSE, json!({}))
    }

    /// The server reports a failed channel (the client rejoins).
    pub fn error(join_ref: Option<String>, topic: &str) -> Frame {
        Frame::json(join_ref.clone(), join_ref, topic, PHX_ERROR, json!({}))
    }

    /// What the frame is.
    pub fn kind(&self) -> FrameKind {
        FrameKind::of(&self.event)
    }

    fn json_payload(&self) -> Result<&Value, CodecError> {
        match &self.payload {
            Payload::Json(v) => Ok(v),
            Payload::BinaryBroadcast { .. } => Err(CodecError::Shape("expected a JSON payload")),
        }
    }

    /// The payload of a join.
    ///
    /// # Errors
    /// When the payload is not a join payload.
    pub fn join_payload(&self) -> Result<JoinPayload, CodecError> {
        JoinPayload::deserialize(self.json_payload()?).map_err(CodecError::from)
    }

    /// The payload of a reply.
    ///
    /// # Errors
    /// When the payload is not a reply.
    pub fn reply(&self) -> Result<Reply, CodecError> {
        Reply::deserialize(self.json_payload()?).map_err(CodecError::from)
    }

    /// The token of an `access_token` push.
    pub fn access_token_value(&self) -> Option<&str> {
        self.json_payload().ok()?.get("access_token")?.as_str()
    }

    /// The Handoff event inside a broadcast frame. An event name Handoff does not know gives
    /// [`Event::Unknown`].
    ///
    /// # Errors
    /// When the frame is not a JSON broadcast, or a known event has a malformed payload.
    pub fn broadcast_event(&self) -> Result<Event, CodecError> {
        let payload = self.json_payload()?;
        let name = payload
            .get("event")
            .and_then(Value::as_str)
            .ok_or(CodecError::Shape("broadcast without event"))?;
        let inner = payload.get("payload").cloned().unwrap_or(Value::Null);
        Event::from_parts(name, inner).map_err(CodecError::from)
    }
}

fn broadcast_payload(event: &Event) -> Value {
    json!({
        "type": BROADCAST,
        "event": event.name(),
        "payload": event.payload_value().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_event_names() {
        let f = |event: &str| Frame::json(None, None, "t", event, json!({})).kind();
        assert_eq!(f("phx_join"), FrameKind::Join);
        assert_eq!(f("phx_leave"), FrameKind::Leave);
        assert_eq!(f("phx_reply"), FrameKind::Reply);
        assert_eq!(f("phx_close"), FrameKind::Close);
        assert_eq!(f("phx_error"), FrameKind::Error);
        assert_eq!(f("heartbeat"), FrameKind::Heartbeat);
        assert_eq!(f("access_token"), FrameKind::AccessToken);
        assert_eq!(f("broadcast"), FrameKind::Broadcast);
        assert_eq!(f("presence_diff"), FrameKind::Presence);
        assert_eq!(f("postgres_changes"), FrameKind::Unknown);
        assert_eq!(f("system"), FrameKind::Unknown);
    }

    #[test]
    fn typed_payload_accessors() {
        let join = Frame::join(
            "3",
            "realtime:conversation:c1",
            &JoinPayload { config: JoinConfig::default(), access_token: Some("tok".into()) },
        );
        assert_eq!(join.join_payload().unwrap().access_token.as_deref(), Some("tok"));
        let err = Frame::reply_error(Some("3".into()), Some("3".into()), "t", "nope");
        assert_eq!(err.reply().unwrap().status, ReplyStatus::Error);
        assert_eq!(err.reply().unwrap().reason(), Some("nope"));
        let tok = Frame::access_token("3", "4", "t", "abc");
        assert_eq!(tok.access_token_value(), Some("abc"));
        let unknown = Frame::json(
            None,
            None,
            "t",
            "broadcast",
            json!({"type":"broadcast","event":"x:y","payload":{"a":1}}),
        );
        assert_eq!(unknown.broadcast_event().unwrap().name(), "x:y");
        let bad = Frame::json(None, None, "t", "broadcast", json!({"type":"broadcast"}));
        assert!(bad.broadcast_event().is_err());
    }

    #[test]
    fn a_join_payload_without_config_still_decodes() {
        let f = Frame::json(Some("1".into()), Some("1".into()), "t", PHX_JOIN, json!({}));
        assert_eq!(f.join_payload().unwrap(), JoinPayload::default());
    }
}
