//! `/api/v1/apps`: list, create, read, change, block, unblock and delete
//! apps; replace their grants; rotate their secrets. Secrets are shown once,
//! when made.

use super::{Call, Caller, MAX_GRACE, MgmtError, json, not_found};
use crate::clock::unix_now;
use crate::issuer::registry::{App, RegisteredKeys, Registry};
use crate::issuer::store::Tombstones;
use crate::oauth::ids::{Audience, ClientId, Scope};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The routes under `apps/`; `None`: no such route.
pub(super) async fn route(
    call: &Call<'_>,
    method: &Method,
    path: &[&str],
) -> Result<Option<(StatusCode, serde_json::Value)>, MgmtError> {
    let (store, aud) = (call.store, call.aud);
    let ok = |v| (StatusCode::OK, v);
    let answer = match (method, path) {
        (&Method::GET, []) => {
            call.who()?.need("apps:read")?;
            let page = super::page::Page::from_query(call.query)?;
            let reg = store.snapshot();
            let (apps, next) = page.of_sorted(
                reg.apps.after(page.after.as_deref()),
                |a| a.client_id.as_str(),
                |a| a.name.as_str(),
            );
            ok(super::page::answer(
                apps.iter().map(|a| shown(&reg, a)).collect(),
                next,
            ))
        }
        (&Method::POST, []) => {
            let c = call.who()?;
            c.need("apps:write")?;
            let new: NewApp = json(call.body)?;
            c.may_grant(&new.grants, aud)?;
            let (app, secret) = call
                .change(&c, "apps:write", |c, reg, t| {
                    c.may_grant(&new.grants, aud)?;
                    create_app(reg, t, new)
                })
                .await?;
            let mut out = app.public();
            out["client_secret"] = secret.into();
            (StatusCode::CREATED, out)
        }
        (&Method::GET, [id]) => {
            call.who()?.need("apps:read")?;
            let reg = store.snapshot();
            let app = reg.apps.get(id).ok_or_else(|| not_found("app", id))?;
            ok(shown(&reg, app))
        }
        (&Method::PATCH, [id]) => {
            let c = call.who()?;
            c.need("apps:write")?;
            let patch: AppPatch = json(call.body)?;
            ok(change(call, &c, id, patch).await?)
        }
        (&Method::DELETE, [id]) => {
            let c = call.who()?;
            c.need("apps:write")?;
            call.change(&c, "apps:write", |c, reg, t| {
                let app = reg.apps.get(id).ok_or_else(|| not_found("app", id))?;
                c.may_manage(app, aud)?;
                reg.apps.remove(id);
                // Its tokens stay revoked, even for an app created again
                // under the same id.
                reg.revoke_all_until_now(id);
                t.apps.insert((*id).into());
                Ok::<_, MgmtError>(())
            })
            .await?;
            (StatusCode::NO_CONTENT, serde_json::Value::Null)
        }
        (&Method::PUT, [id, "grants"]) => {
            let c = call.who()?;
            c.need("apps:write")?;
            let grants: BTreeMap<Audience, Vec<Scope>> = json(call.body)?;
            let patch = AppPatch {
                grants: Some(grants),
                ..AppPatch::default()
            };
            ok(change(call, &c, id, patch).await?)
        }
        (&Method::POST, [id, action @ ("block" | "unblock")]) => {
            let c = call.who()?;
            c.need("apps:write")?;
            let patch = AppPatch {
                blocked: Some(*action == "block"),
                ..AppPatch::default()
            };
            ok(change(call, &c, id, patch).await?)
        }
        (&Method::POST, [id, "secrets"]) => {
            let c = call.who()?;
            c.need("apps:write")?;
            let grace = grace(call.body)?;
            let secret = call
                .change(&c, "apps:write", |c, reg, _| {
                    let app = reg.apps.get(id).ok_or_else(|| not_found("app", id))?;
                    c.may_manage(app, aud)?;
                    rotate_secret(reg, id, grace)
                })
                .await?;
            (
                StatusCode::CREATED,
                serde_json::json!({"client_id": id, "client_secret": secret}),
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(answer))
}

/// Apply `patch` to app `id`; the record as `caller` may see it.
async fn change(
    call: &Call<'_>,
    caller: &Caller,
    id: &str,
    patch: AppPatch,
) -> Result<serde_json::Value, MgmtError> {
    let record = call
        .change(caller, "apps:write", |c, reg, _| {
            patch_app(reg, c, call.aud, id, patch)
        })
        .await?;
    Ok(caller.written(record))
}

/// The grace period of a secret rotation (`{"grace": "1h"}`), in seconds;
/// an empty body or no `grace`: none.
fn grace(body: &[u8]) -> Result<u64, MgmtError> {
    let rotate: Rotate = if body.is_empty() {
        Rotate::default()
    } else {
        json(body)?
    };
    match rotate.grace.as_deref().map(str::trim) {
        None | Some("") => Ok(0),
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
            Ok(d.as_secs())
        }
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
    super::text("name", &new.name, super::MAX_NAME)?;
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
    if reg.apps.contains_key(client_id.as_str()) {
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
        grants: new.grants.into(),
        blocked: false,
        blocked_at: None,
        jwks,
    };
    t.apps.remove(&client_id);
    if reg.not_before.contains_key(&client_id) {
        // An id deleted (or blocked) before: nothing issued to it until now
        // (say by a replica that had not yet seen the deletion) is valid.
        reg.revoke_all_until_now(client_id.as_str());
    }
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
    mut patch: AppPatch,
) -> Result<serde_json::Value, MgmtError> {
    let app = reg.apps.get(id).ok_or_else(|| not_found("app", id))?;
    caller.may_manage(app, audience)?;
    if let Some(g) = &patch.grants {
        caller.may_grant(g, audience)?;
        check_grants(reg, g)?;
    }
    let jwks = keys(patch.jwks.take(), patch.public_key_pem.take())?;
    if let Some(name) = &patch.name {
        super::text("name", name, super::MAX_NAME)?;
    }
    if patch.blocked.is_some() {
        // A block revokes every token issued so far, for good (until it
        // expires). An unblock does too: tokens a replica that had not yet
        // seen the block issued meanwhile must not come back with it.
        reg.revoke_all_until_now(id);
    }
    let not_before = reg.not_before.get(id).copied();
    let changed = reg.apps.update(id, |app| {
        apply(app, patch, jwks);
        app.public()
    });
    let mut shown = changed.ok_or_else(|| not_found("app", id))?;
    if let Some(nb) = not_before {
        shown["not_before"] = nb.into();
    }
    Ok(shown)
}

/// The changes of `patch` (checked already), and `jwks` if given.
fn apply(app: &mut App, patch: AppPatch, jwks: Option<RegisteredKeys>) {
    if let Some(name) = patch.name {
        app.name = name;
    }
    if let Some(grants) = patch.grants {
        app.grants = grants.into();
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
}

fn rotate_secret(reg: &mut Registry, id: &str, grace_secs: u64) -> Result<String, MgmtError> {
    let secret = random(32)?;
    let sealed = reg.seal(&secret);
    let until = unix_now().saturating_add(grace_secs);
    reg.apps
        .update(id, |app| {
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
        })
        .ok_or_else(|| not_found("app", id))?;
    Ok(secret)
}

/// `n` random bytes, base64url.
fn random(n: usize) -> Result<String, MgmtError> {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).map_err(MgmtError::NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
