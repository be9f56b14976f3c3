//! The REST API (DESIGN section 5): handlers parse, authenticate, call one service function,
//! and answer. Errors are `{"error": {"code", "message"}}` with a fitting status.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use handoff_protocol::api::{self, ErrorCode, MAX_REQUEST_BYTES};
use handoff_protocol::ids::{AgentId, CannedResponseId, ConversationId, OfflineMessageId, ProjectId, Seq};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{AppError, AppResult};
use crate::limits::{Action, Key};
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
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => from_object(v).map(Json),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// A request body as `T`, which must come as a JSON object (400 `bad_request` otherwise): serde
/// would also take an array of the fields' values (`[null, null]`), and `null` is no body.
fn from_object<T: DeserializeOwned>(v: serde_json::Value) -> AppResult<T> {
    if !v.is_object() {
        return Err(AppError::bad_request("the request body must be a JSON object"));
    }
    serde_json::from_value(v).map_err(|e| AppError::bad_request(format!("invalid request body: {e}")))
}

/// [`from_object`] of raw bytes (bodies read without the `Content-Type` check of [`Json`]).
fn parse_object<T: DeserializeOwned>(body: &[u8]) -> AppResult<T> {
    let v = serde_json::from_slice(body).map_err(|e| AppError::bad_request(format!("invalid JSON: {e}")))?;
    from_object(v)
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

/// A query string whose rejections are API errors (400 `bad_request`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => Err(AppError::bad_request(rejection.body_text())),
        }
    }
}

/// An id in the path, checked by format and length before any lookup (400 `bad_request`
/// otherwise: a 65,000-character id never reaches the store or a map).
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: From<String>> FromRequestParts<S> for PathId<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::bad_request(e.body_text()))?;
        if !api::is_valid_id(&raw) {
            return Err(AppError::bad_request(
                "malformed id: 1 to 128 letters, digits, '_', '-', '.' or ':'",
            ));
        }
        Ok(PathId(T::from(raw)))
    }
}

/// The client's IP: the peer's, or from `X-Forwarded-For` when the peer is a trusted proxy
/// (`None` when the server runs without connection info, as in some tests).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(ClientIp(peer.map(|p| crate::net::client_ip(&parts.headers, p, state.trusted_proxies()))))
    }
}

/// Counts a request against the rate limits of `action`: per client IP and, for an
/// authenticated call, per caller (visitor, agent or secret key) and per project.
fn limit(s: &Service, action: Action, ip: ClientIp, caller: Option<&Caller>) -> AppResult<()> {
    let mut keys = Vec::with_capacity(3);
    keys.extend(ip.0.map(Key::ip));
    if let Some(c) = caller {
        keys.push(Key::Caller(c.limit_key()));
        keys.push(Key::Project(c.project_id().to_string()));
    }
    s.limits().check(action, &keys)
}

/// The ceiling on API requests per client IP, before any handler runs.
async fn api_limit(State(s): State<AppState>, ip: ClientIp, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/api/") {
        if let Some(ip) = ip.0 {
            if let Err(e) = s.limits().check(Action::Api, &[Key::ip(ip)]) {
                return e.into_response();
            }
        }
    }
    next.run(req).await
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

/// The REST routes (without the realtime socket and static files), and `/api/openapi.json`
/// generated from the same handlers.
pub fn routes(state: AppState) -> Router {
    let (router, doc) = api().split_for_parts();
    let doc = Arc::new(doc);
    router
        .route("/api/openapi.json", get(move || async move { axum::Json(doc) }))
        .method_not_allowed_fallback(|| async {
            AppError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
        })
        // Unknown API paths never reach the web assets' fallback.
        .route("/api", any(crate::edge::not_found))
        .route("/api/{*rest}", any(crate::edge::not_found))
        .fallback(crate::edge::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), api_limit))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(
            // Browsers may call from any origin; each project's allow-list is enforced per
            // request (the preflight carries no credentials to tell the project).
            CorsLayer::new()
                .allow_origin(AllowOrigin::mirror_request())
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        )
        .with_state(state)
}

