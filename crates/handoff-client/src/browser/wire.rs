//! Phoenix frames in the browser, serializer vsn 2.0.0 (`[join_ref, ref, topic, event,
//! payload]`): text frames are read with `JSON.parse` and written with `JSON.stringify`, binary
//! broadcasts (kind 4, from realtime-js peers) are split by the protocol crate's
//! [`split_binary`]. The shapes are the protocol crate's (`handoff_protocol::phoenix`); the
//! channel bookkeeping works on the [`Inbound`] head and [`Push`] description in between.

use handoff_protocol::phoenix::codec::split_binary;
use handoff_protocol::phoenix::BROADCAST;
use js_sys::{Array, JSON};
use wasm_bindgen::{JsCast, JsValue};

use super::{object, opt_field, path_str, str_or_null};
use crate::subs::{Inbound, Push, PushKind};

/// A frame as received: its head, and its payload as the browser parsed it.
pub(crate) struct Received {
    pub(crate) head: Inbound,
    pub(crate) payload: JsValue,
}

/// Reads a socket message (a string or an `ArrayBuffer`); `None` for anything malformed.
pub(crate) fn decode(data: &JsValue) -> Option<Received> {
    if let Some(text) = data.as_string() {
        let parts: Array = JSON::parse(&text).ok()?.dyn_into().ok()?;
        if parts.length() != 5 {
            return None;
        }
        let (event, payload) = (parts.get(3).as_string()?, parts.get(4));
        let reply = event == handoff_protocol::phoenix::PHX_REPLY;
        let head = Inbound {
            join_ref: parts.get(0).as_string(),
            r#ref: parts.get(1).as_string(),
            topic: parts.get(2).as_string()?,
            status: if reply { path_str(&payload, &["status"]) } else { None },
            reason: if reply { path_str(&payload, &["response", "reason"]) } else { None },
            event,
        };
        return Some(Received { head, payload });
    }
    let buffer: js_sys::ArrayBuffer = data.clone().dyn_into().ok()?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    let parts = split_binary(&bytes).ok()?;
    // A binary user payload has no JSON form: the SDK's channels carry JSON only.
    if !parts.json {
        return None;
    }
    let inner = JSON::parse(core::str::from_utf8(parts.data).ok()?).ok()?;
    let meta = if parts.meta.is_empty() { JsValue::UNDEFINED } else { JSON::parse(parts.meta).ok()? };
    let payload = object(&[
        ("type", &BROADCAST.into()),
        ("event", &parts.event.into()),
        ("payload", &inner),
        ("meta", &meta),
    ]);
    let head = Inbound {
        join_ref: parts.join_ref.map(str::to_owned),
        r#ref: parts.r#ref.map(str::to_owned),
        topic: parts.topic.to_owned(),
        event: BROADCAST.to_owned(),
        status: None,
        reason: None,
    };
    Some(Received { head, payload })
}

/// Writes a push; `broadcast` is the `(event, payload)` of a [`PushKind::Broadcast`].
pub(crate) fn encode(push: &Push, broadcast: Option<(&str, &JsValue)>) -> Option<String> {
    let payload = match &push.kind {
        PushKind::Join { access_token, private } => {
            let f = JsValue::FALSE;
            let config = object(&[
                ("broadcast", &object(&[("ack", &f), ("self", &f)])),
                ("postgres_changes", &Array::new()),
                ("presence", &object(&[("enabled", &f), ("key", &"".into())])),
                ("private", &JsValue::from_bool(*private)),
            ]);
            object(&[("access_token", &opt_field(access_token.as_deref())), ("config", &config)])
        }
        PushKind::AccessToken(t) => object(&[("access_token", &t.into())]),
        PushKind::Broadcast => {
            let (event, payload) = broadcast?;
            object(&[("type", &BROADCAST.into()), ("event", &event.into()), ("payload", payload)])
        }
        _ => object(&[]),
    };
    let frame = Array::of5(
        &str_or_null(push.join_ref.as_deref()),
        &push.r#ref.as_str().into(),
        &push.topic.as_str().into(),
        &push.event().into(),
        &payload,
    );
    super::js_to_json(&frame)
}
