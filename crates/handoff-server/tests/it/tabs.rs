//! Multi-tab customer presence (kept per tab, announced as the aggregate) and live
//! availability (`availability:changed` on `project:{id}:availability`).

use std::time::Duration;

use handoff_protocol::event::{AvailabilityChanged, PresenceState};
use handoff_protocol::phoenix::{ReplyStatus, Vsn};
use handoff_protocol::Event;
use handoff_server::hours::BusinessHours;
use handoff_server::service::now_ms;
use serde_json::json;

use crate::both_dbs;
use crate::harness::{Db, Socket, TestServer};

async fn report(s: &TestServer, vt: &str, c: &str, tab: Option<&str>, state: &str) {
    let mut body = json!({"state": state});
    if let Some(tab) = tab {
        body["tab"] = json!(tab);
    }
    let (st, v) = s.call("POST", &format!("/api/conversations/{c}/presence"), Some(vt), Some(body)).await;
    assert_eq!(st, 204, "{v}");
}

/// The presence states the agent's socket saw since the last call.
async fn seen(agent: &mut Socket) -> Vec<PresenceState> {
    agent
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::PresenceUpdated(p) => Some(p.state),
            _ => None,
        })
        .collect()
}

async fn presence_of(s: &TestServer, c: &str) -> String {
    let (st, v) = s.call("GET", &format!("/api/conversations/{c}"), Some(&s.agent1.0), None).await;
    assert_eq!(st, 200, "{v}");
    v["presence"].as_str().unwrap().to_owned()
}

// Two tabs of one visitor: closing one (its beacon) changes nothing agents see; a hidden tab's
// `idle` does not override a visible tab's `online`; the last tab closing makes it offline.
both_dbs!(presence_is_the_aggregate_of_the_tabs, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut agent = s.socket(Vsn::V2).await;
    agent.join_ok(&format!("realtime:conversation:{c}"), &s.agent1.0).await;
    agent.drain_frames().await;
    report(&s, &vt, &c, Some("tab-a"), "online").await;
    report(&s, &vt, &c, Some("tab-b"), "online").await;
    assert_eq!(seen(&mut agent).await, vec![], "already online since the conversation started");
    // Tab B is hidden: A is still in use.
    report(&s, &vt, &c, Some("tab-b"), "idle").await;
    assert_eq!(seen(&mut agent).await, vec![]);
    assert_eq!(presence_of(&s, &c).await, "online");
    // Tab A closes (beacon): B is left, hidden.
    report(&s, &vt, &c, Some("tab-a"), "offline").await;
    assert_eq!(seen(&mut agent).await, vec![PresenceState::Idle]);
    assert_eq!(presence_of(&s, &c).await, "idle");
    // A third tab opens, then B closes: still online, once.
    report(&s, &vt, &c, Some("tab-c"), "online").await;
    report(&s, &vt, &c, Some("tab-b"), "offline").await;
    assert_eq!(seen(&mut agent).await, vec![PresenceState::Online]);
    // Heartbeats that change nothing announce nothing.
    report(&s, &vt, &c, Some("tab-c"), "online").await;
    assert_eq!(seen(&mut agent).await, vec![]);
    report(&s, &vt, &c, Some("tab-c"), "offline").await;
    assert_eq!(seen(&mut agent).await, vec![PresenceState::Offline]);
    assert_eq!(presence_of(&s, &c).await, "offline");
    // A client without tab ids is one tab.
    report(&s, &vt, &c, None, "idle").await;
    report(&s, &vt, &c, None, "offline").await;
    assert_eq!(seen(&mut agent).await, vec![PresenceState::Idle, PresenceState::Offline]);
    // Bad tab ids are refused.
    for tab in ["", "a b", &"x".repeat(65)] {
        let (st, v) = s
            .call(
                "POST",
                &format!("/api/conversations/{c}/presence"),
                Some(&vt),
                Some(json!({"state": "online", "tab": tab})),
            )
            .await;
        assert_eq!(st, 422, "{tab:?}: {v}");
    }
});

