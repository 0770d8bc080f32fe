//! HTTP/1.1 connections to a plain-HTTP upstream, with connection affinity:
//! each downstream connection keeps the upstream connection it last used in a
//! [`Affinity`] slot, so the common case (a keep-alive client sending requests one
//! after another) costs one uncontended lock, no keyed pool lookup and no hashing.
//! When a downstream connection closes, its upstream connection goes back to a
//! shared LIFO pool for the next downstream connection. At a soft cap of
//! connections, they are shared per request instead (see [`H1Upstream`]).
//!
//! HTTP/1 has no request ids: a response is matched to a request by its order
//! alone, so an upstream that answers out of step (a stray extra response, a
//! body past its length, a body on a `HEAD`) shifts every later answer on that
//! connection by one. Held by one downstream connection, the shift stays with
//! that client; shared, it could reach another client of the same listener.
//! So once any connection of an upstream shows it, that upstream's connections
//! are never shared again (see [`H1Upstream::out_of_step`]).
//!
//! TLS upstreams (HTTP/2 by ALPN) and protocol upgrades use the general pooled
//! client in [`super::client`] instead.

use super::Body;
use super::deadline::Deadline;
use super::server::conn::{Side, SideSlot};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Idle upstream connections kept beyond those held by downstream connections
/// (at least; up to the soft cap when that is larger).
const MAX_IDLE: usize = 64;

/// Upstream connections per worker thread before requests start to share them
/// (see [`H1Upstream`]).
const PER_WORKER: usize = 128;

/// At the soft cap, how long a request waits for a connection while none is
/// freed (every connection busy with a slow response) before it opens one.
const STALL: Duration = Duration::from_millis(10);

/// At the soft cap, the longest a request waits for a connection, even while
/// others are freed, before it opens one.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// An upstream connection's I/O, to be polled by some task.
type Conn = Pin<Box<Counted>>;

/// A connection's I/O, counted in its upstream's open connections until dropped.
struct Counted {
    inner: Connection<TokioIo<TcpStream>, Body>,
    open: OpenSlot,
}

impl Future for Counted {
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let done = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        if let Err(e) = &done
            && out_of_step(e)
            && let Some(upstream) = this.open.0.upgrade()
        {
            upstream.out_of_step(e);
        }
        Poll::Ready(done)
    }
}

