//! `AgentClient`: the agent inbox side.

use std::cell::RefCell;
use std::rc::Rc;

use handoff_protocol::api;
use handoff_protocol::event::{AgentStatus, AuthorKind};
use handoff_protocol::ids::ConversationId;
use handoff_protocol::phoenix::Vsn;
use handoff_protocol::Channel;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use super::engine::{run, Engine};
use super::{call, engine_promise, invalid, js_error, opt_str, opt_u64};
use crate::error::ClientError;
use crate::url;

/// The agent client: login, status, inbox and queue, conversation commands, realtime channels.
///
/// ```js
/// const agent = new AgentClient({ baseUrl: "https://chat.example.com" });
/// await agent.login("ann@example.com", "secret");
/// await agent.setStatus("online");
/// agent.subscribeQueue();
/// agent.on("queue:updated", ({ queue }) => renderQueue(queue));
/// ```
#[wasm_bindgen]
pub struct AgentClient {
    engine: Engine,
    /// The realtime base URL, and the `apikey` option: without it the socket uses the
    /// project's public key from the sign-in answer.
    ws: Rc<(String, Option<String>)>,
    /// `(agent as JS sees it, project id, agent id)` after login.
    login: Rc<RefCell<Option<(JsValue, String, String)>>>,
    /// The idle rule, once `trackIdle` is called.
    idle: Rc<RefCell<Option<super::idle::IdleAway>>>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentClient")
    }
}

fn incomplete() -> JsValue {
    js_error(&ClientError::InvalidResponse(String::from("the sign-in answer is incomplete")))
}

/// After `login` or `resume`: the token goes on every call, the socket opens as this agent,
/// with the `apikey` option or else the project's public key from the answer (`project_key`).
fn signed_in(
    engine: &Engine,
    ws: &(String, Option<String>),
    login: &RefCell<Option<(JsValue, String, String)>>,
    token: String,
    agent: JsValue,
) -> Result<(), JsValue> {
    let agent_id = super::path_str(&agent, &["id"]).ok_or_else(incomplete)?;
    let project_id = super::path_str(&agent, &["project_id"]).ok_or_else(incomplete)?;
    let apikey = ws.1.clone().or_else(|| super::path_str(&agent, &["project_key"])).unwrap_or_default();
    let ws_url = url::realtime(&ws.0, &apikey, Vsn::V2);
    engine.with(|i| {
        i.set_ws_url(ws_url);
        i.set_token(Some(token));
        i.set_me(AuthorKind::Agent, agent_id.clone());
        i.start();
    });
    *login.borrow_mut() = Some((agent, project_id, agent_id));
    Ok(())
}

/// `countsAsUnread(authorKind, readerKind)`: whether a message by an `authorKind` author
/// (`"customer"`, `"agent"`, `"bot"`, `"system"`) counts as unread for a `readerKind` reader
/// (`"agent"` or `"customer"`) once it is after the reader's read marker. It is the one rule the
/// server's inbox `unread` counts with (`handoff_protocol::unread`): an agent counts the
/// customer's messages only; a customer counts agents' and the bot's.
#[wasm_bindgen(js_name = countsAsUnread)]
pub fn counts_as_unread(author_kind: &str, reader_kind: &str) -> bool {
    handoff_protocol::unread::counts_as_unread(
        AuthorKind::from_name(author_kind),
        AuthorKind::from_name(reader_kind),
    )
}

fn conv(id: &str) -> ConversationId {
    ConversationId::new(id)
}

#[wasm_bindgen]
impl AgentClient {
    /// `new AgentClient({ baseUrl, realtimeUrl?, apikey?, catchUpIntervalMs? })`: the socket's
    /// `apikey` is the option, or else the project's public key the server sends at sign-in;
    /// `catchUpIntervalMs` as for `HandoffClient`.
    ///
    /// # Errors
    /// A `validation_failed` error when `baseUrl` is missing.
    #[wasm_bindgen(constructor)]
    pub fn new(options: &JsValue) -> Result<AgentClient, JsValue> {
        let base = opt_str(options, "baseUrl")
            .ok_or_else(|| super::error_object("validation_failed", "baseUrl is required", None))?;
        let ws = opt_str(options, "realtimeUrl").unwrap_or_else(|| base.clone());
        let apikey = opt_str(options, "apikey");
        let ws_url = url::realtime(&ws, apikey.as_deref().unwrap_or_default(), Vsn::V2);
        let engine = Engine::new(&base, ws_url, true);
        super::common_options(&engine, options);
        Ok(AgentClient {
            engine,
            ws: Rc::new((ws, apikey)),
            login: Rc::new(RefCell::new(None)),
            idle: Rc::new(RefCell::new(None)),
        })
    }

