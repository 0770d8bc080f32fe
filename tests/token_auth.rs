//! Each client authentication method, byte for byte on the wire, with a client id
//! and secret that need form-urlencoding (`:`, `+`, `%`, `@`, `/` and spaces).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use base64::Engine as _;
use std::time::Duration;
use support::config::{Cred, SidecarConfig};
use support::sidecar::Sidecar;
use support::token_server::{Recorded, TokenServer};

const ID: &str = "my client:id+%";
const SECRET: &str = "p@ss: w+rd%/x-0123456789abcdef";
// Hand-written, not computed with the code under test.
const ID_FORM: &str = "my+client%3Aid%2B%25";
const SECRET_FORM: &str = "p%40ss%3A+w%2Brd%25%2Fx-0123456789abcdef";
const AUDIENCE_FORM: &str = "audience=https%3A%2F%2Forders.example.com";
const SCOPE_FORM: &str = "scope=orders%3Aread+orders%3Awrite";

async fn first_request(method: &str) -> Recorded {
    let idp = TokenServer::start().await;
    let cred = Cred::new("orders", &idp.url())
        .text("client_id", ID)
        .text("client_secret", SECRET)
        .text("auth_method", method)
        .text("audience", "https://orders.example.com")
        .with("scopes", r#"["orders:read", "orders:write"]"#);
    let sidecar = Sidecar::start(&SidecarConfig::new().credential(cred)).await;
    support::until(Duration::from_secs(10), "a token request", async || {
        idp.count() >= 1
    })
    .await;
    sidecar.stop().await;
    idp.requests().remove(0)
}

fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn client_secret_basic_is_form_encoded_then_base64() {
    let r = first_request("client_secret_basic").await;
    let pair = format!("{ID_FORM}:{SECRET_FORM}");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    assert_eq!(header(&r, "authorization"), Some(expected.as_str()));
    assert_eq!(
        header(&r, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let body = std::str::from_utf8(&r.body).unwrap();
    assert_eq!(
        body,
        format!("grant_type=client_credentials&{AUDIENCE_FORM}&{SCOPE_FORM}")
    );
}

#[tokio::test]
async fn client_secret_post_puts_credentials_in_the_body() {
    let r = first_request("client_secret_post").await;
    assert_eq!(header(&r, "authorization"), None);
    assert_eq!(
        header(&r, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let body = std::str::from_utf8(&r.body).unwrap();
    assert_eq!(
        body,
        format!(
            "grant_type=client_credentials&client_id={ID_FORM}&client_secret={SECRET_FORM}&{AUDIENCE_FORM}&{SCOPE_FORM}"
        )
    );
}

#[tokio::test]
async fn client_secret_json_sends_the_loginradius_body() {
    let r = first_request("client_secret_json").await;
    assert_eq!(header(&r, "authorization"), None);
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "audience": "https://orders.example.com",
            "grant_type": "client_credentials",
            "client_id": ID,
            "client_secret": SECRET,
            "scope": "orders:read orders:write",
        })
    );
}

#[tokio::test]
async fn resource_and_extra_params_are_sent() {
    let idp = TokenServer::start().await;
    let cred = Cred::new("orders", &idp.url())
        .text("auth_method", "client_secret_post")
        .text("resource", "https://orders.example.com/")
        .with("extra_params", r#"{ organization = "acme co" }"#);
    let sidecar = Sidecar::start(&SidecarConfig::new().credential(cred)).await;
    support::until(Duration::from_secs(10), "a token request", async || {
        idp.count() >= 1
    })
    .await;
    sidecar.stop().await;
    let body = String::from_utf8(idp.requests()[0].body.to_vec()).unwrap();
    assert!(
        body.ends_with("&resource=https%3A%2F%2Forders.example.com%2F&organization=acme+co"),
        "{body}"
    );
}