/// Whether `e` shows an upstream's responses out of step with its requests:
/// bytes when no response was due, or a response head that does not parse
/// (typically the rest of an earlier response). A head merely too large is not.
/// A request queued on such a connection is canceled with it as the cause.
fn out_of_step(e: &hyper::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<hyper::Error>()
            // hyper names no predicate for an unexpected message; its text
            // is stable (and the pool tests fail if it changes).
            && ((e.is_parse() && !e.is_parse_too_large())
                || e.to_string() == "received unexpected message from connection")
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// One of an upstream's open connections (or one being opened).
struct OpenSlot(Weak<H1Upstream>);

impl OpenSlot {
    fn new(upstream: &Arc<H1Upstream>) -> Self {
        upstream.open.fetch_add(1, Ordering::AcqRel);
        OpenSlot(Arc::downgrade(upstream))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        if let Some(upstream) = self.0.upgrade() {
            upstream.open.fetch_sub(1, Ordering::AcqRel);
            upstream.closed();
        }
    }
}

/// Where and how to connect, and the shared idle connections.
///
/// Each downstream connection keeps the upstream connection it last used
/// while the upstream has fewer than a soft cap of connections
/// ([`PER_WORKER`] per worker thread). At the cap, a connection goes back to
/// the shared pool as soon as its response ends, and a request that finds no
/// idle connection waits for one; so under load the upstream connections
/// number about as many as the requests the upstream is working on, not as
/// many as the clients. The cap is soft: a request opens a connection anyway
/// when none has been freed for [`STALL`] (every connection is busy with a
/// slow or long-polling response) or after [`MAX_WAIT`], so no client waits
/// on another's slow response for long.
pub struct H1Upstream {
    /// `host:port` to connect to.
    addr: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    pool: Mutex<Pool>,
    /// Open connections (and connections being opened).
    open: AtomicUsize,
    cap: usize,
    /// Requests waiting for a connection to be freed (`pool.waiters`).
    waiting: AtomicUsize,
    /// When a connection was last freed (back in the pool, or closed), in
    /// milliseconds since `epoch`.
    freed_ms: AtomicU64,
    epoch: Instant,
    /// Set once a connection's responses came out of step with its requests
    /// ([`H1Upstream::out_of_step`]): from then on no connection is shared.
    unshared: AtomicBool,
    /// Counts the connections that came out of step, if the owner counts them.
    desyncs: OnceLock<Counter>,
}

/// Idle connections, and the requests waiting for one (first come, first served).
#[derive(Default)]
struct Pool {
    idle: Vec<Idle>,
    waiters: VecDeque<Waiter>,
    /// A [`watch`] task is looking after `waiters`.
    watched: bool,
}

/// A request waiting for a connection, since when, and where it is handed one.
struct Waiter {
    since: Instant,
    to: HandTo,
}

/// Where a waiting request is handed what was freed.
enum HandTo {
    /// The slot of an HTTP/1 downstream connection, which has one request at
    /// a time: nothing allocated per wait.
    Slot(Arc<Core>),
    /// A request of an HTTP/2 downstream connection (several at once).
    Chan(oneshot::Sender<Freed>),
}

impl Waiter {
    /// Hand `freed` over; back if the request no longer waits.
    fn hand(self, freed: Freed) -> Result<(), Freed> {
        match self.to {
            HandTo::Chan(tx) => tx.send(freed),
            HandTo::Slot(core) => core.hand(freed),
        }
    }
}

/// What a waiting request is handed.
enum Freed {
    /// A connection ready for a request.
    Conn(Idle),
    /// Room to open one (a connection closed).
    Room,
}

/// A connection not carrying a request, and since when. `conn` is its I/O
/// when no task polls it (it was driven by a downstream connection's task,
/// which ended): whoever takes it polls it from then on.
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
    conn: Option<Conn>,
    /// It came from another downstream connection (through the pool): a late
    /// answer of that one's may still be on its way.
    crossed: bool,
}

impl Idle {
    fn new(sender: SendRequest<Body>, crossed: bool) -> Self {
        Idle {
            sender,
            since: Instant::now(),
            conn: None,
            crossed,
        }
    }
}

/// The upstream connection one downstream connection is using.
pub struct Affinity {
    core: Arc<Core>,
    /// The downstream connection's task drives the I/O of the upstream
    /// connection it uses (while that connection is HTTP/1): `core` is its [`Side`].
    local: bool,
    /// The request timer, while the downstream connection is HTTP/1.
    deadline: Deadline,
}

/// What an [`Affinity`] holds, shared with the downstream connection's task
/// when that task drives the upstream connection's I/O.
struct Core {
    upstream: Arc<H1Upstream>,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The connection kept for the next request.
    held: Option<Idle>,
    /// Local only: the I/O of the upstream connection in use, which belongs
    /// to the sender in `held` or to the request in flight, if either.
    conn: Option<Conn>,
    /// The waker of the last poll: a connection put in the slot is polled soon.
    waker: Option<Waker>,
    /// A request of this downstream connection waits for a connection to be
    /// freed ([`HandTo::Slot`]): what it was handed, and its waker.
    waiting: bool,
    handed: Option<Freed>,
    wait_waker: Option<Waker>,
}

impl Side for Core {
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
        // At the soft cap, a connection whose response has ended goes back to
        // the shared pool at once (with its I/O, for whoever takes it).
        if self.upstream.pressed() && slot.held.as_ref().is_some_and(|i| i.sender.is_ready()) {
            let conn = slot.conn.take();
            let held = slot.held.take();
            drop(slot);
            if let Some(mut idle) = held {
                let now = Instant::now();
                idle.conn = conn;
                idle.since = now;
                self.upstream.put(idle, now);
            }
        }
    }
}

