//! URLs of the REST API and the realtime socket, built in one place.
//!
//! Ids are percent-encoded, so an id from a foreign backend (a Supabase UUID, an id with a
//! slash) can never change the path. No `format!`: these run on every request in the browser.

use handoff_protocol::ids::{ConversationId, Seq};
use handoff_protocol::phoenix::Vsn;

/// The path of the realtime socket, as Supabase Realtime serves it.
pub const REALTIME_PATH: &str = "/realtime/v1/websocket";

/// Appends `s` percent-encoded (everything but RFC 3986 unreserved characters).
pub fn push_encoded(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        out.push(char::from(*d));
    }
}

/// `base` without trailing slashes.
pub fn trim_base(base: &str) -> &str {
    base.trim_end_matches('/')
}

/// `{base}{path}`; `path` starts with `/`.
pub fn api(base: &str, path: &str) -> String {
    let base = trim_base(base);
    let mut url = String::with_capacity(base.len() + path.len());
    url.push_str(base);
    url.push_str(path);
    url
}

/// `{base}/api/{collection}/{id}{suffix}`, the id percent-encoded; `suffix` is empty or starts
/// with `/`.
pub fn resource(base: &str, collection: &str, id: &str, suffix: &str) -> String {
    let mut url = api(base, "/api/");
    url.push_str(collection);
    url.push('/');
    push_encoded(&mut url, id);
    url.push_str(suffix);
    url
}

/// `{base}/api/conversations/{id}{suffix}`.
pub fn conversation(base: &str, id: &ConversationId, suffix: &str) -> String {
    resource(base, "conversations", id.as_str(), suffix)
}

/// `GET {base}/api/conversations/{id}/events?after=<seq>[&wait=<secs>]`: history, catch-up, and
/// (with `wait`) the long-poll.
pub fn events(base: &str, id: &ConversationId, after: Seq, wait_secs: Option<u64>) -> String {
    let mut url = conversation(base, id, "/events?after=");
    push_u64(&mut url, after.0);
    if let Some(wait) = wait_secs {
        url.push_str("&wait=");
        push_u64(&mut url, wait);
    }
    url
}

/// The collection of a project's canned responses: `{base}/api/canned_responses/{id}`.
pub const CANNED_RESPONSES: &str = "canned_responses";

/// `GET {base}/api/canned_responses[?q=<text>]`: a project's canned responses, those found by
/// `q` when it is not empty.
pub fn canned_responses(base: &str, q: Option<&str>) -> String {
    let mut url = api(base, "/api/canned_responses");
    if let Some(q) = q.filter(|q| !q.is_empty()) {
        url.push_str("?q=");
        push_encoded(&mut url, q);
    }
    url
}

/// `url` with a query string of the `params` that have a value (each percent-encoded).
pub fn with_query(mut url: String, params: &[(&str, Option<&str>)]) -> String {
    let mut first = !url.contains('?');
    for (key, value) in params {
        if let Some(v) = value {
            url.push(if first { '?' } else { '&' });
            first = false;
            url.push_str(key);
            url.push('=');
            push_encoded(&mut url, v);
        }
    }
    url
}

/// The realtime socket URL for an HTTP(S) base: `ws(s)://host/realtime/v1/websocket?apikey=..&vsn=..`.
///
/// `base` may also be a `ws://`/`wss://` URL, with or without the socket path (for a realtime
/// endpoint on another host); `apikey` and `vsn` are added unless it has them already.
pub fn realtime(base: &str, apikey: &str, vsn: Vsn) -> String {
    let base = trim_base(base);
    let mut url = String::with_capacity(base.len() + REALTIME_PATH.len() + apikey.len() + 24);
    let (rest, had_query) = match base.split_once('?') {
        Some((path, _)) => (path, true),
        None => (base, false),
    };
    if let Some(host) = rest.strip_prefix("https://") {
        url.push_str("wss://");
        url.push_str(host);
    } else if let Some(host) = rest.strip_prefix("http://") {
        url.push_str("ws://");
        url.push_str(host);
    } else {
        url.push_str(rest);
    }
    if !url.ends_with(REALTIME_PATH) {
        url.push_str(REALTIME_PATH);
    }
    let query = if had_query { base.split_once('?').map_or("", |(_, q)| q) } else { "" };
    url.push('?');
    url.push_str(query);
    let has = |key: &str| query.split('&').any(|kv| kv.split('=').next() == Some(key));
    if !has("apikey") {
        if !url.ends_with('?') {
            url.push('&');
        }
        url.push_str("apikey=");
        push_encoded(&mut url, apikey);
    }
    if !has("vsn") {
        if !url.ends_with('?') {
            url.push('&');
        }
        url.push_str("vsn=");
        url.push_str(vsn.as_str());
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_urls() {
        assert_eq!(api("http://h:1/", "/api/inbox"), "http://h:1/api/inbox");
        let c = ConversationId::new("conv_1");
        assert_eq!(conversation("http://h", &c, "/messages"), "http://h/api/conversations/conv_1/messages");
        assert_eq!(events("http://h", &c, Seq(0), None), "http://h/api/conversations/conv_1/events?after=0");
        assert_eq!(
            events("http://h//", &c, Seq(1234), Some(25)),
            "http://h/api/conversations/conv_1/events?after=1234&wait=25"
        );
        assert_eq!(
            resource("http://h", "offline-messages", "off 1", "/handled"),
            "http://h/api/offline-messages/off%201/handled"
        );
        assert_eq!(canned_responses("http://h/", None), "http://h/api/canned_responses");
        assert_eq!(canned_responses("http://h", Some("")), "http://h/api/canned_responses");
        assert_eq!(
            canned_responses("http://h", Some("100% sûr&x=1")),
            "http://h/api/canned_responses?q=100%25%20s%C3%BBr%26x%3D1"
        );
        assert_eq!(resource("http://h", CANNED_RESPONSES, "cr_1", ""), "http://h/api/canned_responses/cr_1");
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        let c = ConversationId::new("../agents?x=1#");
        assert_eq!(conversation("http://h", &c, ""), "http://h/api/conversations/..%2Fagents%3Fx%3D1%23");
        let mut s = String::new();
        push_encoded(&mut s, "é~");
        assert_eq!(s, "%C3%A9~");
    }

    #[test]
    fn realtime_urls() {
        assert_eq!(
            realtime("http://127.0.0.1:8080", "pk_1", Vsn::V2),
            "ws://127.0.0.1:8080/realtime/v1/websocket?apikey=pk_1&vsn=2.0.0"
        );
        assert_eq!(
            realtime("https://abc.supabase.co/", "ey.J+/", Vsn::V1),
            "wss://abc.supabase.co/realtime/v1/websocket?apikey=ey.J%2B%2F&vsn=1.0.0"
        );
        assert_eq!(
            realtime("ws://rt.example/realtime/v1/websocket?vsn=1.0.0", "k", Vsn::V2),
            "ws://rt.example/realtime/v1/websocket?vsn=1.0.0&apikey=k"
        );
        assert_eq!(
            realtime("wss://rt.example/realtime/v1/websocket?apikey=a&vsn=2.0.0", "k", Vsn::V2),
            "wss://rt.example/realtime/v1/websocket?apikey=a&vsn=2.0.0"
        );
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
