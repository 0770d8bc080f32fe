//! The statements both databases run (`$n` parameters, each used once and in
//! order, which SQLite binds by position too).

pub const APIS: &str = "SELECT id, name, identifier, scopes FROM apis";
pub const APPS: &str = "SELECT client_id, name, blocked, blocked_at FROM apps ORDER BY client_id";
pub const GRANTS: &str =
    "SELECT client_id, audience, scopes FROM app_grants ORDER BY client_id, audience";
pub const SECRETS: &str = "SELECT client_id, mac, not_after FROM app_secrets ORDER BY client_id";
pub const APP_KEYS: &str = "SELECT client_id, jwks FROM app_keys ORDER BY client_id";
pub const BLOCKS: &str = "SELECT client_id, not_before FROM blocks";
pub const REVOKED: &str = "SELECT jti, exp FROM revoked_tokens";
pub const DELETED: &str = "SELECT kind, id FROM deleted";

pub const APP: &str = "SELECT client_id, name, blocked, blocked_at FROM apps WHERE client_id = $1";
pub const APP_GRANTS: &str =
    "SELECT client_id, audience, scopes FROM app_grants WHERE client_id = $1";
pub const APP_SECRETS: &str =
    "SELECT client_id, mac, not_after FROM app_secrets WHERE client_id = $1";
pub const APP_KEY: &str = "SELECT client_id, jwks FROM app_keys WHERE client_id = $1";
pub const API: &str = "SELECT id, name, identifier, scopes FROM apis WHERE id = $1";
pub const BLOCK: &str = "SELECT client_id, not_before FROM blocks WHERE client_id = $1";
pub const REVOKED_ONE: &str = "SELECT jti, exp FROM revoked_tokens WHERE jti = $1";
pub const DELETED_ONE: &str = "SELECT kind, id FROM deleted WHERE kind = $1 AND id = $2";

pub const UPSERT_APP: &str = "INSERT INTO apps (client_id, name, blocked, blocked_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, blocked = excluded.blocked, blocked_at = excluded.blocked_at";
pub const DELETE_APP: &str = "DELETE FROM apps WHERE client_id = $1";
pub const DELETE_GRANTS: &str = "DELETE FROM app_grants WHERE client_id = $1";
pub const DELETE_SECRETS: &str = "DELETE FROM app_secrets WHERE client_id = $1";
pub const DELETE_APP_KEYS: &str = "DELETE FROM app_keys WHERE client_id = $1";
pub const INSERT_GRANT: &str =
    "INSERT INTO app_grants (client_id, audience, scopes) VALUES ($1, $2, $3)";
pub const INSERT_SECRET: &str = "INSERT INTO app_secrets (client_id, mac, not_after) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
pub const INSERT_APP_KEYS: &str = "INSERT INTO app_keys (client_id, jwks) VALUES ($1, $2)";
pub const UPSERT_API: &str = "INSERT INTO apis (id, name, identifier, scopes) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, identifier = excluded.identifier, scopes = excluded.scopes";
pub const DELETE_API: &str = "DELETE FROM apis WHERE id = $1";
pub const UPSERT_BLOCK: &str = "INSERT INTO blocks (client_id, not_before) VALUES ($1, $2) \
     ON CONFLICT (client_id) DO UPDATE SET not_before = excluded.not_before";
pub const DELETE_BLOCK: &str = "DELETE FROM blocks WHERE client_id = $1";
pub const UPSERT_REVOKED: &str = "INSERT INTO revoked_tokens (jti, exp) VALUES ($1, $2) \
     ON CONFLICT (jti) DO UPDATE SET exp = excluded.exp";
pub const DELETE_REVOKED: &str = "DELETE FROM revoked_tokens WHERE jti = $1";
pub const PRUNE_REVOKED: &str = "DELETE FROM revoked_tokens WHERE exp <= $1";
pub const INSERT_DELETED: &str =
    "INSERT INTO deleted (kind, id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
pub const DELETE_DELETED: &str = "DELETE FROM deleted WHERE kind = $1 AND id = $2";

pub const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (at, caller, action, target, outcome) VALUES ($1, $2, $3, $4, $5)";
pub const AUDIT_PAGE: &str = "SELECT seq, at, caller, action, target, outcome FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2";
pub const INSERT_CHANGE: &str = "INSERT INTO changes (kind, id, at) VALUES ($1, $2, $3)";

