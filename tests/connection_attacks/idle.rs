//! `idle_timeout`: idle HTTP/2 connections closed (with a GOAWAY), busy
//! ones not, idle HTTP/1.1 keep-alive closed after `header_read_timeout`, and
//! a client ignoring GOAWAY closed all the same.

use super::*;
use frames::*;
use http_body_util::BodyExt as _;

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
    five.iss.sidecar.stop().await;
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
    five.iss.sidecar.stop().await;
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
    five.iss.sidecar.stop().await;
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
    five.iss.sidecar.stop().await;
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
