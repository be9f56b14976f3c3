// The Handoff agent console: plain ES modules on the SDK, no build step. Served by the server
// at /console/ from target/handoff-web/console/ (`cargo xtask web`), so the SDK is at
// /sdk/index.js; in an npm app, import from "@handoff/sdk" instead.
//
// User data (names, messages, notes, offline messages) is always rendered with textContent,
// never as HTML.
import { countsAsUnread, createAgentClient } from "/sdk/index.js";
import { linkParts } from "/widget/handoff_widget_links.js";
import * as attention from "./attention.js";

const TOKEN_KEY = "handoff.console.token";
const $ = (id) => document.getElementById(id);

/** `el("li", { class: "x", dataset: { id } }, "text", child)`; strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const time = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/** "waiting 2 min" from a `waiting_since` in ms. */
export function waitingText(since, now = Date.now()) {
  const s = Math.max(0, Math.floor((now - since) / 1000));
  if (s < 60) return "waiting <1 min";
  const m = Math.floor(s / 60);
  if (m < 60) return `waiting ${m} min`;
  return `waiting ${Math.floor(m / 60)} h ${m % 60} min`;
}

const customerName = (c) => c?.customer_name || "Visitor";

// ----- state -----

let client = null;
let me = null;
const offs = [];
const state = {
  queue: [],
  /** id -> { conversation, unread, last_message } (my assigned conversations). */
  inbox: new Map(),
  /** id -> the highest seq already accounted for (inbox load, history, events). */
  known: new Map(),
  presence: new Map(),
  agents: [],
  offline: [],
  /** Events already handled for conversations we do not follow (they come on several channels). */
  seen: new Set(),
  /** Claims I started: their assignment is no news to me. */
  claiming: new Set(),
  selected: null,
  /** The selected conversation's state. */
  conv: null,
  unfollow: null,
  messages: new Set(),
  notes: new Set(),
  /** Seqs of the open conversation's system lines. */
  lines: new Set(),
  lastSeq: 0,
  /** The project's canned responses, by shortcut (the management panel). */
  canned: [],
  /** The queue's next page (`GET /api/queue` cursor), while more are waiting than loaded. */
  queueCursor: null,
  /** Inbox pages loaded (50 items each; "Load more" adds one), and whether more may follow. */
  inboxPages: 1,
  inboxMore: false,
  /** The search: its text and status, results, the next page's cursor, the latest request. */
  search: { q: "", status: "", hits: [], cursor: null, request: 0 },
};

// ----- small helpers -----

function toast(text, { action, onAction, kind = "info" } = {}) {
  const t = el("div", { class: `toast ${kind}`, "data-testid": "toast", dataset: { kind } },
    el("span", { text }));
  if (action) {
    t.append(el("button", {
      type: "button", class: "link", text: action,
      onclick: () => { t.remove(); onAction?.(); },
    }));
  }
  t.append(el("button", { type: "button", class: "close", "aria-label": "Dismiss", text: "×", onclick: () => t.remove() }));
  $("toasts").append(t);
  setTimeout(() => t.remove(), 8000);
  return t;
}

function fail(what) {
  return (e) => {
    console.warn(what, e);
    toast(`${what}: ${e?.message ?? e}`, { kind: "error" });
  };
}

/** Runs `fn` once per `ms` at most, after the last call (for refreshes that events trigger). */
function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

function once(event, p) {
  const key = `${event}:${p.conversation_id ?? p.message?.conversation_id}:${p.seq ?? p.message?.seq}`;
  if (state.seen.has(key)) return false;
  if (state.seen.size > 5000) state.seen.clear();
  state.seen.add(key);
  return true;
}

const mine = (c) => c && c.status === "assigned" && c.agent?.id === me?.id;

// ----- login -----

function showLogin(message) {
  $("app").hidden = true;
  $("login-view").hidden = false;
  $("login-submit").disabled = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message ?? "";
  $("login-email").focus();
}

/**
 * Signs in with a password, or resumes with the token kept in sessionStorage from an earlier
 * login (`AgentClient.resume`, checked by the server with `GET /api/agents/me`). No password is
 * stored.
 */
async function signIn({ email, password, token }) {
  const c = await createAgentClient({ baseUrl: location.origin });
  let r;
  try {
    r = token ? await c.resume(token) : await c.login(email, password);
  } catch (e) {
    c.close();
    throw e;
  }
  sessionStorage.setItem(TOKEN_KEY, r.token);
  client = c;
  me = r.agent;
  wire(c);
  // The seed's idle rule: away after 30 minutes without input, online again on input; never
  // offline for idling (`?idleAwayMs=` shortens it for demos and tests).
  const idleAwayMs = Number(new URLSearchParams(location.search).get("idleAwayMs")) || undefined;
  offs.push(c.subscribeQueue(), c.subscribeAgent(), c.trackIdle({ awayAfterMs: idleAwayMs }));
  $("login-view").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = me.name;
  showStatus(me.status);
  showConnection(c.connectionState);
  await Promise.all([loadQueue(), loadInbox(), loadAgents(), loadOffline(), loadCanned().catch(fail("Cannot load canned responses"))]);
  noticeOffline(true);
}

function teardown() {
  closeConversation();
  for (const off of offs.splice(0)) {
    try { off(); } catch { /* already gone */ }
  }
  client?.close();
  client = null;
  me = null;
  state.queue = [];
  state.queueLoaded = false;
  state.inbox.clear();
  state.known.clear();
  state.presence.clear();
  state.seen.clear();
  state.offline = [];
  state.canned = [];
  state.queueCursor = null;
  state.inboxPages = 1;
  state.inboxMore = false;
  clearSearch();
  closeSuggestions();
  editCanned(null);
  renderQueue();
  renderCanned();
  renderInbox();
  renderOffline();
  $("toasts").replaceChildren();
  attention.reset();
}

