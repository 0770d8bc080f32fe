//! Test harness: a scriptable token endpoint, an echo upstream, config builders
//! and an in-process sidecar, all on real loopback sockets bound to port 0; the
//! built-in issuer with the "Orders API" (`issuer`), hand-forged tokens
//! (`jwt`), and the one bounded wait every test uses (`poll::until`).
//!
//! A test binary that is a directory (`tests/NAME/main.rs` and a module per
//! class of test) includes this module with `#[path = "../support/mod.rs"]`.

#![allow(dead_code)]

pub mod config;
pub mod echo;
pub mod http;
pub mod issuer;
pub mod jwt;
pub mod poll;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod sidecar;
pub mod store;
pub mod tls;
pub mod token_server;

#[allow(unused_imports)] // not every test file waits
pub use poll::{LONG, until};

/// The value of the first Prometheus text line starting with `line_start` (0 if none).
pub fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
