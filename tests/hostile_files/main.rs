//! Hostile files, peers and metadata: a config file rewritten in place under
//! steady traffic is never applied half written (and an emptied one never by
//! the watcher); token cache files swapped in from another credential (copied
//! or symlinked), planted in a world-writable directory or pointing at a huge
//! file are not used; an `https://` issuer whose metadata names `http://`
//! endpoints gets nothing sent to them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod cache_files;
mod cache_ways;
mod config_watch;
mod logs;
mod metadata;

use support::issuer::{App, Issuer, ORDERS, OrdersApi};

const SECRET: &str = "secret-0123456789abcdef0123456789abcdef";

/// The built-in issuer alone (in process): an Orders API with `orders:read`
/// and `admin`, an app `reader` granted `orders:read` only, and `more`.
async fn idp(more: Option<App>) -> Issuer {
    let api = OrdersApi::new()
        .scopes(&["orders:read", "orders:write", "admin"])
        .app(App::new("reader", SECRET).orders(&["orders:read"]));
    Issuer::start(&more.into_iter().fold(api, OrdersApi::app)).await
}