    /// Logs in and connects; resolves to `{token, agent}`.
    pub fn login(&self, email: String, password: String) -> Promise {
        let engine = self.engine.clone();
        let ws = self.ws.clone();
        let login = self.login.clone();
        super::promise(async move {
            // `LoginRequest`.
            let body = super::json_body(&[("email", &email.into()), ("password", &password.into())]);
            let r =
                engine.rest("POST", engine.url("/api/agents/login"), body).await.map_err(|e| js_error(&e))?;
            let token = super::path_str(&r, &["token"]).ok_or_else(incomplete)?;
            let agent = js_sys::Reflect::get(&r, &JsValue::from_str("agent")).unwrap_or(JsValue::NULL);
            signed_in(&engine, &ws, &login, token, agent)?;
            Ok(r)
        })
    }

    /// Continues a session with a token kept from an earlier `login` (after a page reload):
    /// checks it with `GET /api/agents/me` and connects; resolves to `{token, agent}`, or rejects
    /// with `unauthorized` when the token no longer works.
    pub fn resume(&self, token: String) -> Promise {
        let engine = self.engine.clone();
        let ws = self.ws.clone();
        let login = self.login.clone();
        super::promise(async move {
            engine.with(|i| i.set_token(Some(token.clone())));
            let agent = match engine.rest("GET", engine.url("/api/agents/me"), None).await {
                Ok(agent) => agent,
                Err(e) => {
                    engine.with(|i| i.set_token(None));
                    return Err(js_error(&e));
                }
            };
            signed_in(&engine, &ws, &login, token.clone(), agent.clone())?;
            Ok(super::object(&[("token", &token.into()), ("agent", &agent)]))
        })
    }

    /// Signs out: the server revokes the token, then the client closes and forgets the token
    /// and the agent (`agent` is `null` again), also when the server could not be reached.
    pub fn logout(&self) -> Promise {
        let engine = self.engine.clone();
        let login = self.login.clone();
        self.idle.borrow_mut().take();
        super::promise(async move {
            let r = engine.rest("POST", engine.url("/api/agents/logout"), Some("{}".into())).await;
            engine.with(|i| {
                i.close();
                i.set_token(None);
            });
            *login.borrow_mut() = None;
            r.map(|_| JsValue::UNDEFINED).map_err(|e| js_error(&e))
        })
    }

    /// The signed-in agent (`null` before `login`).
    #[wasm_bindgen(getter)]
    pub fn agent(&self) -> JsValue {
        self.login.borrow().as_ref().map_or(JsValue::NULL, |l| l.0.clone())
    }

    fn ids(&self) -> Result<(String, String), ClientError> {
        self.login
            .borrow()
            .as_ref()
            .map(|l| (l.1.clone(), l.2.clone()))
            .ok_or(ClientError::NotReady("call login() first"))
    }

    fn get(&self, path: &str) -> Promise {
        call(&self.engine, "GET", self.engine.url(path), None)
    }

    fn post(&self, id: &str, suffix: &str, body: Option<String>) -> Promise {
        call(
            &self.engine,
            "POST",
            url::conversation(&self.engine.base(), &conv(id), suffix),
            body.or_else(|| Some("{}".into())),
        )
    }

    /// `online`, `away` or `offline`; resolves to the agent.
    #[wasm_bindgen(js_name = setStatus)]
    pub fn set_status(&self, status: &str) -> Promise {
        if let (Some(idle), Some(chosen)) = (self.idle.borrow().as_ref(), AgentStatus::parse(status)) {
            idle.status_chosen(chosen);
        }
        let body = super::json_body(&[("status", &status.into())]);
        call(&self.engine, "PUT", self.engine.url("/api/agents/me/status"), body)
    }

