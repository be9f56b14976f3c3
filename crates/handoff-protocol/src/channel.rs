//! Channels: their names, their `realtime:` wire topics, and who may join which.
//!
//! Channel names are built here from typed ids and nowhere else.

use std::fmt;
use std::str::FromStr;

use crate::ids::{AgentId, ConversationId, ProjectId, VisitorId};

/// The prefix Supabase Realtime puts before a channel name to make the wire topic.
pub const TOPIC_PREFIX: &str = "realtime:";

/// The Phoenix topic of socket-level frames (heartbeats).
pub const PHOENIX_TOPIC: &str = "phoenix";

/// A realtime channel of Handoff.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Channel {
    /// `conversation:{id}`: everything the customer and the agents of one conversation see.
    Conversation(ConversationId),
    /// `conversation:{id}:agents`: agent-only side channel (internal notes).
    ConversationAgents(ConversationId),
    /// `project:{id}:queue`: the project's queue and inbox updates, for its agents.
    ProjectQueue(ProjectId),
    /// `agent:{id}`: personal notifications of one agent.
    Agent(AgentId),
    /// `project:{id}:availability`: `availability:changed` (whether the project can take a chat
    /// now), for the project's visitors before and during a conversation, and its agents.
    ProjectAvailability(ProjectId),
}

impl Channel {
    /// The wire topic, `realtime:<channel>`.
    pub fn topic(&self) -> String {
        format!("{TOPIC_PREFIX}{self}")
    }

    /// Parses a wire topic (`realtime:conversation:c1`).
    ///
    /// # Errors
    /// When the topic has no `realtime:` prefix or names no channel of Handoff.
    pub fn from_topic(topic: &str) -> Result<Channel, ChannelError> {
        let name =
            topic.strip_prefix(TOPIC_PREFIX).ok_or_else(|| ChannelError::NoPrefix(topic.to_owned()))?;
        name.parse()
    }

    /// The channel's name (`conversation:c1`), also its `Display`. Built without `core::fmt`,
    /// which the wasm client leaves out.
    pub fn name(&self) -> String {
        let (before, id, after) = match self {
            Channel::Conversation(id) => ("conversation:", id.as_str(), ""),
            Channel::ConversationAgents(id) => ("conversation:", id.as_str(), ":agents"),
            Channel::ProjectQueue(id) => ("project:", id.as_str(), ":queue"),
            Channel::Agent(id) => ("agent:", id.as_str(), ""),
            Channel::ProjectAvailability(id) => ("project:", id.as_str(), ":availability"),
        };
        [before, id, after].concat()
    }

    /// The conversation this channel belongs to, if any.
    pub fn conversation_id(&self) -> Option<&ConversationId> {
        match self {
            Channel::Conversation(id) | Channel::ConversationAgents(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.contains(':')
}

impl FromStr for Channel {
    type Err = ChannelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = name.split(':').collect();
        let bad = || ChannelError::Unknown(name.to_owned());
        match parts.as_slice() {
            ["conversation", id] if valid_id(id) => Ok(Channel::Conversation(ConversationId::new(*id))),
            ["conversation", id, "agents"] if valid_id(id) => {
                Ok(Channel::ConversationAgents(ConversationId::new(*id)))
            }
            ["project", id, "queue"] if valid_id(id) => Ok(Channel::ProjectQueue(ProjectId::new(*id))),
            ["agent", id] if valid_id(id) => Ok(Channel::Agent(AgentId::new(*id))),
            ["project", id, "availability"] if valid_id(id) => {
                Ok(Channel::ProjectAvailability(ProjectId::new(*id)))
            }
            _ => Err(bad()),
        }
    }
}

/// A topic or channel name that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The topic lacks the `realtime:` prefix.
    #[error("topic `{0}` does not start with `realtime:`")]
    NoPrefix(String),
    /// Not a channel of Handoff.
    #[error("unknown channel `{0}`")]
    Unknown(String),
}

/// Who is asking to join, as established from an access token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Principal {
    /// A website visitor of a project.
    Customer {
        /// The visitor's project.
        project_id: ProjectId,
        /// The visitor.
        visitor_id: VisitorId,
    },
    /// A signed-in agent of a project.
    Agent {
        /// The agent's project.
        project_id: ProjectId,
        /// The agent.
        agent_id: AgentId,
    },
    /// A server-to-server caller holding the project's secret key.
    Server {
        /// The project.
        project_id: ProjectId,
    },
    /// No token (yet).
    Anonymous,
}

