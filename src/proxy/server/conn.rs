//! How long a client connection may stay open without a request in progress.
//!
//! hyper applies `header_read_timeout` to HTTP/1 request heads only once it
//! knows the connection is HTTP/1: hyper-util's auto builder first reads up to
//! 24 bytes to tell HTTP/1 from the HTTP/2 preface, with no timer, and hyper's
//! HTTP/2 server has none for a connection that opened no stream (or whose
//! streams have all ended). So each connection gets one timer here, driven
//! beside the connection future:
//!
//! - until its first request head has been received whole, the connection may
//!   live `header_read_timeout` from its accept (nothing sent, part of the
//!   HTTP/2 preface, the preface and SETTINGS, PINGs, a half-sent head): then
//!   it is closed;
//! - afterwards, once no request is in progress (every response sent whole or
//!   abandoned, no tunnel open) for `idle_timeout`, it is shut down gracefully
//!   (HTTP/2: GOAWAY) and closed if it is still idle [`GRACE`] later.
//!
//! The hot path pays an `Arc` clone and two atomic operations per request (and
//! one clock read when the connection goes idle); the timer is per connection
//! and only re-armed when it fires.

use http_body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// After a graceful shutdown, how long a still idle connection may take to
/// close by itself (an HTTP/2 client answers the GOAWAY's PING) before it is
/// closed.
pub const GRACE: Duration = Duration::from_secs(1);

/// What one connection is doing, shared by its requests and its driver.
pub struct Activity {
    accepted: Instant,
    /// Requests whose answer is not sent whole yet, and open tunnels.
    active: AtomicUsize,
    /// When `active` last fell to zero, in milliseconds since `accepted`;
    /// [`NEVER`] until a first request has ended (with `active` at zero: no
    /// request head was ever received whole).
    idle_since_ms: AtomicU64,
    /// The deadline of hyper's request-head timer ([`HeadTimer`]), in
    /// milliseconds since `accepted` (rounded up); [`NEVER`] when none runs.
    head_deadline_ms: AtomicU64,
    /// Who waits on the request-head timer.
    head_waker: Mutex<Option<Waker>>,
    /// Response bodies being sent, frames they have handed on (a counter, no
    /// clock on the hot path), whether the last one is waiting for its source
    /// (the upstream: its own `body_idle_timeout` applies), and the frame count
    /// the driver saw at its last check. A client that stops reading stops
    /// hyper from taking frames: with a body ready and no frame taken over a
    /// whole `idle_timeout`, the connection is closed.
    sending: AtomicUsize,
    frames: AtomicU64,
    source_waits: AtomicBool,
    frames_seen: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            accepted: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(NEVER),
            head_deadline_ms: AtomicU64::new(NEVER),
            head_waker: Mutex::new(None),
            sending: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            source_waits: AtomicBool::new(false),
            frames_seen: AtomicU64::new(0),
        })
    }

    /// When the connection was accepted.
    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// A request (or tunnel) in progress until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn millis_since_accept(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).map_or(NEVER - 1, |ms| ms.min(NEVER - 1))
    }

    /// A request-head timer runs until `deadline`; `waker` is woken once it has passed.
    fn watch_head(&self, deadline: Instant, waker: &Waker) {
        let ms = deadline
            .saturating_duration_since(self.accepted)
            .as_micros()
            .div_ceil(1000);
        let ms = u64::try_from(ms).map_or(NEVER - 1, |ms| ms.min(NEVER - 1));
        self.head_deadline_ms.store(ms, Ordering::Relaxed);
        let mut slot = self
            .head_waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// The request-head timer's deadline if it is still ahead of `now`; one
    /// that has passed has its waiter woken.
    fn head_due(&self, now: Instant) -> Option<Instant> {
        let ms = self.head_deadline_ms.load(Ordering::Relaxed);
        if ms == NEVER {
            return None;
        }
        let at = self.accepted + Duration::from_millis(ms);
        if now < at {
            return Some(at);
        }
        let slot = self
            .head_waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = slot.as_ref() {
            w.wake_by_ref();
        }
        None
    }

    /// What the driver does when its timer fires at `now`.
    fn check(&self, now: Instant, timeouts: Timeouts, shutting: bool) -> Verdict {
        if self.active.load(Ordering::Acquire) > 0 {
            // A response the client has not taken a frame of since the last
            // check, with nothing waiting on the upstream: the client stopped
            // reading. Close, or it holds this and an upstream connection.
            let frames = self.frames.load(Ordering::Relaxed);
            let seen = self.frames_seen.swap(frames, Ordering::Relaxed);
            if self.sending.load(Ordering::Relaxed) > 0
                && frames == seen
                && !self.source_waits.load(Ordering::Relaxed)
            {
                return Verdict::Close;
            }
            // Busy: look again later (one wake-up per idle_timeout).
            return Verdict::Wait(now + timeouts.idle);
        }
        if shutting {
            return Verdict::Close;
        }
        let idle_since_ms = self.idle_since_ms.load(Ordering::Relaxed);
        if idle_since_ms == NEVER {
            let deadline = self.accepted + timeouts.first_request;
            return if now >= deadline {
                Verdict::Close
            } else {
                Verdict::Wait(deadline)
            };
        }
        let idle_since = self.accepted + Duration::from_millis(idle_since_ms);
        let deadline = idle_since + timeouts.idle;
        if now >= deadline {
            Verdict::Shutdown
        } else {
            Verdict::Wait(deadline)
        }
    }
}

