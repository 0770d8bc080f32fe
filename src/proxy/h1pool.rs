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
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle upstream connections kept beyond those held by downstream connections.
const MAX_IDLE: usize = 64;

/// Where and how to connect, and the shared idle connections.
pub struct H1Upstream {
    /// `host:port` to connect to.
    addr: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

/// A connection not carrying a request, and since when.
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Idle {
    fn new(sender: SendRequest<Body>) -> Self {
        Idle {
            sender,
            since: Instant::now(),
        }
    }
}

/// The upstream connection one downstream connection is using.
pub struct Affinity {
    upstream: Arc<H1Upstream>,
    held: Mutex<Option<Idle>>,
}

impl Drop for Affinity {
    fn drop(&mut self) {
        let held = self
            .held
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(idle) = held {
            self.upstream.put(idle);
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
    fn take_idle(&self) -> Option<SendRequest<Body>> {
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        pool.retain(|i| self.fresh(i));
        let i = pool.iter().rposition(|i| i.sender.is_ready())?;
        Some(pool.remove(i).sender)
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| SendError::Connect(format!("timed out after {:?}", self.connect_timeout)))?
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
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
        let (mut sender, reused) = match held.or_else(|| self.upstream.take_idle()) {
            Some(s) => (s, true),
            None => (self.upstream.connect().await?, false),
        };
        if reused && sender.ready().await.is_err() {
            sender = self.upstream.connect().await?;
        }
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match (reused, e.take_message()) {
                (true, Some(req)) => {
                    sender = self.upstream.connect().await?;
                    sender.send_request(req).await?
                }
                _ => return Err(SendError::Http(e.into_error())),
            },
        };
        self.release(sender);
        Ok(resp)
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
