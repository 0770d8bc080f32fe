//! Test signing keys and hand-made JWTs: any header, any claims, so the
//! verifier's refusals can be tested one by one.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pair: Pair,
    /// The private key, PKCS#8 DER.
    pkcs8: Vec<u8>,
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        TestKey {
            kid: kid.into(),
            alg: "ES256",
            pair: Pair::Ec(pair),
            pkcs8: doc.as_ref().to_vec(),
        }
    }

    pub fn eddsa(kid: &str) -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        TestKey {
            kid: kid.into(),
            alg: "EdDSA",
            pair: Pair::Ed(Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()),
            pkcs8: doc.as_ref().to_vec(),
        }
    }

    /// RSA-2048 for `alg` RS256 or PS256.
    pub fn rsa(kid: &str, alg: &'static str) -> Self {
        use aws_lc_rs::encoding::AsDer as _;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap().as_ref().to_vec();
        TestKey {
            kid: kid.into(),
            alg,
            pair: Pair::Rsa(pair),
            pkcs8,
        }
    }

    /// The private key as a PKCS#8 PEM file's text.
    pub fn private_pem(&self) -> String {
        use base64::engine::general_purpose::STANDARD;
        let b64 = STANDARD.encode(&self.pkcs8);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    /// The public key as a PEM file's text (SubjectPublicKeyInfo).
    pub fn public_pem(&self) -> String {
        use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
        use base64::engine::general_purpose::STANDARD;
        let der: PublicKeyX509Der<'static> = match &self.pair {
            Pair::Ec(p) => p.public_key().as_der().unwrap(),
            Pair::Ed(p) => p.public_key().as_der().unwrap(),
            Pair::Rsa(p) => p.public_key().as_der().unwrap(),
        };
        let b64 = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Ec(p) => {
                let pt = p.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..65])})
            }
            Pair::Ed(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(p.public_key().as_ref())})
            }
            Pair::Rsa(p) => {
                let k = p.public_key();
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(k.modulus().big_endian_without_leading_zero()), "e": URL_SAFE_NO_PAD.encode(k.exponent().big_endian_without_leading_zero())})
            }
        };
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = self.alg.into();
        jwk["use"] = "sig".into();
        jwk
    }

    /// The raw signature of `message` with this key.
    pub fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(p) => p.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Ed(p) => p.sign(message).as_ref().to_vec(),
            Pair::Rsa(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                let alg: &dyn aws_lc_rs::signature::RsaEncoding = if self.alg == "PS256" {
                    &aws_lc_rs::signature::RSA_PSS_SHA256
                } else {
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256
                };
                p.sign(alg, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }

    /// A compact JWS of exactly `header` and `claims`.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let sig = self.signature(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The usual header: this key's `alg` and `kid`, `typ: at+jwt`.
    pub fn header(&self) -> Value {
        json!({"alg": self.alg, "kid": self.kid, "typ": "at+jwt"})
    }
}

pub fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Good claims for `issuer` and `audience`, valid for an hour.
pub fn claims(issuer: &str, audience: &str, scope: &str) -> Value {
    let now = now();
    json!({"iss": issuer, "sub": "billing@client", "aud": audience, "client_id": "billing", "scope": scope, "iat": now, "exp": now + 3600, "jti": format!("j{now}")})
}

pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}
