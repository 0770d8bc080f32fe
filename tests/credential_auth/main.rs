//! Client authentication without a static secret, and discovery: the sidecar's
//! `private_key_jwt` (RS256, PS256, ES256, EdDSA) and a ready-made assertion file
//! against the built-in issuer, which refuses replayed and misaddressed
//! assertions; the token endpoint found through RFC 8414 or OIDC discovery.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod discovery;
mod private_key_jwt;

use support::config::{Cred, SidecarConfig, quote};
use support::http::client;
use support::issuer::{App, ORDERS, OrdersApi, Reserved};
use support::jwt::{TestKey, jwks};
use support::sidecar::Sidecar;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The claims of the token a credential holds now.
fn held_claims(s: &Sidecar, name: &str) -> serde_json::Value {
    let cred = s
        .handle
        .credentials
        .iter()
        .find(|c| c.name() == name)
        .unwrap();
    let header = cred.current().expect("a token").header;
    let jwt = header.to_str().unwrap().trim_start_matches("Bearer ");
    support::jwt::payload(jwt)
}

/// The Orders API with `orders:read` only.
fn orders() -> OrdersApi {
    OrdersApi::new().scopes(&["orders:read"])
}

/// An app with only the public keys of `key` (a JWKS file in the issuer's
/// state directory), granted orders:read.
fn keyed_app(iss: &Reserved, client_id: &str, key: &TestKey) -> App {
    let file = iss.file(&format!("{client_id}.jwks.json"), &jwks(&[key]));
    App::keyed(client_id)
        .with("jwks_file", &quote(&file))
        .orders(&["orders:read"])
}

/// `Cred` without `key` (the builder always writes a token_url and a secret).
fn without(c: Cred, key: &str) -> Cred {
    c.remove(key)
}

async fn token_with_assertion(
    url: &str,
    assertion: &str,
    client_id: Option<&str>,
) -> (u16, String) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
        ("audience", ORDERS),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let resp = client()
        .post(format!("{url}oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}
