// The chat widget as site owners embed it: one script tag on a host page served from another
// origin than the server (so CORS and the project's origin allow-list are in play), a real
// server, Debian's Chromium. The agent side is the REST API, and the SDK's `AgentClient` in a
// page on the server's origin where the test needs live agent events (the customer's typing).

import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AgentApi, artifacts, axeViolations, eventually, launchBrowser, root, serveHostPage, serverBin, startServer } from "./harness.mjs";

const W = "handoff-widget";
let server;
let browser;
let host;
let api;

const hostPage = (server, { head = "", body = "", src } = {}) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shop</title>${head}</head>
<body><h1>Acme shop</h1><p>Tents and packs.</p>${body}
<script src="${src ?? `${server.base}/widget.js`}" data-project-key="${server.projectKey}"${src ? ` data-server="${server.base}"` : ""} async></script>
</body></html>`;

const AGGRESSIVE_CSS = `<style>
  * { font: italic 700 22px/3 "DejaVu Serif", serif !important; color: #c00 !important;
      letter-spacing: 3px !important; text-transform: uppercase !important; box-sizing: content-box !important; }
  button, textarea, input { background: #ff0 !important; border: 6px dashed #0f0 !important; padding: 20px !important; }
  ol, li, p, section, header, form, div { margin: 30px !important; padding: 10px !important; display: block !important; }
  h2 { font-size: 60px !important; }
</style>`;

before(async () => {
  // The allow-list needs the host page's origin, and the page needs the server's key: serve a
  // page that is filled in once the server runs.
  let html = "";
  const pages = {};
  host = await serveDynamic(() => html, pages);
  server = await startServer({ origins: [host.origin] });
  html = hostPage(server);
  pages["/aggressive"] = hostPage(server, { head: AGGRESSIVE_CSS });
  pages["/self-hosted-loader"] = hostPage(server, { src: "/widget.js" });
  pages["/widget.js"] = readFileSync(join(root, "widget/loader/widget.js"), "utf8");
  pages["/de"] = hostPage(server).replace(" async>", ' data-locale="de" async>');
  browser = await launchBrowser();
  api = await AgentApi.login(server.base, server.agent);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await host?.close();
});

/** A host server whose `/` is produced on each request, plus fixed extra paths (and CSP pages). */
async function serveDynamic(index, files) {
  const { createServer } = await import("node:http");
  const csp = new Map();
  const s = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const body = path === "/" ? index() : path.startsWith("/csp") ? index() : files[path];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    const headers = { "content-type": path.endsWith(".js") ? "text/javascript" : "text/html; charset=utf-8", "cache-control": "no-store" };
    if (csp.has(path)) headers["content-security-policy"] = csp.get(path);
    res.writeHead(200, headers).end(body);
  });
  await new Promise((ok) => s.listen(0, "127.0.0.1", ok));
  const origin = `http://localhost:${s.address().port}`;
  return {
    origin,
    url: `${origin}/`,
    csp,
    close: () => new Promise((ok) => { s.closeAllConnections(); s.close(ok); }),
  };
}

async function setStatus(status) {
  await api.call("PUT", "/api/agents/me/status", { status });
}

/** A fresh visitor (own storage) on the host page, with errors and warnings collected. */
async function visitor({ path = "/", contextOptions = {}, wait = true } = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  const problems = [];
  const warnings = [];
  let failed = 0;
  page.on("requestfailed", (r) => { if (/\/widget\/handoff_widget(\.[0-9a-f]{16})?\.js/.test(r.url())) failed += 1; });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "warning" && m.text().startsWith("Handoff")) warnings.push(m.text());
  });
  await page.goto(`${host.origin}${path}`);
  if (wait) await page.locator(`${W} .launcher`).waitFor();
  return { context, page, problems, warnings, failedImports: () => failed };
}

async function openChat(page) {
  await page.locator(`${W} .launcher`).click();
  await page.locator(`${W} .panel`).waitFor();
}

async function say(page, text) {
  await page.locator(`${W} .composer textarea`).fill(text);
  await page.keyboard.press("Enter");
}

const logText = (page) => page.locator(`${W} .log`).innerText();
const subText = (page) => page.locator(`${W} .sub`).innerText();

async function until(page, fn, what) {
  return eventually(async () => fn(await logText(page), await subText(page)), { what, timeout: 15_000 });
}

/** The conversation the agent was just given (newest in the inbox). */
async function assignedConversation() {
  const inbox = await eventually(async () => {
    const i = await api.call("GET", "/api/inbox");
    return i.length ? i : null;
  }, { what: "an inbox entry" });
  return inbox.map((e) => e.conversation).sort((a, b) => b.created_at - a.created_at)[0];
}

async function messages(id) {
  const page = await api.call("GET", `/api/conversations/${id}/events?after=0`);
  return page.events.filter((e) => e.event === "message:new").map((e) => e.payload.message);
}

test("chat: customer writes, the agent answers live, typing both ways, text never HTML, unread badge, reload keeps it", async () => {
  await setStatus("online");
  const { context, page, problems } = await visitor();
  await page.evaluate(() => {
    window.seen = [];
    window.Handoff.on("message:new", (p) => window.seen.push(p.message.body));
  });
  await openChat(page);
  assert.equal(await page.locator(`${W} .panel`).getAttribute("role"), "dialog");
  const hostile = `<img src=x onerror="window.pwned=1">Hi, is the tent waterproof?`;
  await say(page, hostile);
  await until(page, (log) => log.includes(hostile), "the message as text");
  await page.locator(`${W} .human`).click();
  await until(page, (_, sub) => sub.includes("You are chatting with Ada Agent"), "assignment");
  const conv = await assignedConversation();
  assert.deepEqual((await messages(conv.id)).map((m) => m.body), [hostile]);
  assert.equal(await page.locator(`${W} .log img`).count(), 0, "no element was made from the body");
  assert.equal(await page.evaluate(() => window.pwned), undefined);

  // The agent watches the conversation with the SDK (from a page on the server's origin).
  const agentPage = await context.newPage();
  await agentPage.goto(`${server.base}/healthz`);
  await agentPage.evaluate(async ([email, password, id]) => {
    const { createAgentClient } = await import("/sdk/index.js");
    const agent = await createAgentClient({ baseUrl: location.origin });
    await agent.login(email, password);
    window.typing = [];
    agent.on("typing", (p) => window.typing.push(p));
    agent.subscribeConversation(id);
  }, [server.agent.email, server.agent.password, conv.id]);
  // Keep typing until the agent (whose join may still be on its way) sees it: the widget sends
  // `typing` at most every 300 ms while keys come.
  const input = page.locator(`${W} .composer textarea`);
  await eventually(async () => {
    await input.press("a");
    return agentPage.evaluate(() => window.typing.some((t) => t.is_typing && t.actor.kind === "customer"));
  }, { what: "customer typing at the agent", interval: 350 });
  await input.fill("");

  // Agent typing shows, and goes by the 3 s rule when no message follows.
  await api.call("POST", `/api/conversations/${conv.id}/typing`, { is_typing: true });
  const typing = page.locator(`${W} .typing`);
  await eventually(async () => (await typing.isVisible()) && (await typing.innerText()) === "Ada Agent is typing…", { what: "agent typing" });
  await eventually(async () => !(await typing.isVisible()), { what: "typing cleared after 3 s", timeout: 6_000 });
  await api.call("POST", `/api/conversations/${conv.id}/typing`, { is_typing: true });
  await eventually(() => typing.isVisible(), { what: "agent typing again" });
  await api.call("POST", `/api/conversations/${conv.id}/messages`, { body: "Yes, 3000 mm. <b>bold?</b>", client_msg_id: "e2e-1" });
  await until(page, (log) => log.includes("Yes, 3000 mm. <b>bold?</b>"), "the agent's answer");
  assert.equal(await typing.isVisible(), false, "a message clears the typing indicator");
  assert.ok((await page.evaluate(() => window.seen)).includes("Yes, 3000 mm. <b>bold?</b>"), "Handoff.on sees events");

  // Minimized: the badge counts what arrives, opening clears it.
  await page.locator(`${W} .min`).click();
  await api.call("POST", `/api/conversations/${conv.id}/messages`, { body: "Anything else?", client_msg_id: "e2e-2" });
  await api.call("POST", `/api/conversations/${conv.id}/messages`, { body: "I am here if you need me.", client_msg_id: "e2e-3" });
  const badge = page.locator(`${W} .badge`);
  await eventually(async () => (await badge.isVisible()) && (await badge.innerText()) === "2", { what: "badge 2" });
  assert.match(await page.locator(`${W} .launcher`).getAttribute("aria-label"), /2 unread/);
  await page.screenshot({ path: join(artifacts, "widget-badge.png") });
  await openChat(page);
  assert.equal(await badge.isVisible(), false);
  await page.screenshot({ path: join(artifacts, "widget-chat.png") });

  // A reload continues the same conversation, nothing unread.
  await page.reload();
  await page.locator(`${W} .panel`).waitFor(); // it was open: it opens again
  await until(page, (log, sub) => log.includes("I am here if you need me.") && log.includes(hostile) && sub.includes("Ada Agent"), "history after reload");
  assert.equal((await logText(page)).split("Anything else?").length, 2, "each message once");
  assert.equal(await badge.isVisible(), false);
  await say(page, "Thanks, that is all");
  await eventually(async () => (await messages(conv.id)).some((m) => m.body === "Thanks, that is all"), { what: "the message after reload" });

  await api.call("POST", `/api/conversations/${conv.id}/resolve`, {});
  await until(page, (log, sub) => log.includes("The conversation was resolved.") && sub.includes("resolved"), "resolved");
  assert.deepEqual(problems, []);
  await context.close();
});

