//! REST request and response bodies, error codes and input rules shared by the server and its
//! clients (DESIGN section 5). Validation that both sides apply (email syntax, length limits)
//! lives here so that the widget and the server agree.

use serde::{Deserialize, Serialize};

use crate::event::{AgentStatus, AgentSummary, ConversationStatus, Event, Message, PresenceState};
use crate::ids::{AgentId, ClientMsgId, ConversationId, ProjectId, Seq, Timestamp, VisitorId};

/// Longest message, note or offline message body, in characters.
pub const MAX_BODY_CHARS: usize = 5_000;
/// Longest name (visitor, agent), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest email address, in characters (RFC 5321).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Largest request body the server reads, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest long-poll wait, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
/// Longest id on the wire (conversation, message, agent ids, `client_msg_id`, a user id of
/// `identify`), in bytes.
pub const MAX_ID_CHARS: usize = 128;
/// Longest token, key or HMAC, in bytes.
pub const MAX_TOKEN_CHARS: usize = 256;
/// Longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 1_024;
/// Longest transfer note, in characters.
pub const MAX_NOTE_CHARS: usize = MAX_BODY_CHARS;
/// Largest `seq` or `after` (the stores keep them as signed 64-bit integers).
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The machine-readable code of an API error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, missing field, bad query).
    BadRequest,
    /// A field failed validation (empty body, bad email, too long).
    ValidationFailed,
    /// The body is larger than [`MAX_REQUEST_BYTES`].
    PayloadTooLarge,
    /// No valid credentials.
    Unauthorized,
    /// Credentials are valid but not for this resource.
    Forbidden,
    /// The project enforces identity verification and the visitor is not verified.
    IdentityRequired,
    /// The request's origin is not on the project's allow-list.
    OriginNotAllowed,
    /// No such resource (or not visible to the caller).
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The command is not allowed in the conversation's current state.
    InvalidTransition,
    /// The target agent cannot take the conversation (offline or at capacity).
    AgentUnavailable,
    /// Too many requests.
    RateLimited,
    /// The request took longer than the server allows (a client sending too slowly).
    RequestTimeout,
    /// The server failed.
    Internal,
    /// A code this version does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::IdentityRequired | ErrorCode::OriginNotAllowed => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::InvalidTransition | ErrorCode::AgentUnavailable => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
        }
    }

    /// The general code for an error `status` (for error answers that carry no code of their
    /// own, e.g. a framework's 405): the first of the general codes whose
    /// [`http_status`](Self::http_status) it is; otherwise `bad_request` for a 4xx and
    /// `internal` for anything else.
    pub fn for_status(status: u16) -> ErrorCode {
        const GENERAL: [ErrorCode; 10] = [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::InvalidTransition,
            ErrorCode::PayloadTooLarge,
            ErrorCode::ValidationFailed,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
        ];
        GENERAL.into_iter().find(|c| c.http_status() == status).unwrap_or(if (400..500).contains(&status) {
            ErrorCode::BadRequest
        } else {
            ErrorCode::Internal
        })
    }
}

