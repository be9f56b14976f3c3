//! The conversation state machine (DESIGN section 3). Pure: the server applies every state
//! change through [`ConversationState::apply`], and answers a [`TransitionError`] with
//! `409 invalid_transition`.
//!
//! ```text
//!            handoff (nobody free)            claim / assign
//!   bot ─────────────────────────▶ queued ──────────────────▶ assigned ◀─┐ transfer to agent,
//!    │                              ▲  │                      │  │  │   │ decline (someone free)
//!    │ handoff (agent free)         │  │ resolve              │  │  └───┘
//!    └──────────────────────────────┼──┼──────────────────────┘  │
//!                                   │  ▼                         │ resolve
//!                                   └─ transfer to queue,        ▼
//!   bot ◀── customer writes ─────── resolved ◀───────────────────┘
//!                                   decline (nobody free)
//! ```
//!
//! ```
//! use handoff_protocol::state::{Command, ConversationState};
//! use handoff_protocol::event::ConversationStatus;
//! use handoff_protocol::AgentId;
//!
//! let bot = ConversationState { status: ConversationStatus::Bot, agent: None };
//! let queued = bot.apply(&Command::Handoff { agent: None }).unwrap();
//! assert_eq!(queued.to, ConversationStatus::Queued);
//! let ann = AgentId::new("ann");
//! let assigned = queued.state().apply(&Command::Claim { agent: ann.clone() }).unwrap();
//! assert_eq!((assigned.to, assigned.agent), (ConversationStatus::Assigned, Some(ann)));
//! assert!(bot.apply(&Command::Resolve).is_err());
//! ```

use crate::event::ConversationStatus;
use crate::ids::AgentId;

/// Where a transfer sends a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferTo {
    /// Back to the project queue.
    Queue,
    /// To a named agent.
    Agent(AgentId),
}

/// A command on a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// The customer or the bot asks for a human: to `agent` when routing found one free,
    /// else to the queue. Allowed in `bot` only.
    Handoff {
        /// The agent routing picked, if any.
        agent: Option<AgentId>,
    },
    /// An agent takes a queued conversation.
    Claim {
        /// Who claims.
        agent: AgentId,
    },
    /// Routing gives a queued conversation to an agent who freed up.
    Assign {
        /// Who gets it.
        agent: AgentId,
    },
    /// The assigned agent passes the conversation on.
    Transfer {
        /// Must be the assigned agent.
        by: AgentId,
        /// The queue or another agent.
        to: TransferTo,
    },
    /// The assigned agent declines; routing found `next`, or nobody (back to the queue).
    Decline {
        /// Must be the assigned agent.
        by: AgentId,
        /// Another free agent, if any.
        next: Option<AgentId>,
    },
    /// Close a queued or assigned conversation.
    Resolve,
    /// The customer wrote: a resolved conversation reopens with the bot; otherwise no change.
    CustomerMessage,
    /// The customer rates the conversation: allowed in `resolved` only, changes nothing.
    Rate,
}

impl Command {
    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Handoff { .. } => "handoff",
            Command::Claim { .. } => "claim",
            Command::Assign { .. } => "assign",
            Command::Transfer { .. } => "transfer",
            Command::Decline { .. } => "decline",
            Command::Resolve => "resolve",
            Command::CustomerMessage => "customer message",
            Command::Rate => "rate",
        }
    }
}

/// Who acts on a conversation, for [`ConversationState::authorize`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Actor {
    /// The conversation's customer.
    Customer,
    /// A signed-in agent of the project.
    Agent(AgentId),
    /// A server with the project's secret key (a bot backend).
    SecretKey,
}

/// What an [`Actor`] does, for [`ConversationState::authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Act {
    /// Write a message.
    Speak,
    /// Resolve.
    Resolve,
    /// Decline (pass on to another free agent or the queue).
    Decline,
    /// Transfer to the queue or another agent.
    Transfer,
}

/// The part of a conversation the machine decides on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConversationState {
    /// Current status.
    pub status: ConversationStatus,
    /// The assigned agent (`Some` exactly when `status` is `assigned`).
    pub agent: Option<AgentId>,
}

