//! §2: no privilege escalation through any route, and `apps:write` alone
//! reads nothing.

use super::*;

/// A call an escalating caller tries: (what, method, path, JSON body).
type Case = (String, &'static str, String, Option<String>);

fn case(what: &str, method: &'static str, path: String, body: Option<serde_json::Value>) -> Case {
    (what.to_owned(), method, path, body.map(json))
}

/// `caller`, holding `mine` on the management API `m`, giving itself (or a
/// new app, or billing) more.
fn more_scopes(caller: &str, mine: &[&str], m: &str) -> Vec<Case> {
    let with = |extra: &[&str]| {
        let mut v = mine.to_vec();
        v.extend_from_slice(extra);
        serde_json::json!({ m: v })
    };
    let mut cases = Vec::new();
    for extra in [
        vec!["keys:write"],
        vec!["apis:write"],
        vec!["apis:read"],
        vec!["tokens:introspect"],
        ALL_MGMT.to_vec(),
    ] {
        cases.push(case(
            &format!("PUT own grants + {extra:?}"),
            "PUT",
            format!("api/v1/apps/{caller}/grants"),
            Some(with(&extra)),
        ));
        cases.push(case(
            &format!("PATCH own grants + {extra:?}"),
            "PATCH",
            format!("api/v1/apps/{caller}"),
            Some(serde_json::json!({"grants": with(&extra)})),
        ));
        cases.push(case(
            &format!("POST app with {extra:?}"),
            "POST",
            "api/v1/apps".into(),
            Some(serde_json::json!({"name": "evil", "client_id": "evil", "grants": {m: extra}})),
        ));
        cases.push(case(
            &format!("PUT billing's grants + {extra:?}"),
            "PUT",
            "api/v1/apps/billing/grants".into(),
            Some(serde_json::json!({m: extra, ORDERS: ["orders:read"]})),
        ));
    }
    if caller == "writer" {
        // The writer lacks apps:read, which ops holds.
        cases.push(case(
            "PUT own grants + apps:read",
            "PUT",
            "api/v1/apps/writer/grants".into(),
            Some(with(&["apps:read"])),
        ));
        cases.push(case(
            "PATCH ops",
            "PATCH",
            "api/v1/apps/ops".into(),
            Some(serde_json::json!({"name": "x"})),
        ));
        cases.push(case(
            "block ops",
            "POST",
            "api/v1/apps/ops/block".into(),
            None,
        ));
        cases.push(case("delete ops", "DELETE", "api/v1/apps/ops".into(), None));
        cases.push(case(
            "rotate ops",
            "POST",
            "api/v1/apps/ops/secrets".into(),
            Some(serde_json::json!({})),
        ));
    }
    cases
}

/// Changes to apps holding more than the caller: `root` and `gateway`, plain
/// or percent-encoded.
fn against_others(pem: &str, jwk_doc: &serde_json::Value) -> Vec<Case> {
    let mut cases = Vec::new();
    for target in ["root", "%72oot", "r%6F%6Ft", "gateway", "%67ateway"] {
        cases.push(case(
            "rename",
            "PATCH",
            format!("api/v1/apps/{target}"),
            Some(serde_json::json!({"name": "pwned"})),
        ));
        cases.push(case(
            "register a key",
            "PATCH",
            format!("api/v1/apps/{target}"),
            Some(serde_json::json!({"public_key_pem": pem})),
        ));
        cases.push(case(
            "register a JWKS",
            "PATCH",
            format!("api/v1/apps/{target}"),
            Some(serde_json::json!({"jwks": jwk_doc})),
        ));
        cases.push(case(
            "PATCH blocked",
            "PATCH",
            format!("api/v1/apps/{target}"),
            Some(serde_json::json!({"blocked": true})),
        ));
        cases.push(case(
            "reduce grants",
            "PUT",
            format!("api/v1/apps/{target}/grants"),
            Some(serde_json::json!({})),
        ));
        cases.push(case(
            "reduce grants by PATCH",
            "PATCH",
            format!("api/v1/apps/{target}"),
            Some(serde_json::json!({"grants": {}})),
        ));
        cases.push(case(
            "block",
            "POST",
            format!("api/v1/apps/{target}/block"),
            None,
        ));
        cases.push(case(
            "unblock",
            "POST",
            format!("api/v1/apps/{target}/unblock"),
            None,
        ));
        cases.push(case(
            "rotate",
            "POST",
            format!("api/v1/apps/{target}/secrets"),
            None,
        ));
        cases.push(case(
            "rotate with grace",
            "POST",
            format!("api/v1/apps/{target}/secrets"),
            Some(serde_json::json!({"grace": "1h"})),
        ));
        cases.push(case(
            "delete",
            "DELETE",
            format!("api/v1/apps/{target}"),
            None,
        ));
    }
    cases
}

#[tokio::test]
async fn no_escalation_through_any_route() {
    let s = Iss::start(api()).await;
    let m = s.mgmt();
    let key = support::jwt::TestKey::es256("evil");
    let pem = key.public_pem();
    let jwk_doc = serde_json::json!({"keys": [key.jwk()]});
    let before = [s.app("root").await, s.app("gateway").await];
    for caller in ["writer", "ops"] {
        let token = s.mgmt_token(caller).await;
        let mine = if caller == "writer" {
            vec!["apps:write"]
        } else {
            vec!["apps:read", "apps:write"]
        };
        let cases = [
            more_scopes(caller, &mine, &m),
            against_others(&pem, &jwk_doc),
        ]
        .concat();
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
        nothing_changed(&s, caller, &mine, &before, &token).await;
        what_it_may_do(&s, caller, &mine, &token).await;
    }
    s.stop().await;
}

/// Nothing changed: root and gateway as before and still working, the
/// caller's own grants as before, no app created.
async fn nothing_changed(
    s: &Iss,
    caller: &str,
    mine: &[&str],
    before: &[serde_json::Value; 2],
    token: &str,
) {
    let m = s.mgmt();
    assert_eq!(s.app("root").await, before[0], "{caller}");
    assert_eq!(s.app("gateway").await, before[1], "{caller}");
    assert!(s.app("evil").await.is_null());
    assert_eq!(
        s.app(caller).await["grants"][&m],
        serde_json::json!(mine),
        "{caller}"
    );
    assert_eq!(s.app("billing").await["grants"].get(&m), None);
    let _ = s.mgmt_token("root").await;
    assert_eq!(s.introspect("gateway", SECRET, token).await.0, 200);
    if caller == "writer" {
        assert_eq!(s.app("ops").await["name"], "ops");
    }
}

/// What the caller may do, it can: the rule is not "refuse everything".
async fn what_it_may_do(s: &Iss, caller: &str, mine: &[&str], token: &str) {
    let m = s.mgmt();
    let id = format!("{caller}-child");
    let (status, _, v) = s
        .call(
            "POST",
            "api/v1/apps",
            Some(token),
            Some(&json(serde_json::json!({"name": id, "client_id": id, "grants": {m.as_str(): mine, ORDERS: ["orders:write"]}}))),
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
        let (status, _, v) = s.call(method, &path, Some(token), None).await;
        assert!(
            status == 200 || status == 201,
            "{caller}: {method} {path}: {v}"
        );
    }
    // Delete and create again: only with what the caller has.
    let (status, _, _) = s
        .call("DELETE", &format!("api/v1/apps/{id}"), Some(token), None)
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = s
        .call(
            "POST",
            "api/v1/apps",
            Some(token),
            Some(&json(
                serde_json::json!({"name": id, "client_id": id, "grants": {m.as_str(): ALL_MGMT}}),
            )),
        )
        .await;
    assert_eq!(status, 403, "{caller}: re-created with more");
    assert!(s.app(&id).await.is_null());
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
