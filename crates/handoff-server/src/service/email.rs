//! Email: a conversation's transcript on the visitor's request, and offline messages to the
//! project's agents when nobody is online (see [`crate::mail`]).

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

/// Events of one conversation put in a transcript, at most.
const TRANSCRIPT_EVENTS_MAX: usize = 20_000;

impl Service {
    fn mailer(&self) -> AppResult<&Arc<crate::mail::Mailer>> {
        self.mailer.as_ref().ok_or_else(|| {
            AppError::new(ErrorCode::EmailDisabled, "this server sends no email (no SMTP_URL is configured)")
        })
    }

    /// `POST /api/conversations/{id}/transcript`: mails the conversation's transcript to the
    /// address given, else to the one the visitor is known by (their verified identity, their
    /// offline form). At most [`api::TRANSCRIPTS_PER_WINDOW`] per conversation and per visitor
    /// an hour, counted in the database (so across nodes); sent in the background.
    ///
    /// # Errors
    /// 403 `email_disabled`, and 403 for anyone but the conversation's customer; 404; 422 for a bad
    /// address or none known; 429 over the limit.
    pub async fn email_transcript(
        &self,
        caller: &Caller,
        id: &ConversationId,
        req: api::TranscriptRequest,
    ) -> AppResult<api::TranscriptAccepted> {
        let mailer = self.mailer()?.clone();
        let Caller::Customer { visitor, project } = caller else {
            return Err(AppError::forbidden("only the conversation's customer asks for its transcript"));
        };
        let given = req.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
        if given.is_some_and(|e| !api::is_valid_email(e)) {
            return Err(AppError::validation("email is not a valid address"));
        }
        self.visible(caller, id).await?;
        let email = match given {
            Some(e) => e.to_owned(),
            None => self
                .store
                .visitor_email(&visitor.id)
                .await
                .map_err(AppError::from)?
                .filter(|e| api::is_valid_email(e))
                .ok_or_else(|| AppError::validation("no email address is known for you: send `email`"))?,
        };
        let now = now_ms();
        let since = now.saturating_sub(api::TRANSCRIPT_WINDOW_MS);
        let recorded = self
            .store
            .record_transcript(id, &visitor.id, &email, now, since, api::TRANSCRIPTS_PER_WINDOW)
            .await
            .map_err(AppError::from)?;
        if !recorded {
            return Err(AppError::new(
                ErrorCode::RateLimited,
                "at most 3 transcripts an hour per conversation and per visitor: try again later",
            )
            .retry_after(api::TRANSCRIPT_WINDOW_MS / 1000));
        }
        let mut events = Vec::new();
        let mut after = Seq::ZERO;
        while events.len() < TRANSCRIPT_EVENTS_MAX {
            let page =
                self.store.events_after(id, after, api::EVENTS_PAGE_MAX).await.map_err(AppError::from)?;
            let Some(last) = page.last().and_then(Event::seq) else { break };
            after = last;
            let full = page.len() == api::EVENTS_PAGE_MAX as usize;
            events.extend(page);
            if !full {
                break;
            }
        }
        let body = crate::mail::transcript(&project.theme.title, id.as_str(), &events, now);
        let subject = ["Your conversation with ", project.theme.title.as_str()].concat();
        mailer.send_in_background("transcript", vec![email.clone()], None, subject, body);
        Ok(api::TranscriptAccepted { email })
    }

    /// Mails an offline message to the project's agents (not the disabled ones) when none of
    /// them is online; in the background.
    pub(super) async fn mail_offline_message(&self, project: &ProjectId, m: &OfflineMessage) {
        let Some(mailer) = self.mailer.clone() else { return };
        let (agents, project_row) =
            match (self.store.agents(project).await, self.store.project(project).await) {
                (Ok(a), Ok(Some(p))) => (a, p),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot read agents to mail an offline message");
                    return;
                }
                (_, Ok(None)) => return,
            };
        if agents.iter().any(|a| !a.disabled && a.status == AgentStatus::Online) {
            return; // someone is there: the console shows it live
        }
        let to: Vec<String> = agents.iter().filter(|a| !a.disabled).map(|a| a.email.clone()).collect();
        if to.is_empty() {
            return;
        }
        let (subject, body) = crate::mail::offline_message(&project_row.name, m);
        mailer.send_in_background("offline message", to, Some(m.email.clone()), subject, body);
    }
}
