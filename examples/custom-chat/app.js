// A chat UI on the SDK alone. Served by the server from target/handoff-web/ (built by
// `cargo xtask web`), so the SDK is at /sdk/index.js; with npm, import from "@handoff/sdk".
import { createClient } from "/sdk/index.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("key").value = params.get("key") ?? localStorage.getItem("custom-chat.key") ?? "";

function line(text, cls) {
  const li = document.createElement("li");
  li.textContent = text; // text, never HTML
  if (cls) li.className = cls;
  $("log").append(li);
  return li;
}

$("go").onclick = async () => {
  const projectKey = $("key").value.trim();
  localStorage.setItem("custom-chat.key", projectKey);
  const t0 = performance.now();
  const client = await createClient({ baseUrl: location.origin, projectKey });
  const shown = new Set();
  client.on("connection", (state) => {
    $("state").textContent = state;
    if (state === "connected") console.log(`import to joined: ${Math.round(performance.now() - t0)} ms`);
  });
  client.on("message:new", ({ message }) => {
    if (shown.has(message.id)) return;
    shown.add(message.id);
    line(`${message.author.name ?? message.author.kind}: ${message.body}`, message.author.kind === "customer" ? "me" : "");
  });
  client.on("conversation:status_changed", ({ status }) => line(`(conversation is ${status})`));
  client.on("conversation:assigned", ({ agent }) => line(`(${agent.name} joined)`));
  client.on("queue:position_updated", ({ position, queue_length }) => {
    $("position").textContent = `— position ${position} of ${queue_length} in the queue`;
  });
  client.on("typing", ({ is_typing }) => ($("typing").hidden = !is_typing));
  client.on("error", (e) => line(`error ${e.code}: ${e.message}`));

  const session = await client.start();
  if (!session.conversation) await client.startConversation();
  for (const el of document.querySelectorAll("#compose [disabled]")) el.disabled = false;
  $("text").oninput = () => client.typing();
  $("text").onblur = () => client.stopTyping();
  $("human").onclick = () => client.requestHandoff().catch((e) => line(`error ${e.code}: ${e.message}`));
  $("compose").onsubmit = async (e) => {
    e.preventDefault();
    const body = $("text").value.trim();
    if (!body) return;
    $("text").value = "";
    try {
      await client.send(body);
    } catch (err) {
      line(`not sent (${err.code}): ${body}`, "pending");
    }
  };
  addEventListener("pagehide", () => client.close());
};
