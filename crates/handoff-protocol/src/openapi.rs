//! OpenAPI schemas that say what the server checks (feature `openapi`): string lengths and
//! patterns built from the constants and patterns of [`crate::api`], integer ranges, and enums
//! without the catch-all `unknown` a client parses but no server sends or accepts.
//!
//! The request bodies refer to these with `#[schema(schema_with = ...)]`.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::RefOr;

use crate::api::{
    EMAIL_PATTERN, ID_PATTERN, LINE_PATTERN, MAX_BODY_CHARS, MAX_CANNED_CHARS, MAX_EMAIL_CHARS, MAX_ID_CHARS,
    MAX_NAME_CHARS, MAX_NOTE_CHARS, MAX_PASSWORD_CHARS, MAX_RATING_COMMENT_CHARS, MAX_SEQ,
    MAX_SHORTCUT_CHARS, MAX_TOKEN_CHARS, MAX_URL_CHARS, OPTIONAL_LINE_PATTERN, OPTIONAL_TEXT_PATTERN,
    SHORTCUT_PATTERN, TEXT_PATTERN, TOKEN_PATTERN, WEBHOOK_URL_PATTERN,
};

fn string(description: &str, min: usize, max: usize, pattern: &str, nullable: bool) -> RefOr<Schema> {
    let ty = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { Type::String.into() };
    ObjectBuilder::new()
        .schema_type(ty)
        .description(Some(description))
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .into()
}

/// A string enum of `values`.
pub(crate) fn string_enum(description: &str, values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values.iter().copied()))
        .into()
}

/// An id (`is_valid_id`).
pub(crate) fn id(description: &str) -> RefOr<Schema> {
    string(description, 1, MAX_ID_CHARS, ID_PATTERN, false)
}

/// A `seq` or `after`: 0 to [`MAX_SEQ`].
pub(crate) fn seq(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some(description))
        .minimum(Some(0))
        .maximum(Some(MAX_SEQ))
        .into()
}

/// A presence report's tab id (`is_valid_tab_id`), or null.
pub fn optional_tab() -> RefOr<Schema> {
    use crate::timing::presence::{MAX_TAB_ID_LEN, TAB_ID_PATTERN};
    string(
        "The reporting tab (random per page load); presence is kept per tab.",
        1,
        MAX_TAB_ID_LEN,
        TAB_ID_PATTERN,
        true,
    )
}

/// A project key (`is_valid_token`).
pub fn project_key() -> RefOr<Schema> {
    string(
        "The project's public key (`pk_...`), from the script tag.",
        1,
        MAX_TOKEN_CHARS,
        TOKEN_PATTERN,
        false,
    )
}

/// A message, note or offline-message body (`validate_body`).
pub fn body() -> RefOr<Schema> {
    string(
        "Plain text: not blank, no control characters but tab and line breaks.",
        1,
        MAX_BODY_CHARS,
        TEXT_PATTERN,
        false,
    )
}

/// An optional first message (`validate_body` when present).
pub fn optional_body() -> RefOr<Schema> {
    string(
        "The customer's first message: not blank, no control characters but tab and line breaks.",
        1,
        MAX_BODY_CHARS,
        TEXT_PATTERN,
        true,
    )
}

/// A transfer's hand-over note: blank is no note.
pub fn transfer_note() -> RefOr<Schema> {
    string(
        "Hand-over note, kept as an internal note (blank: none); no control characters but tab and line breaks.",
        0,
        MAX_NOTE_CHARS,
        OPTIONAL_TEXT_PATTERN,
        true,
    )
}

/// A rating's comment (`validate_rating`), or null.
pub fn rating_comment() -> RefOr<Schema> {
    string(
        "The customer's comment (blank: none); no control characters but tab and line breaks.",
        0,
        MAX_RATING_COMMENT_CHARS,
        OPTIONAL_TEXT_PATTERN,
        true,
    )
}

/// A transfer target: `"queue"` or an agent id.
pub fn transfer_to() -> RefOr<Schema> {
    id("`\"queue\"` or an agent id.")
}

/// A required name (`validate_line`).
pub fn name() -> RefOr<Schema> {
    string("Name: one line, not blank.", 1, MAX_NAME_CHARS, LINE_PATTERN, false)
}

/// An optional name (`validate_line`, blank allowed).
pub fn optional_name() -> RefOr<Schema> {
    string("Display name: one line.", 0, MAX_NAME_CHARS, OPTIONAL_LINE_PATTERN, true)
}

/// An email address (`is_valid_email`).
pub fn email() -> RefOr<Schema> {
    string("Email address.", 1, MAX_EMAIL_CHARS, EMAIL_PATTERN, false)
}

/// An optional email address (`is_valid_email` when present).
pub fn optional_email() -> RefOr<Schema> {
    string("Email address.", 1, MAX_EMAIL_CHARS, EMAIL_PATTERN, true)
}

/// The site's user id of `identify` (`validate_line`).
pub fn user_id() -> RefOr<Schema> {
    string("The site's user id: one line, not blank.", 1, MAX_ID_CHARS, LINE_PATTERN, false)
}

/// The HMAC of `identify` (`validate_line`; a wrong one is 403).
pub fn hmac() -> RefOr<Schema> {
    string("Hex HMAC-SHA256 of `user_id`.", 1, MAX_TOKEN_CHARS, LINE_PATTERN, false)
}

/// The login email (`validate_line`: a wrong one is 401, like a wrong password).
pub fn login_email() -> RefOr<Schema> {
    string("Email: one line, not blank.", 1, MAX_EMAIL_CHARS, LINE_PATTERN, false)
}

/// The login password (`validate_line`).
pub fn password() -> RefOr<Schema> {
    string("Password: one line, not blank.", 1, MAX_PASSWORD_CHARS, LINE_PATTERN, false)
}

/// A webhook URL (the server's URL checks; `null` removes the webhook).
pub fn webhook_url() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "An `http://` or `https://` URL with a host name (addresses of loopback, private or \
             link-local networks are refused); `null` removes the webhook.",
        ))
        .pattern(Some(WEBHOOK_URL_PATTERN))
        .max_length(Some(MAX_URL_CHARS))
        .into()
}

/// A canned response's shortcut (`is_valid_shortcut`).
pub fn shortcut() -> RefOr<Schema> {
    string(
        "What agents type after `/`: letters, digits, `-` or `_`; unique in the project without regard to case.",
        1,
        MAX_SHORTCUT_CHARS,
        SHORTCUT_PATTERN,
        false,
    )
}

/// A new shortcut, or null (unchanged).
pub fn optional_shortcut() -> RefOr<Schema> {
    string(
        "A new shortcut (letters, digits, `-` or `_`; unique in the project without regard to case); null: unchanged.",
        1,
        MAX_SHORTCUT_CHARS,
        SHORTCUT_PATTERN,
        true,
    )
}

/// A canned response's text (`validate_canned`).
pub fn canned_content() -> RefOr<Schema> {
    string(
        "The text inserted: not blank, no control characters but tab and line breaks.",
        1,
        MAX_CANNED_CHARS,
        TEXT_PATTERN,
        false,
    )
}

/// A new text, or null (unchanged).
pub fn optional_canned_content() -> RefOr<Schema> {
    string(
        "A new text (not blank, no control characters but tab and line breaks); null: unchanged.",
        1,
        MAX_CANNED_CHARS,
        TEXT_PATTERN,
        true,
    )
}
