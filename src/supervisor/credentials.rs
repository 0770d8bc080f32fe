//! Credentials across reloads: an unchanged one keeps running (and its token);
//! a new or changed one gets a fresh token client in the plan and its refresh
//! task at commit; a removed one stops.

use super::{Change, ReloadError, Running, Shared};
use crate::config::{Config, CredentialSpec};
use crate::token::{self, Credential};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub(super) struct RunningCred {
    spec: Arc<CredentialSpec>,
    pub cred: Arc<Credential>,
    stop: watch::Sender<bool>,
}

/// A new or changed credential, ready to start.
struct Fresh {
    spec: Arc<CredentialSpec>,
    cred: Arc<Credential>,
    fetcher: token::Fetcher,
}

/// The credentials of the new configuration.
pub(super) struct CredentialsPlan {
    /// Every one, kept or fresh, in config order.
    pub all: Vec<Arc<Credential>>,
    fresh: Vec<Fresh>,
}

impl CredentialsPlan {
    /// Build a token client for each credential that is new or changed.
    pub fn prepare(running: &Running, shared: &Shared, new: &Config) -> Result<Self, ReloadError> {
        let mut plan = CredentialsPlan {
            all: Vec::with_capacity(new.credentials.len()),
            fresh: Vec::new(),
        };
        for spec in &new.credentials {
            match running.creds.get(&spec.name) {
                Some(r) if *r.spec == **spec => plan.all.push(r.cred.clone()),
                _ => {
                    let fetcher = token::Fetcher::new(spec.clone())
                        .map_err(|e| ReloadError::Credential(e.into()))?;
                    let cred = Credential::new(spec.clone(), shared.metrics.token.clone());
                    plan.all.push(cred.clone());
                    plan.fresh.push(Fresh {
                        spec: spec.clone(),
                        cred,
                        fetcher,
                    });
                }
            }
        }
        Ok(plan)
    }

    /// The credential called `name`, kept or fresh.
    pub fn find(&self, name: &str) -> Option<Arc<Credential>> {
        self.all.iter().find(|c| c.name() == name).cloned()
    }

    /// Whether `name` is new or changed (what uses it is rebuilt).
    pub fn is_fresh(&self, name: &str) -> bool {
        self.fresh.iter().any(|f| f.spec.name == name)
    }
}

impl Running {
    /// Start the new credentials, stop the replaced and the removed; on a
    /// reload, wait (bounded) for the new ones' first tokens.
    pub(super) async fn commit_credentials(
        &mut self,
        shared: &mut Shared,
        plan: CredentialsPlan,
        new: &Config,
        changes: &mut Vec<Change>,
    ) {
        let reloading = self.config.is_some();
        let starting: Vec<Arc<Credential>> = plan.fresh.iter().map(|f| f.cred.clone()).collect();
        for Fresh {
            spec,
            cred,
            fetcher,
        } in plan.fresh
        {
            let cache_file = new
                .token_cache_dir
                .as_deref()
                .map(|d| token::disk::cache_file(d, &spec));
            let task = cred.clone();
            let stop = shared
                .tasks
                .spawn(move |stopped| token::run(task, fetcher, cache_file, stopped));
            let name = spec.name.clone();
            match self
                .creds
                .insert(name.clone(), RunningCred { spec, cred, stop })
            {
                Some(old) => {
                    let _ = old.stop.send(true);
                    changes.push(Change::CredentialChanged(name));
                }
                None if reloading => changes.push(Change::CredentialAdded(name)),
                None => {}
            }
        }
        self.creds.retain(|name, r| {
            let wanted = new.credentials.iter().any(|c| c.name == *name);
            if !wanted {
                let _ = r.stop.send(true);
                changes.push(Change::CredentialRemoved(name.clone()));
            }
            wanted
        });
        if reloading && !starting.is_empty() {
            // Routes switch to a new credential once it holds a token (bounded
            // by its token request timeout), so requests do not wait for it.
            let first = starting.iter().map(|c| {
                let wait = c.spec.timeout + Duration::from_secs(1);
                async move {
                    if c.bearer(wait).await.is_err() {
                        tracing::warn!(credential = %c.name(), "no token yet after the reload; routes switch to it anyway");
                    }
                }
            });
            futures_util::future::join_all(first).await;
        }
        self.restart_secret_watch(shared, new);
    }

    /// Watch the secret files of the credentials now in force.
    fn restart_secret_watch(&mut self, shared: &mut Shared, new: &Config) {
        if let Some(s) = self.secret_watch.take() {
            let _ = s.send(true);
        }
        let watched: Vec<crate::secret::Watched> = new
            .credentials
            .iter()
            .filter_map(|spec| {
                let path = spec.auth.watched_file()?;
                let cred = &self.creds.get(&spec.name)?.cred;
                Some(crate::secret::Watched {
                    path: path.to_path_buf(),
                    on_change: cred.kick_handle(),
                })
            })
            .collect();
        let stop = shared
            .tasks
            .spawn(move |stopped| crate::secret::watch_files(watched, stopped));
        self.secret_watch = Some(stop);
    }
}
