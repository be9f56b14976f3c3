// The agent console (/console/, examples/agent-console) in Chromium against a real server, with
// customers on a host page of another origin that drives the SDK's HandoffClient directly (the
// widget is tested in its own suite). Each agent has their own browser context.

import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { AgentApi, artifacts, axeViolations, eventually, launchBrowser, serveHostPage, startServer } from "./harness.mjs";

let server;
let browser;
let host;

before(async () => {
  server = await startServer();
  // The customer's page: the SDK from the server (CORS), a HandoffClient on `window` and every
  // event it emits in `window.events`.
  host = await serveHostPage(`<!doctype html><meta charset="utf-8"><title>Customer</title>
<script type="module">
import { createClient } from "${server.base}/sdk/index.js";
window.events = [];
window.startCustomer = async (projectKey) => {
  const c = await createClient({ baseUrl: "${server.base}", projectKey });
  window.customer = c;
  c.on("*", (payload, name) => window.events.push({ name, payload }));
  return c.start();
};
</script>`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await host?.close();
});

// ----- helpers -----

const WIDE = { width: 1280, height: 800 };
const NARROW = { width: 390, height: 844 };

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `console-${name}.png`), fullPage: false });
}

/** A console in a fresh context, signed in as `agent`. */
async function openConsole(agent, { viewport = WIDE, init, base = server.base, bypassCSP = false } = {}) {
  const context = await browser.newContext({ viewport, bypassCSP });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`console page error (${agent.email}):`, e));
  if (process.env.CONSOLE_LOG) page.on("console", (m) => console.error(`[${agent.email}] ${m.type()}: ${m.text()}`));
  await page.goto(`${base}/console/`);
  await page.fill("#login-email", agent.email);
  await page.fill("#login-password", agent.password);
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  await eventually(async () => (await page.textContent("#connection")) === "connected", { what: "console connected" });
  return { context, page };
}

async function setStatus(page, status) {
  await page.selectOption("#status-select", status);
  await eventually(() => page.evaluate((s) => window.handoffConsole.me?.status === s, status), { what: `status ${status}` });
}

/** A customer on the host page with a started session. */
async function openCustomer() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("customer page error:", e));
  await page.goto(host.url);
  await page.waitForFunction(() => typeof window.startCustomer === "function");
  const session = await page.evaluate((key) => window.startCustomer(key), server.projectKey);
  return { context, page, session };
}

/** The customer starts a conversation with `body` and asks for a human; resolves to its id. */
async function handOff(customer, body) {
  return customer.page.evaluate(async (body) => {
    const c = await window.customer.startConversation(body);
    await window.customer.requestHandoff();
    return c.id;
  }, body);
}

const customerEvents = (customer, name) =>
  customer.page.evaluate((name) => window.events.filter((e) => e.name === name).map((e) => e.payload), name);

const queueItem = (page, id) => page.locator(`[data-testid=queue-item][data-conversation-id="${id}"]`);
const inboxItem = (page, id) => page.locator(`[data-testid=inbox-item][data-conversation-id="${id}"]`);
const messageTexts = (page) => page.locator("[data-testid=message] .body").allTextContents();

async function shown(locator, what) {
  await eventually(() => locator.isVisible(), { what });
}
async function gone(locator, what) {
  await eventually(async () => (await locator.count()) === 0, { what });
}

/** Makes the customer's page hidden or visible (the SDK reports a hidden page as idle). */
async function setVisible(customer, visible) {
  await customer.page.evaluate((visible) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (visible ? "visible" : "hidden") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => !visible });
    document.dispatchEvent(new Event("visibilitychange"));
  }, visible);
}

// ----- tests -----

