//! The shared store: a PostgreSQL database that any number of issuer
//! replicas use at once. Writes from every replica are serialised by a
//! transaction-level advisory lock, so the change feed (`changes`, one row
//! per changed entity, and a `NOTIFY` at commit) is in commit order; each
//! replica follows it to keep its in-memory view current (see `feed`).

use super::db::{DbError, Import};
use super::rows::{
    AppRow, Audit, AuditRecord, Delta, KeyRow, Loaded, assemble, assemble_into, split_scopes,
};
use super::rows::{to_i64, to_u64};
use super::schema::{self, VERSIONS_TABLE};
use super::sql;
use crate::clock::unix_now;
use crate::issuer::registry::Apps;
use crate::issuer::registry::{Api, App};
use crate::oauth::ids::{Audience, ClientId};
use futures_util::StreamExt as _;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard, mpsc};
use tokio_postgres::{AsyncMessage, Client, GenericClient, NoTls, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Apps read at once at start (with their child rows).
const LOAD_PAGE: i64 = 2000;
/// The load's queries: client ids in byte order (`COLLATE "C"`, as the
/// schema declares them), the order the merge in `assemble` expects.
const APPS_PAGE: &str = "SELECT client_id, name, blocked, blocked_at FROM apps WHERE client_id > $1 ORDER BY client_id LIMIT $2";
const GRANTS_RANGE: &str = "SELECT client_id, audience, scopes FROM app_grants WHERE client_id >= $1 AND client_id <= $2 ORDER BY client_id, audience";
const SECRETS_RANGE: &str = "SELECT client_id, mac, not_after FROM app_secrets WHERE client_id >= $1 AND client_id <= $2 ORDER BY client_id";
const APP_KEYS_RANGE: &str = "SELECT client_id, jwks FROM app_keys WHERE client_id >= $1 AND client_id <= $2 ORDER BY client_id";

/// The advisory lock every write and every migration takes.
const LOCK: i64 = 0x6d32_6d5f_6973_7375; // "m2m_issu"
/// The channel replicas listen on.
pub const CHANNEL: &str = "m2m_issuer_changes";
/// How long the change feed keeps rows (a replica away longer reloads whole).
const FEED_KEPT_SECS: u64 = 24 * 3600;
/// How long connecting may take, TLS and authentication included (the
/// driver's `connect_timeout` bounds the TCP connection only: a server that
/// accepts and then hangs would hold a reconnection forever).
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// How long one store operation may wait for PostgreSQL before it is
/// refused as unavailable (and its connection dropped).
pub const QUERY_LIMIT: Duration = Duration::from_secs(5);

pub struct Postgres {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    writer: Mutex<Option<Client>>,
    /// `host:port/db`, for messages (never the password).
    pub target: String,
}

impl Postgres {
    /// Connect to `url` (password from `password`, TLS if `ca_file`) and
    /// bring the schema up to date under the advisory lock.
    pub async fn open(
        url: &str,
        password: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Self, DbError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| DbError::Url(Box::new(e)))?;
        if let Some(p) = password {
            config.password(p);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("m2m-sidecar issuer");
        let tls = match ca_file {
            Some(path) => Some(tls_from(path)?),
            None => None,
        };
        if tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        let target = target(&config);
        let pg = Postgres {
            config,
            tls,
            writer: Mutex::new(None),
            target,
        };
        pg.migrate().await?;
        Ok(pg)
    }

    fn err(&self, e: tokio_postgres::Error) -> DbError {
        DbError::postgres(&self.target, e)
    }

    /// A new connection, and the stream of its notifications (ends when the
    /// connection does); at most [`CONNECT_LIMIT`].
    pub async fn connect(&self) -> Result<(Client, mpsc::UnboundedReceiver<String>), DbError> {
        tokio::time::timeout(CONNECT_LIMIT, self.connect_unbounded())
            .await
            .unwrap_or_else(|_| Err(self.err(tokio_postgres::Error::__private_api_timeout())))
    }

    async fn connect_unbounded(
        &self,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), DbError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = match &self.tls {
            Some(tls) => {
                let (client, conn) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|e| self.err(e))?;
                tokio::spawn(drive(conn, tx));
                client
            }
            None => {
                let (client, conn) = self.config.connect(NoTls).await.map_err(|e| self.err(e))?;
                tokio::spawn(drive(conn, tx));
                client
            }
        };
        Ok((client, rx))
    }

    /// Forget the writer connection (it did not answer): the next call
    /// connects again.
    pub async fn drop_writer(&self) {
        *self.writer.lock().await = None;
    }

    /// `op`, refused as unavailable when PostgreSQL does not answer within
    /// [`QUERY_LIMIT`].
    pub async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        match tokio::time::timeout(QUERY_LIMIT, op).await {
            Ok(r) => r,
            Err(_) => {
                self.drop_writer().await;
                Err(DbError::Timeout(self.target.clone()))
            }
        }
    }

    /// The writer connection, (re)connected if needed.
    pub async fn writer(&self) -> Result<MutexGuard<'_, Option<Client>>, DbError> {
        let mut guard = self.writer.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            let (client, _) = self.connect().await?;
            *guard = Some(client);
        }
        Ok(guard)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let mut guard = self.writer().await?;
        let client = guard.as_mut().ok_or(DbError::Stopped)?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await
            .map_err(|e| self.err(e))?;
        tx.batch_execute(VERSIONS_TABLE)
            .await
            .map_err(|e| self.err(e))?;
        let applied: Vec<i64> = tx
            .query(sql::VERSIONS, &[])
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (version, name, _, ddl) in schema::pending(&applied)? {
            tx.batch_execute(ddl).await.map_err(|e| self.err(e))?;
            tx.execute(sql::RECORD_VERSION, &[version, name, &to_i64(unix_now())])
                .await
                .map_err(|e| self.err(e))?;
            tracing::info!(version, name, "store: applied a schema migration");
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    pub async fn load(&self) -> Result<(Loaded, i64), DbError> {
        let mut guard = self.writer().await?;
        let client = guard.as_mut().ok_or(DbError::Stopped)?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(|e| self.err(e))?;
        let loaded = load(&tx).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(loaded)
    }

    pub async fn audit_page(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>, DbError> {
        let guard = self.writer().await?;
        let client = guard.as_ref().ok_or(DbError::Stopped)?;
        let limit = i64::try_from(limit).unwrap_or(1000);
        let rows = client
            .query(sql::AUDIT_PAGE, &[&after, &limit])
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                seq: r.get(0),
                time: to_u64(r.get(1)).unwrap_or_default(),
                caller: r.get(2),
                action: r.get(3),
                target: r.get(4),
                outcome: r.get(5),
            })
            .collect())
    }

    pub async fn record(&self, audit: Audit, outcome: String) -> Result<(), DbError> {
        let guard = self.writer().await?;
        let client = guard.as_ref().ok_or(DbError::Stopped)?;
        record(client, &audit, &outcome)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn keys(&self, alg: &str) -> Result<Vec<KeyRow>, DbError> {
        let guard = self.writer().await?;
        let client = guard.as_ref().ok_or(DbError::Stopped)?;
        keys(client, alg).await.map_err(|e| self.err(e))
    }

    pub async fn insert_key_if_none(&self, row: KeyRow) -> Result<(), DbError> {
        let guard = self.writer().await?;
        let client = guard.as_ref().ok_or(DbError::Stopped)?;
        client
            .execute(
                sql::INSERT_KEY_IF_NONE,
                &[
                    &row.kid,
                    &row.alg,
                    &row.jwk,
                    &row.sealed,
                    &super::rows::now_ns(),
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Key rotation: one transaction, under the write lock, announced on
    /// the feed.
    pub async fn rotate(
        &self,
        row: KeyRow,
        retire_after: u64,
        max_retired: usize,
        mut audit: Audit,
    ) -> Result<(), DbError> {
        let mut guard = self.writer().await?;
        let client = guard.as_mut().ok_or(DbError::Stopped)?;
        let run = async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                .await?;
            let now = to_i64(unix_now());
            tx.execute(sql::RETIRE_ACTIVE, &[&now, &to_i64(retire_after), &row.alg])
                .await?;
            let made = super::rows::now_ns();
            tx.execute(
                sql::INSERT_KEY,
                &[&row.kid, &row.alg, &row.jwk, &row.sealed, &made],
            )
            .await?;
            tx.execute(sql::PRUNE_KEYS, &[&now]).await?;
            for kid in super::db::beyond_retired(&keys(&tx, &row.alg).await?, max_retired) {
                tx.execute("DELETE FROM signing_keys WHERE kid = $1", &[&kid])
                    .await?;
            }
            audit.target = row.kid.clone();
            record(&tx, &audit, "ok").await?;
            tx.execute(sql::INSERT_CHANGE, &[&super::rows::KEYS, &row.alg, &now])
                .await?;
            tx.execute("SELECT pg_notify($1, 'keys')", &[&CHANNEL])
                .await?;
            tx.commit().await
        };
        run.await.map_err(|e| self.err(e))
    }

    pub async fn server_key(&self, name: &'static str) -> Result<Option<Vec<u8>>, DbError> {
        let guard = self.writer().await?;
        let client = guard.as_ref().ok_or(DbError::Stopped)?;
        let row = client
            .query_opt(sql::SERVER_KEY, &[&name])
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn insert_server_key(
        &self,
        name: &'static str,
        sealed: Vec<u8>,
    ) -> Result<(), DbError> {
        let guard = self.writer().await?;
        let client = guard.as_ref().ok_or(DbError::Stopped)?;
        client
            .execute(sql::INSERT_SERVER_KEY, &[&name, &sealed])
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub async fn meta(&self, key: &'static str) -> Result<Option<String>, DbError> {
        let guard = self.writer().await?;
        let client = guard.as_ref().ok_or(DbError::Stopped)?;
        let row = client
            .query_opt(sql::META, &[&key])
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn import(&self, import: Import) -> Result<(), DbError> {
        let mut guard = self.writer().await?;
        let client = guard.as_mut().ok_or(DbError::Stopped)?;
        let run = async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                .await?;
            // Another replica may have imported it meanwhile.
            if tx.query_opt(sql::META, &[&import.meta.0]).await?.is_some() {
                return tx.commit().await;
            }
            write_delta(&tx, &import.delta).await?;
            let now = to_i64(unix_now());
            for (i, row) in import.keys.iter().enumerate() {
                let made = super::rows::now_ns() + i64::try_from(i).unwrap_or(0);
                let retired_at = row.retired_at.map(to_i64);
                let retire_after = row.retire_after.map(to_i64);
                tx.execute(
                    sql::INSERT_RETIRED_KEY,
                    &[
                        &row.kid,
                        &row.alg,
                        &row.jwk,
                        &row.sealed,
                        &made,
                        &retired_at,
                        &retire_after,
                    ],
                )
                .await?;
            }
            if let Some((name, sealed)) = &import.server_key {
                tx.execute(sql::INSERT_SERVER_KEY, &[name, sealed]).await?;
            }
            tx.execute(sql::SET_META, &[&import.meta.0, &import.meta.1])
                .await?;
            tx.execute(sql::INSERT_CHANGE, &[&"all", &"", &now]).await?;
            tx.execute("SELECT pg_notify($1, 'import')", &[&CHANNEL])
                .await?;
            tx.commit().await
        };
        run.await.map_err(|e| self.err(e))
    }
}

/// Drive a connection, forwarding its notifications' payloads.
async fn drive<S, T>(mut conn: tokio_postgres::Connection<S, T>, tx: mpsc::UnboundedSender<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio_postgres::tls::TlsStream + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    while let Some(m) = messages.next().await {
        match m {
            Ok(AsyncMessage::Notification(n)) => {
                let _ = tx.send(n.payload().to_owned());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "store: connection ended");
                break;
            }
        }
    }
}

/// A rustls client config trusting only the CA in `path`.
fn tls_from(path: &Path) -> Result<MakeRustlsConnect, DbError> {
    let pem = std::fs::read(path).map_err(|source| DbError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let mut any = false;
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls_pki_types::CertificateDer<'static> =
            cert.map_err(|_| DbError::Ca(path.to_owned()))?;
        roots.add(cert).map_err(|_| DbError::Ca(path.to_owned()))?;
        any = true;
    }
    if !any {
        return Err(DbError::Ca(path.to_owned()));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|_| DbError::Ca(path.to_owned()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn target(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", c.get_dbname().unwrap_or_default())
}

/// Begin a change: a transaction holding the write lock.
pub async fn begin(client: &mut Client) -> Result<Transaction<'_>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    Ok(tx)
}

/// The feed after `seq`: (seq, kind, id), in order; `None` if rows after
/// `seq` were pruned already (reload everything).
pub async fn changes_since(
    c: &impl GenericClient,
    seq: i64,
) -> Result<Option<Vec<(i64, String, String)>>, tokio_postgres::Error> {
    let pruned: i64 = c
        .query_opt(sql::META, &[&"changes_pruned_through"])
        .await?
        .and_then(|r| r.get::<_, String>(0).parse().ok())
        .unwrap_or(0);
    if seq < pruned {
        return Ok(None);
    }
    let rows = c
        .query(
            "SELECT seq, kind, id FROM changes WHERE seq > $1 ORDER BY seq",
            &[&seq],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    ))
}

/// One entity of the feed, as the database holds it now.
pub enum Reloaded {
    App(ClientId, Option<App>),
    Api(String, Option<Api>),
    NotBefore(ClientId, Option<u64>),
    Revoked(String, Option<u64>),
    DeletedApi(String, bool),
    DeletedApp(ClientId, bool),
    Keys,
    All,
}

pub async fn reload(
    c: &impl GenericClient,
    kind: &str,
    id: &str,
) -> Result<Reloaded, tokio_postgres::Error> {
    use super::rows as k;
    Ok(match kind {
        k::APP => {
            let app = c.query_opt(sql::APP, &[&id]).await?.map(|r| app_row(&r));
            let app = match app {
                None => None,
                Some(row) => {
                    let grants = triples(c.query(sql::APP_GRANTS, &[&id]).await?);
                    let secrets: Vec<(String, Vec<u8>, Option<u64>)> = c
                        .query(sql::APP_SECRETS, &[&id])
                        .await?
                        .iter()
                        .map(|r| (r.get(0), r.get(1), to_u64(r.get(2))))
                        .collect();
                    let keys: Vec<(String, String)> = c
                        .query(sql::APP_KEY, &[&id])
                        .await?
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect();
                    assemble(vec![row], grants, secrets, keys)
                        .shared(id)
                        .map(std::sync::Arc::unwrap_or_clone)
                }
            };
            Reloaded::App(ClientId::from(id), app)
        }
        k::API => Reloaded::Api(
            id.to_owned(),
            c.query_opt(sql::API, &[&id]).await?.map(|r| api_row(&r)),
        ),
        k::NOT_BEFORE => {
            let nb = c
                .query_opt(sql::BLOCK, &[&id])
                .await?
                .and_then(|r| to_u64(r.get(1)));
            Reloaded::NotBefore(ClientId::from(id), nb)
        }
        k::REVOKED => {
            let exp = c
                .query_opt(sql::REVOKED_ONE, &[&id])
                .await?
                .and_then(|r| to_u64(r.get(1)));
            Reloaded::Revoked(id.to_owned(), exp)
        }
        k::DELETED_API => Reloaded::DeletedApi(
            id.to_owned(),
            c.query_opt(sql::DELETED_ONE, &[&"api", &id])
                .await?
                .is_some(),
        ),
        k::DELETED_APP => Reloaded::DeletedApp(
            ClientId::from(id),
            c.query_opt(sql::DELETED_ONE, &[&"app", &id])
                .await?
                .is_some(),
        ),
        k::KEYS => Reloaded::Keys,
        _ => Reloaded::All,
    })
}

/// Write a change and its feed rows, notify; the highest feed seq written.
pub async fn write(
    tx: &Transaction<'_>,
    delta: &Delta,
    audit: Option<&Audit>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    write_delta(tx, delta).await?;
    if let Some(a) = audit {
        record(tx, a, "ok").await?;
    }
    let now = unix_now();
    let at = to_i64(now);
    let mut last = None;
    for (kind, id) in delta.changes() {
        let row = tx
            .query_one(
                "INSERT INTO changes (kind, id, at) VALUES ($1, $2, $3) RETURNING seq",
                &[&kind, &id, &at],
            )
            .await?;
        last = Some(row.get::<_, i64>(0));
    }
    if let Some(seq) = last {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])
            .await?;
        // Now and then, forget feed rows older than a day.
        if seq % 1000 == 0 {
            let before = to_i64(now.saturating_sub(FEED_KEPT_SECS));
            let pruned = tx
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE at < $1",
                    &[&before],
                )
                .await?
                .get::<_, i64>(0);
            if pruned > 0 {
                tx.execute("DELETE FROM changes WHERE seq <= $1", &[&pruned])
                    .await?;
                tx.execute(
                    sql::SET_META,
                    &[&"changes_pruned_through", &pruned.to_string()],
                )
                .await?;
            }
        }
    }
    Ok(last)
}

/// Everything the database holds, and the feed position it is at. Through
/// a connection the caller holds (the writer's mutex is not taken: a replica
/// reloading while it holds it, behind a pruned feed, must not wait for
/// itself), in a transaction that sees one snapshot.
pub async fn load(tx: &impl GenericClient) -> Result<(Loaded, i64), tokio_postgres::Error> {
    let seq: i64 = tx
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM changes", &[])
        .await?
        .get(0);
    let apis = tx
        .query(sql::APIS, &[])
        .await?
        .iter()
        .map(api_row)
        .collect();
    // A page of apps at a time with their child rows, merged as they are
    // read: the rows held at once stay bounded whatever the registry's size.
    let mut apps = Apps::default();
    let mut after = String::new();
    loop {
        let app_rows = tx.query(APPS_PAGE, &[&after, &LOAD_PAGE]).await?;
        let (Some(first), Some(last)) = (app_rows.first(), app_rows.last()) else {
            break;
        };
        let (lo, hi): (String, String) = (first.get(0), last.get(0));
        let grant_rows = tx.query(GRANTS_RANGE, &[&lo, &hi]).await?;
        let secret_rows = tx.query(SECRETS_RANGE, &[&lo, &hi]).await?;
        let key_rows = tx.query(APP_KEYS_RANGE, &[&lo, &hi]).await?;
        assemble_into(
            &mut apps,
            app_rows.iter().map(app_row),
            grant_rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))),
            secret_rows
                .iter()
                .map(|r| (r.get(0), r.get(1), to_u64(r.get(2)))),
            key_rows.iter().map(|r| (r.get(0), r.get(1))),
        );
        after = hi;
    }
    let not_before = tx
        .query(sql::BLOCKS, &[])
        .await?
        .iter()
        .map(|r| {
            (
                ClientId::from(r.get::<_, String>(0)),
                to_u64(r.get(1)).unwrap_or_default(),
            )
        })
        .collect();
    let revoked = tx
        .query(sql::REVOKED, &[])
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), to_u64(r.get(1)).unwrap_or_default()))
        .collect();
    let mut loaded = Loaded {
        apis,
        apps,
        not_before,
        revoked,
        ..Loaded::default()
    };
    for r in tx.query(sql::DELETED, &[]).await? {
        let (kind, id): (String, String) = (r.get(0), r.get(1));
        if kind == "api" {
            loaded.deleted_apis.insert(id);
        } else {
            loaded.deleted_apps.insert(ClientId::from(id));
        }
    }
    Ok((loaded, seq))
}

