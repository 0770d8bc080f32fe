//! m2m-sidecar: machine-to-machine authorization beside each service.
//!
//! The sidecar holds OAuth 2.0 client credentials, fetches and refreshes access
//! tokens (client credentials grant, RFC 6749 §4.4) and injects them into the
//! service's outbound calls, so the service never touches a secret.
//!
//! Module map:
//! - [`config`]: loading (figment), validation (every error with its key path), `check` summary
//! - [`token`]: the credential manager: grant client, `ArcSwap` cache, refresh task, secret files
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
pub mod config;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod inbound;
pub mod issuer;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod quickstart;
pub mod token;

use config::Config;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use token::Credential;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Resolves once `shutdown` turns true. If the sender is dropped without saying
/// so, it never resolves: background work must not stop by accident.
pub(crate) async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

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
    /// `(route name, address)` for each outbound listener.
    pub outbound_addrs: Vec<(String, SocketAddr)>,
    pub credentials: Vec<Arc<Credential>>,
    /// The issuer's address, when one runs in this process.
    pub issuer_addr: Option<SocketAddr>,
    /// The inbound listener's address, when there is one.
    pub inbound_addr: Option<SocketAddr>,
    /// The forward-proxy listener's address, when there is one.
    pub forward_proxy_addr: Option<SocketAddr>,
    draining: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Handle {
    /// The address of the outbound listener called `name`.
    pub fn outbound_addr(&self, name: &str) -> Option<SocketAddr> {
        self.outbound_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Wait until every listener and background task has stopped (after shutdown).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
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
        let issuer = issuer::Issuer::new(spec)?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, url = %spec.url, "issuer ready");
        Ok(tokio::spawn(proxy::server::serve(
            listener,
            Arc::new(issuer),
            shutdown,
            config.drain_timeout,
        )))
    }

    /// Start the credential tasks, the outbound listeners and the admin listener.
    /// Everything stops when `shutdown` turns true; [`Handle::wait`] awaits that.
    pub fn spawn(
        config: Config,
        listeners: Listeners,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Handle, String> {
        let mut registry = Registry::default();
        let token_metrics = metrics::TokenMetrics::register(&mut registry);
        let outbound_metrics = metrics::OutboundMetrics::register(&mut registry);
        let mut tasks = JoinSet::new();
        // The issuer starts first: in-process credentials may use it as their IdP.
        let issuer_addr = match (&config.issuer, listeners.issuer) {
            (Some(spec), Some(listener)) => {
                let issuer = issuer::Issuer::new(spec)?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                tracing::info!(%addr, url = %spec.url, "issuer ready");
                tasks.spawn(proxy::server::serve(
                    listener,
                    Arc::new(issuer),
                    shutdown.clone(),
                    config.drain_timeout,
                ));
                Some(addr)
            }
            _ => None,
        };

        let mut credentials = Vec::new();
        let mut watched = Vec::new();
        for spec in &config.credentials {
            let fetcher = token::Fetcher::new(spec.clone())?;
            let cred = Credential::new(spec.clone(), token_metrics.clone());
            if let Some(path) = spec.auth.watched_file() {
                watched.push(token::secret::Watched {
                    path: path.to_path_buf(),
                    on_change: cred.kick_handle(),
                });
            }
            let cache_file = config
                .token_cache_dir
                .as_deref()
                .map(|d| token::disk::path(d, spec));
            tasks.spawn(token::run(
                cred.clone(),
                fetcher,
                cache_file,
                shutdown.clone(),
            ));
            credentials.push(cred);
        }
        tasks.spawn(token::secret::watch_files(watched, shutdown.clone()));

        let mut outbound_addrs = Vec::new();
        for (spec, listener) in config.outbound.iter().zip(listeners.outbound) {
            let cred = credentials
                .iter()
                .find(|c| c.name() == spec.credential)
                .ok_or_else(|| {
                    format!("outbound {}: no credential {}", spec.name, spec.credential)
                })?;
            let route =
                outbound::Route::new(spec, cred.clone(), outbound_metrics.route(&spec.name))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(route = %spec.name, %addr, upstream = %config::redact_url(&spec.upstream), "outbound listener ready");
            outbound_addrs.push((spec.name.clone(), addr));
            tasks.spawn(proxy::server::serve(
                listener,
                Arc::new(route),
                shutdown.clone(),
                config.drain_timeout,
            ));
        }

        let mut forward_proxy_addr = None;
        if let (Some(spec), Some(listener)) = (&config.forward_proxy, listeners.forward_proxy) {
            let handler = forward::ForwardProxy::new(spec, &credentials, &outbound_metrics)?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(%addr, routes = spec.routes.len(), unmatched = if spec.deny_unmatched { "deny" } else { "pass" }, "forward proxy listener ready");
            tasks.spawn(proxy::server::serve(
                listener,
                Arc::new(handler),
                shutdown.clone(),
                config.drain_timeout,
            ));
            forward_proxy_addr = Some(addr);
        }

        let mut inbound_addr = None;
        let mut jwks = None;
        if let (Some(spec), Some(listener)) = (&config.inbound, listeners.inbound) {
            let keys = inbound::jwks::Jwks::new(spec);
            let metrics = inbound::InboundMetrics::register(&mut registry);
            let fetcher = inbound::jwks::run(
                keys.clone(),
                spec.clone(),
                metrics.clone(),
                shutdown.clone(),
            );
            tasks.spawn(fetcher);
            let handler = inbound::Inbound::new(spec, keys.clone(), metrics.clone())?;
            if let Some(url) = &spec.revocations_url {
                let feed = handler.revocations.clone();
                let (interval, timeout) = (spec.revocations_interval, spec.jwks_timeout);
                let gauge = metrics.revocations_fetched.clone();
                let poller = inbound::revocation::run(
                    feed,
                    url.clone(),
                    interval,
                    timeout,
                    gauge,
                    shutdown.clone(),
                );
                tasks.spawn(poller);
            }
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(%addr, upstream = %spec.upstream, "inbound listener ready");
            tasks.spawn(proxy::server::serve(
                listener,
                Arc::new(handler),
                shutdown.clone(),
                config.drain_timeout,
            ));
            inbound_addr = Some(addr);
            jwks = Some(keys);
        }

        let draining = Arc::new(AtomicBool::new(false));
        let admin_addr = listeners.admin.local_addr().map_err(|e| e.to_string())?;
        let admin = admin::Admin {
            credentials: credentials.clone(),
            registry,
            token_metrics,
            jwks,
            draining: draining.clone(),
        };
        tracing::info!(addr = %admin_addr, "admin listener ready");
        tasks.spawn(proxy::server::serve(
            listeners.admin,
            Arc::new(admin),
            shutdown,
            config.drain_timeout,
        ));
        Ok(Handle {
            admin_addr,
            outbound_addrs,
            credentials,
            issuer_addr,
            inbound_addr,
            forward_proxy_addr,
            draining,
            tasks,
        })
    }
}