test("login: a wrong password shows an error; the session survives a reload; sign out", async () => {
  const context = await browser.newContext({ viewport: WIDE });
  const page = await context.newPage();
  await page.goto(`${server.base}/console/`);
  await shot(page, "login");

  await page.fill("#login-email", server.agent.email);
  await page.fill("#login-password", "not-the-password");
  await page.click("#login-submit");
  await shown(page.locator("#login-error"), "login error");
  assert.match(await page.textContent("#login-error"), /wrong email or password/i);
  assert.ok(await page.locator("#app").isHidden());

  await page.fill("#login-password", server.agent.password);
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  assert.equal(await page.textContent("#me-name"), server.agent.name);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("handoff.console.token")?.length > 0), true);

  await page.reload();
  await page.waitForSelector("#app:not([hidden])");
  assert.equal(await page.textContent("#me-name"), server.agent.name);
  await eventually(async () => (await page.textContent("#connection")) === "connected", { what: "connected after reload" });

  const token = await page.evaluate(() => sessionStorage.getItem("handoff.console.token"));
  await page.click("#logout");
  await page.waitForSelector("#login-view:not([hidden])");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("handoff.console.token")), null);
  const me = await fetch(`${server.base}/api/agents/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(me.status, 401, "signing out revokes the token on the server");
  await page.reload();
  await page.waitForSelector("#login-view:not([hidden])");
  assert.ok(await page.locator("#app").isHidden());
  await context.close();
});

test("handoff, live queue and claim; messages, typing, presence, unread counts; notes stay internal", async () => {
  const ada = await openConsole(server.agent);
  const { page } = ada;
  // Away: a handoff goes to the queue instead of straight to me.
  await setStatus(page, "away");

  const customer = await openCustomer();
  const id = await handOff(customer, "Hi, my order 42 never arrived");

  // The queue updates live, with a waiting time.
  const item = queueItem(page, id);
  await shown(item, "queue entry");
  assert.match(await item.locator("[data-testid=queue-wait]").textContent(), /^waiting /);
  assert.match(await item.locator("[data-testid=queue-preview]").textContent(), /order 42/);

  await item.locator("[data-testid=queue-claim]").click();
  await gone(item, "queue entry gone after the claim");
  await shown(inboxItem(page, id), "inbox entry");
  await eventually(async () => (await messageTexts(page)).includes("Hi, my order 42 never arrived"), { what: "history shown" });
  await eventually(async () => /assigned to you/.test(await page.textContent("#conversation-status")), { what: "assigned badge" });
  await eventually(async () => (await customerEvents(customer, "conversation:assigned")).some((e) => e.agent.id === server.agent.id),
    { what: "customer told of the assignment" });

  // Agent typing reaches the customer; the reply arrives without a reload.
  await page.focus("#compose-input");
  await page.keyboard.type("Let me check");
  await eventually(async () => (await customerEvents(customer, "typing")).some((t) => t.actor.kind === "agent" && t.is_typing),
    { what: "agent typing at the customer" });
  await page.fill("#compose-input", "Hello, I am looking into it");
  await page.click("#compose-send");
  await eventually(async () => (await customerEvents(customer, "message:new")).some((e) => e.message.body === "Hello, I am looking into it"),
    { what: "agent message at the customer" });
  await eventually(async () => (await customerEvents(customer, "typing")).some((t) => t.actor.kind === "agent" && !t.is_typing),
    { what: "agent typing stopped at the customer" });
  assert.equal((await messageTexts(page)).filter((t) => t === "Hello, I am looking into it").length, 1);

  // Customer typing shows in the console; their message hides it.
  await customer.page.evaluate(() => window.customer.typing());
  await shown(page.locator("#typing"), "customer typing indicator");
  await customer.page.evaluate(() => window.customer.send("It was order 42, the blue one"));
  await eventually(async () => (await messageTexts(page)).includes("It was order 42, the blue one"), { what: "customer message live" });
  await eventually(() => page.locator("#typing").isHidden(), { what: "typing indicator hidden" });

  // An internal note: shown to agents, never to the customer.
  const secret = "VIP: refund approved by finance, do not tell yet";
  await page.fill("#note-input", secret);
  await page.click("#note-add");
  await eventually(async () => (await page.locator("[data-testid=note] .body").allTextContents()).includes(secret), { what: "note shown" });

  // Presence: hidden page -> idle (yellow), visible -> online (green). The other way to idle, two
  // minutes without input, is the same PresenceTracker transition and is covered by the unit
  // tests of crates/handoff-protocol/src/timing/presence.rs (no clock to speed up here).
  await setVisible(customer, false);
  await eventually(async () => (await page.getAttribute("#presence-dot", "data-state")) === "idle", { what: "presence idle" });
  await setVisible(customer, true);
  await eventually(async () => (await page.getAttribute("#presence-dot", "data-state")) === "online", { what: "presence online" });
  // A console that opens the conversation while the customer is steady (no presence:updated
  // coming) shows the presence from the REST answer: reload (the session resumes) and reopen it.
  await page.reload();
  await page.waitForSelector("#app:not([hidden])");
  await shown(inboxItem(page, id), "inbox entry after a reload");
  await inboxItem(page, id).locator("button").first().click();
  await eventually(async () => (await page.getAttribute("#presence-dot", "data-state")) === "online", { what: "presence online from REST" });
  await eventually(async () => (await messageTexts(page)).includes("It was order 42, the blue one"), { what: "history after a reload" });

  await shot(page, "inbox-conversation");

  // Unread count: a message while another view is open, read when the conversation is opened.
  await page.setViewportSize(NARROW);
  await shot(page, "narrow-conversation");
  await page.click("#back");
  await eventually(() => page.locator("#sidebar").isVisible(), { what: "list shown when narrow" });
  await customer.page.evaluate(() => window.customer.send("Are you still there?"));
  const unread = inboxItem(page, id).locator("[data-testid=inbox-unread]");
  await eventually(async () => (await unread.count()) === 1 && (await unread.textContent()) === "1", { what: "unread 1" });
  assert.match(await inboxItem(page, id).locator("[data-testid=inbox-preview]").textContent(), /Are you still there\?/);
  await shot(page, "narrow-list");
  await inboxItem(page, id).locator("button").first().click();
  await eventually(() => page.locator("#conversation-body").isVisible(), { what: "conversation shown when narrow" });
  await gone(unread, "unread cleared");
  // The read marker reached the server: a fresh inbox says 0.
  await eventually(() => page.evaluate(async (id) => {
    const items = await window.handoffConsole.client.inbox();
    return items.find((i) => i.conversation.id === id)?.unread === 0;
  }, id), { what: "server unread 0" });
  await page.setViewportSize(WIDE);

  // The note never reached the customer: not live, not in their history, not on their page.
  const everything = JSON.stringify(await customer.page.evaluate(async () => ({
    events: window.events,
    history: await window.customer.history(),
    page: document.documentElement.outerHTML,
  })));
  assert.ok(!everything.includes(secret), "the internal note leaked to the customer");
  assert.ok(everything.includes("It was order 42, the blue one"));

  // The customer leaves: offline (grey).
  await customer.page.close();
  await eventually(async () => (await page.getAttribute("#presence-dot", "data-state")) === "offline", { what: "presence offline" });

  await page.click("#resolve");
  await eventually(async () => (await page.textContent("#conversation-status")) === "resolved", { what: "resolved" });
  await gone(inboxItem(page, id), "resolved conversation leaves the inbox");
  await customer.context.close();
  await ada.context.close();
});

test("transfer to a second agent's console; decline returns it to the queue; resolve reaches the customer", async () => {
  const bo = server.createAgent({ name: "Bo Second" });
  const ada = await openConsole(server.agent);
  const boc = await openConsole(bo);
  await setStatus(ada.page, "away");
  await setStatus(boc.page, "away");

  const customer = await openCustomer();
  const id = await handOff(customer, "Can someone help with billing?");
  // Both consoles see the queue; Ada claims.
  await shown(queueItem(boc.page, id), "queue entry at Bo");
  await queueItem(ada.page, id).locator("[data-testid=queue-claim]").click();
  await gone(queueItem(boc.page, id), "queue entry gone at Bo");
  await shown(inboxItem(ada.page, id), "inbox entry at Ada");

  // Bo comes online; Ada's transfer list shows it live.
  await setStatus(boc.page, "online");
  const option = ada.page.locator(`#transfer-select option[value="${bo.id}"]`);
  await eventually(async () => (await option.count()) === 1 && !(await option.isDisabled()), { what: "Bo selectable" });
  assert.match(await option.textContent(), /Bo Second \(online\)/);
  await ada.page.selectOption("#transfer-select", bo.id);
  await ada.page.fill("#transfer-note", "Billing question, over to you");
  await ada.page.click("#transfer");

  // Bo gets a toast and the conversation; Ada's inbox lets go of it.
  await eventually(async () => (await boc.page.locator("[data-testid=toast]").allTextContents()).some((t) => /assigned to you/.test(t)),
    { what: "toast at Bo" });
  await shown(inboxItem(boc.page, id), "inbox entry at Bo");
  await gone(inboxItem(ada.page, id), "inbox entry gone at Ada");
  await eventually(async () => (await customerEvents(customer, "conversation:assigned")).some((e) => e.agent.id === bo.id),
    { what: "customer told of Bo" });

  await inboxItem(boc.page, id).locator("button").first().click();
  await eventually(async () => (await messageTexts(boc.page)).includes("Can someone help with billing?"), { what: "history at Bo" });
  // Bo's console marks what he read: the customer gets a read receipt from him.
  await eventually(async () => (await customerEvents(customer, "message:read")).some((r) => r.reader.id === bo.id),
    { what: "read receipt at the customer" });
  await eventually(async () => !(await boc.page.isDisabled("#decline")), { what: "decline enabled" });
  // The transfer note is an internal note for Bo; the thread says who transferred it.
  await eventually(async () => (await boc.page.locator("[data-testid=note] .body").allTextContents())
    .some((t) => t.includes("Billing question, over to you")), { what: "transfer note at Bo" });
  await eventually(async () => (await boc.page.locator("[data-testid=system-line]").allTextContents())
    .some((t) => t === "Transferred by Ada Agent to you"), { what: "transfer line at Bo" });

  // Bo declines: nobody else is online, so it is back in the queue (live at both consoles).
  await boc.page.click("#decline");
  await shown(queueItem(ada.page, id), "back in the queue at Ada");
  await shown(queueItem(boc.page, id), "back in the queue at Bo");
  await gone(inboxItem(boc.page, id), "gone from Bo's inbox");

  // Ada claims it again and resolves; the customer sees the resolution.
  await queueItem(ada.page, id).locator("[data-testid=queue-claim]").click();
  await eventually(async () => /assigned to you/.test(await ada.page.textContent("#conversation-status")), { what: "Ada has it" });
  await ada.page.click("#resolve");
  await eventually(async () => (await customerEvents(customer, "conversation:resolved")).length > 0, { what: "customer sees resolved" });
  const statuses = await customerEvents(customer, "conversation:status_changed");
  assert.equal(statuses.at(-1).status, "resolved");
  const seen = JSON.stringify(await customer.page.evaluate(async () => [window.events, await window.customer.history()]));
  assert.ok(!seen.includes("Billing question"), "the transfer note reached the customer");

  // The customer rates it: Ada's open conversation shows it live (badge and a line), once.
  const rated = await customer.page.evaluate(() => window.customer.rate(5, "Great help with billing"));
  assert.equal(rated.rating, 5);
  assert.equal(rated.agent_id, server.agent.id);
  const badge = ada.page.locator("[data-testid=conversation-rating]");
  await eventually(async () => (await badge.isVisible()) && (await badge.textContent()) === "★★★★★ 5/5: “Great help with billing”",
    { what: "rating badge at Ada" });
  assert.equal(await badge.getAttribute("aria-label"), "Customer rating: 5 of 5, “Great help with billing”");
  await eventually(async () => (await ada.page.locator("[data-testid=system-line]").allTextContents())
    .some((t) => t === "Customer rated ★★★★★ 5/5: “Great help with billing”"), { what: "rating line at Ada" });
  const again = await customer.page.evaluate(() => window.customer.rate(1).then(() => "stored", (e) => e.code));
  assert.equal(again, "already_rated");
  const invalid = await customer.page.evaluate(() => window.customer.rate(7).then(() => "stored", (e) => e.code));
  assert.equal(invalid, "validation_failed");
  await shot(ada.page, "rated");

  await setStatus(boc.page, "offline");
  await customer.context.close();
  await ada.context.close();
  await boc.context.close();
});

