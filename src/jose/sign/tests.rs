//! Every algorithm signs what a third-party verifier (jsonwebtoken over the
//! public JWK) accepts; every PEM form a client key comes in is read; a bad key
//! is a typed error that shows none of the key's bytes, and so is Debug.

use super::*;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

/// jsonwebtoken's verdict on `jws`, with the public key taken from `signer`.
fn verify(signer: &Signer, jws: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(signer.public_jwk())?;
    let key = DecodingKey::from_jwk(&jwk)?;
    let mut validation = Validation::new(signer.alg());
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(jws, &key, &validation).map(|t| t.claims)
}

fn sign(signer: &Signer) -> String {
    let claims = json!({"sub": "svc", "aud": "https://orders.example.com", "n": 1});
    let header = Header {
        typ: "JWT",
        kid: Some("k\"1"),
    };
    signer.sign_compact(header, &claims).unwrap()
}

/// The base64 body lines of a PEM text: no error or Debug output may hold any.
fn body_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect()
}

fn shows_no_key(text: &str, pem: &str) {
    for line in body_lines(pem) {
        for window in line.as_bytes().windows(12) {
            let window = std::str::from_utf8(window).unwrap();
            assert!(!text.contains(window), "{text:?} shows key bytes");
        }
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (RFC 5208 §5).
fn pkcs1_of(pkcs8_pem: &str) -> String {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pkcs8_pem.as_bytes()).unwrap();
    let blocks = simple_asn1::from_der(der.secret_pkcs8_der()).unwrap();
    let Some(simple_asn1::ASN1Block::Sequence(_, items)) = blocks.first() else {
        panic!("not a PrivateKeyInfo");
    };
    let Some(simple_asn1::ASN1Block::OctetString(_, inner)) = items.get(2) else {
        panic!("no privateKey");
    };
    pem("RSA PRIVATE KEY", inner)
}

#[test]
fn every_issuer_alg_signs_what_jsonwebtoken_verifies() {
    for alg in alg::ISSUER_SIGNING {
        let (signer, key_pem) = Signer::generate(alg).unwrap();
        assert_eq!(signer.alg(), alg);
        let jws = sign(&signer);
        let claims = verify(&signer, &jws).unwrap();
        assert_eq!(claims["sub"], "svc", "{alg:?}");
        let header = jsonwebtoken::decode_header(&jws).unwrap();
        assert_eq!(header.alg, alg);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some("k\"1"));

        // The stored PEM reads back as the same key, for that alg only.
        let pem_text = std::str::from_utf8(key_pem.as_bytes()).unwrap();
        let again = Signer::from_pkcs8_pem(pem_text, alg).unwrap();
        assert_eq!(again.public_jwk(), signer.public_jwk());
        assert_eq!(again.key_id(), signer.key_id());
        assert_eq!(signer.key_id().len(), 16);
        verify(&again, &jws).unwrap();
        let other = alg::ISSUER_SIGNING.into_iter().find(|a| *a != alg).unwrap();
        assert!(Signer::from_pkcs8_pem(pem_text, other).is_err(), "{alg:?}");
    }
}