impl Core {
    /// Hand `freed` to this downstream connection's waiting request; back if
    /// none waits.
    fn hand(&self, freed: Freed) -> Result<(), Freed> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.waiting || slot.handed.is_some() {
            return Err(freed);
        }
        slot.handed = Some(freed);
        let waker = slot.wait_waker.take();
        drop(slot);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Wait (registered in the pool's waiters, see [`H1Upstream::idle_or_freed`])
    /// until something is handed over.
    async fn handed(&self) -> Freed {
        std::future::poll_fn(|cx| {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.handed.take() {
                Some(freed) => Poll::Ready(freed),
                None => {
                    if !slot
                        .wait_waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        slot.wait_waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The wait is over (answered, or the request dropped): whatever was
    /// handed and not taken goes on to the next waiter.
    fn stop_waiting(&self) -> Option<Freed> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.waiting = false;
        slot.wait_waker = None;
        slot.handed.take()
    }

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
}

/// Look after `upstream`'s waiters while there are any: every [`STALL`], let
/// them open a connection anyway if none was freed meanwhile, or if one has
/// waited [`MAX_WAIT`]. One timer for all of them, not one per request.
async fn watch(upstream: Weak<H1Upstream>) {
    let stall = STALL;
    let mut due = Instant::now() + stall;
    loop {
        tokio::time::sleep_until(due).await;
        let now = Instant::now();
        let late = now.saturating_duration_since(due) > stall / 2;
        match upstream.upgrade() {
            Some(u) if u.tick(now, late) => {}
            _ => return,
        }
        due = now + stall;
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
        let (held, conn) = {
            let mut slot = self
                .core
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (slot.held.take(), slot.conn.take())
        };
        let upstream = &self.core.upstream;
        match (held, conn) {
            // Ready for a request: idle, undriven until the next user takes it.
            (Some(mut idle), Some(conn)) if idle.sender.is_ready() => {
                idle.conn = Some(conn);
                upstream.put(idle, Instant::now());
            }
            // Still finishing a response: driven on a task of its own.
            (Some(idle), Some(conn)) => {
                spawn(conn);
                upstream.put(idle, Instant::now());
            }
            (Some(idle), None) => upstream.put(idle, Instant::now()),
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
    /// An answer on a connection that came from another downstream
    /// connection, after the upstream answered out of step: it may be that
    /// one's late answer, so it is not passed on.
    #[error("the upstream answers out of step; an answer on a shared connection was dropped")]
    OutOfStep,
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
        let workers = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_workers())
            .unwrap_or(1)
            .max(1);
        Arc::new(H1Upstream {
            addr: format!("{host}:{port}"),
            connect_timeout,
            idle_timeout,
            pool: Mutex::new(Pool::default()),
            open: AtomicUsize::new(0),
            cap: PER_WORKER * workers,
            waiting: AtomicUsize::new(0),
            freed_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            unshared: AtomicBool::new(false),
            desyncs: OnceLock::new(),
        })
    }

    /// Count the connections whose responses come out of step in `counter`.
    pub fn count_desyncs(&self, counter: Counter) {
        let _ = self.desyncs.set(counter);
    }

    /// A connection's responses came out of step with its requests (`e`): the
    /// upstream answers in a way no client may share. From now on each
    /// downstream connection keeps its own upstream connection, however many
    /// there are, and it is closed with it (never pooled for the next), so a
    /// shifted answer can only reach the client whose exchange shifted it.
    #[cold]
    #[inline(never)]
    fn out_of_step(&self, e: &hyper::Error) {
        if let Some(c) = self.desyncs.get() {
            c.inc();
        }
        if self.unshared.swap(true, Ordering::AcqRel) {
            tracing::debug!(upstream = %self.addr, error = %e, "upstream answered out of step");
            return;
        }
        tracing::warn!(
            upstream = %self.addr,
            error = %e,
            "upstream answered out of step with its requests (a stray response, or bytes past \
             a response's end); its connections are no longer shared between client connections"
        );
        // Idle connections may carry a late answer for a client that left:
        // closed. Waiting requests open their own.
        let (idle, waiters) = {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            (
                std::mem::take(&mut pool.idle),
                std::mem::take(&mut pool.waiters),
            )
        };
        drop(idle);
        for w in waiters {
            let _ = w.hand(Freed::Room);
        }
    }

    /// Whether requests wait for a connection rather than open one: at the
    /// soft cap, unless connections are no longer shared.
    fn at_cap(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.cap && !self.unshared.load(Ordering::Relaxed)
    }

    fn core(self: &Arc<Self>) -> Arc<Core> {
        Arc::new(Core {
            upstream: self.clone(),
            slot: Mutex::new(Slot::default()),
        })
    }

    /// A slot for a new downstream connection.
    pub fn affinity(self: &Arc<Self>) -> Affinity {
        Affinity {
            core: self.core(),
            local: false,
            deadline: Deadline::default(),
        }
    }

    /// A slot for a new downstream connection whose task also drives the
    /// upstream connection it uses (attached to `side`, if still free).
    pub fn affinity_on(self: &Arc<Self>, side: &mut SideSlot) -> Affinity {
        let core = self.core();
        let local = side.is_none();
        if local {
            *side = Some(core.clone());
        }
        Affinity {
            core,
            local,
            deadline: Deadline::default(),
        }
    }

    /// Whether connections should be shared rather than kept by downstream
    /// connections: at the soft cap, or with requests waiting.
    fn pressed(&self) -> bool {
        (self.open.load(Ordering::Relaxed) >= self.cap || self.waiting.load(Ordering::Relaxed) > 0)
            && !self.unshared.load(Ordering::Relaxed)
    }

    /// A connection was freed `now`, for waiters (see [`H1Upstream::idle_or_freed`]).
    fn progress(&self, now: Instant) {
        let since = now.saturating_duration_since(self.epoch);
        let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        self.freed_ms.store(ms, Ordering::Relaxed);
    }

    /// A connection closed: the first waiter may open one.
    fn closed(&self) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        self.progress(Instant::now());
        self.give_room();
    }

    /// The first waiter may open a connection.
    fn give_room(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(w) = pool.waiters.pop_front() {
            if w.hand(Freed::Room).is_ok() {
                break;
            }
        }
    }

    /// Whether an idle connection may still be used (upstreams close idle ones).
    fn fresh(&self, idle: &Idle) -> bool {
        self.fresh_at(idle, Instant::now())
    }

    fn fresh_at(&self, idle: &Idle, now: Instant) -> bool {
        !idle.sender.is_closed() && now.saturating_duration_since(idle.since) < self.idle_timeout
    }

    /// A connection free for a request `now`: to the first waiter (who takes
    /// it at once, so fresh), else to the pool. Once the upstream answered out
    /// of step, closed instead: a connection serves one downstream connection.
    fn put(&self, idle: Idle, now: Instant) {
        if !self.fresh_at(&idle, now) || self.unshared.load(Ordering::Relaxed) {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let mut idle = idle;
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.progress(now);
            while let Some(w) = pool.waiters.pop_front() {
                match w.hand(Freed::Conn(idle)) {
                    Ok(()) => return,
                    Err(Freed::Conn(back)) => idle = back,
                    Err(Freed::Room) => return,
                }
            }
        }
        // The oldest is checked once per put: stale ones leave over time.
        let stale = if pool.idle.first().is_some_and(|i| !self.fresh_at(i, now)) {
            Some(pool.idle.remove(0))
        } else {
            None
        };
        let extra = if pool.idle.len() < MAX_IDLE.max(self.cap) {
            pool.idle.push(idle);
            None
        } else {
            Some(idle)
        };
        drop(pool);
        // Closed (if any) outside the lock.
        drop((stale, extra));
    }

    /// The most recently used idle connection that is ready. Connections still
    /// finishing a response (put back early by HTTP/2 clients) stay for later.
    fn take_locked(&self, pool: &mut Pool) -> Option<(SendRequest<Body>, Option<Conn>)> {
        loop {
            let i = pool.idle.iter().rposition(|i| i.sender.is_ready())?;
            let idle = pool.idle.remove(i);
            if self.fresh(&idle) {
                return Some((idle.sender, idle.conn));
            }
        }
    }

    /// The most recently used idle connection that is ready; else, at the
    /// soft cap, wait (first come, first served) for a connection to be freed.
    /// None says to open one: below the cap, or when there is room, when none
    /// has been freed for [`STALL`], or after [`MAX_WAIT`] ([`watch`] decides the
    /// last two, with one timer for all the waiters). `slot`: the waiting
    /// request's downstream connection sends one request at a time, and is
    /// handed the connection there.
    async fn idle_or_freed(
        self: &Arc<Self>,
        slot: Option<&Arc<Core>>,
    ) -> Option<(SendRequest<Body>, Option<Conn>)> {
        /// Counted in `waiting` until dropped; a slot stops waiting then.
        struct Waiting<'a>(&'a H1Upstream, Option<&'a Core>);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.waiting.fetch_sub(1, Ordering::AcqRel);
                // Handed but never taken (the request was dropped): passed on.
                match self.1.and_then(Core::stop_waiting) {
                    Some(Freed::Conn(idle)) => self.0.put(idle, Instant::now()),
                    Some(Freed::Room) => self.0.give_room(),
                    None => {}
                }
            }
        }
        let rx;
        {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = self.take_locked(&mut pool) {
                return Some(found);
            }
            if !self.at_cap() {
                return None;
            }
            let now = Instant::now();
            if self.waiting.fetch_add(1, Ordering::AcqRel) == 0 {
                // The first waiter: the stall is measured from now.
                self.progress(now);
            }
            let to = match slot {
                Some(core) => {
                    // Lock order: the pool, then a slot.
                    let mut s = core.slot.lock().unwrap_or_else(PoisonError::into_inner);
                    s.waiting = true;
                    s.handed = None;
                    rx = None;
                    HandTo::Slot(core.clone())
                }
                None => {
                    let (tx, r) = oneshot::channel();
                    rx = Some(r);
                    HandTo::Chan(tx)
                }
            };
            pool.waiters.push_back(Waiter { since: now, to });
            if !pool.watched {
                pool.watched = true;
                tokio::spawn(watch(Arc::downgrade(self)));
            }
        }
        let _waiting = Waiting(self, slot.map(|c| &**c));
        let freed = match (slot, rx) {
            (Some(core), _) => Some(core.handed().await),
            (None, Some(rx)) => rx.await.ok(),
            (None, None) => None,
        };
        // A connection handed over was fresh when it was freed, just now.
        match freed {
            Some(Freed::Conn(idle)) if !idle.sender.is_closed() => Some((idle.sender, idle.conn)),
            _ => None,
        }
    }

    /// What [`watch`] does on each tick at `now`, `late` when the tick came
    /// late (a worker too busy to run it frees nothing either, so that is no
    /// stall): waiters that may open a connection anyway are told so. False
    /// when nobody waits (the watch ends).
    fn tick(&self, now: Instant, late: bool) -> bool {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.waiters.is_empty() {
            pool.watched = false;
            return false;
        }
        if late {
            self.progress(now);
        }
        let freed = self.epoch + Duration::from_millis(self.freed_ms.load(Ordering::Relaxed));
        // Nothing freed for `STALL` since the first waiter came: every
        // connection is busy with a slow response, so all of them may open one.
        let stalled = pool
            .waiters
            .front()
            .is_some_and(|w| now.saturating_duration_since(w.since.max(freed)) >= STALL);
        while let Some(w) = pool.waiters.front() {
            if !stalled && now.saturating_duration_since(w.since) < MAX_WAIT {
                break;
            }
            if let Some(w) = pool.waiters.pop_front() {
                let _ = w.hand(Freed::Room);
            }
        }
        true
    }

    async fn connect(self: &Arc<Self>) -> Result<(SendRequest<Body>, Conn), SendError> {
        let open = OpenSlot::new(self);
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
        Ok((sender, Box::pin(Counted { inner: conn, open })))
    }
}

impl Affinity {
    fn upstream(&self) -> &Arc<H1Upstream> {
        &self.core.upstream
    }

    /// The downstream connection's request timer, for requests sent one at
    /// a time (an HTTP/1 downstream connection).
    pub fn deadline(&self) -> &Deadline {
        &self.deadline
    }

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
            let upstream = self.upstream();
            let mut slot = self
                .core
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Once the upstream answered out of step, a connection that came
            // from another downstream connection is not used again: a late
            // answer of that one's may still arrive on it.
            let stale = |i: &Idle| {
                !upstream.fresh(i) || (i.crossed && upstream.unshared.load(Ordering::Relaxed))
            };
            let usable = slot
                .held
                .as_ref()
                .is_some_and(|i| !stale(i) && (sequential || i.sender.is_ready()));
            // A stale held connection is dropped; a busy one (HTTP/2) stays.
            if usable || slot.held.as_ref().is_some_and(stale) {
                slot.held
                    .take()
                    .filter(|_| usable)
                    .map(|i| (i.sender, i.crossed))
            } else {
                None
            }
        };
        // Only an HTTP/1 downstream connection's task drives its upstream
        // connection (over HTTP/2 each request runs on a task of its own).
        let local = (self.local && sequential).then_some(&*self.core);
        // Another connection: an idle one, or at the soft cap one freed for
        // this request, or a new one. The paths that connect are boxed: rare,
        // and this future stays small (every future around it is moved on
        // each request).
        // `crossed`: it came from another downstream connection.
        let (mut sender, reused, mut crossed) = match held {
            Some((s, crossed)) => (s, true, crossed),
            None => match self
                .upstream()
                .idle_or_freed(sequential.then_some(&self.core))
                .await
            {
                Some((s, conn)) => {
                    adopt(local, conn);
                    (s, true, true)
                }
                None => (Box::pin(self.connect_adopting(local)).await?, false, false),
            },
        };
        if reused && !sender.is_ready() {
            let ready = std::future::poll_fn(|cx| sender.poll_ready(cx)).await;
            if ready.is_err() {
                sender = Box::pin(self.connect_adopting(local)).await?;
                crossed = false;
            }
        }
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            // The retry keeps its new connection; the closed one is dropped.
            Err(mut e) => {
                self.check(e.error());
                return match (reused, e.take_message()) {
                    (true, Some(req)) => Box::pin(self.retry(local, req)).await,
                    _ => Err(SendError::Http(e.into_error())),
                };
            }
        };
        // The upstream answered out of step somewhere while this request was
        // in flight: an answer on a connection another client used may be
        // that client's. Dropped, with the connection.
        if crossed && self.upstream().unshared.load(Ordering::Acquire) {
            return Err(SendError::OutOfStep);
        }
        self.release(sender, crossed);
        Ok(resp)
    }

    /// A request failed with `e`: if its response came out of step, the
    /// upstream's connections are shared no more.
    fn check(&self, e: &hyper::Error) {
        if out_of_step(e) {
            self.upstream().out_of_step(e);
        }
    }

    /// Send `req`, which a reused connection closed before taking, on a new one.
    async fn retry(
        &self,
        local: Option<&Core>,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sender = self.connect_adopting(local).await?;
        let resp = sender
            .send_request(req)
            .await
            .inspect_err(|e| self.check(e))?;
        self.release(sender, false);
        Ok(resp)
    }

    async fn connect_adopting(&self, local: Option<&Core>) -> Result<SendRequest<Body>, SendError> {
        let (sender, conn) = self.upstream().connect().await?;
        adopt(local, Some(conn));
        Ok(sender)
    }

    /// Keep the connection for this downstream connection's next request (it can
    /// only come once this response is complete); with HTTP/2 downstream several
    /// requests run at once, and the extras go to the shared pool.
    fn release(&self, sender: SendRequest<Body>, crossed: bool) {
        let mut slot = self
            .core
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.held.is_none() {
            slot.held = Some(Idle::new(sender, crossed));
        } else {
            drop(slot);
            let idle = Idle::new(sender, crossed);
            let now = idle.since;
            self.upstream().put(idle, now);
        }
    }
}

/// Start driving the I/O of a connection about to be used: on the downstream
/// connection's task if `local`, else on a task of its own (unless one drives it already).
fn adopt(local: Option<&Core>, conn: Option<Conn>) {
    match (local, conn) {
        (Some(local), conn) => local.install(conn),
        (None, Some(conn)) => spawn(conn),
        (None, None) => {}
    }
}
