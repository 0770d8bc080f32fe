//! Valid tokens pass with their identity, with every algorithm the JWKS
//! binds; answers follow RFC 6750 (and gRPC's status for gRPC callers).

use super::*;

#[tokio::test]
async fn a_valid_token_passes_with_its_identity() {
    let key = TestKey::es256("k1");
    let s = setup(&[&key], "").await;
    let token = key.sign(&key.header(), &claims(ISS, AUD, "orders:read orders:write"));
    let resp = client()
        .get(format!("{}/orders/7", s.url))
        .header("authorization", format!("Bearer {token}"))
        .header("x-m2m-client-id", "spoofed")
        .header("x-m2m-scopes", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.echo.seen().pop().unwrap();
    assert_eq!(seen.headers["x-m2m-client-id"], "billing");
    assert_eq!(seen.headers["x-m2m-subject"], "billing@client");
    assert_eq!(seen.headers["x-m2m-scopes"], "orders:read orders:write");
    assert_eq!(
        seen.headers.get_all("x-m2m-client-id").iter().count(),
        1,
        "spoofed header removed"
    );
    assert!(
        seen.headers.get("authorization").is_none(),
        "the token is not forwarded by default"
    );
    assert_eq!(
        seen.headers["host"],
        s.url.trim_start_matches("http://"),
        "the service sees the Host it was called by"
    );
    s.sidecar.stop().await;
}

#[tokio::test]
async fn every_algorithm_the_jwks_binds_is_accepted() {
    let keys = [
        TestKey::es256("ec"),
        TestKey::eddsa("ed"),
        TestKey::rsa("rs", "RS256"),
        TestKey::rsa("ps", "PS256"),
    ];
    let refs: Vec<&TestKey> = keys.iter().collect();
    let s = setup(&refs, "").await;
    for k in &keys {
        let token = k.sign(&k.header(), &claims(ISS, AUD, "orders:read"));
        assert_eq!(
            call(&s, "GET", "/orders/1", Some(&token)).await.0,
            200,
            "{}",
            k.alg
        );
    }
    s.sidecar.stop().await;
}

#[tokio::test]
async fn answers_follow_rfc_6750() {
    let key = TestKey::es256("k1");
    let s = setup(&[&key], "").await;
    let read = key.sign(&key.header(), &claims(ISS, AUD, "orders:read"));
    // No token: 401 with a bare challenge.
    let (status, h, body) = call(&s, "GET", "/orders/1", None).await;
    assert_eq!(
        (status, h["www-authenticate"].to_str().unwrap()),
        (401, "Bearer")
    );
    assert!(body.contains("invalid_token"));
    // A bad token: invalid_token in the challenge, the token never echoed.
    let (status, h, body) = call(&s, "GET", "/orders/1", Some("abc.def.ghi")).await;
    assert_eq!(status, 401);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    assert!(!body.contains("abc.def"));
    // Missing scope: 403 naming it.
    let (status, h, body) = call(&s, "POST", "/orders/1", Some(&read)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        h["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"orders:write\""
    );
    // No rule, default deny: 403 access_denied after the token is checked.
    let (status, _, body) = call(&s, "GET", "/elsewhere", Some(&read)).await;
    assert_eq!((status, body.contains("access_denied")), (403, true));
    assert_eq!(
        call(&s, "GET", "/elsewhere", None).await.0,
        401,
        "no token is still 401"
    );
    // Public: no token needed.
    assert_eq!(call(&s, "GET", "/healthz", None).await.0, 200);
    // gRPC: HTTP 200 with grpc-status.
    let resp = client()
        .post(format!("{}/orders/1", s.url))
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["grpc-status"].to_str().unwrap()
        ),
        (200, "16")
    );
    let resp = client()
        .post(format!("{}/orders/1", s.url))
        .header("content-type", "application/grpc+proto")
        .header("authorization", format!("Bearer {read}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["grpc-status"], "7");
    s.sidecar.stop().await;
}
