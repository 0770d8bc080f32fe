//! Methods are case-sensitive and forms refused; `Host` must be there once.

use super::*;

#[tokio::test]
async fn methods_are_case_sensitive_and_forms_refused() {
    let s = inbound("authenticated", "", RawUpstream::start().await).await;
    let read_only = bearer(&s.token("orders:read"));
    for method in [
        "post", "Post", "pOST", "get", "Get", "put", "delete", "patch", "options", "head", "trace",
    ] {
        let answer = s.raw(method, "/orders/1", &read_only).await;
        assert_eq!(status(&answer), 400, "{method}: {answer}");
    }
    // HEAD is covered by a protecting GET rule.
    let none = bearer(&s.token("other"));
    let answer = s.raw("HEAD", "/orders/1", &none).await;
    assert_eq!(status(&answer), 403, "{answer}");
    // CONNECT and OPTIONS *.
    let answer = s.raw("CONNECT", "svc:80", &read_only).await;
    assert_eq!(status(&answer), 405, "{answer}");
    let answer = s.raw("OPTIONS", "*", &read_only).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(s.up.requests().is_empty());
    // Upper-case POST is what a POST rule sees.
    let answer = s
        .raw(
            "POST",
            "/orders/1",
            &format!("{read_only}Content-Length: 0\r\n"),
        )
        .await;
    assert_eq!(status(&answer), 403, "{answer}");
    // Unknown methods are not standard ones: they pass to the rules as they are.
    let answer = s.raw("PURGE", "/orders/1", &read_only).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].method(), "PURGE");
}

#[tokio::test]
async fn host_must_be_there_once() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    for req in [
        "GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a\r\nhost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: user:pw@a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a:99999\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /public/x HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n".to_owned(),
        "GET ftp://a/public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET http://a:99999/public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "GET http://svc/public/x HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let answer = send(s.addr, req.as_bytes()).await;
        assert_eq!(status(&answer), 400, "{req:?}: {answer}");
    }
    assert!(s.up.requests().is_empty());
    // HTTP/1.0 needs none.
    let answer = send(s.addr, b"GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&answer), 200, "{answer}");
}
