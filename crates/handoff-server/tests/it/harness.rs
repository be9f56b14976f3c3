//! Test harness: a server on an OS-picked port, HTTP helpers and a Phoenix socket client.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use handoff_protocol::phoenix::{codec, BroadcastConfig, Frame, FrameKind, JoinConfig, JoinPayload, Vsn};
use handoff_protocol::{Event, ProjectId};
use handoff_server::realtime::{Hub, RealtimeConfig};
use handoff_server::service::Service;
use handoff_server::{app, Config};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running server with a project and two agents.
pub struct TestServer {
    pub base: String,
    pub ws: String,
    pub svc: Arc<Service>,
    pub project: ProjectId,
    pub public_key: String,
    pub secret_key: String,
    pub agent1: (String, String),
    pub agent2: (String, String),
    pub http: reqwest::Client,
    /// The settings it was started with (a second node on the same database uses them).
    pub config: Config,
    _guard: DbGuard,
}

struct DbGuard {
    drop_pg: Option<String>,
    _dir: Option<tempdir::Dir>,
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let Some(name) = self.drop_pg.take() {
            // Best effort: a leftover test database is harmless.
            let _ = std::process::Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "test",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .output();
        }
    }
}

/// The Redis of the multi-node tests (`HANDOFF_TEST_REDIS_URL`, else the local one), or `None`
/// (the test is skipped) when it does not answer, unless `HANDOFF_REQUIRE_REDIS` is set.
pub async fn redis_url() -> Option<String> {
    let redis = std::env::var("HANDOFF_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if let Err(e) = Hub::with_redis(&redis, "handoff-test:probe").await {
        assert!(std::env::var_os("HANDOFF_REQUIRE_REDIS").is_none(), "redis: {e}");
        eprintln!("skipped: no redis at {redis} ({e})");
        return None;
    }
    Some(redis)
}

fn unique() -> String {
    format!("{}_{}", std::process::id(), handoff_server::crypto::random_id(""))
}

async fn database(db: Db) -> Option<(String, DbGuard)> {
    match db {
        Db::Sqlite => {
            let dir = std::env::temp_dir().join(format!("handoff-test-{}", unique()));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}", dir.join("t.db").display());
            Some((url, DbGuard { drop_pg: None, _dir: Some(tempdir::Dir(dir)) }))
        }
        Db::Postgres => {
            if std::env::var_os("HANDOFF_SKIP_PG").is_some() {
                return None;
            }
            let name = format!("handoff_test_{}", unique());
            let admin = "postgres://postgres@127.0.0.1:5432/test";
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL on 127.0.0.1:5432 is needed for the PostgreSQL half of the suite ({e}); set HANDOFF_SKIP_PG=1 to skip it")
            });
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
            Some((
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
                DbGuard { drop_pg: Some(name), _dir: None },
            ))
        }
    }
}

impl TestServer {
    pub async fn start(db: Db) -> Option<TestServer> {
        Self::start_with(db, RealtimeConfig::default()).await
    }

    pub async fn start_with(db: Db, realtime: RealtimeConfig) -> Option<TestServer> {
        Self::start_config(db, |c| c.realtime = realtime).await
    }

    /// A server with settings changed by `tweak` (limits, timeouts).
    pub async fn start_config(db: Db, tweak: impl FnOnce(&mut Config)) -> Option<TestServer> {
        let (url, guard) = database(db).await?;
        let mut config = Config { database_url: url, ..Config::default() };
        tweak(&mut config);
        let svc = handoff_server::service(&config).await.unwrap();
        let (project, secret_key) = svc.create_project("Test", vec!["*".into()]).await.unwrap();
        svc.create_agent(&project.id, "ann@test.dev", "Ann", "pw-ann-123").await.unwrap();
        svc.create_agent(&project.id, "bo@test.dev", "Bo", "pw-bo-123").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(svc.clone(), &config);
        let serve = config.serve.clone();
        tokio::spawn(async move {
            handoff_server::serve(listener, router, &serve, std::future::pending()).await.unwrap();
        });
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        let mut s = TestServer {
            ws: format!("ws://{addr}/realtime/v1/websocket?apikey={}", project.public_key),
            base,
            svc,
            project: project.id.clone(),
            public_key: project.public_key,
            secret_key,
            agent1: (String::new(), String::new()),
            agent2: (String::new(), String::new()),
            http,
            config: config.clone(),
            _guard: guard,
        };
        s.agent1 = s.login("ann@test.dev", "pw-ann-123").await;
        s.agent2 = s.login("bo@test.dev", "pw-bo-123").await;
        Some(s)
    }

