//! How apps authenticate to the issuer (token, introspection and revocation
//! endpoints): failed attempts of every method are throttled here, and
//! `private_key_jwt` (RFC 7523 §2.2 and §3) is checked here: an app
//! registered with public keys authenticates with a JWT it signed. The JWT
//! must name the app as `iss` and `sub`, this server (its issuer identifier or
//! token endpoint) in `aud`, carry `exp` (at most 10 minutes ahead) and a `jti`
//! never seen before: each `jti` is remembered until its `exp`, so a replayed
//! assertion is refused. A `jti` longer than [`MAX_JTI_LEN`] bytes is refused,
//! and what is remembered is a SHA-256 of client id and `jti`: 32 bytes per
//! entry whatever the client sends.
//!
//! Failures are throttled like secrets ([`super::limit`]): a valid assertion
//! always passes, and whether the client id exists, has keys, or the signature
//! is wrong, the answer is the same.

use super::limit::FailureLimiter;
use super::registry::{App, Registry};
use crate::jose::claims::{self, Window, WrongType};
use crate::jose::compact::{self, JwsError, Object};
use crate::oauth::JWT_BEARER;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Clock skew allowed for `exp`, `nbf`, `iat`.
const LEEWAY: u64 = 30;
/// Assertions valid longer than this are refused (RFC 7523 §3 asks for short ones).
const MAX_LIFETIME: u64 = 600;
/// `jti`s remembered at most; past this, expired ones are dropped first, then
/// new assertions are refused until room frees up.
const MAX_REMEMBERED: usize = 100_000;
/// The longest `jti` accepted, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// Failure throttling for every method, and what a client assertion must say.
pub struct ClientAuthenticator {
    pub limiter: FailureLimiter,
    /// What `aud` may name: the issuer identifier and the token endpoint.
    audiences: [String; 2],
    /// SHA-256(`client_id\0jti`) → `exp`.
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

/// What a request offers for `private_key_jwt`.
pub struct AssertionOffer<'r> {
    pub assertion_type: Option<&'r str>,
    pub assertion: Option<&'r str>,
    /// `client_id` in the body, if any.
    pub client_id: Option<&'r str>,
    /// Basic credentials or a `client_secret` came too.
    pub other_method: bool,
    pub peer: Option<IpAddr>,
}

/// Why a client did not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("client_assertion_type must be {JWT_BEARER}")]
    WrongAssertionType,
    #[error("use one client authentication method, not two")]
    TwoMethods,
    #[error("client_assertion is required")]
    NoAssertion,
    /// Refused before the assertion names a client: not counted.
    #[error("client assertion refused: {0}")]
    Unidentified(#[source] Unidentified),
    /// Counted against the client id and the address.
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl AuthError {
    /// Whether the request itself is malformed (`invalid_request`), rather
    /// than the client failing to authenticate (`invalid_client`).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            AuthError::WrongAssertionType | AuthError::TwoMethods | AuthError::NoAssertion
        )
    }

    /// When to retry, once failures are throttled.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Failed(f) => f.retry_after,
            _ => None,
        }
    }
}

/// An assertion that names no client we can count a failure against.
#[derive(Debug, thiserror::Error)]
pub enum Unidentified {
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error("no iss")]
    NoIssuer,
    #[error("client_id differs from the assertion's iss")]
    ClientIdDiffers,
}

