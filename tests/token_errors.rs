//! Token endpoint failures become clear errors that name the credential and never
//! contain the secret, even when the server echoes it back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use m2m_sidecar::config::{Format, load_str};
use m2m_sidecar::token::Fetcher;
use support::config::{Cred, SECRET, SidecarConfig};
use support::token_server::{Mode, TokenServer};

async fn fetch_error(token_url: &str, extra: &[(&str, &str)]) -> String {
    let mut cred = Cred::new("orders", token_url);
    for (k, v) in extra {
        cred = cred.with(k, v);
    }
    let config = load_str(SidecarConfig::new().credential(cred).toml(), Format::Toml).unwrap();
    let fetcher = Fetcher::new(config.credentials[0].clone()).unwrap();
    let err = fetcher.fetch().await.err().expect("the fetch fails");
    let message = err.to_string();
    assert!(message.starts_with("credential orders: "), "{message}");
    assert!(!message.contains(SECRET), "secret leaked: {message}");
    message
}

#[tokio::test]
async fn error_answers_are_explained() {
    let idp = TokenServer::start().await;
    let cases = [
        (
            Mode::Fail {
                status: 401,
                body: r#"{"error":"invalid_client","error_description":"unknown client"}"#.into(),
            },
            "token endpoint answered 401: invalid_client (unknown client)",
        ),
        (
            Mode::Fail {
                status: 502,
                body: "<html>bad gateway</html>".into(),
            },
            "token endpoint answered 502 with a non-JSON body (24 bytes)",
        ),
        (
            Mode::Fail {
                status: 200,
                body: "<html>login page</html>".into(),
            },
            "invalid token response: not JSON (23 bytes)",
        ),
        (
            Mode::Fail {
                status: 200,
                body: r#"{"token_type":"Bearer"}"#.into(),
            },
            "invalid token response: missing field `access_token`",
        ),
        (
            Mode::Fail {
                status: 200,
                body: r#"{"access_token":"a","token_type":"DPoP"}"#.into(),
            },
            "token_type is `DPoP`, not Bearer",
        ),
        (
            Mode::Fail {
                status: 200,
                body: r#"{"access_token":"a","expires_in":-5}"#.into(),
            },
            "bad expires_in `-5`",
        ),
        (
            Mode::Fail {
                status: 400,
                body: format!(
                    r#"{{"error":"invalid_request","error_description":"secret {SECRET} is wrong"}}"#
                ),
            },
            "invalid_request (secret [redacted] is wrong)",
        ),
    ];
    for (mode, want) in cases {
        idp.set_mode(mode.clone());
        let message = fetch_error(&idp.url(), &[]).await;
        assert!(message.contains(want), "{mode:?}: {message}");
    }
}

#[tokio::test]
async fn a_stalled_endpoint_times_out() {
    let idp = TokenServer::start().await;
    idp.set_mode(Mode::Stall);
    let message = fetch_error(&idp.url(), &[("timeout", "\"300ms\"")]).await;
    assert!(message.contains("timed out after 300ms"), "{message}");
}

#[tokio::test]
async fn a_refused_connection_is_named() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let message = fetch_error(&format!("http://{dead}/token"), &[]).await;
    assert!(
        message.contains(&format!(
            "token request to http://{dead}/token could not connect"
        )),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn a_missing_secret_is_named() {
    let idp = TokenServer::start().await;
    let message = fetch_error(
        &idp.url(),
        &[(
            "client_secret",
            r#"{ env = "M2M_TEST_NO_SUCH_VARIABLE_X" }"#,
        )],
    )
    .await;
    assert!(
        message.contains("environment variable M2M_TEST_NO_SUCH_VARIABLE_X is not set"),
        "{message}"
    );
    assert_eq!(idp.count(), 0, "nothing sent without a secret");
}
