//! Storage: the [`Store`] trait the service is written against, its row types, and its
//! implementation on SQL databases ([`SqlStore`]: SQLite by default, PostgreSQL by URL).
//!
//! A store persists and reads; it never decides. Authorization, the state machine and routing
//! live in the service. The one rule a store enforces is optimistic concurrency in
//! [`Store::append`]: events are written only if the conversation is still at the `seq` it was
//! read at, so concurrent writers retry instead of interleaving.

use std::collections::HashMap;

use async_trait::async_trait;
use handoff_protocol::api::CannedResponse;
use handoff_protocol::event::{AgentStatus, ConversationStatus, Event, OfflineMessage, PresenceState};
use handoff_protocol::ids::{
    AgentId, CannedResponseId, ConversationId, MessageId, OfflineMessageId, ProjectId, Seq, VisitorId,
};

use crate::hours::BusinessHours;

mod sql;

pub use sql::{SqlStore, MIGRATIONS, SCHEMA_VERSION};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (unreachable, a broken row, ...).
    #[error("database: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A unique key is taken (an agent's email, ...).
    #[error("already exists")]
    Duplicate,
    /// The conversation changed since it was read (optimistic concurrency): read again, retry.
    #[error("conversation changed concurrently")]
    Conflict,
    /// The agent a write assigns the conversation to holds their capacity already (or is gone).
    #[error("agent at capacity")]
    AtCapacity,
}

/// A project row.
#[derive(Clone, Debug)]
pub struct Project {
    /// Id.
    pub id: ProjectId,
    /// Name.
    pub name: String,
    /// Public key, for the script tag.
    pub public_key: String,
    /// Origins allowed to call the customer API (`*` allows any).
    pub allowed_origins: Vec<String>,
    /// Secret for identity HMACs.
    pub identity_secret: Option<String>,
    /// Whether unverified visitors are refused.
    pub enforce_identity: bool,
    /// Widget theme, JSON.
    pub theme: handoff_protocol::api::Theme,
    /// Bot webhook URL.
    pub webhook_url: Option<String>,
    /// Bot webhook signing secret.
    pub webhook_secret: Option<String>,
    /// Opening hours; `None`: always open.
    pub business_hours: Option<BusinessHours>,
}

impl Project {
    /// Whether a browser origin may use the customer API.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o == origin)
    }
}

/// An agent row.
#[derive(Clone, Debug)]
pub struct AgentRow {
    /// Id.
    pub id: AgentId,
    /// Project.
    pub project_id: ProjectId,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// argon2 hash.
    pub password_hash: String,
    /// Status.
    pub status: AgentStatus,
    /// Capacity.
    pub capacity: u32,
    /// Last activity (ms).
    pub last_activity: u64,
    /// Idle since (ms), for routing ties.
    pub idle_since: u64,
    /// Open assigned conversations (filled by listing queries).
    pub open: u32,
    /// Disabled agents cannot sign in; their tokens are gone.
    pub disabled: bool,
    /// When a node last saw one of their sockets connected (ms), if ever.
    pub last_socket_seen: Option<u64>,
}

/// A visitor row.
#[derive(Clone, Debug)]
pub struct VisitorRow {
    /// Id.
    pub id: VisitorId,
    /// Project.
    pub project_id: ProjectId,
    /// Name, once identified.
    pub name: Option<String>,
    /// Email, once identified.
    pub email: Option<String>,
    /// Whether identity was verified by HMAC.
    pub verified: bool,
}

/// A conversation row.
#[derive(Clone, Debug)]
pub struct ConversationRow {
    /// Id.
    pub id: ConversationId,
    /// Project.
    pub project_id: ProjectId,
    /// Customer.
    pub visitor_id: VisitorId,
    /// Status.
    pub status: ConversationStatus,
    /// Assigned agent.
    pub agent_id: Option<AgentId>,
    /// Last event seq.
    pub last_seq: Seq,
    /// When it entered the queue.
    pub queued_at: Option<u64>,
    /// Customer presence.
    pub presence: PresenceState,
    /// Last presence heartbeat (ms).
    pub last_heartbeat: Option<u64>,
    /// Created (ms).
    pub created_at: u64,
    /// Updated (ms).
    pub updated_at: u64,
}

