//! A token endpoint for tests: records every request byte for byte, counts them,
//! and can be told to fail, stall, throttle, or issue short-lived tokens.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// How the endpoint answers.
#[derive(Clone, Debug)]
pub enum Mode {
    /// `{"access_token":"tok-N","token_type":"Bearer","expires_in":ttl}`.
    Issue,
    /// A JWT whose `exp` is `ttl` from now, and no `expires_in`.
    IssueJwt,
    /// Answer `status` with `body`.
    Fail { status: u16, body: String },
    /// Like `Issue`, after a delay.
    IssueAfter(Duration),
    /// Never answer.
    Stall,
    /// `429` with `Retry-After: secs`.
    Throttle { retry_after: u64 },
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A token the endpoint issued and when it expires.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires: Instant,
}

struct State {
    mode: Mode,
    ttl: u64,
    /// When set, only this `client_secret` is accepted (in any of the three forms).
    accept_secret: Option<String>,
    requests: Vec<Recorded>,
    issued: Vec<IssuedToken>,
}

#[derive(Clone)]
pub struct TokenServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TokenServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Issue,
            ttl: 3600,
            accept_secret: None,
            requests: Vec::new(),
            issued: Vec::new(),
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(st.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TokenServer { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn set_ttl(&self, secs: u64) {
        self.state.lock().unwrap().ttl = secs;
    }

    pub fn accept_only_secret(&self, secret: &str) {
        self.state.lock().unwrap().accept_secret = Some(secret.to_owned());
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn issued(&self) -> Vec<IssuedToken> {
        self.state.lock().unwrap().issued.clone()
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (mode, ttl, accept, n) = {
        let mut st = state.lock().unwrap();
        st.requests.push(Recorded {
            at,
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        (
            st.mode.clone(),
            st.ttl,
            st.accept_secret.clone(),
            st.requests.len(),
        )
    };
    if let Some(secret) = accept
        && presented_secret(&parts.headers, &body).as_deref() != Some(secret.as_str())
    {
        return Ok(json(
            401,
            r#"{"error":"invalid_client","error_description":"bad secret"}"#.into(),
        ));
    }
    let (token, body) = match mode {
        Mode::Issue | Mode::IssueAfter(_) => {
            if let Mode::IssueAfter(delay) = mode {
                tokio::time::sleep(delay).await;
            }
            let token = format!("tok-{n}");
            let body =
                format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{ttl}}}"#);
            (token, body)
        }
        Mode::IssueJwt => {
            let exp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + ttl;
            let claims = serde_json::json!({"sub": "client", "exp": exp, "n": n});
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(b"test-only-key"),
            )
            .unwrap();
            let body = format!(r#"{{"access_token":"{token}","token_type":"Bearer"}}"#);
            (token, body)
        }
        Mode::Fail { status, body } => return Ok(json(status, body)),
        Mode::Stall => std::future::pending().await,
        Mode::Throttle { retry_after } => {
            let mut resp = json(429, r#"{"error":"slow_down"}"#.into());
            resp.headers_mut().insert("retry-after", retry_after.into());
            return Ok(resp);
        }
    };
    state.lock().unwrap().issued.push(IssuedToken {
        token,
        expires: Instant::now() + Duration::from_secs(ttl),
    });
    Ok(json(200, body))
}

/// The client secret a request carries, in whichever form it was sent.
fn presented_secret(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    use base64::Engine as _;
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok()?.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        let (_, secret) = pair.split_once(':')?;
        return form_urlencoded::parse(format!("s={secret}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned());
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return v.get("client_secret")?.as_str().map(str::to_owned);
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "client_secret")
        .map(|(_, v)| v.into_owned())
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
