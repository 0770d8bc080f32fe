//! Starting a sidecar on listeners the caller bound ([`App::spawn`]) and the
//! [`Handle`] that reloads, drains and awaits it.

use crate::config::{self, Config};
use crate::readiness::Readiness;
use crate::supervisor::{self, ListenError, ReloadError, Supervisor, bind};
use crate::token::Credential;
use crate::{admin, issuer, proxy};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why a sidecar (or its issuer alone) did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the config has no [issuer] table")]
    NoIssuer,
    /// The issuer's keys or state cannot be loaded.
    #[error(transparent)]
    Issuer(supervisor::BoxError),
    /// A bound listener has no local address.
    #[error(transparent)]
    Address(std::io::Error),
    #[error(transparent)]
    Apply(#[from] ReloadError),
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
    pub async fn bind(config: &Config) -> Result<Self, ListenError> {
        let admin = bind(config.admin.listen, "admin").await?;
        let mut outbound = Vec::with_capacity(config.outbound.len());
        for o in &config.outbound {
            outbound.push(bind(o.listen, format!("outbound {}", o.name)).await?);
        }
        let issuer = match &config.issuer {
            Some(i) => Some(bind(i.listen, "issuer").await?),
            None => None,
        };
        let inbound = match &config.inbound {
            Some(i) => Some(bind(i.listen, "inbound").await?),
            None => None,
        };
        let forward_proxy = match &config.forward_proxy {
            Some(f) => Some(bind(f.listen, "forward_proxy").await?),
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
    ready: Arc<Readiness>,
    supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
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
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, ReloadError> {
        let mut sup = self.supervisor.lock().await;
        let result = sup.apply(config, supervisor::Bound::default()).await;
        sup.count_reload(result.is_ok());
        result.map(|changes| changes.iter().map(ToString::to_string).collect())
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
            let mut tasks = self.supervisor.lock().await.take_tasks();
            if tasks.is_empty() {
                return;
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Mark the sidecar as draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.ready.set_draining();
    }
}

/// The sidecar application.
pub struct App;

impl App {
    /// Only the issuer of `config` (the `m2m-sidecar issuer` command), on `listener`.
    pub async fn spawn_issuer(
        config: &Config,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, StartError> {
        let spec = config.issuer.as_ref().ok_or(StartError::NoIssuer)?;
        let issuer = issuer::Issuer::open(spec, &config.limits)
            .await
            .map_err(|e| StartError::Issuer(e.into()))?;
        let addr = listener.local_addr().map_err(StartError::Address)?;
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
    ) -> Result<Handle, StartError> {
        let mut registry = Registry::default();
        let mut sup = Supervisor::new(shutdown, &mut registry, config.limits.clone());
        // The issuer starts first: in-process credentials may use it as their IdP.
        let issuer_addr = match (&config.issuer, listeners.issuer) {
            (Some(spec), Some(listener)) => {
                let issuer = issuer::Issuer::open(spec, &config.limits)
                    .await
                    .map_err(|e| StartError::Issuer(e.into()))?;
                let addr = listener.local_addr().map_err(StartError::Address)?;
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
        let admin_addr = listeners.admin.local_addr().map_err(StartError::Address)?;
        let ready = sup.readiness();
        let admin = admin::Admin {
            ready: ready.clone(),
            registry,
            token_metrics: sup.token_metrics(),
        };
        tracing::info!(addr = %admin_addr, "admin listener ready");
        sup.serve_fixed(listeners.admin, Arc::new(admin), "admin");
        let credentials = ready.credentials().as_ref().clone();
        Ok(Handle {
            admin_addr,
            outbound_addrs: addrs.outbound,
            credentials,
            issuer_addr,
            inbound_addr: addrs.inbound,
            forward_proxy_addr: addrs.forward_proxy,
            ready,
            supervisor: Arc::new(tokio::sync::Mutex::new(sup)),
        })
    }
}
