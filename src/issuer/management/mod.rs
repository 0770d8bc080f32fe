//! The management API under `/api/v1`, protected by the issuer's own access
//! tokens: audience `{url}api/v1/`, scopes `apis:read apis:write apps:read
//! apps:write keys:write tokens:introspect audit:read`. Missing, invalid, revoked token, or
//! one whose app is blocked or deleted (or was since the token was issued) →
//! 401; missing scope → 403 (RFC 6750). No escalation: on the management
//! audience a caller grants only scopes it has itself, and cannot touch an app
//! that holds management scopes it lacks (403). JSON in and out; duplicate keys
//! and unknown fields are refused with a message. Ids in paths are
//! percent-decoded.

//!
//! Here: routing and the errors' answers; the caller and its scopes
//! ([`caller`]); the API routes ([`apis`]); the app routes ([`apps`]).

mod apis;
mod apps;
mod caller;
mod page;

pub use caller::{Caller, bearer, caller};

use super::keyring::{KeyRing, KeyringError};
use super::registry::Registry;
use super::store::{Audit, Store, StoreError};
use crate::clock::unix_now;
use crate::oauth::ids::ClientId;
use crate::respond::Synthetic;
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::PoisonError;

/// Why a management call failed; each maps to one status.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    #[error("a valid access token for the management API is required")]
    Unauthorized { token_sent: bool },
    #[error("the token lacks the scope {0}")]
    Forbidden(&'static str),
    /// The call would hand out or touch a management scope the caller lacks.
    #[error("the caller lacks the management scope {0}, which the app would hold")]
    Escalation(String),
    /// The target app holds management scopes the caller lacks (which ones
    /// is not said: a caller without `apps:read` learns nothing of the app).
    #[error("the app holds management scopes the caller lacks")]
    Outranked,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The change could not be persisted (nothing was published).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The signing keys could not be rotated.
    #[error("{0}")]
    Keys(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no randomness")]
    NoRandomness(#[source] aws_lc_rs::error::Unspecified),
}

/// The answer (RFC 6750 §3 for token problems): 401 `invalid_token` with a
/// `Bearer realm` challenge, 403 `insufficient_scope`, 400 `invalid_request`,
/// 404 `not_found`, 409 `conflict`, 503 `temporarily_unavailable` (the
/// store is down: nothing changed), 500 `server_error`; the message as
/// `error_description`, never cached.
impl From<&MgmtError> for Synthetic<'static> {
    fn from(e: &MgmtError) -> Self {
        let insufficient = |challenge: String| {
            Synthetic::new(StatusCode::FORBIDDEN, "insufficient_scope").challenge(challenge)
        };
        let answer = match e {
            MgmtError::Unauthorized { token_sent: false } => {
                Synthetic::new(StatusCode::UNAUTHORIZED, "invalid_token")
                    .challenge("Bearer realm=\"m2m-sidecar\"")
            }
            MgmtError::Unauthorized { token_sent: true } => {
                Synthetic::new(StatusCode::UNAUTHORIZED, "invalid_token")
                    .challenge("Bearer realm=\"m2m-sidecar\", error=\"invalid_token\"")
            }
            MgmtError::Forbidden(scope) => insufficient(format!(
                "Bearer realm=\"m2m-sidecar\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            MgmtError::Escalation(scope) => insufficient(format!(
                "Bearer realm=\"m2m-sidecar\", error=\"insufficient_scope\", scope=\"{}\"",
                scope.replace(['"', '\\'], "")
            )),
            MgmtError::Outranked => {
                insufficient("Bearer realm=\"m2m-sidecar\", error=\"insufficient_scope\"".into())
            }
            MgmtError::BadRequest(_) => Synthetic::new(StatusCode::BAD_REQUEST, "invalid_request"),
            MgmtError::NotFound(_) => Synthetic::new(StatusCode::NOT_FOUND, "not_found"),
            MgmtError::Conflict(_) => Synthetic::new(StatusCode::CONFLICT, "conflict"),
            MgmtError::Store(StoreError::Unavailable(_)) => {
                Synthetic::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            MgmtError::Store(_) | MgmtError::Keys(_) | MgmtError::NoRandomness(_) => {
                Synthetic::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
        };
        answer.described(e.to_string()).pragma_no_cache()
    }
}

/// The longest grace period a secret rotation accepts.
pub const MAX_GRACE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Percent-decode one path segment (RFC 3986 §2.1); `None` if it is not valid
/// percent-encoding of UTF-8.
fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One call, as the routes see it.
struct Call<'a> {
    store: &'a Store,
    /// What a change through this call is recorded as (`None`: not a change).
    action: Option<&'static str>,
    /// The id the path names, if any.
    target: String,
    /// The caller, once checked.
    caller: std::sync::Mutex<Option<ClientId>>,
    /// The management audience.
    aud: &'a str,
    headers: &'a HeaderMap,
    /// The query string (list calls: `limit`, `after`, `prefix`).
    query: Option<&'a str>,
    body: &'a [u8],
    verifier: &'a super::introspect::Verifier,
}

impl Call<'_> {
    /// The caller, checked ([`caller()`]).
    fn who(&self) -> Result<Caller, MgmtError> {
        let c = caller(
            self.verifier,
            &self.store.snapshot(),
            self.aud,
            self.headers,
        )?;
        *self.caller.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.client_id.clone());
        Ok(c)
    }

    /// The audit record of a change through this call (its target, when the
    /// path names none, is what the change made).
    fn audit(&self) -> Option<Audit> {
        Some(Audit {
            caller: self
                .caller
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            action: self.action?,
            // Ids are at most 128 characters; a longer one is recorded cut.
            target: shown_target(&self.target),
        })
    }
}

