//! Client secrets: read from a literal, the environment or a file, and a watcher
//! that notices a rotated secret file (Kubernetes swaps a `..data` symlink in the
//! mounted directory) so the next token request uses the new secret at once.

use crate::config::SecretSource;
use notify::{RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, watch};

/// Why a secret could not be read. Names the source, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("secret file {} is empty", .0.display())]
    FileEmpty(PathBuf),
    #[error("cannot read secret file {}: {}", .path.display(), .source.kind())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Read the secret now. Files are read on every call, so a rotation on disk is
/// always seen by the next token request even without a watch event.
pub fn read(source: &SecretSource) -> Result<String, SecretError> {
    match source {
        SecretSource::Literal(s) => Ok(s.to_string()),
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) => Err(SecretError::EnvEmpty(name.clone())),
            Err(_) => Err(SecretError::EnvUnset(name.clone())),
        },
        SecretSource::File(path) => match std::fs::read_to_string(path) {
            Ok(v) => {
                let v = v.trim_end();
                if v.is_empty() {
                    Err(SecretError::FileEmpty(path.clone()))
                } else {
                    Ok(v.to_owned())
                }
            }
            Err(source) => Err(SecretError::FileUnreadable {
                path: path.clone(),
                source,
            }),
        },
    }
}

/// One file to watch and whom to wake when its content changes.
pub struct Watched {
    pub path: PathBuf,
    pub on_change: Arc<Notify>,
}

/// Watch the directories holding `files`; when a file's content changes, wake its
/// credential. Returns once `shutdown` fires. Errors setting up a watch are logged:
/// files are re-read on every token request anyway.
pub async fn watch_files(files: Vec<Watched>, mut shutdown: watch::Receiver<bool>) {
    if files.is_empty() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch secret files; rotation is seen at the next refresh");
            return;
        }
    };
    // A bare file name has the empty path as parent: that is the working directory.
    let mut dirs: Vec<&Path> = files
        .iter()
        .filter_map(|f| f.path.parent())
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch secret directory");
        }
    }
    let mut last: HashMap<PathBuf, u64> = files
        .iter()
        .map(|f| (f.path.clone(), digest(&f.path)))
        .collect();
    loop {
        tokio::select! {
            ev = rx.recv() => if ev.is_none() { return },
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
        // Drain the burst a symlink swap makes, then compare contents once.
        while rx.try_recv().is_ok() {}
        for f in &files {
            let now = digest(&f.path);
            if last.insert(f.path.clone(), now) != Some(now) {
                tracing::info!(file = %f.path.display(), "client secret file changed; refreshing");
                f.on_change.notify_one();
            }
        }
    }
}

/// A cheap fingerprint of a file's content (0 when unreadable); never logged.
fn digest(path: &Path) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    match std::fs::read(path) {
        Ok(bytes) => bytes.hash(&mut h),
        Err(_) => return 0,
    }
    h.finish()
}