test("an offline message left while no agent was online shows on the next login with a notice", async () => {
  // Nobody is online (the earlier consoles went away or offline).
  const customer = await openCustomer();
  assert.equal(customer.session.config.agents_online, 0, JSON.stringify(customer.session.config));
  await customer.page.evaluate(() => window.customer.sendOfflineMessage({
    name: "Olga Offline", email: "olga@example.com", message: "Please call me back <b>tomorrow</b>",
  }));

  const ada = await openConsole(server.agent);
  const { page } = ada;
  await shown(page.locator("#offline-notice"), "offline notice");
  assert.match(await page.textContent("#offline-notice"), /1 unhandled offline message/);
  await eventually(async () => (await page.locator("[data-testid=toast]").allTextContents()).some((t) => /offline message/.test(t)),
    { what: "offline toast" });
  const item = page.locator("[data-testid=offline-item]");
  assert.equal(await item.count(), 1);
  // Text, never HTML.
  assert.match(await item.locator(".offline-body").textContent(), /<b>tomorrow<\/b>/);
  assert.equal(await item.locator("b").count(), 0);

  // Coming online repeats the notice.
  await page.evaluate(() => document.querySelector("#toasts").replaceChildren());
  await setStatus(page, "online");
  await eventually(async () => (await page.locator("[data-testid=toast]").allTextContents()).some((t) => /offline message/.test(t)),
    { what: "offline toast when coming online" });

  // A new one arrives live.
  await customer.page.evaluate(() => window.customer.sendOfflineMessage({
    name: "Pat Late", email: "pat@example.com", message: "One more thing",
  }));
  await eventually(async () => (await item.count()) === 2, { what: "live offline message" });

  await item.filter({ hasText: "Olga Offline" }).locator("[data-testid=offline-handled]").click();
  await eventually(async () => (await item.count()) === 1, { what: "handled one gone" });
  assert.equal(await page.textContent("#offline-count"), "1");
  await customer.context.close();

  // Now that Ada is online, a handoff is routed straight to her: a toast, and it opens from there.
  const next = await openCustomer();
  const id = await handOff(next, "Routed to whoever is online");
  const toast = page.locator("[data-testid=toast]").filter({ hasText: "assigned to you" });
  await shown(toast, "assignment toast");
  await shown(inboxItem(page, id), "routed conversation in the inbox");
  await toast.getByRole("button", { name: "Open" }).click();
  await eventually(async () => (await messageTexts(page)).includes("Routed to whoever is online"), { what: "opened from the toast" });
  await page.click("#resolve");
  await eventually(async () => (await page.textContent("#conversation-status")) === "resolved", { what: "resolved" });
  await setStatus(page, "offline");
  await next.context.close();
  await ada.context.close();
});

