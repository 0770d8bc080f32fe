//! The management API under `/api/v1`, protected by the issuer's own access
//! tokens: audience `{url}api/v1/`, scopes `apis:read apis:write apps:read
//! apps:write`. Missing or invalid token → 401, missing scope → 403 (RFC 6750).
//! JSON in and out; unknown fields are refused with a message.

use super::introspect::Verifier;
use super::keyring::KeyRing;
use super::registry::{Api, App, Registry, now};
use super::store::{Store, Tombstones};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Why a management call failed; each maps to one status.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    #[error("a valid access token for the management API is required")]
    Unauthorized { token_sent: bool },
    #[error("the token lacks the scope {0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<String> for MgmtError {
    fn from(e: String) -> Self {
        MgmtError::Internal(e)
    }
}

impl MgmtError {
    pub fn status(&self) -> StatusCode {
        match self {
            MgmtError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            MgmtError::Forbidden(_) => StatusCode::FORBIDDEN,
            MgmtError::BadRequest(_) => StatusCode::BAD_REQUEST,
            MgmtError::NotFound(_) => StatusCode::NOT_FOUND,
            MgmtError::Conflict(_) => StatusCode::CONFLICT,
            MgmtError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `(error code, WWW-Authenticate value)` for the answer.
    pub fn code_and_challenge(&self) -> (&'static str, Option<String>) {
        match self {
            MgmtError::Unauthorized { token_sent: false } => {
                ("invalid_token", Some("Bearer realm=\"m2m-sidecar\"".into()))
            }
            MgmtError::Unauthorized { token_sent: true } => (
                "invalid_token",
                Some("Bearer realm=\"m2m-sidecar\", error=\"invalid_token\"".into()),
            ),
            MgmtError::Forbidden(scope) => (
                "insufficient_scope",
                Some(format!(
                    "Bearer realm=\"m2m-sidecar\", error=\"insufficient_scope\", scope=\"{scope}\""
                )),
            ),
            MgmtError::BadRequest(_) => ("invalid_request", None),
            MgmtError::NotFound(_) => ("not_found", None),
            MgmtError::Conflict(_) => ("conflict", None),
            MgmtError::Internal(_) => ("server_error", None),
        }
    }
}

/// Check the bearer token: ours, for the management audience, with `scope`.
fn require(
    verifier: &Verifier,
    audience: &str,
    headers: &HeaderMap,
    scope: &'static str,
) -> Result<(), MgmtError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Err(MgmtError::Unauthorized { token_sent: false });
    };
    let claims = verifier
        .verify(token)
        .ok_or(MgmtError::Unauthorized { token_sent: true })?;
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == audience,
        Some(serde_json::Value::Array(a)) => a.iter().any(|x| x == audience),
        _ => false,
    };
    if !aud_ok {
        return Err(MgmtError::Unauthorized { token_sent: true });
    }
    let has = claims
        .get("scp")
        .and_then(|s| s.as_array())
        .is_some_and(|s| s.iter().any(|x| x == scope));
    if has {
        Ok(())
    } else {
        Err(MgmtError::Forbidden(scope))
    }
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
    let segments: Vec<&str> = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let audience = store.management_audience().to_owned();
    let current = keys.current();
    let need = |scope| require(&current.verifier, &audience, headers, scope);
    let ok = |v| Ok((StatusCode::OK, v));
    match (method, segments.as_slice()) {
        (&Method::GET, ["revocations"]) => ok(revocations(&store.snapshot())),
        (&Method::POST, ["keys", "rotate"]) => {
            need("keys:write")?;
            let kid = keys.rotate().await?;
            ok(serde_json::json!({"kid": kid}))
        }
        (&Method::GET, ["apis"]) => {
            need("apis:read")?;
            ok(serde_json::json!(store.snapshot().apis))
        }
        (&Method::POST, ["apis"]) => {
            need("apis:write")?;
            let new: NewApi = json(body)?;
            let api = store.change(|reg, t| create_api(reg, t, new)).await?;
            Ok((StatusCode::CREATED, serde_json::json!(api)))
        }
        (&Method::GET, ["apis", id]) => {
            need("apis:read")?;
            let reg = store.snapshot();
            let api = reg
                .apis
                .iter()
                .find(|a| a.id == *id)
                .ok_or_else(|| not_found("API", id))?;
            ok(serde_json::json!(api))
        }
        (&Method::PATCH, ["apis", id]) => {
            need("apis:write")?;
            let patch: ApiPatch = json(body)?;
            let api = store.change(|reg, _| patch_api(reg, id, patch)).await?;
            ok(serde_json::json!(api))
        }
        (&Method::DELETE, ["apis", id]) => {
            need("apis:write")?;
            store.change(|reg, t| delete_api(reg, t, id)).await?;
            Ok((StatusCode::NO_CONTENT, serde_json::Value::Null))
        }
        (&Method::GET, ["apps"]) => {
            need("apps:read")?;
            let reg = store.snapshot();
            let mut apps: Vec<&App> = reg.apps.values().collect();
            apps.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            ok(serde_json::Value::Array(
                apps.iter().map(|a| a.public()).collect(),
            ))
        }
        (&Method::POST, ["apps"]) => {
            need("apps:write")?;
            let new: NewApp = json(body)?;
            let (app, secret) = store.change(|reg, t| create_app(reg, t, new)).await?;
            let mut out = app.public();
            out["client_secret"] = secret.into();
            Ok((StatusCode::CREATED, out))
        }
        (&Method::GET, ["apps", id]) => {
            need("apps:read")?;
            ok(store
                .snapshot()
                .apps
                .get(*id)
                .ok_or_else(|| not_found("app", id))?
                .public())
        }
        (&Method::PATCH, ["apps", id]) => {
            need("apps:write")?;
            let patch: AppPatch = json(body)?;
            ok(store.change(|reg, _| patch_app(reg, id, patch)).await?)
        }
        (&Method::DELETE, ["apps", id]) => {
            need("apps:write")?;
            store
                .change(|reg, t| {
                    reg.apps.remove(*id).ok_or_else(|| not_found("app", id))?;
                    t.apps.insert((*id).to_owned());
                    Ok::<_, MgmtError>(())
                })
                .await?;
            Ok((StatusCode::NO_CONTENT, serde_json::Value::Null))
        }
        (&Method::PUT, ["apps", id, "grants"]) => {
            need("apps:write")?;
            let grants: BTreeMap<String, Vec<String>> = json(body)?;
            let patch = AppPatch {
                grants: Some(grants),
                ..AppPatch::default()
            };
            ok(store.change(|reg, _| patch_app(reg, id, patch)).await?)
        }
        (&Method::POST, ["apps", id, action @ ("block" | "unblock")]) => {
            need("apps:write")?;
            let patch = AppPatch {
                blocked: Some(*action == "block"),
                ..AppPatch::default()
            };
            ok(store.change(|reg, _| patch_app(reg, id, patch)).await?)
        }
        (&Method::POST, ["apps", id, "secrets"]) => {
            need("apps:write")?;
            let rotate: Rotate = if body.is_empty() {
                Rotate::default()
            } else {
                json(body)?
            };
            let grace = match rotate.grace.as_deref().map(str::trim) {
                None | Some("") => 0,
                Some(g) => humantime::parse_duration(g)
                    .map_err(|e| {
                        MgmtError::BadRequest(format!("grace: invalid duration `{g}`: {e}"))
                    })?
                    .as_secs(),
            };
            let secret = store.change(|reg, _| rotate_secret(reg, id, grace)).await?;
            Ok((
                StatusCode::CREATED,
                serde_json::json!({"client_id": id, "client_secret": secret}),
            ))
        }
        _ => Err(MgmtError::NotFound(format!("no route {method} {path}"))),
    }
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, MgmtError> {
    serde_json::from_slice(body)
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
    identifier: String,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiPatch {
    name: Option<String>,
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    client_id: Option<String>,
    name: String,
    #[serde(default)]
    grants: BTreeMap<String, Vec<String>>,
    /// Public keys for `private_key_jwt`: a JWKS, or one PEM public key.
    jwks: Option<serde_json::Value>,
    public_key_pem: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppPatch {
    name: Option<String>,
    grants: Option<BTreeMap<String, Vec<String>>>,
    blocked: Option<bool>,
    jwks: Option<serde_json::Value>,
    public_key_pem: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace: Option<String>,
}

fn check_scopes(scopes: &[String]) -> Result<(), MgmtError> {
    match scopes.iter().find(|s| {
        s.is_empty()
            || s.chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    }) {
        Some(bad) => Err(MgmtError::BadRequest(format!("invalid scope `{bad}`"))),
        None => Ok(()),
    }
}

fn create_api(reg: &mut Registry, t: &mut Tombstones, new: NewApi) -> Result<Api, MgmtError> {
    check_scopes(&new.scopes)?;
    if new.name.trim().is_empty() || new.identifier.trim().is_empty() {
        return Err(MgmtError::BadRequest(
            "name and identifier must not be empty".into(),
        ));
    }
    let id = new.id.unwrap_or_else(|| crate::config::slug(&new.name));
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

fn check_grants(reg: &Registry, grants: &BTreeMap<String, Vec<String>>) -> Result<(), MgmtError> {
    for (aud, scopes) in grants {
        let api = reg
            .api(aud)
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
        None => random(16)?,
    };
    if client_id.is_empty() || reg.apps.contains_key(&client_id) {
        return Err(MgmtError::Conflict(format!(
            "client id `{client_id}` is taken or empty"
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
) -> Result<Option<serde_json::Value>, MgmtError> {
    let doc = match (jwks, pem) {
        (Some(_), Some(_)) => {
            return Err(MgmtError::BadRequest(
                "give jwks or public_key_pem, not both".into(),
            ));
        }
        (Some(j), None) => j,
        (None, Some(p)) => super::registry::pem_to_jwks(&p).map_err(MgmtError::BadRequest)?,
        (None, None) => return Ok(None),
    };
    super::registry::check_jwks(&doc).map_err(MgmtError::BadRequest)?;
    Ok(Some(doc))
}

fn patch_app(
    reg: &mut Registry,
    id: &str,
    patch: AppPatch,
) -> Result<serde_json::Value, MgmtError> {
    if let Some(g) = &patch.grants {
        check_grants(reg, g)?;
    }
    let jwks = keys(patch.jwks, patch.public_key_pem)?;
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
            app.blocked_at = Some(now());
        }
        Some(false) => {
            app.blocked = false;
            app.blocked_at = None;
        }
        _ => {}
    }
    Ok(app.public())
}

fn rotate_secret(reg: &mut Registry, id: &str, grace_secs: u64) -> Result<String, MgmtError> {
    let secret = random(32)?;
    let sealed = reg.seal(&secret);
    let app = reg.apps.get_mut(id).ok_or_else(|| not_found("app", id))?;
    let until = now() + grace_secs;
    if grace_secs == 0 {
        app.secrets.clear();
    } else {
        for s in &mut app.secrets {
            s.not_after = Some(s.not_after.map_or(until, |t| t.min(until)));
        }
        app.secrets
            .retain(|s| s.not_after.is_none_or(|t| t > now()));
    }
    app.secrets.push(sealed);
    Ok(secret)
}

/// The feed inbound sidecars poll: blocked apps and since when.
fn revocations(reg: &Registry) -> serde_json::Value {
    let mut blocked: Vec<serde_json::Value> = reg
        .apps
        .values()
        .filter(|a| a.blocked)
        .map(|a| serde_json::json!({"client_id": a.client_id, "blocked_at": a.blocked_at}))
        .collect();
    blocked.sort_by(|a, b| a["client_id"].as_str().cmp(&b["client_id"].as_str()));
    let revoked: Vec<serde_json::Value> = reg
        .revoked
        .iter()
        .map(|(jti, exp)| serde_json::json!({"jti": jti, "exp": exp}))
        .collect();
    serde_json::json!({"blocked_clients": blocked, "revoked_tokens": revoked})
}

/// `n` random bytes, base64url.
fn random(n: usize) -> Result<String, MgmtError> {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| MgmtError::Internal("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
