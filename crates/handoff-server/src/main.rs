//! `handoff-server`: serve, manage projects and agents, or run a demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use std::time::Duration;

use handoff_protocol::ids::{AgentId, ProjectId};
use handoff_server::hours::{self, BusinessHours};
use handoff_server::service::Service;
use handoff_server::{app, jobs, service, Config};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "handoff-server", version, about = "Live chat with AI-to-human handoff")]
struct Cli {
    /// `sqlite://handoff.db` or `postgres://user@host/db`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://handoff.db", global = true)]
    database_url: String,
    /// `redis://127.0.0.1:6379` to fan realtime events out across server nodes.
    #[arg(long, env = "REDIS_URL", global = true)]
    redis_url: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API, the realtime socket and the web assets.
    Serve(ServeArgs),
    /// Projects.
    Project {
        #[command(subcommand)]
        command: ProjectCmd,
    },
    /// Agents.
    Agent {
        #[command(subcommand)]
        command: AgentCmd,
    },
    /// Seed a demo project and agent in a fresh database, print the URLs and credentials, serve.
    Demo(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HANDOFF_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Directory of built web assets (widget, SDK, console).
    #[arg(long, env = "HANDOFF_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// A reverse proxy whose `X-Forwarded-For` names the client (repeat, or comma-separated).
    /// Without one, the peer address is the client, whatever the header says.
    #[arg(long = "trusted-proxy", env = "HANDOFF_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Rate-limit overrides, e.g. `message.caller=240/1m:60,login.ip=off` (`off` for none);
    /// actions: api session conversation message ephemeral offline login; keys: ip project caller.
    #[arg(long, env = "HANDOFF_LIMITS", default_value = "")]
    limits: String,
    /// Connections served at once (keep it under the file-descriptor limit).
    #[arg(long, env = "HANDOFF_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (and, kept alive, the next request).
    #[arg(long, env = "HANDOFF_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Hours an agent token lives unused (sliding).
    #[arg(long, env = "HANDOFF_AGENT_TOKEN_IDLE_HOURS", default_value_t = 12)]
    agent_token_idle_hours: u64,
    /// Days an agent token lives at most.
    #[arg(long, env = "HANDOFF_AGENT_TOKEN_MAX_DAYS", default_value_t = 30)]
    agent_token_max_days: u64,
    /// Let bot webhooks reach loopback, private and link-local addresses (local development
    /// only: anyone with a project's secret key could then make the server call your network).
    #[arg(long, env = "HANDOFF_ALLOW_PRIVATE_WEBHOOKS", value_parser = clap::builder::BoolishValueParser::new())]
    allow_private_webhooks: bool,
    /// Where mail goes: `smtp://host:port` (unencrypted), `smtp://host?tls=required`
    /// (STARTTLS), `smtps://user:pass@host` (TLS). Unset: no email (no transcripts by email, no
    /// offline messages mailed to agents).
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The sender of every mail, e.g. `Support <support@example.com>` (required with `SMTP_URL`).
    #[arg(long, env = "SMTP_FROM")]
    smtp_from: Option<String>,
    #[command(flatten)]
    realtime: RealtimeArgs,
}

/// Limits of the realtime socket (see `RealtimeConfig`).
#[derive(clap::Args)]
struct RealtimeArgs {
    /// Seconds a socket may stay open without joining a channel with a valid token.
    #[arg(long = "ws-join-timeout", env = "HANDOFF_WS_JOIN_TIMEOUT", default_value_t = 10)]
    join_timeout: u64,
    /// Channels one socket may join at once.
    #[arg(long = "ws-max-channels", env = "HANDOFF_WS_MAX_CHANNELS", default_value_t = 100)]
    max_channels: usize,
    /// Open sockets per client IP.
    #[arg(long = "ws-max-sockets-per-ip", env = "HANDOFF_WS_MAX_SOCKETS_PER_IP", default_value_t = 200)]
    max_sockets_per_ip: usize,
    /// Frames per second a socket may send, sustained.
    #[arg(long = "ws-frames-per-second", env = "HANDOFF_WS_FRAMES_PER_SECOND", default_value_t = 50)]
    frames_per_second: u32,
    /// Frames a socket may send in one burst.
    #[arg(long = "ws-frame-burst", env = "HANDOFF_WS_FRAME_BURST", default_value_t = 2_000)]
    frame_burst: u32,
}

impl RealtimeArgs {
    fn apply(&self, config: &mut handoff_server::realtime::RealtimeConfig) {
        config.join_timeout = std::time::Duration::from_secs(self.join_timeout);
        config.max_channels = self.max_channels;
        config.max_sockets_per_ip = self.max_sockets_per_ip;
        config.frames_per_second = self.frames_per_second;
        config.frame_burst = self.frame_burst;
    }
}

impl ServeArgs {
    fn apply(&self, config: &mut Config) -> Result<(), Box<dyn std::error::Error>> {
        config.static_dir.clone_from(&self.static_dir);
        config.allow_private_webhooks = self.allow_private_webhooks;
        config.smtp_url.clone_from(&self.smtp_url);
        config.smtp_from.clone_from(&self.smtp_from);
        config.trusted_proxies = handoff_server::net::TrustedProxies(self.trusted_proxies.clone());
        config.limits.apply(&self.limits)?;
        config.limits.agent_token_idle = Duration::from_secs(self.agent_token_idle_hours.max(1) * 3_600);
        config.limits.agent_token_max_age = Duration::from_secs(self.agent_token_max_days.max(1) * 86_400);
        config.serve.max_connections = self.max_connections;
        config.serve.header_read_timeout = Duration::from_secs(self.header_timeout.max(1));
        self.realtime.apply(&mut config.realtime);
        Ok(())
    }
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once from the command line
enum ProjectCmd {
    /// Create a project; prints its public and secret keys.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Allowed browser origin (repeat; `*` for any).
        #[arg(long = "origin")]
        origins: Vec<String>,
    },
    /// Change a project's settings; only the options given change.
    Set(ProjectSet),
    /// A new secret key; the old one stops working at once (its sockets are cut).
    RotateSecret {
        /// Project id.
        #[arg(long)]
        project: String,
    },
}

#[derive(clap::Args)]
struct ProjectSet {
    /// Project id.
    #[arg(long)]
    project: String,
    /// Bot webhook URL (prints a new signing secret); `none` removes it. Loopback, private and
    /// link-local addresses and `localhost` are refused unless `--allow-private-webhooks`.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Accept a `--webhook-url` on a loopback or private address (local development; the server
    /// delivers to it only when it runs with `--allow-private-webhooks` too).
    #[arg(long, env = "HANDOFF_ALLOW_PRIVATE_WEBHOOKS", value_parser = clap::builder::BoolishValueParser::new())]
    allow_private_webhooks: bool,
    /// Opening hours, e.g. `mon-fri 09:00-17:00, sat 10:00-14:00`; `none`: always open.
    #[arg(long)]
    business_hours: Option<String>,
    /// UTC offset the business hours are written in, e.g. `+01:00`.
    #[arg(long, default_value = "+00:00", allow_hyphen_values = true)]
    utc_offset: String,
    /// Widget accent colour, `#rrggbb`.
    #[arg(long)]
    color: Option<String>,
    /// Widget corner: `right` or `left`.
    #[arg(long)]
    position: Option<String>,
    /// Chat window title.
    #[arg(long)]
    title: Option<String>,
    /// First line of a new chat.
    #[arg(long)]
    greeting: Option<String>,
    /// The widget's language for every visitor (`de`, `fr`, `es`, `pt`, `ar`, `en`; a region
    /// tag like `pt-BR` falls back to its language); `auto`: each visitor's browser language.
    #[arg(long)]
    locale: Option<String>,
    /// A short sound on a new agent message while the widget is minimized or its tab hidden.
    #[arg(long, value_parser = ["on", "off"])]
    sound: Option<String>,
    /// Identity verification: `off`; `optional` (the widget's `identify` works; prints the
    /// secret your server signs user ids with); `required` (every customer call of an unverified
    /// visitor is refused). A secret, once made, is kept until `off`.
    #[arg(long, value_parser = ["off", "optional", "required"])]
    identity: Option<String>,
    /// Delete resolved conversations (with their messages, events, notes and presence) this
    /// many days after their resolution, 1 to 36500; `none`: keep them forever (the default).
    #[arg(long)]
    retention_days: Option<String>,
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Create an agent.
    Create {
        /// Project id.
        #[arg(long)]
        project: String,
        /// Email (the login).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Password.
        #[arg(long, env = "HANDOFF_AGENT_PASSWORD")]
        password: String,
    },
    /// Change an agent's settings; only the options given change.
    Set {
        /// Agent id.
        #[arg(long)]
        agent: String,
        /// Open conversations routing and claims give the agent at most (default 3; 0 takes
        /// them out of routing).
        #[arg(long)]
        capacity: Option<u32>,
    },
    /// Set an agent's password; the agent is signed out everywhere.
    SetPassword {
        /// Agent id.
        #[arg(long)]
        agent: String,
        /// New password (8 characters at least).
        #[arg(long, env = "HANDOFF_AGENT_PASSWORD")]
        password: String,
    },
    /// Disable an agent: signed out everywhere, offline, cannot sign in (`--enable` undoes it).
    Disable {
        /// Agent id.
        #[arg(long)]
        agent: String,
        /// Enable the agent again instead.
        #[arg(long)]
        enable: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handoff-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config { database_url: cli.database_url, redis_url: cli.redis_url, ..Config::default() };
    match cli.command {
        Cmd::Serve(args) => {
            args.apply(&mut config)?;
            let svc = service(&config).await?;
            serve(svc, &config, args.addr).await
        }
        Cmd::Project { command: ProjectCmd::Create { name, origins } } => {
            let svc = service(&config).await?;
            let origins = if origins.is_empty() { vec!["*".to_owned()] } else { origins };
            let (p, secret) = svc.create_project(&name, origins).await?;
            println!("project_id={}\npublic_key={}\nsecret_key={secret}", p.id, p.public_key);
            Ok(())
        }
        Cmd::Project { command: ProjectCmd::Set(set) } => {
            config.allow_private_webhooks = set.allow_private_webhooks;
            let svc = service(&config).await?;
            project_set(&svc, set).await
        }
        Cmd::Project { command: ProjectCmd::RotateSecret { project } } => {
            let svc = service(&config).await?;
            let secret = svc.rotate_secret(&ProjectId::new(project)).await?;
            println!("secret_key={secret}");
            Ok(())
        }
        Cmd::Agent { command: AgentCmd::SetPassword { agent, password } } => {
            let svc = service(&config).await?;
            svc.set_agent_password(&AgentId::new(agent), &password).await?;
            println!("password changed; the agent's sessions are signed out");
            Ok(())
        }
        Cmd::Agent { command: AgentCmd::Set { agent, capacity } } => {
            let svc = service(&config).await?;
            if let Some(capacity) = capacity {
                let a = svc.set_agent_capacity(&AgentId::new(agent), capacity).await?;
                println!("capacity={}", a.capacity);
            }
            Ok(())
        }
        Cmd::Agent { command: AgentCmd::Disable { agent, enable } } => {
            let svc = service(&config).await?;
            svc.set_agent_disabled(&AgentId::new(agent), !enable).await?;
            println!("{}", if enable { "agent enabled" } else { "agent disabled and signed out" });
            Ok(())
        }
        Cmd::Agent { command: AgentCmd::Create { project, email, name, password } } => {
            let svc = service(&config).await?;
            let project = ProjectId::new(project);
            if svc.store().project(&project).await?.is_none() {
                return Err(format!("no project {project}").into());
            }
            let a = svc.create_agent(&project, &email, &name, &password).await?;
            println!("agent_id={}", a.id);
            Ok(())
        }
        Cmd::Demo(args) => {
            if let Some(path) = config.database_url.strip_prefix("sqlite://") {
                let path = path.split('?').next().unwrap_or(path);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            args.apply(&mut config)?;
            let svc = service(&config).await?;
            let (p, secret) = svc.create_project("Demo", vec!["*".to_owned()]).await?;
            let password = "handoff-demo";
            svc.create_agent(&p.id, "agent@demo.test", "Ada (demo agent)", password).await?;
            config.demo_key = Some(p.public_key.clone());
            let base = format!("http://{}", args.addr);
            println!("Handoff demo is running.");
            println!("  home          {base}/   (a shop page with the chat widget)");
            println!("  console       {base}/console/");
            println!("  agent login   agent@demo.test / {password}  (POST {base}/api/agents/login)");
            println!("  API           {base}/api/openapi.json");
            println!(
                "  realtime      ws://{}/realtime/v1/websocket?apikey={}&vsn=2.0.0",
                args.addr, p.public_key
            );
            println!("  project       id={} public_key={} secret_key={secret}", p.id, p.public_key);
            serve(svc, &config, args.addr).await
        }
    }
}

async fn project_set(svc: &Service, set: ProjectSet) -> Result<(), Box<dyn std::error::Error>> {
    let id = ProjectId::new(set.project);
    let Some(project) = svc.store().project(&id).await? else {
        return Err(format!("no project {id}").into());
    };
    if let Some(url) = set.webhook_url {
        let url = (url != "none").then_some(url);
        let settings = svc.set_webhook_of(&id, url).await?;
        match (settings.url, settings.secret) {
            (Some(url), Some(secret)) => println!("webhook_url={url}\nwebhook_secret={secret}"),
            _ => println!("webhook removed"),
        }
    }
    if let Some(spec) = set.business_hours {
        let hours = if spec == "none" {
            None
        } else {
            Some(BusinessHours::parse(&spec, hours::parse_offset(&set.utc_offset)?)?)
        };
        svc.store().set_business_hours(&id, hours.as_ref()).await?;
        println!("business_hours={spec}");
    }
    if let Some(days) = set.retention_days {
        let days = if days == "none" {
            None
        } else {
            Some(
                days.parse::<u32>()
                    .map_err(|_| format!("--retention-days {days}: expected a number of days or none"))?,
            )
        };
        svc.set_retention_of(&id, days).await?;
        println!("retention_days={}", days.map_or_else(|| "none".to_owned(), |d| d.to_string()));
    }
    if let Some(mode) = set.identity {
        let secret = match (mode.as_str(), &project.identity_secret) {
            ("off", _) => None,
            (_, Some(secret)) => Some(secret.clone()),
            (_, None) => Some(handoff_server::crypto::random_token("idsec_")),
        };
        svc.store().set_identity(&id, secret.as_deref(), mode == "required").await?;
        println!("identity={mode}");
        if let Some(secret) = secret {
            println!("identity_secret={secret}");
        }
    }
    let mut theme = project.theme;
    let changed = set.color.is_some()
        || set.position.is_some()
        || set.title.is_some()
        || set.greeting.is_some()
        || set.locale.is_some()
        || set.sound.is_some();
    if let Some(color) = set.color {
        let hex = color.strip_prefix('#').unwrap_or("");
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("--color {color}: expected #rrggbb").into());
        }
        theme.color = color;
    }
    if let Some(position) = set.position {
        if position != "right" && position != "left" {
            return Err(format!("--position {position}: expected right or left").into());
        }
        theme.position = position;
    }
    if let Some(locale) = set.locale {
        let locale = if locale == "auto" { String::new() } else { locale };
        if !handoff_protocol::api::is_valid_locale(&locale) {
            return Err(
                format!("--locale {locale}: expected a language tag like de or pt-BR, or auto").into()
            );
        }
        theme.locale = locale;
    }
    if let Some(sound) = set.sound {
        theme.sound = sound == "on";
    }
    theme.title = set.title.unwrap_or(theme.title);
    theme.greeting = set.greeting.unwrap_or(theme.greeting);
    if changed {
        svc.store().set_theme(&id, &theme).await?;
        println!("theme={}", serde_json::to_string(&theme)?);
    }
    Ok(())
}

async fn serve(
    svc: std::sync::Arc<Service>,
    config: &Config,
    addr: SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let jobs = tokio::spawn(jobs::run(svc.clone(), config.job_interval, stop_rx));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening");
    handoff_server::serve(listener, app(svc.clone(), config), &config.serve, shutdown_signal()).await?;
    let _ = stop_tx.send(true);
    let _ = jobs.await;
    svc.store().close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
