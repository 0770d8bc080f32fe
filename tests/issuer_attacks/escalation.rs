//! §2: no privilege escalation through any route, and `apps:write` alone
//! reads nothing.

use super::*;

#[tokio::test]
async fn no_escalation_through_any_route() {
    let s = Iss::start(api()).await;
    let m = s.mgmt();
    let key = support::jwt::TestKey::es256("evil");
    let pem = key.public_pem();
    let jwk_doc = serde_json::json!({"keys": [key.jwk()]});
    let before_root = s.app("root").await;
    let before_gateway = s.app("gateway").await;
    for caller in ["writer", "ops"] {
        let token = s.mgmt_token(caller).await;
        let mine = if caller == "writer" {
            vec!["apps:write"]
        } else {
            vec!["apps:read", "apps:write"]
        };
        let with = |extra: &[&str]| {
            let mut v = mine.clone();
            v.extend_from_slice(extra);
            serde_json::json!({ m.clone(): v })
        };
        let mut cases: Vec<(String, &str, String, Option<String>)> = Vec::new();
        let mut case =
            |what: &str, method: &'static str, path: String, body: Option<serde_json::Value>| {
                cases.push((what.to_owned(), method, path, body.map(json)));
            };
        for extra in [
            vec!["keys:write"],
            vec!["apis:write"],
            vec!["apis:read"],
            vec!["tokens:introspect"],
            ALL_MGMT.to_vec(),
        ] {
            case(
                &format!("PUT own grants + {extra:?}"),
                "PUT",
                format!("api/v1/apps/{caller}/grants"),
                Some(with(&extra)),
            );
            case(
                &format!("PATCH own grants + {extra:?}"),
                "PATCH",
                format!("api/v1/apps/{caller}"),
                Some(serde_json::json!({"grants": with(&extra)})),
            );
            case(
                &format!("POST app with {extra:?}"),
                "POST",
                "api/v1/apps".into(),
                Some(
                    serde_json::json!({"name": "evil", "client_id": "evil", "grants": {m.clone(): extra}}),
                ),
            );
            case(
                &format!("PUT billing's grants + {extra:?}"),
                "PUT",
                "api/v1/apps/billing/grants".into(),
                Some(serde_json::json!({m.clone(): extra, ORDERS: ["orders:read"]})),
            );
        }
        if caller == "writer" {
            // The writer lacks apps:read, which ops holds.
            case(
                "PUT own grants + apps:read",
                "PUT",
                "api/v1/apps/writer/grants".into(),
                Some(with(&["apps:read"])),
            );
            case(
                "PATCH ops",
                "PATCH",
                "api/v1/apps/ops".into(),
                Some(serde_json::json!({"name": "x"})),
            );
            case("block ops", "POST", "api/v1/apps/ops/block".into(), None);
            case("delete ops", "DELETE", "api/v1/apps/ops".into(), None);
            case(
                "rotate ops",
                "POST",
                "api/v1/apps/ops/secrets".into(),
                Some(serde_json::json!({})),
            );
        }
        for target in ["root", "%72oot", "r%6F%6Ft", "gateway", "%67ateway"] {
            case(
                "rename",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"name": "pwned"})),
            );
            case(
                "register a key",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"public_key_pem": pem})),
            );
            case(
                "register a JWKS",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"jwks": jwk_doc})),
            );
            case(
                "PATCH blocked",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"blocked": true})),
            );
            case(
                "reduce grants",
                "PUT",
                format!("api/v1/apps/{target}/grants"),
                Some(serde_json::json!({})),
            );
            case(
                "reduce grants by PATCH",
                "PATCH",
                format!("api/v1/apps/{target}"),
                Some(serde_json::json!({"grants": {}})),
            );
            case("block", "POST", format!("api/v1/apps/{target}/block"), None);
            case(
                "unblock",
                "POST",
                format!("api/v1/apps/{target}/unblock"),
                None,
            );
            case(
                "rotate",
                "POST",
                format!("api/v1/apps/{target}/secrets"),
                None,
            );
            case(
                "rotate with grace",
                "POST",
                format!("api/v1/apps/{target}/secrets"),
                Some(serde_json::json!({"grace": "1h"})),
            );
            case("delete", "DELETE", format!("api/v1/apps/{target}"), None);
        }
        assert!(cases.len() > 60, "{}", cases.len());
        for (what, method, path, body) in &cases {
            let (status, headers, v) = s.call(method, path, Some(&token), body.as_deref()).await;
            assert_eq!(status, 403, "{caller}: {what}: {method} {path}: {v}");
            assert_eq!(v["error"], "insufficient_scope", "{caller}: {what}");
            assert!(
                v.get("client_secret").is_none(),
                "{caller}: {what}: no secret handed out"
            );
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .contains("insufficient_scope"),
                "{caller}: {what}"
            );
        }
        // Nothing changed: root and gateway as before and still working,
        // the caller's own grants as before, no app created.
        assert_eq!(s.app("root").await, before_root, "{caller}");
        assert_eq!(s.app("gateway").await, before_gateway, "{caller}");
        assert!(s.app("evil").await.is_null());
        assert_eq!(
            s.app(caller).await["grants"][&m],
            serde_json::json!(mine),
            "{caller}"
        );
        assert_eq!(s.app("billing").await["grants"].get(&m), None);
        let _ = s.mgmt_token("root").await;
        assert_eq!(s.introspect("gateway", SECRET, &token).await.0, 200);
        if caller == "writer" {
            assert_eq!(s.app("ops").await["name"], "ops");
        }

        // What the caller may do, it can: the rule is not "refuse everything".
        let id = format!("{caller}-child");
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(&token),
                Some(&json(serde_json::json!({"name": id, "client_id": id, "grants": {m.clone(): mine, ORDERS: ["orders:write"]}}))),
            )
            .await;
        assert_eq!(status, 201, "{caller}: {v}");
        for (method, path) in [
            ("POST", format!("api/v1/apps/{id}/block")),
            ("POST", format!("api/v1/apps/{id}/unblock")),
            ("POST", format!("api/v1/apps/{id}/secrets")),
            ("POST", "api/v1/apps/billing/block".to_owned()),
            ("POST", "api/v1/apps/billing/unblock".to_owned()),
        ] {
            let (status, _, v) = s.call(method, &path, Some(&token), None).await;
            assert!(
                status == 200 || status == 201,
                "{caller}: {method} {path}: {v}"
            );
        }
        // Delete and create again: only with what the caller has.
        let (status, _, _) = s
            .call("DELETE", &format!("api/v1/apps/{id}"), Some(&token), None)
            .await;
        assert_eq!(status, 204);
        let (status, _, _) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(&token),
                Some(&json(serde_json::json!({"name": id, "client_id": id, "grants": {m.clone(): ALL_MGMT}}))),
            )
            .await;
        assert_eq!(status, 403, "{caller}: re-created with more");
        assert!(s.app(&id).await.is_null());
    }
    s.stop().await;
}

