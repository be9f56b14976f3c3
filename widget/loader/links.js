// Which parts of a message's text are links: `linkParts(text)` -> [{ text }, { text, href }, ...]
// in order (joining every `text` gives the message back). The widget and the agent console build
// anchors from it with DOM nodes (`target="_blank"`, `rel="noopener noreferrer nofollow"`), never
// HTML. The one copy of the rule: `cargo xtask web` serves it as `/widget/handoff_widget_links.js`
// (and content-hashed, imported by the widget's loader); the console imports it from there.
//
// Only `http://`, `https://`, `mailto:` and `www.` (opened as `https://www.`) start a link, at the
// start of the text or after a character that is not a letter, digit or one of `@ . / : - _ +`
// (so `javascript:`, `data:` or `xhttp://` never link, nor the tail of `user@www.x.com`). A link
// runs to the next whitespace, control character, `<`, `>`, `"` or backtick; trailing
// punctuation and closing brackets without an opening one inside the link are left out. A web
// link needs a host of letters, digits, `-` and `.` (non-ASCII letters too) with a dot, or
// `localhost`, an optional port up to 65535 and no user info (`https://bank.com@evil.com` shows
// one host and opens another); a mail link needs `local@domain.tld`. Anything else stays text.

export const MAX_LINK_LENGTH = 2048;

const START = /(https?:\/\/|mailto:|www\.)/giu;
const WORD = /[\p{L}\p{N}@./:\-_+]/u;
const STOP = /[\s\p{Cc}<>"`]/u;
const LABEL = /^(?!-)[\p{L}\p{N}\p{M}-]+(?<!-)$/u;
const LOCAL = /^[\p{L}\p{N}!#$%&'*+\-/=^_{|}~.]+$/u;

function trimEnd(s) {
  const count = (t, c) => t.split(c).length - 1;
  for (;;) {
    const c = s.at(-1);
    const drop = c === undefined ? false
      : ".,;:!?'\"*".includes(c) ? true
        : c === ")" ? count(s, "(") < count(s, ")")
          : c === "]" ? count(s, "[") < count(s, "]")
            : c === "}" ? count(s, "{") < count(s, "}")
              : false;
    if (!drop) return s;
    s = s.slice(0, -1);
  }
}

function validHost(s) {
  const authority = s.split(/[/?#]/u, 1)[0];
  if (authority.includes("@")) return false;
  const colon = authority.lastIndexOf(":");
  const host = colon < 0 ? authority : authority.slice(0, colon);
  if (colon >= 0) {
    const port = authority.slice(colon + 1);
    if (!/^\d{1,5}$/u.test(port) || Number(port) > 65535) return false;
  }
  return host !== "" && host.split(".").every((l) => LABEL.test(l))
    && (host.includes(".") || host.toLowerCase() === "localhost");
}

function validMail(s) {
  const addr = s.split("?", 1)[0];
  const at = addr.indexOf("@");
  if (at <= 0) return false;
  const local = addr.slice(0, at);
  const domain = addr.slice(at + 1);
  return LOCAL.test(local) && !domain.includes("@") && domain.includes(".") && validHost(domain);
}

/** The link starting at `at`, if any: `{ end, href }`. */
function linkAt(text, at, prefix) {
  const rest = text.slice(at);
  const stop = rest.search(STOP);
  const link = trimEnd(stop < 0 ? rest : rest.slice(0, stop));
  const lower = prefix.toLowerCase();
  const skip = lower === "www." ? 0 : prefix.length;
  if (link.length <= skip || link.length > MAX_LINK_LENGTH) return null;
  const body = link.slice(skip);
  const ok = lower === "mailto:" ? validMail(body) : validHost(body);
  if (!ok) return null;
  return { end: at + link.length, href: lower === "www." ? `https://${link}` : link };
}

/** `text` as plain parts `{ text }` and links `{ text, href }`, in order. */
export function linkParts(text) {
  const parts = [];
  let plain = 0;
  START.lastIndex = 0;
  for (let m = START.exec(text); m; m = START.exec(text)) {
    const at = m.index;
    const prev = [...text.slice(Math.max(0, at - 2), at)].at(-1) ?? "";
    if (at < plain || WORD.test(prev)) continue;
    const link = linkAt(text, at, m[0]);
    if (!link) continue;
    if (plain < at) parts.push({ text: text.slice(plain, at) });
    parts.push({ text: text.slice(at, link.end), href: link.href });
    plain = link.end;
    START.lastIndex = link.end;
  }
  if (plain < text.length) parts.push({ text: text.slice(plain) });
  return parts;
}
