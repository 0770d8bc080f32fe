//! The database behind the store: SQLite (embedded, the default) or
//! PostgreSQL (shared by replicas), and what can go wrong with either.

use super::postgres::Postgres;
use super::rows::{Audit, AuditRecord, Delta, KeyRow};
use super::schema::TooNew;
use super::sqlite::Sqlite;
use std::path::{Path, PathBuf};

/// Why the database cannot be used. Names the file or `host:port/db`,
/// never a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("SQLite {}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("PostgreSQL {target}: {}", crate::cause::root_cause(.source))]
    Postgres {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{} is in use by another issuer process (SQLite serves one issuer; use PostgreSQL for replicas)", .0.display())]
    InUse(PathBuf),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a PostgreSQL URL: {0}")]
    Url(#[source] Box<tokio_postgres::Error>),
    #[error("store_ca_file {}: no usable PEM certificate", .0.display())]
    Ca(PathBuf),
    #[error(transparent)]
    TooNew(#[from] TooNew),
    #[error("PostgreSQL {0}: no answer within 5 s")]
    Timeout(String),
    #[error("the store is shutting down")]
    Stopped,
}

impl DbError {
    pub fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        DbError::Sqlite {
            path: path.to_owned(),
            source,
        }
    }

    pub fn postgres(target: &str, source: tokio_postgres::Error) -> Self {
        DbError::Postgres {
            target: target.to_owned(),
            source,
        }
    }
}

/// A JSON state of earlier versions, as rows: imported in one transaction.
pub struct Import {
    pub delta: Delta,
    pub keys: Vec<KeyRow>,
    pub server_key: Option<(&'static str, Vec<u8>)>,
    /// The meta record saying it was imported (key, value).
    pub meta: (&'static str, String),
}

/// The database.
pub enum Db {
    Sqlite(Sqlite),
    Postgres(Box<Postgres>),
}

impl Db {
    pub async fn audit_page(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>, DbError> {
        match self {
            Db::Sqlite(s) => s.audit_page(after, limit).await,
            Db::Postgres(p) => p.bounded(p.audit_page(after, limit)).await,
        }
    }

    pub async fn record(&self, audit: Audit, outcome: String) -> Result<(), DbError> {
        match self {
            Db::Sqlite(s) => s.record(audit, outcome).await,
            Db::Postgres(p) => p.bounded(p.record(audit, outcome)).await,
        }
    }

    pub async fn keys(&self, alg: &str) -> Result<Vec<KeyRow>, DbError> {
        match self {
            Db::Sqlite(s) => s.keys(alg).await,
            Db::Postgres(p) => p.bounded(p.keys(alg)).await,
        }
    }

    pub async fn insert_key_if_none(&self, row: KeyRow) -> Result<(), DbError> {
        match self {
            Db::Sqlite(s) => s.insert_key_if_none(row).await,
            Db::Postgres(p) => p.bounded(p.insert_key_if_none(row)).await,
        }
    }

    pub async fn rotate(
        &self,
        row: KeyRow,
        retire_after: u64,
        max_retired: usize,
        audit: Audit,
    ) -> Result<(), DbError> {
        match self {
            Db::Sqlite(s) => s.rotate(row, retire_after, max_retired, audit).await,
            Db::Postgres(p) => {
                p.bounded(p.rotate(row, retire_after, max_retired, audit))
                    .await
            }
        }
    }

    pub async fn server_key(&self, name: &'static str) -> Result<Option<Vec<u8>>, DbError> {
        match self {
            Db::Sqlite(s) => s.server_key(name).await,
            Db::Postgres(p) => p.bounded(p.server_key(name)).await,
        }
    }

    pub async fn insert_server_key(
        &self,
        name: &'static str,
        sealed: Vec<u8>,
    ) -> Result<(), DbError> {
        match self {
            Db::Sqlite(s) => s.insert_server_key(name, sealed).await,
            Db::Postgres(p) => p.bounded(p.insert_server_key(name, sealed)).await,
        }
    }

    pub async fn meta(&self, key: &'static str) -> Result<Option<String>, DbError> {
        match self {
            Db::Sqlite(s) => s.meta(key).await,
            Db::Postgres(p) => p.bounded(p.meta(key)).await,
        }
    }

    pub async fn import(&self, import: Import) -> Result<(), DbError> {
        match self {
            Db::Sqlite(s) => s.import(import).await,
            Db::Postgres(p) => p.bounded(p.import(import)).await,
        }
    }
}

/// The retired keys of `rows` beyond the newest `keep` (they leave JWKS).
pub fn beyond_retired(rows: &[KeyRow], keep: usize) -> Vec<String> {
    let retired: Vec<&KeyRow> = rows.iter().filter(|r| r.retired_at.is_some()).collect();
    let extra = retired.len().saturating_sub(keep);
    retired.iter().take(extra).map(|r| r.kid.clone()).collect()
}
