//! The schema, as numbered migrations: each applied once, in order, in its
//! own transaction, and recorded in `schema_migrations`. Migrations are
//! forward-only and additive, so replicas of the previous release keep
//! working while a rolling update runs. A database migrated by a newer
//! release than this one is refused at start. On PostgreSQL, client ids
//! are `COLLATE "C"` (byte order, as SQLite's and Rust's): the start-up
//! load merges tables in that order.

/// (version, what it does, SQLite DDL, PostgreSQL DDL)
pub type Migration = (i64, &'static str, &'static str, &'static str);

pub const MIGRATIONS: &[Migration] = &[(
    1,
    "registry, keys, audit log, change feed",
    "CREATE TABLE apis (id TEXT PRIMARY KEY, name TEXT NOT NULL, identifier TEXT NOT NULL, scopes TEXT NOT NULL);
     CREATE TABLE apps (client_id TEXT PRIMARY KEY, name TEXT NOT NULL, blocked BIGINT NOT NULL, blocked_at BIGINT);
     CREATE TABLE app_grants (client_id TEXT NOT NULL, audience TEXT NOT NULL, scopes TEXT NOT NULL, PRIMARY KEY (client_id, audience));
     CREATE TABLE app_secrets (client_id TEXT NOT NULL, mac BLOB NOT NULL, not_after BIGINT, PRIMARY KEY (client_id, mac));
     CREATE TABLE app_keys (client_id TEXT PRIMARY KEY, jwks TEXT NOT NULL);
     CREATE TABLE blocks (client_id TEXT PRIMARY KEY, not_before BIGINT NOT NULL);
     CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, exp BIGINT NOT NULL);
     CREATE INDEX revoked_tokens_exp ON revoked_tokens (exp);
     CREATE TABLE deleted (kind TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (kind, id));
     CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, jwk TEXT NOT NULL, sealed BLOB NOT NULL, created_ns BIGINT NOT NULL, retired_at BIGINT, retire_after BIGINT);
     CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE retired_at IS NULL;
     CREATE TABLE server_keys (name TEXT PRIMARY KEY, sealed BLOB NOT NULL);
     CREATE TABLE audit_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL, caller TEXT, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL);
     CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, id TEXT NOT NULL, at BIGINT NOT NULL);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    "CREATE TABLE apis (id TEXT PRIMARY KEY, name TEXT NOT NULL, identifier TEXT NOT NULL, scopes TEXT NOT NULL);
     CREATE TABLE apps (client_id TEXT COLLATE \"C\" PRIMARY KEY, name TEXT NOT NULL, blocked BIGINT NOT NULL, blocked_at BIGINT);
     CREATE TABLE app_grants (client_id TEXT COLLATE \"C\" NOT NULL, audience TEXT NOT NULL, scopes TEXT NOT NULL, PRIMARY KEY (client_id, audience));
     CREATE TABLE app_secrets (client_id TEXT COLLATE \"C\" NOT NULL, mac BYTEA NOT NULL, not_after BIGINT, PRIMARY KEY (client_id, mac));
     CREATE TABLE app_keys (client_id TEXT COLLATE \"C\" PRIMARY KEY, jwks TEXT NOT NULL);
     CREATE TABLE blocks (client_id TEXT PRIMARY KEY, not_before BIGINT NOT NULL);
     CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, exp BIGINT NOT NULL);
     CREATE INDEX revoked_tokens_exp ON revoked_tokens (exp);
     CREATE TABLE deleted (kind TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (kind, id));
     CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, jwk TEXT NOT NULL, sealed BYTEA NOT NULL, created_ns BIGINT NOT NULL, retired_at BIGINT, retire_after BIGINT);
     CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE retired_at IS NULL;
     CREATE TABLE server_keys (name TEXT PRIMARY KEY, sealed BYTEA NOT NULL);
     CREATE TABLE audit_log (seq BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, caller TEXT, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL);
     CREATE TABLE changes (seq BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL, at BIGINT NOT NULL);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
)];

/// The schema version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The table that records applied migrations (same in both dialects).
pub const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// The migrations `applied` lacks, in order; refused if the database is at a
/// version newer than this release knows.
pub fn pending(applied: &[i64]) -> Result<Vec<&'static Migration>, TooNew> {
    if let Some(found) = applied.iter().copied().max().filter(|v| *v > latest()) {
        return Err(TooNew {
            found,
            known: latest(),
        });
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.0))
        .collect())
}

/// Why the schema cannot be brought up to date.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database's schema is at version {found}, newer than this release knows ({known}): run a release at least as new"
)]
pub struct TooNew {
    pub found: i64,
    pub known: i64,
}
