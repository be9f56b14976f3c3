//! REST request and response bodies, error codes and input rules shared by the server and its
//! clients (DESIGN section 5). Validation that both sides apply (email syntax, length limits)
//! lives here so that the widget and the server agree.

use serde::{Deserialize, Serialize};

use crate::event::{AgentStatus, AgentSummary, ConversationStatus, Event, Message, PresenceState};
use crate::ids::{
    AgentId, CannedResponseId, ClientMsgId, ConversationId, MessageId, ProjectId, Seq, Timestamp, VisitorId,
};

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
/// Longest canned response shortcut, in characters.
pub const MAX_SHORTCUT_CHARS: usize = 32;
/// Longest canned response content, in characters.
pub const MAX_CANNED_CHARS: usize = 4_000;
/// Longest search text of `GET /api/canned_responses?q=`, in characters.
pub const MAX_CANNED_QUERY_CHARS: usize = 100;
/// Canned responses in one answer of `GET /api/canned_responses`, at most.
pub const CANNED_RESPONSES_MAX: u32 = 100;
/// Longest comment of a satisfaction rating, in characters.
pub const MAX_RATING_COMMENT_CHARS: usize = 1_000;
/// Transcript emails per conversation, and per visitor, in [`TRANSCRIPT_WINDOW_MS`], at most.
pub const TRANSCRIPTS_PER_WINDOW: u32 = 3;
/// The window of [`TRANSCRIPTS_PER_WINDOW`]: one hour, in milliseconds.
pub const TRANSCRIPT_WINDOW_MS: u64 = 3_600_000;
/// Largest `seq` or `after` (the stores keep them as signed 64-bit integers).
pub const MAX_SEQ: u64 = i64::MAX as u64;

// The rules below as regular expressions (of the common subset of ECMA-262, JSON Schema and
// Rust's `regex`), for the OpenAPI document: each accepts exactly what its function accepts
// (tested). Length limits in characters go beside them as `maxLength`.

