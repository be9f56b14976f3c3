//! RAII handles for what the browser owns on our behalf: listeners, sockets, fetches. Dropping a
//! handle undoes it (removes the listener, closes the socket, aborts the fetch), so dropping the
//! client's state is its `close()`. Timers are `gloo_timers::callback::Timeout`, which cancels
//! on drop the same way.

use js_sys::Function;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{AbortController, AbortSignal, BinaryType, EventTarget, MessageEvent, WebSocket};

/// An event listener, removed on drop.
#[must_use = "the listener is removed when this handle is dropped"]
pub(crate) struct Listener {
    target: EventTarget,
    kind: &'static str,
    callback: Closure<dyn FnMut(web_sys::Event)>,
}

impl Listener {
    /// Listens for `kind` on `target`.
    pub(crate) fn new(
        target: &EventTarget,
        kind: &'static str,
        f: impl FnMut(web_sys::Event) + 'static,
    ) -> Option<Self> {
        let callback = Closure::<dyn FnMut(web_sys::Event)>::new(f);
        target.add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref()).ok()?;
        Some(Listener { target: target.clone(), kind, callback })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.kind, self.callback.as_ref().unchecked_ref());
    }
}

/// An `AbortController` aborted on drop: every fetch started with its signal stops.
#[must_use = "the fetches of this signal are aborted when the handle is dropped"]
pub(crate) struct Aborter(Option<AbortController>);

impl Aborter {
    pub(crate) fn new() -> Self {
        Aborter(AbortController::new().ok())
    }

    pub(crate) fn signal(&self) -> Option<AbortSignal> {
        self.0.as_ref().map(AbortController::signal)
    }
}

impl Drop for Aborter {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.abort();
        }
    }
}

/// What a socket reports.
pub(crate) enum SocketEvent {
    Open,
    /// A message's data: a string, or an `ArrayBuffer` for binary frames.
    Message(JsValue),
    Closed,
}

/// A WebSocket whose handlers are detached and which is closed on drop, so a dropped socket
/// never reports anything again.
#[must_use = "the socket is closed when this handle is dropped"]
pub(crate) struct Socket {
    ws: WebSocket,
    _open: Closure<dyn FnMut(JsValue)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(JsValue)>,
}

impl Socket {
    /// Opens a socket to `url`; `on` gets its events.
    pub(crate) fn open(url: &str, on: impl Fn(SocketEvent) + 'static) -> Option<Socket> {
        let ws = WebSocket::new(url).ok()?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let on = std::rc::Rc::new(on);
        let o = on.clone();
        let open = Closure::<dyn FnMut(JsValue)>::new(move |_| o(SocketEvent::Open));
        let o = on.clone();
        let message =
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| o(SocketEvent::Message(e.data())));
        let close = Closure::<dyn FnMut(JsValue)>::new(move |_| on(SocketEvent::Closed));
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        // An error is always followed by a close, which is what we act on.
        Some(Socket { ws, _open: open, _message: message, _close: close })
    }

    /// Sends an encoded frame.
    pub(crate) fn send(&self, text: &str) -> bool {
        self.ws.send_with_str(text).is_ok()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let none: Option<&Function> = None;
        self.ws.set_onopen(none);
        self.ws.set_onmessage(none);
        self.ws.set_onclose(none);
        let _ = self.ws.close();
    }
}
