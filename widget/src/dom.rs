//! A few DOM helpers: the chat window built from a compact description, elements with classes
//! and attributes, text (never HTML), and reading JS objects.
//!
//! Size matters here (every distinct web-sys call is a JS shim in the glue, every generic
//! instantiation code in the wasm): the window is built by one loop from [`TREE`], properties
//! are read and written through `Reflect`, and listeners share one closure.

use js_sys::{Function, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element};

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// The chat window, one element a line, in page order: indentation (one space a level) is the
/// nesting, then `tag|class`, then `|`-separated fields: `name=value` attributes (no `=` in a
/// value), or the text.
/// A line starting with `*` is an element the widget keeps (see the indices below, in order).
/// A text or value starting with `@` is a key of the catalog ([`crate::i18n`]): [`build`] lists
/// where each goes, and the view fills them in the visitor's language (again on a switch).
/// A `d=` attribute (the launcher icon's path) takes [`ICON_CHAT`].
const TREE: &str = "\
*div|root|hidden=
 *section|panel|role=dialog|aria-label=Chat
  header|
   div|titles
    *h2||Chat with us
    *p|sub|aria-live=polite
   *button|min|×|type=button|aria-label=@minimize
  *p|conn|role=status
  *ol|log|aria-live=polite|aria-label=@messages
  *p|typing|aria-live=polite
  *form|offline|novalidate=|aria-label=@leave
   p||@away_form
   label||@name
    *input||name=name|autocomplete=name|required=
   label||@email
    *input||name=email|type=email|autocomplete=email|required=
   label||@message
    *textarea||name=message|required=|maxlength=4000
   *p|error|role=alert|hidden=
   *button||@send_message|type=submit
   *button|back|@back|type=button
  *div|sent|role=status
   *p|
   *button||@again|type=button
  *div|actions
   *button|human|@human|type=button
  *form|rate
   p||@rate_q
   div|stars
    *button||★|type=button|aria-label=@star1
    *button||★|type=button|aria-label=@star2
    *button||★|type=button|aria-label=@star3
    *button||★|type=button|aria-label=@star4
    *button||★|type=button|aria-label=@star5
   *textarea||placeholder=@rate_comment|maxlength=1000
   *button|act|@rate_send|type=submit
  *div|mail
   *input||type=email|placeholder=@your_email|autocomplete=email|hidden=
   *button|act|@transcript|type=button
   *p|note|role=status
  *p|error|role=alert|hidden=
  *form|composer
   *textarea||aria-label=@message|placeholder=@placeholder|rows=1|maxlength=4000
   button|send|@send|type=submit
 *button|launcher|type=button|aria-label=@open|aria-expanded=false
  svg||viewBox=0 0 24 24|aria-hidden=true
   *path||d=
  *span|badge|aria-hidden=true|hidden=";

pub(crate) const ROOT: usize = 0;
pub(crate) const PANEL: usize = 1;
pub(crate) const TITLE: usize = 2;
pub(crate) const SUB: usize = 3;
pub(crate) const MIN: usize = 4;
pub(crate) const CONN: usize = 5;
pub(crate) const LOG: usize = 6;
pub(crate) const TYPING: usize = 7;
pub(crate) const OFFLINE: usize = 8;
pub(crate) const OFF_NAME: usize = 9;
pub(crate) const OFF_EMAIL: usize = 10;
pub(crate) const OFF_MESSAGE: usize = 11;
pub(crate) const OFF_ERROR: usize = 12;
pub(crate) const OFF_SUBMIT: usize = 13;
pub(crate) const BACK: usize = 14;
pub(crate) const SENT: usize = 15;
pub(crate) const SENT_TEXT: usize = 16;
pub(crate) const AGAIN: usize = 17;
pub(crate) const ACTIONS: usize = 18;
pub(crate) const HUMAN: usize = 19;
pub(crate) const RATE: usize = 20;
/// The first of the five star buttons (1 to 5 stars, in order).
pub(crate) const STAR1: usize = 21;
pub(crate) const STAR5: usize = 25;
pub(crate) const RATE_TEXT: usize = 26;
pub(crate) const RATE_SEND: usize = 27;
pub(crate) const MAIL: usize = 28;
pub(crate) const MAIL_TO: usize = 29;
pub(crate) const MAIL_SEND: usize = 30;
pub(crate) const MAIL_NOTE: usize = 31;
pub(crate) const ERROR: usize = 32;
pub(crate) const COMPOSER: usize = 33;
pub(crate) const INPUT: usize = 34;
pub(crate) const LAUNCHER: usize = 35;
pub(crate) const ICON: usize = 36;
pub(crate) const BADGE: usize = 37;
/// How many elements the widget keeps.
pub(crate) const KEPT: usize = 38;