    /// A second server node on the same database, its hub on the same Redis channel as this
    /// one's (started with a `redis_url`): its service, HTTP base URL and socket URL.
    pub async fn second_node(&self) -> (Arc<Service>, String, String) {
        let store = handoff_server::store::SqlStore::connect(&self.config.database_url).await.unwrap();
        let hub =
            Hub::with_redis(self.config.redis_url.as_deref().unwrap(), "handoff:realtime").await.unwrap();
        let svc = Arc::new(Service::new(Arc::new(store), Arc::new(hub)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(svc.clone(), &self.config);
        let serve = self.config.serve.clone();
        tokio::spawn(async move {
            handoff_server::serve(listener, router, &serve, std::future::pending()).await.unwrap();
        });
        (
            svc,
            format!("http://{addr}"),
            format!("ws://{addr}/realtime/v1/websocket?apikey={}", self.public_key),
        )
    }

    /// Logs an agent in: (token, agent id).
    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let (status, v) = self
            .call("POST", "/api/agents/login", None, Some(json!({"email": email, "password": password})))
            .await;
        assert_eq!(status, 200, "{v}");
        (v["token"].as_str().unwrap().to_owned(), v["agent"]["id"].as_str().unwrap().to_owned())
    }

    /// A JSON call; returns the status and the body (Null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    }

    /// A new visitor: its token.
    pub async fn visitor(&self) -> String {
        let (status, v) = self
            .call("POST", "/api/widget/session", None, Some(json!({"project_key": self.public_key})))
            .await;
        assert_eq!(status, 200, "{v}");
        v["visitor_token"].as_str().unwrap().to_owned()
    }

    /// A visitor with a conversation (first message "hello"): (token, conversation id).
    pub async fn conversation(&self) -> (String, String) {
        let vt = self.visitor().await;
        let (status, c) =
            self.call("POST", "/api/conversations", Some(&vt), Some(json!({"body": "hello"}))).await;
        assert_eq!(status, 201, "{c}");
        (vt, c["id"].as_str().unwrap().to_owned())
    }

    pub async fn set_status(&self, token: &str, status: &str) {
        let (s, v) =
            self.call("PUT", "/api/agents/me/status", Some(token), Some(json!({"status": status}))).await;
        assert_eq!(s, 200, "{v}");
    }

    pub async fn socket(&self, vsn: Vsn) -> Socket {
        Socket::connect(&self.ws, vsn).await
    }
}

/// A Phoenix client socket for tests (against a `TestServer` or a bare realtime node).
pub struct Socket {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub vsn: Vsn,
    next_ref: u64,
}

impl Socket {
    /// Connects to a realtime URL (with its `apikey` query) in serializer `vsn`.
    pub async fn connect(url: &str, vsn: Vsn) -> Socket {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{url}&vsn={}", vsn.as_str())).await.unwrap();
        // Refs are arbitrary strings: start somewhere odd and use a prefix.
        Socket { ws, vsn, next_ref: 40 }
    }

