//! Home Assistant's ingress: inside an add-on, the console and the API are
//! reached through HA's own proxy, under a path prefix the proxy sends as
//! `X-Ingress-Path` (`/api/hassio_ingress/<token>`), with the prefix already
//! taken off the path.
//!
//! HA has already authenticated the person, so a request from the proxy's
//! address (`INGRESS_PROXY`; the Supervisor's is 172.30.32.2) needs no token
//! and is not held to the Host check (it carries HA's host name). From any
//! other address the usual rules hold, and with `INGRESS_PROXY` set they hold
//! even without `API_TOKEN`: only health answers, since the network is not
//! the proxy.

use std::net::IpAddr;

use axum::http::{HeaderMap, Request};

use super::server::Peer;

/// The header that carries the prefix.
pub const X_INGRESS_PATH: &str = "x-ingress-path";

/// Whether `req` came from the ingress proxy.
pub fn from_proxy<B>(proxy: Option<IpAddr>, req: &Request<B>) -> bool {
    // No extension lookup on every request when there is no proxy.
    proxy.is_some() && is_proxy(proxy, req.extensions().get::<Peer>())
}

/// Whether `peer` is the ingress proxy (an IPv4 peer on an IPv6 socket too).
pub fn is_proxy(proxy: Option<IpAddr>, peer: Option<&Peer>) -> bool {
    match (proxy, peer) {
        (Some(ip), Some(p)) => p.0.ip().to_canonical() == ip,
        _ => false,
    }
}

/// The prefix the page is served under, when it is a plain path (it goes
/// into a cookie's `Path`, so nothing that could end or extend the attribute).
pub fn prefix(headers: &HeaderMap) -> Option<&str> {
    let p = headers.get(X_INGRESS_PATH)?.to_str().ok()?;
    let plain = p.starts_with('/')
        && p.len() <= 256
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
    plain.then(|| p.trim_end_matches('/'))
}

/// The session cookie's `Path`: the ingress prefix when there is one, so the
/// cookie is sent only to this add-on, never to the rest of HA.
pub fn cookie_path(headers: &HeaderMap) -> String {
    match prefix(headers) {
        Some(p) => format!("{p}/"),
        None => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_prefix_reaches_the_cookie() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(X_INGRESS_PATH, v.parse().unwrap());
            h
        };
        assert_eq!(
            cookie_path(&h("/api/hassio_ingress/abc-DEF_1")),
            "/api/hassio_ingress/abc-DEF_1/"
        );
        assert_eq!(cookie_path(&h("/x; Domain=evil")), "/");
        assert_eq!(cookie_path(&h("relative")), "/");
        assert_eq!(cookie_path(&HeaderMap::new()), "/");
    }

    #[test]
    fn only_the_proxy_address_is_the_proxy() {
        let mut req = Request::new(());
        let proxy: IpAddr = "172.30.32.2".parse().unwrap();
        assert!(!from_proxy(Some(proxy), &req), "no peer");
        req.extensions_mut()
            .insert(Peer("172.30.32.2:40000".parse().unwrap()));
        assert!(from_proxy(Some(proxy), &req));
        assert!(!from_proxy(None, &req));
        req.extensions_mut()
            .insert(Peer("172.30.32.9:40000".parse().unwrap()));
        assert!(!from_proxy(Some(proxy), &req));
    }
}
