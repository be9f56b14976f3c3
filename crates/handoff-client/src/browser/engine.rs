//! The engine shared by every JS-facing class: one socket, its channels, and the protocol
//! crate's machines driven by real timers and browser events.
//!
//! Every input (a socket event, a timer, a browser event, an API call, a finished fetch) goes
//! through [`run`]: it borrows the state, feeds the input to the machines, carries out the
//! actions they ask for ([`Inner::pump`]), re-arms the one timer at the earliest deadline, and
//! only then, with the state released, calls the app's JavaScript handlers. A handler may call
//! back into the client.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use handoff_protocol::event::{Author, AuthorKind, EventType, PresenceState};
use handoff_protocol::ids::{ClientMsgId, ConversationId};
use handoff_protocol::timing::buffer::{BufferAction, EventBuffer, Sequenced};
use handoff_protocol::timing::outbox::{Outbox, OutboxAction, OutboxItem};
use handoff_protocol::timing::presence::{PresenceAction, PresenceTracker};
use handoff_protocol::timing::supervisor::{
    ConnectionState, ConnectionSupervisor, SupervisorAction, LONG_POLL_WAIT_SECS,
};
use handoff_protocol::timing::typing::{TypingAction, TypingChange, TypingReceiver, TypingSender};
use handoff_protocol::{Channel, Seq};
use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;

use super::handles::{Aborter, Listener, Socket, SocketEvent};
use super::{at, http, now_ms, object, path_str, path_u64, random_u64, wire};
use crate::error::ClientError;
use crate::subs::{Incoming, Push, Subscriptions};
use crate::url;

/// An event as the browser parsed it: its wire name and payload, with what the machines need
/// read once through the protocol crate's payload paths ([`EventType::seq_path`] and the
/// others). Payloads reach the app as these JS objects, never decoded into Rust types.
pub(crate) struct JsEvent {
    pub(crate) name: String,
    pub(crate) seq: Option<Seq>,
    conversation: Option<String>,
    message_id: Option<String>,
    pub(crate) payload: JsValue,
}

impl JsEvent {
    /// An event from its name and payload; `None` when a history event lacks its `seq` (a
    /// malformed payload would otherwise pass as ephemeral).
    pub(crate) fn new(name: String, payload: JsValue) -> Option<JsEvent> {
        let t = name.parse::<EventType>().ok();
        let path = |f: fn(EventType) -> Option<&'static [&'static str]>| t.and_then(f);
        let seq = path(EventType::seq_path).map(|p| path_u64(&payload, p).map(Seq));
        if seq == Some(None) {
            return None;
        }
        Some(JsEvent {
            seq: seq.flatten(),
            conversation: path(EventType::conversation_id_path).and_then(|p| path_str(&payload, p)),
            message_id: path(EventType::message_id_path).and_then(|p| path_str(&payload, p)),
            name,
            payload,
        })
    }

    /// An `{event, payload}` object (a catch-up page's entries, a broadcast's payload).
    pub(crate) fn from_wire(v: &JsValue) -> Option<JsEvent> {
        JsEvent::new(path_str(v, &["event"])?, at(v, &["payload"]))
    }

    /// The author at `path` of the payload (`actor` of `typing`, `message.author`).
    fn author(&self, path: &[&str]) -> Option<Author> {
        let a = at(&self.payload, path);
        let kind = AuthorKind::from_name(&path_str(&a, &["kind"])?);
        Some(Author { kind, id: path_str(&a, &["id"])?, name: path_str(&a, &["name"]) })
    }
}

impl Sequenced for JsEvent {
    fn seq(&self) -> Option<Seq> {
        self.seq
    }

    fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
}

/// The wire name of a connection state, as JS sees it.
pub(crate) fn state_name(s: ConnectionState) -> &'static str {
    match s {
        ConnectionState::Idle => "idle",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Reconnecting => "reconnecting",
        ConnectionState::Polling => "polling",
        ConnectionState::Closed => "closed",
        _ => "unknown",
    }
}

/// What a browser event does to the state.
type BrowserHandler = Box<dyn Fn(&mut Inner, &web_sys::Event)>;

/// Something to call in JS once the state is released.
enum Emit {
    Event { channel: Option<String>, name: String, payload: JsValue },
    Settle { f: Function, value: JsValue },
}

struct Handler {
    id: u32,
    event: String,
    channel: Option<String>,
    f: Function,
}

/// One followed conversation: its ordered, deduplicated event stream and its sends.
struct Conv {
    id: ConversationId,
    buffer: EventBuffer<JsEvent>,
    outbox: Outbox,
    typing: TypingSender,
    /// Who types in it, with the 3 s time-to-live.
    rx: TypingReceiver,
    catching_up: bool,
    again: bool,
    /// The in-flight long-poll (aborted on drop).
    poll: Option<Aborter>,
    /// Generation of the long-poll loop: a loop whose generation is stale stops.
    poll_gen: u32,
    holders: u32,
    /// The outbox changed since it was last persisted.
    dirty: bool,
    /// Why the last send failed (for `message:failed`).
    last_error: Option<ClientError>,
}

struct PendingSend {
    id: ClientMsgId,
    resolve: Function,
    reject: Function,
    error: Option<ClientError>,
}