/** The agent's capacity, set with the project's secret key. */
async function setCapacity(capacity) {
  const r = await fetch(`${server.base}/api/agents/${server.agent.id}`, {
    method: "PATCH",
    headers: { authorization: `Bearer ${server.secretKey}`, "content-type": "application/json" },
    body: JSON.stringify({ capacity }),
  });
  assert.equal(r.status, 200, await r.text());
}

test("handoff to the queue: live positions for everyone waiting, claim, resolve", async () => {
  await setStatus("online"); // an agent online: the chat (not the offline form) is offered
  await setCapacity(0); // ...but with no free slot: handoffs queue
  const a = await visitor();
  const b = await visitor();
  for (const [v, text] of [[a, "I need a person (A)"], [b, "Me too (B)"]]) {
    await openChat(v.page);
    await say(v.page, text);
    await until(v.page, (log) => log.includes(text), "own message");
  }
  await a.page.locator(`${W} .human`).click();
  await until(a.page, (_, sub) => sub.includes("number 1 of 1"), "A first in the queue");
  await b.page.locator(`${W} .human`).click();
  await until(b.page, (_, sub) => sub.includes("number 2 of 2"), "B second");
  await until(a.page, (_, sub) => sub.includes("number 1 of 2"), "A sees the queue grow");
  assert.equal(await a.page.locator(`${W} .human`).isVisible(), false, "no second handoff");
  await a.page.screenshot({ path: join(artifacts, "widget-queued.png") });

  const { queue } = await api.call("GET", "/api/queue");
  assert.equal(queue.length, 2);
  await setCapacity(1); // a slot: the head of the queue is offered to the agent
  await eventually(async () => (await api.call("GET", `/api/conversations/${queue[0].conversation_id}`)).status === "assigned", { what: "A assigned" });
  await until(a.page, (log, sub) => sub.includes("You are chatting with Ada Agent") && log.includes("Ada Agent joined"), "A claimed");
  await until(b.page, (_, sub) => sub.includes("number 1 of 1"), "B moves up");
  await api.call("POST", `/api/conversations/${queue[0].conversation_id}/resolve`, {});
  await until(a.page, (_, sub) => sub.includes("resolved"), "A resolved");
  // Keyboard: Escape minimizes and gives the focus back to the launcher.
  await a.page.locator(`${W} .composer textarea`).focus();
  await a.page.keyboard.press("Escape");
  await eventually(async () => !(await a.page.locator(`${W} .panel`).isVisible()), { what: "minimized by Escape" });
  assert.equal(await a.page.evaluate(() => document.querySelector("handoff-widget").shadowRoot.activeElement?.className), "launcher");
  await a.page.keyboard.press("Enter");
  await a.page.locator(`${W} .panel`).waitFor();
  // Presence: B's page is open (online); closing it says offline by beacon at once.
  const bConv = queue[1].conversation_id;
  assert.equal((await api.call("GET", `/api/conversations/${bConv}`)).presence, "online");
  await b.page.close({ runBeforeUnload: true });
  await eventually(async () => (await api.call("GET", `/api/conversations/${bConv}`)).presence === "offline", { what: "offline on close" });
  // (Resolving A freed the slot: B may have been assigned already.)
  if ((await api.call("GET", `/api/conversations/${bConv}`)).status === "queued") {
    await api.call("POST", `/api/conversations/${bConv}/claim`, {});
  }
  await api.call("POST", `/api/conversations/${bConv}/resolve`, {});
  await setCapacity(3);
  await a.context.close();
  await b.context.close();
});

/** Makes `page` look hidden (or visible again) to the widget, as switching tabs does. */
async function setHidden(page, hidden) {
  await page.evaluate((hidden) => {
    Object.defineProperty(document, "visibilityState", { value: hidden ? "hidden" : "visible", configurable: true });
    Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
    document.dispatchEvent(new Event("visibilitychange"));
  }, hidden);
}

test("multi-tab presence: closing one tab keeps the customer online; all hidden is idle; all closed is offline", async () => {
  await setStatus("online");
  const first = await visitor();
  await openChat(first.page);
  await say(first.page, "Three tabs of the same shop");
  await until(first.page, (log) => log.includes("Three tabs of the same shop"), "own message");
  await first.page.locator(`${W} .human`).click();
  await until(first.page, (_, sub) => sub.includes("You are chatting with Ada Agent"), "assignment");
  const conv = await assignedConversation();
  const presence = async () => (await api.call("GET", `/api/conversations/${conv.id}`)).presence;
  // Two more tabs of the same visitor (same storage): they continue the conversation.
  const tabs = [first.page];
  for (let i = 0; i < 2; i += 1) {
    const page = await first.context.newPage();
    await page.goto(host.url);
    await page.locator(`${W} .launcher`).waitFor();
    tabs.push(page);
  }
  await eventually(async () => (await presence()) === "online", { what: "online" });
  // Close one tab (its beacon says offline for that tab only): still green.
  await tabs[0].close({ runBeforeUnload: true });
  for (let i = 0; i < 10; i += 1) {
    assert.equal(await presence(), "online", "another tab is still open");
    await new Promise((ok) => setTimeout(ok, 150));
  }
  // One of the two left is hidden: the visible one keeps it green.
  await setHidden(tabs[1], true);
  await new Promise((ok) => setTimeout(ok, 1000));
  assert.equal(await presence(), "online", "a hidden tab's idle does not override a visible tab");
  // Both hidden: yellow.
  await setHidden(tabs[2], true);
  await eventually(async () => (await presence()) === "idle", { what: "idle when every tab is hidden" });
  // Back to one, then none: grey.
  await tabs[1].close({ runBeforeUnload: true });
  await new Promise((ok) => setTimeout(ok, 500));
  assert.equal(await presence(), "idle");
  await tabs[2].close({ runBeforeUnload: true });
  await eventually(async () => (await presence()) === "offline", { what: "offline when every tab is closed" });
  await api.call("POST", `/api/conversations/${conv.id}/resolve`, {});
  await first.context.close();
});

test("availability is live: the offline form comes when the last agent leaves and goes when one comes back, without a reload", async () => {
  await setStatus("online");
  const { context, page, problems } = await visitor();
  await openChat(page);
  const form = page.locator(`${W} form.offline`);
  const composer = page.locator(`${W} .composer`);
  await composer.waitFor();
  await setStatus("offline");
  await eventually(async () => (await form.isVisible()) && !(await composer.isVisible()), { what: "offline form without reload" });
  assert.match(await subText(page), /away right now/);
  await page.screenshot({ path: join(artifacts, "widget-availability-offline.png") });
  await setStatus("online");
  await eventually(async () => (await composer.isVisible()) && !(await form.isVisible()), { what: "chat again without reload" });
  // Queued, then the last agent leaves: told so and offered the form, never left waiting.
  await setCapacity(0);
  await say(page, "Can a person help?");
  await until(page, (log) => log.includes("Can a person help?"), "own message");
  await page.locator(`${W} .human`).click();
  await until(page, (_, sub) => sub.includes("number 1"), "queued");
  await setStatus("offline");
  await eventually(async () => await form.isVisible(), { what: "the form for an unattended queue" });
  assert.match(await subText(page), /Nobody is available right now/);
  // An agent comes back and takes it: the chat.
  await setStatus("online");
  await setCapacity(3);
  await until(page, (_, sub) => sub.includes("You are chatting with Ada Agent"), "assigned");
  assert.equal(await composer.isVisible(), true);
  const conv = await assignedConversation();
  await api.call("POST", `/api/conversations/${conv.id}/resolve`, {});
  assert.deepEqual(problems, []);
  await context.close();
});

