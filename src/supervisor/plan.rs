//! The first step of a reload: everything that can fail, done while nothing
//! running changes. Binding comes first (an address in use is the error a
//! reload reports before any other), then the token clients, the handlers in
//! config order, and last the new inbound keys (waited for, bounded).

use super::credentials::CredentialsPlan;
use super::inbound::InboundPlan;
use super::listener::{Listen, ListenError, Socket};
use super::{Bound, Running, Shared};
use crate::config::Config;
use crate::forward::ForwardProxy;
use crate::inbound::Inbound;
use crate::outbound::Route;

/// Why a reload (or the start) changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// A credential's token client cannot be built (its `ca_file`, say).
    #[error(transparent)]
    Credential(BoxError),
    #[error("outbound {route}: no credential {credential}")]
    NoCredential { route: String, credential: String },
    /// An outbound route's handler cannot be built.
    #[error(transparent)]
    Outbound(BoxError),
    #[error(transparent)]
    ForwardProxy(BoxError),
    #[error(transparent)]
    Inbound(BoxError),
}

/// A part's own error (its message names the part).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the commit puts in force; lists follow the new configuration's order.
pub(super) struct Plan {
    /// Settings that changed but need a restart.
    pub restart_needed: Vec<&'static str>,
    pub credentials: CredentialsPlan,
    /// One per `[[outbound]]`.
    pub outbound: Vec<Listen<Route>>,
    pub forward: Option<Listen<ForwardProxy>>,
    pub inbound: Option<InboundPlan>,
}

/// The sockets of the new configuration: running, given by the caller, or
/// bound now.
struct Sockets<'a> {
    outbound: Vec<Socket<'a, Route>>,
    forward: Option<Socket<'a, ForwardProxy>>,
    inbound: Option<Socket<'a, Inbound>>,
}

/// Prepare `new` against what runs: binds, token clients, handlers, keys.
/// On error nothing running changed (sockets bound here are closed again).
pub(super) async fn prepare(
    running: &Running,
    shared: &mut Shared,
    new: &Config,
    given: Bound,
) -> Result<Plan, ReloadError> {
    let sockets = sockets(running, new, given).await?;
    let credentials = CredentialsPlan::prepare(running, shared, new)?;
    let old = running.config.as_ref();
    let mut outbound = Vec::with_capacity(new.outbound.len());
    for (spec, socket) in new.outbound.iter().zip(sockets.outbound) {
        // A handler whose settings and credential did not change is kept as
        // it is: its upstream connections and caches survive the reload.
        let unchanged = !credentials.is_fresh(&spec.credential)
            && old.is_some_and(|o| o.outbound.iter().any(|x| x == spec));
        outbound.push(Listen::new(socket, unchanged, || {
            let cred =
                credentials
                    .find(&spec.credential)
                    .ok_or_else(|| ReloadError::NoCredential {
                        route: spec.name.clone(),
                        credential: spec.credential.clone(),
                    })?;
            Route::new(spec, cred, &shared.metrics.outbound)
                .map_err(|e| ReloadError::Outbound(e.into()))
        })?);
    }
    let forward = match (&new.forward_proxy, sockets.forward) {
        (Some(spec), Some(socket)) => {
            let unchanged = old.is_some_and(|o| o.forward_proxy.as_ref() == Some(spec))
                && spec
                    .routes
                    .iter()
                    .all(|r| !credentials.is_fresh(&r.credential));
            Some(Listen::new(socket, unchanged, || {
                ForwardProxy::new(spec, &credentials.all, &shared.metrics.outbound)
                    .map_err(|e| ReloadError::ForwardProxy(e.into()))
            })?)
        }
        _ => None,
    };
    let inbound = match (&new.inbound, sockets.inbound) {
        (Some(spec), Some(socket)) => {
            Some(InboundPlan::prepare(running, shared, new, spec, socket).await?)
        }
        _ => None,
    };
    Ok(Plan {
        restart_needed: restart_needed(old, new),
        credentials,
        outbound,
        forward,
        inbound,
    })
}

/// A socket for every listener of `new`, in config order.
async fn sockets<'a>(
    running: &'a Running,
    new: &Config,
    mut given: Bound,
) -> Result<Sockets<'a>, ReloadError> {
    let mut outbound = Vec::with_capacity(new.outbound.len());
    for o in &new.outbound {
        let (run, mine) = (
            running.outbound.get(&o.name),
            given.outbound.remove(&o.name),
        );
        outbound.push(Socket::get(run, o.listen, mine, || format!("outbound {}", o.name)).await?);
    }
    let forward = match &new.forward_proxy {
        Some(f) => Some(
            Socket::get(
                running.forward.as_ref(),
                f.listen,
                given.forward_proxy,
                || "forward_proxy".into(),
            )
            .await?,
        ),
        None => None,
    };
    let inbound = match &new.inbound {
        Some(i) => {
            let run = running.inbound.as_ref().map(|r| &r.served);
            Some(Socket::get(run, i.listen, given.inbound, || "inbound".into()).await?)
        }
        None => None,
    };
    Ok(Sockets {
        outbound,
        forward,
        inbound,
    })
}

/// The settings a running sidecar cannot change.
pub(super) fn restart_needed(old: Option<&Config>, new: &Config) -> Vec<&'static str> {
    let Some(old) = old else { return Vec::new() };
    [
        ("admin.listen", old.admin.listen == new.admin.listen),
        ("[issuer]", old.issuer == new.issuer),
        ("worker_threads", old.worker_threads == new.worker_threads),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(what, _)| what)
    .collect()
}
