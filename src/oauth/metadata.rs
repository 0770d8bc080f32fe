//! Authorization server metadata (RFC 8414, then OpenID Connect discovery), and
//! the bounded GET both the inbound key fetcher and the credential manager use.

use std::time::Duration;

/// Why a bounded read of an answer failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Body(#[source] reqwest::Error),
}

/// Why a metadata GET (JWKS, discovery document, revocation feed) failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("GET {url}: {source}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: {source}")]
    Read {
        url: String,
        #[source]
        source: ReadError,
    },
}

/// Why the authorization server's metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("issuer {base}: {source}")]
    BadIssuer {
        base: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{url}: {source}")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url}: the document names another issuer")]
    OtherIssuer { url: String },
    /// Neither well-known location answered; the error of the last one tried.
    #[error("discovery failed: {0}")]
    Unreachable(#[source] GetError),
}

/// GET `url`: the body (at most 1 MiB) and its `Cache-Control: max-age`.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<Duration>), GetError> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|source| GetError::Send {
            url: url.to_owned(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(GetError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=")))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = read_capped(resp, 1024 * 1024)
        .await
        .map_err(|source| GetError::Read {
            url: url.to_owned(),
            source,
        })?;
    Ok((body, max_age))
}

/// The body of `resp`, refused as soon as it exceeds `max` bytes (never
/// buffered whole first).
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Body)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The authorization server's metadata: RFC 8414's document, else OIDC
/// discovery's. RFC 8414 puts the well-known segment before the issuer's path;
/// OIDC appends it. The document must name `issuer` (RFC 8414 §3.3; a trailing
/// `/` aside, which URL parsing adds to a bare origin).
pub async fn metadata(
    client: &reqwest::Client,
    base: &str,
    issuer: &str,
) -> Result<serde_json::Value, MetadataError> {
    let url = url::Url::parse(base).map_err(|source| MetadataError::BadIssuer {
        base: base.to_owned(),
        source,
    })?;
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let rfc8414 = format!("{origin}/.well-known/oauth-authorization-server{path}");
    let oidc = format!("{origin}{path}/.well-known/openid-configuration");
    let (doc_url, doc) = match get(client, &rfc8414).await {
        Ok((doc, _)) => (rfc8414, doc),
        Err(_) => match get(client, &oidc).await {
            Ok((doc, _)) => (oidc, doc),
            Err(last) => return Err(MetadataError::Unreachable(last)),
        },
    };
    let v: serde_json::Value =
        serde_json::from_slice(&doc).map_err(|source| MetadataError::NotJson {
            url: doc_url.clone(),
            source,
        })?;
    let named = v.get("issuer").and_then(|i| i.as_str()).unwrap_or_default();
    if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(MetadataError::OtherIssuer { url: doc_url });
    }
    Ok(v)
}

/// Why an endpoint named in authorization server metadata cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("the issuer's metadata has no {0}")]
    Missing(&'static str),
    #[error("{field} in the issuer's metadata is not a URL: {why}")]
    NotAUrl { field: &'static str, why: String },
    #[error("{field} {url} is not http(s)")]
    Scheme { field: &'static str, url: String },
    /// RFC 6749 §3.2, RFC 7662 §4, RFC 8414 §2: the issuer is reached over
    /// TLS, so its endpoints must be too (else the client secret, the token
    /// being introspected or the keys would travel in clear).
    #[error(
        "{field} {url} is plain http:// while the issuer is https://: refused (a downgrade; only loopback endpoints may be http://)"
    )]
    Downgrade { field: &'static str, url: String },
}

/// The endpoint `field` (`token_endpoint`, `jwks_uri`, `introspection_endpoint`)
/// of `meta`, fetched from `issuer`: an `https://` issuer's endpoints must be
/// `https://` too, except on a loopback address (`127.0.0.0/8`, `::1`,
/// `localhost`).
pub fn metadata_endpoint(
    meta: &serde_json::Value,
    field: &'static str,
    issuer: &url::Url,
) -> Result<url::Url, EndpointError> {
    let text = meta
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or(EndpointError::Missing(field))?;
    let url = url::Url::parse(text).map_err(|e| EndpointError::NotAUrl {
        field,
        why: e.to_string(),
    })?;
    let shown = || crate::config::redact_url(&url);
    match url.scheme() {
        "https" => Ok(url),
        "http" if issuer.scheme() != "https" || is_loopback(&url) => Ok(url),
        "http" => Err(EndpointError::Downgrade {
            field,
            url: shown(),
        }),
        _ => Err(EndpointError::Scheme {
            field,
            url: shown(),
        }),
    }
}

/// Whether `url` names this machine's loopback interface.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(issuer: &str, endpoint: &str) -> Result<url::Url, EndpointError> {
        let meta = serde_json::json!({ "token_endpoint": endpoint });
        metadata_endpoint(&meta, "token_endpoint", &url::Url::parse(issuer).unwrap())
    }

    #[test]
    fn an_https_issuer_cannot_name_plain_http_endpoints_except_loopback() {
        let tls = "https://idp.example.com/";
        for refused in [
            "http://idp.example.com/oauth/token",
            "HTTP://idp.example.com/oauth/token",
            "http://idp.example.com:443/oauth/token",
            "http://user:pass@idp.example.com/oauth/token",
            "http://0.0.0.0:8080/t",
            "http://10.0.0.1/t",
            "http://[::]/t",
            "http://[fe80::1]/t",
            "http://128.0.0.1/t",
            "http://localhost.example.com/t",
            "http://localhost.:8080/t",
            "http://127.0.0.1.nip.io/t",
            "http://evil.com#@127.0.0.1/t",
        ] {
            assert!(
                matches!(check(tls, refused), Err(EndpointError::Downgrade { .. })),
                "{refused}: {:?}",
                check(tls, refused)
            );
        }
        for allowed in [
            "https://idp.example.com/oauth/token",
            "https://other.example.com/oauth/token",
            "http://127.0.0.1:8080/t",
            "http://127.1.2.3/t",
            "http://[::1]:8080/t",
            "http://[::ffff:127.0.0.1]/t",
            "http://localhost:8080/t",
            "http://LOCALHOST/t",
        ] {
            assert!(check(tls, allowed).is_ok(), "{allowed}");
        }
        for not_http in [
            "ftp://idp.example.com/t",
            "file:///etc/passwd",
            "ws://idp.example.com/t",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(check(tls, not_http), Err(EndpointError::Scheme { .. })),
                "{not_http}"
            );
        }
        assert!(matches!(
            check(tls, "/oauth/token"),
            Err(EndpointError::NotAUrl { .. })
        ));
        let meta = serde_json::json!({ "token_endpoint": 7 });
        assert!(matches!(
            metadata_endpoint(&meta, "token_endpoint", &url::Url::parse(tls).unwrap()),
            Err(EndpointError::Missing(_))
        ));
    }

    #[test]
    fn a_plain_http_issuer_may_name_either() {
        assert!(check("http://127.0.0.1:15100/", "http://10.0.0.1/t").is_ok());
        assert!(check("http://idp.internal/", "https://idp.internal/t").is_ok());
    }

    #[test]
    fn the_refusal_names_the_field_and_never_the_password() {
        let e = check(
            "https://idp.example.com/",
            "http://user:hunter2@idp.example.com/t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("token_endpoint"), "{e}");
        assert!(e.contains("https://"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
