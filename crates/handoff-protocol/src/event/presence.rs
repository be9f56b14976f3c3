//! `presence:updated`: the customer's presence. Ephemeral.

use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, Timestamp};

/// A customer's presence as agents see it (green, yellow and grey dots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PresenceState {
    /// The page is visible and the customer active.
    Online,
    /// No input for 2 minutes.
    Idle,
    /// The page closed, or heartbeats stopped for 75 s.
    Offline,
    /// A state this version does not know.
    #[serde(other)]
    Unknown,
}

impl PresenceState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceState::Online => "online",
            PresenceState::Idle => "idle",
            PresenceState::Offline => "offline",
            PresenceState::Unknown => "unknown",
        }
    }
}

/// `presence:updated`, on the conversation channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceUpdated {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The customer's state.
    pub state: PresenceState,
    /// When the server saw the change.
    pub at: Timestamp,
}

// The schema lists the values servers send and accept, without the catch-all `unknown`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for PresenceState {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::string_enum(
            "A customer's presence.",
            &[PresenceState::Online.as_str(), PresenceState::Idle.as_str(), PresenceState::Offline.as_str()],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for PresenceState {}