/// What [`is_valid_id`] accepts.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,128}$";
/// What [`is_valid_shortcut`] accepts.
pub const SHORTCUT_PATTERN: &str = "^[A-Za-z0-9_-]{1,32}$";
/// What [`is_valid_token`] accepts.
pub const TOKEN_PATTERN: &str = "^[A-Za-z0-9_.-]{1,256}$";
// Whitespace is spelled out (Rust's `char::is_whitespace`, what `str::trim` removes): `\s`
// differs between regular expression engines.
/// What [`validate_body`] accepts, but for the length: not blank, no control characters but
/// tab, line feed and carriage return.
pub const TEXT_PATTERN: &str = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*[^\x00-\x20\x7F\x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*$";
/// [`TEXT_PATTERN`] where blank is allowed (a transfer note).
pub const OPTIONAL_TEXT_PATTERN: &str = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*$";
/// What [`validate_line`] accepts when `required`, but for the length: not blank, no control
/// characters but tab.
pub const LINE_PATTERN: &str = r"^[^\x00-\x08\x0A-\x1F\x7F]*[^\x00-\x20\x7F\x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x08\x0A-\x1F\x7F]*$";
/// What [`validate_line`] accepts when not `required`, but for the length.
pub const OPTIONAL_LINE_PATTERN: &str = r"^[^\x00-\x08\x0A-\x1F\x7F]*$";
/// What [`is_valid_email`] accepts, but for the length.
pub const EMAIL_PATTERN: &str = r"^[^@\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+@[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*(?:\.[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*)+$";
/// Longest webhook URL, in bytes.
pub const MAX_URL_CHARS: usize = 2_048;
/// Webhook URLs the server always takes (surrounding whitespace is trimmed; blank removes the
/// webhook): `http(s)://`, a host name (never an address: the last label has letters only), an
/// optional port and path. The server takes some more (any URL it parses with a public host),
/// which the document does not promise.
pub const WEBHOOK_URL_PATTERN: &str = r"^[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:https?://(?:[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]{2,24}(?::[1-9][0-9]{0,3})?(?:/[A-Za-z0-9._~-]*)*[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*)?$";

/// The machine-readable code of an API error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Another canned response of the project has this shortcut (compared without case).
    ShortcutTaken,
    /// The conversation is assigned to another agent: only its assignee (or the project's
    /// secret key, except to speak as the bot) may act on it.
    NotAssignee,
    /// The visitor is already verified as another user: a different user on the same browser
    /// starts a new visitor (a new widget session) and identifies that one.
    IdentityConflict,
    /// The conversation has its satisfaction rating already (a conversation is rated once).
    AlreadyRated,
    /// The server sends no email (no `SMTP_URL` configured): a 403, since the request may be
    /// right and no retry will help on this server.
    EmailDisabled,
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
    /// Every code a server sends (all but [`ErrorCode::Unknown`]).
    pub const KNOWN: [ErrorCode; 19] = [
        ErrorCode::BadRequest,
        ErrorCode::ValidationFailed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::IdentityRequired,
        ErrorCode::OriginNotAllowed,
        ErrorCode::NotAssignee,
        ErrorCode::NotFound,
        ErrorCode::InvalidTransition,
        ErrorCode::AgentUnavailable,
        ErrorCode::IdentityConflict,
        ErrorCode::ShortcutTaken,
        ErrorCode::AlreadyRated,
        ErrorCode::EmailDisabled,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::RequestTimeout,
        ErrorCode::Internal,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::IdentityRequired => "identity_required",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::NotAssignee => "not_assignee",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::AgentUnavailable => "agent_unavailable",
            ErrorCode::IdentityConflict => "identity_conflict",
            ErrorCode::ShortcutTaken => "shortcut_taken",
            ErrorCode::AlreadyRated => "already_rated",
            ErrorCode::EmailDisabled => "email_disabled",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden
            | ErrorCode::IdentityRequired
            | ErrorCode::OriginNotAllowed
            | ErrorCode::NotAssignee
            | ErrorCode::EmailDisabled => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::InvalidTransition
            | ErrorCode::AgentUnavailable
            | ErrorCode::IdentityConflict
            | ErrorCode::ShortcutTaken
            | ErrorCode::AlreadyRated => 409,
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

// The schema lists the codes servers send, without the catch-all `unknown`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::string_enum(
            "The machine-readable code of an API error.",
            &ErrorCode::KNOWN.map(ErrorCode::as_str),
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

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
/// with a dot and no empty labels, each of ASCII letters, digits and inner hyphens (an
/// internationalized domain in its `xn--` form), no spaces or control characters, at most
/// [`MAX_EMAIL_CHARS`].
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
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
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
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::project_key))]
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
    /// Show the offline form instead of the chat (no agent online, or outside hours; the rule is
    /// [`crate::event::availability::shows_offline_form`]). Live changes come as
    /// `availability:changed` on `project:{id}:availability`.
    pub show_offline_form: bool,
    /// Whether a bot answers new conversations (the project has a bot webhook): then the chat
    /// opens with the bot even when no agent is available, and the offline form comes when the
    /// visitor asks for a human.
    #[serde(default)]
    pub bot: bool,
    /// Whether customer calls need a verified identity (`identify`) first.
    pub identity_required: bool,
    /// Whether the server sends email (a transcript on request, offline messages to agents):
    /// the widget offers "Email transcript" only then.
    #[serde(default)]
    pub email: bool,
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
    /// The widget's language for every visitor (`de`, `pt-BR`, ...); empty: each visitor's
    /// browser language. `data-locale` on the script tag and `Handoff.setLocale()` override it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 35))]
    pub locale: String,
    /// Whether a new agent message plays a short sound while the widget is minimized or its
    /// tab hidden.
    #[serde(default = "sound_on")]
    pub sound: bool,
}

fn sound_on() -> bool {
    true
}

/// Whether `tag` is a well-formed language tag the widget can be set to: `de`, `pt-BR`,
/// `zh-Hant-TW` (letters and digits in `-`-separated parts of 1 to 8, the first letters only,
/// at most 35 characters); empty means the visitor's browser language.
pub fn is_valid_locale(tag: &str) -> bool {
    tag.is_empty()
        || (tag.len() <= 35
            && tag.split('-').enumerate().all(|(i, part)| {
                (1..=8).contains(&part.len())
                    && part.bytes().all(|b| {
                        if i == 0 {
                            b.is_ascii_alphabetic()
                        } else {
                            b.is_ascii_alphanumeric()
                        }
                    })
            })
            && tag.split('-').next().is_some_and(|l| (2..=3).contains(&l.len())))
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            color: "#2563eb".to_owned(),
            position: "right".to_owned(),
            title: "Chat with us".to_owned(),
            greeting: "Hi! How can we help?".to_owned(),
            locale: String::new(),
            sound: true,
        }
    }
}