async function signOut(message) {
  const c = client;
  // Signing out makes me unavailable, so nothing is routed to a console nobody watches.
  if (c && !message) {
    await c.setStatus("offline").catch(() => {});
    await c.logout().catch(() => {}); // the token stops working on the server too
  }
  sessionStorage.removeItem(TOKEN_KEY);
  teardown();
  $("login-form").reset();
  showLogin(message);
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const email = $("login-email").value.trim();
  const password = $("login-password").value;
  if (!email || !password) {
    showLogin("Enter your email and password.");
    return;
  }
  $("login-submit").disabled = true;
  $("login-error").hidden = true;
  try {
    await signIn({ email, password });
  } catch (err) {
    const bad = err?.status === 401 || err?.code === "unauthorized" || err?.code === "invalid_credentials";
    showLogin(bad ? "Wrong email or password." : `Cannot sign in: ${err?.message ?? err}`);
  }
});

$("logout").addEventListener("click", () => signOut());

// ----- connection and my status -----

function showConnection(s) {
  $("connection").textContent = s;
  $("connection").dataset.state = s;
}

function showStatus(status) {
  if (me) me.status = status;
  $("status-select").value = status;
  $("status-dot").dataset.state = status;
}

$("status-select").addEventListener("change", async (e) => {
  const status = e.target.value;
  const before = me.status;
  try {
    const a = await client.setStatus(status);
    showStatus(a.status ?? status);
    if (status === "online" && before !== "online") noticeOffline(true);
    // Coming online may have brought queued work.
    loadInbox();
  } catch (err) {
    showStatus(before);
    fail("Cannot change the status")(err);
  }
});

// ----- events -----

function wire(c) {
  const on = (name, fn) => offs.push(c.on(name, (p) => {
    try {
      fn(p);
    } catch (e) {
      console.error(name, e);
    }
  }));
  on("connection", showConnection);
  on("error", (e) => {
    console.warn("handoff error", e?.code, e?.message, e?.channel ?? "");
    if (e?.code === "unauthorized") signOut("Your session has expired. Please sign in again.");
  });
  on("queue:updated", ({ queue }) => {
    // The broadcast is the whole waiting list.
    // Before the first load, everything would look new: the queue as it was is no news.
    const before = new Set(state.queueLoaded ? state.queue.map((q) => q.conversation_id) : queue.map((q) => q.conversation_id));
    // With only the first pages loaded, those waiting since before the load are no news either.
    if (state.queueCursor) {
      for (const q of queue) if (q.waiting_since <= state.queueLoadedAt) before.add(q.conversation_id);
    }
    state.queue = queue;
    state.queueCursor = null;
    renderQueue();
    attention.forgetQueued(new Set(queue.map((q) => q.conversation_id)));
    for (const q of queue) {
      if (before.has(q.conversation_id) || state.claiming.has(q.conversation_id)) continue;
      attention.notify({
        kind: "queued", conversationId: q.conversation_id,
        title: `${customerName(q)} is waiting in the queue`, body: q.preview ?? "",
        open: () => select(q.conversation_id),
      });
    }
  });
  on("conversation:deleted", ({ conversation_id: id }) => {
    // Erased (the customer's data) or past the retention period: gone from every list.
    state.inbox.delete(id);
    state.queue = state.queue.filter((q) => q.conversation_id !== id);
    state.search.hits = state.search.hits.filter((h) => h.conversation.id !== id);
    if (state.selected === id) {
      closeConversation();
      toast("The conversation was deleted");
    }
    renderQueue();
    renderInbox();
    renderSearch();
  });
  on("message:new", onMessage);
  on("conversation:assigned", (p) => {
    line(p, `${who(p.agent)} joined the conversation`);
    if (!once("conversation:assigned", p)) return;
    if (p.agent?.id === me.id && isNewEvent(p) && !state.claiming.delete(p.conversation_id)) {
      assignedToast(p.conversation_id);
      const c = state.inbox.get(p.conversation_id)?.conversation ?? state.queue.find((q) => q.conversation_id === p.conversation_id);
      attention.notify({
        kind: "assigned", conversationId: p.conversation_id,
        title: `A conversation with ${customerName(c)} was assigned to you`, body: "",
        open: () => select(p.conversation_id),
      });
    }
    changed(p.conversation_id);
  });
  on("agent:claimed", (p) => {
    if (!once("agent:claimed", p)) return;
    changed(p.conversation_id);
  });
  on("conversation:transferred", (p) => {
    line(p, transferText(p));
    if (!once("conversation:transferred", p)) return;
    changed(p.conversation_id);
  });
  on("conversation:resolved", (p) => {
    line(p, `Resolved by ${who(p.resolved_by)}`);
    if (!once("conversation:resolved", p)) return;
    changed(p.conversation_id);
  });
  on("conversation:rated", (p) => {
    line(p, `Customer rated ${ratingText(p)}`);
    if (p.conversation_id === state.selected && state.conv) {
      state.conv.rating = { rating: p.rating, comment: p.comment };
      showRating(state.conv.rating);
    }
    if (!once("conversation:rated", p)) return;
    if (p.conversation_id !== state.selected && isNewEvent(p)) {
      const name = customerName(state.inbox.get(p.conversation_id)?.conversation);
      toast(`${name} rated the conversation ${p.rating}/5`, { action: "Open", onAction: () => select(p.conversation_id) });
    }
  });
  on("conversation:status_changed", (p) => {
    if (p.status === "queued") line(p, "Waiting in the queue");
    if (!once("conversation:status_changed", p)) return;
    changed(p.conversation_id);
  });
  on("agent:status_changed", ({ agent_id, status }) => {
    const a = state.agents.find((x) => x.id === agent_id);
    if (a) a.status = status;
    else loadAgents();
    if (agent_id === me.id) showStatus(status);
    renderTransferOptions();
  });
  on("typing", ({ conversation_id, actor, is_typing }) => {
    if (conversation_id !== state.selected || actor?.kind !== "customer") return;
    $("typing").hidden = !is_typing;
  });
  on("presence:updated", ({ conversation_id, state: s }) => {
    state.presence.set(conversation_id, s);
    if (conversation_id === state.selected) showPresence(s);
    renderInbox();
  });
  on("note:new", ({ note }) => {
    if (note.conversation_id === state.selected) addNote(note);
  });
  on("offline_message:new", ({ offline_message: m }) => {
    if (state.offline.some((x) => x.id === m.id)) return;
    state.offline.unshift(m);
    renderOffline();
    toast(`New offline message from ${m.name}`, { action: "Show", onAction: showOffline });
  });
}

