//! What `/readyz` answers from: the credentials and the inbound key set in
//! force (a reload replaces them) and the draining latch (set once, when
//! shutdown begins, never cleared). The supervisor writes it, the admin
//! listener reads it; neither imports the other.

use crate::inbound::jwks::Jwks;
use crate::token::{Credential, CredentialState};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The parts readiness depends on, as the last start or reload left them.
#[derive(Default)]
pub struct Readiness {
    credentials: ArcSwap<Vec<Arc<Credential>>>,
    jwks: ArcSwapOption<Jwks>,
    draining: AtomicBool,
}

/// One look at readiness, for `/readyz`.
pub struct Report {
    /// Ready: not draining, inbound keys loaded (when inbound runs) and every
    /// credential holds a usable token.
    pub ready: bool,
    pub draining: bool,
    /// One per credential, in config order.
    pub credentials: Vec<CredentialState>,
    /// With inbound: how many keys are loaded, and the last fetch error.
    pub keys: Option<(usize, Option<String>)>,
}

impl Readiness {
    /// The credentials in force, in config order.
    pub fn credentials(&self) -> Arc<Vec<Arc<Credential>>> {
        self.credentials.load_full()
    }

    pub fn set_credentials(&self, credentials: Vec<Arc<Credential>>) {
        self.credentials.store(Arc::new(credentials));
    }

    /// The inbound key set that must hold keys, when inbound runs.
    pub fn set_jwks(&self, jwks: Option<Arc<Jwks>>) {
        self.jwks.store(jwks);
    }

    /// Shutdown began: not ready from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn report(&self) -> Report {
        let credentials: Vec<CredentialState> = self
            .credentials
            .load()
            .iter()
            .map(|c| c.snapshot())
            .collect();
        let draining = self.draining.load(Ordering::Relaxed);
        let keys = self.jwks.load_full().map(|j| {
            let count = j.keys().map_or(0, |k| k.len());
            let error = j
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            (count, error)
        });
        let keys_ready = keys.as_ref().is_none_or(|(n, _)| *n > 0);
        Report {
            ready: !draining && keys_ready && credentials.iter().all(|s| s.valid),
            draining,
            credentials,
            keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn draining_is_a_latch_that_ends_readiness() {
        let ready = Readiness::default();
        let report = ready.report();
        assert!(report.ready && !report.draining && report.keys.is_none());
        ready.set_draining();
        let report = ready.report();
        assert!(!report.ready && report.draining);
    }
}