test("an idle console goes away (never offline) and comes back online on input", async () => {
  const agent = await server.createAgent({ name: "Ida Idle", email: "ida@e2e.test", password: "ida-password-1" });
  const context = await browser.newContext({ viewport: WIDE });
  const page = await context.newPage();
  // The 30-minute rule, shortened to 1.5 s through the console's query parameter.
  await page.goto(`${server.base}/console/?idleAwayMs=1500`);
  await page.fill("#login-email", agent.email);
  await page.fill("#login-password", agent.password);
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  await setStatus(page, "online");
  const status = async () => {
    const r = await fetch(`${server.base}/api/agents`, {
      headers: { authorization: `Bearer ${await page.evaluate(() => sessionStorage.getItem("handoff.console.token"))}` },
    });
    return (await r.json()).find((a) => a.id === agent.id)?.status;
  };
  // No input: away on the server, shown in the console; still away (not offline) well after.
  await eventually(async () => (await status()) === "away", { what: "away after idling", timeout: 8000 });
  await eventually(() => page.evaluate(() => document.querySelector("#status-select").value === "away"), { what: "console shows away" });
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(await status(), "away", "idling never sets offline");
  // Input brings the agent back online.
  await page.mouse.move(200, 200);
  await page.mouse.move(300, 250);
  await page.keyboard.press("Shift");
  await eventually(async () => (await status()) === "online", { what: "online again on input", timeout: 8000 });
  // A status the agent chose is left alone by input.
  await setStatus(page, "away");
  await page.mouse.move(100, 100);
  await page.keyboard.press("Shift");
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await status(), "away", "a chosen away is not overridden");
  await context.close();
});

