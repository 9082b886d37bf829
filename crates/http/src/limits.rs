//! Rate limits: fixed one-minute windows of counters by key, with a bound on the keys
//! tracked, answered 429 with `Retry-After` (the seconds left in the window).
//!
//! - failed authentications per client address (`VOXANNE_AUTH_FAILURES_PER_MINUTE`): past the
//!   limit the address is refused before its token is even looked at;
//! - webhook requests per called number (`VOXANNE_WEBHOOKS_PER_MINUTE`), counted for every
//!   number alike, known to a clinic or not, so the limit reveals nothing about numbers.
//!
//! (Security events are capped per clinic in the database: migrations/0012.)

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked per window at most; past it new keys are not limited (and it is logged), so
/// that a flood of distinct keys costs bounded memory.
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct WindowCounter<K> {
    limit: u32,
    state: Mutex<Window<K>>,
}

#[derive(Debug)]
struct Window<K> {
    started: Instant,
    counts: HashMap<K, u32>,
}

impl<K: Hash + Eq + Clone> WindowCounter<K> {
    pub fn new(limit_per_minute: u32) -> Self {
        Self {
            limit: limit_per_minute.max(1),
            state: Mutex::new(Window {
                started: Instant::now(),
                counts: HashMap::new(),
            }),
        }
    }

    /// The seconds until `key` may try again, if it is at its limit now.
    pub fn over(&self, key: &K) -> Option<u64> {
        let mut window = self.state.lock().ok()?;
        window.roll();
        let count = window.counts.get(key).copied().unwrap_or(0);
        (count >= self.limit).then(|| window.retry_after())
    }

    /// Counts one for `key`; the seconds until it may try again if that took it over.
    pub fn hit(&self, key: &K) -> Option<u64> {
        let mut window = self.state.lock().ok()?;
        window.roll();
        if !window.counts.contains_key(key) && window.counts.len() >= MAX_KEYS {
            tracing::warn!("a rate limit tracks too many keys this minute; new ones pass");
            return None;
        }
        let count = window.counts.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        let over = *count > self.limit;
        over.then(|| window.retry_after())
    }
}

impl<K> Window<K> {
    fn roll(&mut self) {
        if self.started.elapsed() >= WINDOW {
            self.started = Instant::now();
            self.counts.clear();
        }
    }

    fn retry_after(&self) -> u64 {
        WINDOW
            .saturating_sub(self.started.elapsed())
            .as_secs()
            .max(1)
    }
}

/// The server's rate limits.
#[derive(Debug)]
pub struct Limits {
    pub auth_failures: WindowCounter<IpAddr>,
    pub webhooks: WindowCounter<String>,
    /// A header that carries the client's address, set by a reverse proxy in front (its last
    /// value is the one the proxy appended). Unset: the connection's peer address.
    pub client_ip_header: Option<axum::http::HeaderName>,
}

impl Limits {
    pub fn new(auth_failures_per_minute: u32, webhooks_per_minute: u32) -> Self {
        Self {
            auth_failures: WindowCounter::new(auth_failures_per_minute),
            webhooks: WindowCounter::new(webhooks_per_minute),
            client_ip_header: None,
        }
    }

    /// The client's address: the proxy's header when one is configured, else the peer.
    pub fn client_ip(&self, parts: &axum::http::request::Parts) -> Option<IpAddr> {
        if let Some(header) = &self.client_ip_header {
            return parts
                .headers
                .get_all(header)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok());
        }
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(30, 1200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_limited_alone_and_freed_by_the_next_window() {
        tokio::time::pause();
        let c = WindowCounter::new(2);
        assert_eq!((c.hit(&"a"), c.hit(&"a")), (None, None));
        assert!(c.over(&"a").is_some());
        assert!(c.hit(&"a").is_some_and(|s| s <= 60));
        assert_eq!((c.over(&"b"), c.hit(&"b")), (None, None));
        tokio::time::advance(WINDOW).await;
        assert_eq!(c.over(&"a"), None);
    }
}
