//! `HandoffClient`: the customer side (what the widget uses), headless.

use std::cell::RefCell;
use std::rc::Rc;

use handoff_protocol::api;
use handoff_protocol::event::AuthorKind;
use handoff_protocol::ids::{ClientMsgId, ConversationId};
use handoff_protocol::phoenix::Vsn;
use handoff_protocol::Channel;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::engine::Engine;
use super::{
    call, engine_promise, invalid, js_error, js_to_json, json_body, opt_str, random_u64, rejected,
    str_or_null,
};
use crate::error::ClientError;
use crate::url;

#[derive(Default)]
struct State {
    /// The session answer as JS sees it.
    session: Option<JsValue>,
    project_id: Option<String>,
    conversation: Option<ConversationId>,
    /// The user the site says is signed in (`identify`, or the widget before its session
    /// starts): a stored visitor identified as someone else is not resumed.
    expected_user: Option<String>,
}

/// Where the visitor token is kept: `localStorage` unless the app passes its own
/// `{getItem, setItem}` object, or `null` for memory only.
#[derive(Clone)]
pub(crate) struct Store(Option<JsValue>);

impl Store {
    pub(crate) fn from_option(v: &JsValue) -> Store {
        if v.is_undefined() {
            let local = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
            return Store(local.map(JsValue::from));
        }
        if v.is_null() || v.as_bool() == Some(false) {
            return Store(None);
        }
        Store(Some(v.clone()))
    }

    fn method(&self, name: &str) -> Option<(JsValue, Function)> {
        let obj = self.0.as_ref()?;
        let f = Reflect::get(obj, &JsValue::from_str(name)).ok()?.dyn_into::<Function>().ok()?;
        Some((obj.clone(), f))
    }

    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let (obj, f) = self.method("getItem")?;
        f.call1(&obj, &JsValue::from_str(key)).ok()?.as_string()
    }

    pub(crate) fn set(&self, key: &str, value: &str) {
        if let Some((obj, f)) = self.method("setItem") {
            // A full or blocked storage only costs the visitor their history after a reload.
            let _ = f.call2(&obj, &JsValue::from_str(key), &JsValue::from_str(value));
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        if let Some((obj, f)) = self.method("removeItem") {
            let _ = f.call1(&obj, &JsValue::from_str(key));
        }
    }
}

/// The customer client: a widget session, one conversation, its realtime events.
///
/// ```js
/// const client = new HandoffClient({ baseUrl: "https://chat.example.com", projectKey: "pk_..." });
/// client.on("message:new", ({ message }) => render(message));
/// await client.start();
/// await client.startConversation("Hello!");
/// await client.send("Can I talk to a human?");
/// ```
#[cfg_attr(feature = "js", wasm_bindgen)]
pub struct HandoffClient {
    engine: Engine,
    project_key: String,
    store: Store,
    state: Rc<RefCell<State>>,
}

impl std::fmt::Debug for HandoffClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandoffClient")
    }
}

fn token_key(project_key: &str) -> String {
    let mut k = String::from("handoff.visitor_token.");
    k.push_str(project_key);
    k
}

/// Next to the token: the `user_id` the stored visitor was identified as.
fn user_key(project_key: &str) -> String {
    let mut k = String::from("handoff.visitor_user.");
    k.push_str(project_key);
    k
}

