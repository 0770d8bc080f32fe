//! Following the other replicas (PostgreSQL): every change commits rows to
//! `changes` and a `NOTIFY`; a replica listening reads the rows after the
//! last one it applied, reloads the entities they name and publishes a new
//! snapshot, within milliseconds. The feed is also read every
//! [`TICK`] (a notification lost with a connection is not a change lost),
//! and after a reconnection: a replica cut off from the database catches up
//! with everything it missed. The same catch-up runs inside every write
//! transaction, so a change is always made to the latest registry.

use super::db::{Db, DbError};
use super::postgres::{self, CHANNEL, Reloaded};
use super::{Store, registry_from};
use std::sync::Weak;
use std::time::Duration;
use tokio_postgres::GenericClient;

/// How often the feed is read without a notification (and the connection
/// checked).
const TICK: Duration = Duration::from_secs(2);
/// How long the database may take to answer the check (or `LISTEN`) before
/// this replica says it is unavailable: a database that hangs, or a network
/// that drops packets, does not end the connection.
const ANSWER_LIMIT: Duration = Duration::from_secs(3);

impl Store {
    /// Apply the feed after `seq` (with the write lock held); the new position.
    pub(super) async fn catch_up(&self, c: &impl GenericClient, seq: i64) -> Result<i64, DbError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(seq);
        };
        let pg = |e| DbError::postgres(&p.target, e);
        let Some(changes) = postgres::changes_since(c, seq).await.map_err(pg)? else {
            return self.reload_all(c).await;
        };
        let Some(last) = changes.last().map(|c| c.0) else {
            return Ok(seq);
        };
        let mut next = (*self.snapshot.load_full()).clone();
        let mut tombstones = self.tombstones();
        let mut seen = std::collections::BTreeSet::new();
        let mut keys = false;
        for (_, kind, id) in &changes {
            if !seen.insert((kind.as_str(), id.as_str())) {
                continue;
            }
            match postgres::reload(c, kind, id).await.map_err(pg)? {
                Reloaded::App(id, Some(app)) => next.apps.insert(id, app),
                Reloaded::App(id, None) => {
                    next.apps.remove(id.as_str());
                }
                Reloaded::Api(id, api) => {
                    if id != self.management.id {
                        next.apis.retain(|a| a.id != id);
                        if let Some(api) = api {
                            let at = next.apis.len().saturating_sub(1);
                            next.apis.insert(at, api);
                        }
                    }
                }
                Reloaded::NotBefore(id, Some(t)) => {
                    next.not_before.insert(id, t);
                }
                Reloaded::NotBefore(id, None) => {
                    next.not_before.remove(&id);
                }
                Reloaded::Revoked(jti, Some(exp)) => {
                    next.revoked.insert(jti, exp);
                }
                Reloaded::Revoked(jti, None) => {
                    next.revoked.remove(&jti);
                }
                Reloaded::DeletedApi(id, on) => {
                    if on {
                        tombstones.apis.insert(id);
                    } else {
                        tombstones.apis.remove(&id);
                    }
                }
                Reloaded::DeletedApp(id, on) => {
                    if on {
                        tombstones.apps.insert(id);
                    } else {
                        tombstones.apps.remove(&id);
                    }
                }
                Reloaded::Keys => keys = true,
                Reloaded::All => return self.reload_all(c).await,
            }
        }
        let _ = next.apps.take_touched();
        self.publish(next, tombstones);
        if keys {
            self.keys_changed.send_modify(|v| *v += 1);
        }
        Ok(last)
    }

    /// Everything again from the database (the feed rows this replica
    /// needed were pruned, or a whole state was imported), through `c`: the
    /// caller holds the writer connection already.
    async fn reload_all(&self, c: &impl GenericClient) -> Result<i64, DbError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(0);
        };
        let (loaded, seq) = postgres::load(c)
            .await
            .map_err(|e| DbError::postgres(&p.target, e))?;
        let key = self.snapshot.load().key.clone();
        let (reg, tombstones) = registry_from(key, &self.base, loaded, &self.management);
        self.publish(reg, tombstones);
        self.keys_changed.send_modify(|v| *v += 1);
        tracing::info!("store: reloaded the registry from PostgreSQL");
        Ok(seq)
    }

    /// Catch up now (the write lock taken here).
    async fn catch_up_now(&self) -> Result<(), DbError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(());
        };
        let mut seq = self.write.lock().await;
        let at = *seq;
        let attempt = async {
            let mut guard = p.writer().await?;
            let client = guard.as_mut().ok_or(DbError::Stopped)?;
            let pg = |e| DbError::postgres(&p.target, e);
            // One snapshot: the feed rows and the entities (or everything) reloaded.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let caught = self.catch_up(&tx, at).await?;
            tx.commit().await.map_err(pg)?;
            Ok::<_, DbError>(caught)
        };
        // Bounded like every store call: a database that hangs must not
        // hold the write lock (and every management call) with it.
        match tokio::time::timeout(super::postgres::QUERY_LIMIT, attempt).await {
            Ok(caught) => *seq = caught?,
            Err(_) => {
                p.drop_writer().await;
                return Err(DbError::Timeout(p.target.clone()));
            }
        }
        Ok(())
    }
}

