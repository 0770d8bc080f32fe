//! The one bounded wait of the test suite: retry a check until it holds, or
//! fail naming what was awaited and what was last seen. No test sleeps to
//! synchronise; every wait goes through [`until`].

use std::fmt::Display;
use std::time::Duration;

/// How long a test waits for anything (a listener, a reload, a log line)
/// before it fails.
pub const LONG: Duration = Duration::from_secs(20);

/// The first pause between two tries of a check; each pause doubles, up to
/// [`MAX_STEP`]: a wait that ends soon is noticed soon, and a long one does
/// not load a busy machine with checks (each may be an HTTP request).
const FIRST_STEP: Duration = Duration::from_millis(10);
const MAX_STEP: Duration = Duration::from_millis(100);

/// What a check reports: done (with a value), or not yet (with what it saw).
pub trait Outcome {
    type Value;
    fn done(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn done(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("not yet".into()) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".into())
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Run `check` until it is done (pausing 10 ms, then twice as long each time,
/// at most 100 ms), for at most `limit`; its value.
/// On timeout, panic with `what` was awaited and the last thing `check` saw.
pub async fn until<O: Outcome>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> O,
) -> O::Value {
    let deadline = tokio::time::Instant::now() + limit;
    let mut step = FIRST_STEP;
    loop {
        let last = match check().await.done() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last seen: {last}"
        );
        tokio::time::sleep(step).await;
        step = (step * 2).min(MAX_STEP);
    }
}
