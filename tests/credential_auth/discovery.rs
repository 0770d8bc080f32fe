//! The token endpoint found through RFC 8414 or OIDC discovery (and an
//! issuer that names another refused); `tls_client_auth` presenting the
//! client certificate.

use super::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::time::Duration;
use support::token_server::TokenServer;
use support::until;

/// A server that serves `doc` at `path` and 404 elsewhere; its base URL.
async fn metadata_server(
    path: &'static str,
    doc: impl Fn(&str) -> String + Send + Sync + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let doc = std::sync::Arc::new(doc(&base));
    support::http::serve(listener, move |req| {
        let doc = doc.clone();
        async move {
            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
            if req.uri().path() == path {
                *resp.body_mut() = Full::new(Bytes::from(doc.to_string()));
            } else {
                *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
            }
            resp
        }
    });
    base
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_by_rfc_8414_or_oidc() {
    let idp = TokenServer::start().await;
    let mut config = SidecarConfig::new();
    for (name, path) in [
        ("rfc8414", "/.well-known/oauth-authorization-server"),
        ("oidc", "/.well-known/openid-configuration"),
    ] {
        let token_url = idp.url();
        let base = metadata_server(path, move |base| {
            serde_json::json!({"issuer": base, "token_endpoint": token_url}).to_string()
        })
        .await;
        config = config
            .credential(without(Cred::new(name, "unused"), "token_url").text("issuer", &base));
    }
    // One whose metadata names another issuer: refused, with the reason on /readyz.
    let token_url = idp.url();
    let liar = metadata_server("/.well-known/oauth-authorization-server", move |_| {
        serde_json::json!({"issuer": "https://evil.example/", "token_endpoint": token_url})
            .to_string()
    })
    .await;
    config =
        config.credential(without(Cred::new("liar", "unused"), "token_url").text("issuer", &liar));
    let sidecar = Sidecar::start(&config).await;
    let what = "both honest credentials valid, the liar's error";
    let e = until(Duration::from_secs(15), what, async || {
        let (_, v) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
        let c = &v["credentials"];
        let done = c["rfc8414"]["state"] == "valid"
            && c["oidc"]["state"] == "valid"
            && c["liar"]["last_error"].is_string();
        if done { Ok(c["liar"].clone()) } else { Err(v) }
    })
    .await;
    let error = e["last_error"].as_str().unwrap();
    assert!(
        error.contains("discovery") && error.contains("another issuer"),
        "{error}"
    );
    assert_eq!(e["state"], "failing");
    assert_eq!(
        idp.count(),
        2,
        "one token request each for the two honest ones"
    );
    sidecar.stop().await;
}

/// A token endpoint over TLS that requires a client certificate; the bodies of
/// the token requests it answered.
async fn mtls_token_endpoint(
    tls: rustls::ServerConfig,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/token",
        listener.local_addr().unwrap().port()
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                // The handshake fails without a certificate the CA signed.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        record
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&body).into_owned());
                        let token = serde_json::json!({"access_token": "mtls-token", "token_type": "Bearer", "expires_in": 3600});
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            token.to_string(),
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn tls_client_auth_presents_the_client_certificate() {
    let pki = support::tls::pki();
    let (url, seen) = mtls_token_endpoint(pki.server_requiring_client_cert).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let ca = write("ca.pem", &pki.ca_pem);
    let cert = write("client.pem", &pki.client_cert_pem);
    let key = write("client.key", &pki.client_key_pem);
    let mtls = without(Cred::new("mtls", &url), "client_secret")
        .text("client_id", "m2m-client")
        .text("auth_method", "tls_client_auth")
        .text("ca_file", &ca)
        .text("client_cert", &cert)
        .text("client_key", &key);
    // The same endpoint without a certificate: the handshake is refused.
    let plain = Cred::new("plain", &url).text("ca_file", &ca);
    let config = SidecarConfig::new().credential(mtls).credential(plain);
    let sidecar = Sidecar::start(&config).await;
    until(
        Duration::from_secs(15),
        "mtls valid, plain failing",
        async || {
            let (_, v) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
            let c = &v["credentials"];
            let done = c["mtls"]["state"] == "valid" && c["plain"]["last_error"].is_string();
            if done { Ok(()) } else { Err(v) }
        },
    )
    .await;
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        1,
        "only the certificate holder got through: {bodies:?}"
    );
    assert!(bodies[0].contains("client_id=m2m-client"), "{}", bodies[0]);
    assert!(!bodies[0].contains("client_secret"), "{}", bodies[0]);
    sidecar.stop().await;
}
