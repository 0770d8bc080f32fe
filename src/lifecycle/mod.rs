//! The process behind the `run`, `issuer` and `quickstart` commands: a runtime,
//! the app, signals, reloads (SIGHUP and the config watcher) and the drain at
//! the end.
//!
//! - `signals`: SIGTERM/SIGINT stop, SIGHUP reloads (set up in one place)
//! - `config_watch`: the config file watcher and its settle period
//! - `reload`: parse, validate, apply, and the log lines that say how it went

mod config_watch;
mod reload;
mod signals;

pub use signals::{Received, SignalError, Signals};

use crate::app::{App, Handle, Listeners, StartError};
use crate::config::Config;
use crate::supervisor::{ListenError, bind};
use config_watch::ConfigWatch;
use reload::{Trigger, reload};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Signal(#[from] SignalError),
}

/// One worker thread means a current-thread runtime: the same work without the
/// multi-thread scheduler's cross-thread wake-ups (a pinned sidecar's common case).
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all().build()
}

/// The `run` command (`issuer_only`: the `issuer` command) until a stop signal.
pub fn run(path: &Path, config: Config, issuer_only: bool) -> ExitCode {
    let rt = match runtime(config.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = if issuer_only {
        rt.block_on(serve_issuer(config))
    } else {
        rt.block_on(serve(path, config))
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}

/// `issuer --migrate-only`: apply the store's pending schema migrations
/// (under the PostgreSQL advisory lock, so replicas starting meanwhile wait)
/// and exit.
pub fn migrate_only(config: &Config) -> ExitCode {
    let Some(spec) = config.issuer.as_ref() else {
        eprintln!("error: {}", StartError::NoIssuer);
        return ExitCode::from(2);
    };
    let migrated = runtime(Some(1))
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(crate::issuer::store::migrate(spec))
                .map_err(|e| e.to_string())
        });
    match migrated {
        Ok(version) => {
            tracing::info!(version, "store schema up to date");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run until SIGTERM/SIGINT; reload on SIGHUP and when the config file changes
/// (once it has settled), then [`drain`].
async fn serve(path: &Path, config: Config) -> Result<(), ServeError> {
    let listeners = Listeners::bind(&config).await?;
    let (stop, stopped) = watch::channel(false);
    let handle = App::spawn(config, listeners, stopped).await?;
    let mut signals = Signals::stop_and_reload()?;
    let mut config_watch = ConfigWatch::start(path);
    loop {
        tokio::select! {
            received = signals.next() => match received {
                Received::Stop => break,
                Received::Reload => {
                    config_watch.reset();
                    reload(path, None, &handle, Trigger::Sighup).await;
                }
            },
            settled = config_watch.settled() => match settled {
                Ok(text) => reload(path, Some(text), &handle, Trigger::Watch).await,
                Err(why) => {
                    tracing::error!(trigger = Trigger::Watch.as_str(), error = %why, "reload refused; the running configuration is kept");
                    handle.reload_failed().await;
                }
            },
        }
    }
    drain(handle, stop).await;
    Ok(())
}

/// `/readyz` turns 503 at once, new connections are still accepted for
/// `drain_grace` (load balancers and kube-proxy catch up), then listeners
/// stop accepting and in-flight requests get `drain_timeout`.
async fn drain(handle: Handle, stop: watch::Sender<bool>) {
    let limits = handle.limits().await;
    let (grace, drain) = (limits.drain_grace, limits.drain_timeout);
    handle.set_draining();
    tracing::info!(
        drain_grace_s = grace.as_secs_f64(),
        drain_timeout_s = drain.as_secs_f64(),
        "draining: /readyz is 503; new connections accepted for the grace period"
    );
    tokio::time::sleep(grace).await;
    tracing::info!("no new connections; waiting for in-flight requests");
    let _ = stop.send(true);
    if tokio::time::timeout(drain + Duration::from_secs(1), handle.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within the drain timeout");
    }
    tracing::info!("stopped");
}

async fn serve_issuer(config: Config) -> Result<(), ServeError> {
    let spec = config.issuer.as_ref().ok_or(StartError::NoIssuer)?;
    let listener = bind(spec.listen, "issuer").await?;
    let (stop, stopped) = watch::channel(false);
    let task = App::spawn_issuer(&config, listener, stopped).await?;
    Signals::stop()?.next().await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(config.drain_timeout + Duration::from_secs(1), task).await;
    tracing::info!("stopped");
    Ok(())
}

/// The `quickstart` command until a stop signal (or until it fails).
pub fn quickstart(ephemeral: bool) -> ExitCode {
    let result = runtime(None).map_err(|e| e.to_string()).and_then(|rt| {
        rt.block_on(async {
            let (stop, stopped) = watch::channel(false);
            let mut run = tokio::spawn(crate::quickstart::run(ephemeral, stopped));
            let signal = async {
                Signals::stop()?.next().await;
                Ok::<_, SignalError>(())
            };
            tokio::select! {
                r = signal => r.map_err(|e| e.to_string())?,
                done = &mut run => {
                    return done
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                }
            }
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), run).await;
            Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
