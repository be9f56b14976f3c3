//! [`SqlStore`]: the [`Store`] on SQLite (the default: a file in WAL mode) and PostgreSQL
//! (`DATABASE_URL=postgres://...`), through `sqlx::Any` with portable SQL, so the same queries and
//! the same test suite run on both. Booleans are stored as 0/1 integers and times as milliseconds
//! since the epoch, the subset both databases read the same way through `Any`. The schema is
//! versioned ([`MIGRATIONS`], recorded in `schema_migrations`).

use handoff_protocol::api::CannedResponse;
use handoff_protocol::event::{
    AgentStatus, AuthorKind, ConversationStatus, Event, Message, OfflineMessage, PresenceState,
};
use handoff_protocol::ids::{
    AgentId, CannedResponseId, ConversationId, OfflineMessageId, ProjectId, Seq, Timestamp, VisitorId,
};
use sqlx::any::{AnyPoolOptions, AnyRow};

use async_trait::async_trait;

use super::{
    AgentRow, AppendRow, BatchPlan, BatchRead, BatchWrite, ConversationRow, ConversationUpdate, Project,
    RatingRow, Store, StoreError, VisitorRow,
};
use crate::hours::BusinessHours;
use handoff_protocol::timing::presence::{aggregate_presence, conversation_presence, TabPresence};
use sqlx::{AnyPool, Row};

/// The first schema. Its statements are idempotent (`IF NOT EXISTS`) because databases created
/// before versioned migrations have these tables but no `schema_migrations` row.
const SCHEMA_V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS projects (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, public_key TEXT NOT NULL UNIQUE,
        secret_key_hash TEXT NOT NULL UNIQUE, allowed_origins TEXT NOT NULL,
        identity_secret TEXT, enforce_identity BIGINT NOT NULL, theme TEXT NOT NULL,
        webhook_url TEXT, webhook_secret TEXT, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS agents (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        password_hash TEXT NOT NULL, status TEXT NOT NULL, capacity BIGINT NOT NULL,
        last_activity BIGINT NOT NULL, idle_since BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS agent_tokens (token_hash TEXT PRIMARY KEY, agent_id TEXT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS visitors (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
        name TEXT, email TEXT, user_id TEXT, verified BIGINT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, visitor_id TEXT NOT NULL, status TEXT NOT NULL,
        agent_id TEXT, last_seq BIGINT NOT NULL, queued_at BIGINT, presence TEXT NOT NULL,
        last_heartbeat BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS conversations_project ON conversations (project_id, status)",
    "CREATE TABLE IF NOT EXISTS events (
        conversation_id TEXT NOT NULL, seq BIGINT NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL,
        created_at BIGINT NOT NULL, PRIMARY KEY (conversation_id, seq))",
    "CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL, author_kind TEXT NOT NULL,
        body TEXT NOT NULL, client_msg_id TEXT, created_at BIGINT NOT NULL,
        UNIQUE (conversation_id, client_msg_id))",
    "CREATE TABLE IF NOT EXISTS notes (
        id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, payload TEXT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS read_markers (
        agent_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL,
        PRIMARY KEY (agent_id, conversation_id))",
    "CREATE TABLE IF NOT EXISTS offline_messages (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL,
        message TEXT NOT NULL, created_at BIGINT NOT NULL, handled_at BIGINT)",
];

/// Versioned migrations, applied in order, each once, in one transaction, recorded in
/// `schema_migrations`. Append new versions; never edit an applied one. The SQL is the portable
/// subset both SQLite and PostgreSQL run.
pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (1, SCHEMA_V1),
    (
        2,
        &[
            "ALTER TABLE projects ADD COLUMN business_hours TEXT",
            "CREATE TABLE declines (conversation_id TEXT NOT NULL, agent_id TEXT NOT NULL,
                created_at BIGINT NOT NULL, PRIMARY KEY (conversation_id, agent_id))",
        ],
    ),
    (
        3,
        &[
            "ALTER TABLE agents ADD COLUMN disabled_at BIGINT",
            "ALTER TABLE agent_tokens ADD COLUMN last_used BIGINT",
            "CREATE INDEX agent_tokens_agent ON agent_tokens (agent_id)",
            "ALTER TABLE visitors ADD COLUMN last_seen BIGINT",
        ],
    ),
    (
        4,
        &[
            // When a node last saw one of the agent's sockets connected (liveness by connection).
            "ALTER TABLE agents ADD COLUMN last_socket_seen BIGINT",
            // Background jobs run on one node at a time: the holder of an unexpired lease.
            "CREATE TABLE job_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
        ],
    ),
    (
        5,
        &[
            // Customer presence per tab; `conversations.presence` is their aggregate.
            "CREATE TABLE presence_tabs (conversation_id TEXT NOT NULL, tab_id TEXT NOT NULL,
                state TEXT NOT NULL, last_heartbeat BIGINT NOT NULL, PRIMARY KEY (conversation_id, tab_id))",
            "CREATE INDEX presence_tabs_heartbeat ON presence_tabs (last_heartbeat)",
        ],
    ),
    (
        6,
        &[
            // A project's shared replies. `shortcut_key` and `content_key` are the shortcut and
            // content in lower case (folded by the server, the same on both databases): the
            // unique key and what searches compare with.
            "CREATE TABLE canned_responses (id TEXT PRIMARY KEY, project_id TEXT NOT NULL,
                shortcut TEXT NOT NULL, shortcut_key TEXT NOT NULL, content TEXT NOT NULL,
                content_key TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
                UNIQUE (project_id, shortcut_key))",
        ],
    ),
    (
        7,
        &[
            // One satisfaction rating per conversation (reports average `rating` per project
            // and per agent: keep these column names).
            "CREATE TABLE conversation_ratings (conversation_id TEXT PRIMARY KEY, project_id TEXT NOT NULL,
                agent_id TEXT, rating BIGINT NOT NULL, comment TEXT, created_at BIGINT NOT NULL)",
            "CREATE INDEX conversation_ratings_project ON conversation_ratings (project_id, created_at)",
            "CREATE INDEX conversation_ratings_agent ON conversation_ratings (agent_id, created_at)",
            // Transcript emails asked for, for their rate limit (per conversation and per
            // visitor, across nodes) and as a record of where transcripts went.
            "CREATE TABLE transcript_emails (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL,
                visitor_id TEXT NOT NULL, email TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE INDEX transcript_emails_conversation ON transcript_emails (conversation_id, created_at)",
            "CREATE INDEX transcript_emails_visitor ON transcript_emails (visitor_id, created_at)",
            // Who left an offline message (their address is where a transcript goes by default).
            "ALTER TABLE offline_messages ADD COLUMN visitor_id TEXT",
            "CREATE INDEX offline_messages_visitor ON offline_messages (visitor_id, created_at)",
        ],
    ),
];

