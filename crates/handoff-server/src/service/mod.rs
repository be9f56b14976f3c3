//! The service layer: every operation of the REST API and the realtime backend. Each function
//! authorizes, applies the conversation state machine, persists the events with their `seq`,
//! and only then publishes them on exactly the channels of the catalog (DESIGN section 2).
//! Publishing is fire-and-forget: it never fails a request.
//!
//! One [`Service`], its operations split by domain: `widget` (session, identity, history,
//! availability), `conversations` (messages, routing, typing, presence, read markers, notes),
//! `agents` (sign-in, tokens, status, liveness, capacity, inbox, queue), `offline` (the offline
//! form), `projects` (what the CLI and the secret key manage), `queue` (coalesced queue
//! broadcasts) and `realtime` (the socket's [`RealtimeBackend`]). This file holds the state,
//! authentication and the helpers they share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use handoff_protocol::api::{
    self, Conversation, ErrorCode, EventsPage, InboxItem, SendMessageResponse, WidgetConfig,
};
use handoff_protocol::channel::{ConversationOwner, Principal};
use handoff_protocol::event::{
    AgentClaimed, AgentStatus, AgentStatusChanged, AgentSummary, Author, AuthorKind, AvailabilityChanged,
    ConversationAssigned, ConversationRated, ConversationResolved, ConversationStatus,
    ConversationTransferred, Event, EventType, Message, MessageNew, MessageRead, Note, NoteNew,
    OfflineMessage, OfflineMessageNew, PresenceState, PresenceUpdated, QueuePositionUpdated, QueueUpdated,
    StatusChanged, TransferTarget, Typing,
};
use handoff_protocol::ids::{
    AgentId, ClientMsgId, ConversationId, NoteId, OfflineMessageId, ProjectId, Seq, Timestamp, VisitorId,
};
use handoff_protocol::routing::{pick_agent, AgentLoad, DEFAULT_CAPACITY};
use handoff_protocol::state::{Act, Actor, Command, ConversationState, TransferTo, Transition};
use handoff_protocol::timing::agent::AgentLiveness;
use handoff_protocol::timing::presence::{is_valid_tab_id, DEFAULT_TAB};
use handoff_protocol::Channel;

use crate::crypto;
use crate::error::{AppError, AppResult};
use crate::limits::{self, Action, Key, Limits, LimitsConfig};
use crate::net::TrustedProxies;
use crate::realtime::{Hub, RealtimeBackend, SocketProject};
use crate::store::{
    self, AgentRow, AppendRow, ConversationRow, ConversationUpdate, Project, Store, StoreError, VisitorRow,
};
use crate::webhook::Webhooks;

mod agents;
mod canned;
mod conversations;
mod email;
mod offline;
mod projects;
mod queue;
mod realtime;
mod widget;
mod writer;

use queue::QueueBroadcasts;
use writer::MessageWriter;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Who calls, after authentication.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A visitor of a project.
    Customer {
        /// The visitor.
        visitor: VisitorRow,
        /// Their project.
        project: Box<Project>,
    },
    /// A signed-in agent.
    Agent(AgentRow),
    /// A bot backend with the project's secret key.
    Server(Box<Project>),
}

impl Caller {
    /// The caller's project id.
    pub fn project_id(&self) -> &ProjectId {
        match self {
            Caller::Customer { project, .. } | Caller::Server(project) => &project.id,
            Caller::Agent(a) => &a.project_id,
        }
    }

    /// The caller's rate-limit key: a visitor, an agent, or a project's secret key.
    pub fn limit_key(&self) -> String {
        match self {
            Caller::Customer { visitor, .. } => visitor.id.to_string(),
            Caller::Agent(a) => a.id.to_string(),
            Caller::Server(p) => format!("secret:{}", p.id),
        }
    }

    fn author(&self) -> Author {
        match self {
            Caller::Customer { visitor, .. } => {
                Author { kind: AuthorKind::Customer, id: visitor.id.to_string(), name: visitor.name.clone() }
            }
            Caller::Agent(a) => {
                Author { kind: AuthorKind::Agent, id: a.id.to_string(), name: Some(a.name.clone()) }
            }
            Caller::Server(p) => {
                Author { kind: AuthorKind::Bot, id: format!("bot_{}", p.id), name: Some("Bot".into()) }
            }
        }
    }

