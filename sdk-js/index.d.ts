// Hand-written declarations of @handoff/sdk. Event payloads mirror the protocol crate's golden
// files (crates/handoff-protocol/tests/data/events/): wire field names, timestamps in ms since
// the Unix epoch.

export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "polling" | "closed";
export type ConversationStatus = "bot" | "queued" | "assigned" | "resolved" | (string & {});
export type AuthorKind = "customer" | "agent" | "bot" | "system" | (string & {});
export type AgentStatus = "online" | "away" | "offline" | (string & {});
export type PresenceState = "online" | "idle" | "offline" | (string & {});

export interface Author {
  kind: AuthorKind;
  id: string;
  name?: string;
}
export interface AgentSummary {
  id: string;
  name: string;
}
export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  author: Author;
  body: string;
  client_msg_id?: string;
  created_at: number;
}
export interface Note {
  id: string;
  conversation_id: string;
  author: AgentSummary;
  body: string;
  created_at: number;
}
export interface OfflineMessage {
  id: string;
  name: string;
  email: string;
  message: string;
  created_at: number;
  handled?: boolean;
}
/** A project's shared reply, inserted in the compose box by typing `/` and its shortcut. */
export interface CannedResponse {
  id: string;
  /** 1 to 32 letters, digits, `-` or `_`; unique in the project without regard to case. */
  shortcut: string;
  /** The text inserted: not blank, at most 4000 characters. */
  content: string;
  created_at: number;
  updated_at: number;
}
export interface QueueEntry {
  conversation_id: string;
  position: number;
  waiting_since: number;
  customer_name?: string;
  preview?: string;
}
export type TransferTarget = { type: "queue" } | ({ type: "agent" } & AgentSummary);

/** Payloads by event name (the second argument of a handler is the name). */
export interface HandoffEvents {
  "message:new": { message: Message };
  "conversation:status_changed": { conversation_id: string; seq: number; status: ConversationStatus; previous: ConversationStatus };
  "conversation:assigned": { conversation_id: string; seq: number; agent: AgentSummary };
  "agent:claimed": { conversation_id: string; seq: number; agent: AgentSummary };
  "conversation:transferred": {
    conversation_id: string;
    seq: number;
    from_agent?: AgentSummary;
    to: TransferTarget;
    note?: string;
  };
  "conversation:resolved": { conversation_id: string; seq: number; resolved_by: Author };
  "queue:position_updated": { conversation_id: string; position: number; queue_length: number };
  "queue:updated": { queue: QueueEntry[] };
  "agent:status_changed": { agent_id: string; status: AgentStatus };
  /** After the receiver's 3 s time-to-live: `is_typing: false` comes even if the sender's was lost. */
  typing: { conversation_id: string; actor: Author; is_typing: boolean };
  "presence:updated": { conversation_id: string; state: PresenceState; at: number };
  "note:new": { note: Note };
  "offline_message:new": { offline_message: OfflineMessage };
  /** The customer rated the resolved conversation (persisted, once per conversation): on the
   * conversation's channel and the rated agent's. */
  "conversation:rated": { conversation_id: string; seq: number; rating: number; comment?: string };
  /** Read receipt: an agent's read marker moved, so the customer's messages up to `seq` were
   * read. Not persisted (the latest is `Conversation.agent_read_seq`); `seq` only grows. */
  "message:read": { conversation_id: string; seq: number; reader: Author; at: number };
  /** Customer client: an own message is on its way (sent, retried, or restored from storage
   * after a reload). Show it as "sending"; the `message:new` with the same `client_msg_id`
   * confirms it. `conversation_id` is `null` for the first message of `startConversation`. */
  "message:queued": OutboxMessage;
  /** Customer client: the server refused an own message for good (a 4xx other than 408, 425,
   * 429). It is kept (also across reloads) until `retry(client_msg_id)` or
   * `discard(client_msg_id)`, and does not hold back the messages after it. With
   * `conversation_id: null` it was the first message of a `startConversation` that failed:
   * not kept (the promise rejects). */
  "message:failed": OutboxMessage & { error: { code: string; message: string; status?: number | null } };
  /** Customer client: an own message was dropped (`discard`). */
  "message:discarded": { conversation_id: string | null; client_msg_id: string };
  /** Whether the project can take a chat now, on `project:{id}:availability`
   * (`HandoffClient.watchAvailability()`): the current state after every (re)join, then each
   * change. `show_offline_form`: no agent online, or outside business hours. */
  "availability:changed": Availability;
  /** Customer client: `identify` for another user than the one this browser's visitor was
   * identified as started a new visitor (the previous one's conversation, unsent messages and
   * token are forgotten): clear whatever shows the previous user's chat. */
  "visitor:changed": { visitor_id: string; previous_visitor_id: string | null; session: WidgetSession };
  /** The connection state changed. */
  connection: ConnectionState;
  /** A channel could not be joined or was closed, or a catch-up was refused. */
  error: HandoffError;
}
export type HandoffEventName = keyof HandoffEvents;
/** An own message not stored by the server yet. */
export interface OutboxMessage {
  conversation_id: string | null;
  client_msg_id: string;
  body: string;
}
export type Unsubscribe = () => void;

