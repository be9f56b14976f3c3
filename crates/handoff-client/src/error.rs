//! Errors of the client. Every error that reaches JavaScript carries a `code` (the server's
//! error code, or one of the client's own: `network_error`, `invalid_response`, `not_ready`,
//! `closed`, `send_failed`) and a `message`.

use handoff_protocol::api::{ErrorBody, ErrorCode};

/// A failed client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error (`{"error": {"code", "message"}}`).
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
    Network(String),
    /// The server's answer was not what the API documents.
    InvalidResponse(String),
    /// The call needs a step first (`start()`, `login()`, a conversation).
    NotReady(&'static str),
    /// The client was closed.
    Closed,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ClientError {}

/// The code the server would use for an HTTP status, for error answers without a JSON body
/// (a proxy's 502, an HTML 404), as its wire name. Each arm names one code, so the build keeps
/// these few names and not the name table of every [`ErrorCode`] (which grows with the API).
pub fn code_for_status(status: u16) -> &'static str {
    match status {
        400 => ErrorCode::BadRequest.as_str(),
        401 => ErrorCode::Unauthorized.as_str(),
        403 => ErrorCode::Forbidden.as_str(),
        404 => ErrorCode::NotFound.as_str(),
        409 => ErrorCode::InvalidTransition.as_str(),
        413 => ErrorCode::PayloadTooLarge.as_str(),
        422 => ErrorCode::ValidationFailed.as_str(),
        429 => ErrorCode::RateLimited.as_str(),
        500..=599 => ErrorCode::Internal.as_str(),
        _ => ErrorCode::Unknown.as_str(),
    }
}

impl ClientError {
    /// The error of a non-2xx answer with its body text (natively; the browser reads the body
    /// with `JSON.parse` and calls [`Self::from_parts`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_response(status: u16, body: &str) -> ClientError {
        let v = serde_json::from_str::<serde_json::Value>(body).unwrap_or_default();
        let field = |name: &str| v.get("error")?.get(name)?.as_str().map(str::to_owned);
        Self::from_parts(status, field("code"), field("message"))
    }

    /// The error of a non-2xx answer whose body had `error.code` and `error.message` (or not:
    /// a proxy's 502, an HTML 404, which map by status). The raw code is kept: an unknown code
    /// must reach the app unchanged.
    pub fn from_parts(status: u16, code: Option<String>, message: Option<String>) -> ClientError {
        match (code, message) {
            (Some(code), Some(message)) => ClientError::Api { status, code, message },
            _ => ClientError::Api {
                status,
                code: code_for_status(status).to_owned(),
                message: ["HTTP ", &handoff_protocol::ids::decimal(status.into())].concat(),
            },
        }
    }

    /// The typed server error, if it is one.
    pub fn api_error(&self) -> Option<ErrorBody> {
        let ClientError::Api { code, message, .. } = self else { return None };
        let code = ErrorCode::KNOWN.into_iter().find(|c| c.as_str() == code).unwrap_or(ErrorCode::Unknown);
        Some(ErrorBody { error: handoff_protocol::api::ApiError { code, message: message.clone() } })
    }

    /// The human-readable message (also the `Display`), built without `core::fmt`.
    pub fn message(&self) -> String {
        match self {
            ClientError::Api { message, .. } => message.clone(),
            ClientError::Network(m) => ["network error: ", m].concat(),
            ClientError::InvalidResponse(m) => ["invalid response: ", m].concat(),
            ClientError::NotReady(m) => (*m).to_owned(),
            ClientError::Closed => "the client is closed".to_owned(),
        }
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
