//! Connection-level denial of service against every listener kind (inbound,
//! outbound, forward proxy, admin, issuer), with raw TCP sockets and small
//! timeouts set in config: a connection that sends nothing, part of the HTTP/2
//! preface, the preface and SETTINGS but no request, a half-sent request head,
//! or that keeps an HTTP/2 connection alive with PINGs and no stream, is closed
//! within `header_read_timeout`; an HTTP/2 connection whose streams have ended
//! is closed after `idle_timeout` (with a GOAWAY), while one whose response is
//! still streaming is not; and after an exhaustion attack (`max_connections`
//! sockets held doing nothing) legitimate clients are served again within
//! `header_read_timeout`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use support::config::{Cred, SidecarConfig, issuer_toml, quote};
use support::echo::Echo;
use support::sidecar::Sidecar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const ORDERS: &str = "https://orders.example.com";
const SECRET: &str = "secret-0123456789abcdef0123456789abcdef";
/// `header_read_timeout` in every test here.
const HEAD: Duration = Duration::from_secs(1);
/// `idle_timeout` in every test here.
const IDLE: Duration = Duration::from_millis(1500);
/// Scheduling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(2500);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[])
}

fn settings_ack() -> Vec<u8> {
    frame(0x4, 0x1, 0, &[])
}

fn ping(n: u8) -> Vec<u8> {
    frame(0x6, 0, 0, &[n; 8])
}

fn window_update() -> Vec<u8> {
    frame(0x8, 0, 0, &1_000_000u32.to_be_bytes())
}

/// HPACK for `GET http://x/`: `:method GET`, `:scheme http`, `:path /` (static
/// table), `:authority x` (literal, indexed name).
fn request_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x84, 0x01, 0x01, b'x']
}

/// Preface, SETTINGS and `parts`, concatenated.
fn h2(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(settings());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// What an attacking connection does after connecting.
#[derive(Clone, Debug)]
enum Attack {
    /// Send these bytes at once, then nothing.
    Send(Vec<u8>),
    /// Send these bytes one every `gap`.
    Trickle(Vec<u8>, Duration),
    /// Send the first bytes, then a PING every `gap` forever (an HTTP/2
    /// connection kept busy without a stream).
    Pings(Vec<u8>, Duration),
}

fn attacks() -> Vec<(&'static str, Attack)> {
    let ms = Duration::from_millis;
    let mut v = vec![
        ("nothing", Attack::Send(Vec::new())),
        ("P", Attack::Send(b"P".to_vec())),
        ("PRI", Attack::Send(b"PRI".to_vec())),
        ("PRI * HTTP/2.0", Attack::Send(b"PRI * HTTP/2.0".to_vec())),
        (
            "preface line 1",
            Attack::Send(b"PRI * HTTP/2.0\r\n\r\n".to_vec()),
        ),
        (
            "preface less one byte",
            Attack::Send(PREFACE[..23].to_vec()),
        ),
        ("the whole preface", Attack::Send(PREFACE.to_vec())),
        ("preface + SETTINGS", Attack::Send(h2(&[]))),
        (
            "preface + SETTINGS + ACK + WINDOW_UPDATE",
            Attack::Send(h2(&[settings_ack(), window_update()])),
        ),
        (
            "HEADERS without END_HEADERS (no CONTINUATION)",
            Attack::Send(h2(&[settings_ack(), frame(0x1, 0x1, 1, &request_block())])),
        ),
        (
            "preface + SETTINGS, PINGs every 200 ms",
            Attack::Pings(h2(&[settings_ack()]), ms(200)),
        ),
        (
            "preface trickled",
            Attack::Trickle(PREFACE.to_vec(), ms(150)),
        ),
        ("h1: G", Attack::Send(b"G".to_vec())),
        (
            "h1: request line",
            Attack::Send(b"GET / HTTP/1.1\r\n".to_vec()),
        ),
        (
            "h1: head without its end",
            Attack::Send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Drip: 1\r\n".to_vec()),
        ),
        (
            "h1: head trickled",
            Attack::Trickle(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-A: aaaaaaaaaaaa\r\n\r\n".to_vec(),
                ms(150),
            ),
        ),
        (
            "TLS ClientHello start",
            Attack::Send(vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01]),
        ),
        ("CRLFs", Attack::Send(b"\r\n\r\n".to_vec())),
    ];
    // A PRI line that stops at each of its first bytes.
    for n in [2usize, 5, 9, 14, 16, 18, 20] {
        v.push(("preface prefix", Attack::Send(PREFACE[..n].to_vec())));
    }
    v
}