/// The elements the widget updates, by the indices above.
pub(crate) type Els = [Element; KEPT];

const fn stars(s: &str) -> usize {
    let (b, mut i, mut n) = (s.as_bytes(), 0, 0);
    while i < b.len() {
        if b[i] == b'*' {
            n += 1;
        }
        i += 1;
    }
    n
}
const _: () = assert!(stars(TREE) == KEPT, "TREE's kept elements and the indices disagree");

/// The launcher's icon: a speech bubble while minimized, a chevron while open.
pub(crate) const ICON_CHAT: &str =
    "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z";
pub(crate) const ICON_CLOSE: &str =
    "M5.3 8.3a1 1 0 0 1 1.4 0L12 13.6l5.3-5.3a1 1 0 1 1 1.4 1.4l-6 6a1 1 0 0 1-1.4 0l-6-6a1 1 0 0 1 0-1.4z";

/// Where a catalog text goes: the element, the attribute (`""`: it is a text node, its text) and
/// the key.
pub(crate) type Texts = Vec<(Element, &'static str, &'static str)>;

/// Builds [`TREE`] (detached: the caller puts `els[ROOT]` on the page), and the list of its
/// translated texts (left empty: the view fills them).
#[inline(never)] // measured: inlined into `mount` the gzip is 640 B larger
pub(crate) fn build(doc: &Document) -> Result<(Els, Texts), JsValue> {
    let mut texts = Vec::new();
    let mut kept = Vec::new();
    let mut stack: Vec<Element> = Vec::new();
    for line in TREE.split('\n') {
        let item = line.trim_start_matches(' ');
        stack.truncate(line.len() - item.len());
        let (keep, item) = match item.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let mut fields = item.split('|');
        let tag = fields.next().unwrap_or_default();
        let class = fields.next().unwrap_or_default();
        let e = if tag == "svg" || tag == "path" {
            call(doc, "createElementNS", &[&SVG_NS.into(), &tag.into()])
                .ok_or("createElementNS")?
                .unchecked_into()
        } else {
            el(doc, tag, class)
        };
        for f in fields {
            let mut kv = f.split('=');
            match (kv.next(), kv.next()) {
                (Some("d"), Some(_)) => set(&e, "d", ICON_CHAT),
                (Some(k), Some(v)) => match v.strip_prefix('@') {
                    Some(key) => texts.push((e.clone(), k, key)),
                    None => set(&e, k, v),
                },
                _ => match f.strip_prefix('@') {
                    // A text node of its own: a label's text goes without its input.
                    Some(key) => {
                        let t = call(doc, "createTextNode", &[&"".into()]).ok_or("createTextNode")?;
                        add(&e, &t);
                        texts.push((t.unchecked_into(), "", key));
                    }
                    None => set_text(&e, Some(f)),
                },
            }
        }
        if let Some(parent) = stack.last() {
            add(parent, &e);
        }
        if keep {
            kept.push(e.clone());
        }
        stack.push(e);
    }
    let els = Els::try_from(kept).map_err(|_| JsValue::from_str("widget markup"))?;
    Ok((els, texts))
}

/// `<tag class="class">` (no class when empty). The tags are ours: valid (else a JS error).
pub(crate) fn el(doc: &Document, tag: &str, class: &str) -> Element {
    let Some(e) = call(doc, "createElement", &[&tag.into()]).filter(JsValue::is_object) else {
        wasm_bindgen::throw_str("createElement")
    };
    let e: Element = e.unchecked_into();
    if !class.is_empty() {
        set(&e, "class", class);
    }
    e
}

/// Sets an attribute; names and values are ours, never the visitor's or the agent's.
pub(crate) fn set(e: &Element, name: &str, value: &str) {
    call(e, "setAttribute", &[&name.into(), &value.into()]);
}