/** Every rejected promise and `error` event carries a machine-readable code. */
export interface HandoffError extends Error {
  /** The server's code (`unauthorized`, `invalid_transition`, `validation_failed`, ...) or the
   * client's own: `network_error`, `invalid_response`, `not_ready`, `closed`, `join_failed`,
   * `channel_closed`; loading the wasm: `wasm_load_failed`, `wasm_not_wasm` (see
   * {@link HandoffInitError}). */
  code: string;
  /** HTTP status for server errors (and for the wasm's download). */
  status?: number;
  channel?: string;
}

/** Why `initHandoff` (and so `createClient`, `createAgentClient`) rejected. The failure is not
 * cached: the next call downloads again. */
export interface HandoffInitError extends HandoffError {
  /** `wasm_load_failed`: the download failed (network, HTTP status) or the wasm did not
   * compile. `wasm_not_wasm`: the URL answered with something else, usually an HTML page
   * (Vite's dev server with the SDK pre-bundled: `optimizeDeps: { exclude: ["@handoff/sdk"] }`). */
  code: "wasm_load_failed" | "wasm_not_wasm";
  /** Where the wasm was loaded from, when it was a URL. */
  url?: string;
  /** `wasm_not_wasm`: how to fix it. */
  hint?: string;
  /** The engine's or `fetch`'s error. */
  cause?: unknown;
}

export interface Theme {
  color: string;
  position: string;
  title: string;
  greeting: string;
}
export interface Availability {
  project_id: string;
  agents_online: number;
  within_business_hours: boolean;
  show_offline_form: boolean;
}
export interface WidgetConfig {
  agents_online: number;
  within_business_hours: boolean;
  show_offline_form: boolean;
  /** A bot answers new conversations: chat first, the offline form when a human is asked for. */
  bot: boolean;
  identity_required: boolean;
  /** The server sends email: `POST /api/conversations/{id}/transcript` works (else it answers
   * `403 email_disabled`). */
  email: boolean;
  theme: Theme;
}
/** A conversation's satisfaction rating (CSAT). */
export interface ConversationRating {
  /** 1 (bad) to 5 (great). */
  rating: number;
  comment?: string;
  /** The agent who resolved the conversation, else the last one who had it. */
  agent_id?: string;
  created_at: number;
}
export interface Conversation {
  id: string;
  project_id: string;
  visitor_id: string;
  customer_name?: string;
  status: ConversationStatus;
  agent?: AgentSummary;
  /** The customer's presence now; later changes come as `presence:updated`. */
  presence: PresenceState;
  last_seq: number;
  /** The customer's messages up to this seq were read by an agent (0: none); later moves come
   * as `message:read`. */
  agent_read_seq: number;
  /** The customer's rating, once given. */
  rating?: ConversationRating;
  created_at: number;
  updated_at: number;
}
export interface WidgetSession {
  project_id: string;
  visitor_id: string;
  visitor_token: string;
  config: WidgetConfig;
  conversation?: Conversation;
}
export interface ConversationHistory {
  conversation: Conversation;
  events: StoredEvent[];
}
export interface StoredEvent<K extends HandoffEventName = HandoffEventName> {
  event: K;
  payload: HandoffEvents[K];
}
/** One answer of `GET .../events?after=`: at most 500 events. `last_seq` is the conversation's
 * latest seq, not "got up to": while the last event's seq is below it, ask again after that
 * event (`history()` does). */
export interface EventsPage {
  events: StoredEvent[];
  last_seq: number;
  status: ConversationStatus;
}
export interface Agent {
  id: string;
  project_id: string;
  name: string;
  email: string;
  status: AgentStatus;
  capacity: number;
  open_conversations: number;
  /** The project's public key, in the answers to the agent themself (login, resume). */
  project_key?: string;
}
export interface InboxItem {
  conversation: Conversation;
  unread: number;
  last_message?: Message;
}

/** A storage for the visitor token (defaults to `localStorage`; `null` keeps it in memory). */
export interface TokenStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem?(key: string): void;
}