/// The OpenAPI document of the REST API (what `/api/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Handoff", description = "Live chat with AI-to-human handoff: the REST API (DESIGN section 5). \
        Errors are `{\"error\": {\"code\", \"message\"}}` with a fitting status."),
    modifiers(&BearerAuth),
    components(schemas(api::ErrorBody)),
    tags(
        (name = "widget", description = "Customer calls (visitor token; the project's origin allow-list applies)"),
        (name = "conversations", description = "Conversations: customers, agents and bot backends"),
        (name = "agents", description = "Agent sign-in, status, inbox and queue"),
        (name = "offline", description = "The offline form and the agents' offline inbox"),
        (name = "project", description = "Project settings (secret key)"),
        (name = "canned_responses", description = "A project's shared replies (agents and the secret key)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

/// The error answers of the routes, each with the JSON error body; every route lists those it
/// can give. (Types for the document only: never built.)
#[allow(dead_code)]
mod errors {
    use handoff_protocol::api;

    /// 400.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 400,
        description = "`bad_request`: not JSON, not an object, a missing or mistyped field, a malformed id or query"
    )]
    pub(super) struct BadRequest(api::ErrorBody);

    /// 401.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 401, description = "`unauthorized`: no valid token, or a wrong email or password")]
    pub(super) struct Unauthorized(api::ErrorBody);

    /// 403.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 403,
        description = "`forbidden` (not for this kind of caller), `identity_required` or `origin_not_allowed`"
    )]
    pub(super) struct Forbidden(api::ErrorBody);

    /// 404.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 404, description = "`not_found`: no such resource, or not visible to the caller")]
    pub(super) struct NotFound(api::ErrorBody);

    /// 409.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 409,
        description = "`invalid_transition` (not in the conversation's current state), `agent_unavailable`, or `identity_conflict` (identify: the visitor is verified as another user)"
    )]
    pub(super) struct Conflict(api::ErrorBody);

    /// 409 of canned responses.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 409,
        description = "`shortcut_taken`: another canned response of the project has this shortcut (compared without case)"
    )]
    pub(super) struct ShortcutTaken(api::ErrorBody);

    /// 409 of a rating.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 409,
        description = "`already_rated` (a conversation is rated once) or `invalid_transition` (the conversation is not resolved)"
    )]
    pub(super) struct RatingConflict(api::ErrorBody);

    /// 413.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 413, description = "`payload_too_large`: the body is larger than 64 KiB")]
    pub(super) struct TooLarge(api::ErrorBody);

    /// 422.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 422,
        description = "`validation_failed`: a field breaks a rule the schema cannot state (an unknown agent \
            as transfer target, a refused webhook address, ...)"
    )]
    pub(super) struct Invalid(api::ErrorBody);

    /// 429.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 429,
        description = "`rate_limited`: over a rate limit (per client IP, project, visitor, agent or key)",
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))
    )]
    pub(super) struct RateLimited(api::ErrorBody);

    /// 403 of email.
    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 403,
        description = "`email_disabled` (the server sends no email: no `SMTP_URL`), or `forbidden` (not the conversation's visitor), `identity_required`, `origin_not_allowed`"
    )]
    pub(super) struct EmailForbidden(api::ErrorBody);

    /// 500.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 500, description = "`internal`: the server failed")]
    pub(super) struct Internal(api::ErrorBody);
}

use errors::{
    BadRequest, Conflict, EmailForbidden, Forbidden, Internal, Invalid, NotFound, RateLimited,
    RatingConflict, ShortcutTaken, TooLarge, Unauthorized,
};

/// What the annotations cannot say: `POST /api/conversations` takes no body, or an object
/// (never `null`).
fn finish(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::{RefOr, Required};
    let create = doc.paths.paths.get_mut("/api/conversations").and_then(|p| p.post.as_mut());
    if let Some(body) = create.and_then(|op| op.request_body.as_mut()) {
        body.required = Some(Required::False);
        for content in body.content.values_mut() {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                // `Option<T>` is documented as "null or T": keep T.
                let t = one_of.items.iter().find(|s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == utoipa::openapi::schema::Type::Null.into()));
                content.schema = t.cloned();
            }
        }
    }
}

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("visitor token, agent token or project secret key"))
                        .build(),
                ),
            );
        }
    }
}

