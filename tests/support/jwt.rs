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

/// The claims of a JWT, read without verifying it (a test reads who it is for).
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A compact JWS of `header` and `claims` MACed with `secret` (HS256, HS384).
pub fn hmac(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let algorithm = match header["alg"].as_str() {
        Some("HS384") => aws_lc_rs::hmac::HMAC_SHA384,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(algorithm, secret),
        message.as_bytes(),
    );
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// An ECDSA `r||s` signature (two 32-byte integers) re-encoded as ASN.1 DER.
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

/// Tokens forged from one valid token of `key` (its usual header, `claims`):
/// each helper changes one thing a verifier must check.
pub struct Forge<'a> {
    pub key: &'a TestKey,
    pub claims: Value,
}

impl<'a> Forge<'a> {
    pub fn new(key: &'a TestKey, claims: Value) -> Self {
        Forge { key, claims }
    }

    /// The valid token itself.
    pub fn valid(&self) -> String {
        self.key.sign(&self.key.header(), &self.claims)
    }

    /// Its three segments: header, payload, signature.
    pub fn segments(&self) -> [String; 3] {
        let valid = self.valid();
        let mut it = valid.split('.').map(str::to_owned);
        [(); 3].map(|()| it.next().unwrap())
    }

    /// Signed properly, with claim `name` set to `value`.
    pub fn with_claim(&self, name: &str, value: Value) -> String {
        let mut c = self.claims.clone();
        c[name] = value;
        self.key.sign(&self.key.header(), &c)
    }

    /// Signed properly, without claim `name`.
    pub fn without_claim(&self, name: &str) -> String {
        let mut c = self.claims.clone();
        c.as_object_mut().unwrap().remove(name);
        self.key.sign(&self.key.header(), &c)
    }

    /// Signed properly, with header parameter `name` set to `value`.
    pub fn with_header(&self, name: &str, value: Value) -> String {
        let mut h = self.key.header();
        h[name] = value;
        self.key.sign(&h, &self.claims)
    }

    /// `header` and the claims with an empty signature (`alg: none`).
    pub fn unsigned(&self, header: Value) -> String {
        format!("{}.{}.", b64(&header), b64(&self.claims))
    }

    /// The claims under `header`, signed by `other`.
    pub fn signed_by(&self, other: &TestKey, header: Value) -> String {
        other.sign(&header, &self.claims)
    }

    /// HS256 "signed" with the key's public JWK as the MAC secret (the
    /// classic algorithm confusion).
    pub fn hmac_with_public_key(&self) -> String {
        let mut h = self.key.header();
        h["alg"] = "HS256".into();
        hmac(&h, &self.claims, self.key.jwk().to_string().as_bytes())
    }

    /// The valid header and payload with `signature` instead of the real one.
    pub fn with_signature(&self, signature: &[u8]) -> String {
        let message = format!("{}.{}", b64(&self.key.header()), b64(&self.claims));
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The real signature re-encoded as ASN.1 DER (ECDSA keys).
    pub fn der_signed(&self) -> String {
        let message = format!("{}.{}", b64(&self.key.header()), b64(&self.claims));
        self.with_signature(&der_signature(&self.key.signature(message.as_bytes())))
    }

    /// The valid token less its last `n` characters.
    pub fn truncated(&self, n: usize) -> String {
        let valid = self.valid();
        valid[..valid.len() - n].to_owned()
    }

    /// The valid token with its last character changed (a non-canonical
    /// base64url ending, or another signature).
    pub fn last_char_changed(&self) -> String {
        let mut t = self.valid();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    }

    /// The signature in the standard base64 alphabet instead of base64url
    /// (asserting it has a character that differs between the two).
    pub fn standard_base64_signature(&self) -> String {
        let [h, p, s] = self.segments();
        let std_sig = s.replace('-', "+").replace('_', "/");
        assert_ne!(
            std_sig, s,
            "the signature has a character that differs between alphabets"
        );
        format!("{h}.{p}.{std_sig}")
    }

    /// The segments put together by `shape` (e.g. `|[h, p, s]| format!("{h}.{p}")`).
    pub fn reshaped(&self, shape: impl Fn([String; 3]) -> String) -> String {
        shape(self.segments())
    }
}