/** Whether an event of a conversation is news (not history being replayed). */
function isNewEvent(p) {
  const known = state.known.get(p.conversation_id);
  return known === undefined || p.seq > known;
}

/** Assignment, transfer, resolve, status: reload what depends on them. */
const refreshSelected = debounce(() => state.selected && loadConversation(state.selected), 100);
function changed(id) {
  refreshInbox();
  if (id === state.selected) refreshSelected();
}

function onMessage({ message: m }) {
  const id = m.conversation_id;
  const item = state.inbox.get(id);
  // The server's rule (GET /api/inbox counts the same way after a refresh): for an agent,
  // the customer's messages only; not the bot's, not other agents', not ours.
  const counts = countsAsUnread(m.author.kind, "agent");
  const fresh = isNewEvent({ conversation_id: id, seq: m.seq });
  // In a background tab even the open conversation's messages stay unread (and unmarked: the
  // customer would see "Seen") until the agent looks again.
  const away = attention.inBackground();
  if (item && (!item.last_message || m.seq > item.last_message.seq)) {
    if (counts && (id !== state.selected || away) && fresh) item.unread += 1;
    item.last_message = m;
    renderInbox();
    if (counts && fresh && m.author.kind === "customer") {
      attention.notify({
        kind: "message", conversationId: id,
        title: `${customerName(item.conversation)} wrote`, body: m.body,
        open: () => select(id),
      });
    }
  }
  if (id === state.selected) {
    if (state.messages.has(m.id)) return;
    state.messages.add(m.id);
    renderMessage(m);
    if (m.author.kind === "customer") $("typing").hidden = true;
    if (m.seq > state.lastSeq) {
      state.lastSeq = m.seq;
      markRead();
    }
  }
  if (m.seq > (state.known.get(id) ?? 0)) state.known.set(id, m.seq);
}

function assignedToast(id) {
  const name = customerName(state.inbox.get(id)?.conversation ?? state.queue.find((q) => q.conversation_id === id));
  toast(`A conversation with ${name} was assigned to you`, { action: "Open", onAction: () => select(id) });
}

const who = (a) => (a?.id === me.id ? "you" : a?.name ?? a?.kind ?? "an agent");

function transferText(p) {
  const to = p.to?.type === "queue" ? "the queue" : who(p.to);
  return `Transferred by ${who(p.from_agent)} to ${to}${p.note ? `: ${p.note}` : ""}`;
}

/** A system line in the open conversation's thread (once per event, history included). */
function line(p, text) {
  if (p.conversation_id !== state.selected || state.lines.has(p.seq)) return;
  state.lines.add(p.seq);
  systemLine(text.charAt(0).toUpperCase() + text.slice(1), p.seq);
}

// ----- loading -----

async function loadQueue() {
  const { queue, next_cursor } = await client.queue();
  state.queue = queue;
  state.queueCursor = next_cursor ?? null;
  state.queueLoaded = true;
  state.queueLoadedAt = Date.now();
  renderQueue();
}

/** The next page of the queue (beyond the first 50 waiting). */
async function loadMoreQueue() {
  if (!state.queueCursor) return;
  const { queue, next_cursor } = await client.queue({ cursor: state.queueCursor });
  const have = new Set(state.queue.map((q) => q.conversation_id));
  state.queue = state.queue.concat(queue.filter((q) => !have.has(q.conversation_id)));
  state.queueCursor = next_cursor ?? null;
  renderQueue();
}
$("queue-more").addEventListener("click", () => loadMoreQueue().catch(fail("Cannot load the queue")));

const INBOX_PAGE = 50;

/** The inbox's pages as far as loaded (`state.inboxPages`), one request each. */
async function inboxItems() {
  const items = [];
  let cursor;
  state.inboxMore = false;
  for (let page = 0; page < state.inboxPages; page++) {
    const got = await client.inbox(cursor ? { cursor, limit: INBOX_PAGE } : { limit: INBOX_PAGE });
    items.push(...got);
    state.inboxMore = got.length === INBOX_PAGE;
    cursor = got.at(-1)?.cursor;
    if (!state.inboxMore || !cursor) break;
  }
  return items;
}
$("inbox-more").addEventListener("click", () => {
  state.inboxPages += 1;
  loadInbox().catch(fail("Cannot load more conversations"));
});

