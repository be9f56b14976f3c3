//! The realtime side of the server: the hub (topic -> subscribers, fan-out) and the Phoenix
//! WebSocket endpoint at `/realtime/v1/websocket`, compatible with `@supabase/realtime-js`.
//!
//! The hub knows nothing about HTTP or storage. What the socket needs from the rest of the
//! server (who a token is, who owns a conversation, what to do with a client broadcast) comes
//! through [`RealtimeBackend`], which the service layer implements.

mod hub;
mod socket;

use async_trait::async_trait;
use handoff_protocol::channel::{ConversationOwner, Principal};
use handoff_protocol::{AgentId, Channel, ConversationId, Event, ProjectId};

pub use hub::{
    Hub, HubError, Outbox, Outgoing, SocketId, Waiter, DEFAULT_QUEUE_CAPACITY, DEFAULT_REPLY_CAPACITY,
};
pub use hub::{EPHEMERAL_MAX_AGE, REDIS_BATCH, REDIS_PING_EVERY, REDIS_RETRY_MAX, REDIS_TIMEOUT};
pub use socket::{routes, RealtimeConfig};

/// The project a socket was opened for (by the `apikey` of its URL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketProject {
    /// The project whose public key the socket URL carries; every join must be for it.
    pub project_id: ProjectId,
    /// Whether the socket's `Origin` (absent: not a browser) is on the project's allow-list;
    /// customers may join only when it is, as on REST.
    pub origin_allowed: bool,
}

/// What the realtime socket asks of the rest of the server.
#[async_trait]
pub trait RealtimeBackend: Send + Sync + 'static {
    /// The project of a public key, and whether `origin` (the `Origin` header of the upgrade,
    /// if any) is allowed for it; `None` when the key is unknown (the upgrade is refused).
    async fn project_by_key(&self, key: &str, origin: Option<&str>) -> Option<SocketProject>;

    /// Resolves an access token (visitor token, agent token or project secret key) to a
    /// principal; [`Principal::Anonymous`] when the token is unknown. The socket caches the
    /// answer per token, since realtime-js pushes `access_token` on every heartbeat.
    async fn authenticate(&self, token: &str) -> Principal;

    /// The owner of a conversation, for the join rules; `None` when it does not exist.
    async fn conversation_owner(&self, id: &ConversationId) -> Option<ConversationOwner>;

    /// A socket now has a channel joined with `agent`'s token (`connected`), or no longer has
    /// any (left, revoked, or the socket closed). Called once per socket and agent each way;
    /// agents with a connected socket are never expired (liveness by connection).
    async fn agent_socket(&self, agent: &AgentId, connected: bool) {
        let _ = (agent, connected);
    }

    /// A socket joined `channel` with a token that may: the event that gives the joiner the
    /// channel's current state, if the channel has one (`availability:changed` on
    /// `project:{id}:availability`), sent to that socket only.
    async fn joined(&self, channel: &Channel) -> Option<Event> {
        let _ = channel;
        None
    }

    /// A client-sent broadcast on `channel` (only ephemeral events: `typing`,
    /// `presence:updated`). The backend checks that `principal` may emit it, applies its side
    /// effects (presence last-seen) and returns the event to fan out (with the actor set from
    /// the principal). `Err` carries the reason for the error reply.
    async fn client_broadcast(
        &self,
        principal: &Principal,
        channel: &Channel,
        event: Event,
    ) -> Result<Event, String>;
}
