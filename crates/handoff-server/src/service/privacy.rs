//! Privacy duties: a visitor's data export and erasure (secret key: a backend or DPO
//! operation), and the per-project retention period with its background deletion.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

use handoff_protocol::api::{
    Erasure, ExportedConversation, ExportedPresence, ExportedVisitor, VisitorExport, MAX_RETENTION_DAYS,
};
use handoff_protocol::event::ConversationDeleted;

use crate::store::Erased;

/// Conversations the retention job deletes in one transaction (it goes on until none is left).
pub const RETENTION_BATCH: u32 = 500;

/// The project of a secret-key caller; 403 for agents and customers.
fn data_controller(caller: &Caller) -> AppResult<&ProjectId> {
    match caller {
        Caller::Server(p) => Ok(&p.id),
        _ => Err(AppError::forbidden("only the project's secret key exports or erases a visitor's data")),
    }
}

impl Service {
    /// `GET /api/visitors/{id}/export`: everything stored about a visitor of the caller's
    /// project.
    ///
    /// # Errors
    /// 403 for agents and customers; 404 for another project's visitor or none.
    pub async fn export_visitor(&self, caller: &Caller, id: &VisitorId) -> AppResult<VisitorExport> {
        let project = data_controller(caller)?;
        let record = self
            .store
            .visitor_record(id)
            .await
            .map_err(AppError::from)?
            .filter(|r| &r.visitor.project_id == project)
            .ok_or_else(|| AppError::not_found("visitor"))?;
        let mut conversations = Vec::new();
        for c in self.store.visitor_conversations(id).await.map_err(AppError::from)? {
            let mut events = Vec::new();
            let mut after = Seq::ZERO;
            loop {
                let page = self
                    .store
                    .events_after(&c.id, after, api::EVENTS_PAGE_MAX)
                    .await
                    .map_err(AppError::from)?;
                let last = page.last().and_then(Event::seq);
                let full = page.len() == api::EVENTS_PAGE_MAX as usize;
                events.extend(page);
                match last {
                    Some(seq) if full && seq > after => after = seq,
                    _ => break,
                }
            }
            let notes = self.store.notes(&c.id).await.map_err(AppError::from)?;
            let presence = self
                .store
                .presence_tabs(&c.id)
                .await
                .map_err(AppError::from)?
                .into_iter()
                .map(|t| ExportedPresence {
                    tab_id: t.tab_id,
                    state: t.state,
                    last_heartbeat: Timestamp(t.last_heartbeat),
                })
                .collect();
            conversations.push(ExportedConversation {
                conversation: self.conversation_dto(&c).await?,
                events,
                notes,
                presence,
            });
        }
        let offline_messages = match record.visitor.email.as_deref().filter(|e| !e.is_empty()) {
            Some(email) => {
                self.store.offline_messages_by_email(project, email).await.map_err(AppError::from)?
            }
            None => Vec::new(),
        };
        let v = record.visitor;
        Ok(VisitorExport {
            exported_at: Timestamp(now_ms()),
            visitor: ExportedVisitor {
                id: v.id,
                project_id: v.project_id,
                name: v.name,
                email: v.email,
                user_id: record.user_id,
                verified: v.verified,
                created_at: Timestamp(record.created_at),
                last_seen: record.last_seen.map(Timestamp),
            },
            conversations,
            offline_messages,
        })
    }

    /// `DELETE /api/visitors/{id}`: erases a visitor of the caller's project and everything of
    /// them (see [`Store::erase_visitor`]); their token stops working. Agents watching see the
    /// conversations go (`conversation:deleted`, and a new `queue:updated`).
    ///
    /// # Errors
    /// 403 for agents and customers; 404 for another project's visitor or none.
    pub async fn erase_visitor(&self, caller: &Caller, id: &VisitorId) -> AppResult<Erasure> {
        let project = data_controller(caller)?;
        let record = self.store.visitor_record(id).await.map_err(AppError::from)?;
        if record.is_none_or(|r| &r.visitor.project_id != project) {
            return Err(AppError::not_found("visitor"));
        }
        let erased = self
            .store
            .erase_visitor(id)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("visitor"))?;
        tracing::info!(visitor = %id, conversations = erased.conversations.len(), "visitor erased");
        // Their sockets are cut, on every node, like a revoked agent's.
        if let Some(hash) = &erased.token_hash {
            self.hub.revoke_token(hash);
        }
        self.announce_deleted(&erased).await;
        Ok(Erasure {
            visitor_id: id.clone(),
            conversations: u32::try_from(erased.conversations.len()).unwrap_or(u32::MAX),
            messages: erased.messages,
            offline_messages: erased.offline_messages,
        })
    }

    /// Deletes the resolved conversations past their project's retention period at `now`
    /// (batch after batch); answers how many. Run by the background jobs' lease holder.
    pub async fn expire_retention(&self, now: u64) -> usize {
        let mut total = 0;
        loop {
            match self.store.delete_expired_conversations(now, RETENTION_BATCH).await {
                Ok(erased) => {
                    let n = erased.conversations.len();
                    total += n;
                    self.announce_deleted(&erased).await;
                    if n < RETENTION_BATCH as usize {
                        return total;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete conversations past retention");
                    return total;
                }
            }
        }
    }

    /// Tells watchers that conversations are gone: `conversation:deleted` on their channels
    /// (and the assignee's), and the queue again where a queued one went.
    async fn announce_deleted(&self, erased: &Erased) {
        let mut queues: Vec<&ProjectId> = Vec::new();
        for (id, project, agent, status) in &erased.conversations {
            let event = Event::ConversationDeleted(ConversationDeleted { conversation_id: id.clone() });
            let agents: Vec<&AgentId> = agent.iter().collect();
            self.publish(project, &event, &agents);
            if *status == ConversationStatus::Queued && !queues.contains(&project) {
                queues.push(project);
            }
        }
        for project in queues {
            self.queue_broadcasts.request(project).await;
        }
    }

    /// `PUT /api/project/retention`, and the CLI: sets or removes the project's retention
    /// period.
    ///
    /// # Errors
    /// 403 for agents and customers (REST); 422 outside 1 to [`MAX_RETENTION_DAYS`].
    pub async fn set_retention(&self, caller: &Caller, days: Option<u32>) -> AppResult<Option<u32>> {
        let project = data_controller(caller)?.clone();
        self.set_retention_of(&project, days).await
    }

    /// Sets or removes a project's retention period (the CLI, without a caller).
    ///
    /// # Errors
    /// 404 for no such project; 422 outside 1 to [`MAX_RETENTION_DAYS`].
    pub async fn set_retention_of(&self, project: &ProjectId, days: Option<u32>) -> AppResult<Option<u32>> {
        if days.is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d)) {
            return Err(AppError::validation(format!(
                "retention_days must be 1 to {MAX_RETENTION_DAYS}, or null"
            )));
        }
        if self.store.project(project).await.map_err(AppError::from)?.is_none() {
            return Err(AppError::not_found("project"));
        }
        self.store.set_retention_days(project, days).await.map_err(AppError::from)?;
        Ok(days)
    }
}