test("offline form when nobody is online: validated, a failed submit loses nothing, stored for agents", async () => {
  await setStatus("offline");
  const { context, page, problems } = await visitor();
  await openChat(page);
  const form = page.locator(`${W} form.offline`);
  await form.waitFor();
  assert.equal(await page.locator(`${W} .composer`).isVisible(), false);
  await form.locator("input[name=name]").fill("Zoe");
  await form.locator("input[name=email]").fill("zoe@example");
  await form.locator("textarea[name=message]").fill("Do you ship to Norway?");
  await form.locator("button[type=submit]").click();
  const error = form.locator(".error");
  await eventually(async () => (await error.isVisible()) && /valid email/.test(await error.innerText()), { what: "email error" });
  assert.equal(await form.locator("input[name=email]").getAttribute("aria-invalid"), "true");

  await form.locator("input[name=email]").fill("zoe@example.no");
  await page.route("**/offline-messages", (r) => r.abort("failed"), { times: 1 });
  await form.locator("button[type=submit]").click();
  await eventually(async () => /not sent/.test(await error.innerText()), { what: "failure shown" });
  assert.equal(await form.locator("textarea[name=message]").inputValue(), "Do you ship to Norway?", "nothing lost");
  await form.locator("button[type=submit]").click();
  const sent = page.locator(`${W} .sent`);
  await eventually(async () => (await sent.isVisible()) && /Thanks, Zoe!/.test(await sent.innerText()), { what: "confirmation" });
  await page.screenshot({ path: join(artifacts, "widget-offline-sent.png") });
  const stored = await api.call("GET", "/api/offline-messages");
  const mine = stored.filter((m) => m.email === "zoe@example.no");
  assert.equal(mine.length, 1, JSON.stringify(stored));
  assert.equal(mine[0].message, "Do you ship to Norway?");
  assert.deepEqual(problems, []);
  await context.close();
});