/// Starts (or resumes) the widget session: the stored visitor token, unless it is unknown to
/// the server or was identified as another user than the one expected. `prefetched` is the
/// widget loader's own session call, made while the wasm downloads (see
/// [`HandoffClient::start_prefetched`]).
async fn open_session(
    engine: &Engine,
    store: &Store,
    state: &Rc<RefCell<State>>,
    project_key: String,
    prefetched: Option<JsValue>,
) -> Result<JsValue, JsValue> {
    let (key, ukey) = (token_key(&project_key), user_key(&project_key));
    let expected = state.borrow().expected_user.clone();
    if let (Some(stored), Some(expected)) = (store.get(&ukey), expected) {
        if stored != expected {
            // Another user signed in on this browser: never resume the previous one's visitor.
            store.remove(&key);
            store.remove(&ukey);
        }
    }
    let url = engine.url("/api/widget/session");
    let mut visitor_token = store.get(&key);
    // `WidgetSessionRequest`: `{project_key, visitor_token?}`.
    let request = |token: Option<&str>| {
        json_body(&[
            ("project_key", &project_key.as_str().into()),
            ("visitor_token", &super::opt_field(token)),
        ])
    };
    let mut r = match prefetched_answer(prefetched, visitor_token.as_deref()).await {
        Some(text) => Ok(super::text_to_js(&text)),
        None => engine.rest("POST", url.clone(), request(visitor_token.as_deref())).await,
    };
    if matches!(&r, Err(ClientError::Api { status: 401 | 404, .. })) && visitor_token.is_some() {
        // The stored token is unknown (a wiped database, another project): start afresh.
        store.remove(&key);
        store.remove(&ukey);
        visitor_token = None;
        r = engine.rest("POST", url, request(None)).await;
    }
    let session = r.map_err(|e| js_error(&e))?;
    let token = field(&session, &["visitor_token"])?;
    let visitor = field(&session, &["visitor_id"])?;
    let project = field(&session, &["project_id"])?;
    if visitor_token.as_deref() != Some(token.as_str()) {
        store.remove(&ukey); // a new visitor: identified by nobody yet
    }
    store.set(&key, &token);
    let conv = super::path_str(&session, &["conversation", "id"]).map(ConversationId::new);
    engine.with(|i| {
        i.set_token(Some(token));
        i.set_me(AuthorKind::Customer, visitor);
        // The socket opens with the first conversation: a page view without a chat
        // costs the server no socket.
        if let Some(id) = &conv {
            i.follow(id);
            i.track_presence(id);
            i.start();
        }
    });
    let mut s = state.borrow_mut();
    s.conversation = conv;
    s.project_id = Some(project);
    s.session = Some(session.clone());
    Ok(session)
}

/// The body of the loader's session answer when it succeeded and was asked with the token this
/// client would send now (none when the stored visitor was just dropped for another user, so
/// that visitor is not resumed); else the client makes the call itself.
async fn prefetched_answer(prefetched: Option<JsValue>, token: Option<&str>) -> Option<String> {
    let answer = wasm_bindgen_futures::JsFuture::from(Promise::resolve(&prefetched?)).await.ok()?;
    let ok = Reflect::get(&answer, &"ok".into()).ok()?.as_bool()?;
    let sent = Reflect::get(&answer, &"token".into()).ok()?.as_string();
    (ok && sent.as_deref() == token).then(|| Reflect::get(&answer, &"text".into()).ok()?.as_string())?
}

/// Another user on this browser: forgets the visitor and starts a new session (see
/// `identify`).
async fn switch_visitor(
    engine: &Engine,
    store: &Store,
    state: &Rc<RefCell<State>>,
    project_key: String,
) -> Result<(), JsValue> {
    store.remove(&token_key(&project_key));
    store.remove(&user_key(&project_key));
    let previous = state.borrow().session.as_ref().and_then(|s| super::path_str(s, &["visitor_id"]));
    engine.with(super::engine::Inner::forget_visitor);
    {
        let mut s = state.borrow_mut();
        s.conversation = None;
        s.session = None;
    }
    let session = open_session(engine, store, state, project_key, None).await?;
    let visitor = str_or_null(super::path_str(&session, &["visitor_id"]).as_deref());
    let previous = str_or_null(previous.as_deref());
    let payload =
        super::object(&[("visitor_id", &visitor), ("previous_visitor_id", &previous), ("session", &session)]);
    engine.with(|i| i.emit_js("visitor:changed", payload));
    Ok(())
}

