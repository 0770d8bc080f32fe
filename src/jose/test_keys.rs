//! Test keys and token forging for the unit tests of `jose` and its policies
//! (no sockets): fresh key pairs, their public JWKs, and compact JWS signed
//! with whatever header and claims a test wants.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use super::alg::{self, Algorithm};
use super::keys::KeySet;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A private key and the algorithm it signs with.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pair: Pair,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON value as a JWS segment.
pub fn seg(v: &Value) -> String {
    b64(v.to_string())
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        TestKey::new(kid, Algorithm::ES256, Pair::Ec(pair))
    }

    pub fn eddsa(kid: &str) -> Self {
        TestKey::new(
            kid,
            Algorithm::EdDSA,
            Pair::Ed(Ed25519KeyPair::generate().unwrap()),
        )
    }

    /// An RSA-2048 key for `alg` (RS256/384/512, PS256/384/512).
    pub fn rsa(kid: &str, alg: Algorithm) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        TestKey::new(kid, alg, Pair::Rsa(pair))
    }

    fn new(kid: &str, alg: Algorithm, pair: Pair) -> Self {
        TestKey {
            kid: kid.to_owned(),
            alg,
            pair,
        }
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Ec(p) => {
                let point = p.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Pair::Ed(p) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(p.public_key())}),
            Pair::Rsa(p) => {
                let public = p.public_key();
                json!({"kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
        };
        jwk["kid"] = self.kid.as_str().into();
        jwk["alg"] = alg::name(self.alg).into();
        jwk["use"] = "sig".into();
        jwk
    }

    /// `{"alg", "kid", "typ": "at+jwt"}`.
    pub fn header(&self) -> Value {
        json!({"alg": alg::name(self.alg), "kid": self.kid, "typ": "at+jwt"})
    }

    /// The signature over `message`, as the key's algorithm makes it.
    pub fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(p) => p.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Ed(p) => p.sign(message).as_ref().to_vec(),
            Pair::Rsa(p) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }

    /// A compact JWS of `header` and `claims`, signed by this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", seg(header), seg(claims));
        let sig = self.signature(message.as_bytes());
        format!("{message}.{}", b64(sig))
    }
}

/// The key set of `keys`' public JWKs, as a JWKS would give it.
pub fn key_set(keys: &[&TestKey]) -> KeySet {
    let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    let (set, skipped) = KeySet::from_jwks(&doc, &alg::INBOUND).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    set
}

/// An HS256 "signature" of `header.claims` with `secret`.
pub fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!("{}.{}", seg(header), seg(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", b64(tag))
}

/// A valid ES256 signature over `message`, re-encoded as ASN.1 DER instead of
/// the `r ‖ s` JWS uses.
pub fn der_signature(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let mut v = b.to_vec();
        while v.len() > 1 && v[0] == 0 && v[1] < 0x80 {
            v.remove(0);
        }
        if v[0] >= 0x80 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = (int(&raw[..32]), int(&raw[32..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    der
}
