//! Bodies stream both ways without buffering; a stalled one is cut.

use super::*;

#[tokio::test]
async fn streams_a_50_mb_request_body_without_buffering() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    });
    let body = StreamBody::new(stream);
    let c: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/stream-in", sidecar.outbound("orders")))
        .body(body)
        .unwrap();
    let pending = tokio::spawn(c.request(req));
    const MB: usize = 1024 * 1024;
    // The first megabyte reaches the upstream while the rest is not even sent:
    // a proxy that buffered the whole body would never let it through.
    tx.send(Bytes::from(vec![b'a'; MB])).await.unwrap();
    until(LONG, "the first MB at the upstream", async || {
        echo.received() >= MB as u64
    })
    .await;
    for _ in 1..50 {
        tx.send(Bytes::from(vec![b'b'; MB])).await.unwrap();
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["body_len"], 50 * MB);
    sidecar.stop().await;
}

#[tokio::test]
async fn streams_the_response_body() {
    let echo = Echo::start().await;
    let (_idp, sidecar) = setup(&echo.url()).await;
    let resp = client()
        .get(format!(
            "{}/stream-out/{}",
            sidecar.outbound("orders"),
            8 * 1024 * 1024
        ))
        .send()
        .await
        .unwrap();
    let mut resp = resp;
    // The first chunk arrives while the upstream still holds the rest back.
    let first = tokio::time::timeout(LONG, resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    let total = first.len() + drain_released(&mut resp, &echo).await;
    assert_eq!(total, 8 * 1024 * 1024);
    sidecar.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_cut_after_body_idle_timeout() {
    let echo = Echo::start().await;
    let idp = TokenServer::start().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound_with(
            "orders",
            &echo.url(),
            "orders",
            "body_idle_timeout = \"300ms\"",
        );
    let sidecar = Sidecar::start(&config).await;
    // Response: the upstream sends one chunk, then nothing.
    let url = format!("{}/stream-out/{}", sidecar.outbound("orders"), 1024 * 1024);
    let mut resp = client().get(&url).send().await.unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    let rest = tokio::time::timeout(LONG, async {
        loop {
            match resp.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the stalled response is cut, not held");
    assert!(
        rest.is_err(),
        "the body ends with an error, not as if complete"
    );

    // Request: the app sends one chunk of its upload, then nothing.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    });
    let c: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/stream-in", sidecar.outbound("orders")))
        .body(StreamBody::new(stream))
        .unwrap();
    let pending = tokio::spawn(c.request(req));
    tx.send(Bytes::from_static(b"first")).await.unwrap();
    let answer = tokio::time::timeout(LONG, pending)
        .await
        .expect("the stalled upload is cut, not held");
    drop(tx);
    if let Ok(Ok(resp)) = answer {
        assert_ne!(
            resp.status(),
            200,
            "a cut upload is not answered as complete"
        );
    }
    sidecar.stop().await;
}