/// The error half of every failed response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// An API error: a code for programs and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// Whether `email` looks like a deliverable address: one `@`, a non-empty local part, a domain
/// with a dot and no empty labels, no spaces, at most [`MAX_EMAIL_CHARS`].
pub fn is_valid_email(email: &str) -> bool {
    if email.is_empty()
        || email.chars().count() > MAX_EMAIL_CHARS
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else { return false };
    if local.is_empty() || domain.contains('@') || !domain.contains('.') {
        return false;
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

/// Checks a message, note or offline-message body: not blank, at most [`MAX_BODY_CHARS`], no
/// control characters but newlines and tabs.
///
/// # Errors
/// A message for the `validation_failed` error.
pub fn validate_body(body: &str) -> Result<(), &'static str> {
    if body.trim().is_empty() {
        Err("body must not be empty")
    } else if body.chars().count() > MAX_BODY_CHARS {
        Err("body is longer than 5000 characters")
    } else if has_control_chars(body, true) {
        Err("body contains control characters")
    } else {
        Ok(())
    }
}

/// Whether `text` holds a C0 control character (or DEL). Tab is always allowed; with
/// `multiline`, so are line feeds and carriage returns.
pub fn has_control_chars(text: &str, multiline: bool) -> bool {
    text.chars().any(|c| match c {
        '\t' => false,
        '\n' | '\r' => !multiline,
        c => c < ' ' || c == '\u{7f}',
    })
}

/// Checks a one-line text field (a name, an email, a password): at most `max` characters, no
/// control characters; `required` ones must not be blank. `field` names it in the message.
///
/// # Errors
/// A message for the `validation_failed` error.
pub fn validate_line(field: &str, text: &str, max: usize, required: bool) -> Result<(), String> {
    if required && text.trim().is_empty() {
        Err(format!("{field} must not be empty"))
    } else if text.chars().count() > max {
        Err(format!("{field} is longer than {max} characters"))
    } else if has_control_chars(text, false) {
        Err(format!("{field} contains control characters"))
    } else {
        Ok(())
    }
}

/// Whether `id` is a well-formed id (of ours or a client's `client_msg_id`): 1 to
/// [`MAX_ID_CHARS`] ASCII letters, digits, `_`, `-`, `.` or `:`. Ids are checked against this
/// before any lookup.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Whether `token` can be a token or key (visitor token, agent token, public or secret key):
/// 1 to [`MAX_TOKEN_CHARS`] ASCII letters, digits, `_`, `-` or `.`.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_CHARS
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `POST /api/widget/session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetSessionRequest {
    /// The project's public key (`pk_...`), from the script tag.
    pub project_key: String,
    /// The token of an earlier session, from `localStorage`, to continue as the same visitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_token: Option<String>,
}

/// Answer to `POST /api/widget/session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetSession {
    /// The project.
    pub project_id: ProjectId,
    /// The visitor (new, or the one the token named).
    pub visitor_id: VisitorId,
    /// The visitor token to keep in `localStorage` and send as `Authorization: Bearer`.
    pub visitor_token: String,
    /// Display and availability settings.
    pub config: WidgetConfig,
    /// The visitor's latest conversation that is not resolved, to continue after a reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
}

/// What the widget needs to know about the project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[allow(clippy::struct_excessive_bools)] // independent wire flags, each read on its own
pub struct WidgetConfig {
    /// How many agents are online now.
    pub agents_online: u32,
    /// Whether now is inside the project's business hours (always true without hours).
    pub within_business_hours: bool,
    /// Show the offline form instead of the chat (no agent online, or outside hours).
    pub show_offline_form: bool,
    /// Whether a bot answers new conversations (the project has a bot webhook): then the chat
    /// opens with the bot even when no agent is available, and the offline form comes when the
    /// visitor asks for a human.
    #[serde(default)]
    pub bot: bool,
    /// Whether customer calls need a verified identity (`identify`) first.
    pub identity_required: bool,
    /// Theme: colours, position, texts.
    pub theme: Theme,
}

/// The widget's look, set per project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Theme {
    /// Accent colour as `#rrggbb`.
    pub color: String,
    /// `right` or `left` bottom corner.
    pub position: String,
    /// Title of the chat window.
    pub title: String,
    /// First line shown in a new chat.
    pub greeting: String,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            color: "#2563eb".to_owned(),
            position: "right".to_owned(),
            title: "Chat with us".to_owned(),
            greeting: "Hi! How can we help?".to_owned(),
        }
    }
}

/// `POST /api/widget/identify`: binds a signed-in user of the site to the visitor.
/// `hmac` is the hex HMAC-SHA256 of `user_id` with the project's identity secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentifyRequest {
    /// The site's user id.
    pub user_id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Hex HMAC-SHA256 of `user_id`.
    pub hmac: String,
}

fn unknown_presence() -> PresenceState {
    PresenceState::Unknown
}

