//! The SDK in headless Chromium against a real `handoff-server`, started by `cargo xtask test`
//! (see `crates/xtask/src/web.rs`), which passes its URL and keys at compile time. The customer's
//! socket goes through the xtask's switchable TCP proxy (`HANDOFF_TEST_CONTROL`: `/drop` cuts every
//! socket, `/block` refuses new ones, `/unblock`, `/stall` holds what the server sends while the
//! socket stays up, `/unstall`), while REST goes straight to the server.
//! Without that environment the tests pass without doing anything (a plain `cargo test` of the
//! wasm target has no server).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_sign_loss, missing_docs)]

use std::cell::RefCell;
use std::rc::Rc;

use handoff_client::{connect_supabase, counts_as_unread, AgentClient, HandoffClient};
use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

struct Env {
    base: &'static str,
    ws: &'static str,
    control: &'static str,
    key: &'static str,
    email: &'static str,
    password: &'static str,
}

fn env() -> Option<Env> {
    Some(Env {
        base: option_env!("HANDOFF_TEST_BASE")?,
        ws: option_env!("HANDOFF_TEST_WS")?,
        control: option_env!("HANDOFF_TEST_CONTROL")?,
        key: option_env!("HANDOFF_TEST_PROJECT_KEY")?,
        email: option_env!("HANDOFF_TEST_AGENT_EMAIL")?,
        password: option_env!("HANDOFF_TEST_AGENT_PASSWORD")?,
    })
}

fn now() -> f64 {
    web_sys::window().unwrap().performance().unwrap().now()
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

async fn wait(what: &str, timeout_ms: f64, mut cond: impl FnMut() -> bool) {
    let start = now();
    while !cond() {
        assert!(now() - start < timeout_ms, "timed out waiting for {what}");
        sleep(25).await;
    }
}

async fn ok(p: Promise) -> JsValue {
    match JsFuture::from(p).await {
        Ok(v) => v,
        Err(e) => panic!("promise rejected: {e:?}"),
    }
}

async fn err(p: Promise) -> (String, String) {
    let e = JsFuture::from(p).await.expect_err("promise should reject");
    (get_str(&e, "code"), get_str(&e, "message"))
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap()
}

fn get_str(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_default()
}

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

async fn control(env: &Env, path: &str) {
    let mut url = String::from(env.control);
    url.push_str(path);
    let w = web_sys::window().unwrap();
    JsFuture::from(w.fetch_with_str(&url)).await.unwrap();
}

/// Collects the payloads of one event.
fn collect(
    on: impl Fn(String, js_sys::Function) -> js_sys::Function,
    event: &str,
) -> Rc<RefCell<Vec<JsValue>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let f = Closure::<dyn FnMut(JsValue)>::new(move |p: JsValue| s.borrow_mut().push(p));
    let _off = on(event.to_owned(), f.into_js_value().unchecked_into());
    seen
}

fn bodies(messages: &RefCell<Vec<JsValue>>) -> Vec<String> {
    messages.borrow().iter().map(|p| get_str(&get(p, "message"), "body")).collect()
}

fn has(messages: &RefCell<Vec<JsValue>>, body: &str) -> bool {
    bodies(messages).iter().any(|b| b == body)
}