/// `apps:write` alone changes apps but reads none: a change answers only the
/// app's id, and a refusal for an app holding more says nothing of its scopes.
#[tokio::test]
async fn apps_write_alone_reads_nothing() {
    let s = Iss::start(api()).await;
    let writer = s.mgmt_token("writer").await;
    let ops = s.mgmt_token("ops").await;
    let grants = serde_json::json!({ORDERS: ["orders:read"]});
    for (method, path, body) in [
        (
            "PATCH",
            "api/v1/apps/billing",
            Some(json(serde_json::json!({}))),
        ),
        (
            "PATCH",
            "api/v1/apps/billing",
            Some(json(serde_json::json!({"name": "billing"}))),
        ),
        (
            "PUT",
            "api/v1/apps/billing/grants",
            Some(json(grants.clone())),
        ),
        ("POST", "api/v1/apps/billing/unblock", None),
    ] {
        let (status, _, v) = s.call(method, path, Some(&writer), body.as_deref()).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert_eq!(
            v,
            serde_json::json!({"client_id": "billing"}),
            "{method} {path}"
        );
        // A caller that may read gets the record.
        let (status, _, v) = s.call(method, path, Some(&ops), body.as_deref()).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert!(v.get("grants").is_some(), "{method} {path}: {v}");
    }
    // Refused for an app holding management scopes the writer lacks, without naming them.
    let (status, headers, v) = s
        .call(
            "PATCH",
            "api/v1/apps/root",
            Some(&writer),
            Some(&json(serde_json::json!({}))),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    let text = format!("{v} {headers:?}");
    for scope in ALL_MGMT.iter().filter(|s| **s != "apps:write") {
        assert!(!text.contains(scope), "{scope} named: {text}");
    }
}
