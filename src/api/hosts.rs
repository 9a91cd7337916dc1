//! The `Host` names every route answers to, and the `Origin`s a page may call
//! from. Against DNS rebinding: a page on another site can point its own name
//! at this server's address, and a browser on the LAN then reads it as that
//! site, token or no token (with none set, the default, that is every route).
//! The names come from `ALLOWED_HOSTS` (or the older `MCP_ALLOWED_HOSTS`),
//! else loopback and the `BIND` address.

use axum::http::header::{HOST, ORIGIN};
use axum::http::Request;

use crate::config::Settings;

/// The names allowed; empty means any (`ALLOWED_HOSTS=*`).
pub fn allowed_hosts(s: &Settings) -> Vec<String> {
    let given = if s.allowed_hosts.is_empty() {
        &s.mcp_allowed_hosts
    } else {
        &s.allowed_hosts
    };
    if given.iter().any(|h| h.trim() == "*") {
        return Vec::new();
    }
    let given: Vec<String> = given
        .iter()
        .map(|h| {
            h.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        })
        .filter(|h| !h.is_empty())
        .collect();
    if !given.is_empty() {
        return given;
    }
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let ip = s.bind.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        hosts.push(ip.to_string());
    }
    hosts
}

/// Why a request was refused, for its 403.
pub fn refused<B>(hosts: &[String], req: &Request<B>) -> Option<String> {
    if hosts.is_empty() {
        return None;
    }
    let allowed = |name: &str| hosts.iter().any(|h| h.eq_ignore_ascii_case(name));
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host.map(name_of) {
        Some(name) if allowed(name) => {}
        Some(name) => {
            return Some(format!(
                "Host {:?} is not one this server answers to; add it to ALLOWED_HOSTS",
                name
            ))
        }
        // Browsers always send one, and rebinding needs a browser; a bare
        // HTTP/1.0 probe or an in-process call need not.
        None => {}
    }
    let origin = req.headers().get(ORIGIN)?;
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        });
    match origin_host {
        Some(h) if allowed(&h) => None,
        _ => Some(format!(
            "Origin {:?} is not one this server answers to; add its host to ALLOWED_HOSTS",
            origin.to_str().unwrap_or("(not text)")
        )),
    }
}

/// A `Host` value's name: without its port, an IPv6 address without brackets.
fn name_of(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, origin: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/api/v1/states");
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        if let Some(o) = origin {
            b = b.header(ORIGIN, o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_default_to_loopback_and_the_bind_address() {
        let mut s = Settings::embedded();
        assert_eq!(allowed_hosts(&s), ["localhost", "127.0.0.1", "::1"]);
        s.bind = "192.0.2.7:8080".parse().unwrap();
        assert!(allowed_hosts(&s).contains(&"192.0.2.7".to_string()));
        s.mcp_allowed_hosts = vec!["ha.example".into()];
        assert_eq!(allowed_hosts(&s), ["ha.example"]);
        s.allowed_hosts = vec!["Fetchers.LAN".into(), "[fd00::1]".into()];
        assert_eq!(allowed_hosts(&s), ["fetchers.lan", "fd00::1"]);
        s.allowed_hosts = vec!["*".into()];
        assert!(allowed_hosts(&s).is_empty());
    }

    #[test]
    fn host_and_origin_are_checked() {
        let hosts = allowed_hosts(&Settings::embedded());
        for ok in [
            req(Some("127.0.0.1:8080"), None),
            req(Some("localhost"), None),
            req(Some("[::1]:8080"), None),
            req(Some("LOCALHOST:1"), Some("http://localhost:3000")),
            req(None, None),
        ] {
            assert_eq!(refused(&hosts, &ok), None);
        }
        for bad in [
            req(Some("evil.example"), None),
            req(Some("evil.example:8080"), None),
            req(Some("127.0.0.1:8080"), Some("https://evil.example")),
            req(Some("127.0.0.1:8080"), Some("null")),
        ] {
            assert!(refused(&hosts, &bad).is_some());
        }
        assert_eq!(refused(&[], &req(Some("evil.example"), None)), None);
    }
}
