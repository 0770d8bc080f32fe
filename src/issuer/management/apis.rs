//! `/api/v1/apis`: list, create, read, change and delete APIs (audiences and
//! their scopes). The management API itself cannot be changed or deleted.

use super::{Call, MgmtError, json, not_found};
use crate::issuer::registry::{Api, Registry};
use crate::issuer::store::Tombstones;
use crate::oauth::ids::{Audience, ClientId, Scope};
use http::{Method, StatusCode};
use serde::Deserialize;

/// The routes under `apis/`; `None`: no such route.
pub(super) async fn route(
    call: &Call<'_>,
    method: &Method,
    path: &[&str],
) -> Result<Option<(StatusCode, serde_json::Value)>, MgmtError> {
    let store = call.store;
    let answer = match (method, path) {
        (&Method::GET, []) => {
            call.who()?.need("apis:read")?;
            let page = super::page::Page::from_query(call.query)?;
            let reg = store.snapshot();
            let (apis, next) = page.of(&reg.apis, |a| a.id.as_str(), |a| a.name.as_str());
            let items = apis.iter().map(|a| serde_json::json!(a)).collect();
            (StatusCode::OK, super::page::answer(items, next))
        }
        (&Method::POST, []) => {
            let c = call.who()?;
            c.need("apis:write")?;
            let new: NewApi = json(call.body)?;
            let api = call
                .change(&c, "apis:write", |_, reg, t| create_api(reg, t, new))
                .await?;
            (StatusCode::CREATED, serde_json::json!(api))
        }
        (&Method::GET, [id]) => {
            call.who()?.need("apis:read")?;
            let reg = store.snapshot();
            let api = reg
                .apis
                .iter()
                .find(|a| a.id == *id)
                .ok_or_else(|| not_found("API", id))?;
            (StatusCode::OK, serde_json::json!(api))
        }
        (&Method::PATCH, [id]) => {
            let c = call.who()?;
            c.need("apis:write")?;
            let patch: ApiPatch = json(call.body)?;
            let api = call
                .change(&c, "apis:write", |_, reg, _| patch_api(reg, id, patch))
                .await?;
            (StatusCode::OK, serde_json::json!(api))
        }
        (&Method::DELETE, [id]) => {
            let c = call.who()?;
            c.need("apis:write")?;
            call.change(&c, "apis:write", |_, reg, t| delete_api(reg, t, id))
                .await?;
            (StatusCode::NO_CONTENT, serde_json::Value::Null)
        }
        _ => return Ok(None),
    };
    Ok(Some(answer))
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
    super::text("name", &new.name, super::MAX_NAME)?;
    super::text("identifier", new.identifier.as_str(), super::MAX_IDENTIFIER)?;
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
        super::text("name", &name, super::MAX_NAME)?;
        api.name = name;
    }
    if let Some(scopes) = patch.scopes {
        check_scopes(&scopes)?;
        api.scopes = scopes;
    }
    let api = api.clone();
    // Grants may only hold scopes the API still has (only the apps that
    // change are written).
    let affected: Vec<ClientId> = reg
        .apps
        .values()
        .filter(|a| {
            a.granted(api.identifier.as_str())
                .iter()
                .any(|s| !api.scopes.contains(s))
        })
        .map(|a| a.client_id.clone())
        .collect();
    for id in affected {
        reg.apps.update(id.as_str(), |app| {
            if let Some(granted) = app.grants.get_mut(api.identifier.as_str()) {
                granted.retain(|s| api.scopes.contains(s));
            }
        });
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
    let affected: Vec<ClientId> = reg
        .apps
        .values()
        .filter(|a| a.grants.contains_key(api.identifier.as_str()))
        .map(|a| a.client_id.clone())
        .collect();
    for id in affected {
        reg.apps.update(id.as_str(), |app| {
            app.grants.remove(api.identifier.as_str())
        });
    }
    t.apis.insert(id.to_owned());
    Ok(())
}
