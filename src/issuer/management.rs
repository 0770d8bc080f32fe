//! The management API under `/api/v1`, protected by the issuer's own access
//! tokens: audience `{url}api/v1/`, scopes `apis:read apis:write apps:read
//! apps:write keys:write tokens:introspect`. Missing, invalid, revoked token, or
//! one whose app is blocked or deleted (or was since the token was issued) →
//! 401; missing scope → 403 (RFC 6750). No escalation: on the management
//! audience a caller grants only scopes it has itself, and cannot touch an app
//! that holds management scopes it lacks (403). JSON in and out; duplicate keys
//! and unknown fields are refused with a message. Ids in paths are
//! percent-decoded.

use super::introspect::Verifier;
use super::keyring::KeyRing;
use super::registry::{Api, App, RegisteredKeys, Registry};
use super::store::{Store, StoreError, Tombstones};
use crate::clock::unix_now;
use crate::jose;
use crate::oauth::ids::{Audience, ClientId, Scope};
use crate::respond::Synthetic;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

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
/// 404 `not_found`, 409 `conflict`, 500 `server_error`; the message as
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
            MgmtError::Store(_) | MgmtError::Keys(_) | MgmtError::NoRandomness(_) => {
                Synthetic::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
        };
        answer.described(e.to_string()).pragma_no_cache()
    }
}

/// Who is calling: the app behind a valid management token, and the
/// management scopes it may use now (those its token carries *and* its app is
/// still granted).
pub struct Caller {
    pub client_id: ClientId,
    pub scopes: BTreeSet<Scope>,
}

/// The bearer token of `headers`: the scheme is case-insensitive (RFC 6750
/// §2.1, RFC 9110 §11.1); more than one `Authorization` header is refused.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, MgmtError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (all.next(), all.next());
    if second.is_some() {
        return Err(MgmtError::BadRequest(
            "more than one Authorization header".into(),
        ));
    }
    Ok(first.and_then(|v| crate::oauth::authorization::bearer(v.as_bytes())))
}

/// Check the caller's bearer token exactly as introspection would (ours,
/// unexpired, not revoked, its app present, unblocked, and not blocked or
/// deleted since the token was issued), and for the management audience.
pub fn caller(
    verifier: &Verifier,
    reg: &Registry,
    audience: &str,
    headers: &HeaderMap,
) -> Result<Caller, MgmtError> {
    let Some(token) = bearer(headers)? else {
        return Err(MgmtError::Unauthorized { token_sent: false });
    };
    let bad = || MgmtError::Unauthorized { token_sent: true };
    let claims = verifier.check(token).map_err(|_| bad())?;
    if !jose::claims::audience(&claims, |a| a == audience).unwrap_or(false) {
        return Err(bad());
    }
    let app = reg.token_app(&claims).map_err(|_| bad())?;
    let granted = app.granted(audience);
    let scopes = claims
        .get("scp")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .filter(|s| granted.iter().any(|g| g == s))
        .map(Scope::from)
        .collect();
    Ok(Caller {
        client_id: app.client_id.clone(),
        scopes,
    })
}

