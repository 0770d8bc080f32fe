//! Watching the config file: a change is applied once the file has settled
//! (same bytes, no write event, for [`SETTLE`]), so an editor that rewrites it
//! in place, or a tool that writes it in several steps, is not caught half way.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the config file must stay unchanged before it is applied.
const SETTLE: Duration = Duration::from_secs(1);
/// How often a settling config file is read again.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// A config file larger than this is refused rather than read.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Why the config file's bytes could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: String },
}

/// The config file's watch, and a change waiting to settle.
pub struct ConfigWatch {
    path: PathBuf,
    changed: mpsc::UnboundedReceiver<()>,
    /// Held for as long as the watch runs: dropping it stops the watch.
    _watcher: Option<notify::RecommendedWatcher>,
    settling: Option<Settling>,
}

/// A changed config file waiting to settle.
struct Settling {
    content: Result<Vec<u8>, ReadError>,
    /// When the content (or a write event) last changed.
    since: Instant,
    next_check: Instant,
}

impl ConfigWatch {
    /// Watch `path` (a failure to watch is logged; SIGHUP still reloads).
    pub fn start(path: &Path) -> Self {
        let (tx, changed) = mpsc::unbounded_channel();
        ConfigWatch {
            path: path.to_path_buf(),
            changed,
            _watcher: watch_config(path, tx),
            settling: None,
        }
    }

    /// Forget a change waiting to settle (a SIGHUP reads the file anyway).
    pub fn reset(&mut self) {
        self.settling = None;
    }

    /// The file's content once a change has settled, or why it cannot be
    /// read. A cancel may lose a change not read yet: cancel it only to stop,
    /// or for a SIGHUP (which reads the file anyway).
    pub async fn settled(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            let check_at = self.settling.as_ref().map(|s| s.next_check);
            tokio::select! {
                Some(()) = self.changed.recv() => {
                    while self.changed.try_recv().is_ok() {}
                    let now = Instant::now();
                    match &mut self.settling {
                        // Written again: the settle period starts over.
                        Some(s) => s.since = now,
                        None => {
                            let content = read_config(&self.path).await;
                            self.settling = Some(Settling {
                                content,
                                since: now,
                                next_check: now + SETTLE_POLL,
                            });
                        }
                    }
                }
                () = tokio::time::sleep_until(check_at.unwrap_or_else(Instant::now)), if check_at.is_some() => {
                    if let Some(content) = self.check().await {
                        return content;
                    }
                }
                // No watch and nothing settling: only a signal ends the wait.
                else => std::future::pending::<()>().await,
            }
        }
    }

    /// Read the settling file again: its content once it has not changed
    /// for [`SETTLE`].
    async fn check(&mut self) -> Option<Result<Vec<u8>, ReadError>> {
        let now = Instant::now();
        let content = read_config(&self.path).await;
        let s = self.settling.as_mut()?;
        if content != s.content {
            s.content = content;
            s.since = now;
        }
        if now.duration_since(s.since) < SETTLE {
            s.next_check = now + SETTLE_POLL;
            return None;
        }
        self.settling.take().map(|s| s.content)
    }
}

/// The config file's bytes (bounded), or why not.
async fn read_config(path: &Path) -> Result<Vec<u8>, ReadError> {
    use tokio::io::AsyncReadExt as _;
    let unreadable = |e: std::io::Error| ReadError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let mut text = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .await
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ReadError::TooLarge {
            path: path.display().to_string(),
        });
    }
    Ok(text)
}

/// Watch the config file's directory (a ConfigMap swaps its `..data` symlink;
/// editors replace the file); each relevant event sends `()`.
fn watch_config(
    path: &Path,
    changed: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_owned();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        let relevant = ev.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|f| f == name.as_os_str() || f == "..data")
        });
        if relevant {
            let _ = changed.send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads"))
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; SIGHUP still reloads"))
        .ok()?;
    Some(watcher)
}
