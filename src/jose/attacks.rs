//! The attack classes against a JWT verifier (RFC 8725 §2, and what the
//! Wycheproof and JWT-attack catalogues list), each as a forged token and the
//! refusal `jose` must give: parsing, key choice, algorithm, signature, then
//! the shared claims (dates with leeway, `aud`). Every verifier in the crate
//! runs these same steps before its own policy. No sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use super::alg::Algorithm;
use super::claims::{self, TimeError, Window, WrongType};
use super::compact::{JwsError, MAX_TOKEN};
use super::keys::KeySet;
use super::test_keys::{TestKey, b64, der_signature, hmac_token, key_set, seg};
use super::verify::verify;
use serde_json::{Value, json};

const AUD: &str = "https://api.example/";

#[derive(Debug, PartialEq)]
enum Refused {
    Jws(JwsError),
    Time(TimeError),
    Claim(WrongType),
    Audience,
}

/// What every verifier does before its policy: `jose::verify`, the time
/// window (30 s leeway), `aud`.
fn check(token: &str, keys: &KeySet) -> Result<(), Refused> {
    let (jws, _) = verify(token, keys).map_err(Refused::Jws)?;
    Window::now(30).check(&jws.claims).map_err(Refused::Time)?;
    match claims::audience(&jws.claims, |a| a == AUD) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refused::Audience),
        Err(e) => Err(Refused::Claim(e)),
    }
}

fn now() -> u64 {
    crate::clock::unix_now()
}

fn good_claims() -> Value {
    json!({"iss": "https://issuer.example/", "sub": "svc", "aud": AUD,
           "exp": now() + 300, "iat": now(), "jti": "j1"})
}

fn parts(token: &str) -> (String, String, String) {
    let p: Vec<&str> = token.split('.').collect();
    (p[0].to_owned(), p[1].to_owned(), p[2].to_owned())
}

/// The last character of a base64url segment with an unused bit set.
fn non_canonical(segment: &str) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert!(matches!(segment.len() % 4, 2 | 3), "{segment}");
    let last = segment.as_bytes()[segment.len() - 1];
    let v = ALPHA.iter().position(|x| *x == last).unwrap();
    format!("{}{}", &segment[..segment.len() - 1], ALPHA[v ^ 1] as char)
}