    fn agent(&self) -> AppResult<&AgentRow> {
        match self {
            Caller::Agent(a) => Ok(a),
            _ => Err(AppError::forbidden("only agents can do this")),
        }
    }

    fn actor(&self) -> Actor {
        match self {
            Caller::Customer { .. } => Actor::Customer,
            Caller::Agent(a) => Actor::Agent(a.id.clone()),
            Caller::Server(_) => Actor::SecretKey,
        }
    }

    /// Whether the caller may see the conversation: a customer their own, others their
    /// project's.
    fn sees(&self, c: &ConversationRow) -> bool {
        match self {
            Caller::Customer { visitor, .. } => c.visitor_id == visitor.id,
            _ => &c.project_id == self.project_id(),
        }
    }

    /// The command a message of the caller is on the conversation as it is now: the
    /// ownership rule, and agents and bots do not write in a resolved conversation (a
    /// customer's message reopens it).
    fn message_command(&self, c: &ConversationRow) -> AppResult<Command> {
        self.authorize(c, Act::Speak)?;
        if !matches!(self, Caller::Customer { .. }) && c.status == ConversationStatus::Resolved {
            return Err(AppError::new(
                ErrorCode::InvalidTransition,
                "cannot write in a resolved conversation",
            ));
        }
        // Agents and bots write without changing the state.
        Ok(Command::CustomerMessage)
    }

    /// The ownership rule on the conversation as it is now (read inside the write's retry loop,
    /// so a concurrent reassignment is seen): 403 `not_assignee` for anyone but the assignee.
    fn authorize(&self, c: &ConversationRow, act: Act) -> AppResult<()> {
        let state = ConversationState { status: c.status, agent: c.agent_id.clone() };
        state.authorize(&self.actor(), act).map_err(|_| {
            let message = match self {
                Caller::Server(_) if act == Act::Speak => {
                    "a human agent holds this conversation: the bot cannot speak in it"
                }
                _ => "the conversation is assigned to another agent: claim it from the queue or be transferred it",
            };
            AppError::new(ErrorCode::NotAssignee, message)
        })
    }
}

/// When a conversation entered the queue, after transition `t` from row `c` at `now`.
fn queued_at(c: &ConversationRow, t: &Transition, now: u64) -> Option<u64> {
    match t.to {
        ConversationStatus::Queued if c.status == ConversationStatus::Queued => c.queued_at,
        ConversationStatus::Queued => Some(now),
        _ => None,
    }
}

/// Publishes an event on the catalog's channels. `agents` are the agents whose personal
/// channel it goes to (assignee, transfer source and target, resolver).
fn publish_on(hub: &Hub, project: &ProjectId, event: &Event, agents: &[&AgentId]) {
    let conv = event.conversation_id().map(|id| Channel::Conversation(id.clone()));
    let queue = Channel::ProjectQueue(project.clone());
    let mut channels: Vec<Channel> = match event {
        Event::MessageNew(_) | Event::StatusChanged(_) | Event::AgentClaimed(_) => {
            conv.into_iter().chain([queue]).collect()
        }
        Event::ConversationAssigned(_)
        | Event::ConversationTransferred(_)
        | Event::ConversationResolved(_)
        | Event::ConversationRated(_) => conv
            .into_iter()
            .chain([queue])
            .chain(agents.iter().map(|a| Channel::Agent((*a).clone())))
            .collect(),
        Event::QueuePositionUpdated(_)
        | Event::Typing(_)
        | Event::PresenceUpdated(_)
        | Event::MessageRead(_) => conv.into_iter().collect(),
        Event::QueueUpdated(_) | Event::AgentStatusChanged(_) | Event::OfflineMessageNew(_) => vec![queue],
        Event::NoteNew(n) => vec![Channel::ConversationAgents(n.note.conversation_id.clone())],
        _ => Vec::new(),
    };
    channels.dedup();
    for channel in &channels {
        hub.publish(channel, event);
    }
}

