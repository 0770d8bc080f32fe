//! Wall-clock time as the protocols count it: Unix seconds (JWT NumericDate,
//! metric timestamps, "not before" marks).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch (zero if the clock is set before 1970).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Whole Unix seconds now.
pub fn unix_now() -> u64 {
    since_epoch().as_secs()
}