#[test]
fn every_attack_class_is_refused_with_its_reason() {
    use JwsError::*;
    let rsa = TestKey::rsa("k1", Algorithm::RS256);
    let attacker = TestKey::rsa("k1", Algorithm::RS256);
    let ec = TestKey::es256("ec1");
    let keys = key_set(&[&rsa, &ec]);
    let good = good_claims();
    let h = rsa.header();
    let with_header = |k: &str, v: Value| {
        let mut hh = h.clone();
        hh[k] = v;
        rsa.sign(&hh, &good)
    };
    let valid = rsa.sign(&h, &good);
    let (vh, vp, vs) = parts(&valid);
    let ec_msg = format!("{}.{}", seg(&ec.header()), seg(&good));
    let ec_sig = ec.signature(ec_msg.as_bytes());
    let raw = |header: &str, claims: &str| {
        let msg = format!("{}.{}", b64(header), b64(claims));
        let sig = ec.signature(msg.as_bytes());
        format!("{msg}.{}", b64(sig))
    };
    let pss = TestKey::rsa("k1", Algorithm::PS256);
    let cases: Vec<(&str, String, Refused)> = vec![
        (
            "alg none",
            format!("{}.{vp}.", seg(&json!({"alg": "none", "kid": "k1"}))),
            Refused::Jws(AlgNotAllowed),
        ),
        (
            "alg None",
            format!("{}.{vp}.", seg(&json!({"alg": "None"}))),
            Refused::Jws(AlgNotAllowed),
        ),
        (
            "alg NONE with a signature",
            format!("{}.{vp}.{vs}", seg(&json!({"alg": "NONE", "kid": "k1"}))),
            Refused::Jws(AlgNotAllowed),
        ),
        (
            "HS256 with the RSA public key as the secret",
            hmac_token(
                &json!({"alg": "HS256", "kid": "k1"}),
                &good,
                rsa.jwk().to_string().as_bytes(),
            ),
            Refused::Jws(AlgNotAllowed),
        ),
        (
            "RS256 key used as PS256",
            pss.sign(&json!({"alg": "PS256", "kid": "k1"}), &good),
            Refused::Jws(AlgNotAllowed),
        ),
        (
            "ES256 key named ES384",
            format!(
                "{}.{vp}.{}",
                seg(&json!({"alg": "ES384", "kid": "ec1"})),
                b64(&ec_sig)
            ),
            Refused::Jws(AlgNotAllowed),
        ),
        (
            "an algorithm we do not know",
            with_header("alg", "ES512".into()),
            Refused::Jws(AlgNotAllowed),
        ),
        (
            "alg not a string",
            with_header("alg", json!(["RS256"])),
            Refused::Jws(BadHeader),
        ),
        (
            "kid path traversal",
            with_header("kid", "../../../../dev/null".into()),
            Refused::Jws(UnknownKid),
        ),
        (
            "kid SQL injection",
            with_header("kid", "x' OR '1'='1".into()),
            Refused::Jws(UnknownKid),
        ),
        (
            "kid not a string",
            with_header("kid", json!(1)),
            Refused::Jws(BadHeader),
        ),
        (
            "no kid among two keys",
            rsa.sign(&json!({"alg": "RS256"}), &good),
            Refused::Jws(UnknownKid),
        ),
        (
            "jku to an attacker",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "jku": "http://127.0.0.1:9/jwks"}),
                &good,
            ),
            Refused::Jws(BadSignature),
        ),
        (
            "x5u to an attacker",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "x5u": "http://127.0.0.1:9/c"}),
                &good,
            ),
            Refused::Jws(BadSignature),
        ),
        (
            "embedded jwk",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "jwk": attacker.jwk()}),
                &good,
            ),
            Refused::Jws(BadSignature),
        ),
        (
            "x5c",
            attacker.sign(
                &json!({"alg": "RS256", "kid": "k1", "x5c": ["MIIB"]}),
                &good,
            ),
            Refused::Jws(BadSignature),
        ),
        (
            "signed by someone else",
            attacker.sign(&h, &good),
            Refused::Jws(BadSignature),
        ),
        (
            "unknown crit",
            with_header("crit", json!(["exp-ext"])),
            Refused::Jws(UnknownCrit),
        ),
        (
            "empty crit",
            with_header("crit", json!([])),
            Refused::Jws(UnknownCrit),
        ),
        (
            "unencoded payload (RFC 7797)",
            {
                let mut hh = h.clone();
                hh["b64"] = json!(false);
                hh["crit"] = json!(["b64"]);
                rsa.sign(&hh, &good)
            },
            Refused::Jws(UnknownCrit),
        ),
        (
            "padded base64",
            format!("{vh}=.{vp}.{vs}"),
            Refused::Jws(Malformed),
        ),
        (
            "padded signature",
            format!("{vh}.{vp}.{vs}=="),
            Refused::Jws(Malformed),
        ),
        (
            "standard base64",
            format!("{vh}.{vp}.{}", vs.replace('-', "+").replace('_', "/")),
            Refused::Jws(Malformed),
        ),
        (
            "non-canonical last char",
            format!("{ec_msg}.{}", non_canonical(&b64(&ec_sig))),
            Refused::Jws(Malformed),
        ),
        (
            "whitespace",
            format!("{vh}.{vp} .{vs}"),
            Refused::Jws(Malformed),
        ),
        (
            "repeated header member",
            raw(
                r#"{"alg":"ES256","kid":"ec1","alg":"none"}"#,
                &good.to_string(),
            ),
            Refused::Jws(Malformed),
        ),
        (
            "repeated claim",
            raw(
                r#"{"alg":"ES256","kid":"ec1"}"#,
                &format!(r#"{{"aud":"x","aud":"{AUD}","exp":{}}}"#, now() + 60),
            ),
            Refused::Jws(Malformed),
        ),
        (
            "claims not an object",
            raw(r#"{"alg":"ES256","kid":"ec1"}"#, "[1]"),
            Refused::Jws(Malformed),
        ),
        (
            "header not an object",
            format!("{}.{vp}.{vs}", b64("[1]")),
            Refused::Jws(Malformed),
        ),
        (
            "JWE, five segments",
            format!("{vh}.{vp}.{vs}.x.y"),
            Refused::Jws(Malformed),
        ),
        (
            "two segments",
            format!("{vh}.{vp}"),
            Refused::Jws(Malformed),
        ),
        (
            "oversized",
            format!("{vh}.{}.{vs}", "A".repeat(MAX_TOKEN)),
            Refused::Jws(TooLarge),
        ),
        (
            "signature removed",
            format!("{vh}.{vp}."),
            Refused::Jws(BadSignature),
        ),
        (
            "ES256 r=0 s=0",
            format!("{ec_msg}.{}", b64([0u8; 64])),
            Refused::Jws(BadSignature),
        ),
        (
            "ES256 DER signature",
            format!("{ec_msg}.{}", b64(der_signature(&ec_sig))),
            Refused::Jws(BadSignature),
        ),
    ];
    assert_eq!(check(&valid, &keys), Ok(()), "the baseline token is fine");
    assert_eq!(check(&format!("{ec_msg}.{}", b64(&ec_sig)), &keys), Ok(()));
    for (what, token, want) in cases {
        assert_eq!(check(&token, &keys), Err(want), "{what}");
    }
}