// A tab whose heartbeats stopped (crashed, killed) expires on its own; the others still count.
both_dbs!(a_silent_tab_expires_alone, |s: TestServer| async move {
    let (vt, c) = s.conversation().await;
    let mut agent = s.socket(Vsn::V2).await;
    agent.join_ok(&format!("realtime:conversation:{c}"), &s.agent1.0).await;
    report(&s, &vt, &c, Some("visible"), "online").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    report(&s, &vt, &c, Some("hidden"), "idle").await;
    agent.drain_frames().await;
    // With a 200 ms timeout, only the visible tab is silent: the customer is idle.
    assert_eq!(s.svc.expire_presence(now_ms(), 200).await, 1);
    assert_eq!(seen(&mut agent).await, vec![PresenceState::Idle]);
    assert_eq!(s.svc.expire_presence(now_ms(), 200).await, 0, "nothing more to expire yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.svc.expire_presence(now_ms(), 200).await, 1);
    assert_eq!(seen(&mut agent).await, vec![PresenceState::Offline]);
    assert_eq!(s.svc.expire_presence(now_ms(), 200).await, 0);
});

async fn availability(sock: &mut Socket) -> Vec<AvailabilityChanged> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    sock.events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::AvailabilityChanged(a) => Some(a),
            _ => None,
        })
        .collect()
}

// A visitor without a conversation joins the project's availability channel: the current state
// at once, then every change of agent status, without reloading the session.
both_dbs!(availability_is_live, |s: TestServer| async move {
    let vt = s.visitor().await;
    let topic = format!("realtime:project:{}:availability", s.project);
    let mut visitor = s.socket(Vsn::V2).await;
    visitor.join_ok(&topic, &vt).await;
    let now = availability(&mut visitor).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!((now[0].agents_online, now[0].show_offline_form), (0, true));
    s.set_status(&s.agent1.0, "online").await;
    let got = availability(&mut visitor).await;
    assert_eq!(got, vec![AvailabilityChanged::new(s.project.clone(), 1, true)]);
    s.set_status(&s.agent2.0, "online").await;
    s.set_status(&s.agent1.0, "away").await;
    let got = availability(&mut visitor).await;
    assert_eq!(got.iter().map(|a| a.agents_online).collect::<Vec<_>>(), vec![2, 1]);
    s.set_status(&s.agent2.0, "offline").await;
    let got = availability(&mut visitor).await;
    assert_eq!(got, vec![AvailabilityChanged::new(s.project.clone(), 0, true)]);
    // An agent (v1 serializer) may listen too; a visitor of another project may not.
    let mut agent = s.socket(Vsn::V1).await;
    agent.join_ok(&topic, &s.agent1.0).await;
    assert_eq!(availability(&mut agent).await.len(), 1);
    let (other, _) = s.svc.create_project("Other", vec!["*".into()]).await.unwrap();
    let (st, v) =
        s.call("POST", "/api/widget/session", None, Some(json!({"project_key": other.public_key}))).await;
    assert_eq!(st, 200);
    let stranger = v["visitor_token"].as_str().unwrap().to_owned();
    let mut sock = s.socket(Vsn::V2).await;
    let (_, reply) = sock.join(&topic, Some(&stranger), false).await;
    assert_eq!(reply.reply().unwrap().status, ReplyStatus::Error);
    // A visitor may not broadcast on it.
    let mut frame = handoff_protocol::phoenix::Frame::broadcast(
        &topic,
        &Event::AvailabilityChanged(AvailabilityChanged::new(s.project.clone(), 5, true)),
    );
    frame.r#ref = Some(visitor.r#ref());
    visitor.send(&frame).await;
    assert!(availability(&mut agent).await.is_empty());
});

// The jobs announce business hours opening and closing.
both_dbs!(business_hours_boundaries_are_announced, |s: TestServer| async move {
    s.set_status(&s.agent1.0, "online").await;
    let vt = s.visitor().await;
    let mut visitor = s.socket(Vsn::V2).await;
    visitor.join_ok(&format!("realtime:project:{}:availability", s.project), &vt).await;
    availability(&mut visitor).await;
    // Mondays 09:00-10:00 UTC; 2024-01-01 was a Monday.
    let hours = BusinessHours::parse("mon 09:00-10:00", 0).unwrap();
    s.svc.store().set_business_hours(&s.project, Some(&hours)).await.unwrap();
    let (nine_thirty, ten_thirty) = (1_704_101_400_000, 1_704_105_000_000);
    assert_eq!(s.svc.announce_business_hours(nine_thirty, nine_thirty + 60_000).await, 0);
    assert!(availability(&mut visitor).await.is_empty());
    assert_eq!(s.svc.announce_business_hours(nine_thirty, ten_thirty).await, 1);
    let got = availability(&mut visitor).await;
    assert_eq!(got, vec![AvailabilityChanged::new(s.project.clone(), 1, false)]);
    assert_eq!(s.svc.announce_business_hours(ten_thirty - 3_600_000 * 24 * 7, nine_thirty).await, 1);
    assert!(availability(&mut visitor).await[0].within_business_hours);
    // The job itself: nothing on its first run on a node (no previous run to compare with).
    assert_eq!(s.svc.business_hours_tick(now_ms()).await, 0);
});
