//! §2: metric labels never come from requests, and the issuer's metrics
//! name no client id.

use super::*;

#[tokio::test]
async fn metric_labels_never_come_from_requests() {
    let s = Iss::start(api()).await;
    let (_, before) = support::http::get(&format!("{}metrics", s.url)).await;
    let root = s.mgmt_token("root").await;
    let mut calls = Vec::new();
    for i in 0..300 {
        let method = format!("INVENTED{i}");
        let path = format!("api/v1/apps/x{i}");
        let (s, root) = (&s, root.clone());
        calls.push(async move {
            let bearer = (i % 2 == 0).then_some(root.as_str());
            s.call(&method, &path, bearer, None).await.0
        });
    }
    // 16 at a time: a loaded machine answers them all within the client's timeout.
    use futures_util::StreamExt as _;
    let statuses: Vec<u16> = futures_util::stream::iter(calls)
        .buffer_unordered(16)
        .collect()
        .await;
    for status in statuses {
        assert!(status == 404 || status == 401, "{status}");
    }
    // Invented client ids, audiences, grant types and scopes at the token endpoint.
    let tokens = (0..100).map(|i| {
        let s = &s;
        async move {
            let id = format!("invented-client-{i}");
            let aud = format!("https://invented-{i}.example");
            s.token(&id, SECRET, &aud).await;
            let grant = format!("invented-grant-{i}");
            let scope = format!("invented-scope-{i}");
            s.form(
                "oauth/token",
                &[
                    ("grant_type", grant.as_str()),
                    ("client_id", "billing"),
                    ("client_secret", SECRET),
                    ("audience", ORDERS),
                    ("scope", scope.as_str()),
                ],
            )
            .await;
        }
    });
    futures_util::future::join_all(tokens).await;
    let (_, after) = support::http::get(&format!("{}metrics", s.url)).await;
    assert!(after.contains("method=\"other\""), "{after}");
    for invented in ["INVENTED", "invented-client", "invented-"] {
        assert!(
            !after.contains(invented),
            "{invented} in /metrics:\n{after}"
        );
    }
    let series = after
        .lines()
        .filter(|l| l.starts_with("m2m_issuer_management_calls_total{"))
        .count();
    assert!(series <= 6, "{series} management series:\n{after}");
    assert!(
        after.len() < before.len() + 4096,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    s.stop().await;
}

/// The issuer's `/metrics` is unauthenticated: after tokens were issued to
/// every kind of app (admin apps on the management audience, API clients, an
/// app created at runtime, by secret in Basic, form and JSON), it names no
/// client id, so it tells an outsider neither which ids exist nor which are
/// admin apps. The issued count is there, by audience.
#[tokio::test]
async fn issuer_metrics_never_name_a_client_id() {
    let tenant = App::new("tenant-7f3a.quiet_app~x", SECRET)
        .named("Tenant")
        .orders(&["orders:read"]);
    let s = Iss::start(api().app(tenant)).await;
    let mgmt = s.mgmt();
    let (ids, orders, management) = tokens_for_every_kind_of_app(&s).await;
    let (status, text) = support::http::get(&format!("{}metrics", s.url)).await;
    assert_eq!(status, 200);
    assert!(!text.contains("client_id"), "{text}");
    for id in &ids {
        // As a label value; the longer (distinctive) ids anywhere at all.
        assert!(
            !text.contains(&format!("\"{id}\"")) && (id.len() < 10 || !text.contains(id.as_str())),
            "{id} in /metrics:\n{text}"
        );
    }
    // Every issued token is counted, by audience only.
    let line = |aud: &str| format!("m2m_issuer_tokens_issued_total{{audience=\"{aud}\"}}");
    assert_eq!(support::metric(&text, &line(ORDERS)), orders, "{text}");
    assert_eq!(support::metric(&text, &line(&mgmt)), management, "{text}");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("m2m_issuer_tokens_issued_total"))
        .collect();
    assert_eq!(series.len(), 2, "{series:?}");
    s.stop().await;
}

/// Tokens issued to every kind of app, in every way, and failures: the
/// client ids involved, and how many tokens were issued for the Orders API
/// and for the management API.
async fn tokens_for_every_kind_of_app(s: &Iss) -> (Vec<String>, u64, u64) {
    let mut ids: Vec<String> = ["root", "ops", "writer", "gateway", "billing"]
        .map(str::to_owned)
        .to_vec();
    ids.push("tenant-7f3a.quiet_app~x".into());
    let mut orders = 0;
    let mut management = 0;
    for id in ["root", "ops", "writer", "gateway"] {
        s.mgmt_token(id).await;
        management += 1;
    }
    for id in ["billing", "tenant-7f3a.quiet_app~x"] {
        s.orders_token(id, SECRET).await;
        orders += 1;
    }
    // An app created at runtime, with a generated id and secret.
    let root = s.mgmt_token("root").await;
    management += 1;
    let body = format!(
        r#"{{"name":"runtime app","grants":{{{}:["orders:read"]}}}}"#,
        quote(ORDERS)
    );
    let (status, _, app) = s
        .call("POST", "api/v1/apps", Some(&root), Some(&body))
        .await;
    assert_eq!(status, 201, "{app}");
    let created = app["client_id"].as_str().unwrap().to_owned();
    let created_secret = app["client_secret"].as_str().unwrap().to_owned();
    s.orders_token(&created, &created_secret).await;
    orders += 1;
    ids.push(created);
    // The other ways to authenticate: form body and Basic.
    let (status, _, v) = s
        .form(
            "oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "billing"),
                ("client_secret", SECRET),
                ("audience", ORDERS),
            ],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    orders += 1;
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .basic_auth("tenant-7f3a.quiet_app~x", Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&audience={}",
            form_urlencoded::byte_serialize(ORDERS.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    orders += 1;
    // Failures, of known and unknown ids, label nothing either.
    for id in ["billing", "root", "no-such-app-3c9d"] {
        let (status, _) = s.token(id, WRONG, ORDERS).await;
        assert_eq!(status, 401, "{id}");
    }
    ids.push("no-such-app-3c9d".into());
    (ids, orders, management)
}