async function loadInbox() {
  if (!client) return;
  const items = await inboxItems();
  const next = new Map();
  for (const it of items) {
    const c = it.conversation;
    if (!mine(c)) continue;
    // The REST answer carries the presence now; a live presence:updated already seen wins.
    if (c.presence && c.presence !== "unknown" && !state.presence.has(c.id)) state.presence.set(c.id, c.presence);
    const local = state.inbox.get(c.id);
    // A message that came live after the server answered stays.
    if (local?.last_message && (!it.last_message || local.last_message.seq > it.last_message.seq)) {
      it.last_message = local.last_message;
      it.unread = local.unread;
    }
    // The open conversation is read, unless the agent is looking elsewhere (then the server's
    // count, which our unsent read marker leaves standing, is right).
    if (c.id === state.selected && !attention.inBackground()) it.unread = 0;
    if (!state.known.has(c.id) || state.known.get(c.id) < c.last_seq) state.known.set(c.id, c.last_seq);
    next.set(c.id, it);
  }
  state.inbox = next;
  renderInbox();
}
const refreshInbox = debounce(() => loadInbox().catch((e) => console.warn("inbox", e)), 100);

async function loadAgents() {
  state.agents = await client.agents();
  renderTransferOptions();
}

async function loadOffline() {
  state.offline = await client.offlineMessages(false);
  renderOffline();
}

// ----- queue -----

function renderQueue() {
  const list = $("queue-list");
  list.replaceChildren(...state.queue.map((q) => el("li", {
    class: "item", "data-testid": "queue-item", dataset: { conversationId: q.conversation_id },
  },
  el("button", {
    type: "button", class: "item-main",
    onclick: () => select(q.conversation_id),
  },
  el("span", { class: "name", text: customerName(q) }),
  el("span", { class: "preview", "data-testid": "queue-preview", text: q.preview ?? "" }),
  el("span", { class: "wait", "data-testid": "queue-wait", dataset: { since: q.waiting_since }, text: waitingText(q.waiting_since) })),
  el("button", {
    type: "button", class: "primary small", "data-testid": "queue-claim",
    "aria-label": `Claim the conversation with ${customerName(q)}`, text: "Claim",
    onclick: () => claim(q.conversation_id),
  }))));
  $("queue-count").textContent = String(state.queue.length);
  $("queue-empty").hidden = state.queue.length > 0;
  $("queue-more").hidden = !state.queueCursor;
}

setInterval(() => {
  for (const w of document.querySelectorAll("[data-testid=queue-wait]")) {
    w.textContent = waitingText(Number(w.dataset.since));
  }
}, 5000);

async function claim(id) {
  state.claiming.add(id);
  try {
    await client.claim(id);
    await loadInbox();
    await select(id);
  } catch (e) {
    state.claiming.delete(id);
    fail("Cannot claim")(e);
  }
}

// ----- inbox -----

function renderInbox() {
  const items = [...state.inbox.values()].sort((a, b) =>
    (b.last_message?.created_at ?? b.conversation.updated_at) - (a.last_message?.created_at ?? a.conversation.updated_at));
  $("inbox-list").replaceChildren(...items.map(({ conversation: c, unread, last_message: m }) => {
    const presence = state.presence.get(c.id) ?? "unknown";
    const preview = m ? `${m.author.kind === "customer" ? "" : m.author.id === me?.id ? "You: " : `${m.author.name ?? m.author.kind}: `}${m.body}` : "";
    return el("li", {
      class: `item${c.id === state.selected ? " selected" : ""}`, "data-testid": "inbox-item",
      dataset: { conversationId: c.id },
    },
    el("button", {
      type: "button", class: "item-main", "aria-current": c.id === state.selected ? "true" : null,
      onclick: () => select(c.id),
    },
    el("span", { class: "name" },
      el("span", { class: "dot small", dataset: { state: presence }, "aria-hidden": "true" }),
      customerName(c)),
    el("span", { class: "preview", "data-testid": "inbox-preview", text: preview }),
    unread ? el("span", { class: "unread", "data-testid": "inbox-unread", text: String(unread) }) : null,
    unread ? el("span", { class: "visually-hidden", text: " unread" }) : null));
  }));
  $("inbox-count").textContent = String(items.length);
  attention.setUnread(items.reduce((n, i) => n + i.unread, 0));
  $("inbox-empty").hidden = items.length > 0;
  $("inbox-more").hidden = !state.inboxMore;
}

// ----- offline messages -----

function renderOffline() {
  $("offline-list").replaceChildren(...state.offline.map((m) => el("li", {
    class: "item offline", "data-testid": "offline-item", dataset: { id: m.id },
  },
  el("div", { class: "name" }, m.name, el("span", { class: "muted", text: ` <${m.email}>` })),
  el("p", { class: "offline-body", text: m.message }),
  el("div", { class: "row" },
    el("time", { class: "muted", text: new Date(m.created_at).toLocaleString() }),
    el("button", {
      type: "button", class: "small", "data-testid": "offline-handled",
      "aria-label": `Mark handled: the message from ${m.name}`, text: "Mark handled",
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          await client.markOfflineHandled(m.id);
          state.offline = state.offline.filter((x) => x.id !== m.id);
          renderOffline();
        } catch (err) {
          e.target.disabled = false;
          fail("Cannot mark it handled")(err);
        }
      },
    })))));
  const n = state.offline.length;
  $("offline-count").textContent = String(n);
  $("offline-empty").hidden = n > 0;
  if (n === 0) $("offline-notice").hidden = true;
  else if (!$("offline-notice").hidden) $("offline-notice-text").textContent = offlineText(n);
}

const offlineText = (n) => `${n} unhandled offline message${n === 1 ? "" : "s"} while nobody was online.`;

/** The notice when I come online (or sign in) with unhandled offline messages. */
function noticeOffline(withToast) {
  const n = state.offline.length;
  if (n === 0) return;
  $("offline-notice-text").textContent = offlineText(n);
  $("offline-notice").hidden = false;
  if (withToast) toast(`You have ${offlineText(n)}`, { action: "Show", onAction: showOffline });
}

function showOffline() {
  closeConversation();
  $("offline-section").scrollIntoView({ block: "start" });
  $("offline-list").querySelector("button")?.focus();
}
$("offline-notice-show").addEventListener("click", showOffline);

