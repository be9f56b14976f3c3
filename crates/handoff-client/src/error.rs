//! Errors of the client. Every error that reaches JavaScript carries a `code` (the server's
//! error code, or one of the client's own: `network_error`, `invalid_response`, `not_ready`,
//! `closed`, `send_failed`) and a `message`.

use handoff_protocol::api::{ErrorBody, ErrorCode};

/// A failed client operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error (`{"error": {"code", "message"}}`).
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's code, passed on as is (a newer server may use codes this client does
        /// not know).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The request did not reach the server, or no answer came.
    #[error("network error: {0}")]
    Network(String),
    /// The server's answer was not what the API documents.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The call needs a step first (`start()`, `login()`, a conversation).
    #[error("{0}")]
    NotReady(&'static str),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

/// The wire code of an [`ErrorCode`].
pub fn code_str(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The code the server would use for an HTTP status, for error answers without a JSON body
/// (a proxy's 502, an HTML 404).
pub fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::InvalidTransition,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::ValidationFailed,
        429 => ErrorCode::RateLimited,
        500..=599 => ErrorCode::Internal,
        _ => ErrorCode::Unknown,
    }
}

impl ClientError {
    /// The error of a non-2xx answer with its body text.
    pub fn from_response(status: u16, body: &str) -> ClientError {
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) => {
                // Keep the raw code string: an unknown code must reach the app unchanged.
                let code = v.pointer("/error/code").and_then(|c| c.as_str()).map(str::to_owned);
                let message = v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned);
                if let (Some(code), Some(message)) = (code, message) {
                    return ClientError::Api { status, code, message };
                }
                Self::bare(status)
            }
            Err(_) => Self::bare(status),
        }
    }

    fn bare(status: u16) -> ClientError {
        let mut message = String::from("HTTP ");
        message.push_str(&status.to_string());
        ClientError::Api { status, code: code_str(code_for_status(status)), message }
    }

    /// The typed server error, if it is one.
    pub fn api_error(&self) -> Option<ErrorBody> {
        let ClientError::Api { code, message, .. } = self else { return None };
        let code =
            serde_json::from_value(serde_json::Value::String(code.clone())).unwrap_or(ErrorCode::Unknown);
        Some(ErrorBody { error: handoff_protocol::api::ApiError { code, message: message.clone() } })
    }

    /// The machine-readable code passed to JavaScript.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Network(_) => "network_error",
            ClientError::InvalidResponse(_) => "invalid_response",
            ClientError::NotReady(_) => "not_ready",
            ClientError::Closed => "closed",
        }
    }

    /// The HTTP status, for server errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a retry may succeed, by the outbox's rule
    /// ([`handoff_protocol::timing::outbox::is_transient`]): network errors, 5xx, 408, 425 and 429.
    pub fn is_retryable(&self) -> bool {
        use handoff_protocol::timing::outbox::is_transient;
        match self {
            ClientError::Network(_) => is_transient(None),
            ClientError::Api { status, .. } => is_transient(Some(*status)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_bodies_keep_code_and_message() {
        let e = ClientError::from_response(
            409,
            r#"{"error":{"code":"invalid_transition","message":"already resolved"}}"#,
        );
        assert_eq!(e.code(), "invalid_transition");
        assert_eq!(e.to_string(), "already resolved");
        assert_eq!(e.status(), Some(409));
        assert!(!e.is_retryable());
        assert_eq!(e.api_error().map(|b| b.error.code), Some(ErrorCode::InvalidTransition));
    }

    #[test]
    fn unknown_codes_pass_through() {
        let e = ClientError::from_response(418, r#"{"error":{"code":"teapot","message":"short and stout"}}"#);
        assert_eq!(e.code(), "teapot");
        assert_eq!(e.api_error().map(|b| b.error.code), Some(ErrorCode::Unknown));
    }

    #[test]
    fn bodies_that_are_not_api_errors_map_by_status() {
        let e = ClientError::from_response(502, "<html>Bad gateway</html>");
        assert_eq!((e.code(), e.to_string().as_str()), ("internal", "HTTP 502"));
        assert!(e.is_retryable());
        assert_eq!(ClientError::from_response(401, "{}").code(), "unauthorized");
        assert_eq!(ClientError::from_response(429, "").code(), "rate_limited");
        assert!(ClientError::from_response(429, "").is_retryable());
        assert_eq!(ClientError::from_response(404, "null").code(), "not_found");
        assert_eq!(ClientError::from_response(422, "").code(), "validation_failed");
        assert_eq!(ClientError::from_response(302, "").code(), "unknown");
    }

    #[test]
    fn client_side_errors() {
        assert_eq!(ClientError::Network("offline".into()).code(), "network_error");
        assert!(ClientError::Network("offline".into()).is_retryable());
        assert_eq!(ClientError::NotReady("call start() first").to_string(), "call start() first");
        assert_eq!(ClientError::Closed.code(), "closed");
        assert_eq!(ClientError::InvalidResponse("x".into()).code(), "invalid_response");
        assert!(!ClientError::Closed.is_retryable());
    }
}
