//! The innermost cause of an error chain, for log lines and error bodies:
//! "Connection refused (os error 111)" rather than a wrapper that repeats the URL.

/// The text of the last error in `e`'s `source()` chain.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