export interface HandoffClientOptions {
  /** The server, e.g. `https://chat.example.com`. */
  baseUrl: string;
  /** The project's public key (`pk_...`). */
  projectKey: string;
  storage?: TokenStorage | null;
  /** The realtime socket, when not at `baseUrl` (`ws(s)://...`). */
  realtimeUrl?: string;
  /** While connected, check for missed events at least this often (ms; default 60000, min 1000). */
  catchUpIntervalMs?: number;
}

type Handler<K extends HandoffEventName> = (payload: HandoffEvents[K], event: K) => void;

interface Events {
  on<K extends HandoffEventName>(event: K, fn: Handler<K>): Unsubscribe;
  on(event: "*", fn: <K extends HandoffEventName>(payload: HandoffEvents[K], event: K) => void): Unsubscribe;
  readonly connectionState: ConnectionState;
  /** Releases the socket, every timer, listener and request; pending sends reject with `closed`. */
  close(): void;
}

/** The customer side: a widget session and its conversation. */
export class HandoffClient implements Events {
  constructor(options: HandoffClientOptions);
  /** Starts or resumes (visitor token in storage) the session and connects; an open
   * conversation is followed at once and its history emitted. */
  start(): Promise<WidgetSession>;
  startConversation(body?: string): Promise<Conversation>;
  /** Through the outbox: in order, retried with the same `client_msg_id` until stored, kept in
   * `storage` (per conversation; at most 50 messages / 64 KB: beyond, rejects with
   * `outbox_full`) and sent after a reload. Emits `message:queued` at once; a message the
   * server refuses for good rejects and emits `message:failed`. */
  send(body: string): Promise<Message>;
  /** Sends a failed message again (after the queued ones); `false` if no failed message has
   * this id. */
  retry(clientMsgId: string): boolean;
  /** Drops a failed (or still waiting) message; `false` if there is none, or it is on its way. */
  discard(clientMsgId: string): boolean;
  requestHandoff(): Promise<Conversation>;
  /** Follows the project's availability live (after `start()`; opens the socket if no
   * conversation has yet): `availability:changed` now and on every change. */
  watchAvailability(): Unsubscribe;
  /** Call on every keystroke: debounced to one `typing` per 300 ms, `false` after 3 s idle. */
  typing(): void;
  stopTyping(): void;
  sendOfflineMessage(form: { name: string; email: string; message: string }): Promise<OfflineMessage>;
  /** Rates the resolved conversation, once: `rating` 1 to 5, an optional comment of at most
   * 1000 characters. Rejects with `validation_failed` (checked by the server),
   * `invalid_transition` (not resolved) or `already_rated`. */
  rate(rating: number, comment?: string): Promise<ConversationRating>;
  /** Binds a signed-in user (after `start()`). Another user than the visitor's (remembered
   * next to the token, or refused by the server with `409 identity_conflict`) gets a new
   * visitor first (`visitor:changed`): one user never sees another's chat. */
  identify(user: { user_id: string; name?: string; email?: string; hmac: string }): Promise<void>;
  /** Every persisted event so far, fetched page by page (`last_seq`: the latest). */
  history(): Promise<EventsPage>;
  /** The visitor's conversations with their transcripts, newest first (at most 20, each with
   * its first 500 events): earlier, resolved ones included; after `identify` with a valid
   * HMAC, every conversation of that user in the project, from any device. */
  conversations(): Promise<{ conversations: ConversationHistory[] }>;
  readonly conversationId: string | undefined;
  readonly session: WidgetSession | null;
  on<K extends HandoffEventName>(event: K, fn: Handler<K>): Unsubscribe;
  on(event: "*", fn: <K extends HandoffEventName>(payload: HandoffEvents[K], event: K) => void): Unsubscribe;
  readonly connectionState: ConnectionState;
  close(): void;
  free(): void;
}

export interface AgentClientOptions {
  baseUrl: string;
  realtimeUrl?: string;
  /** The socket's `apikey`; defaults to the project's public key sent at sign-in. */
  apikey?: string;
  /** While connected, check for missed events at least this often (ms; default 60000, min 1000). */
  catchUpIntervalMs?: number;
}

