//! Email through SMTP (`lettre` on tokio with rustls): a conversation's transcript on the
//! visitor's request, and offline messages to the project's agents when nobody is online.
//!
//! Configured by `SMTP_URL` (`smtp://host:port` unencrypted, `smtp://host?tls=required` with
//! STARTTLS, `smtps://user:pass@host` over TLS) and the sender `SMTP_FROM`; without `SMTP_URL`
//! the server sends no email and the routes that would answer `403 email_disabled`.
//!
//! Mail never blocks an HTTP answer: [`Mailer::send_in_background`] hands it to a task and logs
//! a failure. Text written by visitors only ever goes into a body (as text, never a header);
//! the one header built from such text, the subject of an offline message, loses its control
//! characters first, and every address is checked ([`is_valid_email`]) and parsed by `lettre`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use handoff_protocol::api::is_valid_email;
use handoff_protocol::event::{AuthorKind, Event, OfflineMessage};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest subject built from a visitor's text, in characters.
const MAX_SUBJECT_CHARS: usize = 120;

/// Why the mailer could not be built or a mail not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// `SMTP_URL` is not a URL `lettre` takes.
    #[error("SMTP_URL: {0}")]
    Url(#[source] lettre::transport::smtp::Error),
    /// `SMTP_FROM` is missing or not an address (`Name <addr@host>` or `addr@host`).
    #[error("SMTP_FROM: {0}")]
    From(String),
    /// A recipient is not an address.
    #[error("bad recipient address")]
    Recipient,
    /// The message could not be built.
    #[error("message: {0}")]
    Build(#[from] lettre::error::Error),
    /// The SMTP server refused or could not be reached.
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Sends mail through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold the SMTP password.
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `smtp_url` sending as `from`.
    ///
    /// # Errors
    /// A URL `lettre` does not take, or a sender that is not an address.
    pub fn new(smtp_url: &str, from: &str) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(MailError::Url)?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from: Mailbox = from.trim().parse().map_err(|e| MailError::From(format!("{e}")))?;
        Ok(Mailer { transport, from })
    }

    /// Sends one plain-text mail to each of `to` (separately: recipients never see each other).
    ///
    /// # Errors
    /// The first failure; the mails before it went out.
    pub async fn send(
        &self,
        to: &[String],
        reply_to: Option<&str>,
        subject: &str,
        body: &str,
    ) -> Result<(), MailError> {
        let reply_to = reply_to.filter(|r| is_valid_email(r)).and_then(|r| r.parse::<Mailbox>().ok());
        for rcpt in to {
            if !is_valid_email(rcpt) {
                return Err(MailError::Recipient);
            }
            let rcpt: Mailbox = rcpt.parse().map_err(|_| MailError::Recipient)?;
            let mut message =
                lettre::Message::builder().from(self.from.clone()).to(rcpt).subject(subject_line(subject));
            if let Some(r) = &reply_to {
                message = message.reply_to(r.clone());
            }
            let message = message.header(ContentType::TEXT_PLAIN).body(body.to_owned())?;
            self.transport.send(message).await?;
        }
        Ok(())
    }

    /// [`Mailer::send`] in a task of its own: the caller does not wait for SMTP; a failure is
    /// logged (`what` says which mail).
    pub fn send_in_background(
        self: &Arc<Self>,
        what: &'static str,
        to: Vec<String>,
        reply_to: Option<String>,
        subject: String,
        body: String,
    ) {
        let mailer = self.clone();
        tokio::spawn(async move {
            match mailer.send(&to, reply_to.as_deref(), &subject, &body).await {
                Ok(()) => tracing::info!(what, recipients = to.len(), "mail sent"),
                Err(e) => tracing::warn!(what, error = %e, "mail not sent"),
            }
        });
    }
}

/// A subject made safe for a header: control characters (line breaks above all) become
/// spaces, runs of whitespace one space, at most [`MAX_SUBJECT_CHARS`].
pub fn subject_line(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut out: String = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > MAX_SUBJECT_CHARS {
        out = out.chars().take(MAX_SUBJECT_CHARS - 1).collect();
        out.push('…');
    }
    out
}

/// `YYYY-MM-DD HH:MM UTC` for a time in milliseconds since the epoch.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// The calendar date of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Text as lines of a plain-text mail: line breaks normalized, continuation lines indented.
fn indented(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\n    ")
}

