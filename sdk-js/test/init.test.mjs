// The one-time wasm initializer of index.js against a fake fetch, with the wasm-bindgen glue
// (dist/handoff_client.js, not needed here) replaced by a stand-in that loads like the real one
// (fetch when given a URL, refuse a non-2xx answer, compile the body with WebAssembly). Each test
// imports a fresh copy of index.js, so nothing is cached between tests.
import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { register } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const fakeGlue = `
export default async function init(arg) {
  let source = arg?.module_or_path;
  if (source === undefined) source = new URL("handoff_client_bg.wasm", "file:///fake/dist/");
  if (typeof source === "string" || source instanceof URL || source instanceof Request) source = await fetch(source);
  if (source instanceof Response) {
    if (!source.ok) throw new Error("failed to fetch Wasm: " + source.status + " " + source.statusText);
    source = await source.arrayBuffer();
  }
  await WebAssembly.instantiate(source, {});
}
export class HandoffClient { constructor(options) { this.options = options; } }
export class AgentClient { constructor(options) { this.options = options; } }
export class RealtimeChannel {}
export class RealtimeClient {}
export function connectSupabase() {}
export function countsAsUnread() {}
`;
const glueUrl = `data:text/javascript,${encodeURIComponent(fakeGlue)}`;
register(
  `data:text/javascript,${encodeURIComponent(`
export function resolve(specifier, context, next) {
  if (specifier.endsWith("/dist/handoff_client.js")) return { url: ${JSON.stringify(glueUrl)}, shortCircuit: true };
  return next(specifier, context);
}`)}`,
);

// The smallest valid module: magic word and version.
const WASM = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
const INDEX_HTML = `<!doctype html><html><head><script type="module" src="/@vite/client"></script></head></html>`;

let answers;
let requests;
beforeEach(() => {
  answers = [];
  requests = [];
  globalThis.fetch = async (input) => {
    requests.push(String(input instanceof Request ? input.url : input));
    const next = answers.shift();
    if (!next) throw new Error("unexpected request");
    return next();
  };
});
const network = () => () => Promise.reject(new TypeError("Failed to fetch"));
const wasm = () => () => new Response(WASM, { headers: { "content-type": "application/wasm" } });
const html = () => () => new Response(INDEX_HTML, { headers: { "content-type": "text/html" } });
const notFound = () => () => new Response("Not Found", { status: 404, statusText: "Not Found" });

let copies = 0;
const freshSdk = () => import(`../index.js?copy=${++copies}`);

test("a failed download is forgotten: the next createClient downloads again", async () => {
  const sdk = await freshSdk();
  answers.push(network(), wasm());
  const err = await sdk.createClient({ baseUrl: "https://chat.example.com", projectKey: "pk_1" }).then(
    () => assert.fail("resolved"),
    (e) => e,
  );
  assert.equal(err.code, "wasm_load_failed");
  assert.match(err.message, /Failed to fetch/);
  assert.equal(requests.length, 1);
  const client = await sdk.createClient({ baseUrl: "https://chat.example.com", projectKey: "pk_1" });
  assert.equal(requests.length, 2, "a second request, not the cached rejection");
  assert.equal(client.options.projectKey, "pk_1");
  // Once loaded, it stays loaded.
  await sdk.createAgentClient({ baseUrl: "https://chat.example.com" });
  assert.equal(requests.length, 2);
});

test("calls during one download share it", async () => {
  const sdk = await freshSdk();
  answers.push(network(), wasm());
  const both = await Promise.allSettled([sdk.initHandoff(), sdk.initHandoff()]);
  assert.deepEqual(
    both.map((r) => r.reason?.code),
    ["wasm_load_failed", "wasm_load_failed"],
  );
  assert.equal(requests.length, 1);
  await sdk.initHandoff();
  assert.equal(requests.length, 2);
});