fn field(v: &JsValue, path: &[&str]) -> Result<String, JsValue> {
    super::path_str(v, path).ok_or_else(|| {
        js_error(&ClientError::InvalidResponse(["the answer has no ", &path.join(".")].concat()))
    })
}

impl HandoffClient {
    /// [`start`](Self::start) with the answer of a session call already on its way (the widget
    /// loader's, made while the wasm downloads): a promise of `{ok, token, text}` (whether the
    /// status was 2xx, the visitor token sent or `null`, the body) or of `null`. The answer is
    /// used only when it succeeded and was asked with the token this client would send; else
    /// the client calls the server as `start` does. Not part of the JS API.
    pub fn start_prefetched(&self, prefetched: JsValue) -> Promise {
        let engine = self.engine.clone();
        let store = self.store.clone();
        let state = self.state.clone();
        let project_key = self.project_key.clone();
        let prefetched = (!prefetched.is_null() && !prefetched.is_undefined()).then_some(prefetched);
        super::promise(async move { open_session(&engine, &store, &state, project_key, prefetched).await })
    }
}

#[cfg_attr(feature = "js", wasm_bindgen)]
impl HandoffClient {
    /// `new HandoffClient({ baseUrl, projectKey, storage?, realtimeUrl?, catchUpIntervalMs? })`:
    /// `catchUpIntervalMs` is how often a connected client checks for events it missed (default
    /// 60000, at least 1000).
    ///
    /// # Errors
    /// A `validation_failed` error when `baseUrl` or `projectKey` is missing.
    #[cfg_attr(feature = "js", wasm_bindgen(constructor))]
    pub fn new(options: &JsValue) -> Result<HandoffClient, JsValue> {
        let base = opt_str(options, "baseUrl")
            .ok_or_else(|| super::error_object("validation_failed", "baseUrl is required", None))?;
        let project_key = opt_str(options, "projectKey")
            .ok_or_else(|| super::error_object("validation_failed", "projectKey is required", None))?;
        let ws = opt_str(options, "realtimeUrl").unwrap_or_else(|| base.clone());
        let ws_url = url::realtime(&ws, &project_key, Vsn::V2);
        let storage = Reflect::get(options, &JsValue::from_str("storage")).unwrap_or(JsValue::UNDEFINED);
        let engine = Engine::new(&base, ws_url, true);
        super::common_options(&engine, options);
        let store = Store::from_option(&storage);
        // Unsent messages survive a reload where the visitor token does.
        engine.with(|i| i.set_outbox_store(store.clone()));
        Ok(HandoffClient { engine, project_key, store, state: Rc::new(RefCell::new(State::default())) })
    }

    /// Starts (or resumes, with the visitor token kept in storage) the widget session; connects
    /// when there is a conversation (here or at `startConversation`). Resolves to the session: `{project_id, visitor_id, visitor_token, config,
    /// conversation?}`; an open conversation is followed at once (its history is emitted).
    pub fn start(&self) -> Promise {
        let engine = self.engine.clone();
        let store = self.store.clone();
        let state = self.state.clone();
        let project_key = self.project_key.clone();
        super::promise(async move { open_session(&engine, &store, &state, project_key, None).await })
    }

