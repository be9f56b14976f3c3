// The widget's budget, measured (a benchmark, not a test: it prints figures and asserts nothing).
//
// - Bytes: everything the script tag makes a cold browser download from the server (loader,
//   JS glue, wasm, the session call), as Chromium counts them on the wire (DevTools protocol
//   `encodedDataLength`, so compressed sizes when the server compresses), and each file's size
//   gzipped at level 9 for comparison.
// - Time: from the loader script's arrival (its resource timing `responseEnd`) to the launcher
//   being visible, in headless Chromium on loopback; median and p90 over cold runs (a fresh
//   browser context each, so nothing is cached).
//
// Run by `cargo xtask bench` (after `cargo xtask web` and `cargo build -p handoff-server`), or
// alone: `node tests/e2e/bench/widget-budget.mjs [runs]`.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { launchBrowser, serveHostPage, startServer, webDir } from "../harness.mjs";

const runs = Number(process.argv[2] ?? 15);
// The loader imports the glue and the wasm by content-hashed names (`cargo xtask web`).
const loader = readFileSync(join(webDir, "widget.js"), "utf8");
const files = ["widget.js", ...[...loader.matchAll(/widget\/(handoff_widget[\w]*\.[0-9a-f]{16}\.(?:js|wasm))/g)].map((m) => `widget/${m[1]}`)];
if (files.length !== 3) throw new Error(`widget.js should import two content-hashed files, found ${files.length - 1}: run cargo xtask web`);
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;

const server = await startServer();
const host = await serveHostPage(`<!doctype html><meta charset="utf-8"><title>budget</title><h1>host</h1>
<script src="${server.base}/widget.js" data-project-key="${server.projectKey}" async></script>`);
const browser = await launchBrowser();

const times = [];
let wire = null;
try {
  for (let i = 0; i < runs; i += 1) {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      const poll = () => {
        const root = document.querySelector("handoff-widget")?.shadowRoot?.querySelector(".root:not([hidden]) .launcher");
        if (root && root.getBoundingClientRect().width > 0) window.launcherAt = performance.now();
        else requestAnimationFrame(poll);
      };
      requestAnimationFrame(poll);
    });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    const urls = new Map();
    const bytes = new Map();
    cdp.on("Network.requestWillBeSent", (e) => urls.set(e.requestId, e.request.url));
    cdp.on("Network.loadingFinished", (e) => bytes.set(e.requestId, e.encodedDataLength));
    await page.goto(host.url);
    await page.waitForFunction(() => window.launcherAt !== undefined, null, { timeout: 30_000 });
    const t = await page.evaluate((src) => {
      const entry = performance.getEntriesByName(src)[0];
      return window.launcherAt - entry.responseEnd;
    }, `${server.base}/widget.js`);
    times.push(t);
    if (!wire) {
      await page.waitForTimeout(200); // let the last loadingFinished events arrive
      wire = [...bytes].map(([id, n]) => [urls.get(id), n]).filter(([u]) => u?.startsWith(server.base));
    }
    await context.close();
  }
} finally {
  await browser.close();
  await server.stop();
  await host.close();
}

times.sort((a, b) => a - b);
const pick = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
console.log("widget budget (cold browser, loopback)");
let total = 0;
for (const [url, n] of wire) {
  total += n;
  console.log(`  on the wire  ${kb(n).padStart(10)}  ${url.slice(server.base.length)}`);
}
console.log(`  on the wire  ${kb(total).padStart(10)}  total (headers included)`);
let gz = 0;
for (const f of files) {
  const n = gzipSync(readFileSync(join(webDir, f)), { level: 9 }).length;
  gz += n;
  console.log(`  gzip -9      ${kb(n).padStart(10)}  ${f}`);
}
console.log(`  gzip -9      ${kb(gz).padStart(10)}  total (issue 13: at most 45 KB)`);
console.log(`  script loaded -> launcher visible: median ${pick(0.5).toFixed(0)} ms, p90 ${pick(0.9).toFixed(0)} ms (${runs} runs)`);
