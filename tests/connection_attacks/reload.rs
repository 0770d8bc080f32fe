//! A request half sent when a reload removes its listener is refused;
//! what was in flight finishes.

use super::*;
use frames::*;
use http_body_util::BodyExt as _;

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
    let changes = five.iss.sidecar.handle.reload(reduced).await.unwrap();
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
    five.iss.sidecar.stop().await;
}
