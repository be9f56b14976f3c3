// Handoff chat widget loader, served at /widget.js:
//   <script src="https://HOST/widget.js" data-project-key="pk_..." async></script>
// It never blocks the page (async; everything below is deferred work), defines `window.Handoff`
// at once (calls made before the widget is ready are queued), then imports the wasm widget from
// the same origin as this script. While the server is down it warns once and retries.
// First paint: while the wasm downloads and compiles, the loader makes the session call itself
// and draws the launcher from its answer (plain DOM in the widget's shadow root, the project's
// colour and side); a click on it opens the chat once the widget is up. The widget builds in
// that shadow root, takes the answer instead of calling again, and swaps its own launcher in.
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
    /** Shows the widget in language `tag` (`de`, `pt-BR`, ...; `null`: back to the automatic choice), live. */
    setLocale(tag) {
      chosen = tag;
      // A later switch wins over a slower earlier one.
      return texts().then(([l, c, n]) => void (n === switches && call("locale", [l, c])));
    },
    /** `fn(payload, name)` for the client's events (`"*"`: all); returns an unsubscribe function. */
    on(event, fn) {
      if (widget) return widget.on(event, fn);
      let off = null;
      let dropped = false;
      call("on", [event, fn]).then((u) => (dropped ? u() : (off = u)));
      return () => (off ? off() : (dropped = true));
    },
  };
  // The visitor's language: the first of Handoff.setLocale(), the script tag's data-locale, the
  // project's setting and the browser's languages that the widget speaks (a region tag counts as
  // its language: pt-BR is pt), else English. Its catalog is fetched only when it is not English.
  let chosen = null;
  let project = null;
  let switches = 0;
  const texts = () => {
    const n = ++switches;
    // The tag as given (`de-AT`) formats times and dates; its language picks the catalog.
    let l = "en";
    let tag = "en";
    for (const t of [chosen, script.dataset.locale, project, ...(navigator.languages || [])]) {
      const x = String(t || "").toLowerCase().split("-")[0];
      if (/^(en|de|fr|es|pt|ar)$/.test(x)) {
        l = x;
        tag = /^[a-z]{2,3}(-[a-z0-9]{1,8})*$/i.test(t) ? t : x;
        break;
      }
    }
    const c = l === "en" ? null : fetch(`${base}/widget/i18n/${l}.json`).then((r) => (r.ok ? r.json() : null));
    return Promise.resolve(c)
      .catch(() => null)
      .then((c) => [tag, c, n]);
  };
  // The session call, as the client would make it (the client checks the token still applies).
  let token = null;
  try {
    token = localStorage.getItem("handoff.visitor_token." + key);
  } catch {}
  const session = fetch(base + "/api/widget/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ project_key: key, visitor_token: token || undefined }),
  })
    .then((r) => r.text().then((text) => ({ ok: r.ok, token, text })))
    .catch(() => null);
  const strings = session.then((a) => {
    try {
      project = JSON.parse(a.text).config.theme.locale;
    } catch {}
    return texts();
  });
  let host = null;
  const draw = (a) => {
    if (widget || host || !a || !a.ok) return;
    // Reloaded with the chat open: a closed launcher flipping open would flicker; the widget draws.
    try {
      if (sessionStorage.getItem("handoff.open")) return;
    } catch {}
    let theme = {};
    try {
      theme = JSON.parse(a.text).config.theme || {};
    } catch {}
    const color = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(theme.color) ? theme.color : "#2563eb";
    const el = (tag, attrs, ns) => {
      const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      return e;
    };
    const sheet = new CSSStyleSheet();
    // The launcher's rules of widget/src/widget.css (a constructed sheet: strict CSPs allow it).
    sheet.replaceSync(`:host{all:initial;--hf-accent:${color}}
.root{all:initial;position:fixed;bottom:20px;right:20px;z-index:2147483000;display:flex;flex-direction:column;align-items:flex-end;gap:12px}
.root.left{right:auto;left:20px;align-items:flex-start}
.root *{box-sizing:border-box}[hidden]{display:none!important}
button{cursor:pointer;border:0;padding:0;margin:0;position:relative;width:56px;height:56px;border-radius:50%;background:var(--hf-accent);box-shadow:0 4px 14px rgba(0,0,0,.25);display:grid;place-items:center;transition:transform .15s}
button:hover{transform:scale(1.06)}button:focus-visible{outline:2px solid var(--hf-accent);outline-offset:2px}
svg{width:28px;height:28px;fill:#fff}
@media (max-width:480px){.root,.root.left{bottom:12px;right:12px;left:auto}.root.left{left:12px;right:auto}}`);
    host = document.createElement("handoff-widget");
    const shadow = host.attachShadow({ mode: "open" });
    shadow.adoptedStyleSheets = [sheet];
    const root = el("div", { class: theme.position === "left" ? "root left" : "root" });
    const button = el("button", { class: "launcher", type: "button", "aria-label": "Open chat", "aria-expanded": "false" });
    const svg = el("svg", { viewBox: "0 0 24 24", "aria-hidden": "true" }, "http://www.w3.org/2000/svg");
    svg.append(el("path", { d: "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z" }, svg.namespaceURI));
    button.append(svg);
    button.onclick = () => window.Handoff.open(); // queued until the widget is up
    root.append(button);
    shadow.append(root);
    document.body.append(host);
  };
  session.then((a) => (document.body ? draw(a) : document.addEventListener("DOMContentLoaded", () => draw(a), { once: true })));
  let warned = false;
  let attempt = 0;
  const load = async () => {
    try {
      // A failed module fetch is remembered by the browser: a retry uses a fresh URL.
      const q = attempt ? `?retry=${attempt}` : "";
      const glue = import(`${base}/widget/handoff_widget.js${q}`);
      // The rule that makes safe links of URLs in messages (shared with the agent console).
      const links = import(`${base}/widget/handoff_widget_links.js${q}`);
      links.catch(() => {});
      const wasm = fetch(`${base}/widget/handoff_widget_bg.wasm`);
      wasm.catch(() => {});
      glue.catch(() => {});
      // The launcher first: compiling the wasm holds the main thread, so it starts once the
      // session answer is in and its launcher painted (or at most 100 ms later).
      await session;
      await new Promise((go) => {
        requestAnimationFrame(() => setTimeout(go));
        setTimeout(go, 100);
      });
      const mod = await glue;
      await mod.default({ module_or_path: wasm });
      const [lang, catalog] = await strings;
      const { linkParts } = await links;
      const mount = () => {
        widget = mod.mount(base, key, host, session, linkParts);
        widget.locale(lang, catalog);
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
