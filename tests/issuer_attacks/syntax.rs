//! §2: how requests are read: schemes and media types case-insensitive,
//! client and API ids validated, path segments decoded.

use super::*;
use base64::Engine as _;

#[tokio::test]
async fn schemes_and_media_types_are_case_insensitive() {
    let s = Iss::start(api()).await;
    let root = s.mgmt_token("root").await;
    bearer_in_any_case(&s, &root).await;
    basic_in_any_case(&s, &root).await;
    json_in_any_case(&s, &root).await;
    s.stop().await;
}

/// `Bearer` in any case, with one space or more; anything else refused.
async fn bearer_in_any_case(s: &Iss, root: &str) {
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for sep in [" ", "  "] {
            let resp = client()
                .get(format!("{}api/v1/apps", s.url))
                .header("authorization", format!("{scheme}{sep}{root}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{scheme:?}{sep:?}");
        }
    }
    for bad in [
        format!("Bearerx {root}"),
        format!("Token {root}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Basic {root}"),
    ] {
        let resp = client()
            .get(format!("{}api/v1/apps", s.url))
            .header("authorization", bad.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
    }
    // Two Authorization headers: refused, even when the first is good.
    let resp = client()
        .get(format!("{}api/v1/apps", s.url))
        .header("authorization", format!("Bearer {root}"))
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

async fn basic_in_any_case(s: &Iss, root: &str) {
    // Basic at the token and introspection endpoints.
    let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
    let basic = |id: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(SECRET)))
    };
    for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
        let resp = client()
            .post(format!("{}oauth/token", s.url))
            .header("authorization", format!("{scheme} {}", basic("billing")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&audience={}",
                enc(ORDERS)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
        let resp = client()
            .post(format!("{}oauth/introspect", s.url))
            .header("authorization", format!("{scheme}  {}", basic("gateway")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={root}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
        let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(v["active"], true);
    }
}

async fn json_in_any_case(s: &Iss, root: &str) {
    // JSON in any case, with parameters.
    let body = json(
        serde_json::json!({"audience": ORDERS, "grant_type": "client_credentials", "client_id": "billing", "client_secret": SECRET}),
    );
    for media in [
        "application/json",
        "APPLICATION/JSON",
        "Application/Json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON;CHARSET=UTF-8",
        "application/json ; charset=\"utf-8\"",
    ] {
        let resp = client()
            .post(format!("{}oauth/token", s.url))
            .header("content-type", media)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{media}");
        let resp = client()
            .post(format!("{}api/v1/apps", s.url))
            .bearer_auth(root)
            .header("content-type", media)
            .body(json(serde_json::json!({"name": "m"})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{media}");
    }
}

const BAD_IDS: [&str; 17] = [
    "a/b",
    "a b",
    "a?b",
    "a#b",
    "café",
    "a\0b",
    "a\rb",
    "a\nb",
    "a\r\nX-Injected: 1",
    "",
    ".",
    "..",
    "a%2Fb",
    "a\\b",
    "a;b",
    "a:b",
    "a@b",
];

#[tokio::test]
async fn client_and_api_ids_are_validated_and_path_segments_decoded() {
    let s = Iss::start(api()).await;
    let root = s.mgmt_token("root").await;
    let long = "x".repeat(129);
    let mut bad: Vec<String> = BAD_IDS.iter().map(|s| (*s).to_owned()).collect();
    bad.push(long.clone());
    let before = s.client_ids().await;
    for id in &bad {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(&root),
                Some(&json(serde_json::json!({"name": "n", "client_id": id}))),
            )
            .await;
        assert_eq!(status, 400, "client id {id:?}: {v}");
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apis",
                Some(&root),
                Some(&json(serde_json::json!({"id": id, "name": "n", "identifier": format!("https://api.example/{}", id.len())}))),
            )
            .await;
        assert_eq!(status, 400, "API id {id:?}: {v}");
    }
    assert_eq!(s.client_ids().await, before, "no app created");
    // Names whose derived id would be invalid.
    for (i, name) in ["???", "ééé", &"long name ".repeat(20)].iter().enumerate() {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apis",
                Some(&root),
                Some(&json(serde_json::json!({"name": name, "identifier": format!("https://derived.example/{i}")}))),
            )
            .await;
        assert_eq!(status, 400, "{name}: {v}");
    }
    valid_ids_by_any_spelling(&s, &root).await;
    s.stop().await;
    refused_by_the_config_too(&bad);
}

/// Valid ids, reachable by their path, plain or percent-encoded; invalid
/// percent-encoding in a path is not found, never a crash.
async fn valid_ids_by_any_spelling(s: &Iss, root: &str) {
    // Valid ids, reachable by their path, plain or percent-encoded.
    for id in ["a.b_c~d-e", "A1", &"y".repeat(128)] {
        let (status, _, v) = s
            .call(
                "POST",
                "api/v1/apps",
                Some(root),
                Some(&json(serde_json::json!({"name": "n", "client_id": id}))),
            )
            .await;
        assert_eq!(status, 201, "{id}: {v}");
        let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, text) = s
            .raw(&format!(
                "GET /api/v1/apps/{encoded} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200, "{id} percent-encoded: {text}");
        let (status, text) = s
            .raw(&format!(
                "POST /api/v1/apps/{encoded}/block HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200, "{id}: {text}");
        assert_eq!(s.app(id).await["blocked"], true);
        let (status, text) = s
            .raw(&format!(
                "DELETE /api/v1/apps/{encoded} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 204, "{id}: {text}");
        assert!(s.app(id).await.is_null());
    }
    // Invalid percent-encoding in a path is not found, never a crash.
    for path in ["%", "%G1", "%C3%28", "%FF", "a%2"] {
        let (status, _) = s
            .raw(&format!(
                "GET /api/v1/apps/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 404, "{path}");
    }
}

/// The config refuses the ids the API refuses.
fn refused_by_the_config_too(bad: &[String]) {
    // The config refuses them too.
    for id in bad {
        let toml = format!(
            "[issuer]\nurl = \"http://127.0.0.1:1/\"\n[[issuer.apis]]\nname = \"A\"\nid = {}\nidentifier = \"https://a\"\n[[issuer.apps]]\nname = \"n\"\nclient_id = {}\nclient_secret = {}\n",
            quote(if id.is_empty() { "ok" } else { id }),
            quote(id),
            quote(SECRET),
        );
        let err = m2m_sidecar::config::load_str(&toml, m2m_sidecar::config::Format::Toml)
            .unwrap_err()
            .to_string();
        assert!(err.contains("issuer.apps[0].client_id"), "{id:?}: {err}");
        if !id.is_empty() {
            assert!(err.contains("issuer.apis[0].id"), "{id:?}: {err}");
        }
    }
    let toml = format!(
        "[issuer]\nurl = \"http://127.0.0.1:1/\"\n[[issuer.apis]]\nname = \"???\"\nidentifier = \"https://a\"\n[[issuer.apps]]\nname = \"n\"\nclient_id = {}\nclient_secret = {}\n",
        quote(&"z".repeat(128)),
        quote(SECRET)
    );
    let err = m2m_sidecar::config::load_str(&toml, m2m_sidecar::config::Format::Toml)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("issuer.apis[0].name") && err.contains("set `id`"),
        "{err}"
    );
    assert!(!err.contains("client_id"), "128 characters are fine: {err}");
}