/// The plain-text transcript of a conversation's events: each message with its author, time
/// (UTC) and text, in order; other events only as short lines (handed over, resolved).
pub fn transcript(title: &str, conversation: &str, events: &[Event], now: u64) -> String {
    let mut out = format!(
        "{}\nTranscript of conversation {conversation}, as of {}.\n\n",
        subject_line(title),
        utc(now)
    );
    for e in events {
        match e {
            Event::MessageNew(m) => {
                let m = &m.message;
                let who = match (m.author.kind, m.author.name.as_deref()) {
                    (AuthorKind::Customer, _) => "You".to_owned(),
                    (AuthorKind::Bot, name) => name.unwrap_or("Assistant").to_owned(),
                    (_, Some(name)) => name.to_owned(),
                    (_, None) => "Agent".to_owned(),
                };
                let _ = write!(
                    out,
                    "[{}] {}:\n    {}\n\n",
                    utc(m.created_at.0),
                    subject_line(&who),
                    indented(&m.body)
                );
            }
            Event::ConversationAssigned(a) => {
                let _ = write!(out, "--- {} joined the conversation\n\n", subject_line(&a.agent.name));
            }
            Event::ConversationResolved(_) => out.push_str("--- The conversation was resolved\n\n"),
            _ => {}
        }
    }
    out
}

/// The mail agents get for an offline message: subject and body.
pub fn offline_message(project: &str, m: &OfflineMessage) -> (String, String) {
    let subject = subject_line(&format!("[{project}] Offline message from {}", m.name));
    let body = format!(
        "{} <{}> left a message at {} while nobody was online:\n\n    {}\n\nReply to this mail to answer them, \
         and mark it handled in the agent console.\n",
        subject_line(&m.name),
        m.email,
        utc(m.created_at.0),
        indented(&m.message)
    );
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_protocol::event::{Author, Message, MessageNew};
    use handoff_protocol::ids::{ConversationId, MessageId, OfflineMessageId, Seq, Timestamp};

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 59_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_709_251_199_000), "2024-02-29 23:59 UTC");
    }

    #[test]
    fn subjects_lose_line_breaks() {
        assert_eq!(subject_line("Hi\r\nBcc: evil@example.com"), "Hi Bcc: evil@example.com");
        assert_eq!(subject_line("  a \t b  "), "a b");
        assert_eq!(subject_line(&"x".repeat(500)).chars().count(), MAX_SUBJECT_CHARS);
    }

    #[test]
    fn transcripts_list_author_time_and_text() {
        let msg = |seq, kind, name: Option<&str>, body: &str| {
            Event::MessageNew(MessageNew {
                message: Message {
                    id: MessageId::new(format!("m{seq}")),
                    conversation_id: ConversationId::new("conv_1"),
                    seq: Seq(seq),
                    author: Author { kind, id: "x".into(), name: name.map(str::to_owned) },
                    body: body.to_owned(),
                    client_msg_id: None,
                    created_at: Timestamp(1_767_225_600_000 + seq * 60_000),
                },
            })
        };
        let t = transcript(
            "Chat with us",
            "conv_1",
            &[
                msg(1, AuthorKind::Customer, Some("Dana"), "Hello\r\nBcc: x@example.com"),
                msg(2, AuthorKind::Agent, Some("Ann"), "Hi Dana"),
                msg(3, AuthorKind::Bot, None, "beep"),
            ],
            1_767_225_600_000,
        );
        assert!(
            t.starts_with("Chat with us\nTranscript of conversation conv_1, as of 2026-01-01 00:00 UTC."),
            "{t}"
        );
        assert!(t.contains("[2026-01-01 00:01 UTC] You:\n    Hello\n    Bcc: x@example.com\n"), "{t}");
        assert!(t.contains("[2026-01-01 00:02 UTC] Ann:\n    Hi Dana\n"), "{t}");
        assert!(t.contains("[2026-01-01 00:03 UTC] Assistant:\n    beep\n"), "{t}");
    }

    #[test]
    fn offline_mails() {
        let m = OfflineMessage {
            id: OfflineMessageId::new("off_1"),
            name: "Dana\r\nX-Evil: 1".into(),
            email: "dana@example.com".into(),
            message: "Call me".into(),
            created_at: Timestamp(0),
            handled_at: None,
        };
        let (subject, body) = offline_message("Shop", &m);
        assert_eq!(subject, "[Shop] Offline message from Dana X-Evil: 1");
        assert!(body.starts_with("Dana X-Evil: 1 <dana@example.com> left a message at 1970-01-01 00:00 UTC"));
        assert!(body.contains("\n    Call me\n"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(matches!(Mailer::new("nope://x", "a@b.co"), Err(MailError::Url(_))));
        assert!(matches!(Mailer::new("smtp://127.0.0.1:2525", "not an address"), Err(MailError::From(_))));
        assert!(Mailer::new("smtp://127.0.0.1:2525", "Support <support@example.com>").is_ok());
    }
}
