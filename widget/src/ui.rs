//! The chat window: a Shadow DOM built once, updated from the [`Model`] on every client event.
//!
//! Borrow discipline: the client may call back synchronously (an event emitted while a call
//! runs), so `Ui` is never borrowed across a client call; handlers take what they need, drop the
//! borrow, then call the client.

use std::cell::RefCell;
use std::rc::Rc;

use handoff_client::HandoffClient;
use handoff_protocol::api::{is_valid_email, validate_body};
use handoff_protocol::event::ConversationStatus;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    CssStyleSheet, Document, Element, HtmlElement, HtmlInputElement, HtmlTextAreaElement, ShadowRoot,
    ShadowRootInit, ShadowRootMode, Storage,
};

use crate::dom::{append, attrs, el, show, text_el, Listeners};
use crate::model::{decimal, parse_decimal, safe_color, BubbleChange, Model, Outgoing, Screen};

const CSS: &str = include_str!("widget.css");
const SVG_NS: &str = "http://www.w3.org/2000/svg";
const OPEN_KEY: &str = "handoff.open";
/// The launcher's icon: a speech bubble while minimized, a chevron while open.
const ICON_CHAT: &str = "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z";
const ICON_CLOSE: &str =
    "M5.3 8.3a1 1 0 0 1 1.4 0L12 13.6l5.3-5.3a1 1 0 1 1 1.4 1.4l-6 6a1 1 0 0 1-1.4 0l-6-6a1 1 0 0 1 0-1.4z";

/// The elements the widget updates.
struct Els {
    root: Element,
    launcher: Element,
    icon: Element,
    badge: Element,
    panel: Element,
    title: Element,
    sub: Element,
    conn: Element,
    log: Element,
    typing: Element,
    actions: Element,
    composer: Element,
    input: HtmlTextAreaElement,
    error: Element,
    offline: Element,
    off_name: HtmlInputElement,
    off_email: HtmlInputElement,
    off_message: HtmlTextAreaElement,
    off_error: Element,
    off_submit: Element,
    back: Element,
    sent: Element,
    sent_text: Element,
}

struct Ui {
    doc: Document,
    els: Els,
    sheet: CssStyleSheet,
    model: Model,
    /// Rendered message ids (live events and send answers both carry the message).
    shown: Vec<String>,
    /// The highest persisted `seq` rendered: replays of older events are skipped.
    last_seq: u64,
    /// Own messages' bubbles until the server confirms them, by `client_msg_id` (the model
    /// says which is sending and which failed).
    outgoing: Vec<(String, Element)>,
    conversation: Option<String>,
    /// The conversation's start while it is on its way.
    starting: Option<Promise>,
    /// Settles when the session is up (calls that need the visitor token wait for it).
    ready: Promise,
    ready_resolve: Option<Function>,
    position_left: bool,
    local: Option<Storage>,
    session: Option<Storage>,
    listeners: Listeners,
    on_event: Option<Closure<dyn FnMut(JsValue, JsValue)>>,
    /// Following the project's availability (from the first time the window opens).
    watching: bool,
    /// The launcher the loader drew (its `.root`) and the shadow root holding it, until the
    /// session is up: then the widget's stylesheet and root replace it in one task.
    drawn: Option<(ShadowRoot, Element)>,
    /// The loader's session call, used by the first start (see `HandoffClient::start_prefetched`).
    prefetched: JsValue,
}

/// What `handoff_widget.mount` returns: `window.Handoff` calls these once the widget is up.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Widget {
    client: Rc<HandoffClient>,
    ui: Rc<RefCell<Ui>>,
}

impl std::fmt::Debug for Widget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Widget")
    }
}

/// Builds the widget for `projectKey` on the server at `baseUrl` and starts its session (retried
/// quietly while the server is unreachable). The launcher shows once the session is up.
///
/// The loader may pass the `<handoff-widget>` host where it already drew the launcher from its
/// own session call (`host`, or `null`), and that call's answer (`session`: a promise of `{ok,
/// token, text}`, or `null`): the widget builds into that shadow root and swaps its launcher in
/// when its session is up, with no frame in between, using that answer instead of a second call.
///
/// # Errors
/// When the page has no `document.body` or the client options are invalid.
#[wasm_bindgen]
pub fn mount(
    base_url: String,
    project_key: String,
    host: Option<Element>,
    session: JsValue,
) -> Result<Widget, JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let doc = window.document().ok_or("no document")?;
    let body = doc.body().ok_or("no document.body")?;
    let options = Object::new();
    Reflect::set(&options, &"baseUrl".into(), &base_url.into())?;
    Reflect::set(&options, &"projectKey".into(), &project_key.into())?;
    let client = Rc::new(HandoffClient::new(&options)?);

    let sheet = CssStyleSheet::new()?;
    sheet.replace_sync(&stylesheet("#2563eb"))?;
    let els = build(&doc);
    // The loader's launcher stays (with its stylesheet) until the session is up; the widget's
    // root waits hidden beside it (the loader's sheet hides `[hidden]` too).
    let theirs = host
        .filter(|h| h.is_connected())
        .and_then(|h| h.shadow_root())
        .and_then(|s| s.query_selector(".root").ok().flatten().map(|r| (s, r)));
    let drawn = if let Some((shadow, theirs)) = theirs {
        let _ = shadow.append_child(&els.root);
        Some((shadow, theirs))
    } else {
        let host = doc.create_element("handoff-widget")?;
        let shadow = host.attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open))?;
        shadow.set_adopted_style_sheets(&Array::of1(&sheet));
        let _ = shadow.append_child(&els.root);
        let _ = body.append_child(&host);
        None
    };

    let mut ready_resolve = None;
    let ready = Promise::new(&mut |resolve, _| ready_resolve = Some(resolve));
    let ui = Rc::new(RefCell::new(Ui {
        doc,
        els,
        sheet,
        model: Model::default(),
        shown: Vec::new(),
        last_seq: 0,
        outgoing: Vec::new(),
        conversation: None,
        starting: None,
        ready,
        ready_resolve,
        position_left: false,
        local: window.local_storage().ok().flatten(),
        session: window.session_storage().ok().flatten(),
        listeners: Listeners::default(),
        on_event: None,
        watching: false,
        drawn,
        prefetched: session,
    }));
    let w = Widget { client, ui };
    w.wire();
    let started = w.clone();
    spawn_local(async move { started.start().await });
    Ok(w)
}

