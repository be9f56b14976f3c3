//! Background jobs: customer presence expiry, agent auto-offline, agent token expiry, and
//! forgetting idle rate-limit buckets.

use std::sync::Arc;
use std::time::Duration;

use handoff_protocol::timing::presence::{AGENT_OFFLINE_AFTER_MS, CUSTOMER_OFFLINE_AFTER_MS};
use tokio::sync::watch;

use crate::service::{now_ms, Service};

/// Runs the expiry jobs every `interval` until `shutdown` turns true.
pub async fn run(service: Arc<Service>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let customers = service.expire_presence(now_ms(), CUSTOMER_OFFLINE_AFTER_MS).await;
                let agents = service.expire_agents(now_ms(), AGENT_OFFLINE_AFTER_MS).await;
                if customers + agents > 0 {
                    tracing::info!(customers, agents, "marked offline");
                }
                let tokens = service.expire_tokens(now_ms()).await;
                if tokens > 0 {
                    tracing::info!(tokens, "agent tokens expired");
                }
                service.limits().forget_idle();
            }
            _ = shutdown.changed() => return,
        }
    }
}
