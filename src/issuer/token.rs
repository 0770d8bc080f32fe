//! `POST /oauth/token`: the client credentials grant as the issuer serves it.
//! Form-encoded (RFC 6749) or JSON (the seed's body); `client_secret_basic`,
//! `client_secret_post` or the JSON body; `audience` or `resource` (RFC 8707);
//! errors as RFC 6749 §5.2 JSON.

use super::client_auth::{AssertionOffer, AuthError, ClientAuthenticator, Failure};
use super::keys::SigningKey;
use super::registry::Registry;
use crate::jose::sign::{self, Header, SignError};
use http::{HeaderMap, StatusCode, header};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// A token endpoint error: the §5.2 code, a description, and whether the client
/// authenticated with Basic (then a 401 carries `WWW-Authenticate: Basic`).
#[derive(Debug)]
pub struct TokenError {
    pub code: &'static str,
    pub description: String,
    pub basic: bool,
    /// Set when failed authentications are throttled: answer 429 with `Retry-After`.
    pub retry_after: Option<std::time::Duration>,
}

impl TokenError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        TokenError {
            code,
            description: description.into(),
            basic: false,
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        if self.retry_after.is_some() {
            return StatusCode::TOO_MANY_REQUESTS;
        }
        match self.code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<AuthError> for TokenError {
    fn from(e: AuthError) -> Self {
        let code = if e.is_bad_request() {
            "invalid_request"
        } else {
            "invalid_client"
        };
        let mut t = TokenError::new(code, e.to_string());
        t.retry_after = e.retry_after();
        t
    }
}

impl From<Failure> for TokenError {
    fn from(e: Failure) -> Self {
        AuthError::from(e).into()
    }
}

/// The parameters of a token request, however they were sent.
#[derive(Default)]
pub struct TokenRequest {
    params: HashMap<String, String>,
    /// `(client_id, secret)` from a Basic header.
    basic: Option<(String, String)>,
    /// The address the request came from (failures are throttled per address).
    pub peer: Option<IpAddr>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Parameter names only: values hold secrets and assertions.
        let mut names: Vec<&str> = self.params.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("TokenRequest")
            .field("params", &names)
            .field("basic", &self.basic.is_some())
            .field("peer", &self.peer)
            .finish()
    }
}

/// Whether a `Content-Type` value is JSON: `application/json`, in any case,
/// with or without parameters (RFC 9110 §8.3.1, RFC 6838 §4.2).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence
        .trim_matches([' ', '\t'])
        .eq_ignore_ascii_case("application/json")
}

impl TokenRequest {
    /// Parse the body (`application/json` or form) and the `Authorization` header.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, TokenError> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        let params = if json {
            json_params(body)?
        } else {
            form_params(body)?
        };
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let (first, second) = (auth.next(), auth.next());
        if second.is_some() {
            return Err(TokenError::new(
                "invalid_request",
                "more than one Authorization header",
            ));
        }
        let basic = match first {
            None => None,
            Some(v) => Some(
                crate::oauth::authorization::parse_basic(v.as_bytes()).ok_or_else(|| {
                    let mut e = TokenError::new("invalid_client", "malformed Basic credentials");
                    e.basic = true;
                    e
                })?,
            ),
        };
        Ok(TokenRequest {
            params,
            basic,
            peer: None,
        })
    }

    /// Whether Basic credentials came in `Authorization`.
    pub fn has_basic(&self) -> bool {
        self.basic.is_some()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn json_params(body: &[u8]) -> Result<HashMap<String, String>, TokenError> {
    let value = crate::json::parse(body).map_err(|e| {
        let why = if e.to_string().contains("duplicate key") {
            "the JSON body repeats a key"
        } else {
            "the body is not valid JSON"
        };
        TokenError::new("invalid_request", why)
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| TokenError::new("invalid_request", "the body must be a JSON object"))?;
    obj.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(TokenError::new(
                "invalid_request",
                format!("`{k}` must be a string"),
            )),
        })
        .collect()
}

