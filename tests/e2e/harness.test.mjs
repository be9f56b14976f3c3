// The harness's own smoke test: a real server, a host page on another origin, Chromium, and the
// project's origin allow-list as a browser sees it (CORS).

import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { AgentApi, launchBrowser, serveHostPage, startServer } from "./harness.mjs";

let server;
let browser;
let allowed;
let denied;

before(async () => {
  allowed = await serveHostPage("<!doctype html><title>allowed host</title>");
  denied = await serveHostPage("<!doctype html><title>other host</title>");
  server = await startServer({ origins: [allowed.origin] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await allowed?.close();
  await denied?.close();
});

async function sessionFrom(page, base, key) {
  return page.evaluate(async ([base, key]) => {
    try {
      const r = await fetch(`${base}/api/widget/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ project_key: key }),
      });
      return { status: r.status, body: await r.json() };
    } catch (e) {
      return { error: String(e) };
    }
  }, [base, key]);
}

test("a host page on an allowed origin starts a widget session; another origin is refused", async () => {
  const page = await browser.newPage();
  await page.goto(allowed.url);
  const ok = await sessionFrom(page, server.base, server.projectKey);
  assert.equal(ok.status, 200, JSON.stringify(ok));
  assert.match(ok.body.visitor_token, /\S/);

  await page.goto(denied.url);
  const refused = await sessionFrom(page, server.base, server.projectKey);
  // The browser sees either the server's 403 (when CORS lets it read it) or a CORS failure.
  assert.ok(refused.error || refused.status === 403, JSON.stringify(refused));
  await page.close();
});

test("the seeded agent logs in over REST", async () => {
  const api = await AgentApi.login(server.base, server.agent);
  const me = await api.call("GET", "/api/agents/me");
  assert.equal(me.email, server.agent.email);
  const second = server.createAgent({ name: "Bo Second" });
  const agents = await api.call("GET", "/api/agents");
  assert.ok(agents.some((a) => a.id === second.id), JSON.stringify(agents));
});