// ----- the conversation -----

function closeConversation() {
  state.unfollow?.();
  state.unfollow = null;
  if (state.selected && client) client.stopTyping(state.selected);
  state.selected = null;
  state.conv = null;
  document.body.classList.remove("has-selection");
  $("conversation-body").hidden = true;
  $("conversation-empty").hidden = false;
  renderInbox();
}

async function select(id) {
  if (state.selected === id) {
    document.body.classList.add("has-selection");
    return;
  }
  closeConversation();
  state.selected = id;
  state.messages = new Set();
  state.notes = new Set();
  state.lines = new Set();
  state.lastSeq = 0;
  $("messages").replaceChildren();
  $("notes").replaceChildren();
  $("typing").hidden = true;
  $("conversation-title").textContent = "";
  $("conversation-status").textContent = "";
  showPresence(state.presence.get(id) ?? "unknown");
  $("conversation-empty").hidden = true;
  $("conversation-body").hidden = false;
  document.body.classList.add("has-selection");
  const item = state.inbox.get(id);
  if (item) {
    item.unread = 0;
    renderInbox();
  }
  renderInbox();
  try {
    const c = await loadConversation(id);
    if (state.selected !== id) return;
    // History up to here is no news (no toasts, no unread counts).
    if ((state.known.get(id) ?? 0) < c.last_seq) state.known.set(id, c.last_seq);
    state.unfollow = client.subscribeConversation(id);
    const notes = await client.notes(id);
    if (state.selected !== id) return;
    for (const n of notes) addNote(n);
    markRead(c.last_seq);
  } catch (e) {
    fail("Cannot open the conversation")(e);
  }
}

async function loadConversation(id) {
  const c = await client.conversation(id);
  if (state.selected !== id) return c;
  state.conv = c;
  if (c.presence && c.presence !== "unknown") {
    state.presence.set(id, c.presence);
    showPresence(c.presence);
  }
  $("conversation-title").textContent = customerName(c);
  $("conversation-status").textContent = c.status === "assigned" && c.agent ? `assigned to ${c.agent.id === me.id ? "you" : c.agent.name}` : c.status;
  $("conversation-status").dataset.status = c.status;
  showRating(c.rating);
  const own = mine(c);
  $("claim").hidden = c.status !== "queued";
  for (const b of ["transfer", "transfer-select", "transfer-note", "decline", "resolve", "compose-input", "compose-send"]) {
    $(b).disabled = !own;
  }
  $("transfer-form").hidden = !own;
  $("decline").hidden = !own;
  $("resolve").hidden = !own;
  // Seen before the claim (not mine to mark then): marked now that it is mine.
  if (own) markRead(c.last_seq);
  $("compose-input").placeholder = own ? "Reply to the customer"
    : c.status === "resolved" ? "This conversation is resolved" : "Claim the conversation to reply";
  // A resolved conversation (opened from the search, say) is history: read-only, no reply
  // box, no actions, no new notes.
  const readOnly = c.status === "resolved";
  $("readonly-notice").hidden = !readOnly;
  $("compose").hidden = readOnly;
  $("note-form").hidden = readOnly;
  return c;
}

/** `★★★★☆ 4/5` and the comment, if any. */
export function ratingText({ rating, comment }) {
  const n = Math.max(0, Math.min(5, Math.round(rating)));
  return `${"★".repeat(n)}${"☆".repeat(5 - n)} ${n}/5${comment ? `: “${comment}”` : ""}`;
}

/** The customer's rating beside the status, or nothing. */
function showRating(r) {
  const badge = $("conversation-rating");
  badge.hidden = !r;
  badge.textContent = r ? ratingText(r) : "";
  badge.title = r?.comment ?? "";
  badge.setAttribute("aria-label", r ? `Customer rating: ${r.rating} of 5${r.comment ? `, “${r.comment}”` : ""}` : "");
}

function showPresence(s) {
  const label = { online: "online", idle: "idle", offline: "offline" }[s] ?? "unknown";
  const dot = $("presence-dot");
  dot.dataset.state = label;
  dot.title = `Customer is ${label}`;
  dot.setAttribute("aria-label", `Customer presence: ${label}`);
}

function renderMessage(m) {
  const kind = m.author.kind;
  const who = kind === "customer" ? (m.author.name || customerName(state.conv))
    : m.author.id === me.id ? "You" : m.author.name ?? kind;
  const li = el("li", {
    class: `msg ${kind}${m.author.id === me.id ? " own" : ""}`, "data-testid": "message",
    dataset: { kind, seq: m.seq, id: m.id },
  },
  el("span", { class: "meta", text: `${who} · ${time(m.created_at)}` }),
  el("p", { class: "body" }, ...linked(m.body)));
  insertBySeq($("messages"), li, m.seq);
}

/**
 * A message's text as text nodes and safe links (`widget/loader/links.js`: http, https, mailto and
 * www. only), opened in a new tab without the opener or a referrer. Never HTML.
 */
function linked(text) {
  return linkParts(text).map((p) => (p.href
    ? el("a", { href: p.href, target: "_blank", rel: "noopener noreferrer nofollow", text: p.text })
    : document.createTextNode(p.text)));
}

function systemLine(text, seq) {
  insertBySeq($("messages"), el("li", { class: "msg system", "data-testid": "system-line", dataset: { seq }, text }), seq);
}

function insertBySeq(list, li, seq) {
  const after = [...list.children].find((x) => Number(x.dataset.seq) > seq);
  list.insertBefore(li, after ?? null);
  list.scrollTop = list.scrollHeight;
}

