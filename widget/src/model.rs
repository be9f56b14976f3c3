//! The widget's view model: what the chat window shows, from the events the client emits. Pure
//! (no DOM, no clock), so it is tested natively; `ui.rs` renders it.

use handoff_protocol::event::ConversationStatus;
pub use handoff_protocol::ids::decimal;

/// Which body the chat window shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// The session is not there yet (the launcher stays hidden).
    Loading,
    /// The chat: greeting, messages, composer.
    Chat,
    /// The offline form: no agent online, or outside business hours.
    OfflineForm,
    /// The offline form was sent.
    OfflineSent,
}

/// Where an own message stands before the server has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// On its way (shown "sending").
    Sending,
    /// Refused for good: shown with retry and discard.
    Failed,
}

/// What the view does with an own message's bubble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BubbleChange {
    /// Add a new bubble.
    Add,
    /// Update the existing bubble (found by `client_msg_id`).
    Update,
}

/// The widget's state.
#[derive(Clone, Debug)]
#[allow(clippy::struct_excessive_bools)] // independent facts the view shows, not states
pub struct Model {
    /// Which body is shown.
    pub screen: Screen,
    /// Whether the chat window is open (else only the launcher shows).
    pub open: bool,
    /// The conversation's status, once there is one.
    pub status: Option<ConversationStatus>,
    /// The assigned agent's name.
    pub agent: Option<String>,
    /// `(position, queue_length)` while queued.
    pub position: Option<(u32, u32)>,
    /// The highest `seq` the visitor has seen with the window open.
    pub seen_seq: u64,
    /// Agent and bot messages that arrived after `seen_seq`, while the window was closed.
    pub unread: u32,
    /// The connection state name the client reports.
    pub connection: String,
    /// Who is typing (agent or bot), if anyone.
    pub typing: Option<String>,
    /// No agent can take a chat now (none online, or outside business hours).
    pub agents_away: bool,
    /// A bot answers new conversations.
    pub bot: bool,
    /// Own messages the server has not confirmed, by `client_msg_id`, oldest first: a
    /// confirmed message (`message:new`) replaces the bubble with its `client_msg_id`, never one
    /// with the same text.
    pub outgoing: Vec<(String, Outgoing)>,
    /// The conversation has its satisfaction rating (given here, in another tab, or before a
    /// reload): the rating prompt is never shown again for it.
    pub rated: bool,
    /// The server sends email: "Email transcript" is on offer.
    pub email: bool,
    /// The highest `seq` an agent has read (read receipts).
    pub read_seq: u64,
    /// The page's tab is hidden (`document.hidden`).
    pub hidden: bool,
    /// Agent and bot messages not seen yet because the window was minimized or the tab hidden:
    /// the page title shows the count until the visitor sees them.
    pub unseen: u32,
    /// When (ms) the last sound played: at most one in [`SOUND_GAP_MS`].
    pub sounded_at: f64,
}

/// The shortest time between two sounds (a burst of messages chimes once).
pub const SOUND_GAP_MS: f64 = 2_000.0;

impl Default for Model {
    fn default() -> Self {
        Model {
            screen: Screen::Loading,
            open: false,
            status: None,
            agent: None,
            position: None,
            seen_seq: 0,
            unread: 0,
            connection: "idle".to_owned(),
            typing: None,
            agents_away: false,
            bot: false,
            outgoing: Vec::new(),
            rated: false,
            email: false,
            read_seq: 0,
            hidden: false,
            unseen: 0,
            sounded_at: f64::NEG_INFINITY,
        }
    }
}

impl Model {
    /// The session started. With no agent available (`agents_away`), a new visitor gets the
    /// offline form, unless a `bot` answers: then the chat opens, and the form comes when the
    /// visitor asks for a human. A conversation to continue opens the chat, unless it waits in
    /// a queue nobody attends: then the form, with the chat one click away.
    pub fn started(
        &mut self,
        status: Option<ConversationStatus>,
        agent: Option<String>,
        agents_away: bool,
        bot: bool,
    ) {
        self.status = status;
        self.agent = agent;
        self.agents_away = agents_away;
        self.bot = bot;
        self.screen = if self.wants_form() { Screen::OfflineForm } else { Screen::Chat };
    }

