//! The client credentials grant (RFC 6749 §4.4): building the request for each
//! client authentication method and reading the answer (§5.1 success, §5.2 error).
//!
//! Every error message names the credential and is scrubbed of the secret, even
//! if an authorization server echoes it back.

use crate::config::{AuthMethod, CredentialSpec};
use crate::metrics::Outcome;
use http::{HeaderValue, StatusCode};
use std::time::{Duration, SystemTime};

/// Answers larger than this are not read (a token response is small).
pub const MAX_BODY: usize = 64 * 1024;

/// A token request ready to send: headers and body, built by a pure function.
#[derive(PartialEq, Eq)]
pub struct GrantRequest {
    pub content_type: &'static str,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// What the client authenticates with in one token request.
pub enum Proof<'a> {
    /// `client_secret_basic`, `_post`, `_json`.
    Secret(&'a str),
    /// `private_key_jwt`: a signed JWT (RFC 7523 §2.2).
    Assertion(&'a str),
    /// `tls_client_auth`: the certificate on the connection; `client_id` in the body.
    Certificate,
}

/// RFC 7523 §2.2.
use crate::oauth::JWT_BEARER;
use crate::oauth::authorization::form_encode;

/// Build the request for `spec` with its current proof.
pub fn build_request(spec: &CredentialSpec, proof: &Proof<'_>) -> GrantRequest {
    let secret = match proof {
        Proof::Secret(s) => *s,
        Proof::Assertion(_) | Proof::Certificate => "",
    };
    match spec.auth_method {
        AuthMethod::ClientSecretJson => {
            let mut body = serde_json::Map::new();
            body.insert("grant_type".into(), "client_credentials".into());
            body.insert("client_id".into(), spec.client_id.as_str().into());
            body.insert("client_secret".into(), secret.into());
            if let Some(a) = &spec.audience {
                body.insert("audience".into(), a.as_str().into());
            }
            if let Some(r) = &spec.resource {
                body.insert("resource".into(), r.as_str().into());
            }
            if !spec.scopes.is_empty() {
                body.insert("scope".into(), spec.scopes.join(" ").into());
            }
            for (k, v) in &spec.extra_params {
                body.insert(k.clone(), v.as_str().into());
            }
            GrantRequest {
                content_type: "application/json",
                authorization: None,
                body: serde_json::Value::Object(body).to_string().into_bytes(),
            }
        }
        method => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            let authorization = match (method, proof) {
                (AuthMethod::ClientSecretBasic, _) => {
                    // RFC 6749 §2.3.1: form-urlencode id and secret, then base64.
                    Some(crate::oauth::authorization::basic(&spec.client_id, secret))
                }
                (_, Proof::Assertion(jwt)) => {
                    form.append_pair("client_id", &spec.client_id);
                    form.append_pair("client_assertion_type", JWT_BEARER);
                    form.append_pair("client_assertion", jwt);
                    None
                }
                (_, Proof::Certificate) => {
                    form.append_pair("client_id", &spec.client_id);
                    None
                }
                (_, Proof::Secret(_)) => {
                    form.append_pair("client_id", &spec.client_id);
                    form.append_pair("client_secret", secret);
                    None
                }
            };
            if let Some(a) = &spec.audience {
                form.append_pair("audience", a);
            }
            if let Some(r) = &spec.resource {
                form.append_pair("resource", r);
            }
            if !spec.scopes.is_empty() {
                form.append_pair("scope", &spec.scopes.join(" "));
            }
            for (k, v) in &spec.extra_params {
                form.append_pair(k, v);
            }
            GrantRequest {
                content_type: "application/x-www-form-urlencoded",
                authorization,
                body: form.finish().into_bytes(),
            }
        }
    }
}

/// A token request that did not yield a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub outcome: Outcome,
    /// Names the credential; never contains the secret or a token.
    pub message: String,
    /// What a `429`/`503` answer's `Retry-After` asked for.
    pub retry_after: Option<Duration>,
}

impl FetchError {
    pub fn new(outcome: Outcome, message: String) -> Self {
        FetchError {
            outcome,
            message,
            retry_after: None,
        }
    }
}

/// A token the server issued.
pub struct Issued {
    pub access_token: String,
    pub lifetime: Duration,
}

/// Read a §5.1 answer (or a §5.2 error) of `status` with `body`.
pub fn parse_response(
    spec: &CredentialSpec,
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &[u8],
) -> Result<Issued, FetchError> {
    let name = &spec.name;
    if !status.is_success() {
        let throttled = matches!(status.as_u16(), 429 | 503);
        let outcome = if throttled {
            Outcome::throttled
        } else {
            Outcome::http_error
        };
        let detail = match serde_json::from_slice::<OAuthError>(body) {
            Ok(e) => match e.error_description {
                Some(d) => format!(": {} ({})", e.error, truncate(&d, 200)),
                None => format!(": {}", e.error),
            },
            Err(_) => format!(" with a non-JSON body ({} bytes)", body.len()),
        };
        let mut err = FetchError::new(
            outcome,
            format!(
                "credential {name}: token endpoint answered {}{detail}",
                status.as_u16()
            ),
        );
        if throttled {
            err.retry_after = retry_after.and_then(parse_retry_after);
        }
        return Err(err);
    }
    let invalid = |why: String| {
        FetchError::new(
            Outcome::invalid_response,
            format!("credential {name}: invalid token response: {why}"),
        )
    };
    let ok: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<serde_json::Value>(body).is_err() {
            invalid(format!("not JSON ({} bytes)", body.len()))
        } else {
            invalid(e.to_string())
        }
    })?;
    if let Some(t) = &ok.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(invalid(format!(
            "token_type is `{}`, not Bearer",
            truncate(t, 40)
        )));
    }
    if ok.access_token.is_empty() {
        return Err(invalid("access_token is empty".into()));
    }
    let lifetime = match ok.expires_in {
        Some(v) => expires_in(&v)
            .ok_or_else(|| invalid(format!("bad expires_in `{}`", truncate(&v.to_string(), 40))))?,
        None => match jwt_exp(&ok.access_token) {
            Some(exp) => {
                exp_lifetime(exp).ok_or_else(|| invalid("the token's exp is in the past".into()))?
            }
            None => spec.default_ttl,
        },
    };
    Ok(Issued {
        access_token: ok.access_token,
        lifetime,
    })
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