function addNote(n) {
  if (state.notes.has(n.id)) return;
  state.notes.add(n.id);
  $("notes").append(el("li", { class: "note", "data-testid": "note", dataset: { id: n.id } },
    el("span", { class: "meta", text: `${n.author.id === me.id ? "You" : n.author.name} · ${time(n.created_at)}` }),
    el("p", { class: "body" }, ...linked(n.body))));
}

const markRead = (() => {
  // What the agent has seen: the thread up to here while the console was in front. Messages that
  // arrive while they look elsewhere stay unread (the customer sees no "Seen") until they return.
  let conv = null;
  let upTo = 0;
  const send = debounce(() => {
    const id = state.selected;
    if (!id || id !== conv || !upTo || !mine(state.conv)) return;
    client?.markRead(id, upTo).catch((e) => console.warn("markRead", e));
  }, 250);
  return (seq) => {
    if (seq && seq > state.lastSeq) state.lastSeq = seq;
    if (conv !== state.selected) {
      conv = state.selected;
      upTo = 0;
    }
    if (!attention.inBackground()) upTo = Math.max(upTo, state.lastSeq);
    send();
  };
})();

function renderTransferOptions() {
  const sel = $("transfer-select");
  const current = sel.value;
  const others = state.agents.filter((a) => a.id !== me?.id);
  sel.replaceChildren(el("option", { value: "queue", text: "Queue" }), ...others.map((a) => el("option", {
    value: a.id, disabled: a.status !== "online",
    text: `${a.name} (${a.status})`,
  })));
  if ([...sel.options].some((o) => o.value === current && !o.disabled)) sel.value = current;
}
$("transfer-select").addEventListener("focus", () => loadAgents().catch(() => {}));

// compose and typing
$("compose-input").addEventListener("input", () => {
  if (state.selected && $("compose-input").value) client.typing(state.selected);
  updateSuggestions();
});
$("compose-input").addEventListener("keydown", (e) => {
  if (suggestionKey(e)) return;
  // Enter sends, Shift+Enter adds a line (not while an input method composes).
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("compose").requestSubmit();
  }
});
$("compose-input").addEventListener("click", () => updateSuggestions());
$("compose-input").addEventListener("blur", () => {
  closeSuggestions();
  if (state.selected) client?.stopTyping(state.selected);
});
$("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = state.selected;
  const body = $("compose-input").value.trim();
  if (!id || !body) return;
  $("compose-input").value = "";
  closeSuggestions();
  client.stopTyping(id);
  try {
    const m = await client.send(id, body);
    if (state.selected === id) onMessage({ message: m });
  } catch (err) {
    if (state.selected === id && !$("compose-input").value) $("compose-input").value = body;
    fail("Not sent")(err);
  }
});

$("note-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = state.selected;
  const body = $("note-input").value.trim();
  if (!id || !body) return;
  $("note-add").disabled = true;
  try {
    const n = await client.addNote(id, body);
    $("note-input").value = "";
    if (state.selected === id) addNote(n);
  } catch (err) {
    fail("Note not added")(err);
  } finally {
    $("note-add").disabled = false;
  }
});

async function giveUp(action, label) {
  const id = state.selected;
  if (!id) return;
  try {
    await action(id);
    state.inbox.delete(id);
    closeConversation();
    toast(label);
    refreshInbox();
  } catch (e) {
    fail("Not done")(e);
  }
}

$("transfer-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const to = $("transfer-select").value;
  const note = $("transfer-note").value.trim();
  const name = to === "queue" ? "the queue" : state.agents.find((a) => a.id === to)?.name ?? "an agent";
  // The server keeps the hand-over note as an internal note (agents only).
  giveUp((id) => client.transfer(id, to, note || undefined), `Transferred to ${name}`).then(() => {
    $("transfer-note").value = "";
  });
});
$("decline").addEventListener("click", () => giveUp((id) => client.decline(id), "Declined"));
$("resolve").addEventListener("click", async () => {
  const id = state.selected;
  try {
    await client.resolve(id);
    state.inbox.delete(id);
    renderInbox();
    if (state.selected === id) await loadConversation(id);
  } catch (e) {
    fail("Cannot resolve")(e);
  }
});
$("claim").addEventListener("click", () => state.selected && claim(state.selected));
$("back").addEventListener("click", () => closeConversation());

// ----- search and history -----
//
// The project's conversations, resolved ones included, by customer name or email and by
// message text (the server's full-text search), as you type (debounced). Down arrow moves
// from the box into the results, Up and Down move between them, Escape clears. A result
// opens the conversation (read-only when resolved).

const SEARCH_DELAY_MS = 250;

function clearSearch() {
  state.search = { q: "", status: "", hits: [], cursor: null, request: state.search?.request ?? 0 };
  if ($("search-input")) $("search-input").value = "";
  renderSearch();
}

/** Whether the search shows results (some text or a status filter). */
const searching = () => state.search.q !== "" || state.search.status !== "";

async function runSearch({ more = false } = {}) {
  if (!client) return;
  const q = $("search-input").value.trim();
  const status = $("search-status").value;
  const request = ++state.search.request;
  if (!more) {
    state.search.q = q;
    state.search.status = status;
  }
  if (!searching()) {
    state.search.hits = [];
    state.search.cursor = null;
    renderSearch();
    return;
  }
  $("search-summary").textContent = "Searching…";
  try {
    const page = await client.search(state.search.q, {
      status: state.search.status || undefined,
      cursor: more ? state.search.cursor ?? undefined : undefined,
    });
    if (request !== state.search.request) return; // an older answer
    state.search.hits = more ? state.search.hits.concat(page.hits) : page.hits;
    state.search.cursor = page.next_cursor ?? null;
    renderSearch();
  } catch (e) {
    if (request !== state.search.request) return;
    $("search-summary").textContent = `Cannot search: ${e?.message ?? e}`;
  }
}
const searchSoon = debounce(() => runSearch(), SEARCH_DELAY_MS);