fn api() -> OpenApiRouter<AppState> {
    let mut router = routes_documented();
    finish(router.get_openapi_mut());
    router
}

fn routes_documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(healthz))
        .routes(routes!(widget_session))
        .routes(routes!(identify))
        .routes(routes!(conversation_history))
        .routes(routes!(create_conversation))
        .routes(routes!(get_conversation))
        .routes(routes!(events))
        .routes(routes!(send_message))
        .routes(routes!(handoff))
        .routes(routes!(claim))
        .routes(routes!(transfer))
        .routes(routes!(decline))
        .routes(routes!(resolve))
        .routes(routes!(typing))
        .routes(routes!(presence))
        .routes(routes!(read))
        .routes(routes!(rate))
        .routes(routes!(transcript))
        .routes(routes!(notes, add_note))
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(logout))
        .routes(routes!(set_status))
        .routes(routes!(agents))
        .routes(routes!(update_agent))
        .routes(routes!(inbox))
        .routes(routes!(queue))
        .routes(routes!(offline_message))
        .routes(routes!(offline_messages))
        .routes(routes!(offline_handled))
        .routes(routes!(set_webhook))
        .routes(routes!(canned_responses, create_canned))
        .routes(routes!(update_canned, delete_canned))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Start or resume a widget session (the project key comes from the script tag).
#[utoipa::path(
    post,
    path = "/api/widget/session",
    tag = "widget",
    request_body = api::WidgetSessionRequest,
    responses((status = 200, description = "OK", body = api::WidgetSession), BadRequest, Forbidden, NotFound, TooLarge, RateLimited, Internal)
)]
async fn widget_session(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<api::WidgetSessionRequest>,
) -> AppResult<Json<api::WidgetSession>> {
    limit(&s, Action::Session, ip, None)?;
    s.widget_session(req, origin(&headers)).await.map(Json)
}

/// Bind a verified user to the visitor: `hmac` is HMAC-SHA256 of the user id with the project's identity secret.
/// A visitor already verified as another user is refused with 409 `identity_conflict` (the same user again is
/// fine): the new user starts a new widget session, without the visitor token, and identifies that visitor.
#[utoipa::path(
    post,
    path = "/api/widget/identify",
    tag = "widget",
    request_body = api::IdentifyRequest,
    responses((status = 204, description = "Done"), BadRequest, Unauthorized, Forbidden, Conflict, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn identify(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<api::IdentifyRequest>,
) -> AppResult<StatusCode> {
    // `identify` is the one customer call an unverified visitor may make.
    let token = bearer(&headers).ok_or_else(AppError::unauthorized)?;
    let caller = s.authenticate(token).await?;
    Service::check_customer(&caller, origin(&headers), false)?;
    limit(&s, Action::Session, ip, Some(&caller))?;
    s.identify(&caller, req).await.map(|()| StatusCode::NO_CONTENT)
}

/// The visitor's conversations with their transcripts, newest first (at most 20, each with its
/// first 500 events); once `identify` verified a user, every conversation of that user in the
/// project, from any device.
#[utoipa::path(
    get,
    path = "/api/widget/conversations",
    tag = "widget",
    responses((status = 200, description = "OK", body = api::ConversationList), Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn conversation_history(
    State(s): State<AppState>,
    Auth(c): Auth,
) -> AppResult<Json<api::ConversationList>> {
    s.conversation_history(&c).await.map(Json)
}

/// Start a conversation (the body, with a first message, is optional).
#[utoipa::path(
    post,
    path = "/api/conversations",
    tag = "conversations",
    request_body = Option<api::CreateConversationRequest>,
    responses(
        (status = 201, description = "Started", body = api::Conversation),
        (status = 200, description = "The visitor's open conversation, continued (one open conversation per visitor)", body = api::Conversation),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Invalid, RateLimited, Internal
    ),
    security(("bearer" = []))
)]
async fn create_conversation(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    body: Bytes,
) -> AppResult<(StatusCode, Json<api::Conversation>)> {
    limit(&s, Action::Conversation, ip, Some(&c))?;
    // The body is optional.
    let req = if body.is_empty() { api::CreateConversationRequest::default() } else { parse_object(&body)? };
    let (conversation, created) = s.create_conversation(&c, req).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(conversation)))
}

