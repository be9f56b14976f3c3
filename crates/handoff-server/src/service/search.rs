//! Search and history: the project's conversations by customer name or email and by message
//! text (resolved ones included), and the paged inbox and queue.

// A part of the service: it shares the parent module's imports and helpers.
#[allow(clippy::wildcard_imports)]
use super::*;

use handoff_protocol::api::{QueuePage, SearchHit, SearchMatch, SearchPage};

use crate::store::{After, SearchQuery};

/// Characters of a search hit's snippet (plus `…` where cut).
const SNIPPET_CHARS: usize = 160;

/// What a cursor points into: a list's cursors are refused by another list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CursorKind {
    Search,
    Inbox,
    Queue,
}

impl CursorKind {
    fn tag(self) -> char {
        match self {
            CursorKind::Search => 's',
            CursorKind::Inbox => 'i',
            CursorKind::Queue => 'q',
        }
    }
}

/// An opaque cursor: the list, the item's time and its id, hex-encoded.
pub(super) fn encode_cursor(kind: CursorKind, at: u64, id: &ConversationId) -> String {
    hex::encode(format!("{}:{at}:{id}", kind.tag()))
}

/// Decodes a cursor of `kind`: 422 `validation_failed` for anything else.
pub(super) fn decode_cursor(kind: CursorKind, cursor: &str) -> AppResult<After> {
    let bad = || AppError::validation("cursor is not a cursor of this list: pass next_cursor as it came");
    if cursor.len() > api::MAX_CURSOR_CHARS * 2 {
        return Err(bad());
    }
    let raw = hex::decode(cursor).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = raw.splitn(3, ':');
    let (Some(tag), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let at: u64 = at.parse().map_err(|_| bad())?;
    if tag.len() != 1 || !tag.starts_with(kind.tag()) || !api::is_valid_id(id) || at > api::MAX_SEQ {
        return Err(bad());
    }
    Ok(After { at, id: ConversationId::new(id.to_owned()) })
}

/// A page size: `default` when absent, 1 to [`api::LIST_PAGE_MAX`] otherwise (422 outside).
pub(super) fn page_limit(limit: Option<u32>, default: u32) -> AppResult<u32> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=api::LIST_PAGE_MAX).contains(&n) => Ok(n),
        Some(_) => Err(AppError::validation(format!("limit must be 1 to {}", api::LIST_PAGE_MAX))),
    }
}

/// The project an agent or the secret key searches; 403 for customers.
fn searcher(caller: &Caller) -> AppResult<&ProjectId> {
    match caller {
        Caller::Agent(a) => Ok(&a.project_id),
        Caller::Server(p) => Ok(&p.id),
        Caller::Customer { .. } => {
            Err(AppError::forbidden("only agents and the project's secret key search conversations"))
        }
    }
}

/// The parameters of `GET /api/conversations/search`.
#[derive(Clone, Debug, Default)]
pub struct SearchParams {
    /// The text: words of a message, or part of the customer's name or email.
    pub q: Option<String>,
    /// A status filter (`bot`, `queued`, `assigned`, `resolved`).
    pub status: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Hits per page.
    pub limit: Option<u32>,
}

