// Handoff chat widget loader, served at /widget.js:
//   <script src="https://HOST/widget.js" data-project-key="pk_..." async></script>
// It never blocks the page (async; everything below is deferred work), defines `window.Handoff`
// at once (calls made before the widget is ready are queued), then imports the wasm widget from
// the same origin as this script. While the server is down it warns once and retries.
// `cargo xtask web` replaces the two widget file names below by their content-hashed names.
(() => {
  "use strict";
  if (window.Handoff && window.Handoff.__loader) return; // pasted twice
  const script = document.currentScript;
  const key = script && script.dataset.projectKey;
  if (!key) {
    console.warn("Handoff: the widget script tag needs data-project-key");
    return;
  }
  const base = (script.dataset.server || new URL(script.src, location.href).origin).replace(/\/$/, "");
  let widget = null;
  const queued = [];
  const call = (name, args) =>
    widget
      ? widget[name](...args)
      : new Promise((ok, fail) => queued.push({ name, args, ok, fail }));
  window.Handoff = {
    __loader: true,
    /** Opens the chat window. */
    open: () => void call("open", []),
    /** Minimizes the chat window. */
    close: () => void call("close", []),
    /** Binds a signed-in user of the site: `{user_id, name?, email?, hmac}`. */
    identify: (user) => call("identify", [user]),
    /** `fn(payload, name)` for the client's events (`"*"`: all); returns an unsubscribe function. */
    on(event, fn) {
      if (widget) return widget.on(event, fn);
      let off = null;
      let dropped = false;
      call("on", [event, fn]).then((u) => (dropped ? u() : (off = u)));
      return () => (off ? off() : (dropped = true));
    },
  };
  let warned = false;
  let attempt = 0;
  const load = async () => {
    try {
      // A failed module fetch is remembered by the browser: a retry uses a fresh URL.
      const q = attempt ? `?retry=${attempt}` : "";
      const glue = await import(`${base}/widget/handoff_widget.js${q}`);
      await glue.default({ module_or_path: `${base}/widget/handoff_widget_bg.wasm` });
      const mount = () => {
        widget = glue.mount(base, key);
        for (const { name, args, ok, fail } of queued.splice(0)) {
          try {
            ok(widget[name](...args));
          } catch (e) {
            fail(e);
          }
        }
      };
      if (document.body) mount();
      else document.addEventListener("DOMContentLoaded", mount, { once: true });
    } catch (e) {
      if (!warned) {
        warned = true;
        console.warn("Handoff: the chat widget could not load from " + base + ", retrying", e);
      }
      attempt += 1;
      setTimeout(load, Math.min(30000, 1000 * 2 ** Math.min(attempt, 5)));
    }
  };
  load();
})();
