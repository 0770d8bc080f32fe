//! Hostile identity claims: control characters, invisible characters and
//! bad scope grammar are refused.

use super::*;

#[tokio::test]
async fn hostile_identity_claims_are_refused() {
    let s = inbound("authenticated", "", RawUpstream::start().await).await;
    let mut cases: Vec<Value> = Vec::new();
    for bad in [
        "a\r\nx-m2m-scopes: admin",
        "a\nb",
        "a\rb",
        "a\u{0}b",
        "a\tb",
        "a\u{7f}",
        "a\u{85}b",
        "a\u{1b}[31m",
        "",
        " ",
        "admin ",
        " admin",
        "a\u{2028}b",
        "a\u{200b}",
        "\u{feff}admin",
        "a\u{202e}b",
    ] {
        for claim in ["client_id", "sub"] {
            let mut m = serde_json::Map::new();
            m.insert(claim.to_owned(), json!(bad));
            cases.push(Value::Object(m));
        }
        cases.push(json!({ "client_id": null, "cid": bad }));
        // Beside a clean identity claim that would be used, too.
        cases.push(json!({ "cid": bad }));
        cases.push(json!({ "azp": bad }));
    }
    for scp in [
        json!(["orders:read admin"]),
        json!(["orders:read", "a\"b"]),
        json!(["orders:read", ""]),
        json!(["orders:read", "a\\b"]),
        json!(["caf\u{e9}"]),
        json!(["a\u{0}"]),
    ] {
        cases.push(json!({ "scope": null, "scp": scp }));
    }
    for scope in [
        "orders:read  admin",
        " orders:read",
        "orders:read ",
        "orders:read\tadmin",
        "a\"b",
        "orders:read\nadmin",
    ] {
        cases.push(json!({ "scope": scope }));
    }
    for extra in &cases {
        // `null` means: leave the claim out.
        let mut c = claims(ISS, AUD, "orders:read");
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }

        let token = s.key.sign(&s.key.header(), &c);
        let answer = s.raw("GET", "/anything", &bearer(&token)).await;
        assert_eq!(status(&answer), 401, "{extra}: {answer}");
    }
    assert!(s.up.requests().is_empty());
    // The control: a clean token passes with its identity.
    let answer = s
        .raw(
            "GET",
            "/anything",
            &bearer(&s.token_with(json!({"sub": "svc@clients"}))),
        )
        .await;
    assert_eq!(status(&answer), 200, "{answer}");
}
