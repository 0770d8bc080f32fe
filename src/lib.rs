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
//!   [`path`] request path normalisation (RFC 3986), [`private_file`] atomic 0600
//!   files, [`retry`] backoff with jitter, [`otel`] OpenTelemetry (feature `otel`)
//! - layer 1: [`config`] loading, validation (every error with its key path),
//!   `check` summary; [`jose`] JWS parsing, keys, verification, signing
//! - layer 2: [`secret`] secrets from literal/env/file and the rotation watcher;
//!   [`oauth`] grant vocabulary, `Authorization` schemes, server metadata client
//! - layer 3: [`proxy`] the shared proxy core: upstream client, hop-by-hop
//!   rules, accept loop, connection deadlines
//! - layer 4: [`error`] where request errors become responses; [`metrics`]
//!   metric families, registered into a registry passed in
//! - layer 5: [`token`] the credential manager (grant client, `ArcSwap` cache,
//!   refresh task, disk cache); [`inbound`] JWT verification and rules in front
//!   of a service; [`issuer`] the built-in authorization server
//! - layer 6: [`outbound`] reverse listeners that inject a credential's token;
//!   [`forward`] the `HTTP_PROXY` listener; [`admin`] `/healthz`, `/readyz`,
//!   `/metrics`
//! - layer 7: [`supervisor`] the running parts a reload prepares and swaps;
//!   [`quickstart`] the one-process demo
//!
//! [`App::spawn`] takes listeners the caller bound, so tests bind `127.0.0.1:0`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cause;
pub mod clock;
pub mod config;
pub mod forward;
pub mod inbound;
pub mod issuer;
pub mod jose;
pub mod json;
pub mod metrics;
pub mod oauth;
#[cfg(feature = "otel")]
pub mod otel;
pub mod outbound;
pub mod path;
pub mod private_file;
pub mod proxy;
pub mod quickstart;
pub mod respond;
pub mod retry;
pub mod secret;
pub mod shutdown;
pub mod supervisor;
pub mod token;

#[cfg(test)]
mod layer_check;

use config::Config;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use token::Credential;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

// TEMPORARY during the issue-11 merge: callers move to `shutdown::until_shutdown`.
pub(crate) use shutdown::until_shutdown;

/// The sockets a sidecar serves on, bound by the caller.
pub struct Listeners {
    pub admin: TcpListener,
    /// One per `[[outbound]]`, in config order.
    pub outbound: Vec<TcpListener>,
    /// The `[issuer]` listener, when there is one.
    pub issuer: Option<TcpListener>,
    /// The `[inbound]` listener, when there is one.
    pub inbound: Option<TcpListener>,
    /// The `[forward_proxy]` listener, when there is one.
    pub forward_proxy: Option<TcpListener>,
}

impl Listeners {
    /// Bind every address the config names.
    pub async fn bind(config: &Config) -> Result<Self, String> {
        let bind = |addr: SocketAddr, what: String| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("{what}: cannot listen on {addr}: {e}"))
        };
        let admin = bind(config.admin.listen, "admin".into()).await?;
        let mut outbound = Vec::with_capacity(config.outbound.len());
        for o in &config.outbound {
            outbound.push(bind(o.listen, format!("outbound {}", o.name)).await?);
        }
        let issuer = match &config.issuer {
            Some(i) => Some(bind(i.listen, "issuer".into()).await?),
            None => None,
        };
        let inbound = match &config.inbound {
            Some(i) => Some(bind(i.listen, "inbound".into()).await?),
            None => None,
        };
        let forward_proxy = match &config.forward_proxy {
            Some(f) => Some(bind(f.listen, "forward_proxy".into()).await?),
            None => None,
        };
        Ok(Listeners {
            admin,
            outbound,
            issuer,
            inbound,
            forward_proxy,
        })
    }
}

/// A running sidecar.
pub struct Handle {
    pub admin_addr: SocketAddr,
    /// `(route name, address)` for each outbound listener at start.
    pub outbound_addrs: Vec<(String, SocketAddr)>,
    /// The credentials at start.
    pub credentials: Vec<Arc<Credential>>,
    /// The issuer's address, when one runs in this process.
    pub issuer_addr: Option<SocketAddr>,
    /// The inbound listener's address at start, when there is one.
    pub inbound_addr: Option<SocketAddr>,
    /// The forward-proxy listener's address at start, when there is one.
    pub forward_proxy_addr: Option<SocketAddr>,
    draining: Arc<AtomicBool>,
    supervisor: Arc<tokio::sync::Mutex<supervisor::Supervisor>>,
}

