//! One request timer per downstream connection instead of one per request.
//!
//! A timer registered and dropped for every request costs about 450
//! instructions (the timer wheel's lock, twice). An HTTP/1 connection sends
//! one request at a time, so one timer, kept registered, serves all of them:
//! moving it later is one atomic update (tokio notes the new deadline and
//! re-files the entry only when the old one comes due). So a busy connection
//! touches the wheel about once per `request_timeout`, not once per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The request timer of one downstream connection, for requests sent one at a time.
#[derive(Default)]
pub struct Deadline {
    /// Allocated on the first wait, then moved for later ones.
    sleep: Mutex<Option<Pin<Box<Sleep>>>>,
}

/// A request outlived its limit.
#[derive(Debug)]
pub struct Elapsed;

/// One request's view of its connection's [`Deadline`].
pub struct Timer<'a> {
    deadline: &'a Deadline,
    limit: Duration,
    armed: bool,
}

impl Deadline {
    /// The timer of one request, `limit` from its first wait.
    ///
    /// For one request at a time: a second request at once would move the
    /// first's deadline (each still gets at least its own `limit`, and at most
    /// the later one's).
    pub fn timer(&self, limit: Duration) -> Timer<'_> {
        Timer {
            deadline: self,
            limit,
            armed: false,
        }
    }
}

impl Timer<'_> {
    /// Ready once the request is past its limit; armed on the first call
    /// (call it when the request has to wait).
    pub fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<Elapsed> {
        let mut sleep = (self.deadline.sleep)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.armed {
            let due = Instant::now() + self.limit;
            match sleep.as_mut() {
                Some(s) => s.as_mut().reset(due),
                None => *sleep = Some(Box::pin(tokio::time::sleep_until(due))),
            }
            self.armed = true;
        }
        match sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Elapsed),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    impl Deadline {
        /// `fut`, unless it takes longer than `limit` (as `forward` uses it).
        async fn within<F: Future>(&self, limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
            let mut fut = pin!(fut);
            let mut timer = self.timer(limit);
            std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
                Poll::Ready(out) => Poll::Ready(Ok(out)),
                Poll::Pending => timer.poll_elapsed(cx).map(Err),
            })
            .await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_gets_its_own_limit_from_one_timer() {
        let d = Deadline::default();
        let limit = Duration::from_secs(10);
        // Answered in time, several times over more than one limit.
        for _ in 0..5 {
            let answered = d.within(limit, tokio::time::sleep(limit / 2)).await;
            assert!(answered.is_ok());
        }
        // A request that takes too long ends at its own limit, not an earlier one's.
        let start = Instant::now();
        let late = d.within(limit, std::future::pending::<()>()).await;
        assert!(late.is_err());
        assert_eq!(start.elapsed(), limit);
        // After it fired, the timer serves the next request again.
        assert!(d.within(limit, tokio::time::sleep(limit / 2)).await.is_ok());
        let start = Instant::now();
        assert!(d.within(limit, std::future::pending::<()>()).await.is_err());
        assert_eq!(start.elapsed(), limit);
    }
}
