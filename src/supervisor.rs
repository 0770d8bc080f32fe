//! The running sidecar as a set of parts a reload can change one by one:
//! credentials (each with its refresh task), the outbound listeners, the forward
//! proxy and the inbound listener (each a [`Swap`]ped handler on its own
//! listener). A reload first prepares everything that can fail (binding new
//! listeners, building clients and handlers), then commits: new credentials
//! start fetching, removed ones stop, handlers are swapped (in-flight requests
//! finish on the old ones), listeners no longer configured stop accepting and
//! drain. Unchanged credentials keep their tokens; unchanged inbound keys and
//! revocation lists are kept. The issuer, `admin.listen` and `worker_threads`
//! need a restart (a reload that changes them says so).

use crate::config::{Config, CredentialSpec, InboundSpec, Limits};
use crate::inbound::jwks::Jwks;
use crate::inbound::revocation::Revocations;
use crate::inbound::{Inbound, InboundMetrics};
use crate::metrics::{OutboundMetrics, ProcessMetrics, TokenMetrics};
use crate::proxy::server::{ServeOptions, Swap, serve};
use crate::token::{self, Credential};
use crate::{forward, outbound};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What `/readyz` looks at; replaced by reloads.
#[derive(Default)]
pub struct ReadyState {
    pub credentials: ArcSwap<Vec<Arc<Credential>>>,
    pub jwks: ArcSwapOption<Jwks>,
}

/// A stop signal for one part, also fired by the global shutdown.
fn child(
    global: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let mut global = global.clone();
    let forward = tx.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = crate::until_shutdown(&mut global) => { let _ = forward.send(true); }
            _ = forward.closed() => {}
        }
    });
    (tx, rx)
}

struct RunningCred {
    spec: Arc<CredentialSpec>,
    cred: Arc<Credential>,
    stop: watch::Sender<bool>,
}

struct Served<H> {
    listen: SocketAddr,
    addr: SocketAddr,
    swap: Arc<Swap<H>>,
    stop: watch::Sender<bool>,
    /// Set at once when the listener stops (requests whose head completes
    /// later are refused, not forwarded).
    stopped: Arc<AtomicBool>,
}

impl<H> Served<H> {
    /// Stop accepting, refuse requests not received whole yet, drain the rest.
    fn halt(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}

struct RunningInbound {
    spec: InboundSpec,
    served: Served<Inbound>,
    jwks: Arc<Jwks>,
    jwks_stop: watch::Sender<bool>,
    revocations: Arc<Revocations>,
    revocations_stop: Option<watch::Sender<bool>>,
}

/// Listeners bound before anything changes.
#[derive(Default)]
pub struct Bound {
    pub outbound: BTreeMap<String, TcpListener>,
    pub forward_proxy: Option<TcpListener>,
    pub inbound: Option<TcpListener>,
}

pub struct Supervisor {
    global: watch::Receiver<bool>,
    pub tasks: JoinSet<()>,
    token_metrics: TokenMetrics,
    outbound_metrics: OutboundMetrics,
    inbound_metrics: InboundMetrics,
    process_metrics: ProcessMetrics,
    pub ready: Arc<ReadyState>,
    limits: Arc<ArcSwap<Limits>>,
    creds: BTreeMap<String, RunningCred>,
    secret_watch: Option<watch::Sender<bool>>,
    outbound: BTreeMap<String, Served<outbound::Route>>,
    forward: Option<Served<forward::ForwardProxy>>,
    inbound: Option<RunningInbound>,
    config: Option<Config>,
}

/// Where the listeners are, after a start or a reload.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub outbound: Vec<(String, SocketAddr)>,
    pub forward_proxy: Option<SocketAddr>,
    pub inbound: Option<SocketAddr>,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{what}: cannot listen on {addr}: {e}"))
}

