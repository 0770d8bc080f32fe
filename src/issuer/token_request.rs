//! The token endpoint's request (`POST /oauth/token`, and the same form on
//! introspection and revocation): form-encoded (RFC 6749) or JSON (the seed's
//! body), with `client_secret_basic` credentials from `Authorization`; and its
//! errors, RFC 6749 §5.2 codes. What the request is checked against is in
//! [`super::grant`]; the token it earns is signed by [`super::mint`].

use super::client_auth::{AuthError, Failure};
use http::{HeaderMap, StatusCode, header};
use std::collections::HashMap;
use std::net::IpAddr;

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

    /// `(client_id, secret)` from a Basic `Authorization` header.
    pub(super) fn basic(&self) -> Option<(&str, &str)> {
        self.basic.as_ref().map(|(id, s)| (id.as_str(), s.as_str()))
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
