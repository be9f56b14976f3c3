#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod api;
pub mod channel;
pub mod event;
pub mod ids;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod phoenix;
pub mod routing;
pub mod state;
pub mod timing;
pub mod unread;

pub use channel::Channel;
pub use event::{Event, EventType};
pub use ids::{
    AgentId, BotId, CannedResponseId, ClientMsgId, ConversationId, MessageId, NoteId, OfflineMessageId,
    ProjectId, Seq, Timestamp, VisitorId,
};
