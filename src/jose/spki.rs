//! PEM public keys (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo,
//! RFC 5280 §4.1.2.7), as apps register them, written as a JWKS of that one
//! key: RSA, EC P-256 or Ed25519. [`super::keys`] decodes the result like any
//! JWKS.

use super::keys::VerifyKeyError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A PEM public key (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo) as a
/// JWKS of that one key: RSA, EC P-256 or Ed25519. The document, not a
/// [`super::keys::KeySet`], because that is what an app's registration stores.
pub fn jwks_from_pem(pem: &str) -> Result<Value, VerifyKeyError> {
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    use rustls_pki_types::pem::PemObject as _;
    use simple_asn1::{ASN1Block, oid};
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| VerifyKeyError::NotPem)?;
    let blocks = simple_asn1::from_der(spki.as_ref()).map_err(|_| VerifyKeyError::BadDer)?;
    let (algorithm, key) = match blocks.as_slice() {
        [ASN1Block::Sequence(_, parts)] => match parts.as_slice() {
            [ASN1Block::Sequence(_, alg), ASN1Block::BitString(_, _, key)] => (alg, key),
            _ => return Err(VerifyKeyError::BadSpki),
        },
        _ => return Err(VerifyKeyError::BadSpki),
    };
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let jwk = match algorithm.as_slice() {
        [ASN1Block::ObjectIdentifier(_, o), ..] if *o == oid!(1, 2, 840, 113549, 1, 1, 1) => {
            let inner = simple_asn1::from_der(key).map_err(|_| VerifyKeyError::BadRsaPublicKey)?;
            let [ASN1Block::Sequence(_, ne)] = inner.as_slice() else {
                return Err(VerifyKeyError::BadRsaPublicKey);
            };
            let [ASN1Block::Integer(_, n), ASN1Block::Integer(_, e)] = ne.as_slice() else {
                return Err(VerifyKeyError::BadRsaPublicKey);
            };
            serde_json::json!({"kty": "RSA", "n": b64(&n.to_bytes_be().1), "e": b64(&e.to_bytes_be().1)})
        }
        [
            ASN1Block::ObjectIdentifier(_, o),
            ASN1Block::ObjectIdentifier(_, curve),
        ] if *o == oid!(1, 2, 840, 10045, 2, 1) => {
            if *curve != oid!(1, 2, 840, 10045, 3, 1, 7) || key.len() != 65 || key[0] != 4 {
                return Err(VerifyKeyError::NotP256Uncompressed);
            }
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&key[1..33]), "y": b64(&key[33..])})
        }
        [ASN1Block::ObjectIdentifier(_, o)] if *o == oid!(1, 3, 101, 112) => {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key)})
        }
        _ => return Err(VerifyKeyError::UnsupportedPublicKey),
    };
    Ok(serde_json::json!({"keys": [jwk]}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::alg;
    use crate::jose::keys::KeySet;

    #[test]
    fn pem_public_keys_become_a_jwks_of_one_key() {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
        let pair = Ed25519KeyPair::generate().unwrap();
        let public = pair.public_key().as_ref().to_vec();
        // SubjectPublicKeyInfo for Ed25519: the fixed prefix, then the key.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&public);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let doc = jwks_from_pem(&pem).unwrap();
        assert_eq!(doc["keys"][0]["x"], URL_SAFE_NO_PAD.encode(&public));
        let (set, skipped) = KeySet::from_jwks(&doc, &alg::CLIENT_ASSERTION).unwrap();
        assert!(skipped.is_empty() && set.len() == 1);
        for bad in [
            "",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(jwks_from_pem(bad).is_err(), "{bad:?}");
        }
    }
}
