//! JOSE: the one place JSON Web Signatures are parsed, verified and made, for
//! every caller (inbound access tokens, the issuer's own tokens, client
//! assertions both ways). A lower module: it imports nothing from `token`,
//! `inbound`, `issuer` or `proxy`; each of those adds only its policy.
//!
//! Verifying is [`compact`] (strict parsing) → [`keys`] (the key for the
//! `kid`, decoded once, bound to one algorithm) → [`verify`] (the signature,
//! with the key's algorithm) → [`claims`] (dates, `aud`, leeway), then the
//! caller's policy. Signing is [`sign`].

pub mod alg;
pub mod claims;
pub mod compact;
pub mod keys;
pub mod sign;
pub mod spki;
pub mod verify;

#[cfg(test)]
mod attacks;
#[cfg(test)]
pub(crate) mod test_keys;
