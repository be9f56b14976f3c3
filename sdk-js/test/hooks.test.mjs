// The React hooks against fake clients (no wasm needed): subscribe on mount, clean up on
// unmount, seq order, no duplicates.
import { test } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import TestRenderer, { act } from "react-test-renderer";
import { insertBySeq, useConversationRealtime, useQueueRealtime } from "../react.js";

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

class FakeClient {
  constructor(history = []) {
    this.handlers = [];
    this.conversations = new Map();
    this.queueSubs = 0;
    this.history_ = history;
    this.connectionState = "connected";
  }
  on(event, fn) {
    const h = { event, fn };
    this.handlers.push(h);
    return () => {
      this.handlers = this.handlers.filter((x) => x !== h);
    };
  }
  emit(event, payload) {
    for (const h of this.handlers.slice()) if (h.event === event || h.event === "*") h.fn(payload, event);
  }
  subscribeConversation(id) {
    this.conversations.set(id, (this.conversations.get(id) ?? 0) + 1);
    return () => this.conversations.set(id, this.conversations.get(id) - 1);
  }
  subscribeQueue() {
    this.queueSubs++;
    return () => this.queueSubs--;
  }
  history() {
    return Promise.resolve({ events: this.history_, last_seq: this.history_.length, status: "bot" });
  }
  queue() {
    return Promise.resolve({ queue: [{ conversation_id: "old", position: 1, waiting_since: 0 }] });
  }
}

const msg = (seq, body, conversation_id = "c1") => ({
  message: {
    id: `m${seq}`,
    conversation_id,
    seq,
    author: { kind: "customer", id: "v1", name: "Dana" },
    body,
    created_at: 1767225600000 + seq,
  },
});

function mount(hook, ...args) {
  const out = { current: undefined };
  function Probe({ a }) {
    out.current = hook(...a);
    return null;
  }
  let renderer;
  act(() => {
    renderer = TestRenderer.create(React.createElement(Probe, { a: args }));
  });
  return {
    out,
    update: (...a) => act(() => renderer.update(React.createElement(Probe, { a }))),
    unmount: () => act(() => renderer.unmount()),
  };
}

const flush = () => act(() => new Promise((r) => setTimeout(r, 0)));

test("useConversationRealtime subscribes on mount and cleans up on unmount", async () => {
  const client = new FakeClient();
  const { out, unmount } = mount(useConversationRealtime, client, "c1");
  await flush();
  assert.equal(client.handlers.length, 1);
  assert.equal(client.conversations.get("c1"), 1);
  act(() => client.emit("message:new", msg(1, "hi")));
  assert.deepEqual(out.current.messages.map((m) => m.body), ["hi"]);
  unmount();
  assert.equal(client.handlers.length, 0, "every handler removed");
  assert.equal(client.conversations.get("c1"), 0, "the channel is released");
  // Events after unmount reach nobody and update nothing.
  client.emit("message:new", msg(2, "late"));
});

test("useConversationRealtime orders by seq and drops duplicates from history and live", async () => {
  const client = new FakeClient([
    { event: "message:new", payload: msg(1, "one") },
    { event: "message:new", payload: msg(2, "two") },
  ]);
  const { out, unmount } = mount(useConversationRealtime, client, "c1");
  act(() => {
    client.emit("message:new", msg(2, "two")); // live copy of a history event
    client.emit("message:new", msg(4, "four")); // out of order
    client.emit("message:new", msg(3, "three"));
    client.emit("message:new", msg(3, "three")); // duplicate
    client.emit("message:new", msg(9, "other", "c2")); // another conversation
    client.emit("conversation:status_changed", { conversation_id: "c1", seq: 5, status: "queued", previous: "bot" });
    client.emit("queue:position_updated", { conversation_id: "c1", position: 2, queue_length: 3 });
    client.emit("typing", { conversation_id: "c1", actor: { kind: "agent", id: "a1", name: "Ann" }, is_typing: true });
  });
  await flush();
  assert.deepEqual(out.current.messages.map((m) => m.body), ["one", "two", "three", "four"]);
  assert.deepEqual(out.current.events.map((e) => e.payload.seq ?? e.payload.message.seq), [1, 2, 3, 4, 5]);
  assert.equal(out.current.status, "queued");
  assert.deepEqual(out.current.queuePosition, { position: 2, queueLength: 3 });
  assert.deepEqual(out.current.typing.map((a) => a.id), ["a1"]);
  act(() => client.emit("typing", { conversation_id: "c1", actor: { kind: "agent", id: "a1" }, is_typing: false }));
  assert.deepEqual(out.current.typing, []);
  unmount();
});

