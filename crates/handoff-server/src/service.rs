//! The service layer: every operation of the REST API and the realtime backend. Each function
//! authorizes, applies the conversation state machine, persists the events with their `seq`,
//! and only then publishes them on exactly the channels of the catalog (DESIGN section 2).
//! Publishing is fire-and-forget: it never fails a request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use handoff_protocol::api::{
    self, Conversation, ErrorCode, EventsPage, InboxItem, SendMessageResponse, WidgetConfig,
};
use handoff_protocol::channel::{ConversationOwner, Principal};
use handoff_protocol::event::{
    AgentClaimed, AgentStatus, AgentStatusChanged, AgentSummary, Author, AuthorKind, AvailabilityChanged,
    ConversationAssigned, ConversationResolved, ConversationStatus, ConversationTransferred, Event,
    EventType, Message, MessageNew, Note, NoteNew, OfflineMessage, OfflineMessageNew, PresenceState,
    PresenceUpdated, QueuePositionUpdated, QueueUpdated, StatusChanged, TransferTarget, Typing,
};
use handoff_protocol::ids::{
    AgentId, ClientMsgId, ConversationId, NoteId, OfflineMessageId, ProjectId, Seq, Timestamp, VisitorId,
};
use handoff_protocol::routing::{pick_agent, AgentLoad, DEFAULT_CAPACITY};
use handoff_protocol::state::{Act, Actor, Command, ConversationState, TransferTo, Transition};
use handoff_protocol::timing::agent::AgentLiveness;
use handoff_protocol::timing::presence::{is_valid_tab_id, DEFAULT_TAB};
use handoff_protocol::Channel;
use tokio::sync::Notify;

use crate::crypto;
use crate::error::{AppError, AppResult};
use crate::limits::{self, Action, Key, Limits, LimitsConfig};
use crate::net::TrustedProxies;
use crate::realtime::{Hub, RealtimeBackend, SocketProject};
use crate::store::{
    self, AgentRow, AppendRow, ConversationRow, ConversationUpdate, Project, Store, StoreError, VisitorRow,
};
use crate::webhook::Webhooks;

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

fn summary(a: &AgentRow) -> AgentSummary {
    AgentSummary { id: a.id.clone(), name: a.name.clone() }
}

/// The server's shared state and operations.
#[derive(Debug)]
pub struct Service {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    waiters: Mutex<HashMap<ConversationId, Arc<Notify>>>,
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
}

/// The shortest time between two queue broadcasts of one project.
const QUEUE_BROADCAST_EVERY: Duration = Duration::from_millis(250);

/// Coalesces the queue broadcasts of each project: one at once, then at most one per
/// [`QUEUE_BROADCAST_EVERY`], each computed in one query when it goes out.
#[derive(Debug)]
struct QueueBroadcasts {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    slots: Mutex<HashMap<ProjectId, QueueSlot>>,
}

#[derive(Clone, Copy, Debug)]
struct QueueSlot {
    last: tokio::time::Instant,
    pending: bool,
}

impl QueueBroadcasts {
    async fn request(self: &Arc<Self>, project: &ProjectId) {
        let now = tokio::time::Instant::now();
        let due = {
            let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = slots
                .entry(project.clone())
                .or_insert(QueueSlot { last: now - QUEUE_BROADCAST_EVERY, pending: false });
            if slot.pending {
                return; // the scheduled broadcast reads the queue when it goes out
            }
            if now.duration_since(slot.last) >= QUEUE_BROADCAST_EVERY {
                slot.last = now;
                None
            } else {
                slot.pending = true;
                Some(slot.last + QUEUE_BROADCAST_EVERY)
            }
        };
        match due {
            None => self.send(project).await,
            Some(at) => {
                let this = self.clone();
                let project = project.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    {
                        let mut slots = this.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if let Some(slot) = slots.get_mut(&project) {
                            // Cleared before reading: a change from now on schedules another.
                            slot.pending = false;
                            slot.last = tokio::time::Instant::now();
                        }
                    }
                    this.send(&project).await;
                });
            }
        }
    }

    async fn send(&self, project: &ProjectId) {
        let mut entries = match self.store.queue_entries(project).await {
            Ok(q) => q,
            Err(e) => return tracing::error!(error = %e, "cannot read the queue for broadcast"),
        };
        let len = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        for e in &mut entries {
            e.preview = e.preview.as_deref().map(preview);
            let position = Event::QueuePositionUpdated(QueuePositionUpdated {
                conversation_id: e.conversation_id.clone(),
                position: e.position,
                queue_length: len,
            });
            self.hub.publish(&Channel::Conversation(e.conversation_id.clone()), &position);
        }
        let event = Event::QueueUpdated(QueueUpdated { queue: entries });
        self.hub.publish(&Channel::ProjectQueue(project.clone()), &event);
    }
}

const MAX_RETRIES: u32 = 8;
/// An agent's REST calls are recorded at most this often (liveness needs minutes, not ms).
const AGENT_REQUEST_TOUCH_MS: u64 = 30_000;
const WRITE_LOCK_STRIPES: usize = 64;