test("canned responses: added in the panel, found by typing /greet, picked by keyboard, sent to the customer", async () => {
  const cara = await server.createAgent({ name: "Cara Canned", email: "cara@e2e.test", password: "cara-password-1" });
  const { context, page } = await openConsole(cara);
  await setStatus(page, "away");

  // The management panel: add two, a taken shortcut (any case) is refused with a message.
  const greeting = "Hello! I am Cara, how can I help you today?";
  const items = page.locator("[data-testid=canned-item]");
  for (const [shortcut, content] of [["greet", greeting], ["greet-later", "Good evening! We are back at 9:00."]]) {
    await page.fill("#canned-shortcut", shortcut);
    await page.fill("#canned-content", content);
    await page.click("#canned-save");
    await shown(items.filter({ hasText: `/${shortcut}` }), `canned response /${shortcut} listed`);
  }
  assert.equal(await page.textContent("#canned-count"), "2");
  await page.fill("#canned-shortcut", "GREET");
  await page.fill("#canned-content", "Another hello");
  await page.click("#canned-save");
  await shown(page.locator("#canned-error"), "shortcut taken error");
  assert.match(await page.textContent("#canned-error"), /taken/);
  assert.equal(await items.count(), 2);
  await shot(page, "canned-panel");

  const customer = await openCustomer();
  const id = await handOff(customer, "Hi, anyone there?");
  const item = queueItem(page, id);
  await shown(item, "queue entry");
  await item.locator("[data-testid=queue-claim]").click();
  await shown(inboxItem(page, id), "inbox entry");
  await eventually(() => page.locator("#compose-input").isEnabled(), { what: "compose enabled" });

  // `/gre` lists both by shortcut; the textarea points at the highlighted option, a status line
  // tells screen readers how many there are.
  const input = page.locator("#compose-input");
  const options = page.locator("#canned-suggestions[role=listbox] [role=option]");
  await input.focus();
  await page.keyboard.type("/gre");
  await eventually(async () => (await options.count()) === 2, { what: "two suggestions" });
  assert.deepEqual(await options.evaluateAll((os) => os.map((o) => o.dataset.shortcut)), ["greet", "greet-later"]);
  assert.match(await page.textContent("#canned-status"), /^2 canned responses/);
  assert.equal(await input.getAttribute("aria-activedescendant"), "canned-option-0");
  // Escape closes the list and leaves the text.
  await page.keyboard.press("Escape");
  await eventually(() => page.locator("#canned-suggestions").isHidden(), { what: "suggestions closed" });
  assert.equal(await page.textContent("#canned-status"), "");
  assert.equal(await input.getAttribute("aria-activedescendant"), null);
  assert.equal(await input.inputValue(), "/gre");

  // A text search: `/cara` finds the greeting by its content.
  await input.fill("");
  await page.keyboard.type("/cara");
  await eventually(async () => (await options.count()) === 1, { what: "content match" });
  assert.equal(await options.first().getAttribute("data-shortcut"), "greet");

  // `/greet` after some text: arrows move the highlight, Enter inserts the highlighted one.
  await input.fill("");
  await page.keyboard.type("Hi! /greet");
  await eventually(async () => (await options.count()) === 2, { what: "suggestions for /greet" });
  await page.keyboard.press("ArrowDown");
  assert.equal(await input.getAttribute("aria-activedescendant"), "canned-option-1");
  assert.equal(await options.nth(1).getAttribute("aria-selected"), "true");
  await page.keyboard.press("ArrowUp");
  assert.equal(await input.getAttribute("aria-activedescendant"), "canned-option-0");
  await shot(page, "canned-suggestions");
  await page.keyboard.press("Enter");
  await eventually(async () => (await input.inputValue()) === `Hi! ${greeting}`, { what: "canned text inserted" });
  assert.ok(await page.locator("#canned-suggestions").isHidden());
  assert.equal(await input.getAttribute("aria-activedescendant"), null);

  // Enter again sends it; the customer receives the inserted text.
  await page.keyboard.press("Enter");
  await eventually(async () => (await customerEvents(customer, "message:new")).some((e) => e.message.body === `Hi! ${greeting}`),
    { what: "canned text at the customer" });
  assert.equal(await input.inputValue(), "");
  await customer.context.close();
  await context.close();
});

