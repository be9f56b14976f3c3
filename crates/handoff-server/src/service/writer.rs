//! Group commit for messages: a writer task (on PostgreSQL a few, each for its share of the
//! conversations) takes every message waiting to be stored and writes them in one transaction
//! ([`Store::write_batch`]), then publishes their events in seq order and answers each sender.
//! While a batch commits, the next one gathers, so the cost of a commit (an fsync) is shared by
//! as many messages as arrive meanwhile, and a quiet server writes each message at once.
//!
//! The state checks run inside the transaction, on the conversation as it is under the write
//! lock: messages to one conversation get consecutive seqs in arrival order, a message that is
//! refused (not visible, not allowed in the state) takes no seq and fails alone, and a
//! `client_msg_id` stored before, or earlier in the same batch, answers the first message.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

use crate::store::{BatchRead, BatchWrite};
use tokio::sync::{mpsc, oneshot};

/// Messages taken into one transaction at most.
const MAX_BATCH: usize = 1_024;
/// Messages waiting for the writer at most; senders beyond wait for room.
const QUEUE: usize = 8_192;

/// A message waiting to be stored.
#[derive(Debug)]
pub(super) struct Draft {
    pub caller: Caller,
    pub id: ConversationId,
    pub body: String,
    pub client_msg_id: Option<ClientMsgId>,
}

/// What became of a [`Draft`].
#[derive(Debug)]
pub(super) enum Written {
    /// Stored with these events (a status change first, when the message reopened the
    /// conversation), which are published.
    New {
        /// The message.
        message: Message,
        /// Its events, in seq order: the message's, after a status change when it reopened
        /// the conversation.
        events: Vec<Event>,
        /// The conversation's status before it.
        before: ConversationStatus,
        /// And after.
        after: ConversationStatus,
        /// The conversation's project.
        project: ProjectId,
    },
    /// Its `client_msg_id` was stored before, with this seq.
    Stored(Seq),
    /// Its `client_msg_id` came earlier in the same batch: that message.
    Same(Message),
}

type Reply = oneshot::Sender<AppResult<Written>>;

/// The handle senders queue their messages on: one queue per writer task, a conversation's
/// messages always on the same one (by a hash of its id), so that writers never wait for each
/// other's conversations; the tasks end when it is dropped.
#[derive(Debug)]
pub(super) struct MessageWriter {
    queues: Vec<mpsc::Sender<(Draft, Reply)>>,
}

impl MessageWriter {
    /// Starts the writer tasks ([`Store::writers`] of them) on the current tokio runtime.
    pub fn start(store: &Arc<dyn Store>, hub: &Arc<Hub>) -> Self {
        let queues = (0..store.writers().max(1))
            .map(|_| {
                let (queue, mut rx) = mpsc::channel::<(Draft, Reply)>(QUEUE);
                let (store, hub) = (store.clone(), hub.clone());
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(MAX_BATCH);
                    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                        write(store.as_ref(), &hub, std::mem::take(&mut batch)).await;
                    }
                });
                queue
            })
            .collect();
        MessageWriter { queues }
    }

    /// Stores a message with the next ones that arrive, and publishes it.
    ///
    /// # Errors
    /// As `send_message`: 404, 403, 409; 500 when the writer is gone or the database fails.
    pub async fn send(&self, draft: Draft) -> AppResult<Written> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(draft.id.as_str());
        #[allow(clippy::cast_possible_truncation)] // only the low bits pick a writer
        let queue = &self.queues[h as usize % self.queues.len()];
        let (reply, answer) = oneshot::channel();
        queue.send((draft, reply)).await.map_err(|_| AppError::internal(&"message writer stopped"))?;
        answer.await.map_err(|_| AppError::internal(&"message writer stopped"))?
    }
}

/// Writes a batch; when the database refuses it, each message alone (so that one cannot fail
/// the others).
async fn write(store: &dyn Store, hub: &Hub, batch: Vec<(Draft, Reply)>) {
    let (drafts, replies): (Vec<Draft>, Vec<Reply>) = batch.into_iter().unzip();
    let outcomes = match try_write(store, hub, &drafts).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::warn!(error = %e, messages = drafts.len(), "a batch failed: storing its messages one by one");
            let mut outcomes = Vec::with_capacity(drafts.len());
            for draft in &drafts {
                outcomes.push(write_alone(store, hub, draft).await);
            }
            outcomes
        }
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The sender may have gone (its request was cancelled): the message is stored anyway.
        let _ = reply.send(outcome);
    }
}

/// One message in its own transaction, again when its conversation changed under it.
async fn write_alone(store: &dyn Store, hub: &Hub, draft: &Draft) -> AppResult<Written> {
    for _ in 0..MAX_RETRIES {
        match try_write(store, hub, std::slice::from_ref(draft)).await {
            Ok(mut outcomes) => {
                return outcomes.pop().unwrap_or_else(|| Err(AppError::internal(&"no outcome")));
            }
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(AppError::from(e)),
        }
    }
    Err(AppError::new(ErrorCode::Internal, "conversation is too busy; try again"))
}

