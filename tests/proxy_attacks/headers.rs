//! Header tricks never remove or forge identity: `Connection` nominating
//! protected headers, underscore variants, path overrides, two `Authorization`s.

use super::*;

#[tokio::test]
async fn header_tricks_never_remove_or_forge_identity() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    let token = s.token("orders:read");
    let auth = bearer(&token);
    for connection in [
        "x-m2m-client-id, x-m2m-scopes, x-m2m-subject",
        "X-M2M-Client-Id",
        "authorization",
        "Authorization, host",
        "close, x-m2m-scopes",
        "keep-alive, x_m2m_client_id",
    ] {
        s.up.clear();
        let headers = format!(
            "{auth}Connection: {connection}\r\nx_m2m_client_id: admin\r\nX_M2M_SCOPES: admin\r\nx-m2m_subject: root\r\nx-M2M-client-ID: forged\r\nx-m2m-actor: forged\r\n"
        );
        let answer = s.raw("GET", "/orders/1", &headers).await;
        assert_eq!(status(&answer), 200, "{connection}: {answer}");
        let got = &s.up.requests()[0];
        assert_eq!(
            got.header("x-m2m-client-id"),
            ["billing"],
            "{connection}: {}",
            got.head
        );
        assert_eq!(got.header("x-m2m-scopes"), ["orders:read"], "{connection}");
        assert_eq!(
            got.header("x-m2m-subject"),
            ["billing@client"],
            "{connection}"
        );
        assert_eq!(
            got.header("authorization"),
            [format!("Bearer {token}").as_str()]
        );
        assert_eq!(got.header("host"), ["svc"], "{connection}");
        let forged: Vec<_> = got
            .header_names()
            .into_iter()
            .filter(|n| {
                n.to_ascii_lowercase()
                    .replace('_', "-")
                    .starts_with("x-m2m-")
            })
            .filter(|n| !["x-m2m-client-id", "x-m2m-scopes", "x-m2m-subject"].contains(n))
            .collect();
        assert!(forged.is_empty(), "{connection}: {forged:?}");
    }
    on_public_routes(&s).await;
    a_second_authorization_is_refused(&s, &auth).await;
}

/// Path-override headers, the Host of absolute-form and underscore variants
/// on a public route.
async fn on_public_routes(s: &Inbound) {
    // Path-override headers never reach the service.
    s.up.clear();
    let answer = s
        .raw(
            "GET",
            "/public/x",
            "X-Original-URL: /admin/x\r\nx_rewrite_url: /admin/x\r\nX-REWRITE-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nx_http_method: DELETE\r\nX-Method-Override: PUT\r\n",
        )
        .await;
    assert_eq!(status(&answer), 200);
    let got = &s.up.requests()[0];
    assert!(
        got.header("x-original-url").is_empty()
            && got.header("x-rewrite-url").is_empty()
            && got.header("x_rewrite_url").is_empty()
            && got.header("x-http-method-override").is_empty()
            && got.header("x_http_method").is_empty()
            && got.header("x-method-override").is_empty(),
        "{}",
        got.head
    );
    // Absolute-form: Host comes from the target, never with user info.
    for (target, host) in [
        ("http://svc2/public/x", "svc2"),
        ("http://u:p@svc3:81/public/x", "svc3:81"),
    ] {
        s.up.clear();
        let answer = s.raw("GET", target, "").await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert_eq!(s.up.requests()[0].header("host"), [host], "{target}");
    }
    // Underscore variants never reach a public route either.
    s.up.clear();
    let answer = s
        .raw(
            "GET",
            "/public/x",
            "x_m2m_client_id: admin\r\nX-M2M-SCOPES: admin\r\n",
        )
        .await;
    assert_eq!(status(&answer), 200);
    let got = &s.up.requests()[0];
    assert!(
        got.header("x_m2m_client_id").is_empty() && got.header("x-m2m-scopes").is_empty(),
        "{}",
        got.head
    );
}

/// A second Authorization (forged after a valid one), in any order or case.
async fn a_second_authorization_is_refused(s: &Inbound, auth: &str) {
    s.up.clear();
    let forged = s.token("admin").replace('.', "x");
    for headers in [
        format!("{auth}Authorization: Bearer {forged}\r\n"),
        format!("Authorization: Bearer {forged}\r\n{auth}"),
        format!("{auth}authorization: Bearer {forged}\r\n"),
        format!("{auth}{auth}"),
    ] {
        let answer = s.raw("GET", "/orders/1", &headers).await;
        assert_eq!(status(&answer), 400, "{answer}");
        assert!(answer.contains("invalid_request"), "{answer}");
    }
    assert!(s.up.requests().is_empty());
}