// A console whose tab the test can send to the background (visibilityState and hasFocus follow
// `window.__bg`), with the Notification API recorded (`window.__notes`, permission "default" until
// asked) and every chime counted (`window.__chimes`: one gain node per chime).
const ATTENTION_PROBE = () => {
  window.__bg = false;
  Object.defineProperty(Document.prototype, "visibilityState", { configurable: true, get: () => (window.__bg ? "hidden" : "visible") });
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => window.__bg });
  Document.prototype.hasFocus = () => !window.__bg;
  window.__notes = [];
  window.__asked = 0;
  class FakeNotification {
    static permission = "default";
    static async requestPermission() {
      window.__asked += 1;
      FakeNotification.permission = "granted";
      return "granted";
    }
    constructor(title, options = {}) {
      Object.assign(this, { title, body: options.body, tag: options.tag, closed: false });
      window.__notes.push(this);
    }
    close() { this.closed = true; }
  }
  window.Notification = FakeNotification;
  window.__chimes = 0;
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    createGain() { window.__chimes += 1; return super.createGain(); }
  };
};

const setBackground = (page, bg) => page.evaluate((bg) => {
  window.__bg = bg;
  document.dispatchEvent(new Event("visibilitychange"));
  if (!bg) window.dispatchEvent(new Event("focus"));
}, bg);
const notes = (page) => page.evaluate(() => window.__notes.map(({ title, body, tag, closed }) => ({ title, body, tag, closed })));

/** A customer of `srv`'s project on the host page (the SDK imported from that server). */
async function openCustomerOn(srv) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("customer page error:", e));
  await page.goto(host.url);
  await page.evaluate(async ({ base, key }) => {
    const { createClient } = await import(`${base}/sdk/index.js`);
    const c = await createClient({ baseUrl: base, projectKey: key });
    window.customer = c;
    window.events = [];
    c.on("*", (payload, name) => window.events.push({ name, payload }));
    await c.start();
  }, { base: srv.base, key: srv.projectKey });
  return { context, page };
}