/** `text` as nodes with the query's words (where a word starts with one) in `<mark>`. */
export function highlighted(text, q) {
  const words = q.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  if (!words.length) return [document.createTextNode(text)];
  const out = [];
  const re = /[\p{L}\p{N}]+/gu;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const w = m[0].toLowerCase();
    const hit = words.find((x) => w.startsWith(x));
    if (!hit) continue;
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    out.push(el("mark", { text: m[0].slice(0, hit.length) }));
    last = m.index + hit.length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

const STATUS_TEXT = { bot: "with the bot", queued: "queued", assigned: "assigned", resolved: "resolved" };

function renderSearch() {
  const { hits, cursor, q } = state.search;
  const list = $("search-results");
  const active = searching();
  list.hidden = !active || hits.length === 0;
  $("search-more").hidden = !active || !cursor;
  $("search-summary").textContent = !active ? ""
    : hits.length === 0 ? "No conversations found."
      : `${hits.length}${cursor ? "+" : ""} conversation${hits.length === 1 ? "" : "s"} found`;
  list.replaceChildren(...hits.map((h) => {
    const c = h.conversation;
    const name = customerName(c);
    const status = STATUS_TEXT[c.status] ?? c.status;
    const snippet = h.snippet ?? "";
    return el("li", { class: "item search-result", "data-testid": "search-result", dataset: { conversationId: c.id, status: c.status } },
      el("button", {
        type: "button", class: "item-main",
        onclick: () => select(c.id),
        onkeydown: (e) => moveInResults(e),
      },
      el("span", { class: "name", text: h.customer_email ? `${name} · ${h.customer_email}` : name }),
      el("span", { class: "badge status", dataset: { status: c.status }, text: status }),
      el("span", { class: "snippet", "data-testid": "search-snippet" }, ...highlighted(snippet, h.match === "message" ? q : "")),
      el("time", { class: "when", text: new Date(c.updated_at).toLocaleString() })));
  }));
}

/** Up and Down between results (and back to the box), Escape back to the box. */
function moveInResults(e) {
  const buttons = [...$("search-results").querySelectorAll("button")];
  const i = buttons.indexOf(e.target);
  if (e.key === "ArrowDown") buttons[i + 1]?.focus();
  else if (e.key === "ArrowUp") (buttons[i - 1] ?? $("search-input")).focus();
  else if (e.key === "Escape") $("search-input").focus();
  else return;
  e.preventDefault();
}

$("search-input").addEventListener("input", () => searchSoon());
$("search-status").addEventListener("change", () => runSearch());
$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  runSearch();
});
$("search-input").addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown") {
    const first = $("search-results").querySelector("button");
    if (first) {
      e.preventDefault();
      first.focus();
    }
  } else if (e.key === "Escape" && $("search-input").value) {
    e.preventDefault();
    $("search-status").value = "";
    clearSearch();
  }
});
$("search-more").addEventListener("click", () => runSearch({ more: true }));

// ----- canned responses -----
//
// Typing `/` at the start of the reply or after a space opens the project's canned responses
// whose shortcut starts with what follows the slash (or whose text contains it), from the
// server's search. Arrow keys move, Enter or Tab insert the text in place of `/query`, Escape
// closes. `aria-activedescendant` on the textarea names the highlighted option.

const suggest = {
  /** Index of the `/` in the textarea, while the list is open (or loading). */
  slash: -1,
  /** The slash position whose list was closed with Escape: stays closed until a new slash. */
  dismissed: -1,
  items: [],
  active: -1,
  /** Answers of older searches are dropped. */
  request: 0,
};

/** The `/query` before the caret: `{ slash, query }`, or null. */
export function slashQuery(value, caret) {
  const m = /(^|\s)\/([^\s/]*)$/.exec(value.slice(0, caret));
  return m ? { slash: m.index + m[1].length, query: m[2] } : null;
}

/** `value` with `/query` (from `slash` to `caret`) replaced by `text`; the new caret. */
export function insertCanned(value, slash, caret, text) {
  return { value: value.slice(0, slash) + text + value.slice(caret), caret: slash + text.length };
}

const searchCanned = debounce(async (query, slash) => {
  const request = ++suggest.request;
  let items;
  try {
    items = await client.listCannedResponses(query || undefined);
  } catch (e) {
    console.warn("canned responses", e);
    return;
  }
  // Still the same `/query`?
  const input = $("compose-input");
  const now = slashQuery(input.value, input.selectionStart);
  if (request !== suggest.request || !now || now.slash !== slash || now.query !== query || document.activeElement !== input) return;
  showSuggestions(items.slice(0, 8), slash);
}, 80);

function updateSuggestions() {
  const input = $("compose-input");
  const q = client && !input.disabled ? slashQuery(input.value, input.selectionStart) : null;
  if (!q || q.slash === suggest.dismissed) {
    if (!q) suggest.dismissed = -1;
    closeSuggestions();
    return;
  }
  suggest.slash = q.slash;
  searchCanned(q.query, q.slash);
}

function showSuggestions(items, slash) {
  const list = $("canned-suggestions");
  // The highlighted one stays highlighted when a later answer still has it.
  const was = suggest.items[suggest.active]?.id;
  const keep = Math.max(0, items.findIndex((c) => c.id === was));
  suggest.items = items;
  suggest.slash = slash;
  if (!items.length) {
    closeSuggestions();
    suggest.slash = slash;
    return;
  }
  list.replaceChildren(...items.map((c, i) => el("li", {
    id: `canned-option-${i}`, role: "option", "aria-selected": "false", "data-testid": "canned-option",
    dataset: { shortcut: c.shortcut },
    // mousedown: before the textarea's blur closes the list.
    onmousedown: (e) => { e.preventDefault(); pickSuggestion(i); },
  }, el("span", { class: "shortcut", text: `/${c.shortcut}` }), el("span", { class: "preview", text: c.content }))));
  list.hidden = false;
  $("canned-status").textContent = `${items.length} canned ${items.length === 1 ? "response" : "responses"}: up and down arrows to choose, Enter to insert`;
  highlight(keep);
}