/// `<tag class>` holding `text` as a text node.
pub(crate) fn text_el(doc: &Document, tag: &str, class: &str, text: &str) -> Element {
    let e = el(doc, tag, class);
    set_text(&e, Some(text));
    e
}

/// Appends `child` to `parent` (an element or a shadow root).
pub(crate) fn add(parent: &JsValue, child: &JsValue) {
    call(parent, "appendChild", &[child]);
}

/// Appends children in order.
pub(crate) fn append(parent: &Element, children: &[&Element]) {
    for c in children {
        add(parent, c);
    }
}

/// Shows or hides an element (the `hidden` attribute; the stylesheet makes it final).
pub(crate) fn show(e: &Element, visible: bool) {
    if visible {
        unset(e, "hidden");
    } else {
        set(e, "hidden", "");
    }
}

/// Calls the method `name` of `obj` with up to two arguments: the DOM methods the widget
/// calls once or twice go through here and `Reflect` rather than one glue shim each.
pub(crate) fn call(obj: &JsValue, name: &str, args: &[&JsValue]) -> Option<JsValue> {
    let f = get(obj, &[name])?.unchecked_into::<Function>();
    match args {
        [] => f.call0(obj),
        [a] => f.call1(obj, a),
        [a, b, ..] => f.call2(obj, a, b),
    }
    .ok()
}

/// Focuses one of the widget's elements.
pub(crate) fn focus(e: &Element) {
    call(e, "focus", &[]);
}

/// Takes an element out of the page.
pub(crate) fn remove(e: &Element) {
    call(e, "remove", &[]);
}

/// Stops the browser's default action for an event.
pub(crate) fn prevent(ev: &JsValue) {
    call(ev, "preventDefault", &[]);
}

/// The closest ancestor of `e` (or `e`) matching `selector`.
pub(crate) fn closest(e: &Element, selector: &str) -> Option<Element> {
    call(e, "closest", &[&selector.into()]).filter(JsValue::is_object).map(JsCast::unchecked_into)
}

/// The first element in `e` (an element or a shadow root) matching `selector`.
pub(crate) fn find(e: &JsValue, selector: &str) -> Option<Element> {
    call(e, "querySelector", &[&selector.into()]).filter(JsValue::is_object).map(JsCast::unchecked_into)
}

/// An attribute's value.
pub(crate) fn attr(e: &Element, name: &str) -> Option<String> {
    call(e, "getAttribute", &[&name.into()])?.as_string()
}

/// Removes an attribute.
pub(crate) fn unset(e: &Element, name: &str) {
    call(e, "removeAttribute", &[&name.into()]);
}

/// Whether `inner` is `outer` or inside it.
pub(crate) fn contains(outer: &JsValue, inner: &JsValue) -> bool {
    call(outer, "contains", &[inner]).and_then(|v| v.as_bool()) == Some(true)
}

/// Sets an element's text (`None`: none); never HTML.
pub(crate) fn set_text(e: &Element, text: Option<&str>) {
    set_prop(e, "textContent", &text.map_or(JsValue::NULL, JsValue::from_str));
}

/// A form field's `value`.
pub(crate) fn value(e: &Element) -> String {
    text(e, &["value"]).unwrap_or_default()
}

/// Sets a form field's `value`, or another property.
pub(crate) fn set_prop(e: &JsValue, name: &str, value: &JsValue) {
    let _ = Reflect::set(e, &JsValue::from_str(name), value);
}

/// A string at `path` in a JS object.
pub(crate) fn text(v: &JsValue, path: &[&str]) -> Option<String> {
    get(v, path)?.as_string()
}

/// A boolean at `path` in a JS object.
pub(crate) fn flag(v: &JsValue, path: &[&str]) -> Option<bool> {
    get(v, path)?.as_bool()
}

/// A non-negative integer at `path` in a JS object (a `seq`, a status, a queue position).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn count(v: &JsValue, path: &[&str]) -> Option<u64> {
    get(v, path)?.as_f64().filter(|n| *n >= 0.0).map(|n| n as u64)
}

/// The value at `path` in a JS object (`None` where a step is not an object).
pub(crate) fn get(v: &JsValue, path: &[&str]) -> Option<JsValue> {
    let mut cur = v.clone();
    for key in path {
        if !cur.is_object() {
            return None;
        }
        cur = Reflect::get(&cur, &JsValue::from_str(key)).ok()?;
    }
    Some(cur)
}