impl Caller {
    fn need(&self, scope: &'static str) -> Result<(), MgmtError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(MgmtError::Forbidden(scope))
        }
    }

    /// No escalation: `grants` may hold, on the management audience, only
    /// scopes the caller has.
    fn may_grant(
        &self,
        grants: &BTreeMap<Audience, Vec<Scope>>,
        audience: &str,
    ) -> Result<(), MgmtError> {
        self.covers(grants.get(audience).map_or(&[], Vec::as_slice))
    }

    /// No escalation: an app holding management scopes the caller lacks may
    /// not be changed, blocked, unblocked, rotated or deleted by it.
    fn may_manage(&self, app: &App, audience: &str) -> Result<(), MgmtError> {
        self.covers(app.granted(audience))
            .map_err(|_| MgmtError::Outranked)
    }

    /// What a change answers with: the app's record for a caller that may
    /// read apps, else only its id (`apps:write` alone reads nothing).
    fn written(&self, record: serde_json::Value) -> serde_json::Value {
        if self.scopes.contains("apps:read") {
            record
        } else {
            serde_json::json!({"client_id": record.get("client_id").cloned().unwrap_or_default()})
        }
    }

    fn covers(&self, scopes: &[Scope]) -> Result<(), MgmtError> {
        match scopes.iter().find(|s| !self.scopes.contains(*s)) {
            Some(s) => Err(MgmtError::Escalation(s.as_str().to_owned())),
            None => Ok(()),
        }
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

/// Handle one management call; `Ok((status, body))`.
pub async fn handle(
    store: &Store,
    keys: &KeyRing,
    method: &Method,
    path: &str,
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
    let aud = audience.as_str();
    let current = keys.current();
    let who = || caller(&current.verifier, &store.snapshot(), aud, headers);
    let ok = |v| Ok((StatusCode::OK, v));
    match (method, segments.as_slice()) {
        (&Method::GET, ["revocations"]) => ok(revocations(&store.snapshot())),
        (&Method::POST, ["keys", "rotate"]) => {
            who()?.need("keys:write")?;
            let kid = keys.rotate().await.map_err(|e| MgmtError::Keys(e.into()))?;
            ok(serde_json::json!({"kid": kid}))
        }
        (&Method::GET, ["apis"]) => {
            who()?.need("apis:read")?;
            ok(serde_json::json!(store.snapshot().apis))
        }
        (&Method::POST, ["apis"]) => {
            who()?.need("apis:write")?;
            let new: NewApi = json(body)?;
            let api = store.change(|reg, t| create_api(reg, t, new)).await?;
            Ok((StatusCode::CREATED, serde_json::json!(api)))
        }
        (&Method::GET, ["apis", id]) => {
            who()?.need("apis:read")?;
            let reg = store.snapshot();
            let api = reg
                .apis
                .iter()
                .find(|a| a.id == *id)
                .ok_or_else(|| not_found("API", id))?;
            ok(serde_json::json!(api))
        }
        (&Method::PATCH, ["apis", id]) => {
            who()?.need("apis:write")?;
            let patch: ApiPatch = json(body)?;
            let api = store.change(|reg, _| patch_api(reg, id, patch)).await?;
            ok(serde_json::json!(api))
        }
        (&Method::DELETE, ["apis", id]) => {
            who()?.need("apis:write")?;
            store.change(|reg, t| delete_api(reg, t, id)).await?;
            Ok((StatusCode::NO_CONTENT, serde_json::Value::Null))
        }
        (&Method::GET, ["apps"]) => {
            who()?.need("apps:read")?;
            let reg = store.snapshot();
            let mut apps: Vec<&App> = reg.apps.values().collect();
            apps.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            ok(serde_json::Value::Array(
                apps.iter().map(|a| shown(&reg, a)).collect(),
            ))
        }
        (&Method::POST, ["apps"]) => {
            let c = who()?;
            c.need("apps:write")?;
            let new: NewApp = json(body)?;
            c.may_grant(&new.grants, aud)?;
            let (app, secret) = store.change(|reg, t| create_app(reg, t, new)).await?;
            let mut out = app.public();
            out["client_secret"] = secret.into();
            Ok((StatusCode::CREATED, out))
        }
        (&Method::GET, ["apps", id]) => {
            who()?.need("apps:read")?;
            let reg = store.snapshot();
            let app = reg.apps.get(*id).ok_or_else(|| not_found("app", id))?;
            ok(shown(&reg, app))
        }
        (&Method::PATCH, ["apps", id]) => {
            let c = who()?;
            c.need("apps:write")?;
            let patch: AppPatch = json(body)?;
            let record = store
                .change(|reg, _| patch_app(reg, &c, aud, id, patch))
                .await?;
            ok(c.written(record))
        }
        (&Method::DELETE, ["apps", id]) => {
            let c = who()?;
            c.need("apps:write")?;
            store
                .change(|reg, t| {
                    let app = reg.apps.get(*id).ok_or_else(|| not_found("app", id))?;
                    c.may_manage(app, aud)?;
                    reg.apps.remove(*id);
                    // Its tokens stay revoked, even for an app created again
                    // under the same id.
                    reg.revoke_all_until_now(id);
                    t.apps.insert((*id).into());
                    Ok::<_, MgmtError>(())
                })
                .await?;
            Ok((StatusCode::NO_CONTENT, serde_json::Value::Null))
        }
        (&Method::PUT, ["apps", id, "grants"]) => {
            let c = who()?;
            c.need("apps:write")?;
            let grants: BTreeMap<Audience, Vec<Scope>> = json(body)?;
            let patch = AppPatch {
                grants: Some(grants),
                ..AppPatch::default()
            };
            let record = store
                .change(|reg, _| patch_app(reg, &c, aud, id, patch))
                .await?;
            ok(c.written(record))
        }
        (&Method::POST, ["apps", id, action @ ("block" | "unblock")]) => {
            let c = who()?;
            c.need("apps:write")?;
            let patch = AppPatch {
                blocked: Some(*action == "block"),
                ..AppPatch::default()
            };
            let record = store
                .change(|reg, _| patch_app(reg, &c, aud, id, patch))
                .await?;
            ok(c.written(record))
        }
        (&Method::POST, ["apps", id, "secrets"]) => {
            let c = who()?;
            c.need("apps:write")?;
            let rotate: Rotate = if body.is_empty() {
                Rotate::default()
            } else {
                json(body)?
            };
            let grace = match rotate.grace.as_deref().map(str::trim) {
                None | Some("") => 0,
                Some(g) => {
                    let d = humantime::parse_duration(g).map_err(|e| {
                        MgmtError::BadRequest(format!("grace: invalid duration `{g}`: {e}"))
                    })?;
                    if d > MAX_GRACE {
                        return Err(MgmtError::BadRequest(format!(
                            "grace: at most {} (30 days)",
                            humantime::format_duration(MAX_GRACE)
                        )));
                    }
                    d.as_secs()
                }
            };
            let secret = store
                .change(|reg, _| {
                    let app = reg.apps.get(*id).ok_or_else(|| not_found("app", id))?;
                    c.may_manage(app, aud)?;
                    rotate_secret(reg, id, grace)
                })
                .await?;
            Ok((
                StatusCode::CREATED,
                serde_json::json!({"client_id": id, "client_secret": secret}),
            ))
        }
        _ => Err(no_route()),
    }
}

/// An app as the management API shows it, with its `not_before` if any.
fn shown(reg: &Registry, app: &App) -> serde_json::Value {
    let mut v = app.public();
    if let Some(nb) = reg.not_before.get(&app.client_id) {
        v["not_before"] = (*nb).into();
    }
    v
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApi {
    id: Option<String>,
    name: String,
    identifier: Audience,
    #[serde(default)]
    scopes: Vec<Scope>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiPatch {
    name: Option<String>,
    scopes: Option<Vec<Scope>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    client_id: Option<ClientId>,
    name: String,
    #[serde(default)]
    grants: BTreeMap<Audience, Vec<Scope>>,
    /// Public keys for `private_key_jwt`: a JWKS, or one PEM public key.
    jwks: Option<serde_json::Value>,
    public_key_pem: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppPatch {
    name: Option<String>,
    grants: Option<BTreeMap<Audience, Vec<Scope>>>,
    blocked: Option<bool>,
    jwks: Option<serde_json::Value>,
    public_key_pem: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace: Option<String>,
}

/// Scope values: RFC 6749 §3.3's `scope-token` (`%x21 / %x23-5B / %x5D-7E`).
fn check_scopes(scopes: &[Scope]) -> Result<(), MgmtError> {
    match scopes.iter().map(Scope::as_str).find(|s| {
        s.is_empty()
            || s.len() > 256
            || !s
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
    }) {
        Some(bad) => Err(MgmtError::BadRequest(format!("invalid scope `{bad}`"))),
        None => Ok(()),
    }
}

fn create_api(reg: &mut Registry, t: &mut Tombstones, new: NewApi) -> Result<Api, MgmtError> {
    check_scopes(&new.scopes)?;
    if new.name.trim().is_empty() || new.identifier.as_str().trim().is_empty() {
        return Err(MgmtError::BadRequest(
            "name and identifier must not be empty".into(),
        ));
    }
    let id = new.id.unwrap_or_else(|| crate::config::slug(&new.name));
    if !crate::config::valid_id(&id) {
        return Err(MgmtError::BadRequest(format!(
            "API id `{}` is invalid: use 1 to 128 of A-Z a-z 0-9 . _ ~ -",
            id.escape_debug()
        )));
    }
    if reg
        .apis
        .iter()
        .any(|a| a.id == id || a.identifier == new.identifier)
    {
        return Err(MgmtError::Conflict(format!(
            "an API with id `{id}` or identifier `{}` exists",
            new.identifier
        )));
    }
    t.apis.remove(&id);
    let api = Api {
        id,
        name: new.name,
        identifier: new.identifier,
        scopes: new.scopes,
    };
    reg.apis.push(api.clone());
    Ok(api)
}

fn patch_api(reg: &mut Registry, id: &str, patch: ApiPatch) -> Result<Api, MgmtError> {
    if id == "management" {
        return Err(MgmtError::BadRequest(
            "the management API cannot be changed".into(),
        ));
    }
    let api = reg
        .apis
        .iter_mut()
        .find(|a| a.id == id)
        .ok_or_else(|| not_found("API", id))?;
    if let Some(name) = patch.name {
        api.name = name;
    }
    if let Some(scopes) = patch.scopes {
        check_scopes(&scopes)?;
        api.scopes = scopes;
    }
    let api = api.clone();
    // Grants may only hold scopes the API still has.
    for app in reg.apps.values_mut() {
        if let Some(granted) = app.grants.get_mut(&api.identifier) {
            granted.retain(|s| api.scopes.contains(s));
        }
    }
    Ok(api)
}

fn delete_api(reg: &mut Registry, t: &mut Tombstones, id: &str) -> Result<(), MgmtError> {
    if id == "management" {
        return Err(MgmtError::BadRequest(
            "the management API cannot be deleted".into(),
        ));
    }
    let pos = reg
        .apis
        .iter()
        .position(|a| a.id == id)
        .ok_or_else(|| not_found("API", id))?;
    let api = reg.apis.remove(pos);
    for app in reg.apps.values_mut() {
        app.grants.remove(&api.identifier);
    }
    t.apis.insert(id.to_owned());
    Ok(())
}

fn check_grants(reg: &Registry, grants: &BTreeMap<Audience, Vec<Scope>>) -> Result<(), MgmtError> {
    for (aud, scopes) in grants {
        let api = reg
            .api(aud.as_str())
            .ok_or_else(|| MgmtError::BadRequest(format!("no API with identifier `{aud}`")))?;
        if let Some(s) = scopes.iter().find(|s| !api.scopes.contains(s)) {
            return Err(MgmtError::BadRequest(format!(
                "scope `{s}` is not a scope of `{aud}`"
            )));
        }
    }
    Ok(())
}

fn create_app(
    reg: &mut Registry,
    t: &mut Tombstones,
    new: NewApp,
) -> Result<(App, String), MgmtError> {
    check_grants(reg, &new.grants)?;
    let jwks = keys(new.jwks, new.public_key_pem)?;
    let client_id = match new.client_id {
        Some(id) => id,
        None => random(16)?.into(),
    };
    if !crate::config::valid_id(client_id.as_str()) {
        return Err(MgmtError::BadRequest(format!(
            "client id `{}` is invalid: use 1 to 128 of A-Z a-z 0-9 . _ ~ -",
            client_id.as_str().escape_debug()
        )));
    }
    if reg.apps.contains_key(&client_id) {
        return Err(MgmtError::Conflict(format!(
            "client id `{client_id}` is taken"
        )));
    }
    // 256 bits of entropy: a keyed hash is enough to store it.
    let secret = random(32)?;
    let app = App {
        client_id: client_id.clone(),
        name: new.name,
        secrets: vec![reg.seal(&secret)],
        grants: new.grants,
        blocked: false,
        blocked_at: None,
        jwks,
    };
    t.apps.remove(&client_id);
    reg.apps.insert(client_id, app.clone());
    Ok((app, secret))
}

/// An app's public keys from `jwks` or `public_key_pem` (not both), checked.
fn keys(
    jwks: Option<serde_json::Value>,
    pem: Option<String>,
) -> Result<Option<RegisteredKeys>, MgmtError> {
    let keys = match (jwks, pem) {
        (Some(_), Some(_)) => {
            return Err(MgmtError::BadRequest(
                "give jwks or public_key_pem, not both".into(),
            ));
        }
        (Some(j), None) => RegisteredKeys::from_jwks(j),
        (None, Some(p)) => RegisteredKeys::from_pem(&p),
        (None, None) => return Ok(None),
    };
    keys.map(Some)
        .map_err(|e| MgmtError::BadRequest(e.to_string()))
}

fn patch_app(
    reg: &mut Registry,
    caller: &Caller,
    audience: &str,
    id: &str,
    patch: AppPatch,
) -> Result<serde_json::Value, MgmtError> {
    let app = reg.apps.get(id).ok_or_else(|| not_found("app", id))?;
    caller.may_manage(app, audience)?;
    if let Some(g) = &patch.grants {
        caller.may_grant(g, audience)?;
        check_grants(reg, g)?;
    }
    let jwks = keys(patch.jwks, patch.public_key_pem)?;
    if patch.blocked == Some(true) {
        // Every token issued so far is revoked, for good (until it expires).
        reg.revoke_all_until_now(id);
    }
    let not_before = reg.not_before.get(id).copied();
    let app = reg.apps.get_mut(id).ok_or_else(|| not_found("app", id))?;
    if let Some(name) = patch.name {
        app.name = name;
    }
    if let Some(grants) = patch.grants {
        app.grants = grants;
    }
    if jwks.is_some() {
        app.jwks = jwks;
    }
    match patch.blocked {
        Some(true) if !app.blocked => {
            app.blocked = true;
            app.blocked_at = Some(unix_now());
        }
        Some(false) => {
            // New tokens only: `not_before` stays.
            app.blocked = false;
            app.blocked_at = None;
        }
        _ => {}
    }
    let mut shown = app.public();
    if let Some(nb) = not_before {
        shown["not_before"] = nb.into();
    }
    Ok(shown)
}

fn rotate_secret(reg: &mut Registry, id: &str, grace_secs: u64) -> Result<String, MgmtError> {
    let secret = random(32)?;
    let sealed = reg.seal(&secret);
    let app = reg.apps.get_mut(id).ok_or_else(|| not_found("app", id))?;
    let until = unix_now().saturating_add(grace_secs);
    if grace_secs == 0 {
        app.secrets.clear();
    } else {
        for s in &mut app.secrets {
            s.not_after = Some(s.not_after.map_or(until, |t| t.min(until)));
        }
        app.secrets
            .retain(|s| s.not_after.is_none_or(|t| t > unix_now()));
    }
    app.secrets.push(sealed);
    Ok(secret)
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

/// `n` random bytes, base64url.
fn random(n: usize) -> Result<String, MgmtError> {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).map_err(MgmtError::NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