    /// Whether the offline form should be on offer instead of the chat: nobody can chat (no
    /// agent, no bot, no conversation), or the visitor waits in a queue nobody attends.
    fn wants_form(&self) -> bool {
        !self.can_chat() || self.unattended()
    }

    /// Queued while no agent is available: the visitor is told so and offered the form,
    /// never left waiting silently.
    pub fn unattended(&self) -> bool {
        self.agents_away && self.status == Some(ConversationStatus::Queued)
    }

    /// Live availability (`availability:changed`): when nobody can take a chat any more, the
    /// chat gives way to the offline form (as at page load); when an agent comes online, the
    /// form gives way to the chat. A sent form's confirmation stays.
    pub fn availability_changed(&mut self, agents_away: bool) {
        self.agents_away = agents_away;
        match self.screen {
            Screen::Chat if self.wants_form() => self.screen = Screen::OfflineForm,
            Screen::OfflineForm if !agents_away => self.screen = Screen::Chat,
            _ => {}
        }
    }

    /// Whether the chat is on offer (else only the offline form).
    pub fn can_chat(&self) -> bool {
        !self.agents_away || self.bot || self.status.is_some()
    }

    /// "Talk to a human": `true` when the server should be asked; `false` when nobody is there
    /// and the offline form is shown instead.
    pub fn human_requested(&mut self) -> bool {
        if self.agents_away {
            self.screen = Screen::OfflineForm;
            return false;
        }
        true
    }

    /// A message arrived (live or from the history). Returns whether the badge changed.
    pub fn message(&mut self, seq: u64, from_customer: bool) -> bool {
        if self.open {
            self.seen_seq = self.seen_seq.max(seq);
            return false;
        }
        if from_customer || seq <= self.seen_seq {
            return false;
        }
        self.unread += 1;
        true
    }

    /// An agent's or the bot's message `seq` arrived at `now` (ms): counts it as unseen while
    /// the window is minimized or the tab hidden, and says whether to play the sound (`sound`:
    /// the project's setting; once per [`SOUND_GAP_MS`]).
    pub fn attention(&mut self, seq: u64, now: f64, sound: bool) -> bool {
        if (self.open && !self.hidden) || seq <= self.seen_seq {
            return false;
        }
        self.unseen += 1;
        if !sound || now - self.sounded_at < SOUND_GAP_MS {
            return false;
        }
        self.sounded_at = now;
        true
    }

    /// The window is open in a visible tab: everything is seen (the title comes back).
    pub fn looked(&mut self) {
        if self.open && !self.hidden {
            self.unseen = 0;
        }
    }

    /// An own message is on its way (`message:queued`: sent, retried, or restored after a
    /// reload).
    pub fn queued(&mut self, client_msg_id: &str) -> BubbleChange {
        if let Some((_, state)) = self.outgoing.iter_mut().find(|(id, _)| id == client_msg_id) {
            *state = Outgoing::Sending;
            return BubbleChange::Update;
        }
        self.outgoing.push((client_msg_id.to_owned(), Outgoing::Sending));
        BubbleChange::Add
    }

    /// The server refused an own message for good (`message:failed`).
    pub fn send_failed(&mut self, client_msg_id: &str) -> BubbleChange {
        if let Some((_, state)) = self.outgoing.iter_mut().find(|(id, _)| id == client_msg_id) {
            *state = Outgoing::Failed;
            return BubbleChange::Update;
        }
        // Restored as failed after a reload.
        self.outgoing.push((client_msg_id.to_owned(), Outgoing::Failed));
        BubbleChange::Add
    }

    /// An own message arrived from the server: whether it confirms a bubble shown as
    /// sending or failed (matched by `client_msg_id` only; another tab's message with the same
    /// text confirms nothing here).
    pub fn confirmed(&mut self, client_msg_id: Option<&str>) -> bool {
        let Some(cid) = client_msg_id else { return false };
        let Some(k) = self.outgoing.iter().position(|(id, _)| id == cid) else { return false };
        self.outgoing.remove(k);
        true
    }