/// The outcome of an allowed command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transition {
    /// Status before.
    pub from: ConversationStatus,
    /// Status after.
    pub to: ConversationStatus,
    /// The assigned agent after (`None` unless `to` is `assigned`).
    pub agent: Option<AgentId>,
    /// The assigned agent before.
    pub previous_agent: Option<AgentId>,
}

impl Transition {
    /// Whether status or agent changed.
    pub fn changed(&self) -> bool {
        self.from != self.to || self.agent != self.previous_agent
    }

    /// The state after the transition.
    pub fn state(&self) -> ConversationState {
        ConversationState { status: self.to, agent: self.agent.clone() }
    }
}

/// Why a command is refused. The `Display` text is the reason the server sends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The command is not allowed in this status.
    #[error("cannot {command} a conversation that is {}", status.as_str())]
    NotAllowed {
        /// The command's name.
        command: &'static str,
        /// The current status.
        status: ConversationStatus,
    },
    /// Only the assigned agent may transfer or decline.
    #[error("only the assigned agent can do this")]
    NotAssignedAgent,
    /// A transfer or decline to the agent who already has it.
    #[error("the conversation is already assigned to this agent")]
    SameAgent,
}

impl ConversationState {
    /// A new conversation, answered by the bot.
    pub fn new() -> Self {
        ConversationState { status: ConversationStatus::Bot, agent: None }
    }

    /// Applies `cmd`.
    ///
    /// # Errors
    /// [`TransitionError`] when the command is not allowed now; the state is unchanged.
    pub fn apply(&self, cmd: &Command) -> Result<Transition, TransitionError> {
        use ConversationStatus::{Assigned, Bot, Queued, Resolved};
        let to = |status, agent: Option<&AgentId>| {
            Ok(Transition {
                from: self.status,
                to: status,
                agent: agent.cloned(),
                previous_agent: self.agent.clone(),
            })
        };
        let not_allowed = || Err(TransitionError::NotAllowed { command: cmd.name(), status: self.status });
        match (self.status, cmd) {
            (Bot, Command::Handoff { agent: Some(agent) })
            | (Queued, Command::Claim { agent } | Command::Assign { agent }) => to(Assigned, Some(agent)),
            (Bot, Command::Handoff { agent: None }) => to(Queued, None),
            (Assigned, Command::Transfer { by, to: target }) => {
                self.check_assigned(by)?;
                match target {
                    TransferTo::Queue => to(Queued, None),
                    TransferTo::Agent(next) if self.agent.as_ref() == Some(next) => {
                        Err(TransitionError::SameAgent)
                    }
                    TransferTo::Agent(next) => to(Assigned, Some(next)),
                }
            }
            (Assigned, Command::Decline { by, next }) => {
                self.check_assigned(by)?;
                match next {
                    Some(next) if self.agent.as_ref() == Some(next) => Err(TransitionError::SameAgent),
                    Some(next) => to(Assigned, Some(next)),
                    None => to(Queued, None),
                }
            }
            // Rating a resolved conversation changes nothing.
            (Queued | Assigned, Command::Resolve) | (Resolved, Command::Rate) => to(Resolved, None),
            (Resolved, Command::CustomerMessage) => to(Bot, None),
            (Bot | Queued | Assigned, Command::CustomerMessage) => to(self.status, self.agent.as_ref()),
            _ => not_allowed(),
        }
    }

    /// The ownership rule (DESIGN section 3), checked before a command that acts on the
    /// conversation: on an `assigned` conversation only its assignee speaks as an agent,
    /// resolves, declines or transfers; the project's secret key may resolve or decline (on the
    /// assignee's behalf) but never speaks there (a human holds it) and never transfers. On any
    /// other status the state machine alone decides.
    ///
    /// # Errors
    /// [`TransitionError::NotAssignedAgent`] (the server's `403 not_assignee`).
    pub fn authorize(&self, actor: &Actor, act: Act) -> Result<(), TransitionError> {
        if self.status != ConversationStatus::Assigned {
            return Ok(());
        }
        let ok = match actor {
            Actor::Customer => act == Act::Speak,
            Actor::Agent(id) => self.agent.as_ref() == Some(id),
            Actor::SecretKey => matches!(act, Act::Resolve | Act::Decline),
        };
        if ok {
            Ok(())
        } else {
            Err(TransitionError::NotAssignedAgent)
        }
    }

