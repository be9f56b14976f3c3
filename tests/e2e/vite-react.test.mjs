// The Vite + React example (examples/vite-react) as a frontend developer runs it, in Chromium
// against a real server: `vite dev` (which pre-bundles the SDK into node_modules/.vite/deps/,
// away from its wasm) and `vite build` then `vite preview` (the production bundle). In each, the
// customer starts a conversation, asks for a human, and gets the agent's reply live.
//
// The example's node_modules holds a packed copy of sdk-js (the example's .npmrc sets
// `install-links`), installed by `cargo xtask e2e` once `cargo xtask web` has built sdk-js/dist.

import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentApi, eventually, freePort, launchBrowser, root, startServer } from "./harness.mjs";

const example = join(root, "examples/vite-react");
const viteBin = join(example, "node_modules/vite/bin/vite.js");

let server;
let api;
let browser;
let outDir;

before(async () => {
  // A copy of an earlier build would test another SDK than this one.
  for (const f of ["index.js", "react.js", "dist/handoff_client.js", "dist/handoff_client_bg.wasm"]) {
    let installed;
    try {
      installed = readFileSync(join(example, "node_modules/@handoff/sdk", f));
    } catch {
      // not installed
    }
    if (!installed?.equals(readFileSync(join(root, "sdk-js", f)))) {
      throw new Error(
        `examples/vite-react/node_modules/@handoff/sdk/${f} is missing or differs from sdk-js/${f}: ` +
          "run `cargo xtask e2e` (or `npm ci` in examples/vite-react after `cargo xtask web`)",
      );
    }
  }
  server = await startServer();
  api = await AgentApi.login(server.base, server.agent);
  await api.call("PUT", "/api/agents/me/status", { status: "online" });
  browser = await launchBrowser();
  outDir = mkdtempSync(join(tmpdir(), "handoff-vite-react-"));
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

/** The example's `vite` with `args`, configured for this server as a developer would (`VITE_*`). */
function spawnVite(args) {
  const child = spawn(process.execPath, [viteBin, ...args], {
    cwd: example,
    env: { ...process.env, VITE_HANDOFF_URL: server.base, VITE_HANDOFF_PROJECT_KEY: server.projectKey },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so that stopping it also stops the esbuild service it starts.
    detached: true,
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  return { child, output: () => output };
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once("exit", ok));
  process.kill(-child.pid, "SIGKILL");
  await exited;
}

/** `vite build` into `outDir`. */
async function build() {
  const { child, output } = spawnVite(["build", "--outDir", outDir, "--emptyOutDir"]);
  const code = await new Promise((ok) => child.once("exit", ok));
  assert.equal(code, 0, `vite build failed:\n${output()}`);
}

/** `vite <command>` listening on 127.0.0.1 and a free port, once it answers; `{ url, stop }`. */
async function serve(command, args = []) {
  const port = await freePort();
  const vite = spawnVite([command, ...args, "--host", "127.0.0.1", "--port", String(port), "--strictPort"]);
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (vite.child.exitCode !== null || Date.now() > deadline) {
      await stop(vite.child);
      throw new Error(`vite ${command} did not answer at ${url}:\n${vite.output()}`);
    }
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, stop: () => stop(vite.child) };
}

const stored = async (id) =>
  (await api.call("GET", `/api/conversations/${id}/events?after=0`)).events
    .filter((e) => e.event === "message:new")
    .map((e) => [e.payload.message.author.kind, e.payload.message.body]);

/**
 * A customer on the app at `url` (a fresh browser context: a new visitor) writes, asks for a
 * human and gets the agent's reply; what the server stored is checked over the agent's REST
 * API. Returns the URLs the page requested and the wasm answers' `[url, content-type]`.
 */
async function chat(url, mode) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  const requests = [];
  const wasm = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("request", (r) => requests.push(r.url()));
  page.on("response", (r) => {
    if (new URL(r.url()).pathname.endsWith(".wasm")) wasm.push([r.url(), r.headers()["content-type"]]);
  });
  const messages = () => page.getByTestId("message").allTextContents();
  try {
    await page.goto(url);
    // The app shows the SDK's error (its code and message) when the client cannot start.
    await page.locator("[data-testid=draft], [data-testid=error]").first().waitFor();
    assert.equal(await page.getByTestId("error").count(), 0, await page.locator("#root").textContent());
    const hello = `Hello from vite ${mode}`;
    await page.getByTestId("draft").fill(hello);
    await page.getByTestId("send").click();
    await eventually(async () => (await messages()).includes(`You: ${hello}`), { what: "the first message shown" });
    await eventually(async () => (await page.getByTestId("connection").textContent()) === "connected", {
      what: "connected",
    });

    await page.getByTestId("human").click();
    const conversation = await eventually(
      async () => (await api.call("GET", "/api/inbox")).find((i) => i.last_message?.body === hello)?.conversation,
      { what: "the conversation in the agent's inbox" },
    );
    assert.deepEqual(await stored(conversation.id), [["customer", hello]]);
    await eventually(async () => (await page.getByTestId("status").textContent()).includes("Ada Agent is here"), {
      what: "the assignment shown",
    });

    // Live: the page is not reloaded.
    const reply = `Hi, this is Ada (${mode})`;
    await api.call("POST", `/api/conversations/${conversation.id}/messages`, { body: reply, client_msg_id: `vite-${mode}` });
    await eventually(async () => (await messages()).includes(`Ada Agent: ${reply}`), { what: "the agent's reply" });

    await page.getByTestId("draft").fill("Thanks!");
    await page.getByTestId("send").click();
    await eventually(async () => (await stored(conversation.id)).some(([, body]) => body === "Thanks!"), {
      what: "the second message stored",
    });
    const all = [`You: ${hello}`, `Ada Agent: ${reply}`, "You: Thanks!"];
    await eventually(async () => (await messages()).length === all.length, { what: "the second message shown" });
    assert.deepEqual(await messages(), all, "each once, in order");
    assert.equal(await page.getByTestId("error").count(), 0);
    assert.deepEqual(problems, []);
    await api.call("POST", `/api/conversations/${conversation.id}/resolve`, {});
    return { requests, wasm };
  } finally {
    await context.close();
  }
}

test("vite dev: the pre-bundled SDK finds its wasm without configuration; chat live", async () => {
  // --force: pre-bundle again, as on a developer's first run.
  const dev = await serve("dev", ["--force"]);
  try {
    const { requests, wasm } = await chat(dev.url, "dev");
    assert.ok(
      requests.some((u) => new URL(u).pathname === "/node_modules/.vite/deps/@handoff_sdk.js"),
      "the SDK was pre-bundled, as in an app that installed it from the registry",
    );
    assert.deepEqual(wasm, [[`${dev.url}node_modules/@handoff/sdk/dist/handoff_client_bg.wasm`, "application/wasm"]]);
  } finally {
    await dev.stop();
  }
});

test("vite build + vite preview: the bundle ships the wasm as an asset; chat live", async () => {
  await build();
  const preview = await serve("preview", ["--outDir", outDir]);
  try {
    const { wasm } = await chat(preview.url, "build");
    assert.equal(wasm.length, 1, JSON.stringify(wasm));
    assert.match(wasm[0][0], /\/assets\/handoff_client_bg-[\w-]+\.wasm$/);
    assert.equal(wasm[0][1], "application/wasm");
  } finally {
    await preview.stop();
  }
});