impl Call<'_> {
    /// Make a change as `caller`, who needs `scope`: checked again against
    /// the registry the change is made to, then `f` with that caller.
    async fn change<T>(
        &self,
        caller: &Caller,
        scope: &'static str,
        f: impl FnOnce(&Caller, &mut Registry, &mut super::store::Tombstones) -> Result<T, MgmtError>,
    ) -> Result<T, MgmtError> {
        self.store
            .change(self.audit(), |reg, t| {
                let now = caller.recheck(reg, self.aud)?;
                now.need(scope)?;
                f(&now, reg, t)
            })
            .await
    }
}

/// A name or identifier as given: at most `max` characters, none of them a
/// control character (NUL among them: PostgreSQL refuses it in text, and
/// names reach logs and consoles).
fn text(field: &str, value: &str, max: usize) -> Result<(), MgmtError> {
    if value.chars().count() > max {
        return Err(MgmtError::BadRequest(format!(
            "{field}: at most {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(MgmtError::BadRequest(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(())
}

/// The longest app or API name.
const MAX_NAME: usize = 200;
/// The longest API identifier (an audience).
const MAX_IDENTIFIER: usize = 512;

/// What a management call changes, as the audit log names it, and the id
/// its path names (empty: the change decides, e.g. a new app's client id).
fn action(method: &Method, segments: &[&str]) -> Option<(&'static str, String)> {
    let id = |s: &&str| (*s).to_owned();
    Some(match (method, segments) {
        (&Method::POST, ["apis"]) => ("api.create", String::new()),
        (&Method::PATCH, ["apis", i]) => ("api.update", id(i)),
        (&Method::DELETE, ["apis", i]) => ("api.delete", id(i)),
        (&Method::POST, ["apps"]) => ("app.create", String::new()),
        (&Method::PATCH, ["apps", i]) => ("app.update", id(i)),
        (&Method::DELETE, ["apps", i]) => ("app.delete", id(i)),
        (&Method::PUT, ["apps", i, "grants"]) => ("app.grants", id(i)),
        (&Method::POST, ["apps", i, "block"]) => ("app.block", id(i)),
        (&Method::POST, ["apps", i, "unblock"]) => ("app.unblock", id(i)),
        (&Method::POST, ["apps", i, "secrets"]) => ("app.rotate_secret", id(i)),
        (&Method::POST, ["keys", "rotate"]) => ("keys.rotate", String::new()),
        _ => return None,
    })
}

/// A target as the audit log records it: at most 128 characters (ids are
/// no longer), control and bidi-override characters replaced, so a record
/// cannot pose as another line or rewrite itself on a console.
fn shown_target(target: &str) -> String {
    target
        .chars()
        .take(128)
        .map(|c| {
            if c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
            {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// The id a create call asks for (`client_id`, else `id`, else `name`), for
/// the record of a refused create; a successful one records what it made.
fn asked_for(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ["client_id", "id", "name"]
        .iter()
        .find_map(|k| v.get(k).and_then(|x| x.as_str()))
        .unwrap_or_default()
        .to_owned()
}

/// How a refused change is recorded.
fn outcome(e: &MgmtError) -> &'static str {
    match e {
        MgmtError::Unauthorized { .. } => "unauthorized",
        MgmtError::Forbidden(_) | MgmtError::Escalation(_) | MgmtError::Outranked => "forbidden",
        MgmtError::BadRequest(_) => "bad_request",
        MgmtError::NotFound(_) => "not_found",
        MgmtError::Conflict(_) => "conflict",
        MgmtError::Store(StoreError::Unavailable(_)) => "unavailable",
        MgmtError::Store(_) | MgmtError::Keys(_) | MgmtError::NoRandomness(_) => "error",
    }
}

/// Handle one management call; `Ok((status, body))`.
pub async fn handle(
    store: &Store,
    keys: &KeyRing,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, serde_json::Value), MgmtError> {
    let no_route = || {
        let shown: String = path.chars().take(200).collect();
        MgmtError::NotFound(format!("no route {method} {shown}"))
    };
    let segments: Vec<String> = path
        .strip_prefix("/api/v1/")
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect::<Option<_>>()
        .ok_or_else(no_route)?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let audience = store.management_audience().to_owned();
    let current = keys.current();
    let (action, target) = action(method, &segments).unzip();
    let call = Call {
        store,
        action,
        target: target.unwrap_or_default(),
        caller: std::sync::Mutex::new(None),
        aud: audience.as_str(),
        headers,
        query,
        body,
        verifier: &current.verifier,
    };
    let answer = route(&call, keys, method, &segments).await;
    // A refused change by an authenticated caller is recorded; calls
    // without a valid token are not (anyone could grow the log).
    if let (Err(e), Some(mut audit)) = (&answer, call.audit())
        && audit.caller.is_some()
    {
        if audit.target.is_empty() {
            audit.target = shown_target(&asked_for(body));
        }
        store.record_refusal(audit, outcome(e)).await;
    }
    answer?.ok_or_else(no_route)
}

async fn route(
    call: &Call<'_>,
    keys: &KeyRing,
    method: &Method,
    segments: &[&str],
) -> Result<Option<(StatusCode, serde_json::Value)>, MgmtError> {
    Ok(match (method, segments) {
        (&Method::GET, ["revocations"]) => {
            Some((StatusCode::OK, revocations(&call.store.snapshot())))
        }
        (&Method::GET, ["audit"]) => {
            call.who()?.need("audit:read")?;
            Some((StatusCode::OK, audit_page(call).await?))
        }
        (&Method::POST, ["keys", "rotate"]) => {
            call.who()?.need("keys:write")?;
            let audit = call.audit().ok_or(MgmtError::Forbidden("keys:write"))?;
            let kid = keys.rotate(audit).await.map_err(|e| match e {
                KeyringError::Store(e) => MgmtError::Store(e),
                e => MgmtError::Keys(e.into()),
            })?;
            Some((StatusCode::OK, serde_json::json!({"kid": kid})))
        }
        (method, ["apis", rest @ ..]) => apis::route(call, method, rest).await?,
        (method, ["apps", rest @ ..]) => apps::route(call, method, rest).await?,
        _ => None,
    })
}

/// `GET /api/v1/audit`: the log in the order it was written, paginated as
/// the lists are (`limit`, `after`; no `prefix`).
async fn audit_page(call: &Call<'_>) -> Result<serde_json::Value, MgmtError> {
    let page = page::Page::from_query(call.query)?;
    if page.prefix.is_some() {
        return Err(MgmtError::BadRequest(
            "the audit log takes no prefix".into(),
        ));
    }
    let after = match page.after.as_deref() {
        None => 0,
        Some(a) => a
            .parse::<i64>()
            .map_err(|_| MgmtError::BadRequest("after is not a cursor this API gave".into()))?,
    };
    // One more than asked tells whether there is a next page.
    let mut records = call.store.audit_page(after, page.limit + 1).await?;
    let more = records.len() > page.limit;
    records.truncate(page.limit);
    let next = match (more, records.last()) {
        (true, Some(last)) => Some(page::cursor(&last.seq.to_string())),
        _ => None,
    };
    let items = records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    Ok(page::answer(items, next))
}

/// A JSON body: strict (no duplicate keys at any depth), then typed.
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, MgmtError> {
    let value = crate::json::parse(body)
        .map_err(|e| MgmtError::BadRequest(format!("invalid JSON body: {e}")))?;
    serde_json::from_value(value)
        .map_err(|e| MgmtError::BadRequest(format!("invalid JSON body: {e}")))
}

fn not_found(what: &str, id: &str) -> MgmtError {
    MgmtError::NotFound(format!("no {what} `{id}`"))
}

/// The feed inbound sidecars poll. `blocked_clients`: apps blocked now and
/// since when (as before). `client_not_before`: for every client id blocked or
/// deleted at some time, the Unix second at or before which all its tokens are
/// revoked, even after an unblock or a new app under the same id.
/// `revoked_tokens`: revoked `jti`s until the token would have expired.
fn revocations(reg: &Registry) -> serde_json::Value {
    let now = unix_now();
    let mut blocked: Vec<serde_json::Value> = reg
        .apps
        .values()
        .filter(|a| a.blocked)
        .map(|a| {
            serde_json::json!({
                "client_id": a.client_id,
                "blocked_at": a.blocked_at,
                "not_before": reg.not_before.get(&a.client_id),
            })
        })
        .collect();
    blocked.sort_by(|a, b| a["client_id"].as_str().cmp(&b["client_id"].as_str()));
    let not_before: Vec<serde_json::Value> = reg
        .not_before
        .iter()
        .map(|(id, nb)| serde_json::json!({"client_id": id, "not_before": nb}))
        .collect();
    let revoked: Vec<serde_json::Value> = reg
        .revoked
        .iter()
        .filter(|(_, exp)| **exp > now)
        .map(|(jti, exp)| serde_json::json!({"jti": jti, "exp": exp}))
        .collect();
    serde_json::json!({
        "blocked_clients": blocked,
        "client_not_before": not_before,
        "revoked_tokens": revoked,
    })
}