/// `POST /api/widget/identify`: binds a signed-in user of the site to the visitor.
/// `hmac` is the hex HMAC-SHA256 of `user_id` with the project's identity secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentifyRequest {
    /// The site's user id.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::user_id))]
    pub user_id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_name))]
    pub name: Option<String>,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_email))]
    pub email: Option<String>,
    /// Hex HMAC-SHA256 of `user_id`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::hmac))]
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
    /// The highest agent read marker: the customer's messages up to this `seq` were read by an
    /// agent (later moves come as `message:read`); 0 when no agent read any.
    #[serde(default)]
    pub agent_read_seq: Seq,
    /// The customer's satisfaction rating, once given (`conversation:rated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<ConversationRating>,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A conversation's satisfaction rating (CSAT).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationRating {
    /// 1 (bad) to 5 (great).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 5))]
    pub rating: u8,
    /// The customer's words, when they wrote some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The agent who resolved the conversation (or last had it), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// When it was given.
    pub created_at: Timestamp,
}

/// `POST /api/conversations/{id}/rating` (the conversation's visitor, once it is resolved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RatingRequest {
    /// 1 (bad) to 5 (great); anything else is 422 `validation_failed`.
    #[serde(deserialize_with = "integral_rating")]
    #[cfg_attr(feature = "openapi", schema(value_type = u8, minimum = 1, maximum = 5))]
    pub rating: u64,
    /// An optional comment, at most 1000 characters (blank counts as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::rating_comment))]
    pub comment: Option<String>,
}

/// Checks a rating: 1 to 5, and a comment of at most [`MAX_RATING_COMMENT_CHARS`] without
/// control characters but newlines and tabs. Answers the rating and the comment to store (a
/// blank one is none, surrounding whitespace trimmed).
///
/// # Errors
/// A message for the `validation_failed` error.
pub fn validate_rating(rating: u64, comment: Option<&str>) -> Result<(u8, Option<String>), &'static str> {
    let rating = u8::try_from(rating)
        .ok()
        .filter(|r| (crate::event::MIN_RATING..=crate::event::MAX_RATING).contains(r))
        .ok_or("rating must be a whole number from 1 to 5")?;
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    match comment {
        Some(c) if c.chars().count() > MAX_RATING_COMMENT_CHARS => {
            Err("comment is longer than 1000 characters")
        }
        Some(c) if has_control_chars(c, true) => Err("comment contains control characters"),
        _ => Ok((rating, comment.map(str::to_owned))),
    }
}

/// `POST /api/conversations/{id}/transcript`: email the conversation's transcript to the
/// visitor. Without `email`, to the address the visitor is known by (`identify`, or their
/// offline form); with neither, 422.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TranscriptRequest {
    /// Where to send it, validated with [`is_valid_email`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_email))]
    pub email: Option<String>,
}

/// Answer to `POST /api/conversations/{id}/transcript`: accepted, sent in the background.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TranscriptAccepted {
    /// The address it goes to.
    pub email: String,
}

/// `POST /api/conversations`: starts a conversation, optionally with a first message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateConversationRequest {
    /// The customer's first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_body))]
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

/// A visitor's last conversation, resolved less than this long ago (milliseconds), is the one
/// the widget session continues: "write again to reopen it" holds across a reload. An older
/// resolved conversation is history, and the next message starts a new one.
pub const REOPEN_WINDOW_MS: u64 = 30 * 60 * 1000;

/// At most this many conversations in `GET /api/widget/conversations`, newest first.
pub const HISTORY_CONVERSATIONS_MAX: u32 = 20;

/// A past or current conversation with its transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationHistory {
    /// The conversation.
    pub conversation: Conversation,
    /// Its persisted events from the first, in `seq` order, at most [`EVENTS_PAGE_MAX`] (a
    /// longer one goes on at `GET /api/conversations/{id}/events?after=<the last seq here>`).
    pub events: Vec<Event>,
}

/// `GET /api/widget/conversations`: the visitor's conversations (and, once `identify` verified
/// a user, every conversation of that user in the project, from any device), newest first, at
/// most [`HISTORY_CONVERSATIONS_MAX`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationList {
    /// Newest first.
    pub conversations: Vec<ConversationHistory>,
}

