//! Test harness: a scriptable token endpoint, an echo upstream, config builders
//! and an in-process sidecar, all on real loopback sockets bound to port 0.

#![allow(dead_code)]

pub mod config;
pub mod echo;
pub mod http;
pub mod jwt;
pub mod process;
pub mod raw;
pub mod sidecar;
pub mod tls;
pub mod token_server;

use std::time::Duration;

/// Poll `check` until it holds, for at most `limit`.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the first Prometheus text line starting with `line_start` (0 if none).
pub fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