/// A conversation.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    responses((status = 200, description = "OK", body = api::Conversation), BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn get_conversation(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.get_conversation(&c, &id).await.map(Json)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only events after this `seq` (0: the whole history).
    #[serde(default)]
    #[param(value_type = Seq)]
    after: u64,
    /// Seconds to wait for a first new event when there is none yet (long-poll, at most 30).
    #[serde(default)]
    #[param(minimum = 0, maximum = 30)]
    wait: u64,
}

/// History, catch-up after `after`, and long-poll for up to `wait` seconds.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/events",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id"), EventsQuery),
    responses((status = 200, description = "OK", body = api::EventsPage), BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn events(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Query(q): Query<EventsQuery>,
) -> AppResult<Json<api::EventsPage>> {
    if q.after > api::MAX_SEQ {
        return Err(AppError::bad_request("after is larger than 9223372036854775807"));
    }
    if q.wait > api::MAX_WAIT_SECS {
        return Err(AppError::bad_request("wait is at most 30 seconds"));
    }
    s.events(&c, &id, Seq(q.after), q.wait).await.map(Json)
}

/// Send a message; a replayed `client_msg_id` answers 200 with the stored message.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::SendMessageRequest,
    responses(
        (status = 201, description = "Stored", body = api::SendMessageResponse),
        (status = 200, description = "A replayed `client_msg_id`: the message stored before, `duplicate: true`; nothing changed", body = api::SendMessageResponse),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn send_message(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<api::SendMessageRequest>,
) -> AppResult<Response> {
    limit(&s, Action::Message, ip, Some(&c))?;
    let r = s.send_message(&c, &id, req).await?;
    let status = if r.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(r)).into_response())
}

/// Ask for a human: assigned to a free agent, else queued.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/handoff",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    responses((status = 200, description = "OK", body = api::Conversation), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn handoff(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    limit(&s, Action::Conversation, ip, Some(&c))?;
    s.handoff(&c, &id).await.map(Json)
}

/// Claim a queued conversation.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/claim",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    responses((status = 200, description = "OK", body = api::Conversation), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn claim(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.claim(&c, &id).await.map(Json)
}

/// Transfer to the queue (`"to": "queue"`) or to an agent id.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/transfer",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::TransferRequest,
    responses((status = 200, description = "OK", body = api::Conversation), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn transfer(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<api::TransferRequest>,
) -> AppResult<Json<api::Conversation>> {
    s.transfer(&c, &id, req).await.map(Json)
}

/// Decline an assignment: to another free agent who has not declined it, else the queue.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/decline",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    responses((status = 200, description = "OK", body = api::Conversation), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn decline(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.decline(&c, &id).await.map(Json)
}

/// Resolve.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/resolve",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    responses((status = 200, description = "OK", body = api::Conversation), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn resolve(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
) -> AppResult<Json<api::Conversation>> {
    s.resolve(&c, &id).await.map(Json)
}

/// Typing indicator.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/typing",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::TypingRequest,
    responses((status = 204, description = "Done"), BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn typing(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<api::TypingRequest>,
) -> AppResult<StatusCode> {
    limit(&s, Action::Ephemeral, ip, Some(&c))?;
    s.typing(&c, &id, req.is_typing).await.map(|()| StatusCode::NO_CONTENT)
}

/// Customer presence.
/// Presence takes `navigator.sendBeacon` bodies: `text/plain` JSON with the token inside.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/presence",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::PresenceRequest,
    responses((status = 204, description = "Done"), BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn presence(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    PathId(id): PathId<ConversationId>,
    body: Bytes,
) -> AppResult<StatusCode> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(AppError::new(ErrorCode::PayloadTooLarge, "request body is larger than 64 KiB"));
    }
    let req: api::PresenceRequest = parse_object(&body)?;
    let token = bearer(&headers).or(req.token.as_deref()).ok_or_else(AppError::unauthorized)?;
    let caller = s.authenticate(token).await?;
    Service::check_customer(&caller, origin(&headers), true)?;
    limit(&s, Action::Ephemeral, ip, Some(&caller))?;
    s.presence(&caller, &id, req.state, req.tab.as_deref()).await.map(|()| StatusCode::NO_CONTENT)
}