#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Inner {
    me: Weak<RefCell<Inner>>,
    base: String,
    ws_url: String,
    token: Option<String>,
    /// Who we are, so that our own typing is not shown to us.
    me_actor: Option<(AuthorKind, String)>,
    started: bool,
    closed: bool,
    sup: ConnectionSupervisor,
    subs: Subscriptions,
    socket: Option<Socket>,
    socket_open: bool,
    polling: bool,
    convs: Vec<Conv>,
    presence: Option<(ConversationId, PresenceTracker)>,
    pending: Vec<PendingSend>,
    outbox_prefix: String,
    /// Where outboxes are kept across reloads (`handoff.outbox.<conversation id>`); `None`:
    /// memory only.
    outbox_store: Option<super::customer::Store>,
    /// This page load's tab id, sent with every presence report (presence is kept per tab).
    tab_id: String,
    online: bool,
    timer: Option<(u64, Timeout)>,
    listeners: Vec<Listener>,
    /// Aborts every REST call of this engine when dropped (on close).
    life: Option<Aborter>,
    handlers: Vec<Handler>,
    next_handler: u32,
    emits: Vec<Emit>,
}

/// A handle on the engine; clones share it.
#[derive(Clone)]
pub(crate) struct Engine(pub(crate) Rc<RefCell<Inner>>);

/// Feeds one input to the engine behind `weak`, then dispatches to JS. `None` when the engine is
/// gone or busy (it never is: JS calls us back only from the event loop).
pub(crate) fn run<R>(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
    let (mut f, mut out) = (Some(f), None);
    run_input(weak, &mut |inner| out = f.take().map(|f| f(inner)));
    out
}

/// [`run`]'s work, compiled once instead of once per kind of input.
fn run_input(weak: &Weak<RefCell<Inner>>, f: &mut dyn FnMut(&mut Inner)) {
    let Some(rc) = weak.upgrade() else { return };
    let emits = {
        let Ok(mut inner) = rc.try_borrow_mut() else { return };
        f(&mut inner);
        inner.pump();
        std::mem::take(&mut inner.emits)
    };
    dispatch(&rc, emits);
}

fn dispatch(rc: &Rc<RefCell<Inner>>, emits: Vec<Emit>) {
    for emit in emits {
        match emit {
            Emit::Settle { f, value } => {
                let _ = f.call1(&JsValue::NULL, &value);
            }
            Emit::Event { channel, name, payload } => {
                let targets: Vec<Function> = match rc.try_borrow() {
                    Ok(inner) => inner
                        .handlers
                        .iter()
                        .filter(|h| h.event == name || h.event == "*")
                        .filter(|h| h.channel.is_none() || h.channel == channel)
                        .map(|h| h.f.clone())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                let name = JsValue::from_str(&name);
                for f in targets {
                    let _ = f.call2(&JsValue::NULL, &payload, &name);
                }
            }
        }
    }
}

fn random_prefix() -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = random_u64();
    let mut s = String::with_capacity(12);
    for _ in 0..12 {
        s.push(char::from(ALPHABET[usize::try_from(n % 36).unwrap_or(0)]));
        n /= 36;
    }
    s
}

impl Engine {
    /// An engine for the REST API at `base` (empty: none, as for a bare Supabase socket) and the
    /// socket at `ws_url`.
    pub(crate) fn new(base: &str, ws_url: String, private: bool) -> Engine {
        let rc = Rc::new_cyclic(|me| {
            RefCell::new(Inner {
                me: me.clone(),
                base: url::trim_base(base).to_owned(),
                ws_url,
                token: None,
                me_actor: None,
                started: false,
                closed: false,
                sup: ConnectionSupervisor::new(random_u64()),
                subs: Subscriptions::new(private),
                socket: None,
                socket_open: false,
                polling: false,
                convs: Vec::new(),
                presence: None,
                pending: Vec::new(),
                outbox_prefix: random_prefix(),
                outbox_store: None,
                tab_id: random_prefix(),
                online: web_sys::window().is_none_or(|w| w.navigator().on_line()),
                timer: None,
                listeners: Vec::new(),
                life: Some(Aborter::new()),
                handlers: Vec::new(),
                next_handler: 0,
                emits: Vec::new(),
            })
        });
        Engine(rc)
    }

    pub(crate) fn weak(&self) -> Weak<RefCell<Inner>> {
        Rc::downgrade(&self.0)
    }

    /// Runs `f` on the state as an input (see [`run`]).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
        run(&self.weak(), f)
    }

    /// A REST call with the engine's token; resolves to the parsed answer.
    pub(crate) async fn rest(
        &self,
        method: &str,
        path_or_url: String,
        body: Option<String>,
    ) -> Result<JsValue, ClientError> {
        let (token, signal) = {
            let inner = self.0.try_borrow().map_err(|_| ClientError::NotReady("busy"))?;
            if inner.closed {
                return Err(ClientError::Closed);
            }
            (inner.token.clone(), inner.life.as_ref().and_then(Aborter::signal))
        };
        http::request(method, &path_or_url, token.as_deref(), body.as_deref(), signal.as_ref()).await
    }

    /// `{base}{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        self.0.try_borrow().map(|i| url::api(&i.base, path)).unwrap_or_default()
    }

    /// The REST base.
    pub(crate) fn base(&self) -> String {
        self.0.try_borrow().map(|i| i.base.clone()).unwrap_or_default()
    }

    /// Registers a handler; returns a JS function that removes it.
    pub(crate) fn on(&self, event: String, channel: Option<String>, f: Function) -> Function {
        let id = self
            .with(|i| {
                i.next_handler += 1;
                let id = i.next_handler;
                i.handlers.push(Handler { id, event, channel, f });
                id
            })
            .unwrap_or(0);
        let weak = self.weak();
        let off = Closure::<dyn FnMut()>::new(move || {
            run(&weak, |i| i.handlers.retain(|h| h.id != id));
        });
        off.into_js_value().unchecked_into()
    }

    /// The connection state's name.
    pub(crate) fn state(&self) -> &'static str {
        self.0.try_borrow().map_or("unknown", |i| state_name(i.sup.state()))
    }
}

