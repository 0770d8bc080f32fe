//! A reload asked for by SIGHUP or by the config watcher: parse, validate,
//! apply; a config that fails keeps the running one.

use crate::app::Handle;
use crate::config::{self, Config};
use std::path::Path;

/// What asked for a reload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The operator's SIGHUP: the file is read at once and applied as it is.
    Sighup,
    /// The watched file changed: applied once it has settled, and never when
    /// it would remove every listener.
    Watch,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Sighup => "SIGHUP",
            Trigger::Watch => "config file changed",
        }
    }
}

/// Parse → validate → apply (`text`: the file's bytes as already read, else
/// read now); a config that fails keeps the running one.
pub async fn reload(path: &Path, text: Option<Vec<u8>>, handle: &Handle, trigger: Trigger) {
    let why = trigger.as_str();
    let started = std::time::Instant::now();
    let loaded = match &text {
        Some(t) => config::load_file_text(path, t),
        None => config::load_file(path),
    };
    let new = match loaded {
        Ok(new) => new,
        Err(errors) => {
            for issue in &errors.0 {
                tracing::error!(trigger = why, problem = %issue, "invalid configuration");
            }
            tracing::error!(
                trigger = why,
                problems = errors.0.len(),
                "reload refused; the running configuration is kept"
            );
            handle.reload_failed().await;
            return;
        }
    };
    if trigger == Trigger::Watch && removes_every_listener(handle, &new).await {
        // A truncated or emptied file parses as a config with no
        // listener: only an explicit SIGHUP may apply that.
        tracing::error!(
            trigger = why,
            "reload refused: the changed config file has no listener ([[outbound]], [forward_proxy], [inbound]) and would remove every running one; send SIGHUP to apply it anyway"
        );
        handle.reload_failed().await;
        return;
    }
    for w in &new.warnings {
        tracing::warn!(warning = %w, "config");
    }
    match handle.reload(new).await {
        Ok(changes) => tracing::info!(
            trigger = why,
            took_ms = started.elapsed().as_millis() as u64,
            changes = %if changes.is_empty() { "none".to_owned() } else { changes.join("; ") },
            "configuration reloaded"
        ),
        Err(e) => {
            tracing::error!(trigger = why, error = %e, "reload failed; the running configuration is kept")
        }
    }
}

/// Whether `new` has none of the proxy listeners (outbound, forward proxy,
/// inbound) while the running configuration has some.
async fn removes_every_listener(handle: &Handle, new: &Config) -> bool {
    let running = handle.addresses().await;
    let had = !running.outbound.is_empty()
        || running.forward_proxy.is_some()
        || running.inbound.is_some();
    let has = !new.outbound.is_empty() || new.forward_proxy.is_some() || new.inbound.is_some();
    had && !has
}