#[wasm_bindgen]
impl Widget {
    /// Opens the chat window.
    pub fn open(&self) {
        let mut ui = self.ui.borrow_mut();
        if ui.model.screen == Screen::Loading {
            ui.model.open = true; // opens once the session is up
            return;
        }
        let last = ui.last_seq;
        let seen = ui.model.opened(last);
        ui.remember_seen(seen);
        if let Some(s) = &ui.session {
            let _ = s.set_item(OPEN_KEY, "1");
        }
        ui.render();
        let target: Option<HtmlElement> = match ui.model.screen {
            Screen::OfflineForm => ui.els.off_name.clone().dyn_into().ok(),
            _ => ui.els.input.clone().dyn_into().ok(),
        };
        if let Some(t) = target {
            let _ = t.focus();
        }
        // From the first opening on, the chat and the offline form follow the project's
        // availability live (the client may emit at once: no borrow held).
        let watch = !std::mem::replace(&mut ui.watching, true);
        drop(ui);
        if watch {
            if let Err(e) = self.client.watch_availability() {
                self.ui.borrow_mut().watching = false;
                web_sys::console::warn_2(&"Handoff: cannot follow availability".into(), &e);
            }
        }
    }

    /// Minimizes the chat window to the launcher.
    pub fn close(&self) {
        let mut ui = self.ui.borrow_mut();
        ui.model.open = false;
        if let Some(s) = &ui.session {
            let _ = s.remove_item(OPEN_KEY);
        }
        ui.render();
    }

    /// Binds a signed-in user of the site: `{user_id, name?, email?, hmac}` (once the session is
    /// up: a call made earlier waits for it). When this browser's visitor was identified as
    /// another user, the client starts a new visitor (`visitor:changed`) and the window drops
    /// everything of the previous user's: log, open conversation, history, unread badge.
    pub fn identify(&self, user: JsValue) -> Promise {
        // Known before the session starts (a call queued by the loader): a stored visitor
        // identified as another user is not even resumed.
        let user_id = Reflect::get(&user, &"user_id".into()).ok().and_then(|v| v.as_string());
        self.client.expect_user(user_id);
        let (client, ready) = (self.client.clone(), self.ui.borrow().ready.clone());
        let w = self.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            JsFuture::from(ready).await?;
            let r = JsFuture::from(client.identify(&user)).await?;
            // A verified user's conversations from other devices join the history.
            w.load_history().await;
            Ok(r)
        })
    }

    /// `fn(payload, name)` for the client's events (`"*"`: all); returns an unsubscribe function.
    pub fn on(&self, event: String, f: Function) -> Function {
        self.client.on(event, f)
    }
}

impl Widget {
    /// Starts the session, retrying with backoff while the server is unreachable (one console
    /// warning); a refusal (bad key, origin not allowed) is final.
    async fn start(self) {
        let mut delay = 1_000;
        let mut warned = false;
        loop {
            let prefetched = std::mem::replace(&mut self.ui.borrow_mut().prefetched, JsValue::NULL);
            match JsFuture::from(self.client.start_prefetched(prefetched)).await {
                Ok(session) => {
                    self.started(&session);
                    return;
                }
                Err(e) => {
                    let status = count(&e, &["status"]).unwrap_or(0);
                    if (400..500).contains(&status) && status != 429 {
                        web_sys::console::warn_2(&"Handoff: the chat widget was refused".into(), &e);
                        return;
                    }
                    if !warned {
                        warned = true;
                        web_sys::console::warn_2(
                            &"Handoff: the chat server is unreachable; retrying".into(),
                            &e,
                        );
                    }
                    gloo_timers::future::TimeoutFuture::new(delay).await;
                    delay = (delay * 2).min(30_000);
                }
            }
        }
    }

