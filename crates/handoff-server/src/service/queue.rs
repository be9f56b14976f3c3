//! Coalesced queue broadcasts.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

/// The shortest time between two queue broadcasts of one project.
pub(super) const QUEUE_BROADCAST_EVERY: Duration = Duration::from_millis(250);

/// Coalesces the queue broadcasts of each project: one at once, then at most one per
/// [`QUEUE_BROADCAST_EVERY`], each computed in one query when it goes out.
#[derive(Debug)]
pub(super) struct QueueBroadcasts {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    slots: Mutex<HashMap<ProjectId, QueueSlot>>,
}

#[derive(Clone, Copy, Debug)]
struct QueueSlot {
    last: tokio::time::Instant,
    pending: bool,
}

impl QueueBroadcasts {
    pub(super) fn new(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        QueueBroadcasts { store, hub, slots: Mutex::new(HashMap::new()) }
    }

    pub(super) async fn request(self: &Arc<Self>, project: &ProjectId) {
        let now = tokio::time::Instant::now();
        let due = {
            let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = slots
                .entry(project.clone())
                .or_insert(QueueSlot { last: now - QUEUE_BROADCAST_EVERY, pending: false });
            if slot.pending {
                return; // the scheduled broadcast reads the queue when it goes out
            }
            if now.duration_since(slot.last) >= QUEUE_BROADCAST_EVERY {
                slot.last = now;
                None
            } else {
                slot.pending = true;
                Some(slot.last + QUEUE_BROADCAST_EVERY)
            }
        };
        match due {
            None => self.send(project).await,
            Some(at) => {
                let this = self.clone();
                let project = project.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    {
                        let mut slots = this.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if let Some(slot) = slots.get_mut(&project) {
                            // Cleared before reading: a change from now on schedules another.
                            slot.pending = false;
                            slot.last = tokio::time::Instant::now();
                        }
                    }
                    this.send(&project).await;
                });
            }
        }
    }

    async fn send(&self, project: &ProjectId) {
        let mut entries = match self.store.queue_entries(project).await {
            Ok(q) => q,
            Err(e) => return tracing::error!(error = %e, "cannot read the queue for broadcast"),
        };
        let len = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        for e in &mut entries {
            e.preview = e.preview.as_deref().map(preview);
            let position = Event::QueuePositionUpdated(QueuePositionUpdated {
                conversation_id: e.conversation_id.clone(),
                position: e.position,
                queue_length: len,
            });
            self.hub.publish(&Channel::Conversation(e.conversation_id.clone()), &position);
        }
        let event = Event::QueueUpdated(QueueUpdated { queue: entries });
        self.hub.publish(&Channel::ProjectQueue(project.clone()), &event);
    }
}
