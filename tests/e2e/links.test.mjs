// The link rule of the widget and the console (widget/loader/links.js), without a browser: which parts of a
// message become links, and that hostile or broken input stays text.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_LINK_LENGTH, linkParts } from "../../widget/loader/links.js";

const links = (text) => linkParts(text).filter((p) => p.href).map((p) => [p.text, p.href]);

test("the parts give the text back", () => {
  for (const text of ["", "plain", "see https://a.com/x. ok", "www.a.com", "é https://ü.de/ä (x)", "mailto:a@b.co?subject=hi!", "😀https://a.com 😀 https://b.com"]) {
    assert.equal(linkParts(text).map((p) => p.text).join(""), text);
  }
});

test("web, mail and www links", () => {
  assert.deepEqual(links("see https://example.com/a?b=1#c now"), [["https://example.com/a?b=1#c", "https://example.com/a?b=1#c"]]);
  assert.deepEqual(links("HTTP://EXAMPLE.COM"), [["HTTP://EXAMPLE.COM", "HTTP://EXAMPLE.COM"]]);
  assert.deepEqual(links("go to www.example.com."), [["www.example.com", "https://www.example.com"]]);
  assert.deepEqual(links("mail mailto:ann@example.com"), [["mailto:ann@example.com", "mailto:ann@example.com"]]);
  assert.deepEqual(links("http://localhost:8080/x"), [["http://localhost:8080/x", "http://localhost:8080/x"]]);
  assert.deepEqual(links("two: https://a.io and https://b.io"), [["https://a.io", "https://a.io"], ["https://b.io", "https://b.io"]]);
  assert.deepEqual(links("😀https://a.com"), [["https://a.com", "https://a.com"]]);
});

test("trailing punctuation and brackets", () => {
  assert.deepEqual(links("(see https://a.com/x)"), [["https://a.com/x", "https://a.com/x"]]);
  assert.deepEqual(links("https://en.wikipedia.org/wiki/Rust_(language)!"),
    [["https://en.wikipedia.org/wiki/Rust_(language)", "https://en.wikipedia.org/wiki/Rust_(language)"]]);
  assert.deepEqual(links("\"https://a.com\","), [["https://a.com", "https://a.com"]]);
  assert.deepEqual(links("<https://a.com>"), [["https://a.com", "https://a.com"]]);
});

test("hostile and broken input stays text", () => {
  for (const text of [
    "javascript:alert(1)", "JavaScript://example.com/%0aalert(1)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox", "xhttps://example.com", "file:///etc/passwd", "https://", "https://.", "https://-a.com",
    "https://a..com", "https://bank.com@evil.com/login", "https://a.com:99999", "https://a.com:x", "http://nodot",
    "www.", "mailto:", "mailto:nobody", "mailto:a@b", "ftp://example.com", "user@www.example.com",
  ]) {
    assert.deepEqual(links(text), [], text);
  }
  assert.deepEqual(links(`https://a.com/${"x".repeat(MAX_LINK_LENGTH)}`), []);
});

test("a link ends at markup characters", () => {
  assert.deepEqual(links("https://a.com/<img>"), [["https://a.com/", "https://a.com/"]]);
  assert.deepEqual(links("https://a.com/\"onmouseover=x"), [["https://a.com/", "https://a.com/"]]);
});
