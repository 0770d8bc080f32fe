//! APIs and apps as the token endpoint sees them. Client secrets are kept only
//! as HMAC-SHA256 with a server key stored beside the state (secrets are long
//! and random, so a keyed hash is enough, and it keeps the token path fast: no
//! password-hashing KDF); they are compared in constant time.

use super::keys::{dir_of, write_private};
use crate::config::{IssuerSpec, MANAGEMENT_SCOPES};
use crate::token::secret;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use std::collections::HashMap;
use std::path::Path;

/// Shortest client secret accepted (literal, env or file).
const MIN_SECRET_LEN: usize = 32;

/// An API (audience) and its scopes.
#[derive(Debug, Clone)]
pub struct Api {
    pub id: String,
    pub name: String,
    pub identifier: String,
    pub scopes: Vec<String>,
}

/// An M2M app.
pub struct App {
    pub client_id: String,
    pub name: String,
    secret_mac: hmac::Tag,
    /// audience → granted scopes
    pub grants: HashMap<String, Vec<String>>,
    pub blocked: bool,
}

/// Everything the token endpoint checks a request against.
pub struct Registry {
    key: hmac::Key,
    pub apis: Vec<Api>,
    pub apps: HashMap<String, App>,
}

impl Registry {
    /// Build from config: reads each app's secret now, refusing short ones.
    pub fn from_spec(spec: &IssuerSpec) -> Result<Self, String> {
        let key = load_or_create_key(&spec.state)?;
        let mut apis: Vec<Api> = spec
            .apis
            .iter()
            .map(|a| Api {
                id: a.id.clone(),
                name: a.name.clone(),
                identifier: a.identifier.clone(),
                scopes: a.scopes.clone(),
            })
            .collect();
        apis.push(Api {
            id: "management".into(),
            name: "m2m-sidecar management API".into(),
            identifier: spec.management_audience(),
            scopes: MANAGEMENT_SCOPES.map(str::to_owned).to_vec(),
        });
        let mut apps = HashMap::new();
        for a in &spec.apps {
            let secret =
                secret::read(&a.secret).map_err(|e| format!("issuer app {}: {e}", a.client_id))?;
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(format!(
                    "issuer app {}: client secret must be at least {MIN_SECRET_LEN} characters",
                    a.client_id
                ));
            }
            let app = App {
                client_id: a.client_id.clone(),
                name: a.name.clone(),
                secret_mac: hmac::sign(&key, secret.as_bytes()),
                grants: a.grants.iter().cloned().collect(),
                blocked: a.blocked,
            };
            apps.insert(a.client_id.clone(), app);
        }
        Ok(Registry { key, apis, apps })
    }

    /// The API whose identifier is `audience`.
    pub fn api(&self, audience: &str) -> Option<&Api> {
        self.apis.iter().find(|a| a.identifier == audience)
    }

    /// The app `client_id` if `secret` is its secret (constant-time comparison).
    pub fn authenticate(&self, client_id: &str, secret: &str) -> Option<&App> {
        let app = self.apps.get(client_id)?;
        hmac::verify(&self.key, secret.as_bytes(), app.secret_mac.as_ref()).ok()?;
        Some(app)
    }
}

/// The HMAC key for client secrets: `<state dir>/secrets.key`, 32 random bytes.
fn load_or_create_key(state: &Path) -> Result<hmac::Key, String> {
    let path = dir_of(state).join("secrets.key");
    let bytes = match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) => return Err(format!("{}: expected 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut b)
                .map_err(|_| "cannot generate the secrets key".to_owned())?;
            write_private(&path, &b)?;
            b
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}