/// The facts about a conversation that decide who may join its channels (looked up by the server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationOwner {
    /// The project it belongs to.
    pub project_id: ProjectId,
    /// The visitor who started it.
    pub visitor_id: VisitorId,
}

/// Why a join is refused. The `Display` text is the `reason` of the error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinDenied {
    /// No access token was given, and the channel needs one.
    #[error("an access token is required to join this channel")]
    TokenRequired,
    /// The principal may not join this channel.
    #[error("not allowed to join this channel")]
    Forbidden,
    /// The conversation does not exist.
    #[error("conversation not found")]
    NotFound,
}

/// Decides whether `principal` may join `channel`.
///
/// `owner` is the conversation's owner for conversation channels (`None` when it does not
/// exist); it is ignored for other channels.
///
/// - `conversation:{id}`: its customer, and agents or the server of its project;
/// - `conversation:{id}:agents`: agents of its project only (never a customer);
/// - `project:{id}:queue`: agents of that project and its server;
/// - `agent:{id}`: that agent only;
/// - `project:{id}:availability`: visitors, agents and the server of that project (it carries
///   nothing private: only whether a chat can be taken now).
///
/// # Errors
/// [`JoinDenied`] with the reason.
pub fn may_join(
    principal: &Principal,
    channel: &Channel,
    owner: Option<&ConversationOwner>,
) -> Result<(), JoinDenied> {
    if matches!(principal, Principal::Anonymous) {
        return Err(JoinDenied::TokenRequired);
    }
    let allowed = match channel {
        Channel::Conversation(_) => {
            let owner = owner.ok_or(JoinDenied::NotFound)?;
            match principal {
                Principal::Customer { project_id, visitor_id } => {
                    *project_id == owner.project_id && *visitor_id == owner.visitor_id
                }
                Principal::Agent { project_id, .. } | Principal::Server { project_id } => {
                    *project_id == owner.project_id
                }
                Principal::Anonymous => false,
            }
        }
        Channel::ConversationAgents(_) => {
            let owner = owner.ok_or(JoinDenied::NotFound)?;
            matches!(principal, Principal::Agent { project_id, .. } if *project_id == owner.project_id)
        }
        Channel::ProjectQueue(id) => match principal {
            Principal::Agent { project_id, .. } | Principal::Server { project_id } => project_id == id,
            _ => false,
        },
        Channel::Agent(id) => matches!(principal, Principal::Agent { agent_id, .. } if agent_id == id),
        Channel::ProjectAvailability(id) => match principal {
            Principal::Customer { project_id, .. }
            | Principal::Agent { project_id, .. }
            | Principal::Server { project_id } => project_id == id,
            Principal::Anonymous => false,
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(JoinDenied::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(p: &str, v: &str) -> Principal {
        Principal::Customer { project_id: ProjectId::new(p), visitor_id: VisitorId::new(v) }
    }
    fn agent(p: &str, a: &str) -> Principal {
        Principal::Agent { project_id: ProjectId::new(p), agent_id: AgentId::new(a) }
    }
    fn owner(p: &str, v: &str) -> ConversationOwner {
        ConversationOwner { project_id: ProjectId::new(p), visitor_id: VisitorId::new(v) }
    }

    #[test]
    fn names_and_topics_round_trip() {
        let cases = [
            (Channel::Conversation("c1".into()), "conversation:c1"),
            (Channel::ConversationAgents("c1".into()), "conversation:c1:agents"),
            (Channel::ProjectQueue("p1".into()), "project:p1:queue"),
            (Channel::Agent("a1".into()), "agent:a1"),
            (Channel::ProjectAvailability("p1".into()), "project:p1:availability"),
        ];
        for (channel, name) in cases {
            assert_eq!(channel.to_string(), name);
            assert_eq!(name.parse::<Channel>().unwrap(), channel);
            assert_eq!(channel.topic(), format!("realtime:{name}"));
            assert_eq!(Channel::from_topic(&channel.topic()).unwrap(), channel);
        }
    }

    #[test]
    fn bad_names_are_typed_errors() {
        assert_eq!(
            Channel::from_topic("conversation:c1"),
            Err(ChannelError::NoPrefix("conversation:c1".into()))
        );
        for bad in [
            "",
            "conversation:",
            "conversation:c1:notes",
            "project:p1",
            "project::availability",
            "agent:",
            "room:1",
            "agent:a:b",
        ] {
            assert_eq!(bad.parse::<Channel>(), Err(ChannelError::Unknown(bad.into())), "{bad}");
        }
    }

    #[test]
    fn customers_join_only_their_own_conversation() {
        let ch = Channel::Conversation("c1".into());
        let o = owner("p1", "v1");
        assert_eq!(may_join(&customer("p1", "v1"), &ch, Some(&o)), Ok(()));
        assert_eq!(may_join(&customer("p1", "v2"), &ch, Some(&o)), Err(JoinDenied::Forbidden));
        assert_eq!(may_join(&customer("p2", "v1"), &ch, Some(&o)), Err(JoinDenied::Forbidden));
        assert_eq!(may_join(&customer("p1", "v1"), &ch, None), Err(JoinDenied::NotFound));
        assert_eq!(may_join(&Principal::Anonymous, &ch, Some(&o)), Err(JoinDenied::TokenRequired));
    }

    #[test]
    fn customers_never_join_agent_channels() {
        let o = owner("p1", "v1");
        let c = customer("p1", "v1");
        assert_eq!(
            may_join(&c, &Channel::ConversationAgents("c1".into()), Some(&o)),
            Err(JoinDenied::Forbidden)
        );
        assert_eq!(may_join(&c, &Channel::ProjectQueue("p1".into()), None), Err(JoinDenied::Forbidden));
        assert_eq!(may_join(&c, &Channel::Agent("v1".into()), None), Err(JoinDenied::Forbidden));
    }

    #[test]
    fn agents_stay_inside_their_project() {
        let o = owner("p1", "v1");
        let a = agent("p1", "a1");
        let q = agent("p2", "a9");
        assert_eq!(may_join(&a, &Channel::Conversation("c1".into()), Some(&o)), Ok(()));
        assert_eq!(may_join(&a, &Channel::ConversationAgents("c1".into()), Some(&o)), Ok(()));
        assert_eq!(may_join(&a, &Channel::ProjectQueue("p1".into()), None), Ok(()));
        assert_eq!(may_join(&a, &Channel::Agent("a1".into()), None), Ok(()));
        assert_eq!(may_join(&a, &Channel::Agent("a2".into()), None), Err(JoinDenied::Forbidden));
        assert_eq!(may_join(&q, &Channel::Conversation("c1".into()), Some(&o)), Err(JoinDenied::Forbidden));
        assert_eq!(may_join(&q, &Channel::ProjectQueue("p1".into()), None), Err(JoinDenied::Forbidden));
        let s = Principal::Server { project_id: ProjectId::new("p1") };
        assert_eq!(may_join(&s, &Channel::ProjectQueue("p1".into()), None), Ok(()));
        assert_eq!(
            may_join(&s, &Channel::ConversationAgents("c1".into()), Some(&o)),
            Err(JoinDenied::Forbidden)
        );
    }

    #[test]
    fn the_availability_channel_is_open_to_the_whole_project_only() {
        let ch = Channel::ProjectAvailability("p1".into());
        assert_eq!(may_join(&customer("p1", "v1"), &ch, None), Ok(()));
        assert_eq!(may_join(&agent("p1", "a1"), &ch, None), Ok(()));
        assert_eq!(may_join(&Principal::Server { project_id: ProjectId::new("p1") }, &ch, None), Ok(()));
        assert_eq!(may_join(&customer("p2", "v1"), &ch, None), Err(JoinDenied::Forbidden));
        assert_eq!(may_join(&agent("p2", "a1"), &ch, None), Err(JoinDenied::Forbidden));
        assert_eq!(may_join(&Principal::Anonymous, &ch, None), Err(JoinDenied::TokenRequired));
    }
}
