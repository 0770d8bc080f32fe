//! m2m-sidecar: machine-to-machine authorization beside each service.
//!
//! The sidecar holds OAuth 2.0 client credentials, fetches and refreshes access
//! tokens (client credentials grant, RFC 6749 §4.4) and injects them into the
//! service's outbound calls, so the service never touches a secret.
//!
//! Module map:
//! - [`config`]: loading (figment), validation (every error with its key path), `check` summary
//! - [`token`]: the credential manager: grant client, `ArcSwap` cache, refresh task, secret files
//! - [`json`]: strict JSON (duplicate keys refused at any depth): request bodies, JOSE headers and claims
//! - [`path`]: request path normalisation (RFC 3986), shared by inbound and outbound
//! - [`proxy`]: the shared proxy core: upstream client, hop-by-hop rules, accept loop
//! - [`outbound`]: reverse listeners that inject a credential's token
//! - [`forward`]: the `HTTP_PROXY` listener that injects tokens for mapped hosts only
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`
//! - [`issuer`]: the built-in authorization server (token endpoint, JWKS, discovery)
//! - [`error`]: the one place request errors become responses
//! - [`metrics`]: metric families, registered into a registry passed in
//!
//! [`App::spawn`] takes listeners the caller bound, so tests bind `127.0.0.1:0`.

#![forbid(unsafe_code)]

pub mod admin;
mod app;
pub mod command;
pub mod config;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod inbound;
pub mod issuer;
pub mod json;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod outbound;
pub mod path;
pub mod proxy;
pub mod quickstart;
pub mod readiness;
pub mod supervisor;
pub mod token;

pub use app::{App, Handle, Listeners, StartError};

use tokio::sync::watch;

/// Resolves once `shutdown` turns true. If the sender is dropped without saying
/// so, it never resolves: background work must not stop by accident.
pub(crate) async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
