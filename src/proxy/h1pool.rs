//! HTTP/1.1 connections to a plain-HTTP upstream, with connection affinity:
//! each downstream connection keeps the upstream connection it last used in a
//! [`Affinity`] slot, so the common case (a keep-alive client sending requests one
//! after another) costs one uncontended lock, no keyed pool lookup and no hashing.
//! When a downstream connection closes, its upstream connection goes back to a
//! small shared LIFO pool for the next downstream connection.
//!
//! TLS upstreams (HTTP/2 by ALPN) and protocol upgrades use the general pooled
//! client in [`super::client`] instead.

use super::Body;
use super::server::conn::{Side, SideSlot};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle upstream connections kept beyond those held by downstream connections.
const MAX_IDLE: usize = 64;

/// An upstream connection's I/O, to be polled by some task.
type Conn = Pin<Box<Connection<TokioIo<TcpStream>, Body>>>;

/// Where and how to connect, and the shared idle connections.
pub struct H1Upstream {
    /// `host:port` to connect to.
    addr: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

/// A connection not carrying a request, and since when. `conn` is its I/O
/// when no task polls it (it was driven by a downstream connection's task,
/// which ended): whoever takes it polls it from then on.
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
    conn: Option<Conn>,
}

impl Idle {
    fn new(sender: SendRequest<Body>) -> Self {
        Idle {
            sender,
            since: Instant::now(),
            conn: None,
        }
    }
}

/// The upstream connection one downstream connection is using.
pub struct Affinity {
    upstream: Arc<H1Upstream>,
    held: Mutex<Option<Idle>>,
    /// Set when the downstream connection's task drives the I/O of the
    /// upstream connection it uses (while that connection is HTTP/1).
    local: Option<Arc<Local>>,
}

/// The I/O of the upstream connection an HTTP/1 downstream connection uses,
/// polled on the downstream connection's task (a [`Side`]). It belongs to the
/// sender in [`Affinity::held`] or to the request in flight, if either.
#[derive(Default)]
struct Local {
    slot: Mutex<LocalSlot>,
}

#[derive(Default)]
struct LocalSlot {
    conn: Option<Conn>,
    /// The waker of the last poll: a connection put in the slot is polled soon.
    waker: Option<Waker>,
}

impl Side for Local {
    fn poll_side(&self, cx: &mut Context<'_>) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        if let Some(conn) = slot.conn.as_mut()
            && let Poll::Ready(done) = conn.as_mut().poll(cx)
        {
            slot.conn = None;
            if let Err(e) = done {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        }
    }
}

impl Local {
    /// Drive `conn` here from now on (none: the connection in use is driven by
    /// a task of its own); one driven here before goes to a task of its own.
    fn install(&self, conn: Option<Conn>) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut slot.conn, conn);
        if slot.conn.is_some()
            && let Some(w) = &slot.waker
        {
            w.wake_by_ref();
        }
        drop(slot);
        if let Some(old) = old {
            spawn(old);
        }
    }

    fn take(&self) -> Option<Conn> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .conn
            .take()
    }
}

/// Drive a connection on a task of its own.
fn spawn(conn: Conn) {
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
}

impl Drop for Affinity {
    fn drop(&mut self) {
        let held = self
            .held
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let conn = self.local.as_ref().and_then(|l| l.take());
        match (held, conn) {
            // Ready for a request: idle, undriven until the next user takes it.
            (Some(mut idle), Some(conn)) if idle.sender.is_ready() => {
                idle.conn = Some(conn);
                self.upstream.put(idle);
            }
            // Still finishing a response: driven on a task of its own.
            (Some(idle), Some(conn)) => {
                spawn(conn);
                self.upstream.put(idle);
            }
            (Some(idle), None) => self.upstream.put(idle),
            // Nothing can send on it any more.
            (None, _) => {}
        }
    }
}

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