/// Message writers on PostgreSQL ([`Store::writers`]).
const PG_WRITERS: usize = 4;
/// Sliding expiry writes a token's last use at most this often.
const TOUCH_AGENT_TOKEN_MS: u64 = 60_000;
/// A visitor's last sighting is written at most this often.
const TOUCH_VISITOR_MS: u64 = 3_600_000;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn status_of(s: &str) -> ConversationStatus {
    ConversationStatus::parse(s).unwrap_or(ConversationStatus::Unknown)
}

fn presence_of(s: &str) -> PresenceState {
    match s {
        "online" => PresenceState::Online,
        "idle" => PresenceState::Idle,
        "offline" => PresenceState::Offline,
        _ => PresenceState::Unknown,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unique_violation(&e) {
            StoreError::Duplicate
        } else {
            StoreError::Backend(Box::new(e))
        }
    }
}

/// The SQL store: SQLite or PostgreSQL, chosen by the URL.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    /// Message batches' connection ([`Store::write_batch`]): on SQLite one of its own, with
    /// `synchronous=FULL`; on PostgreSQL the pool.
    writer: AnyPool,
    /// PostgreSQL (else SQLite): where the portable SQL is not enough (row locks).
    postgres: bool,
}

const CONVERSATION_COLUMNS: &str = "id, project_id, visitor_id, status, agent_id, last_seq, queued_at, presence, last_heartbeat, created_at, updated_at";

fn conversation(row: &AnyRow) -> Result<ConversationRow, sqlx::Error> {
    Ok(ConversationRow {
        id: ConversationId::new(row.try_get::<String, _>(0)?),
        project_id: ProjectId::new(row.try_get::<String, _>(1)?),
        visitor_id: VisitorId::new(row.try_get::<String, _>(2)?),
        status: status_of(&row.try_get::<String, _>(3)?),
        agent_id: row.try_get::<Option<String>, _>(4)?.map(AgentId::new),
        last_seq: Seq(to_u64(row.try_get(5)?)),
        queued_at: row.try_get::<Option<i64>, _>(6)?.map(to_u64),
        presence: presence_of(&row.try_get::<String, _>(7)?),
        last_heartbeat: row.try_get::<Option<i64>, _>(8)?.map(to_u64),
        created_at: to_u64(row.try_get(9)?),
        updated_at: to_u64(row.try_get(10)?),
    })
}

const AGENT_COLUMNS: &str = "a.id, a.project_id, a.email, a.name, a.password_hash, a.status, a.capacity, a.last_activity, a.idle_since, (SELECT COUNT(*) FROM conversations c WHERE c.agent_id = a.id AND c.status = 'assigned'), a.disabled_at, a.last_socket_seen";

fn agent(row: &AnyRow) -> Result<AgentRow, sqlx::Error> {
    Ok(AgentRow {
        id: AgentId::new(row.try_get::<String, _>(0)?),
        project_id: ProjectId::new(row.try_get::<String, _>(1)?),
        email: row.try_get(2)?,
        name: row.try_get(3)?,
        password_hash: row.try_get(4)?,
        status: AgentStatus::parse(&row.try_get::<String, _>(5)?).unwrap_or(AgentStatus::Offline),
        capacity: u32::try_from(row.try_get::<i64, _>(6)?).unwrap_or(0),
        last_activity: to_u64(row.try_get(7)?),
        idle_since: to_u64(row.try_get(8)?),
        open: u32::try_from(row.try_get::<i64, _>(9)?).unwrap_or(0),
        disabled: row.try_get::<Option<i64>, _>(10)?.is_some(),
        last_socket_seen: row.try_get::<Option<i64>, _>(11)?.map(to_u64),
    })
}

const PROJECT_COLUMNS: &str =
    "id, name, public_key, allowed_origins, identity_secret, enforce_identity, theme, webhook_url, webhook_secret, business_hours";

fn project(row: &AnyRow) -> Result<Project, sqlx::Error> {
    project_at(row, 0)
}

/// The project in a row's columns from `at` on (`PROJECT_COLUMNS`, in order).
fn project_at(row: &AnyRow, at: usize) -> Result<Project, sqlx::Error> {
    let origins: String = row.try_get(at + 3)?;
    let theme: String = row.try_get(at + 6)?;
    Ok(Project {
        id: ProjectId::new(row.try_get::<String, _>(at)?),
        name: row.try_get(at + 1)?,
        public_key: row.try_get(at + 2)?,
        allowed_origins: serde_json::from_str(&origins).unwrap_or_default(),
        identity_secret: row.try_get(at + 4)?,
        enforce_identity: row.try_get::<i64, _>(at + 5)? != 0,
        theme: serde_json::from_str(&theme).unwrap_or_default(),
        webhook_url: row.try_get(at + 7)?,
        webhook_secret: row.try_get(at + 8)?,
        business_hours: row.try_get::<Option<String>, _>(at + 9)?.and_then(|h| serde_json::from_str(&h).ok()),
    })
}