#[test]
fn every_claim_variant_is_refused_with_its_reason() {
    let key = TestKey::eddsa("ed");
    let keys = key_set(&[&key]);
    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        key.sign(&key.header(), &c)
    };
    let without = |k: &str| {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(k);
        key.sign(&key.header(), &c)
    };
    let n = now();
    let cases: Vec<(&str, String, Refused)> = vec![
        (
            "expired beyond the leeway",
            with("exp", json!(n - 60)),
            Refused::Time(TimeError::Expired),
        ),
        (
            "exp missing",
            without("exp"),
            Refused::Time(TimeError::NoExpiry),
        ),
        (
            "exp as a string",
            with("exp", "9999999999".into()),
            Refused::Time(TimeError::WrongType(WrongType("exp"))),
        ),
        (
            "exp negative",
            with("exp", json!(-1)),
            Refused::Time(TimeError::WrongType(WrongType("exp"))),
        ),
        (
            "exp null",
            with("exp", Value::Null),
            Refused::Time(TimeError::WrongType(WrongType("exp"))),
        ),
        (
            "nbf in the future",
            with("nbf", json!(n + 600)),
            Refused::Time(TimeError::NotYetValid),
        ),
        (
            "iat in the future",
            with("iat", json!(n + 600)),
            Refused::Time(TimeError::NotYetValid),
        ),
        (
            "nbf as a string",
            with("nbf", "0".into()),
            Refused::Time(TimeError::WrongType(WrongType("nbf"))),
        ),
        (
            "iat as a bool",
            with("iat", json!(true)),
            Refused::Time(TimeError::WrongType(WrongType("iat"))),
        ),
        (
            "wrong aud",
            with("aud", "https://other.example/".into()),
            Refused::Audience,
        ),
        (
            "aud without its trailing slash",
            with("aud", "https://api.example".into()),
            Refused::Audience,
        ),
        (
            "aud array without ours",
            with("aud", json!(["https://a", "https://b"])),
            Refused::Audience,
        ),
        ("aud missing", without("aud"), Refused::Audience),
        (
            "aud array with a number",
            with("aud", json!([AUD, 1])),
            Refused::Claim(WrongType("aud")),
        ),
        (
            "aud an object",
            with("aud", json!({"aud": AUD})),
            Refused::Claim(WrongType("aud")),
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(check(&token, &keys), Err(want), "{what}");
    }
    for (what, token) in [
        ("the baseline", key.sign(&key.header(), &good_claims())),
        (
            "aud array with ours",
            with("aud", json!(["https://a", AUD])),
        ),
        ("expired within the leeway", with("exp", json!(n - 10))),
        ("nbf within the leeway", with("nbf", json!(n + 10))),
        ("exp as a fraction", with("exp", json!(n as f64 + 300.5))),
        (
            "no kid, one key",
            key.sign(&json!({"alg": "EdDSA"}), &good_claims()),
        ),
    ] {
        assert_eq!(check(&token, &keys), Ok(()), "{what}");
    }
}

#[test]
fn an_hmac_secret_verifies_only_its_own_algorithm_in_constant_time() {
    let secret = [7u8; 32];
    let keys = KeySet::hmac(&secret, Algorithm::HS256).unwrap();
    let good = good_claims();
    let header = json!({"alg": "HS256", "kid": "whatever"});
    let token = hmac_token(&header, &good, &secret);
    assert_eq!(check(&token, &keys), Ok(()));
    let (h, p, s) = parts(&token);
    let cases = [
        (
            "another secret",
            hmac_token(&header, &good, &[8u8; 32]),
            JwsError::BadSignature,
        ),
        (
            "a truncated tag",
            format!("{h}.{p}.{}", &s[..s.len() - 11]),
            JwsError::BadSignature,
        ),
        (
            "HS384 named",
            format!("{}.{p}.{s}", seg(&json!({"alg": "HS384"}))),
            JwsError::AlgNotAllowed,
        ),
        (
            "RS256 named",
            format!("{}.{p}.{s}", seg(&json!({"alg": "RS256"}))),
            JwsError::AlgNotAllowed,
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(check(&token, &keys), Err(Refused::Jws(want)), "{what}");
    }
}

#[test]
fn each_public_key_algorithm_verifies_and_is_bound_to_its_key() {
    let keys = [
        TestKey::es256("es"),
        TestKey::eddsa("ed"),
        TestKey::rsa("rs", Algorithm::RS256),
        TestKey::rsa("ps", Algorithm::PS256),
        TestKey::rsa("rs512", Algorithm::RS512),
    ];
    let set = key_set(&keys.iter().collect::<Vec<_>>());
    for k in &keys {
        let token = k.sign(&k.header(), &good_claims());
        assert_eq!(check(&token, &set), Ok(()), "{}", k.kid);
        assert_eq!(set.find(Some(&k.kid)).unwrap().alg(), k.alg);
        // Another key's id: the signature does not verify with that key (or
        // the algorithm is not that key's).
        for other in keys.iter().filter(|o| o.kid != k.kid) {
            let mut h = k.header();
            h["kid"] = other.kid.as_str().into();
            assert!(
                check(&k.sign(&h, &good_claims()), &set).is_err(),
                "{} as {}",
                k.kid,
                other.kid
            );
        }
    }
}
