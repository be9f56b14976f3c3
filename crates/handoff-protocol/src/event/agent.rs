//! `agent:claimed`, `agent:status_changed` and the agent model.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ConversationId, Seq};

/// An agent as shown to others: id and display name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentSummary {
    /// The agent's id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
}

/// An agent's availability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentStatus {
    /// Available: receives new conversations.
    Online,
    /// Signed in but not taking new conversations.
    Away,
    /// Not available.
    Offline,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

impl AgentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Away => "away",
            AgentStatus::Offline => "offline",
            AgentStatus::Unknown => "unknown",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(AgentStatus::Online),
            "away" => Some(AgentStatus::Away),
            "offline" => Some(AgentStatus::Offline),
            _ => None,
        }
    }
}

/// `agent:claimed`: an agent took a conversation from the queue. Sent on the project queue
/// and the conversation channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentClaimed {
    /// The claimed conversation.
    pub conversation_id: ConversationId,
    /// Event counter.
    pub seq: Seq,
    /// Who claimed it.
    pub agent: AgentSummary,
}

/// `agent:status_changed`: an agent went online, away or offline. Sent on the project queue
/// channel. Not persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStatusChanged {
    /// The agent.
    pub agent_id: AgentId,
    /// The new status.
    pub status: AgentStatus,
}

// The schema lists the values servers send and accept, without the catch-all `unknown`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for AgentStatus {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::string_enum(
            "An agent's availability.",
            &[AgentStatus::Online.as_str(), AgentStatus::Away.as_str(), AgentStatus::Offline.as_str()],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for AgentStatus {}