/// Run `attack` on a fresh connection to `addr`; how long until the sidecar
/// closed it (reading returned end of file or an error), or `None` if it was
/// still open after `limit`.
async fn attack(addr: SocketAddr, how: Attack, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let c = TcpStream::connect(addr).await.unwrap();
    attack_on(c, started, how, limit).await
}

/// [`attack`] on a connection already made at `started`.
async fn attack_on(
    c: TcpStream,
    started: Instant,
    attack: Attack,
    limit: Duration,
) -> Option<Duration> {
    let (mut rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        match attack {
            Attack::Send(bytes) => {
                let _ = wr.write_all(&bytes).await;
                std::future::pending::<()>().await;
            }
            Attack::Trickle(bytes, gap) => {
                for b in bytes {
                    if wr.write_all(&[b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(gap).await;
                }
                std::future::pending::<()>().await;
            }
            Attack::Pings(first, gap) => {
                let _ = wr.write_all(&first).await;
                for n in 0u8.. {
                    tokio::time::sleep(gap).await;
                    if wr.write_all(&ping(n)).await.is_err() {
                        break;
                    }
                }
                std::future::pending::<()>().await;
            }
        }
        drop(wr);
    });
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    writer.abort();
    closed
}

/// The five listener kinds of one sidecar, and a legitimate request for each.
struct Five {
    sidecar: Sidecar,
    echo: Echo,
    /// The config without the three proxy listeners (admin and issuer only).
    reduced: String,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Inbound,
    Outbound,
    ForwardProxy,
    Admin,
    Issuer,
}

const KINDS: [Kind; 5] = [
    Kind::Inbound,
    Kind::Outbound,
    Kind::ForwardProxy,
    Kind::Admin,
    Kind::Issuer,
];

impl Five {
    /// Issuer, inbound, outbound (with a credential from the issuer), forward
    /// proxy and admin in one process, sharing `[limits]` (`extra` added to it).
    async fn start(extra: &str) -> Self {
        let echo = Echo::start().await;
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let issuer = format!("http://127.0.0.1:{port}/");
        let tables = format!(
            "[[issuer.apis]]\nname = \"Orders API\"\nidentifier = \"{ORDERS}\"\nscopes = [\"orders:read\"]\n\
             [[issuer.apps]]\nname = \"client\"\nclient_id = \"client\"\nclient_secret = \"{SECRET}\"\n\
             grants = {{ \"{ORDERS}\" = [\"orders:read\"] }}\n"
        );
        let limits = format!(
            "[limits]\nheader_read_timeout = \"{}ms\"\nidle_timeout = \"{}ms\"\n{extra}",
            HEAD.as_millis(),
            IDLE.as_millis()
        );
        let cred = || {
            Cred::new("orders", &format!("{issuer}oauth/token"))
                .text("client_secret", SECRET)
                .text("audience", ORDERS)
        };
        let reduced = SidecarConfig::new()
            .credential(cred())
            .raw(&limits)
            .raw(&issuer_toml(port, dir.path(), &tables))
            .toml()
            .to_owned();
        let config = SidecarConfig::new()
            .credential(cred())
            .outbound("orders", &echo.url(), "orders")
            .raw(&format!(
                "[forward_proxy]\nlisten = \"127.0.0.1:0\"\nunmatched = \"pass\"\n\
                 [[forward_proxy.routes]]\nhost = \"localhost\"\ncredential = \"orders\"\n\
                 [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\n\
                 [[inbound.rules]]\npath = \"/public/*\"\npublic = true\n\
                 [[inbound.rules]]\npath = \"/stream-out/*\"\npublic = true\n",
                quote(&echo.url()),
                quote(&issuer),
                quote(ORDERS),
            ))
            .raw(&limits)
            .raw(&issuer_toml(port, dir.path(), &tables));
        let sidecar = Sidecar::start_with(&config, Some(listener)).await;
        support::http::wait_for_status(&sidecar.admin_url("/readyz"), 200, Duration::from_secs(20))
            .await;
        Five {
            sidecar,
            echo,
            reduced,
            _dir: dir,
        }
    }

    fn addr(&self, kind: Kind) -> SocketAddr {
        let h = &self.sidecar.handle;
        match kind {
            Kind::Inbound => h.inbound_addr.unwrap(),
            Kind::Outbound => h.outbound_addr("orders").unwrap(),
            Kind::ForwardProxy => h.forward_proxy_addr.unwrap(),
            Kind::Admin => h.admin_addr,
            Kind::Issuer => h.issuer_addr.unwrap(),
        }
    }

    /// A request this listener answers `200`.
    fn legit_head(&self, kind: Kind, n: usize) -> String {
        let echo = self.echo.addr;
        let (target, host) = match kind {
            Kind::Inbound => (format!("/public/legit/{n}"), "x".to_owned()),
            Kind::Outbound => (format!("/legit/{n}"), "x".to_owned()),
            Kind::ForwardProxy => (format!("http://{echo}/legit/{n}"), echo.to_string()),
            Kind::Admin | Kind::Issuer => ("/healthz".to_owned(), "x".to_owned()),
        };
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }

    /// Whether a fresh connection gets `200` for a legitimate request (within 1 s).
    async fn served(&self, kind: Kind, n: usize) -> bool {
        let attempt = async {
            let mut c = TcpStream::connect(self.addr(kind)).await.ok()?;
            c.write_all(self.legit_head(kind, n).as_bytes())
                .await
                .ok()?;
            let mut buf = Vec::new();
            c.read_to_end(&mut buf).await.ok()?;
            Some(buf.starts_with(b"HTTP/1.1 200"))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(true))
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_connections_are_closed_on_every_listener() {
    let five = Five::start("").await;
    let mut runs = Vec::new();
    for kind in KINDS {
        for (name, a) in attacks() {
            let addr = five.addr(kind);
            runs.push(async move {
                (
                    kind,
                    name,
                    attack(addr, a, HEAD + SLACK + Duration::from_secs(2)).await,
                )
            });
        }
    }
    let results = futures_util::future::join_all(runs).await;
    let mut failures = Vec::new();
    for (kind, name, closed) in &results {
        match closed {
            Some(after) if *after <= HEAD + SLACK => {}
            Some(after) => failures.push(format!("{kind:?} / {name}: closed only after {after:?}")),
            None => failures.push(format!("{kind:?} / {name}: still open")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks were not cut off within {:?}:\n{}",
        failures.len(),
        results.len(),
        HEAD + SLACK,
        failures.join("\n")
    );
    // Nothing that was not a whole request reached the service.
    assert!(five.echo.seen().is_empty(), "{:?}", five.echo.seen());
    // Every listener still serves.
    for kind in KINDS {
        assert!(
            five.served(kind, 0).await,
            "{kind:?} serves after the attacks"
        );
    }
    five.sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_not_closed_before_its_time() {
    // Not closed at once either: a slow but honest client has header_read_timeout.
    let five = Five::start("").await;
    for kind in KINDS {
        let after = attack(five.addr(kind), Attack::Send(Vec::new()), HEAD + SLACK)
            .await
            .unwrap_or_else(|| panic!("{kind:?}: still open"));
        assert!(
            after >= HEAD.mul_f64(0.9),
            "{kind:?}: closed after {after:?}, before header_read_timeout"
        );
    }
    // A request head sent just before the deadline is served.
    for kind in KINDS {
        let mut c = TcpStream::connect(five.addr(kind)).await.unwrap();
        tokio::time::sleep(HEAD.mul_f64(0.4)).await;
        c.write_all(five.legit_head(kind, 1).as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).await.unwrap();
        assert!(
            buf.starts_with(b"HTTP/1.1 200"),
            "{kind:?}: {}",
            String::from_utf8_lossy(&buf)
        );
    }
    five.sidecar.stop().await;
}

/// `max_connections` sockets per listener held by an attacker doing `how`:
/// legitimate clients are refused while they are held, and served again within
/// `header_read_timeout` (the attack's sockets are closed by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_clients_are_served_again_after_an_exhaustion_attack() {
    const CAP: usize = 12;
    let five = Five::start(&format!("max_connections = {CAP}\n")).await;
    let variants: Vec<(&str, Attack)> = vec![
        ("nothing", Attack::Send(Vec::new())),
        ("preface prefix", Attack::Send(PREFACE[..10].to_vec())),
        ("preface + SETTINGS", Attack::Send(h2(&[settings_ack()]))),
        (
            "h1 head without end",
            Attack::Send(b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec()),
        ),
        (
            "mixed, with PINGs",
            Attack::Pings(h2(&[settings_ack()]), Duration::from_millis(200)),
        ),
    ];
    let mut n = 0;
    for kind in KINDS {
        for (name, how) in &variants {
            let addr = five.addr(kind);
            let started = Instant::now();
            // The attack's connections are made before any legitimate one,
            // so the listener accepts them first (in order) and is full.
            let mut held = Vec::new();
            for _ in 0..CAP {
                let c = TcpStream::connect(addr).await.unwrap();
                held.push(tokio::spawn(attack_on(
                    c,
                    Instant::now(),
                    how.clone(),
                    Duration::from_secs(30),
                )));
            }
            // The cap is reached: a legitimate client is turned away.
            let mut refused = false;
            for _ in 0..50 {
                n += 1;
                if !five.served(kind, n).await {
                    refused = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                refused,
                "{kind:?} / {name}: the attack never filled the listener"
            );
            // Served again within header_read_timeout of the attack's start.
            loop {
                n += 1;
                if five.served(kind, n).await {
                    break;
                }
                assert!(
                    started.elapsed() < HEAD + SLACK,
                    "{kind:?} / {name}: still locked out after {:?}",
                    started.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for h in held {
                let closed = h.await.unwrap();
                assert!(
                    closed.is_some_and(|c| c <= HEAD + SLACK),
                    "{kind:?} / {name}: an attack socket was closed after {closed:?}"
                );
            }
        }
    }
    five.sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attack_that_stops_frees_the_listener_at_once() {
    const CAP: usize = 8;
    let five = Five::start(&format!("max_connections = {CAP}\n")).await;
    for kind in KINDS {
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(TcpStream::connect(five.addr(kind)).await.unwrap());
        }
        let mut refused = false;
        for n in 0..50 {
            if !five.served(kind, n).await {
                refused = true;
                break;
            }
        }
        assert!(refused, "{kind:?}: the attack never filled the listener");
        let stopped = Instant::now();
        drop(held);
        let mut n = 100;
        while !five.served(kind, n).await {
            n += 1;
            assert!(
                stopped.elapsed() < HEAD / 2,
                "{kind:?}: not served {:?} after the attack stopped",
                stopped.elapsed()
            );
        }
    }
    five.sidecar.stop().await;
}

/// An HTTP/2 client connection (prior knowledge) to `addr`: the request sender,
/// and a task that ends when the sidecar closes the connection (returns when).
async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Instant>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let ended = tokio::spawn(async move {
        let _ = conn.await;
        Instant::now()
    });
    (sender, ended)
}

fn h2_get(five: &Five, kind: Kind, path: &str) -> http::Request<Empty<Bytes>> {
    let uri = match kind {
        Kind::ForwardProxy => format!("http://{}{path}", five.echo.addr),
        _ => format!("http://x{path}"),
    };
    http::Request::get(uri).body(Empty::new()).unwrap()
}

fn ok_path(kind: Kind) -> &'static str {
    match kind {
        Kind::Inbound => "/public/h2",
        Kind::Outbound | Kind::ForwardProxy => "/h2",
        Kind::Admin | Kind::Issuer => "/healthz",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_idle_timeout() {
    let five = Five::start("").await;
    for kind in KINDS {
        let (mut sender, ended) = h2_client(five.addr(kind)).await;
        // Several requests, each keeping the connection in use.
        let mut last = Instant::now();
        for _ in 0..3 {
            let resp = sender
                .send_request(h2_get(&five, kind, ok_path(kind)))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{kind:?}");
            resp.into_body().collect().await.unwrap();
            last = Instant::now();
        }
        let closed_at = tokio::time::timeout(IDLE + SLACK, ended)
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: an idle HTTP/2 connection stayed open"))
            .unwrap();
        let idle = closed_at - last;
        assert!(
            idle >= IDLE.mul_f64(0.9) && idle <= IDLE + SLACK,
            "{kind:?}: closed after {idle:?} idle (idle_timeout {IDLE:?})"
        );
    }
    five.sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_http2_connection_is_not_cut_by_the_idle_timeout() {
    let five = Five::start("").await;
    for kind in [Kind::Outbound, Kind::ForwardProxy, Kind::Inbound] {
        let (mut sender, mut ended) = h2_client(five.addr(kind)).await;
        let path = "/stream-out/300000";
        // The echo holds its answer back after the first 64 KiB: longer than
        // idle_timeout and header_read_timeout together.
        let resp = sender
            .send_request(h2_get(&five, kind, path))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{kind:?}");
        let mut body = resp.into_body();
        let mut got = 0usize;
        while got < 64 * 1024 {
            let f = body.frame().await.unwrap().unwrap();
            got += f.data_ref().map_or(0, |d| d.len());
        }
        let held = IDLE + HEAD + Duration::from_millis(500);
        assert!(
            tokio::time::timeout(held, &mut ended).await.is_err(),
            "{kind:?}: the connection was closed while its response was streaming"
        );
        five.echo.release();
        while let Some(f) = body.frame().await {
            got += f.unwrap().data_ref().map_or(0, |d| d.len());
        }
        assert_eq!(got, 300_000, "{kind:?}: the whole answer arrived");
        // Now idle: closed.
        tokio::time::timeout(IDLE + SLACK, ended)
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: stayed open once idle"))
            .unwrap();
    }
    five.sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_still_closed_after_header_read_timeout() {
    let five = Five::start("").await;
    for kind in KINDS {
        let mut c = TcpStream::connect(five.addr(kind)).await.unwrap();
        let head = five
            .legit_head(kind, 7)
            .replace("Connection: close\r\n", "");
        c.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200", "{kind:?}");
        let answered = Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(HEAD + SLACK, c.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: an idle keep-alive connection stayed open"))
            .unwrap();
        assert!(
            answered.elapsed() >= HEAD.mul_f64(0.9),
            "{kind:?}: closed too early"
        );
    }
    five.sidecar.stop().await;
}

/// How a request is half sent when its listener is removed: the bytes before
/// the reload, the bytes after it.
fn half_sent(five: &Five, kind: Kind, n: usize) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let head = five.legit_head(kind, n).replace("/legit/", "/half/");
    let (a, b) = head.split_at(head.len() - 2);
    let mut block = request_block();
    // `:path /half/N` instead of `/`.
    block[2] = 0x04;
    let path = format!("/half/{n}");
    block.splice(3..3, std::iter::once(path.len() as u8).chain(path.bytes()));
    let (first, rest) = block.split_at(3);
    vec![
        (
            "h1: head without its last CRLF",
            a.as_bytes().to_vec(),
            b.as_bytes().to_vec(),
        ),
        (
            "h1: request line only",
            head.lines().next().unwrap().as_bytes().to_vec(),
            head.as_bytes()[head.find("\r\n").unwrap()..].to_vec(),
        ),
        (
            "h2: HEADERS without END_HEADERS, then CONTINUATION",
            h2(&[settings_ack(), frame(0x1, 0x1, 1, first)]),
            frame(0x9, 0x4, 1, rest),
        ),
    ]
}

/// The answer's status: `Some(503)` etc., `None` if the connection closed
/// without one.
async fn answer_status(c: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(HEAD + SLACK, c.read_to_end(&mut buf)).await;
    if buf.starts_with(b"HTTP/1.1 ") {
        return String::from_utf8_lossy(&buf[9..12]).parse().ok();
    }
    // HTTP/2: the first HEADERS frame on stream 1; `:status` 200 is static
    // entry 8, 503 a literal (Huffman-coded `503`) with that name.
    let mut at = 0;
    while at + 9 <= buf.len() {
        let len =
            usize::from(buf[at]) << 16 | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]);
        let (kind, stream) = (
            buf[at + 3],
            u32::from_be_bytes(buf[at + 5..at + 9].try_into().unwrap()),
        );
        let payload = &buf[at + 9..(at + 9 + len).min(buf.len())];
        if kind == 0x1 && stream == 1 {
            return if payload.starts_with(&[0x48, 0x83, 0x6c, 0x0c, 0xff]) {
                Some(503)
            } else if payload.starts_with(&[0x88]) {
                Some(200)
            } else {
                Some(0)
            };
        }
        at += 9 + len;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_half_sent_when_a_reload_removes_its_listener_is_refused() {
    let five = Five::start("").await;
    let kinds = [Kind::Inbound, Kind::Outbound, Kind::ForwardProxy];
    // In flight at the reload: a response still streaming (finishes).
    let (mut sender, _ended) = h2_client(five.addr(Kind::Outbound)).await;
    let resp = sender
        .send_request(h2_get(&five, Kind::Outbound, "/stream-out/200000"))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    let mut got = first.data_ref().map_or(0, |d| d.len());
    // And a keep-alive connection whose next head is half sent.
    let mut half = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        for (name, before, after) in half_sent(&five, kind, i * 10) {
            let mut c = TcpStream::connect(five.addr(kind)).await.unwrap();
            c.write_all(&before).await.unwrap();
            half.push((kind, name, c, after));
        }
        let mut c = TcpStream::connect(five.addr(kind)).await.unwrap();
        let head = five
            .legit_head(kind, 99)
            .replace("Connection: close\r\n", "");
        c.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        let next = five.legit_head(kind, 98).replace("/legit/", "/half/");
        let (a, b) = next.split_at(10);
        c.write_all(a.as_bytes()).await.unwrap();
        half.push((
            kind,
            "h1: the next head on a keep-alive connection",
            c,
            b.as_bytes().to_vec(),
        ));
    }
    let before = five.echo.seen().len();
    let reduced =
        m2m_sidecar::config::load_str(&five.reduced, m2m_sidecar::config::Format::Toml).unwrap();
    let changes = five.sidecar.handle.reload(reduced).await.unwrap();
    assert!(changes.iter().any(|c| c.contains("removed")), "{changes:?}");
    for (_, _, c, after) in &mut half {
        let _ = c.write_all(after).await;
    }
    let answers =
        futures_util::future::join_all(half.iter_mut().map(|(_, _, c, _)| answer_status(c))).await;
    let mut failures = Vec::new();
    for ((kind, name, _, _), status) in half.iter().zip(answers) {
        // A first request is answered 503; an idle keep-alive connection is
        // closed (hyper closes those at once on a graceful shutdown).
        let keep_alive = name.contains("keep-alive");
        match status {
            Some(503) => {}
            None if keep_alive => {}
            other => failures.push(format!("{kind:?} / {name}: answered {other:?}")),
        }
    }
    // Nothing half sent before the reload reached the service.
    let forwarded: Vec<String> = five.echo.seen()[before..]
        .iter()
        .map(|s| s.uri.clone())
        .filter(|u| u.contains("/half/"))
        .collect();
    assert!(
        forwarded.is_empty(),
        "forwarded after the reload: {forwarded:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // What was in flight finishes.
    five.echo.release();
    while let Some(f) = body.frame().await {
        got += f.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(got, 200_000, "the in-flight response finished");
    five.sidecar.stop().await;
}

#[test]
fn idle_timeout_is_a_validated_limit() {
    use m2m_sidecar::config::{Format, load_str};
    let base = "[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\n";
    let ok = load_str(&format!("{base}idle_timeout = \"90s\"\n"), Format::Toml).unwrap();
    assert_eq!(ok.limits.idle_timeout, Duration::from_secs(90));
    let default = load_str(base, Format::Toml).unwrap();
    assert_eq!(default.limits.idle_timeout, Duration::from_secs(60));
    for bad in ["\"0s\"", "\"soon\"", "\"-1s\"", "\"400days\"", "\"\""] {
        let errors = load_str(&format!("{base}idle_timeout = {bad}\n"), Format::Toml)
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"))
            .to_string();
        assert!(errors.contains("limits.idle_timeout"), "{bad}: {errors}");
    }
}

/// Read HTTP/2 frames from `rd` until a HEADERS frame on stream 1 (the answer).
async fn until_answer(rd: &mut tokio::net::tcp::OwnedReadHalf) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut at = 0;
        while at + 9 <= buf.len() {
            let len = (usize::from(buf[at]) << 16)
                | (usize::from(buf[at + 1]) << 8)
                | usize::from(buf[at + 2]);
            if buf[at + 3] == 0x1 && buf[at + 5..at + 9] == [0, 0, 0, 1] {
                return;
            }
            at += 9 + len;
        }
        let n = rd.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before answering");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_ignores_goaway_is_closed_after_idle_timeout() {
    // One whole request, then PINGs forever, never acknowledging the
    // sidecar's GOAWAY and PING: closed idle_timeout after the answer, plus
    // the one-second grace.
    let five = Five::start("").await;
    let runs = KINDS.map(|kind| {
        let addr = five.addr(kind);
        async move {
            let c = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = c.into_split();
            let request = frame(0x1, 0x5, 1, &request_block());
            wr.write_all(&h2(&[settings_ack(), request])).await.unwrap();
            tokio::time::timeout(Duration::from_secs(10), until_answer(&mut rd))
                .await
                .unwrap_or_else(|_| panic!("{kind:?}: no answer"));
            let answered = Instant::now();
            let pinger = tokio::spawn(async move {
                for n in 0u8.. {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if wr.write_all(&ping(n)).await.is_err() {
                        break;
                    }
                }
            });
            let closed = tokio::time::timeout(IDLE + SLACK + Duration::from_secs(2), async {
                let mut buf = [0u8; 4096];
                while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
                answered.elapsed()
            })
            .await;
            pinger.abort();
            (kind, closed)
        }
    });
    for (kind, closed) in futures_util::future::join_all(runs).await {
        let after = closed.unwrap_or_else(|_| panic!("{kind:?}: still open"));
        assert!(
            after >= IDLE.mul_f64(0.9) && after <= IDLE + SLACK + Duration::from_secs(1),
            "{kind:?}: closed {after:?} after the answer"
        );
    }
    five.sidecar.stop().await;
}