/// A counted authentication failure: why (for an assertion), and when to
/// retry once past the budget.
#[derive(Debug)]
pub struct Failure {
    pub refused: Option<Refused>,
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.refused {
            None => f.write_str("client authentication failed")?,
            Some(why) => write!(f, "client assertion refused: {why}")?,
        }
        if self.retry_after.is_some() {
            f.write_str("; too many failures, retry later")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.refused
            .as_ref()
            .map(|r| r as &(dyn std::error::Error + 'static))
    }
}

/// Why the assertion of a client was refused. Until its signature verifies,
/// every reason is [`Refused::NotVerified`], whatever went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the assertion is not signed by a key registered for its client")]
    NotVerified,
    #[error("sub must equal iss (the client id)")]
    WrongSubject,
    #[error("aud must name this server ({0} or {1})")]
    WrongAudience(String, String),
    #[error("exp is required")]
    NoExpiry,
    #[error("the assertion has expired")]
    Expired,
    #[error("exp is more than {MAX_LIFETIME} s ahead")]
    TooLong,
    #[error("the assertion is not valid yet")]
    NotYetValid,
    #[error(transparent)]
    WrongType(#[from] WrongType),
    #[error("jti is required")]
    NoJti,
    #[error("jti is longer than {MAX_JTI_LEN} bytes")]
    JtiTooLong,
    #[error("this assertion's jti was already used")]
    Replayed,
    #[error("too many assertions in flight; retry shortly")]
    TooManyInFlight,
}

impl ClientAuthenticator {
    /// For the issuer at `url` (ends with `/`).
    pub fn new(url: &str) -> Self {
        ClientAuthenticator {
            limiter: FailureLimiter::default(),
            audiences: [url.to_owned(), format!("{url}oauth/token")],
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A failed authentication naming `client_id` from `peer`: counted, with
    /// when to retry once past the budget. The same for every client id,
    /// known or not.
    pub fn failure(&self, client_id: &str, peer: Option<IpAddr>) -> Failure {
        Failure {
            refused: None,
            retry_after: self.limiter.failed(client_id, peer),
        }
    }

    /// The app `offer`'s client assertion authenticates, or why not.
    pub fn assertion<'r>(
        &self,
        reg: &'r Registry,
        offer: &AssertionOffer<'_>,
    ) -> Result<&'r App, AuthError> {
        if offer.assertion_type != Some(JWT_BEARER) {
            return Err(AuthError::WrongAssertionType);
        }
        if offer.other_method {
            return Err(AuthError::TwoMethods);
        }
        let jwt = offer.assertion.ok_or(AuthError::NoAssertion)?;
        let jws = compact::parse(jwt).map_err(|e| AuthError::Unidentified(e.into()))?;
        let client_id = match jws.claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(AuthError::Unidentified(Unidentified::NoIssuer)),
        };
        if offer.client_id.is_some_and(|id| id != client_id) {
            return Err(AuthError::Unidentified(Unidentified::ClientIdDiffers));
        }
        let app = reg.apps.get(client_id);
        // Until the signature verifies, every failure says the same.
        let verified = app.and_then(|app| {
            let keys = app.jwks.as_ref()?.keys();
            let key = keys.find(jws.kid())?;
            crate::jose::verify::check(&jws, key).ok().map(|()| app)
        });
        let checked = match verified {
            Some(app) => self.claims(&jws.claims, client_id).map(|()| app),
            None => Err(Refused::NotVerified),
        };
        checked.map_err(|why| {
            let mut failure = self.failure(client_id, offer.peer);
            failure.refused = Some(why);
            AuthError::Failed(failure)
        })
    }

    /// The claims of an assertion whose signature verified.
    fn claims(&self, c: &Object, client_id: &str) -> Result<(), Refused> {
        if claims::string(c, "sub").ok().flatten() != Some(client_id) {
            return Err(Refused::WrongSubject);
        }
        let ours = |a: &str| self.audiences.iter().any(|x| x == a);
        if !claims::audience(c, ours).unwrap_or(false) {
            let [issuer, endpoint] = &self.audiences;
            return Err(Refused::WrongAudience(issuer.clone(), endpoint.clone()));
        }
        let window = Window::now(LEEWAY);
        let exp = claims::date(c, "exp")
            .ok()
            .flatten()
            .ok_or(Refused::NoExpiry)?;
        if window.expired(exp) {
            return Err(Refused::Expired);
        }
        if exp > window.now.saturating_add(MAX_LIFETIME) {
            return Err(Refused::TooLong);
        }
        for name in ["nbf", "iat"] {
            if claims::date(c, name)?.is_some_and(|t| window.ahead(t)) {
                return Err(Refused::NotYetValid);
            }
        }
        let jti = claims::string(c, "jti")
            .ok()
            .flatten()
            .filter(|j| !j.is_empty())
            .ok_or(Refused::NoJti)?;
        if jti.len() > MAX_JTI_LEN {
            return Err(Refused::JtiTooLong);
        }
        self.remember(client_id, jti, exp, window.now)
    }

    /// Remember `jti` until `exp`: refused if it was seen before.
    fn remember(&self, client_id: &str, jti: &str, exp: u64, now: u64) -> Result<(), Refused> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(client_id.as_bytes());
        ctx.update(b"\0");
        ctx.update(jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen
            .get(&key)
            .is_some_and(|e| e.saturating_add(LEEWAY) > now)
        {
            return Err(Refused::Replayed);
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, e| e.saturating_add(LEEWAY) > now);
            if seen.len() >= MAX_REMEMBERED {
                return Err(Refused::TooManyInFlight);
            }
        }
        seen.insert(key, exp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::registry::RegisteredKeys;
    use crate::jose::test_keys::TestKey;
    use serde_json::json;

    const URL: &str = "https://issuer.test/";

    fn registry(key: &TestKey) -> Registry {
        let app: App = serde_json::from_value(json!({
            "client_id": "svc", "name": "svc", "secrets": [], "grants": {},
        }))
        .unwrap();
        let app = App {
            jwks: Some(RegisteredKeys::from_jwks(json!({"keys": [key.jwk()]})).unwrap()),
            ..app
        };
        let mut apps = crate::issuer::registry::Apps::default();
        apps.insert("svc".into(), app);
        Registry {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[0u8; 32]),
            apis: Vec::new(),
            apps,
            revoked: Default::default(),
            not_before: Default::default(),
        }
    }

    fn claims(jti: &str) -> Value {
        let now = crate::clock::unix_now();
        json!({"iss": "svc", "sub": "svc", "aud": URL, "jti": jti, "iat": now, "exp": now + 60})
    }

    fn offer(assertion: &str) -> AssertionOffer<'_> {
        AssertionOffer {
            assertion_type: Some(JWT_BEARER),
            assertion: Some(assertion),
            client_id: None,
            other_method: false,
            peer: None,
        }
    }