/// `POST /api/conversations/{id}/messages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendMessageRequest {
    /// Plain text.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::body))]
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
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::transfer_to))]
    pub to: String,
    /// Hand-over note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::transfer_note))]
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
    /// The reporting tab (random per page load, 1 to 64 of `A-Za-z0-9_-`): presence is kept per
    /// tab and agents see the aggregate (see [`crate::timing::presence`]). Without it, the
    /// report counts for one shared default tab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_tab))]
    pub tab: Option<String>,
}

/// `POST /api/conversations/{id}/read`: the agent has read up to `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadRequest {
    /// Last read event.
    #[serde(deserialize_with = "integral_seq")]
    pub seq: Seq,
}

/// A `seq` from JSON: an integer, or a number with no fraction (`7.0`), which JSON Schema counts
/// as an integer too.
fn integral_seq<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Seq, D::Error> {
    integral(d)?.map(Seq).ok_or_else(|| serde::de::Error::custom("seq must be a non-negative integer"))
}

/// A rating from JSON: a whole number (also `5.0`); its range is checked by [`validate_rating`].
fn integral_rating<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    integral(d)?.ok_or_else(|| serde::de::Error::custom("rating must be a whole number from 1 to 5"))
}

/// A capacity from JSON: `null`, or a whole number (also `3.0`) up to `u32::MAX`.
fn integral_capacity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    integral(d)?
        .map(|v| u32::try_from(v).map_err(|_| serde::de::Error::custom("capacity is too large")))
        .transpose()
}

/// A number of days from JSON: `null`, or a whole number (also `30.0`) up to `u32::MAX`.
fn integral_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    integral(d)?
        .map(|v| u32::try_from(v).map_err(|_| serde::de::Error::custom("retention_days is too large")))
        .transpose()
}

/// A non-negative whole number from JSON, written as an integer or as a float without fraction;
/// `None` for `null`.
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative integer")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v).map(Some).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // Below 2^64, so the cast is exact for an integral value.
            if v.fract() == 0.0 && v >= 0.0 && v < u64::MAX as f64 {
                Ok(Some(v as u64))
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_any(V)
}

/// `POST /api/conversations/{id}/notes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoteRequest {
    /// Plain text.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::body))]
    pub body: String,
}

/// Whether `shortcut` can be a canned response's shortcut: 1 to [`MAX_SHORTCUT_CHARS`] ASCII
/// letters, digits, `-` or `_`. Shortcuts are unique per project without regard to case.
pub fn is_valid_shortcut(shortcut: &str) -> bool {
    !shortcut.is_empty()
        && shortcut.len() <= MAX_SHORTCUT_CHARS
        && shortcut.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Checks a canned response: the shortcut ([`is_valid_shortcut`]) and the content (as a message
/// body, [`validate_body`], but at most [`MAX_CANNED_CHARS`]). Either may be absent (an update).
///
/// # Errors
/// A message for the `validation_failed` error.
pub fn validate_canned(shortcut: Option<&str>, content: Option<&str>) -> Result<(), &'static str> {
    if shortcut.is_some_and(|s| !is_valid_shortcut(s)) {
        return Err("shortcut must be 1 to 32 letters, digits, '-' or '_'");
    }
    match content {
        Some(c) if c.trim().is_empty() => Err("content must not be empty"),
        Some(c) if c.chars().count() > MAX_CANNED_CHARS => Err("content is longer than 4000 characters"),
        Some(c) if has_control_chars(c, true) => Err("content contains control characters"),
        _ => Ok(()),
    }
}

/// A canned response: a project's shared reply, inserted in the compose box by typing `/` and
/// its shortcut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CannedResponse {
    /// Id.
    pub id: CannedResponseId,
    /// What agents type after `/` ([`is_valid_shortcut`]), as it was written.
    pub shortcut: String,
    /// The text inserted.
    pub content: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// `POST /api/canned_responses` (an agent of the project, or its secret key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CannedResponseRequest {
    /// The shortcut: 1 to 32 letters, digits, `-` or `_`, unique in the project (without regard
    /// to case; a taken one is 409 `shortcut_taken`).
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::shortcut))]
    pub shortcut: String,
    /// The text: not blank, at most 4000 characters.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::canned_content))]
    pub content: String,
}

/// `PATCH /api/canned_responses/{id}`: only the fields given change (`null` or absent: as is).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CannedResponseUpdate {
    /// A new shortcut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_shortcut))]
    pub shortcut: Option<String>,
    /// A new text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_canned_content))]
    pub content: Option<String>,
}

/// `POST /api/agents/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// Email.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::login_email))]
    pub email: String,
    /// Password.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::password))]
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

