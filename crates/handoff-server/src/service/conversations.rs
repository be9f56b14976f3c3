//! Conversations: messages, routing (handoff, claim, transfer, decline, resolve), typing,
//! presence, read markers and notes.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

impl Service {
    pub(super) async fn conversation_dto(&self, c: &ConversationRow) -> AppResult<Conversation> {
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
            agent_read_seq: self.store.agent_read_seq(&c.id).await.map_err(AppError::from)?,
            rating: self.store.rating(&c.id).await.map_err(AppError::from)?.map(|r| {
                api::ConversationRating {
                    rating: r.rating,
                    comment: r.comment,
                    agent_id: r.agent_id,
                    created_at: Timestamp(r.created_at),
                }
            }),
            created_at: Timestamp(c.created_at),
            updated_at: Timestamp(c.updated_at),
        })
    }

    /// Loads a conversation the caller may see.
    pub(super) async fn visible(&self, caller: &Caller, id: &ConversationId) -> AppResult<ConversationRow> {
        let c = self
            .store
            .conversation(id)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        if caller.sees(&c) {
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
        let channel = Channel::Conversation(id.clone());
        loop {
            // Register before reading, so an event published between the read and the wait
            // still wakes us. The hub wakes us for an event of the conversation published on
            // any node (through Redis), not only for a write on this one.
            let waiter = self.hub.wait(&channel);
            let notified = waiter.notified();
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
    pub(super) async fn transition<F>(
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
    pub(super) async fn transition_with<F>(
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
            let queued_at = queued_at(&c, &t, now);
            let takes_slot = t.agent.is_some() && t.agent != t.previous_agent;
            let update =
                ConversationUpdate { status: t.to, agent_id: t.agent.clone(), queued_at, takes_slot };
            match self.store.append_with(id, c.last_seq, &update, &events, rows, now).await {
                // The caller publishes the events, which wakes long-polls on every node.
                Ok(()) => return Ok((c, t, events)),
                Err(StoreError::Conflict) => {}
                // The one unique row a transition writes: the conversation's rating.
                Err(StoreError::Duplicate) if rows.iter().any(|r| matches!(r, AppendRow::Rating(_))) => {
                    return Err(already_rated());
                }
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

    pub(super) fn status_event(
        c: &ConversationRow,
        t: &Transition,
        seq: &mut dyn FnMut() -> Seq,
    ) -> Option<Event> {
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
    pub(super) fn handed_to(
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
    pub(super) fn publish(&self, project: &ProjectId, event: &Event, agents: &[&AgentId]) {
        publish_on(&self.hub, project, event, agents);
    }

    /// Sends `queue:updated` to the project and `queue:position_updated` to every waiting
    /// conversation: at once when none went out in the last 250 ms, else once at the end of
    /// that window, with the queue as it is then (a burst of handoffs costs one broadcast).
    pub(super) async fn broadcast_queue(&self, project: &ProjectId) {
        self.queue_broadcasts.request(project).await;
    }

    pub(super) async fn loads(&self, project: &ProjectId) -> AppResult<(Vec<AgentRow>, Vec<AgentLoad>)> {
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
    pub(super) async fn drain_queue(
        &self,
        project: &ProjectId,
        released: Option<(&ConversationId, &AgentId)>,
    ) {
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
    pub(super) async fn assign(
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

    /// `POST /api/conversations/{id}/messages`: stored by the message writer with the messages
    /// sent meanwhile, in one transaction (group commit); answered once it is committed and
    /// published.
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
        if let Caller::Agent(a) = caller {
            let _ = self.store.touch_agent(&a.id, now_ms()).await;
        }
        let client_msg_id = req.client_msg_id.clone();
        let draft = writer::Draft {
            caller: caller.clone(),
            id: id.clone(),
            body: req.body,
            client_msg_id: req.client_msg_id,
        };
        let written = match self.writer().send(draft).await {
            Ok(w) => w,
            Err(e) => {
                // A replay of the same client_msg_id stored meanwhile (on another node) wins.
                if let Some(cid) = &client_msg_id {
                    if let Ok(Some(seq)) = self.store.message_seq_by_client_id(id, cid.as_str()).await {
                        return self.duplicate(id, seq).await;
                    }
                }
                return Err(e);
            }
        };
        let (message, before, after, project) = match written {
            writer::Written::Stored(seq) => return self.duplicate(id, seq).await,
            writer::Written::Same(message) => return Ok(SendMessageResponse { message, duplicate: true }),
            writer::Written::New { message, before, after, project, .. } => (message, before, after, project),
        };
        let is_customer = matches!(caller, Caller::Customer { .. });
        if let Caller::Customer { project, .. } = caller {
            if after == ConversationStatus::Bot {
                self.notify_bot(project, &message);
            }
        }
        if before == ConversationStatus::Queued && is_customer {
            self.broadcast_queue(&project).await; // the preview changed
        }
        Ok(SendMessageResponse { message, duplicate: false })
    }

    /// Sends a customer message of a conversation in `bot` state to the project's webhook.
    pub(super) fn notify_bot(&self, project: &Project, message: &Message) {
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

    pub(super) async fn duplicate(&self, id: &ConversationId, seq: Seq) -> AppResult<SendMessageResponse> {
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
    pub(super) async fn released(
        &self,
        project: &ProjectId,
        id: &ConversationId,
        agent: &AgentId,
        t: &Transition,
    ) {
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

    pub(super) fn typing_event(caller: &Caller, id: &ConversationId, is_typing: bool) -> Event {
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

    pub(super) fn publish_presence(
        &self,
        project: &ProjectId,
        id: &ConversationId,
        state: PresenceState,
        now: u64,
    ) {
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

    /// `POST /api/conversations/{id}/read`. When this moves the conversation's highest agent
    /// read marker, the customer gets a read receipt (`message:read`, on the conversation's
    /// channel only).
    ///
    /// # Errors
    /// 403, 404.
    pub async fn mark_read(&self, caller: &Caller, id: &ConversationId, seq: Seq) -> AppResult<()> {
        let me = caller.agent()?;
        if seq.0 > api::MAX_SEQ {
            return Err(AppError::validation("seq is larger than 9223372036854775807"));
        }
        let c = self.visible(caller, id).await?;
        let moved = self.store.mark_read(&me.id, id, seq.min(c.last_seq)).await.map_err(AppError::from)?;
        if let Some(seq) = moved {
            let receipt = MessageRead {
                conversation_id: id.clone(),
                seq,
                reader: caller.author(),
                at: Timestamp(now_ms()),
            };
            self.publish(&c.project_id, &Event::MessageRead(receipt), &[]);
        }
        Ok(())
    }

    /// `POST /api/conversations/{id}/rating`: the conversation's customer rates it, once it is
    /// resolved, once (CSAT). Stored with the agent who resolved it (else the last one who had
    /// it) and announced as `conversation:rated` to the conversation and that agent.
    ///
    /// # Errors
    /// 403 for anyone but a customer; 404 when not theirs; 422 for a rating outside 1 to 5 or a
    /// comment too long; 409 `invalid_transition` when not resolved, `already_rated` when rated.
    pub async fn rate(
        &self,
        caller: &Caller,
        id: &ConversationId,
        req: api::RatingRequest,
    ) -> AppResult<api::ConversationRating> {
        if !matches!(caller, Caller::Customer { .. }) {
            return Err(AppError::forbidden("only the conversation's customer rates it"));
        }
        let (rating, comment) =
            api::validate_rating(req.rating, req.comment.as_deref()).map_err(AppError::validation)?;
        let c = self.visible(caller, id).await?;
        if self.store.rating(id).await.map_err(AppError::from)?.is_some() {
            return Err(already_rated());
        }
        let agent_id = self.store.rated_agent(id).await.map_err(AppError::from)?;
        let row = store::RatingRow {
            conversation_id: id.clone(),
            project_id: c.project_id.clone(),
            agent_id: agent_id.clone(),
            rating,
            comment: comment.clone(),
            created_at: now_ms(),
        };
        let (_, _, events) = self
            .transition_with(
                id,
                |_| Ok(Command::Rate),
                |c, _, seq| {
                    vec![Event::ConversationRated(ConversationRated {
                        conversation_id: c.id.clone(),
                        seq: seq(),
                        rating,
                        comment: comment.clone(),
                    })]
                },
                &[AppendRow::Rating(row.clone())],
            )
            .await?;
        let agents: Vec<&AgentId> = agent_id.iter().collect();
        for e in &events {
            self.publish(&c.project_id, e, &agents);
        }
        Ok(api::ConversationRating { rating, comment, agent_id, created_at: Timestamp(row.created_at) })
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
    pub(super) fn new_note(id: &ConversationId, author: &AgentRow, body: String) -> Note {
        Note {
            id: NoteId::new(crypto::random_id("note_")),
            conversation_id: id.clone(),
            author: summary(author),
            body,
            created_at: Timestamp(now_ms()),
        }
    }

    /// Stores an internal note and announces it on the conversation's agents-only channel.
    pub(super) async fn insert_note(
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
}
