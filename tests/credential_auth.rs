//! Client authentication without a static secret, and discovery: the sidecar's
//! `private_key_jwt` (RS256, PS256, ES256, EdDSA) and a ready-made assertion file
//! against the built-in issuer, which refuses replayed and misaddressed
//! assertions; the token endpoint found through RFC 8414 or OIDC discovery.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use m2m_sidecar::token::assertion::AssertionKey;
use std::convert::Infallible;
use std::time::Duration;
use support::config::{Cred, SidecarConfig, issuer_toml, quote};
use support::http::{client, wait_for_status};
use support::jwt::{TestKey, jwks};
use support::sidecar::Sidecar;
use support::token_server::TokenServer;

const ORDERS: &str = "https://orders.example.com";
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
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

struct Issuer {
    listener: Option<tokio::net::TcpListener>,
    url: String,
    port: u16,
    dir: tempfile::TempDir,
}

async fn issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    Issuer {
        listener: Some(listener),
        url: format!("http://127.0.0.1:{port}/"),
        port,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Issuer {
    /// An `[[issuer.apps]]` with only public keys, granted orders:read.
    fn app(&self, client_id: &str, key: &TestKey) -> String {
        let file = self.dir.path().join(format!("{client_id}.jwks.json"));
        std::fs::write(&file, jwks(&[key])).unwrap();
        format!(
            "[[issuer.apps]]\nname = {c}\nclient_id = {c}\njwks_file = {}\ngrants = {{ {} = [\"orders:read\"] }}\n",
            quote(file.to_str().unwrap()),
            quote(ORDERS),
            c = quote(client_id),
        )
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn tables(&self, apps: &str) -> String {
        issuer_toml(
            self.port,
            self.dir.path(),
            &format!(
                "[[issuer.apis]]\nname = \"Orders\"\nidentifier = {}\nscopes = [\"orders:read\"]\n{apps}",
                quote(ORDERS)
            ),
        )
    }
}

#[tokio::test]
async fn private_key_jwt_with_every_algorithm_and_through_discovery() {
    let mut iss = issuer().await;
    let keys = [
        ("es", TestKey::es256("k-es")),
        ("ed", TestKey::eddsa("k-ed")),
        ("rs", TestKey::rsa("k-rs", "RS256")),
        ("ps", TestKey::rsa("k-ps", "PS256")),
    ];
    let mut apps = String::new();
    let mut config = SidecarConfig::new();
    for (name, key) in &keys {
        apps.push_str(&iss.app(name, key));
        let pem = iss.write(&format!("{name}.pem"), &key.private_pem());
        let mut cred = Cred::new(name, &format!("{}oauth/token", iss.url))
            .text("client_id", name)
            .text("auth_method", "private_key_jwt")
            .with("private_key", &format!("{{ file = {} }}", quote(&pem)))
            .text("key_id", &key.kid)
            .text("audience", ORDERS)
            .text("assertion_alg", key.alg)
            .with("client_secret", "\"unused\"");
        cred = without(cred, "client_secret");
        config = config.credential(cred);
    }
    // The same ES256 app, its token endpoint found from the issuer URL, and the
    // assertion's aud then the issuer identifier.
    let pem = iss.write("es-again.pem", &keys[0].1.private_pem());
    let discovered = without(
        Cred::new("discovered", "unused")
            .text("client_id", "es")
            .text("auth_method", "private_key_jwt")
            .with("private_key", &format!("{{ file = {} }}", quote(&pem)))
            .text("audience", ORDERS),
        "token_url",
    );
    let discovered = without(discovered, "client_secret").text("issuer", &iss.url);
    config = config.credential(discovered).raw(&iss.tables(&apps));
    let sidecar = Sidecar::start_with(&config, iss.listener.take()).await;
    wait_for_status(&sidecar.admin_url("/readyz"), 200, Duration::from_secs(20)).await;
    for (name, _) in &keys {
        let claims = held_claims(&sidecar, name);
        assert_eq!(claims["client_id"], *name, "{claims}");
        assert_eq!(claims["aud"], ORDERS);
    }
    assert_eq!(held_claims(&sidecar, "discovered")["client_id"], "es");
    sidecar.stop().await;
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

#[tokio::test]
async fn the_issuer_refuses_replayed_and_misaddressed_assertions() {
    let mut iss = issuer().await;
    let key = TestKey::es256("k1");
    let other = TestKey::es256("k1");
    let apps = iss.app("svc", &key);
    let config = SidecarConfig::new().raw(&iss.tables(&apps));
    let sidecar = Sidecar::start_with(&config, iss.listener.take()).await;
    let url = iss.url.clone();
    let signer = AssertionKey::from_pem(&key.private_pem(), None).unwrap();
    let good = signer.sign("svc", &url, Some("k1")).unwrap();
    let (status, body) = token_with_assertion(&url, &good, Some("svc")).await;
    assert_eq!(status, 200, "{body}");
    // The token endpoint URL is an accepted audience too.
    let to_endpoint = signer
        .sign("svc", &format!("{url}oauth/token"), Some("k1"))
        .unwrap();
    assert_eq!(token_with_assertion(&url, &to_endpoint, None).await.0, 200);

    let (status, body) = token_with_assertion(&url, &good, Some("svc")).await;
    assert_eq!(status, 401, "replayed jti: {body}");
    assert!(body.contains("already used"), "{body}");

    let cases = [
        (
            "wrong aud",
            signer
                .sign("svc", "https://elsewhere.example/", Some("k1"))
                .unwrap(),
            "aud must name this server",
        ),
        (
            "another key under the same kid",
            AssertionKey::from_pem(&other.private_pem(), None)
                .unwrap()
                .sign("svc", &url, Some("k1"))
                .unwrap(),
            "not signed by a key registered for its client",
        ),
        (
            "an unknown client",
            signer.sign("nobody", &url, Some("k1")).unwrap(),
            "not signed by a key registered for its client",
        ),
    ];
    let mut bodies = Vec::new();
    for (what, assertion, want) in cases {
        let (status, body) = token_with_assertion(&url, &assertion, None).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body.contains(want), "{what}: {body}");
        assert!(body.contains("invalid_client"), "{what}: {body}");
        bodies.push(body);
    }
    // A known client with a bad signature and an unknown client look alike.
    assert_eq!(bodies[1], bodies[2]);
    // client_id in the body must be the assertion's iss.
    let fresh = signer.sign("svc", &url, Some("k1")).unwrap();
    let (status, body) = token_with_assertion(&url, &fresh, Some("other")).await;
    assert_eq!(status, 401, "{body}");
    // An assertion living longer than 10 minutes is refused.
    let long = {
        let now = support::jwt::now();
        let claims = serde_json::json!({"iss": "svc", "sub": "svc", "aud": url, "jti": "long", "iat": now, "exp": now + 3600});
        key.sign(&serde_json::json!({"alg": "ES256", "kid": "k1"}), &claims)
    };
    let (status, body) = token_with_assertion(&url, &long, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("ahead"), "{body}");
    sidecar.stop().await;
}

#[tokio::test]
async fn an_assertion_file_is_read_again_for_every_token_request() {
    let mut iss = issuer().await;
    let key = TestKey::eddsa("sa");
    let apps = iss.app("workload", &key);
    // Not an assertion yet: token requests fail until the file holds one.
    let file = iss.write("token", "not-a-jwt");
    let cred = without(
        Cred::new("wl", &format!("{}oauth/token", iss.url))
            .text("client_id", "workload")
            .text("auth_method", "private_key_jwt")
            .text("assertion_file", &file)
            .text("audience", ORDERS),
        "client_secret",
    );
    let config = SidecarConfig::new()
        .credential(cred)
        .raw(&iss.tables(&apps));
    let sidecar = Sidecar::start_with(&config, iss.listener.take()).await;
    let body = wait_for_status(&sidecar.admin_url("/readyz"), 503, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
        if v["credentials"]["wl"]["last_error"].is_string() {
            let e = v["credentials"]["wl"]["last_error"].as_str().unwrap();
            assert!(e.contains("invalid_client"), "{e}");
            assert!(!e.contains("not-a-jwt"), "the assertion is not echoed: {e}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Kubelet writes a fresh token: the next retry uses it.
    let assertion = AssertionKey::from_pem(&key.private_pem(), None)
        .unwrap()
        .sign("workload", &iss.url, Some("sa"))
        .unwrap();
    std::fs::write(&file, &assertion).unwrap();
    wait_for_status(&sidecar.admin_url("/readyz"), 200, Duration::from_secs(15)).await;
    assert_eq!(held_claims(&sidecar, "wl")["client_id"], "workload");
    sidecar.stop().await;
}

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
        let c = &v["credentials"];
        if c["rfc8414"]["state"] == "valid"
            && c["oidc"]["state"] == "valid"
            && c["liar"]["last_error"].is_string()
        {
            let e = c["liar"]["last_error"].as_str().unwrap();
            assert!(
                e.contains("discovery") && e.contains("another issuer"),
                "{e}"
            );
            assert_eq!(c["liar"]["state"], "failing");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
        let c = &v["credentials"];
        if c["mtls"]["state"] == "valid" && c["plain"]["last_error"].is_string() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

#[tokio::test]
async fn apps_registered_with_a_pem_public_key_authenticate_with_private_key_jwt() {
    let mut iss = issuer().await;
    let keys = [
        ("pem-es", TestKey::es256("ignored-kid")),
        ("pem-ed", TestKey::eddsa("ignored-kid")),
        ("pem-rs", TestKey::rsa("ignored-kid", "RS256")),
    ];
    let mut apps = String::new();
    let mut config = SidecarConfig::new();
    for (name, key) in &keys {
        let public = iss.write(&format!("{name}.pub.pem"), &key.public_pem());
        apps.push_str(&format!(
            "[[issuer.apps]]\nname = {n}\nclient_id = {n}\npublic_key_file = {}\ngrants = {{ {} = [\"orders:read\"] }}\n",
            quote(&public),
            quote(ORDERS),
            n = quote(name),
        ));
        let pem = iss.write(&format!("{name}.pem"), &key.private_pem());
        config = config.credential(
            Cred::new(name, &format!("{}oauth/token", iss.url))
                .remove("client_secret")
                .text("client_id", name)
                .text("auth_method", "private_key_jwt")
                .with("private_key", &format!("{{ file = {} }}", quote(&pem)))
                // The PEM has no kid: whatever the assertion names, the app's one key is used.
                .text("key_id", "some-kid")
                .text("audience", ORDERS),
        );
    }
    let config = config.raw(&iss.tables(&apps));
    let sidecar = Sidecar::start_with(&config, iss.listener.take()).await;
    wait_for_status(&sidecar.admin_url("/readyz"), 200, Duration::from_secs(20)).await;
    for (name, _) in &keys {
        assert_eq!(held_claims(&sidecar, name)["client_id"], *name);
    }
    sidecar.stop().await;
}

#[tokio::test]
async fn the_management_api_registers_a_pem_public_key() {
    let mut iss = issuer().await;
    let admin_secret = "admin-secret-0123456789abcdef0123456789";
    let apps = format!(
        "[[issuer.apps]]\nname = \"admin\"\nclient_id = \"admin\"\nclient_secret = {}\ngrants = {{ {} = [\"apps:write\"] }}\n",
        quote(admin_secret),
        quote(&format!("{}api/v1/", iss.url))
    );
    let config = SidecarConfig::new().raw(&iss.tables(&apps));
    let sidecar = Sidecar::start_with(&config, iss.listener.take()).await;
    let url = iss.url.clone();
    let (status, admin) =
        support::http::token_json(&url, "admin", admin_secret, &format!("{url}api/v1/")).await;
    assert_eq!(status, 200, "{admin}");
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let key = TestKey::es256("k");
    let create = |body: serde_json::Value| {
        let (url, admin) = (url.clone(), admin.clone());
        async move {
            let resp = client()
                .post(format!("{url}api/v1/apps"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = create(serde_json::json!({
        "name": "late", "client_id": "late",
        "grants": {ORDERS: ["orders:read"]},
        "public_key_pem": key.public_pem(),
    }))
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = create(serde_json::json!({
        "name": "both", "client_id": "both",
        "jwks": {"keys": [key.jwk()]}, "public_key_pem": key.public_pem(),
    }))
    .await;
    assert_eq!(status, 400, "{body}");
    let assertion = AssertionKey::from_pem(&key.private_pem(), None)
        .unwrap()
        .sign("late", &url, None)
        .unwrap();
    let (status, body) = token_with_assertion(&url, &assertion, None).await;
    assert_eq!(status, 200, "{body}");
    sidecar.stop().await;
}
