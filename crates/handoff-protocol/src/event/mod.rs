//! The event catalog: every realtime event of Handoff, one enum, wire names exactly as in
//! DESIGN section 2.
//!
//! An [`Event`] serializes as `{"event": "<wire name>", "payload": {...}}`, which is both the
//! inner part of a Phoenix `broadcast` payload (`{"type": "broadcast", "event", "payload"}`) and
//! the item of `GET /api/conversations/{id}/events`. An event name this version does not know
//! decodes to [`Event::Unknown`] so that a newer server never breaks an older widget.

pub mod agent;
pub mod availability;
pub mod conversation;
pub mod message;
pub mod note;
pub mod offline;
pub mod presence;
pub mod queue;
pub mod typing;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use agent::{AgentClaimed, AgentStatus, AgentStatusChanged, AgentSummary};
pub use availability::AvailabilityChanged;
pub use conversation::{
    ConversationAssigned, ConversationRated, ConversationResolved, ConversationStatus,
    ConversationTransferred, StatusChanged, TransferTarget, MAX_RATING, MIN_RATING,
};
pub use message::{Author, AuthorKind, Message, MessageNew, MessageRead};
pub use note::{Note, NoteNew};
pub use offline::{OfflineMessage, OfflineMessageNew};
pub use presence::{PresenceState, PresenceUpdated};
pub use queue::{QueueEntry, QueuePositionUpdated, QueueUpdated};
pub use typing::Typing;

use crate::ids::{ConversationId, Seq};

macro_rules! catalog {
    ($( $(#[$doc:meta])* $variant:ident($payload:ty) = $wire:literal, persisted = $persisted:literal; )*) => {
        /// The name of an event, mapped to and from its wire name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventType {
            $( $(#[$doc])* $variant, )*
        }

        impl EventType {
            /// Every event type of the catalog.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The wire name, for example `"message:new"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( EventType::$variant => $wire, )*
                }
            }

            /// Whether the store persists events of this type (and gives them a `seq`).
            pub fn is_persisted(self) -> bool {
                match self {
                    $( EventType::$variant => $persisted, )*
                }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $wire => Ok(EventType::$variant), )*
                    _ => Err(UnknownEventType(s.to_owned())),
                }
            }
        }

        /// One realtime event with its typed payload.
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum Event {
            $( $(#[$doc])* $variant($payload), )*
            /// An event this version does not know; kept whole so it can be passed on.
            Unknown {
                /// Its wire name.
                event: String,
                /// Its payload, undecoded.
                payload: serde_json::Value,
            },
        }

        impl Event {
            /// The event's type; `None` for [`Event::Unknown`].
            pub fn event_type(&self) -> Option<EventType> {
                match self {
                    $( Event::$variant(_) => Some(EventType::$variant), )*
                    Event::Unknown { .. } => None,
                }
            }

            /// The wire name.
            pub fn name(&self) -> &str {
                match self {
                    $( Event::$variant(_) => $wire, )*
                    Event::Unknown { event, .. } => event,
                }
            }

            /// Decodes an event from its wire name and payload. An unknown name gives
            /// [`Event::Unknown`]; a known name with a payload of the wrong shape is an error.
            ///
            /// # Errors
            /// When the payload does not match the known event's type.
            pub fn from_parts(name: &str, payload: serde_json::Value) -> Result<Event, serde_json::Error> {
                match name {
                    $( $wire => Ok(Event::$variant(serde_json::from_value(payload)?)), )*
                    _ => Ok(Event::Unknown { event: name.to_owned(), payload }),
                }
            }

            /// The payload as a JSON value.
            ///
            /// # Errors
            /// Never for the catalog's types (they serialize infallibly); kept for the signature.
            pub fn payload_value(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $( Event::$variant(p) => serde_json::to_value(p), )*
                    Event::Unknown { payload, .. } => Ok(payload.clone()),
                }
            }

            fn serialize_payload<S: SerializeStruct>(&self, s: &mut S) -> Result<(), S::Error> {
                match self {
                    $( Event::$variant(p) => s.serialize_field("payload", p), )*
                    Event::Unknown { payload, .. } => s.serialize_field("payload", payload),
                }
            }
        }

        $(
            impl From<$payload> for Event {
                fn from(p: $payload) -> Event {
                    Event::$variant(p)
                }
            }
        )*
    };
}

