//! `queue:position_updated` and `queue:updated`. Both are derived from the store, never
//! persisted: a client that missed one simply waits for the next or asks `GET /api/queue`.

use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, Timestamp};

/// `queue:position_updated`: sent on a waiting conversation's channel whenever the queue changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuePositionUpdated {
    /// The waiting conversation.
    pub conversation_id: ConversationId,
    /// 1-based place in the queue.
    pub position: u32,
    /// How many conversations wait in all.
    pub queue_length: u32,
}

/// One waiting conversation, as an agent's inbox shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueEntry {
    /// The waiting conversation.
    pub conversation_id: ConversationId,
    /// 1-based place in the queue.
    pub position: u32,
    /// When it joined the queue.
    pub waiting_since: Timestamp,
    /// The customer's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    /// The last customer message, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// `queue:updated`: the whole waiting list, sent on the project queue channel on every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueUpdated {
    /// The waiting conversations, head first.
    pub queue: Vec<QueueEntry>,
}
