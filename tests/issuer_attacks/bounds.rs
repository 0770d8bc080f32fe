//! §8 (issuer): replay memory and the JWKS are bounded.

use super::*;

#[tokio::test]
async fn long_assertion_jtis_are_refused_and_replays_still_caught() {
    let keys = tempfile::tempdir().unwrap();
    let key = support::jwt::TestKey::es256("kh");
    let s = Iss::start(api().app(keyholder(keys.path(), &key))).await;
    for len in [257, 1000, 5700, 64 * 1024 - 1024] {
        let jti = "j".repeat(len);
        let (status, _, v) = assert_as(&s, &key, "keyholder", &jti).await;
        assert!(status == 401 || status == 400, "{len}: {v}");
        let text = v.to_string();
        assert!(
            text.contains("jti is longer than 256 bytes") || text.contains("larger than"),
            "{len}: {text}"
        );
    }
    let jti = "k".repeat(256);
    assert_eq!(assert_as(&s, &key, "keyholder", &jti).await.0, 200);
    let (status, _, v) = assert_as(&s, &key, "keyholder", &jti).await;
    assert_eq!(status, 401, "replay: {v}");
    assert!(v.to_string().contains("already used"), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_the_jwks_bounded() {
    let s = Iss::start(api()).await;
    let mut tokens = vec![s.orders_token("billing", SECRET).await];
    for i in 0..8 {
        // A fresh admin token each time: the one from five rotations ago dies.
        let root = s.mgmt_token("root").await;
        let (status, _, v) = s
            .call("POST", "api/v1/keys/rotate", Some(&root), None)
            .await;
        assert_eq!(status, 200, "rotation {i}: {v}");
        let (_, jwks) = support::http::get(&format!("{}.well-known/jwks.json", s.url)).await;
        let doc: serde_json::Value = serde_json::from_str(&jwks).unwrap();
        let n = doc["keys"].as_array().unwrap().len();
        assert_eq!(n, (i + 2).min(5), "rotation {i}");
        assert!(jwks.len() < 4096, "{} bytes", jwks.len());
        tokens.push(s.orders_token("billing", SECRET).await);
    }
    // tokens[k] was signed by the key of rotation k: the newest five verify.
    for (k, t) in tokens.iter().enumerate() {
        assert_eq!(s.active(t).await, k + 5 > 8, "token {k}");
    }
    let s = s.restart().await;
    let (_, jwks) = support::http::get(&format!("{}.well-known/jwks.json", s.url)).await;
    let doc: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(doc["keys"].as_array().unwrap().len(), 5, "after a restart");
    s.stop().await;
}
