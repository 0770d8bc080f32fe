//! §7: duplicate JSON keys and out-of-range durations are refused.

use super::*;

#[tokio::test]
async fn duplicate_json_keys_are_refused_at_every_level() {
    let s = Iss::start(api()).await;
    let root = s.mgmt_token("root").await;
    at_the_token_endpoint(&s).await;
    in_management_calls(&s, &root).await;
    s.orders_token("billing", SECRET).await;
    s.stop().await;
}

/// A token request repeating a key, whichever comes first: refused, no token.
async fn at_the_token_endpoint(s: &Iss) {
    let good =
        format!(r#""grant_type":"client_credentials","audience":"{ORDERS}","client_id":"billing""#);
    let bodies = [
        format!(r#"{{{good},"client_secret":"{WRONG}","client_secret":"{SECRET}"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","client_secret":"{WRONG}"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","client_\u0073ecret":"{WRONG}"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","audience":"https://other"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","client_id":"root"}}"#),
        format!(r#"{{{good},"client_secret":"{SECRET}","grant_type":"client_credentials"}}"#),
        format!(
            r#"{{{good},"client_secret":"{SECRET}","scope":"orders:read","scope":"orders:write"}}"#
        ),
    ];
    for body in &bodies {
        let resp = client()
            .post(format!("{}oauth/token", s.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, _, v) = answer(resp).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}: {v}"
        );
        assert!(v.get("access_token").is_none());
    }
    // The same without the repetition works.
    let resp = client()
        .post(format!("{}oauth/token", s.url))
        .header("content-type", "application/json")
        .body(format!(r#"{{{good},"client_secret":"{SECRET}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Management calls repeating a key, at any depth: refused, nothing changed.
async fn in_management_calls(s: &Iss, root: &str) {
    let m = s.mgmt();
    let before_apps = s.client_ids().await;
    let before_billing = s.app("billing").await;
    let cases: [(&str, &str, String); 10] = [
        (
            "POST",
            "api/v1/apps",
            r#"{"name":"a","name":"b","client_id":"dup1"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apps",
            r#"{"name":"a","client_id":"dup2","client_id":"dup3"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apps",
            format!(
                r#"{{"name":"a","client_id":"dup4","grants":{{"{ORDERS}":["orders:read"],"{ORDERS}":["orders:write"]}}}}"#
            ),
        ),
        (
            "POST",
            "api/v1/apps",
            r#"{"name":"a","client_id":"dup5","jwks":{"keys":[],"keys":[{"kty":"EC"}]}}"#.into(),
        ),
        (
            "PUT",
            "api/v1/apps/billing/grants",
            format!(r#"{{"{ORDERS}":["orders:read"],"{ORDERS}":[]}}"#),
        ),
        (
            "PUT",
            "api/v1/apps/billing/grants",
            format!(r#"{{"{m}":[],"{m}":["apps:write"]}}"#),
        ),
        (
            "PATCH",
            "api/v1/apps/billing",
            r#"{"blocked":false,"blocked":true}"#.into(),
        ),
        (
            "PATCH",
            "api/v1/apps/billing",
            r#"{"name":"x","n\u0061me":"y"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apps/billing/secrets",
            r#"{"grace":"1h","grace":"0s"}"#.into(),
        ),
        (
            "POST",
            "api/v1/apis",
            r#"{"name":"D","identifier":"https://d","identifier":"https://e"}"#.into(),
        ),
    ];
    for (method, path, body) in &cases {
        let (status, _, v) = s.call(method, path, Some(root), Some(body)).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{method} {path} {body}: {v}"
        );
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("duplicate key"),
            "{v}"
        );
    }
    assert_eq!(s.client_ids().await, before_apps);
    assert_eq!(s.app("billing").await, before_billing);
}

#[tokio::test]
async fn grace_periods_out_of_range_are_refused() {
    let s = Iss::start(api()).await;
    let root = s.mgmt_token("root").await;
    for grace in [
        "18446744073709551615s",
        "18446744073709551615",
        "31days",
        "2592001s",
        "100000h",
        "1000years",
        "-1s",
        "1e9s",
        "abc",
        "721h",
        "30days 1s",
    ] {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps/billing/secrets",
                Some(&root),
                Some(&json(serde_json::json!({ "grace": grace }))),
            )
            .await;
        assert_eq!(status, 400, "{grace}: {v}");
        assert!(v.get("client_secret").is_none());
        // Nothing rotated: the old secret still works.
        s.orders_token("billing", SECRET).await;
    }
    for body in [
        r#"{"grace":1}"#,
        r#"{"grace":null,"x":1}"#,
        r#"{"grace":["1h"]}"#,
    ] {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps/billing/secrets",
                Some(&root),
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{body}: {v}");
    }
    // The bound itself is accepted, and the old secret stays valid within it.
    let (status, _, v) = s
        .call(
            "POST",
            "api/v1/apps/billing/secrets",
            Some(&root),
            Some(&json(serde_json::json!({"grace": "30days"}))),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    s.orders_token("billing", SECRET).await;
    s.orders_token("billing", v["client_secret"].as_str().unwrap())
        .await;
    s.stop().await;
}
