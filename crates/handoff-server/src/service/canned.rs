//! Canned responses: a project's shared replies, managed by its agents and its secret key.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

use handoff_protocol::api::{CannedResponse, CannedResponseRequest, CannedResponseUpdate};
use handoff_protocol::ids::CannedResponseId;

/// The project whose canned responses the caller manages: an agent's, or the secret key's.
fn manager(caller: &Caller) -> AppResult<&ProjectId> {
    match caller {
        Caller::Agent(a) => Ok(&a.project_id),
        Caller::Server(p) => Ok(&p.id),
        Caller::Customer { .. } => {
            Err(AppError::forbidden("only agents and the project's secret key manage canned responses"))
        }
    }
}

fn validate(shortcut: Option<&str>, content: Option<&str>) -> AppResult<()> {
    api::validate_canned(shortcut, content).map_err(AppError::validation)
}

fn taken(shortcut: &str) -> AppError {
    AppError::new(
        ErrorCode::ShortcutTaken,
        format!("the project has a canned response with the shortcut {shortcut:?} already"),
    )
}

/// A store error, with a unique violation as 409 `shortcut_taken`.
fn store_error(e: StoreError, shortcut: &str) -> AppError {
    match e {
        StoreError::Duplicate => taken(shortcut),
        e => AppError::from(e),
    }
}

impl Service {
    /// `GET /api/canned_responses?q=`: the project's canned responses by shortcut, at most
    /// [`api::CANNED_RESPONSES_MAX`]; with `q`, those whose shortcut starts with it or whose
    /// content contains it (without regard to case), the shortcut matches first.
    ///
    /// # Errors
    /// 403 for customers.
    pub async fn canned_responses(&self, caller: &Caller, q: Option<&str>) -> AppResult<Vec<CannedResponse>> {
        let project = manager(caller)?;
        let q = q.map(str::trim).filter(|q| !q.is_empty());
        // No shortcut or content holds a control character but tab and line breaks, and
        // PostgreSQL takes no NUL in a text: such a search finds nothing, without asking.
        if q.is_some_and(|q| api::has_control_chars(q, true)) {
            return Ok(Vec::new());
        }
        self.store.canned_responses(project, q, api::CANNED_RESPONSES_MAX).await.map_err(AppError::from)
    }

    /// `POST /api/canned_responses`.
    ///
    /// # Errors
    /// 403 for customers; 422 for a bad shortcut or content; 409 `shortcut_taken`.
    pub async fn create_canned(
        &self,
        caller: &Caller,
        req: CannedResponseRequest,
    ) -> AppResult<CannedResponse> {
        let project = manager(caller)?;
        validate(Some(&req.shortcut), Some(&req.content))?;
        let now = Timestamp(now_ms());
        let c = CannedResponse {
            id: CannedResponseId::new(crypto::random_id("cr_")),
            shortcut: req.shortcut,
            content: req.content,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_canned(project, &c).await.map_err(|e| store_error(e, &c.shortcut))?;
        Ok(c)
    }

    /// `PATCH /api/canned_responses/{id}`: only the fields given change.
    ///
    /// # Errors
    /// 403 for customers; 404 for another project's or none; 422; 409 `shortcut_taken`.
    pub async fn update_canned(
        &self,
        caller: &Caller,
        id: &CannedResponseId,
        req: CannedResponseUpdate,
    ) -> AppResult<CannedResponse> {
        let project = manager(caller)?;
        validate(req.shortcut.as_deref(), req.content.as_deref())?;
        let not_found = || AppError::not_found("canned response");
        let mut c =
            self.store.canned_response(project, id).await.map_err(AppError::from)?.ok_or_else(not_found)?;
        if req.shortcut.is_none() && req.content.is_none() {
            return Ok(c);
        }
        if let Some(shortcut) = req.shortcut {
            c.shortcut = shortcut;
        }
        if let Some(content) = req.content {
            c.content = content;
        }
        c.updated_at = Timestamp(now_ms().max(c.updated_at.0));
        if self.store.update_canned(project, &c).await.map_err(|e| store_error(e, &c.shortcut))? {
            Ok(c)
        } else {
            // Deleted meanwhile.
            Err(not_found())
        }
    }

    /// `DELETE /api/canned_responses/{id}`.
    ///
    /// # Errors
    /// 403 for customers; 404 for another project's or none.
    pub async fn delete_canned(&self, caller: &Caller, id: &CannedResponseId) -> AppResult<()> {
        let project = manager(caller)?;
        if self.store.delete_canned(project, id).await.map_err(AppError::from)? {
            Ok(())
        } else {
            Err(AppError::not_found("canned response"))
        }
    }
}
