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

/**
 * Loads and instantiates the WebAssembly module once. By default the `.wasm` is fetched next to
 * this file (`new URL(..., import.meta.url)`); pass a URL, a `Response`, bytes or a
 * `WebAssembly.Module` to load it from elsewhere.
 */
export function initHandoff(moduleOrPath) {
  if (!ready) {
    ready = init(moduleOrPath === undefined ? undefined : { module_or_path: moduleOrPath }).then(() => undefined);
  }
  return ready;
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