/// A conversation as REST returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Project.
    pub project_id: ProjectId,
    /// The customer.
    pub visitor_id: VisitorId,
    /// The customer's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    /// Current status.
    pub status: ConversationStatus,
    /// The agent who has it, when assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSummary>,
    /// The customer's presence now (later changes come as `presence:updated`); `unknown` from
    /// servers that do not say.
    #[serde(default = "unknown_presence")]
    pub presence: PresenceState,
    /// The last persisted event's counter.
    pub last_seq: Seq,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// `POST /api/conversations`: starts a conversation, optionally with a first message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateConversationRequest {
    /// The customer's first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Idempotency key of that message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<ClientMsgId>,
}

/// Events in one answer of `GET /api/conversations/{id}/events`, at most.
pub const EVENTS_PAGE_MAX: u32 = 500;

/// Answer to `GET /api/conversations/{id}/events?after=&wait=`.
///
/// A page holds at most [`EVENTS_PAGE_MAX`] events. A reader applies events by their own `seq`
/// and, while the last event it got is below `last_seq`, asks again with `after=` that event's
/// `seq` (see [`crate::timing::buffer::EventBuffer::handle_page`]). `last_seq` is never "applied
/// up to": a truncated page stops before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventsPage {
    /// Persisted events with `seq > after`, in `seq` order, at most [`EVENTS_PAGE_MAX`].
    pub events: Vec<Event>,
    /// The conversation's latest `seq`, whether or not this page reaches it (equal to `after`
    /// when nothing is new).
    pub last_seq: Seq,
    /// The conversation's current status, so a poller sees state without replaying.
    pub status: ConversationStatus,
}

/// `POST /api/conversations/{id}/messages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendMessageRequest {
    /// Plain text.
    pub body: String,
    /// Idempotency key: a replay answers with the stored message and changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<ClientMsgId>,
}

/// Answer to sending a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendMessageResponse {
    /// The stored message.
    pub message: Message,
    /// `true` when the `client_msg_id` had been used before and nothing new was stored.
    pub duplicate: bool,
}

/// `POST /api/conversations/{id}/handoff`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoffRequest {
    /// Why (shown to agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/conversations/{id}/transfer`. `to` is `"queue"` or an agent id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferRequest {
    /// `"queue"` or an agent id.
    pub to: String,
    /// Hand-over note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /api/conversations/{id}/typing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypingRequest {
    /// Started or stopped.
    pub is_typing: bool,
}

/// `POST /api/conversations/{id}/presence`. Sent by `navigator.sendBeacon` as `text/plain`
/// JSON, which cannot carry headers: the visitor token may come in the body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceRequest {
    /// Online, idle or offline.
    pub state: PresenceState,
    /// The visitor token, when no `Authorization` header can be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /api/conversations/{id}/read`: the agent has read up to `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadRequest {
    /// Last read event.
    pub seq: Seq,
}

/// `POST /api/conversations/{id}/notes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoteRequest {
    /// Plain text.
    pub body: String,
}

/// `POST /api/agents/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Answer to a login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// The agent token, sent as `Authorization: Bearer` and as the realtime `access_token`.
    pub token: String,
    /// Who logged in.
    pub agent: Agent,
}

/// An agent as REST returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    /// Id.
    pub id: AgentId,
    /// Project.
    pub project_id: ProjectId,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Availability.
    pub status: AgentStatus,
    /// How many open conversations routing gives them at most.
    pub capacity: u32,
    /// How many assigned conversations they have now.
    pub open_conversations: u32,
    /// The project's public key, in the answers to the agent themself (login and
    /// `GET /api/agents/me`): the `apikey` of their realtime socket URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<String>,
}

/// `PUT /api/agents/me/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusRequest {
    /// The new status.
    pub status: AgentStatus,
}

/// One row of `GET /api/inbox`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxItem {
    /// The conversation.
    pub conversation: Conversation,
    /// Customer messages after the agent's read marker.
    pub unread: u32,
    /// The latest message, for a preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
}