    /// Shows the transcripts of the visitor's earlier conversations (read-only) at the top of
    /// the log, oldest first; the current conversation is the live log below them.
    async fn load_history(&self) {
        let Ok(list) = JsFuture::from(self.client.conversations()).await else { return };
        let Some(list) = get(&list, &["conversations"]).filter(Array::is_array).map(|v| Array::from(&v))
        else {
            return;
        };
        let ui = self.ui.borrow();
        while let Ok(Some(old)) = ui.els.log.query_selector(".old") {
            old.remove();
        }
        let first = ui.els.log.first_child();
        let mut items: Vec<Element> = Vec::new();
        for h in list.iter().rev() {
            let id = text(&h, &["conversation", "id"]);
            if id.is_none() || id == ui.conversation {
                continue;
            }
            let when = get(&h, &["conversation", "created_at"]).and_then(|v| v.as_f64()).unwrap_or(0.0);
            let date: String = js_sys::Date::new(&JsValue::from_f64(when)).to_date_string().into();
            items.push(text_el(
                &ui.doc,
                "li",
                "sys old",
                &["Earlier conversation, ", date.as_str()].concat(),
            ));
            let events =
                get(&h, &["events"]).filter(Array::is_array).map(|v| Array::from(&v)).unwrap_or_default();
            for e in events.iter() {
                if text(&e, &["event"]).as_deref() != Some("message:new") {
                    continue;
                }
                let m = get(&e, &["payload", "message"]).unwrap_or(JsValue::NULL);
                let body = text(&m, &["body"]).unwrap_or_default();
                let kind = text(&m, &["author", "kind"]).unwrap_or_default();
                let b = match kind.as_str() {
                    "customer" => bubble(&ui.doc, "msg me old", "", &body),
                    "bot" => bubble(&ui.doc, "msg bot old", "Assistant", &body),
                    _ => {
                        let who = text(&m, &["author", "name"]).unwrap_or_else(|| "Agent".to_owned());
                        bubble(&ui.doc, "msg agent old", &who, &body)
                    }
                };
                items.push(b);
            }
        }
        for item in &items {
            let _ = ui.els.log.insert_before(item, first.as_ref());
        }
        if !items.is_empty() {
            ui.scroll();
        }
    }

