//! The offline form and the agents' offline inbox.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

impl Service {
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
        let visitor = match caller {
            Caller::Customer { visitor, .. } => Some(&visitor.id),
            _ => None,
        };
        self.store.insert_offline(project, &m, visitor).await.map_err(AppError::from)?;
        self.publish(
            project,
            &Event::OfflineMessageNew(OfflineMessageNew { offline_message: m.clone() }),
            &[],
        );
        self.mail_offline_message(project, &m).await;
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