/// `POST /api/projects/{id}/offline-messages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfflineMessageRequest {
    /// Name.
    pub name: String,
    /// Email, validated with [`is_valid_email`].
    pub email: String,
    /// The message.
    pub message: String,
}

/// The header carrying a webhook delivery's signature: `sha256=` and the hex HMAC-SHA256 of the
/// raw request body, keyed with the project's webhook secret.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "x-handoff-signature";

/// The prefix of [`WEBHOOK_SIGNATURE_HEADER`]'s value.
pub const WEBHOOK_SIGNATURE_PREFIX: &str = "sha256=";

/// `PUT /api/project/webhook` (project secret key): where the bot backend wants customer messages.
/// `url: null` removes the webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookRequest {
    /// An `http://` or `https://` URL.
    pub url: Option<String>,
}

/// Answer to `PUT /api/project/webhook`: the URL and a new signing secret (shown this once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookSettings {
    /// The URL, or `None` when removed.
    pub url: Option<String>,
    /// The secret that signs deliveries (`whsec_...`), or `None` when removed.
    pub secret: Option<String>,
}

/// What the server POSTs to a project's webhook when a customer writes in a conversation in
/// `bot` state. The bot answers with `POST /api/conversations/{id}/messages` and hands over with
/// `POST /api/conversations/{id}/handoff`, both with the project's secret key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    /// A unique id per delivery (retries of one delivery repeat it), for deduplication.
    pub id: String,
    /// The event name: `message:new`.
    pub event: String,
    /// The project.
    pub project_id: ProjectId,
    /// The conversation, in `bot` state when the message arrived.
    pub conversation_id: ConversationId,
    /// The customer's message.
    pub message: Message,
    /// When the server first sent it.
    pub sent_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@mail.example.org", "x@xn--bcher-kva.de"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@@b.co", "a b@c.de", "a@b..co", "a@-b.co", "a@b.co ", "a@b_c.de",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(!is_valid_email(&long));
    }

    #[test]
    fn bodies() {
        assert_eq!(validate_body("hi"), Ok(()));
        assert!(validate_body("   \n").is_err());
        assert_eq!(validate_body(&"é".repeat(MAX_BODY_CHARS)), Ok(()));
        assert!(validate_body(&"é".repeat(MAX_BODY_CHARS + 1)).is_err());
    }

    #[test]
    fn conversation_presence_defaults_for_older_payloads() {
        let mut v = serde_json::json!({
            "id": "conv_1", "project_id": "proj_1", "visitor_id": "vis_1", "status": "assigned",
            "last_seq": 3, "created_at": 1, "updated_at": 2,
        });
        let c: Conversation = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(c.presence, PresenceState::Unknown);
        v["presence"] = "idle".into();
        let c: Conversation = serde_json::from_value(v).unwrap();
        assert_eq!(c.presence, PresenceState::Idle);
        assert_eq!(serde_json::to_value(&c).unwrap()["presence"], "idle");
    }

    #[test]
    fn error_body_shape_and_statuses() {
        let body = ErrorBody { error: ApiError { code: ErrorCode::InvalidTransition, message: "no".into() } };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"invalid_transition","message":"no"}}"#
        );
        assert_eq!(ErrorCode::InvalidTransition.http_status(), 409);
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
        assert_eq!(ErrorCode::ValidationFailed.http_status(), 422);
        assert_eq!(ErrorCode::MethodNotAllowed.http_status(), 405);
        for (status, code) in [
            (400, ErrorCode::BadRequest),
            (403, ErrorCode::Forbidden),
            (404, ErrorCode::NotFound),
            (405, ErrorCode::MethodNotAllowed),
            (409, ErrorCode::InvalidTransition),
            (413, ErrorCode::PayloadTooLarge),
            (429, ErrorCode::RateLimited),
            (426, ErrorCode::BadRequest),
            (503, ErrorCode::Internal),
        ] {
            assert_eq!(ErrorCode::for_status(status), code, "{status}");
        }
        let unknown: ErrorCode = serde_json::from_str(r#""teapot""#).unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }
}