    /// Starts a conversation, optionally with a first message; resolves to the conversation.
    #[cfg_attr(feature = "js", wasm_bindgen(js_name = startConversation))]
    pub fn start_conversation(&self, body: Option<String>) -> Promise {
        if self.state.borrow().session.is_none() {
            return rejected(&ClientError::NotReady("call start() first"));
        }
        if let Some(b) = &body {
            if let Err(m) = api::validate_body(b) {
                return invalid(m);
            }
        }
        let engine = self.engine.clone();
        let state = self.state.clone();
        super::promise(async move {
            let first = body.map(|b| {
                (ClientMsgId::new(["first-", &handoff_protocol::ids::decimal(random_u64())].concat()), b)
            });
            // `CreateConversationRequest`: `{body?, client_msg_id?}`.
            let req = match &first {
                Some((cid, body)) => {
                    let queued = super::engine::outbox_payload(None, cid, body, None);
                    engine.with(|i| i.emit_js("message:queued", queued));
                    json_body(&[("body", &body.into()), ("client_msg_id", &cid.as_str().into())])
                }
                None => Some("{}".to_owned()),
            };
            let r = engine.rest("POST", engine.url("/api/conversations"), req).await;
            let conv = r.map_err(|e| {
                if let Some((cid, body)) = &first {
                    // Not started: the first message goes back to the app (`startConversation`
                    // rejects); it is not kept (no conversation to keep it for).
                    let error = super::error_payload(&e);
                    let failed = super::engine::outbox_payload(None, cid, body, Some(&error));
                    engine.with(|i| i.emit_js("message:failed", failed));
                }
                js_error(&e)
            })?;
            let id = ConversationId::new(field(&conv, &["id"])?);
            let previous = state.borrow_mut().conversation.replace(id.clone());
            engine.with(|i| {
                if let Some(old) = previous.filter(|o| *o != id) {
                    i.unfollow(&old);
                }
                i.follow(&id);
                i.track_presence(&id);
                i.start();
            });
            Ok(conv)
        })
    }

    /// `POST` to the current conversation's `path` (`/rating`, `/transcript`).
    fn post(&self, path: &str, body: &[(&str, &JsValue)]) -> Promise {
        match self.conversation() {
            Ok(id) => {
                call(&self.engine, "POST", url::conversation(&self.engine.base(), &id, path), json_body(body))
            }
            Err(e) => rejected(&e),
        }
    }

    fn conversation(&self) -> Result<ConversationId, ClientError> {
        self.state
            .borrow()
            .conversation
            .clone()
            .ok_or(ClientError::NotReady("no conversation: call startConversation() first"))
    }

    /// Sends a message through the outbox (kept in order, retried with the same `client_msg_id`
    /// until the server has it); resolves to the stored message.
    pub fn send(&self, body: String) -> Promise {
        let id = match self.conversation() {
            Ok(id) => id,
            Err(e) => return rejected(&e),
        };
        if let Err(m) = api::validate_body(&body) {
            return invalid(m);
        }
        engine_promise(&self.engine, move |i, resolve, reject| i.send(&id, body, resolve, reject))
    }

    /// Sends a failed message (`message:failed`) again, after the queued ones; `false` when
    /// there is no failed message with this id.
    pub fn retry(&self, client_msg_id: String) -> bool {
        let cid = ClientMsgId::new(client_msg_id);
        self.engine.with(|i| i.retry(&cid)).unwrap_or(false)
    }

    /// Drops a failed (or still waiting) message for good (`message:discarded`); `false` when
    /// there is none with this id, or it is on its way.
    pub fn discard(&self, client_msg_id: String) -> bool {
        let cid = ClientMsgId::new(client_msg_id);
        self.engine.with(|i| i.discard(&cid)).unwrap_or(false)
    }

    /// Asks for a human agent; resolves to the conversation (assigned or queued).
    #[cfg_attr(feature = "js", wasm_bindgen(js_name = requestHandoff))]
    pub fn request_handoff(&self) -> Promise {
        self.post("/handoff", &[])
    }

    /// The customer typed: sends `typing` at most every 300 ms, and `false` 3 s after the last key.
    pub fn typing(&self) {
        if let Ok(id) = self.conversation() {
            self.engine.with(|i| i.typing_input(&id));
        }
    }

    /// The input lost focus or was cleared: typing stops now.
    #[cfg_attr(feature = "js", wasm_bindgen(js_name = stopTyping))]
    pub fn stop_typing(&self) {
        if let Ok(id) = self.conversation() {
            self.engine.with(|i| i.typing_stop(&id));
        }
    }

