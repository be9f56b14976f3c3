// React hooks over HandoffClient / AgentClient (or anything with the same `on` and
// `subscribe*` methods). They subscribe on mount, clean up on unmount, keep persisted events in
// `seq` order and never show one twice, even when history and live events overlap.
import { useEffect, useState } from "react";

const PERSISTED = new Set([
  "message:new",
  "conversation:status_changed",
  "conversation:assigned",
  "agent:claimed",
  "conversation:transferred",
  "conversation:resolved",
]);

/** The conversation an event payload is about, if any. */
export function conversationOf(payload) {
  if (!payload || typeof payload !== "object") return undefined;
  return payload.conversation_id ?? payload.message?.conversation_id ?? payload.note?.conversation_id;
}

/** The `seq` of a persisted event payload. */
export function seqOf(payload) {
  return payload?.seq ?? payload?.message?.seq;
}

/**
 * Inserts `{event, payload}` into a list sorted by `seq`; returns the same list when the event
 * is already there (same `seq`, or the same message id).
 */
export function insertBySeq(list, event, payload) {
  const seq = seqOf(payload);
  if (typeof seq !== "number") return list;
  const id = payload.message?.id;
  if (list.some((e) => seqOf(e.payload) === seq || (id !== undefined && e.payload.message?.id === id))) {
    return list;
  }
  const next = list.slice();
  let i = next.length;
  while (i > 0 && seqOf(next[i - 1].payload) > seq) i--;
  next.splice(i, 0, { event, payload });
  return next;
}

const EMPTY_CONVERSATION = Object.freeze({
  events: [],
  messages: [],
  notes: [],
  status: undefined,
  agent: undefined,
  queuePosition: undefined,
  typing: [],
  presence: undefined,
  connection: undefined,
});

function derive(state, events) {
  let status;
  let agent;
  for (const { event, payload } of events) {
    if (event === "conversation:status_changed") status = payload.status;
    if (event === "conversation:assigned" || event === "agent:claimed") {
      agent = payload.agent;
      status = "assigned";
    }
    if (event === "conversation:transferred") agent = payload.to?.type === "agent" ? payload.to : undefined;
    if (event === "conversation:resolved") status = "resolved";
  }
  return {
    ...state,
    events,
    messages: events.filter((e) => e.event === "message:new").map((e) => e.payload.message),
    status,
    agent,
  };
}

/**
 * Live state of one conversation: `{events, messages, notes, status, agent, queuePosition,
 * typing, presence, connection}`.
 */
export function useConversationRealtime(client, conversationId) {
  const [state, setState] = useState(EMPTY_CONVERSATION);

  useEffect(() => {
    setState({ ...EMPTY_CONVERSATION, connection: client?.connectionState });
    if (!client || !conversationId) return undefined;
    let alive = true;
    const update = (f) => {
      if (alive) setState(f);
    };
    const handle = (payload, name) => {
      if (name === "connection") {
        update((s) => ({ ...s, connection: payload }));
        return;
      }
      if (conversationOf(payload) !== conversationId) return;
      if (PERSISTED.has(name)) {
        update((s) => {
          const events = insertBySeq(s.events, name, payload);
          return events === s.events ? s : derive(s, events);
        });
      } else if (name === "typing") {
        update((s) => {
          const others = s.typing.filter((a) => !(a.kind === payload.actor.kind && a.id === payload.actor.id));
          return { ...s, typing: payload.is_typing ? [...others, payload.actor] : others };
        });
      } else if (name === "queue:position_updated") {
        update((s) => ({ ...s, queuePosition: { position: payload.position, queueLength: payload.queue_length } }));
      } else if (name === "presence:updated") {
        update((s) => ({ ...s, presence: payload.state }));
      } else if (name === "note:new") {
        update((s) => (s.notes.some((n) => n.id === payload.note.id) ? s : { ...s, notes: [...s.notes, payload.note] }));
      }
    };
    const cleanups = [client.on("*", handle)];
    if (typeof client.subscribeConversation === "function") {
      cleanups.push(client.subscribeConversation(conversationId));
    }
    if (typeof client.history === "function") {
      Promise.resolve(client.history(conversationId))
        .then((page) => {
          for (const e of page?.events ?? []) handle(e.payload, e.event);
        })
        .catch(() => {});
    }
    return () => {
      alive = false;
      for (const off of cleanups) if (typeof off === "function") off();
    };
  }, [client, conversationId]);

  return state;
}

const QUEUE_EVENTS = new Set([
  "conversation:status_changed",
  "conversation:assigned",
  "agent:claimed",
  "conversation:transferred",
  "conversation:resolved",
  "message:new",
]);

const EMPTY_QUEUE = Object.freeze({
  queue: [],
  agents: {},
  offlineMessages: [],
  activity: [],
  connection: undefined,
  error: undefined,
});

/**
 * Live state of an agent's project: `{queue, agents, offlineMessages, activity, connection,
 * error}`. `agents` maps agent id to status; `activity` is the seq-deduplicated list of
 * conversation events seen on the queue channel (for inbox previews and toasts).
 */
export function useQueueRealtime(agentClient) {
  const [state, setState] = useState(() => ({ ...EMPTY_QUEUE, connection: agentClient?.connectionState }));

  useEffect(() => {
    // The client may have connected before it got here (`setAgent(await login())`): its state
    // now, not only the changes from here on; and nothing of a previous client's.
    setState({ ...EMPTY_QUEUE, connection: agentClient?.connectionState });
    if (!agentClient) return undefined;
    let alive = true;
    let live = false;
    const update = (f) => {
      if (alive) setState(f);
    };
    const seen = new Set();
    const cleanups = [
      agentClient.on("*", (payload, name) => {
        if (name === "connection") update((s) => ({ ...s, connection: payload }));
        else if (name === "queue:updated") {
          live = true;
          update((s) => ({ ...s, queue: payload.queue }));
        } else if (name === "agent:status_changed") {
          update((s) => ({ ...s, agents: { ...s.agents, [payload.agent_id]: payload.status } }));
        } else if (name === "offline_message:new") {
          const m = payload.offline_message;
          update((s) =>
            s.offlineMessages.some((o) => o.id === m.id) ? s : { ...s, offlineMessages: [...s.offlineMessages, m] },
          );
        } else if (QUEUE_EVENTS.has(name)) {
          const key = `${conversationOf(payload)}:${seqOf(payload)}`;
          if (seen.has(key)) return;
          seen.add(key);
          update((s) => ({ ...s, activity: [...s.activity, { event: name, payload }] }));
        }
      }),
    ];
    try {
      cleanups.push(agentClient.subscribeQueue());
    } catch (error) {
      update((s) => ({ ...s, error }));
    }
    if (typeof agentClient.queue === "function") {
      Promise.resolve(agentClient.queue())
        .then((q) => {
          // A live update that came first is newer than this answer.
          if (!live && q?.queue) update((s) => ({ ...s, queue: q.queue }));
        })
        .catch((error) => update((s) => ({ ...s, error })));
    }
    return () => {
      alive = false;
      for (const off of cleanups) if (typeof off === "function") off();
    };
  }, [agentClient]);

  return state;
}
