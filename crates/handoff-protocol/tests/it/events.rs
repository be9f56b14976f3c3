//! Golden files of the event catalog: one JSON file per event under `tests/data/events/`,
//! named after the wire name with `:` replaced by `.`. Each is checked both ways: the Rust
//! value encodes to exactly the file, and the file decodes to the same value. These files are
//! the contract that the server, the SDK and clients in other languages check against.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the files after a deliberate wire change.

use std::path::PathBuf;

use handoff_protocol::event::*;
use handoff_protocol::ids::*;

fn agent(id: &str, name: &str) -> AgentSummary {
    AgentSummary { id: AgentId::new(id), name: name.to_owned() }
}

fn conv() -> ConversationId {
    ConversationId::new("conv_8f3k2")
}

const AT: Timestamp = Timestamp(1_767_225_600_000);

/// One sample of every event of the catalog.
fn samples() -> Vec<Event> {
    vec![
        Event::MessageNew(MessageNew {
            message: Message {
                id: MessageId::new("msg_01"),
                conversation_id: conv(),
                seq: Seq(4),
                author: Author {
                    kind: AuthorKind::Customer,
                    id: "vis_7a".to_owned(),
                    name: Some("Dana".to_owned()),
                },
                body: "Can I talk to a human?".to_owned(),
                client_msg_id: Some(ClientMsgId::new("c-1")),
                created_at: AT,
            },
        }),
        Event::StatusChanged(StatusChanged {
            conversation_id: conv(),
            seq: Seq(5),
            status: ConversationStatus::Queued,
            previous: ConversationStatus::Bot,
        }),
        Event::ConversationAssigned(ConversationAssigned {
            conversation_id: conv(),
            seq: Seq(7),
            agent: agent("agt_ann", "Ann"),
        }),
        Event::AgentClaimed(AgentClaimed {
            conversation_id: conv(),
            seq: Seq(6),
            agent: agent("agt_ann", "Ann"),
        }),
        Event::ConversationTransferred(ConversationTransferred {
            conversation_id: conv(),
            seq: Seq(9),
            from_agent: agent("agt_ann", "Ann"),
            to: TransferTarget::Agent(agent("agt_bo", "Bo")),
            note: Some("Billing question".to_owned()),
        }),
        Event::ConversationResolved(ConversationResolved {
            conversation_id: conv(),
            seq: Seq(12),
            resolved_by: Author {
                kind: AuthorKind::Agent,
                id: "agt_bo".to_owned(),
                name: Some("Bo".to_owned()),
            },
        }),
        Event::QueuePositionUpdated(QueuePositionUpdated {
            conversation_id: conv(),
            position: 2,
            queue_length: 3,
        }),
        Event::QueueUpdated(QueueUpdated {
            queue: vec![
                QueueEntry {
                    conversation_id: ConversationId::new("conv_1"),
                    position: 1,
                    waiting_since: Timestamp(1_767_225_500_000),
                    customer_name: None,
                    preview: Some("My order never arrived".to_owned()),
                },
                QueueEntry {
                    conversation_id: conv(),
                    position: 2,
                    waiting_since: AT,
                    customer_name: Some("Dana".to_owned()),
                    preview: Some("Can I talk to a human?".to_owned()),
                },
            ],
        }),
        Event::AgentStatusChanged(AgentStatusChanged {
            agent_id: AgentId::new("agt_ann"),
            status: AgentStatus::Away,
        }),
        Event::Typing(Typing {
            conversation_id: conv(),
            actor: Author { kind: AuthorKind::Agent, id: "agt_ann".to_owned(), name: Some("Ann".to_owned()) },
            is_typing: true,
        }),
        Event::PresenceUpdated(PresenceUpdated {
            conversation_id: conv(),
            state: PresenceState::Idle,
            at: AT,
        }),
        Event::NoteNew(NoteNew {
            note: Note {
                id: NoteId::new("note_1"),
                conversation_id: conv(),
                author: agent("agt_ann", "Ann"),
                body: "VIP customer, refund approved".to_owned(),
                created_at: AT,
            },
        }),
        Event::OfflineMessageNew(OfflineMessageNew {
            offline_message: OfflineMessage {
                id: OfflineMessageId::new("off_1"),
                name: "Dana".to_owned(),
                email: "dana@example.com".to_owned(),
                message: "Please call me back tomorrow".to_owned(),
                created_at: AT,
                handled_at: None,
            },
        }),
        Event::AvailabilityChanged(AvailabilityChanged::new(ProjectId::new("prj_1"), 0, true)),
        Event::ConversationRated(ConversationRated {
            conversation_id: conv(),
            seq: Seq(14),
            rating: 5,
            comment: Some("Quick and friendly, thanks!".to_owned()),
        }),
        Event::MessageRead(MessageRead {
            conversation_id: conv(),
            seq: Seq(4),
            reader: Author {
                kind: AuthorKind::Agent,
                id: "agt_ann".to_owned(),
                name: Some("Ann".to_owned()),
            },
            at: AT,
        }),
    ]
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/events")
        .join(format!("{}.json", name.replace(':', ".")))
}

