//! The Handoff server.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod edge;
pub mod error;
pub mod hours;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod mail;
pub mod net;
pub mod realtime;
pub mod service;
pub mod store;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::realtime::{Hub, RealtimeConfig};
use crate::service::Service;
use crate::store::SqlStore;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// `sqlite://handoff.db` (default) or `postgres://...`.
    pub database_url: String,
    /// Built web assets (widget, SDK, console) served at `/`.
    pub static_dir: Option<PathBuf>,
    /// Realtime socket settings.
    pub realtime: RealtimeConfig,
    /// How often the presence and agent expiry jobs run.
    pub job_interval: Duration,
    /// `redis://...` to fan realtime events out across server nodes; `None`: in-process.
    pub redis_url: Option<String>,
    /// The demo project's public key: `/` then serves a demo page with the widget's script tag.
    pub demo_key: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (rate limits, sockets per IP).
    pub trusted_proxies: net::TrustedProxies,
    /// Rate limits, login backoff, long-poll caps and token lifetimes.
    pub limits: limits::LimitsConfig,
    /// Connection timeouts and caps.
    pub serve: ServeConfig,
    /// Let bot webhooks reach loopback, private and link-local addresses (local development only:
    /// with it, whoever holds a project's secret key can make the server call its own network).
    pub allow_private_webhooks: bool,
    /// `SMTP_URL` (`smtp://host:port`, `smtps://user:pass@host`): where mail goes; `None`: the
    /// server sends no email (transcripts answer `403 email_disabled`).
    pub smtp_url: Option<String>,
    /// `SMTP_FROM`: the sender of every mail (`Support <support@example.com>`); required with
    /// `smtp_url`.
    pub smtp_from: Option<String>,
}

/// Connection settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// A client must send a request's headers within this long, and the next request's on a
    /// kept-alive connection (10 s): a connection that trickles headers, or idles, is closed.
    pub header_read_timeout: Duration,
    /// A request is answered within this long, its body included (60 s; long-polls wait at
    /// most 30 s); past it the answer is `408 request_timeout`.
    pub request_timeout: Duration,
    /// Connections served at once (4,096; keep it under the process's file limit); more wait
    /// in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 4_096,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://handoff.db".to_owned(),
            static_dir: None,
            realtime: RealtimeConfig::default(),
            job_interval: Duration::from_secs(5),
            redis_url: None,
            demo_key: None,
            trusted_proxies: net::TrustedProxies::default(),
            limits: limits::LimitsConfig::default(),
            serve: ServeConfig::default(),
            allow_private_webhooks: false,
            smtp_url: None,
            smtp_from: None,
        }
    }
}

/// Opens the store and builds the service.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn service(config: &Config) -> Result<Arc<Service>, StartError> {
    let store = Arc::new(SqlStore::connect(&config.database_url).await?);
    let hub = match &config.redis_url {
        Some(url) => Hub::with_redis(url, "handoff:realtime").await?,
        None => Hub::new(),
    };
    let webhooks = webhook::Webhooks::with_policy(config.allow_private_webhooks);
    let mailer = match (&config.smtp_url, &config.smtp_from) {
        (Some(url), Some(from)) => Some(mail::Mailer::new(url, from)?),
        (Some(_), None) => return Err(mail::MailError::From("required with SMTP_URL".into()).into()),
        (None, _) => None,
    };
    Ok(Arc::new(
        Service::new(store, Arc::new(hub))
            .with_limits(config.limits.clone(), config.trusted_proxies.clone())
            .with_webhooks(webhooks)
            .with_mailer(mailer),
    ))
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The database.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Redis.
    #[error(transparent)]
    Hub(#[from] realtime::HubError),
    /// The mail settings.
    #[error(transparent)]
    Mail(#[from] mail::MailError),
}

/// The whole application: REST, realtime socket, static assets.
pub fn app(service: Arc<Service>, config: &Config) -> Router {
    // The socket counts sockets per client IP as REST does: behind the same trusted proxies.
    let mut realtime_config = config.realtime.clone();
    for proxy in &config.trusted_proxies.0 {
        if !realtime_config.trusted_proxies.0.contains(proxy) {
            realtime_config.trusted_proxies.0.push(*proxy);
        }
    }
    let realtime = realtime::routes(service.hub().clone(), service.clone(), realtime_config);
    let mut router = http::routes(service).merge(realtime);
    let has_index = config.static_dir.as_ref().is_some_and(|d| d.join("index.html").exists());
    if let Some(key) = &config.demo_key {
        let page = DEMO.replace("{project_key}", key);
        router = router.route("/", axum::routing::get(|| async { axum::response::Html(page) }));
    } else if !has_index {
        router = router.route("/", axum::routing::get(|| async { axum::response::Html(HOME) }));
    }
    if let Some(dir) = &config.static_dir {
        // Any site may load the widget and the SDK (module scripts and wasm are fetched with CORS).
        let assets = tower::Layer::layer(
            &tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET, axum::http::Method::HEAD]),
            // `cargo xtask web` writes `.gz` files beside the wasm and JS: served when accepted.
            tower_http::services::ServeDir::new(dir)
                .append_index_html_on_directories(true)
                .precompressed_gzip(),
        );
        router = router.fallback_service(assets);
    }
    // Error answers as JSON (inner), then the headers, which depend on the final content type.
    router
        .layer(axum::middleware::map_response(edge::json_errors))
        .layer(axum::middleware::from_fn(edge::security_headers))
}

/// Serves `router` on `listener` until `shutdown` resolves: HTTP/1.1 with WebSocket upgrades,
/// the header-read and request timeouts and the connection cap of `config`. Every connection
/// carries its peer address (`ConnectInfo<SocketAddr>`).
///
/// # Errors
/// Never, today: accept errors (out of file descriptors) are logged and retried.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: &ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let timeout = config.request_timeout;
    let router =
        router.layer(axum::middleware::from_fn(move |req, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => axum::response::IntoResponse::into_response(error::AppError::new(
                    handoff_protocol::api::ErrorCode::RequestTimeout,
                    "the request took too long",
                )),
            }
        }));
    let mut make = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the cap, new connections wait in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: wait for connections to close rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = match tower::Service::call(&mut make, peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).keep_alive(true);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let conn = conn.with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "connection ended");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// The demo page at `/` in `handoff-server demo`: a shop page with the widget's script tag pasted,
/// as a site owner would.
const DEMO: &str = include_str!("demo.html");

/// The page at `/` when no web assets are installed.
const HOME: &str = "<!doctype html><meta charset=utf-8><title>Handoff</title>\
<h1>Handoff server</h1><p>The API and the realtime socket are running.</p>\
<ul><li><a href=/api/openapi.json>OpenAPI document</a></li><li><a href=/healthz>Health</a></li></ul>\
<p>No web assets (widget, SDK, agent console) are installed in this build.</p>";