/// Follow the feed until the store is dropped.
pub async fn follow(store: Weak<Store>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(s) = store.upgrade() else { return };
        let Db::Postgres(p) = &s.db else { return };
        match p.connect().await {
            Ok((client, mut notes)) => {
                let listen_sql = format!("LISTEN {CHANNEL}");
                let listening =
                    tokio::time::timeout(ANSWER_LIMIT, client.batch_execute(&listen_sql)).await;
                match listening {
                    Err(_) => s.set_trouble(Some(no_answer(&p.target))),
                    Ok(Err(e)) => s.set_trouble(Some(DbError::postgres(&p.target, e).to_string())),
                    Ok(Ok(())) => {
                        backoff = Duration::from_millis(200);
                        let target = p.target.clone();
                        drop(s);
                        listen(&store, &client, &mut notes, &target).await;
                    }
                }
            }
            Err(e) => s.set_trouble(Some(e.to_string())),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Catch up on every notification and every tick, while the connection lasts.
async fn listen(
    store: &Weak<Store>,
    client: &tokio_postgres::Client,
    notes: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    target: &str,
) {
    loop {
        let Some(s) = store.upgrade() else { return };
        let caught = {
            let catch_up = s.catch_up_now();
            tokio::pin!(catch_up);
            loop {
                tokio::select! {
                    caught = &mut catch_up => break caught,
                    // A catch-up waits for this replica's writes, or for a
                    // database that hangs: the check on this connection tells.
                    () = tokio::time::sleep(TICK) => {
                        if let Err(why) = check(client, target).await {
                            s.set_trouble(Some(why));
                        }
                    }
                }
            }
        };
        match caught {
            Ok(()) => s.set_trouble(None),
            Err(e) => s.set_trouble(Some(e.to_string())),
        }
        drop(s);
        tokio::select! {
            note = notes.recv() => {
                if note.is_none() {
                    if let Some(s) = store.upgrade() {
                        s.set_trouble(Some("lost the connection to PostgreSQL".into()));
                    }
                    return;
                }
            }
            () = tokio::time::sleep(TICK) => {
                if let Err(why) = check(client, target).await {
                    if let Some(s) = store.upgrade() {
                        s.set_trouble(Some(why));
                    }
                    return;
                }
            }
        }
    }
}

/// Whether the database answers on `client`, within [`ANSWER_LIMIT`].
async fn check(client: &tokio_postgres::Client, target: &str) -> Result<(), String> {
    match tokio::time::timeout(ANSWER_LIMIT, client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err("lost the connection to PostgreSQL".into()),
        Err(_) => Err(no_answer(target)),
    }
}

fn no_answer(target: &str) -> String {
    format!(
        "PostgreSQL {target}: no answer within {} s",
        ANSWER_LIMIT.as_secs()
    )
}
