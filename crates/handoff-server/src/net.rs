//! Who is on the other end of a connection: the client IP, with `X-Forwarded-For` believed only
//! from the reverse proxies the operator names (`--trusted-proxy`).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The reverse proxies whose `X-Forwarded-For` is believed. Empty (the default): the peer
/// address is the client, whatever the headers say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpAddr>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|p| canonical(*p) == ip)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client's IP: the peer's, unless the peer is a trusted proxy; then the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries left of it are written
/// by the client and prove nothing). A malformed header falls back to the peer.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer.ip());
    if !trusted.trusts(peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else { return peer };
        for hop in value.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else { return peer };
            let ip = canonical(ip);
            client = ip;
            if !trusted.trusts(ip) {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap_or_else(|_| unreachable!()));
        }
        h
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let h = headers(&["1.2.3.4"]);
        assert_eq!(client_ip(&h, addr("9.9.9.9:1"), &TrustedProxies::default()), ip("9.9.9.9"));
    }

    #[test]
    fn trusted_proxy_gives_the_rightmost_untrusted_hop() {
        let trusted = TrustedProxies(vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        let h = headers(&["6.6.6.6, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(client_ip(&h, addr("10.0.0.1:1"), &trusted), ip("1.2.3.4"));
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:1".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(client_ip(&headers(&["5.5.5.5"]), mapped, &trusted), ip("5.5.5.5"));
    }

    #[test]
    fn garbage_or_missing_header_falls_back_to_the_peer() {
        let trusted = TrustedProxies(vec![ip("10.0.0.1")]);
        assert_eq!(client_ip(&headers(&["nonsense"]), addr("10.0.0.1:1"), &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(&HeaderMap::new(), addr("10.0.0.1:1"), &trusted), ip("10.0.0.1"));
    }
}