/// Keeps its connection in use while alive.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // The time first, so a driver that sees zero reads a fresh one.
        a.idle_since_ms
            .store(a.millis_since_accept(), Ordering::Relaxed);
        a.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in progress until it is sent whole
/// (or dropped).
pub struct Tracked<B> {
    inner: B,
    /// Dropped last: the request ends once its body is gone.
    in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        in_flight.0.sending.fetch_add(1, Ordering::Relaxed);
        // A new response: its first frames are not a stall.
        in_flight.0.frames.fetch_add(1, Ordering::Relaxed);
        Tracked { inner, in_flight }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.in_flight.0.sending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let activity = &this.in_flight.0;
        let waits = polled.is_pending();
        if activity.source_waits.load(Ordering::Relaxed) != waits {
            activity.source_waits.store(waits, Ordering::Relaxed);
        }
        if !waits {
            activity.frames.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// hyper's HTTP/1 timer for one connection, which it uses only for the
/// request-head timeout (`header_read_timeout`, armed for each request head,
/// including while a keep-alive connection waits for the next). Its sleeps
/// register no runtime timer: [`drive`]'s one timer per connection wakes them.
/// That timer never runs later than `first_request` (the same duration) after
/// it was set, and a head timer set later ends later still; when it fires, it
/// wakes an overdue head timer and is set again, for the head timer's deadline
/// at the latest.
#[derive(Clone)]
pub struct HeadTimer(Arc<Activity>);

impl HeadTimer {
    pub fn new(activity: Arc<Activity>) -> Self {
        HeadTimer(activity)
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep {
            deadline: Instant::from_std(deadline),
            activity: self.0.clone(),
        })
    }

    /// The runtime's clock (paused in tests), as the driver's timer reads it.
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

/// A request-head timer (see [`HeadTimer`]).
struct HeadSleep {
    deadline: Instant,
    activity: Arc<Activity>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        self.activity.watch_head(self.deadline, cx.waker());
        Poll::Pending
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.activity
            .head_deadline_ms
            .store(NEVER, Ordering::Relaxed);
    }
}

/// The two limits a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the accept until the first request head is received whole.
    pub first_request: Duration,
    /// With no request in progress, after the first.
    pub idle: Duration,
}

enum Verdict {
    Wait(Instant),
    Shutdown,
    Close,
}