/// `expires_in` as a positive number of seconds (a numeric string is accepted too,
/// as some servers send one).
fn expires_in(v: &serde_json::Value) -> Option<Duration> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0 && secs < 1e10).then(|| Duration::from_secs_f64(secs))
}

/// The `exp` claim of a JWT, read without verifying it: we only hold the token.
fn jwt_exp(token: &str) -> Option<f64> {
    let claims = crate::jose::compact::unverified_claims(token).ok()?;
    claims.get("exp")?.as_f64()
}

fn exp_lifetime(exp: f64) -> Option<Duration> {
    let now = crate::clock::since_epoch().as_secs_f64();
    (exp.is_finite() && exp > now && exp - now < 1e10).then(|| Duration::from_secs_f64(exp - now))
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Replace every occurrence of `secret` in `message`, as sent and in the forms a
/// server might echo it back: form-encoded, JSON-escaped, and inside the
/// base64 of a Basic `Authorization` header.
pub fn scrub(message: &mut String, spec: &CredentialSpec, secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let json = serde_json::Value::from(secret).to_string();
    let forms = [
        secret.to_owned(),
        form_encode(secret),
        json.trim_matches('"').to_owned(),
        crate::oauth::authorization::basic_credentials(&spec.client_id, secret),
    ];
    for form in forms {
        if message.contains(&form) {
            *message = message.replace(&form, "[redacted]");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, load_str};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn spec() -> CredentialSpec {
        let text = "[credentials.c]\ntoken_url = \"http://idp/t\"\nclient_id = \"id\"\nclient_secret = \"secret-value\"\ndefault_ttl = \"7m\"\n";
        let config = load_str(text, Format::Toml).unwrap();
        (*config.credentials[0]).clone()
    }

    fn ok(body: &str) -> Result<Issued, FetchError> {
        parse_response(&spec(), StatusCode::OK, None, body.as_bytes())
    }

    fn jwt(claims: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn lifetimes() {
        let now = crate::clock::unix_now();
        let in_90 = jwt(&format!(r#"{{"exp":{}}}"#, now + 90));
        let cases: Vec<(String, Option<u64>)> = vec![
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":3600}"#.into(),
                Some(3600),
            ),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":"120"}"#.into(),
                Some(120),
            ),
            (r#"{"access_token":"a","expires_in":1.5}"#.into(), Some(1)),
            // no expires_in: the JWT's exp, else default_ttl
            (format!(r#"{{"access_token":"{in_90}"}}"#), Some(89)),
            (r#"{"access_token":"opaque"}"#.into(), Some(420)),
            (r#"{"access_token":"a","expires_in":0}"#.into(), None),
            (r#"{"access_token":"a","expires_in":"soon"}"#.into(), None),
            (
                format!(r#"{{"access_token":"{}"}}"#, jwt(r#"{"exp":1000}"#)),
                None,
            ),
        ];
        for (body, want) in cases {
            let got = ok(&body).map(|i| i.lifetime.as_secs());
            match want {
                Some(w) => assert!(
                    got.as_ref().is_ok_and(|g| *g == w || *g + 1 == w),
                    "{body}: {:?}",
                    got.map_err(|e| e.message)
                ),
                None => assert!(got.is_err(), "{body} should fail"),
            }
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        let past = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let got = parse_retry_after(&HeaderValue::from_str(&future).unwrap()).unwrap();
        assert!(
            got > Duration::from_secs(27) && got <= Duration::from_secs(30),
            "{got:?}"
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("later")), None);
    }

    #[test]
    fn throttling_keeps_retry_after_and_errors_drop_it() {
        let ra = HeaderValue::from_static("9");
        let e = parse_response(&spec(), StatusCode::TOO_MANY_REQUESTS, Some(&ra), b"{}")
            .err()
            .unwrap();
        assert_eq!(
            (e.outcome, e.retry_after),
            (Outcome::throttled, Some(Duration::from_secs(9)))
        );
        let e = parse_response(
            &spec(),
            StatusCode::BAD_REQUEST,
            Some(&ra),
            br#"{"error":"invalid_scope"}"#,
        )
        .err()
        .unwrap();
        assert_eq!((e.outcome, e.retry_after), (Outcome::http_error, None));
        assert_eq!(
            e.message,
            "credential c: token endpoint answered 400: invalid_scope"
        );
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        let secret = "se\"cret va/lue";
        let basic = base64::engine::general_purpose::STANDARD.encode("id:se%22cret+va%2Flue");
        let mut m = format!("a {secret} b se%22cret+va%2Flue c se\\\"cret va/lue d {basic}");
        scrub(&mut m, &spec(), secret);
        assert_eq!(m, "a [redacted] b [redacted] c [redacted] d [redacted]");
    }
}
