//! The REST API (DESIGN section 5): handlers parse, authenticate, call one service function,
//! and answer. Errors are `{"error": {"code", "message"}}` with a fitting status.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use handoff_protocol::api::{self, ErrorCode, MAX_REQUEST_BYTES};
use handoff_protocol::ids::{ConversationId, OfflineMessageId, ProjectId, Seq};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{AppError, AppResult};
use crate::service::{Caller, Service};

/// Shared state of the handlers.
pub type AppState = Arc<Service>;

/// JSON body extractor whose rejections are API errors (400 `bad_request`, 413
/// `payload_too_large`) instead of axum's plain-text ones.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(ErrorCode::PayloadTooLarge, "request body is larger than 64 KiB")
    } else {
        AppError::bad_request(rejection.body_text())
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
#[derive(Debug)]
pub struct Auth(pub Caller);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN)?.to_str().ok()
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(AppError::unauthorized)?;
        let caller = state.authenticate(token).await?;
        Service::check_customer(&caller, origin(&parts.headers), true)?;
        Ok(Auth(caller))
    }
}

/// The REST routes (without the realtime socket and static files).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/openapi.json", get(openapi))
        .route("/api/widget/session", post(widget_session))
        .route("/api/widget/identify", post(identify))
        .route("/api/conversations", post(create_conversation))
        .route("/api/conversations/{id}", get(get_conversation))
        .route("/api/conversations/{id}/events", get(events))
        .route("/api/conversations/{id}/messages", post(send_message))
        .route("/api/conversations/{id}/handoff", post(handoff))
        .route("/api/conversations/{id}/claim", post(claim))
        .route("/api/conversations/{id}/transfer", post(transfer))
        .route("/api/conversations/{id}/decline", post(decline))
        .route("/api/conversations/{id}/resolve", post(resolve))
        .route("/api/conversations/{id}/typing", post(typing))
        .route("/api/conversations/{id}/presence", post(presence))
        .route("/api/conversations/{id}/read", post(read))
        .route("/api/conversations/{id}/notes", get(notes).post(add_note))
        .route("/api/agents/login", post(login))
        .route("/api/agents/me", get(me))
        .route("/api/agents/me/status", put(set_status))
        .route("/api/agents", get(agents))
        .route("/api/inbox", get(inbox))
        .route("/api/queue", get(queue))
        .route("/api/projects/{id}/offline-messages", post(offline_message))
        .route("/api/offline-messages", get(offline_messages))
        .route("/api/project/webhook", put(set_webhook))
        .route("/api/offline-messages/{id}/handled", post(offline_handled))
        .fallback(|| async { AppError::not_found("route") })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(
            // Browsers may call from any origin; each project's allow-list is enforced per
            // request (the preflight carries no credentials to tell the project).
            CorsLayer::new()
                .allow_origin(AllowOrigin::mirror_request())
                .allow_methods([Method::GET, Method::POST, Method::PUT])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        )
        .with_state(state)
}

/// Every route of the API: method, path, summary. The OpenAPI document is generated from this
/// table, and a test checks that each entry is served.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/healthz", "Liveness"),
    ("post", "/api/widget/session", "Start or resume a widget session"),
    ("post", "/api/widget/identify", "Bind a verified user to the visitor (HMAC)"),
    ("post", "/api/conversations", "Start a conversation"),
    ("get", "/api/conversations/{id}", "A conversation"),
    ("get", "/api/conversations/{id}/events", "History, catch-up and long-poll (?after=&wait=)"),
    ("post", "/api/conversations/{id}/messages", "Send a message (idempotent by client_msg_id)"),
    ("post", "/api/conversations/{id}/handoff", "Ask for a human"),
    ("post", "/api/conversations/{id}/claim", "Claim a queued conversation"),
    ("post", "/api/conversations/{id}/transfer", "Transfer to the queue or an agent"),
    ("post", "/api/conversations/{id}/decline", "Decline an assignment"),
    ("post", "/api/conversations/{id}/resolve", "Resolve"),
    ("post", "/api/conversations/{id}/typing", "Typing indicator"),
    ("post", "/api/conversations/{id}/presence", "Customer presence (sendBeacon-friendly)"),
    ("post", "/api/conversations/{id}/read", "Agent read marker"),
    ("get", "/api/conversations/{id}/notes", "Internal notes"),
    ("post", "/api/conversations/{id}/notes", "Add an internal note"),
    ("post", "/api/agents/login", "Agent login"),
    ("get", "/api/agents/me", "The signed-in agent"),
    ("put", "/api/agents/me/status", "Set my status"),
    ("get", "/api/agents", "Agents of my project"),
    ("get", "/api/inbox", "My conversations and the queue, with unread counts"),
    ("get", "/api/queue", "The waiting list"),
    ("post", "/api/projects/{id}/offline-messages", "Leave an offline message"),
    ("get", "/api/offline-messages", "Offline messages (?handled=)"),
    ("put", "/api/project/webhook", "Set or remove the bot webhook (secret key)"),
    ("post", "/api/offline-messages/{id}/handled", "Mark an offline message handled"),
];

