//! `message:new`, `message:read` and the message model.

use serde::{Deserialize, Serialize};

use crate::ids::{ClientMsgId, ConversationId, MessageId, Seq, Timestamp};

/// Who wrote a message, typed, or resolved a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthorKind {
    /// The website visitor.
    Customer,
    /// A human agent.
    Agent,
    /// The project's AI chatbot.
    Bot,
    /// The system itself (for example "Ann joined the conversation").
    System,
    /// A kind this version does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl AuthorKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorKind::Customer => "customer",
            AuthorKind::Agent => "agent",
            AuthorKind::Bot => "bot",
            AuthorKind::System => "system",
            AuthorKind::Unknown => "unknown",
        }
    }

    /// The kind with this wire name ([`AuthorKind::Unknown`] for any other).
    pub fn from_name(name: &str) -> AuthorKind {
        [AuthorKind::Customer, AuthorKind::Agent, AuthorKind::Bot, AuthorKind::System]
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(AuthorKind::Unknown)
    }
}

/// The author of a message or the actor of a typing indicator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Author {
    /// Customer, agent, bot or system.
    pub kind: AuthorKind,
    /// The id of the visitor, agent or bot (`"system"` for the system).
    pub id: String,
    /// Display name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Author {
    /// The system author.
    pub fn system() -> Self {
        Author { kind: AuthorKind::System, id: "system".to_owned(), name: None }
    }
}

/// A persisted chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    /// Server-assigned id.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// The conversation event counter at which it was stored.
    pub seq: Seq,
    /// Who wrote it.
    pub author: Author,
    /// Plain text (clients render it as text, never as HTML).
    pub body: String,
    /// The sender's idempotency key, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<ClientMsgId>,
    /// When the server stored it.
    pub created_at: Timestamp,
}

/// `message:new`: a message was stored. Sent on the conversation channel and, as an inbox
/// preview, on the project queue channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageNew {
    /// The stored message.
    pub message: Message,
}

// The schema lists the values servers send and accept, without the catch-all `unknown`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for AuthorKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::string_enum(
            "Who wrote a message.",
            &[
                AuthorKind::Customer.as_str(),
                AuthorKind::Agent.as_str(),
                AuthorKind::Bot.as_str(),
                AuthorKind::System.as_str(),
            ],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for AuthorKind {}

/// `message:read`: an agent's read marker moved, so the customer sees their messages up to `seq`
/// were read. Not persisted (the current value is the conversation's `agent_read_seq`); sent on
/// the conversation channel only when the conversation's highest agent read marker grows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageRead {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Everything up to this event counter is read (never lower than an earlier receipt's).
    pub seq: Seq,
    /// Who read it (an agent).
    pub reader: Author,
    /// When.
    pub at: Timestamp,
}
