//! The second step of a reload: put a [`Plan`] in force. It cannot fail; it
//! returns what changed.

use super::listener::{Label, Listen, Outcome};
use super::plan::Plan;
use super::{Change, Running, Shared};
use crate::config::Config;
use crate::forward::ForwardProxy;
use crate::outbound::Route;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Credentials first (routes need them), then limits, the outbound
/// listeners, the forward proxy and inbound; last what `/readyz` looks at.
pub(super) async fn commit(
    running: &mut Running,
    shared: &mut Shared,
    plan: Plan,
    new: Config,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for what in plan.restart_needed {
        tracing::warn!(
            setting = what,
            "this change needs a restart; the running value is kept"
        );
        changes.push(Change::NeedsRestart(what));
    }
    running
        .commit_credentials(shared, plan.credentials, &new, &mut changes)
        .await;
    shared.limits.store(Arc::new(new.limits.clone()));
    running.commit_outbound(shared, plan.outbound, &new, &mut changes);
    running.commit_forward(shared, plan.forward, &new, &mut changes);
    running.commit_inbound(shared, plan.inbound, &mut changes);
    finish(running, shared, new, changes)
}

impl Running {
    fn commit_outbound(
        &mut self,
        shared: &mut Shared,
        plan: Vec<Listen<Route>>,
        new: &Config,
        changes: &mut Vec<Change>,
    ) {
        let reloading = self.config.is_some();
        let mut kept = BTreeMap::new();
        for (spec, listen) in new.outbound.iter().zip(plan) {
            let label = Label {
                name: &spec.name,
                upstream: Some(&spec.upstream),
                listen: spec.listen,
            };
            let old = self.outbound.remove(&spec.name);
            let (served, outcome) = shared.reconcile(old, listen, label);
            if let Outcome::Started { moved } = outcome {
                let (name, listen) = (spec.name.clone(), spec.listen);
                if moved {
                    changes.push(Change::OutboundMoved { name, listen });
                } else if reloading {
                    changes.push(Change::OutboundAdded { name, listen });
                }
                tracing::info!(route = %spec.name, addr = %served.addr, upstream = %crate::config::redact_url(&spec.upstream), "outbound listener ready");
            }
            kept.insert(spec.name.clone(), served);
        }
        for (name, s) in std::mem::replace(&mut self.outbound, kept) {
            s.halt();
            changes.push(Change::OutboundRemoved(name));
        }
    }

    fn commit_forward(
        &mut self,
        shared: &mut Shared,
        plan: Option<Listen<ForwardProxy>>,
        new: &Config,
        changes: &mut Vec<Change>,
    ) {
        let old = self.forward.take();
        let Some((spec, listen)) = new.forward_proxy.as_ref().zip(plan) else {
            if let Some(o) = old {
                o.halt();
                changes.push(Change::ForwardProxyRemoved);
            }
            return;
        };
        let label = Label {
            name: "forward_proxy",
            upstream: None,
            listen: spec.listen,
        };
        let (served, outcome) = shared.reconcile(old, listen, label);
        if let Outcome::Started { .. } = outcome {
            tracing::info!(addr = %served.addr, routes = spec.routes.len(), "forward proxy listener ready");
        }
        self.forward = Some(served);
    }
}

/// The end of a commit: what `/readyz` looks at, and the running config.
fn finish(
    running: &mut Running,
    shared: &Shared,
    new: Config,
    mut changes: Vec<Change>,
) -> Vec<Change> {
    if running.inbound.is_none() {
        shared.ready.set_jwks(None);
    }
    shared.ready.set_credentials(
        new.credentials
            .iter()
            .filter_map(|s| running.creds.get(&s.name).map(|r| r.cred.clone()))
            .collect(),
    );
    if let Some(old) = &running.config {
        if old.limits != new.limits {
            changes.push(Change::Limits);
        }
        if changes.is_empty() && *old != new {
            changes.push(Change::Settings);
        }
    }
    running.config = Some(new);
    shared.mark_applied();
    changes
}