/// One transaction for `drafts`; after the commit, publishes the new events in seq order.
async fn try_write(
    store: &dyn Store,
    hub: &Hub,
    drafts: &[Draft],
) -> Result<Vec<AppResult<Written>>, StoreError> {
    let now = now_ms();
    let ids: Vec<ConversationId> = drafts.iter().map(|d| d.id.clone()).collect();
    let client_ids: Vec<(ConversationId, String)> = drafts
        .iter()
        .filter_map(|d| d.client_msg_id.as_ref().map(|c| (d.id.clone(), c.as_str().to_owned())))
        .collect();
    let mut outcomes = Vec::new();
    let mut plan = |read: BatchRead| {
        let (o, writes) = plan_batch(drafts, read, now);
        outcomes = o;
        writes
    };
    let started = std::time::Instant::now();
    store.write_batch(&ids, &client_ids, &mut plan, now).await?;
    tracing::debug!(messages = drafts.len(), took = ?started.elapsed(), "message batch committed");
    for outcome in &outcomes {
        if let Ok(Written::New { events, project, .. }) = outcome {
            for event in events {
                publish_on(hub, project, event, &[]);
            }
        }
    }
    Ok(outcomes)
}

/// Decides each draft, in order, on the conversations as read under the lock, keeping each
/// conversation's state as the earlier drafts left it: the outcomes, and the writes.
fn plan_batch(drafts: &[Draft], read: BatchRead, now: u64) -> (Vec<AppResult<Written>>, Vec<BatchWrite>) {
    let BatchRead { mut conversations, client_ids } = read;
    let mut writes: Vec<BatchWrite> = Vec::new();
    let mut write_of: HashMap<ConversationId, usize> = HashMap::new();
    let mut in_batch: HashMap<(ConversationId, String), usize> = HashMap::new();
    let mut outcomes: Vec<AppResult<Written>> = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.iter().enumerate() {
        let outcome = (|| -> AppResult<Written> {
            let c = conversations
                .get_mut(&d.id)
                .filter(|c| d.caller.sees(c))
                .ok_or_else(|| AppError::not_found("conversation"))?;
            if let Some(cid) = &d.client_msg_id {
                let key = (d.id.clone(), cid.as_str().to_owned());
                if let Some(seq) = client_ids.get(&key) {
                    return Ok(Written::Stored(*seq));
                }
                if let Some(first) = in_batch.get(&key) {
                    return match &outcomes[*first] {
                        Ok(Written::New { message, .. }) => Ok(Written::Same(message.clone())),
                        _ => Err(AppError::internal(&"first message of a client_msg_id missing")),
                    };
                }
            }
            let state = ConversationState { status: c.status, agent: c.agent_id.clone() };
            let t = state.apply(&d.caller.message_command(c)?)?;
            let mut events = Vec::with_capacity(2);
            let mut seq = c.last_seq;
            if t.from != t.to {
                seq = seq.next();
                events.push(Event::StatusChanged(StatusChanged {
                    conversation_id: c.id.clone(),
                    seq,
                    status: t.to,
                    previous: t.from,
                }));
            }
            seq = seq.next();
            let message = Message {
                id: store::new_message_id(),
                conversation_id: c.id.clone(),
                seq,
                author: d.caller.author(),
                body: d.body.clone(),
                client_msg_id: d.client_msg_id.clone(),
                created_at: Timestamp(now),
            };
            events.push(Event::MessageNew(MessageNew { message: message.clone() }));
            let published = events.clone();
            let w = *write_of.entry(c.id.clone()).or_insert_with(|| {
                writes.push(BatchWrite {
                    id: c.id.clone(),
                    expected: c.last_seq,
                    status: c.status,
                    agent_id: c.agent_id.clone(),
                    queued_at: c.queued_at,
                    events: Vec::new(),
                });
                writes.len() - 1
            });
            let before = c.status;
            c.queued_at = queued_at(c, &t, now);
            c.status = t.to;
            c.agent_id = t.agent;
            c.last_seq = seq;
            let w = &mut writes[w];
            w.status = c.status;
            w.agent_id.clone_from(&c.agent_id);
            w.queued_at = c.queued_at;
            w.events.extend(events);
            if let Some(cid) = &d.client_msg_id {
                in_batch.insert((d.id.clone(), cid.as_str().to_owned()), i);
            }
            Ok(Written::New {
                message,
                events: published,
                before,
                after: t.to,
                project: c.project_id.clone(),
            })
        })();
        outcomes.push(outcome);
    }
    (outcomes, writes)
}