test("bad networks: the server goes away and comes back; a blocked WebSocket falls back to long-polling", async () => {
  await setStatus("online");
  const { context, page } = await visitor();
  await openChat(page);
  await say(page, "Hello before the outage");
  await page.locator(`${W} .human`).click();
  await until(page, (_, sub) => sub.includes("Ada Agent"), "assigned");
  const conv = await assignedConversation();

  await server.kill();
  const conn = page.locator(`${W} .conn`);
  await eventually(async () => (await conn.isVisible()) && /Reconnecting/.test(await conn.innerText()), { what: "reconnecting shown" });
  await say(page, "Written while the server was down");
  await server.restart();
  await api.call("POST", `/api/conversations/${conv.id}/messages`, { body: "Sent while you were away", client_msg_id: "e2e-net-1" });
  await until(page, (log) => log.includes("Sent while you were away"), "the message sent meanwhile");
  await eventually(async () => (await messages(conv.id)).some((m) => m.body === "Written while the server was down"), { what: "the outbox delivered" });
  await eventually(async () => !(await conn.isVisible()), { what: "notice gone once connected" });
  assert.equal(await page.locator(`${W} .msg.failed`).count(), 0);
  await context.close();

  // A network that blocks WebSockets: the widget polls instead, both ways keep working.
  await setStatus("online");
  const blocked = await browser.newContext();
  await blocked.routeWebSocket(/\/realtime\//, (ws) => ws.close());
  const page2 = await blocked.newPage();
  await page2.goto(host.url);
  await openChat(page2);
  await say(page2, "Behind a strict proxy");
  await page2.locator(`${W} .human`).click();
  await until(page2, (_, sub) => sub.includes("Ada Agent"), "assigned over REST");
  const conv2 = await assignedConversation();
  const conn2 = page2.locator(`${W} .conn`);
  await eventually(async () => (await conn2.isVisible()) && /slow/.test(await conn2.innerText()), { what: "fallback shown", timeout: 20_000 });
  await api.call("POST", `/api/conversations/${conv2.id}/messages`, { body: "Arrives by long-poll", client_msg_id: "e2e-net-2" });
  await until(page2, (log) => log.includes("Arrives by long-poll"), "message by long-poll");
  await say(page2, "And my answer goes out");
  await eventually(async () => (await messages(conv2.id)).some((m) => m.body === "And my answer goes out"), { what: "customer message while polling" });
  await blocked.close();
});

test("a strict Content-Security-Policy page runs the widget with no violation", async () => {
  await setStatus("online");
  const ws = server.base.replace(/^http/, "ws");
  host.csp.set("/csp", `default-src 'none'; script-src 'self' ${server.base} 'wasm-unsafe-eval'; connect-src ${server.base} ${ws}; style-src 'self'; img-src 'self'`);
  const context = await browser.newContext();
  await context.addInitScript(() => {
    window.violations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  await page.goto(`${host.origin}/csp`);
  await page.locator(`${W} .launcher`).waitFor();
  await openChat(page);
  await say(page, "Hello from a locked-down page");
  await page.locator(`${W} .msg.me:not(.sending)`).waitFor();
  const color = await page.locator(`${W} .launcher`).evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.equal(color, "rgb(37, 99, 235)", "the constructed stylesheet applies");
  assert.deepEqual(await page.evaluate(() => window.violations), []);
  assert.deepEqual(consoleErrors.filter((e) => /Content Security Policy/i.test(e)), []);
  await context.close();
});

test("aggressive host CSS does not change the widget (screenshots compared)", async () => {
  await setStatus("online");
  const shots = [];
  for (const path of ["/", "/aggressive"]) {
    const { context, page } = await visitor({ path, contextOptions: { viewport: { width: 1000, height: 760 } } });
    await openChat(page);
    await page.locator(`${W} .panel`).evaluate((p) => p.querySelector(".log").lastElementChild?.scrollIntoView());
    const panel = page.locator(`${W} .panel`);
    shots.push({ png: await panel.screenshot({ animations: "disabled", caret: "hide" }), box: await panel.boundingBox() });
    await page.screenshot({ path: join(artifacts, `widget-host${path === "/" ? "-plain" : "-aggressive"}.png`) });
    await context.close();
  }
  assert.deepEqual(shots[1].box, shots[0].box, "same size and place");
  // Compare pixels in a browser canvas (no image library needed).
  const page = await browser.newPage();
  const diff = await page.evaluate(async ([a, b]) => {
    const load = async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = new OffscreenCanvas(img.width, img.height);
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      return ctx.getImageData(0, 0, img.width, img.height).data;
    };
    const [x, y] = await Promise.all([load(a), load(b)]);
    let differing = 0;
    for (let i = 0; i < x.length; i += 4) {
      if (Math.abs(x[i] - y[i]) + Math.abs(x[i + 1] - y[i + 1]) + Math.abs(x[i + 2] - y[i + 2]) > 24) differing += 1;
    }
    return differing / (x.length / 4);
  }, [shots[0].png.toString("base64"), shots[1].png.toString("base64")]);
  await page.close();
  // Only the rounded corners may show the (different) page behind them.
  assert.ok(diff < 0.002, `${(diff * 100).toFixed(2)} % of the panel's pixels differ`);
});

test("mobile viewport (390 px): the chat fills the screen and works", async () => {
  await setStatus("online");
  const { context, page } = await visitor({ contextOptions: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true } });
  await openChat(page);
  const box = await page.locator(`${W} .panel`).boundingBox();
  assert.deepEqual([box.x, box.y, box.width, box.height], [0, 0, 390, 844]);
  const input = await page.locator(`${W} .composer textarea`).boundingBox();
  assert.ok(input.y + input.height <= 844 && input.width > 200, JSON.stringify(input));
  await say(page, "Typed on a phone");
  await page.locator(`${W} .msg.me:not(.sending)`).waitFor();
  await page.screenshot({ path: join(artifacts, "widget-mobile.png") });
  await page.locator(`${W} .min`).tap();
  await page.locator(`${W} .launcher`).waitFor();
  assert.equal(await page.locator(`${W} .panel`).isVisible(), false);
  await context.close();
});

test("server down: the loader never breaks the page, warns once, and the widget comes up when the server returns", async () => {
  await server.kill();
  let v;
  try {
    v = await visitor({ path: "/self-hosted-loader", wait: false });
    assert.equal(await v.page.locator("h1").innerText(), "Acme shop", "the page renders");
    // Let the loader try (and fail) twice: still no launcher, still one warning.
    await eventually(() => v.failedImports() >= 2, { what: "two failed loads", timeout: 15_000 });
    assert.equal(await v.page.locator(`${W} .launcher`).count(), 0);
    assert.equal(await v.page.evaluate(() => typeof window.Handoff.open), "function", "window.Handoff at once");
    assert.equal(v.warnings.length, 1, JSON.stringify(v.warnings));
  } finally {
    await server.restart();
  }
  await v.page.locator(`${W} .launcher`).waitFor({ timeout: 20_000 });
  await v.page.evaluate(() => window.Handoff.open());
  await v.page.locator(`${W} .panel`).waitFor();
  assert.equal(v.warnings.length, 1, JSON.stringify(v.warnings));
  assert.deepEqual(v.problems, []);
  await v.context.close();
});

test("with a bot and nobody online: the chat opens with the bot; asking for a human offers the offline form", async () => {
  await setStatus("offline");
  const bot = await serveDynamic(() => "accepted", {}); // a bot backend that takes every delivery
  const setWebhook = (url) => fetch(`${server.base}/api/project/webhook`, {
    method: "PUT",
    headers: { authorization: `Bearer ${server.secretKey}`, "content-type": "application/json" },
    body: JSON.stringify({ url }),
  }).then((r) => assert.equal(r.status, 200));
  await setWebhook(bot.url);
  try {
    const { context, page } = await visitor();
    await openChat(page);
    await say(page, "Hi bot, where is my order?");
    await page.locator(`${W} .msg.me:not(.sending)`).waitFor();
    await page.locator(`${W} .human`).click();
    const form = page.locator(`${W} form.offline`);
    await form.waitFor();
    assert.match(await subText(page), /away/);
    await form.locator(".back").click();
    await page.locator(`${W} .composer`).waitFor();
    assert.match(await logText(page), /where is my order/);
    await context.close();
  } finally {
    await setWebhook(null);
    await bot.close();
  }
});

test("identity required: Handoff.identify() (even before the widget is up) verifies the visitor; others are refused", async () => {
  await setStatus("online");
  const out = execFileSync(serverBin, ["project", "set", "--project", server.projectId, "--identity", "required"], {
    env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    encoding: "utf8",
  });
  const secret = /identity_secret=(\S+)/.exec(out)[1];
  try {
    const verified = await visitor({ wait: false });
    const hmac = createHmac("sha256", secret).update("user-42").digest("hex");
    await verified.page.evaluate((hmac) => window.Handoff.identify({ user_id: "user-42", name: "Ann Lee", hmac }), hmac);
    await openChat(verified.page);
    await say(verified.page, "Signed in and verified");
    await verified.page.locator(`${W} .msg.me:not(.sending)`).waitFor();

    const stranger = await visitor();
    await openChat(stranger.page);
    await say(stranger.page, "Not signed in");
    await stranger.page.locator(`${W} .msg.me.failed`).waitFor();
    assert.match(await stranger.page.locator(`${W} .panel > .error`).innerText(), /Not sent/);
    assert.equal(await stranger.page.locator(`${W} .composer textarea`).inputValue(), "Not signed in", "text kept");
    await verified.context.close();
    await stranger.context.close();
  } finally {
    execFileSync(serverBin, ["project", "set", "--project", server.projectId, "--identity", "off"], {
      env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    });
  }
});

test("own messages: two identical quick sends each confirm their own bubble (by client_msg_id)", async () => {
  await setStatus("online");
  const { context, page } = await visitor();
  await openChat(page);
  await say(page, "Opening line");
  await page.locator(`${W} .msg.me:not(.sending)`).waitFor();
  // The first of the two is held back a little: with matching by text, its answer would confirm
  // the wrong bubble.
  let held = 0;
  await page.route("**/messages", async (r) => {
    if (held++ === 0) await new Promise((ok) => setTimeout(ok, 600));
    await r.continue();
  });
  await say(page, "Same words");
  await say(page, "Same words");
  await eventually(async () => (await page.locator(`${W} .msg.me:not(.sending):not(.failed)`).count()) === 3, { what: "both confirmed" });
  assert.equal(await page.locator(`${W} .msg.sending`).count(), 0);
  const convId = (await assignedOrAny(page));
  const bodies = (await messages(convId)).map((m) => m.body);
  assert.deepEqual(bodies.filter((b) => b === "Same words").length, 2, "each sent once");
  await context.close();
});

/** The widget's conversation id, from its client's storage key for the seen marker. */
async function assignedOrAny(page) {
  return eventually(async () => {
    const keys = await page.evaluate(() => Object.keys(localStorage));
    const k = keys.find((k) => k.startsWith("handoff.seen."));
    return k ? k.slice("handoff.seen.".length) : null;
  }, { what: "the conversation id" });
}

test("nothing typed is lost: written while the server is unreachable, kept over a reload, sent once", async () => {
  await setStatus("online");
  const { context, page } = await visitor();
  await openChat(page);
  await say(page, "Before the outage");
  await page.locator(`${W} .msg.me:not(.sending)`).waitFor();
  const convId = await assignedOrAny(page);
  // The server cannot be reached for sends.
  await context.route("**/messages", (r) => r.abort("internetdisconnected"));
  await say(page, "Typed while offline");
  await page.locator(`${W} .msg.me.sending`).waitFor();
  await eventually(async () => (await page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith("handoff.outbox.")))), { what: "outbox stored" });
  await page.reload();
  await openChatIfClosed(page);
  await page.locator(`${W} .msg.me.sending`).waitFor();
  assert.match(await page.locator(`${W} .msg.me.sending`).innerText(), /Typed while offline/);
  await context.unroute("**/messages");
  await eventually(async () => (await messages(convId)).some((m) => m.body === "Typed while offline"), { what: "delivered after the reload", timeout: 20_000 });
  await eventually(async () => (await page.locator(`${W} .msg.sending`).count()) === 0, { what: "confirmed" });
  await eventually(async () => !(await page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith("handoff.outbox.")))), { what: "outbox emptied" });
  await page.reload();
  await openChatIfClosed(page);
  await until(page, (log) => log.includes("Typed while offline"), "history after a reload");
  await new Promise((ok) => setTimeout(ok, 500));
  assert.equal((await messages(convId)).filter((m) => m.body === "Typed while offline").length, 1, "sent exactly once");
  assert.equal(await page.locator(`${W} .msg.sending`).count(), 0);

  // A message refused for good shows as failed with retry and discard, and does not block the next.
  await context.route("**/messages", async (r) => {
    if ((r.request().postData() ?? "").includes("Refuse me")) {
      await r.fulfill({ status: 422, contentType: "application/json", body: JSON.stringify({ error: { code: "validation_failed", message: "refused" } }) });
    } else {
      await r.continue();
    }
  });
  await say(page, "Refuse me");
  await say(page, "After the refused one");
  const failed = page.locator(`${W} .msg.me.failed`);
  await failed.waitFor();
  await eventually(async () => (await messages(convId)).some((m) => m.body === "After the refused one"), { what: "not blocked" });
  await context.unroute("**/messages");
  // Keyboard: focus Retry and press Enter.
  await failed.locator("button", { hasText: "Retry" }).focus();
  await page.keyboard.press("Enter");
  await eventually(async () => (await messages(convId)).filter((m) => m.body === "Refuse me").length === 1, { what: "retried" });
  await eventually(async () => (await failed.count()) === 0, { what: "failed bubble confirmed" });
  // Discard drops it, also from storage.
  await context.route("**/messages", (r) => r.fulfill({ status: 403, contentType: "application/json", body: JSON.stringify({ error: { code: "forbidden", message: "no" } }) }));
  await say(page, "Drop me");
  await failed.waitFor();
  await failed.locator("button", { hasText: "Discard" }).click();
  await eventually(async () => (await failed.count()) === 0, { what: "discarded" });
  assert.ok(!(await page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith("handoff.outbox.")))));
  await context.unroute("**/messages");
  await context.close();
});

async function openChatIfClosed(page) {
  await page.locator(`${W} .launcher`).waitFor();
  if (!(await page.locator(`${W} .panel`).isVisible())) await openChat(page);
}