    fn said(auth: &ClientAuthenticator, reg: &Registry, token: &str) -> String {
        match auth.assertion(reg, &offer(token)) {
            Ok(app) => format!("ok {}", app.client_id),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_assertion_is_checked_against_the_keys_decoded_at_registration() {
        let key = TestKey::es256("k1");
        let reg = registry(&key);
        let auth = ClientAuthenticator::new(URL);
        let h = json!({"alg": "ES256", "kid": "k1"});
        let sign = |c: Value| key.sign(&h, &c);
        let with = |k: &str, v: Value| {
            let mut c = claims(k);
            c[k] = v;
            sign(c)
        };
        assert_eq!(said(&auth, &reg, &sign(claims("a"))), "ok svc");
        // The one registered key is used whatever kid the assertion names.
        let other_kid = key.sign(&json!({"alg": "ES256", "kid": "zz"}), &claims("b"));
        assert_eq!(said(&auth, &reg, &other_kid), "ok svc");
        assert_eq!(
            said(&auth, &reg, &sign(claims("a"))),
            "client assertion refused: this assertion's jti was already used"
        );
        let not_verified = "client assertion refused: the assertion is not signed by a key registered for its client";
        let now = crate::clock::unix_now();
        for (what, token, want) in [
            (
                "another key",
                TestKey::es256("k1").sign(&h, &claims("c")),
                not_verified.to_owned(),
            ),
            (
                "an unknown client",
                sign(
                    json!({"iss": "nobody", "sub": "nobody", "aud": URL, "jti": "d", "exp": now + 60}),
                ),
                not_verified.to_owned(),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    crate::jose::test_keys::seg(&json!({"alg": "none"})),
                    crate::jose::test_keys::seg(&claims("e"))
                ),
                "client assertion refused: algorithm not allowed".to_owned(),
            ),
            (
                "no iss",
                sign(json!({"sub": "svc"})),
                "client assertion refused: no iss".to_owned(),
            ),
            (
                "wrong sub",
                with("sub", "other".into()),
                "client assertion refused: sub must equal iss (the client id)".to_owned(),
            ),
            (
                "wrong aud",
                with("aud", "https://elsewhere/".into()),
                format!(
                    "client assertion refused: aud must name this server ({URL} or {URL}oauth/token)"
                ),
            ),
            (
                "no exp",
                with("exp", Value::Null),
                "client assertion refused: exp is required".to_owned(),
            ),
            (
                "expired",
                with("exp", json!(now - 31)),
                "client assertion refused: the assertion has expired".to_owned(),
            ),
            (
                "too long",
                with("exp", json!(now + 3600)),
                "client assertion refused: exp is more than 600 s ahead".to_owned(),
            ),
            (
                "nbf ahead",
                with("nbf", json!(now + 600)),
                "client assertion refused: the assertion is not valid yet".to_owned(),
            ),
            (
                "nbf a string",
                with("nbf", "0".into()),
                "client assertion refused: the `nbf` claim has the wrong type".to_owned(),
            ),
            (
                "no jti",
                with("jti", "".into()),
                "client assertion refused: jti is required".to_owned(),
            ),
            (
                "long jti",
                with("jti", "j".repeat(MAX_JTI_LEN + 1).into()),
                "client assertion refused: jti is longer than 256 bytes".to_owned(),
            ),
        ] {
            // A fresh authenticator each: ten failures in a row are throttled.
            let fresh = ClientAuthenticator::new(URL);
            assert_eq!(said(&fresh, &reg, &token), want, "{what}");
        }
        let to_endpoint = with("aud", json!([format!("{URL}oauth/token")]));
        assert_eq!(said(&auth, &reg, &to_endpoint), "ok svc");
    }

    #[test]
    fn malformed_requests_are_not_client_failures() {
        let reg = registry(&TestKey::eddsa("k"));
        let auth = ClientAuthenticator::new(URL);
        let jwt = "a.b.c";
        let cases = [
            (
                AssertionOffer {
                    assertion_type: Some("urn:other"),
                    ..offer(jwt)
                },
                true,
            ),
            (
                AssertionOffer {
                    other_method: true,
                    ..offer(jwt)
                },
                true,
            ),
            (
                AssertionOffer {
                    assertion: None,
                    ..offer(jwt)
                },
                true,
            ),
            (
                AssertionOffer {
                    client_id: Some("x"),
                    ..offer(jwt)
                },
                false,
            ),
            (offer(jwt), false),
        ];
        for (o, bad_request) in cases {
            let e = auth.assertion(&reg, &o).err().unwrap();
            assert_eq!(e.is_bad_request(), bad_request, "{e}");
            assert!(e.retry_after().is_none());
        }
        assert_eq!(
            auth.failure("x", None).to_string(),
            "client authentication failed"
        );
    }
}