fn form_params(body: &[u8]) -> Result<HashMap<String, String>, TokenError> {
    let mut params = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if params.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(TokenError::new(
                "invalid_request",
                format!("parameter `{k}` is repeated"),
            ));
        }
    }
    Ok(params)
}

/// A granted token, ready to sign.
pub struct Grant {
    pub client_id: String,
    pub audience: String,
    pub scopes: Vec<String>,
}

/// The app a request authenticates as (Basic, or `client_id` + `client_secret`
/// in the body, or a client assertion). Correct credentials always pass;
/// failures are counted and, past the budget, answered 429 (see [`super::limit`]).
pub fn authenticate<'r>(
    reg: &'r Registry,
    auth: &ClientAuthenticator,
    req: &TokenRequest,
) -> Result<&'r super::registry::App, TokenError> {
    if req.get("client_assertion").is_some() || req.get("client_assertion_type").is_some() {
        let offer = AssertionOffer {
            assertion_type: req.get("client_assertion_type"),
            assertion: req.get("client_assertion"),
            client_id: req.get("client_id"),
            other_method: req.has_basic() || req.get("client_secret").is_some(),
            peer: req.peer,
        };
        return Ok(auth.assertion(reg, &offer)?);
    }
    let body_secret = req.get("client_secret");
    let (client_id, secret, basic) = match (&req.basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(TokenError::new(
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some((id, s)), None) => (id.as_str(), s.as_str(), true),
        (None, Some(s)) => (req.get("client_id").unwrap_or_default(), s, false),
        (None, None) => {
            return Err(TokenError::new(
                "invalid_client",
                "client authentication is required",
            ));
        }
    };
    if let (true, Some(body_id)) = (basic, req.get("client_id"))
        && body_id != client_id
    {
        return Err(TokenError::new(
            "invalid_request",
            "client_id in the body differs from the Basic credentials",
        ));
    }
    match reg.authenticate(client_id, secret) {
        Some(app) => Ok(app),
        None => {
            let mut e = TokenError::from(auth.failure(client_id, req.peer));
            e.basic = basic;
            Err(e)
        }
    }
}