test("history: a resolved conversation survives a reload and reopens; an identified user sees theirs on another device", async () => {
  await setStatus("online");
  const out = execFileSync(serverBin, ["project", "set", "--project", server.projectId, "--identity", "optional"], {
    env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    encoding: "utf8",
  });
  const secret = /identity_secret=(\S+)/.exec(out)[1];
  try {
    const hmac = (u) => createHmac("sha256", secret).update(u).digest("hex");
    const laptop = await visitor();
    await laptop.page.evaluate((h) => window.Handoff.identify({ user_id: "hist-user", hmac: h }), hmac("hist-user"));
    await openChat(laptop.page);
    await say(laptop.page, "Laptop question");
    await laptop.page.locator(`${W} .human`).click();
    await until(laptop.page, (_, sub) => sub.includes("Ada Agent"), "assigned");
    const convId = await assignedOrAny(laptop.page);
    await api.call("POST", `/api/conversations/${convId}/resolve`);
    await until(laptop.page, (_, sub) => sub.includes("resolved"), "resolved");
    // Reload: the resolved conversation is still there, and writing again reopens it.
    await laptop.page.reload();
    await openChatIfClosed(laptop.page);
    await until(laptop.page, (log, sub) => log.includes("Laptop question") && sub.includes("Write again to reopen"), "resolved after a reload");
    await say(laptop.page, "Reopening it");
    await eventually(async () => (await api.call("GET", `/api/conversations/${convId}`)).status === "bot", { what: "reopened" });
    await api.call("POST", `/api/conversations/${convId}/handoff`).catch(() => {});
    await api.call("POST", `/api/conversations/${convId}/resolve`).catch(() => {});

    // Another device, the same user: their transcript shows as an earlier conversation.
    const phone = await visitor();
    await phone.page.evaluate((h) => window.Handoff.identify({ user_id: "hist-user", hmac: h }), hmac("hist-user"));
    await openChat(phone.page);
    await until(phone.page, (log) => log.includes("Earlier conversation") && log.includes("Laptop question") && log.includes("Reopening it"), "transcript on the phone");
    // Another user on a fresh browser sees none of it.
    const other = await visitor();
    await other.page.evaluate((h) => window.Handoff.identify({ user_id: "someone-else", hmac: h }), hmac("someone-else"));
    await openChat(other.page);
    await new Promise((ok) => setTimeout(ok, 800));
    assert.ok(!(await logText(other.page)).includes("Laptop question"));
    for (const v of [laptop, phone, other]) await v.context.close();
  } finally {
    execFileSync(serverBin, ["project", "set", "--project", server.projectId, "--identity", "off"], {
      env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    });
  }
});

test("another user on the same browser: Handoff.identify for user B shows none of A's chat, B starts a new conversation, A's stays", async () => {
  await setStatus("online");
  const out = execFileSync(serverBin, ["project", "set", "--project", server.projectId, "--identity", "optional"], {
    env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    encoding: "utf8",
  });
  const secret = /identity_secret=(\S+)/.exec(out)[1];
  const hmac = (u) => createHmac("sha256", secret).update(u).digest("hex");
  const bodiesOf = async (id) =>
    (await api.call("GET", `/api/conversations/${id}/events?after=0`)).events
      .filter((e) => e.event === "message:new")
      .map((e) => e.payload.message.body);
  try {
    // User A signs in and chats with the agent; an answer arrives while the window is minimized.
    const v = await visitor();
    const { page } = v;
    await page.evaluate((h) => window.Handoff.identify({ user_id: "shared-a", hmac: h }), hmac("shared-a"));
    await openChat(page);
    await say(page, "A private question");
    await page.locator(`${W} .human`).click();
    await until(page, (_, sub) => sub.includes("Ada Agent"), "assigned");
    const convA = await assignedOrAny(page);
    await page.locator(`${W} .launcher`).click(); // minimize
    await api.call("POST", `/api/conversations/${convA}/messages`, { body: "Answer for A only", client_msg_id: "sw-1" });
    const badge = page.locator(`${W} .badge`);
    await eventually(async () => (await badge.isVisible()) && (await badge.innerText()) === "1", { what: "A's unread badge" });

    // User B signs in on the same page: nothing of A's is left, not even the badge.
    await page.evaluate((h) => window.Handoff.identify({ user_id: "shared-b", hmac: h }), hmac("shared-b"));
    await eventually(async () => !(await badge.isVisible()), { what: "badge cleared" });
    await openChat(page);
    let log = await logText(page);
    assert.ok(!log.includes("A private question") && !log.includes("Answer for A only"), log);
    await say(page, "B here");
    await until(page, (log) => log.includes("B here"), "B's message");
    const convB = await eventually(async () => {
      const keys = await page.evaluate(() => Object.keys(localStorage));
      const k = keys.find((k) => k.startsWith("handoff.seen.") && k !== `handoff.seen.${convA}`);
      return k ? k.slice("handoff.seen.".length) : null;
    }, { what: "B's conversation" });
    // A's conversation is untouched: the agent still has it, without B's message.
    assert.deepEqual(await bodiesOf(convA), ["A private question", "Answer for A only"]);
    const a = await api.call("GET", `/api/conversations/${convA}`);
    assert.notEqual(a.status, "resolved");
    assert.notEqual(convB, convA);
    const bodiesB = await bodiesOf(convB);
    assert.ok(bodiesB.includes("B here") && !bodiesB.includes("A private question"), String(bodiesB));

    // A reload with B still signed in: B's chat, none of A's.
    await page.reload();
    await page.evaluate((h) => window.Handoff.identify({ user_id: "shared-b", hmac: h }), hmac("shared-b"));
    await openChatIfClosed(page);
    await until(page, (log) => log.includes("B here"), "B's chat after a reload");
    await new Promise((ok) => setTimeout(ok, 800));
    log = await logText(page);
    assert.ok(!log.includes("A private question") && !log.includes("Answer for A only"), log);

    // A signs back in on this browser, the call queued before the widget is up: B's chat is
    // never shown, not even for a moment while the page loads.
    await page.reload({ waitUntil: "commit" });
    await page.waitForFunction(() => window.Handoff);
    await page.evaluate((h) => window.Handoff.identify({ user_id: "shared-a", hmac: h }), hmac("shared-a"));
    const seen = [];
    const deadline = Date.now() + 4000;
    while (Date.now() < deadline) {
      seen.push(await page.locator(`${W} .log`).innerText({ timeout: 200 }).catch(() => ""));
      await new Promise((ok) => setTimeout(ok, 50));
    }
    assert.ok(seen.every((t) => !t.includes("B here")), "B's chat shown to A");
    // A, identified on a new visitor, sees their own conversation as an earlier one.
    await openChatIfClosed(page);
    await until(page, (log) => log.includes("A private question") && !log.includes("B here"), "A's history, not B's");
    assert.deepEqual(await bodiesOf(convA), ["A private question", "Answer for A only"]);
    assert.deepEqual(v.problems, []);
    await v.context.close();
  } finally {
    execFileSync(serverBin, ["project", "set", "--project", server.projectId, "--identity", "off"], {
      env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    });
  }
});

