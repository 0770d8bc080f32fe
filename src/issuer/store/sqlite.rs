//! The embedded store: one SQLite file (WAL, every commit synced), used by
//! one issuer process at a time (a lock file beside the database says so).
//! Calls run on tokio's blocking threads; the issuer serialises writes.

use super::db::DbError;
use super::rows::{AppRow, Audit, AuditRecord, Delta, KeyRow, Loaded, assemble, split_scopes};
use super::rows::{to_i64, to_u64};
use super::schema::{self, TooNew, VERSIONS_TABLE};
use super::sql;
use crate::clock::unix_now;
use crate::issuer::registry::Api;
use crate::oauth::ids::{Audience, ClientId};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// An open SQLite store.
#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// Held while the process runs: one issuer per database file.
    _lock: Arc<std::fs::File>,
    pub path: PathBuf,
}

impl Sqlite {
    /// Open (creating) the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| DbError::Io {
                path: lock_path.clone(),
                source,
            })?;
        if lock.try_lock().is_err() {
            return Err(DbError::InUse(path.to_owned()));
        }
        // This user's alone (SQLite gives its WAL the database's mode).
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| DbError::Io {
                path: path.to_owned(),
                source,
            })?;
        let mut conn = Connection::open(path).map_err(|e| DbError::sqlite(path, e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(|e| DbError::sqlite(path, e))?;
        migrate(&mut conn).map_err(|e| match e {
            Migrate::Sql(e) => DbError::sqlite(path, e),
            Migrate::TooNew(e) => DbError::TooNew(e),
        })?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            _lock: Arc::new(lock),
            path: path.to_owned(),
        })
    }

    /// Run `f` on the connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut c)
        })
        .await
        .map_err(|_| DbError::Stopped)?
        .map_err(|e| DbError::sqlite(&path, e))
    }

    pub async fn load(&self) -> Result<Loaded, DbError> {
        self.run(load).await
    }

    /// Write one change (and its audit record) in one transaction.
    pub async fn apply(&self, delta: Delta, audit: Option<Audit>) -> Result<(), DbError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            write_delta(&tx, &delta)?;
            if let Some(a) = audit {
                record(&tx, &a, "ok")?;
            }
            tx.commit()
        })
        .await
    }

    /// Record a refused management call.
    pub async fn record(&self, audit: Audit, outcome: String) -> Result<(), DbError> {
        self.run(move |c| record(c, &audit, &outcome).map(|_| ()))
            .await
    }

    pub async fn audit_page(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>, DbError> {
        self.run(move |c| {
            let mut st = c.prepare(sql::AUDIT_PAGE)?;
            let rows = st.query_map(params![after, i64::try_from(limit).unwrap_or(1000)], |r| {
                Ok(AuditRecord {
                    seq: r.get(0)?,
                    time: to_u64(r.get(1)?).unwrap_or_default(),
                    caller: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn keys(&self, alg: &str) -> Result<Vec<KeyRow>, DbError> {
        let alg = alg.to_owned();
        self.run(move |c| keys(c, &alg)).await
    }

    /// Store `row` as the active key of its algorithm unless one is.
    pub async fn insert_key_if_none(&self, row: KeyRow) -> Result<(), DbError> {
        self.run(move |c| {
            c.execute(
                sql::INSERT_KEY_IF_NONE,
                params![row.kid, row.alg, row.jwk, row.sealed, super::rows::now_ns()],
            )
            .map(|_| ())
        })
        .await
    }

    /// Retire the active key (until `retire_after`), make `row` active, keep
    /// at most `max_retired` retired keys: one transaction.
    pub async fn rotate(
        &self,
        row: KeyRow,
        retire_after: u64,
        max_retired: usize,
        audit: Audit,
    ) -> Result<(), DbError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let now = to_i64(unix_now());
            tx.execute(
                sql::RETIRE_ACTIVE,
                params![now, to_i64(retire_after), row.alg],
            )?;
            tx.execute(
                sql::INSERT_KEY,
                params![row.kid, row.alg, row.jwk, row.sealed, super::rows::now_ns()],
            )?;
            tx.execute(sql::PRUNE_KEYS, params![now])?;
            for kid in super::db::beyond_retired(&keys(&tx, &row.alg)?, max_retired) {
                tx.execute("DELETE FROM signing_keys WHERE kid = $1", params![kid])?;
            }
            let mut audit = audit;
            audit.target = row.kid.clone();
            record(&tx, &audit, "ok")?;
            tx.commit()
        })
        .await
    }

    pub async fn server_key(&self, name: &'static str) -> Result<Option<Vec<u8>>, DbError> {
        self.run(move |c| {
            c.query_row(sql::SERVER_KEY, params![name], |r| r.get(0))
                .optional()
        })
        .await
    }

    pub async fn insert_server_key(
        &self,
        name: &'static str,
        sealed: Vec<u8>,
    ) -> Result<(), DbError> {
        self.run(move |c| {
            c.execute(sql::INSERT_SERVER_KEY, params![name, sealed])
                .map(|_| ())
        })
        .await
    }

    pub async fn meta(&self, key: &'static str) -> Result<Option<String>, DbError> {
        self.run(move |c| {
            c.query_row(sql::META, params![key], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// Import a whole registry, its keys and a meta record in one transaction.
    pub async fn import(&self, import: super::db::Import) -> Result<(), DbError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            write_delta(&tx, &import.delta)?;
            for (i, row) in import.keys.iter().enumerate() {
                tx.execute(
                    sql::INSERT_RETIRED_KEY,
                    params![
                        row.kid,
                        row.alg,
                        row.jwk,
                        row.sealed,
                        super::rows::now_ns() + i64::try_from(i).unwrap_or(0),
                        row.retired_at.map(to_i64),
                        row.retire_after.map(to_i64)
                    ],
                )?;
            }
            if let Some((name, sealed)) = &import.server_key {
                tx.execute(sql::INSERT_SERVER_KEY, params![name, sealed])?;
            }
            tx.execute(sql::SET_META, params![import.meta.0, import.meta.1])?;
            tx.commit()
        })
        .await
    }
}

enum Migrate {
    Sql(rusqlite::Error),
    TooNew(TooNew),
}

impl From<rusqlite::Error> for Migrate {
    fn from(e: rusqlite::Error) -> Self {
        Migrate::Sql(e)
    }
}

/// Apply the migrations not yet applied, each in its own transaction (an
/// exclusive one: a second process waits, then finds them applied).
fn migrate(conn: &mut Connection) -> Result<(), Migrate> {
    conn.execute_batch(VERSIONS_TABLE)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let applied: Vec<i64> = {
        let mut st = tx.prepare(sql::VERSIONS)?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for (version, name, ddl, _) in schema::pending(&applied).map_err(Migrate::TooNew)? {
        tx.execute_batch(ddl)?;
        tx.execute(
            sql::RECORD_VERSION,
            params![version, name, to_i64(unix_now())],
        )?;
        tracing::info!(version, name, "store: applied a schema migration");
    }
    tx.commit()?;
    Ok(())
}

fn load(c: &mut Connection) -> rusqlite::Result<Loaded> {
    let tx = c.transaction()?;
    let apis = {
        let mut st = tx.prepare(sql::APIS)?;
        let rows = st.query_map([], |r| {
            Ok(Api {
                id: r.get(0)?,
                name: r.get(1)?,
                identifier: Audience::from(r.get::<_, String>(2)?),
                scopes: split_scopes(&r.get::<_, String>(3)?),
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    // The four queries in client id order, merged as they are read.
    let failed;
    let apps = {
        let mut apps_st = tx.prepare(sql::APPS)?;
        let mut grants_st = tx.prepare(sql::GRANTS)?;
        let mut secrets_st = tx.prepare(sql::SECRETS)?;
        let mut keys_st = tx.prepare(sql::APP_KEYS)?;
        let apps = apps_st.query_map([], app_row)?;
        let grants = grants_st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let secrets =
            secrets_st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, to_u64(r.get(2)?))))?;
        let keys = keys_st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let slot = std::cell::RefCell::new(None);
        let apps = assemble(
            apps.map_while(|r| keep(&slot, r)),
            grants.map_while(|r| keep(&slot, r)),
            secrets.map_while(|r| keep(&slot, r)),
            keys.map_while(|r| keep(&slot, r)),
        );
        failed = slot.into_inner();
        apps
    };
    if let Some(e) = failed {
        return Err(e);
    }
    let not_before = pairs::<i64>(&tx, sql::BLOCKS)?
        .into_iter()
        .map(|(id, t)| (ClientId::from(id), to_u64(Some(t)).unwrap_or_default()))
        .collect();
    let revoked = pairs::<i64>(&tx, sql::REVOKED)?
        .into_iter()
        .map(|(jti, exp)| (jti, to_u64(Some(exp)).unwrap_or_default()))
        .collect();
    let mut loaded = Loaded {
        apis,
        apps,
        not_before,
        revoked,
        ..Loaded::default()
    };
    for (kind, id) in pairs::<String>(&tx, sql::DELETED)? {
        match id.as_str() {
            _ if kind == "api" => {
                loaded.deleted_apis.insert(id);
            }
            _ => {
                loaded.deleted_apps.insert(ClientId::from(id));
            }
        }
    }
    Ok(loaded)
}

/// A row, or `None` (and the error kept) if it could not be read.
fn keep<T>(
    slot: &std::cell::RefCell<Option<rusqlite::Error>>,
    r: rusqlite::Result<T>,
) -> Option<T> {
    r.map_err(|e| *slot.borrow_mut() = Some(e)).ok()
}

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRow> {
    Ok(AppRow {
        client_id: r.get(0)?,
        name: r.get(1)?,
        blocked: r.get::<_, i64>(2)? != 0,
        blocked_at: to_u64(r.get(3)?),
    })
}

fn pairs<T: rusqlite::types::FromSql>(
    tx: &Transaction<'_>,
    q: &str,
) -> rusqlite::Result<Vec<(String, T)>> {
    let mut st = tx.prepare(q)?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn keys(c: &Connection, alg: &str) -> rusqlite::Result<Vec<KeyRow>> {
    let mut st = c.prepare(sql::KEYS)?;
    let rows = st.query_map(params![alg], |r| {
        Ok(KeyRow {
            kid: r.get(0)?,
            alg: r.get(1)?,
            jwk: r.get(2)?,
            sealed: r.get(3)?,
            retired_at: to_u64(r.get(4)?),
            retire_after: to_u64(r.get(5)?),
        })
    })?;
    rows.collect()
}

fn record(c: &Connection, a: &Audit, outcome: &str) -> rusqlite::Result<usize> {
    c.execute(
        sql::INSERT_AUDIT,
        params![
            to_i64(unix_now()),
            a.caller.as_ref().map(ToString::to_string),
            a.action,
            a.target,
            outcome
        ],
    )
}

fn write_delta(tx: &Transaction<'_>, d: &Delta) -> rusqlite::Result<()> {
    for (q, params) in sql::delta_statements(d, unix_now()) {
        tx.execute(q, rusqlite::params_from_iter(params.iter()))?;
    }
    Ok(())
}
