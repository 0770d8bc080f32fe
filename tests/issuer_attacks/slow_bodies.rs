//! §4 (issuer): request bodies must arrive within `body_read_timeout`.

use super::*;

/// How a slow client sends its body after the head.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// `Content-Length: 200` and nothing.
    Nothing,
    /// One byte every 300 ms, forever.
    Trickle,
    /// Half the body at once, then nothing.
    Half,
    /// Chunked, one chunk, never the last.
    Chunked,
}

async fn slow_request(
    port: u16,
    method: &str,
    path: &str,
    auth: &str,
    slow: Slow,
) -> (u16, Duration, bool) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let framing = match slow {
        Slow::Chunked => "Transfer-Encoding: chunked".to_owned(),
        _ => "Content-Length: 200".to_owned(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    );
    let started = tokio::time::Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        match slow {
            Slow::Nothing => {}
            Slow::Half => {
                let _ = wr.write_all(&[b'a'; 100]).await;
            }
            Slow::Chunked => {
                let _ = wr.write_all(b"5\r\nabcde\r\n").await;
            }
            Slow::Trickle => {
                for _ in 0..200 {
                    if wr.write_all(b"a").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        // Keep the write half open (no FIN) until the test is done.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    let limit = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(limit, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    writer.abort();
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, elapsed, closed)
}

#[tokio::test]
async fn slow_bodies_are_cut_off_with_408() {
    let s = Iss::around(|_| "[limits]\nbody_read_timeout = \"1s\"\n".into(), api()).await;
    let root = s.mgmt_token("root").await;
    let bearer = format!("Authorization: Bearer {root}\r\n");
    let targets: [(&str, &str, &str); 6] = [
        ("POST", "/oauth/token", ""),
        ("POST", "/oauth/introspect", ""),
        ("POST", "/oauth/revoke", ""),
        ("POST", "/api/v1/apps", &bearer),
        ("PUT", "/api/v1/apps/billing/grants", &bearer),
        ("POST", "/api/v1/apps/billing/secrets", &bearer),
    ];
    let mut runs = Vec::new();
    for (method, path, auth) in targets {
        for slow in [Slow::Nothing, Slow::Trickle, Slow::Half, Slow::Chunked] {
            let port = s.port;
            runs.push(async move {
                let (status, took, closed) = slow_request(port, method, path, auth, slow).await;
                (method, path, slow, status, took, closed)
            });
        }
    }
    for (method, path, slow, status, took, closed) in futures_util::future::join_all(runs).await {
        assert_eq!(status, 408, "{method} {path} {slow:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{method} {path} {slow:?}: {took:?}"
        );
        assert!(closed, "{method} {path} {slow:?}: the connection is closed");
    }
    // Nothing the slow requests carried took effect.
    assert_eq!(
        s.app("billing").await["grants"][ORDERS],
        serde_json::json!(["orders:read", "orders:write"])
    );
    s.orders_token("billing", SECRET).await;
    // A body that arrives in time is served.
    let (status, _, _) = s
        .call(
            "POST",
            "api/v1/apps",
            Some(&root),
            Some(r#"{"name":"in time"}"#),
        )
        .await;
    assert_eq!(status, 201);
    s.stop().await;

    // The knob: default 10 s, checked.
    let config = m2m_sidecar::config::load_str("", m2m_sidecar::config::Format::Toml).unwrap();
    assert_eq!(config.limits.body_read_timeout, Duration::from_secs(10));
    let err = m2m_sidecar::config::load_str(
        "[limits]\nbody_read_timeout = \"0s\"\n",
        m2m_sidecar::config::Format::Toml,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("limits.body_read_timeout"), "{err}");
}
