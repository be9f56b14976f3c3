//! Broadcast channels of any Supabase Realtime endpoint (a Supabase project, or Handoff's own
//! server), with the same socket, supervisor and frames as the Handoff clients.

use handoff_protocol::phoenix::Vsn;
use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::engine::Engine;
use super::opt_str;
use crate::url;

/// Connects to a Supabase Realtime endpoint: `connectSupabase("https://<ref>.supabase.co",
/// anonKey, { private?: false, accessToken? })`. The socket opens on the first `subscribe()`.
///
/// ```js
/// const rt = connectSupabase("https://abc.supabase.co", ANON_KEY);
/// const room = rt.channel("room:lobby");
/// room.on("chat", (payload) => console.log(payload));
/// room.subscribe();
/// room.send("chat", { text: "hi" });
/// ```
#[wasm_bindgen(js_name = connectSupabase)]
pub fn connect_supabase(url: &str, apikey: &str, options: &JsValue) -> RealtimeClient {
    let private = js_sys::Reflect::get(options, &JsValue::from_str("private"))
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let token = opt_str(options, "accessToken").unwrap_or_else(|| apikey.to_owned());
    let engine = Engine::new("", url::realtime(url, apikey, Vsn::V2), private);
    engine.with(|i| i.set_token(Some(token)));
    RealtimeClient { engine }
}

/// A socket to a Supabase Realtime endpoint.
#[wasm_bindgen]
pub struct RealtimeClient {
    engine: Engine,
}

impl std::fmt::Debug for RealtimeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RealtimeClient")
    }
}

#[wasm_bindgen]
impl RealtimeClient {
    /// A broadcast channel named `name` (the wire topic is `realtime:<name>`).
    pub fn channel(&self, name: String) -> RealtimeChannel {
        RealtimeChannel { engine: self.engine.clone(), name }
    }

    /// A new access token (a user's JWT) for every joined channel and later joins.
    #[wasm_bindgen(js_name = setAuth)]
    pub fn set_auth(&self, token: String) {
        self.engine.with(|i| i.set_token(Some(token)));
    }

    /// `"connection"` (state name) and `"error"` events of the socket.
    pub fn on(&self, event: String, f: Function) -> Function {
        self.engine.on(event, None, f)
    }

    /// The connection state's name.
    #[wasm_bindgen(getter, js_name = connectionState)]
    pub fn connection_state(&self) -> String {
        self.engine.state().to_owned()
    }

    /// Closes the socket and every channel.
    pub fn close(&self) {
        self.engine.with(super::engine::Inner::close);
    }
}

/// One broadcast channel.
#[wasm_bindgen]
pub struct RealtimeChannel {
    engine: Engine,
    name: String,
}

impl std::fmt::Debug for RealtimeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RealtimeChannel")
    }
}

#[wasm_bindgen]
impl RealtimeChannel {
    /// Calls `fn(payload, event)` for broadcasts named `event` on this channel (`"*"`: all).
    pub fn on(&self, event: String, f: Function) -> Function {
        self.engine.on(event, Some(self.name.clone()), f)
    }

    /// Joins (and connects the socket if needed); rejoins after every reconnect.
    pub fn subscribe(&self) {
        self.engine.with(|i| {
            i.hold(&self.name);
            i.start();
        });
    }

    /// Broadcasts `{event, payload}` to the channel's other subscribers; `false` when not joined.
    pub fn send(&self, event: &str, payload: &JsValue) -> bool {
        self.engine.with(|i| i.broadcast(&self.name, event, payload)).unwrap_or(false)
    }

    /// Leaves the channel.
    pub fn unsubscribe(&self) {
        self.engine.with(|i| i.release(&self.name));
    }
}
