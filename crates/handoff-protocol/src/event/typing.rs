//! `typing`: someone started or stopped typing. Ephemeral.

use serde::{Deserialize, Serialize};

use super::message::Author;
use crate::ids::ConversationId;

/// `typing`, on the conversation channel. A receiver clears a shown indicator 3 s after the
/// last `is_typing: true` even if the `false` never arrives (see [`crate::timing::typing`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Typing {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who types.
    pub actor: Author,
    /// Started (`true`) or stopped (`false`).
    pub is_typing: bool,
}
