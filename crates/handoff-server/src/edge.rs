//! What every response of the server gets on its way out: error answers as the JSON error body,
//! security headers, and cache headers for the web assets.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use handoff_protocol::api::{ErrorCode, MAX_REQUEST_BYTES};

use crate::error::AppError;

/// `Content-Security-Policy` of API answers (JSON is not a document: nothing may load or frame it).
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// `Content-Security-Policy` of the agent console (`/console/`): its own ES modules, styles and
/// images; the SDK's wasm (`'wasm-unsafe-eval'`); fetch and WebSocket to this server only
/// (`'self'` covers `ws:`/`wss:` to the same host); never framed.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `Referrer-Policy` of every answer.
pub const REFERRER_POLICY: &str = "strict-origin-when-cross-origin";

/// `Cache-Control` of web assets whose name carries a content hash.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of the widget loader (`/widget.js`, a stable URL pasted into sites).
pub const LOADER_CACHE: &str = "public, max-age=300";

/// Longest error body read to be turned into a JSON message.
const MAX_ERROR_TEXT: usize = 4096;

/// Turns an error answer (status >= 400) that is not JSON, such as axum's plain-text extractor
/// rejections, its empty 405 or a static file's empty 404, into the API's
/// `{"error": {"code", "message"}}` with the same status and headers.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if status.as_u16() < 400 || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && !t.starts_with('<') && !t.contains('\n'));
    let code = ErrorCode::for_status(status.as_u16());
    let message = match code {
        ErrorCode::PayloadTooLarge => format!("request body is larger than {} KiB", MAX_REQUEST_BYTES / 1024),
        ErrorCode::NotFound => "not found".to_owned(),
        ErrorCode::MethodNotAllowed => "method not allowed on this route".to_owned(),
        _ => text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase()),
    };
    let json = AppError::new(code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::TRANSFER_ENCODING);
    for (name, value) in json.headers() {
        parts.headers.insert(name, value.clone());
    }
    let (_, body) = json.into_parts();
    Response::from_parts(parts, body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// Whether the last segment of `path` carries a content hash: a dot-separated part of 16
/// lowercase hex digits between the stem and the extension (`handoff_widget.0123456789abcdef.js`).
pub fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1]
            .iter()
            .any(|p| p.len() == 16 && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Security headers on every answer (`X-Content-Type-Options`, `Referrer-Policy`); a CSP that
/// forbids everything and framing on API (JSON) answers and the console's policy under
/// `/console`; cache headers on the web assets. The widget and SDK assets get no CSP or
/// framing rule: they are embedded in other sites.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    // The widget's language catalogs are JSON files among its assets, not API answers.
    let json = is_json(response.headers()) && !path.starts_with("/widget/i18n/");
    let ok = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
    let h = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, REFERRER_POLICY);
    let console = path == "/console" || path.starts_with("/console/");
    if json || path.starts_with("/api/") {
        set(header::CONTENT_SECURITY_POLICY, API_CSP);
        set(header::X_FRAME_OPTIONS, "DENY");
        set(header::CACHE_CONTROL, "no-store");
    } else if console {
        set(header::CONTENT_SECURITY_POLICY, CONSOLE_CSP);
        set(header::X_FRAME_OPTIONS, "DENY");
    }
    if ok && !json {
        if path == "/widget.js" {
            set(header::CACHE_CONTROL, LOADER_CACHE);
        } else if is_hashed_asset(&path) {
            set(header::CACHE_CONTROL, IMMUTABLE);
        }
    }
    response
}

/// The answer to a path the server does not have.
pub async fn not_found() -> AppError {
    AppError::not_found("route")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn hashed_asset_names() {
        for yes in [
            "/widget/handoff_widget.0123456789abcdef.js",
            "/widget/handoff_widget_bg.fedcba9876543210.wasm",
            "/x/a.0123456789abcdef.min.js",
        ] {
            assert!(is_hashed_asset(yes), "{yes}");
        }
        for no in [
            "/widget.js",
            "/widget/handoff_widget.js",
            "/widget/handoff_widget.0123456789ABCDEF.js",
            "/widget/handoff_widget.0123456789abcde.js",
            "/0123456789abcdef.js",
            "/widget/x.0123456789abcdef",
        ] {
            assert!(!is_hashed_asset(no), "{no}");
        }
    }

    #[tokio::test]
    async fn plain_errors_become_json() {
        let plain = (StatusCode::BAD_REQUEST, "Failed to deserialize query string: bad").into_response();
        let r = json_errors(plain).await;
        assert_eq!(r.status(), 400);
        assert!(is_json(r.headers()));
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert_eq!(v["error"]["message"], "Failed to deserialize query string: bad");

        let mut empty = (StatusCode::METHOD_NOT_ALLOWED, Body::empty()).into_response();
        empty.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        let r = json_errors(empty).await;
        assert_eq!(
            (r.status(), r.headers()[header::ALLOW].to_str().unwrap()),
            (StatusCode::METHOD_NOT_ALLOWED, "GET,HEAD")
        );
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed");

        let fine = (StatusCode::OK, "ok").into_response();
        assert!(!is_json(json_errors(fine).await.headers()));
    }
}
