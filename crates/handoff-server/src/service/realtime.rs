//! The realtime socket's view of the service ([`RealtimeBackend`]).

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

/// The realtime socket's view of the service.
#[async_trait]
impl RealtimeBackend for Service {
    async fn project_by_key(&self, key: &str, origin: Option<&str>) -> Option<SocketProject> {
        let project = match self.store.project_by_public_key(key).await {
            Ok(p) => p?,
            Err(e) => {
                tracing::warn!(error = %e, "project lookup for a socket failed");
                return None;
            }
        };
        Some(SocketProject {
            origin_allowed: origin.is_none_or(|o| project.allows_origin(o)),
            project_id: project.id,
        })
    }

    async fn authenticate(&self, token: &str) -> Principal {
        match Service::authenticate(self, token).await {
            Ok(Caller::Customer { visitor, project }) => {
                if project.enforce_identity && !visitor.verified {
                    Principal::Anonymous
                } else {
                    Principal::Customer { project_id: visitor.project_id, visitor_id: visitor.id }
                }
            }
            Ok(Caller::Agent(a)) => Principal::Agent { project_id: a.project_id, agent_id: a.id },
            Ok(Caller::Server(p)) => Principal::Server { project_id: p.id.clone() },
            Err(_) => Principal::Anonymous,
        }
    }

    async fn conversation_owner(&self, id: &ConversationId) -> Option<ConversationOwner> {
        let c = self.store.conversation(id).await.ok()??;
        Some(ConversationOwner { project_id: c.project_id, visitor_id: c.visitor_id })
    }

    async fn joined(&self, channel: &Channel) -> Option<Event> {
        match channel {
            Channel::ProjectAvailability(project) => self.current_availability(project).await,
            _ => None,
        }
    }

    async fn agent_socket(&self, agent: &AgentId, connected: bool) {
        // The first socket here and the last one gone are written at once: the 2-minute grace
        // counts from the close, not from the last refresh.
        let edge = {
            let mut map = self.agent_sockets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if connected {
                let n = map.entry(agent.clone()).or_insert(0);
                *n += 1;
                *n == 1
            } else if let Some(n) = map.get_mut(agent) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(agent);
                    true
                } else {
                    false
                }
            } else {
                false
            }
        };
        if edge {
            if let Err(e) = self.store.agent_sockets_seen(std::slice::from_ref(agent), now_ms()).await {
                tracing::warn!(error = %e, "cannot record an agent's socket");
            }
        }
    }

    async fn client_broadcast(
        &self,
        principal: &Principal,
        channel: &Channel,
        event: Event,
    ) -> Result<Event, String> {
        let Channel::Conversation(id) = channel else {
            return Err("client broadcasts go on conversation channels".into());
        };
        let caller = match principal {
            Principal::Customer { visitor_id, project_id } => {
                let project = self.store.project(project_id).await.ok().flatten().ok_or("unknown project")?;
                Caller::Customer {
                    visitor: VisitorRow {
                        id: visitor_id.clone(),
                        project_id: project_id.clone(),
                        name: None,
                        email: None,
                        verified: true,
                    },
                    project: Box::new(project),
                }
            }
            Principal::Agent { agent_id, .. } => {
                Caller::Agent(self.store.agent(agent_id).await.ok().flatten().ok_or("unknown agent")?)
            }
            _ => return Err("not allowed".into()),
        };
        match event {
            Event::Typing(t) if &t.conversation_id == id => {
                if let Caller::Agent(a) = &caller {
                    let _ = self.store.touch_agent(&a.id, now_ms()).await;
                } else if let Ok(Some(name)) =
                    self.store.visitor_name(&VisitorId::new(caller_author_id(&caller))).await
                {
                    return Ok(Event::Typing(Typing {
                        conversation_id: id.clone(),
                        actor: Author { name: Some(name), ..caller.author() },
                        is_typing: t.is_typing,
                    }));
                }
                Ok(Self::typing_event(&caller, id, t.is_typing))
            }
            Event::PresenceUpdated(p)
                if &p.conversation_id == id && matches!(caller, Caller::Customer { .. }) =>
            {
                // A socket broadcast carries no tab id: it counts as the default tab, and the
                // fan-out carries the conversation's aggregate.
                let now = now_ms();
                let state = match self.store.report_presence(id, DEFAULT_TAB, p.state, now).await {
                    Ok(Some(state)) => state,
                    Ok(None) => {
                        self.store.conversation(id).await.ok().flatten().map_or(p.state, |c| c.presence)
                    }
                    Err(e) => return Err(e.to_string()),
                };
                Ok(Event::PresenceUpdated(PresenceUpdated {
                    conversation_id: id.clone(),
                    state,
                    at: Timestamp(now),
                }))
            }
            _ => Err("this event may not be broadcast by this client".into()),
        }
    }
}
