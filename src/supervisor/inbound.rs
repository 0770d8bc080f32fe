//! The inbound listener across reloads: its key set and revocation list (each
//! with a fetch task) are kept while their settings are; new key settings on
//! a running listener must yield keys (bounded) in the plan, else the running
//! inbound stays.

use super::listener::{Label, Listen, Outcome, Served, Socket};
use super::{Change, ReloadError, Running, Shared};
use crate::config::{Config, InboundSpec};
use crate::inbound::Inbound;
use crate::inbound::jwks::{self, Jwks};
use crate::inbound::revocation::{self, Revocations};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub(super) struct RunningInbound {
    spec: InboundSpec,
    pub served: Served<Inbound>,
    jwks: Arc<Jwks>,
    jwks_stop: watch::Sender<bool>,
    revocations: Arc<Revocations>,
    revocations_stop: Option<watch::Sender<bool>>,
}

impl RunningInbound {
    fn stop(&self, keys: bool, revocations: bool) {
        if keys {
            let _ = self.jwks_stop.send(true);
        }
        if revocations && let Some(s) = &self.revocations_stop {
            let _ = s.send(true);
        }
    }
}

pub(super) enum InboundPlan {
    /// The new key settings gave no keys in time: the running inbound stays.
    KeepRunning,
    Apply(Box<Apply>),
}

pub(super) struct Apply {
    spec: InboundSpec,
    listen: Listen<Inbound>,
    jwks: Arc<Jwks>,
    /// The key fetcher: the running one when `keys_same`, else one started
    /// by the plan.
    jwks_stop: watch::Sender<bool>,
    keys_same: bool,
    revocations: Arc<Revocations>,
    /// The running revocation fetcher, when `revocations_same`.
    revocations_stop: Option<watch::Sender<bool>>,
    revocations_same: bool,
}

impl InboundPlan {
    /// Build the handler, start the key fetcher for new key settings and, on a
    /// running listener, wait (bounded) for its keys. The last step of a plan:
    /// nothing after it can fail (a started fetcher is stopped only here).
    pub async fn prepare(
        running: &Running,
        shared: &mut Shared,
        new: &Config,
        spec: &InboundSpec,
        socket: Socket<'_, Inbound>,
    ) -> Result<Self, ReloadError> {
        let old = running.inbound.as_ref();
        let keys_same = old.is_some_and(|o| same_keys(&o.spec, spec));
        let revocations_same = old.is_some_and(|o| same_revocations(&o.spec, spec));
        let jwks = match old {
            Some(o) if keys_same => o.jwks.clone(),
            _ => Jwks::new(spec),
        };
        let revocations = match old {
            Some(o) if revocations_same => o.revocations.clone(),
            _ => Arc::default(),
        };
        let unchanged = old.is_some_and(|o| o.spec == *spec)
            && running.config.as_ref().map(|c| c.limits.access_log) == Some(new.limits.access_log);
        let listen = Listen::new(socket, unchanged, || {
            let mut h = Inbound::new(spec, jwks.clone(), shared.metrics.inbound.clone())
                .map_err(|e| ReloadError::Inbound(e.into()))?;
            h.access_log = new.limits.access_log;
            h.revocations = revocations.clone();
            Ok::<_, ReloadError>(h)
        })?;
        let jwks_stop = match old {
            Some(o) if keys_same => o.jwks_stop.clone(),
            _ => {
                let stop = spawn_jwks(shared, &jwks, spec);
                // New key settings on a running listener: they must yield
                // keys before requests see them.
                let deadline =
                    tokio::time::Instant::now() + spec.jwks_timeout + Duration::from_secs(1);
                if old.is_some() && !jwks.wait_loaded(deadline).await {
                    let _ = stop.send(true);
                    tracing::warn!(
                        "inbound: the new key settings gave no keys; the running inbound settings are kept"
                    );
                    return Ok(InboundPlan::KeepRunning);
                }
                stop
            }
        };
        Ok(InboundPlan::Apply(Box::new(Apply {
            spec: spec.clone(),
            listen,
            jwks,
            jwks_stop,
            keys_same,
            revocations,
            revocations_stop: old
                .filter(|_| revocations_same)
                .and_then(|o| o.revocations_stop.clone()),
            revocations_same,
        })))
    }
}