impl Inner {
    fn emit(&mut self, channel: Option<String>, name: &str, payload: JsValue) {
        self.emits.push(Emit::Event { channel, name: name.to_owned(), payload });
    }

    /// Emits an event with a JS payload.
    pub(crate) fn emit_js(&mut self, name: &str, payload: JsValue) {
        self.emit(None, name, payload);
    }

    /// Emits an `error` event with a code and message.
    pub(crate) fn emit_error(&mut self, code: &str, message: &str) {
        let err = super::error_object(code, message, None);
        self.emit(None, "error", err);
    }

    pub(crate) fn set_token(&mut self, token: Option<String>) {
        self.token.clone_from(&token);
        self.subs.set_token(token);
        for p in self.subs.token_pushes() {
            self.push(&p);
        }
    }

    /// Sends a push on the open socket; `false` when there is none.
    fn push(&self, push: &Push) -> bool {
        let socket = self.socket.as_ref().filter(|_| self.socket_open);
        socket.zip(wire::encode(push, None)).is_some_and(|(s, text)| s.send(&text))
    }

    /// How often a connected client catches up at least (milliseconds; the supervisor clamps).
    pub(crate) fn set_catch_up_interval(&mut self, ms: u64) {
        self.sup.set_catch_up_interval(ms);
    }

    /// The socket URL of the next connection.
    #[cfg(feature = "agent")]
    pub(crate) fn set_ws_url(&mut self, ws_url: String) {
        self.ws_url = ws_url;
    }

    pub(crate) fn set_me(&mut self, kind: AuthorKind, id: String) {
        self.me_actor = Some((kind, id));
    }

    /// Starts connecting and listening to the browser (idempotent).
    pub(crate) fn start(&mut self) {
        if self.started || self.closed {
            return;
        }
        self.started = true;
        self.listen();
        self.sup.start(now_ms());
    }