test("a background console notifies of the queue, assignments and customer messages: notification, sound, title", async (t) => {
  // A server of its own: one agent, so routing (queue or straight to her) is deterministic.
  const own = await startServer();
  t.after(() => own.stop());
  const openCustomer = () => openCustomerOn(own);
  const ada = await openConsole(own.agent, { init: ATTENTION_PROBE, base: own.base });
  const { page } = ada;
  const base = "Handoff · Agent console";
  await setStatus(page, "away");

  // Permission is asked on a click, never on load; then the button goes.
  assert.equal(await page.evaluate(() => window.__asked), 0);
  await page.click("#notify-enable");
  assert.equal(await page.evaluate(() => window.__asked), 1);
  assert.ok(await page.locator("#notify-enable").isHidden());

  // In the foreground a new queue entry is shown in the list only.
  const c1 = await openCustomer();
  const id1 = await handOff(c1, "Foreground arrival");
  await shown(queueItem(page, id1), "queue entry");
  assert.deepEqual(await notes(page), []);
  assert.equal(await page.title(), base);

  // In the background: a notification, a chime, the count in the title.
  await setBackground(page, true);
  const c2 = await openCustomer();
  const id2 = await handOff(c2, "Is anyone there? My parcel is lost");
  await eventually(async () => (await notes(page)).length === 1, { what: "queue notification" });
  const [n] = await notes(page);
  assert.match(n.title, /waiting in the queue/);
  assert.match(n.body, /parcel is lost/);
  assert.equal(n.tag, `handoff:${id2}`);
  assert.ok((await page.evaluate(() => window.__chimes)) >= 1, "a chime played");
  assert.equal(await page.title(), `(1) ${base}`);

  // Clicking the notification brings the tab back and opens that conversation.
  await page.evaluate(() => { window.__bg = false; window.__notes[0].onclick(new Event("click")); });
  await eventually(() => page.evaluate((id) => window.handoffConsole.state.selected === id, id2), { what: "conversation opened" });
  await eventually(async () => (await messageTexts(page)).includes("Is anyone there? My parcel is lost"), { what: "thread shown" });
  await setBackground(page, false);
  assert.equal(await page.title(), base, "back in the tab: the title is plain again");

  // Claimed: a customer message while the tab is hidden notifies, counts in the title and is
  // not marked read until the agent looks.
  await page.click("#claim");
  await shown(inboxItem(page, id2), "inbox entry");
  // What the agent saw in front is marked read on the server (the read marker is debounced).
  const token = await page.evaluate(() => sessionStorage.getItem("handoff.console.token"));
  const api = new AgentApi(own.base, token);
  await eventually(async () => (await api.call("GET", "/api/inbox")).find((i) => i.conversation.id === id2)?.unread === 0,
    { what: "the thread marked read" });
  await setBackground(page, true);
  const chimes = await page.evaluate(() => window.__chimes);
  await c2.page.evaluate(() => window.customer.send("Tracking number 123"));
  await eventually(async () => (await notes(page)).some((x) => x.body === "Tracking number 123"), { what: "message notification" });
  assert.match((await notes(page)).find((x) => x.body === "Tracking number 123").title, /wrote/);
  assert.equal(await page.evaluate(() => window.__chimes), chimes + 1);
  await eventually(async () => (await page.title()) === `(1) ${base}`, { what: "unread in the title" }).catch(async (e) => { throw new Error(`${e.message}; title ${await page.title()}; inbox ${JSON.stringify(await page.evaluate(() => [...window.handoffConsole.state.inbox.values()].map((i) => [i.conversation.id, i.unread])))}`); });
  await setBackground(page, false);
  await eventually(async () => (await page.title()) === base, { what: "title plain once seen" });
  assert.ok((await notes(page)).every((x) => x.closed), "notifications closed when the agent is back");

  // Muted: still a notification, no sound.
  await page.uncheck("#sound-toggle");
  assert.equal(await page.evaluate(() => localStorage.getItem("handoff.console.sound")), "off");
  await setBackground(page, true);
  const before = await page.evaluate(() => window.__chimes);
  await c2.page.evaluate(() => window.customer.send("Still there?"));
  await eventually(async () => (await notes(page)).some((x) => x.body === "Still there?"), { what: "muted notification" });
  assert.equal(await page.evaluate(() => window.__chimes), before, "muted: no chime");
  await setBackground(page, false);

  // Assigned to me while away from the tab (online: the next handoff comes straight to me).
  await page.check("#sound-toggle");
  await setStatus(page, "online");
  await setBackground(page, true);
  const c3 = await openCustomer();
  const id3 = await handOff(c3, "Straight to an agent");
  await eventually(async () => (await notes(page)).some((x) => x.tag === `handoff:${id3}` && /assigned to you/.test(x.title)),
    { what: "assignment notification" });
  await setBackground(page, false);

  for (const c of [c1, c2, c3]) await c.context.close();
  await ada.context.close();
});

