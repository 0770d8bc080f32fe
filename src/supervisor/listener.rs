//! One listener's life across reloads, the same for outbound, forward proxy
//! and inbound: the plan keeps it (swapping the handler when it was rebuilt)
//! or starts one on a newly bound socket (the old one, moved, stops
//! accepting and drains).

use super::{Shared, Tasks};
use crate::proxy::server::{Handler, ServeOptions, Swap, serve};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

/// An address that cannot be listened on.
#[derive(Debug, thiserror::Error)]
#[error("{part}: cannot listen on {addr}: {source}")]
pub struct ListenError {
    /// `admin`, `issuer`, `inbound`, `forward_proxy` or `outbound NAME`.
    pub part: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Bind `addr` for `part` (named in the error).
pub async fn bind(addr: SocketAddr, part: impl Into<String>) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError {
        part: part.into(),
        addr,
        source,
    })
}

/// A handler served on its own listener.
pub(super) struct Served<H> {
    /// The configured address (`:0` stays `:0`): what a reload compares.
    pub listen: SocketAddr,
    /// The bound address.
    pub addr: SocketAddr,
    swap: Arc<Swap<H>>,
    stop: watch::Sender<bool>,
    /// Set at once when the listener stops (requests whose head completes
    /// later are refused, not forwarded).
    stopped: Arc<AtomicBool>,
}

// The same listener, not a copy: a plan holds one to say "keep this".
impl<H> Clone for Served<H> {
    fn clone(&self) -> Self {
        Served {
            listen: self.listen,
            addr: self.addr,
            swap: self.swap.clone(),
            stop: self.stop.clone(),
            stopped: self.stopped.clone(),
        }
    }
}

impl<H> Served<H> {
    /// Stop accepting, refuse requests not received whole yet, drain the rest.
    pub fn halt(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}

/// What a reload does with one listener.
pub(super) enum Listen<H> {
    /// Same address: the running listener goes on, with `handler` swapped in
    /// when the settings changed.
    Keep {
        served: Served<H>,
        handler: Option<H>,
    },
    /// New or moved: `handler` on a socket bound by the plan.
    Start { listener: TcpListener, handler: H },
}

/// Where a listener of the new configuration will be.
pub(super) enum Socket<'a, H> {
    /// Running on the configured address already.
    Running(&'a Served<H>),
    /// Bound for it: new, or moved to another address.
    Bound(TcpListener),
}

impl<'a, H> Socket<'a, H> {
    /// The running listener when it is on `listen`, else `given` (bound by
    /// the caller), else a new one bound here.
    pub async fn get(
        running: Option<&'a Served<H>>,
        listen: SocketAddr,
        given: Option<TcpListener>,
        part: impl FnOnce() -> String,
    ) -> Result<Self, ListenError> {
        Ok(match (running.filter(|s| s.listen == listen), given) {
            (Some(served), _) => Socket::Running(served),
            (None, Some(listener)) => Socket::Bound(listener),
            (None, None) => Socket::Bound(bind(listen, part()).await?),
        })
    }
}

impl<H> Listen<H> {
    /// Keep a running listener, with a new handler unless `unchanged`; a
    /// bound one always gets a new handler.
    pub fn new<E>(
        socket: Socket<'_, H>,
        unchanged: bool,
        build: impl FnOnce() -> Result<H, E>,
    ) -> Result<Self, E> {
        Ok(match socket {
            Socket::Running(served) => Listen::Keep {
                served: served.clone(),
                handler: if unchanged { None } else { Some(build()?) },
            },
            Socket::Bound(listener) => Listen::Start {
                listener,
                handler: build()?,
            },
        })
    }
}

/// How [`Shared::reconcile`] went.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Kept,
    /// On a new listener; `moved`: one was running elsewhere and now drains.
    Started {
        moved: bool,
    },
}

/// How a listener is named in logs and metrics.
pub(super) struct Label<'a> {
    pub name: &'a str,
    /// Where it forwards to, for the access log (redacted).
    pub upstream: Option<&'a Url>,
    pub listen: SocketAddr,
}

impl Shared {
    /// Put `plan` in place of `old` (the listener of that name running now).
    pub fn reconcile<H: Handler>(
        &mut self,
        old: Option<Served<H>>,
        plan: Listen<H>,
        label: Label<'_>,
    ) -> (Served<H>, Outcome) {
        match plan {
            Listen::Keep { served, handler } => {
                if let Some(h) = handler {
                    served.swap.replace(h);
                }
                (served, Outcome::Kept)
            }
            Listen::Start { listener, handler } => {
                let moved = old.inspect(Served::halt).is_some();
                let served = self.serve(listener, handler, label);
                (served, Outcome::Started { moved })
            }
        }
    }

    fn serve<H: Handler>(
        &mut self,
        listener: TcpListener,
        handler: H,
        label: Label<'_>,
    ) -> Served<H> {
        // Bound moments ago; the configured address is the fallback of a fallback.
        let addr = listener.local_addr().unwrap_or(label.listen);
        let swap = Arc::new(Swap::new(handler));
        let stopped = Arc::new(AtomicBool::new(false));
        let opts = ServeOptions {
            name: Arc::from(label.name),
            upstream: label
                .upstream
                .map(|u| Arc::from(crate::config::redact_url(u))),
            limits: self.limits.clone(),
            access_log: true,
            metrics: self.metrics.process.listener(label.name),
            stopped: stopped.clone(),
            peer_addr: false,
        };
        let served = swap.clone();
        let stop = self
            .tasks
            .spawn(move |stop_rx| serve(listener, served, stop_rx, opts));
        Served {
            listen: label.listen,
            addr,
            swap,
            stop,
            stopped,
        }
    }

    /// The admin or issuer listener: no access log, no reload.
    pub fn serve_fixed<H: Handler>(&mut self, listener: TcpListener, handler: Arc<H>, name: &str) {
        let opts = ServeOptions {
            name: Arc::from(name),
            upstream: None,
            limits: self.limits.clone(),
            access_log: false,
            metrics: self.metrics.process.listener(name),
            stopped: Arc::default(),
            // The issuer throttles failed authentication per source address.
            peer_addr: name == "issuer",
        };
        let Tasks { global, set, .. } = &mut self.tasks;
        set.spawn(serve(listener, handler, global.clone(), opts));
    }
}