impl Supervisor {
    pub fn new(
        global: watch::Receiver<bool>,
        tasks: JoinSet<()>,
        registry: &mut prometheus_client::registry::Registry,
        limits: Limits,
    ) -> Self {
        Supervisor {
            global,
            tasks,
            token_metrics: TokenMetrics::register(registry),
            outbound_metrics: OutboundMetrics::register(registry),
            inbound_metrics: InboundMetrics::register(registry),
            process_metrics: ProcessMetrics::register(registry),
            ready: Arc::default(),
            limits: Arc::new(ArcSwap::from_pointee(limits)),
            creds: BTreeMap::new(),
            secret_watch: None,
            outbound: BTreeMap::new(),
            forward: None,
            inbound: None,
            config: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits.load().as_ref().clone()
    }

    pub fn token_metrics(&self) -> TokenMetrics {
        self.token_metrics.clone()
    }

    pub fn addresses(&self) -> Addresses {
        Addresses {
            outbound: self
                .outbound
                .iter()
                .map(|(n, s)| (n.clone(), s.addr))
                .collect(),
            forward_proxy: self.forward.as_ref().map(|f| f.addr),
            inbound: self.inbound.as_ref().map(|i| i.served.addr),
        }
    }

    /// Count a reload attempt.
    pub fn count_reload(&self, ok: bool) {
        let outcome = if ok { "success" } else { "error" };
        self.process_metrics
            .reloads
            .get_or_create(&crate::metrics::ReloadLabels { outcome })
            .inc();
        if ok {
            self.mark_applied();
        }
    }

    fn mark_applied(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.process_metrics
            .last_reload
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// Bind what `new` needs that is not served yet (same name and address:
    /// kept). Nothing running changes here.
    pub async fn bind_new(&self, new: &Config) -> Result<Bound, String> {
        let mut bound = Bound::default();
        for o in &new.outbound {
            if self
                .outbound
                .get(&o.name)
                .is_none_or(|s| s.listen != o.listen)
            {
                bound.outbound.insert(
                    o.name.clone(),
                    bind(o.listen, &format!("outbound {}", o.name)).await?,
                );
            }
        }
        if let Some(f) = &new.forward_proxy
            && self.forward.as_ref().is_none_or(|s| s.listen != f.listen)
        {
            bound.forward_proxy = Some(bind(f.listen, "forward_proxy").await?);
        }
        if let Some(i) = &new.inbound
            && self
                .inbound
                .as_ref()
                .is_none_or(|s| s.served.listen != i.listen)
        {
            bound.inbound = Some(bind(i.listen, "inbound").await?);
        }
        Ok(bound)
    }

    /// Make `new` the running configuration, on the listeners in `bound` (from
    /// [`Self::bind_new`], or bound by the caller at start). Returns what changed.
    pub async fn apply(&mut self, new: Config, mut bound: Bound) -> Result<Vec<String>, String> {
        // Forget the tasks of parts stopped by earlier reloads.
        while self.tasks.try_join_next().is_some() {}
        let mut changes = Vec::new();
        if let Some(old) = &self.config {
            for (what, same) in [
                ("admin.listen", old.admin.listen == new.admin.listen),
                ("[issuer]", old.issuer == new.issuer),
                ("worker_threads", old.worker_threads == new.worker_threads),
            ] {
                if !same {
                    tracing::warn!(
                        setting = what,
                        "this change needs a restart; the running value is kept"
                    );
                    changes.push(format!("{what}: needs a restart (not applied)"));
                }
            }
        }

        // 1. Prepare everything that can fail.
        let mut fresh_creds: Vec<(Arc<CredentialSpec>, Arc<Credential>, token::Fetcher)> =
            Vec::new();
        let mut all_creds: Vec<Arc<Credential>> = Vec::new();
        for spec in &new.credentials {
            match self.creds.get(&spec.name) {
                Some(r) if *r.spec == **spec => all_creds.push(r.cred.clone()),
                _ => {
                    let fetcher = token::Fetcher::new(spec.clone()).map_err(|e| e.to_string())?;
                    let cred = Credential::new(spec.clone(), self.token_metrics.clone());
                    all_creds.push(cred.clone());
                    fresh_creds.push((spec.clone(), cred, fetcher));
                }
            }
        }
        let find = |name: &str| all_creds.iter().find(|c| c.name() == name).cloned();
        // A handler whose settings and credentials did not change is kept as it
        // is: its upstream connections and caches survive the reload.
        let fresh: Vec<String> = fresh_creds.iter().map(|(s, _, _)| s.name.clone()).collect();
        let is_fresh = |name: &str| fresh.iter().any(|f| f == name);
        let old_config = self.config.as_ref();
        let mut routes = Vec::new();
        for spec in &new.outbound {
            let unchanged = !is_fresh(&spec.credential)
                && self.outbound.contains_key(&spec.name)
                && old_config.is_some_and(|o| o.outbound.iter().any(|x| x == spec));
            let route = if unchanged {
                None
            } else {
                let cred = find(&spec.credential).ok_or_else(|| {
                    format!("outbound {}: no credential {}", spec.name, spec.credential)
                })?;
                Some(outbound::Route::new(
                    spec,
                    cred,
                    self.outbound_metrics.route(&spec.name),
                )?)
            };
            routes.push((spec, route));
        }
        let forward_handler = match &new.forward_proxy {
            Some(spec) => {
                let unchanged = self.forward.is_some()
                    && old_config.is_some_and(|o| o.forward_proxy.as_ref() == Some(spec))
                    && spec.routes.iter().all(|r| !is_fresh(&r.credential));
                let handler = if unchanged {
                    None
                } else {
                    Some(forward::ForwardProxy::new(
                        spec,
                        &all_creds,
                        &self.outbound_metrics,
                    )?)
                };
                Some((spec, handler))
            }
            None => None,
        };
        // Inbound: keys and revocation list are kept when their settings are.
        let inbound_plan = match &new.inbound {
            None => None,
            Some(spec) => {
                let old = self.inbound.as_ref();
                let keys_same = old.is_some_and(|o| same_keys(&o.spec, spec));
                let rev_same = old.is_some_and(|o| {
                    o.spec.revocations_url == spec.revocations_url
                        && o.spec.revocations_interval == spec.revocations_interval
                        && o.spec.jwks_timeout == spec.jwks_timeout
                });
                let jwks = match old {
                    Some(o) if keys_same => o.jwks.clone(),
                    _ => Jwks::new(spec),
                };
                let unchanged = old.is_some_and(|o| o.spec == *spec)
                    && old_config.map(|c| c.limits.access_log) == Some(new.limits.access_log);
                let handler = if unchanged {
                    None
                } else {
                    let mut h = Inbound::new(spec, jwks.clone(), self.inbound_metrics.clone())?;
                    h.access_log = new.limits.access_log;
                    if let (Some(o), true) = (old, rev_same) {
                        h.revocations = o.revocations.clone();
                    }
                    Some(h)
                };
                let revocations = match (&handler, old) {
                    (Some(h), _) => h.revocations.clone(),
                    (None, Some(o)) => o.revocations.clone(),
                    (None, None) => Arc::default(),
                };
                Some((spec, handler, jwks, keys_same, rev_same, revocations))
            }
        };

        // 2. Commit.
        // Credentials: start the new, stop the replaced and the removed.
        let reloading = self.config.is_some();
        let starting: Vec<Arc<Credential>> =
            fresh_creds.iter().map(|(_, c, _)| c.clone()).collect();
        for (spec, cred, fetcher) in fresh_creds {
            let (stop, stopped) = child(&self.global, &mut self.tasks);
            let cache_file = new
                .token_cache_dir
                .as_deref()
                .map(|d| token::disk::cache_file(d, &spec));
            self.tasks
                .spawn(token::run(cred.clone(), fetcher, cache_file, stopped));
            if let Some(old) = self.creds.insert(
                spec.name.clone(),
                RunningCred {
                    spec: spec.clone(),
                    cred,
                    stop,
                },
            ) {
                let _ = old.stop.send(true);
                changes.push(format!("credential {}: changed", spec.name));
            } else if self.config.is_some() {
                changes.push(format!("credential {}: added", spec.name));
            }
        }
        let wanted: Vec<&str> = new.credentials.iter().map(|c| c.name.as_str()).collect();
        let removed: Vec<String> = self
            .creds
            .keys()
            .filter(|n| !wanted.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(r) = self.creds.remove(&name) {
                let _ = r.stop.send(true);
                changes.push(format!("credential {name}: removed"));
            }
        }
        if reloading && !starting.is_empty() {
            // Routes switch to a new credential once it holds a token (bounded
            // by its token request timeout), so requests do not wait for it.
            let first = starting.iter().map(|c| {
                let wait = c.spec.timeout + Duration::from_secs(1);
                async move {
                    if c.bearer(wait).await.is_err() {
                        tracing::warn!(credential = %c.name(), "no token yet after the reload; routes switch to it anyway");
                    }
                }
            });
            futures_util::future::join_all(first).await;
        }
        self.restart_secret_watch(&new);
        self.limits.store(Arc::new(new.limits.clone()));

        // Outbound listeners.
        let mut keep = BTreeMap::new();
        for (spec, route) in routes {
            let upstream = crate::config::redact_url(&spec.upstream);
            match (
                self.outbound.remove(&spec.name),
                bound.outbound.remove(&spec.name),
            ) {
                (Some(s), None) => {
                    if let Some(route) = route {
                        s.swap.replace(route);
                    }
                    keep.insert(spec.name.clone(), s);
                }
                (old, Some(listener)) => {
                    // A new listener means a new or moved route: it was built.
                    let Some(route) = route else {
                        return Err(format!("outbound {}: no route built", spec.name));
                    };
                    if let Some(o) = old {
                        o.halt();
                        changes.push(format!("outbound {}: moved to {}", spec.name, spec.listen));
                    } else if self.config.is_some() {
                        changes.push(format!("outbound {}: added on {}", spec.name, spec.listen));
                    }
                    let served =
                        self.serve(listener, route, &spec.name, Some(upstream), spec.listen);
                    tracing::info!(route = %spec.name, addr = %served.addr, upstream = %crate::config::redact_url(&spec.upstream), "outbound listener ready");
                    keep.insert(spec.name.clone(), served);
                }
                (None, None) => return Err(format!("outbound {}: no listener bound", spec.name)),
            }
        }
        for (name, s) in std::mem::take(&mut self.outbound) {
            s.halt();
            changes.push(format!("outbound {name}: removed"));
        }
        self.outbound = keep;

        // Forward proxy.
        match (
            forward_handler,
            self.forward.take(),
            bound.forward_proxy.take(),
        ) {
            (Some((_, h)), Some(s), None) => {
                if let Some(h) = h {
                    s.swap.replace(h);
                }
                self.forward = Some(s);
            }
            (Some((spec, h)), old, Some(listener)) => {
                let Some(h) = h else {
                    return Err("forward_proxy: no handler built".into());
                };
                if let Some(o) = old {
                    o.halt();
                }
                let served = self.serve(listener, h, "forward_proxy", None, spec.listen);
                tracing::info!(addr = %served.addr, routes = spec.routes.len(), "forward proxy listener ready");
                self.forward = Some(served);
            }
            (None, Some(o), _) => {
                o.halt();
                changes.push("forward_proxy: removed".into());
            }
            (Some(_), None, None) => return Err("forward_proxy: no listener bound".into()),
            (None, None, _) => {}
        }

        // Inbound.
        match (inbound_plan, self.inbound.take(), bound.inbound.take()) {
            (None, Some(o), _) => {
                stop_inbound(o);
                changes.push("inbound: removed".into());
            }
            (None, None, _) => {}
            (Some((spec, handler, jwks, keys_same, rev_same, revocations)), old, listener) => {
                // New key settings on a running listener: they must yield keys
                // (bounded) before requests see them, else the running inbound
                // settings stay.
                let prestarted = if old.is_some() && !keys_same {
                    let (stop, stopped) = child(&self.global, &mut self.tasks);
                    self.tasks.spawn(crate::inbound::jwks::run(
                        jwks.clone(),
                        spec.clone(),
                        self.inbound_metrics.clone(),
                        stopped,
                    ));
                    let deadline =
                        tokio::time::Instant::now() + spec.jwks_timeout + Duration::from_secs(1);
                    while jwks.keys().is_none() && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if jwks.keys().is_none() {
                        let _ = stop.send(true);
                        tracing::warn!(
                            "inbound: the new key settings gave no keys; the running inbound settings are kept"
                        );
                        changes.push("inbound: not changed (the new key settings gave no keys within jwks_timeout)".into());
                        self.inbound = old;
                        return Ok(self.finish(new, changes));
                    }
                    Some(stop)
                } else {
                    None
                };
                let jwks_stop = match (&old, keys_same, prestarted) {
                    (Some(o), true, _) => o.jwks_stop.clone(),
                    (_, _, Some(stop)) => stop,
                    _ => {
                        let (stop, stopped) = child(&self.global, &mut self.tasks);
                        self.tasks.spawn(crate::inbound::jwks::run(
                            jwks.clone(),
                            spec.clone(),
                            self.inbound_metrics.clone(),
                            stopped,
                        ));
                        stop
                    }
                };
                let revocations_stop = match (&old, rev_same) {
                    (Some(o), true) => o.revocations_stop.clone(),
                    _ => spec.revocations_url.as_ref().map(|url| {
                        let (stop, stopped) = child(&self.global, &mut self.tasks);
                        self.tasks.spawn(crate::inbound::revocation::run(
                            revocations.clone(),
                            url.clone(),
                            spec.revocations_interval,
                            spec.jwks_timeout,
                            self.inbound_metrics.revocations_fetched.clone(),
                            stopped,
                        ));
                        stop
                    }),
                };
                let served = match (old, listener) {
                    (Some(o), None) => {
                        if let Some(h) = handler {
                            o.served.swap.replace(h);
                        }
                        if !keys_same {
                            let _ = o.jwks_stop.send(true);
                        }
                        if !rev_same && let Some(s) = &o.revocations_stop {
                            let _ = s.send(true);
                        }
                        if o.spec != *spec {
                            changes.push("inbound: changed".into());
                        }
                        o.served
                    }
                    (old, Some(listener)) => {
                        let Some(handler) = handler else {
                            return Err("inbound: no handler built".into());
                        };
                        if let Some(o) = old {
                            o.served.halt();
                            if !keys_same {
                                let _ = o.jwks_stop.send(true);
                            }
                            if !rev_same && let Some(s) = &o.revocations_stop {
                                let _ = s.send(true);
                            }
                            changes.push(format!("inbound: moved to {}", spec.listen));
                        }
                        let upstream = crate::config::redact_url(&spec.upstream);
                        let served =
                            self.serve(listener, handler, "inbound", Some(upstream), spec.listen);
                        tracing::info!(addr = %served.addr, upstream = %spec.upstream, "inbound listener ready");
                        served
                    }
                    (None, None) => return Err("inbound: no listener bound".into()),
                };
                self.ready.jwks.store(Some(jwks.clone()));
                self.inbound = Some(RunningInbound {
                    spec: spec.clone(),
                    served,
                    jwks,
                    jwks_stop,
                    revocations,
                    revocations_stop,
                });
            }
        }
        Ok(self.finish(new, changes))
    }

    /// The end of a commit: what `/readyz` looks at, and the running config.
    fn finish(&mut self, new: Config, mut changes: Vec<String>) -> Vec<String> {
        if self.inbound.is_none() {
            self.ready.jwks.store(None);
        }
        self.ready.credentials.store(Arc::new(
            new.credentials
                .iter()
                .filter_map(|s| self.creds.get(&s.name).map(|r| r.cred.clone()))
                .collect(),
        ));
        let first = self.config.is_none();
        if let Some(old) = &self.config
            && old.limits != new.limits
        {
            changes.push("limits: changed (new connections)".into());
        }
        if !first && changes.is_empty() && self.config.as_ref() != Some(&new) {
            changes.push("routes and settings updated".into());
        }
        self.config = Some(new);
        self.mark_applied();
        changes
    }

    fn serve<H: crate::proxy::server::Handler>(
        &mut self,
        listener: TcpListener,
        handler: H,
        name: &str,
        upstream: Option<String>,
        listen: SocketAddr,
    ) -> Served<H> {
        // Bound moments ago; the configured address is the fallback of a fallback.
        let addr = listener.local_addr().unwrap_or(listen);
        let swap = Arc::new(Swap::new(handler));
        let (stop, stop_rx) = child(&self.global, &mut self.tasks);
        let stopped = Arc::new(AtomicBool::new(false));
        let opts = ServeOptions {
            name: Arc::from(name),
            upstream: upstream.map(Arc::from),
            limits: self.limits.clone(),
            access_log: true,
            metrics: self.process_metrics.listener(name),
            stopped: stopped.clone(),
            peer_addr: false,
        };
        self.tasks
            .spawn(serve(listener, swap.clone(), stop_rx, opts));
        Served {
            listen,
            addr,
            swap,
            stop,
            stopped,
        }
    }

    /// The admin or issuer listener: no access log, no reload.
    pub fn serve_fixed<H: crate::proxy::server::Handler>(
        &mut self,
        listener: TcpListener,
        handler: Arc<H>,
        name: &str,
    ) {
        let opts = ServeOptions {
            name: Arc::from(name),
            upstream: None,
            limits: self.limits.clone(),
            access_log: false,
            metrics: self.process_metrics.listener(name),
            stopped: Arc::default(),
            // The issuer throttles failed authentication per source address.
            peer_addr: name == "issuer",
        };
        self.tasks
            .spawn(serve(listener, handler, self.global.clone(), opts));
    }

    fn restart_secret_watch(&mut self, new: &Config) {
        if let Some(s) = self.secret_watch.take() {
            let _ = s.send(true);
        }
        let watched: Vec<token::secret::Watched> = new
            .credentials
            .iter()
            .filter_map(|spec| {
                let path = spec.auth.watched_file()?;
                let cred = &self.creds.get(&spec.name)?.cred;
                Some(token::secret::Watched {
                    path: path.to_path_buf(),
                    on_change: cred.kick_handle(),
                })
            })
            .collect();
        let (stop, stopped) = child(&self.global, &mut self.tasks);
        self.tasks
            .spawn(token::secret::watch_files(watched, stopped));
        self.secret_watch = Some(stop);
    }
}

fn same_keys(a: &InboundSpec, b: &InboundSpec) -> bool {
    a.keys == b.keys
        && a.algorithms == b.algorithms
        && a.issuer == b.issuer
        && a.jwks_refresh == b.jwks_refresh
        && a.jwks_cooldown == b.jwks_cooldown
        && a.jwks_timeout == b.jwks_timeout
}

fn stop_inbound(o: RunningInbound) {
    o.served.halt();
    let _ = o.jwks_stop.send(true);
    if let Some(s) = o.revocations_stop {
        let _ = s.send(true);
    }
}
