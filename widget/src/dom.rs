//! A few DOM helpers: elements with classes and attributes, text (never HTML), listeners kept
//! alive by the widget.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, EventTarget};

/// `<tag class="class">` (no class when empty).
pub(crate) fn el(doc: &Document, tag: &str, class: &str) -> Element {
    let e = doc.create_element(tag).expect("a valid tag name");
    if !class.is_empty() {
        e.set_class_name(class);
    }
    e
}

/// Sets attributes; names and values are ours, never the visitor's or the agent's.
pub(crate) fn attrs(e: &Element, list: &[(&str, &str)]) {
    for (k, v) in list {
        let _ = e.set_attribute(k, v);
    }
}

/// `<tag class>` holding `text` as a text node.
pub(crate) fn text_el(doc: &Document, tag: &str, class: &str, text: &str) -> Element {
    let e = el(doc, tag, class);
    e.set_text_content(Some(text));
    e
}

/// Shows or hides an element (the `hidden` attribute; the stylesheet makes it final).
pub(crate) fn show(e: &Element, visible: bool) {
    if visible {
        let _ = e.remove_attribute("hidden");
    } else {
        let _ = e.set_attribute("hidden", "");
    }
}

/// Appends children in order.
pub(crate) fn append(parent: &Element, children: &[&Element]) {
    for c in children {
        let _ = parent.append_child(c);
    }
}

/// The event listeners the widget holds for its lifetime (the page's).
#[derive(Default)]
pub(crate) struct Listeners(Vec<Closure<dyn FnMut(web_sys::Event)>>);

impl Listeners {
    /// Listens for `kind` on `target`.
    pub(crate) fn on(&mut self, target: &EventTarget, kind: &str, f: impl FnMut(web_sys::Event) + 'static) {
        let c = Closure::<dyn FnMut(web_sys::Event)>::new(f);
        let _ = target.add_event_listener_with_callback(kind, c.as_ref().unchecked_ref());
        self.0.push(c);
    }
}