    /// An own message was discarded: whether its bubble goes.
    pub fn discarded(&mut self, client_msg_id: &str) -> bool {
        let before = self.outgoing.len();
        self.outgoing.retain(|(id, _)| id != client_msg_id);
        before != self.outgoing.len()
    }

    /// The window opened: everything so far is seen. Returns the `seq` to remember.
    pub fn opened(&mut self, last_seq: u64) -> u64 {
        self.open = true;
        self.unread = 0;
        self.seen_seq = self.seen_seq.max(last_seq);
        self.seen_seq
    }

    /// The conversation's status changed.
    pub fn status_changed(&mut self, status: ConversationStatus) {
        self.status = Some(status);
        if status != ConversationStatus::Queued {
            self.position = None;
        }
        if matches!(
            status,
            ConversationStatus::Bot | ConversationStatus::Queued | ConversationStatus::Resolved
        ) {
            self.agent = None;
        }
        if status != ConversationStatus::Assigned {
            self.typing = None;
        }
        if self.screen == Screen::Chat && self.unattended() {
            self.screen = Screen::OfflineForm;
        } else if self.screen == Screen::OfflineForm && status == ConversationStatus::Assigned {
            self.screen = Screen::Chat; // someone took it after all: show them
        }
    }

    /// Whether the rating prompt shows: in the chat of a resolved conversation not rated yet.
    pub fn asks_rating(&self) -> bool {
        self.resolved_chat() && !self.rated
    }

    /// Whether "Email transcript" is offered: the server sends email and the chat shows a
    /// resolved conversation.
    pub fn offers_transcript(&self) -> bool {
        self.email && self.resolved_chat()
    }

    fn resolved_chat(&self) -> bool {
        self.screen == Screen::Chat && self.status == Some(ConversationStatus::Resolved)
    }

    /// A read receipt (`message:read`, or the session's `agent_read_seq`): whether the highest
    /// read `seq` moved (it never moves back).
    pub fn read(&mut self, seq: u64) -> bool {
        let moved = seq > self.read_seq;
        self.read_seq = self.read_seq.max(seq);
        moved
    }

    /// Whether an agent has read the message at `seq` ("Seen" goes under the visitor's last
    /// message read).
    pub fn is_read(&self, seq: u64) -> bool {
        seq <= self.read_seq
    }

    /// Whether the "talk to a human" action is offered.
    pub fn offers_human(&self) -> bool {
        self.screen == Screen::Chat && matches!(self.status, None | Some(ConversationStatus::Bot))
    }

    /// The line under the title: a catalog key (see [`crate::i18n`]) and its placeholders.
    pub fn status_line(&self) -> Line {
        let line = |key| Line { key, args: Vec::new() };
        match (self.status, &self.agent, self.position) {
            (Some(ConversationStatus::Assigned), Some(name), _) => {
                Line { key: "chatting", args: vec![("{name}", name.clone())] }
            }
            (Some(ConversationStatus::Assigned), None, _) => line("agent_joined"),
            (Some(ConversationStatus::Queued), _, _) if self.agents_away => line("nobody"),
            (Some(ConversationStatus::Queued), _, Some((pos, len))) => Line {
                key: "queue",
                args: vec![("{pos}", decimal(pos.into())), ("{len}", decimal(len.into()))],
            },
            (Some(ConversationStatus::Queued), _, None) => line("waiting"),
            (Some(ConversationStatus::Resolved), _, _) => line("resolved_line"),
            _ if self.screen == Screen::OfflineForm || self.screen == Screen::OfflineSent => line("away"),
            _ => line("bot_line"),
        }
    }

    /// The connection notice's catalog key, if one should show: nothing while connecting or
    /// connected.
    pub fn connection_notice(&self) -> Option<&'static str> {
        match self.connection.as_str() {
            "reconnecting" => Some("reconnecting"),
            "polling" => Some("polling"),
            _ => None,
        }
    }

    /// The badge text: empty for none, `9+` above nine.
    pub fn badge(&self) -> String {
        match self.unread {
            0 => String::new(),
            n @ 1..=9 => decimal(n.into()),
            _ => "9+".to_owned(),
        }
    }
}