#[test]
fn every_event_matches_its_golden_file_both_ways() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for event in samples() {
        let path = golden_path(event.name());
        let encoded = serde_json::to_string_pretty(&event).unwrap() + "\n";
        if update {
            std::fs::write(&path, &encoded).unwrap();
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
        assert_eq!(encoded, golden, "encoding of {} differs from {}", event.name(), path.display());
        let decoded: Event = serde_json::from_str(&golden).unwrap();
        assert_eq!(decoded, event, "decoding {}", path.display());
    }
}

#[test]
fn the_catalog_has_a_golden_file_for_every_event_type() {
    let names: Vec<_> = samples().iter().map(|e| e.event_type().unwrap()).collect();
    for t in EventType::ALL {
        assert!(names.contains(t), "no sample for {t}");
        assert!(golden_path(t.as_str()).exists(), "no golden file for {t}");
    }
}

#[test]
fn seq_and_conversation_accessors_cover_persisted_conversation_events() {
    for event in samples() {
        let t = event.event_type().unwrap();
        let conversation_event = !matches!(
            t,
            EventType::QueueUpdated
                | EventType::AgentStatusChanged
                | EventType::OfflineMessageNew
                | EventType::AvailabilityChanged
        );
        assert_eq!(event.conversation_id().is_some(), conversation_event, "{t}");
        // Every persisted event of a conversation's history carries its seq; notes and offline
        // messages are persisted but live outside the customer-visible history.
        let in_history = t.is_persisted() && !matches!(t, EventType::NoteNew | EventType::OfflineMessageNew);
        assert_eq!(event.seq().is_some(), in_history, "{t}");
    }
}

/// The JSON paths that readers of raw payloads follow (the wasm client) find what the typed
/// accessors return, for every event of the catalog.
#[test]
fn payload_paths_agree_with_the_typed_accessors() {
    fn at<'a>(v: &'a serde_json::Value, path: Option<&[&str]>) -> Option<&'a serde_json::Value> {
        path?.iter().try_fold(v, |v, key| v.get(key))
    }
    for event in samples() {
        let t = event.event_type().unwrap();
        let payload = event.payload_value().unwrap();
        let seq = at(&payload, t.seq_path()).map(|v| Seq(v.as_u64().unwrap()));
        assert_eq!(seq, event.seq(), "{t}");
        let conv = at(&payload, t.conversation_id_path()).map(|v| v.as_str().unwrap());
        assert_eq!(conv, event.conversation_id().map(ConversationId::as_str), "{t}");
        let id = at(&payload, t.message_id_path()).map(|v| v.as_str().unwrap());
        let typed = match &event {
            Event::MessageNew(m) => Some(m.message.id.as_str()),
            _ => None,
        };
        assert_eq!(id, typed, "{t}");
    }
}

#[test]
fn transfer_to_the_queue_has_its_own_shape() {
    let json = serde_json::to_value(TransferTarget::Queue).unwrap();
    assert_eq!(json, serde_json::json!({"type": "queue"}));
    let back: TransferTarget = serde_json::from_value(json).unwrap();
    assert_eq!(back, TransferTarget::Queue);
}