    /// Leaves a message for later (`{name, email, message}`), when no agent is available.
    #[cfg_attr(feature = "js", wasm_bindgen(js_name = sendOfflineMessage))]
    pub fn send_offline_message(&self, form: &JsValue) -> Promise {
        let Some(project) = self.state.borrow().project_id.clone() else {
            return rejected(&ClientError::NotReady("call start() first"));
        };
        let (Some(name), Some(email), Some(message)) =
            (opt_str(form, "name"), opt_str(form, "email"), opt_str(form, "message"))
        else {
            return invalid("name, email and message are required");
        };
        if name.trim().is_empty() {
            return invalid("name must not be empty");
        }
        if !api::is_valid_email(&email) {
            return invalid("email is not a valid address");
        }
        if let Err(m) = api::validate_body(&message) {
            return invalid(m);
        }
        // `OfflineMessageRequest`.
        let body =
            json_body(&[("name", &name.into()), ("email", &email.into()), ("message", &message.into())]);
        call(
            &self.engine,
            "POST",
            url::resource(&self.engine.base(), "projects", project.as_str(), "/offline-messages"),
            body,
        )
    }

    /// Rates the resolved conversation, once (CSAT): `rating` 1 to 5 and an optional comment of
    /// at most 1000 characters; resolves to `{rating, comment?, agent_id?, created_at}`.
    /// Rejects with `validation_failed`, `invalid_transition` (not resolved) or `already_rated`
    /// (the server checks; the SDK stays small).
    #[allow(clippy::needless_pass_by_value)] // wasm-bindgen hands JS values over owned
    pub fn rate(&self, rating: JsValue, comment: JsValue) -> Promise {
        // `RatingRequest`, the values as JS gave them (an absent comment is left out).
        self.post("/rating", &[("rating", &rating), ("comment", &comment)])
    }