impl Running {
    pub(super) fn commit_inbound(
        &mut self,
        shared: &mut Shared,
        plan: Option<InboundPlan>,
        changes: &mut Vec<Change>,
    ) {
        let old = self.inbound.take();
        match (plan, old) {
            (None, None) => {}
            (None, Some(o)) => {
                o.served.halt();
                o.stop(true, true);
                changes.push(Change::InboundRemoved);
            }
            (Some(InboundPlan::KeepRunning), old) => {
                self.inbound = old;
                changes.push(Change::InboundKept);
            }
            (Some(InboundPlan::Apply(apply)), old) => {
                let inbound = apply.commit(shared, old, changes);
                shared.ready.set_jwks(Some(inbound.jwks.clone()));
                self.inbound = Some(inbound);
            }
        }
    }
}

impl Apply {
    fn commit(
        self,
        shared: &mut Shared,
        old: Option<RunningInbound>,
        changes: &mut Vec<Change>,
    ) -> RunningInbound {
        let Apply {
            spec,
            listen,
            jwks,
            jwks_stop,
            keys_same,
            revocations,
            revocations_stop,
            revocations_same,
        } = self;
        let revocations_stop = if revocations_same {
            revocations_stop
        } else {
            spec.revocations_url.clone().map(|url| {
                let (list, interval, timeout) = (
                    revocations.clone(),
                    spec.revocations_interval,
                    spec.jwks_timeout,
                );
                let fetched = shared.metrics.inbound.revocations_fetched.clone();
                shared.tasks.spawn(move |stopped| {
                    revocation::run(list, url, interval, timeout, fetched, stopped)
                })
            })
        };
        let spec_changed = old.as_ref().is_some_and(|o| o.spec != spec);
        if let Some(o) = &old {
            o.stop(!keys_same, !revocations_same);
        }
        let label = Label {
            name: "inbound",
            upstream: Some(&spec.upstream),
            listen: spec.listen,
        };
        let (served, outcome) = shared.reconcile(old.map(|o| o.served), listen, label);
        match outcome {
            Outcome::Kept if spec_changed => changes.push(Change::InboundChanged),
            Outcome::Kept => {}
            Outcome::Started { moved } => {
                if moved {
                    changes.push(Change::InboundMoved(spec.listen));
                }
                tracing::info!(addr = %served.addr, upstream = %spec.upstream, "inbound listener ready");
            }
        }
        RunningInbound {
            spec,
            served,
            jwks,
            jwks_stop,
            revocations,
            revocations_stop,
        }
    }
}

/// Keep `jwks` loaded from `spec`'s key source until stopped.
fn spawn_jwks(shared: &mut Shared, jwks: &Arc<Jwks>, spec: &InboundSpec) -> watch::Sender<bool> {
    let (jwks, spec, metrics) = (jwks.clone(), spec.clone(), shared.metrics.inbound.clone());
    shared
        .tasks
        .spawn(move |stopped| jwks::run(jwks, spec, metrics, stopped))
}

fn same_keys(a: &InboundSpec, b: &InboundSpec) -> bool {
    a.keys == b.keys
        && a.algorithms == b.algorithms
        && a.issuer == b.issuer
        && a.jwks_refresh == b.jwks_refresh
        && a.jwks_cooldown == b.jwks_cooldown
        && a.jwks_timeout == b.jwks_timeout
}

fn same_revocations(a: &InboundSpec, b: &InboundSpec) -> bool {
    a.revocations_url == b.revocations_url
        && a.revocations_interval == b.revocations_interval
        && a.jwks_timeout == b.jwks_timeout
}
