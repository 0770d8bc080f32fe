//! Authorization server metadata (RFC 8414, then OpenID Connect discovery), and
//! the bounded GET both the inbound key fetcher and the credential manager use.

use std::time::Duration;

/// GET `url`: the body (at most 1 MiB) and its `Cache-Control: max-age`.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<Duration>), String> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: status {}", resp.status().as_u16()));
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
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok((body, max_age))
}

/// The body of `resp`, refused as soon as it exceeds `max` bytes (never
/// buffered whole first).
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("answer larger than {max} bytes");
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(too_large());
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
) -> Result<serde_json::Value, String> {
    let url = url::Url::parse(base).map_err(|e| format!("issuer {base}: {e}"))?;
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ];
    let mut last = String::new();
    for doc_url in candidates {
        match get(client, &doc_url).await {
            Ok((doc, _)) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&doc).map_err(|e| format!("{doc_url}: {e}"))?;
                let named = v.get("issuer").and_then(|i| i.as_str()).unwrap_or_default();
                if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
                    return Err(format!("{doc_url}: the document names another issuer"));
                }
                return Ok(v);
            }
            Err(e) => last = e,
        }
    }
    Err(format!("discovery failed: {last}"))
}