test("first paint: the loader draws the launcher before the wasm is up; a click on it opens the chat once it is, one launcher throughout", async () => {
  const context = await browser.newContext();
  let release;
  const held = new Promise((ok) => (release = ok));
  await context.route(/\/widget\/handoff_widget_bg(\.[0-9a-f]{16})?\.wasm$/, async (route) => {
    await held;
    await route.continue();
  });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(host.url);
  const launcher = page.locator(`${W} .launcher`);
  await launcher.waitFor();
  assert.equal(await launcher.getAttribute("aria-label"), "Open chat");
  assert.equal(await launcher.evaluate((e) => getComputedStyle(e).backgroundColor), "rgb(37, 99, 235)", "the project's colour");
  await launcher.click(); // queued: the wasm is held back
  await page.waitForTimeout(300);
  assert.equal(await page.locator(`${W} .panel`).count(), 0, "no chat window before the wasm");
  // From now on, every frame shows exactly one launcher (no flicker, never two).
  await page.evaluate(() => {
    window.launcherCounts = new Set();
    const frame = () => {
      const shown = [...document.querySelectorAll("handoff-widget")]
        .flatMap((h) => [...h.shadowRoot.querySelectorAll(".launcher")])
        .filter((l) => l.getBoundingClientRect().width > 0);
      window.launcherCounts.add(shown.length);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  });
  release();
  await page.locator(`${W} .panel`).waitFor();
  await page.waitForTimeout(100);
  assert.deepEqual(await page.evaluate(() => [...window.launcherCounts]), [1]);
  assert.equal(await page.locator(W).count(), 1);
  assert.equal(await launcher.getAttribute("aria-expanded"), "true", "the widget's own launcher, open");
  await page.keyboard.press("Escape");
  await eventually(async () => !(await page.locator(`${W} .panel`).isVisible()), { what: "minimized by Escape" });
  assert.deepEqual(problems, []);
  await context.close();
});

test("read receipts, rating after resolve (asked once, also after a reload), no transcript button without email", async () => {
  // Earlier tests may leave conversations assigned to the agent: free their capacity.
  for (const { conversation: c } of await api.call("GET", "/api/inbox")) {
    if (c.status === "assigned") await api.call("POST", `/api/conversations/${c.id}/resolve`, {});
  }
  await setStatus("online");
  const { context, page, problems } = await visitor();
  await openChat(page);
  await say(page, "Is the blue tent in stock?");
  await until(page, (log) => log.includes("Is the blue tent in stock?"), "first message");
  await page.locator(`${W} .human`).click();
  await until(page, (_, sub) => sub.includes("You are chatting with Ada Agent"), "assignment");
  const conv = await assignedConversation();
  await say(page, "Size L please");
  const sent = await eventually(async () => (await messages(conv.id)).find((m) => m.body === "Size L please"), { what: "second message stored" });
  const seen = page.locator(`${W} .seen`);
  assert.equal(await seen.count(), 0, "nothing read yet");

  // The agent reads up to the first message: "Seen" under it; then everything: it moves.
  const first = (await messages(conv.id)).find((m) => m.body === "Is the blue tent in stock?");
  await api.call("POST", `/api/conversations/${conv.id}/read`, { seq: first.seq });
  await eventually(async () => (await seen.count()) === 1
    && (await page.locator(`${W} .msg.me`, { hasText: "Is the blue tent in stock?" }).locator(".seen").count()) === 1, { what: "Seen under the first message" });
  await api.call("POST", `/api/conversations/${conv.id}/read`, { seq: sent.seq });
  await eventually(async () => (await seen.count()) === 1
    && (await page.locator(`${W} .msg.me`, { hasText: "Size L please" }).locator(".seen").count()) === 1, { what: "Seen moved to the last message" });
  assert.equal(await seen.innerText(), "Seen");
  // A lower marker moves nothing back.
  await api.call("POST", `/api/conversations/${conv.id}/read`, { seq: first.seq });

  // Resolved: the rating prompt, five named buttons, a comment, then thanks.
  await api.call("POST", `/api/conversations/${conv.id}/resolve`, {});
  const rate = page.locator(`${W} .rate`);
  await rate.waitFor();
  assert.equal(await page.locator(`${W} .rate p`).first().innerText(), "How was this conversation?");
  for (const [n, name] of [[1, "1 star"], [5, "5 stars"]]) {
    assert.equal(await page.getByRole("button", { name }).count(), 1, `star ${n} has an accessible name`);
  }
  assert.equal(await page.locator(`${W} .mail`).isVisible(), false, "no email on this server: no transcript button");
  assert.equal(await page.locator(`${W} .rate [type=submit]`).isVisible(), false, "nothing to send before a star is picked");
  await page.getByRole("button", { name: "4 stars" }).click();
  assert.equal(await page.getByRole("button", { name: "4 stars" }).getAttribute("aria-pressed"), "true");
  assert.equal(await page.getByRole("button", { name: "5 stars" }).getAttribute("aria-pressed"), "false");
  await page.locator(`${W} .rate textarea`).fill("Quick answer, thanks");
  await page.locator(`${W} .rate [type=submit]`).click();
  await eventually(async () => (await logText(page)).includes("Thanks for your feedback!") && !(await rate.isVisible()), { what: "thanks" });
  const stored = await api.call("GET", `/api/conversations/${conv.id}`);
  assert.equal(stored.rating.rating, 4);
  assert.equal(stored.rating.comment, "Quick answer, thanks");
  await page.screenshot({ path: join(artifacts, "widget-rated.png") });

  // A reload of the rated conversation does not ask again; "Seen" is still there.
  await page.reload();
  await page.locator(`${W} .panel`).waitFor();
  await until(page, (log, sub) => log.includes("Size L please") && sub.includes("resolved"), "resolved after reload");
  await eventually(async () => (await seen.count()) === 1
    && (await page.locator(`${W} .msg.me`, { hasText: "Size L please" }).locator(".seen").count()) === 1, { what: "Seen after the reload" });
  assert.equal(await rate.isVisible(), false, "a rated conversation is not asked again");
  assert.deepEqual(problems, []);
  await context.close();
});

test("email on: the resolved chat offers the transcript by email, with an email field when no address is known", async () => {
  const sink = await startSmtpSink();
  const mailServer = await startServer({ env: { SMTP_URL: `smtp://127.0.0.1:${sink.port}`, SMTP_FROM: "Shop <shop@e2e.test>" } });
  const hostPage2 = await serveHostPage(hostPage(mailServer));
  const agent = await AgentApi.login(mailServer.base, mailServer.agent);
  const context = await browser.newContext();
  try {
    await agent.call("PUT", "/api/agents/me/status", { status: "online" });
    const page = await context.newPage();
    await page.goto(hostPage2.url);
    await page.locator(`${W} .launcher`).click();
    await say(page, "Please send me the transcript");
    await until(page, (log) => log.includes("Please send me the transcript"), "message");
    const mail = page.locator(`${W} .mail`);
    assert.equal(await mail.isVisible(), false, "only once resolved");
    await page.locator(`${W} .human`).click();
    await until(page, (_, sub) => sub.includes("chatting with"), "assigned");
    const [item] = await agent.call("GET", "/api/inbox");
    await agent.call("POST", `/api/conversations/${item.conversation.id}/resolve`, {});
    await mail.waitFor();
    const field = page.locator(`${W} .mail input`);
    assert.equal(await field.isVisible(), false, "no field until the server needs an address");
    const send = page.getByRole("button", { name: "Email transcript" });
    const note = page.locator(`${W} .mail p`);
    const asks = "Please enter a valid email address, like you@example.com.";
    // No address known: the field shows and asks for one.
    await send.click();
    await field.waitFor();
    await eventually(async () => (await note.innerText()) === asks, { what: "asked for an address" });
    assert.equal(await field.evaluate((e) => e.getRootNode().activeElement === e), true, "the field has the focus");
    // A bad address is refused with the same words, and nothing is mailed.
    await field.fill("dana@");
    await send.click();
    await eventually(async () => (await note.innerText()) === asks && (await send.isEnabled()), { what: "bad address refused" });
    await field.fill("dana@example.com");
    await send.click();
    await eventually(async () => (await note.innerText()) === "Transcript sent to dana@example.com.", { what: "sent note" });
    const got = await eventually(() => sink.mails.find((m) => m.to.includes("dana@example.com")), { what: "the mail at the sink" });
    assert.match(got.data, /Please send me the transcript/);
    assert.equal(sink.mails.length, 1, "one mail: the refused address got none");
    // A refusal (here the per-visitor limit on mail-sending requests, 4 in a few seconds) shows
    // the server's reason on the error line, and the confirmation goes.
    await send.click();
    await eventually(async () => /^Something went wrong \(too many .+\)\. Please try again\.$/.test(await page.locator(`${W} .panel > .error`).innerText())
      && (await send.isEnabled()), { what: "the refusal shown" });
    assert.equal(sink.mails.length, 1, "nothing mailed on a refusal");
    assert.equal(await note.innerText(), "", "no stale confirmation next to the error");
  } finally {
    await context.close();
    await hostPage2.close();
    await mailServer.stop();
    sink.close();
  }
});

/** A tiny SMTP server recording `{from, to, data}` of every mail (no TLS, no auth). */
async function startSmtpSink() {
  const { createServer: createTcp } = await import("node:net");
  const mails = [];
  const server = createTcp((socket) => {
    let buf = "";
    let mail = { from: "", to: [], data: "" };
    let inData = false;
    socket.write("220 sink ESMTP\r\n");
    socket.on("data", (chunk) => {
      buf += chunk.toString("utf8");
      let i;
      while ((i = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (line === ".") {
            inData = false;
            mails.push(mail);
            mail = { from: "", to: [], data: "" };
            socket.write("250 queued\r\n");
          } else {
            mail.data += `${line.startsWith(".") ? line.slice(1) : line}\n`;
          }
          continue;
        }
        const upper = line.toUpperCase();
        const addr = () => (line.match(/<([^>]*)>/) ?? [])[1] ?? "";
        if (upper.startsWith("EHLO") || upper.startsWith("HELO")) socket.write("250-sink\r\n250 8BITMIME\r\n");
        else if (upper.startsWith("MAIL FROM:")) { mail.from = addr(); socket.write("250 ok\r\n"); }
        else if (upper.startsWith("RCPT TO:")) { mail.to.push(addr()); socket.write("250 ok\r\n"); }
        else if (upper.startsWith("DATA")) { inData = true; socket.write("354 go on\r\n"); }
        else if (upper.startsWith("QUIT")) { socket.end("221 bye\r\n"); }
        else socket.write("250 ok\r\n");
      }
    });
    socket.on("error", () => {});
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { port: server.address().port, mails, close: () => server.close() };
}
// The visitor's language: every text of the window from a catalog, chosen by Handoff.setLocale(),
// the script tag's data-locale, the project's setting and the browser's languages, in that order.

const W_ = (page, sel) => page.locator(`${W} ${sel}`);
const placeholder = (page) => W_(page, ".composer textarea").getAttribute("placeholder");

test("language: data-locale=de shows the window in German; English visitors fetch no catalog", async () => {
  await setStatus("online");
  const catalogs = [];
  const de = await visitor({ path: "/de", wait: false });
  de.page.on("request", (r) => { if (r.url().includes("/widget/i18n/")) catalogs.push(r.url()); });
  const en = await visitor({ contextOptions: { locale: "en-US" } });
  const enCatalogs = [];
  en.page.on("request", (r) => { if (r.url().includes("/widget/i18n/")) enCatalogs.push(r.url()); });
  try {
    await eventually(async () => (await W_(de.page, ".launcher").getAttribute("aria-label")) === "Chat öffnen", { what: "a German launcher" });
    await openChat(de.page);
    assert.equal(await placeholder(de.page), "Nachricht schreiben…");
    assert.equal(await W_(de.page, ".min").getAttribute("aria-label"), "Chat minimieren");
    assert.equal(await W_(de.page, ".root").getAttribute("lang"), "de");
    assert.equal(await W_(de.page, ".root").getAttribute("dir"), "ltr");
    assert.equal(await W_(de.page, ".human").innerText(), "Mit einem Menschen sprechen");
    assert.equal(await W_(de.page, ".log").getAttribute("aria-label"), "Nachrichten");
    assert.deepEqual(de.problems, []);
    // The English page downloaded no catalog (checked after it had time to).
    await openChat(en.page);
    assert.equal(await placeholder(en.page), "Write a message…");
    assert.deepEqual(enCatalogs, []);
    // The catalog has a content-hashed name: browsers may cache it for a year.
    const url = await de.page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name).find((n) => n.includes("/widget/i18n/")));
    assert.match(url, /\/widget\/i18n\/de\.[0-9a-f]{16}\.json$/);
    const r = await fetch(url);
    assert.match(r.headers.get("cache-control"), /immutable/);
  } finally {
    await de.context.close();
    await en.context.close();
  }
});

test("language: Arabic from the browser's languages is right-to-left and mirrored", async () => {
  await setStatus("online");
  const ar = await visitor({ contextOptions: { locale: "ar-EG", viewport: { width: 1200, height: 800 } } });
  try {
    await eventually(async () => (await W_(ar.page, ".root").getAttribute("dir")) === "rtl", { what: "dir=rtl" });
    assert.equal(await W_(ar.page, ".launcher").getAttribute("aria-label"), "فتح الدردشة");
    const launcher = await W_(ar.page, ".launcher").boundingBox();
    assert.ok(launcher.x < 100, `the launcher sits in the left corner: ${launcher.x}`);
    await openChat(ar.page);
    assert.equal(await placeholder(ar.page), "اكتب رسالة…");
    const panel = await W_(ar.page, ".panel").boundingBox();
    assert.ok(panel.x < 100, `the window opens on the left: ${panel.x}`);
    await say(ar.page, "مرحبا");
    const mine = W_(ar.page, ".msg.me .body").last();
    await mine.waitFor();
    const box = await mine.boundingBox();
    const log = await W_(ar.page, ".log").boundingBox();
    assert.ok(box.x - log.x < 40, "own messages sit on the left (the end side in right-to-left)");
    assert.deepEqual(ar.problems, []);
  } finally {
    await ar.context.close();
  }
});

test("language: Handoff.setLocale() switches live (region tags fall back, unknown is English), and the project's setting applies", async () => {
  const v = await visitor({ contextOptions: { locale: "en-US" } });
  try {
    await openChat(v.page);
    assert.equal(await placeholder(v.page), "Write a message…");
    await v.page.evaluate(() => window.Handoff.setLocale("fr"));
    assert.equal(await placeholder(v.page), "Écrivez un message…");
    assert.equal(await W_(v.page, ".min").getAttribute("aria-label"), "Réduire le chat");
    await v.page.evaluate(() => window.Handoff.setLocale("pt-BR"));
    assert.equal(await placeholder(v.page), "Escreva uma mensagem…");
    await v.page.evaluate(() => window.Handoff.setLocale("ar"));
    assert.equal(await W_(v.page, ".root").getAttribute("dir"), "rtl");
    await v.page.evaluate(() => window.Handoff.setLocale("xx-YY"));
    assert.equal(await placeholder(v.page), "Write a message…", "unknown: the browser's language, English");
    assert.equal(await W_(v.page, ".root").getAttribute("dir"), "ltr");
    assert.deepEqual(v.problems, []);
  } finally {
    await v.context.close();
  }
  const cli = (locale) => execFileSync(serverBin, ["project", "set", "--project", server.projectId, "--locale", locale], {
    env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    encoding: "utf8",
  });
  assert.throws(() => cli("<script>"), /expected a language tag/);
  cli("es");
  try {
    const es = await visitor({ contextOptions: { locale: "de-DE" } });
    const de = await visitor({ path: "/de", contextOptions: { locale: "fr-FR" } });
    try {
      await openChat(es.page);
      assert.equal(await placeholder(es.page), "Escribe un mensaje…", "the project's setting over the browser's language");
      await openChat(de.page);
      assert.equal(await placeholder(de.page), "Nachricht schreiben…", "data-locale over the project's setting");
    } finally {
      await es.context.close();
      await de.context.close();
    }
  } finally {
    cli("auto");
  }
});

test("language: a key missing from a catalog shows in English", async () => {
  const context = await browser.newContext({ locale: "de-DE" });
  await context.route("**/widget/i18n/de.*.json", (route) =>
    route.fulfill({ contentType: "application/json", body: JSON.stringify({ _dir: "ltr", placeholder: "Schreib was…" }) }));
  const page = await context.newPage();
  try {
    await page.goto(host.url);
    await page.locator(`${W} .launcher`).waitFor();
    await eventually(async () => (await W_(page, ".root").getAttribute("lang")) === "de-DE", { what: "German chosen" });
    await openChat(page);
    assert.equal(await placeholder(page), "Schreib was…");
    assert.equal(await W_(page, ".min").getAttribute("aria-label"), "Minimize chat", "missing: English");
    assert.equal(await W_(page, ".composer .send").innerText(), "Send");
  } finally {
    await context.close();
  }
});

test("links: URLs in messages become safe links by the console's rule (one copy), built as DOM nodes", async () => {
  await setStatus("online");
  const v = await visitor();
  try {
    await openChat(v.page);
    const text = "Docs: https://example.com/a?b=1. Mail mailto:help@acme.test or www.acme.test, not javascript:alert(1), https://bank.com@evil.com or <b>bold</b>";
    await say(v.page, text);
    const body = W_(v.page, ".msg.me .body").last();
    await eventually(async () => (await body.innerText()) === text, { what: "the message" });
    const anchors = await body.locator("a").evaluateAll((as) => as.map((a) => [a.textContent, a.getAttribute("href"), a.target, a.rel]));
    const safe = ["_blank", "noopener noreferrer nofollow"];
    assert.deepEqual(anchors, [
      ["https://example.com/a?b=1", "https://example.com/a?b=1", ...safe],
      ["mailto:help@acme.test", "mailto:help@acme.test", ...safe],
      ["www.acme.test", "https://www.acme.test", ...safe],
    ]);
    assert.equal(await body.locator("b").count(), 0, "never HTML");
    // The rule the widget ran is the file the console imports.
    const served = await (await fetch(`${server.base}/widget/handoff_widget_links.js`)).text();
    const loaded = await v.page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name).find((n) => n.includes("handoff_widget_links.")));
    assert.equal(await (await fetch(loaded)).text(), served);
    assert.match(readFileSync(join(root, "examples/agent-console/app.js"), "utf8"), /from "\/widget\/handoff_widget_links\.js"/);
    assert.deepEqual(v.problems, []);
  } finally {
    await v.context.close();
  }
});