    /// Binds a signed-in user of the site (`{user_id, name?, email?, hmac}`); call after
    /// `start()`. When the visitor is already identified as another user (this browser
    /// remembers whom, and the server refuses with `identity_conflict`), the client forgets that
    /// visitor (its conversation, unsent messages and stored token), starts a new session,
    /// emits `visitor:changed` `{visitor_id, previous_visitor_id, session}`, and identifies the
    /// new visitor: one user never sees another's chat.
    pub fn identify(&self, user: &JsValue) -> Promise {
        let user_id = opt_str(user, "user_id");
        if user_id.is_some() {
            self.state.borrow_mut().expected_user.clone_from(&user_id);
        }
        let body = js_to_json(user);
        let engine = self.engine.clone();
        let store = self.store.clone();
        let state = self.state.clone();
        let project_key = self.project_key.clone();
        super::promise(async move {
            let ukey = user_key(&project_key);
            let url = engine.url("/api/widget/identify");
            let known = store.get(&ukey);
            let mut switched = false;
            if known.is_some() && user_id.is_some() && known != user_id {
                switch_visitor(&engine, &store, &state, project_key.clone()).await?;
                switched = true;
            }
            let mut r = engine.rest("POST", url.clone(), body.clone()).await;
            let conflict = matches!(&r, Err(ClientError::Api { code, .. }) if code == "identity_conflict");
            if conflict && !switched {
                switch_visitor(&engine, &store, &state, project_key).await?;
                r = engine.rest("POST", url, body).await;
            }
            r.map_err(|e| js_error(&e))?;
            if let Some(u) = &user_id {
                store.set(&ukey, u);
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The visitor's conversations with their transcripts, newest first (earlier, resolved ones
    /// included; once `identify` verified a user, theirs from every device):
    /// `{conversations: [{conversation, events}]}`.
    pub fn conversations(&self) -> Promise {
        call(&self.engine, "GET", self.engine.url("/api/widget/conversations"), None)
    }

    /// The conversation's persisted events so far, all of them (fetched page by page):
    /// `{events, last_seq, status}`.
    pub fn history(&self) -> Promise {
        match self.conversation() {
            Ok(id) => super::history(&self.engine, id),
            Err(e) => rejected(&e),
        }
    }

    /// Follows the project's availability live: joins `project:{id}:availability` (opening the
    /// socket if no conversation has yet) and emits `availability:changed`
    /// `{project_id, agents_online, within_business_hours, show_offline_form}`: the current
    /// state right after every (re)join, then each change (an agent going online or offline,
    /// business hours opening or closing). Call after `start()`, for example when the chat
    /// window opens; returns a function that stops following.
    ///
    /// # Errors
    /// `not_ready` before `start()`.
    #[cfg_attr(feature = "js", wasm_bindgen(js_name = watchAvailability))]
    pub fn watch_availability(&self) -> Result<Function, JsValue> {
        let project = self
            .state
            .borrow()
            .project_id
            .clone()
            .ok_or_else(|| js_error(&ClientError::NotReady("call start() first")))?;
        let name = Channel::ProjectAvailability(project.into()).name();
        self.engine.with(|i| {
            i.hold(&name);
            i.start();
        });
        let weak = self.engine.weak();
        let mut name = Some(name);
        Ok(Closure::<dyn FnMut()>::new(move || {
            if let Some(n) = name.take() {
                super::engine::run(&weak, |i| i.release(&n));
            }
        })
        .into_js_value()
        .unchecked_into())
    }

    /// Calls `fn(payload, eventName)` for each event named `event` (`"*"` for all): the catalog's
    /// events with their wire payloads, `"connection"` with the state name, `"error"` with an
    /// `Error` carrying `code`. Returns a function that unsubscribes.
    pub fn on(&self, event: String, f: Function) -> Function {
        self.engine.on(event, None, f)
    }

    /// `idle`, `connecting`, `connected`, `reconnecting`, `polling` or `closed`.
    #[cfg_attr(feature = "js", wasm_bindgen(getter, js_name = connectionState))]
    pub fn connection_state(&self) -> String {
        self.engine.state().to_owned()
    }

    /// The current conversation's id, if any.
    #[cfg_attr(feature = "js", wasm_bindgen(getter, js_name = conversationId))]
    pub fn conversation_id(&self) -> Option<String> {
        self.state.borrow().conversation.as_ref().map(|c| c.as_str().to_owned())
    }

    /// The widget session, once started.
    #[cfg_attr(feature = "js", wasm_bindgen(getter))]
    pub fn session(&self) -> JsValue {
        self.state.borrow().session.clone().unwrap_or(JsValue::NULL)
    }

    /// Closes the client: `offline` by beacon, pending sends rejected with `closed`, and every
    /// socket, timer, listener and request released.
    pub fn close(&self) {
        self.engine.with(super::engine::Inner::close);
    }
}

impl HandoffClient {
    /// Emails the conversation's transcript (for the widget; not in the SDK's JS API, which is at
    /// its size ceiling: `POST /api/conversations/{id}/transcript` does it) to `email`, else to the address the visitor is known
    /// by; resolves to `{email}` (sent in the background). Rejects with `email_disabled`,
    /// `validation_failed` (a bad address, or none given and none known) or `rate_limited`.
    #[allow(clippy::needless_pass_by_value)] // wasm-bindgen hands JS values over owned
    pub fn email_transcript(&self, email: JsValue) -> Promise {
        // `TranscriptRequest` (blank or absent is none, for the server too).
        self.post("/transcript", &[("email", &email)])
    }

    /// The user the site says is signed in, known before `start()` (the widget: a
    /// `Handoff.identify` queued before its session): a stored visitor identified as another
    /// user is then not resumed at all, so nothing of theirs is shown even for a moment.
    pub fn expect_user(&self, user_id: Option<String>) {
        if user_id.is_some() {
            self.state.borrow_mut().expected_user = user_id;
        }
    }
}