/// The new state of a conversation written with its events.
#[derive(Clone, Debug)]
pub struct ConversationUpdate {
    /// New status.
    pub status: ConversationStatus,
    /// New agent.
    pub agent_id: Option<AgentId>,
    /// New queue time.
    pub queued_at: Option<u64>,
    /// The write gives the conversation to `agent_id` (a new assignee): it is written only if
    /// that agent holds fewer assigned conversations than their capacity, counted under a lock
    /// on the agent, so concurrent assignments on any node never exceed it.
    pub takes_slot: bool,
}

/// A row written in the same transaction as a conversation's events ([`Store::append_with`]):
/// the transition and its record commit together or not at all.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AppendRow {
    /// An internal note (a transfer's hand-over note).
    Note(handoff_protocol::event::Note),
    /// This agent declined the conversation (routing skips them for it from now on).
    Decline(AgentId),
    /// The customer's satisfaction rating (one per conversation: a second is
    /// [`StoreError::Duplicate`] and rolls the whole write back).
    Rating(RatingRow),
}

/// A conversation's satisfaction rating, as `conversation_ratings` keeps it (reports average
/// `rating` per project and per agent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatingRow {
    /// The conversation (one rating each).
    pub conversation_id: ConversationId,
    /// Its project.
    pub project_id: ProjectId,
    /// The agent who resolved it, else the last one who had it; `None` when no agent did.
    pub agent_id: Option<AgentId>,
    /// 1 to 5.
    pub rating: u8,
    /// The customer's comment.
    pub comment: Option<String>,
    /// When (ms).
    pub created_at: u64,
}

/// What [`Store::write_batch`] read under the write lock, for its plan to decide on.
#[derive(Debug, Default)]
pub struct BatchRead {
    /// The batch's conversations as they are now (missing ones are absent).
    pub conversations: HashMap<ConversationId, ConversationRow>,
    /// The `(conversation, client_msg_id)` pairs asked about that are stored already, with
    /// their message's seq.
    pub client_ids: HashMap<(ConversationId, String), Seq>,
}

/// One conversation's part of a [`Store::write_batch`]: its new state and its events, which
/// carry seqs `expected + 1 ..` in order. A batch write never assigns an agent (no capacity
/// check): it is for messages.
#[derive(Clone, Debug)]
pub struct BatchWrite {
    /// The conversation.
    pub id: ConversationId,
    /// Its `last_seq` as read.
    pub expected: Seq,
    /// Its new status.
    pub status: ConversationStatus,
    /// Its agent.
    pub agent_id: Option<AgentId>,
    /// Its queue time.
    pub queued_at: Option<u64>,
    /// The events to append.
    pub events: Vec<Event>,
}

/// Decides a batch on what [`Store::write_batch`] read: the writes to make.
pub type BatchPlan<'a> = dyn FnMut(BatchRead) -> Vec<BatchWrite> + Send + 'a;

/// A message id for a new message.
pub fn new_message_id() -> MessageId {
    MessageId::new(crate::crypto::random_id("msg_"))
}