/// A connection [`drive`] can shut down gracefully: hyper-util's (the auto
/// builder's, for HTTP/2 or a protocol not told yet) or hyper's own HTTP/1
/// connection with upgrades, which hyper-util's trait does not cover.
pub trait Graceful: Future<Output = Result<(), Self::Error>> {
    type Error;
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S, E> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    Self: GracefulConnection,
{
    type Error = <Self as GracefulConnection>::Error;

    fn shut_down(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

impl<I, B, S> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Error = hyper::Error;

    fn shut_down(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Work a handler runs on its downstream connection's own task: the upstream
/// HTTP/1 connection a sequential (HTTP/1) downstream connection uses, so a
/// request and its response cost no wake-up of another task. [`drive`] polls
/// it beside the downstream connection, whenever a waker it registered fires.
pub trait Side: Send + Sync + 'static {
    /// Make progress; register `cx`'s waker for what it waits on.
    fn poll_side(&self, cx: &mut Context<'_>);
}

/// The [`Side`] a handler attaches to a new connection, if any (see
/// [`Handler::connection_on`](super::Handler::connection_on)).
pub type SideSlot = Option<Arc<dyn Side>>;

/// What the two halves [`drive`] polls share: the task's waker, and whether
/// the driver is inside its poll (then a wake-up need not reschedule the task:
/// the driver looks at the flags again before it returns).
struct Shared {
    polling: AtomicBool,
    task: Waker,
}

/// A waker for one half (the connection or its side): says that half has
/// something to do.
struct Half {
    woken: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for Half {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.shared.polling.load(Ordering::SeqCst) {
            self.shared.task.wake_by_ref();
        }
    }
}

/// The wakers of one task's two halves.
struct Halves {
    shared: Arc<Shared>,
    conn: Arc<Half>,
    conn_waker: Waker,
    side: Arc<Half>,
    side_waker: Waker,
}

impl Halves {
    /// Both halves due for a first poll.
    fn new(task: &Waker) -> Self {
        let shared = Arc::new(Shared {
            polling: AtomicBool::new(false),
            task: task.clone(),
        });
        let half = || {
            Arc::new(Half {
                woken: AtomicBool::new(true),
                shared: shared.clone(),
            })
        };
        let (conn, side) = (half(), half());
        Halves {
            conn_waker: Waker::from(conn.clone()),
            side_waker: Waker::from(side.clone()),
            conn,
            side,
            shared,
        }
    }
}

/// Rounds of polling the two halves in one poll of [`drive`] (a request the
/// connection hands to its side, then the side's answer), before it yields.
const ROUNDS: usize = 4;

/// Drive `conn` to its end: shut it down gracefully when `stop` changes (the
/// listener stops), and apply `timeouts` to it through `activity`. Dropping
/// `conn` closes the socket. `side`, if any, is polled on the same task.
///
/// Cheap per wake-up: the connection and its side are each polled only when a
/// waker they registered fired (their own wakers, flags on this task's); the
/// stop signal and the timer are polled once to register this task's waker
/// (and again after the timer is reset); later wake-ups only look at them (an
/// atomic load each). That relies on the waker staying the same, which holds
/// for a future that is its task's whole body: spawn it, do not nest it in a
/// combinator that changes wakers.
pub async fn drive<C>(
    conn: C,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    stop: watch::Receiver<()>,
    side: SideSlot,
) -> Result<(), C::Error>
where
    C: Graceful,
{
    let mut conn = std::pin::pin!(conn);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(
        activity.accepted + timeouts.first_request
    ));
    let mut timer_registered = false;
    let mut watching = stop.clone();
    let mut stop_changed = std::pin::pin!(watching.changed());
    let mut stop_registered = false;
    let (mut stopping, mut shutting) = (false, false);
    let mut halves: Option<Halves> = None;
    std::future::poll_fn(move |cx| {
        let h = match &mut halves {
            Some(h) if h.shared.task.will_wake(cx.waker()) => h,
            // First poll (or a new task waker): poll both halves afresh.
            slot => slot.insert(Halves::new(cx.waker())),
        };
        h.shared.polling.store(true, Ordering::SeqCst);
        loop {
            for _ in 0..ROUNDS {
                // The side first: an answer it reads is written by the connection in the same pass.
                if let Some(side) = &side
                    && h.side.woken.swap(false, Ordering::SeqCst)
                {
                    side.poll_side(&mut Context::from_waker(&h.side_waker));
                }
                if h.conn.woken.swap(false, Ordering::SeqCst) {
                    let polled = conn.as_mut().poll(&mut Context::from_waker(&h.conn_waker));
                    if let Poll::Ready(done) = polled {
                        return Poll::Ready(done);
                    }
                }
                // A request the connection gave its side: sent in this pass.
                if side.is_none() || !h.side.woken.load(Ordering::SeqCst) {
                    break;
                }
            }
            if !stopping {
                // A dropped sender (the drain gave up) counts as a stop too.
                let stopped = if stop_registered {
                    stop.has_changed().unwrap_or(true)
                } else {
                    let ready = stop_changed.as_mut().poll(cx).is_ready();
                    stop_registered = !ready;
                    ready
                };
                if stopped {
                    stopping = true;
                    if !shutting {
                        shutting = true;
                        conn.as_mut().shut_down();
                        h.conn.woken.store(true, Ordering::SeqCst);
                        let now = Instant::now();
                        timer
                            .as_mut()
                            .reset(earliest(now + GRACE, activity.head_due(now)));
                        timer_registered = false;
                    }
                    continue;
                }
            }
            let fired = if timer_registered {
                timer.is_elapsed()
            } else {
                let ready = timer.as_mut().poll(cx).is_ready();
                timer_registered = !ready;
                ready
            };
            if !fired {
                // Wake-ups from now on reschedule the task; one that came
                // while polling already has, or is seen here.
                h.shared.polling.store(false, Ordering::SeqCst);
                if h.conn.woken.load(Ordering::SeqCst) || h.side.woken.load(Ordering::SeqCst) {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            let now = Instant::now();
            // An overdue request head: its timer (woken here) ends the connection.
            let head = activity.head_due(now);
            match activity.check(now, timeouts, shutting) {
                // Never later than `first_request` from now (see [`HeadTimer`]).
                Verdict::Wait(at) => timer
                    .as_mut()
                    .reset(earliest(at.min(now + timeouts.first_request), head)),
                Verdict::Shutdown => {
                    shutting = true;
                    conn.as_mut().shut_down();
                    h.conn.woken.store(true, Ordering::SeqCst);
                    timer.as_mut().reset(earliest(now + GRACE, head));
                }
                Verdict::Close => {
                    tracing::debug!("closing a connection with no request in progress");
                    return Poll::Ready(Ok(()));
                }
            }
            timer_registered = false;
        }
    })
    .await
}

fn earliest(at: Instant, head: Option<Instant>) -> Instant {
    head.map_or(at, |h| h.min(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_at_the_first_request_deadline() {
        let a = Activity::new();
        let now = Instant::now();
        assert!(matches!(a.check(now, T, false), Verdict::Wait(at) if at == now + T.first_request));
        assert!(matches!(
            a.check(now + T.first_request, T, false),
            Verdict::Close
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_keeps_the_connection() {
        let a = Activity::new();
        let guard = a.begin();
        let late = Instant::now() + Duration::from_secs(3600);
        assert!(matches!(a.check(late, T, false), Verdict::Wait(_)));
        assert!(matches!(a.check(late, T, true), Verdict::Wait(_)));
        drop(guard);
        // Idle from now on: shut down idle_timeout later, not before.
        let ended = Instant::now();
        assert!(
            matches!(a.check(ended, T, false), Verdict::Wait(at) if at >= ended + T.idle - Duration::from_millis(1))
        );
        tokio::time::advance(T.idle).await;
        assert!(matches!(
            a.check(Instant::now(), T, false),
            Verdict::Shutdown
        ));
        assert!(matches!(a.check(Instant::now(), T, true), Verdict::Close));
    }

    /// A body that never has anything: its source (the upstream) is stalled.
    struct Stalled;

    impl Body for Stalled {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_closed_a_stalled_upstream_is_not() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Frames ready, but hyper takes none (the client does not read).
        let a = Activity::new();
        let _body = Tracked::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"x")),
            a.begin(),
        );
        let now = Instant::now();
        assert!(matches!(a.check(now, T, false), Verdict::Wait(_)));
        assert!(matches!(a.check(now + T.idle, T, false), Verdict::Close));

        // A frame taken between two checks keeps it open.
        let a = Activity::new();
        let mut body = Tracked::new(
            http_body_util::StreamBody::new(futures_util::stream::iter((0..3).map(|_| {
                Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from_static(b"x")))
            }))),
            a.begin(),
        );
        assert!(matches!(a.check(now, T, false), Verdict::Wait(_)));
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_ready());
        assert!(matches!(a.check(now + T.idle, T, false), Verdict::Wait(_)));

        // Waiting for the upstream: its own body_idle_timeout applies, not this.
        let a = Activity::new();
        let mut body = Tracked::new(Stalled, a.begin());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(matches!(a.check(now, T, false), Verdict::Wait(_)));
        assert!(matches!(a.check(now + T.idle, T, false), Verdict::Wait(_)));
        assert!(matches!(
            a.check(now + T.idle * 2, T, false),
            Verdict::Wait(_)
        ));

        // Waiting for the response head (no body yet): never closed here.
        let a = Activity::new();
        let _request = a.begin();
        assert!(matches!(a.check(now, T, false), Verdict::Wait(_)));
        assert!(matches!(a.check(now + T.idle, T, false), Verdict::Wait(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_body_ends_its_request() {
        let a = Activity::new();
        let mut body = Tracked::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"x")),
            a.begin(),
        );
        assert_eq!(a.active.load(Ordering::Relaxed), 1);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert!(body.is_end_stream());
        assert_eq!(
            a.active.load(Ordering::Relaxed),
            1,
            "until the body is dropped"
        );
        drop(body);
        assert_eq!(a.active.load(Ordering::Relaxed), 0);
    }
}