impl Service {
    /// A service over a store and a hub.
    pub fn new(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let queue_broadcasts = Arc::new(QueueBroadcasts {
            store: store.clone(),
            hub: hub.clone(),
            slots: Mutex::new(HashMap::new()),
        });
        Service {
            store,
            hub,
            waiters: Mutex::new(HashMap::new()),
            webhooks: Webhooks::new(),
            write_locks: (0..WRITE_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            limits: Arc::new(Limits::new(LimitsConfig::default())),
            trusted_proxies: TrustedProxies::default(),
            queue_broadcasts,
            passwords: crypto::PasswordChecker::new(2, 64),
            agent_sockets: Mutex::new(HashMap::new()),
            hours_checked: Mutex::new(None),
            node_id: crypto::random_id("node_"),
        }
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

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn waiter(&self, id: &ConversationId) -> Waiter<'_> {
        let mut w = self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let notify = w.entry(id.clone()).or_default().clone();
        Waiter { service: self, id: id.clone(), notify }
    }

    /// How many long-polls wait on conversation `id` now (for tests and metrics).
    pub fn long_polls_waiting(&self, id: &ConversationId) -> usize {
        let w = self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.get(id).map_or(0, |n| Arc::strong_count(n) - 1)
    }

    /// How many conversations have long-polls registered (bounded by the waiting requests:
    /// an entry goes with its last waiter).
    pub fn long_poll_conversations(&self) -> usize {
        self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    fn wake(&self, id: &ConversationId) {
        let w = self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
        if let Some(n) = w {
            n.notify_waiters();
        }
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
            if let Some(visitor) =
                self.store.visitor_by_token_hash(&hash, now, seen_after).await.map_err(AppError::from)?
            {
                let project = self
                    .store
                    .project(&visitor.project_id)
                    .await
                    .map_err(AppError::from)?
                    .ok_or_else(AppError::unauthorized)?;
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

    // ---- projects and agents (CLI) ----

    /// Creates a project; returns it and its secret key (shown once).
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_project(&self, name: &str, origins: Vec<String>) -> AppResult<(Project, String)> {
        let secret = crypto::random_token("sk_");
        let project = Project {
            id: ProjectId::new(crypto::random_id("prj_")),
            name: name.to_owned(),
            public_key: crypto::random_token("pk_"),
            allowed_origins: origins,
            identity_secret: None,
            enforce_identity: false,
            theme: api::Theme::default(),
            webhook_url: None,
            webhook_secret: None,
            business_hours: None,
        };
        self.store
            .insert_project(&project, &crypto::token_hash(&secret), now_ms())
            .await
            .map_err(AppError::from)?;
        Ok((project, secret))
    }

    /// Creates an agent.
    ///
    /// # Errors
    /// 422 for a bad email or a taken email.
    pub async fn create_agent(
        &self,
        project: &ProjectId,
        email: &str,
        name: &str,
        password: &str,
    ) -> AppResult<AgentRow> {
        if !api::is_valid_email(email) {
            return Err(AppError::validation("email is not a valid address"));
        }
        api::validate_line("name", name, api::MAX_NAME_CHARS, true).map_err(AppError::validation)?;
        validate_password(password)?;
        let now = now_ms();
        let agent = AgentRow {
            id: AgentId::new(crypto::random_id("agt_")),
            project_id: project.clone(),
            email: email.to_lowercase(),
            name: name.to_owned(),
            password_hash: crypto::hash_password(password).map_err(|e| AppError::internal(&e))?,
            status: AgentStatus::Offline,
            capacity: DEFAULT_CAPACITY,
            last_activity: now,
            idle_since: now,
            open: 0,
            disabled: false,
            last_socket_seen: None,
        };
        match self.store.insert_agent(&agent).await {
            Err(StoreError::Duplicate) => Err(AppError::validation("an agent with this email exists")),
            r => r.map_err(AppError::from).map(|()| agent),
        }
    }

    // ---- widget ----

    /// `POST /api/widget/session`.
    ///
    /// # Errors
    /// 404 unknown project key; 403 origin not allowed.
    pub async fn widget_session(
        &self,
        req: api::WidgetSessionRequest,
        origin: Option<&str>,
    ) -> AppResult<api::WidgetSession> {
        if !api::is_valid_token(&req.project_key) {
            return Err(AppError::not_found("project"));
        }
        let project = self
            .store
            .project_by_public_key(&req.project_key)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("project"))?;
        self.limits.check(Action::Session, &[Key::Project(project.id.to_string())])?;
        if let Some(origin) = origin {
            if !project.allows_origin(origin) {
                return Err(AppError::new(
                    ErrorCode::OriginNotAllowed,
                    format!("origin {origin} is not allowed"),
                ));
            }
        }
        // A malformed, unknown or expired token starts a new visitor, as none would.
        let now = now_ms();
        let seen_after = now.saturating_sub(limits::ms(self.limits.config().visitor_token_idle));
        let existing = match req.visitor_token.as_deref().filter(|t| api::is_valid_token(t)) {
            Some(t) => self
                .store
                .visitor_by_token_hash(&crypto::token_hash(t), now, seen_after)
                .await
                .map_err(AppError::from)?
                .filter(|v| v.project_id == project.id),
            None => None,
        };
        let (visitor_id, token) = if let (Some(v), Some(t)) = (existing, req.visitor_token) {
            (v.id, t)
        } else {
            let token = crypto::random_token("vt_");
            let id = VisitorId::new(crypto::random_id("vis_"));
            self.store
                .insert_visitor(&id, &project.id, &crypto::token_hash(&token), now_ms())
                .await
                .map_err(AppError::from)?;
            (id, token)
        };
        let mut open = self.store.open_conversation_of(&visitor_id).await.map_err(AppError::from)?;
        if open.is_none() {
            // Just resolved: the visitor may write again to reopen it, also after a reload.
            let recent = now.saturating_sub(api::REOPEN_WINDOW_MS);
            let last = self.store.conversations_of(&visitor_id, 1).await.map_err(AppError::from)?;
            open = last.into_iter().find(|c| {
                c.visitor_id == visitor_id
                    && c.status == ConversationStatus::Resolved
                    && c.updated_at >= recent
            });
        }
        let conversation = match open {
            Some(c) => Some(self.conversation_dto(&c).await?),
            None => None,
        };
        Ok(api::WidgetSession {
            project_id: project.id.clone(),
            visitor_id,
            visitor_token: token,
            config: self.widget_config(&project).await?,
            conversation,
        })
    }

    async fn widget_config(&self, project: &Project) -> AppResult<WidgetConfig> {
        let a = self.availability(project, now_ms()).await?;
        Ok(WidgetConfig {
            agents_online: a.agents_online,
            within_business_hours: a.within_business_hours,
            show_offline_form: a.show_offline_form,
            bot: project.webhook_url.is_some(),
            identity_required: project.enforce_identity,
            theme: project.theme.clone(),
        })
    }

    /// Whether `project` can take a chat at `now`: the state behind `show_offline_form`.
    async fn availability(&self, project: &Project, now: u64) -> AppResult<AvailabilityChanged> {
        let agents = self.store.agents(&project.id).await.map_err(AppError::from)?;
        let online = u32::try_from(agents.iter().filter(|a| a.status == AgentStatus::Online).count())
            .unwrap_or(u32::MAX);
        let within_business_hours = project.business_hours.as_ref().is_none_or(|h| h.is_open(now));
        Ok(AvailabilityChanged::new(project.id.clone(), online, within_business_hours))
    }

    /// The project's availability now, as `availability:changed` (sent to each socket that
    /// joins `project:{id}:availability`, so a join or rejoin starts from the current state).
    pub async fn current_availability(&self, project: &ProjectId) -> Option<Event> {
        let p = self.store.project(project).await.ok().flatten()?;
        self.availability(&p, now_ms()).await.ok().map(Event::AvailabilityChanged)
    }

    /// Publishes the project's availability on `project:{id}:availability`: after an agent's
    /// status changed (the widget then offers the offline form, or the chat, without a reload).
    /// The state is absolute, so a repeated or reordered publication is harmless.
    pub async fn publish_availability(&self, project: &ProjectId) {
        if let Some(event) = self.current_availability(project).await {
            self.hub.publish(&Channel::ProjectAvailability(project.clone()), &event);
        }
    }

    /// The availability job, run with the expiry jobs: announces business hours that opened or
    /// closed since this node's previous run (nothing on its first run); returns how many.
    pub async fn business_hours_tick(&self, now: u64) -> usize {
        let previous =
            self.hours_checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).replace(now);
        match previous {
            Some(previous) if previous < now => self.announce_business_hours(previous, now).await,
            _ => 0,
        }
    }

    /// Publishes the availability of every project whose business
    /// hours opened or closed between `previous` and `now` (the previous run); returns how many.
    pub async fn announce_business_hours(&self, previous: u64, now: u64) -> usize {
        let Ok(projects) = self.store.projects_with_hours().await else { return 0 };
        let mut announced = 0;
        for p in &projects {
            let Some(hours) = &p.business_hours else { continue };
            if hours.is_open(previous) != hours.is_open(now) {
                if let Ok(a) = self.availability(p, now).await {
                    self.hub
                        .publish(&Channel::ProjectAvailability(p.id.clone()), &Event::AvailabilityChanged(a));
                    announced += 1;
                }
            }
        }
        announced
    }

    /// `POST /api/widget/identify`.
    ///
    /// # Errors
    /// 403 for a bad HMAC or a project without identity verification; 409 `identity_conflict`
    /// when the visitor is already verified as another user (the same user again is fine).
    pub async fn identify(&self, caller: &Caller, req: api::IdentifyRequest) -> AppResult<()> {
        let Caller::Customer { visitor, project } = caller else {
            return Err(AppError::forbidden("only visitors identify"));
        };
        let Some(secret) = &project.identity_secret else {
            return Err(AppError::forbidden("identity verification is not configured for this project"));
        };
        api::validate_line("user_id", &req.user_id, api::MAX_ID_CHARS, true).map_err(AppError::validation)?;
        api::validate_line("hmac", &req.hmac, api::MAX_TOKEN_CHARS, true).map_err(AppError::validation)?;
        if let Some(name) = req.name.as_deref() {
            api::validate_line("name", name, api::MAX_NAME_CHARS, false).map_err(AppError::validation)?;
        }
        if let Some(email) = req.email.as_deref() {
            if !api::is_valid_email(email) {
                return Err(AppError::validation("email is not a valid address"));
            }
        }
        if !crypto::hmac_verify(secret, req.user_id.as_bytes(), &req.hmac) {
            return Err(AppError::forbidden("identity HMAC does not match"));
        }
        let bound = self
            .store
            .identify_visitor(&visitor.id, &req.user_id, req.name.as_deref(), req.email.as_deref())
            .await?;
        if !bound {
            // Another user signed in on a browser whose visitor is someone's: never hand them
            // that user's conversations. They start a new visitor (a new session) instead.
            return Err(AppError::new(
                ErrorCode::IdentityConflict,
                "this visitor is verified as another user: start a new widget session (without the visitor token) and identify that visitor",
            ));
        }
        Ok(())
    }

    /// `GET /api/widget/conversations`: the visitor's conversations with their transcripts
    /// (and every conversation of the verified user, from any device), newest first.
    ///
    /// # Errors
    /// 403 for callers other than visitors.
    pub async fn conversation_history(&self, caller: &Caller) -> AppResult<api::ConversationList> {
        let Caller::Customer { visitor, .. } = caller else {
            return Err(AppError::forbidden("only visitors have a conversation history"));
        };
        let rows = self
            .store
            .conversations_of(&visitor.id, api::HISTORY_CONVERSATIONS_MAX)
            .await
            .map_err(AppError::from)?;
        let mut conversations = Vec::with_capacity(rows.len());
        for c in &rows {
            let mut events = self
                .store
                .events_after(&c.id, Seq::ZERO, api::EVENTS_PAGE_MAX)
                .await
                .map_err(AppError::from)?;
            for e in &mut events {
                // A hand-over note is for agents.
                if let Event::ConversationTransferred(t) = e {
                    t.note = None;
                }
            }
            conversations
                .push(api::ConversationHistory { conversation: self.conversation_dto(c).await?, events });
        }
        Ok(api::ConversationList { conversations })
    }

    // ---- conversations ----

    async fn conversation_dto(&self, c: &ConversationRow) -> AppResult<Conversation> {
        let agent = match &c.agent_id {
            Some(id) => self.store.agent(id).await.map_err(AppError::from)?.map(|a| summary(&a)),
            None => None,
        };
        Ok(Conversation {
            id: c.id.clone(),
            project_id: c.project_id.clone(),
            visitor_id: c.visitor_id.clone(),
            customer_name: self.store.visitor_name(&c.visitor_id).await.map_err(AppError::from)?,
            status: c.status,
            agent,
            presence: c.presence,
            last_seq: c.last_seq,
            created_at: Timestamp(c.created_at),
            updated_at: Timestamp(c.updated_at),
        })
    }

    /// Loads a conversation the caller may see.
    async fn visible(&self, caller: &Caller, id: &ConversationId) -> AppResult<ConversationRow> {
        let c = self
            .store
            .conversation(id)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        let ok = match caller {
            Caller::Customer { visitor, .. } => c.visitor_id == visitor.id,
            _ => &c.project_id == caller.project_id(),
        };
        if ok {
            Ok(c)
        } else {
            Err(AppError::not_found("conversation"))
        }
    }

    /// `GET /api/conversations/{id}`.
    ///
    /// # Errors
    /// 404 when not visible.
    pub async fn get_conversation(&self, caller: &Caller, id: &ConversationId) -> AppResult<Conversation> {
        let c = self.visible(caller, id).await?;
        self.conversation_dto(&c).await
    }

    /// `POST /api/conversations`.
    ///
    /// # Errors
    /// 403 for non-customers; validation errors of the first message.
    pub async fn create_conversation(
        &self,
        caller: &Caller,
        req: api::CreateConversationRequest,
    ) -> AppResult<(Conversation, bool)> {
        let Caller::Customer { visitor, project } = caller else {
            return Err(AppError::forbidden("only visitors start conversations"));
        };
        if let Some(body) = &req.body {
            api::validate_body(body).map_err(AppError::validation)?;
        }
        validate_client_msg_id(req.client_msg_id.as_ref())?;
        // One open conversation per visitor: starting again continues it (a script cannot fill
        // the queue from one visitor, and a retried start does not make a second one).
        if let Some(open) = self.store.open_conversation_of(&visitor.id).await.map_err(AppError::from)? {
            if let Some(body) = req.body {
                let req = api::SendMessageRequest { body, client_msg_id: req.client_msg_id };
                self.send_message(caller, &open.id, req).await?;
            }
            return Ok((self.get_conversation(caller, &open.id).await?, false));
        }
        let now = now_ms();
        let id = ConversationId::new(crypto::random_id("conv_"));
        // The first message is stored with the conversation, in one transaction (a customer
        // message in `bot` state changes no state).
        let first = req.body.map(|body| Message {
            id: store::new_message_id(),
            conversation_id: id.clone(),
            seq: Seq::ZERO.next(),
            author: caller.author(),
            body,
            client_msg_id: req.client_msg_id,
            created_at: Timestamp(now),
        });
        let events: Vec<Event> =
            first.iter().map(|m| Event::MessageNew(MessageNew { message: m.clone() })).collect();
        let row = ConversationRow {
            id,
            project_id: project.id.clone(),
            visitor_id: visitor.id.clone(),
            status: ConversationStatus::Bot,
            agent_id: None,
            last_seq: events.last().and_then(Event::seq).unwrap_or(Seq::ZERO),
            queued_at: None,
            presence: PresenceState::Online,
            last_heartbeat: Some(now),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_conversation(&row, &events).await.map_err(AppError::from)?;
        for e in &events {
            self.publish(&project.id, e, &[]);
        }
        if let Some(message) = &first {
            self.notify_bot(project, message);
        }
        Ok((self.get_conversation(caller, &row.id).await?, true))
    }

    /// `GET /api/conversations/{id}/events?after=&wait=`: history, catch-up and long-poll.
    ///
    /// # Errors
    /// 404 when not visible.
    pub async fn events(
        &self,
        caller: &Caller,
        id: &ConversationId,
        after: Seq,
        wait_secs: u64,
    ) -> AppResult<EventsPage> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs.min(api::MAX_WAIT_SECS));
        // Only a conversation the caller may see gets a waiter; the slot bounds the total.
        let c = self.visible(caller, id).await?;
        let _slot = if wait_secs > 0 && c.last_seq <= after {
            Some(self.limits.long_poll(self.long_polls_waiting(id))?)
        } else {
            None
        };
        loop {
            // Register before reading, so an append between the read and the wait still wakes us.
            let waiter = self.waiter(id);
            let notified = waiter.notify.notified();
            let c = self.visible(caller, id).await?;
            if c.last_seq > after || wait_secs == 0 {
                let mut events =
                    self.store.events_after(id, after, api::EVENTS_PAGE_MAX).await.map_err(AppError::from)?;
                if matches!(caller, Caller::Customer { .. }) {
                    // Transfers stored by versions that put the hand-over note in the event.
                    for e in &mut events {
                        if let Event::ConversationTransferred(t) = e {
                            t.note = None;
                        }
                    }
                }
                // The conversation's latest seq, not the page's last: a reader asks again while
                // its last event is below it (an append after the row was read may be in the page).
                let last_seq = events.last().and_then(Event::seq).map_or(c.last_seq, |s| s.max(c.last_seq));
                return Ok(EventsPage { events, last_seq, status: c.status });
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(EventsPage { events: Vec::new(), last_seq: c.last_seq, status: c.status });
            }
        }
    }

    /// Applies a command and writes the resulting events; retries on concurrent changes.
    /// `build` turns the transition into the events to persist, given the first free seq.
    async fn transition<F>(
        &self,
        id: &ConversationId,
        command: impl Fn(&ConversationRow) -> AppResult<Command>,
        build: F,
    ) -> AppResult<(ConversationRow, Transition, Vec<Event>)>
    where
        F: Fn(&ConversationRow, &Transition, &mut dyn FnMut() -> Seq) -> Vec<Event>,
    {
        self.transition_with(id, command, build, &[]).await
    }

    /// [`Self::transition`] that also writes `rows` (a hand-over note, a decline record) in the
    /// events' transaction: the transition and its record commit together or not at all.
    async fn transition_with<F>(
        &self,
        id: &ConversationId,
        command: impl Fn(&ConversationRow) -> AppResult<Command>,
        build: F,
        rows: &[AppendRow],
    ) -> AppResult<(ConversationRow, Transition, Vec<Event>)>
    where
        F: Fn(&ConversationRow, &Transition, &mut dyn FnMut() -> Seq) -> Vec<Event>,
    {
        let _turn = self.write_lock(id).lock().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                // Another node wrote first: back off a little, more each time.
                let jitter = u64::from(
                    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos() % 5,
                );
                tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5 + jitter)).await;
            }
            let c = self
                .store
                .conversation(id)
                .await
                .map_err(AppError::from)?
                .ok_or_else(|| AppError::not_found("conversation"))?;
            let state = ConversationState { status: c.status, agent: c.agent_id.clone() };
            let t = state.apply(&command(&c)?)?;
            let mut next = c.last_seq;
            let mut seq = || {
                next = next.next();
                next
            };
            let events = build(&c, &t, &mut seq);
            let now = now_ms();
            let queued_at = match t.to {
                ConversationStatus::Queued if c.status == ConversationStatus::Queued => c.queued_at,
                ConversationStatus::Queued => Some(now),
                _ => None,
            };
            let takes_slot = t.agent.is_some() && t.agent != t.previous_agent;
            let update =
                ConversationUpdate { status: t.to, agent_id: t.agent.clone(), queued_at, takes_slot };
            match self.store.append_with(id, c.last_seq, &update, &events, rows, now).await {
                Ok(()) => {
                    self.wake(id);
                    return Ok((c, t, events));
                }
                Err(StoreError::Conflict) => {}
                Err(StoreError::AtCapacity) => {
                    return Err(AppError::new(
                        ErrorCode::AgentUnavailable,
                        "the agent holds as many conversations as their capacity allows",
                    ));
                }
                Err(e) => return Err(AppError::from(e)),
            }
        }
        Err(AppError::new(ErrorCode::Internal, "conversation is too busy; try again"))
    }

    fn status_event(c: &ConversationRow, t: &Transition, seq: &mut dyn FnMut() -> Seq) -> Option<Event> {
        (t.from != t.to).then(|| {
            Event::StatusChanged(StatusChanged {
                conversation_id: c.id.clone(),
                seq: seq(),
                status: t.to,
                previous: t.from,
            })
        })
    }

    /// The events of a conversation passed on (transfer, decline): assigned to `to` when it went
    /// to an agent, and the status change when there was one.
    fn handed_to(
        c: &ConversationRow,
        t: &Transition,
        seq: &mut dyn FnMut() -> Seq,
        to: Option<&AgentRow>,
    ) -> Vec<Event> {
        let mut out: Vec<Event> = to
            .map(|a| {
                Event::ConversationAssigned(ConversationAssigned {
                    conversation_id: c.id.clone(),
                    seq: seq(),
                    agent: summary(a),
                })
            })
            .into_iter()
            .collect();
        out.extend(Self::status_event(c, t, seq));
        out
    }

    /// Publishes an event on the catalog's channels. `agents` are the agents whose personal
    /// channel it goes to (assignee, transfer source and target, resolver).
    fn publish(&self, project: &ProjectId, event: &Event, agents: &[&AgentId]) {
        let conv = event.conversation_id().map(|id| Channel::Conversation(id.clone()));
        let queue = Channel::ProjectQueue(project.clone());
        let mut channels: Vec<Channel> = match event {
            Event::MessageNew(_) | Event::StatusChanged(_) | Event::AgentClaimed(_) => {
                conv.into_iter().chain([queue]).collect()
            }
            Event::ConversationAssigned(_)
            | Event::ConversationTransferred(_)
            | Event::ConversationResolved(_) => conv
                .into_iter()
                .chain([queue])
                .chain(agents.iter().map(|a| Channel::Agent((*a).clone())))
                .collect(),
            Event::QueuePositionUpdated(_) | Event::Typing(_) | Event::PresenceUpdated(_) => {
                conv.into_iter().collect()
            }
            Event::QueueUpdated(_) | Event::AgentStatusChanged(_) | Event::OfflineMessageNew(_) => {
                vec![queue]
            }
            Event::NoteNew(n) => vec![Channel::ConversationAgents(n.note.conversation_id.clone())],
            _ => Vec::new(),
        };
        channels.dedup();
        for channel in &channels {
            self.hub.publish(channel, event);
        }
    }

    /// Sends `queue:updated` to the project and `queue:position_updated` to every waiting
    /// conversation: at once when none went out in the last 250 ms, else once at the end of
    /// that window, with the queue as it is then (a burst of handoffs costs one broadcast).
    async fn broadcast_queue(&self, project: &ProjectId) {
        self.queue_broadcasts.request(project).await;
    }

    async fn loads(&self, project: &ProjectId) -> AppResult<(Vec<AgentRow>, Vec<AgentLoad>)> {
        let agents = self.store.agents(project).await.map_err(AppError::from)?;
        let loads = agents
            .iter()
            .map(|a| AgentLoad {
                id: a.id.clone(),
                online: a.status == AgentStatus::Online,
                open: a.open,
                capacity: a.capacity,
                idle_since_ms: a.idle_since,
            })
            .collect();
        Ok((agents, loads))
    }

    /// Offers the queue head to free agents until nobody is free or the queue is empty. Nobody
    /// gets a conversation they declined; `released` also keeps a conversation away from the
    /// agent who just gave it up (transfer to the queue).
    async fn drain_queue(&self, project: &ProjectId, released: Option<(&ConversationId, &AgentId)>) {
        for _ in 0..64 {
            let Ok(queue) = self.store.queue(project).await else { return };
            let Ok((agents, loads)) = self.loads(project).await else { return };
            let mut progressed = false;
            for head in &queue {
                let Ok(mut exclude) = self.store.decliners(&head.id).await else { return };
                exclude.extend(released.filter(|(c, _)| *c == &head.id).map(|(_, a)| a.clone()));
                let Some(agent_id) = pick_agent(&loads, &exclude) else { continue };
                let Some(agent) = agents.iter().find(|a| a.id == agent_id) else { continue };
                progressed = match self
                    .assign(&head.id, agent, Command::Assign { agent: agent_id.clone() }, false)
                    .await
                {
                    Ok(_) => true,
                    // Another writer (a claim, a drain on another node) was first: the agent
                    // filled up or the head is gone. Read the queue and the loads again.
                    Err(e) => matches!(e.code, ErrorCode::AgentUnavailable | ErrorCode::InvalidTransition),
                };
                break;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Assigns a conversation (claim or auto-assignment) and publishes.
    async fn assign(
        &self,
        id: &ConversationId,
        agent: &AgentRow,
        command: Command,
        claimed: bool,
    ) -> AppResult<ConversationRow> {
        let s = summary(agent);
        let (c, t, events) = self
            .transition(
                id,
                |_| Ok(command.clone()),
                |c, t, seq| {
                    let mut out = Vec::new();
                    if claimed {
                        out.push(Event::AgentClaimed(AgentClaimed {
                            conversation_id: c.id.clone(),
                            seq: seq(),
                            agent: s.clone(),
                        }));
                    }
                    out.push(Event::ConversationAssigned(ConversationAssigned {
                        conversation_id: c.id.clone(),
                        seq: seq(),
                        agent: s.clone(),
                    }));
                    out.extend(Self::status_event(c, t, seq));
                    out
                },
            )
            .await?;
        let _ = self.store.set_idle_since(&agent.id, now_ms()).await;
        for e in &events {
            self.publish(&c.project_id, e, &[&agent.id]);
        }
        if t.from == ConversationStatus::Queued {
            self.broadcast_queue(&c.project_id).await;
        }
        Ok(c)
    }

    /// `POST /api/conversations/{id}/messages`.
    ///
    /// # Errors
    /// Validation, 404, 409 (agents cannot write in a resolved conversation).
    pub async fn send_message(
        &self,
        caller: &Caller,
        id: &ConversationId,
        req: api::SendMessageRequest,
    ) -> AppResult<SendMessageResponse> {
        api::validate_body(&req.body).map_err(AppError::validation)?;
        validate_client_msg_id(req.client_msg_id.as_ref())?;
        let c = self.visible(caller, id).await?;
        if let Some(cid) = &req.client_msg_id {
            if let Some(seq) =
                self.store.message_seq_by_client_id(id, cid.as_str()).await.map_err(AppError::from)?
            {
                return self.duplicate(id, seq).await;
            }
        }
        if let Caller::Agent(a) = caller {
            let _ = self.store.touch_agent(&a.id, now_ms()).await;
        }
        let author = caller.author();
        let is_customer = matches!(caller, Caller::Customer { .. });
        let body = req.body;
        let client_msg_id: Option<ClientMsgId> = req.client_msg_id;
        let result = self
            .transition(
                id,
                |c| {
                    caller.authorize(c, Act::Speak)?;
                    if is_customer {
                        Ok(Command::CustomerMessage)
                    } else if c.status == ConversationStatus::Resolved {
                        Err(AppError::new(
                            ErrorCode::InvalidTransition,
                            "cannot write in a resolved conversation",
                        ))
                    } else {
                        // Agents and bots write without changing the state.
                        Ok(Command::CustomerMessage)
                    }
                },
                |c, t, seq| {
                    let mut out: Vec<Event> = Self::status_event(c, t, seq).into_iter().collect();
                    out.push(Event::MessageNew(MessageNew {
                        message: Message {
                            id: store::new_message_id(),
                            conversation_id: c.id.clone(),
                            seq: seq(),
                            author: author.clone(),
                            body: body.clone(),
                            client_msg_id: client_msg_id.clone(),
                            created_at: Timestamp(now_ms()),
                        },
                    }));
                    out
                },
            )
            .await;
        let (_, t, events) = match result {
            Ok(r) => r,
            Err(e) => {
                // A concurrent replay of the same client_msg_id won the race.
                if let Some(cid) = &client_msg_id {
                    if let Ok(Some(seq)) = self.store.message_seq_by_client_id(id, cid.as_str()).await {
                        return self.duplicate(id, seq).await;
                    }
                }
                return Err(e);
            }
        };
        for e in &events {
            self.publish(&c.project_id, e, &[]);
        }
        let message = events.into_iter().find_map(|e| match e {
            Event::MessageNew(m) => Some(m.message),
            _ => None,
        });
        let message = message.ok_or_else(|| AppError::internal(&"message event missing"))?;
        if let Caller::Customer { project, .. } = caller {
            if t.to == ConversationStatus::Bot {
                self.notify_bot(project, &message);
            }
        }
        if c.status == ConversationStatus::Queued && is_customer {
            self.broadcast_queue(&c.project_id).await; // the preview changed
        }
        Ok(SendMessageResponse { message, duplicate: false })
    }

    /// Sends a customer message of a conversation in `bot` state to the project's webhook.
    fn notify_bot(&self, project: &Project, message: &Message) {
        let (Some(url), Some(secret)) = (&project.webhook_url, &project.webhook_secret) else { return };
        let delivery = api::WebhookDelivery {
            id: crypto::random_id("whd_"),
            event: EventType::MessageNew.as_str().to_owned(),
            project_id: project.id.clone(),
            conversation_id: message.conversation_id.clone(),
            message: message.clone(),
            sent_at: Timestamp(now_ms()),
        };
        self.webhooks.send(url, secret.clone(), &delivery);
    }

    /// The service with `webhooks` as its webhook sender (and policy) instead of the default
    /// one, which reaches public addresses only.
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Whether webhooks may reach loopback and private addresses (local development).
    pub fn allow_private_webhooks(&self) -> bool {
        self.webhooks.allow_private()
    }

    /// `PUT /api/project/webhook` (secret key) and the CLI: sets or removes the bot webhook and
    /// returns a new signing secret.
    ///
    /// # Errors
    /// 403 for callers other than the project's secret key; 422 as [`Self::set_webhook_of`].
    pub async fn set_webhook(&self, caller: &Caller, url: Option<String>) -> AppResult<api::WebhookSettings> {
        let Caller::Server(project) = caller else {
            return Err(AppError::forbidden("only the project's secret key sets the webhook"));
        };
        self.set_webhook_of(&project.id, url).await
    }

    /// Sets or removes a project's bot webhook (no authorization: the CLI's entry point).
    ///
    /// # Errors
    /// 422 for a URL that is not http(s), has user info, or (unless the service's [`Webhooks`]
    /// allow private addresses) names `localhost` or a loopback, private, link-local or reserved
    /// address.
    pub async fn set_webhook_of(
        &self,
        project: &ProjectId,
        url: Option<String>,
    ) -> AppResult<api::WebhookSettings> {
        let url = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        if let Some(u) = &url {
            self.webhooks.check_url(u).map_err(AppError::validation)?;
        }
        let secret = url.as_ref().map(|_| crypto::random_token("whsec_"));
        self.store.set_webhook(project, url.as_deref(), secret.as_deref()).await.map_err(AppError::from)?;
        Ok(api::WebhookSettings { url, secret })
    }

    async fn duplicate(&self, id: &ConversationId, seq: Seq) -> AppResult<SendMessageResponse> {
        match self.store.event_at(id, seq).await.map_err(AppError::from)? {
            Some(Event::MessageNew(m)) => Ok(SendMessageResponse { message: m.message, duplicate: true }),
            _ => Err(AppError::internal(&"stored message event missing")),
        }
    }

    /// `POST /api/conversations/{id}/handoff`: route to a free agent, else queue.
    ///
    /// # Errors
    /// 403 for agents; 409 when not in `bot` state.
    pub async fn handoff(&self, caller: &Caller, id: &ConversationId) -> AppResult<Conversation> {
        if matches!(caller, Caller::Agent(_)) {
            return Err(AppError::forbidden("agents claim conversations instead"));
        }
        let c = self.visible(caller, id).await?;
        // Routing reads the loads outside any lock; the write re-checks the pick's capacity
        // under a lock on them, and a full pick is skipped (the next one, or the queue).
        let mut refused: Vec<AgentId> = Vec::new();
        let (c, t, events) = loop {
            let (agents, loads) = self.loads(&c.project_id).await?;
            let picked = pick_agent(&loads, &refused);
            let agent = picked.as_ref().and_then(|id| agents.iter().find(|a| &a.id == id)).map(summary);
            let result = self
                .transition(
                    id,
                    |_| Ok(Command::Handoff { agent: picked.clone() }),
                    |c, t, seq| {
                        let mut out: Vec<Event> = Self::status_event(c, t, seq).into_iter().collect();
                        if let Some(a) = &agent {
                            out.push(Event::ConversationAssigned(ConversationAssigned {
                                conversation_id: c.id.clone(),
                                seq: seq(),
                                agent: a.clone(),
                            }));
                        }
                        out
                    },
                )
                .await;
            match result {
                Err(e) if e.code == ErrorCode::AgentUnavailable && picked.is_some() => refused.extend(picked),
                r => break r?,
            }
        };
        if let Some(a) = &t.agent {
            let _ = self.store.set_idle_since(a, now_ms()).await;
        }
        let assignee: Vec<&AgentId> = t.agent.iter().collect();
        for e in &events {
            self.publish(&c.project_id, e, &assignee);
        }
        if t.to == ConversationStatus::Queued {
            self.broadcast_queue(&c.project_id).await;
        }
        self.get_conversation(caller, id).await
    }

    /// `POST /api/conversations/{id}/claim`.
    ///
    /// # Errors
    /// 403 for non-agents; 409 when not queued, `agent_unavailable` when the agent holds their
    /// capacity already.
    pub async fn claim(&self, caller: &Caller, id: &ConversationId) -> AppResult<Conversation> {
        let agent = caller.agent()?;
        self.visible(caller, id).await?;
        self.assign(id, agent, Command::Claim { agent: agent.id.clone() }, true).await?;
        self.get_conversation(caller, id).await
    }

    /// `POST /api/conversations/{id}/transfer`.
    ///
    /// # Errors
    /// 403, 404, 409 (`agent_unavailable` when the target is offline or full).
    pub async fn transfer(
        &self,
        caller: &Caller,
        id: &ConversationId,
        req: api::TransferRequest,
    ) -> AppResult<Conversation> {
        let me = caller.agent()?;
        if req.to != "queue" && !api::is_valid_id(&req.to) {
            return Err(AppError::validation("to must be \"queue\" or an agent id"));
        }
        if let Some(note) = &req.note {
            if note.chars().count() > api::MAX_NOTE_CHARS || api::has_control_chars(note, true) {
                return Err(AppError::validation(
                    "note is longer than 5000 characters or contains control characters",
                ));
            }
        }
        let c = self.visible(caller, id).await?;
        caller.authorize(&c, Act::Transfer)?;
        let target = if req.to == "queue" {
            None
        } else {
            let a = self.store.agent(&AgentId::new(req.to.as_str())).await.map_err(AppError::from)?;
            let a =
                a.filter(|a| a.project_id == me.project_id).ok_or_else(|| AppError::not_found("agent"))?;
            if a.id != me.id && (a.status != AgentStatus::Online || a.open >= a.capacity) {
                return Err(AppError::new(
                    ErrorCode::AgentUnavailable,
                    format!("{} is not available", a.name),
                ));
            }
            Some(a)
        };
        let to = target.as_ref().map_or(TransferTo::Queue, |a| TransferTo::Agent(a.id.clone()));
        let from = summary(me);
        // The hand-over note is internal: it becomes a note (agents only), never part of
        // `conversation:transferred`, which the customer's channel and history carry too.
        let note = req.note.filter(|n| !n.trim().is_empty());
        if let Some(n) = &note {
            api::validate_body(n).map_err(AppError::validation)?;
        }
        // Stored in the transfer's transaction: both or neither.
        let note = note.map(|body| Self::new_note(id, me, body));
        let rows: Vec<AppendRow> = note.iter().cloned().map(AppendRow::Note).collect();
        let (_, t, events) = self
            .transition_with(
                id,
                |c| {
                    caller.authorize(c, Act::Transfer)?;
                    Ok(Command::Transfer { by: me.id.clone(), to: to.clone() })
                },
                |c, t, seq| {
                    let mut out = vec![Event::ConversationTransferred(ConversationTransferred {
                        conversation_id: c.id.clone(),
                        seq: seq(),
                        from_agent: from.clone(),
                        to: target
                            .as_ref()
                            .map_or(TransferTarget::Queue, |a| TransferTarget::Agent(summary(a))),
                        note: None,
                    })];
                    out.extend(Self::handed_to(c, t, seq, target.as_ref()));
                    out
                },
                &rows,
            )
            .await?;
        let mut agents = vec![&me.id];
        if let Some(a) = &target {
            agents.push(&a.id);
        }
        for e in &events {
            match e {
                Event::ConversationAssigned(_) => self.publish(&c.project_id, e, &agents[1..]),
                _ => self.publish(&c.project_id, e, &agents),
            }
        }
        if let Some(note) = note {
            self.publish(&c.project_id, &Event::NoteNew(NoteNew { note }), &[]);
        }
        self.released(&c.project_id, id, &me.id, &t).await;
        self.get_conversation(caller, id).await
    }

    /// After an agent gave a conversation up (transfer, decline): their slot is free, the queue
    /// may have changed, and queued work goes to whoever is free (not back to them).
    async fn released(&self, project: &ProjectId, id: &ConversationId, agent: &AgentId, t: &Transition) {
        if let Err(e) = self.store.set_idle_since(agent, now_ms()).await {
            tracing::warn!(error = %e, "cannot record idle time");
        }
        if t.to == ConversationStatus::Queued {
            self.broadcast_queue(project).await;
        }
        self.drain_queue(project, Some((id, agent))).await;
    }

    /// `POST /api/conversations/{id}/decline`: to another free agent, else back to the queue.
    /// The assignee declines; the project's secret key may decline for them.
    ///
    /// # Errors
    /// 403 (`not_assignee` for another agent), 404, 409.
    pub async fn decline(&self, caller: &Caller, id: &ConversationId) -> AppResult<Conversation> {
        let c = self.visible(caller, id).await?;
        if matches!(caller, Caller::Customer { .. }) {
            return Err(AppError::forbidden("only agents decline"));
        }
        caller.authorize(&c, Act::Decline)?;
        // Who declines: the agent, or for the secret key the assignee (the state machine checks
        // that they hold it when the decline is written).
        let me = match caller {
            Caller::Agent(a) => a.id.clone(),
            _ => c.agent_id.clone().ok_or_else(|| {
                AppError::new(ErrorCode::InvalidTransition, "cannot decline a conversation nobody holds")
            })?,
        };
        // Whoever declined it before is not asked again (the decline is recorded in the
        // transition's transaction).
        let mut declined = self.store.decliners(id).await.map_err(AppError::from)?;
        declined.push(me.clone());
        let mut refused = Vec::new();
        let (t, events) = loop {
            let (agents, loads) = self.loads(&c.project_id).await?;
            let mut exclude = declined.clone();
            exclude.extend(refused.iter().cloned());
            let next = pick_agent(&loads, &exclude);
            let next_row = next.as_ref().and_then(|n| agents.iter().find(|a| &a.id == n));
            let result = self
                .transition_with(
                    id,
                    |c| {
                        caller.authorize(c, Act::Decline)?;
                        Ok(Command::Decline { by: me.clone(), next: next.clone() })
                    },
                    |c, t, seq| Self::handed_to(c, t, seq, next_row),
                    &[AppendRow::Decline(me.clone())],
                )
                .await;
            match result {
                // The agent routing picked filled up meanwhile: pick again without them.
                Err(e) if e.code == ErrorCode::AgentUnavailable && next.is_some() => {
                    refused.extend(next);
                }
                r => {
                    let (_, t, events) = r?;
                    break (t, events);
                }
            }
        };
        let assignee: Vec<&AgentId> = t.agent.iter().collect();
        for e in &events {
            self.publish(&c.project_id, e, &assignee);
        }
        self.released(&c.project_id, id, &me, &t).await;
        self.get_conversation(caller, id).await
    }

    /// `POST /api/conversations/{id}/resolve`: by an agent (the assignee, when it is assigned)
    /// or the project's secret key.
    ///
    /// # Errors
    /// 403 (`not_assignee` for another agent), 404, 409.
    pub async fn resolve(&self, caller: &Caller, id: &ConversationId) -> AppResult<Conversation> {
        if matches!(caller, Caller::Customer { .. }) {
            return Err(AppError::forbidden("only agents resolve"));
        }
        let c = self.visible(caller, id).await?;
        let by = caller.author();
        let (before, t, events) = self
            .transition(
                id,
                |c| {
                    caller.authorize(c, Act::Resolve)?;
                    Ok(Command::Resolve)
                },
                |c, t, seq| {
                    let mut out = vec![Event::ConversationResolved(ConversationResolved {
                        conversation_id: c.id.clone(),
                        seq: seq(),
                        resolved_by: by.clone(),
                    })];
                    out.extend(Self::status_event(c, t, seq));
                    out
                },
            )
            .await?;
        let mut agents: Vec<&AgentId> = Vec::new();
        if let Caller::Agent(me) = caller {
            agents.push(&me.id);
        }
        if let Some(a) = before.agent_id.as_ref().filter(|a| !agents.contains(a)) {
            agents.push(a);
        }
        for e in &events {
            self.publish(&c.project_id, e, &agents);
        }
        if t.from == ConversationStatus::Queued {
            self.broadcast_queue(&c.project_id).await;
        }
        if let Some(a) = &before.agent_id {
            let _ = self.store.set_idle_since(a, now_ms()).await;
        }
        self.drain_queue(&c.project_id, None).await;
        self.get_conversation(caller, id).await
    }

    fn typing_event(caller: &Caller, id: &ConversationId, is_typing: bool) -> Event {
        Event::Typing(Typing { conversation_id: id.clone(), actor: caller.author(), is_typing })
    }

    /// `POST /api/conversations/{id}/typing`.
    ///
    /// # Errors
    /// 404 when not visible.
    pub async fn typing(&self, caller: &Caller, id: &ConversationId, is_typing: bool) -> AppResult<()> {
        let c = self.visible(caller, id).await?;
        if let Caller::Agent(a) = caller {
            let _ = self.store.touch_agent(&a.id, now_ms()).await;
        }
        self.publish(&c.project_id, &Self::typing_event(caller, id, is_typing), &[]);
        Ok(())
    }

    /// `POST /api/conversations/{id}/presence` (customers only): one tab's report. Agents see
    /// the aggregate of the conversation's tabs; `presence:updated` goes out only when it
    /// changes (the rule of [`handoff_protocol::timing::presence`]).
    ///
    /// # Errors
    /// 403 for agents; 404 when not visible; 422 for a bad state or tab id.
    pub async fn presence(
        &self,
        caller: &Caller,
        id: &ConversationId,
        state: PresenceState,
        tab: Option<&str>,
    ) -> AppResult<()> {
        if !matches!(caller, Caller::Customer { .. }) {
            return Err(AppError::forbidden("only the customer reports presence"));
        }
        if state == PresenceState::Unknown {
            return Err(AppError::validation("state must be online, idle or offline"));
        }
        if tab.is_some_and(|t| !is_valid_tab_id(t)) {
            return Err(AppError::validation("tab must be 1 to 64 letters, digits, `-` or `_`"));
        }
        let c = self.visible(caller, id).await?;
        let now = now_ms();
        let changed = self
            .store
            .report_presence(id, tab.unwrap_or(DEFAULT_TAB), state, now)
            .await
            .map_err(AppError::from)?;
        if let Some(state) = changed {
            self.publish_presence(&c.project_id, id, state, now);
        }
        Ok(())
    }

    fn publish_presence(&self, project: &ProjectId, id: &ConversationId, state: PresenceState, now: u64) {
        self.publish(
            project,
            &Event::PresenceUpdated(PresenceUpdated {
                conversation_id: id.clone(),
                state,
                at: Timestamp(now),
            }),
            &[],
        );
    }

    /// Forgets customer tabs whose heartbeats stopped `after_ms` ago and announces the
    /// conversations whose aggregate presence changed; returns how many.
    pub async fn expire_presence(&self, now: u64, after_ms: u64) -> usize {
        let changed = match self.store.expire_presence(now.saturating_sub(after_ms)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot expire presence");
                return 0;
            }
        };
        for (c, state) in &changed {
            self.publish_presence(&c.project_id, &c.id, *state, now);
        }
        changed.len()
    }

    /// Sets agents offline who have no socket connected (on any node) and made no REST call
    /// for `after_ms` (the rule of [`AgentLiveness`]), each announced once with
    /// `agent:status_changed` even when nodes race; returns how many.
    pub async fn expire_agents(&self, now: u64, after_ms: u64) -> usize {
        // The sockets held here count as seen now (the refresh may not have run yet).
        self.refresh_agent_sockets(now).await;
        let before = now.saturating_sub(after_ms);
        let Ok(agents) = self.store.inactive_agents(before).await else { return 0 };
        let mut expired = 0;
        for a in &agents {
            let liveness = AgentLiveness {
                status: a.status,
                local_sockets: self.agent_sockets(&a.id),
                last_socket_seen: a.last_socket_seen,
                last_request: a.last_activity,
            };
            if !liveness.expires_after(now, after_ms) {
                continue;
            }
            match self.store.expire_agent(&a.id, before).await {
                Ok(true) => {
                    expired += 1;
                    self.publish(
                        &a.project_id,
                        &Event::AgentStatusChanged(AgentStatusChanged {
                            agent_id: a.id.clone(),
                            status: AgentStatus::Offline,
                        }),
                        &[],
                    );
                    self.publish_availability(&a.project_id).await;
                }
                Ok(false) => {} // came back meanwhile, or another node was first
                Err(e) => tracing::warn!(error = %e, "cannot expire an agent"),
            }
        }
        expired
    }

    /// Sockets joined with this agent's token on this node.
    pub fn agent_sockets(&self, id: &AgentId) -> usize {
        self.agent_sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Writes "seen connected at `now`" for every agent with a socket on this node, so that the
    /// node running the expiry job sees them (every node, every
    /// [`handoff_protocol::timing::agent::AGENT_SOCKET_REFRESH_MS`]).
    pub async fn refresh_agent_sockets(&self, now: u64) {
        let held: Vec<AgentId> = self
            .agent_sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        if !held.is_empty() {
            if let Err(e) = self.store.agent_sockets_seen(&held, now).await {
                tracing::warn!(error = %e, "cannot record agents' sockets");
            }
        }
    }

    /// This node's id (the holder of the background jobs' lease).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `POST /api/conversations/{id}/read`.
    ///
    /// # Errors
    /// 403, 404.
    pub async fn mark_read(&self, caller: &Caller, id: &ConversationId, seq: Seq) -> AppResult<()> {
        let me = caller.agent()?;
        if seq.0 > api::MAX_SEQ {
            return Err(AppError::validation("seq is larger than 9223372036854775807"));
        }
        let c = self.visible(caller, id).await?;
        self.store.mark_read(&me.id, id, seq.min(c.last_seq)).await.map_err(AppError::from)
    }

    /// `GET /api/conversations/{id}/notes`.
    ///
    /// # Errors
    /// 403, 404.
    pub async fn notes(&self, caller: &Caller, id: &ConversationId) -> AppResult<Vec<Note>> {
        caller.agent()?;
        self.visible(caller, id).await?;
        self.store.notes(id).await.map_err(AppError::from)
    }

    /// `POST /api/conversations/{id}/notes`.
    ///
    /// # Errors
    /// 403, 404, 422.
    pub async fn add_note(&self, caller: &Caller, id: &ConversationId, body: String) -> AppResult<Note> {
        let me = caller.agent()?;
        api::validate_body(&body).map_err(AppError::validation)?;
        let c = self.visible(caller, id).await?;
        self.insert_note(&c.project_id, id, me, body).await
    }

    /// A new internal note (not stored yet).
    fn new_note(id: &ConversationId, author: &AgentRow, body: String) -> Note {
        Note {
            id: NoteId::new(crypto::random_id("note_")),
            conversation_id: id.clone(),
            author: summary(author),
            body,
            created_at: Timestamp(now_ms()),
        }
    }

    /// Stores an internal note and announces it on the conversation's agents-only channel.
    async fn insert_note(
        &self,
        project: &ProjectId,
        id: &ConversationId,
        author: &AgentRow,
        body: String,
    ) -> AppResult<Note> {
        let note = Self::new_note(id, author, body);
        self.store.insert_note(&note).await.map_err(AppError::from)?;
        self.publish(project, &Event::NoteNew(NoteNew { note: note.clone() }), &[]);
        Ok(note)
    }

    // ---- agents ----

    /// `POST /api/agents/login`.
    ///
    /// # Errors
    /// 401 for a wrong email or password.
    pub async fn login(&self, req: &api::LoginRequest, ip: Option<IpAddr>) -> AppResult<api::LoginResponse> {
        api::validate_line("email", &req.email, api::MAX_EMAIL_CHARS, true).map_err(AppError::validation)?;
        api::validate_line("password", &req.password, api::MAX_PASSWORD_CHARS, true)
            .map_err(AppError::validation)?;
        let email = req.email.trim().to_lowercase();
        self.limits.check(Action::Login, &ip.map(Key::ip).into_iter().collect::<Vec<_>>())?;
        let keys = Limits::login_keys(&email, ip);
        self.limits.login_allowed(&keys)?;
        let agent = self.store.agent_by_email(&email).await.map_err(AppError::from)?;
        // The same argon2 work for an unknown email as for a known one (no timing oracle), on
        // the password threads, a bounded number at once.
        let hash = agent.as_ref().map(|a| a.password_hash.as_str());
        let verified = self.passwords.verify(&req.password, hash).await.ok_or_else(|| {
            AppError::new(ErrorCode::RateLimited, "too many sign-ins at once; retry in a second")
                .retry_after(1)
        })?;
        let verified = verified && agent.is_some();
        let Some(agent) = agent.filter(|a| verified && !a.disabled) else {
            self.limits.login_failed(&keys);
            return Err(AppError::new(ErrorCode::Unauthorized, "wrong email or password"));
        };
        self.limits.login_succeeded(&keys);
        let token = crypto::random_token("at_");
        self.store
            .insert_agent_token(&crypto::token_hash(&token), &agent.id, now_ms())
            .await
            .map_err(AppError::from)?;
        Ok(api::LoginResponse { token, agent: self.agent_self_dto(&agent).await? })
    }

    /// An agent as they see themself: with their project's public key (their socket's `apikey`).
    async fn agent_self_dto(&self, agent: &AgentRow) -> AppResult<api::Agent> {
        let project = self.store.project(&agent.project_id).await.map_err(AppError::from)?;
        Ok(api::Agent { project_key: project.map(|p| p.public_key), ..agent_dto(agent) })
    }

    /// `GET /api/agents/me`.
    ///
    /// # Errors
    /// 403 for non-agents.
    pub async fn me(&self, caller: &Caller) -> AppResult<api::Agent> {
        self.agent_self_dto(caller.agent()?).await
    }

    /// `POST /api/agents/logout`: revokes the token the call was made with.
    ///
    /// # Errors
    /// 403 for non-agents.
    pub async fn logout(&self, caller: &Caller, token: &str) -> AppResult<()> {
        caller.agent()?;
        let hash = crypto::token_hash(token);
        self.store.delete_agent_token(&hash).await.map_err(AppError::from)?;
        self.revoke_sockets(&[hash]);
        Ok(())
    }

    /// Sets an agent's password; every token of theirs stops working (sockets included).
    ///
    /// # Errors
    /// 404 unknown agent; 422 a password of under 8 characters.
    pub async fn set_agent_password(&self, id: &AgentId, password: &str) -> AppResult<()> {
        validate_password(password)?;
        self.store.agent(id).await.map_err(AppError::from)?.ok_or_else(|| AppError::not_found("agent"))?;
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
            .await
            .map_err(|e| AppError::internal(&e))?
            .map_err(|e| AppError::internal(&e))?;
        let revoked = self.store.set_agent_password(id, &hash).await.map_err(AppError::from)?;
        self.revoke_sockets(&revoked);
        Ok(())
    }

    /// Disables an agent (signed out everywhere, offline, cannot sign in) or enables them again.
    ///
    /// # Errors
    /// 404 unknown agent.
    pub async fn set_agent_disabled(&self, id: &AgentId, disabled: bool) -> AppResult<()> {
        let agent = self
            .store
            .agent(id)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("agent"))?;
        let revoked = self.store.set_agent_disabled(id, disabled, now_ms()).await.map_err(AppError::from)?;
        self.revoke_sockets(&revoked);
        if disabled && agent.status != AgentStatus::Offline {
            let event = Event::AgentStatusChanged(AgentStatusChanged {
                agent_id: id.clone(),
                status: AgentStatus::Offline,
            });
            self.publish(&agent.project_id, &event, &[]);
            self.publish_availability(&agent.project_id).await;
        }
        Ok(())
    }

    /// `PATCH /api/agents/{id}` (the project's secret key): changes an agent's settings.
    ///
    /// # Errors
    /// 403 for other callers; 404 for an agent of another project; 422 for a capacity above
    /// [`api::MAX_CAPACITY`].
    pub async fn update_agent(
        &self,
        caller: &Caller,
        id: &AgentId,
        req: api::AgentUpdateRequest,
    ) -> AppResult<api::Agent> {
        let Caller::Server(project) = caller else {
            return Err(AppError::forbidden("only the project's secret key changes agents"));
        };
        let agent = self
            .store
            .agent(id)
            .await
            .map_err(AppError::from)?
            .filter(|a| a.project_id == project.id)
            .ok_or_else(|| AppError::not_found("agent"))?;
        match req.capacity {
            Some(capacity) => self.set_agent_capacity(id, capacity).await.map(|a| agent_dto(&a)),
            None => Ok(agent_dto(&agent)),
        }
    }

    /// Sets an agent's capacity (no authorization: the CLI's entry point). Lowering it takes
    /// nothing away; raising it offers them queued work at once when they are online.
    ///
    /// # Errors
    /// 404 unknown agent; 422 for a capacity above [`api::MAX_CAPACITY`].
    pub async fn set_agent_capacity(&self, id: &AgentId, capacity: u32) -> AppResult<AgentRow> {
        if capacity > api::MAX_CAPACITY {
            return Err(AppError::validation(format!("capacity must be 0 to {}", api::MAX_CAPACITY)));
        }
        let agent = self
            .store
            .agent(id)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("agent"))?;
        self.store.set_agent_capacity(id, capacity).await.map_err(AppError::from)?;
        if capacity > agent.capacity && agent.status == AgentStatus::Online {
            self.drain_queue(&agent.project_id, None).await;
        }
        self.store.agent(id).await.map_err(AppError::from)?.ok_or_else(|| AppError::not_found("agent"))
    }

    /// A new secret key for a project; the old one stops working at once (sockets included).
    ///
    /// # Errors
    /// 404 unknown project.
    pub async fn rotate_secret(&self, project: &ProjectId) -> AppResult<String> {
        let secret = crypto::random_token("sk_");
        let old = self
            .store
            .set_secret_key_hash(project, &crypto::token_hash(&secret))
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("project"))?;
        self.revoke_sockets(&[old]);
        Ok(secret)
    }

    /// Deletes expired agent tokens and cuts their sockets (a background job).
    pub async fn expire_tokens(&self, now: u64) -> usize {
        let cfg = self.limits.config();
        let created_before = now.saturating_sub(limits::ms(cfg.agent_token_max_age));
        let used_before = now.saturating_sub(limits::ms(cfg.agent_token_idle));
        match self.store.delete_expired_agent_tokens(created_before, used_before).await {
            Ok(hashes) => {
                self.revoke_sockets(&hashes);
                hashes.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "expiring agent tokens failed");
                0
            }
        }
    }

    /// Cuts the realtime sockets authorized by these token hashes, on every node.
    fn revoke_sockets(&self, hashes: &[String]) {
        for hash in hashes {
            self.hub.revoke_token(hash);
        }
    }

    /// `PUT /api/agents/me/status`: publishes, and an agent who comes online gets queued work.
    ///
    /// # Errors
    /// 403, 422.
    pub async fn set_status(&self, caller: &Caller, status: AgentStatus) -> AppResult<api::Agent> {
        let me = caller.agent()?;
        if status == AgentStatus::Unknown {
            return Err(AppError::validation("status must be online, away or offline"));
        }
        self.store.set_agent_status(&me.id, status, now_ms()).await.map_err(AppError::from)?;
        if me.status != status {
            self.publish(
                &me.project_id,
                &Event::AgentStatusChanged(AgentStatusChanged { agent_id: me.id.clone(), status }),
                &[],
            );
            self.publish_availability(&me.project_id).await;
        }
        if status == AgentStatus::Online {
            self.drain_queue(&me.project_id, None).await;
        }
        let me = self
            .store
            .agent(&me.id)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("agent"))?;
        Ok(agent_dto(&me))
    }

    /// `GET /api/agents`.
    ///
    /// # Errors
    /// 403 for non-agents.
    pub async fn agents(&self, caller: &Caller) -> AppResult<Vec<api::Agent>> {
        let me = caller.agent()?;
        Ok(self.store.agents(&me.project_id).await.map_err(AppError::from)?.iter().map(agent_dto).collect())
    }

    /// `GET /api/queue`.
    ///
    /// # Errors
    /// 403 for non-agents.
    pub async fn queue(&self, caller: &Caller) -> AppResult<QueueUpdated> {
        let me = caller.agent()?;
        let mut queue = self.store.queue_entries(&me.project_id).await.map_err(AppError::from)?;
        for e in &mut queue {
            e.preview = e.preview.as_deref().map(preview);
        }
        Ok(QueueUpdated { queue })
    }

    /// `GET /api/inbox`: my assigned conversations and the queue, with unread counts.
    ///
    /// # Errors
    /// 403 for non-agents.
    pub async fn inbox(&self, caller: &Caller) -> AppResult<Vec<InboxItem>> {
        let me = caller.agent()?;
        let rows = self.store.inbox(&me.project_id, &me.id).await.map_err(AppError::from)?;
        let mut out = Vec::with_capacity(rows.len());
        for c in &rows {
            let last_message = match self.store.last_message(&c.id).await.map_err(AppError::from)? {
                Some(Event::MessageNew(m)) => Some(m.message),
                _ => None,
            };
            out.push(InboxItem {
                conversation: self.conversation_dto(c).await?,
                unread: self.store.unread(&me.id, &c.id).await.map_err(AppError::from)?,
                last_message,
            });
        }
        Ok(out)
    }

    // ---- offline messages ----

    /// `POST /api/projects/{id}/offline-messages`.
    ///
    /// # Errors
    /// 404 for another project; 422 for a bad email or empty fields.
    pub async fn offline_message(
        &self,
        caller: &Caller,
        project: &ProjectId,
        req: api::OfflineMessageRequest,
    ) -> AppResult<OfflineMessage> {
        if caller.project_id() != project {
            return Err(AppError::not_found("project"));
        }
        // Checked as sent (what the API document states), stored trimmed.
        api::validate_line("name", &req.name, api::MAX_NAME_CHARS, true).map_err(AppError::validation)?;
        let name = req.name.trim();
        if !api::is_valid_email(&req.email) {
            return Err(AppError::validation("email is not a valid address"));
        }
        api::validate_body(&req.message).map_err(AppError::validation)?;
        let m = OfflineMessage {
            id: OfflineMessageId::new(crypto::random_id("off_")),
            name: name.to_owned(),
            email: req.email.trim().to_owned(),
            message: req.message,
            created_at: Timestamp(now_ms()),
            handled_at: None,
        };
        self.store.insert_offline(project, &m).await.map_err(AppError::from)?;
        self.publish(
            project,
            &Event::OfflineMessageNew(OfflineMessageNew { offline_message: m.clone() }),
            &[],
        );
        Ok(m)
    }

    /// `GET /api/offline-messages?handled=`.
    ///
    /// # Errors
    /// 403 for non-agents.
    pub async fn offline_messages(
        &self,
        caller: &Caller,
        handled: Option<bool>,
    ) -> AppResult<Vec<OfflineMessage>> {
        let me = caller.agent()?;
        self.store.offline_messages(&me.project_id, handled).await.map_err(AppError::from)
    }

    /// `POST /api/offline-messages/{id}/handled`.
    ///
    /// # Errors
    /// 403, 404.
    pub async fn mark_offline_handled(&self, caller: &Caller, id: &OfflineMessageId) -> AppResult<()> {
        let me = caller.agent()?;
        if self.store.mark_offline_handled(&me.project_id, id, now_ms()).await.map_err(AppError::from)? {
            Ok(())
        } else {
            Err(AppError::not_found("offline message"))
        }
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

/// A long-poll's registration: its conversation's entry goes when the last waiter does (on
/// return, timeout or a client that hung up), so the map holds only what is waiting now.
struct Waiter<'a> {
    service: &'a Service,
    id: ConversationId,
    notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut w = self.service.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's reference and ours: nobody else waits.
        if w.get(&self.id).is_some_and(|n| Arc::ptr_eq(n, &self.notify) && Arc::strong_count(n) <= 2) {
            w.remove(&self.id);
        }
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

/// The realtime socket's view of the service.
#[async_trait]
impl RealtimeBackend for Service {
    async fn project_by_key(&self, key: &str, origin: Option<&str>) -> Option<SocketProject> {
        let project = match self.store.project_by_public_key(key).await {
            Ok(p) => p?,
            Err(e) => {
                tracing::warn!(error = %e, "project lookup for a socket failed");
                return None;
            }
        };
        Some(SocketProject {
            origin_allowed: origin.is_none_or(|o| project.allows_origin(o)),
            project_id: project.id,
        })
    }

    async fn authenticate(&self, token: &str) -> Principal {
        match Service::authenticate(self, token).await {
            Ok(Caller::Customer { visitor, project }) => {
                if project.enforce_identity && !visitor.verified {
                    Principal::Anonymous
                } else {
                    Principal::Customer { project_id: visitor.project_id, visitor_id: visitor.id }
                }
            }
            Ok(Caller::Agent(a)) => Principal::Agent { project_id: a.project_id, agent_id: a.id },
            Ok(Caller::Server(p)) => Principal::Server { project_id: p.id.clone() },
            Err(_) => Principal::Anonymous,
        }
    }

    async fn conversation_owner(&self, id: &ConversationId) -> Option<ConversationOwner> {
        let c = self.store.conversation(id).await.ok()??;
        Some(ConversationOwner { project_id: c.project_id, visitor_id: c.visitor_id })
    }

    async fn joined(&self, channel: &Channel) -> Option<Event> {
        match channel {
            Channel::ProjectAvailability(project) => self.current_availability(project).await,
            _ => None,
        }
    }

    async fn agent_socket(&self, agent: &AgentId, connected: bool) {
        // The first socket here and the last one gone are written at once: the 2-minute grace
        // counts from the close, not from the last refresh.
        let edge = {
            let mut map = self.agent_sockets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if connected {
                let n = map.entry(agent.clone()).or_insert(0);
                *n += 1;
                *n == 1
            } else if let Some(n) = map.get_mut(agent) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(agent);
                    true
                } else {
                    false
                }
            } else {
                false
            }
        };
        if edge {
            if let Err(e) = self.store.agent_sockets_seen(std::slice::from_ref(agent), now_ms()).await {
                tracing::warn!(error = %e, "cannot record an agent's socket");
            }
        }
    }

    async fn client_broadcast(
        &self,
        principal: &Principal,
        channel: &Channel,
        event: Event,
    ) -> Result<Event, String> {
        let Channel::Conversation(id) = channel else {
            return Err("client broadcasts go on conversation channels".into());
        };
        let caller = match principal {
            Principal::Customer { visitor_id, project_id } => {
                let project = self.store.project(project_id).await.ok().flatten().ok_or("unknown project")?;
                Caller::Customer {
                    visitor: VisitorRow {
                        id: visitor_id.clone(),
                        project_id: project_id.clone(),
                        name: None,
                        email: None,
                        verified: true,
                    },
                    project: Box::new(project),
                }
            }
            Principal::Agent { agent_id, .. } => {
                Caller::Agent(self.store.agent(agent_id).await.ok().flatten().ok_or("unknown agent")?)
            }
            _ => return Err("not allowed".into()),
        };
        match event {
            Event::Typing(t) if &t.conversation_id == id => {
                if let Caller::Agent(a) = &caller {
                    let _ = self.store.touch_agent(&a.id, now_ms()).await;
                } else if let Ok(Some(name)) =
                    self.store.visitor_name(&VisitorId::new(caller_author_id(&caller))).await
                {
                    return Ok(Event::Typing(Typing {
                        conversation_id: id.clone(),
                        actor: Author { name: Some(name), ..caller.author() },
                        is_typing: t.is_typing,
                    }));
                }
                Ok(Self::typing_event(&caller, id, t.is_typing))
            }
            Event::PresenceUpdated(p)
                if &p.conversation_id == id && matches!(caller, Caller::Customer { .. }) =>
            {
                // A socket broadcast carries no tab id: it counts as the default tab, and the
                // fan-out carries the conversation's aggregate.
                let now = now_ms();
                let state = match self.store.report_presence(id, DEFAULT_TAB, p.state, now).await {
                    Ok(Some(state)) => state,
                    Ok(None) => {
                        self.store.conversation(id).await.ok().flatten().map_or(p.state, |c| c.presence)
                    }
                    Err(e) => return Err(e.to_string()),
                };
                Ok(Event::PresenceUpdated(PresenceUpdated {
                    conversation_id: id.clone(),
                    state,
                    at: Timestamp(now),
                }))
            }
            _ => Err("this event may not be broadcast by this client".into()),
        }
    }
}

fn caller_author_id(caller: &Caller) -> String {
    caller.author().id
}
