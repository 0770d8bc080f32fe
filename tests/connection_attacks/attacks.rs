//! Connections that send nothing, part of a preface or of a request head, or
//! keep HTTP/2 alive with PINGs: closed within `header_read_timeout` on every
//! listener, and not before.

use super::*;
use frames::*;

/// What an attacking connection does after connecting.
#[derive(Clone, Debug)]
pub(crate) enum Attack {
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
pub(crate) async fn attack(addr: SocketAddr, how: Attack, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let c = TcpStream::connect(addr).await.unwrap();
    attack_on(c, started, how, limit).await
}

/// [`attack`] on a connection already made at `started`.
pub(crate) async fn attack_on(
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
    five.iss.sidecar.stop().await;
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
    five.iss.sidecar.stop().await;
}
