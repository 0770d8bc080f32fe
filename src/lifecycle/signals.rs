//! The signals a running process answers: SIGTERM and SIGINT stop it; SIGHUP,
//! where the command reloads, asks for a reload (elsewhere it keeps its
//! default action).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// A signal handler that could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot handle {signal}: {source}")]
pub struct SignalError {
    signal: &'static str,
    #[source]
    source: std::io::Error,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Stop,
    Reload,
}

pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
}

fn install(kind: SignalKind, name: &'static str) -> Result<Signal, SignalError> {
    signal(kind).map_err(|source| SignalError {
        signal: name,
        source,
    })
}

impl Signals {
    /// SIGTERM and SIGINT.
    pub fn stop() -> Result<Self, SignalError> {
        Ok(Signals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: None,
        })
    }

    /// SIGTERM and SIGINT, and SIGHUP for a reload.
    pub fn stop_and_reload() -> Result<Self, SignalError> {
        let mut signals = Self::stop()?;
        signals.hup = Some(install(SignalKind::hangup(), "SIGHUP")?);
        Ok(signals)
    }

    /// The next signal (a stop is logged). Cancel-safe.
    pub async fn next(&mut self) -> Received {
        let Signals { term, int, hup } = self;
        let hangup = async {
            match hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); Received::Stop }
            _ = int.recv() => { tracing::info!("SIGINT received"); Received::Stop }
            _ = hangup => Received::Reload,
        }
    }
}
