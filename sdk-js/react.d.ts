import type {
  AgentClient,
  AgentStatus,
  AgentSummary,
  Author,
  ConnectionState,
  ConversationStatus,
  HandoffClient,
  HandoffEventName,
  HandoffEvents,
  Message,
  Note,
  OfflineMessage,
  PresenceState,
  QueueEntry,
  StoredEvent,
} from "./index.js";

export interface ConversationRealtime {
  /** Persisted events of the conversation, in `seq` order, each once. */
  events: StoredEvent[];
  messages: Message[];
  notes: Note[];
  status: ConversationStatus | undefined;
  agent: AgentSummary | undefined;
  queuePosition: { position: number; queueLength: number } | undefined;
  /** Who is typing now (3 s time-to-live applied by the client). */
  typing: Author[];
  presence: PresenceState | undefined;
  connection: ConnectionState | undefined;
}

/** Subscribes on mount (history + live, merged by `seq`), cleans up on unmount. */
export function useConversationRealtime(
  client: HandoffClient | AgentClient | null | undefined,
  conversationId: string | null | undefined,
): ConversationRealtime;

export interface QueueRealtime {
  queue: QueueEntry[];
  agents: Record<string, AgentStatus>;
  offlineMessages: OfflineMessage[];
  /** Conversation events seen on the queue channel, deduplicated by conversation and `seq`. */
  activity: { event: HandoffEventName; payload: HandoffEvents[HandoffEventName] }[];
  connection: ConnectionState | undefined;
  error: unknown;
}

/** Subscribes to `project:{id}:queue` on mount, cleans up on unmount. */
export function useQueueRealtime(agentClient: AgentClient | null | undefined): QueueRealtime;

export function insertBySeq<T extends { payload: unknown }>(list: T[], event: string, payload: unknown): T[];
export function conversationOf(payload: unknown): string | undefined;
export function seqOf(payload: unknown): number | undefined;
