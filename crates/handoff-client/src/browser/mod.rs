//! The browser half: RAII handles, `fetch`, the engine, and the JS classes. Compiled for
//! `wasm32` only.

#[cfg(feature = "agent")]
mod agent;
mod customer;
mod engine;
mod handles;
mod http;
#[cfg(feature = "agent")]
mod idle;
#[cfg(feature = "supabase")]
mod supabase;
mod wire;

#[cfg(feature = "agent")]
pub use agent::{counts_as_unread, AgentClient};
pub use customer::HandoffClient;
#[cfg(feature = "supabase")]
pub use supabase::{connect_supabase, RealtimeChannel, RealtimeClient};

use std::future::Future;
use std::pin::Pin;

use js_sys::{Promise, Reflect, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::ClientError;
use engine::Engine;

/// Milliseconds from `performance.now()`: monotonic, what the protocol machines expect.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn now_ms() -> u64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0, |p| p.now().max(0.0) as u64)
}

/// 53 random bits from `Math.random()` (jitter seeds and id prefixes; not for secrets).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn random_u64() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

/// A plain JS object with these properties (payloads for the app, request bodies): built in JS
/// and written by `JSON.stringify`, so no JSON encoder is compiled into the wasm. A property
/// whose value is `undefined` is left out: an optional field (see [`opt_field`]).
pub(crate) fn object(props: &[(&str, &JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in props.iter().filter(|(_, v)| !v.is_undefined()) {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// An optional string field of [`object`]: left out when `None`, as the protocol's types skip
/// it when serializing.
pub(crate) fn opt_field(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::UNDEFINED, JsValue::from_str)
}

/// [`object`] as JSON text (a request body).
pub(crate) fn json_body(props: &[(&str, &JsValue)]) -> Option<String> {
    js_to_json(&object(props))
}

/// A string, or `null`.
pub(crate) fn str_or_null(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

/// Parsed JSON text (`undefined` when empty or not JSON).
pub(crate) fn text_to_js(text: &str) -> JsValue {
    if text.is_empty() {
        JsValue::UNDEFINED
    } else {
        JSON::parse(text).unwrap_or(JsValue::UNDEFINED)
    }
}

/// A JS value as JSON text.
pub(crate) fn js_to_json(v: &JsValue) -> Option<String> {
    JSON::stringify(v).ok().and_then(|s| s.as_string())
}

/// The value at `path` in a parsed JSON answer or payload (`["message", "seq"]`); `undefined`
/// when a step is missing.
pub(crate) fn at(v: &JsValue, path: &[&str]) -> JsValue {
    let mut cur = v.clone();
    for key in path {
        if !cur.is_object() {
            return JsValue::UNDEFINED;
        }
        cur = Reflect::get(&cur, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
    }
    cur
}

/// A whole, non-negative number at `path` (a `seq`).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn path_u64(v: &JsValue, path: &[&str]) -> Option<u64> {
    let n = at(v, path).as_f64()?;
    (n.is_finite() && n >= 0.0).then_some(n as u64)
}

/// A JS `Error` with `code` (and `status`, `channel` when known).
pub(crate) fn error_object(code: &str, message: &str, channel: Option<&str>) -> JsValue {
    let err = js_sys::Error::new(message);
    let _ = Reflect::set(&err, &"code".into(), &code.into());
    if let Some(channel) = channel {
        let _ = Reflect::set(&err, &"channel".into(), &channel.into());
    }
    err.into()
}

/// A [`ClientError`] as a JS `Error` with `code`, `message` and `status`.
pub(crate) fn js_error(e: &ClientError) -> JsValue {
    let err = error_object(e.code(), &e.message(), None);
    if let Some(status) = e.status() {
        let _ = Reflect::set(&err, &"status".into(), &status.into());
    }
    err
}

/// `{code, message, status}` of an error, as `message:failed` carries it.
pub(crate) fn error_payload(e: &ClientError) -> JsValue {
    let status = e.status().map_or(JsValue::NULL, JsValue::from);
    object(&[("code", &e.code().into()), ("message", &e.message().into()), ("status", &status)])
}

/// A string at `path` in a parsed JSON answer (`["conversation", "id"]`). Answers are parsed by
/// `JSON.parse` and read where needed, instead of being deserialized into Rust types: every
/// typed deserializer is code in the wasm.
pub(crate) fn path_str(v: &JsValue, path: &[&str]) -> Option<String> {
    at(v, path).as_string()
}

/// A string property of an options object.
pub(crate) fn opt_str(obj: &JsValue, key: &str) -> Option<String> {
    Reflect::get(obj, &JsValue::from_str(key)).ok().and_then(|v| v.as_string())
}

/// A non-negative whole-number property of an options object.
pub(crate) fn opt_u64(obj: &JsValue, key: &str) -> Option<u64> {
    let v = Reflect::get(obj, &JsValue::from_str(key)).ok()?.as_f64()?;
    // Milliseconds: whole, finite, not negative (a bad value is ignored, the default stays).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// Applies the options every client shares to its engine: `catchUpIntervalMs` (how often a
/// connected client checks for events it missed; default 60000, at least 1000).
pub(crate) fn common_options(engine: &Engine, options: &JsValue) {
    if let Some(ms) = opt_u64(options, "catchUpIntervalMs") {
        engine.with(|i| i.set_catch_up_interval(ms));
    }
}

/// A task of the client's, boxed: every promise the API returns goes through one instantiation
/// of `future_to_promise`, every background fetch through one of `spawn_local` (each would
/// be code in the wasm, once per `async` block).
pub(crate) type Task<T> = Pin<Box<dyn Future<Output = T>>>;

/// The promise of an `async` block (see [`Task`]).
pub(crate) fn promise(f: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    boxed_promise(Box::pin(f))
}

fn boxed_promise(f: Task<Result<JsValue, JsValue>>) -> Promise {
    wasm_bindgen_futures::future_to_promise(f)
}

/// Runs an `async` block on the page's event loop (see [`Task`]).
pub(crate) fn spawn(f: impl Future<Output = ()> + 'static) {
    spawn_task(Box::pin(f));
}

/// Runs a boxed task on the page's event loop: the widget's tasks go through here too, so the
/// client and the widget share one `spawn_local`.
pub fn spawn_task(f: Pin<Box<dyn Future<Output = ()>>>) {
    wasm_bindgen_futures::spawn_local(f);
}

/// A promise of a REST call that resolves to the parsed JSON answer.
pub(crate) fn call(engine: &Engine, method: &'static str, url: String, body: Option<String>) -> Promise {
    let engine = engine.clone();
    wasm_bindgen_futures::future_to_promise(async move {
        engine.rest(method, url, body).await.map_err(|e| js_error(&e))
    })
}

/// A promise of a conversation's whole history: `GET .../events` from the start, page after
/// page (a page holds at most 500 events) until the last event got reaches the conversation's
/// latest `seq`; resolves to `{events, last_seq, status}` with every event.
pub(crate) fn history(engine: &Engine, id: handoff_protocol::ConversationId) -> Promise {
    let engine = engine.clone();
    wasm_bindgen_futures::future_to_promise(async move {
        let all = js_sys::Array::new();
        let mut after = handoff_protocol::Seq::ZERO;
        loop {
            let url = crate::url::events(&engine.base(), &id, after, None);
            let page = engine.rest("GET", url, None).await.map_err(|e| js_error(&e))?;
            let latest = path_u64(&page, &["last_seq"]).unwrap_or(0);
            let events: js_sys::Array = at(&page, &["events"]).dyn_into().unwrap_or_default();
            // Each event's own seq; `last_seq` is not "got up to" when the page was cut.
            let mut last = None;
            for e in events.iter() {
                last = engine::JsEvent::from_wire(&e).and_then(|e| e.seq).max(last);
                all.push(&e);
            }
            match last {
                Some(last) if last.0 < latest && last > after => after = last,
                _ => {
                    let _ = Reflect::set(&page, &"events".into(), &all);
                    return Ok(page);
                }
            }
        }
    })
}

/// A promise rejected with `e`.
pub(crate) fn rejected(e: &ClientError) -> Promise {
    Promise::reject(&js_error(e))
}

/// A `validation_failed` error, checked before a request is made.
pub(crate) fn invalid(message: &str) -> Promise {
    Promise::reject(&error_object("validation_failed", message, None))
}

/// A promise settled by the engine (an outbox send).
pub(crate) fn engine_promise(
    engine: &Engine,
    f: impl FnOnce(&mut engine::Inner, js_sys::Function, js_sys::Function) + 'static,
) -> Promise {
    let mut f = Some(f);
    Promise::new(&mut |resolve, reject| {
        if let Some(f) = f.take() {
            if engine.with(|i| f(i, resolve, reject.clone())).is_none() {
                let _ = reject.call1(&JsValue::NULL, &js_error(&ClientError::Closed));
            }
        }
    })
}
