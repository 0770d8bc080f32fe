//! Plain HTTP clients for tests (no proxy from the environment).

use super::poll::{LONG, until};
use std::time::Duration;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET `url`, returning status and body text.
pub async fn get(url: &str) -> (u16, String) {
    let resp = client().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// GET `url` and parse the JSON body.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let (status, text) = get(url).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, json)
}

/// GET `url` until it answers `status` (for at most `limit`); the body.
pub async fn until_status(url: &str, status: u16, limit: Duration) -> String {
    let what = format!("{url} to answer {status}");
    until(limit, &what, async || {
        let (got, body) = get(url).await;
        if got == status {
            Ok(body)
        } else {
            Err(format!("{got}: {body}"))
        }
    })
    .await
}

/// Wait (at most [`LONG`]) until the admin listener at `admin` (`host:port`)
/// says ready: `/readyz` answers 200. Its JSON.
pub async fn ready(admin: &str) -> serde_json::Value {
    let body = until_status(&format!("http://{admin}/readyz"), 200, LONG).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// GET `url` with `client` until it answers 200 (for at most `limit`);
/// refused or cut connections count as not yet.
pub async fn until_ok(client: &reqwest::Client, url: &str, limit: Duration) {
    until(
        limit,
        &format!("{url} to answer 200"),
        async || match client.get(url).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
}

/// `GET url` with `Authorization: Bearer token` until it answers `status`
/// (for at most [`LONG`]).
pub async fn until_bearer_status(url: &str, token: &str, status: u16) {
    let what = format!("{url} to answer {status} to the token");
    until(LONG, &what, async || {
        let got = bearer_status(url, token).await;
        if got == status { Ok(()) } else { Err(got) }
    })
    .await;
}

/// The seed's JSON token request to `{issuer}oauth/token`: status and answer.
pub async fn token_json(
    issuer: &str,
    client_id: &str,
    secret: &str,
    audience: &str,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"audience": audience, "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret});
    let resp = client()
        .post(format!("{issuer}oauth/token"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
    )
}

/// Serve `answer` on `listener` (HTTP/1.1 and h2c), each connection on its own
/// task, until the test's runtime ends.
pub fn serve<F, Fut>(listener: tokio::net::TcpListener, answer: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
}

/// The status of `GET url` with `Authorization: Bearer token`.
pub async fn bearer_status(url: &str, token: &str) -> u16 {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