/** Fails with every violation axe-core reports on the page as it is now (`screen` names it). */
async function assertAccessible(page, screen) {
  const violations = await axeViolations(page);
  assert.deepEqual(violations, [], `axe on the ${screen}:\n${JSON.stringify(violations, null, 2)}`);
}

test("every console screen passes axe-core: login, lists, a conversation (own, queued, resolved), canned responses, narrow", async (t) => {
  const own = await startServer();
  t.after(() => own.stop());
  const context = await browser.newContext({ viewport: WIDE, bypassCSP: true });
  const page = await context.newPage();
  await page.goto(`${own.base}/console/`);
  await page.waitForSelector("#login-view:not([hidden])");
  await assertAccessible(page, "login screen");
  await page.click("#login-submit"); // empty: the error shows
  await shown(page.locator("#login-error"), "login error");
  await assertAccessible(page, "login screen with an error");

  await page.fill("#login-email", own.agent.email);
  await page.fill("#login-password", own.agent.password);
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  await assertAccessible(page, "empty lists");

  // Away: two customers wait in the queue; one is claimed and answered.
  await setStatus(page, "away");
  const a = await openCustomerOn(own);
  const b = await openCustomerOn(own);
  const idA = await handOff(a, "First customer: where is my parcel?");
  const idB = await handOff(b, "Second customer: I need an invoice");
  await shown(queueItem(page, idB), "second queue entry");
  await queueItem(page, idA).locator("[data-testid=queue-claim]").click();
  await shown(inboxItem(page, idA), "inbox entry");
  await page.fill("#compose-input", "Hello! Let me look.");
  await page.click("#compose-send");
  await page.fill("#note-input", "Parcel 42, check with the courier");
  await page.click("#note-add");
  await eventually(async () => (await page.locator("[data-testid=note]").count()) === 1, { what: "note" });
  const withLinks = "Thanks, it is order 42: https://shop.example/orders/42). Not javascript:alert(1) or <a href=x>x</a>";
  await a.page.evaluate((t) => window.customer.send(t), withLinks);
  await eventually(async () => (await messageTexts(page)).includes(withLinks), { what: "customer message" });
  // Links are safe anchors made of DOM nodes: http(s) only, a new tab, no opener, no referrer.
  const anchors = await page.locator("[data-testid=message] .body a").evaluateAll((as) =>
    as.map((x) => ({ href: x.getAttribute("href"), text: x.textContent, target: x.target, rel: x.rel })));
  assert.deepEqual(anchors, [{ href: "https://shop.example/orders/42", text: "https://shop.example/orders/42", target: "_blank", rel: "noopener noreferrer nofollow" }]);
  await assertAccessible(page, "own conversation, selected in the inbox, with a queue");

  // The canned responses suggestions open in the reply box.
  await page.fill("#canned-shortcut", "thanks");
  await page.fill("#canned-content", "Thank you for waiting!");
  await page.click("#canned-save");
  await eventually(async () => (await page.locator("#canned-list li").count()) === 1, { what: "canned response saved" });
  await page.fill("#compose-input", "");
  await page.focus("#compose-input");
  await page.keyboard.type("/than");
  await shown(page.locator("#canned-suggestions"), "suggestions");
  await assertAccessible(page, "canned suggestions open");
  await page.keyboard.press("Escape");

  // A queued conversation opened from the queue, then a resolved one.
  await queueItem(page, idB).locator(".item-main").click();
  await eventually(async () => (await messageTexts(page)).includes("Second customer: I need an invoice"), { what: "queued thread" });
  await assertAccessible(page, "queued conversation");
  await inboxItem(page, idA).locator(".item-main").click();
  await eventually(async () => !(await page.locator("#resolve").isDisabled()), { what: "own conversation open" });
  await page.click("#resolve");
  await eventually(async () => (await page.textContent("#conversation-status")) === "resolved", { what: "resolved" });
  await assertAccessible(page, "resolved conversation");

  // A phone-sized window.
  await page.setViewportSize(NARROW);
  await assertAccessible(page, "narrow window");
  for (const c of [a, b]) await c.context.close();
  await context.close();
});
