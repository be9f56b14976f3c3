//! `offline_message:new`: the offline form was submitted.

use serde::{Deserialize, Serialize};

use crate::ids::{OfflineMessageId, Timestamp};

/// A message left through the offline form, for agent follow-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfflineMessage {
    /// Server-assigned id.
    pub id: OfflineMessageId,
    /// The visitor's name.
    pub name: String,
    /// The visitor's email address (validated by the server).
    pub email: String,
    /// What they wrote.
    pub message: String,
    /// When it was stored.
    pub created_at: Timestamp,
    /// When an agent marked it handled; absent while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_at: Option<Timestamp>,
}

/// `offline_message:new`, on the project queue channel (agents only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfflineMessageNew {
    /// The stored message.
    pub offline_message: OfflineMessage,
}
