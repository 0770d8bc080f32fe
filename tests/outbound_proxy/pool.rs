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

/// The value of one line of the sidecar's `/metrics`.
async fn metric(sidecar: &Sidecar, line: &str) -> u64 {
    let (_, metrics) = support::http::get(&sidecar.admin_url("/metrics")).await;
    support::metric(&metrics, line)
}

/// How many upstream connections of route `orders` answered out of step.
async fn desyncs(sidecar: &Sidecar) -> u64 {
    metric(
        sidecar,
        "m2m_outbound_upstream_desyncs_total{route=\"orders\"}",
    )
    .await
}

/// A sidecar with an outbound route `orders` to `upstream` (route keys in `extra`).
async fn outbound_to(upstream: SocketAddr, extra: &str) -> (TokenServer, Sidecar, SocketAddr) {
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound_with("orders", &format!("http://{upstream}"), "orders", extra);
    let sidecar = Sidecar::start(&config).await;
    sidecar.ready().await;
    let addr = sidecar.handle.outbound_addr("orders").unwrap();
    (idp, sidecar, addr)
}

#[tokio::test]
async fn clients_past_the_cap_share_upstream_connections_and_get_their_own_answers() {
    let up = PathUpstream::start().await;
    let (_idp, _sidecar, addr) = outbound_to(up.addr, "").await;
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
    let (_idp, _sidecar, addr) = outbound_to(up.addr, "").await;
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

/// A raw HTTP/1.1 upstream that answers each request with its path (a path
/// ending in `/slow` after 100 ms) and, for a path ending in `/stray`, writes
/// an extra response nobody asked for (`STRAY` and the path) 20 ms later on
/// the same connection: what an upstream does that writes more than its
/// `Content-Length`, or a body on a `HEAD`. For a path ending in `/owe`, that
/// extra response is written just before the answer to the connection's next
/// request, which must end in `/after` and is answered once `release` is sent.
struct StrayUpstream {
    addr: SocketAddr,
    release: tokio::sync::watch::Sender<bool>,
    /// The paths asked for, in order.
    asked: Arc<Mutex<Vec<String>>>,
}

impl StrayUpstream {
    async fn start() -> Self {
        use tokio::io::AsyncBufReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = tokio::sync::watch::channel(false);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut released = released.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut owed = String::new();
                    let (read, write) = stream.into_split();
                    let write = Arc::new(tokio::sync::Mutex::new(write));
                    let mut lines = tokio::io::BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                        log.lock().unwrap().push(path.clone());
                        // The rest of the head (no request has a body).
                        loop {
                            let mut h = String::new();
                            if lines.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if h == "\r\n" {
                                break;
                            }
                        }
                        let answer = |body: &str| {
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        };
                        if path.ends_with("/slow") {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        if path.ends_with("/after") {
                            let _ = released.wait_for(|r| *r).await;
                        }
                        let mut out = std::mem::take(&mut owed);
                        out.push_str(&answer(&path));
                        if path.ends_with("/owe") {
                            owed = answer(&format!("STRAY{path}"));
                        }
                        if write.lock().await.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                        if path.ends_with("/stray") {
                            let write = write.clone();
                            let stray = answer(&format!("STRAY{path}"));
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                let _ = write.lock().await.write_all(stray.as_bytes()).await;
                            });
                        }
                    }
                });
            }
        });
        StrayUpstream {
            addr,
            release,
            asked,
        }
    }
}

/// The client an answer names (`/c7/…` or `STRAY/c7/…`), if any.
fn named_client(body: &str) -> Option<usize> {
    let rest = body
        .strip_prefix("STRAY")
        .unwrap_or(body)
        .strip_prefix("/c")?;
    rest.split('/').next()?.parse().ok()
}

#[tokio::test]
async fn an_upstream_answering_out_of_step_stops_sharing_so_no_answer_crosses_clients() {
    let up = StrayUpstream::start().await;
    let (_idp, sidecar, addr) = outbound_to(up.addr, "").await;
    // Past the cap (128 upstream connections per worker): connections shared.
    const CLIENTS: usize = 300;
    let mut senders = Vec::new();
    for _ in 0..CLIENTS {
        senders.push(own_connection(addr).await);
    }
    // One round: every client sends one request at once (with `strays`, a
    // third of them drawing a stray answer), and says what it got back.
    async fn round(
        senders: Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
        r: usize,
        strays: bool,
    ) -> (
        Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
        Vec<(usize, String, Option<String>)>,
    ) {
        let asks = senders
            .into_iter()
            .enumerate()
            .map(|(i, mut sender)| async move {
                let stray = if strays && (i + r).is_multiple_of(3) {
                    "/stray"
                } else {
                    ""
                };
                let path = format!("/c{i}/r{r}{stray}");
                let got = async {
                    sender.ready().await.ok()?;
                    let req = Request::get(&path)
                        .header("host", "orders")
                        .body(Full::new(Bytes::new()))
                        .ok()?;
                    let resp = sender.send_request(req).await.ok()?;
                    let ok = resp.status() == 200;
                    let body = resp.into_body().collect().await.ok()?.to_bytes();
                    ok.then(|| String::from_utf8_lossy(&body).into_owned())
                }
                .await;
                (sender, (i, path, got))
            });
        let done = tokio::time::timeout(LONG, futures_util::future::join_all(asks))
            .await
            .expect("every client answered in time");
        done.into_iter().unzip()
    }
    let crossed = |answers: &[(usize, String, Option<String>)]| {
        answers
            .iter()
            .filter(|(i, _, got)| {
                got.as_deref()
                    .and_then(named_client)
                    .is_some_and(|c| c != *i)
            })
            .count()
    };
    // Until the sidecar has seen an answer out of step (answers may cross
    // clients until then: HTTP/1 matches answers by order alone).
    let mut r = 0;
    let mut before = 0;
    while desyncs(&sidecar).await == 0 {
        assert!(r < 20, "no desync seen after {r} rounds");
        let answers;
        (senders, answers) = round(senders, r, true).await;
        before += crossed(&answers);
        r += 1;
    }
    eprintln!("answers crossing clients before the first desync: {before} in {r} rounds");
    // From now on each client keeps its own upstream connection: its answers
    // may still come late or stray, but only its own. (Connections that came
    // from another client are not used again, and an answer that was on its
    // way on one is dropped: strays of the rounds before are still coming.)
    let mut after = 0;
    for r in r + 1..r + 13 {
        let answers;
        (senders, answers) = round(senders, r, true).await;
        after += crossed(&answers);
    }
    assert_eq!(
        after, 0,
        "answers crossed clients after the desync was seen"
    );
    assert!(desyncs(&sidecar).await >= 1);
}