/// `PATCH /api/agents/{id}` (project secret key): only the fields given change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentUpdateRequest {
    /// How many open conversations the agent holds at most (0 to [`MAX_CAPACITY`]; 0 takes
    /// them out of routing and claims).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "integral_capacity")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000))] // MAX_CAPACITY
    pub capacity: Option<u32>,
}

/// The largest capacity an agent may have.
pub const MAX_CAPACITY: u32 = 1_000;

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
    /// This item's place in the list (opaque): `GET /api/inbox?cursor=` the last item's cursor
    /// answers the items after it. Absent from servers without paging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Items in one page of `GET /api/inbox` or `GET /api/queue` when `limit` is not given.
pub const LIST_PAGE_DEFAULT: u32 = 50;
/// Items in one page of `GET /api/inbox`, `GET /api/queue` and `GET /api/conversations/search`,
/// at most.
pub const LIST_PAGE_MAX: u32 = 100;
/// Hits in one page of `GET /api/conversations/search` when `limit` is not given.
pub const SEARCH_PAGE_DEFAULT: u32 = 20;
/// The longest search text, in characters (a longer one is 422 `validation_failed`).
pub const MAX_SEARCH_QUERY_CHARS: usize = 200;
/// The words of a search text that count (the first ones; more are ignored).
pub const MAX_SEARCH_TERMS: usize = 12;
/// The longest page cursor, in characters.
pub const MAX_CURSOR_CHARS: usize = 256;

/// The words of a search text, as both databases' full-text indexes cut messages into words:
/// runs of letters and digits (any script), lower-cased. Everything else (quotes, `*`, `-`,
/// `:`, parentheses, ...) separates words and is never query syntax: `NEAR`, `OR` and `AND`
/// are words like any other.
pub fn search_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Answer to `GET /api/queue`: the waiting list (head first), a page of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuePage {
    /// The entries of this page, head first; `position` counts from the head of the whole queue.
    pub queue: Vec<crate::event::QueueEntry>,
    /// The whole queue's length.
    pub queue_length: u32,
    /// Pass as `cursor` for the entries after these; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a search hit matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SearchMatch {
    /// A message of the conversation holds every word.
    Message,
    /// The customer's name or email contains the text.
    Customer,
    /// No text was given: the project's conversations by last activity (history).
    All,
}

/// One conversation found by `GET /api/conversations/search`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// The conversation (its status, customer name, `updated_at` = last activity).
    pub conversation: Conversation,
    /// The customer's email, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// What matched.
    #[serde(rename = "match")]
    pub matched: SearchMatch,
    /// The matching message (the latest one that matches), or the latest message when the
    /// customer matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// That message's seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_seq: Option<Seq>,
    /// Plain text around the first matching word of that message (at most about 160
    /// characters, `…` where it was cut); highlight [`search_terms`] of the query in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// Answer to `GET /api/conversations/search`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchPage {
    /// Newest activity first.
    pub hits: Vec<SearchHit>,
    /// Pass as `cursor` (with the same `q` and `status`) for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The longest retention period, in days (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// A visitor row in an export (`GET /api/visitors/{id}/export`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedVisitor {
    /// Id.
    pub id: VisitorId,
    /// Project.
    pub project_id: ProjectId,
    /// Name, once identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email, once identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The site's user id, once `identify` verified one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Whether the identity was verified by HMAC.
    pub verified: bool,
    /// First seen.
    pub created_at: Timestamp,
    /// Last seen (recorded at most hourly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
}

/// One tab's last presence report, in an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedPresence {
    /// The browser tab.
    pub tab_id: String,
    /// Its state.
    pub state: PresenceState,
    /// Its last heartbeat.
    pub last_heartbeat: Timestamp,
}

/// A conversation with everything stored of it, in an export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedConversation {
    /// The conversation (status, assignee, presence, times).
    pub conversation: Conversation,
    /// Every persisted event, messages included, in `seq` order.
    pub events: Vec<Event>,
    /// The agents' internal notes.
    pub notes: Vec<crate::event::Note>,
    /// The customer's presence per tab.
    pub presence: Vec<ExportedPresence>,
}

/// Answer to `GET /api/visitors/{id}/export`: all data of a visitor (a data-subject access
/// request).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisitorExport {
    /// When the export was made.
    pub exported_at: Timestamp,
    /// The visitor.
    pub visitor: ExportedVisitor,
    /// Their conversations, oldest first.
    pub conversations: Vec<ExportedConversation>,
    /// Offline messages of the project left with the visitor's email (without regard to case).
    pub offline_messages: Vec<crate::event::OfflineMessage>,
}

