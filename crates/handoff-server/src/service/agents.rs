//! Agents: sign-in, tokens, status, liveness, capacity, inbox and queue.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

impl Service {
    /// An agent by id, or 404.
    async fn agent_or_404(&self, id: &AgentId) -> AppResult<AgentRow> {
        self.store.agent(id).await.map_err(AppError::from)?.ok_or_else(|| AppError::not_found("agent"))
    }

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
    pub(super) async fn agent_self_dto(&self, agent: &AgentRow) -> AppResult<api::Agent> {
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
        self.agent_or_404(id).await?;
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
        let agent = self.agent_or_404(id).await?;
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
        if disabled {
            self.requeue_conversations_of(&agent).await;
        }
        Ok(())
    }

    /// Gives a disabled agent's open conversations back to the queue (as their transfer to
    /// it, so customers and agents see it happen), from where free agents get them.
    async fn requeue_conversations_of(&self, agent: &AgentRow) {
        let held = match self.store.inbox(&agent.project_id, &agent.id).await {
            Ok(rows) => rows,
            Err(e) => return tracing::error!(error = %e, "cannot list a disabled agent's conversations"),
        };
        let me = Caller::Agent(agent.clone());
        for c in held.iter().filter(|c| c.agent_id.as_ref() == Some(&agent.id)) {
            let back = api::TransferRequest { to: "queue".into(), note: None };
            if let Err(e) = self.transfer(&me, &c.id, back).await {
                tracing::warn!(error = %e, conversation = %c.id, "cannot requeue a disabled agent's conversation");
            }
        }
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
        let agent = self.agent_or_404(id).await?;
        self.store.set_agent_capacity(id, capacity).await.map_err(AppError::from)?;
        if capacity > agent.capacity && agent.status == AgentStatus::Online {
            self.drain_queue(&agent.project_id, None).await;
        }
        self.agent_or_404(id).await
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
    pub(super) fn revoke_sockets(&self, hashes: &[String]) {
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
}
