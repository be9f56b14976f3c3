//! The serializers: vsn 1.0.0 (JSON objects) and vsn 2.0.0 (JSON arrays and binary broadcast
//! frames), byte for byte as `@supabase/realtime-js` 2.119 writes and reads them.
//!
//! Binary frames (vsn 2.0.0 only):
//! - kind 3, client broadcast push: `kind, join_ref_len, ref_len, topic_len, event_len,
//!   meta_len, encoding`, then `join_ref, ref, topic, event, meta`, then the payload;
//! - kind 4, server broadcast: `kind, topic_len, event_len, meta_len, encoding`, then
//!   `topic, event, meta`, then the payload.
//!
//! Lengths are single bytes (at most 255); `encoding` is 1 for a JSON payload and 0 for raw
//! bytes; `event` is the user event (the Handoff event name), not `broadcast`.

use serde_json::{Map, Value};

use super::{Frame, Payload, BROADCAST};

/// Binary kind of a client broadcast push.
pub const KIND_PUSH: u8 = 3;
/// Binary kind of a server broadcast.
pub const KIND_BROADCAST: u8 = 4;
const ENCODING_BINARY: u8 = 0;
const ENCODING_JSON: u8 = 1;

/// The serializer a socket speaks, from the `vsn` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Vsn {
    /// `1.0.0`: JSON objects (the Phoenix default when `vsn` is absent).
    #[default]
    V1,
    /// `2.0.0`: JSON arrays and binary broadcasts (realtime-js's default).
    V2,
}

impl Vsn {
    /// Parses the `vsn` query parameter; absent means 1.0.0.
    ///
    /// # Errors
    /// [`CodecError::UnsupportedVsn`] for any other value.
    pub fn from_param(vsn: Option<&str>) -> Result<Vsn, CodecError> {
        match vsn {
            None | Some("1.0.0") => Ok(Vsn::V1),
            Some("2.0.0") => Ok(Vsn::V2),
            Some(other) => Err(CodecError::UnsupportedVsn(other.to_owned())),
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Vsn::V1 => "1.0.0",
            Vsn::V2 => "2.0.0",
        }
    }
}

/// An encoded frame: a WebSocket text or binary message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoded {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A frame that could not be encoded or decoded. Decoding errors never concern a known-good
/// frame with an unknown event: those decode to [`super::FrameKind::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not valid JSON, or JSON of the wrong type for a field.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid JSON but not a Phoenix frame.
    #[error("malformed frame: {0}")]
    Shape(&'static str),
    /// A binary frame ended early.
    #[error("binary frame truncated")]
    Truncated,
    /// A binary frame of a kind this codec does not know.
    #[error("unknown binary frame kind {0}")]
    UnknownKind(u8),
    /// A string in a binary frame is not UTF-8.
    #[error("binary frame field is not UTF-8")]
    InvalidUtf8,
    /// A field is longer than the 255 bytes a binary frame can carry.
    #[error("{field} is {len} bytes, more than 255")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A binary payload cannot be sent as text.
    #[error("binary payloads need a binary frame")]
    BinaryPayload,
    /// The `vsn` parameter names no serializer this server speaks.
    #[error("unsupported serializer vsn `{0}`")]
    UnsupportedVsn(String),
}

impl From<serde_json::Error> for CodecError {
    fn from(e: serde_json::Error) -> CodecError {
        CodecError::Json(e.to_string())
    }
}

fn opt_str(v: Option<&String>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.clone()))
}

