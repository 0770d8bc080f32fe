//! m2m-sidecar: machine-to-machine authorization beside each service.
//!
//! The sidecar holds OAuth 2.0 client credentials, fetches and refreshes access
//! tokens (client credentials grant, RFC 6749 §4.4) and injects them into the
//! service's outbound calls, so the service never touches a secret.
//!
//! Module map, by layer: a module imports only from lower layers, so there is
//! no cycle (`layer_check` holds the code to this list and this list to the
//! modules declared below).
//! - layer 0, no imports from the crate: [`clock`] Unix time, [`cause`] the
//!   innermost error text, [`shutdown`] the stop signal, [`json`] strict JSON,
//!   [`path`] request path normalisation (RFC 3986), [`host`] host names as
//!   routes compare them, [`private_file`] atomic 0600
//!   files, [`retry`] backoff with jitter, [`otel`] OpenTelemetry (feature `otel`)
//! - layer 1: [`jose`] JWS for every caller: strict compact parsing (`compact`),
//!   keys decoded once from JWK, PEM/SPKI or an HMAC secret (`keys`, `spki`),
//!   verification with the key's algorithm (`verify`), NumericDate/`aud`/leeway
//!   (`claims`), the one signer (`sign`), algorithm names and sets (`alg`)
//! - layer 2: [`config`] loading, validation (every error with its key path),
//!   `check` summary; [`logging`] log lines and the trace exporter
//! - layer 3: [`secret`] secrets from literal/env/file and the rotation watcher;
//!   [`oauth`] grant vocabulary, `Authorization` schemes, server metadata
//!   client, the ids that cross modules (`ClientId`, `Audience`, `Scope`, `Kid`)
//! - layer 4: [`proxy`] the shared proxy core: upstream client, hop-by-hop
//!   rules, accept loop, connection deadlines; `proxy::body` (`ProxyBody`, the
//!   JSON body builder), `proxy::error` (`ProxyError`: who caused it, its cause)
//! - layer 5: [`respond`] the one place refusals become responses: a
//!   `Synthetic` written as JSON, or as `grpc-status` for gRPC clients;
//!   [`metrics`] metric families, registered into a registry passed in
//! - layer 6: [`token`] the credential manager (grant client, `ArcSwap` cache,
//!   refresh task, disk cache); [`inbound`] the access-token policy, rules and
//!   JWKS fetching in front of a service; [`issuer`] the built-in authorization
//!   server
//! - layer 7: [`outbound`] reverse listeners that inject a credential's token;
//!   [`forward`] the `HTTP_PROXY` listener; [`readiness`] what `/readyz` answers
//!   from (credentials, inbound keys, the draining latch); [`command`] the
//!   one-shot `check` and `token` commands
//! - layer 8: [`supervisor`] the running parts a reload prepares (`plan`, which
//!   may fail) and puts in force (`commit`, which cannot); [`admin`] `/healthz`,
//!   `/readyz`, `/metrics`
//! - layer 9: [`app`] `App::spawn` on listeners the caller bound, and its `Handle`
//! - layer 10: [`quickstart`] the one-process demo
//! - layer 11: [`lifecycle`] the long-running commands: signals, config watch,
//!   reload, drain (`main.rs` only parses the command line and calls these)
//!
//! [`App::spawn`] takes listeners the caller bound, so tests bind `127.0.0.1:0`.

#![forbid(unsafe_code)]

pub mod admin;
mod app;
pub mod cause;
pub mod clock;
pub mod command;
pub mod config;
pub mod forward;
pub mod host;
pub mod inbound;
pub mod issuer;
pub mod jose;
pub mod json;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod oauth;
#[cfg(feature = "otel")]
pub mod otel;
pub mod outbound;
pub mod path;
pub mod private_file;
pub mod proxy;
pub mod quickstart;
pub mod readiness;
pub mod respond;
pub mod retry;
pub mod secret;
pub mod shutdown;
pub mod supervisor;
pub mod token;

#[cfg(test)]
mod layer_check;

pub use app::{App, Handle, Listeners, StartError};
