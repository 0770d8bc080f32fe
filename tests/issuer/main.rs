//! The built-in issuer: token endpoint (every error case), tokens verified
//! against the served JWKS, discovery, key persistence, and the outbound sidecar
//! using it as its IdP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod keys;
mod token_endpoint;

use base64::Engine as _;
use support::http::client;
use support::issuer::{App, Issuer, ORDERS, OrdersApi};

const BILLING_SECRET: &str = "billing-secret-0123456789abcdef0123456789";
const BLOCKED_SECRET: &str = "blocked-secret-0123456789abcdef0123456789";
const GATEWAY_SECRET: &str = "gateway-secret-0123456789abcdef0123456789";

/// The billing app's token request for the Orders API, as a form.
const BILLING_FORM: [(&str, &str); 4] = [
    ("grant_type", "client_credentials"),
    ("audience", ORDERS),
    ("client_id", "billing"),
    ("client_secret", BILLING_SECRET),
];

/// The Orders API, `billing` (both scopes) and a blocked app.
fn api() -> OrdersApi {
    OrdersApi::new()
        .app(App::new("billing", BILLING_SECRET).orders(&["orders:read", "orders:write"]))
        .app(
            App::new("blocked", BLOCKED_SECRET)
                .named("blocked one")
                .orders(&["orders:read"])
                .blocked(true),
        )
}

/// [`api`] and an app `gateway` granted `tokens:introspect`.
fn with_gateway() -> OrdersApi {
    api().app(App::new("gateway", GATEWAY_SECRET).mgmt(&["tokens:introspect"]))
}

async fn issuer() -> Issuer {
    Issuer::start(&with_gateway()).await
}

/// POST a form to the token endpoint: status, headers, JSON body.
async fn token_form(
    s: &Issuer,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = client()
        .post(format!("{}oauth/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    if let Some((id, secret)) = basic {
        req = req.header("authorization", basic_header(id, secret));
    }
    let resp = req.body(body).send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// `Basic` credentials as RFC 6749 §2.3.1 encodes them (form-encoded, then base64).
fn basic_header(id: &str, secret: &str) -> String {
    let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

async fn verify(s: &Issuer, token: &str) -> (jsonwebtoken::Header, serde_json::Value) {
    let (_, jwks) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[ORDERS]);
    v.set_issuer(&[&s.url]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .unwrap()
        .claims;
    (header, claims)
}
