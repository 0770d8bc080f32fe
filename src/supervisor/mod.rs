//! The running sidecar as a set of parts a reload can change one by one:
//! credentials (each with its refresh task), the outbound listeners, the forward
//! proxy and the inbound listener (each a [`Swap`](crate::proxy::server::Swap)ped
//! handler on its own listener).
//!
//! A reload is a plan and a commit. [`plan::prepare`] does everything that can
//! fail (binding new listeners, building clients and handlers, loading new
//! inbound keys up to their deadline) while nothing running changes; the commit
//! cannot fail: new credentials start fetching, removed ones stop, handlers are
//! swapped (in-flight requests finish on the old ones), listeners no longer
//! configured stop accepting and drain. Unchanged credentials keep their tokens;
//! unchanged inbound keys and revocation lists are kept. The issuer,
//! `admin.listen` and `worker_threads` need a restart (a reload that changes
//! them says so).
//!
//! - `plan`: [`plan::prepare`] and the [`Plan`](plan::Plan) it returns
//! - `commit`: putting a plan in force, and the list of [`Change`]s it made
//! - `listener`: binding, serving and the one reconcile every listener goes through
//! - `credentials`, `inbound`: the plan and commit of those parts
//! - `change`: what a reload reports

mod change;
mod commit;
mod credentials;
mod inbound;
mod listener;
mod plan;

pub use change::Change;
pub use listener::{ListenError, bind};
pub use plan::{BoxError, ReloadError};

use crate::config::{Config, Limits};
use crate::forward::ForwardProxy;
use crate::inbound::InboundMetrics;
use crate::metrics::{OutboundMetrics, ProcessMetrics, TokenMetrics};
use crate::outbound::Route;
use crate::readiness::Readiness;
use arc_swap::ArcSwap;
use credentials::RunningCred;
use inbound::RunningInbound;
use listener::Served;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Listeners bound before anything changes: at start, those the caller bound;
/// [`plan::prepare`] binds whatever else the new configuration needs.
#[derive(Default)]
pub struct Bound {
    pub outbound: BTreeMap<String, TcpListener>,
    pub forward_proxy: Option<TcpListener>,
    pub inbound: Option<TcpListener>,
}

/// Where the listeners are, after a start or a reload.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub outbound: Vec<(String, SocketAddr)>,
    pub forward_proxy: Option<SocketAddr>,
    pub inbound: Option<SocketAddr>,
}

/// The parts in force and what they share.
pub struct Supervisor {
    shared: Shared,
    running: Running,
}

/// What every part shares and no reload replaces.
struct Shared {
    tasks: Tasks,
    metrics: Metrics,
    ready: Arc<Readiness>,
    /// Read by every listener for each new connection.
    limits: Arc<ArcSwap<Limits>>,
}

struct Metrics {
    token: TokenMetrics,
    outbound: OutboundMetrics,
    inbound: InboundMetrics,
    process: ProcessMetrics,
}

/// The parts in force (empty before the first commit).
#[derive(Default)]
struct Running {
    creds: BTreeMap<String, RunningCred>,
    secret_watch: Option<watch::Sender<bool>>,
    outbound: BTreeMap<String, Served<Route>>,
    forward: Option<Served<ForwardProxy>>,
    inbound: Option<RunningInbound>,
    config: Option<Config>,
}

/// Every task the parts run, and the global stop that ends them all.
struct Tasks {
    global: watch::Receiver<bool>,
    set: JoinSet<()>,
    /// Every part's stop signal, fired together by one task when the global
    /// stop comes (not one task per part: 1,000 credentials are 1,000 parts).
    children: Arc<Mutex<Vec<watch::Sender<bool>>>>,
    forwarding: bool,
}

impl Tasks {
    fn new(global: watch::Receiver<bool>) -> Self {
        Tasks {
            global,
            set: JoinSet::new(),
            children: Arc::default(),
            forwarding: false,
        }
    }