fn api_row(r: &tokio_postgres::Row) -> Api {
    Api {
        id: r.get(0),
        name: r.get(1),
        identifier: Audience::from(r.get::<_, String>(2)),
        scopes: split_scopes(r.get(3)),
    }
}

fn app_row(r: &tokio_postgres::Row) -> AppRow {
    AppRow {
        client_id: r.get(0),
        name: r.get(1),
        blocked: r.get::<_, i64>(2) != 0,
        blocked_at: to_u64(r.get(3)),
    }
}

fn triples(rows: Vec<tokio_postgres::Row>) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn keys(c: &impl GenericClient, alg: &str) -> Result<Vec<KeyRow>, tokio_postgres::Error> {
    Ok(c.query(sql::KEYS, &[&alg])
        .await?
        .iter()
        .map(|r| KeyRow {
            kid: r.get(0),
            alg: r.get(1),
            jwk: r.get(2),
            sealed: r.get(3),
            retired_at: to_u64(r.get(4)),
            retire_after: to_u64(r.get(5)),
        })
        .collect())
}

async fn record(
    c: &impl GenericClient,
    a: &Audit,
    outcome: &str,
) -> Result<(), tokio_postgres::Error> {
    let caller = a.caller.as_ref().map(ToString::to_string);
    c.execute(
        sql::INSERT_AUDIT,
        &[&to_i64(unix_now()), &caller, &a.action, &a.target, &outcome],
    )
    .await
    .map(|_| ())
}

async fn write_delta(tx: &Transaction<'_>, d: &Delta) -> Result<(), tokio_postgres::Error> {
    for (q, params) in sql::delta_statements(d, unix_now()) {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        tx.execute(q, &params).await?;
    }
    Ok(())
}