/// Encodes a frame as a text message of the given serializer.
///
/// # Errors
/// [`CodecError::BinaryPayload`] for a frame with a binary payload.
pub fn encode_text(vsn: Vsn, frame: &Frame) -> Result<String, CodecError> {
    let Payload::Json(payload) = &frame.payload else { return Err(CodecError::BinaryPayload) };
    let value = match vsn {
        Vsn::V1 => {
            let mut m = Map::new();
            m.insert("topic".into(), Value::String(frame.topic.clone()));
            m.insert("event".into(), Value::String(frame.event.clone()));
            m.insert("payload".into(), payload.clone());
            m.insert("ref".into(), opt_str(frame.r#ref.as_ref()));
            m.insert("join_ref".into(), opt_str(frame.join_ref.as_ref()));
            Value::Object(m)
        }
        Vsn::V2 => Value::Array(vec![
            opt_str(frame.join_ref.as_ref()),
            opt_str(frame.r#ref.as_ref()),
            Value::String(frame.topic.clone()),
            Value::String(frame.event.clone()),
            payload.clone(),
        ]),
    };
    serde_json::to_string(&value).map_err(CodecError::from)
}

fn opt_string(v: Option<Value>) -> Result<Option<String>, CodecError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        // Some clients send numeric refs.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(CodecError::Shape("ref must be a string or null")),
    }
}

fn string(v: Option<Value>, what: &'static str) -> Result<String, CodecError> {
    match v {
        Some(Value::String(s)) => Ok(s),
        _ => Err(CodecError::Shape(what)),
    }
}

/// Decodes a text message of the given serializer.
///
/// # Errors
/// When the text is not JSON or not a frame of that serializer.
pub fn decode_text(vsn: Vsn, text: &str) -> Result<Frame, CodecError> {
    let value: Value = serde_json::from_str(text).map_err(CodecError::from)?;
    match (vsn, value) {
        (Vsn::V2, Value::Array(parts)) => {
            let [join_ref, r#ref, topic, event, payload]: [Value; 5] = parts
                .try_into()
                .map_err(|_| CodecError::Shape("expected [join_ref, ref, topic, event, payload]"))?;
            Ok(Frame {
                join_ref: opt_string(Some(join_ref))?,
                r#ref: opt_string(Some(r#ref))?,
                topic: string(Some(topic), "topic must be a string")?,
                event: string(Some(event), "event must be a string")?,
                payload: Payload::Json(payload),
            })
        }
        (Vsn::V1, Value::Object(mut m)) => Ok(Frame {
            join_ref: opt_string(m.remove("join_ref"))?,
            r#ref: opt_string(m.remove("ref"))?,
            topic: string(m.remove("topic"), "topic must be a string")?,
            event: string(m.remove("event"), "event must be a string")?,
            payload: Payload::Json(m.remove("payload").unwrap_or(Value::Null)),
        }),
        (Vsn::V2, _) => Err(CodecError::Shape("expected a JSON array")),
        (Vsn::V1, _) => Err(CodecError::Shape("expected a JSON object")),
    }
}

/// The user event, metadata and payload bytes of a broadcast frame.
fn broadcast_parts(frame: &Frame) -> Result<(String, Vec<u8>, u8, Vec<u8>), CodecError> {
    if frame.event != BROADCAST {
        return Err(CodecError::Shape("only broadcasts have a binary form"));
    }
    match &frame.payload {
        Payload::Json(payload) => {
            let event = payload
                .get("event")
                .and_then(Value::as_str)
                .ok_or(CodecError::Shape("broadcast without event"))?;
            let meta = match payload.get("meta") {
                Some(meta) => serde_json::to_vec(meta).map_err(CodecError::from)?,
                None => Vec::new(),
            };
            let inner = payload.get("payload").unwrap_or(&Value::Null);
            let data = serde_json::to_vec(inner).map_err(CodecError::from)?;
            Ok((event.to_owned(), meta, ENCODING_JSON, data))
        }
        Payload::BinaryBroadcast { event, meta, data } => {
            let meta = match meta {
                Some(meta) => serde_json::to_vec(meta).map_err(CodecError::from)?,
                None => Vec::new(),
            };
            Ok((event.clone(), meta, ENCODING_BINARY, data.clone()))
        }
    }
}

fn len_byte(field: &'static str, bytes: &[u8]) -> Result<u8, CodecError> {
    u8::try_from(bytes.len()).map_err(|_| CodecError::TooLong { field, len: bytes.len() })
}

/// Encodes a client broadcast push as a binary frame of kind 3 (what realtime-js sends).
///
/// # Errors
/// When the frame is not a broadcast or a field is longer than 255 bytes.
pub fn encode_push_binary(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    let (event, meta, encoding, data) = broadcast_parts(frame)?;
    let join_ref = frame.join_ref.as_deref().unwrap_or("").as_bytes();
    let r#ref = frame.r#ref.as_deref().unwrap_or("").as_bytes();
    let topic = frame.topic.as_bytes();
    let mut out = Vec::with_capacity(
        7 + join_ref.len() + r#ref.len() + topic.len() + event.len() + meta.len() + data.len(),
    );
    out.extend_from_slice(&[
        KIND_PUSH,
        len_byte("join_ref", join_ref)?,
        len_byte("ref", r#ref)?,
        len_byte("topic", topic)?,
        len_byte("event", event.as_bytes())?,
        len_byte("meta", &meta)?,
        encoding,
    ]);
    for part in [join_ref, r#ref, topic, event.as_bytes(), &meta, &data] {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Encodes a server broadcast as a binary frame of kind 4.
///
/// # Errors
/// When the frame is not a broadcast or a field is longer than 255 bytes.
pub fn encode_broadcast_binary(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    let (event, meta, encoding, data) = broadcast_parts(frame)?;
    let topic = frame.topic.as_bytes();
    let mut out = Vec::with_capacity(5 + topic.len() + event.len() + meta.len() + data.len());
    out.extend_from_slice(&[
        KIND_BROADCAST,
        len_byte("topic", topic)?,
        len_byte("event", event.as_bytes())?,
        len_byte("meta", &meta)?,
        encoding,
    ]);
    for part in [topic, event.as_bytes(), &meta, &data] {
        out.extend_from_slice(part);
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.at.checked_add(n).ok_or(CodecError::Truncated)?;
        let out = self.bytes.get(self.at..end).ok_or(CodecError::Truncated)?;
        self.at = end;
        Ok(out)
    }

    fn str(&mut self, n: u8) -> Result<&'a str, CodecError> {
        let bytes = self.take(usize::from(n))?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8)
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }
}

/// The parts of a binary message, borrowed from its bytes: what [`decode_binary`] decodes
/// further, and what a reader that leaves JSON to the browser (the wasm client) uses as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryParts<'a> {
    /// The push's join ref (kind 3; `None` when absent or empty).
    pub join_ref: Option<&'a str>,
    /// The push's ref (kind 3; `None` when absent or empty).
    pub r#ref: Option<&'a str>,
    /// The topic.
    pub topic: &'a str,
    /// The user event name.
    pub event: &'a str,
    /// The metadata JSON text (empty: none).
    pub meta: &'a str,
    /// Whether `data` is JSON text (else raw bytes).
    pub json: bool,
    /// The user payload.
    pub data: &'a [u8],
}

/// Splits a binary message (a kind 3 push or a kind 4 broadcast) into its parts.
///
/// # Errors
/// When the bytes are truncated, not UTF-8 where strings are, of an unknown kind or with an
/// unknown payload encoding.
pub fn split_binary(bytes: &[u8]) -> Result<BinaryParts<'_>, CodecError> {
    let kind = *bytes.first().ok_or(CodecError::Truncated)?;
    let mut r = Reader { bytes, at: 1 };
    let (join_ref, r#ref, topic, event, meta, encoding) = match kind {
        KIND_PUSH => {
            let h = r.take(6)?;
            let (jl, rl, tl, el, ml, enc) = (h[0], h[1], h[2], h[3], h[4], h[5]);
            let join_ref = r.str(jl)?;
            let r#ref = r.str(rl)?;
            let topic = r.str(tl)?;
            let event = r.str(el)?;
            let meta = r.str(ml)?;
            (Some(join_ref), Some(r#ref), topic, event, meta, enc)
        }
        KIND_BROADCAST => {
            let h = r.take(4)?;
            let (tl, el, ml, enc) = (h[0], h[1], h[2], h[3]);
            let topic = r.str(tl)?;
            let event = r.str(el)?;
            let meta = r.str(ml)?;
            (None, None, topic, event, meta, enc)
        }
        other => return Err(CodecError::UnknownKind(other)),
    };
    let json = match encoding {
        ENCODING_JSON => true,
        ENCODING_BINARY => false,
        _ => return Err(CodecError::Shape("unknown payload encoding")),
    };
    Ok(BinaryParts {
        join_ref: join_ref.filter(|s| !s.is_empty()),
        r#ref: r#ref.filter(|s| !s.is_empty()),
        topic,
        event,
        meta,
        json,
        data: r.rest(),
    })
}

/// Decodes a binary message: a kind 3 push or a kind 4 broadcast. Both come out as a
/// `broadcast` frame with payload `{"type": "broadcast", "event", "payload"}` (and `meta` when
/// present), exactly as realtime-js presents them.
///
/// # Errors
/// When the bytes are truncated, not UTF-8 where strings are, of an unknown kind, or carry
/// invalid JSON.
pub fn decode_binary(bytes: &[u8]) -> Result<Frame, CodecError> {
    let parts = split_binary(bytes)?;
    let meta = if parts.meta.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(parts.meta).map_err(CodecError::from)?)
    };
    let event = parts.event.to_owned();
    let payload = if parts.json {
        let inner: Value = serde_json::from_slice(parts.data).map_err(CodecError::from)?;
        let mut m = Map::new();
        m.insert("type".into(), Value::String(BROADCAST.to_owned()));
        m.insert("event".into(), Value::String(event));
        m.insert("payload".into(), inner);
        if let Some(meta) = meta {
            m.insert("meta".into(), meta);
        }
        Payload::Json(Value::Object(m))
    } else {
        Payload::BinaryBroadcast { event, meta, data: parts.data.to_vec() }
    };
    Ok(Frame {
        join_ref: parts.join_ref.map(str::to_owned),
        r#ref: parts.r#ref.map(str::to_owned),
        topic: parts.topic.to_owned(),
        event: BROADCAST.to_owned(),
        payload,
    })
}

/// Decodes a WebSocket message of either type.
///
/// # Errors
/// As [`decode_text`] and [`decode_binary`].
pub fn decode(vsn: Vsn, message: &Encoded) -> Result<Frame, CodecError> {
    match message {
        Encoded::Text(text) => decode_text(vsn, text),
        Encoded::Binary(bytes) => decode_binary(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Author, AuthorKind, Event, Typing};
    use serde_json::json;

    fn typing() -> Event {
        Event::Typing(Typing {
            conversation_id: "c1".into(),
            actor: Author { kind: AuthorKind::Customer, id: "v1".into(), name: None },
            is_typing: true,
        })
    }

    #[test]
    fn vsn_param() {
        assert_eq!(Vsn::from_param(None), Ok(Vsn::V1));
        assert_eq!(Vsn::from_param(Some("1.0.0")), Ok(Vsn::V1));
        assert_eq!(Vsn::from_param(Some("2.0.0")), Ok(Vsn::V2));
        assert_eq!(Vsn::from_param(Some("3.0.0")), Err(CodecError::UnsupportedVsn("3.0.0".into())));
        assert_eq!(Vsn::V2.as_str(), "2.0.0");
    }

    #[test]
    fn push_round_trips_through_kind_3() {
        let frame = Frame::push_broadcast("1", "7", "realtime:conversation:c1", &typing());
        let bytes = encode_push_binary(&frame).unwrap();
        assert_eq!(&bytes[..7], &[3, 1, 1, 24, 6, 0, 1]);
        let back = decode_binary(&bytes).unwrap();
        assert_eq!(back, frame);
        assert_eq!(back.broadcast_event().unwrap(), typing());
    }

    #[test]
    fn broadcast_round_trips_through_kind_4() {
        let frame = Frame::broadcast("realtime:conversation:c1", &typing());
        let bytes = encode_broadcast_binary(&frame).unwrap();
        assert_eq!(&bytes[..5], &[4, 24, 6, 0, 1]);
        assert_eq!(decode_binary(&bytes).unwrap(), frame);
    }

    #[test]
    fn multibyte_lengths_count_bytes() {
        let frame = Frame::broadcast("realtime:café", &typing());
        let bytes = encode_broadcast_binary(&frame).unwrap();
        assert_eq!(bytes[1], 14);
        assert_eq!(decode_binary(&bytes).unwrap().topic, "realtime:café");
    }

    #[test]
    fn fields_over_255_bytes_are_refused() {
        let topic = format!("realtime:{}", "x".repeat(250));
        let frame = Frame::broadcast(&topic, &typing());
        assert_eq!(encode_broadcast_binary(&frame), Err(CodecError::TooLong { field: "topic", len: 259 }));
        assert_eq!(
            CodecError::TooLong { field: "topic", len: 259 }.to_string(),
            "topic is 259 bytes, more than 255"
        );
    }

    #[test]
    fn binary_payloads_and_meta_survive() {
        let frame = Frame {
            join_ref: None,
            r#ref: None,
            topic: "realtime:x".into(),
            event: "broadcast".into(),
            payload: Payload::BinaryBroadcast {
                event: "blob".into(),
                meta: Some(json!({"persist": true})),
                data: vec![0, 159, 255],
            },
        };
        let bytes = encode_broadcast_binary(&frame).unwrap();
        assert_eq!(decode_binary(&bytes).unwrap(), frame);
        assert_eq!(encode_text(Vsn::V2, &frame), Err(CodecError::BinaryPayload));
    }

    #[test]
    fn malformed_binary_is_a_typed_error() {
        assert_eq!(decode_binary(&[]), Err(CodecError::Truncated));
        assert_eq!(decode_binary(&[9, 0, 0]), Err(CodecError::UnknownKind(9)));
        assert_eq!(decode_binary(&[4, 10, 1, 0, 1, b'a']), Err(CodecError::Truncated));
        assert_eq!(decode_binary(&[4, 1, 1, 0, 1, 0xff, b'e', b'{']), Err(CodecError::InvalidUtf8));
        assert!(matches!(decode_binary(&[4, 1, 1, 0, 1, b't', b'e', b'{']), Err(CodecError::Json(_))));
        assert!(matches!(decode_binary(&[4, 1, 1, 0, 7, b't', b'e']), Err(CodecError::Shape(_))));
    }

    #[test]
    fn malformed_text_is_a_typed_error() {
        assert!(matches!(decode_text(Vsn::V2, "[1,2"), Err(CodecError::Json(_))));
        assert_eq!(decode_text(Vsn::V2, "{}"), Err(CodecError::Shape("expected a JSON array")));
        assert!(matches!(decode_text(Vsn::V2, r#"[null,null,"t"]"#), Err(CodecError::Shape(_))));
        assert!(matches!(decode_text(Vsn::V2, r#"[null,null,5,"e",{}]"#), Err(CodecError::Shape(_))));
        assert_eq!(decode_text(Vsn::V1, "[]"), Err(CodecError::Shape("expected a JSON object")));
        assert!(matches!(decode_text(Vsn::V1, r#"{"event":"e"}"#), Err(CodecError::Shape(_))));
    }

    #[test]
    fn numeric_and_null_refs_are_accepted() {
        let f = decode_text(Vsn::V2, r#"[null,12,"phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!((f.join_ref, f.r#ref.as_deref()), (None, Some("12")));
        let f = decode_text(Vsn::V1, r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":null}"#)
            .unwrap();
        assert_eq!(f.r#ref, None);
    }

    #[test]
    fn unknown_events_decode() {
        let f = decode_text(Vsn::V2, r#"["1","2","realtime:x","postgres_changes",{"ids":[1]}]"#).unwrap();
        assert_eq!(f.kind(), super::super::FrameKind::Unknown);
    }
}
