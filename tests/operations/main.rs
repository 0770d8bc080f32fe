//! Operating the sidecar as a platform team does: configuration reloads (SIGHUP
//! and a changed file) under steady traffic with no failed request, an invalid
//! reload that keeps the running config, SIGTERM under load (readiness first, no
//! request cut, exit 0), and the listener limits (slowloris, connection cap,
//! header size). The binary runs as a child process where signals matter.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod limits;
mod reload;
mod shutdown;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::config::{Cred, SECRET, SidecarConfig};
use support::echo::Echo;
use support::http::{client, until_status};
use support::process::Running;
use support::sidecar::Sidecar;
use support::token_server::TokenServer;
use support::{LONG, until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Replace `path` the way a ConfigMap update or an editor does: write a new
/// file beside it, then rename it over.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Requests in a loop until stopped: how many, and how many failed.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(url: String) -> Self {
        let stop: Arc<AtomicBool> = Arc::default();
        let (sent, failed): (Arc<AtomicU64>, Arc<AtomicU64>) = (Arc::default(), Arc::default());
        let (s, n, f) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            let c = client();
            while !s.load(Ordering::Relaxed) {
                let ok = matches!(c.get(&url).send().await, Ok(r) if r.status() == 200);
                n.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Traffic {
            stop,
            sent,
            failed,
            task,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Wait until `echo` has seen a request whose URI starts with `path_start`.
async fn until_seen(echo: &Echo, path_start: &str) {
    support::until(LONG, path_start, async || {
        echo.seen().iter().any(|s| s.uri.starts_with(path_start))
    })
    .await;
}

fn load(config: &SidecarConfig) -> m2m_sidecar::config::Config {
    m2m_sidecar::config::load_str(config.toml(), m2m_sidecar::config::Format::Toml).unwrap()
}
