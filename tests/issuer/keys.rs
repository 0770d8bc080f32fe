//! Discovery and the signing key: the metadata documents, a key that survives
//! a restart, and RS256 and EdDSA keys verified against the JWKS.

use super::*;
use support::config::{SidecarConfig, quote};
use support::issuer::Reserved;

#[tokio::test]
async fn discovery_documents() {
    let s = issuer().await;
    for path in [
        ".well-known/oauth-authorization-server",
        ".well-known/openid-configuration",
    ] {
        let (status, doc) = support::http::get_json(&format!("{}{path}", s.url)).await;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], s.url);
        assert_eq!(doc["token_endpoint"], format!("{}oauth/token", s.url));
        assert_eq!(doc["jwks_uri"], format!("{}.well-known/jwks.json", s.url));
        assert_eq!(
            doc["introspection_endpoint"],
            format!("{}oauth/introspect", s.url)
        );
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials"])
        );
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&"orders:read".into())
        );
    }
    s.sidecar.stop().await;
}

#[tokio::test]
async fn the_signing_key_survives_a_restart_and_is_private() {
    let s = issuer().await;
    let path = s.dir.path().to_owned();
    let (_, jwks1) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
    let Issuer { sidecar, dir, .. } = s;
    sidecar.stop().await;
    use std::os::unix::fs::PermissionsExt as _;
    // The key is in the store, sealed: the database and the store key are
    // this user's alone, and no private key is there in clear.
    for file in ["issuer.db", "store.key"] {
        let mode = std::fs::metadata(path.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let db = std::fs::read(path.join("issuer.db")).unwrap();
    let wal = std::fs::read(path.join("issuer.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"));
    }
    assert!(!path.join("signing-es256.pem").exists());
    // Restarted on another port, with the same state.
    let s = Reserved::on(0, dir)
        .await
        .start(SidecarConfig::new(), &with_gateway())
        .await;
    let (_, jwks2) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
    assert_eq!(jwks1["keys"][0]["kid"], jwks2["keys"][0]["kid"]);
    assert_eq!(jwks1["keys"][0]["x"], jwks2["keys"][0]["x"]);
    s.sidecar.stop().await;
}

#[tokio::test]
async fn rs256_and_eddsa_tokens_verify_against_the_jwks() {
    for (alg, kty) in [("RS256", "RSA"), ("EdDSA", "OKP")] {
        let s = Issuer::start(&api().setting("signing_alg", &quote(alg))).await;
        let form = BILLING_FORM;
        let (status, _, body) = token_form(&s, &form, None).await;
        assert_eq!(status, 200, "{alg}: {body}");
        let token = body["access_token"].as_str().unwrap();
        let (_, jwks) = support::http::get_json(&format!("{}.well-known/jwks.json", s.url)).await;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["alg"], alg);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let key =
            jsonwebtoken::DecodingKey::from_jwk(set.find(header.kid.as_deref().unwrap()).unwrap())
                .unwrap();
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&[ORDERS]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["cid"], "billing");
        s.sidecar.stop().await;
    }
}
