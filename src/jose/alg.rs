//! JWS algorithms (RFC 7518 §3): one type for every caller, its names, and the
//! sets each role allows.

pub use jsonwebtoken::Algorithm;

/// Every algorithm an inbound listener may be configured to accept
/// (`inbound.algorithms`); the HMAC ones only with `inbound.hmac_secret`.
pub const INBOUND: [Algorithm; 12] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
];

/// What an inbound listener accepts when `inbound.algorithms` is not set.
pub const INBOUND_DEFAULT: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// What the built-in issuer signs its tokens with (`issuer.signing_alg`).
pub const ISSUER_SIGNING: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

/// What the credential manager signs client assertions (`private_key_jwt`,
/// RFC 7523) with.
pub const CLIENT_ASSERTION: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// What the issuer accepts from the keys apps register for `private_key_jwt`.
pub const REGISTERED_CLIENT_KEYS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The JWS `alg` name (RFC 7518 §3.1).
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // jsonwebtoken's enum is non-exhaustive; a newer variant is not one we use.
        _ => "unsupported",
    }
}

/// The algorithm named `name`, exactly as RFC 7518 spells it (case matters).
pub fn parse(name: &str) -> Option<Algorithm> {
    name.parse().ok()
}

/// Whether `alg` is an HMAC algorithm (a shared secret, not a key pair).
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_case_matters() {
        for alg in INBOUND {
            assert_eq!(parse(name(alg)), Some(alg));
            assert_eq!(parse(&name(alg).to_lowercase()), None, "{alg:?}");
        }
        for bad in ["none", "", "ES256 ", "HS256\0", "ES512", "EdDSA\n"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
