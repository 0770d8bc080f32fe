//! Upstream connections under many clients: past the soft cap (128 per
//! worker) clients share upstream connections, each still gets its own
//! answer, and responses that hold every connection do not stall the others.

use super::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An upstream that answers each request with its path, except `/hold/…`,
/// which waits until `release` is sent; it records the peers it served.
struct PathUpstream {
    addr: SocketAddr,
    peers: Arc<Mutex<HashSet<SocketAddr>>>,
    release: tokio::sync::watch::Sender<bool>,
}

impl PathUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(HashSet::new()));
        let (release, released) = tokio::sync::watch::channel(false);
        let seen = peers.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let (seen, released) = (seen.clone(), released.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().insert(peer);
                        let mut released = released.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            if path.starts_with("/hold/") {
                                let _ = released.wait_for(|r| *r).await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(path))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        PathUpstream {
            addr,
            peers,
            release,
        }
    }

    fn connections(&self) -> usize {
        self.peers.lock().unwrap().len()
    }
}

/// A client with a keep-alive connection of its own to `addr`.
async fn own_connection(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// `GET path` on `sender`; the body as text.
async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> String {
    sender.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", "orders")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

async fn outbound_to(up: &PathUpstream) -> (TokenServer, Sidecar, SocketAddr) {
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &format!("http://{}", up.addr), "orders");
    let sidecar = Sidecar::start(&config).await;
    sidecar.ready().await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    (idp, sidecar, addr)
}

#[tokio::test]
async fn clients_past_the_cap_share_upstream_connections_and_get_their_own_answers() {
    let up = PathUpstream::start().await;
    let (_idp, _sidecar, addr) = outbound_to(&up).await;
    const CLIENTS: usize = 400;
    // All connected before any asks: every client is in flight at once.
    let ready = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let clients = (0..CLIENTS).map(|i| {
        let ready = ready.clone();
        async move {
            let mut sender = own_connection(addr).await;
            ready.wait().await;
            for j in 0..5 {
                let path = format!("/c{i}/r{j}");
                let body = get_on(&mut sender, &path).await;
                assert_eq!(body, path, "client {i} got another request's answer");
            }
        }
    });
    tokio::time::timeout(LONG, futures_util::future::join_all(clients))
        .await
        .expect("every client answered in time");
    let used = up.connections();
    eprintln!("upstream connections used: {used}");
    assert!(
        used < CLIENTS * 3 / 4,
        "{used} upstream connections for {CLIENTS} clients: not shared"
    );
}

#[tokio::test]
async fn responses_holding_every_connection_do_not_stall_other_clients() {
    let up = PathUpstream::start().await;
    let (_idp, _sidecar, addr) = outbound_to(&up).await;
    // More held responses than the cap: every upstream connection is busy.
    const HELD: usize = 150;
    let mut held = Vec::new();
    for i in 0..HELD {
        let mut sender = own_connection(addr).await;
        held.push(tokio::spawn(async move {
            let path = format!("/hold/{i}");
            assert_eq!(get_on(&mut sender, &path).await, path);
        }));
    }
    until(
        LONG,
        "every held request reached the upstream",
        async || up.connections() >= HELD,
    )
    .await;
    // A new client is still answered (the cap is soft), well before release.
    let mut sender = own_connection(addr).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), get_on(&mut sender, "/quick")).await;
    assert_eq!(
        answer.as_deref().ok(),
        Some("/quick"),
        "stalled behind the held responses"
    );
    let _ = up.release.send(true);
    for h in held {
        tokio::time::timeout(LONG, h).await.unwrap().unwrap();
    }
}
