//! Signing an access token for a grant: the RFC 9068 claims, `typ: at+jwt`,
//! the current key's `kid`.

use super::grant::Grant;
use super::keys::SigningKey;
use crate::jose::sign::{self, Header, SignError};
use crate::oauth::ids::Scope;
use std::time::Duration;

/// The claims of an access token (RFC 9068 §2.2), in the order serde_json has
/// always written them (by name).
#[derive(serde::Serialize)]
struct AccessClaims<'a> {
    aud: &'a str,
    cid: &'a str,
    client_id: &'a str,
    exp: u64,
    gty: &'static str,
    iat: u64,
    iss: &'a str,
    jti: String,
    scope: String,
    scp: &'a [Scope],
    sub: String,
}

/// Sign an RFC 9068 access token for `grant`.
/// `now` (Unix seconds) is `iat`: read before the registry snapshot that
/// allowed the grant, so a block or deletion after that snapshot has a later
/// (or equal) time and revokes this token too.
pub fn mint(
    key: &SigningKey,
    issuer: &str,
    ttl: Duration,
    grant: &Grant,
    now: u64,
) -> Result<String, SignError> {
    let claims = AccessClaims {
        aud: grant.audience.as_str(),
        cid: grant.client_id.as_str(),
        client_id: grant.client_id.as_str(),
        exp: now + ttl.as_secs(),
        gty: "client_credentials",
        iat: now,
        iss: issuer,
        jti: sign::new_jti::<16>()?,
        scope: grant.scopes.join(" "),
        scp: &grant.scopes,
        sub: format!("{}@client", grant.client_id),
    };
    let header = Header {
        typ: "at+jwt",
        kid: Some(&key.kid),
    };
    key.signer.sign_compact(header, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn minted_tokens_keep_their_header_and_claims_byte_for_byte() {
        let (key, _) = super::super::keys::generate(crate::config::SigningAlg::ES256).unwrap();
        let grant = Grant {
            client_id: "billing".into(),
            audience: "https://orders.example.com".into(),
            scopes: vec!["orders:read".into(), "orders:write".into()],
        };
        let jwt = mint(
            &key,
            "https://issuer.example/",
            Duration::from_secs(3600),
            &grant,
            1000,
        )
        .unwrap();
        let parts: Vec<Vec<u8>> = jwt
            .split('.')
            .map(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap()
            })
            .collect();
        // What jsonwebtoken's `Header` and a `serde_json::json!` map wrote before.
        let header = format!(r#"{{"typ":"at+jwt","alg":"ES256","kid":"{}"}}"#, key.kid);
        assert_eq!(String::from_utf8_lossy(&parts[0]), header);
        let claims: serde_json::Value = serde_json::from_slice(&parts[1]).unwrap();
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 22);
        let expected = serde_json::json!({
            "iss": "https://issuer.example/",
            "sub": "billing@client",
            "aud": "https://orders.example.com",
            "cid": "billing",
            "client_id": "billing",
            "iat": 1000,
            "exp": 4600,
            "jti": jti,
            "scp": ["orders:read", "orders:write"],
            "scope": "orders:read orders:write",
            "gty": "client_credentials",
        });
        assert_eq!(String::from_utf8_lossy(&parts[1]), expected.to_string());
        assert_eq!(parts[2].len(), 64);
    }
}