    /// Connects with an `Origin` header and extra headers; the upgrade's refusal as an error.
    pub async fn connect_with(
        url: &str,
        vsn: Vsn,
        headers: &[(&str, &str)],
    ) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("{url}&vsn={}", vsn.as_str()).into_client_request()?;
        for (name, value) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Socket { ws, vsn, next_ref: 40 })
    }

    /// Wraps a connected stream.
    pub fn from_ws(ws: WebSocketStream<MaybeTlsStream<TcpStream>>, vsn: Vsn) -> Socket {
        Socket { ws, vsn, next_ref: 40 }
    }

    /// A fresh message ref.
    pub fn r#ref(&mut self) -> String {
        self.next_ref += 3;
        format!("r-{}", self.next_ref)
    }

    pub async fn send(&mut self, frame: &Frame) {
        let text = codec::encode_text(self.vsn, frame).unwrap();
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    /// The next frame, or None on close or after 5 s.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.recv_within(Duration::from_secs(5)).await
    }

    /// The next frame, or None on close or after `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next()).await.ok()??.ok()?;
            match msg {
                Message::Text(t) => return Some(codec::decode_text(self.vsn, t.as_str()).unwrap()),
                Message::Binary(b) => return Some(codec::decode_binary(&b).unwrap()),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Skips frames until the reply to `ref`.
    pub async fn reply_to(&mut self, r#ref: &str) -> Frame {
        loop {
            let f = self.recv().await.expect("a reply");
            if f.kind() == FrameKind::Reply && f.r#ref.as_deref() == Some(r#ref) {
                return f;
            }
        }
    }

    /// Joins a topic; returns the join ref and the reply frame.
    pub async fn join(&mut self, topic: &str, token: Option<&str>, ack: bool) -> (String, Frame) {
        let join_ref = self.r#ref();
        let payload = JoinPayload {
            config: JoinConfig {
                broadcast: BroadcastConfig { self_: false, ack },
                private: true,
                ..JoinConfig::default()
            },
            access_token: token.map(str::to_owned),
        };
        self.send(&Frame::join(&join_ref, topic, &payload)).await;
        let reply = self.reply_to(&join_ref).await;
        (join_ref, reply)
    }

    /// Joins and asserts ok.
    pub async fn join_ok(&mut self, topic: &str, token: &str) -> String {
        let (join_ref, reply) = self.join(topic, Some(token), false).await;
        assert_eq!(reply.reply().unwrap().status, handoff_protocol::phoenix::ReplyStatus::Ok, "{reply:?}");
        join_ref
    }

    /// Sends a heartbeat and returns every frame that arrives before its reply: since a
    /// socket's frames are delivered in order, this is everything sent to it before the call.
    pub async fn drain_frames(&mut self) -> Vec<Frame> {
        let r = self.r#ref();
        self.send(&Frame::heartbeat(&r)).await;
        let mut out = Vec::new();
        loop {
            let f = self.recv().await.expect("heartbeat reply");
            if f.kind() == FrameKind::Reply && f.topic == "phoenix" && f.r#ref.as_deref() == Some(r.as_str())
            {
                return out;
            }
            out.push(f);
        }
    }

    /// The broadcasts among [`Socket::drain_frames`], as (topic, event).
    pub async fn drain(&mut self) -> Vec<(String, Event)> {
        let frames = self.drain_frames().await;
        frames
            .into_iter()
            .filter(|f| f.kind() == FrameKind::Broadcast)
            .map(|f| (f.topic.clone(), f.broadcast_event().unwrap()))
            .collect()
    }

    /// The broadcast events among [`Socket::drain_frames`].
    pub async fn events(&mut self) -> Vec<Event> {
        self.drain().await.into_iter().map(|(_, e)| e).collect()
    }
}

/// Runs a test body on SQLite, then on PostgreSQL.
#[macro_export]
macro_rules! both_dbs {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                if let Some(s) = TestServer::start(Db::Sqlite).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(s) = TestServer::start(Db::Postgres).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

/// A Redis server of the test's own (`redis-server` on an OS-picked port, no persistence), to
/// kill and restart without touching the machine's shared one.
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// Starts one, or `None` (the test is skipped) when `redis-server` is not installed, unless
    /// `HANDOFF_REQUIRE_REDIS` is set.
    pub async fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = OwnRedis { port, child: None };
        if let Err(e) = redis.spawn().await {
            assert!(std::env::var_os("HANDOFF_REQUIRE_REDIS").is_none(), "redis-server: {e}");
            eprintln!("skipped: cannot start redis-server ({e})");
            return None;
        }
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> std::io::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        // Up once it accepts connections.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Kills it with SIGKILL (no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port; returns once it accepts connections.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await.unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A mail an [`SmtpSink`] received.
#[derive(Clone, Debug)]
pub struct Mail {
    /// `MAIL FROM`.
    pub from: String,
    /// Every `RCPT TO`.
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body, dot-stuffing undone).
    pub data: String,
}

/// An SMTP server of the test's own on an OS-picked port: it accepts every mail (no TLS, no
/// auth) and records its envelope and data.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<std::sync::Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read);
                    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                    let (mut from, mut to) = (String::new(), Vec::new());
                    let addr = |line: &str| {
                        line.split_once('<').and_then(|(_, r)| r.split_once('>')).map(|(a, _)| a.to_owned())
                    };
                    loop {
                        let mut line = String::new();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            from = addr(&line).unwrap_or_default();
                            to.clear();
                            b"250 ok\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            to.extend(addr(&line));
                            b"250 ok\r\n"
                        } else if upper.starts_with("DATA") {
                            let _ = write.write_all(b"354 go on\r\n").await;
                            let mut data = String::new();
                            loop {
                                let mut l = String::new();
                                if lines.read_line(&mut l).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if l == ".\r\n" {
                                    break;
                                }
                                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            }
                            let mail = Mail { from: from.clone(), to: std::mem::take(&mut to), data };
                            store.lock().unwrap().push(mail);
                            b"250 queued\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
                            b"250 ok\r\n"
                        } else {
                            b"502 not implemented\r\n"
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { port, mails }
    }

    /// The `SMTP_URL` of the sink.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The mails so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` mails arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(std::time::Instant::now() < deadline, "expected {n} mails, got {mails:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
