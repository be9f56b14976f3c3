//! Topic -> subscribers, with one serialization per broadcast.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::{Message, Utf8Bytes};
use handoff_protocol::phoenix::{codec, Frame, Vsn};
use handoff_protocol::{Channel, Event};
use tokio::sync::{mpsc, Notify};

/// Frames a socket may have queued before it counts as too slow and is closed.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// Identifies one WebSocket connection.
pub type SocketId = u64;

#[derive(Debug)]
struct Subscriber {
    socket: SocketId,
    vsn: Vsn,
    tx: mpsc::Sender<Message>,
    kill: Arc<Notify>,
}

/// The fan-out hub: every published event is serialized once per serializer and the bytes are
/// shared by all subscribers. A subscriber whose bounded queue is full is closed (its client
/// reconnects and catches up by `seq`) rather than letting memory grow.
#[derive(Debug, Default)]
pub struct Hub {
    topics: RwLock<HashMap<String, Vec<Subscriber>>>,
    next_socket: AtomicU64,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh socket id.
    pub fn socket_id(&self) -> SocketId {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }

    /// Subscribes a socket to a wire topic (replacing an earlier subscription of the same socket).
    pub fn subscribe(
        &self,
        topic: &str,
        socket: SocketId,
        vsn: Vsn,
        tx: mpsc::Sender<Message>,
        kill: Arc<Notify>,
    ) {
        let mut topics = self.topics.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let subs = topics.entry(topic.to_owned()).or_default();
        subs.retain(|s| s.socket != socket);
        subs.push(Subscriber { socket, vsn, tx, kill });
    }

    /// Removes a socket's subscription to a topic.
    pub fn unsubscribe(&self, topic: &str, socket: SocketId) {
        let mut topics = self.topics.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(subs) = topics.get_mut(topic) {
            subs.retain(|s| s.socket != socket);
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// How many sockets are subscribed to a topic.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(topic).map_or(0, Vec::len)
    }

    /// Publishes an event on a channel. Fire-and-forget: never fails the caller.
    pub fn publish(&self, channel: &Channel, event: &Event) {
        self.publish_except(channel, event, None);
    }

    /// Publishes, skipping one socket (a client broadcast with `self: false`).
    pub fn publish_except(&self, channel: &Channel, event: &Event, except: Option<SocketId>) {
        let topic = channel.topic();
        let frame = Frame::broadcast(&topic, event);
        let mut encoded: [Option<Utf8Bytes>; 2] = [None, None];
        let mut too_slow = Vec::new();
        {
            let topics = self.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(subs) = topics.get(&topic) else { return };
            for sub in subs.iter().filter(|s| Some(s.socket) != except) {
                let which = usize::from(sub.vsn == Vsn::V2);
                if encoded[which].is_none() {
                    match codec::encode_text(sub.vsn, &frame) {
                        Ok(text) => encoded[which] = Some(Utf8Bytes::from(text)),
                        Err(e) => {
                            tracing::error!(error = %e, topic, "cannot encode broadcast");
                            return;
                        }
                    }
                }
                let Some(bytes) = encoded[which].clone() else { continue };
                if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(Message::Text(bytes)) {
                    tracing::warn!(socket = sub.socket, topic, "socket cannot keep up; closing it");
                    sub.kill.notify_one();
                    too_slow.push(sub.socket);
                }
            }
        }
        for socket in too_slow {
            self.unsubscribe(&topic, socket);
        }
    }
}