/// Inserts a conversation's events (and the messages among them) in a transaction; a
/// `client_msg_id` already used in the conversation is a [`StoreError::Conflict`].
/// Stores a note (the `note:new` payload as JSON), alone or inside [`Store::append_with`].
async fn insert_note_row(
    conn: &mut sqlx::AnyConnection,
    note: &handoff_protocol::event::Note,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO notes (id, conversation_id, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(note.id.as_str())
        .bind(note.conversation_id.as_str())
        .bind(serde_json::to_string(note).map_err(|e| sqlx::Error::Protocol(e.to_string()))?)
        .bind(to_i64(note.created_at.0))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a decline, alone or inside [`Store::append_with`]. One statement, so two declines at
/// once cannot both insert.
async fn insert_decline_row(
    conn: &mut sqlx::AnyConnection,
    id: &ConversationId,
    agent: &AgentId,
    now: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO declines (conversation_id, agent_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (conversation_id, agent_id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(agent.as_str())
    .bind(to_i64(now))
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &ConversationId,
    last: Seq,
    events: &[Event],
    now: u64,
) -> Result<(), StoreError> {
    for event in events {
        let seq = event.seq().unwrap_or(last);
        let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::query("INSERT INTO events (conversation_id, seq, event, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.as_str())
            .bind(to_i64(seq.0))
            .bind(event.name())
            .bind(payload)
            .bind(to_i64(now))
            .execute(&mut **tx)
            .await?;
        if let Event::MessageNew(m) = event {
            let m = &m.message;
            let r = sqlx::query("INSERT INTO messages (id, conversation_id, seq, author_kind, body, client_msg_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(m.id.as_str())
                .bind(id.as_str())
                .bind(to_i64(m.seq.0))
                .bind(m.author.kind.as_str())
                .bind(&m.body)
                .bind(m.client_msg_id.as_ref().map(|c| c.as_str().to_owned()))
                .bind(to_i64(m.created_at.0))
                .execute(&mut **tx)
                .await;
            match r {
                Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict),
                r => {
                    r?;
                }
            }
        }
    }
    Ok(())
}

/// Splits a batch into chunks of 64, 16, 4 and 1 items: few statements per batch, and few
/// distinct ones for the prepared statement cache.
fn batch_chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in [64, 16, 4, 1] {
        while items.len() >= size {
            let (head, rest) = items.split_at(size);
            out.push(head);
            items = rest;
        }
    }
    out
}

/// `$1, $2, ... $n`.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `rows` tuples of numbered placeholders, `(CAST($1 AS TEXT), $2), (...)`: one per column,
/// cast to the column's type when given (a `VALUES` list used as a table needs its types
/// spelled out on PostgreSQL).
fn value_tuples(rows: usize, columns: &[Option<&str>]) -> String {
    let mut n = 0;
    let tuples: Vec<String> = (0..rows)
        .map(|_| {
            let cells: Vec<String> = columns
                .iter()
                .map(|ty| {
                    n += 1;
                    ty.map_or_else(|| format!("${n}"), |ty| format!("CAST(${n} AS {ty})"))
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    tuples.join(", ")
}

/// What [`Store::write_batch`] reads under the lock: the conversations `ids` (`lock` appended
/// to the query), and which of `client_ids` are stored.
async fn read_batch(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ids: &[&str],
    client_ids: &[(ConversationId, String)],
    lock: &str,
) -> Result<BatchRead, StoreError> {
    let mut read = BatchRead::default();
    for chunk in batch_chunks(ids) {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id IN ({}){lock}",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let c = conversation(&row)?;
            read.conversations.insert(c.id.clone(), c);
        }
    }
    for chunk in batch_chunks(client_ids) {
        let cond: Vec<String> = (0..chunk.len())
            .map(|i| format!("(conversation_id = ${} AND client_msg_id = ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql =
            format!("SELECT conversation_id, client_msg_id, seq FROM messages WHERE {}", cond.join(" OR "));
        let mut q = sqlx::query(&sql);
        for (id, client_id) in chunk {
            q = q.bind(id.as_str()).bind(client_id.as_str());
        }
        for row in q.fetch_all(&mut **tx).await? {
            let key = (ConversationId::new(row.try_get::<String, _>(0)?), row.try_get::<String, _>(1)?);
            read.client_ids.insert(key, Seq(to_u64(row.try_get(2)?)));
        }
    }
    Ok(read)
}

/// What [`Store::write_batch`] writes: each conversation's new state (only if it is still at
/// the seq it was read at) and the events, messages among them.
async fn write_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    writes: &[BatchWrite],
    now: u64,
) -> Result<(), StoreError> {
    let text = Some("TEXT");
    let int = Some("BIGINT");
    for chunk in batch_chunks(writes) {
        let values = value_tuples(chunk.len(), &[text, text, text, int, int, int, int]);
        let sql = format!(
            "UPDATE conversations SET status = v.column2, agent_id = v.column3, queued_at = v.column4, \
                 last_seq = v.column5, updated_at = v.column6 FROM (VALUES {values}) AS v \
                 WHERE conversations.id = v.column1 AND conversations.last_seq = v.column7"
        );
        let mut q = sqlx::query(&sql);
        for w in chunk {
            let last = w.events.last().and_then(Event::seq).unwrap_or(w.expected);
            q = q
                .bind(w.id.as_str())
                .bind(w.status.as_str())
                .bind(w.agent_id.as_ref().map(|a| a.as_str().to_owned()))
                .bind(w.queued_at.map(to_i64))
                .bind(to_i64(last.0))
                .bind(to_i64(now))
                .bind(to_i64(w.expected.0));
        }
        if q.execute(&mut **tx).await?.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Conflict);
        }
    }
    let events: Vec<(&ConversationId, &Event)> =
        writes.iter().flat_map(|w| w.events.iter().map(move |e| (&w.id, e))).collect();
    for chunk in batch_chunks(&events) {
        let sql = format!(
            "INSERT INTO events (conversation_id, seq, event, payload, created_at) VALUES {}",
            value_tuples(chunk.len(), &[None; 5])
        );
        let mut q = sqlx::query(&sql);
        for (id, event) in chunk {
            let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            q = q
                .bind(id.as_str())
                .bind(to_i64(event.seq().unwrap_or(Seq::ZERO).0))
                .bind(event.name())
                .bind(payload)
                .bind(to_i64(now));
        }
        q.execute(&mut **tx).await?;
    }
    let messages: Vec<&Message> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::MessageNew(m) => Some(&m.message),
            _ => None,
        })
        .collect();
    for chunk in batch_chunks(&messages) {
        let sql = format!(
                "INSERT INTO messages (id, conversation_id, seq, author_kind, body, client_msg_id, created_at) VALUES {}",
                value_tuples(chunk.len(), &[None; 7])
            );
        let mut q = sqlx::query(&sql);
        for m in chunk {
            q = q
                .bind(m.id.as_str())
                .bind(m.conversation_id.as_str())
                .bind(to_i64(m.seq.0))
                .bind(m.author.kind.as_str())
                .bind(m.body.as_str())
                .bind(m.client_msg_id.as_ref().map(|c| c.as_str().to_owned()))
                .bind(to_i64(m.created_at.0));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes an agent's tokens in a transaction; answers their hashes.
async fn delete_tokens_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agent: &AgentId,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("DELETE FROM agent_tokens WHERE agent_id = $1 RETURNING token_hash")
        .bind(agent.as_str())
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?)
}

/// A pool; on SQLite each connection in WAL mode, waiting up to 5 s for the write lock, with
/// this `synchronous` level (`NORMAL`: a commit survives a crash of the process, and is on
/// disk at the next checkpoint; `FULL`: on disk when the commit returns).
async fn open(url: &str, connections: u32, synchronous: &'static str) -> Result<AnyPool, sqlx::Error> {
    let sqlite = url.starts_with("sqlite:");
    AnyPoolOptions::new()
        .max_connections(connections)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout=5000").execute(&mut *conn).await?;
                    sqlx::query(&format!("PRAGMA synchronous={synchronous}")).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// Applies the migrations the database has not seen yet.
async fn migrate(pool: &AnyPool, postgres: bool) -> Result<(), sqlx::Error> {
    // One transaction for all of it. On PostgreSQL, server nodes starting together take turns on
    // an advisory lock, so the second finds the work done instead of failing half-way.
    let mut tx = pool.begin().await?;
    if postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7361626001)").execute(&mut *tx).await?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *tx).await?;
    for (version, statements) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for sql in *statements {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(to_i64(crate::service::now_ms()))
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "database migrated");
    }
    tx.commit().await
}

/// The schema version this build migrates to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;
impl SqlStore {
    /// Connects and migrates. `sqlite://path` (created if missing, WAL mode) or `postgres://...`.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains('?') { format!("{url}?mode=rwc") } else { url.to_owned() };
        let postgres = url.starts_with("postgres");
        let pool = open(&url, if sqlite { 4 } else { 16 }, "NORMAL").await?;
        migrate(&pool, postgres).await?;
        // Message batches commit on a connection of their own, which on SQLite waits for the
        // disk (`synchronous=FULL`: the WAL is fsynced at each commit), so that a stored
        // message is on disk when it is answered; one fsync serves a whole batch.
        let writer = if sqlite { open(&url, 1, "FULL").await? } else { pool.clone() };
        Ok(SqlStore { pool, writer, postgres })
    }

    async fn project_where(&self, column: &str, value: &str) -> Result<Option<Project>, StoreError> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE {column} = $1");
        let row = sqlx::query(&sql).bind(value).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(project).transpose()?)
    }

    async fn agents_where(&self, clause: &str, value: &str) -> Result<Vec<AgentRow>, StoreError> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents a WHERE {clause} = $1 ORDER BY a.name");
        let rows = sqlx::query(&sql).bind(value).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(agent).collect::<Result<_, _>>()?)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    // ---- projects ----

    async fn insert_project(&self, p: &Project, secret_key_hash: &str, now: u64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO projects (id, name, public_key, secret_key_hash, allowed_origins, identity_secret, enforce_identity, theme, webhook_url, webhook_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
            .bind(p.id.as_str())
            .bind(&p.name)
            .bind(&p.public_key)
            .bind(secret_key_hash)
            .bind(serde_json::to_string(&p.allowed_origins).unwrap_or_default())
            .bind(p.identity_secret.clone())
            .bind(i64::from(p.enforce_identity))
            .bind(serde_json::to_string(&p.theme).unwrap_or_default())
            .bind(p.webhook_url.clone())
            .bind(p.webhook_secret.clone())
            .bind(to_i64(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn project(&self, id: &ProjectId) -> Result<Option<Project>, StoreError> {
        self.project_where("id", id.as_str()).await
    }

    async fn projects_with_hours(&self) -> Result<Vec<Project>, StoreError> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE business_hours IS NOT NULL");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(project).collect::<Result<_, _>>()?)
    }

    async fn project_by_public_key(&self, key: &str) -> Result<Option<Project>, StoreError> {
        self.project_where("public_key", key).await
    }

    async fn project_by_secret_hash(&self, hash: &str) -> Result<Option<Project>, StoreError> {
        self.project_where("secret_key_hash", hash).await
    }

    async fn set_webhook(
        &self,
        id: &ProjectId,
        url: Option<&str>,
        secret: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET webhook_url = $1, webhook_secret = $2 WHERE id = $3")
            .bind(url.map(str::to_owned))
            .bind(secret.map(str::to_owned))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_identity(
        &self,
        id: &ProjectId,
        secret: Option<&str>,
        enforce: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET identity_secret = $1, enforce_identity = $2 WHERE id = $3")
            .bind(secret.map(str::to_owned))
            .bind(i64::from(enforce))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_theme(
        &self,
        id: &ProjectId,
        theme: &handoff_protocol::api::Theme,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET theme = $1 WHERE id = $2")
            .bind(serde_json::to_string(theme).unwrap_or_default())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_business_hours(
        &self,
        id: &ProjectId,
        hours: Option<&BusinessHours>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET business_hours = $1 WHERE id = $2")
            .bind(hours.map(|h| serde_json::to_string(h).unwrap_or_default()))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- agents ----

    async fn insert_agent(&self, a: &AgentRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agents (id, project_id, email, name, password_hash, status, capacity, last_activity, idle_since) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(a.id.as_str())
            .bind(a.project_id.as_str())
            .bind(&a.email)
            .bind(&a.name)
            .bind(&a.password_hash)
            .bind(a.status.as_str())
            .bind(i64::from(a.capacity))
            .bind(to_i64(a.last_activity))
            .bind(to_i64(a.idle_since))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn agent(&self, id: &AgentId) -> Result<Option<AgentRow>, StoreError> {
        Ok(self.agents_where("a.id", id.as_str()).await?.pop())
    }

    async fn agent_by_email(&self, email: &str) -> Result<Option<AgentRow>, StoreError> {
        Ok(self.agents_where("a.email", email).await?.pop())
    }

    async fn agents(&self, project: &ProjectId) -> Result<Vec<AgentRow>, StoreError> {
        self.agents_where("a.project_id", project.as_str()).await
    }

    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, now: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET status = $1, last_activity = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(to_i64(now))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_agent_capacity(&self, id: &AgentId, capacity: u32) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET capacity = $1 WHERE id = $2")
            .bind(i64::from(capacity))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn touch_agent(&self, id: &AgentId, now: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET last_activity = $1 WHERE id = $2")
            .bind(to_i64(now))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_idle_since(&self, id: &AgentId, now: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET idle_since = $1 WHERE id = $2")
            .bind(to_i64(now))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn inactive_agents(&self, before: u64) -> Result<Vec<AgentRow>, StoreError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents a WHERE a.status <> 'offline' AND a.last_activity < $1 \
             AND COALESCE(a.last_socket_seen, 0) < $1"
        );
        let rows = sqlx::query(&sql).bind(to_i64(before)).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(agent).collect::<Result<_, _>>()?)
    }

    async fn expire_agent(&self, id: &AgentId, before: u64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE agents SET status = 'offline' WHERE id = $1 AND status <> 'offline' \
             AND last_activity < $2 AND COALESCE(last_socket_seen, 0) < $2",
        )
        .bind(id.as_str())
        .bind(to_i64(before))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn agent_sockets_seen(&self, ids: &[AgentId], now: u64) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("UPDATE agents SET last_socket_seen = $1 WHERE id = $2 AND COALESCE(last_socket_seen, 0) < $1")
                .bind(to_i64(now))
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn try_lease(&self, name: &str, holder: &str, now: u64, ttl_ms: u64) -> Result<bool, StoreError> {
        // One statement: the row is taken when it is free, expired, or ours (renewal).
        let done = sqlx::query(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(to_i64(now.saturating_add(ttl_ms)))
        .bind(to_i64(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_agent_token(&self, hash: &str, agent: &AgentId, now: u64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO agent_tokens (token_hash, agent_id, created_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(agent.as_str())
            .bind(to_i64(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_agent_token(&self, hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM agent_tokens WHERE token_hash = $1").bind(hash).execute(&self.pool).await?;
        Ok(())
    }

    async fn agent_by_token_hash(
        &self,
        hash: &str,
        now: u64,
        created_after: u64,
        used_after: u64,
    ) -> Result<Option<AgentRow>, StoreError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS}, COALESCE(t.last_used, t.created_at) \
             FROM agents a JOIN agent_tokens t ON t.agent_id = a.id WHERE t.token_hash = $1 AND a.disabled_at IS NULL AND t.created_at >= $2 \
             AND COALESCE(t.last_used, t.created_at) >= $3"
        );
        let row = sqlx::query(&sql)
            .bind(hash)
            .bind(to_i64(created_after))
            .bind(to_i64(used_after))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        // Written only when stale: most requests of an agent read and never write.
        let used = to_u64(row.try_get::<i64, _>(12)?);
        if used.saturating_add(TOUCH_AGENT_TOKEN_MS) <= now {
            sqlx::query("UPDATE agent_tokens SET last_used = $1 WHERE token_hash = $2")
                .bind(to_i64(now))
                .bind(hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(agent(&row)?))
    }

    async fn delete_expired_agent_tokens(
        &self,
        created_before: u64,
        used_before: u64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM agent_tokens WHERE created_at < $1 OR COALESCE(last_used, created_at) < $2 RETURNING token_hash",
        )
        .bind(to_i64(created_before))
        .bind(to_i64(used_before))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?)
    }

    async fn set_agent_password(&self, id: &AgentId, password_hash: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE agents SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let revoked = delete_tokens_of(&mut tx, id).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn set_agent_disabled(
        &self,
        id: &AgentId,
        disabled: bool,
        now: u64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = if disabled {
            "UPDATE agents SET disabled_at = $1, status = 'offline', last_activity = $1 WHERE id = $2"
        } else {
            "UPDATE agents SET disabled_at = NULL, last_activity = $1 WHERE id = $2"
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql).bind(to_i64(now)).bind(id.as_str()).execute(&mut *tx).await?;
        let revoked = if disabled { delete_tokens_of(&mut tx, id).await? } else { Vec::new() };
        tx.commit().await?;
        Ok(revoked)
    }

    async fn set_secret_key_hash(&self, id: &ProjectId, hash: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let old = sqlx::query("SELECT secret_key_hash FROM projects WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?;
        if old.is_some() {
            sqlx::query("UPDATE projects SET secret_key_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(old)
    }

    // ---- visitors ----

    async fn insert_visitor(
        &self,
        id: &VisitorId,
        project: &ProjectId,
        token_hash: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO visitors (id, project_id, token_hash, verified, created_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(id.as_str())
            .bind(project.as_str())
            .bind(token_hash)
            .bind(to_i64(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn visitor_by_token_hash(
        &self,
        hash: &str,
        now: u64,
        seen_after: u64,
    ) -> Result<Option<(VisitorRow, Project)>, StoreError> {
        // One query for both: every request of a visitor authenticates with it.
        let sql = format!(
            "SELECT v.id, v.project_id, v.name, v.email, v.verified, COALESCE(v.last_seen, v.created_at), \
             {} FROM visitors v JOIN projects p ON p.id = v.project_id \
             WHERE v.token_hash = $1 AND COALESCE(v.last_seen, v.created_at) >= $2",
            PROJECT_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
        );
        let row = sqlx::query(&sql).bind(hash).bind(to_i64(seen_after)).fetch_optional(&self.pool).await?;
        let Some(r) = row else { return Ok(None) };
        // Written only when stale: a visitor's messages, typing and presence read and never write.
        let seen = to_u64(r.try_get::<i64, _>(5)?);
        if seen.saturating_add(TOUCH_VISITOR_MS) <= now {
            sqlx::query("UPDATE visitors SET last_seen = $1 WHERE token_hash = $2")
                .bind(to_i64(now))
                .bind(hash)
                .execute(&self.pool)
                .await?;
        }
        let visitor = VisitorRow {
            id: VisitorId::new(r.try_get::<String, _>(0)?),
            project_id: ProjectId::new(r.try_get::<String, _>(1)?),
            name: r.try_get(2)?,
            email: r.try_get(3)?,
            verified: r.try_get::<i64, _>(4)? != 0,
        };
        Ok(Some((visitor, project_at(&r, 6)?)))
    }

    async fn visitor_name(&self, id: &VisitorId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT name FROM visitors WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten())
    }

    async fn identify_visitor(
        &self,
        id: &VisitorId,
        user_id: &str,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE visitors SET user_id = $1, name = COALESCE($2, name), email = COALESCE($3, email), verified = 1 \
             WHERE id = $4 AND (verified = 0 OR user_id IS NULL OR user_id = $1)",
        )
        .bind(user_id)
        .bind(name.map(str::to_owned))
        .bind(email.map(str::to_owned))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- conversations ----

    async fn insert_conversation(&self, c: &ConversationRow, events: &[Event]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO conversations (id, project_id, visitor_id, status, agent_id, last_seq, queued_at, presence, last_heartbeat, created_at, updated_at) VALUES ($1, $2, $3, $4, NULL, $5, NULL, $6, $7, $8, $9)")
            .bind(c.id.as_str())
            .bind(c.project_id.as_str())
            .bind(c.visitor_id.as_str())
            .bind(c.status.as_str())
            .bind(to_i64(c.last_seq.0))
            .bind(c.presence.as_str())
            .bind(c.last_heartbeat.map(to_i64))
            .bind(to_i64(c.created_at))
            .bind(to_i64(c.updated_at))
            .execute(&mut *tx)
            .await?;
        insert_events(&mut tx, &c.id, c.last_seq, events, c.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn conversation(&self, id: &ConversationId) -> Result<Option<ConversationRow>, StoreError> {
        let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(conversation).transpose()?)
    }

    async fn open_conversation_of(&self, visitor: &VisitorId) -> Result<Option<ConversationRow>, StoreError> {
        let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE visitor_id = $1 AND status <> 'resolved' ORDER BY created_at DESC LIMIT 1");
        let row = sqlx::query(&sql).bind(visitor.as_str()).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(conversation).transpose()?)
    }

    async fn conversations_of(
        &self,
        visitor: &VisitorId,
        limit: u32,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE visitor_id = $1 OR visitor_id IN \
             (SELECT o.id FROM visitors me JOIN visitors o ON o.project_id = me.project_id \
              AND o.user_id = me.user_id AND o.verified = 1 WHERE me.id = $1 AND me.verified = 1) \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows =
            sqlx::query(&sql).bind(visitor.as_str()).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(conversation).collect::<Result<_, _>>()?)
    }

    async fn queue(&self, project: &ProjectId) -> Result<Vec<ConversationRow>, StoreError> {
        let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE project_id = $1 AND status = 'queued' ORDER BY queued_at, id");
        let rows = sqlx::query(&sql).bind(project.as_str()).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(conversation).collect::<Result<_, _>>()?)
    }

    async fn queue_entries(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<handoff_protocol::event::QueueEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, COALESCE(c.queued_at, c.updated_at), v.name, \
             (SELECT m.body FROM messages m WHERE m.conversation_id = c.id AND m.author_kind = 'customer' \
              ORDER BY m.seq DESC LIMIT 1) \
             FROM conversations c LEFT JOIN visitors v ON v.id = c.visitor_id \
             WHERE c.project_id = $1 AND c.status = 'queued' ORDER BY c.queued_at, c.id",
        )
        .bind(project.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            entries.push(handoff_protocol::event::QueueEntry {
                conversation_id: ConversationId::new(r.try_get::<String, _>(0)?),
                position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                waiting_since: Timestamp(to_u64(r.try_get(1)?)),
                customer_name: r.try_get(2)?,
                preview: r.try_get(3)?,
            });
        }
        Ok(entries)
    }

    async fn inbox(&self, project: &ProjectId, agent: &AgentId) -> Result<Vec<ConversationRow>, StoreError> {
        let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE project_id = $1 AND ((status = 'assigned' AND agent_id = $2) OR status = 'queued') ORDER BY updated_at DESC");
        let rows =
            sqlx::query(&sql).bind(project.as_str()).bind(agent.as_str()).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(conversation).collect::<Result<_, _>>()?)
    }

    async fn append_with(
        &self,
        id: &ConversationId,
        expected: Seq,
        update: &ConversationUpdate,
        events: &[Event],
        rows: &[AppendRow],
        now: u64,
    ) -> Result<(), StoreError> {
        let last = Seq(expected.0 + events.len() as u64);
        let mut tx = self.pool.begin().await?;
        if let (true, Some(agent)) = (update.takes_slot, &update.agent_id) {
            // Lock the agent first (a row lock on PostgreSQL; SQLite's one writer), then count
            // in a later statement, which sees every assignment committed before the lock was
            // granted: two assignments to one agent take turns, on any node.
            sqlx::query("UPDATE agents SET capacity = capacity WHERE id = $1")
                .bind(agent.as_str())
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(
                "SELECT a.capacity, (SELECT COUNT(*) FROM conversations c WHERE c.agent_id = a.id \
                 AND c.status = 'assigned' AND c.id <> $2) FROM agents a WHERE a.id = $1",
            )
            .bind(agent.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let free = match row {
                Some(r) => r.try_get::<i64, _>(1)? < r.try_get::<i64, _>(0)?,
                None => false,
            };
            if !free {
                return Err(StoreError::AtCapacity);
            }
        }
        let done = sqlx::query("UPDATE conversations SET status = $1, agent_id = $2, queued_at = $3, last_seq = $4, updated_at = $5 WHERE id = $6 AND last_seq = $7")
            .bind(update.status.as_str())
            .bind(update.agent_id.as_ref().map(|a| a.as_str().to_owned()))
            .bind(update.queued_at.map(to_i64))
            .bind(to_i64(last.0))
            .bind(to_i64(now))
            .bind(id.as_str())
            .bind(to_i64(expected.0))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        insert_events(&mut tx, id, last, events, now).await?;
        for row in rows {
            match row {
                AppendRow::Note(note) => insert_note_row(&mut tx, note).await?,
                AppendRow::Decline(agent) => insert_decline_row(&mut tx, id, agent, now).await?,
                AppendRow::Rating(r) => {
                    sqlx::query(
                        "INSERT INTO conversation_ratings (conversation_id, project_id, agent_id, rating, comment, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(r.conversation_id.as_str())
                    .bind(r.project_id.as_str())
                    .bind(r.agent_id.as_ref().map(|a| a.as_str().to_owned()))
                    .bind(i64::from(r.rating))
                    .bind(r.comment.clone())
                    .bind(to_i64(r.created_at))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    fn writers(&self) -> usize {
        // PostgreSQL: batches on disjoint conversations lock disjoint rows, and while one
        // waits for its commit's flush another fills; SQLite has one writer.
        if self.postgres {
            PG_WRITERS
        } else {
            1
        }
    }

    async fn write_batch(
        &self,
        ids: &[ConversationId],
        client_ids: &[(ConversationId, String)],
        plan: &mut BatchPlan<'_>,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut ids: Vec<&str> = ids.iter().map(ConversationId::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        // The write lock first: SQLite's, or the rows' on PostgreSQL (in id order, so that two
        // nodes' batches cannot deadlock). What is read next cannot change before the commit.
        let (mut tx, lock) = if self.postgres {
            (self.writer.begin().await?, " ORDER BY id FOR UPDATE")
        } else {
            (self.writer.begin_with("BEGIN IMMEDIATE").await?, "")
        };
        let read = read_batch(&mut tx, &ids, client_ids, lock).await?;
        let writes = plan(read);
        write_rows(&mut tx, &writes, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn message_seq_by_client_id(
        &self,
        id: &ConversationId,
        client_msg_id: &str,
    ) -> Result<Option<Seq>, StoreError> {
        let row = sqlx::query("SELECT seq FROM messages WHERE conversation_id = $1 AND client_msg_id = $2")
            .bind(id.as_str())
            .bind(client_msg_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.map(|s| Seq(to_u64(s))))
    }

    async fn events_after(
        &self,
        id: &ConversationId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT payload FROM events WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id.as_str())
        .bind(to_i64(after.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let payload: String = r.try_get(0)?;
            out.push(serde_json::from_str(&payload).map_err(|e| sqlx::Error::Protocol(e.to_string()))?);
        }
        Ok(out)
    }

    async fn event_at(&self, id: &ConversationId, seq: Seq) -> Result<Option<Event>, StoreError> {
        Ok(self
            .events_after(id, Seq(seq.0.saturating_sub(1)), 1)
            .await?
            .into_iter()
            .find(|e| e.seq() == Some(seq)))
    }

    async fn last_message(&self, id: &ConversationId) -> Result<Option<Event>, StoreError> {
        let row =
            sqlx::query("SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(r) => self.event_at(id, Seq(to_u64(r.try_get(0)?))).await,
            None => Ok(None),
        }
    }

    async fn last_customer_body(&self, id: &ConversationId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT body FROM messages WHERE conversation_id = $1 AND author_kind = 'customer' ORDER BY seq DESC LIMIT 1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    async fn unread(&self, agent: &AgentId, id: &ConversationId) -> Result<u32, StoreError> {
        // The authors that count come from the protocol's one rule, which the console uses too.
        let kinds: Vec<String> = handoff_protocol::unread::unread_authors(AuthorKind::Agent)
            .map(|k| format!("'{}'", k.as_str()))
            .collect();
        let kinds = if kinds.is_empty() { String::from("NULL") } else { kinds.join(", ") };
        let sql = format!("SELECT COUNT(*) FROM messages m WHERE m.conversation_id = $1 AND m.author_kind IN ({kinds}) AND m.seq > COALESCE((SELECT r.seq FROM read_markers r WHERE r.agent_id = $2 AND r.conversation_id = $1), 0)");
        let row = sqlx::query(&sql).bind(id.as_str()).bind(agent.as_str()).fetch_one(&self.pool).await?;
        Ok(u32::try_from(row.try_get::<i64, _>(0)?).unwrap_or(u32::MAX))
    }

    async fn mark_read(
        &self,
        agent: &AgentId,
        id: &ConversationId,
        seq: Seq,
    ) -> Result<Option<Seq>, StoreError> {
        // The conversation's highest marker before, then the upsert. One statement each: a
        // read-then-write transaction fails on SQLite in WAL mode when another connection
        // writes in between (SQLITE_BUSY_SNAPSHOT, which busy_timeout does not retry). Markers
        // only move forward; two agents reading at once may both announce a move, which readers
        // of `message:read` take as the maximum anyway.
        let before = self.agent_read_seq(id).await?;
        let moved = sqlx::query(
            "INSERT INTO read_markers (agent_id, conversation_id, seq) VALUES ($1, $2, $3) \
             ON CONFLICT (agent_id, conversation_id) DO UPDATE SET seq = excluded.seq \
             WHERE read_markers.seq < excluded.seq",
        )
        .bind(agent.as_str())
        .bind(id.as_str())
        .bind(to_i64(seq.0))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        Ok((moved && seq > before).then_some(seq))
    }

    async fn agent_read_seq(&self, id: &ConversationId) -> Result<Seq, StoreError> {
        let row = sqlx::query("SELECT MAX(seq) FROM read_markers WHERE conversation_id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(Seq(row.try_get::<Option<i64>, _>(0)?.map_or(0, to_u64)))
    }

    async fn rating(&self, id: &ConversationId) -> Result<Option<RatingRow>, StoreError> {
        let row = sqlx::query(
            "SELECT project_id, agent_id, rating, comment, created_at FROM conversation_ratings WHERE conversation_id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(RatingRow {
            conversation_id: id.clone(),
            project_id: ProjectId::new(r.try_get::<String, _>(0)?),
            agent_id: r.try_get::<Option<String>, _>(1)?.map(AgentId::new),
            rating: u8::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
            comment: r.try_get(3)?,
            created_at: to_u64(r.try_get(4)?),
        }))
    }

    async fn rated_agent(&self, id: &ConversationId) -> Result<Option<AgentId>, StoreError> {
        // The latest resolve, assignment and claim events, newest first.
        let rows = sqlx::query(
            "SELECT payload FROM events WHERE conversation_id = $1 AND event IN \
             ('conversation:resolved', 'conversation:assigned', 'agent:claimed') ORDER BY seq DESC LIMIT 20",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for r in rows {
            let payload: String = r.try_get(0)?;
            events.push(
                serde_json::from_str::<Event>(&payload).map_err(|e| sqlx::Error::Protocol(e.to_string()))?,
            );
        }
        let resolver = events.iter().find_map(|e| match e {
            Event::ConversationResolved(r) => Some(r.resolved_by.clone()),
            _ => None,
        });
        if let Some(by) = resolver.filter(|by| by.kind == AuthorKind::Agent) {
            return Ok(Some(AgentId::new(by.id)));
        }
        Ok(events.into_iter().find_map(|e| match e {
            Event::ConversationAssigned(a) => Some(a.agent.id),
            Event::AgentClaimed(a) => Some(a.agent.id),
            _ => None,
        }))
    }

    async fn record_transcript(
        &self,
        id: &ConversationId,
        visitor: &VisitorId,
        email: &str,
        now: u64,
        since: u64,
        max: u32,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO transcript_emails (id, conversation_id, visitor_id, email, created_at) \
             SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS BIGINT) \
             WHERE (SELECT COUNT(*) FROM transcript_emails WHERE conversation_id = $2 AND created_at > $6) < $7 \
             AND (SELECT COUNT(*) FROM transcript_emails WHERE visitor_id = $3 AND created_at > $6) < $7",
        )
        .bind(crate::crypto::random_id("trx_"))
        .bind(id.as_str())
        .bind(visitor.as_str())
        .bind(email)
        .bind(to_i64(now))
        .bind(to_i64(since))
        .bind(i64::from(max))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn visitor_email(&self, id: &VisitorId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE((SELECT email FROM visitors WHERE id = $1), \
             (SELECT email FROM offline_messages WHERE visitor_id = $1 ORDER BY created_at DESC LIMIT 1))",
        )
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<String>, _>(0)?)
    }

    async fn add_decline(&self, id: &ConversationId, agent: &AgentId, now: u64) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_decline_row(&mut conn, id, agent, now).await
    }

    async fn decliners(&self, id: &ConversationId) -> Result<Vec<AgentId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT agent_id FROM declines WHERE conversation_id = $1")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(AgentId::new).collect())
    }

    async fn report_presence(
        &self,
        id: &ConversationId,
        tab: &str,
        state: PresenceState,
        now: u64,
    ) -> Result<Option<PresenceState>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Writing the conversation row first serializes concurrent reports of its tabs (a row
        // lock on PostgreSQL, the write lock on SQLite).
        let found = sqlx::query("UPDATE conversations SET last_heartbeat = $1 WHERE id = $2")
            .bind(to_i64(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Ok(None);
        }
        if state == PresenceState::Offline {
            sqlx::query("DELETE FROM presence_tabs WHERE conversation_id = $1 AND tab_id = $2")
                .bind(id.as_str())
                .bind(tab)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO presence_tabs (conversation_id, tab_id, state, last_heartbeat) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (conversation_id, tab_id) DO UPDATE SET state = excluded.state, last_heartbeat = excluded.last_heartbeat",
            )
            .bind(id.as_str())
            .bind(tab)
            .bind(state.as_str())
            .bind(to_i64(now))
            .execute(&mut *tx)
            .await?;
        }
        let changed = recompute_presence(&mut tx, id, |tabs| conversation_presence(tabs, now)).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn expire_presence(
        &self,
        before: u64,
    ) -> Result<Vec<(ConversationRow, PresenceState)>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT conversation_id FROM presence_tabs WHERE last_heartbeat < $1
             UNION SELECT id FROM conversations WHERE presence <> 'offline' AND last_heartbeat < $1",
        )
        .bind(to_i64(before))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for id in ids.into_iter().map(ConversationId::new) {
            let mut tx = self.pool.begin().await?;
            // Lock the row (see `report_presence`), then drop the silent tabs.
            sqlx::query("UPDATE conversations SET presence = presence WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM presence_tabs WHERE conversation_id = $1 AND last_heartbeat < $2")
                .bind(id.as_str())
                .bind(to_i64(before))
                .execute(&mut *tx)
                .await?;
            let changed =
                recompute_presence(&mut tx, &id, |tabs| aggregate_presence(tabs.iter().map(|t| t.state)))
                    .await?;
            let row = if changed.is_some() {
                let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1");
                sqlx::query(&sql).bind(id.as_str()).fetch_optional(&mut *tx).await?
            } else {
                None
            };
            tx.commit().await?;
            if let (Some(state), Some(row)) = (changed, row) {
                out.push((conversation(&row)?, state));
            }
        }
        Ok(out)
    }

    // ---- notes ----

    async fn insert_note(&self, note: &handoff_protocol::event::Note) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_note_row(&mut conn, note).await
    }

    async fn notes(&self, id: &ConversationId) -> Result<Vec<handoff_protocol::event::Note>, StoreError> {
        let rows =
            sqlx::query("SELECT payload FROM notes WHERE conversation_id = $1 ORDER BY created_at, id")
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get(0)?;
                serde_json::from_str(&s).map_err(|e| StoreError::Backend(Box::new(e)))
            })
            .collect()
    }

    // ---- offline messages ----

    async fn insert_offline(
        &self,
        project: &ProjectId,
        m: &OfflineMessage,
        visitor: Option<&VisitorId>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO offline_messages (id, project_id, name, email, message, created_at, handled_at, visitor_id) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)")
            .bind(m.id.as_str())
            .bind(project.as_str())
            .bind(&m.name)
            .bind(&m.email)
            .bind(&m.message)
            .bind(to_i64(m.created_at.0))
            .bind(visitor.map(|v| v.as_str().to_owned()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn offline_messages(
        &self,
        project: &ProjectId,
        handled: Option<bool>,
    ) -> Result<Vec<OfflineMessage>, StoreError> {
        let filter = match handled {
            None => "",
            Some(true) => " AND handled_at IS NOT NULL",
            Some(false) => " AND handled_at IS NULL",
        };
        let sql = format!("SELECT id, name, email, message, created_at, handled_at FROM offline_messages WHERE project_id = $1{filter} ORDER BY created_at DESC, id");
        let rows = sqlx::query(&sql).bind(project.as_str()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(OfflineMessage {
                    id: OfflineMessageId::new(r.try_get::<String, _>(0)?),
                    name: r.try_get(1)?,
                    email: r.try_get(2)?,
                    message: r.try_get(3)?,
                    created_at: Timestamp(to_u64(r.try_get(4)?)),
                    handled_at: r.try_get::<Option<i64>, _>(5)?.map(|t| Timestamp(to_u64(t))),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn mark_offline_handled(
        &self,
        project: &ProjectId,
        id: &OfflineMessageId,
        now: u64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE offline_messages SET handled_at = COALESCE(handled_at, $1) WHERE id = $2 AND project_id = $3")
            .bind(to_i64(now))
            .bind(id.as_str())
            .bind(project.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---- canned responses ----

    async fn insert_canned(&self, project: &ProjectId, c: &CannedResponse) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO canned_responses (id, project_id, shortcut, shortcut_key, content, content_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(c.id.as_str())
        .bind(project.as_str())
        .bind(&c.shortcut)
        .bind(c.shortcut.to_lowercase())
        .bind(&c.content)
        .bind(c.content.to_lowercase())
        .bind(to_i64(c.created_at.0))
        .bind(to_i64(c.updated_at.0))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn canned_responses(
        &self,
        project: &ProjectId,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CannedResponse>, StoreError> {
        let rows = match query.map(str::to_lowercase).filter(|q| !q.is_empty()) {
            None => {
                let sql = format!(
                    "SELECT {CANNED_COLUMNS} FROM canned_responses WHERE project_id = $1 ORDER BY shortcut_key LIMIT $2"
                );
                sqlx::query(&sql).bind(project.as_str()).bind(i64::from(limit)).fetch_all(&self.pool).await?
            }
            Some(q) => {
                let q = like_literal(&q);
                // Shortcuts that start with the text first, then texts that contain it.
                let sql = format!(
                    "SELECT {CANNED_COLUMNS} FROM canned_responses WHERE project_id = $1 \
                     AND (shortcut_key LIKE $2 ESCAPE '\\' OR content_key LIKE $3 ESCAPE '\\') \
                     ORDER BY CASE WHEN shortcut_key LIKE $2 ESCAPE '\\' THEN 0 ELSE 1 END, shortcut_key LIMIT $4"
                );
                sqlx::query(&sql)
                    .bind(project.as_str())
                    .bind(format!("{q}%"))
                    .bind(format!("%{q}%"))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(canned).collect::<Result<_, sqlx::Error>>().map_err(StoreError::from)
    }

    async fn canned_response(
        &self,
        project: &ProjectId,
        id: &CannedResponseId,
    ) -> Result<Option<CannedResponse>, StoreError> {
        let sql = format!("SELECT {CANNED_COLUMNS} FROM canned_responses WHERE id = $1 AND project_id = $2");
        let row =
            sqlx::query(&sql).bind(id.as_str()).bind(project.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(canned).transpose().map_err(StoreError::from)
    }

    async fn update_canned(&self, project: &ProjectId, c: &CannedResponse) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE canned_responses SET shortcut = $1, shortcut_key = $2, content = $3, content_key = $4, updated_at = $5 \
             WHERE id = $6 AND project_id = $7",
        )
        .bind(&c.shortcut)
        .bind(c.shortcut.to_lowercase())
        .bind(&c.content)
        .bind(c.content.to_lowercase())
        .bind(to_i64(c.updated_at.0))
        .bind(c.id.as_str())
        .bind(project.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_canned(&self, project: &ProjectId, id: &CannedResponseId) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM canned_responses WHERE id = $1 AND project_id = $2")
            .bind(id.as_str())
            .bind(project.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

/// `text` as a `LIKE` pattern that matches it literally (escape character `\\`).
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const CANNED_COLUMNS: &str = "id, shortcut, content, created_at, updated_at";

fn canned(row: &AnyRow) -> Result<CannedResponse, sqlx::Error> {
    Ok(CannedResponse {
        id: CannedResponseId::new(row.try_get::<String, _>(0)?),
        shortcut: row.try_get(1)?,
        content: row.try_get(2)?,
        created_at: Timestamp(to_u64(row.try_get(3)?)),
        updated_at: Timestamp(to_u64(row.try_get(4)?)),
    })
}

/// Sets a conversation's presence to `rule` of its remaining tabs; returns it when it changed.
async fn recompute_presence(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &ConversationId,
    rule: impl FnOnce(&[TabPresence]) -> PresenceState,
) -> Result<Option<PresenceState>, StoreError> {
    let rows = sqlx::query("SELECT state, last_heartbeat FROM presence_tabs WHERE conversation_id = $1")
        .bind(id.as_str())
        .fetch_all(&mut **tx)
        .await?;
    let tabs = rows
        .iter()
        .map(|r| {
            Ok(TabPresence {
                state: presence_of(&r.try_get::<String, _>(0)?),
                last_heartbeat_ms: to_u64(r.try_get::<i64, _>(1)?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let new = rule(&tabs);
    let old: Option<String> = sqlx::query_scalar("SELECT presence FROM conversations WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if old.as_deref().map(presence_of) == Some(new) || old.is_none() {
        return Ok(None);
    }
    sqlx::query("UPDATE conversations SET presence = $1 WHERE id = $2")
        .bind(new.as_str())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(Some(new))
}