test("time: each message shows its time in the visitor's locale and time zone, with day separators (Today, Yesterday, a date)", async () => {
  await setStatus("online");
  const zone = "Asia/Tokyo";
  const v = await visitor({ contextOptions: { locale: "de-DE", timezoneId: zone } });
  try {
    await openChat(v.page);
    await say(v.page, "Wann kommt das Zelt?");
    const mine = W_(v.page, ".msg.me").last();
    await eventually(async () => !(await mine.getAttribute("class")).includes("sending"), { what: "the message confirmed" });
    // The time as the browser formats it there (German, Tokyo), from the message's own time.
    const expected = (ms) => new Intl.DateTimeFormat("de-DE", { timeStyle: "short", timeZone: zone }).format(ms);
    const shown = await mine.locator(".at").innerText();
    assert.match(shown, /^\d{2}:\d{2}$/, "24-hour German time");
    const now = Date.now();
    assert.ok([expected(now), expected(now - 60_000)].includes(shown), `${shown} is Tokyo time`);
    assert.deepEqual(await W_(v.page, ".log .day").allInnerTexts(), ["Heute"]);

    // The same thread a day later (the browser's clock moved on): "Gestern"; three days later: the date.
    await v.context.clock.setFixedTime(now + 86_400_000);
    await v.page.reload();
    await v.page.locator(`${W} .panel`).waitFor();
    await eventually(async () => (await W_(v.page, ".log .day").allInnerTexts()).join() === "Gestern", { what: "Gestern" });
    await v.context.clock.setFixedTime(now + 3 * 86_400_000);
    await v.page.reload();
    await v.page.locator(`${W} .panel`).waitFor();
    const date = new Intl.DateTimeFormat("de-DE", { dateStyle: "medium", timeZone: zone }).format(now);
    await eventually(async () => (await W_(v.page, ".log .day").allInnerTexts()).join() === date, { what: `the date ${date}` });
    assert.deepEqual(v.problems, []);
  } finally {
    await v.context.close();
  }
});

