//! The chat window: a Shadow DOM built once, updated from the [`Model`] on every client event.
//!
//! Borrow discipline: the client may call back synchronously (an event emitted while a call
//! runs), so `Ui` is never borrowed across a client call; handlers take what they need, drop the
//! borrow, then call the client.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use handoff_client::HandoffClient;
use handoff_protocol::api::{is_valid_email, validate_body};
use handoff_protocol::event::ConversationStatus;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CssStyleSheet, Document, Element, Event, ShadowRoot, Storage};

#[allow(clippy::wildcard_imports)] // the element indices
use crate::dom::*;
use crate::model::{decimal, parse_decimal, safe_color, BubbleChange, Line, Model, Outgoing, Screen};

/// `widget.css` without its comments and its layout whitespace (both would ship in the wasm),
/// at compile time.
const CSS: &str = {
    const SRC: &[u8] = include_bytes!("widget.css");
    const BYTES: [u8; minify_css::<0>(SRC).1] = minify_css(SRC).0;
    match std::str::from_utf8(&BYTES) {
        Ok(css) => css,
        Err(_) => panic!("widget.css is UTF-8"),
    }
};

/// `css` without its `/* comments */`, with each run of whitespace cut to one space and dropped
/// next to `{`, `}`, `;`, `,` and `>` and after `:` (where CSS needs none: a space before `:`
/// is kept, it means a descendant in a selector), and the length of that: `N` is that length
/// (with `N` = 0 only the length is computed). The stylesheet has no whitespace in strings but
/// single spaces (`"Segoe UI"`), which stay.
const fn minify_css<const N: usize>(css: &[u8]) -> ([u8; N], usize) {
    const fn tight(c: u8) -> bool {
        matches!(c, b'{' | b'}' | b';' | b',' | b'>')
    }
    let (mut out, mut i, mut o, mut last) = ([0u8; N], 0, 0, b'{');
    while i < css.len() {
        if css[i] == b'/' && i + 1 < css.len() && css[i + 1] == b'*' {
            i += 2;
            while i + 1 < css.len() && !(css[i] == b'*' && css[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if css[i].is_ascii_whitespace() {
            while i < css.len() && css[i].is_ascii_whitespace() {
                i += 1;
            }
            let next = if i < css.len() { css[i] } else { b'}' };
            let comment = next == b'/' && i + 1 < css.len() && css[i + 1] == b'*';
            if comment || tight(last) || last == b':' || tight(next) {
                continue;
            }
            if o < N {
                out[o] = b' ';
            }
            o += 1;
            last = b' ';
            continue;
        }
        if o < N {
            out[o] = css[i];
        }
        last = css[i];
        o += 1;
        i += 1;
    }
    (out, o)
}
const OPEN_KEY: &str = "handoff.open";

struct Ui {
    doc: Document,
    els: Els,
    /// Where the window's catalog texts go (filled again when the language changes).
    texts: Texts,
    /// The visitor's catalog (a JSON object from `widget/i18n/`), or `null`: English.
    strings: JsValue,
    /// The English catalog ([`crate::i18n::EN`], parsed).
    en: JsValue,
    /// `linkParts` of `widget/loader/links.js` (from the loader), or `undefined`: plain text.
    links: JsValue,
    /// The visitor's language tag (`de-DE`; empty: the browser's) for the browser's
    /// `Intl.DateTimeFormat`s: a message's time, a day's date, and a day's key (to compare).
    tag: String,
    fmt: [JsValue; 3],
    /// The day (its key) of the live log's last message: a new day gets a separator first.
    day: JsValue,
    /// The project's `sound` setting.
    sound: bool,
    /// The `AudioContext` for the sound, made on the visitor's first click in the widget
    /// (browsers let a page play sound only after a gesture).
    audio: JsValue,
    /// The page's own title while the widget shows the unseen count in it (`null`: not shown).
    title: RefCell<JsValue>,
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
    /// The one DOM listener (clicks, keys, submits, input, focus changes in the window): `Fn`,
    /// as it runs again inside itself (a `focus()` it makes fires `focusout`).
    on_dom: Option<Closure<dyn Fn(Event)>>,
    on_event: Option<Closure<dyn FnMut(JsValue, JsValue)>>,
    /// Following the project's availability (from the first time the window opens).
    watching: bool,
    /// The launcher the loader drew (its `.root`) and the shadow root holding it, until the
    /// session is up: then the widget's stylesheet and root replace it in one task.
    drawn: Option<(ShadowRoot, Element)>,
    /// The loader's session call, used by the first start (see `HandoffClient::start_prefetched`).
    prefetched: JsValue,
    /// The stars picked in the rating prompt (0: none yet).
    stars: u8,
    /// The visitor's confirmed messages in the live log: their `seq`s and bubbles, in order
    /// (where "Seen" goes).
    mine: Vec<(u64, Element)>,
    /// The one "Seen" line, once shown.
    seen: Option<Element>,
}

// The JS API (`mount`, `Widget`) is documented with `//` comments: wasm-bindgen copies doc
// comments into the glue every page downloads (the loader documents `window.Handoff`).

// What `handoff_widget.mount` returns: `window.Handoff` calls these once the widget is up.
#[allow(missing_docs)]
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

// Builds the widget for `projectKey` on the server at `baseUrl` and starts its session (retried
// quietly while the server is unreachable). The launcher shows once the session is up.
//
// The loader may pass the `<handoff-widget>` host where it already drew the launcher from its
// own session call (`host`, or `null`), and that call's answer (`session`: a promise of `{ok,
// token, text}`, or `null`): the widget builds into that shadow root and swaps its launcher in
// when its session is up, with no frame in between, using that answer instead of a second call.
// `links` is `linkParts` of the shared link rule (`widget/loader/links.js`); without it messages
// show as plain text.
//
// # Errors
// When the page has no `document.body` or the client options are invalid.
#[allow(missing_docs, clippy::missing_errors_doc)]
#[wasm_bindgen(skip_jsdoc)]
pub fn mount(
    base_url: String,
    project_key: String,
    host: Option<Element>,
    session: JsValue,
    links: JsValue,
) -> Result<Widget, JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let doc = window.document().ok_or("no document")?;
    let body: Element =
        get(&doc, &["body"]).filter(JsValue::is_object).ok_or("no document.body")?.unchecked_into();
    let options = Object::new();
    Reflect::set(&options, &"baseUrl".into(), &base_url.into())?;
    Reflect::set(&options, &"projectKey".into(), &project_key.into())?;
    let client = Rc::new(HandoffClient::new(&options)?);

    let sheet = CssStyleSheet::new()?;
    call(&sheet, "replaceSync", &[&stylesheet("#2563eb").into()]).ok_or("replaceSync")?;
    let (els, texts) = build(&doc)?;
    // The loader's launcher stays (with its stylesheet) until the session is up; the widget's
    // root waits hidden beside it (the loader's sheet hides `[hidden]` too).
    let theirs = host.filter(|h| flag(h, &["isConnected"]) == Some(true)).and_then(|h| {
        let s = get(&h, &["shadowRoot"]).filter(JsValue::is_object)?.unchecked_into::<ShadowRoot>();
        let r = find(&s, ".root")?;
        Some((s, r))
    });
    let drawn = if let Some((shadow, theirs)) = theirs {
        add(&shadow, &els[ROOT]);
        Some((shadow, theirs))
    } else {
        let host = el(&doc, "handoff-widget", "");
        let init = Object::new();
        set_prop(&init, "mode", &"open".into());
        let shadow: ShadowRoot =
            call(&host, "attachShadow", &[&init]).ok_or("attachShadow")?.unchecked_into();
        set_prop(&shadow, "adoptedStyleSheets", &Array::of1(&sheet));
        add(&shadow, &els[ROOT]);
        add(&body, &host);
        None
    };

    let mut ready_resolve = None;
    let ready = Promise::new(&mut |resolve, _| ready_resolve = Some(resolve));
    let ui = Rc::new(RefCell::new(Ui {
        doc,
        els,
        texts,
        strings: JsValue::NULL,
        en: js_sys::JSON::parse(crate::i18n::EN)?,
        links,
        tag: String::new(),
        fmt: [JsValue::NULL, JsValue::NULL, JsValue::NULL],
        day: JsValue::NULL,
        sound: true,
        audio: JsValue::NULL,
        title: RefCell::new(JsValue::NULL),
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
        session: get(&window, &["sessionStorage"]).filter(JsValue::is_object).map(JsCast::unchecked_into),
        on_dom: None,
        on_event: None,
        watching: false,
        drawn,
        prefetched: session,
        stars: 0,
        mine: Vec::new(),
        seen: None,
    }));
    let w = Widget { client, ui };
    w.ui.borrow_mut().localize();
    w.wire();
    let started = w.clone();
    spawn(Box::pin(async move { started.start().await }));
    Ok(w)
}

#[allow(missing_docs)]
#[wasm_bindgen]
impl Widget {
    // Opens the chat window.
    #[wasm_bindgen(skip_jsdoc)]
    pub fn open(&self) {
        let mut ui = self.ui.borrow_mut();
        if ui.model.screen == Screen::Loading {
            ui.model.open = true; // opens once the session is up
            return;
        }
        let last = ui.last_seq;
        let seen = ui.model.opened(last);
        ui.model.looked();
        ui.remember_seen(seen);
        if let Some(s) = &ui.session {
            let _ = s.set_item(OPEN_KEY, "1");
        }
        ui.render();
        let field = ui.els[if ui.model.screen == Screen::OfflineForm { OFF_NAME } else { INPUT }].clone();
        // From the first opening on, the chat and the offline form follow the project's
        // availability live (the client may emit at once: no borrow held).
        let watch = !std::mem::replace(&mut ui.watching, true);
        drop(ui);
        // Focus events run the widget's listener at once: no borrow held either.
        focus(&field);
        if watch {
            if let Err(e) = self.client.watch_availability() {
                self.ui.borrow_mut().watching = false;
                web_sys::console::warn_2(&"Handoff: cannot follow availability".into(), &e);
            }
        }
    }

    // Minimizes the chat window to the launcher.
    #[wasm_bindgen(skip_jsdoc)]
    pub fn close(&self) {
        let mut ui = self.ui.borrow_mut();
        ui.model.open = false;
        if let Some(s) = &ui.session {
            let _ = s.remove_item(OPEN_KEY);
        }
        ui.render();
    }

    // Binds a signed-in user of the site: `{user_id, name?, email?, hmac}` (once the session is
    // up: a call made earlier waits for it). When this browser's visitor was identified as
    // another user, the client starts a new visitor (`visitor:changed`) and the window drops
    // everything of the previous user's: log, open conversation, history, unread badge.
    #[wasm_bindgen(skip_jsdoc)]
    pub fn identify(&self, user: JsValue) -> Promise {
        // Known before the session starts (a call queued by the loader): a stored visitor
        // identified as another user is not even resumed.
        let user_id = Reflect::get(&user, &"user_id".into()).ok().and_then(|v| v.as_string());
        self.client.expect_user(user_id);
        let ready = self.ui.borrow().ready.clone();
        let w = self.clone();
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        if let Some((resolve, reject)) = settle {
            spawn(Box::pin(async move {
                let r = match JsFuture::from(ready).await {
                    Ok(_) => JsFuture::from(w.client.identify(&user)).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(r) => {
                        // A verified user's conversations from other devices join the history.
                        w.load_history().await;
                        let _ = resolve.call1(&JsValue::UNDEFINED, &r);
                    }
                    Err(e) => {
                        let _ = reject.call1(&JsValue::UNDEFINED, &e);
                    }
                }
            }));
        }
        promise
    }

    // Shows the window in language `lang` from its catalog `strings` (a flat object of texts by
    // key; `null`: English), live; the loader picks the language and fetches the catalog.
    #[wasm_bindgen(skip_jsdoc)]
    pub fn locale(&self, lang: &str, strings: JsValue) {
        let mut ui = self.ui.borrow_mut();
        ui.strings = if strings.is_object() { strings } else { JsValue::NULL };
        set(&ui.els[ROOT], "lang", lang);
        lang.clone_into(&mut ui.tag);
        ui.localize();
        ui.render();
    }

    // `fn(payload, name)` for the client's events (`"*"`: all); returns an unsubscribe function.
    #[wasm_bindgen(skip_jsdoc)]
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
        let Some(list) =
            get(&list, &["conversations"]).filter(Array::is_array).map(JsCast::unchecked_into::<Array>)
        else {
            return;
        };
        let ui = self.ui.borrow();
        while let Some(old) = find(&ui.els[LOG], ".old") {
            remove(&old);
        }
        let first = get(&ui.els[LOG], &["firstChild"]).unwrap_or(JsValue::NULL);
        let mut items: Vec<Element> = Vec::new();
        let mut day = JsValue::NULL;
        for h in list.iter().rev() {
            let id = text(&h, &["conversation", "id"]);
            if id.is_none() || id == ui.conversation {
                continue;
            }
            let when = get(&h, &["conversation", "created_at"]).and_then(|v| v.as_f64()).unwrap_or(0.0);
            let date = js_sys::Date::new(&JsValue::from_f64(when));
            let date = call(&date, "toDateString", &[]).and_then(|d| d.as_string()).unwrap_or_default();
            items.push(text_el(&ui.doc, "li", "sys old", &ui.tf("earlier", &[("{date}", &date)])));
            let events = get(&h, &["events"])
                .filter(Array::is_array)
                .map(JsCast::unchecked_into::<Array>)
                .unwrap_or_default();
            for e in events.iter() {
                if text(&e, &["event"]).as_deref() != Some("message:new") {
                    continue;
                }
                let m = get(&e, &["payload", "message"]).unwrap_or(JsValue::NULL);
                let body = text(&m, &["body"]).unwrap_or_default();
                let kind = text(&m, &["author", "kind"]).unwrap_or_default();
                let at = created(&m);
                if let Some(line) = ui.day_line(&mut day, at) {
                    set(&line, "class", "day old");
                    items.push(line);
                }
                let b = match kind.as_str() {
                    "customer" => ui.bubble("msg me old", "", &body, at),
                    "bot" => ui.bubble("msg bot old", &ui.t("assistant"), &body, at),
                    _ => {
                        let who = text(&m, &["author", "name"]).unwrap_or_else(|| ui.t("agent"));
                        ui.bubble("msg agent old", &who, &body, at)
                    }
                };
                items.push(b);
            }
        }
        for item in &items {
            call(&ui.els[LOG], "insertBefore", &[item, &first]);
        }
        if !items.is_empty() {
            ui.scroll();
        }
    }

    fn started(&self, session: &JsValue) {
        let mut refocus = None;
        let reopen = {
            let mut ui = self.ui.borrow_mut();
            let theme = |k: &str| text(session, &["config", "theme", k]).unwrap_or_default();
            let color = theme("color");
            call(&ui.sheet, "replaceSync", &[&stylesheet(safe_color(&color)).into()]);
            ui.position_left = theme("position") == "left";
            let title = theme("title");
            set_text(&ui.els[TITLE], Some(&title));
            set(&ui.els[PANEL], "aria-label", &title);
            let greeting = theme("greeting");
            if !greeting.is_empty() {
                let bubble = ui.bubble("msg greeting", &title, &greeting, 0.0);
                add(&ui.els[LOG], &bubble);
            }
            if let Some(id) = text(session, &["conversation", "id"]) {
                ui.model.seen_seq = ui.seen_of(&id);
                ui.conversation = Some(id);
            }
            ui.session_started(session);
            let asked = std::mem::take(&mut ui.model.open); // `Handoff.open()` before the session
            ui.render();
            show(&ui.els[ROOT], true);
            if let Some((shadow, theirs)) = ui.drawn.take() {
                // Same task as showing ours: the page never paints both or neither.
                set_prop(&shadow, "adoptedStyleSheets", &Array::of1(&ui.sheet));
                let focused = get(&shadow, &["activeElement"])
                    .filter(JsValue::is_object)
                    .is_some_and(|a| contains(&theirs, &a));
                remove(&theirs);
                if focused {
                    refocus = Some(ui.els[LAUNCHER].clone());
                }
            }
            if let Some(resolve) = ui.ready_resolve.take() {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
            asked || ui.session.as_ref().and_then(|s| s.get_item(OPEN_KEY).ok().flatten()).is_some()
        };
        // Focus events run the widget's listener at once: no borrow held.
        if let Some(launcher) = refocus {
            focus(&launcher);
        }
        if reopen {
            self.open();
        }
        let w = self.clone();
        spawn(Box::pin(async move { w.load_history().await }));
    }

    /// Listens to the client and the DOM.
    fn wire(&self) {
        let w = self.clone();
        let on_event = Closure::<dyn FnMut(JsValue, JsValue)>::new(move |payload: JsValue, name: JsValue| {
            w.event(&name.as_string().unwrap_or_default(), &payload);
        });
        let _ = self.client.on("*".to_owned(), on_event.as_ref().unchecked_ref::<Function>().clone());
        let w = self.clone();
        let on_dom = Closure::<dyn Fn(Event)>::new(move |ev: Event| w.dom_event(&ev));
        let mut ui = self.ui.borrow_mut();
        // Every event the window handles bubbles up to its root (`focusout` is `blur` that does).
        for kind in ["click", "keydown", "submit", "input", "focusout"] {
            let _ = ui.els[ROOT].add_event_listener_with_callback(kind, on_dom.as_ref().unchecked_ref());
        }
        let _ = ui.doc.add_event_listener_with_callback("visibilitychange", on_dom.as_ref().unchecked_ref());
        ui.model.hidden = flag(&ui.doc, &["hidden"]) == Some(true);
        ui.on_dom = Some(on_dom);
        ui.on_event = Some(on_event);
    }

    /// One DOM event in the window, by kind and by which of its elements it concerns.
    /// The tab shown or hidden (`visibilitychange`: `true`, handled), or a click (the gesture
    /// that lets the widget make its audio).
    fn page_event(&self, kind: &str) -> bool {
        let Ok(mut ui) = self.ui.try_borrow_mut() else { return false };
        if kind == "visibilitychange" {
            ui.model.hidden = flag(&ui.doc, &["hidden"]) == Some(true);
            ui.model.looked();
            ui.render();
            return true;
        }
        if kind == "click" && ui.sound && !ui.audio.is_object() {
            let ctor = get(&js_sys::global(), &["AudioContext"]).unwrap_or_default();
            if let Ok(a) = Reflect::construct(ctor.unchecked_ref::<Function>(), &Array::new()) {
                ui.audio = a;
            }
        }
        false
    }

    fn dom_event(&self, ev: &Event) {
        let kind = text(ev, &["type"]).unwrap_or_default();
        if self.page_event(&kind) {
            return;
        }
        let Some(target) = get(ev, &["target"]).and_then(|t| t.dyn_into::<Element>().ok()) else { return };
        let (which, in_panel) = {
            // Busy: an event the widget's own work fired at once (the `focusout` of a focused
            // button it removes), none it handles.
            let Ok(ui) = self.ui.try_borrow() else { return };
            // A click counts for the button it is in (the launcher's icon is an SVG in it).
            let target = if kind == "click" { closest(&target, "button") } else { Some(target) };
            let Some(target) = target else { return };
            if kind == "click" && attr(&target, "data-act").is_some() {
                drop(ui);
                return self.bubble_action(&target);
            }
            let which = ui.els.iter().position(|e| *e == target).unwrap_or(KEPT);
            (which, contains(&ui.els[PANEL], &target))
        };
        match (kind.as_str(), which) {
            ("click", LAUNCHER) => {
                let open = self.ui.borrow().model.open;
                if open {
                    self.close();
                } else {
                    self.open();
                }
            }
            ("click", MIN) => {
                self.close();
                let launcher = self.ui.borrow().els[LAUNCHER].clone();
                focus(&launcher);
            }
            ("click", STAR1..=STAR5) => {
                let mut ui = self.ui.borrow_mut();
                ui.stars = u8::try_from(which - STAR1 + 1).unwrap_or(0);
                ui.render();
            }
            ("click", HUMAN | MAIL_SEND) | ("submit", RATE) => {
                prevent(ev);
                let w = self.clone();
                spawn(Box::pin(async move { w.act(which).await }));
            }
            ("click", BACK | AGAIN) => {
                let mut ui = self.ui.borrow_mut();
                ui.model.screen = if which == BACK { Screen::Chat } else { Screen::OfflineForm };
                ui.render();
            }
            ("keydown", _) => {
                let key = text(ev, &["key"]);
                if key.as_deref() == Some("Escape") && in_panel {
                    self.close();
                    let launcher = self.ui.borrow().els[LAUNCHER].clone();
                    focus(&launcher);
                } else if key.as_deref() == Some("Tab") && in_panel {
                    // Focus stays in the open window: past its last control to its first, and
                    // back from its first to its last.
                    let panel = self.ui.borrow().els[PANEL].clone();
                    let all = call(&panel, "querySelectorAll", &[&"button,textarea,input,a[href]".into()])
                        .map(|l| Array::from(&l))
                        .unwrap_or_default();
                    let shown: Vec<JsValue> = all
                        .iter()
                        .filter(|e| call(e, "checkVisibility", &[]).and_then(|v| v.as_bool()) == Some(true))
                        .collect();
                    let back = flag(ev, &["shiftKey"]) == Some(true);
                    let edge = if back { shown.first() } else { shown.last() };
                    let to = if back { shown.last() } else { shown.first() };
                    if let (Some(edge), Some(to)) = (edge, to) {
                        if get(ev, &["target"]).as_ref() == Some(edge) {
                            prevent(ev);
                            focus(to.unchecked_ref());
                        }
                    }
                } else if which == INPUT
                    && key.as_deref() == Some("Enter")
                    && flag(ev, &["shiftKey"]) == Some(false)
                    && flag(ev, &["isComposing"]) == Some(false)
                {
                    prevent(ev);
                    self.submit();
                }
            }
            ("submit", COMPOSER) => {
                prevent(ev);
                self.submit();
            }
            ("submit", OFFLINE) => {
                prevent(ev);
                let w = self.clone();
                spawn(Box::pin(async move { w.submit_offline().await }));
            }
            ("input", INPUT) => {
                let empty = value(&self.ui.borrow().els[INPUT]).is_empty();
                if empty {
                    self.client.stop_typing();
                } else {
                    self.client.typing();
                }
            }
            ("focusout", INPUT) => self.client.stop_typing(),
            _ => {}
        }
    }

    /// One client event.
    fn event(&self, name: &str, p: &JsValue) {
        let mut ui = self.ui.borrow_mut();
        // Persisted events come in `seq` order; an older one is a replay already rendered.
        // A read receipt (its `seq` is the read marker, not its own): "Seen" moves, nothing else.
        if name == "message:read" {
            if ui.model.read(count(p, &["seq"]).unwrap_or(0)) {
                ui.place_seen();
            }
            return;
        }
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
                            remove(&b);
                        }
                    }
                }
            }
            "conversation:status_changed" => {
                if let Some(status) = text(p, &["status"]).and_then(|s| ConversationStatus::parse(&s)) {
                    ui.model.status_changed(status);
                    let line = match status {
                        ConversationStatus::Queued => Some("waiting_human"),
                        ConversationStatus::Resolved => Some("resolved"),
                        _ => None,
                    };
                    if let Some(line) = line {
                        ui.system(&ui.t(line));
                    }
                }
            }
            "conversation:assigned" => {
                if let Some(name) = text(p, &["agent", "name"]) {
                    ui.system(&ui.tf("joined", &[("{name}", &name)]));
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
                    typing.then(|| text(p, &["actor", "name"]).unwrap_or_else(|| ui.t("someone")));
            }
            "conversation:rated" => ui.model.rated = true,
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
            let body = value(&ui.els[INPUT]).trim().to_owned();
            if body.is_empty() {
                return;
            }
            if let Err(m) = validate_body(&body) {
                ui.error(Some(m));
                return;
            }
            ui.error(None);
            set_prop(&ui.els[INPUT], "value", &JsValue::from_str(""));
            body
        };
        self.client.stop_typing();
        let w = self.clone();
        spawn(Box::pin(async move {
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
                    if value(&ui.els[INPUT]).is_empty() {
                        set_prop(&ui.els[INPUT], "value", &JsValue::from_str(&body));
                    }
                    let why = text(&e, &["message"]).unwrap_or_default();
                    ui.error(Some(&ui.tf("not_sent_back", &[("{why}", &why)])));
                }
            }
        }));
    }

    /// A click in the log: a failed bubble's "Retry" or "Discard".
    fn bubble_action(&self, button: &Element) {
        let Some(act) = attr(button, "data-act") else { return };
        let Some(cid) = closest(button, "li").and_then(|li| attr(&li, "data-cid")) else {
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

    /// The chat's actions, in one task (each `async fn` is code in the wasm), by the button:
    /// "Talk to a human" ([`HUMAN`]: starts a conversation if there is none, then asks for the
    /// handoff); in a resolved chat the rating ([`RATE`]: stars and comment, then "Thanks for
    /// your feedback") and "Email transcript" ([`MAIL_SEND`]: to the address typed, else the one
    /// the server knows; the email field shows when it knows none).
    async fn act(&self, which: usize) {
        let (stars, typed) = {
            let mut ui = self.ui.borrow_mut();
            ui.error(None);
            set_text(&ui.els[MAIL_NOTE], None);
            if which == HUMAN && !ui.model.human_requested() {
                ui.render(); // nobody to hand over to: the offline form
                return;
            }
            (ui.stars, value(&ui.els[if which == MAIL_SEND { MAIL_TO } else { RATE_TEXT }]))
        };
        let promise = match which {
            HUMAN => {
                if let Err(e) = self.conversation(None).await {
                    return self.failed(&e);
                }
                self.client.request_handoff()
            }
            MAIL_SEND => self.client.email_transcript(typed.into()),
            _ => self.client.rate(stars.into(), typed.into()),
        };
        // One request at a time: no second rating or mail from a double click.
        let button = self.ui.borrow().els[if which == RATE { RATE_SEND } else { which }].clone();
        set_prop(&button, "disabled", &JsValue::TRUE);
        let r = JsFuture::from(promise).await;
        set_prop(&button, "disabled", &JsValue::FALSE);
        let mut ui = self.ui.borrow_mut();
        let code = r.as_ref().err().and_then(|e| text(e, &["code"]));
        match (which, &r, code.as_deref()) {
            (HUMAN, Ok(c), _) => {
                if let Some(status) = text(c, &["status"]).and_then(|s| ConversationStatus::parse(&s)) {
                    if ui.model.status != Some(status) {
                        ui.model.status_changed(status);
                    }
                }
                if let Some(name) = text(c, &["agent", "name"]) {
                    ui.model.agent = Some(name);
                }
            }
            (MAIL_SEND, Ok(sent), _) => {
                let to = text(sent, &["email"]).unwrap_or_default();
                set_text(&ui.els[MAIL_NOTE], Some(&ui.tf("transcript_sent", &[("{email}", &to)])));
            }
            (MAIL_SEND, _, Some("validation_failed")) => {
                // No address known, or a bad one typed: the field asks for one.
                show(&ui.els[MAIL_TO], true);
                focus(&ui.els[MAIL_TO]);
                set_text(&ui.els[MAIL_NOTE], Some(&ui.t("need_email")));
            }
            (RATE, Ok(_), _) => {
                ui.model.rated = true;
                let thanks = ui.t("rating_thanks");
                ui.system(&thanks);
            }
            (RATE, _, Some("already_rated")) => ui.model.rated = true,
            (_, Err(e), _) => ui.error(Some(&ui.failure(e))),
            _ => {}
        }
        ui.render();
    }

    fn failed(&self, e: &JsValue) {
        let ui = self.ui.borrow();
        ui.error(Some(&ui.failure(e)));
    }

    /// The offline form: checked here first, sent, and kept as typed when the send fails.
    async fn submit_offline(&self) {
        let (name, email, message) = {
            let ui = self.ui.borrow();
            let e = &ui.els;
            let name = value(&e[OFF_NAME]).trim().to_owned();
            let email = value(&e[OFF_EMAIL]).trim().to_owned();
            let message = value(&e[OFF_MESSAGE]).trim().to_owned();
            let checks: [(&Element, bool, &str); 3] = [
                (&e[OFF_NAME], !name.is_empty(), "need_name"),
                (&e[OFF_EMAIL], is_valid_email(&email), "need_email"),
                (&e[OFF_MESSAGE], validate_body(&message).is_ok(), "need_message"),
            ];
            let mut first_error = None;
            for (field, ok, why) in checks {
                set(field, "aria-invalid", if ok { "false" } else { "true" });
                if !ok && first_error.is_none() {
                    first_error = Some((field.clone(), why));
                }
            }
            if let Some((field, why)) = first_error {
                set_text(&e[OFF_ERROR], Some(&ui.t(why)));
                show(&e[OFF_ERROR], true);
                drop(ui); // focus events run the widget's listener at once
                focus(&field);
                return;
            }
            show(&e[OFF_ERROR], false);
            set(&e[OFF_SUBMIT], "disabled", "");
            set_text(&e[OFF_SUBMIT], Some(&ui.t("sending")));
            (name, email, message)
        };
        let form = Object::new();
        for (k, v) in [("name", &name), ("email", &email), ("message", &message)] {
            let _ = Reflect::set(&form, &k.into(), &JsValue::from_str(v));
        }
        let r = JsFuture::from(self.client.send_offline_message(&form)).await;
        let mut ui = self.ui.borrow_mut();
        unset(&ui.els[OFF_SUBMIT], "disabled");
        set_text(&ui.els[OFF_SUBMIT], Some(&ui.t("send_message")));
        match r {
            Ok(_) => {
                let thanks = ui.tf("thanks", &[("{name}", &name), ("{email}", &email)]);
                set_text(&ui.els[SENT_TEXT], Some(&thanks));
                set_prop(&ui.els[OFF_MESSAGE], "value", &JsValue::from_str(""));
                ui.model.screen = Screen::OfflineSent;
                ui.render();
            }
            Err(e) => {
                let why = text(&e, &["message"]).unwrap_or_else(|| ui.t("network"));
                let msg = ui.tf("offline_failed", &[("{why}", &why)]);
                set_text(&ui.els[OFF_ERROR], Some(&msg));
                show(&ui.els[OFF_ERROR], true);
            }
        }
    }
}

impl Ui {
    /// The text of catalog `key` in the visitor's language, else in English.
    #[inline(never)]
    fn t(&self, key: &str) -> String {
        text(&self.strings, &[key]).or_else(|| text(&self.en, &[key])).unwrap_or_default()
    }

    /// "Something went wrong (why). Please try again.", in the visitor's language.
    fn failure(&self, e: &JsValue) -> String {
        let why = text(e, &["message"]).unwrap_or_else(|| self.t("network"));
        self.tf("wrong", &[("{why}", &why)])
    }

    /// [`Ui::t`] with its placeholders (`{name}`) filled by the browser (no string searching in
    /// the wasm).
    #[inline(never)]
    fn tf(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = js_sys::JsString::from(self.t(key));
        for (k, v) in args {
            // Split and join: a `$&` in a name stays as typed (`replaceAll` would expand it).
            s = s.split(k).join(v);
        }
        s.into()
    }

    /// A message bubble: `<li class><span class=who>who</span><p class=body>body</p></li>`, as
    /// text and safe links: the parts the shared link rule (`widget/loader/links.js`, the
    /// console's too) finds become `<a href target=_blank rel="noopener noreferrer nofollow">`
    /// with the part as their text. Never HTML.
    fn bubble(&self, class: &str, who: &str, body: &str, at: f64) -> Element {
        let doc = &self.doc;
        let li = el(doc, "li", class);
        if !who.is_empty() {
            add(&li, &text_el(doc, "span", "who", who));
        }
        let p = el(doc, "p", "body");
        let parts = self.links.dyn_ref::<Function>().and_then(|f| f.call1(&JsValue::NULL, &body.into()).ok());
        match parts.filter(Array::is_array).map(JsCast::unchecked_into::<Array>) {
            Some(parts) => {
                for part in parts.iter() {
                    let t = text(&part, &["text"]).unwrap_or_default();
                    match text(&part, &["href"]) {
                        Some(href) => {
                            let a = text_el(doc, "a", "", &t);
                            set(&a, "href", &href);
                            set(&a, "target", "_blank");
                            set(&a, "rel", "noopener noreferrer nofollow");
                            add(&p, &a);
                        }
                        None => {
                            call(&p, "append", &[&t.into()]);
                        }
                    }
                }
            }
            None => set_text(&p, Some(body)),
        }
        add(&li, &p);
        if at > 0.0 {
            add(&li, &text_el(doc, "span", "at", &self.format(0, at)));
        }
        li
    }

    /// `ms` (since the epoch) by formatter `i` of [`Ui::fmt`], in the visitor's time zone.
    fn format(&self, i: usize, ms: f64) -> String {
        call(&self.fmt[i], "format", &[&ms.into()]).and_then(|s| s.as_string()).unwrap_or_default()
    }

    /// The separator to put before a message of time `ms` when it starts another day than
    /// `last` (that day's key; updated): "Today", "Yesterday" or the date.
    fn day_line(&self, last: &mut JsValue, ms: f64) -> Option<Element> {
        let key = JsValue::from_str(&self.format(2, ms));
        if *last == key {
            return None;
        }
        *last = key.clone();
        let now = js_sys::Date::now();
        let label = if key == JsValue::from_str(&self.format(2, now)) {
            self.t("today")
        } else if key == JsValue::from_str(&self.format(2, now - 86_400_000.0)) {
            self.t("yesterday")
        } else {
            self.format(1, ms)
        };
        Some(text_el(&self.doc, "li", "day", &label))
    }

    /// Appends a live message's bubble, after a day separator when it starts a day.
    fn append(&mut self, bubble: &Element, ms: f64) {
        let mut day = std::mem::take(&mut self.day);
        if let Some(line) = self.day_line(&mut day, ms) {
            add(&self.els[LOG], &line);
        }
        self.day = day;
        add(&self.els[LOG], bubble);
    }

    /// Fills the window's catalog texts and its direction (`_dir`: `rtl` mirrors the layout).
    fn localize(&mut self) {
        let locales = if self.tag.is_empty() { JsValue::UNDEFINED } else { JsValue::from_str(&self.tag) };
        let intl = get(&js_sys::global(), &["Intl", "DateTimeFormat"]).unwrap_or_default();
        for (i, (k, v)) in
            [("timeStyle", "short"), ("dateStyle", "medium"), ("dateStyle", "short")].into_iter().enumerate()
        {
            let opts = Object::new();
            set_prop(&opts, k, &v.into());
            if let Ok(f) = Reflect::construct(intl.unchecked_ref::<Function>(), &Array::of2(&locales, &opts))
            {
                self.fmt[i] = f;
            }
        }
        for (e, name, key) in &self.texts {
            let t = self.t(key);
            if name.is_empty() {
                set_text(e, Some(&t));
            } else {
                set(e, name, &t);
            }
        }
        set(&self.els[ROOT], "dir", &self.t("_dir"));
    }

    /// Another user signed in on this browser and the client started a new visitor: nothing of
    /// the previous user's stays on screen (log but the greeting, draft, open conversation,
    /// earlier transcripts, unread badge); the window stays as open as it was.
    fn new_visitor(&mut self, session: &JsValue) {
        while let Some(old) = find(&self.els[LOG], ":scope > :not(.greeting)") {
            remove(&old);
        }
        set_prop(&self.els[INPUT], "value", &JsValue::from_str(""));
        self.error(None);
        self.shown.clear();
        self.outgoing.clear();
        self.mine.clear();
        self.stars = 0;
        self.last_seq = 0;
        self.conversation = None;
        self.starting = None;
        let open = self.model.open;
        let connection = std::mem::take(&mut self.model.connection);
        self.model = Model { open, connection, ..Model::default() };
        self.session_started(session);
        self.render();
    }

    /// The model from a session: its conversation to continue (status, agent, rating, read
    /// receipts) and the project's settings.
    fn session_started(&mut self, session: &JsValue) {
        let conv = get(session, &["conversation"]).unwrap_or(JsValue::NULL);
        let status = text(&conv, &["status"]).and_then(|s| ConversationStatus::parse(&s));
        let flag = |k: &str| get(session, &["config", k]).and_then(|v| v.as_bool()).unwrap_or(false);
        let m = &mut self.model;
        m.started(status, text(&conv, &["agent", "name"]), flag("show_offline_form"), flag("bot"));
        m.email = flag("email");
        m.rated = count(&conv, &["rating", "rating"]).is_some();
        m.read(count(&conv, &["agent_read_seq"]).unwrap_or(0));
        self.sound = get(session, &["config", "theme", "sound"]).and_then(|v| v.as_bool()) != Some(false);
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
        let at = created(m);
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
                set(&el, "class", class);
                unset(&el, "data-cid");
                if let Some(fail) = find(&el, ".fail") {
                    remove(&fail);
                }
                // Keep the log in server order: the confirmed message goes to the end.
                el
            } else {
                self.bubble(class, "", &body, at)
            }
        } else {
            let who = text(m, &["author", "name"])
                .unwrap_or_else(|| self.t(if kind == "bot" { "assistant" } else { "agent" }));
            self.model.typing = None;
            if self.model.attention(seq, js_sys::Date::now(), self.sound) {
                self.chime();
            }
            self.bubble(if kind == "bot" { "msg bot" } else { "msg agent" }, &who, &body, at)
        };
        self.append(&bubble, at);
        if mine {
            self.mine.push((seq, bubble.clone()));
            self.place_seen();
        }
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
                let now = js_sys::Date::now();
                let b = self.bubble("msg me sending", "", body, now);
                set(&b, "data-cid", cid);
                self.append(&b, now);
                self.outgoing.push((cid.to_owned(), b.clone()));
                self.scroll();
                b
            }
            BubbleChange::Update => match self.outgoing.iter().find(|(c, _)| c == cid) {
                Some((_, b)) => b.clone(),
                None => return,
            },
        };
        if let Some(fail) = find(&li, ".fail") {
            remove(&fail);
        }
        let failed = self.model.outgoing.iter().any(|(id, s)| id == cid && *s == Outgoing::Failed);
        if !failed {
            set(&li, "class", "msg me sending");
            return;
        }
        set(&li, "class", "msg me failed");
        if can_retry {
            let fail = el(&self.doc, "div", "fail");
            let note = text_el(&self.doc, "span", "", &self.t("not_sent"));
            let button = |text: &str, act: &str, label: &str| {
                let b = text_el(&self.doc, "button", "", &self.t(text));
                set(&b, "type", "button");
                set(&b, "data-act", act);
                set(&b, "aria-label", &self.t(label));
                b
            };
            let retry = button("retry", "retry", "retry_label");
            let discard = button("discard", "discard", "discard_label");
            append(&fail, &[&note, &retry, &discard]);
            add(&li, &fail);
        }
    }

    /// The bubble of an own message until the server confirmed it, taken out.
    fn take_outgoing(&mut self, cid: &str) -> Option<Element> {
        let k = self.outgoing.iter().position(|(c, _)| c == cid)?;
        Some(self.outgoing.swap_remove(k).1)
    }

    /// Puts the one "Seen" line under the visitor's last message an agent has read.
    fn place_seen(&mut self) {
        if let Some((_, li)) = self.mine.iter().rev().find(|(seq, _)| self.model.is_read(*seq)) {
            if self.seen.is_none() {
                self.seen = Some(text_el(&self.doc, "span", "seen", &self.t("seen")));
            }
            if let Some(seen) = &self.seen {
                add(li, seen);
            }
        }
    }

    fn system(&self, line: &str) {
        let li = text_el(&self.doc, "li", "sys", line);
        add(&self.els[LOG], &li);
        self.scroll();
    }

    fn scroll(&self) {
        let log = &self.els[LOG];
        set_prop(log, "scrollTop", &get(log, &["scrollHeight"]).unwrap_or_default());
    }

    fn error(&self, message: Option<&str>) {
        set_text(&self.els[ERROR], message);
        show(&self.els[ERROR], message.is_some());
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

    /// A short two-tone chime (Web Audio, no file), when the visitor's click made the audio.
    fn chime(&self) {
        let ctx = &self.audio;
        let (Some(osc), Some(gain)) = (call(ctx, "createOscillator", &[]), call(ctx, "createGain", &[]))
        else {
            return;
        };
        call(ctx, "resume", &[]);
        let t = get(ctx, &["currentTime"]).and_then(|v| v.as_f64()).unwrap_or(0.0);
        let f = get(&osc, &["frequency"]).unwrap_or_default();
        call(&f, "setValueAtTime", &[&880.0.into(), &t.into()]);
        call(&f, "setValueAtTime", &[&1320.0.into(), &(t + 0.09).into()]);
        let g = get(&gain, &["gain"]).unwrap_or_default();
        call(&g, "setValueAtTime", &[&0.08.into(), &t.into()]);
        call(&g, "exponentialRampToValueAtTime", &[&0.001.into(), &(t + 0.3).into()]);
        call(&osc, "connect", &[&gain]);
        call(&gain, "connect", &[&get(ctx, &["destination"]).unwrap_or_default()]);
        call(&osc, "start", &[&t.into()]);
        call(&osc, "stop", &[&(t + 0.3).into()]);
    }

    /// The page title: `(2) Title` while messages are unseen, the page's own title (exactly as
    /// it was) once they are seen.
    fn retitle(&self) {
        let mut saved = self.title.borrow_mut();
        if self.model.unseen > 0 {
            if saved.is_null() {
                *saved = get(&self.doc, &["title"]).unwrap_or_default();
            }
            let own = saved.as_string().unwrap_or_default();
            let n = decimal(self.model.unseen.into());
            set_prop(&self.doc, "title", &["(", n.as_str(), ") ", own.as_str()].concat().into());
        } else if !saved.is_null() {
            set_prop(&self.doc, "title", &std::mem::replace(&mut *saved, JsValue::NULL));
        }
    }

    /// Puts the model on the page.
    fn render(&self) {
        self.retitle();
        let m = &self.model;
        let e = &self.els;
        let mut class = String::from("root");
        if self.position_left {
            class.push_str(" left");
        }
        if m.open {
            class.push_str(" open");
        }
        set(&e[ROOT], "class", &class);
        show(&e[PANEL], m.open);
        let badge = m.badge();
        set_text(&e[BADGE], Some(&badge));
        show(&e[BADGE], !badge.is_empty());
        let label = match (m.open, badge.as_str()) {
            (true, _) => self.t("minimize"),
            (false, "") => self.t("open"),
            (false, n) => self.tf("open_unread", &[("{n}", n)]),
        };
        set(&e[LAUNCHER], "aria-label", &label);
        set(&e[LAUNCHER], "aria-expanded", if m.open { "true" } else { "false" });
        set(&e[ICON], "d", if m.open { ICON_CLOSE } else { ICON_CHAT });
        let Line { key, args } = m.status_line();
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        set_text(&e[SUB], Some(&self.tf(key, &args)));
        let notice = m.connection_notice().map(|k| self.t(k));
        set_text(&e[CONN], notice.as_deref());
        show(&e[CONN], notice.is_some());
        let chat = m.screen == Screen::Chat;
        show(&e[LOG], chat);
        show(&e[COMPOSER], chat);
        let typing = m.typing.as_ref().filter(|_| chat).map(|n| self.tf("typing", &[("{name}", n)]));
        set_text(&e[TYPING], typing.as_deref());
        show(&e[TYPING], typing.is_some());
        show(&e[ACTIONS], m.offers_human());
        show(&e[RATE], m.asks_rating());
        show(&e[RATE_SEND], self.stars > 0);
        for (k, star) in e[STAR1..=STAR5].iter().enumerate() {
            set(star, "aria-pressed", if k < usize::from(self.stars) { "true" } else { "false" });
        }
        show(&e[MAIL], m.offers_transcript());
        show(&e[OFFLINE], m.screen == Screen::OfflineForm);
        show(&e[BACK], m.can_chat());
        show(&e[SENT], m.screen == Screen::OfflineSent);
    }
}

/// The stylesheet with the project's accent colour (already checked by [`safe_color`]).
fn stylesheet(color: &str) -> String {
    [":host{--hf-accent:", color, "}\n", CSS].concat()
}

/// A message's `created_at` (ms since the epoch), or now.
fn created(m: &JsValue) -> f64 {
    get(m, &["created_at"]).and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now)
}

/// Runs one of the widget's tasks on the page's event loop: one instantiation of `spawn_local`
/// for all of them and the client's (each is code in the wasm).
fn spawn(task: Pin<Box<dyn Future<Output = ()>>>) {
    handoff_client::spawn_task(task);
}
