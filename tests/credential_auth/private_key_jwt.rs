//! `private_key_jwt` against the built-in issuer: every algorithm, discovery,
//! an assertion file, PEM public keys; replayed and misaddressed assertions
//! refused.

use super::*;
use m2m_sidecar::token::assertion::AssertionKey;
use std::time::Duration;
use support::http::until_status;
use support::issuer::Issuer;
use support::until;

#[tokio::test]
async fn private_key_jwt_with_every_algorithm_and_through_discovery() {
    let iss = Reserved::new().await;
    let keys = [
        ("es", TestKey::es256("k-es")),
        ("ed", TestKey::eddsa("k-ed")),
        ("rs", TestKey::rsa("k-rs", "RS256")),
        ("ps", TestKey::rsa("k-ps", "PS256")),
    ];
    let mut api = orders();
    let mut config = SidecarConfig::new();
    for (name, key) in &keys {
        api = api.app(keyed_app(&iss, name, key));
        let pem = iss.file(&format!("{name}.pem"), &key.private_pem());
        let mut cred = Cred::new(name, &iss.token_url())
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
    let pem = iss.file("es-again.pem", &keys[0].1.private_pem());
    let discovered = without(
        Cred::new("discovered", "unused")
            .text("client_id", "es")
            .text("auth_method", "private_key_jwt")
            .with("private_key", &format!("{{ file = {} }}", quote(&pem)))
            .text("audience", ORDERS),
        "token_url",
    );
    let discovered = without(discovered, "client_secret").text("issuer", &iss.url);
    config = config.credential(discovered);
    let Issuer {
        sidecar, dir: _dir, ..
    } = iss.start(config, &api).await;
    sidecar.ready().await;
    for (name, _) in &keys {
        let claims = held_claims(&sidecar, name);
        assert_eq!(claims["client_id"], *name, "{claims}");
        assert_eq!(claims["aud"], ORDERS);
    }
    assert_eq!(held_claims(&sidecar, "discovered")["client_id"], "es");
    sidecar.stop().await;
}

#[tokio::test]
async fn the_issuer_refuses_replayed_and_misaddressed_assertions() {
    let iss = Reserved::new().await;
    let key = TestKey::es256("k1");
    let other = TestKey::es256("k1");
    let api = orders().app(keyed_app(&iss, "svc", &key));
    let url = iss.url.clone();
    let Issuer {
        sidecar, dir: _dir, ..
    } = iss.start(SidecarConfig::new(), &api).await;
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
    let iss = Reserved::new().await;
    let key = TestKey::eddsa("sa");
    let api = orders().app(keyed_app(&iss, "workload", &key));
    // Not an assertion yet: token requests fail until the file holds one.
    let file = iss.file("token", "not-a-jwt");
    let cred = without(
        Cred::new("wl", &iss.token_url())
            .text("client_id", "workload")
            .text("auth_method", "private_key_jwt")
            .text("assertion_file", &file)
            .text("audience", ORDERS),
        "client_secret",
    );
    let url = iss.url.clone();
    let Issuer {
        sidecar, dir: _dir, ..
    } = iss.start(SidecarConfig::new().credential(cred), &api).await;
    until_status(&sidecar.admin_url("/readyz"), 503, Duration::from_secs(10)).await;
    let e = until(
        Duration::from_secs(10),
        "the credential's error",
        async || {
            let (_, v) = support::http::get_json(&sidecar.admin_url("/readyz")).await;
            let e = v["credentials"]["wl"]["last_error"].as_str();
            e.map(str::to_owned).ok_or(v)
        },
    )
    .await;
    assert!(e.contains("invalid_client"), "{e}");
    assert!(!e.contains("not-a-jwt"), "the assertion is not echoed: {e}");
    // Kubelet writes a fresh token: the next retry uses it.
    let assertion = AssertionKey::from_pem(&key.private_pem(), None)
        .unwrap()
        .sign("workload", &url, Some("sa"))
        .unwrap();
    std::fs::write(&file, &assertion).unwrap();
    until_status(&sidecar.admin_url("/readyz"), 200, Duration::from_secs(15)).await;
    assert_eq!(held_claims(&sidecar, "wl")["client_id"], "workload");
    sidecar.stop().await;
}

#[tokio::test]
async fn apps_registered_with_a_pem_public_key_authenticate_with_private_key_jwt() {
    let iss = Reserved::new().await;
    let keys = [
        ("pem-es", TestKey::es256("ignored-kid")),
        ("pem-ed", TestKey::eddsa("ignored-kid")),
        ("pem-rs", TestKey::rsa("ignored-kid", "RS256")),
    ];
    let mut api = orders();
    let mut config = SidecarConfig::new();
    for (name, key) in &keys {
        let public = iss.file(&format!("{name}.pub.pem"), &key.public_pem());
        api = api.app(
            App::keyed(name)
                .with("public_key_file", &quote(&public))
                .orders(&["orders:read"]),
        );
        let pem = iss.file(&format!("{name}.pem"), &key.private_pem());
        config = config.credential(
            Cred::new(name, &iss.token_url())
                .remove("client_secret")
                .text("client_id", name)
                .text("auth_method", "private_key_jwt")
                .with("private_key", &format!("{{ file = {} }}", quote(&pem)))
                // The PEM has no kid: whatever the assertion names, the app's one key is used.
                .text("key_id", "some-kid")
                .text("audience", ORDERS),
        );
    }
    let Issuer {
        sidecar, dir: _dir, ..
    } = iss.start(config, &api).await;
    sidecar.ready().await;
    for (name, _) in &keys {
        assert_eq!(held_claims(&sidecar, name)["client_id"], *name);
    }
    sidecar.stop().await;
}

#[tokio::test]
async fn the_management_api_registers_a_pem_public_key() {
    let iss = Reserved::new().await;
    let admin_secret = "admin-secret-0123456789abcdef0123456789";
    let api = orders().app(App::new("admin", admin_secret).mgmt(&["apps:write"]));
    let url = iss.url.clone();
    let Issuer {
        sidecar, dir: _dir, ..
    } = iss.start(SidecarConfig::new(), &api).await;
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