pub const KEYS: &str = "SELECT kid, alg, jwk, sealed, retired_at, retire_after FROM signing_keys WHERE alg = $1 ORDER BY created_ns, kid";
pub const INSERT_KEY_IF_NONE: &str = "INSERT INTO signing_keys (kid, alg, jwk, sealed, created_ns) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (alg) WHERE retired_at IS NULL DO NOTHING";
pub const INSERT_RETIRED_KEY: &str = "INSERT INTO signing_keys (kid, alg, jwk, sealed, created_ns, retired_at, retire_after) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (kid) DO NOTHING";
pub const RETIRE_ACTIVE: &str = "UPDATE signing_keys SET retired_at = $1, retire_after = $2 WHERE alg = $3 AND retired_at IS NULL";
pub const INSERT_KEY: &str =
    "INSERT INTO signing_keys (kid, alg, jwk, sealed, created_ns) VALUES ($1, $2, $3, $4, $5)";
pub const PRUNE_KEYS: &str =
    "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retire_after <= $1";

pub const SERVER_KEY: &str = "SELECT sealed FROM server_keys WHERE name = $1";
pub const INSERT_SERVER_KEY: &str =
    "INSERT INTO server_keys (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
pub const META: &str = "SELECT value FROM meta WHERE key = $1";
pub const SET_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

pub const VERSIONS: &str = "SELECT version FROM schema_migrations ORDER BY version";
pub const RECORD_VERSION: &str =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)";

/// A parameter of a statement, bound by either driver.
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
    Null,
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(s.to_owned())
    }
}

impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(s)
    }
}

impl From<u64> for Param {
    fn from(v: u64) -> Self {
        Param::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<Option<u64>> for Param {
    fn from(v: Option<u64>) -> Self {
        v.map_or(Param::Null, Param::from)
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Param::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

impl tokio_postgres::types::ToSql for Param {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Text(s) => s.to_sql(ty, out),
            Param::Int(i) => i.to_sql(ty, out),
            Param::Bytes(b) => b.to_sql(ty, out),
            Param::Null => Ok(tokio_postgres::types::IsNull::Yes),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <String as tokio_postgres::types::ToSql>::accepts(ty)
            || <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || <Vec<u8> as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The statements that write `d`, in order, the same for both databases.
pub fn delta_statements(d: &super::rows::Delta, now: u64) -> Vec<(&'static str, Vec<Param>)> {
    use super::rows::join_scopes;
    let mut out: Vec<(&'static str, Vec<Param>)> = Vec::new();
    for (id, app) in &d.apps {
        let id = id.as_str();
        out.push((DELETE_GRANTS, vec![id.into()]));
        out.push((DELETE_SECRETS, vec![id.into()]));
        out.push((DELETE_APP_KEYS, vec![id.into()]));
        let Some(app) = app else {
            out.push((DELETE_APP, vec![id.into()]));
            continue;
        };
        out.push((
            UPSERT_APP,
            vec![
                id.into(),
                app.name.clone().into(),
                Param::Int(i64::from(app.blocked)),
                app.blocked_at.into(),
            ],
        ));
        for (aud, scopes) in &app.grants {
            out.push((
                INSERT_GRANT,
                vec![id.into(), aud.as_str().into(), join_scopes(scopes).into()],
            ));
        }
        for s in &app.secrets {
            out.push((
                INSERT_SECRET,
                vec![id.into(), Param::Bytes(s.mac.clone()), s.not_after.into()],
            ));
        }
        if let Some(keys) = &app.jwks {
            out.push((
                INSERT_APP_KEYS,
                vec![id.into(), keys.document().to_string().into()],
            ));
        }
    }
    for (id, api) in &d.apis {
        out.push(match api {
            Some(a) => (
                UPSERT_API,
                vec![
                    a.id.as_str().into(),
                    a.name.as_str().into(),
                    a.identifier.as_str().into(),
                    join_scopes(&a.scopes).into(),
                ],
            ),
            None => (DELETE_API, vec![id.as_str().into()]),
        });
    }
    for (id, nb) in &d.not_before {
        out.push(match nb {
            Some(t) => (UPSERT_BLOCK, vec![id.as_str().into(), (*t).into()]),
            None => (DELETE_BLOCK, vec![id.as_str().into()]),
        });
    }
    for (jti, exp) in &d.revoked {
        out.push(match exp {
            Some(e) => (UPSERT_REVOKED, vec![jti.as_str().into(), (*e).into()]),
            None => (DELETE_REVOKED, vec![jti.as_str().into()]),
        });
    }
    let deleted = d
        .deleted_apis
        .iter()
        .map(|(id, on)| ("api", id.as_str(), *on))
        .chain(
            d.deleted_apps
                .iter()
                .map(|(id, on)| ("app", id.as_str(), *on)),
        );
    for (kind, id, on) in deleted {
        let q = if on { INSERT_DELETED } else { DELETE_DELETED };
        out.push((q, vec![kind.into(), id.into()]));
    }
    out.push((PRUNE_REVOKED, vec![now.into()]));
    out
}