/// A text of the catalog ([`crate::i18n`]): its key and what fills its placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The catalog key.
    pub key: &'static str,
    /// `("{name}", value)` pairs.
    pub args: Vec<(&'static str, String)>,
}

/// A decimal written by [`decimal`](handoff_protocol::ids::decimal) (only ASCII digits, no sign, no overflow), else `None`.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// An accent colour from the project config if it is `#rgb` or `#rrggbb`, else the default: the
/// value goes into a stylesheet, so nothing else may pass.
pub fn safe_color(color: &str) -> &str {
    let hex = color.strip_prefix('#').unwrap_or("");
    if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        color
    } else {
        "#2563eb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line in English, its placeholders filled (as the view does in any language).
    fn english(line: &Line) -> String {
        line.args.iter().fold(crate::i18n::en(line.key), |t, (k, v)| t.replace(k, v))
    }

    #[test]
    fn unseen_messages_count_while_minimized_or_hidden_and_chime_at_most_every_two_seconds() {
        let mut m = Model { open: true, ..Model::default() };
        assert!(!m.attention(1, 0.0, true), "open in a visible tab: seen");
        assert_eq!(m.unseen, 0);
        m.hidden = true;
        assert!(m.attention(2, 1_000.0, true), "hidden tab: sound");
        assert!(!m.attention(3, 2_000.0, true), "within 2 s: counted, no second sound");
        assert!(m.attention(4, 3_000.0, true));
        assert_eq!(m.unseen, 3);
        m.looked();
        assert_eq!(m.unseen, 3, "still hidden");
        m.hidden = false;
        m.looked();
        assert_eq!(m.unseen, 0, "seen: the title comes back");
        m.open = false;
        assert!(!m.attention(5, 10_000.0, false), "sound off");
        assert_eq!(m.unseen, 1, "the title counts anyway");
        m.seen_seq = 9;
        assert!(!m.attention(9, 20_000.0, true), "already seen (a replay)");
        assert_eq!(m.unseen, 1);
    }

    #[test]
    fn unread_counts_only_agent_messages_after_the_last_seen_while_closed() {
        let mut m = Model { seen_seq: 3, ..Model::default() };
        assert!(!m.message(2, false), "history already seen");
        assert!(!m.message(4, true), "own message");
        assert!(m.message(5, false));
        assert!(m.message(6, false));
        assert_eq!(m.badge(), "2");
        assert_eq!(m.opened(6), 6);
        assert_eq!(m.badge(), "");
        assert!(!m.message(7, false), "seen while open");
        assert_eq!(m.seen_seq, 7);
        m.open = false;
        for seq in 8..20 {
            m.message(seq, false);
        }
        assert_eq!(m.badge(), "9+");
    }

    #[test]
    fn rating_prompt_once_in_a_resolved_chat() {
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Assigned), Some("Ann".into()), false, false);
        assert!(!m.asks_rating());
        m.email = true;
        assert!(!m.offers_transcript());
        m.status_changed(ConversationStatus::Resolved);
        assert!(m.asks_rating());
        assert!(m.offers_transcript());
        m.rated = true;
        assert!(!m.asks_rating(), "rated: never asked again");
        assert!(m.offers_transcript());
        m.status_changed(ConversationStatus::Bot);
        m.status_changed(ConversationStatus::Queued);
        m.status_changed(ConversationStatus::Resolved);
        assert!(!m.asks_rating(), "once per conversation");
        m.email = false;
        assert!(!m.offers_transcript());
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Resolved), None, true, false);
        m.screen = Screen::OfflineForm;
        assert!(!m.asks_rating(), "only in the chat");
    }

    #[test]
    fn seen_goes_under_the_last_message_read_and_never_back() {
        let mut m = Model::default();
        // Where "Seen" goes: the last of the visitor's messages (by seq) that is read.
        let seen = |m: &Model| [2, 5, 9].into_iter().rev().find(|&s| m.is_read(s));
        assert_eq!(seen(&m), None);
        assert!(m.read(5));
        assert_eq!(seen(&m), Some(5));
        assert!(!m.read(3), "a lower seq does not move it back");
        assert_eq!(m.read_seq, 5);
        assert_eq!(seen(&m), Some(5));
        assert!(m.read(8));
        assert_eq!(seen(&m), Some(5), "no message of theirs between 5 and 8");
        assert!(m.read(12));
        assert_eq!(seen(&m), Some(9));
    }

    #[test]
    fn offline_form_only_without_a_conversation_to_continue() {
        let mut m = Model::default();
        m.started(None, None, true, false);
        assert_eq!(m.screen, Screen::OfflineForm);
        assert!(!m.offers_human());
        assert!(!m.can_chat());
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Assigned), None, true, false);
        assert_eq!(m.screen, Screen::Chat);
        // (A conversation queued while nobody is there gets the form: see
        // `nobody_waits_silently_in_an_unattended_queue`.)
        let mut m = Model::default();
        m.started(None, None, false, false);
        assert!(m.offers_human());
        assert!(m.human_requested(), "agents are there: ask the server");
    }

    #[test]
    fn with_a_bot_the_chat_opens_and_the_form_comes_when_a_human_is_asked_for() {
        let mut m = Model::default();
        m.started(None, None, true, true);
        assert_eq!(m.screen, Screen::Chat);
        assert!(m.offers_human());
        assert!(!m.human_requested(), "nobody to hand over to");
        assert_eq!(m.screen, Screen::OfflineForm);
        assert!(m.can_chat(), "the form offers the way back to the bot");
    }

    #[test]
    fn status_line_follows_the_conversation() {
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Bot), None, false, false);
        assert!(m.offers_human());
        m.status_changed(ConversationStatus::Queued);
        assert_eq!(english(&m.status_line()), "Waiting for an agent");
        m.position = Some((2, 3));
        assert_eq!(english(&m.status_line()), "Waiting for an agent: you are number 2 of 3 in the queue");
        assert!(!m.offers_human());
        m.agent = Some("Ada".into());
        m.status_changed(ConversationStatus::Assigned);
        assert_eq!(m.position, None);
        assert_eq!(english(&m.status_line()), "You are chatting with Ada");
        m.typing = Some("Ada".into());
        m.status_changed(ConversationStatus::Resolved);
        assert_eq!((m.agent.as_deref(), m.typing.as_deref()), (None, None));
        assert!(english(&m.status_line()).starts_with("This conversation is resolved"));
    }

    #[test]
    fn connection_notice_only_when_it_matters() {
        let mut m = Model { connection: "connecting".into(), ..Model::default() };
        assert_eq!(m.connection_notice(), None, "the first connect is not news");
        m.connection = "reconnecting".into();
        assert_eq!(m.connection_notice(), Some("reconnecting"));
        m.connection = "connected".into();
        assert_eq!(m.connection_notice(), None);
        m.connection = "polling".into();
        assert!(m.connection_notice().is_some());
    }

    #[test]
    fn own_messages_are_confirmed_by_client_msg_id_not_by_text() {
        let mut m = Model::default();
        // Two quick sends of the same text, and the same text from another tab.
        assert_eq!(m.queued("a-1"), BubbleChange::Add);
        assert_eq!(m.queued("a-2"), BubbleChange::Add);
        assert!(!m.confirmed(Some("b-1")), "another tab's message confirms nothing here");
        assert!(!m.confirmed(None), "a message without an id confirms nothing");
        // The server confirms the second first: the second bubble, not the first, is confirmed.
        assert!(m.confirmed(Some("a-2")));
        assert_eq!(m.outgoing, [("a-1".to_owned(), Outgoing::Sending)]);
        assert!(!m.confirmed(Some("a-2")), "once");
        assert!(m.confirmed(Some("a-1")));
        assert!(m.outgoing.is_empty());
    }

    #[test]
    fn failed_messages_wait_for_retry_or_discard() {
        let mut m = Model::default();
        m.queued("a-1");
        m.queued("a-2");
        assert_eq!(m.send_failed("a-1"), BubbleChange::Update);
        assert_eq!(m.outgoing[0], ("a-1".to_owned(), Outgoing::Failed));
        assert_eq!(m.queued("a-1"), BubbleChange::Update, "retry: the same bubble sends again");
        assert_eq!(m.outgoing[0].1, Outgoing::Sending);
        assert_eq!(m.send_failed("r-9"), BubbleChange::Add, "restored as failed after a reload");
        assert!(m.discarded("r-9"));
        assert!(!m.discarded("r-9"));
        assert_eq!(m.outgoing.len(), 2);
    }

    #[test]
    fn decimals_round_trip_as_to_string_does() {
        for n in [0, 7, 10, 42, 999, 1_000_000, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
            assert_eq!(parse_decimal(&decimal(n)), Some(n));
        }
        for bad in ["", "-1", "1a", " 1", "18446744073709551616"] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_hex_colours_reach_the_stylesheet() {
        assert_eq!(safe_color("#0b6bcb"), "#0b6bcb");
        assert_eq!(safe_color("#abc"), "#abc");
        assert_eq!(safe_color("red;}body{display:none"), "#2563eb");
        assert_eq!(safe_color("#12345g"), "#2563eb");
    }

    #[test]
    fn the_offline_form_comes_and_goes_with_availability() {
        let mut m = Model::default();
        m.started(None, None, false, false);
        assert_eq!(m.screen, Screen::Chat);
        // The last agent goes offline: the form, without a reload.
        m.availability_changed(true);
        assert_eq!(m.screen, Screen::OfflineForm);
        assert!(!m.human_requested());
        // An agent comes online: the chat again.
        m.availability_changed(false);
        assert_eq!(m.screen, Screen::Chat);
        assert!(m.human_requested());
        // A repeated state changes nothing; a sent form's confirmation stays.
        m.availability_changed(false);
        assert_eq!(m.screen, Screen::Chat);
        m.screen = Screen::OfflineSent;
        m.availability_changed(true);
        m.availability_changed(false);
        assert_eq!(m.screen, Screen::OfflineSent);
    }

    #[test]
    fn a_chat_with_the_bot_or_an_agent_stays_when_agents_leave() {
        let mut m = Model::default();
        m.started(None, None, false, true);
        m.availability_changed(true);
        assert_eq!(m.screen, Screen::Chat, "the bot still answers");
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Assigned), Some("Ann".into()), false, false);
        m.availability_changed(true);
        assert_eq!(m.screen, Screen::Chat, "a conversation in progress is not cut");
    }

    #[test]
    fn nobody_waits_silently_in_an_unattended_queue() {
        // Handed over while an agent was online; the last one leaves.
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Bot), None, false, true);
        m.status_changed(ConversationStatus::Queued);
        assert_eq!(m.screen, Screen::Chat);
        m.availability_changed(true);
        assert_eq!(m.screen, Screen::OfflineForm);
        assert!(
            english(&m.status_line()).starts_with("Nobody is available right now"),
            "{}",
            english(&m.status_line())
        );
        assert!(m.can_chat(), "the chat stays one click away");
        // Queued while already unattended (the handoff raced the last agent leaving).
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Bot), None, true, true);
        m.status_changed(ConversationStatus::Queued);
        assert_eq!(m.screen, Screen::OfflineForm);
        // Reloaded while waiting unattended.
        let mut m = Model::default();
        m.started(Some(ConversationStatus::Queued), None, true, false);
        assert_eq!(m.screen, Screen::OfflineForm);
        // An agent comes online: back to the chat, waiting for them.
        m.availability_changed(false);
        assert_eq!(m.screen, Screen::Chat);
        assert!(
            english(&m.status_line()).starts_with("Waiting for an agent"),
            "{}",
            english(&m.status_line())
        );
        // Taken while the form shows: the chat.
        m.availability_changed(true);
        assert_eq!(m.screen, Screen::OfflineForm);
        m.status_changed(ConversationStatus::Assigned);
        assert_eq!(m.screen, Screen::Chat);
    }
}