catalog! {
    /// `message:new`
    MessageNew(MessageNew) = "message:new", persisted = true;
    /// `conversation:status_changed`
    StatusChanged(StatusChanged) = "conversation:status_changed", persisted = true;
    /// `conversation:assigned`
    ConversationAssigned(ConversationAssigned) = "conversation:assigned", persisted = true;
    /// `agent:claimed`
    AgentClaimed(AgentClaimed) = "agent:claimed", persisted = true;
    /// `conversation:transferred`
    ConversationTransferred(ConversationTransferred) = "conversation:transferred", persisted = true;
    /// `conversation:resolved`
    ConversationResolved(ConversationResolved) = "conversation:resolved", persisted = true;
    /// `queue:position_updated`
    QueuePositionUpdated(QueuePositionUpdated) = "queue:position_updated", persisted = false;
    /// `queue:updated`
    QueueUpdated(QueueUpdated) = "queue:updated", persisted = false;
    /// `agent:status_changed`
    AgentStatusChanged(AgentStatusChanged) = "agent:status_changed", persisted = false;
    /// `typing`
    Typing(Typing) = "typing", persisted = false;
    /// `presence:updated`
    PresenceUpdated(PresenceUpdated) = "presence:updated", persisted = false;
    /// `note:new`
    NoteNew(NoteNew) = "note:new", persisted = true;
    /// `offline_message:new`
    OfflineMessageNew(OfflineMessageNew) = "offline_message:new", persisted = true;
    /// Whether the project can take a chat now, on `project:{id}:availability`.
    AvailabilityChanged(AvailabilityChanged) = "availability:changed", persisted = false;
    /// `conversation:rated`
    ConversationRated(ConversationRated) = "conversation:rated", persisted = true;
    /// `message:read`
    MessageRead(MessageRead) = "message:read", persisted = false;
}

impl EventType {
    /// Where the payload keeps the event's conversation `seq`, for the events that have one (the
    /// same as [`Event::seq`]). Readers of the raw JSON, like the wasm client, follow these
    /// paths instead of decoding the typed payload.
    pub fn seq_path(self) -> Option<&'static [&'static str]> {
        match self {
            EventType::MessageNew => Some(&["message", "seq"]),
            EventType::StatusChanged
            | EventType::ConversationAssigned
            | EventType::AgentClaimed
            | EventType::ConversationTransferred
            | EventType::ConversationResolved
            | EventType::ConversationRated => Some(&["seq"]),
            _ => None,
        }
    }

    /// Where the payload keeps the conversation id, for events about one conversation (the
    /// same as [`Event::conversation_id`]).
    pub fn conversation_id_path(self) -> Option<&'static [&'static str]> {
        match self {
            EventType::MessageNew => Some(&["message", "conversation_id"]),
            EventType::NoteNew => Some(&["note", "conversation_id"]),
            EventType::StatusChanged
            | EventType::ConversationAssigned
            | EventType::AgentClaimed
            | EventType::ConversationTransferred
            | EventType::ConversationResolved
            | EventType::ConversationRated
            | EventType::QueuePositionUpdated
            | EventType::Typing
            | EventType::PresenceUpdated
            | EventType::MessageRead => Some(&["conversation_id"]),
            _ => None,
        }
    }

    /// Where a `message:new` keeps its message id (the buffer's dedupe key).
    pub fn message_id_path(self) -> Option<&'static [&'static str]> {
        match self {
            EventType::MessageNew => Some(&["message", "id"]),
            _ => None,
        }
    }
}