#[tokio::test]
async fn every_request_on_a_busy_connection_gets_its_whole_request_timeout() {
    let up = PathUpstream::start().await;
    let (_idp, _sidecar, addr) = outbound_to(up.addr, "request_timeout = \"300ms\"").await;
    let mut sender = own_connection(addr).await;
    let limit = Duration::from_millis(300);
    // Answered requests on one connection for longer than the limit: the
    // connection's timer moves on with each of them.
    for round in 0..2 {
        let busy = tokio::time::Instant::now();
        let mut n = 0;
        while busy.elapsed() < limit * 3 / 2 {
            let path = format!("/r{round}/{n}");
            assert_eq!(get_on(&mut sender, &path).await, path);
            n += 1;
        }
        // A request the upstream does not answer gets 504 after its own limit,
        // not at an earlier request's.
        sender.ready().await.unwrap();
        let asked = tokio::time::Instant::now();
        let req = Request::get("/hold/x")
            .header("host", "orders")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(LONG, sender.send_request(req))
            .await
            .expect("answered")
            .unwrap();
        let took = asked.elapsed();
        assert_eq!(resp.status(), 504, "round {round}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("upstream_timeout"),
            "{body:?}"
        );
        assert!(
            took >= limit,
            "round {round}: 504 after {took:?}, before the limit"
        );
    }
}

#[tokio::test]
async fn once_out_of_step_an_upstream_connection_is_closed_with_its_client() {
    let up = StrayUpstream::start().await;
    let (_idp, sidecar, addr) = outbound_to(up.addr, "").await;
    // A stray on an idle connection: the sign.
    let mut first = own_connection(addr).await;
    assert_eq!(get_on(&mut first, "/t/stray").await, "/t/stray");
    until(LONG, "the desync seen", async || {
        desyncs(&sidecar).await >= 1
    })
    .await;
    // A client leaves before the stray its answer drew arrives; the next
    // client, answered slowly, must get its own answer, not that stray.
    let open = "m2m_listener_open_connections{listener=\"orders\"}";
    for i in 0..5 {
        let mut a = own_connection(addr).await;
        let path = format!("/a{i}/stray");
        assert_eq!(get_on(&mut a, &path).await, path);
        drop(a);
        until(LONG, "the client's close seen", async || {
            metric(&sidecar, open).await == 1
        })
        .await;
        let mut b = own_connection(addr).await;
        let path = format!("/b{i}/slow");
        assert_eq!(get_on(&mut b, &path).await, path, "round {i}");
    }
}

#[tokio::test]
async fn an_answer_in_flight_on_a_shared_connection_is_dropped_once_out_of_step() {
    let up = StrayUpstream::start().await;
    let (_idp, sidecar, addr) = outbound_to(up.addr, "").await;
    // Client A leaves; its upstream connection owes a stray answer.
    let mut a = own_connection(addr).await;
    assert_eq!(get_on(&mut a, "/a/owe").await, "/a/owe");
    drop(a);
    let open = "m2m_listener_open_connections{listener=\"orders\"}";
    until(LONG, "A's close seen", async || {
        metric(&sidecar, open).await == 0
    })
    .await;
    // Client B takes that connection; its answer waits.
    let mut b = own_connection(addr).await;
    b.ready().await.unwrap();
    let req = Request::get("/b/after")
        .header("host", "orders")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = tokio::spawn(b.send_request(req));
    until(LONG, "B's request at the upstream", async || {
        up.asked.lock().unwrap().iter().any(|p| p == "/b/after")
    })
    .await;
    // Meanwhile another connection shows the upstream out of step.
    let mut c = own_connection(addr).await;
    assert_eq!(get_on(&mut c, "/c/stray").await, "/c/stray");
    until(LONG, "the desync seen", async || {
        desyncs(&sidecar).await >= 1
    })
    .await;
    // A's stray arrives first on B's connection: not passed to B.
    let _ = up.release.send(true);
    let resp = tokio::time::timeout(LONG, answer)
        .await
        .expect("B answered")
        .unwrap()
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        !String::from_utf8_lossy(&body).contains("/a/"),
        "B got A's stray: {status} {body:?}"
    );
    assert_eq!(status, 502, "{body:?}");
}