    fn listen(&mut self) {
        let Some(window) = web_sys::window() else { return };
        let weak = self.me.clone();
        let w = weak.clone();
        let mut add = |target: &web_sys::EventTarget, kind: &'static str, f: BrowserHandler| {
            let w = w.clone();
            if let Some(l) = Listener::new(target, kind, move |e| {
                run(&w, |i| f(i, &e));
            }) {
                self.listeners.push(l);
            }
        };
        add(
            &window,
            "online",
            Box::new(|i, _| {
                let now = now_ms();
                i.online = true;
                i.sup.handle_online(now);
                for c in &mut i.convs {
                    c.outbox.set_online(now, true);
                }
            }),
        );
        add(
            &window,
            "offline",
            Box::new(|i, _| {
                let now = now_ms();
                i.online = false;
                for c in &mut i.convs {
                    c.outbox.set_online(now, false);
                }
            }),
        );
        add(
            &window,
            "pagehide",
            Box::new(|i, _| {
                if let Some((_, p)) = &mut i.presence {
                    p.handle_close(now_ms());
                }
            }),
        );
        add(
            &window,
            "pageshow",
            Box::new(|i, e| {
                let persisted = js_sys::Reflect::get(e, &JsValue::from_str("persisted"))
                    .ok()
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if persisted {
                    let now = now_ms();
                    if let Some((_, p)) = &mut i.presence {
                        p.handle_reopen(now);
                    }
                    i.sup.handle_visible(now);
                }
            }),
        );
        if let Some(doc) = window.document() {
            add(
                &doc,
                "visibilitychange",
                Box::new(|i, _| {
                    let visible = web_sys::window()
                        .and_then(|w| w.document())
                        .is_none_or(|d| d.visibility_state() == web_sys::VisibilityState::Visible);
                    let now = now_ms();
                    if visible {
                        // A throttled background tab may have missed heartbeats: check now
                        // instead of trusting (or distrusting) the late timers.
                        i.sup.handle_visible(now);
                    }
                    if let Some((_, p)) = &mut i.presence {
                        p.handle_visibility(now, visible);
                    }
                }),
            );
            for kind in ["keydown", "pointerdown"] {
                add(
                    &doc,
                    kind,
                    Box::new(|i, _| {
                        if let Some((_, p)) = &mut i.presence {
                            p.handle_input(now_ms());
                        }
                    }),
                );
            }
        }
        drop(weak);
    }

    // ----- channels -----

    /// Holds a plain channel (queue, agent, notes, or any Supabase channel).
    pub(crate) fn hold(&mut self, name: &str) {
        if self.subs.add(name) {
            self.join_now(name);
        }
    }

    fn join_now(&mut self, name: &str) {
        if !self.socket_open {
            return;
        }
        if let Some(join) = self.subs.join(name) {
            self.push(&join);
        }
    }

    /// Releases a plain channel.
    pub(crate) fn release(&mut self, name: &str) {
        if let Some(leave) = self.subs.remove(name) {
            self.push(&leave);
        }
    }

    /// Follows a conversation: its channel, ordered events from `seq` 1 (the history is emitted
    /// first), its outbox and typing sender.
    pub(crate) fn follow(&mut self, id: &ConversationId) {
        if let Some(c) = self.convs.iter_mut().find(|c| &c.id == id) {
            c.holders += 1;
            return;
        }
        let now = now_ms();
        let mut outbox = Outbox::new(&self.outbox_prefix);
        outbox.set_online(now, self.online);
        // What was typed before a reload and not sent yet goes out now (once: the server knows
        // a replayed `client_msg_id`).
        let restored = outbox.restore(now, self.stored_outbox(id));
        for item in &restored {
            self.emit_outbox(id, item, None);
        }
        let mut buffer = EventBuffer::new(Seq::ZERO);
        buffer.request_catch_up();
        self.convs.push(Conv {
            id: id.clone(),
            buffer,
            outbox,
            typing: TypingSender::new(),
            rx: TypingReceiver::new(),
            catching_up: false,
            again: false,
            poll: None,
            poll_gen: 0,
            holders: 1,
            dirty: false,
            last_error: None,
        });
        self.hold(&Channel::Conversation(id.clone()).name());
        if self.polling {
            self.spawn_poll(id.clone());
        }
    }

    /// Stops following a conversation (when its last holder lets go).
    pub(crate) fn unfollow(&mut self, id: &ConversationId) {
        let Some(i) = self.convs.iter().position(|c| &c.id == id) else { return };
        self.convs[i].holders -= 1;
        if self.convs[i].holders == 0 {
            self.convs.remove(i);
            self.release(&Channel::Conversation(id.clone()).name());
        }
    }

    /// Forgets the visitor (another user signs in on this browser): presence of its conversation
    /// goes `offline` (with the old token), every followed conversation is dropped with its
    /// outbox, in memory and in storage (nothing typed by one user is ever sent, or shown, as
    /// another's), pending sends are rejected with `closed`, and the token is cleared. The
    /// socket stays up for the next visitor's channels.
    pub(crate) fn forget_visitor(&mut self) {
        let now = now_ms();
        if let Some((_, p)) = &mut self.presence {
            p.handle_close(now);
        }
        self.pump();
        self.presence = None;
        for c in std::mem::take(&mut self.convs) {
            if let Some(store) = &self.outbox_store {
                store.remove(&Self::outbox_key(&c.id));
            }
            self.release(&Channel::Conversation(c.id.clone()).name());
        }
        for p in std::mem::take(&mut self.pending) {
            let err = super::js_error(&ClientError::Closed);
            self.emits.push(Emit::Settle { f: p.reject, value: err });
        }
        self.set_token(None);
    }

    /// Reports customer presence for this conversation from now on.
    pub(crate) fn track_presence(&mut self, id: &ConversationId) {
        if self.presence.as_ref().is_some_and(|(c, _)| c == id) {
            return;
        }
        self.presence = Some((id.clone(), PresenceTracker::new(now_ms())));
    }

    // ----- sends -----

    /// Queues a message; `resolve`/`reject` settle the JS promise.
    pub(crate) fn send(&mut self, id: &ConversationId, body: String, resolve: Function, reject: Function) {
        let now = now_ms();
        let Some(c) = self.convs.iter_mut().find(|c| &c.id == id) else {
            let err = super::js_error(&ClientError::NotReady("not following this conversation"));
            self.emits.push(Emit::Settle { f: reject, value: err });
            return;
        };
        let Ok(cid) = c.outbox.push(now, body.clone()) else {
            let err = super::error_object(
                "outbox_full",
                "too many unsent messages: wait until they are sent",
                None,
            );
            self.emits.push(Emit::Settle { f: reject, value: err });
            return;
        };
        c.typing.handle_send(now);
        c.dirty = true;
        let item = OutboxItem { client_msg_id: cid.clone(), body, attempts: 0, failed: false };
        let id = id.clone();
        self.emit_outbox(&id, &item, None);
        self.pending.push(PendingSend { id: cid, resolve, reject, error: None });
    }

    /// Sends a failed message again (it goes after the queued ones); `false` when there is no
    /// failed message with this id.
    pub(crate) fn retry(&mut self, cid: &ClientMsgId) -> bool {
        let now = now_ms();
        let mut queued = None;
        for c in &mut self.convs {
            if c.outbox.retry(now, cid) {
                c.dirty = true;
                queued =
                    c.outbox.items().find(|i| &i.client_msg_id == cid).cloned().map(|i| (c.id.clone(), i));
                break;
            }
        }
        let Some((id, item)) = queued else { return false };
        self.emit_outbox(&id, &item, None);
        true
    }

    /// Drops a failed (or still waiting) message for good; `false` when there is none with
    /// this id, or it is on its way.
    pub(crate) fn discard(&mut self, cid: &ClientMsgId) -> bool {
        let now = now_ms();
        let mut found = None;
        for c in &mut self.convs {
            if c.outbox.discard(now, cid) {
                c.dirty = true;
                found = Some(c.id.clone());
                break;
            }
        }
        let Some(id) = found else { return false };
        if let Some(k) = self.pending.iter().position(|p| &p.id == cid) {
            let p = self.pending.remove(k);
            let err = super::error_object("discarded", "the message was discarded", None);
            self.emits.push(Emit::Settle { f: p.reject, value: err });
        }
        let payload =
            object(&[("conversation_id", &id.as_str().into()), ("client_msg_id", &cid.as_str().into())]);
        self.emit(None, "message:discarded", payload);
        true
    }

    /// Keeps outboxes in `storage` across reloads (the customer client: `localStorage`).
    pub(crate) fn set_outbox_store(&mut self, store: super::customer::Store) {
        self.outbox_store = Some(store);
    }

    fn outbox_key(id: &ConversationId) -> String {
        ["handoff.outbox.", id.as_str()].concat()
    }

    /// The stored outbox: `[{client_msg_id, body, failed?}]` (as JSON text).
    fn stored_outbox(&self, id: &ConversationId) -> Vec<OutboxItem> {
        let text = self.outbox_store.as_ref().and_then(|s| s.get(&Self::outbox_key(id)));
        let items: Array =
            text.map(|t| super::text_to_js(&t)).and_then(|v| v.dyn_into().ok()).unwrap_or_default();
        items
            .iter()
            .filter_map(|v| {
                Some(OutboxItem {
                    client_msg_id: ClientMsgId::new(path_str(&v, &["client_msg_id"])?),
                    body: path_str(&v, &["body"])?,
                    attempts: 0,
                    failed: at(&v, &["failed"]).as_bool() == Some(true),
                })
            })
            .collect()
    }

    /// Writes changed outboxes to storage, keeping what another tab stored.
    fn persist_outboxes(&mut self) {
        let Some(store) = self.outbox_store.clone() else { return };
        for i in 0..self.convs.len() {
            if !std::mem::take(&mut self.convs[i].dirty) {
                continue;
            }
            let id = self.convs[i].id.clone();
            let merged = self.convs[i].outbox.merge_stored(self.stored_outbox(&id));
            let key = Self::outbox_key(&id);
            if merged.is_empty() {
                store.remove(&key);
                continue;
            }
            let items = Array::new();
            for item in &merged {
                let failed = if item.failed { JsValue::TRUE } else { JsValue::UNDEFINED };
                items.push(&object(&[
                    ("client_msg_id", &item.client_msg_id.as_str().into()),
                    ("body", &item.body.as_str().into()),
                    ("failed", &failed),
                ]));
            }
            if let Some(text) = super::js_to_json(&items) {
                store.set(&key, &text);
            }
        }
    }

    /// `message:queued` (on its way) or, with `error`, `message:failed` (refused for good).
    fn emit_outbox(&mut self, id: &ConversationId, item: &OutboxItem, error: Option<&ClientError>) {
        let failed = item.failed || error.is_some();
        let error = failed.then(|| {
            error.map_or_else(
                || {
                    let message = "the server refused the message";
                    object(&[("code", &"send_failed".into()), ("message", &message.into())])
                },
                super::error_payload,
            )
        });
        let payload = outbox_payload(Some(id.as_str()), &item.client_msg_id, &item.body, error.as_ref());
        let name = if failed { "message:failed" } else { "message:queued" };
        self.emit(None, name, payload);
    }

    /// A key was typed in the conversation's input.
    pub(crate) fn typing_input(&mut self, id: &ConversationId) {
        let now = now_ms();
        if let Some((_, p)) = &mut self.presence {
            p.handle_input(now);
        }
        if let Some(c) = self.convs.iter_mut().find(|c| &c.id == id) {
            c.typing.handle_input(now);
        }
    }

    /// The input lost focus or was cleared.
    pub(crate) fn typing_stop(&mut self, id: &ConversationId) {
        if let Some(c) = self.convs.iter_mut().find(|c| &c.id == id) {
            c.typing.handle_blur(now_ms());
        }
    }

    /// Sends a client broadcast on a joined channel (Supabase channels).
    #[cfg(feature = "supabase")]
    pub(crate) fn broadcast(&mut self, channel: &str, event: &str, payload: &JsValue) -> bool {
        let Some(push) = self.subs.broadcast(channel) else { return false };
        let socket = self.socket.as_ref().filter(|_| self.socket_open);
        socket.zip(wire::encode(&push, Some((event, payload)))).is_some_and(|(s, text)| s.send(&text))
    }

    /// Closes everything: presence goes `offline` by beacon, pending sends are rejected, and the
    /// socket, timer, listeners, polls and fetches are dropped.
    pub(crate) fn close(&mut self) {
        if self.closed {
            return;
        }
        let now = now_ms();
        if let Some((_, p)) = &mut self.presence {
            p.handle_close(now);
        }
        for c in &mut self.convs {
            c.typing.handle_blur(now);
        }
        self.sup.close(now);
        self.pump();
        self.closed = true;
        for p in std::mem::take(&mut self.pending) {
            let err = super::js_error(&ClientError::Closed);
            self.emits.push(Emit::Settle { f: p.reject, value: err });
        }
        self.socket = None;
        self.socket_open = false;
        self.timer = None;
        self.listeners.clear();
        self.life = None;
        self.convs.clear();
        self.presence = None;
        self.polling = false;
    }

    // ----- the machines' actions -----

    /// Carries out every action the machines ask for, until none is left, then re-arms the timer.
    pub(crate) fn pump(&mut self) {
        if self.closed {
            return;
        }
        let now = now_ms();
        for _ in 0..64 {
            let mut busy = false;
            while let Some(a) = self.sup.poll_action() {
                busy = true;
                self.supervisor_action(a);
            }
            for i in 0..self.convs.len() {
                while let Some(a) = self.convs[i].buffer.poll_action() {
                    busy = true;
                    match a {
                        BufferAction::Apply(event) => self.apply(None, event),
                        BufferAction::CatchUp { after } => self.catch_up(i, after),
                        _ => {}
                    }
                }
                while let Some(a) = self.convs[i].outbox.poll_action() {
                    busy = true;
                    self.outbox_action(i, a);
                }
                while let Some(TypingAction::Send(is_typing)) = self.convs[i].typing.poll_action() {
                    busy = true;
                    let id = self.convs[i].id.clone();
                    self.post_typing(&id, is_typing);
                }
                while let Some(change) = self.convs[i].rx.poll_action() {
                    busy = true;
                    let id = self.convs[i].id.clone();
                    self.typing_change(&id, change);
                }
            }
            if let Some((id, p)) = &mut self.presence {
                let id = id.clone();
                let mut actions = Vec::new();
                while let Some(a) = p.poll_action() {
                    actions.push(a);
                }
                for a in actions {
                    busy = true;
                    self.presence_action(&id, a);
                }
            }
            if !busy {
                break;
            }
        }
        self.persist_outboxes();
        self.rearm(now);
    }

    fn deadline(&self) -> Option<u64> {
        let mut d = self.sup.poll_timeout();
        let mut min = |t: Option<u64>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        };
        for c in &self.convs {
            min(c.buffer.poll_timeout());
            min(c.outbox.poll_timeout());
            min(c.typing.poll_timeout());
            min(c.rx.poll_timeout());
        }
        if let Some((_, p)) = &self.presence {
            min(p.poll_timeout());
        }
        d
    }

    /// One timer, at the earliest deadline of all machines.
    fn rearm(&mut self, now: u64) {
        let Some(at) = self.deadline() else {
            self.timer = None;
            return;
        };
        if self.timer.as_ref().is_some_and(|(t, _)| *t == at) {
            return;
        }
        let delay = u32::try_from(at.saturating_sub(now)).unwrap_or(u32::MAX);
        let weak = self.me.clone();
        let timeout = Timeout::new(delay, move || {
            run(&weak, |i| {
                i.timer = None;
                i.timeout(now_ms());
            });
        });
        self.timer = Some((at, timeout));
    }

    fn timeout(&mut self, now: u64) {
        self.sup.handle_timeout(now);
        for c in &mut self.convs {
            c.buffer.handle_timeout(now);
            c.outbox.handle_timeout(now);
            c.typing.handle_timeout(now);
            c.rx.handle_timeout(now);
        }
        if let Some((_, p)) = &mut self.presence {
            p.handle_timeout(now);
        }
    }

    fn supervisor_action(&mut self, a: SupervisorAction) {
        match a {
            SupervisorAction::Connect => self.connect(),
            SupervisorAction::Disconnect => {
                self.socket = None;
                self.socket_open = false;
                self.subs.reset();
            }
            SupervisorAction::SendHeartbeat if self.socket_open => {
                let hb = self.subs.heartbeat();
                self.push(&hb);
            }
            SupervisorAction::StartPolling => {
                self.polling = true;
                let ids: Vec<ConversationId> = self.convs.iter().map(|c| c.id.clone()).collect();
                for id in ids {
                    self.spawn_poll(id);
                }
            }
            SupervisorAction::StopPolling => {
                self.polling = false;
                for c in &mut self.convs {
                    c.poll = None;
                    c.poll_gen = c.poll_gen.wrapping_add(1);
                }
            }
            SupervisorAction::CatchUp => {
                for c in &mut self.convs {
                    c.buffer.request_catch_up();
                }
            }
            SupervisorAction::StateChanged(s) => {
                self.emit(None, "connection", JsValue::from_str(state_name(s)));
            }
            _ => {}
        }
    }

    fn connect(&mut self) {
        self.socket = None;
        self.socket_open = false;
        self.subs.reset();
        let weak = self.me.clone();
        self.socket = Socket::open(&self.ws_url, move |e| {
            run(&weak, |i| i.socket_event(e));
        });
        if self.socket.is_none() {
            self.sup.handle_connect_failed(now_ms());
        }
    }

    fn socket_event(&mut self, e: SocketEvent) {
        let now = now_ms();
        match e {
            SocketEvent::Open => {
                self.socket_open = true;
                for j in self.subs.join_all() {
                    self.push(&j);
                }
                if self.subs.settled() {
                    self.sup.handle_connected(now);
                }
            }
            SocketEvent::Closed => {
                self.socket = None;
                self.socket_open = false;
                self.subs.reset();
                self.sup.handle_disconnected(now);
            }
            SocketEvent::Message(m) => self.frame(&m),
        }
    }

    fn frame(&mut self, data: &JsValue) {
        let now = now_ms();
        let Some(frame) = wire::decode(data) else { return };
        match self.subs.handle(&frame.head) {
            Incoming::Joined(name) => {
                if let Ok(Channel::Conversation(id)) = name.parse::<Channel>() {
                    if let Some(c) = self.convs.iter_mut().find(|c| c.id == id) {
                        c.buffer.request_catch_up();
                    }
                }
                if self.subs.settled() {
                    self.sup.handle_connected(now);
                }
            }
            Incoming::JoinFailed { channel, reason } => {
                let err = super::error_object("join_failed", &reason, Some(&channel));
                self.emit(Some(channel), "error", err);
                if self.subs.settled() {
                    self.sup.handle_connected(now);
                }
            }
            Incoming::Event { channel } => {
                let Some(event) = JsEvent::from_wire(&frame.payload) else { return };
                let conv = event
                    .seq
                    .and(event.conversation.as_deref())
                    .and_then(|id| self.convs.iter_mut().find(|c| c.id.as_str() == id));
                match conv {
                    Some(c) => c.buffer.handle_event(now, event),
                    None => self.apply(Some(channel), event),
                }
            }
            Incoming::HeartbeatReply => self.sup.handle_heartbeat_reply(now),
            Incoming::ChannelError(name) => self.join_now(&name),
            Incoming::ChannelClosed(name) => {
                let err = super::error_object("channel_closed", "the server closed the channel", Some(&name));
                self.emit(Some(name), "error", err);
            }
            _ => {}
        }
    }

    /// An event in order (or ephemeral): typing goes through the conversation's receiver (3 s
    /// time-to-live, our own typing dropped), everything else to the app.
    fn apply(&mut self, channel: Option<String>, event: JsEvent) {
        let now = now_ms();
        let conv =
            event.conversation.as_deref().and_then(|id| self.convs.iter_mut().find(|c| c.id.as_str() == id));
        if let Some(c) = conv {
            if event.name == EventType::Typing.as_str() {
                if let Some(actor) = event.author(&["actor"]) {
                    let mine =
                        self.me_actor.as_ref().is_some_and(|(k, id)| *k == actor.kind && *id == actor.id);
                    if !mine {
                        let is_typing = at(&event.payload, &["is_typing"]).as_bool() == Some(true);
                        c.rx.handle_typing(now, &actor, is_typing);
                    }
                }
                return;
            }
            if event.name == EventType::MessageNew.as_str() {
                if let Some(author) = event.author(&["message", "author"]) {
                    c.rx.handle_message(now, &author);
                }
            }
        }
        self.emit(channel, &event.name, event.payload);
    }

    /// `typing` as the receiver shows it: `{conversation_id, actor: {kind, id, name?}, is_typing}`.
    fn typing_change(&mut self, id: &ConversationId, change: TypingChange) {
        let (actor, is_typing) = match change {
            TypingChange::Started(a) => (a, true),
            TypingChange::Stopped(a) => (a, false),
            _ => return,
        };
        let actor = object(&[
            ("kind", &actor.kind.as_str().into()),
            ("id", &actor.id.as_str().into()),
            ("name", &super::opt_field(actor.name.as_deref())),
        ]);
        let payload = object(&[
            ("conversation_id", &id.as_str().into()),
            ("actor", &actor),
            ("is_typing", &JsValue::from_bool(is_typing)),
        ]);
        self.emit(None, "typing", payload);
    }

    /// Fetches `events?after=<after>` for conversation `i` (one at a time; a request during a
    /// fetch runs again after it).
    fn catch_up(&mut self, i: usize, after: Seq) {
        let c = &mut self.convs[i];
        if self.base.is_empty() {
            return;
        }
        if c.catching_up {
            c.again = true;
            return;
        }
        c.catching_up = true;
        let url = url::events(&self.base, &c.id, after, None);
        let id = c.id.clone();
        self.fetch_events(id, url, None);
    }

    /// Fetches a page of events; `poll` is the long-poll generation for long-polls.
    fn fetch_events(&self, id: ConversationId, url: String, poll: Option<u32>) {
        let weak = self.me.clone();
        let token = self.token.clone();
        let poll_signal = if poll.is_some() {
            self.convs.iter().find(|c| c.id == id).and_then(|c| c.poll.as_ref()).and_then(Aborter::signal)
        } else {
            self.life.as_ref().and_then(Aborter::signal)
        };
        super::spawn(async move {
            let r = http::request("GET", &url, token.as_deref(), None, poll_signal.as_ref()).await;
            let failed = r.is_err();
            let again = run(&weak, |i| i.events_fetched(&id, r, poll)).unwrap_or(false);
            if let (true, Some(generation)) = (again, poll) {
                if failed {
                    // The server is unreachable: do not spin.
                    gloo_timers::future::TimeoutFuture::new(2_000).await;
                }
                run(&weak, |i| {
                    if i.polling && i.convs.iter().any(|c| c.id == id && c.poll_gen == generation) {
                        i.spawn_poll(id);
                    }
                });
            }
        });
    }

    /// Feeds a page of events; for a long-poll, whether to poll again.
    fn events_fetched(
        &mut self,
        id: &ConversationId,
        r: Result<JsValue, ClientError>,
        poll: Option<u32>,
    ) -> bool {
        let now = now_ms();
        let Some(c) = self.convs.iter_mut().find(|c| &c.id == id) else { return false };
        if poll.is_none() {
            c.catching_up = false;
        }
        // Only the current loop goes on (a stopped one's late answer is still fed: the buffer
        // drops what it has already applied).
        let current = poll.is_some_and(|g| g == c.poll_gen);
        // `{events: [{event, payload}], last_seq, status}`, as `JSON.parse` gave it.
        match r {
            Ok(page) => {
                let events: Array = at(&page, &["events"]).dyn_into().unwrap_or_default();
                let latest = Seq(path_u64(&page, &["last_seq"]).unwrap_or(0));
                let mut last_event = None;
                for e in events.iter() {
                    if let Some(event) = JsEvent::from_wire(&e) {
                        last_event = event.seq.max(last_event);
                        c.buffer.handle_event(now, event);
                    }
                }
                // `last_seq` is the conversation's latest, not "applied up to": a page that
                // stopped below it is followed by the next one.
                c.buffer.handle_page(now, last_event, latest);
            }
            Err(ClientError::Api { status: 401 | 403 | 404, code, message }) => {
                // Not ours (any more): retrying cannot help.
                self.emit_error(&code, &message);
                return false;
            }
            Err(_) if poll.is_none() => {
                // A failed catch-up (network, 5xx) is tried again in 2 s.
                let weak = self.me.clone();
                let id = id.clone();
                super::spawn(async move {
                    gloo_timers::future::TimeoutFuture::new(2_000).await;
                    run(&weak, |i| {
                        if let Some(c) = i.convs.iter_mut().find(|c| c.id == id) {
                            c.buffer.request_catch_up();
                        }
                    });
                });
                return false;
            }
            Err(_) => {}
        }
        if poll.is_none() && c.again {
            c.again = false;
            c.buffer.request_catch_up();
        }
        current && self.polling
    }

    /// Starts (or restarts) the long-poll of a conversation.
    fn spawn_poll(&mut self, id: ConversationId) {
        if self.base.is_empty() || self.closed {
            return;
        }
        let Some(c) = self.convs.iter_mut().find(|c| c.id == id) else { return };
        c.poll = Some(Aborter::new());
        c.poll_gen = c.poll_gen.wrapping_add(1);
        let generation = c.poll_gen;
        let url = url::events(&self.base, &id, c.buffer.last_applied(), Some(LONG_POLL_WAIT_SECS));
        self.fetch_events(id, url, Some(generation));
    }

    fn outbox_action(&mut self, i: usize, a: OutboxAction) {
        match a {
            OutboxAction::Send { client_msg_id, body } => {
                let id = self.convs[i].id.clone();
                let url = url::conversation(&self.base, &id, "/messages");
                let body = super::json_body(&[
                    ("body", &body.into()),
                    ("client_msg_id", &client_msg_id.as_str().into()),
                ])
                .unwrap_or_default();
                let weak = self.me.clone();
                let token = self.token.clone();
                let signal = self.life.as_ref().and_then(Aborter::signal);
                super::spawn(async move {
                    let r = http::request("POST", &url, token.as_deref(), Some(&body), signal.as_ref()).await;
                    run(&weak, |i| i.sent(&id, &client_msg_id, r));
                });
            }
            OutboxAction::Failed { client_msg_id } => {
                let error = self.convs[i].last_error.take();
                if let Some(k) = self.pending.iter().position(|p| p.id == client_msg_id) {
                    let p = self.pending.remove(k);
                    let err = p.error.or_else(|| error.clone());
                    let err = err.unwrap_or(ClientError::Network(String::from("send failed")));
                    self.emits.push(Emit::Settle { f: p.reject, value: super::js_error(&err) });
                }
                let conv = &self.convs[i];
                let item = conv.outbox.failed().find(|it| it.client_msg_id == client_msg_id).cloned();
                if let Some(item) = item {
                    let id = conv.id.clone();
                    self.emit_outbox(&id, &item, error.as_ref());
                }
            }
            _ => {}
        }
    }

    fn sent(&mut self, id: &ConversationId, cid: &ClientMsgId, r: Result<JsValue, ClientError>) {
        let now = now_ms();
        let r = r.and_then(|answer| {
            let message = at(&answer, &["message"]);
            if message.is_object() {
                Ok(message)
            } else {
                Err(ClientError::InvalidResponse(String::from("no message in the answer")))
            }
        });
        let Some(c) = self.convs.iter_mut().find(|c| &c.id == id) else { return };
        match r {
            Ok(message) => {
                c.outbox.handle_sent(now, cid);
                c.dirty = true;
                if let Some(k) = self.pending.iter().position(|p| &p.id == cid) {
                    let p = self.pending.remove(k);
                    self.emits.push(Emit::Settle { f: p.resolve, value: message });
                }
            }
            Err(e) => {
                c.outbox.handle_failed(now, cid, e.is_retryable());
                c.dirty = true;
                c.last_error = Some(e.clone());
                if let Some(p) = self.pending.iter_mut().find(|p| &p.id == cid) {
                    p.error = Some(e);
                }
            }
        }
    }

    fn post_typing(&self, id: &ConversationId, is_typing: bool) {
        let url = url::conversation(&self.base, id, "/typing");
        let body = if is_typing { "{\"is_typing\":true}" } else { "{\"is_typing\":false}" };
        self.fire_and_forget(url, body.to_owned());
    }

    fn fire_and_forget(&self, url: String, body: String) {
        let token = self.token.clone();
        let signal = self.life.as_ref().and_then(Aborter::signal);
        super::spawn(async move {
            // Ephemeral: a lost typing or presence update is replaced by the next one.
            let _ = http::request("POST", &url, token.as_deref(), Some(&body), signal.as_ref()).await;
        });
    }

    fn presence_action(&mut self, id: &ConversationId, a: PresenceAction) {
        let url = url::conversation(&self.base, id, "/presence");
        let tab = JsValue::from_str(&self.tab_id);
        // `PresenceRequest`: `{state, tab, token?}`.
        let body = |state: PresenceState, token: Option<String>| {
            let state = JsValue::from_str(state.as_str());
            let token = super::opt_field(token.as_deref());
            super::json_body(&[("state", &state), ("tab", &tab), ("token", &token)]).unwrap_or_default()
        };
        match a {
            PresenceAction::Send(state) => self.fire_and_forget(url, body(state, None)),
            PresenceAction::Beacon(state) => {
                // `sendBeacon` cannot set headers: the token goes in the `text/plain` body.
                let data = body(state, self.token.clone());
                if let Some(w) = web_sys::window() {
                    let _ = w.navigator().send_beacon_with_opt_str(&url, Some(&data));
                }
            }
            _ => {}
        }
    }
}

/// The payload of `message:queued` and `message:failed`: `{conversation_id, client_msg_id, body,
/// error?}`.
pub(crate) fn outbox_payload(
    conversation: Option<&str>,
    cid: &ClientMsgId,
    body: &str,
    error: Option<&JsValue>,
) -> JsValue {
    let conversation = super::str_or_null(conversation);
    object(&[
        ("conversation_id", &conversation),
        ("client_msg_id", &cid.as_str().into()),
        ("body", &body.into()),
        ("error", error.unwrap_or(&JsValue::UNDEFINED)),
    ])
}
