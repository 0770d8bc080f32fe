//! HTTP/2 frames written by hand, and reading the answer to one.

use super::*;

pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: 9-byte header, then `payload`.
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub(crate) fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[])
}

pub(crate) fn settings_ack() -> Vec<u8> {
    frame(0x4, 0x1, 0, &[])
}

pub(crate) fn ping(n: u8) -> Vec<u8> {
    frame(0x6, 0, 0, &[n; 8])
}

pub(crate) fn window_update() -> Vec<u8> {
    frame(0x8, 0, 0, &1_000_000u32.to_be_bytes())
}

/// HPACK for `GET http://x/`: `:method GET`, `:scheme http`, `:path /` (static
/// table), `:authority x` (literal, indexed name).
pub(crate) fn request_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x84, 0x01, 0x01, b'x']
}

/// Preface, SETTINGS and `parts`, concatenated.
pub(crate) fn h2(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(settings());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// The answer's status: `Some(503)` etc., `None` if the connection closed
/// without one.
pub(crate) async fn answer_status(c: &mut TcpStream) -> Option<u16> {
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

/// Read HTTP/2 frames from `rd` until a HEADERS frame on stream 1 (the answer).
pub(crate) async fn until_answer(rd: &mut tokio::net::tcp::OwnedReadHalf) {
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
