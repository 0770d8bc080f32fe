//! Hostile upstream answers: an unasked `101`, and both framings at once.

use super::*;

#[tokio::test]
async fn only_configured_upgrades_are_spliced() {
    // An upstream that switches to whatever it is asked for, asked or not.
    let up = RawUpstream::answering(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let s = inbound("deny", "", up).await;
    for upgrade in ["h2c", "H2C", "h2c, websocket", "websocket, h2c", "foo"] {
        s.up.clear();
        let headers = format!(
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
        );
        let answer = s.raw("GET", "/public/x", &headers).await;
        // The request went on as a plain one; the upstream's unasked 101 is a 502.
        assert_eq!(status(&answer), 502, "{upgrade}: {answer}");
        let got = s.up.requests();
        assert_eq!(got.len(), 1, "{upgrade}");
        assert_not_upgrading(&got[0], upgrade);
    }
    // A websocket request that the upstream answers with a switch to h2c.
    s.up.clear();
    let headers = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let answer = s.raw("GET", "/public/ws", headers).await;
    assert_eq!(status(&answer), 502, "{answer}");
    assert_eq!(s.up.requests()[0].header("upgrade"), ["websocket"]);
}

#[tokio::test]
async fn an_upstream_answer_with_both_framings_is_relayed_by_its_chunks() {
    let up = RawUpstream::answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let s = inbound("deny", "", up).await;
    let answer = s.raw("GET", "/public/x", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(!lower.contains("content-length: 3"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.contains("hello") && body.contains(" world"),
        "{answer}"
    );
}
