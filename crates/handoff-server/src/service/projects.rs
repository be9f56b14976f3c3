//! Projects and agents as the CLI and the secret key manage them.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

impl Service {
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
            retention_days: None,
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
}
