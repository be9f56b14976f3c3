//! Background jobs: customer presence expiry, agent auto-offline, agent token expiry,
//! announcing business hours opening and closing (`availability:changed`), deleting resolved
//! conversations past their project's retention period, and forgetting idle rate-limit buckets.
//!
//! With several nodes on one database, the expiry jobs run on one node at a time: the holder of
//! the `expiry` lease in the store (a row with an expiry, taken in one conditional statement on
//! SQLite and PostgreSQL alike), renewed every run and released at shutdown. A node that dies
//! holds it at most [`lease_ttl`] longer. Every node still writes which agents have a socket on
//! it (so the leader sees sockets held elsewhere) and forgets its own rate-limit buckets.

use std::sync::Arc;
use std::time::Duration;

use handoff_protocol::timing::agent::{AGENT_OFFLINE_AFTER_MS, AGENT_SOCKET_REFRESH_MS};
use handoff_protocol::timing::presence::CUSTOMER_OFFLINE_AFTER_MS;
use tokio::sync::watch;

use crate::service::{now_ms, Service};

/// The lease the expiry jobs run under.
pub const EXPIRY_LEASE: &str = "expiry";

/// How long a run's lease lasts: three runs, at least 15 s (clock skew between nodes stays
/// well inside it).
pub fn lease_ttl(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(15))
}

/// What one run of the expiry jobs did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Customers marked offline.
    pub customers: usize,
    /// Agents set offline.
    pub agents: usize,
    /// Agent tokens deleted.
    pub tokens: usize,
    /// Projects whose business hours opened or closed since this node's previous run (their
    /// availability was published).
    pub hours: usize,
    /// Resolved conversations deleted because their project's retention period passed.
    pub retention: usize,
}

/// Runs the expiry jobs at `now` if this node holds (or takes) the lease; `None` when another
/// node holds it.
pub async fn run_once(service: &Service, now: u64, lease: Duration) -> Option<Expired> {
    let ttl = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    match service.store().try_lease(EXPIRY_LEASE, service.node_id(), now, ttl).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the jobs' lease");
            return None;
        }
    }
    Some(Expired {
        customers: service.expire_presence(now, CUSTOMER_OFFLINE_AFTER_MS).await,
        agents: service.expire_agents(now, AGENT_OFFLINE_AFTER_MS).await,
        tokens: service.expire_tokens(now).await,
        hours: service.business_hours_tick(now).await,
        retention: service.expire_retention(now).await,
    })
}

/// Runs the jobs every `interval` until `shutdown` turns true, then gives up the lease.
pub async fn run(service: Arc<Service>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    let mut refreshed = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = now_ms();
                if now.saturating_sub(refreshed) >= AGENT_SOCKET_REFRESH_MS {
                    service.refresh_agent_sockets(now).await;
                    refreshed = now;
                }
                if let Some(done) = run_once(&service, now, lease_ttl(interval)).await {
                    if done.customers + done.agents > 0 {
                        tracing::info!(customers = done.customers, agents = done.agents, "marked offline");
                    }
                    if done.tokens > 0 {
                        tracing::info!(tokens = done.tokens, "agent tokens expired");
                    }
                    if done.retention > 0 {
                        tracing::info!(conversations = done.retention, "deleted past the retention period");
                    }
                }
                service.limits().forget_idle();
            }
            _ = shutdown.changed() => break,
        }
    }
    if let Err(e) = service.store().release_lease(EXPIRY_LEASE, service.node_id()).await {
        tracing::warn!(error = %e, "cannot release the jobs' lease");
    }
}
