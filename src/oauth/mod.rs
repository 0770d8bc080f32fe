//! OAuth 2.0 vocabulary shared by the client side (credential manager, inbound
//! introspection) and the built-in authorization server: grant and assertion
//! type names, the `Authorization` header schemes, and the authorization
//! server metadata client.

pub mod authorization;
pub mod ids;
pub mod metadata;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
