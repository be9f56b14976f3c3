//! `handoff-example-bot`: serve the bot's webhook and register it with the Handoff server.
//!
//! ```sh
//! HANDOFF_SECRET_KEY=sk_... cargo run -p handoff-example-bot
//! ```
//!
//! Environment: `HANDOFF_URL` (default `http://127.0.0.1:8080`), `HANDOFF_SECRET_KEY` (the
//! project's secret key, required), `BOT_ADDR` (default `127.0.0.1:8090`), `BOT_PUBLIC_URL` (the
//! webhook URL the server calls; default `http://BOT_ADDR/webhook`), and
//! `HANDOFF_WEBHOOK_SECRET` to use an existing webhook instead of registering a new one. A server
//! accepts a webhook on loopback (the default here) only with `--allow-private-webhooks`.

use std::net::SocketAddr;

use handoff_example_bot::{register, Bot, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let server = env("HANDOFF_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let secret_key = env("HANDOFF_SECRET_KEY").ok_or("set HANDOFF_SECRET_KEY to the project's secret key")?;
    let addr: SocketAddr = env("BOT_ADDR").unwrap_or_else(|| "127.0.0.1:8090".into()).parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let url = env("BOT_PUBLIC_URL").unwrap_or_else(|| format!("http://{local}/webhook"));
    let webhook_secret = match env("HANDOFF_WEBHOOK_SECRET") {
        Some(s) => s,
        None => register(&server, &secret_key, &url).await?,
    };
    tracing::info!(%url, %server, "bot webhook ready");
    let bot = Bot::new(Config { server, secret_key, webhook_secret });
    axum::serve(listener, bot.router()).await?;
    Ok(())
}