/// Answer to `DELETE /api/visitors/{id}`: what the erasure deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Erasure {
    /// The visitor erased (their token no longer works).
    pub visitor_id: VisitorId,
    /// Conversations deleted, with every event, message, note, read marker and presence report.
    pub conversations: u32,
    /// Messages among them.
    pub messages: u64,
    /// Offline messages deleted (left with the visitor's email).
    pub offline_messages: u64,
}

/// `PUT /api/project/retention` (secret key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionRequest {
    /// Delete resolved conversations this many days (1 to 36,500) after their resolution;
    /// `null`: keep them forever.
    #[serde(default, deserialize_with = "integral_days")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 36_500))]
    pub retention_days: Option<u32>,
}

/// The plain-text snippet of `body` around the first of `terms` in it (whole words or word
/// starts, without regard to case), at most `width` characters plus `…` marks where it was
/// cut; the start of `body` when no term is found.
pub fn snippet(body: &str, terms: &[String], width: usize) -> String {
    let chars: Vec<char> = body.chars().collect();
    let lower: Vec<String> = chars.iter().map(|c| c.to_lowercase().collect()).collect();
    // The first word start (a letter or digit after a non-word character) where a term begins.
    let mut at = None;
    'outer: for (i, c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() || (i > 0 && chars[i - 1].is_alphanumeric()) {
            continue;
        }
        for t in terms {
            let mut rest = t.as_str();
            let mut j = i;
            while !rest.is_empty() && j < chars.len() {
                match rest.strip_prefix(lower[j].as_str()) {
                    Some(r) => rest = r,
                    None => break,
                }
                j += 1;
            }
            if rest.is_empty() {
                at = Some(i);
                break 'outer;
            }
        }
    }
    let start = at.map_or(0, |i| i.saturating_sub(width / 3));
    let end = (start + width).min(chars.len());
    let start = end.saturating_sub(width).min(start);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(chars[start..end].iter().map(|&c| if c.is_control() { ' ' } else { c }));
    if end < chars.len() {
        out.push('…');
    }
    out
}