#[test]
fn client_keys_sign_every_assertion_alg() {
    let (es, es_pem) = Signer::generate(Algorithm::ES256).unwrap();
    let (_, ed_pem) = Signer::generate(Algorithm::EdDSA).unwrap();
    let (_, rsa_pem) = Signer::generate(Algorithm::RS256).unwrap();
    let text = |p: &Pkcs8Pem| String::from_utf8(p.as_bytes().to_vec()).unwrap();
    let sec1 = match &es.pair {
        Pair::Ec(p) => pem("EC PRIVATE KEY", p.private_key().as_der().unwrap().as_ref()),
        _ => unreachable!(),
    };
    let pkcs1 = pkcs1_of(&text(&rsa_pem));
    let cases = [
        (text(&es_pem), None, Algorithm::ES256),
        (sec1, None, Algorithm::ES256),
        (text(&ed_pem), None, Algorithm::EdDSA),
        (text(&rsa_pem), None, Algorithm::RS256),
        (text(&rsa_pem), Some(Algorithm::PS256), Algorithm::PS256),
        (pkcs1.clone(), None, Algorithm::RS256),
        (pkcs1, Some(Algorithm::PS256), Algorithm::PS256),
    ];
    for (key_pem, asked, alg) in cases {
        let signer = Signer::from_pem(&key_pem, asked).unwrap();
        assert_eq!(signer.alg(), alg);
        let jws = sign(&signer);
        assert_eq!(verify(&signer, &jws).unwrap()["n"], 1, "{alg:?}");
        assert_eq!(jws.split('.').count(), 3);
    }
    for alg in alg::CLIENT_ASSERTION {
        let accepted = Signer::from_pem(&text(&es_pem), Some(alg));
        assert_eq!(accepted.is_ok(), alg == Algorithm::ES256, "{alg:?}");
    }
    let e = Signer::from_pem(&text(&ed_pem), Some(Algorithm::RS256)).unwrap_err();
    assert!(matches!(e, KeyError::AlgDoesNotFit(Algorithm::RS256)));
    assert_eq!(e.to_string(), "RS256 does not fit the key type");
}

#[test]
fn bad_keys_are_typed_errors_that_show_no_key_bytes() {
    let (es, es_pem) = Signer::generate(Algorithm::ES256).unwrap();
    let es_pem = String::from_utf8(es_pem.as_bytes().to_vec()).unwrap();
    // A PKCS#8 envelope around bytes that are no key.
    let garbled = es_pem.replacen("MIG", "MIH", 1);
    let sec1 = match &es.pair {
        Pair::Ec(p) => pem("EC PRIVATE KEY", p.private_key().as_der().unwrap().as_ref()),
        _ => unreachable!(),
    };
    let spki = match &es.pair {
        Pair::Ec(p) => pem("PUBLIC KEY", p.public_key().as_der().unwrap().as_ref()),
        _ => unreachable!(),
    };
    for (text, what) in [
        ("", "empty"),
        ("not a key", "text"),
        (spki.as_str(), "public key"),
        (garbled.as_str(), "garbled PKCS#8"),
    ] {
        let e = Signer::from_pem(text, None).unwrap_err();
        let shown = format!("{e} {e:?}");
        shows_no_key(&shown, &es_pem);
        shows_no_key(&shown, &sec1);
        assert!(
            matches!(e, KeyError::NotPem | KeyError::UnsupportedKey),
            "{what}: {e:?}"
        );
    }
    for (text, alg) in [
        (sec1.as_str(), Algorithm::ES256),
        (es_pem.as_str(), Algorithm::RS256),
        (es_pem.as_str(), Algorithm::EdDSA),
        (es_pem.as_str(), Algorithm::HS256),
        (garbled.as_str(), Algorithm::ES256),
    ] {
        let e = Signer::from_pkcs8_pem(text, alg).unwrap_err();
        let shown = format!("{e} {e:?}");
        shows_no_key(&shown, &es_pem);
        shows_no_key(&shown, &sec1);
    }
    assert!(matches!(
        Signer::from_pkcs8_pem(&sec1, Algorithm::ES256),
        Err(KeyError::NotPkcs8Pem)
    ));
    assert!(matches!(
        Signer::generate(Algorithm::HS256),
        Err(KeyError::NotGenerated(Algorithm::HS256))
    ));
}

#[test]
fn debug_prints_no_key_material() {
    for alg in alg::ISSUER_SIGNING {
        let (signer, key_pem) = Signer::generate(alg).unwrap();
        let key_text = String::from_utf8(key_pem.as_bytes().to_vec()).unwrap();
        let shown = format!("{signer:?} {key_pem:?}");
        assert!(shown.contains(alg::name(alg)), "{shown}");
        shows_no_key(&shown, &key_text);
        assert!(shown.len() < 64, "{shown}");
    }
}

#[test]
fn jtis_are_fresh_and_sized() {
    let a = new_jti::<16>().unwrap();
    let b = new_jti::<16>().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), 22);
    assert_eq!(new_jti::<18>().unwrap().len(), 24);
}