test("switching conversations releases the old one", async () => {
  const client = new FakeClient();
  const { out, update, unmount } = mount(useConversationRealtime, client, "c1");
  act(() => client.emit("message:new", msg(1, "in c1")));
  update(client, "c2");
  assert.equal(client.conversations.get("c1"), 0);
  assert.equal(client.conversations.get("c2"), 1);
  assert.equal(client.handlers.length, 1);
  assert.deepEqual(out.current.messages, []);
  unmount();
  assert.equal(client.handlers.length, 0);
});

test("useQueueRealtime subscribes, keeps the newest queue, dedupes, cleans up", async () => {
  const client = new FakeClient();
  const { out, unmount } = mount(useQueueRealtime, client);
  assert.equal(client.queueSubs, 1);
  // A live update before the initial fetch answers wins over that answer.
  act(() => client.emit("queue:updated", { queue: [{ conversation_id: "new", position: 1, waiting_since: 1 }] }));
  await flush();
  assert.deepEqual(out.current.queue.map((q) => q.conversation_id), ["new"]);
  const off = { offline_message: { id: "off_1", name: "D", email: "d@x.io", message: "m", created_at: 1 } };
  act(() => {
    client.emit("offline_message:new", off);
    client.emit("offline_message:new", off);
    client.emit("agent:status_changed", { agent_id: "a1", status: "away" });
    client.emit("agent:claimed", { conversation_id: "c1", seq: 6, agent: { id: "a1", name: "Ann" } });
    client.emit("agent:claimed", { conversation_id: "c1", seq: 6, agent: { id: "a1", name: "Ann" } });
  });
  assert.equal(out.current.offlineMessages.length, 1);
  assert.deepEqual(out.current.agents, { a1: "away" });
  assert.equal(out.current.activity.length, 1);
  unmount();
  assert.equal(client.queueSubs, 0);
  assert.equal(client.handlers.length, 0);
});

test("useQueueRealtime reads the connection of a client that arrives already connected", async () => {
  // The usual pattern: render without a client, then `setAgent(await login())` with its socket up.
  const { out, update, unmount } = mount(useQueueRealtime, undefined);
  assert.equal(out.current.connection, undefined);
  const first = new FakeClient();
  update(first);
  await flush();
  assert.equal(out.current.connection, "connected", "the state at hand-over, not only later changes");
  act(() => first.emit("connection", "reconnecting"));
  assert.equal(out.current.connection, "reconnecting");
  // Another client (e.g. after logout and login): its own state, nothing of the previous one's.
  act(() => first.emit("queue:updated", { queue: [{ conversation_id: "a", position: 1, waiting_since: 1 }] }));
  const second = new FakeClient();
  second.connectionState = "polling";
  second.queue = () => new Promise(() => {});
  update(second);
  assert.equal(out.current.connection, "polling");
  assert.deepEqual(out.current.queue, []);
  assert.equal(first.handlers.length, 0);
  unmount();
});

test("insertBySeq keeps order and identity", () => {
  const a = insertBySeq([], "message:new", msg(2, "b"));
  const b = insertBySeq(a, "message:new", msg(1, "a"));
  assert.deepEqual(b.map((e) => e.payload.message.seq), [1, 2]);
  assert.equal(insertBySeq(b, "message:new", msg(2, "b")), b, "a duplicate returns the same list");
  assert.equal(insertBySeq(b, "typing", { conversation_id: "c1" }), b, "ephemeral events are not listed");
});
