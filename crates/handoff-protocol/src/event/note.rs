//! `note:new`: internal notes, on the agent-only `conversation:{id}:agents` channel.

use serde::{Deserialize, Serialize};

use super::agent::AgentSummary;
use crate::ids::{ConversationId, NoteId, Timestamp};

/// An internal note. Never reaches a customer channel or endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Note {
    /// Server-assigned id.
    pub id: NoteId,
    /// The conversation it is about.
    pub conversation_id: ConversationId,
    /// The agent who wrote it.
    pub author: AgentSummary,
    /// Plain text.
    pub body: String,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// `note:new`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoteNew {
    /// The stored note.
    pub note: Note,
}
