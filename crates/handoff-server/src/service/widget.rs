//! The widget's session, identity, history and availability.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

impl Service {
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
                .map(|(v, _)| v)
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

    pub(super) async fn widget_config(&self, project: &Project) -> AppResult<WidgetConfig> {
        let a = self.availability(project, now_ms()).await?;
        Ok(WidgetConfig {
            agents_online: a.agents_online,
            within_business_hours: a.within_business_hours,
            show_offline_form: a.show_offline_form,
            bot: project.webhook_url.is_some(),
            identity_required: project.enforce_identity,
            email: self.mailer.is_some(),
            theme: project.theme.clone(),
        })
    }

    /// Whether `project` can take a chat at `now`: the state behind `show_offline_form`.
    pub(super) async fn availability(&self, project: &Project, now: u64) -> AppResult<AvailabilityChanged> {
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
}