/// 409 `already_rated`.
fn already_rated() -> AppError {
    AppError::new(ErrorCode::AlreadyRated, "this conversation is rated already: a conversation is rated once")
}

fn summary(a: &AgentRow) -> AgentSummary {
    AgentSummary { id: a.id.clone(), name: a.name.clone() }
}

/// The server's shared state and operations.
#[derive(Debug)]
pub struct Service {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    webhooks: Webhooks,
    /// Writes to one conversation take turns on this node (striped by id: bounded memory), so
    /// they do not spin on the store's `last_seq` check; across nodes that check and a retry
    /// with backoff keep the order.
    write_locks: Box<[tokio::sync::Mutex<()>]>,
    limits: Arc<Limits>,
    trusted_proxies: TrustedProxies,
    queue_broadcasts: Arc<QueueBroadcasts>,
    passwords: crypto::PasswordChecker,
    /// Sockets joined with each agent's token on this node (entries removed at zero).
    agent_sockets: Mutex<HashMap<AgentId, usize>>,
    /// When this node last checked business hours (the availability job).
    hours_checked: Mutex<Option<u64>>,
    /// This node, as the holder of the background jobs' lease.
    node_id: String,
    /// Stores messages in batches (group commit); started with the first message.
    writer: OnceLock<MessageWriter>,
    /// Sends mail (transcripts, offline messages); `None`: no `SMTP_URL`.
    mailer: Option<Arc<crate::mail::Mailer>>,
}

const MAX_RETRIES: u32 = 8;
/// An agent's REST calls are recorded at most this often (liveness needs minutes, not ms).
const AGENT_REQUEST_TOUCH_MS: u64 = 30_000;
const WRITE_LOCK_STRIPES: usize = 64;

impl Service {
    /// A service over a store and a hub.
    pub fn new(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let queue_broadcasts = Arc::new(QueueBroadcasts::new(store.clone(), hub.clone()));
        Service {
            store,
            hub,
            webhooks: Webhooks::new(),
            write_locks: (0..WRITE_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            limits: Arc::new(Limits::new(LimitsConfig::default())),
            trusted_proxies: TrustedProxies::default(),
            queue_broadcasts,
            passwords: crypto::PasswordChecker::new(2, 64),
            agent_sockets: Mutex::new(HashMap::new()),
            hours_checked: Mutex::new(None),
            node_id: crypto::random_id("node_"),
            writer: OnceLock::new(),
            mailer: None,
        }
    }

    /// The same service sending mail with `mailer` (`None`: no email).
    #[must_use]
    pub fn with_mailer(mut self, mailer: Option<crate::mail::Mailer>) -> Self {
        self.mailer = mailer.map(Arc::new);
        self
    }

    /// The same service with these abuse limits and trusted reverse proxies.
    #[must_use]
    pub fn with_limits(mut self, limits: LimitsConfig, trusted_proxies: TrustedProxies) -> Self {
        self.passwords = crypto::PasswordChecker::new(limits.password_threads, limits.password_queue);
        self.limits = Arc::new(Limits::new(limits));
        self.trusted_proxies = trusted_proxies;
        self
    }

    /// The rate limiters.
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// The reverse proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    fn write_lock(&self, id: &ConversationId) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(id.as_str());
        #[allow(clippy::cast_possible_truncation)] // only the low bits pick a stripe
        &self.write_locks[h as usize % self.write_locks.len()]
    }