impl Service {
    /// `GET /api/conversations/search?q=&status=&cursor=&limit=`: the caller's project's
    /// conversations whose messages hold every word of `q` (as words or word starts; the first
    /// [`api::MAX_SEARCH_TERMS`]) or whose
    /// customer's name or email contains `q`; without `q`, all of them (history). Newest
    /// activity first, [`api::SEARCH_PAGE_DEFAULT`] a page unless `limit` says (at most
    /// [`api::LIST_PAGE_MAX`]).
    ///
    /// # Errors
    /// 403 for customers; 422 for a text longer than [`api::MAX_SEARCH_QUERY_CHARS`], an
    /// unknown status, a bad cursor or limit.
    pub async fn search(&self, caller: &Caller, p: SearchParams) -> AppResult<SearchPage> {
        let project = searcher(caller)?;
        let limit = page_limit(p.limit, api::SEARCH_PAGE_DEFAULT)?;
        let text = p.q.as_deref().map(str::trim).unwrap_or_default();
        if text.chars().count() > api::MAX_SEARCH_QUERY_CHARS {
            return Err(AppError::validation(format!(
                "q is longer than {} characters",
                api::MAX_SEARCH_QUERY_CHARS
            )));
        }
        // The first words only: a long list of one-letter prefixes is a dear query.
        let mut terms = api::search_terms(text);
        terms.truncate(api::MAX_SEARCH_TERMS);
        let status = match p.status.as_deref() {
            None => None,
            Some(s) => Some(ConversationStatus::parse(s).ok_or_else(|| {
                AppError::validation("status must be one of bot, queued, assigned, resolved")
            })?),
        };
        let after = p.cursor.as_deref().map(|c| decode_cursor(CursorKind::Search, c)).transpose()?;
        // Control characters are in no name, email or word: such a text finds no customer
        // (and PostgreSQL takes no NUL in a text).
        let customer = text.to_lowercase();
        let customer =
            (!text.is_empty() && !api::has_control_chars(text, false)).then_some(customer.as_str());
        if !text.is_empty() && terms.is_empty() && customer.is_none() {
            return Ok(SearchPage { hits: Vec::new(), next_cursor: None });
        }
        let query = SearchQuery { project, terms: &terms, customer, status, after, limit: limit + 1 };
        let mut rows = self.store.search(&query).await.map_err(AppError::from)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = more
            .then(|| {
                rows.last()
                    .map(|r| encode_cursor(CursorKind::Search, r.conversation.updated_at, &r.conversation.id))
            })
            .flatten();
        let mut hits = Vec::with_capacity(rows.len());
        for r in rows {
            let c = &r.conversation;
            let matched = if r.message_matched {
                SearchMatch::Message
            } else if text.is_empty() {
                SearchMatch::All
            } else {
                SearchMatch::Customer
            };
            let (message_id, message_seq, snippet) = match r.message {
                Some((id, seq, body)) => {
                    (Some(id), Some(seq), Some(api::snippet(&body, &terms, SNIPPET_CHARS)))
                }
                None => (None, None, None),
            };
            hits.push(SearchHit {
                conversation: self.conversation_dto(c).await?,
                customer_email: r.customer_email,
                matched,
                message_id,
                message_seq,
                snippet,
            });
        }
        Ok(SearchPage { hits, next_cursor })
    }

    /// `GET /api/inbox?cursor=&limit=`: my assigned conversations and the queue, newest
    /// activity first, with unread counts; each item carries its `cursor` for the next page.
    ///
    /// # Errors
    /// 403 for non-agents; 422 for a bad cursor or limit.
    pub async fn inbox(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> AppResult<Vec<InboxItem>> {
        let me = caller.agent()?;
        let limit = page_limit(limit, api::LIST_PAGE_DEFAULT)?;
        let after = cursor.map(|c| decode_cursor(CursorKind::Inbox, c)).transpose()?;
        let rows = self
            .store
            .inbox_page(&me.project_id, &me.id, after.as_ref(), limit)
            .await
            .map_err(AppError::from)?;
        let mut out = Vec::with_capacity(rows.len());
        for c in &rows {
            let last_message = match self.store.last_message(&c.id).await.map_err(AppError::from)? {
                Some(Event::MessageNew(m)) => Some(m.message),
                _ => None,
            };
            out.push(InboxItem {
                conversation: self.conversation_dto(c).await?,
                unread: self.store.unread(&me.id, &c.id).await.map_err(AppError::from)?,
                last_message,
                cursor: Some(encode_cursor(CursorKind::Inbox, c.updated_at, &c.id)),
            });
        }
        Ok(out)
    }

    /// `GET /api/queue?cursor=&limit=`: the waiting list, head first, a page of it.
    ///
    /// # Errors
    /// 403 for non-agents; 422 for a bad cursor or limit.
    pub async fn queue(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> AppResult<QueuePage> {
        let me = caller.agent()?;
        let limit = page_limit(limit, api::LIST_PAGE_DEFAULT)?;
        let after = cursor.map(|c| decode_cursor(CursorKind::Queue, c)).transpose()?;
        let (mut queue, queue_length) =
            self.store.queue_page(&me.project_id, after.as_ref(), limit).await.map_err(AppError::from)?;
        for e in &mut queue {
            e.preview = e.preview.as_deref().map(preview);
        }
        let more = queue.last().is_some_and(|e| e.position < queue_length);
        let next_cursor = if more {
            queue.last().map(|e| encode_cursor(CursorKind::Queue, e.waiting_since.0, &e.conversation_id))
        } else {
            None
        };
        Ok(QueuePage { queue, queue_length, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_other_lists() {
        let id = ConversationId::new("conv_1".to_owned());
        let c = encode_cursor(CursorKind::Search, 42, &id);
        assert_eq!(decode_cursor(CursorKind::Search, &c).ok(), Some(After { at: 42, id: id.clone() }));
        assert!(decode_cursor(CursorKind::Inbox, &c).is_err());
        for bad in ["", "zz", "00", &hex::encode("s:x:conv"), &hex::encode("s:1:bad id"), &"ab".repeat(600)] {
            assert!(decode_cursor(CursorKind::Search, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(page_limit(None, 20).ok(), Some(20));
        assert_eq!(page_limit(Some(100), 20).ok(), Some(100));
        assert!(page_limit(Some(0), 20).is_err());
        assert!(page_limit(Some(101), 20).is_err());
    }
}