impl H1Upstream {
    pub fn new(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(H1Upstream {
            addr: format!("{host}:{port}"),
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A slot for a new downstream connection.
    pub fn affinity(self: &Arc<Self>) -> Affinity {
        Affinity {
            upstream: self.clone(),
            held: Mutex::new(None),
            local: None,
        }
    }

    /// A slot for a new downstream connection whose task also drives the
    /// upstream connection it uses (attached to `side`, if still free).
    pub fn affinity_on(self: &Arc<Self>, side: &mut SideSlot) -> Affinity {
        let local = side.is_none().then(|| Arc::new(Local::default()));
        if let Some(local) = &local {
            *side = Some(local.clone());
        }
        Affinity {
            upstream: self.clone(),
            held: Mutex::new(None),
            local,
        }
    }

    /// Whether an idle connection may still be used (upstreams close idle ones).
    fn fresh(&self, idle: &Idle) -> bool {
        !idle.sender.is_closed() && idle.since.elapsed() < self.idle_timeout
    }

    fn put(&self, idle: Idle) {
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        pool.retain(|i| self.fresh(i));
        if self.fresh(&idle) && pool.len() < MAX_IDLE {
            pool.push(idle);
        }
    }

    /// The most recently used idle connection that is ready. Connections still
    /// finishing a response (put back early by HTTP/2 clients) stay for later.
    fn take_idle(&self) -> Option<(SendRequest<Body>, Option<Conn>)> {
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        pool.retain(|i| self.fresh(i));
        let i = pool.iter().rposition(|i| i.sender.is_ready())?;
        let idle = pool.remove(i);
        Some((idle.sender, idle.conn))
    }

    async fn connect(&self) -> Result<(SendRequest<Body>, Conn), SendError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| SendError::Connect(format!("timed out after {:?}", self.connect_timeout)))?
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        // A request head is written with one `write` (flattened into the head
        // buffer): cheaper for small requests than a queued `writev`.
        let (sender, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await?;
        Ok((sender, Box::pin(conn)))
    }
}

impl Affinity {
    /// Send `req` on this downstream connection's upstream connection, or an idle
    /// one, or a new one. A request that a reused connection closed before taking
    /// is retried once on a new connection.
    ///
    /// `sequential` says the downstream connection sends one request at a time
    /// (HTTP/1), so its held connection is free once ready; over HTTP/2 a held
    /// connection still busy with another stream is left alone.
    pub async fn send(
        &self,
        req: Request<Body>,
        sequential: bool,
    ) -> Result<Response<Incoming>, SendError> {
        let held = {
            let mut slot = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let usable = slot
                .as_ref()
                .is_some_and(|i| self.upstream.fresh(i) && (sequential || i.sender.is_ready()));
            // A stale held connection is dropped; a busy one (HTTP/2) stays.
            if usable || slot.as_ref().is_some_and(|i| !self.upstream.fresh(i)) {
                slot.take().filter(|_| usable).map(|i| i.sender)
            } else {
                None
            }
        };
        // Only an HTTP/1 downstream connection's task drives its upstream
        // connection (over HTTP/2 each request runs on a task of its own).
        let local = self.local.as_deref().filter(|_| sequential);
        // The paths that connect are boxed: rare, and this future stays small
        // (every future around it is moved on each request).
        let (mut sender, reused) = match held {
            Some(s) => (s, true),
            None => Box::pin(self.other(local)).await?,
        };
        if reused && !sender.is_ready() {
            let ready = std::future::poll_fn(|cx| sender.poll_ready(cx)).await;
            if ready.is_err() {
                sender = Box::pin(self.connect_adopting(local)).await?;
            }
        }
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            // The retry keeps its new connection; the closed one is dropped.
            Err(mut e) => {
                return match (reused, e.take_message()) {
                    (true, Some(req)) => Box::pin(self.retry(local, req)).await,
                    _ => Err(SendError::Http(e.into_error())),
                };
            }
        };
        self.release(sender);
        Ok(resp)
    }

    /// A connection other than the held one: an idle one, or a new one; and whether it was used before.
    async fn other(&self, local: Option<&Local>) -> Result<(SendRequest<Body>, bool), SendError> {
        let (sender, conn, reused) = match self.upstream.take_idle() {
            Some((s, conn)) => (s, conn, true),
            None => {
                let (s, conn) = self.upstream.connect().await?;
                (s, Some(conn), false)
            }
        };
        adopt(local, conn);
        Ok((sender, reused))
    }

    /// Send `req`, which a reused connection closed before taking, on a new one.
    async fn retry(
        &self,
        local: Option<&Local>,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sender = self.connect_adopting(local).await?;
        let resp = sender.send_request(req).await?;
        self.release(sender);
        Ok(resp)
    }

    async fn connect_adopting(
        &self,
        local: Option<&Local>,
    ) -> Result<SendRequest<Body>, SendError> {
        let (sender, conn) = self.upstream.connect().await?;
        adopt(local, Some(conn));
        Ok(sender)
    }

    /// Keep the connection for this downstream connection's next request (it can
    /// only come once this response is complete); with HTTP/2 downstream several
    /// requests run at once, and the extras go to the shared pool.
    fn release(&self, sender: SendRequest<Body>) {
        let mut slot = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Idle::new(sender));
        } else {
            drop(slot);
            self.upstream.put(Idle::new(sender));
        }
    }
}

/// Start driving the I/O of a connection about to be used: on the downstream
/// connection's task if `local`, else on a task of its own (unless one drives it already).
fn adopt(local: Option<&Local>, conn: Option<Conn>) {
    match (local, conn) {
        (Some(local), conn) => local.install(conn),
        (None, Some(conn)) => spawn(conn),
        (None, None) => {}
    }
}