async fn openapi() -> axum::Json<serde_json::Value> {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| serde_json::json!({}));
        entry[*method] = serde_json::json!({
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
    }
    axum::Json(serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Handoff", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }))
}

async fn widget_session(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<api::WidgetSessionRequest>,
) -> AppResult<Json<api::WidgetSession>> {
    s.widget_session(req, origin(&headers)).await.map(Json)
}

async fn identify(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<api::IdentifyRequest>,
) -> AppResult<StatusCode> {
    // `identify` is the one customer call an unverified visitor may make.
    let token = bearer(&headers).ok_or_else(AppError::unauthorized)?;
    let caller = s.authenticate(token).await?;
    Service::check_customer(&caller, origin(&headers), false)?;
    s.identify(&caller, req).await.map(|()| StatusCode::NO_CONTENT)
}

async fn create_conversation(
    State(s): State<AppState>,
    Auth(c): Auth,
    body: Bytes,
) -> AppResult<(StatusCode, Json<api::Conversation>)> {
    // The body is optional.
    let req = if body.is_empty() {
        api::CreateConversationRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::bad_request(format!("invalid JSON: {e}")))?
    };
    s.create_conversation(&c, req).await.map(|v| (StatusCode::CREATED, Json(v)))
}

async fn get_conversation(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.get_conversation(&c, &id).await.map(Json)
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait: u64,
}

async fn events(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<api::EventsPage>> {
    let Query(q) = q.map_err(|e| AppError::bad_request(e.body_text()))?;
    s.events(&c, &id, Seq(q.after), q.wait).await.map(Json)
}

async fn send_message(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<api::SendMessageRequest>,
) -> AppResult<Response> {
    let r = s.send_message(&c, &id, req).await?;
    let status = if r.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(r)).into_response())
}

async fn handoff(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.handoff(&c, &id).await.map(Json)
}

async fn claim(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.claim(&c, &id).await.map(Json)
}

async fn transfer(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<api::TransferRequest>,
) -> AppResult<Json<api::Conversation>> {
    s.transfer(&c, &id, req).await.map(Json)
}

async fn decline(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.decline(&c, &id).await.map(Json)
}

async fn resolve(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.resolve(&c, &id).await.map(Json)
}

async fn typing(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<api::TypingRequest>,
) -> AppResult<StatusCode> {
    s.typing(&c, &id, req.is_typing).await.map(|()| StatusCode::NO_CONTENT)
}

/// Presence takes `navigator.sendBeacon` bodies: `text/plain` JSON with the token inside.
async fn presence(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<ConversationId>,
    body: Bytes,
) -> AppResult<StatusCode> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(AppError::new(ErrorCode::PayloadTooLarge, "request body is larger than 64 KiB"));
    }
    let req: api::PresenceRequest =
        serde_json::from_slice(&body).map_err(|e| AppError::bad_request(format!("invalid JSON: {e}")))?;
    let token = bearer(&headers).or(req.token.as_deref()).ok_or_else(AppError::unauthorized)?;
    let caller = s.authenticate(token).await?;
    Service::check_customer(&caller, origin(&headers), true)?;
    s.presence(&caller, &id, req.state).await.map(|()| StatusCode::NO_CONTENT)
}

async fn read(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<api::ReadRequest>,
) -> AppResult<StatusCode> {
    s.mark_read(&c, &id, req.seq).await.map(|()| StatusCode::NO_CONTENT)
}

async fn notes(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<Vec<handoff_protocol::event::Note>>> {
    s.notes(&c, &id).await.map(Json)
}

async fn add_note(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<api::NoteRequest>,
) -> AppResult<(StatusCode, Json<handoff_protocol::event::Note>)> {
    s.add_note(&c, &id, req.body).await.map(|n| (StatusCode::CREATED, Json(n)))
}

async fn login(
    State(s): State<AppState>,
    Json(req): Json<api::LoginRequest>,
) -> AppResult<Json<api::LoginResponse>> {
    s.login(&req).await.map(Json)
}

async fn me(Auth(c): Auth) -> AppResult<Json<api::Agent>> {
    Service::me(&c).map(Json)
}

async fn set_status(
    State(s): State<AppState>,
    Auth(c): Auth,
    Json(req): Json<api::StatusRequest>,
) -> AppResult<Json<api::Agent>> {
    s.set_status(&c, req.status).await.map(Json)
}

async fn agents(State(s): State<AppState>, Auth(c): Auth) -> AppResult<Json<Vec<api::Agent>>> {
    s.agents(&c).await.map(Json)
}

async fn inbox(State(s): State<AppState>, Auth(c): Auth) -> AppResult<Json<Vec<api::InboxItem>>> {
    s.inbox(&c).await.map(Json)
}

async fn queue(
    State(s): State<AppState>,
    Auth(c): Auth,
) -> AppResult<Json<handoff_protocol::event::QueueUpdated>> {
    s.queue(&c).await.map(Json)
}

async fn offline_message(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(project): Path<ProjectId>,
    Json(req): Json<api::OfflineMessageRequest>,
) -> AppResult<(StatusCode, Json<handoff_protocol::event::OfflineMessage>)> {
    s.offline_message(&c, &project, req).await.map(|m| (StatusCode::CREATED, Json(m)))
}

#[derive(Deserialize)]
struct HandledQuery {
    handled: Option<bool>,
}

async fn offline_messages(
    State(s): State<AppState>,
    Auth(c): Auth,
    Query(q): Query<HandledQuery>,
) -> AppResult<Json<Vec<handoff_protocol::event::OfflineMessage>>> {
    s.offline_messages(&c, q.handled).await.map(Json)
}

async fn offline_handled(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<OfflineMessageId>,
) -> AppResult<StatusCode> {
    s.mark_offline_handled(&c, &id).await.map(|()| StatusCode::NO_CONTENT)
}

async fn set_webhook(
    State(s): State<AppState>,
    Auth(c): Auth,
    Json(req): Json<api::WebhookRequest>,
) -> AppResult<Json<api::WebhookSettings>> {
    s.set_webhook(&c, req.url).await.map(Json)
}