    /// The message writer (group commit), started on first use.
    fn writer(&self) -> &MessageWriter {
        self.writer.get_or_init(|| MessageWriter::start(&self.store, &self.hub))
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// How many long-polls of this node wait on conversation `id` now (for tests and metrics).
    /// They wait in the hub, which wakes them when an event of the conversation is published on
    /// any node.
    pub fn long_polls_waiting(&self, id: &ConversationId) -> usize {
        self.hub.waiting(&Channel::Conversation(id.clone()))
    }

    /// How many conversations have long-polls registered on this node (bounded by the waiting
    /// requests: an entry goes with its last waiter).
    pub fn long_poll_conversations(&self) -> usize {
        self.hub.waited_channels()
    }

    // ---- authentication ----

    /// Resolves a bearer token (visitor, agent or secret key) to a caller.
    ///
    /// # Errors
    /// 401 when the token is unknown.
    pub async fn authenticate(&self, token: &str) -> AppResult<Caller> {
        if !api::is_valid_token(token) {
            return Err(AppError::unauthorized());
        }
        let hash = crypto::token_hash(token);
        let now = now_ms();
        let cfg = self.limits.config();
        if token.starts_with("vt_") {
            let seen_after = now.saturating_sub(limits::ms(cfg.visitor_token_idle));
            if let Some((visitor, project)) =
                self.store.visitor_by_token_hash(&hash, now, seen_after).await.map_err(AppError::from)?
            {
                return Ok(Caller::Customer { visitor, project: Box::new(project) });
            }
        } else if token.starts_with("at_") {
            let created_after = now.saturating_sub(limits::ms(cfg.agent_token_max_age));
            let used_after = now.saturating_sub(limits::ms(cfg.agent_token_idle));
            if let Some(agent) = self
                .store
                .agent_by_token_hash(&hash, now, created_after, used_after)
                .await
                .map_err(AppError::from)?
            {
                // A REST call (or a socket join) keeps the agent available: written at most
                // every 30 s, well inside the 2-minute grace.
                if agent.last_activity.saturating_add(AGENT_REQUEST_TOUCH_MS) <= now {
                    if let Err(e) = self.store.touch_agent(&agent.id, now).await {
                        tracing::warn!(error = %e, "cannot record agent activity");
                    }
                }
                return Ok(Caller::Agent(agent));
            }
        } else if token.starts_with("sk_") {
            if let Some(project) = self.store.project_by_secret_hash(&hash).await.map_err(AppError::from)? {
                return Ok(Caller::Server(Box::new(project)));
            }
        }
        Err(AppError::unauthorized())
    }

    /// Checks what every customer call needs: an allowed origin and, when the project enforces
    /// identity, a verified visitor.
    ///
    /// # Errors
    /// 403 `origin_not_allowed` or `identity_required`.
    pub fn check_customer(caller: &Caller, origin: Option<&str>, needs_identity: bool) -> AppResult<()> {
        if let Caller::Customer { visitor, project } = caller {
            if let Some(origin) = origin {
                if !project.allows_origin(origin) {
                    return Err(AppError::new(
                        ErrorCode::OriginNotAllowed,
                        format!("origin {origin} is not allowed"),
                    ));
                }
            }
            if needs_identity && project.enforce_identity && !visitor.verified {
                return Err(AppError::new(
                    ErrorCode::IdentityRequired,
                    "this project requires a verified identity: call identify first",
                ));
            }
        }
        Ok(())
    }
}

/// Agents' passwords: 8 to 1,024 characters, no control characters.
fn validate_password(password: &str) -> AppResult<()> {
    api::validate_line("password", password, api::MAX_PASSWORD_CHARS, true).map_err(AppError::validation)?;
    if password.chars().count() < 8 {
        return Err(AppError::validation("password must have at least 8 characters"));
    }
    Ok(())
}

/// A `client_msg_id`, when there is one, is an id (it is stored and compared).
fn validate_client_msg_id(id: Option<&ClientMsgId>) -> AppResult<()> {
    match id {
        Some(id) if !api::is_valid_id(id.as_str()) => {
            Err(AppError::validation("client_msg_id must be 1 to 128 letters, digits, '_', '-', '.' or ':'"))
        }
        _ => Ok(()),
    }
}

fn preview(body: &str) -> String {
    let mut p: String = body.chars().take(120).collect();
    if p.len() < body.len() {
        p.push('…');
    }
    p
}

fn agent_dto(a: &AgentRow) -> api::Agent {
    api::Agent {
        id: a.id.clone(),
        project_id: a.project_id.clone(),
        name: a.name.clone(),
        email: a.email.clone(),
        status: a.status,
        capacity: a.capacity,
        open_conversations: a.open,
        project_key: None,
    }
}

fn caller_author_id(caller: &Caller) -> String {
    caller.author().id
}