/// Every message once, in strictly increasing `seq`.
fn assert_exactly_once_in_order(messages: &RefCell<Vec<JsValue>>, expected: &[&str]) {
    let msgs = messages.borrow();
    let mut ids: Vec<String> = msgs.iter().map(|p| get_str(&get(p, "message"), "id")).collect();
    let seqs: Vec<f64> = msgs.iter().map(|p| get(&get(p, "message"), "seq").as_f64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a message arrived twice");
    let mut got = bodies(messages);
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[wasm_bindgen_test]
async fn errors_carry_code_and_message() {
    let Some(env) = env() else { return };
    let agent = AgentClient::new(&obj(&[("baseUrl", env.base.into())])).unwrap();
    let (code, message) = err(agent.login(env.email.to_owned(), "wrong password".to_owned())).await;
    assert_eq!(code, "unauthorized");
    assert!(!message.is_empty());
    let customer = HandoffClient::new(&obj(&[
        ("baseUrl", env.base.into()),
        ("projectKey", env.key.into()),
        ("storage", JsValue::NULL),
    ]))
    .unwrap();
    assert_eq!(err(customer.send("hi".into())).await.0, "not_ready");
    ok(customer.start()).await;
    let (code, _) = err(customer.send_offline_message(&obj(&[
        ("name", "Dana".into()),
        ("email", "not-an-email".into()),
        ("message", "call me".into()),
    ])))
    .await;
    assert_eq!(code, "validation_failed");
    ok(customer.send_offline_message(&obj(&[
        ("name", "Dana".into()),
        ("email", "dana@example.com".into()),
        ("message", "call me".into()),
    ])))
    .await;
    customer.close();
    assert_eq!(customer.connection_state(), "closed");
}

#[wasm_bindgen_test]
async fn no_message_lost_or_doubled_across_drops_and_polling() {
    let Some(env) = env() else { return };
    control(&env, "/unblock").await;

    // The agent, straight to the server.
    let agent = AgentClient::new(&obj(&[("baseUrl", env.base.into())])).unwrap();
    ok(agent.login(env.email.to_owned(), env.password.to_owned())).await;
    ok(agent.set_status("online")).await;

    // The customer, whose socket goes through the proxy.
    let t0 = now();
    let customer = HandoffClient::new(&obj(&[
        ("baseUrl", env.base.into()),
        ("projectKey", env.key.into()),
        ("storage", JsValue::NULL),
        ("realtimeUrl", env.ws.into()),
    ]))
    .unwrap();
    let got = collect(|e, f| customer.on(e, f), "message:new");
    let states = collect(|e, f| customer.on(e, f), "connection");
    ok(customer.start()).await;
    let conv = ok(customer.start_conversation(Some("hello".into()))).await;
    let conv_id = get_str(&conv, "id");
    wait("the customer's channel joined", 10_000.0, || customer.connection_state() == "connected").await;
    let joined_ms = now() - t0;
    let mut report = String::from("/report?name=customer_start_to_joined_ms&value=");
    report.push_str(&(joined_ms.round() as u64).to_string());
    control(&env, &report).await;

    // Hand off: assigned to our (online, free) agent, or queued and claimed.
    let handed = ok(customer.request_handoff()).await;
    if get_str(&handed, "status") != "assigned" {
        ok(agent.claim(&conv_id)).await;
    }
    let agent_got = collect(|e, f| agent.on(e, f), "message:new");
    let agent_typing = collect(|e, f| agent.on(e, f), "typing");
    let _unfollow = agent.subscribe_conversation(&conv_id);
    wait("the agent's history", 10_000.0, || has(&agent_got, "hello")).await;

    // Send and receive.
    ok(agent.send(&conv_id, "a1".into())).await;
    wait("a1 over the socket", 5_000.0, || has(&got, "a1")).await;
    let stored = ok(customer.send("c1".into())).await;
    assert_eq!(get_str(&stored, "body"), "c1");
    assert!(!get_str(&stored, "client_msg_id").is_empty());
    wait("c1 at the agent", 5_000.0, || has(&agent_got, "c1")).await;
    customer.typing();
    wait("the customer typing at the agent", 5_000.0, || {
        agent_typing.borrow().iter().any(|t| get(t, "is_typing").as_bool() == Some(true))
    })
    .await;

    // The socket drops; a message sent meanwhile arrives by catch-up after the reconnect.
    control(&env, "/drop").await;
    ok(agent.send(&conv_id, "a2".into())).await;
    wait("reconnecting", 5_000.0, || {
        states.borrow().iter().any(|s| s.as_string().as_deref() == Some("reconnecting"))
    })
    .await;
    wait("reconnected", 10_000.0, || customer.connection_state() == "connected").await;
    wait("a2 after the reconnect", 5_000.0, || has(&got, "a2")).await;

    // The socket endpoint is blocked: the client falls back to long-polling.
    control(&env, "/block").await;
    control(&env, "/drop").await;
    wait("polling", 20_000.0, || customer.connection_state() == "polling").await;
    ok(agent.send(&conv_id, "a3".into())).await;
    wait("a3 by long-poll", 10_000.0, || has(&got, "a3")).await;
    ok(customer.send("c2".into())).await;
    wait("c2 at the agent", 5_000.0, || has(&agent_got, "c2")).await;

    // The socket is back; the browser's `online` makes the client probe at once.
    control(&env, "/unblock").await;
    web_sys::window().unwrap().dispatch_event(&web_sys::Event::new("online").unwrap()).unwrap();
    wait("back on the socket", 10_000.0, || customer.connection_state() == "connected").await;
    ok(agent.send(&conv_id, "a4".into())).await;
    wait("a4 over the socket again", 5_000.0, || has(&got, "a4")).await;
    sleep(300).await;

    let all = ["hello", "a1", "c1", "a2", "a3", "c2", "a4"];
    assert_exactly_once_in_order(&got, &all);
    assert_exactly_once_in_order(&agent_got, &all);
    let seen: Vec<String> = states.borrow().iter().filter_map(JsValue::as_string).collect();
    assert!(seen.iter().any(|s| s == "polling"), "{seen:?}");

    customer.close();
    agent.close();
    assert_eq!(customer.connection_state(), "closed");
}

/// The Supabase-style API (`connectSupabase`, `RealtimeChannel`) speaks the same frames, so it is
/// tested against our own server: a private channel joined with the visitor's token, a broadcast
/// received, a refused join reported.
#[wasm_bindgen_test]
async fn realtime_channel_api_on_our_server() {
    let Some(env) = env() else { return };
    let customer = HandoffClient::new(&obj(&[
        ("baseUrl", env.base.into()),
        ("projectKey", env.key.into()),
        ("storage", JsValue::NULL),
    ]))
    .unwrap();
    let session = ok(customer.start()).await;
    let conv = ok(customer.start_conversation(None)).await;
    let token = get_str(&session, "visitor_token");
    let rt =
        connect_supabase(env.base, env.key, &obj(&[("private", true.into()), ("accessToken", token.into())]));
    let mut name = String::from("conversation:");
    name.push_str(&get_str(&conv, "id"));
    let channel = rt.channel(name);
    let got = collect(|e, f| channel.on(e, f), "message:new");
    let errors = collect(|e, f| rt.on(e, f), "error");
    channel.subscribe();
    wait("the channel joined", 10_000.0, || rt.connection_state() == "connected").await;
    ok(customer.send("over a RealtimeChannel".into())).await;
    wait("the broadcast", 5_000.0, || has(&got, "over a RealtimeChannel")).await;
    let refused = rt.channel("agent:somebody-else".into());
    refused.subscribe();
    wait("the refused join", 5_000.0, || !errors.borrow().is_empty()).await;
    assert_eq!(get_str(&errors.borrow()[0], "code"), "join_failed");
    assert_eq!(get_str(&errors.borrow()[0], "channel"), "agent:somebody-else");
    channel.unsubscribe();
    rt.close();
    customer.close();
}

/// A customer on the proxied socket with a conversation held by the test agent; returns the
/// clients, the conversation id and the customer's `message:new` and `connection` payloads.
async fn held_conversation(
    env: &Env,
    first: &str,
    options: &[(&str, JsValue)],
) -> (AgentClient, HandoffClient, String, Rc<RefCell<Vec<JsValue>>>, Rc<RefCell<Vec<JsValue>>>) {
    control(env, "/unblock").await;
    control(env, "/unstall").await;
    let agent = AgentClient::new(&obj(&[("baseUrl", env.base.into())])).unwrap();
    ok(agent.login(env.email.to_owned(), env.password.to_owned())).await;
    ok(agent.set_status("online")).await;
    let mut opts = vec![
        ("baseUrl", env.base.into()),
        ("projectKey", env.key.into()),
        ("storage", JsValue::NULL),
        ("realtimeUrl", env.ws.into()),
    ];
    opts.extend(options.iter().cloned());
    let customer = HandoffClient::new(&obj(&opts)).unwrap();
    let got = collect(|e, f| customer.on(e, f), "message:new");
    let states = collect(|e, f| customer.on(e, f), "connection");
    ok(customer.start()).await;
    let conv = ok(customer.start_conversation(Some(first.to_owned()))).await;
    let conv_id = get_str(&conv, "id");
    wait("the customer's channel joined", 10_000.0, || customer.connection_state() == "connected").await;
    let handed = ok(customer.request_handoff()).await;
    if get_str(&handed, "status") != "assigned" {
        ok(agent.claim(&conv_id)).await;
    }
    let _unfollow = agent.subscribe_conversation(&conv_id);
    ok(agent.send(&conv_id, "live".into())).await;
    wait("a live message over the socket", 5_000.0, || has(&got, "live")).await;
    (agent, customer, conv_id, got, states)
}

/// A broadcast lost on the way (the proxy holds everything the server sends; the socket stays
/// up, so no reconnect catches up) is shown by the periodic catch-up within the interval (2 s
/// here, through the `catchUpIntervalMs` option; 60 s by default); the held frames that arrive
/// late show nothing twice.
#[wasm_bindgen_test]
async fn a_lost_broadcast_is_shown_within_the_catch_up_interval() {
    let Some(env) = env() else { return };
    let (agent, customer, conv_id, got, states) =
        held_conversation(&env, "is anyone there?", &[("catchUpIntervalMs", 2_000.into())]).await;
    let changes_before = states.borrow().len();
    control(&env, "/stall").await;
    let sent_at = now();
    ok(agent.send(&conv_id, "the last word".into())).await;
    wait("the lost message, by catch-up", 2_000.0 + 3_000.0, || has(&got, "the last word")).await;
    let took = now() - sent_at;
    assert_eq!(customer.connection_state(), "connected", "caught up without a reconnect");
    assert_eq!(states.borrow().len(), changes_before, "no connection change: {:?}", states.borrow());
    control(&env, "/unstall").await;
    sleep(500).await;
    assert_exactly_once_in_order(&got, &["is anyone there?", "live", "the last word"]);
    let mut report = String::from("/report?name=lost_broadcast_shown_ms&value=");
    report.push_str(&(took.round() as u64).to_string());
    control(&env, &report).await;
    ok(agent.resolve(&conv_id)).await;
    customer.close();
    agent.close();
}

/// With the default 60 s interval, the page becoming visible catches up at once.
#[wasm_bindgen_test]
async fn becoming_visible_shows_a_lost_broadcast_at_once() {
    let Some(env) = env() else { return };
    let (agent, customer, conv_id, got, _) = held_conversation(&env, "hello from a tab", &[]).await;
    control(&env, "/stall").await;
    ok(agent.send(&conv_id, "sent while hidden".into())).await;
    sleep(500).await;
    assert!(!has(&got, "sent while hidden"), "the proxy held the broadcast");
    let doc = web_sys::window().unwrap().document().unwrap();
    doc.dispatch_event(&web_sys::Event::new("visibilitychange").unwrap()).unwrap();
    wait("the lost message after visibilitychange", 3_000.0, || has(&got, "sent while hidden")).await;
    control(&env, "/unstall").await;
    sleep(500).await;
    assert_exactly_once_in_order(&got, &["hello from a tab", "live", "sent while hidden"]);
    ok(agent.resolve(&conv_id)).await;
    customer.close();
    agent.close();
}

/// The console counts unread messages live with `countsAsUnread`, the SDK's export of the
/// protocol rule the server's inbox counts with: the same answer for every pair.
#[wasm_bindgen_test]
fn the_console_counts_unread_with_the_servers_rule() {
    use handoff_client::handoff_protocol::event::AuthorKind;
    use handoff_client::handoff_protocol::unread::{counts_as_unread as rule, AUTHOR_KINDS};
    for author in AUTHOR_KINDS {
        for reader in [AuthorKind::Agent, AuthorKind::Customer] {
            assert_eq!(counts_as_unread(author.as_str(), reader.as_str()), rule(author, reader));
        }
    }
    // The mixed sequence: customer, bot, another agent, customer; an agent reader counts 2.
    let seq = ["customer", "bot", "agent", "customer"];
    assert_eq!(seq.iter().filter(|a| counts_as_unread(a, "agent")).count(), 2);
    assert!(!counts_as_unread("robot", "agent"));
}