    fn check_assigned(&self, by: &AgentId) -> Result<(), TransitionError> {
        if self.agent.as_ref() == Some(by) {
            Ok(())
        } else {
            Err(TransitionError::NotAssignedAgent)
        }
    }
}

impl Default for ConversationState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ConversationStatus::{Assigned, Bot, Queued, Resolved};

    fn st(status: ConversationStatus, agent: Option<&str>) -> ConversationState {
        ConversationState { status, agent: agent.map(AgentId::new) }
    }
    fn a(id: &str) -> AgentId {
        AgentId::new(id)
    }

    #[test]
    fn handoff_queues_or_assigns() {
        let t = st(Bot, None).apply(&Command::Handoff { agent: None }).unwrap();
        assert_eq!((t.from, t.to, t.agent), (Bot, Queued, None));
        let t = st(Bot, None).apply(&Command::Handoff { agent: Some(a("x")) }).unwrap();
        assert_eq!((t.to, t.agent), (Assigned, Some(a("x"))));
        for s in [st(Queued, None), st(Assigned, Some("x")), st(Resolved, None)] {
            assert!(matches!(
                s.apply(&Command::Handoff { agent: None }),
                Err(TransitionError::NotAllowed { command: "handoff", .. })
            ));
        }
    }

    #[test]
    fn claim_only_from_queue() {
        let t = st(Queued, None).apply(&Command::Claim { agent: a("x") }).unwrap();
        assert_eq!((t.to, t.agent), (Assigned, Some(a("x"))));
        let err = st(Assigned, Some("y")).apply(&Command::Claim { agent: a("x") }).unwrap_err();
        assert_eq!(err.to_string(), "cannot claim a conversation that is assigned");
        assert!(st(Bot, None).apply(&Command::Assign { agent: a("x") }).is_err());
    }

    #[test]
    fn transfer_and_decline_need_the_assigned_agent() {
        let s = st(Assigned, Some("x"));
        let t = s.apply(&Command::Transfer { by: a("x"), to: TransferTo::Queue }).unwrap();
        assert_eq!((t.to, t.agent), (Queued, None));
        let t = s.apply(&Command::Transfer { by: a("x"), to: TransferTo::Agent(a("y")) }).unwrap();
        assert_eq!((t.to, t.agent.clone()), (Assigned, Some(a("y"))));
        assert!(t.changed());
        assert_eq!(
            s.apply(&Command::Transfer { by: a("y"), to: TransferTo::Queue }),
            Err(TransitionError::NotAssignedAgent)
        );
        assert_eq!(
            s.apply(&Command::Transfer { by: a("x"), to: TransferTo::Agent(a("x")) }),
            Err(TransitionError::SameAgent)
        );
        let t = s.apply(&Command::Decline { by: a("x"), next: None }).unwrap();
        assert_eq!(t.to, Queued);
        let t = s.apply(&Command::Decline { by: a("x"), next: Some(a("z")) }).unwrap();
        assert_eq!(t.agent, Some(a("z")));
        assert_eq!(
            s.apply(&Command::Decline { by: a("z"), next: None }),
            Err(TransitionError::NotAssignedAgent)
        );
        assert_eq!(
            TransitionError::SameAgent.to_string(),
            "the conversation is already assigned to this agent"
        );
    }

    #[test]
    fn only_the_assignee_acts_on_an_assigned_conversation() {
        let held = st(Assigned, Some("x"));
        let acts = [Act::Speak, Act::Resolve, Act::Decline, Act::Transfer];
        for act in acts {
            assert_eq!(held.authorize(&Actor::Agent(a("x")), act), Ok(()), "{act:?}");
            assert_eq!(
                held.authorize(&Actor::Agent(a("y")), act),
                Err(TransitionError::NotAssignedAgent),
                "{act:?}"
            );
        }
        // The secret key resolves or declines for the assignee, but a bot never speaks over a
        // human, and transfers are the agents' own.
        assert_eq!(held.authorize(&Actor::SecretKey, Act::Resolve), Ok(()));
        assert_eq!(held.authorize(&Actor::SecretKey, Act::Decline), Ok(()));
        assert_eq!(held.authorize(&Actor::SecretKey, Act::Speak), Err(TransitionError::NotAssignedAgent));
        assert_eq!(held.authorize(&Actor::SecretKey, Act::Transfer), Err(TransitionError::NotAssignedAgent));
        assert_eq!(held.authorize(&Actor::Customer, Act::Speak), Ok(()));
        assert_eq!(held.authorize(&Actor::Customer, Act::Resolve), Err(TransitionError::NotAssignedAgent));
        // Unassigned conversations: nobody holds them; the state machine decides.
        for s in [st(Bot, None), st(Queued, None), st(Resolved, None)] {
            for act in acts {
                assert_eq!(s.authorize(&Actor::Agent(a("y")), act), Ok(()));
                assert_eq!(s.authorize(&Actor::SecretKey, act), Ok(()));
            }
        }
    }

    #[test]
    fn resolve_and_reopen() {
        assert_eq!(st(Queued, None).apply(&Command::Resolve).unwrap().to, Resolved);
        assert_eq!(st(Assigned, Some("x")).apply(&Command::Resolve).unwrap().to, Resolved);
        assert!(st(Bot, None).apply(&Command::Resolve).is_err());
        assert!(st(Resolved, None).apply(&Command::Resolve).is_err());
        let t = st(Resolved, None).apply(&Command::CustomerMessage).unwrap();
        assert_eq!((t.from, t.to), (Resolved, Bot));
        let t = st(Assigned, Some("x")).apply(&Command::CustomerMessage).unwrap();
        assert!(!t.changed());
        assert_eq!((t.to, t.agent), (Assigned, Some(a("x"))));
        let t = st(Queued, None).apply(&Command::CustomerMessage).unwrap();
        assert!(!t.changed());
    }

    #[test]
    fn only_a_resolved_conversation_is_rated_and_rating_changes_nothing() {
        let t = st(Resolved, None).apply(&Command::Rate).unwrap();
        assert!(!t.changed());
        assert_eq!(t.to, Resolved);
        for s in [st(Bot, None), st(Queued, None), st(Assigned, Some("x"))] {
            let err = s.apply(&Command::Rate).unwrap_err();
            assert!(err.to_string().starts_with("cannot rate a conversation that is "), "{err}");
        }
    }

    #[test]
    fn unknown_status_refuses_everything() {
        let s = st(ConversationStatus::Unknown, None);
        assert!(s.apply(&Command::CustomerMessage).is_err());
        assert!(s.apply(&Command::Resolve).is_err());
    }

    fn agent() -> impl Strategy<Value = AgentId> {
        prop_oneof![Just(a("x")), Just(a("y")), Just(a("z"))]
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            proptest::option::of(agent()).prop_map(|agent| Command::Handoff { agent }),
            agent().prop_map(|agent| Command::Claim { agent }),
            agent().prop_map(|agent| Command::Assign { agent }),
            (agent(), proptest::option::of(agent())).prop_map(|(by, to)| Command::Transfer {
                by,
                to: to.map_or(TransferTo::Queue, TransferTo::Agent)
            }),
            (agent(), proptest::option::of(agent())).prop_map(|(by, next)| Command::Decline { by, next }),
            Just(Command::Resolve),
            Just(Command::CustomerMessage),
            Just(Command::Rate),
        ]
    }

    /// DESIGN section 3, as a list of (from, to) pairs (a status may also stay as it is).
    const ALLOWED: [(ConversationStatus, ConversationStatus); 8] = [
        (Bot, Queued),
        (Bot, Assigned),
        (Queued, Assigned),
        (Queued, Resolved),
        (Assigned, Queued),
        (Assigned, Assigned),
        (Assigned, Resolved),
        (Resolved, Bot),
    ];

    fn allowed(from: ConversationStatus, to: ConversationStatus) -> bool {
        from == to || ALLOWED.contains(&(from, to))
    }

    proptest! {
        #[test]
        fn random_command_sequences_follow_section_3(cmds in proptest::collection::vec(command(), 0..64)) {
            let mut s = ConversationState::new();
            for cmd in &cmds {
                // A refused command leaves the state as it was.
                if let Ok(t) = s.apply(cmd) {
                    prop_assert_eq!(t.from, s.status);
                    prop_assert!(allowed(t.from, t.to), "{:?} -> {:?} by {:?}", t.from, t.to, cmd);
                    prop_assert_eq!(t.agent.is_some(), t.to == Assigned);
                    s = t.state();
                }
                prop_assert_eq!(s.agent.is_some(), s.status == Assigned);
            }
        }
    }
}
