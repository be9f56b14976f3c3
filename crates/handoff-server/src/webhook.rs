//! Bot webhooks: customer messages of conversations in `bot` state are sent with POST to the project's
//! webhook URL, signed with HMAC-SHA256 of the body (`X-Handoff-Signature: sha256=<hex>`).
//!
//! Delivery is after the commit and never fails the customer's request: it runs in the
//! background, with a timeout per attempt and a few retries with growing pauses for network
//! errors and 5xx answers (a 4xx answer is the bot's final word and is not retried). Every
//! outcome is logged.
//!
//! A webhook URL is chosen by whoever holds a project's secret key, so the server must not become
//! a way into its own network (SSRF): unless [`Webhooks::allow_private`] (the
//! `--allow-private-webhooks` opt-in for local development), a URL whose host is a loopback,
//! private, link-local, multicast, unspecified, documentation or otherwise reserved address, in
//! any form the URL parser accepts (`2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]`),
//! or `localhost`, is refused when it is set and again before each delivery; a host name is
//! checked after DNS resolution, on the addresses the connection then uses (so a name that
//! resolves to a private address, or starts to, is refused at connect time); redirects are not
//! followed; no proxy from the environment is used (it would resolve the name instead of us).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use handoff_protocol::api::{WebhookDelivery, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_SIGNATURE_PREFIX};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::crypto;

/// Pauses before the second, third, ... attempt.
const RETRY_PAUSES: [Duration; 3] =
    [Duration::from_millis(500), Duration::from_secs(2), Duration::from_secs(8)];

/// Longest wait for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the refusal messages suggest for local development.
const OPT_IN_HINT: &str = "(for local development only: --allow-private-webhooks)";

/// Whether a webhook must never be sent to `ip`: loopback, private (RFC 1918, CGNAT, unique local),
/// link-local, multicast, unspecified, broadcast, documentation, benchmarking and other reserved
/// ranges, and IPv6 forms that embed such an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0 included
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local (cloud metadata services)
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 168) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224 // multicast, reserved, broadcast
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if seg[..5] == [0; 5] && (seg[5] == 0 || seg[5] == 0xffff) {
        // ::/96 (unspecified, loopback, IPv4-compatible) and ::ffff:0:0/96 (IPv4-mapped): the
        // compatible form is deprecated and has no public use; a mapped address is its IPv4 one.
        return seg[5] == 0 || is_forbidden_v4(embedded(seg[6], seg[7]));
    }
    match seg[0] {
        0x0064 if seg[1] == 0xff9b && seg[2..6] == [0; 4] => is_forbidden_v4(embedded(seg[6], seg[7])), // NAT64
        0x0064 if seg[1] == 0xff9b => true, // local-use NAT64 (64:ff9b:1::/48) and the rest
        0x0100 if seg[1..4] == [0; 3] => true, // discard-only
        0x2001 if seg[1] < 0x0200 => true,  // Teredo, benchmarking, ORCHID and other IETF use
        0x2001 if seg[1] == 0x0db8 => true, // documentation
        0x2002 => is_forbidden_v4(embedded(seg[1], seg[2])), // 6to4
        0x3fff if seg[1] < 0x1000 => true,  // documentation (3fff::/20)
        x if x & 0xfe00 == 0xfc00 => true,  // unique local fc00::/7
        x if x & 0xffc0 == 0xfe80 => true,  // link-local fe80::/10
        x if x & 0xffc0 == 0xfec0 => true,  // site-local (deprecated) fec0::/10
        x if x & 0xff00 == 0xff00 => true,  // multicast
        _ => false,
    }
}

fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Checks a webhook URL: an absolute `http://` or `https://` URL with a host and without user
/// info; unless `allow_private`, its host must not be `localhost` (or `*.localhost`) nor a literal
/// address that [`is_forbidden_ip`] refuses (the parser turns `2130706433`, `0x7f000001`,
/// `0177.0.0.1` and `127.1` into `127.0.0.1`). Host names are checked again after DNS resolution,
/// at connect time.
///
/// # Errors
/// A message for the caller saying what is wrong.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, String> {
    if url.len() > handoff_protocol::api::MAX_URL_CHARS {
        return Err(format!("webhook url is longer than {} bytes", handoff_protocol::api::MAX_URL_CHARS));
    }
    let parsed = Url::parse(url).map_err(|e| format!("webhook url is not an absolute URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("webhook url must be an http:// or https:// URL".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("webhook url must not contain user info (user:password@)".to_owned());
    }
    let refused = |what: &str| {
        Err(format!("webhook url must not point to {what}: only public addresses are allowed {OPT_IN_HINT}"))
    };
    let host = match parsed.host_str() {
        None | Some("") => return Err("webhook url must have a host".to_owned()),
        Some(h) => h,
    };
    if allow_private {
        return Ok(parsed);
    }
    // The parser has normalized numeric forms: an address is dotted IPv4 or bracketed IPv6 here.
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) if is_forbidden_ip(ip) => {
            refused(&format!("{host}, a loopback, private, link-local or reserved address"))
        }
        Err(_) if is_local_name(host) => refused(&format!("{host} (this machine)")),
        Ok(_) | Err(_) => Ok(parsed),
    }
}

