// A customer chat on @handoff/sdk: one client for the page, a conversation started by the
// first message, and the conversation's live messages from the SDK's React hook.
import { useEffect, useState } from "react";
import { createClient } from "@handoff/sdk";
import { useConversationRealtime } from "@handoff/sdk/react";

// Vite takes VITE_* variables from the environment or from .env files, in dev and at build.
const baseUrl = import.meta.env.VITE_HANDOFF_URL ?? "http://127.0.0.1:8080";
const projectKey = import.meta.env.VITE_HANDOFF_PROJECT_KEY;

/** The started customer client, or the error that stopped it; closed on unmount. */
function useCustomerClient() {
  const [state, setState] = useState({ client: null, error: null });
  useEffect(() => {
    if (!projectKey) return undefined;
    // React's StrictMode mounts twice in dev: the first client is closed before it starts.
    let alive = true;
    let client;
    (async () => {
      try {
        client = await createClient({ baseUrl, projectKey });
        if (!alive) return client.close();
        await client.start();
        if (alive) setState({ client, error: null });
      } catch (error) {
        if (alive) setState({ client: null, error });
      }
    })();
    return () => {
      alive = false;
      client?.close();
    };
  }, []);
  return state;
}

export function App() {
  const { client, error } = useCustomerClient();
  if (!projectKey) {
    return (
      <p>
        Set <code>VITE_HANDOFF_PROJECT_KEY</code> (and <code>VITE_HANDOFF_URL</code>) in <code>.env.local</code>:
        see README.md.
      </p>
    );
  }
  if (error) return <Problem error={error} />;
  if (!client) return <p data-testid="loading">Starting the chat…</p>;
  return <Chat client={client} />;
}

function Chat({ client }) {
  // A conversation still open from an earlier visit (the visitor token is in localStorage) is
  // resumed by `start()`.
  const [conversationId, setConversationId] = useState(client.conversationId);
  const { messages, status, agent, queuePosition, typing, connection } = useConversationRealtime(
    client,
    conversationId,
  );
  const [draft, setDraft] = useState("");
  const [error, setError] = useState(null);

  // Every call returns a promise that rejects with an error carrying a `code`.
  const attempt = async (call) => {
    try {
      await call();
      setError(null);
    } catch (e) {
      setError(e);
    }
  };

  function submit(event) {
    event.preventDefault();
    const body = draft.trim();
    if (!body) return;
    setDraft("");
    attempt(async () => {
      if (conversationId) await client.send(body);
      else setConversationId((await client.startConversation(body)).id);
    });
  }

  const someoneTyping = typing.some((actor) => actor.kind !== "customer");
  return (
    <main>
      <header>
        <h1>Support</h1>
        <p>
          <span data-testid="connection">{connection ?? client.connectionState}</span>
          {status && (
            <span data-testid="status"> · {status === "assigned" && agent ? `${agent.name} is here` : status}</span>
          )}
          {status === "queued" && queuePosition && (
            <span data-testid="queue"> · number {queuePosition.position} in the queue</span>
          )}
        </p>
      </header>
      <ol data-testid="messages">
        {messages.map((m) => (
          <li key={m.id} data-testid="message" data-author={m.author.kind}>
            <b>{m.author.kind === "customer" ? "You" : (m.author.name ?? m.author.kind)}:</b> {m.body}
          </li>
        ))}
      </ol>
      {someoneTyping && <p data-testid="typing">typing…</p>}
      {conversationId && !agent && status !== "queued" && (
        <button type="button" data-testid="human" onClick={() => attempt(() => client.requestHandoff())}>
          Talk to a human
        </button>
      )}
      {error && <Problem error={error} />}
      <form onSubmit={submit}>
        <input
          aria-label="Message"
          data-testid="draft"
          value={draft}
          placeholder={conversationId ? "Write a message" : "How can we help?"}
          onChange={(e) => {
            setDraft(e.target.value);
            if (conversationId) client.typing();
          }}
        />
        <button type="submit" data-testid="send">
          Send
        </button>
      </form>
    </main>
  );
}

/** Every SDK error has a machine-readable `code`. */
function Problem({ error }) {
  return (
    <p role="alert" data-testid="error">
      {error.code ?? "error"}: {error.message}
    </p>
  );
}