impl Handle {
    /// The address of the outbound listener called `name` (at start).
    pub fn outbound_addr(&self, name: &str) -> Option<SocketAddr> {
        self.outbound_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Where the listeners are now (reloads may add, move or remove them).
    pub async fn addresses(&self) -> supervisor::Addresses {
        self.supervisor.lock().await.addresses()
    }

    /// Apply `config` to the running sidecar: bind new listeners, start new
    /// credentials, swap handlers, stop what is gone. On error nothing changed.
    /// Returns what changed.
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, String> {
        let mut sup = self.supervisor.lock().await;
        let result = match sup.bind_new(&config).await {
            Ok(bound) => sup.apply(config, bound).await,
            Err(e) => Err(e),
        };
        sup.count_reload(result.is_ok());
        result
    }

    /// The limits in force (drain timing included).
    pub async fn limits(&self) -> config::Limits {
        self.supervisor.lock().await.limits()
    }

    /// Count a reload that failed before it reached [`Handle::reload`]
    /// (the file did not parse or validate).
    pub async fn reload_failed(&self) {
        self.supervisor.lock().await.count_reload(false);
    }

    /// Wait until every listener and background task has stopped (after shutdown).
    pub async fn wait(self) {
        loop {
            let mut tasks = std::mem::take(&mut self.supervisor.lock().await.tasks);
            if tasks.is_empty() {
                return;
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Mark the sidecar as draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// The sidecar application.
pub struct App;

impl App {
    /// Only the issuer of `config` (the `m2m-sidecar issuer` command), on `listener`.
    pub fn spawn_issuer(
        config: &Config,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, String> {
        let spec = config
            .issuer
            .as_ref()
            .ok_or("the config has no [issuer] table")?;
        let issuer = issuer::Issuer::new(spec, &config.limits)?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, url = %spec.url, "issuer ready");
        let mut opts = proxy::server::ServeOptions::plain("issuer", config.drain_timeout);
        opts.peer_addr = true;
        opts.limits.store(Arc::new(config.limits.clone()));
        Ok(tokio::spawn(proxy::server::serve(
            listener,
            Arc::new(issuer),
            shutdown,
            opts,
        )))
    }

    /// Start the credential tasks, the listeners and the admin listener.
    /// Everything stops when `shutdown` turns true; [`Handle::wait`] awaits that.
    pub async fn spawn(
        config: Config,
        listeners: Listeners,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Handle, String> {
        let mut registry = Registry::default();
        let mut sup = supervisor::Supervisor::new(
            shutdown,
            JoinSet::new(),
            &mut registry,
            config.limits.clone(),
        );
        // The issuer starts first: in-process credentials may use it as their IdP.
        let issuer_addr = match (&config.issuer, listeners.issuer) {
            (Some(spec), Some(listener)) => {
                let issuer = issuer::Issuer::new(spec, &config.limits)?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                tracing::info!(%addr, url = %spec.url, "issuer ready");
                sup.serve_fixed(listener, Arc::new(issuer), "issuer");
                Some(addr)
            }
            _ => None,
        };
        let bound = supervisor::Bound {
            outbound: config
                .outbound
                .iter()
                .map(|o| o.name.clone())
                .zip(listeners.outbound)
                .collect(),
            forward_proxy: listeners.forward_proxy,
            inbound: listeners.inbound,
        };
        sup.apply(config, bound).await?;
        let addrs = sup.addresses();
        let draining = Arc::new(AtomicBool::new(false));
        let admin_addr = listeners.admin.local_addr().map_err(|e| e.to_string())?;
        let admin = admin::Admin {
            ready: sup.ready.clone(),
            registry,
            token_metrics: sup.token_metrics(),
            draining: draining.clone(),
        };
        tracing::info!(addr = %admin_addr, "admin listener ready");
        sup.serve_fixed(listeners.admin, Arc::new(admin), "admin");
        let credentials = sup.ready.credentials.load_full().as_ref().clone();
        Ok(Handle {
            admin_addr,
            outbound_addrs: addrs.outbound,
            credentials,
            issuer_addr,
            inbound_addr: addrs.inbound,
            forward_proxy_addr: addrs.forward_proxy,
            draining,
            supervisor: Arc::new(tokio::sync::Mutex::new(sup)),
        })
    }
}
