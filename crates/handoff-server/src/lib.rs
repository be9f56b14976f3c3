//! The Handoff server.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod edge;
pub mod error;
pub mod hours;
pub mod http;
pub mod jobs;
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
    /// Let bot webhooks reach loopback, private and link-local addresses (local development only:
    /// with it, whoever holds a project's secret key can make the server call its own network).
    pub allow_private_webhooks: bool,
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
            allow_private_webhooks: false,
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
    Ok(Arc::new(Service::new(store, Arc::new(hub)).with_webhooks(webhooks)))
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
}

/// The whole application: REST, realtime socket, static assets.
pub fn app(service: Arc<Service>, config: &Config) -> Router {
    let realtime = realtime::routes(service.hub().clone(), service.clone(), config.realtime.clone());
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

/// The demo page at `/` in `handoff-server demo`: a shop page with the widget's script tag pasted,
/// as a site owner would.
const DEMO: &str = include_str!("demo.html");

/// The page at `/` when no web assets are installed.
const HOME: &str = "<!doctype html><meta charset=utf-8><title>Handoff</title>\
<h1>Handoff server</h1><p>The API and the realtime socket are running.</p>\
<ul><li><a href=/api/openapi.json>OpenAPI document</a></li><li><a href=/healthz>Health</a></li></ul>\
<p>No web assets (widget, SDK, agent console) are installed in this build.</p>";