test("accessible: axe finds no violation in any state (chat, queued, assigned, resolved, offline form, right-to-left); keyboard: focus stays in the open window, Escape gives it back to the launcher", async () => {
  for (const { conversation: c } of await api.call("GET", "/api/inbox")) {
    if (c.status === "assigned") await api.call("POST", `/api/conversations/${c.id}/resolve`, {});
  }
  await setStatus("online");
  const v = await visitor({ contextOptions: { bypassCSP: true } });
  const check = async (state) => {
    const violations = await axeViolations(v.page, { include: W });
    assert.deepEqual(violations, [], `${state}: ${JSON.stringify(violations, null, 1)}`);
  };
  try {
    await check("closed");
    await openChat(v.page);
    await check("chat");
    await say(v.page, "I need a human, https://example.com/order/1");
    await v.page.locator(`${W} .human`).click();
    await until(v.page, (_, sub) => sub.includes("You are chatting with Ada Agent") || sub.includes("Waiting"), "queued or assigned");
    await check("handed over");
    const conv = await assignedConversation();
    await api.call("POST", `/api/conversations/${conv.id}/messages`, { body: "Hello! Let me look.", client_msg_id: "e2e-axe-1" });
    await until(v.page, (log) => log.includes("Let me look"), "the agent's answer");
    await check("assigned");
    await api.call("POST", `/api/conversations/${conv.id}/resolve`, {});
    await until(v.page, (_, sub) => sub.includes("resolved"), "resolved");
    await check("resolved");
    // Keyboard: Tab from the last control wraps to the first; Escape closes and focuses the launcher.
    const active = () => v.page.evaluate(() => document.querySelector("handoff-widget").shadowRoot.activeElement?.className ?? null);
    for (let i = 0; i < 12; i += 1) {
      await v.page.keyboard.press("Tab");
      const inside = await v.page.evaluate(() => {
        const root = document.querySelector("handoff-widget").shadowRoot;
        return !!root.activeElement && root.querySelector(".panel").contains(root.activeElement);
      });
      assert.ok(inside, `Tab ${i + 1} stays in the window`);
    }
    await v.page.keyboard.press("Shift+Tab");
    await v.page.keyboard.press("Escape");
    assert.equal(await active(), "launcher");
    // New messages are announced: the log is a polite live region.
    assert.equal(await W_(v.page, ".log").getAttribute("aria-live"), "polite");
    // The offline form and Arabic.
    await setStatus("offline");
    const off = await visitor({ contextOptions: { bypassCSP: true, locale: "ar" } });
    try {
      await off.page.locator(`${W} .launcher`).click();
      await W_(off.page, ".offline").waitFor();
      const violations = await axeViolations(off.page, { include: W });
      assert.deepEqual(violations, [], `offline form: ${JSON.stringify(violations, null, 1)}`);
    } finally {
      await off.context.close();
      await setStatus("online");
    }
  } finally {
    await v.context.close();
  }
});

test("sound and title: a new agent message while the window is minimized or the tab hidden chimes (unless the project turned it off) and counts in the title until seen", async () => {
  for (const { conversation: c } of await api.call("GET", "/api/inbox")) {
    if (c.status === "assigned") await api.call("POST", `/api/conversations/${c.id}/resolve`, {});
  }
  await setStatus("online");
  const projectSet = (...args) => execFileSync(serverBin, ["project", "set", "--project", server.projectId, ...args], {
    env: { ...process.env, DATABASE_URL: server.db, RUST_LOG: "warn" },
    encoding: "utf8",
  });
  const run = async (label) => {
    const v = await visitor({ wait: false });
    // Count the chimes: every oscillator the page starts.
    await v.page.evaluate(() => {
      window.chimes = 0;
      const make = AudioContext.prototype.createOscillator;
      AudioContext.prototype.createOscillator = function () {
        const o = make.call(this);
        const start = o.start.bind(o);
        o.start = (...a) => { window.chimes += 1; return start(...a); };
        return o;
      };
    });
    await v.page.locator(`${W} .launcher`).waitFor();
    await openChat(v.page);
    await say(v.page, `Hello (${label})`);
    await v.page.locator(`${W} .human`).click();
    await until(v.page, (_, sub) => sub.includes("You are chatting with Ada Agent"), "assignment");
    const conv = await assignedConversation();
    const post = (body) => api.call("POST", `/api/conversations/${conv.id}/messages`, { body, client_msg_id: `${label}-${body}` });
    // Open and visible: no sound, the title stays.
    await post("one");
    await until(v.page, (log) => log.includes("one"), "one");
    assert.equal(await v.page.title(), "Shop");
    // Minimized: the count goes into the title; restored exactly when the window opens.
    await v.page.locator(`${W} .min`).click();
    await post("two");
    await eventually(async () => (await v.page.title()) === "(1) Shop", { what: "(1) Shop" });
    await post("three");
    await eventually(async () => (await v.page.title()) === "(2) Shop", { what: "(2) Shop" });
    const chimes = await v.page.evaluate(() => window.chimes);
    await openChat(v.page);
    await eventually(async () => (await v.page.title()) === "Shop", { what: "the title back" });
    // Open in a hidden tab: counted until the tab is shown again.
    await v.page.evaluate(() => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await post("four");
    await eventually(async () => (await v.page.title()) === "(1) Shop", { what: "(1) Shop while hidden" });
    await v.page.evaluate(() => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await eventually(async () => (await v.page.title()) === "Shop", { what: "the title back when shown" });
    await api.call("POST", `/api/conversations/${conv.id}/resolve`, {});
    assert.deepEqual(v.problems, []);
    await v.context.close();
    return chimes;
  };
  assert.ok((await run("on")) >= 1, "a chime while minimized");
  projectSet("--sound", "off");
  try {
    assert.equal(await run("off"), 0, "no chime when the project turned the sound off");
  } finally {
    projectSet("--sound", "on");
  }
});
