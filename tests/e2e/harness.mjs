// Shared harness of the browser end-to-end suites: a real `handoff-server` on a temp SQLite
// database and a port the OS picks, host pages on another origin, and Debian's Chromium driven by
// playwright-core.
//
// Run through `cargo xtask e2e` (or `cargo xtask test`), which builds the server and the web
// assets first. Run alone: `node --test --test-concurrency=1 tests/e2e/` after `cargo xtask web`,
// `cargo build -p handoff-server` and `npm ci` in examples/vite-react (vite-react.test.mjs).

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const root = resolve(here, "../..");
const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, "target");
/** The server binary (`HANDOFF_SERVER_BIN` or the debug build). */
export const serverBin = process.env.HANDOFF_SERVER_BIN ?? join(target, "debug/handoff-server");
/** The built web assets the server serves (`cargo xtask web`). */
export const webDir = process.env.HANDOFF_WEB_DIR ?? join(root, "target/handoff-web");
/** Where tests keep screenshots and other artifacts. */
export const artifacts = process.env.HANDOFF_E2E_ARTIFACTS ?? join(root, "target/e2e-artifacts");
mkdirSync(artifacts, { recursive: true });

function cli(db, args) {
  const out = execFileSync(serverBin, args, {
    env: { ...process.env, DATABASE_URL: db, RUST_LOG: "warn" },
    encoding: "utf8",
  });
  const fields = {};
  for (const kv of out.split(/\s+/)) {
    const i = kv.indexOf("=");
    if (i > 0) fields[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return fields;
}

/** A port the OS says is free on 127.0.0.1 (for servers that cannot listen on port 0). */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function waitHealthy(base, child) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`handoff-server exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`handoff-server at ${base} did not become healthy`);
}

/**
 * Starts a server on a fresh SQLite database with one project and one agent.
 *
 * `origins`: the project's origin allow-list (empty: any origin). `env`: extra environment.
 * Returns `{ base, port, projectId, projectKey, secretKey, agent, createAgent, restart, stop }`;
 * `agent` and the agents `createAgent({ name, email, password })` makes are
 * `{ id, name, email, password }`. `stop()` kills the server; `restart()` starts it again on the
 * same port and database (for "the server was down" tests).
 */
export async function startServer({ origins = [], env = {}, projectName = "E2E Shop" } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "handoff-e2e-"));
  const db = `sqlite://${join(dir, "e2e.db")}`;
  const projectArgs = ["project", "create", "--name", projectName];
  for (const o of origins) projectArgs.push("--origin", o);
  const project = cli(db, projectArgs);
  let n = 0;
  const createAgent = ({ name, email, password = "e2e-password-123" } = {}) => {
    n += 1;
    const agent = {
      name: name ?? `Agent ${n}`,
      email: email ?? `agent${n}@e2e.test`,
      password,
    };
    const out = cli(db, [
      "agent", "create", "--project", project.project_id,
      "--email", agent.email, "--name", agent.name, "--password", agent.password,
    ]);
    return { id: out.agent_id, ...agent };
  };
  const agent = createAgent({ name: "Ada Agent", email: "ada@e2e.test" });

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let child;
  const start = async () => {
    // The tests' bot backends listen on loopback.
    const args = ["serve", "--addr", `127.0.0.1:${port}`, "--static-dir", webDir, "--allow-private-webhooks"];
    child = spawn(serverBin, args, {
      env: { ...process.env, DATABASE_URL: db, RUST_LOG: process.env.RUST_LOG ?? "warn", ...env },
      stdio: ["ignore", "ignore", "inherit"],
    });
    await waitHealthy(base, child);
  };
  const stop = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  };
  await start();
  return {
    base,
    port,
    db,
    projectId: project.project_id,
    projectKey: project.public_key,
    secretKey: project.secret_key,
    agent,
    createAgent,
    restart: start,
    stop: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    /** Kills the server but keeps its database, for `restart()`. */
    kill: stop,
  };
}

/**
 * Serves `html` at `/` (and any `files` by path) from its own origin (`http://localhost:PORT`,
 * a different origin from the server's `127.0.0.1`). `headers` are added to every response (for
 * example a `Content-Security-Policy`). Returns `{ url, origin, close }`.
 */
export async function serveHostPage(html, { headers = {}, files = {} } = {}) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const body = path === "/" ? html : files[path];
    if (body === undefined) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
    const type = path === "/" || path.endsWith(".html") ? "text/html; charset=utf-8"
      : path.endsWith(".js") ? "text/javascript" : path.endsWith(".css") ? "text/css" : "text/plain";
    res.writeHead(200, { "content-type": type, "cache-control": "no-store", ...headers });
    res.end(body);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const origin = `http://localhost:${server.address().port}`;
  return {
    url: `${origin}/`,
    origin,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(ok); }),
  };
}

/** Debian's Chromium, headless, as root, without internet. */
export function launchBrowser(options = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-dev-shm-usage",
    ],
    ...options,
  });
}

/** A small REST client for the agent side of a test. */
export class AgentApi {
  constructor(base, token) {
    this.base = base;
    this.token = token;
  }

  /** Logs `agent` in (`{ email, password }`) and returns an `AgentApi`. */
  static async login(base, { email, password }) {
    const r = await fetch(`${base}/api/agents/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
    if (!r.ok) throw new Error(`login ${r.status}: ${await r.text()}`);
    const body = await r.json();
    return new AgentApi(base, body.token);
  }

  /** A JSON request; throws with status and body unless 2xx. */
  async call(method, path, body) {
    const r = await fetch(`${this.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path} ${r.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  }
}

/** Polls `fn` until it returns a truthy value (or throws after `timeout` ms). */
export async function eventually(fn, { timeout = 10_000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

const axeSource = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

/**
 * Runs axe-core (WCAG 2.x A and AA rules plus best practices) on `page` and returns its
 * violations as `{ id, impact, help, targets }`. The page's context must be made with
 * `bypassCSP: true` (axe is injected as a script). `include`: a selector to limit the run to.
 */
export async function axeViolations(page, { include } = {}) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async (include) => {
    const r = await window.axe.run(include ? { include: [include] } : document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  }, include ?? null);
  return result;
}
