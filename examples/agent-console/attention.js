// Never miss a visitor: while the console is in a background tab (hidden, or the window without
// focus), a conversation entering the queue, one assigned to me, or a customer writing in one of
// mine raises a desktop notification (Notification API, permission asked on a click), plays a
// short sound (WebAudio, no asset; muted by a setting kept in localStorage), and the page title
// carries the unread total until the agent comes back. Clicking a notification focuses the tab
// and opens the conversation.
//
// No DOM of app.js is touched here except the two topbar controls passed to `mountControls`.

const SOUND_KEY = "handoff.console.sound";
const BASE_TITLE = document.title;

let audio = null;
let soundOn = localStorage.getItem(SOUND_KEY) !== "off";
/** Conversations that entered the queue while I was away (counted in the title). */
const waitingUnseen = new Set();
let unreadMine = 0;
/** Open notifications, by tag, to close them when the agent comes back. */
const shown = new Map();

/** Whether the agent is looking elsewhere: the tab hidden or the window without focus. */
export function inBackground() {
  return document.visibilityState === "hidden" || !document.hasFocus();
}

/** "(3) Handoff · Agent console": the title for `n` unread, the plain title for none. */
export function titleFor(n, base = BASE_TITLE) {
  return n > 0 ? `(${n > 99 ? "99+" : n}) ${base}` : base;
}

function renderTitle() {
  document.title = titleFor(unreadMine + waitingUnseen.size);
}

/** The unread total of my conversations (the inbox's counts), shown in the title. */
export function setUnread(n) {
  unreadMine = n;
  renderTitle();
}

/** A short two-tone chime; the AudioContext is made (or resumed) on a user gesture. */
function chime() {
  if (!soundOn || !audio) return false;
  if (audio.state === "suspended") audio.resume().catch(() => {});
  const t = audio.currentTime;
  const gain = audio.createGain();
  gain.gain.setValueAtTime(0.0001, t);
  gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.35);
  gain.connect(audio.destination);
  for (const [f, at] of [[880, 0], [1320, 0.12]]) {
    const o = audio.createOscillator();
    o.type = "sine";
    o.frequency.setValueAtTime(f, t + at);
    o.connect(gain);
    o.start(t + at);
    o.stop(t + at + 0.25);
  }
  return true;
}

function unlockAudio() {
  const Ctx = window.AudioContext ?? window.webkitAudioContext;
  if (!Ctx) return;
  if (!audio) {
    try {
      audio = new Ctx();
    } catch {
      return;
    }
  }
  if (audio.state === "suspended") audio.resume().catch(() => {});
}

const canNotify = () => "Notification" in window;

/**
 * Something happened that the agent should see. In the foreground nothing happens here (the
 * lists and toasts show it); in the background: a notification (when allowed), a sound (unless
 * muted) and, for the queue, a count in the title.
 * `kind`: "queued" | "assigned" | "message"; `open`: opens the conversation.
 */
export function notify({ kind, conversationId, title, body, open }) {
  if (!inBackground()) return false;
  if (kind === "queued") {
    waitingUnseen.add(conversationId);
    renderTitle();
  }
  chime();
  if (canNotify() && Notification.permission === "granted") {
    const tag = `handoff:${conversationId}`;
    shown.get(tag)?.close();
    let n;
    try {
      n = new Notification(title, { body: body?.slice(0, 180) ?? "", tag, renotify: true });
    } catch {
      return true; // e.g. Android Chrome wants a service worker; the sound and title still tell
    }
    shown.set(tag, n);
    n.onclick = (e) => {
      e?.preventDefault?.();
      window.focus();
      n.close();
      shown.delete(tag);
      open?.();
    };
    n.onclose = () => shown.get(tag) === n && shown.delete(tag);
  }
  return true;
}

/** A queued conversation was claimed or left the queue: no longer news. */
export function forgetQueued(ids) {
  let changed = false;
  for (const id of [...waitingUnseen]) {
    if (!ids.has(id)) {
      waitingUnseen.delete(id);
      changed = true;
    }
  }
  if (changed) renderTitle();
}

function back() {
  if (inBackground()) return;
  waitingUnseen.clear();
  renderTitle();
  for (const n of shown.values()) n.close();
  shown.clear();
}
document.addEventListener("visibilitychange", back);
window.addEventListener("focus", back);

/**
 * The topbar controls: a sound switch (a checkbox, kept in localStorage) and a button asking for
 * notification permission, shown while the browser has not been asked yet. Any click on the page
 * unlocks audio (browsers start an AudioContext only after a gesture).
 */
export function mountControls({ sound, enable }) {
  sound.checked = soundOn;
  sound.addEventListener("change", () => {
    soundOn = sound.checked;
    localStorage.setItem(SOUND_KEY, soundOn ? "on" : "off");
    if (soundOn) unlockAudio();
  });
  const showEnable = () => {
    enable.hidden = !canNotify() || Notification.permission !== "default";
  };
  showEnable();
  enable.addEventListener("click", async () => {
    unlockAudio();
    try {
      await Notification.requestPermission();
    } catch { /* older Safari: callback form; the button stays */ }
    showEnable();
  });
  document.addEventListener("pointerdown", unlockAudio, { capture: true });
  document.addEventListener("keydown", unlockAudio, { capture: true });
}

/** Reset on sign-out. */
export function reset() {
  waitingUnseen.clear();
  unreadMine = 0;
  for (const n of shown.values()) n.close();
  shown.clear();
  renderTitle();
}
