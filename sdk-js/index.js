// @handoff/sdk: the wasm SDK (crates/handoff-client) with a one-time initializer.
import init, {
  AgentClient,
  HandoffClient,
  RealtimeChannel,
  RealtimeClient,
  connectSupabase,
  countsAsUnread,
} from "./dist/handoff_client.js";

let ready;

/** What to do when the wasm URL answers with something else (an HTML page, usually). */
const NOT_WASM_HINT =
  'With Vite\'s dev server and the SDK outside the app\'s node_modules (hoisted in a workspace, a custom cacheDir), exclude it from dependency pre-bundling: optimizeDeps: { exclude: ["@handoff/sdk"] } in vite.config. Otherwise serve dist/handoff_client_bg.wasm beside dist/handoff_client.js, or pass the wasm\'s URL to initHandoff(url).';

/**
 * Loads and instantiates the WebAssembly module once. By default the `.wasm` is fetched next to
 * this file (`new URL(..., import.meta.url)`); pass a URL, a `Response`, bytes or a
 * `WebAssembly.Module` to load it from elsewhere. A failure rejects with `code`
 * `wasm_load_failed` (network, HTTP status, compile) or `wasm_not_wasm` (the answer is not
 * wasm: `hint` says how to fix it), and is forgotten: the next call tries again.
 */
export function initHandoff(moduleOrPath) {
  if (!ready) {
    ready = load(moduleOrPath).catch((error) => {
      ready = undefined;
      throw error;
    });
  }
  return ready;
}

async function load(source) {
  const where = source === undefined ? wasmUrl() : source;
  const isResponse = typeof Response === "function" && where instanceof Response;
  const isRequest = typeof Request === "function" && where instanceof Request;
  const url = isResponse || isRequest ? where.url : typeof where === "string" || where instanceof URL ? String(where) : undefined;
  const at = url ? ` from ${url}` : "";
  let response = isResponse ? where : undefined;
  if (typeof where === "string" || where instanceof URL || isRequest) {
    try {
      response = await fetch(where);
    } catch (cause) {
      throw initError("wasm_load_failed", `Cannot download the Handoff SDK's WebAssembly${at}: ${describe(cause)}`, { url, cause });
    }
  }
  if (response && !response.ok) {
    throw initError(
      "wasm_load_failed",
      `Cannot download the Handoff SDK's WebAssembly${at}: HTTP ${response.status} ${response.statusText}`.trimEnd(),
      { url, status: response.status },
    );
  }
  const contentType = response?.headers.get("content-type") ?? undefined;
  if (contentType && /^text\/html\b/i.test(contentType)) {
    // An HTML page (a dev server's or an SPA host's fallback): say so before the glue warns
    // about the MIME type and the engine about the magic word.
    const head = (await response.text().catch(() => "")).slice(0, 40).replace(/\s+/g, " ");
    throw initError(
      "wasm_not_wasm",
      `The Handoff SDK's WebAssembly${at} is not WebAssembly but a ${contentType} answer (${JSON.stringify(head)}...). ${NOT_WASM_HINT}`,
      { url, status: response.status, hint: NOT_WASM_HINT },
    );
  }
  try {
    await init({ module_or_path: response ?? where });
  } catch (cause) {
    if (isNotWasm(cause, contentType)) {
      const what = contentType ? `a ${contentType} answer` : "something else";
      throw initError(
        "wasm_not_wasm",
        `The Handoff SDK's WebAssembly${at} is not WebAssembly but ${what} (${describe(cause)}). ${NOT_WASM_HINT}`,
        { url, status: response?.status, cause, hint: NOT_WASM_HINT },
      );
    }
    throw initError("wasm_load_failed", `Cannot load the Handoff SDK's WebAssembly${at}: ${describe(cause)}`, { url, cause });
  }
}

/**
 * The wasm beside the glue, as the glue would load it: bundlers (Vite, webpack, Rollup) emit the
 * asset for this `new URL(..., import.meta.url)` form. Vite's dev server runs this file
 * pre-bundled from `node_modules/.vite/deps/`, where the wasm was not copied: there, it is
 * still in the installed package, two folders up, which the dev server serves as it is.
 */
function wasmUrl() {
  const url = new URL("./dist/handoff_client_bg.wasm", import.meta.url);
  return url.pathname.includes("/node_modules/.vite/deps/")
    ? new URL("../../../@handoff/sdk/dist/handoff_client_bg.wasm", url)
    : url;
}

/** The engine's "no `\0asm` at the start" (V8, SpiderMonkey, JavaScriptCore), or a text answer. */
function isNotWasm(cause, contentType) {
  if (contentType && /^text\//i.test(contentType)) return true;
  const compile = typeof WebAssembly === "object" && cause instanceof WebAssembly.CompileError;
  return compile && /magic|\\0asm|doesn't start with/i.test(String(cause.message));
}

function describe(cause) {
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

/** An `Error` with `code` (and `url`, `status`, `hint` when known), like the wasm's errors. */
function initError(code, message, { cause, ...fields }) {
  const error = cause === undefined ? new Error(message) : new Error(message, { cause });
  error.code = code;
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) error[k] = v;
  return error;
}

/** `await initHandoff()` then `new HandoffClient(options)`. */
export async function createClient(options) {
  await initHandoff();
  return new HandoffClient(options);
}

/** `await initHandoff()` then `new AgentClient(options)`. */
export async function createAgentClient(options) {
  await initHandoff();
  return new AgentClient(options);
}

export { AgentClient, HandoffClient, RealtimeChannel, RealtimeClient, connectSupabase, countsAsUnread };