/// What the server needs from a database. Implementations must be safe to share between
/// tasks; every method is one short transaction at most.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Closes the connections (at shutdown).
    async fn close(&self);

    /// Creates a project.
    ///
    /// # Errors
    /// Database errors.
    async fn insert_project(&self, p: &Project, secret_key_hash: &str, now: u64) -> Result<(), StoreError>;

    /// A project by id.
    ///
    /// # Errors
    /// Database errors.
    async fn project(&self, id: &ProjectId) -> Result<Option<Project>, StoreError>;

    /// The projects that have business hours set (the availability job watches their
    /// opening and closing).
    ///
    /// # Errors
    /// Database errors.
    async fn projects_with_hours(&self) -> Result<Vec<Project>, StoreError>;

    /// A project by public key.
    ///
    /// # Errors
    /// Database errors.
    async fn project_by_public_key(&self, key: &str) -> Result<Option<Project>, StoreError>;

    /// A project by the hash of its secret key.
    ///
    /// # Errors
    /// Database errors.
    async fn project_by_secret_hash(&self, hash: &str) -> Result<Option<Project>, StoreError>;

    /// Sets a project's bot webhook.
    ///
    /// # Errors
    /// Database errors.
    async fn set_webhook(
        &self,
        id: &ProjectId,
        url: Option<&str>,
        secret: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Sets a project's identity verification.
    ///
    /// # Errors
    /// Database errors.
    async fn set_identity(
        &self,
        id: &ProjectId,
        secret: Option<&str>,
        enforce: bool,
    ) -> Result<(), StoreError>;

    /// Sets a project's theme.
    ///
    /// # Errors
    /// Database errors.
    async fn set_theme(&self, id: &ProjectId, theme: &handoff_protocol::api::Theme)
        -> Result<(), StoreError>;

    /// Sets (or with `None` removes) a project's business hours.
    ///
    /// # Errors
    /// Database errors.
    async fn set_business_hours(
        &self,
        id: &ProjectId,
        hours: Option<&BusinessHours>,
    ) -> Result<(), StoreError>;

    /// Creates an agent.
    ///
    /// # Errors
    /// Database errors (a duplicate email is a unique violation).
    async fn insert_agent(&self, a: &AgentRow) -> Result<(), StoreError>;

    /// An agent by id.
    ///
    /// # Errors
    /// Database errors.
    async fn agent(&self, id: &AgentId) -> Result<Option<AgentRow>, StoreError>;

    /// An agent by email.
    ///
    /// # Errors
    /// Database errors.
    async fn agent_by_email(&self, email: &str) -> Result<Option<AgentRow>, StoreError>;

    /// The agents of a project, with their open conversation counts.
    ///
    /// # Errors
    /// Database errors.
    async fn agents(&self, project: &ProjectId) -> Result<Vec<AgentRow>, StoreError>;

    /// Sets an agent's status (and activity time).
    ///
    /// # Errors
    /// Database errors.
    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, now: u64) -> Result<(), StoreError>;

    /// Sets an agent's capacity.
    ///
    /// # Errors
    /// Database errors.
    async fn set_agent_capacity(&self, id: &AgentId, capacity: u32) -> Result<(), StoreError>;

    /// Records agent activity.
    ///
    /// # Errors
    /// Database errors.
    async fn touch_agent(&self, id: &AgentId, now: u64) -> Result<(), StoreError>;

    /// Records that an agent got or finished a conversation (routing ties go to the longest idle).
    ///
    /// # Errors
    /// Database errors.
    async fn set_idle_since(&self, id: &AgentId, now: u64) -> Result<(), StoreError>;

    /// Agents not offline with neither activity nor a socket seen since before `before`.
    ///
    /// # Errors
    /// Database errors.
    async fn inactive_agents(&self, before: u64) -> Result<Vec<AgentRow>, StoreError>;

    /// Sets an agent offline if they are still inactive since before `before` (no activity and
    /// no socket seen since): true when this call changed the status, so that of two nodes (or
    /// a REST call racing the job) exactly one announces it.
    ///
    /// # Errors
    /// Database errors.
    async fn expire_agent(&self, id: &AgentId, before: u64) -> Result<bool, StoreError>;

    /// Records that these agents have a socket connected to this node at `now`.
    ///
    /// # Errors
    /// Database errors.
    async fn agent_sockets_seen(&self, ids: &[AgentId], now: u64) -> Result<(), StoreError>;

    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`: true when `holder`
    /// holds it now (it was free, expired or theirs).
    ///
    /// # Errors
    /// Database errors.
    async fn try_lease(&self, name: &str, holder: &str, now: u64, ttl_ms: u64) -> Result<bool, StoreError>;

    /// Gives up a lease held by `holder` (at shutdown), so another node takes over at once.
    ///
    /// # Errors
    /// Database errors.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Stores an agent token (hashed).
    ///
    /// # Errors
    /// Database errors.
    async fn insert_agent_token(&self, hash: &str, agent: &AgentId, now: u64) -> Result<(), StoreError>;

    /// Revokes an agent token (by hash); nothing when it is unknown.
    ///
    /// # Errors
    /// Database errors.
    async fn delete_agent_token(&self, hash: &str) -> Result<(), StoreError>;

    /// The agent a token hash belongs to, when the token is alive: created at or after
    /// `created_after`, used at or after `used_after`, its agent not disabled. A use moves
    /// the token's last use to `now` (sliding expiry; written at most once a minute).
    ///
    /// # Errors
    /// Database errors.
    async fn agent_by_token_hash(
        &self,
        hash: &str,
        now: u64,
        created_after: u64,
        used_after: u64,
    ) -> Result<Option<AgentRow>, StoreError>;

    /// Deletes the agent tokens that expired; answers their hashes.
    ///
    /// # Errors
    /// Database errors.
    async fn delete_expired_agent_tokens(
        &self,
        created_before: u64,
        used_before: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// Sets an agent's password hash and deletes their tokens, in one transaction; answers the
    /// deleted tokens' hashes.
    ///
    /// # Errors
    /// Database errors.
    async fn set_agent_password(&self, id: &AgentId, password_hash: &str) -> Result<Vec<String>, StoreError>;

    /// Disables (offline, tokens deleted, in one transaction) or enables an agent; answers the
    /// deleted tokens' hashes.
    ///
    /// # Errors
    /// Database errors.
    async fn set_agent_disabled(
        &self,
        id: &AgentId,
        disabled: bool,
        now: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// Replaces a project's secret key hash; answers the old one (`None`: no such project).
    ///
    /// # Errors
    /// Database errors.
    async fn set_secret_key_hash(&self, id: &ProjectId, hash: &str) -> Result<Option<String>, StoreError>;

    /// Creates a visitor.
    ///
    /// # Errors
    /// Database errors.
    async fn insert_visitor(
        &self,
        id: &VisitorId,
        project: &ProjectId,
        token_hash: &str,
        now: u64,
    ) -> Result<(), StoreError>;

    /// The visitor a token hash belongs to, with their project, when it was seen at or after
    /// `seen_after`; a use moves its last sighting to `now` (written at most once an hour).
    ///
    /// # Errors
    /// Database errors.
    async fn visitor_by_token_hash(
        &self,
        hash: &str,
        now: u64,
        seen_after: u64,
    ) -> Result<Option<(VisitorRow, Project)>, StoreError>;

    /// A visitor's name.
    ///
    /// # Errors
    /// Database errors.
    async fn visitor_name(&self, id: &VisitorId) -> Result<Option<String>, StoreError>;

    /// Binds a verified identity to a visitor, unless the visitor is already verified as
    /// another user (one conditional update: two racing identities cannot both bind). `true`
    /// when bound (or already bound to `user_id`), `false` on such a conflict.
    ///
    /// # Errors
    /// Database errors.
    async fn identify_visitor(
        &self,
        id: &VisitorId,
        user_id: &str,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Creates a conversation with its first events (a first message), in one transaction:
    /// both are stored or neither. `c.last_seq` is the last of `events`' seqs (0 without).
    ///
    /// # Errors
    /// Database errors.
    async fn insert_conversation(&self, c: &ConversationRow, events: &[Event]) -> Result<(), StoreError>;

    /// A conversation by id.
    ///
    /// # Errors
    /// Database errors.
    async fn conversation(&self, id: &ConversationId) -> Result<Option<ConversationRow>, StoreError>;

    /// The visitor's latest conversation that is not resolved.
    ///
    /// # Errors
    /// Database errors.
    async fn open_conversation_of(&self, visitor: &VisitorId) -> Result<Option<ConversationRow>, StoreError>;

    /// The conversations of a visitor and, when the visitor is verified, of every visitor of
    /// the project verified as the same user; newest first, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    async fn conversations_of(
        &self,
        visitor: &VisitorId,
        limit: u32,
    ) -> Result<Vec<ConversationRow>, StoreError>;

    /// The project's queue, head first.
    ///
    /// # Errors
    /// Database errors.
    async fn queue(&self, project: &ProjectId) -> Result<Vec<ConversationRow>, StoreError>;

    /// The project's waiting list as agents see it, head first, in one query: each entry with
    /// its position, the customer's name and the last customer message (whole: the caller cuts
    /// the preview).
    ///
    /// # Errors
    /// Database errors.
    async fn queue_entries(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<handoff_protocol::event::QueueEntry>, StoreError>;

    /// An agent's inbox: their assigned conversations, then the queue, newest activity first.
    ///
    /// # Errors
    /// Database errors.
    async fn inbox(&self, project: &ProjectId, agent: &AgentId) -> Result<Vec<ConversationRow>, StoreError>;

    /// Writes a conversation's new state and its events atomically, if nobody changed it since
    /// it was read at `expected` (the events carry seqs `expected + 1 ..`). Messages inside
    /// `message:new` events are indexed for idempotency.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the conversation changed (or a `client_msg_id` was taken)
    /// meanwhile; [`StoreError::AtCapacity`] when `update.takes_slot` and the new assignee is
    /// full; database errors.
    async fn append(
        &self,
        id: &ConversationId,
        expected: Seq,
        update: &ConversationUpdate,
        events: &[Event],
        now: u64,
    ) -> Result<(), StoreError> {
        self.append_with(id, expected, update, events, &[], now).await
    }

    /// [`Store::append`] with more rows in the same transaction (a transfer's note, a decline's
    /// record): all of it is stored, or nothing (a failed row rolls the transition back).
    ///
    /// # Errors
    /// As [`Store::append`]; database errors of the extra rows.
    async fn append_with(
        &self,
        id: &ConversationId,
        expected: Seq,
        update: &ConversationUpdate,
        events: &[Event],
        rows: &[AppendRow],
        now: u64,
    ) -> Result<(), StoreError>;

    /// How many [`Store::write_batch`] calls may run at once, on disjoint conversations, to
    /// good effect: 1 where the database has one writer (SQLite).
    fn writers(&self) -> usize {
        1
    }

    /// Group commit: many writes, to many conversations, in one transaction. Under the write
    /// lock (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL the conversations' rows, locked in id
    /// order), reads the conversations `ids` and which of `client_ids` are stored, hands both
    /// to `plan` (called once), and writes what it answers: each conversation's new state and
    /// events (messages among them indexed for idempotency), committed together.
    ///
    /// # Errors
    /// Database errors, and [`StoreError::Conflict`] when a conversation changed under the lock
    /// (never expected): nothing is written then.
    async fn write_batch(
        &self,
        ids: &[ConversationId],
        client_ids: &[(ConversationId, String)],
        plan: &mut BatchPlan<'_>,
        now: u64,
    ) -> Result<(), StoreError>;

    /// The seq of the message stored with this `client_msg_id`, if any.
    ///
    /// # Errors
    /// Database errors.
    async fn message_seq_by_client_id(
        &self,
        id: &ConversationId,
        client_msg_id: &str,
    ) -> Result<Option<Seq>, StoreError>;

    /// Persisted events with `seq > after`, in order, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    async fn events_after(
        &self,
        id: &ConversationId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// The event at one seq.
    ///
    /// # Errors
    /// Database errors.
    async fn event_at(&self, id: &ConversationId, seq: Seq) -> Result<Option<Event>, StoreError>;

    /// The latest message of a conversation.
    ///
    /// # Errors
    /// Database errors.
    async fn last_message(&self, id: &ConversationId) -> Result<Option<Event>, StoreError>;

    /// The latest customer message body (queue previews).
    ///
    /// # Errors
    /// Database errors.
    async fn last_customer_body(&self, id: &ConversationId) -> Result<Option<String>, StoreError>;

    /// Messages after the agent's read marker that count as unread for an agent
    /// ([`handoff_protocol::unread::counts_as_unread`]: the customer's).
    ///
    /// # Errors
    /// Database errors.
    async fn unread(&self, agent: &AgentId, id: &ConversationId) -> Result<u32, StoreError>;

    /// Moves an agent's read marker forward (never back). Answers `Some(seq)` when this moved
    /// the conversation's highest agent read marker ([`Store::agent_read_seq`]) up to `seq`,
    /// `None` when it stays where it was (a lower or equal seq, or another agent read further).
    ///
    /// # Errors
    /// Database errors.
    async fn mark_read(
        &self,
        agent: &AgentId,
        id: &ConversationId,
        seq: Seq,
    ) -> Result<Option<Seq>, StoreError>;

    /// The conversation's highest agent read marker (0 when no agent read it).
    ///
    /// # Errors
    /// Database errors.
    async fn agent_read_seq(&self, id: &ConversationId) -> Result<Seq, StoreError>;

    /// The conversation's satisfaction rating, if given.
    ///
    /// # Errors
    /// Database errors.
    async fn rating(&self, id: &ConversationId) -> Result<Option<RatingRow>, StoreError>;

    /// The agent a rating of the conversation is for: who resolved it (when an agent did),
    /// else the last agent it was assigned to; `None` when no agent had it.
    ///
    /// # Errors
    /// Database errors.
    async fn rated_agent(&self, id: &ConversationId) -> Result<Option<AgentId>, StoreError>;

    /// Records a transcript email to `email` unless the conversation, or the visitor, had
    /// `max` of them since `since` (one statement: the check and the record cannot be split by
    /// another request). `true` when recorded (the caller sends it), `false` when over the limit.
    ///
    /// # Errors
    /// Database errors.
    #[allow(clippy::too_many_arguments)]
    async fn record_transcript(
        &self,
        id: &ConversationId,
        visitor: &VisitorId,
        email: &str,
        now: u64,
        since: u64,
        max: u32,
    ) -> Result<bool, StoreError>;

    /// The address a visitor is known by: the email of their verified identity, else the
    /// email of their latest offline message.
    ///
    /// # Errors
    /// Database errors.
    async fn visitor_email(&self, id: &VisitorId) -> Result<Option<String>, StoreError>;

    /// Records that `agent` declined conversation `id` (routing skips them for it from now on).
    ///
    /// # Errors
    /// Database errors.
    async fn add_decline(&self, id: &ConversationId, agent: &AgentId, now: u64) -> Result<(), StoreError>;

    /// The agents who declined conversation `id`.
    ///
    /// # Errors
    /// Database errors.
    async fn decliners(&self, id: &ConversationId) -> Result<Vec<AgentId>, StoreError>;

    /// Records one tab's presence report (`offline` removes the tab) and recomputes the
    /// conversation's presence from its tabs ([`conversation_presence`]), in one transaction.
    /// Returns the new aggregate when it changed, `None` when agents see no difference.
    ///
    /// [`conversation_presence`]: handoff_protocol::timing::presence::conversation_presence
    ///
    /// # Errors
    /// Database errors.
    async fn report_presence(
        &self,
        id: &ConversationId,
        tab: &str,
        state: PresenceState,
        now: u64,
    ) -> Result<Option<PresenceState>, StoreError>;

    /// Forgets tabs that sent no heartbeat since `before` (and conversations not offline
    /// whose last report of any tab is older), recomputes those conversations' presence, and
    /// returns the ones whose aggregate changed, with the new state.
    ///
    /// # Errors
    /// Database errors.
    async fn expire_presence(&self, before: u64)
        -> Result<Vec<(ConversationRow, PresenceState)>, StoreError>;

    /// Stores a note (the `note:new` event as JSON).
    ///
    /// # Errors
    /// Database errors.
    async fn insert_note(&self, note: &handoff_protocol::event::Note) -> Result<(), StoreError>;

    /// A conversation's notes, oldest first.
    ///
    /// # Errors
    /// Database errors.
    async fn notes(&self, id: &ConversationId) -> Result<Vec<handoff_protocol::event::Note>, StoreError>;

    /// Stores an offline message, with the visitor who left it (when a visitor did).
    ///
    /// # Errors
    /// Database errors.
    async fn insert_offline(
        &self,
        project: &ProjectId,
        m: &OfflineMessage,
        visitor: Option<&VisitorId>,
    ) -> Result<(), StoreError>;

    /// A project's offline messages, newest first; `handled` filters.
    ///
    /// # Errors
    /// Database errors.
    async fn offline_messages(
        &self,
        project: &ProjectId,
        handled: Option<bool>,
    ) -> Result<Vec<OfflineMessage>, StoreError>;

    /// Marks an offline message handled; false when it is not in the project.
    ///
    /// # Errors
    /// Database errors.
    async fn mark_offline_handled(
        &self,
        project: &ProjectId,
        id: &OfflineMessageId,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Stores a canned response of a project.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when the project has the shortcut already (without regard to
    /// case); database errors.
    async fn insert_canned(&self, project: &ProjectId, c: &CannedResponse) -> Result<(), StoreError>;

    /// A project's canned responses by shortcut (without regard to case), at most `limit`.
    /// With a non-empty `query`, only those whose shortcut starts with it or whose content
    /// contains it (without regard to case), the shortcut matches first.
    ///
    /// # Errors
    /// Database errors.
    async fn canned_responses(
        &self,
        project: &ProjectId,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CannedResponse>, StoreError>;

    /// A canned response of a project.
    ///
    /// # Errors
    /// Database errors.
    async fn canned_response(
        &self,
        project: &ProjectId,
        id: &CannedResponseId,
    ) -> Result<Option<CannedResponse>, StoreError>;

    /// Writes a canned response's shortcut, content and `updated_at`; false when it is not in
    /// the project.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when another one of the project has the shortcut; database
    /// errors.
    async fn update_canned(&self, project: &ProjectId, c: &CannedResponse) -> Result<bool, StoreError>;

    /// Deletes a canned response; false when it is not in the project.
    ///
    /// # Errors
    /// Database errors.
    async fn delete_canned(&self, project: &ProjectId, id: &CannedResponseId) -> Result<bool, StoreError>;
}