/// A connection refused because the webhook's host resolved to no allowed address.
#[derive(Debug, thiserror::Error)]
#[error("webhook host {host} resolves to no public address ({refused} refused) {OPT_IN_HINT}")]
pub struct ForbiddenHost {
    /// The host name.
    pub host: String,
    /// The addresses dropped, e.g. `127.0.0.1:0`.
    pub refused: String,
}

/// The addresses a webhook connection may use among `addrs` (those [`is_forbidden_ip`] accepts,
/// or all when `allow_private`).
///
/// # Errors
/// [`ForbiddenHost`] when none is left.
pub fn allowed_addrs(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ForbiddenHost> {
    let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.into_iter().partition(|a| allow_private || !is_forbidden_ip(a.ip()));
    if ok.is_empty() {
        let refused = refused.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(ForbiddenHost { host: host.to_owned(), refused });
    }
    Ok(ok)
}

/// The operating system's resolver (`getaddrinfo` on the blocking pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Addrs = Box::new(tokio::net::lookup_host((host, 0)).await?);
            Ok(addrs)
        })
    }
}

/// Resolves with `inner`, then keeps only the addresses a webhook may reach.
struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        let resolving = self.inner.resolve(name);
        Box::pin(async move {
            let ok = allowed_addrs(&host, resolving.await?, allow_private)?;
            let addrs: Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `e` or one of its sources is a [`ForbiddenHost`].
fn is_forbidden_host(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<ForbiddenHost>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The value of [`WEBHOOK_SIGNATURE_HEADER`] for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("{WEBHOOK_SIGNATURE_PREFIX}{}", crypto::hmac_hex(secret, body))
}

/// Sends webhook deliveries.
#[derive(Clone, Debug)]
pub struct Webhooks {
    /// `None` when the client could not be built: then nothing is sent (a default client would
    /// follow redirects and skip the address checks).
    client: Option<reqwest::Client>,
    allow_private: bool,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self::new()
    }
}

impl Webhooks {
    /// A sender with its own connection pool that only reaches public addresses.
    pub fn new() -> Self {
        Self::with_policy(false)
    }

    /// A sender; `allow_private` lets webhooks reach loopback and private addresses (local
    /// development only).
    pub fn with_policy(allow_private: bool) -> Self {
        Self::with_resolver(allow_private, Arc::new(SystemResolver))
    }

    /// A sender whose host names are resolved by `resolver` (then checked as always): for tests.
    pub fn with_resolver(allow_private: bool, resolver: Arc<dyn Resolve>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("handoff-server/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { inner: resolver, allow_private }))
            .build()
            .inspect_err(
                |e| tracing::error!(error = %e, "cannot build the webhook client; webhooks are not sent"),
            )
            .ok();
        Webhooks { client, allow_private }
    }

    /// Whether webhooks may reach loopback and private addresses.
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// [`check_url`] with this sender's policy.
    ///
    /// # Errors
    /// A message for the caller saying what is wrong.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        check_url(url, self.allow_private)
    }

    /// Sends `delivery` to `url` in the background.
    pub fn send(&self, url: &str, secret: String, delivery: &WebhookDelivery) {
        // Checked again: the URL may have been stored under another policy, and a literal
        // address does not go through the resolver.
        let url = match self.check_url(url) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(delivery = %delivery.id, error = %e, "webhook not sent");
                return;
            }
        };
        let body = match serde_json::to_vec(delivery) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a webhook delivery");
                return;
            }
        };
        let Some(client) = self.client.clone() else {
            tracing::error!(delivery = %delivery.id, "webhook not sent: no webhook client");
            return;
        };
        let id = delivery.id.clone();
        tokio::spawn(async move {
            let signature = signature(&secret, &body);
            for attempt in 0..=RETRY_PAUSES.len() {
                if attempt > 0 {
                    tokio::time::sleep(RETRY_PAUSES[attempt - 1]).await;
                }
                let result = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(WEBHOOK_SIGNATURE_HEADER, &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status().is_success() => {
                        tracing::debug!(delivery = %id, attempt, "webhook delivered");
                        return;
                    }
                    Ok(r) if r.status().is_client_error() => {
                        tracing::warn!(delivery = %id, status = %r.status(), "webhook refused; not retried");
                        return;
                    }
                    Ok(r) if r.status().is_redirection() => {
                        tracing::warn!(delivery = %id, status = %r.status(), "webhook answered with a redirect, which is not followed; not retried");
                        return;
                    }
                    Err(e) if is_forbidden_host(&e) => {
                        tracing::warn!(delivery = %id, error = %e, "webhook not sent: its host resolves to no public address");
                        return;
                    }
                    Ok(r) => tracing::warn!(delivery = %id, attempt, status = %r.status(), "webhook failed"),
                    Err(e) => tracing::warn!(delivery = %id, attempt, error = %e, "webhook failed"),
                }
            }
            tracing::error!(delivery = %id, "webhook given up after retries");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "https://bot.example.com/handoff?x=1",
            "http://93.184.216.34:8080/hook",
            "http://[2606:4700::1]/",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "bot.example.com/hook",
            "ftp://example.com/",
            "javascript:alert(1)",
            "http://",
            "file:///etc/passwd",
            "http://user:pw@bot.example.com/",
            "http://user@bot.example.com/",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
            assert!(check_url(bad, true).is_err(), "{bad} (opt-in)");
        }
    }

    #[test]
    fn private_literal_hosts_are_refused_in_every_form() {
        for bad in [
            "http://127.0.0.1:9000/hook",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://127.000.000.001/",
            "http://0/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://192.0.2.1/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://[::1]/",
            "http://[::]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://localhost:8090/webhook",
            "http://LOCALHOST./",
            "http://bot.localhost/",
        ] {
            let e = check_url(bad, false).expect_err(bad);
            assert!(e.contains("--allow-private-webhooks"), "{bad}: {e}");
            assert!(check_url(bad, true).is_ok(), "{bad} with the opt-in");
        }
    }

    #[test]
    fn overlong_urls_are_refused() {
        let max = handoff_protocol::api::MAX_URL_CHARS;
        let at_max = format!("https://bot.example.com/{}", "a".repeat(max - 24));
        assert_eq!(at_max.len(), max);
        assert!(check_url(&at_max, false).is_ok());
        let over = format!("{at_max}a");
        assert!(check_url(&over, false).unwrap_err().contains("longer than 2048"));
    }

    #[test]
    fn the_parser_normalizes_numeric_hosts() {
        for form in ["http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/"] {
            assert_eq!(Url::parse(form).unwrap().host_str(), Some("127.0.0.1"), "{form}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in
            ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
        {
            assert!(!is_forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    /// A resolver that answers `addrs` for every name.
    struct Stub(Vec<SocketAddr>);

    impl Resolve for Stub {
        fn resolve(&self, _name: Name) -> Resolving {
            let addrs: Addrs = Box::new(self.0.clone().into_iter());
            Box::pin(async move { Ok(addrs) })
        }
    }

    async fn guarded(addrs: &[&str], allow_private: bool) -> Result<Vec<SocketAddr>, String> {
        let stub = Stub(addrs.iter().map(|a| a.parse().unwrap()).collect());
        let resolver = GuardedResolver { inner: Arc::new(stub), allow_private };
        match resolver.resolve("bot.example.com".parse().unwrap()).await {
            Ok(a) => Ok(a.collect()),
            Err(e) => {
                assert!(is_forbidden_host(e.as_ref()), "{e}");
                Err(e.to_string())
            }
        }
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked() {
        let e = guarded(&["127.0.0.1:0"], false).await.unwrap_err();
        assert!(e.contains("bot.example.com") && e.contains("127.0.0.1"), "{e}");
        assert!(guarded(&["[::1]:0", "10.0.0.1:0", "[::ffff:169.254.169.254]:0"], false).await.is_err());
        // Only the public addresses of a mixed answer are used.
        assert_eq!(
            guarded(&["127.0.0.1:0", "8.8.8.8:0"], false).await.unwrap(),
            ["8.8.8.8:0".parse().unwrap()]
        );
        assert_eq!(guarded(&["127.0.0.1:0"], true).await.unwrap(), ["127.0.0.1:0".parse().unwrap()]);
    }

    #[test]
    fn signature_is_prefixed_hmac_of_the_body() {
        let sig = signature("whsec_test", b"{\"a\":1}");
        let hex = sig.strip_prefix("sha256=").unwrap();
        assert!(crypto::hmac_verify("whsec_test", b"{\"a\":1}", hex));
        assert!(!crypto::hmac_verify("whsec_other", b"{\"a\":1}", hex));
    }
}