/// Check a token request against the registry: authentication, grant type,
/// audience, scopes.
pub fn authorize(
    reg: &Registry,
    auth: &ClientAuthenticator,
    req: &TokenRequest,
) -> Result<Grant, TokenError> {
    let app = authenticate(reg, auth, req)?;
    match req.get("grant_type") {
        None => return Err(TokenError::new("invalid_request", "grant_type is required")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(TokenError::new(
                "unsupported_grant_type",
                format!(
                    "grant_type `{}` is not supported; use client_credentials",
                    truncate(other)
                ),
            ));
        }
    }
    if app.blocked {
        return Err(TokenError::new(
            "unauthorized_client",
            format!("app {} is blocked", app.client_id),
        ));
    }
    let audience = match (req.get("audience"), req.get("resource")) {
        (Some(a), Some(r)) if a != r => {
            return Err(TokenError::new(
                "invalid_request",
                "audience and resource differ",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(TokenError::new(
                "invalid_request",
                "audience (or resource) is required",
            ));
        }
    };
    if reg.api(audience).is_none() {
        return Err(TokenError::new(
            "invalid_target",
            format!("no API with identifier `{}`", truncate(audience)),
        ));
    }
    let Some(granted) = app.grants.get(audience) else {
        return Err(TokenError::new(
            "unauthorized_client",
            format!(
                "app {} has no grant for `{}`",
                app.client_id,
                truncate(audience)
            ),
        ));
    };
    let scopes = match req.get("scope") {
        None => granted.clone(),
        Some(s) => {
            let wanted: Vec<String> = s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(missing) = wanted.iter().find(|w| !granted.contains(w)) {
                return Err(TokenError::new(
                    "invalid_scope",
                    format!("scope `{}` is not granted", truncate(missing)),
                ));
            }
            wanted
        }
    };
    Ok(Grant {
        client_id: app.client_id.clone(),
        audience: audience.to_owned(),
        scopes,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

/// The claims of an access token (RFC 9068 §2.2), in the order serde_json has
/// always written them (by name).
#[derive(serde::Serialize)]
struct AccessClaims<'a> {
    aud: &'a str,
    cid: &'a str,
    client_id: &'a str,
    exp: u64,
    gty: &'static str,
    iat: u64,
    iss: &'a str,
    jti: String,
    scope: String,
    scp: &'a [String],
    sub: String,
}

/// Sign an RFC 9068 access token for `grant`.
/// `now` (Unix seconds) is `iat`: read before the registry snapshot that
/// allowed the grant, so a block or deletion after that snapshot has a later
/// (or equal) time and revokes this token too.
pub fn mint(
    key: &SigningKey,
    issuer: &str,
    ttl: Duration,
    grant: &Grant,
    now: u64,
) -> Result<String, SignError> {
    let claims = AccessClaims {
        aud: &grant.audience,
        cid: &grant.client_id,
        client_id: &grant.client_id,
        exp: now + ttl.as_secs(),
        gty: "client_credentials",
        iat: now,
        iss: issuer,
        jti: sign::new_jti::<16>()?,
        scope: grant.scopes.join(" "),
        scp: &grant.scopes,
        sub: format!("{}@client", grant.client_id),
    };
    let header = Header {
        typ: "at+jwt",
        kid: Some(&key.kid),
    };
    key.signer.sign_compact(header, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_str(content_type).unwrap(),
        );
        h
    }

    /// Parameter names: distinct, and never empty.
    fn names() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[a-z_]{1,12}", 1..8).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn the_parsers_never_panic(body in prop::collection::vec(any::<u8>(), 0..512),
                                   json in any::<bool>()) {
            let h = headers(if json { "application/json" } else { "application/x-www-form-urlencoded" });
            let _ = TokenRequest::parse(&h, &body);
        }

        #[test]
        fn forms_round_trip(names in names(), values in prop::collection::vec(".{1,24}", 8)) {
            let pairs: Vec<(String, String)> = names.iter().cloned().zip(values).collect();
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let r = TokenRequest::parse(&headers("application/x-www-form-urlencoded"), body.as_bytes()).unwrap();
            for (k, v) in &pairs {
                prop_assert_eq!(r.get(k), Some(v.as_str()));
            }
            prop_assert_eq!(r.params.len(), pairs.len());
        }

        #[test]
        fn json_round_trips(names in names(), values in prop::collection::vec(".{1,24}", 8),
                            media in prop_oneof![
                                Just("application/json"), Just("APPLICATION/JSON"),
                                Just("Application/Json; charset=utf-8"), Just("application/json ;charset=UTF-8"),
                            ]) {
            let pairs: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .cloned()
                .zip(values.into_iter().map(serde_json::Value::String))
                .collect();
            let body = serde_json::Value::Object(pairs.clone()).to_string();
            let r = TokenRequest::parse(&headers(media), body.as_bytes()).unwrap();
            for (k, v) in &pairs {
                prop_assert_eq!(r.get(k), v.as_str());
            }
        }

        #[test]
        fn a_repeated_form_parameter_is_always_refused(names in names(), dup in 0usize..8,
                                                        a in ".{0,16}", b in ".{0,16}") {
            let dup = &names[dup % names.len()];
            let mut pairs: Vec<(String, String)> = names.iter().map(|n| (n.clone(), "v".into())).collect();
            pairs.push((dup.clone(), a));
            pairs.push((dup.clone(), b));
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let e = TokenRequest::parse(&headers("application/x-www-form-urlencoded"), body.as_bytes()).unwrap_err();
            prop_assert_eq!(e.code, "invalid_request");
        }

        #[test]
        fn a_repeated_json_key_is_always_refused(names in names(), dup in 0usize..8,
                                                  first in ".{0,16}", second in ".{0,16}",
                                                  escape in any::<bool>()) {
            let dup = &names[dup % names.len()];
            let mut members: Vec<String> = names
                .iter()
                .map(|n| format!("{}:\"v\"", serde_json::Value::String(n.clone())))
                .collect();
            // The same key again, possibly spelled with escapes.
            let spelled = if escape {
                format!("\"{}\"", dup.chars().map(|c| format!("\\u{:04x}", c as u32)).collect::<String>())
            } else {
                serde_json::Value::String(dup.clone()).to_string()
            };
            members.insert(0, format!("{spelled}:{}", serde_json::Value::String(first)));
            members.push(format!("{spelled}:{}", serde_json::Value::String(second)));
            let body = format!("{{{}}}", members.join(","));
            let e = TokenRequest::parse(&headers("application/json"), body.as_bytes()).unwrap_err();
            prop_assert_eq!(e.code, "invalid_request");
            prop_assert!(e.description.contains("repeats a key"), "{}", e.description);
        }
    }

    #[test]
    fn minted_tokens_keep_their_header_and_claims_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let key = super::super::keys::replace(
            &dir.path().join("issuer.json"),
            crate::config::SigningAlg::ES256,
        )
        .unwrap();
        let grant = Grant {
            client_id: "billing".into(),
            audience: "https://orders.example.com".into(),
            scopes: vec!["orders:read".into(), "orders:write".into()],
        };
        let jwt = mint(
            &key,
            "https://issuer.example/",
            Duration::from_secs(3600),
            &grant,
            1000,
        )
        .unwrap();
        let parts: Vec<Vec<u8>> = jwt
            .split('.')
            .map(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap()
            })
            .collect();
        // What jsonwebtoken's `Header` and a `serde_json::json!` map wrote before.
        let header = format!(r#"{{"typ":"at+jwt","alg":"ES256","kid":"{}"}}"#, key.kid);
        assert_eq!(String::from_utf8_lossy(&parts[0]), header);
        let claims: serde_json::Value = serde_json::from_slice(&parts[1]).unwrap();
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 22);
        let expected = serde_json::json!({
            "iss": "https://issuer.example/",
            "sub": "billing@client",
            "aud": "https://orders.example.com",
            "cid": "billing",
            "client_id": "billing",
            "iat": 1000,
            "exp": 4600,
            "jti": jti,
            "scp": ["orders:read", "orders:write"],
            "scope": "orders:read orders:write",
            "gty": "client_credentials",
        });
        assert_eq!(String::from_utf8_lossy(&parts[1]), expected.to_string());
        assert_eq!(parts[2].len(), 64);
    }

    #[test]
    fn basic_and_media_types_are_case_insensitive() {
        let enc = base64::engine::general_purpose::STANDARD.encode("billing:s3cret");
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            for sep in [" ", "  "] {
                let mut h = headers("application/x-www-form-urlencoded");
                h.insert(
                    header::AUTHORIZATION,
                    http::HeaderValue::from_str(&format!("{scheme}{sep}{enc}")).unwrap(),
                );
                let r = TokenRequest::parse(&h, b"grant_type=client_credentials").unwrap();
                assert_eq!(
                    r.basic,
                    Some(("billing".into(), "s3cret".into())),
                    "{scheme:?}{sep:?}"
                );
            }
        }
        for bad in ["Basicx", "Bearer abc", "Basic", "Basic "] {
            let mut h = headers("application/x-www-form-urlencoded");
            h.insert(header::AUTHORIZATION, http::HeaderValue::from_static(bad));
            assert!(TokenRequest::parse(&h, b"").is_err(), "{bad}");
        }
        for media in [
            "application/json",
            "APPLICATION/JSON",
            "application/JSON; charset=utf-8",
            " application/json\t;x=y",
        ] {
            assert!(is_json(media), "{media}");
        }
        for media in [
            "application/jsonx",
            "text/json",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!is_json(media), "{media}");
        }
    }
}