    /// A stop signal for one part, also fired by the global shutdown.
    fn child(&mut self) -> (watch::Sender<bool>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        if !std::mem::replace(&mut self.forwarding, true) {
            let mut global = self.global.clone();
            let children = self.children.clone();
            self.set.spawn(async move {
                crate::shutdown::until_shutdown(&mut global).await;
                for child in children
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                {
                    let _ = child.send(true);
                }
            });
        }
        {
            let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
            // Parts whose task has ended are forgotten.
            children.retain(|c| !c.is_closed());
            children.push(tx.clone());
        }
        // Added after the global stop was passed on: stop at once.
        if *self.global.borrow() {
            let _ = tx.send(true);
        }
        (tx, rx)
    }

    /// Run `task` with its own stop signal (returned), also fired by the
    /// global shutdown.
    fn spawn<F, Fut>(&mut self, task: F) -> watch::Sender<bool>
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = self.child();
        self.set.spawn(task(stopped));
        stop
    }
}

impl Supervisor {
    pub fn new(
        global: watch::Receiver<bool>,
        registry: &mut prometheus_client::registry::Registry,
        limits: Limits,
    ) -> Self {
        Supervisor {
            shared: Shared {
                tasks: Tasks::new(global),
                metrics: Metrics {
                    token: TokenMetrics::register(registry),
                    outbound: OutboundMetrics::register(registry),
                    inbound: InboundMetrics::register(registry),
                    process: ProcessMetrics::register(registry),
                },
                ready: Arc::default(),
                limits: Arc::new(ArcSwap::from_pointee(limits)),
            },
            running: Running::default(),
        }
    }

    /// Put `config` in force on the listeners in `bound` (bound by the caller;
    /// any other is bound here). Returns what changed.
    pub async fn apply(
        &mut self,
        config: Config,
        bound: Bound,
    ) -> Result<Vec<Change>, ReloadError> {
        // Forget the tasks of parts stopped by earlier reloads.
        while self.shared.tasks.set.try_join_next().is_some() {}
        let plan = plan::prepare(&self.running, &mut self.shared, &config, bound).await?;
        Ok(commit::commit(&mut self.running, &mut self.shared, plan, config).await)
    }

    /// What `/readyz` looks at.
    pub fn readiness(&self) -> Arc<Readiness> {
        self.shared.ready.clone()
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits.load().as_ref().clone()
    }

    pub fn token_metrics(&self) -> TokenMetrics {
        self.shared.metrics.token.clone()
    }

    /// Every task started so far (the caller awaits them after shutdown).
    pub fn take_tasks(&mut self) -> JoinSet<()> {
        std::mem::take(&mut self.shared.tasks.set)
    }

    pub fn addresses(&self) -> Addresses {
        let running = &self.running;
        Addresses {
            outbound: running
                .outbound
                .iter()
                .map(|(n, s)| (n.clone(), s.addr))
                .collect(),
            forward_proxy: running.forward.as_ref().map(|f| f.addr),
            inbound: running.inbound.as_ref().map(|i| i.served.addr),
        }
    }

    /// Count a reload attempt.
    pub fn count_reload(&self, ok: bool) {
        let outcome = if ok { "success" } else { "error" };
        self.shared
            .metrics
            .process
            .reloads
            .get_or_create(&crate::metrics::ReloadLabels { outcome })
            .inc();
        if ok {
            self.shared.mark_applied();
        }
    }

    /// The admin or issuer listener: no access log, no reload.
    pub fn serve_fixed<H: crate::proxy::server::Handler>(
        &mut self,
        listener: TcpListener,
        handler: Arc<H>,
        name: &str,
    ) {
        self.shared.serve_fixed(listener, handler, name);
    }
}

impl Shared {
    fn mark_applied(&self) {
        let now = crate::clock::unix_now();
        self.metrics
            .process
            .last_reload
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests;