    fn started(&self, session: &JsValue) {
        let reopen = {
            let mut ui = self.ui.borrow_mut();
            let theme = |k: &str| text(session, &["config", "theme", k]).unwrap_or_default();
            let color = theme("color");
            let _ = ui.sheet.replace_sync(&stylesheet(safe_color(&color)));
            ui.position_left = theme("position") == "left";
            let title = theme("title");
            ui.els.title.set_text_content(Some(&title));
            ui.els.panel.set_attribute("aria-label", &title).ok();
            let greeting = theme("greeting");
            if !greeting.is_empty() {
                let bubble = bubble(&ui.doc, "msg greeting", &title, &greeting);
                let _ = ui.els.log.append_child(&bubble);
            }
            let status =
                text(session, &["conversation", "status"]).and_then(|s| ConversationStatus::parse(&s));
            let agent = text(session, &["conversation", "agent", "name"]);
            let flag = |k: &str| get(session, &["config", k]).and_then(|v| v.as_bool()).unwrap_or(false);
            let (away, bot) = (flag("show_offline_form"), flag("bot"));
            if let Some(id) = text(session, &["conversation", "id"]) {
                ui.model.seen_seq = ui.seen_of(&id);
                ui.conversation = Some(id);
            }
            ui.model.started(status, agent, away, bot);
            let asked = std::mem::take(&mut ui.model.open); // `Handoff.open()` before the session
            ui.render();
            show(&ui.els.root, true);
            if let Some((shadow, theirs)) = ui.drawn.take() {
                // Same task as showing ours: the page never paints both or neither.
                shadow.set_adopted_style_sheets(&Array::of1(&ui.sheet));
                let focused = shadow.active_element().is_some_and(|a| theirs.contains(Some(&a)));
                theirs.remove();
                if focused {
                    if let Ok(l) = ui.els.launcher.clone().dyn_into::<HtmlElement>() {
                        let _ = l.focus();
                    }
                }
            }
            if let Some(resolve) = ui.ready_resolve.take() {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
            asked || ui.session.as_ref().and_then(|s| s.get_item(OPEN_KEY).ok().flatten()).is_some()
        };
        if reopen {
            self.open();
        }
        let w = self.clone();
        spawn_local(async move { w.load_history().await });
    }

    /// Listens to the client and the DOM.
    fn wire(&self) {
        let w = self.clone();
        let on_event = Closure::<dyn FnMut(JsValue, JsValue)>::new(move |payload: JsValue, name: JsValue| {
            w.event(&name.as_string().unwrap_or_default(), &payload);
        });
        let _ = self.client.on("*".to_owned(), on_event.as_ref().unchecked_ref::<Function>().clone());
        let mut l = Listeners::default();
        {
            let ui = self.ui.borrow();
            let e = &ui.els;
            let w = self.clone();
            l.on(&e.launcher, "click", move |_| {
                let open = w.ui.borrow().model.open;
                if open {
                    w.close();
                } else {
                    w.open();
                }
            });
            let w = self.clone();
            let min = e.panel.query_selector(".min").ok().flatten().expect("built");
            l.on(&min, "click", move |_| w.close());
            let w = self.clone();
            l.on(&e.panel, "keydown", move |ev| {
                if ev.dyn_ref::<web_sys::KeyboardEvent>().is_some_and(|k| k.key() == "Escape") {
                    w.close();
                    let launcher: Option<HtmlElement> = w.ui.borrow().els.launcher.clone().dyn_into().ok();
                    if let Some(l) = launcher {
                        let _ = l.focus();
                    }
                }
            });
            let w = self.clone();
            l.on(&e.log, "click", move |ev| w.bubble_action(&ev));
            let w = self.clone();
            l.on(&e.composer, "submit", move |ev| {
                ev.prevent_default();
                w.submit();
            });
            let w = self.clone();
            l.on(&e.input, "keydown", move |ev| {
                let Some(k) = ev.dyn_ref::<web_sys::KeyboardEvent>() else { return };
                if k.key() == "Enter" && !k.shift_key() && !k.is_composing() {
                    ev.prevent_default();
                    w.submit();
                }
            });
            let w = self.clone();
            l.on(&e.input, "input", move |_| {
                let empty = w.ui.borrow().els.input.value().is_empty();
                if empty {
                    w.client.stop_typing();
                } else {
                    w.client.typing();
                }
            });
            let w = self.clone();
            l.on(&e.input, "blur", move |_| w.client.stop_typing());
            let w = self.clone();
            let human = e.actions.query_selector("button").ok().flatten().expect("built");
            l.on(&human, "click", move |_| {
                let w = w.clone();
                spawn_local(async move { w.handoff().await });
            });
            let w = self.clone();
            l.on(&e.offline, "submit", move |ev| {
                ev.prevent_default();
                let w = w.clone();
                spawn_local(async move { w.submit_offline().await });
            });
            let w = self.clone();
            l.on(&e.back, "click", move |_| {
                let mut ui = w.ui.borrow_mut();
                ui.model.screen = Screen::Chat;
                ui.render();
            });
            let w = self.clone();
            let again = e.sent.query_selector("button").ok().flatten().expect("built");
            l.on(&again, "click", move |_| {
                let mut ui = w.ui.borrow_mut();
                ui.model.screen = Screen::OfflineForm;
                ui.render();
            });
        }
        let mut ui = self.ui.borrow_mut();
        ui.listeners = l;
        ui.on_event = Some(on_event);
    }

    /// One client event.
    fn event(&self, name: &str, p: &JsValue) {
        let mut ui = self.ui.borrow_mut();
        // Persisted events come in `seq` order; an older one is a replay already rendered.
        let seq = count(p, &["seq"]).or_else(|| count(p, &["message", "seq"]));
        if let Some(seq) = seq {
            if name != "message:new" && seq <= ui.last_seq {
                return;
            }
        }
        match name {
            "message:new" => {
                let m = Reflect::get(p, &"message".into()).unwrap_or(JsValue::NULL);
                ui.message(&m);
            }
            "message:queued" | "message:failed" => {
                let (Some(cid), body) = (text(p, &["client_msg_id"]), text(p, &["body"])) else { return };
                let failed = name == "message:failed";
                let change = if failed { ui.model.send_failed(&cid) } else { ui.model.queued(&cid) };
                // A message refused before its conversation existed went back to the box.
                let can_retry = get(p, &["conversation_id"]).is_some_and(|v| v.is_string());
                ui.outgoing_bubble(&cid, &body.unwrap_or_default(), change, can_retry);
            }
            "message:discarded" => {
                if let Some(cid) = text(p, &["client_msg_id"]) {
                    if ui.model.discarded(&cid) {
                        if let Some(b) = ui.take_outgoing(&cid) {
                            b.remove();
                        }
                    }
                }
            }
            "conversation:status_changed" => {
                if let Some(status) = text(p, &["status"]).and_then(|s| ConversationStatus::parse(&s)) {
                    ui.model.status_changed(status);
                    let line = match status {
                        ConversationStatus::Queued => Some("Waiting for a human agent…"),
                        ConversationStatus::Resolved => Some("The conversation was resolved."),
                        _ => None,
                    };
                    if let Some(line) = line {
                        ui.system(line);
                    }
                }
            }
            "conversation:assigned" => {
                if let Some(name) = text(p, &["agent", "name"]) {
                    ui.system(&[name.as_str(), " joined the conversation"].concat());
                    ui.model.agent = Some(name);
                }
            }
            "queue:position_updated" => {
                if let (Some(pos), Some(len)) = (count(p, &["position"]), count(p, &["queue_length"])) {
                    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
                    ui.model.position = Some((small(pos), small(len)));
                }
            }
            "typing" if text(p, &["actor", "kind"]).as_deref() != Some("customer") => {
                let typing =
                    Reflect::get(p, &"is_typing".into()).ok().and_then(|v| v.as_bool()) == Some(true);
                ui.model.typing =
                    typing.then(|| text(p, &["actor", "name"]).unwrap_or_else(|| "Someone".to_owned()));
            }
            "availability:changed" => {
                if let Some(away) = get(p, &["show_offline_form"]).and_then(|v| v.as_bool()) {
                    ui.model.availability_changed(away);
                }
            }
            "connection" => ui.model.connection = p.as_string().unwrap_or_default(),
            "visitor:changed" => {
                let session = get(p, &["session"]).unwrap_or(JsValue::NULL);
                ui.new_visitor(&session);
                return;
            }
            _ => {}
        }
        if let Some(seq) = seq {
            ui.last_seq = ui.last_seq.max(seq);
        }
        ui.render();
    }

    /// Sends the composer's text (starting the conversation with it the first time). The
    /// "sending" bubble comes from the client's `message:queued`, and goes by `client_msg_id`.
    fn submit(&self) {
        let body = {
            let ui = self.ui.borrow();
            let body = ui.els.input.value().trim().to_owned();
            if body.is_empty() {
                return;
            }
            if let Err(m) = validate_body(&body) {
                ui.error(Some(m));
                return;
            }
            ui.error(None);
            ui.els.input.set_value("");
            body
        };
        self.client.stop_typing();
        let w = self.clone();
        spawn_local(async move {
            let sent = match w.conversation(Some(body.clone())).await {
                // The first message went with the start; it arrives with the history.
                Ok(true) => Ok(None),
                Ok(false) => match JsFuture::from(w.client.send(body.clone())).await {
                    Ok(m) => Ok(Some(m)),
                    // Kept, shown failed with retry and discard (`message:failed`).
                    Err(e) if text(&e, &["code"]).as_deref() != Some("outbox_full") => Ok(None),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match sent {
                Ok(Some(message)) => {
                    let mut ui = w.ui.borrow_mut();
                    ui.message(&message);
                    ui.render();
                }
                Ok(None) => {}
                Err(e) => {
                    let ui = w.ui.borrow();
                    if ui.els.input.value().is_empty() {
                        ui.els.input.set_value(&body);
                    }
                    let why = text(&e, &["message"]).unwrap_or_default();
                    ui.error(Some(
                        &["Not sent (", why.as_str(), "). Your text is back in the box: try again."].concat(),
                    ));
                }
            }
        });
    }

    /// A click in the log: a failed bubble's "Retry" or "Discard".
    fn bubble_action(&self, ev: &web_sys::Event) {
        let Some(button) = ev.target().and_then(|t| t.dyn_into::<Element>().ok()) else { return };
        let Some(act) = button.get_attribute("data-act") else { return };
        let Some(cid) = button.closest("li").ok().flatten().and_then(|li| li.get_attribute("data-cid"))
        else {
            return;
        };
        // The client answers with `message:queued` / `message:discarded` at once: no borrow
        // of the view is held here.
        match act.as_str() {
            "retry" => {
                self.client.retry(cid);
            }
            "discard" => {
                self.client.discard(cid);
            }
            _ => {}
        }
    }

    /// Makes sure there is a conversation, starting it (with `first` as its first message) at
    /// most once: a second message or "talk to a human" while the start is on its way waits for
    /// it instead of starting another. `Ok(true)` when `first` went with the start.
    async fn conversation(&self, first: Option<String>) -> Result<bool, JsValue> {
        if self.client.conversation_id().is_some() {
            return Ok(false);
        }
        let in_flight = self.ui.borrow().starting.clone();
        if let Some(start) = in_flight {
            JsFuture::from(start).await?;
            return Ok(false);
        }
        let with_first = first.is_some();
        let start = self.client.start_conversation(first);
        self.ui.borrow_mut().starting = Some(start.clone());
        let r = JsFuture::from(start).await;
        self.ui.borrow_mut().starting = None;
        self.conversation_started(&r?);
        Ok(with_first)
    }

    fn conversation_started(&self, conversation: &JsValue) {
        let mut ui = self.ui.borrow_mut();
        ui.conversation = text(conversation, &["id"]);
        if ui.model.status.is_none() {
            ui.model.status = text(conversation, &["status"]).and_then(|s| ConversationStatus::parse(&s));
        }
        ui.render();
    }

    /// "Talk to a human": starts a conversation if there is none, then asks for the handoff.
    async fn handoff(&self) {
        {
            let mut ui = self.ui.borrow_mut();
            ui.error(None);
            if !ui.model.human_requested() {
                ui.render(); // nobody to hand over to: the offline form
                return;
            }
        }
        if let Err(e) = self.conversation(None).await {
            return self.failed(&e);
        }
        match JsFuture::from(self.client.request_handoff()).await {
            Ok(c) => {
                let mut ui = self.ui.borrow_mut();
                if let Some(status) = text(&c, &["status"]).and_then(|s| ConversationStatus::parse(&s)) {
                    if ui.model.status != Some(status) {
                        ui.model.status_changed(status);
                    }
                }
                if let Some(name) = text(&c, &["agent", "name"]) {
                    ui.model.agent = Some(name);
                }
                ui.render();
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&self, e: &JsValue) {
        let why = text(e, &["message"]).unwrap_or_else(|| "network error".to_owned());
        self.ui
            .borrow_mut()
            .error(Some(&["Something went wrong (", why.as_str(), "). Please try again."].concat()));
    }

    /// The offline form: checked here first, sent, and kept as typed when the send fails.
    async fn submit_offline(&self) {
        let (name, email, message) = {
            let ui = self.ui.borrow();
            let e = &ui.els;
            let name = e.off_name.value().trim().to_owned();
            let email = e.off_email.value().trim().to_owned();
            let message = e.off_message.value().trim().to_owned();
            let checks: [(&Element, bool, &str); 3] = [
                (e.off_name.as_ref(), !name.is_empty(), "Please enter your name."),
                (
                    e.off_email.as_ref(),
                    is_valid_email(&email),
                    "Please enter a valid email address, like you@example.com.",
                ),
                (e.off_message.as_ref(), validate_body(&message).is_ok(), "Please write a message."),
            ];
            let mut first_error = None;
            for (field, ok, why) in checks {
                let _ = field.set_attribute("aria-invalid", if ok { "false" } else { "true" });
                if !ok && first_error.is_none() {
                    first_error = Some((field.clone(), why));
                }
            }
            if let Some((field, why)) = first_error {
                e.off_error.set_text_content(Some(why));
                show(&e.off_error, true);
                if let Ok(h) = field.dyn_into::<HtmlElement>() {
                    let _ = h.focus();
                }
                return;
            }
            show(&e.off_error, false);
            let _ = e.off_submit.set_attribute("disabled", "");
            e.off_submit.set_text_content(Some("Sending…"));
            (name, email, message)
        };
        let form = Object::new();
        for (k, v) in [("name", &name), ("email", &email), ("message", &message)] {
            let _ = Reflect::set(&form, &k.into(), &JsValue::from_str(v));
        }
        let r = JsFuture::from(self.client.send_offline_message(&form)).await;
        let mut ui = self.ui.borrow_mut();
        let _ = ui.els.off_submit.remove_attribute("disabled");
        ui.els.off_submit.set_text_content(Some("Send message"));
        match r {
            Ok(_) => {
                let thanks = [
                    "Thanks, ",
                    name.as_str(),
                    "! We got your message and will reply to ",
                    email.as_str(),
                    ".",
                ]
                .concat();
                ui.els.sent_text.set_text_content(Some(&thanks));
                ui.els.off_message.set_value("");
                ui.model.screen = Screen::OfflineSent;
                ui.render();
            }
            Err(e) => {
                let why = text(&e, &["message"]).unwrap_or_else(|| "network error".to_owned());
                let msg =
                    ["Your message was not sent (", why.as_str(), "). Nothing is lost: try again."].concat();
                ui.els.off_error.set_text_content(Some(&msg));
                show(&ui.els.off_error, true);
            }
        }
    }
}

impl Ui {
    /// Another user signed in on this browser and the client started a new visitor: nothing of
    /// the previous user's stays on screen (log but the greeting, draft, open conversation,
    /// earlier transcripts, unread badge); the window stays as open as it was.
    fn new_visitor(&mut self, session: &JsValue) {
        while let Ok(Some(old)) = self.els.log.query_selector(":scope > :not(.greeting)") {
            old.remove();
        }
        self.els.input.set_value("");
        self.error(None);
        self.shown.clear();
        self.outgoing.clear();
        self.last_seq = 0;
        self.conversation = None;
        self.starting = None;
        let flag = |k: &str| get(session, &["config", k]).and_then(|v| v.as_bool()).unwrap_or(false);
        let (away, bot) = (flag("show_offline_form"), flag("bot"));
        let open = self.model.open;
        let connection = std::mem::take(&mut self.model.connection);
        self.model = Model { open, connection, ..Model::default() };
        self.model.started(None, None, away, bot);
        self.render();
    }

    /// Renders a message once (by id); an own message replaces its "sending" bubble.
    fn message(&mut self, m: &JsValue) {
        let Some(id) = text(m, &["id"]) else { return };
        if self.shown.contains(&id) {
            return;
        }
        self.shown.push(id);
        let body = text(m, &["body"]).unwrap_or_default();
        let kind = text(m, &["author", "kind"]).unwrap_or_default();
        let seq = count(m, &["seq"]).unwrap_or(0);
        let mine = kind == "customer";
        let bubble = if mine {
            let class = "msg me";
            let cid = text(m, &["client_msg_id"]);
            let own = if self.model.confirmed(cid.as_deref()) {
                cid.and_then(|c| self.take_outgoing(&c))
            } else {
                None
            };
            if let Some(el) = own {
                el.set_class_name(class);
                let _ = el.remove_attribute("data-cid");
                if let Ok(Some(fail)) = el.query_selector(".fail") {
                    fail.remove();
                }
                // Keep the log in server order: the confirmed message goes to the end.
                el
            } else {
                bubble(&self.doc, class, "", &body)
            }
        } else {
            let who = text(m, &["author", "name"])
                .unwrap_or_else(|| if kind == "bot" { "Assistant" } else { "Agent" }.to_owned());
            self.model.typing = None;
            bubble(&self.doc, if kind == "bot" { "msg bot" } else { "msg agent" }, &who, &body)
        };
        let _ = self.els.log.append_child(&bubble);
        self.scroll();
        self.model.message(seq, mine);
        if self.model.open {
            let seen = self.model.seen_seq;
            self.remember_seen(seen);
        }
        self.last_seq = self.last_seq.max(seq);
    }

    /// Shows an own message on its way, or refused (with "Retry" and "Discard" buttons when the
    /// client kept it).
    fn outgoing_bubble(&mut self, cid: &str, body: &str, change: BubbleChange, can_retry: bool) {
        let li = match change {
            BubbleChange::Add => {
                let b = bubble(&self.doc, "msg me sending", "", body);
                attrs(&b, &[("data-cid", cid)]);
                let _ = self.els.log.append_child(&b);
                self.outgoing.push((cid.to_owned(), b.clone()));
                self.scroll();
                b
            }
            BubbleChange::Update => match self.outgoing.iter().find(|(c, _)| c == cid) {
                Some((_, b)) => b.clone(),
                None => return,
            },
        };
        if let Ok(Some(fail)) = li.query_selector(".fail") {
            fail.remove();
        }
        let failed = self.model.outgoing.iter().any(|(id, s)| id == cid && *s == Outgoing::Failed);
        if !failed {
            li.set_class_name("msg me sending");
            return;
        }
        li.set_class_name("msg me failed");
        if can_retry {
            let fail = el(&self.doc, "div", "fail");
            let note = text_el(&self.doc, "span", "", "Not sent.");
            let retry = text_el(&self.doc, "button", "", "Retry");
            attrs(
                &retry,
                &[("type", "button"), ("data-act", "retry"), ("aria-label", "Retry sending this message")],
            );
            let discard = text_el(&self.doc, "button", "", "Discard");
            attrs(
                &discard,
                &[("type", "button"), ("data-act", "discard"), ("aria-label", "Discard this message")],
            );
            append(&fail, &[&note, &retry, &discard]);
            let _ = li.append_child(&fail);
        }
    }

    /// The bubble of an own message until the server confirmed it, taken out.
    fn take_outgoing(&mut self, cid: &str) -> Option<Element> {
        let k = self.outgoing.iter().position(|(c, _)| c == cid)?;
        Some(self.outgoing.swap_remove(k).1)
    }

    fn system(&self, line: &str) {
        let li = text_el(&self.doc, "li", "sys", line);
        let _ = self.els.log.append_child(&li);
        self.scroll();
    }

    fn scroll(&self) {
        self.els.log.set_scroll_top(self.els.log.scroll_height());
    }

    fn error(&self, message: Option<&str>) {
        self.els.error.set_text_content(message);
        show(&self.els.error, message.is_some());
    }

    fn seen_key(id: &str) -> String {
        ["handoff.seen.", id].concat()
    }

    fn seen_of(&self, id: &str) -> u64 {
        let v = self.local.as_ref().and_then(|s| s.get_item(&Self::seen_key(id)).ok().flatten());
        v.and_then(|v| parse_decimal(&v)).unwrap_or(0)
    }

    fn remember_seen(&self, seq: u64) {
        if let (Some(s), Some(id)) = (&self.local, &self.conversation) {
            let _ = s.set_item(&Self::seen_key(id), &decimal(seq));
        }
    }

    /// Puts the model on the page.
    fn render(&self) {
        let m = &self.model;
        let e = &self.els;
        let mut class = String::from("root");
        if self.position_left {
            class.push_str(" left");
        }
        if m.open {
            class.push_str(" open");
        }
        e.root.set_class_name(&class);
        show(&e.panel, m.open);
        let badge = m.badge();
        e.badge.set_text_content(Some(&badge));
        show(&e.badge, !badge.is_empty());
        let label = match (m.open, badge.as_str()) {
            (true, _) => "Minimize chat".to_owned(),
            (false, "") => "Open chat".to_owned(),
            (false, n) => ["Open chat, ", n, " unread"].concat(),
        };
        attrs(
            &e.launcher,
            &[("aria-label", &label), ("aria-expanded", if m.open { "true" } else { "false" })],
        );
        attrs(&e.icon, &[("d", if m.open { ICON_CLOSE } else { ICON_CHAT })]);
        e.sub.set_text_content(Some(&m.status_line()));
        let notice = m.connection_notice();
        e.conn.set_text_content(notice);
        show(&e.conn, notice.is_some());
        let chat = m.screen == Screen::Chat;
        show(&e.log, chat);
        show(&e.composer, chat);
        let typing = m.typing.as_ref().filter(|_| chat).map(|n| [n.as_str(), " is typing…"].concat());
        e.typing.set_text_content(typing.as_deref());
        show(&e.typing, typing.is_some());
        show(&e.actions, m.offers_human());
        show(&e.offline, m.screen == Screen::OfflineForm);
        show(&e.back, m.can_chat());
        show(&e.sent, m.screen == Screen::OfflineSent);
    }
}

/// The stylesheet with the project's accent colour (already checked by [`safe_color`]).
fn stylesheet(color: &str) -> String {
    [":host{--hf-accent:", color, "}\n", CSS].concat()
}

/// A message bubble: `<li class><span class=who>who</span><p class=body>body</p></li>`, as text.
fn bubble(doc: &Document, class: &str, who: &str, body: &str) -> Element {
    let li = el(doc, "li", class);
    if !who.is_empty() {
        let _ = li.append_child(&text_el(doc, "span", "who", who));
    }
    let _ = li.append_child(&text_el(doc, "p", "body", body));
    li
}

/// The chat window's elements (hidden until the session is up).
#[allow(clippy::too_many_lines)] // one element after the other, in page order
fn build(doc: &Document) -> Els {
    let root = el(doc, "div", "root");
    show(&root, false);

    let panel = el(doc, "section", "panel");
    attrs(&panel, &[("role", "dialog"), ("aria-label", "Chat")]);
    let header = el(doc, "header", "");
    let titles = el(doc, "div", "titles");
    let title = text_el(doc, "h2", "", "Chat with us");
    let sub = el(doc, "p", "sub");
    attrs(&sub, &[("aria-live", "polite")]);
    append(&titles, &[&title, &sub]);
    let min = text_el(doc, "button", "min", "×");
    attrs(&min, &[("type", "button"), ("aria-label", "Minimize chat")]);
    append(&header, &[&titles, &min]);
    let conn = el(doc, "p", "conn");
    attrs(&conn, &[("role", "status")]);

    let log = el(doc, "ol", "log");
    attrs(&log, &[("role", "log"), ("aria-live", "polite"), ("aria-label", "Messages")]);
    let typing = el(doc, "p", "typing");
    attrs(&typing, &[("aria-live", "polite")]);
    let actions = el(doc, "div", "actions");
    let human = text_el(doc, "button", "human", "Talk to a human");
    attrs(&human, &[("type", "button")]);
    append(&actions, &[&human]);
    let error = el(doc, "p", "error");
    attrs(&error, &[("role", "alert")]);
    show(&error, false);
    let composer = el(doc, "form", "composer");
    let input = el(doc, "textarea", "");
    attrs(
        &input,
        &[
            ("aria-label", "Message"),
            ("placeholder", "Write a message…"),
            ("rows", "1"),
            ("maxlength", "4000"),
        ],
    );
    let send_button = text_el(doc, "button", "send", "Send");
    attrs(&send_button, &[("type", "submit")]);
    append(&composer, &[&input, &send_button]);

    let offline = el(doc, "form", "offline");
    attrs(&offline, &[("novalidate", ""), ("aria-label", "Leave a message")]);
    let intro = text_el(
        doc,
        "p",
        "",
        "No one is available right now. Leave a message and we will get back to you by email.",
    );
    let field = |label: &str, tag: &str, attrs_: &[(&str, &str)]| {
        let l = text_el(doc, "label", "", label);
        let input = el(doc, tag, "");
        attrs(&input, attrs_);
        let _ = l.append_child(&input);
        (l, input)
    };
    let (name_l, off_name) =
        field("Name", "input", &[("name", "name"), ("autocomplete", "name"), ("required", "")]);
    let (email_l, off_email) = field(
        "Email",
        "input",
        &[("name", "email"), ("type", "email"), ("autocomplete", "email"), ("required", "")],
    );
    let (msg_l, off_message) =
        field("Message", "textarea", &[("name", "message"), ("required", ""), ("maxlength", "4000")]);
    let off_error = el(doc, "p", "error");
    attrs(&off_error, &[("role", "alert")]);
    show(&off_error, false);
    let off_submit = text_el(doc, "button", "", "Send message");
    attrs(&off_submit, &[("type", "submit")]);
    let back = text_el(doc, "button", "back", "Back to the chat");
    attrs(&back, &[("type", "button")]);
    append(&offline, &[&intro, &name_l, &email_l, &msg_l, &off_error, &off_submit, &back]);

    let sent = el(doc, "div", "sent");
    attrs(&sent, &[("role", "status")]);
    let sent_text = el(doc, "p", "");
    let again = text_el(doc, "button", "", "Send another message");
    attrs(&again, &[("type", "button")]);
    append(&sent, &[&sent_text, &again]);

    append(&panel, &[&header, &conn, &log, &typing, &offline, &sent, &actions, &error, &composer]);

    let launcher = el(doc, "button", "launcher");
    attrs(&launcher, &[("type", "button"), ("aria-label", "Open chat"), ("aria-expanded", "false")]);
    let svg = doc.create_element_ns(Some(SVG_NS), "svg").expect("SVG is supported");
    let icon = doc.create_element_ns(Some(SVG_NS), "path").expect("SVG is supported");
    attrs(&svg, &[("viewBox", "0 0 24 24"), ("aria-hidden", "true")]);
    attrs(&icon, &[("d", ICON_CHAT)]);
    let _ = svg.append_child(&icon);
    let _ = launcher.append_child(&svg);
    let badge = el(doc, "span", "badge");
    attrs(&badge, &[("aria-hidden", "true")]);
    show(&badge, false);
    let _ = launcher.append_child(&badge);
    append(&root, &[&panel, &launcher]);

    Els {
        root,
        launcher,
        icon,
        badge,
        panel,
        title,
        sub,
        conn,
        log,
        typing,
        actions,
        composer,
        input: input.unchecked_into(),
        error,
        offline,
        off_name: off_name.unchecked_into(),
        off_email: off_email.unchecked_into(),
        off_message: off_message.unchecked_into(),
        off_error,
        off_submit,
        back,
        sent,
        sent_text,
    }
}

/// A string at `path` in a JS object.
fn text(v: &JsValue, path: &[&str]) -> Option<String> {
    get(v, path)?.as_string()
}

/// A non-negative integer at `path` in a JS object (a `seq`, a status, a queue position).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn count(v: &JsValue, path: &[&str]) -> Option<u64> {
    get(v, path)?.as_f64().filter(|n| *n >= 0.0).map(|n| n as u64)
}

fn get(v: &JsValue, path: &[&str]) -> Option<JsValue> {
    let mut cur = v.clone();
    for key in path {
        if !cur.is_object() {
            return None;
        }
        cur = Reflect::get(&cur, &JsValue::from_str(key)).ok()?;
    }
    Some(cur)
}
