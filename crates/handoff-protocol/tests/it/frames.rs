//! Golden files of the Phoenix frames under `tests/data/frames/`: `<name>.v2.json` and
//! `<name>.v1.json` hold the exact text message, `<name>.hex` the bytes of a binary frame, in
//! hex. Each is checked both ways (encode equals the file; decode of the file gives the frame).
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the files after a deliberate wire change.

use std::path::PathBuf;

use handoff_protocol::event::{Author, AuthorKind, Event, Typing};
use handoff_protocol::phoenix::codec::{self, Vsn};
use handoff_protocol::phoenix::{BroadcastConfig, Frame, FrameKind, JoinConfig, JoinPayload, PresenceConfig};
use serde_json::json;

const TOPIC: &str = "realtime:conversation:conv_8f3k2";

fn typing() -> Event {
    Event::Typing(Typing {
        conversation_id: "conv_8f3k2".into(),
        actor: Author { kind: AuthorKind::Customer, id: "vis_7a".into(), name: Some("Dana".into()) },
        is_typing: true,
    })
}

fn join() -> Frame {
    Frame::join(
        "1",
        TOPIC,
        &JoinPayload {
            config: JoinConfig {
                broadcast: BroadcastConfig { self_: false, ack: false },
                presence: PresenceConfig { key: String::new(), enabled: false },
                postgres_changes: vec![],
                private: true,
            },
            access_token: Some("vt_secret".into()),
        },
    )
}

/// (file stem, frame, expected kind) for the text serializers.
fn text_samples() -> Vec<(&'static str, Frame, FrameKind)> {
    vec![
        ("join", join(), FrameKind::Join),
        (
            "join_reply_ok",
            Frame::reply_ok(Some("1".into()), Some("1".into()), TOPIC, json!({"postgres_changes": []})),
            FrameKind::Reply,
        ),
        (
            "join_reply_error",
            Frame::reply_error(Some("1".into()), Some("1".into()), TOPIC, "not allowed to join this channel"),
            FrameKind::Reply,
        ),
        ("broadcast", Frame::broadcast(TOPIC, &typing()), FrameKind::Broadcast),
        ("push_broadcast", Frame::push_broadcast("1", "5", TOPIC, &typing()), FrameKind::Broadcast),
        ("heartbeat", Frame::heartbeat("7"), FrameKind::Heartbeat),
        ("heartbeat_reply", Frame::reply_ok(None, Some("7".into()), "phoenix", json!({})), FrameKind::Reply),
        ("access_token", Frame::access_token("1", "8", TOPIC, "vt_secret"), FrameKind::AccessToken),
        ("leave", Frame::leave("1", "9", TOPIC), FrameKind::Leave),
        ("close", Frame::close(Some("1".into()), TOPIC), FrameKind::Close),
        ("error", Frame::error(Some("1".into()), TOPIC), FrameKind::Error),
        (
            "presence_state",
            codec::decode_text(Vsn::V2, &format!(r#"[null,null,"{TOPIC}","presence_state",{{}}]"#)).unwrap(),
            FrameKind::Presence,
        ),
    ]
}

type Encoder = fn(&Frame) -> Vec<u8>;

fn binary_samples() -> Vec<(&'static str, Frame, Encoder)> {
    vec![
        ("push_broadcast.kind3", Frame::push_broadcast("1", "5", TOPIC, &typing()), |f| {
            codec::encode_push_binary(f).unwrap()
        }),
        ("broadcast.kind4", Frame::broadcast(TOPIC, &typing()), |f| {
            codec::encode_broadcast_binary(f).unwrap()
        }),
    ]
}

fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/frames").join(file)
}

fn check(file: &str, encoded: &str) -> String {
    let p = path(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&p, format!("{encoded}\n")).unwrap();
    }
    let golden = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let golden = golden.trim_end_matches('\n').to_owned();
    assert_eq!(encoded, golden, "{file}");
    golden
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn text_frames_match_their_golden_files_in_both_serializers() {
    for (name, frame, kind) in text_samples() {
        for vsn in [Vsn::V2, Vsn::V1] {
            let suffix = if vsn == Vsn::V2 { "v2" } else { "v1" };
            let golden = check(&format!("{name}.{suffix}.json"), &codec::encode_text(vsn, &frame).unwrap());
            let decoded = codec::decode_text(vsn, &golden).unwrap();
            assert_eq!(decoded, frame, "{name} {suffix}");
            assert_eq!(decoded.kind(), kind, "{name}");
        }
    }
}

#[test]
fn binary_frames_match_their_golden_files() {
    for (name, frame, encode) in binary_samples() {
        let golden = check(&format!("{name}.hex"), &hex(&encode(&frame)));
        let decoded = codec::decode_binary(&unhex(&golden)).unwrap();
        assert_eq!(decoded, frame, "{name}");
        assert_eq!(decoded.broadcast_event().unwrap(), typing());
    }
}

#[test]
fn the_broadcast_frame_carries_the_event_golden_payload() {
    // The inner part of a broadcast is exactly the event's own golden JSON.
    let frame = Frame::broadcast(TOPIC, &typing());
    let text = codec::encode_text(Vsn::V2, &frame).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let event_golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/events/typing.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(value[4]["type"], "broadcast");
    assert_eq!(value[4]["event"], event_golden["event"]);
    assert_eq!(value[4]["payload"]["conversation_id"], event_golden["payload"]["conversation_id"]);
}
