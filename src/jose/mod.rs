//! JOSE: the one place JSON Web Signatures are parsed, verified and made, for
//! every caller (inbound access tokens, the issuer's own tokens, client
//! assertions both ways). A lower module: it imports nothing from `token`,
//! `inbound`, `issuer` or `proxy`; each of those adds only its policy.

pub mod alg;
