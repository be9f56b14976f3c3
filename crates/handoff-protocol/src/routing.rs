//! Routing on handoff (DESIGN section 3): give the conversation to the online agent with the
//! fewest open conversations below their capacity, ties by longest idle; otherwise queue.

use crate::ids::AgentId;

/// Open conversations an agent gets at most unless configured otherwise.
pub const DEFAULT_CAPACITY: u32 = 3;

/// One agent as routing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentLoad {
    /// The agent.
    pub id: AgentId,
    /// Whether they are online (away and offline agents get nothing new).
    pub online: bool,
    /// Conversations assigned to them now.
    pub open: u32,
    /// Their capacity.
    pub capacity: u32,
    /// Milliseconds since the epoch when they last got a conversation or finished one; the
    /// smallest value has been idle the longest.
    pub idle_since_ms: u64,
}

/// Picks the agent for a conversation, or `None` when nobody is free (the conversation queues).
/// `exclude` leaves out agents who should not get this conversation (those who declined it).
pub fn pick_agent(candidates: &[AgentLoad], exclude: &[AgentId]) -> Option<AgentId> {
    candidates
        .iter()
        .filter(|a| a.online && a.open < a.capacity && !exclude.contains(&a.id))
        .min_by(|a, b| (a.open, a.idle_since_ms, &a.id).cmp(&(b.open, b.idle_since_ms, &b.id)))
        .map(|a| a.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(id: &str, online: bool, open: u32, idle_since_ms: u64) -> AgentLoad {
        AgentLoad { id: AgentId::new(id), online, open, capacity: DEFAULT_CAPACITY, idle_since_ms }
    }

    #[test]
    fn least_loaded_online_agent_below_capacity_wins() {
        let agents = [load("busy", true, 2, 0), load("free", true, 1, 50), load("off", false, 0, 0)];
        assert_eq!(pick_agent(&agents, &[]), Some(AgentId::new("free")));
    }

    #[test]
    fn ties_go_to_the_longest_idle() {
        let agents = [load("recent", true, 1, 900), load("long", true, 1, 100)];
        assert_eq!(pick_agent(&agents, &[]), Some(AgentId::new("long")));
    }

    #[test]
    fn full_offline_and_excluded_agents_get_nothing() {
        assert_eq!(DEFAULT_CAPACITY, 3);
        let agents = [load("full", true, 3, 0), load("off", false, 0, 0), load("me", true, 0, 0)];
        assert_eq!(pick_agent(&agents, &[AgentId::new("me")]), None);
        let two = [load("a", true, 0, 0), load("b", true, 0, 0), load("c", true, 2, 0)];
        assert_eq!(pick_agent(&two, &[AgentId::new("a"), AgentId::new("b")]), Some(AgentId::new("c")));
        assert_eq!(pick_agent(&agents, &[]), Some(AgentId::new("me")));
        assert_eq!(pick_agent(&[], &[]), None);
    }
}