    /// `inbox({cursor?, limit?})`: my conversations and the queue, newest activity first, with
    /// unread counts; a page of `limit` (default 50, at most 100). The next page starts at the
    /// last item's `cursor`.
    pub fn inbox(&self, options: &JsValue) -> Promise {
        let limit = opt_u64(options, "limit").map(|n| n.to_string());
        let url = url::with_query(
            self.engine.url("/api/inbox"),
            &[("cursor", opt_str(options, "cursor").as_deref()), ("limit", limit.as_deref())],
        );
        call(&self.engine, "GET", url, None)
    }

    /// `queue({cursor?, limit?})`: the waiting list, head first, a page of it:
    /// `{queue: [...], queue_length, next_cursor?}`.
    pub fn queue(&self, options: &JsValue) -> Promise {
        let limit = opt_u64(options, "limit").map(|n| n.to_string());
        let url = url::with_query(
            self.engine.url("/api/queue"),
            &[("cursor", opt_str(options, "cursor").as_deref()), ("limit", limit.as_deref())],
        );
        call(&self.engine, "GET", url, None)
    }

    /// `search(q, {status?, cursor?, limit?})`: the project's conversations, resolved ones
    /// included, whose messages hold every word of `q` or whose customer's name or email
    /// contains it (blank `q`: all, as history), newest activity first:
    /// `{hits: [{conversation, customer_email?, match, message_id?, message_seq?, snippet?}],
    /// next_cursor?}`. Rejects with `validation_failed` for a text over 200 characters
    /// (checked before any request).
    #[allow(clippy::needless_pass_by_value)] // wasm-bindgen passes owned values
    pub fn search(&self, q: Option<String>, options: &JsValue) -> Promise {
        let q = q.unwrap_or_default();
        if q.trim().chars().count() > api::MAX_SEARCH_QUERY_CHARS {
            return invalid("q is longer than 200 characters");
        }
        let limit = opt_u64(options, "limit").map(|n| n.to_string());
        let q = Some(q.trim()).filter(|q| !q.is_empty());
        let url = url::with_query(
            self.engine.url("/api/conversations/search"),
            &[
                ("q", q),
                ("status", opt_str(options, "status").filter(|s| !s.is_empty()).as_deref()),
                ("cursor", opt_str(options, "cursor").as_deref()),
                ("limit", limit.as_deref()),
            ],
        );
        call(&self.engine, "GET", url, None)
    }

    /// The agents of my project.
    pub fn agents(&self) -> Promise {
        self.get("/api/agents")
    }

    /// One conversation.
    pub fn conversation(&self, id: &str) -> Promise {
        call(&self.engine, "GET", url::conversation(&self.engine.base(), &conv(id), ""), None)
    }

    /// A conversation's persisted events so far, all of them (fetched page by page):
    /// `{events, last_seq, status}`.
    pub fn history(&self, id: &str) -> Promise {
        super::history(&self.engine, conv(id))
    }

    /// Joins `project:{id}:queue`; returns a function that leaves it.
    ///
    /// # Errors
    /// `not_ready` before `login()`.
    #[wasm_bindgen(js_name = subscribeQueue)]
    pub fn subscribe_queue(&self) -> Result<Function, JsValue> {
        let (project, _) = self.ids().map_err(|e| js_error(&e))?;
        Ok(self.hold(Channel::ProjectQueue(project.into()).name()))
    }

    /// Joins `agent:{me}`; returns a function that leaves it.
    ///
    /// # Errors
    /// `not_ready` before `login()`.
    #[wasm_bindgen(js_name = subscribeAgent)]
    pub fn subscribe_agent(&self) -> Result<Function, JsValue> {
        let (_, agent) = self.ids().map_err(|e| js_error(&e))?;
        Ok(self.hold(Channel::Agent(agent.into()).name()))
    }