function highlight(i) {
  const options = [...$("canned-suggestions").children];
  suggest.active = options.length ? (i + options.length) % options.length : -1;
  options.forEach((o, j) => o.setAttribute("aria-selected", String(j === suggest.active)));
  const active = options[suggest.active];
  if (active) {
    $("compose-input").setAttribute("aria-activedescendant", active.id);
    active.scrollIntoView({ block: "nearest" });
  } else {
    $("compose-input").removeAttribute("aria-activedescendant");
  }
}

function closeSuggestions() {
  suggest.request++;
  suggest.slash = -1;
  suggest.items = [];
  suggest.active = -1;
  $("canned-suggestions").hidden = true;
  $("canned-suggestions").replaceChildren();
  $("canned-status").textContent = "";
  $("compose-input").removeAttribute("aria-activedescendant");
}

function pickSuggestion(i) {
  const c = suggest.items[i];
  const input = $("compose-input");
  if (!c || suggest.slash < 0) return;
  const r = insertCanned(input.value, suggest.slash, input.selectionStart, c.content);
  input.value = r.value;
  input.setSelectionRange(r.caret, r.caret);
  closeSuggestions();
  input.focus();
  if (state.selected) client.typing(state.selected);
}

/** The list's keys; true when the key was for it. */
function suggestionKey(e) {
  if ($("canned-suggestions").hidden) return false;
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    highlight(suggest.active + (e.key === "ArrowDown" ? 1 : -1));
  } else if ((e.key === "Enter" || e.key === "Tab") && !e.shiftKey && !e.isComposing && suggest.active >= 0) {
    pickSuggestion(suggest.active);
  } else if (e.key === "Escape") {
    suggest.dismissed = suggest.slash;
    closeSuggestions();
  } else {
    return false;
  }
  e.preventDefault();
  return true;
}

// The management panel: list, add, edit, delete.

/** The canned response being edited (null: the form adds one). */
let editing = null;

async function loadCanned() {
  state.canned = await client.listCannedResponses();
  renderCanned();
}

function renderCanned() {
  $("canned-count").textContent = String(state.canned.length);
  $("canned-empty").hidden = state.canned.length > 0;
  $("canned-list").replaceChildren(...state.canned.map((c) => el("li", { "data-testid": "canned-item", dataset: { id: c.id } },
    el("span", { class: "shortcut", text: `/${c.shortcut}` }),
    el("span", { class: "preview", text: c.content, title: c.content }),
    el("button", { type: "button", class: "link", text: "Edit", "aria-label": `Edit /${c.shortcut}`, onclick: () => editCanned(c) }),
    el("button", { type: "button", class: "link", text: "Delete", "aria-label": `Delete /${c.shortcut}`, onclick: () => deleteCanned(c) }),
  )));
}

function editCanned(c) {
  editing = c;
  $("canned-shortcut").value = c?.shortcut ?? "";
  $("canned-content").value = c?.content ?? "";
  $("canned-save").textContent = c ? "Save" : "Add";
  $("canned-cancel").hidden = !c;
  $("canned-error").hidden = true;
  if (c) $("canned-shortcut").focus();
}

function cannedError(message) {
  $("canned-error").textContent = message;
  $("canned-error").hidden = false;
}

async function deleteCanned(c) {
  if (!confirm(`Delete the canned response /${c.shortcut}?`)) return;
  try {
    await client.deleteCannedResponse(c.id);
    if (editing?.id === c.id) editCanned(null);
    toast(`Deleted /${c.shortcut}`);
  } catch (e) {
    if (e?.code !== "not_found") fail("Cannot delete")(e);
  }
  loadCanned().catch(fail("Cannot load canned responses"));
}

$("canned-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const shortcut = $("canned-shortcut").value.trim().replace(/^\//, "");
  const content = $("canned-content").value;
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(shortcut)) return cannedError("The shortcut is 1 to 32 letters, digits, - or _.");
  if (!content.trim()) return cannedError("Write the text to insert.");
  $("canned-save").disabled = true;
  try {
    if (editing) await client.updateCannedResponse(editing.id, { shortcut, content });
    else await client.createCannedResponse({ shortcut, content });
    editCanned(null);
    await loadCanned();
  } catch (err) {
    cannedError(err?.code === "shortcut_taken" ? `/${shortcut} is taken: choose another shortcut.` : `Not saved: ${err?.message ?? err}`);
  } finally {
    $("canned-save").disabled = false;
  }
});
$("canned-cancel").addEventListener("click", () => editCanned(null));

// ----- attention: notifications, sound, title -----

attention.mountControls({ sound: $("sound-toggle"), enable: $("notify-enable") });

/** Back in the tab: the open conversation's messages are read now. */
function lookedBack() {
  if (attention.inBackground() || !state.selected) return;
  const item = state.inbox.get(state.selected);
  if (item?.unread) {
    item.unread = 0;
    renderInbox();
  }
  markRead();
}
document.addEventListener("visibilitychange", lookedBack);
window.addEventListener("focus", lookedBack);

// ----- start -----

async function boot() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin();
    return;
  }
  $("login-submit").disabled = true;
  try {
    await signIn({ token });
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(e?.code === "unauthorized" ? "Your session has expired. Please sign in again." : undefined);
  }
}

// For tests and debugging: the live client and my agent.
Object.defineProperty(window, "handoffConsole", { value: { get client() { return client; }, get me() { return me; }, state } });

boot();
