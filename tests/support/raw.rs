//! A raw-recording upstream: every request's bytes (request line, headers,
//! body) exactly as they arrived, answered with a scripted raw response; and
//! a raw client that writes bytes to a listener and reads the answer. Attack
//! tests assert what the upstream *received*, not only the status.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as it arrived on the wire.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// Request line and header lines, without the final empty line.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The request target of the request line (`/a/b?q`).
    pub fn target(&self) -> &str {
        self.head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
    }

    pub fn method(&self) -> &str {
        self.head
            .lines()
            .next()
            .and_then(|l| l.split(' ').next())
            .unwrap_or("")
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Header names as sent, in order.
    pub fn header_names(&self) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, _)| k)
            .collect()
    }
}

struct State {
    seen: Mutex<Vec<RawRequest>>,
    answer: Mutex<Vec<u8>>,
}

#[derive(Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";

impl RawUpstream {
    /// Answers every request `200 ok` on a kept-alive connection.
    pub async fn start() -> Self {
        Self::answering(OK).await
    }

    /// Answers every request with `answer`, byte for byte; the connection
    /// closes after it unless it has a `content-length`.
    pub async fn answering(answer: &[u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            seen: Mutex::default(),
            answer: Mutex::new(answer.to_vec()),
        });
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, st.clone()));
            }
        });
        RawUpstream { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.state.seen.lock().unwrap().clear();
    }
}

async fn connection(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let req = RawRequest {
            head,
            body: Vec::new(),
        };
        let body = match read_body(&mut stream, &mut buf, &req).await {
            Some(b) => b,
            None => return,
        };
        let answer = state.answer.lock().unwrap().clone();
        state.seen.lock().unwrap().push(RawRequest { body, ..req });
        if stream.write_all(&answer).await.is_err() {
            return;
        }
        let keeps = String::from_utf8_lossy(&answer)
            .to_ascii_lowercase()
            .contains("content-length");
        if !keeps {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn read_until_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, req: &RawRequest) -> Option<Vec<u8>> {
    let chunked = req
        .header("transfer-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("chunked"));
    let need = |buf: &Vec<u8>| -> Option<usize> {
        if chunked {
            buf.windows(5)
                .position(|w| w == b"0\r\n\r\n")
                .map(|i| i + 5)
        } else {
            let len: usize = req
                .header("content-length")
                .first()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (buf.len() >= len).then_some(len)
        }
    };
    loop {
        if let Some(n) = need(buf) {
            return Some(buf.drain(..n).collect());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Write `request` to `addr` and read the answer until the server closes or
/// 5 s pass (send `Connection: close`). Returns the answer as text.
pub async fn send(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw answer (0 when there is none).
pub fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
