//! Unread counts: one rule for the server's inbox (`GET /api/inbox`, `unread`) and every live
//! client (the agent console counts on the fly from `message:new`).
//!
//! A message is unread for a reader when its `seq` is after the reader's read marker and
//! [`counts_as_unread`] holds for its author's kind:
//!
//! | author \ reader | agent | customer |
//! |---|---|---|
//! | customer | yes | no (their own) |
//! | agent | no | yes |
//! | bot | no | yes |
//! | system | no | no |
//!
//! An agent counts the **customer's** messages only: those are what asks the agent for an answer.
//! The bot's messages are its side of the conversation, and another agent's messages are a
//! colleague's replies to the customer (before a transfer, or a supervisor's); both are read as
//! context when the conversation is opened, not counted as work. A customer counts the answers
//! they get, from agents and the bot. System lines (status changes) count for nobody. Any other
//! reader (a bot, the system, a kind this version does not know) counts nothing.
//!
//! ```
//! use handoff_protocol::event::AuthorKind::{Agent, Bot, Customer};
//! use handoff_protocol::unread::counts_as_unread;
//!
//! assert!(counts_as_unread(Customer, Agent));
//! assert!(!counts_as_unread(Bot, Agent));
//! assert!(!counts_as_unread(Agent, Agent));
//! assert!(counts_as_unread(Bot, Customer));
//! ```

use crate::event::AuthorKind;

/// Every author kind a message can have, for callers that turn the rule into a list (the
/// server's SQL filter).
pub const AUTHOR_KINDS: [AuthorKind; 4] =
    [AuthorKind::Customer, AuthorKind::Agent, AuthorKind::Bot, AuthorKind::System];

/// Whether a message by `author` counts as unread for `reader` (when it is after the reader's
/// read marker). See the module's table.
pub const fn counts_as_unread(author: AuthorKind, reader: AuthorKind) -> bool {
    match reader {
        AuthorKind::Agent => matches!(author, AuthorKind::Customer),
        AuthorKind::Customer => matches!(author, AuthorKind::Agent | AuthorKind::Bot),
        _ => false,
    }
}

/// The author kinds whose messages count as unread for `reader`.
pub fn unread_authors(reader: AuthorKind) -> impl Iterator<Item = AuthorKind> {
    AUTHOR_KINDS.into_iter().filter(move |a| counts_as_unread(*a, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthorKind::{Agent, Bot, Customer, System, Unknown};

    #[test]
    fn the_table() {
        let table = [
            (Customer, Agent, true),
            (Agent, Agent, false),
            (Bot, Agent, false),
            (System, Agent, false),
            (Unknown, Agent, false),
            (Customer, Customer, false),
            (Agent, Customer, true),
            (Bot, Customer, true),
            (System, Customer, false),
            (Customer, Bot, false),
            (Customer, System, false),
        ];
        for (author, reader, expected) in table {
            assert_eq!(counts_as_unread(author, reader), expected, "{author:?} read by {reader:?}");
        }
        assert_eq!(unread_authors(Agent).collect::<Vec<_>>(), [Customer]);
        assert_eq!(unread_authors(Customer).collect::<Vec<_>>(), [Agent, Bot]);
    }

    #[test]
    fn wire_names_round_trip() {
        for k in AUTHOR_KINDS {
            assert_eq!(AuthorKind::from_name(k.as_str()), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(AuthorKind::from_name("robot"), Unknown);
    }

    #[test]
    fn a_mixed_sequence_after_a_marker() {
        // seq, author: what an agent's inbox shows after reading up to seq 2.
        let messages = [(1, Customer), (2, Bot), (3, Customer), (4, Bot), (5, Agent), (6, Customer)];
        let marker = 2;
        let unread = messages.iter().filter(|(s, a)| *s > marker && counts_as_unread(*a, Agent)).count();
        assert_eq!(unread, 2);
    }
}
