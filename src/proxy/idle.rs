//! Bodies that give up when the peer stops sending: an upstream that stalls in
//! the middle of a response, or an app that stalls in the middle of an upload,
//! must not hold two connections forever.
//!
//! The timer is armed only while the body is waiting for data, so a small body
//! that is already buffered (the common case) costs no timer at all.

use http_body::{Body, Frame, SizeHint};
use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn StdError + Send + Sync>;

/// `inner`, failing once no frame has arrived for `timeout`.
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    /// Allocated on the first wait, then reset for later ones.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The client's request body: its errors are [`ClientBody`] errors.
    from_client: bool,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: None,
            armed: false,
            from_client: false,
        }
    }

    /// A client's request body: whatever ends it early (bad framing, a
    /// stall) is the client's fault, and says so ([`ClientBody`]), so an
    /// upstream exchange that fails on it is not blamed on the upstream.
    pub fn from_client(inner: B, timeout: Duration) -> Self {
        IdleTimeout {
            from_client: true,
            ..IdleTimeout::new(inner, timeout)
        }
    }

    fn fail(&self, e: BoxError, stalled: bool) -> BoxError {
        match self.from_client {
            true => Box::new(ClientBody { stalled, source: e }),
            false => e,
        }
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct BodyIdle(Duration);

/// A client's request body ended early: it stalled, or its framing was bad.
#[derive(Debug, thiserror::Error)]
#[error("the request body {}", if *.stalled { "stalled" } else { "is malformed" })]
pub struct ClientBody {
    pub stalled: bool,
    #[source]
    source: BoxError,
}

impl ClientBody {
    /// The client body failure somewhere in `e`'s chain of causes, if any.
    pub fn in_chain<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a ClientBody> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<ClientBody>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|f| f.map_err(|e| this.fail(e.into(), false))));
        }
        if !this.armed {
            let deadline = Instant::now() + this.timeout;
            match &mut this.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.armed = true;
        }
        match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                Poll::Ready(Some(Err(this.fail(BodyIdle(this.timeout).into(), true))))
            }
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
