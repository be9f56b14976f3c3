//! `conversation:status_changed`, `conversation:assigned`, `conversation:transferred`,
//! `conversation:resolved`, and the conversation status.

use serde::{Deserialize, Serialize};

use super::agent::AgentSummary;
use super::message::Author;
use crate::ids::{ConversationId, Seq};

/// Where a conversation stands (see [`crate::state`] for the allowed transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConversationStatus {
    /// The AI chatbot answers.
    Bot,
    /// Waiting in the project queue for a human.
    Queued,
    /// A human agent has it.
    Assigned,
    /// Closed; writing again reopens it with the bot.
    Resolved,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

impl ConversationStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Bot => "bot",
            ConversationStatus::Queued => "queued",
            ConversationStatus::Assigned => "assigned",
            ConversationStatus::Resolved => "resolved",
            ConversationStatus::Unknown => "unknown",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bot" => Some(ConversationStatus::Bot),
            "queued" => Some(ConversationStatus::Queued),
            "assigned" => Some(ConversationStatus::Assigned),
            "resolved" => Some(ConversationStatus::Resolved),
            _ => None,
        }
    }
}

/// `conversation:status_changed`. Sent on the conversation and project queue channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusChanged {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Event counter.
    pub seq: Seq,
    /// The new status.
    pub status: ConversationStatus,
    /// The status before.
    pub previous: ConversationStatus,
}

/// `conversation:assigned`: an agent now has the conversation (routing, claim, transfer or
/// decline). Sent on the conversation, `agent:{id}` and project queue channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationAssigned {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Event counter.
    pub seq: Seq,
    /// The agent who has it now.
    pub agent: AgentSummary,
}

/// Where a transfer sends a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransferTarget {
    /// Back to the project queue.
    Queue,
    /// To a named agent.
    Agent(AgentSummary),
}

/// `conversation:transferred`. Sent on the conversation, `agent:{from}`, `agent:{to}` and
/// project queue channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationTransferred {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Event counter.
    pub seq: Seq,
    /// The agent who had it.
    pub from_agent: AgentSummary,
    /// The queue or the agent who has it now.
    pub to: TransferTarget,
    /// A hand-over note. The Handoff server never fills it in: this event also reaches the
    /// customer, so the note of `POST .../transfer` becomes an internal note (`note:new`, agents
    /// only). Kept for peers that send it between agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `conversation:resolved`. Sent on the conversation, project queue and `agent:{id}` channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationResolved {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Event counter.
    pub seq: Seq,
    /// Who resolved it (usually the agent).
    pub resolved_by: Author,
}

// The schema lists the values servers send and accept, without the catch-all `unknown`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ConversationStatus {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::string_enum(
            "Where a conversation stands.",
            &[
                ConversationStatus::Bot.as_str(),
                ConversationStatus::Queued.as_str(),
                ConversationStatus::Assigned.as_str(),
                ConversationStatus::Resolved.as_str(),
            ],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ConversationStatus {}

/// The lowest satisfaction rating.
pub const MIN_RATING: u8 = 1;
/// The highest satisfaction rating.
pub const MAX_RATING: u8 = 5;

/// `conversation:rated`: the customer rated a resolved conversation (CSAT, 1 to 5, once per
/// conversation). Persisted; sent on the conversation channel and the rated agent's
/// `agent:{id}` channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationRated {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Event counter.
    pub seq: Seq,
    /// 1 (bad) to 5 (great).
    pub rating: u8,
    /// The customer's words, when they wrote some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