/// `POST /api/projects/{id}/offline-messages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfflineMessageRequest {
    /// Name.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::name))]
    pub name: String,
    /// Email, validated with [`is_valid_email`].
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::email))]
    pub email: String,
    /// The message.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::body))]
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
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::webhook_url))]
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
    fn themes_stored_before_locale_and_sound_read_with_their_defaults() {
        let old = r##"{"color":"#0b6bcb","position":"left","title":"Acme","greeting":"Hi"}"##;
        let t: Theme = serde_json::from_str(old).unwrap();
        assert_eq!((t.locale.as_str(), t.sound, t.position.as_str()), ("", true, "left"));
    }

    #[test]
    fn locales() {
        for ok in ["", "de", "pt-BR", "zh-Hant-TW", "ar", "es-419", "fil"] {
            assert!(is_valid_locale(ok), "{ok}");
        }
        for bad in [
            "d",
            "deutsch",
            "-de",
            "de-",
            "de--AT",
            "de_AT",
            "1a",
            "de-ABCDEFGHI",
            "<b>",
            "de AT",
            &"a".repeat(36),
        ] {
            assert!(!is_valid_locale(bad), "{bad}");
        }
    }

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
    fn canned_responses() {
        for ok in ["a", "greet", "Thanks-2_u", &"x".repeat(MAX_SHORTCUT_CHARS)] {
            assert!(is_valid_shortcut(ok), "{ok}");
        }
        for bad in ["", "/greet", "a b", "é", "a.b", &"x".repeat(MAX_SHORTCUT_CHARS + 1)] {
            assert!(!is_valid_shortcut(bad), "{bad}");
        }
        assert_eq!(validate_canned(Some("hi"), Some("Hello!\nHow can I help?")), Ok(()));
        assert_eq!(validate_canned(None, None), Ok(()));
        assert!(validate_canned(Some("a b"), None).is_err());
        assert!(validate_canned(None, Some(" \n")).is_err());
        assert!(validate_canned(None, Some("a\u{7}")).is_err());
        assert_eq!(validate_canned(None, Some(&"é".repeat(MAX_CANNED_CHARS))), Ok(()));
        assert!(validate_canned(None, Some(&"é".repeat(MAX_CANNED_CHARS + 1))).is_err());
        let c = CannedResponse {
            id: CannedResponseId::new("cr_1"),
            shortcut: "greet".into(),
            content: "Hi!".into(),
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"id":"cr_1","shortcut":"greet","content":"Hi!","created_at":1,"updated_at":2}"#
        );
        let u: CannedResponseUpdate = serde_json::from_str(r#"{"content":null}"#).unwrap();
        assert_eq!(u, CannedResponseUpdate::default());
        assert_eq!(ErrorCode::ShortcutTaken.http_status(), 409);
        assert_eq!(ErrorCode::ShortcutTaken.as_str(), "shortcut_taken");
    }

    #[test]
    fn ratings() {
        assert_eq!(validate_rating(5, None), Ok((5, None)));
        assert_eq!(validate_rating(1, Some("  ")), Ok((1, None)));
        assert_eq!(validate_rating(3, Some(" ok\nthanks ")), Ok((3, Some("ok\nthanks".to_owned()))));
        for bad in [0, 6, 255, 256, u64::MAX] {
            assert!(validate_rating(bad, None).is_err(), "{bad}");
        }
        assert!(validate_rating(4, Some(&"é".repeat(MAX_RATING_COMMENT_CHARS))).is_ok());
        assert!(validate_rating(4, Some(&"é".repeat(MAX_RATING_COMMENT_CHARS + 1))).is_err());
        assert!(validate_rating(4, Some("a\u{7}")).is_err());
        let r: RatingRequest = serde_json::from_str(r#"{"rating": 4.0}"#).unwrap();
        assert_eq!(r.rating, 4);
        assert!(serde_json::from_str::<RatingRequest>(r#"{"rating": 4.5}"#).is_err());
        assert!(serde_json::from_str::<RatingRequest>(r#"{"rating": "4"}"#).is_err());
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
        assert_eq!(ErrorCode::NotAssignee.http_status(), 403);
        assert_eq!(serde_json::to_string(&ErrorCode::NotAssignee).unwrap(), r#""not_assignee""#);
        assert_eq!(ErrorCode::AgentUnavailable.http_status(), 409);
        assert_eq!(ErrorCode::MethodNotAllowed.http_status(), 405);
        assert_eq!(ErrorCode::AlreadyRated.http_status(), 409);
        assert_eq!(ErrorCode::EmailDisabled.http_status(), 403);
        assert_eq!(ErrorCode::AlreadyRated.as_str(), "already_rated");
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
        for code in ErrorCode::KNOWN {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        let unknown: ErrorCode = serde_json::from_str(r#""teapot""#).unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }
}

#[cfg(test)]
mod pattern_tests {
    //! Each pattern of the OpenAPI document accepts exactly what its function accepts.

    use super::*;
    use proptest::prelude::*;

    fn re(p: &str) -> regex::Regex {
        regex::Regex::new(p).unwrap()
    }

    /// Short strings of the characters where the rules differ: controls, every kind of
    /// whitespace, `@`, `.`, `-`, `:`, ASCII and non-ASCII letters.
    fn tricky() -> impl Strategy<Value = String> {
        let chars: Vec<char> = "\0\t\n\r\x0b\x0c\x1c\x1f \x7f\u{85}\u{9f}\u{a0}\u{1680}\u{2000}\u{200a}\u{200b}\u{2028}\u{202f}\u{3000}\u{feff}@.-_:aZ09é中"
            .chars()
            .collect();
        prop::collection::vec(prop::sample::select(chars), 0..8).prop_map(|v| v.into_iter().collect())
    }

    fn emailish() -> impl Strategy<Value = String> {
        (
            tricky(),
            prop::sample::select(vec!["@", "@a.b", "@a-b.co", "@-a.co", "@a..co", "@é.co", "@x.y-"]),
            tricky(),
        )
            .prop_map(|(a, b, c)| format!("{a}{b}{c}"))
    }

    #[test]
    fn constants_in_patterns() {
        assert!(ID_PATTERN.ends_with(&format!("{{1,{MAX_ID_CHARS}}}$")));
        {
            use crate::timing::presence::{is_valid_tab_id, MAX_TAB_ID_LEN, TAB_ID_PATTERN};
            assert!(TAB_ID_PATTERN.ends_with(&format!("{{1,{MAX_TAB_ID_LEN}}}$")));
            for tab in ["", "a", "tab-1_X", "tab.1", "tab 1", "é", &"x".repeat(64), &"x".repeat(65)] {
                assert_eq!(re(TAB_ID_PATTERN).is_match(tab), is_valid_tab_id(tab), "{tab:?}");
            }
        }
        assert!(TOKEN_PATTERN.ends_with(&format!("{{1,{MAX_TOKEN_CHARS}}}$")));
        assert!(SHORTCUT_PATTERN.ends_with(&format!("{{1,{MAX_SHORTCUT_CHARS}}}$")));
        assert!(re(WEBHOOK_URL_PATTERN).is_match(" https://bot.example.com:8080/hook "));
        assert!(re(WEBHOOK_URL_PATTERN).is_match(""));
        assert!(!re(WEBHOOK_URL_PATTERN).is_match("http://127.0.0.1/"));
        assert!(!re(WEBHOOK_URL_PATTERN).is_match("http://localhost/"));
    }

    proptest! {
        #[test]
        fn patterns_agree_with_the_rules(s in tricky()) {
            prop_assert_eq!(re(ID_PATTERN).is_match(&s), is_valid_id(&s), "id {:?}", s);
            prop_assert_eq!(re(TOKEN_PATTERN).is_match(&s), is_valid_token(&s), "token {:?}", s);
            prop_assert_eq!(re(SHORTCUT_PATTERN).is_match(&s), is_valid_shortcut(&s), "shortcut {:?}", s);
            prop_assert_eq!(re(TEXT_PATTERN).is_match(&s), validate_body(&s).is_ok(), "body {:?}", s);
            prop_assert_eq!(re(OPTIONAL_TEXT_PATTERN).is_match(&s), !has_control_chars(&s, true), "note {:?}", s);
            prop_assert_eq!(re(LINE_PATTERN).is_match(&s), validate_line("f", &s, 100, true).is_ok(), "line {:?}", s);
            prop_assert_eq!(re(OPTIONAL_LINE_PATTERN).is_match(&s), validate_line("f", &s, 100, false).is_ok(), "optional line {:?}", s);
            prop_assert_eq!(re(EMAIL_PATTERN).is_match(&s), is_valid_email(&s), "email {:?}", s);
        }

        #[test]
        fn email_pattern_agrees(s in emailish()) {
            prop_assert_eq!(re(EMAIL_PATTERN).is_match(&s), is_valid_email(&s), "email {:?}", s);
        }
    }

    #[test]
    fn read_seq_takes_integral_numbers_only() {
        let seq =
            |v: &str| serde_json::from_str::<ReadRequest>(&format!(r#"{{"seq": {v}}}"#)).map(|r| r.seq.0);
        assert_eq!(seq("7").unwrap(), 7);
        assert_eq!(seq("7.0").unwrap(), 7);
        assert_eq!(seq("9223372036854775807").unwrap(), MAX_SEQ);
        assert!(seq("7.5").is_err());
        assert!(seq("-1").is_err());
        assert!(seq("1e30").is_err());
        assert!(seq("\"7\"").is_err());
    }

    #[test]
    fn email_domains_are_ascii() {
        assert!(is_valid_email("x@xn--bcher-kva.de"));
        assert!(!is_valid_email("x@bücher.de"));
        assert!(is_valid_email("ü@example.com"));
    }

    #[test]
    fn search_terms_are_words_never_syntax() {
        assert_eq!(
            search_terms(r#"  "Refund"* NEAR(a b) -x OR y:z  "#),
            ["refund", "near", "a", "b", "x", "or", "y", "z"]
        );
        assert_eq!(search_terms("Crème brûlée, 東京 42"), ["crème", "brûlée", "東京", "42"]);
        assert!(search_terms("\"*-()^:").is_empty());
        assert!(search_terms("").is_empty());
    }

    #[test]
    fn snippets_center_the_first_match() {
        let terms = vec![String::from("refund")];
        assert_eq!(snippet("I want a Refund please", &terms, 160), "I want a Refund please");
        let long = format!("{} my refund is late {}", "a ".repeat(100), "b ".repeat(100));
        let s = snippet(&long, &terms, 60);
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("refund"), "{s}");
        assert_eq!(s.chars().count(), 62);
        // A word start only: "prefund" does not match "refund"; no match gives the start.
        assert_eq!(snippet("prefunded", &terms, 4), "pref…");
        // Prefixes match (as the indexes do), and case is ignored.
        assert_eq!(snippet("REFUNDS\nnow", &[String::from("ref")], 160), "REFUNDS now");
    }
}