    fn hold(&self, name: String) -> Function {
        self.engine.with(|i| i.hold(&name));
        let weak = self.engine.weak();
        let mut name = Some(name);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(n) = name.take() {
                run(&weak, |i| i.release(&n));
            }
        })
        .into_js_value()
        .unchecked_into()
    }

    /// Follows a conversation: `conversation:{id}` (ordered, deduplicated, caught up after every
    /// reconnect, long-polled when the socket is down) and its `:agents` notes channel. Its
    /// history is emitted first. Returns a function that stops following.
    #[wasm_bindgen(js_name = subscribeConversation)]
    pub fn subscribe_conversation(&self, id: &str) -> Function {
        let id = conv(id);
        let notes = Channel::ConversationAgents(id.clone()).name();
        self.engine.with(|i| {
            i.follow(&id);
            i.hold(&notes);
        });
        let weak = self.engine.weak();
        let mut once = Some((id, notes));
        Closure::<dyn FnMut()>::new(move || {
            if let Some((id, notes)) = once.take() {
                run(&weak, |i| {
                    i.unfollow(&id);
                    i.release(&notes);
                });
            }
        })
        .into_js_value()
        .unchecked_into()
    }

    /// Claims a queued conversation.
    pub fn claim(&self, id: &str) -> Promise {
        self.post(id, "/claim", None)
    }

    /// Transfers to `"queue"` or an agent id, with an optional note.
    #[allow(clippy::needless_pass_by_value)] // wasm-bindgen passes owned values
    pub fn transfer(&self, id: &str, to: String, note: Option<String>) -> Promise {
        // `TransferRequest`: `{to, note?}`.
        let body = super::json_body(&[("to", &to.into()), ("note", &super::opt_field(note.as_deref()))]);
        self.post(id, "/transfer", body)
    }

    /// Declines an assignment (it goes to another agent or back to the queue).
    pub fn decline(&self, id: &str) -> Promise {
        self.post(id, "/decline", None)
    }

    /// Resolves a conversation.
    pub fn resolve(&self, id: &str) -> Promise {
        self.post(id, "/resolve", None)
    }

    /// Internal notes of a conversation.
    pub fn notes(&self, id: &str) -> Promise {
        call(&self.engine, "GET", url::conversation(&self.engine.base(), &conv(id), "/notes"), None)
    }

    /// Adds an internal note (agents only; never reaches the customer).
    #[wasm_bindgen(js_name = addNote)]
    pub fn add_note(&self, id: &str, body: String) -> Promise {
        if let Err(m) = api::validate_body(&body) {
            return invalid(m);
        }
        self.post(id, "/notes", super::json_body(&[("body", &body.into())]))
    }

    /// Marks the conversation read up to `seq` (unread counts).
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&self, id: &str, seq: f64) -> Promise {
        // `ReadRequest`: a whole, non-negative `seq`.
        let seq = if seq.is_finite() { seq.max(0.0).trunc() } else { 0.0 };
        self.post(id, "/read", super::json_body(&[("seq", &seq.into())]))
    }

    /// Sends a message in a followed conversation through the outbox; resolves to the stored
    /// message.
    pub fn send(&self, id: &str, body: String) -> Promise {
        if let Err(m) = api::validate_body(&body) {
            return invalid(m);
        }
        let id = conv(id);
        engine_promise(&self.engine, move |i, resolve, reject| i.send(&id, body, resolve, reject))
    }

    /// The agent typed in conversation `id` (debounced like the customer's).
    pub fn typing(&self, id: &str) {
        let id = conv(id);
        self.engine.with(|i| i.typing_input(&id));
    }

    /// Typing stopped in conversation `id`.
    #[wasm_bindgen(js_name = stopTyping)]
    pub fn stop_typing(&self, id: &str) {
        let id = conv(id);
        self.engine.with(|i| i.typing_stop(&id));
    }

    /// Offline messages; `handled` filters (`undefined`: all).
    #[wasm_bindgen(js_name = offlineMessages)]
    pub fn offline_messages(&self, handled: Option<bool>) -> Promise {
        match handled {
            Some(true) => self.get("/api/offline-messages?handled=true"),
            Some(false) => self.get("/api/offline-messages?handled=false"),
            None => self.get("/api/offline-messages"),
        }
    }

    /// Marks an offline message handled.
    #[wasm_bindgen(js_name = markOfflineHandled)]
    pub fn mark_offline_handled(&self, id: &str) -> Promise {
        call(
            &self.engine,
            "POST",
            url::resource(&self.engine.base(), "offline-messages", id, "/handled"),
            Some("{}".into()),
        )
    }

    /// `listCannedResponses(q?)`: the project's canned responses by shortcut (at most 100);
    /// with `q`, those whose shortcut starts with it or whose content contains it (without
    /// regard to case), the shortcut matches first.
    #[wasm_bindgen(js_name = listCannedResponses)]
    #[allow(clippy::needless_pass_by_value)] // wasm-bindgen passes owned values
    pub fn list_canned_responses(&self, q: Option<String>) -> Promise {
        call(&self.engine, "GET", url::canned_responses(&self.engine.base(), q.as_deref()), None)
    }

    /// `createCannedResponse({shortcut, content})`: adds a canned response to the project;
    /// rejects with `shortcut_taken` when another has the shortcut (without regard to case),
    /// `validation_failed` for a bad shortcut or content (checked before any request).
    #[wasm_bindgen(js_name = createCannedResponse)]
    pub fn create_canned_response(&self, fields: &JsValue) -> Promise {
        let shortcut = opt_str(fields, "shortcut").unwrap_or_default();
        let content = opt_str(fields, "content").unwrap_or_default();
        if let Err(m) = api::validate_canned(Some(&shortcut), Some(&content)) {
            return invalid(m);
        }
        // `CannedResponseRequest`.
        let body = super::json_body(&[("shortcut", &shortcut.into()), ("content", &content.into())]);
        call(&self.engine, "POST", url::canned_responses(&self.engine.base(), None), body)
    }

    /// `updateCannedResponse(id, {shortcut?, content?})`: changes the fields given; resolves to
    /// the canned response as it is now.
    #[wasm_bindgen(js_name = updateCannedResponse)]
    pub fn update_canned_response(&self, id: &str, patch: &JsValue) -> Promise {
        let shortcut = opt_str(patch, "shortcut");
        let content = opt_str(patch, "content");
        if let Err(m) = api::validate_canned(shortcut.as_deref(), content.as_deref()) {
            return invalid(m);
        }
        // `CannedResponseUpdate`: absent fields stay as they are.
        let body = super::json_body(&[
            ("shortcut", &super::opt_field(shortcut.as_deref())),
            ("content", &super::opt_field(content.as_deref())),
        ]);
        let url = url::resource(&self.engine.base(), url::CANNED_RESPONSES, id, "");
        call(&self.engine, "PATCH", url, body)
    }

    /// `deleteCannedResponse(id)`.
    #[wasm_bindgen(js_name = deleteCannedResponse)]
    pub fn delete_canned_response(&self, id: &str) -> Promise {
        let url = url::resource(&self.engine.base(), url::CANNED_RESPONSES, id, "");
        call(&self.engine, "DELETE", url, None)
    }

    /// As `HandoffClient.on`.
    pub fn on(&self, event: String, f: Function) -> Function {
        self.engine.on(event, None, f)
    }

    /// The connection state's name.
    #[wasm_bindgen(getter, js_name = connectionState)]
    pub fn connection_state(&self) -> String {
        self.engine.state().to_owned()
    }

    /// Closes the socket and releases every timer, listener and request.
    pub fn close(&self) {
        self.idle.borrow_mut().take();
        self.engine.with(super::engine::Inner::close);
    }

    /// `trackIdle({ awayAfterMs? })`: the console's idle rule. After `awayAfterMs` (30 minutes)
    /// without the agent's input (keys, pointer, wheel, focus) an `online` agent is set `away`,
    /// and set `online` again at their next input; a status the agent chose (`setStatus`) is
    /// never overridden, and nobody is ever set `offline` for idling (the server does that only
    /// when every console socket is gone). Call after `login`/`resume`; returns a function that
    /// stops tracking.
    ///
    /// # Errors
    /// `not_ready` before `login`.
    #[wasm_bindgen(js_name = trackIdle)]
    pub fn track_idle(&self, options: &JsValue) -> Result<Function, JsValue> {
        let status = self
            .login
            .borrow()
            .as_ref()
            .map(|l| super::path_str(&l.0, &["status"]).and_then(|s| AgentStatus::parse(&s)))
            .ok_or_else(|| js_error(&ClientError::NotReady("call login() first")))?
            .unwrap_or(AgentStatus::Online);
        let away_after = js_sys::Reflect::get(options, &JsValue::from_str("awayAfterMs"))
            .ok()
            .and_then(|v| v.as_f64())
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            // Positive and finite; saturates above u64::MAX.
            .map(|ms| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let ms = ms as u64;
                ms
            });
        *self.idle.borrow_mut() = Some(super::idle::IdleAway::start(self.engine.clone(), status, away_after));
        let idle = Rc::downgrade(&self.idle);
        let stop = Closure::once_into_js(move || {
            if let Some(idle) = idle.upgrade() {
                idle.borrow_mut().take();
            }
        });
        Ok(stop.unchecked_into())
    }
}
