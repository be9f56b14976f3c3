//! Typed identifiers.
//!
//! Every id is an opaque string on the wire (the server uses prefixed random ids such as
//! `conv_3Jf9...`; a Supabase project may use UUIDs). The newtypes keep a conversation id from
//! being passed where an agent id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        // 1 to 128 letters, digits, `_`, `-`, `.` or `:` (`api::is_valid_id`), the server's rule.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::id(concat!("A ", stringify!($name), ": 1 to 128 letters, digits, `_`, `-`, `.` or `:`."))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl $name {
            /// Wraps a string as this id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as it travels on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the inner string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0).finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A project (one website or app with its own widget, agents and queue).
    ProjectId
);
string_id!(
    /// A conversation between one visitor and the bot, the queue or an agent.
    ConversationId
);
string_id!(
    /// A human agent.
    AgentId
);
string_id!(
    /// A website visitor (a customer), created at widget session start.
    VisitorId
);
string_id!(
    /// A bot identity (the bot backend of a project).
    BotId
);
string_id!(
    /// A persisted chat message.
    MessageId
);
string_id!(
    /// An internal note, visible to agents only.
    NoteId
);
string_id!(
    /// A message left through the offline form.
    OfflineMessageId
);
string_id!(
    /// A canned response: a project's shared reply that agents insert by its shortcut.
    CannedResponseId
);
string_id!(
    /// A client-chosen id for an outgoing message, so that a retried send never creates a
    /// duplicate: the server answers a replayed `client_msg_id` with the message it already stored.
    ClientMsgId
);

/// Per-conversation event counter, assigned by the store when an event is persisted.
///
/// The first persisted event of a conversation has `Seq(1)`; `Seq(0)` means "nothing applied
/// yet" and is what a new client passes as `after`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Seq {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::seq("A conversation's event counter, 0 to 2^63 - 1.")
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Seq {}

impl Seq {
    /// The value before any event: `after=0` asks for the whole history.
    pub const ZERO: Seq = Seq(0);

    /// The next sequence number.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Milliseconds since the Unix epoch (UTC). All wire timestamps use this unit, so that
/// JavaScript reads them with `new Date(ms)` and Rust needs no date library.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

/// `n` in decimal, what `n.to_string()` gives, without `core::fmt`: the browser builds (SDK and
/// widget) leave the formatting machinery out, and write refs, statuses and counters with this.
pub fn decimal(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(b'0' + u8::try_from(n % 10).unwrap_or(0));
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_transparent_strings() {
        let id = ConversationId::new("conv_1");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""conv_1""#);
        let back: ConversationId = serde_json::from_str(r#""conv_1""#).unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string(), "conv_1");
        assert_eq!(format!("{id:?}"), r#"ConversationId("conv_1")"#);
    }

    #[test]
    fn seq_starts_at_zero_and_counts_up() {
        assert_eq!(Seq::default(), Seq::ZERO);
        assert_eq!(Seq::ZERO.next(), Seq(1));
        assert_eq!(serde_json::to_string(&Seq(7)).unwrap(), "7");
    }

    #[test]
    fn decimal_is_to_string() {
        for n in [0, 7, 10, 409, 65_535, u64::MAX] {
            assert_eq!(super::decimal(n), n.to_string());
        }
    }
}