/** The agent inbox side. */
export class AgentClient implements Events {
  constructor(options: AgentClientOptions);
  login(email: string, password: string): Promise<{ token: string; agent: Agent }>;
  /** Continues with a token from an earlier `login` (rejects with `unauthorized` when revoked). */
  resume(token: string): Promise<{ token: string; agent: Agent }>;
  /** Revokes the token on the server, then closes the client (`agent` is `null` after, also when the call failed). */
  logout(): Promise<void>;
  readonly agent: Agent | null;
  setStatus(status: AgentStatus): Promise<Agent>;
  /**
   * The console's idle rule: after `awayAfterMs` (default 30 minutes) without input (keys,
   * pointer, wheel, focus) an `online` agent is set `away`, and `online` again on their next
   * input; a status chosen with `setStatus` is never overridden, and idling never sets
   * `offline`. Call after `login`/`resume`; returns a function that stops tracking.
   */
  trackIdle(options?: { awayAfterMs?: number }): () => void;
  inbox(): Promise<InboxItem[]>;
  queue(): Promise<{ queue: QueueEntry[] }>;
  agents(): Promise<Agent[]>;
  conversation(id: string): Promise<Conversation>;
  /** Every persisted event so far, fetched page by page (`last_seq`: the latest). */
  history(id: string): Promise<EventsPage>;
  /** `project:{id}:queue`. */
  subscribeQueue(): Unsubscribe;
  /** `agent:{me}`. */
  subscribeAgent(): Unsubscribe;
  /** `conversation:{id}` (ordered, deduplicated, caught up, long-polled when needed) and
   * `conversation:{id}:agents` (notes). */
  subscribeConversation(id: string): Unsubscribe;
  claim(id: string): Promise<Conversation>;
  transfer(id: string, to: "queue" | (string & {}), note?: string): Promise<Conversation>;
  decline(id: string): Promise<Conversation>;
  resolve(id: string): Promise<Conversation>;
  notes(id: string): Promise<Note[]>;
  addNote(id: string, body: string): Promise<Note>;
  markRead(id: string, seq: number): Promise<void>;
  /** In a followed conversation, through its outbox. */
  send(id: string, body: string): Promise<Message>;
  typing(id: string): void;
  stopTyping(id: string): void;
  offlineMessages(handled?: boolean): Promise<OfflineMessage[]>;
  markOfflineHandled(id: string): Promise<OfflineMessage | void>;
  /**
   * The project's canned responses by shortcut (at most 100); with `q`, those whose shortcut
   * starts with it or whose content contains it (without regard to case), shortcut matches first.
   */
  listCannedResponses(q?: string): Promise<CannedResponse[]>;
  /** Rejects with `shortcut_taken` (409) when another one has the shortcut, `validation_failed` for bad fields. */
  createCannedResponse(fields: { shortcut: string; content: string }): Promise<CannedResponse>;
  /** Changes the fields given. */
  updateCannedResponse(id: string, patch: { shortcut?: string; content?: string }): Promise<CannedResponse>;
  deleteCannedResponse(id: string): Promise<void>;
  on<K extends HandoffEventName>(event: K, fn: Handler<K>): Unsubscribe;
  on(event: "*", fn: <K extends HandoffEventName>(payload: HandoffEvents[K], event: K) => void): Unsubscribe;
  readonly connectionState: ConnectionState;
  close(): void;
  free(): void;
}

/** A socket to a Supabase Realtime endpoint (broadcast channels). */
export class RealtimeClient {
  channel(name: string): RealtimeChannel;
  setAuth(token: string): void;
  on(event: "connection", fn: (state: ConnectionState) => void): Unsubscribe;
  on(event: "error", fn: (error: HandoffError) => void): Unsubscribe;
  readonly connectionState: ConnectionState;
  close(): void;
  free(): void;
}
export class RealtimeChannel {
  on(event: string, fn: (payload: unknown, event: string) => void): Unsubscribe;
  subscribe(): void;
  send(event: string, payload: unknown): boolean;
  unsubscribe(): void;
  free(): void;
}
export function connectSupabase(
  url: string,
  apikey: string,
  options?: { private?: boolean; accessToken?: string },
): RealtimeClient;

/** Whether a message by `authorKind` counts as unread for a `readerKind` reader once it is after
 * the reader's read marker: the rule the server's inbox `unread` counts with. An agent counts the
 * customer's messages only; a customer counts agents' and the bot's. */
export function countsAsUnread(authorKind: AuthorKind, readerKind: "agent" | "customer"): boolean;

/** Loads the wasm once (a failure rejects with a {@link HandoffInitError} and is forgotten:
 * the next call tries again). */
export function initHandoff(moduleOrPath?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>;
/** `initHandoff()` (rejects with a {@link HandoffInitError}), then `new HandoffClient(options)`. */
export function createClient(options: HandoffClientOptions): Promise<HandoffClient>;
/** `initHandoff()` (rejects with a {@link HandoffInitError}), then `new AgentClient(options)`. */
export function createAgentClient(options: AgentClientOptions): Promise<AgentClient>;
