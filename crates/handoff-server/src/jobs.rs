//! Background jobs: customer presence expiry and agent auto-offline.

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
            }
            _ = shutdown.changed() => return,
        }
    }
}