impl Event {
    /// The conversation counter of a persisted conversation event; `None` for ephemeral
    /// events and for events that are not about one conversation's history.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            Event::MessageNew(e) => Some(e.message.seq),
            Event::StatusChanged(e) => Some(e.seq),
            Event::ConversationAssigned(e) => Some(e.seq),
            Event::AgentClaimed(e) => Some(e.seq),
            Event::ConversationTransferred(e) => Some(e.seq),
            Event::ConversationResolved(e) => Some(e.seq),
            Event::ConversationRated(e) => Some(e.seq),
            _ => None,
        }
    }

    /// The conversation the event is about, when it is about one.
    pub fn conversation_id(&self) -> Option<&ConversationId> {
        match self {
            Event::MessageNew(e) => Some(&e.message.conversation_id),
            Event::StatusChanged(e) => Some(&e.conversation_id),
            Event::ConversationAssigned(e) => Some(&e.conversation_id),
            Event::AgentClaimed(e) => Some(&e.conversation_id),
            Event::ConversationTransferred(e) => Some(&e.conversation_id),
            Event::ConversationResolved(e) => Some(&e.conversation_id),
            Event::QueuePositionUpdated(e) => Some(&e.conversation_id),
            Event::Typing(e) => Some(&e.conversation_id),
            Event::PresenceUpdated(e) => Some(&e.conversation_id),
            Event::NoteNew(e) => Some(&e.note.conversation_id),
            Event::ConversationRated(e) => Some(&e.conversation_id),
            Event::MessageRead(e) => Some(&e.conversation_id),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for EventType {
    type Error = UnknownEventType;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// An event name that is not in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type `{0}`")]
pub struct UnknownEventType(pub String);

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Event", 2)?;
        s.serialize_field("event", self.name())?;
        self.serialize_payload(&mut s)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            event: String,
            #[serde(default)]
            payload: serde_json::Value,
        }
        let raw = Raw::deserialize(deserializer)?;
        Event::from_parts(&raw.event, raw.payload).map_err(de::Error::custom)
    }
}

/// On the wire an event is `{"event": "<name>", "payload": {...}}`; the payload's shape follows
/// the name (the catalog in DESIGN section 2).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Event {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some("A catalog event: its name and a payload whose shape follows the name."))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(EventType::ALL.iter().map(|t| t.as_str()))),
            )
            .required("event")
            .property("payload", ObjectBuilder::new().schema_type(Type::Object))
            .required("payload")
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Event {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_round_trips_its_wire_name() {
        assert_eq!(EventType::ALL.len(), 16);
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
            assert_eq!(EventType::try_from(t.as_str()), Ok(*t));
        }
        assert_eq!("message:old".parse::<EventType>(), Err(UnknownEventType("message:old".into())));
        assert_eq!(UnknownEventType("x".into()).to_string(), "unknown event type `x`");
    }

    #[test]
    fn persisted_flags_follow_the_catalog() {
        let persisted: Vec<_> =
            EventType::ALL.iter().filter(|t| t.is_persisted()).map(|t| t.as_str()).collect();
        assert_eq!(
            persisted,
            [
                "message:new",
                "conversation:status_changed",
                "conversation:assigned",
                "agent:claimed",
                "conversation:transferred",
                "conversation:resolved",
                "note:new",
                "offline_message:new",
                "conversation:rated"
            ]
        );
    }

    #[test]
    fn unknown_event_decodes_to_catch_all_and_re_encodes_unchanged() {
        let json = r#"{"event":"reaction:new","payload":{"emoji":"+1"}}"#;
        let ev: Event = serde_json::from_str(json).unwrap();
        assert_eq!(ev.name(), "reaction:new");
        assert_eq!(ev.event_type(), None);
        assert_eq!(serde_json::to_string(&ev).unwrap(), json);
    }

    #[test]
    fn known_event_with_bad_payload_is_an_error() {
        let err = serde_json::from_str::<Event>(r#"{"event":"typing","payload":{"x":1}}"#);
        assert!(err.is_err());
    }

    #[test]
    fn unknown_enum_values_decode_to_catch_alls() {
        let s: ConversationStatus = serde_json::from_str(r#""snoozed""#).unwrap();
        assert_eq!(s, ConversationStatus::Unknown);
        let k: AuthorKind = serde_json::from_str(r#""integration""#).unwrap();
        assert_eq!(k, AuthorKind::Unknown);
        let a: AgentStatus = serde_json::from_str(r#""busy""#).unwrap();
        assert_eq!(a, AgentStatus::Unknown);
        let p: PresenceState = serde_json::from_str(r#""dnd""#).unwrap();
        assert_eq!(p, PresenceState::Unknown);
    }
}
