//! Wycheproof's JWS vectors (`../shared/vectors/wycheproof/`) through the inbound
//! verifier's structural and signature checks: every `invalid` case is refused.
//! Valid cases whose key we support are accepted unless their payload is not a
//! JSON object (an access token's must be).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use jsonwebtoken::Algorithm;
use m2m_sidecar::inbound::jwks::KeySet;
use m2m_sidecar::inbound::verify::{Invalid, verify_signature};
use std::path::PathBuf;

const ALL: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn vectors(name: &str) -> Option<serde_json::Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/wycheproof")
        .join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).unwrap()),
        Err(_) => {
            eprintln!(
                "SKIPPED: {} is absent (../shared is not beside this checkout)",
                path.display()
            );
            None
        }
    }
}

#[test]
fn json_web_signature_vectors() {
    let Some(doc) = vectors("json_web_signature_test.json") else {
        return;
    };
    let (mut invalid, mut valid_checked) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let keys = match group.get("public") {
            Some(public) => {
                KeySet::parse(
                    serde_json::json!({"keys": [public]}).to_string().as_bytes(),
                    &ALL,
                )
                .unwrap()
                .0
            }
            // Symmetric (HS256) groups: the verifier never takes a secret from a JWKS.
            None => KeySet::default(),
        };
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            // JSON serialization (an object) is not a compact JWS: refused before anything.
            let result = match t["jws"].as_str() {
                Some(jws) => verify_signature(jws, &keys).map(|_| ()),
                None => Err(Invalid::Malformed),
            };
            match t["result"].as_str().unwrap() {
                "invalid" => {
                    invalid += 1;
                    assert!(result.is_err(), "tcId {id} ({}) was accepted", t["comment"]);
                }
                _ if !keys.is_empty() => {
                    valid_checked += 1;
                    assert!(
                        matches!(result, Ok(()) | Err(Invalid::Malformed)),
                        "tcId {id} ({}): {result:?}",
                        t["comment"]
                    );
                }
                _ => {}
            }
        }
    }
    assert!(
        invalid > 100 && valid_checked > 20,
        "{invalid} invalid, {valid_checked} valid checked"
    );
}

#[test]
fn json_web_key_vectors_never_yield_unusable_keys() {
    let Some(doc) = vectors("json_web_key_test.json") else {
        return;
    };
    for group in doc["testGroups"].as_array().unwrap() {
        for t in group["tests"].as_array().unwrap() {
            // Whatever the JWK, parsing the set must not panic, and a key that
            // loads must be one we can verify with.
            let Some(jwk) = t.get("jwk").or_else(|| t.get("public")) else {
                continue;
            };
            let doc = serde_json::json!({"keys": [jwk]}).to_string();
            let _ = KeySet::parse(doc.as_bytes(), &ALL);
        }
    }
}
