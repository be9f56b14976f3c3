//! The console's idle rule in the browser: the agent's input (keys, pointer, focus) feeds the
//! protocol crate's sans-IO [`AgentIdleTracker`]; its timer and its status changes (`away` after
//! 30 minutes without input, `online` again on input after an automatic `away`) are carried out
//! here with a `Timeout` and `PUT /api/agents/me/status`.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use handoff_protocol::event::AgentStatus;
use handoff_protocol::timing::agent::{AgentIdleAction, AgentIdleTracker};

use super::engine::Engine;
use super::handles::Listener;
use super::now_ms;

/// The browser events that count as the agent's input.
const INPUTS: [&str; 5] = ["keydown", "pointerdown", "pointermove", "wheel", "focus"];

/// A running idle tracker; dropping it removes its listeners and its timer.
pub(crate) struct IdleAway {
    state: Rc<RefCell<State>>,
}

struct State {
    tracker: AgentIdleTracker,
    engine: Engine,
    /// The pending timer and its deadline.
    timer: Option<(u64, Timeout)>,
    listeners: Vec<Listener>,
}

impl IdleAway {
    /// Tracks the agent's input from now on, starting from `status`.
    pub(crate) fn start(engine: Engine, status: AgentStatus, away_after_ms: Option<u64>) -> Self {
        let mut tracker = AgentIdleTracker::new(now_ms(), status);
        if let Some(ms) = away_after_ms {
            tracker = tracker.with_away_after(ms);
        }
        let state = Rc::new(RefCell::new(State { tracker, engine, timer: None, listeners: Vec::new() }));
        if let Some(window) = web_sys::window() {
            let mut listeners = Vec::new();
            for kind in INPUTS {
                let weak = Rc::downgrade(&state);
                listeners.extend(Listener::new(&window, kind, move |_| {
                    update(&weak, |t| t.handle_input(now_ms()));
                }));
            }
            state.borrow_mut().listeners = listeners;
        }
        arm(&state);
        IdleAway { state }
    }

    /// The agent chose a status (a manual change is never overridden by input).
    pub(crate) fn status_chosen(&self, status: AgentStatus) {
        update(&Rc::downgrade(&self.state), |t| t.handle_status(now_ms(), status));
    }
}

/// Feeds the tracker, carries out its actions, and sets the timer for its next deadline.
fn update(weak: &Weak<RefCell<State>>, f: impl FnOnce(&mut AgentIdleTracker)) {
    let Some(state) = weak.upgrade() else { return };
    let changes: Vec<AgentStatus> = {
        let mut s = state.borrow_mut();
        f(&mut s.tracker);
        std::iter::from_fn(|| s.tracker.poll_action())
            .filter_map(|a| match a {
                AgentIdleAction::SetStatus(status) => Some(status),
                _ => None,
            })
            .collect()
    };
    for status in changes {
        let engine = state.borrow().engine.clone();
        super::spawn(async move {
            let body = ["{\"status\":\"", status.as_str(), "\"}"].concat();
            // A failed change is retried by the next input or deadline; nothing else to do.
            let _ = engine.rest("PUT", engine.url("/api/agents/me/status"), Some(body)).await;
        });
    }
    arm(&state);
}

/// Sets the timer for the tracker's next deadline. A pending timer due no later is kept (input
/// only moves the deadline later; the timer then finds nothing due and sets the next one), so
/// a stream of pointer moves does not churn timers.
fn arm(state: &Rc<RefCell<State>>) {
    let deadline = state.borrow().tracker.poll_timeout();
    let Some(at) = deadline else {
        state.borrow_mut().timer = None;
        return;
    };
    if state.borrow().timer.as_ref().is_some_and(|(due, _)| *due <= at) {
        return;
    }
    let delay = u32::try_from(at.saturating_sub(now_ms())).unwrap_or(u32::MAX);
    let weak = Rc::downgrade(state);
    let timeout = Timeout::new(delay, move || {
        if let Some(state) = weak.upgrade() {
            // This timer has fired: forget it before the tracker asks for the next one.
            drop(state.borrow_mut().timer.take());
        }
        update(&weak, |t| t.handle_timeout(now_ms()));
    });
    // Replacing the handle cancels a later timer.
    state.borrow_mut().timer = Some((at, timeout));
}