/// Agent read marker (unread counts).
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/read",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::ReadRequest,
    responses((status = 204, description = "Done"), BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn read(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<api::ReadRequest>,
) -> AppResult<StatusCode> {
    s.mark_read(&c, &id, req.seq).await.map(|()| StatusCode::NO_CONTENT)
}

/// Rate a resolved conversation (its customer, once): 1 to 5 and an optional comment.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/rating",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::RatingRequest,
    responses(
        (status = 201, description = "Stored; `conversation:rated` goes to the conversation and its agent", body = api::ConversationRating),
        BadRequest, Unauthorized, Forbidden, NotFound, RatingConflict, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn rate(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<api::RatingRequest>,
) -> AppResult<(StatusCode, Json<api::ConversationRating>)> {
    limit(&s, Action::Message, ip, Some(&c))?;
    s.rate(&c, &id, req).await.map(|r| (StatusCode::CREATED, Json(r)))
}

/// Email the conversation's transcript to its customer (in the background): to `email`, else to
/// the address the visitor is known by. At most 3 an hour per conversation and per visitor.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/transcript",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::TranscriptRequest,
    responses(
        (status = 202, description = "Accepted: the mail goes out in the background", body = api::TranscriptAccepted),
        BadRequest, Unauthorized, EmailForbidden, NotFound, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn transcript(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<api::TranscriptRequest>,
) -> AppResult<(StatusCode, Json<api::TranscriptAccepted>)> {
    limit(&s, Action::Offline, ip, Some(&c))?;
    s.email_transcript(&c, &id, req).await.map(|r| (StatusCode::ACCEPTED, Json(r)))
}

/// Internal notes (agents only).
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/notes",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    responses((status = 200, description = "OK", body = Vec<handoff_protocol::event::Note>), BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn notes(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
) -> AppResult<Json<Vec<handoff_protocol::event::Note>>> {
    s.notes(&c, &id).await.map(Json)
}

/// Add an internal note (agents only; never reaches the customer).
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/notes",
    tag = "conversations",
    params(("id" = ConversationId, Path, description = "Conversation id")),
    request_body = api::NoteRequest,
    responses((status = 201, description = "OK", body = handoff_protocol::event::Note), BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn add_note(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(id): PathId<ConversationId>,
    Json(req): Json<api::NoteRequest>,
) -> AppResult<(StatusCode, Json<handoff_protocol::event::Note>)> {
    limit(&s, Action::Message, ip, Some(&c))?;
    s.add_note(&c, &id, req.body).await.map(|n| (StatusCode::CREATED, Json(n)))
}

/// Agent login.
#[utoipa::path(
    post,
    path = "/api/agents/login",
    tag = "agents",
    request_body = api::LoginRequest,
    responses((status = 200, description = "OK", body = api::LoginResponse), BadRequest, Unauthorized, Forbidden, TooLarge, Invalid, RateLimited, Internal)
)]
async fn login(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(req): Json<api::LoginRequest>,
) -> AppResult<Json<api::LoginResponse>> {
    s.login(&req, ip.0).await.map(Json)
}

/// Sign out: the token of this call stops working.
#[utoipa::path(
    post,
    path = "/api/agents/logout",
    tag = "agents",
    responses((status = 204, description = "Signed out"), Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn logout(State(s): State<AppState>, headers: HeaderMap, Auth(c): Auth) -> AppResult<StatusCode> {
    let token = bearer(&headers).unwrap_or_default();
    s.logout(&c, token).await.map(|()| StatusCode::NO_CONTENT)
}

/// The signed-in agent.
#[utoipa::path(
    get,
    path = "/api/agents/me",
    tag = "agents",
    responses((status = 200, description = "OK", body = api::Agent), Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn me(State(s): State<AppState>, Auth(c): Auth) -> AppResult<Json<api::Agent>> {
    s.me(&c).await.map(Json)
}

/// Set my status (online, away, offline).
#[utoipa::path(
    put,
    path = "/api/agents/me/status",
    tag = "agents",
    request_body = api::StatusRequest,
    responses((status = 200, description = "OK", body = api::Agent), BadRequest, Unauthorized, Forbidden, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn set_status(
    State(s): State<AppState>,
    Auth(c): Auth,
    Json(req): Json<api::StatusRequest>,
) -> AppResult<Json<api::Agent>> {
    s.set_status(&c, req.status).await.map(Json)
}

/// Agents of my project with their status.
#[utoipa::path(
    get,
    path = "/api/agents",
    tag = "agents",
    responses((status = 200, description = "OK", body = Vec<api::Agent>), Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn agents(State(s): State<AppState>, Auth(c): Auth) -> AppResult<Json<Vec<api::Agent>>> {
    s.agents(&c).await.map(Json)
}

/// Change an agent's settings (project secret key): `capacity`, the open conversations routing
/// and claims give them at most.
#[utoipa::path(
    patch,
    path = "/api/agents/{id}",
    tag = "agents",
    params(("id" = AgentId, Path, description = "Agent id")),
    request_body = api::AgentUpdateRequest,
    responses((status = 200, description = "OK", body = api::Agent), BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn update_agent(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<AgentId>,
    Json(req): Json<api::AgentUpdateRequest>,
) -> AppResult<Json<api::Agent>> {
    s.update_agent(&c, &id, req).await.map(Json)
}

/// My conversations and the queue, with unread counts.
#[utoipa::path(
    get,
    path = "/api/inbox",
    tag = "agents",
    responses((status = 200, description = "OK", body = Vec<api::InboxItem>), Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn inbox(State(s): State<AppState>, Auth(c): Auth) -> AppResult<Json<Vec<api::InboxItem>>> {
    s.inbox(&c).await.map(Json)
}

/// The waiting list.
#[utoipa::path(
    get,
    path = "/api/queue",
    tag = "agents",
    responses((status = 200, description = "OK", body = handoff_protocol::event::QueueUpdated), Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn queue(
    State(s): State<AppState>,
    Auth(c): Auth,
) -> AppResult<Json<handoff_protocol::event::QueueUpdated>> {
    s.queue(&c).await.map(Json)
}

/// Leave an offline message (the offline form).
#[utoipa::path(
    post,
    path = "/api/projects/{id}/offline-messages",
    tag = "offline",
    params(("id" = ProjectId, Path, description = "Project id")),
    request_body = api::OfflineMessageRequest,
    responses((status = 201, description = "OK", body = handoff_protocol::event::OfflineMessage), BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn offline_message(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(project): PathId<ProjectId>,
    Json(req): Json<api::OfflineMessageRequest>,
) -> AppResult<(StatusCode, Json<handoff_protocol::event::OfflineMessage>)> {
    limit(&s, Action::Offline, ip, Some(&c))?;
    s.offline_message(&c, &project, req).await.map(|m| (StatusCode::CREATED, Json(m)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HandledQuery {
    /// `false`: open ones only; `true`: handled ones only; absent: all.
    handled: Option<bool>,
}

/// Offline messages of my project (`handled=false` for the open ones).
#[utoipa::path(
    get,
    path = "/api/offline-messages",
    tag = "offline",
    params(HandledQuery),
    responses((status = 200, description = "OK", body = Vec<handoff_protocol::event::OfflineMessage>), BadRequest, Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn offline_messages(
    State(s): State<AppState>,
    Auth(c): Auth,
    Query(q): Query<HandledQuery>,
) -> AppResult<Json<Vec<handoff_protocol::event::OfflineMessage>>> {
    s.offline_messages(&c, q.handled).await.map(Json)
}

/// Mark an offline message handled.
#[utoipa::path(
    post,
    path = "/api/offline-messages/{id}/handled",
    tag = "offline",
    params(("id" = OfflineMessageId, Path, description = "Offline message id")),
    responses((status = 204, description = "Done"), BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn offline_handled(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<OfflineMessageId>,
) -> AppResult<StatusCode> {
    s.mark_offline_handled(&c, &id).await.map(|()| StatusCode::NO_CONTENT)
}

/// Set (or with `url: null` remove) the bot webhook; answers a new signing secret.
#[utoipa::path(
    put,
    path = "/api/project/webhook",
    tag = "project",
    request_body = api::WebhookRequest,
    responses((status = 200, description = "OK", body = api::WebhookSettings), BadRequest, Unauthorized, Forbidden, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn set_webhook(
    State(s): State<AppState>,
    Auth(c): Auth,
    Json(req): Json<api::WebhookRequest>,
) -> AppResult<Json<api::WebhookSettings>> {
    s.set_webhook(&c, req.url).await.map(Json)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CannedQuery {
    /// Search text (at most 100 characters): canned responses whose shortcut starts with it or
    /// whose content contains it, without regard to case; blank or absent: all.
    #[param(max_length = 100)]
    q: Option<String>,
}

/// The project's canned responses by shortcut (at most 100); with `q`, the shortcuts that start
/// with it first, then the contents that contain it.
#[utoipa::path(
    get,
    path = "/api/canned_responses",
    tag = "canned_responses",
    params(CannedQuery),
    responses((status = 200, description = "OK", body = Vec<api::CannedResponse>), BadRequest, Unauthorized, Forbidden, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn canned_responses(
    State(s): State<AppState>,
    Auth(c): Auth,
    Query(q): Query<CannedQuery>,
) -> AppResult<Json<Vec<api::CannedResponse>>> {
    if q.q.as_deref().is_some_and(|q| q.chars().count() > api::MAX_CANNED_QUERY_CHARS) {
        return Err(AppError::bad_request("q is longer than 100 characters"));
    }
    s.canned_responses(&c, q.q.as_deref()).await.map(Json)
}

/// Add a canned response.
#[utoipa::path(
    post,
    path = "/api/canned_responses",
    tag = "canned_responses",
    request_body = api::CannedResponseRequest,
    responses((status = 201, description = "Created", body = api::CannedResponse), BadRequest, Unauthorized, Forbidden, ShortcutTaken, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn create_canned(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    Json(req): Json<api::CannedResponseRequest>,
) -> AppResult<(StatusCode, Json<api::CannedResponse>)> {
    limit(&s, Action::Message, ip, Some(&c))?;
    s.create_canned(&c, req).await.map(|r| (StatusCode::CREATED, Json(r)))
}

/// Change a canned response's shortcut or content (only the fields given).
#[utoipa::path(
    patch,
    path = "/api/canned_responses/{id}",
    tag = "canned_responses",
    params(("id" = CannedResponseId, Path, description = "Canned response id")),
    request_body = api::CannedResponseUpdate,
    responses((status = 200, description = "OK", body = api::CannedResponse), BadRequest, Unauthorized, Forbidden, NotFound, ShortcutTaken, TooLarge, Invalid, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn update_canned(
    State(s): State<AppState>,
    ip: ClientIp,
    Auth(c): Auth,
    PathId(id): PathId<CannedResponseId>,
    Json(req): Json<api::CannedResponseUpdate>,
) -> AppResult<Json<api::CannedResponse>> {
    limit(&s, Action::Message, ip, Some(&c))?;
    s.update_canned(&c, &id, req).await.map(Json)
}

/// Delete a canned response.
#[utoipa::path(
    delete,
    path = "/api/canned_responses/{id}",
    tag = "canned_responses",
    params(("id" = CannedResponseId, Path, description = "Canned response id")),
    responses((status = 204, description = "Deleted"), BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Internal),
    security(("bearer" = []))
)]
async fn delete_canned(
    State(s): State<AppState>,
    Auth(c): Auth,
    PathId(id): PathId<CannedResponseId>,
) -> AppResult<StatusCode> {
    s.delete_canned(&c, &id).await.map(|()| StatusCode::NO_CONTENT)
}