test("an HTTP error answer is wasm_load_failed with its status", async () => {
  const sdk = await freshSdk();
  answers.push(notFound());
  const err = await sdk.initHandoff("https://cdn.example.com/handoff.wasm").then(
    () => assert.fail("resolved"),
    (e) => e,
  );
  assert.equal(err.code, "wasm_load_failed");
  assert.equal(err.status, 404);
  assert.match(err.message, /404/);
  assert.match(err.message, /https:\/\/cdn\.example\.com\/handoff\.wasm/);
});

test("an answer that is not wasm (Vite dev's index.html) is wasm_not_wasm with the fix", async () => {
  const sdk = await freshSdk();
  answers.push(html(), html());
  for (let i = 0; i < 2; i++) {
    const err = await sdk.createClient({ baseUrl: "https://chat.example.com", projectKey: "pk_1" }).then(
      () => assert.fail("resolved"),
      (e) => e,
    );
    assert.equal(err.code, "wasm_not_wasm");
    assert.ok(err instanceof Error);
    assert.match(err.message, /text\/html/);
    assert.ok(err.message.includes('optimizeDeps: { exclude: ["@handoff/sdk"] }'), err.message);
    assert.ok(err.hint.includes('optimizeDeps: { exclude: ["@handoff/sdk"] }'));
    assert.match(err.message, /"<!doctype html>/, "what came instead");
    assert.match(err.url, /handoff_client_bg\.wasm$/);
  }
  assert.equal(requests.length, 2);
});

test("a text answer of another type that fails to compile is wasm_not_wasm", async () => {
  const sdk = await freshSdk();
  answers.push(() => new Response("Not here", { headers: { "content-type": "text/plain" } }));
  const err = await sdk.initHandoff().then(
    () => assert.fail("resolved"),
    (e) => e,
  );
  assert.equal(err.code, "wasm_not_wasm");
  assert.ok(err.cause instanceof WebAssembly.CompileError);
});

test("a wasm that does not compile is wasm_load_failed", async () => {
  const sdk = await freshSdk();
  const broken = new Uint8Array([...WASM, 0x01, 0x05]); // a type section cut short
  answers.push(() => new Response(broken, { headers: { "content-type": "application/wasm" } }));
  const err = await sdk.initHandoff().then(
    () => assert.fail("resolved"),
    (e) => e,
  );
  assert.equal(err.code, "wasm_load_failed");
  assert.ok(err.cause instanceof WebAssembly.CompileError);
});

test("bytes that are not wasm are wasm_not_wasm too", async () => {
  const sdk = await freshSdk();
  const err = await sdk.initHandoff(new TextEncoder().encode(INDEX_HTML)).then(
    () => assert.fail("resolved"),
    (e) => e,
  );
  assert.equal(err.code, "wasm_not_wasm");
  assert.ok(err.hint.includes('optimizeDeps: { exclude: ["@handoff/sdk"] }'));
  assert.ok(err.cause instanceof WebAssembly.CompileError, "the engine's error is kept as the cause");
  assert.match(err.message, /expected magic word/);
  assert.equal(requests.length, 0);
  await sdk.initHandoff(WASM);
});

test("the wasm is beside the glue; pre-bundled by Vite's dev server, in the installed package", async () => {
  answers.push(wasm(), wasm());
  await (await freshSdk()).initHandoff();
  assert.equal(requests[0], new URL("../dist/handoff_client_bg.wasm", import.meta.url).href);

  // Vite serves the bundle from node_modules/.vite/deps/, where the wasm was not copied.
  const app = mkdtempSync(join(tmpdir(), "handoff-sdk-vite-"));
  try {
    const deps = join(app, "node_modules/.vite/deps");
    mkdirSync(deps, { recursive: true });
    copyFileSync(new URL("../index.js", import.meta.url), join(deps, "@handoff_sdk.js"));
    const bundled = await import(pathToFileURL(join(deps, "@handoff_sdk.js")).href);
    await bundled.initHandoff();
    assert.equal(requests[1], pathToFileURL(join(app, "node_modules/@handoff/sdk/dist/handoff_client_bg.wasm")).href);
  } finally {
    rmSync(app, { recursive: true, force: true });
  }
});
