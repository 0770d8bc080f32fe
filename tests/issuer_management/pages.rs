//! Lists are paginated: `limit` (≤ 1000), an opaque `after` cursor, `prefix`
//! on id or name; `{"items": [...], "next": cursor | null}`.

use super::*;

#[tokio::test]
async fn lists_come_in_pages_that_walk_every_item_once() {
    let s = start().await;
    let admin = s.admin_token("admin").await;
    for i in 0..5 {
        let body =
            serde_json::json!({"name": format!("shop {i}"), "client_id": format!("shop-{i}")});
        let (status, app) = s
            .call("POST", "api/v1/apps", Some(&admin), Some(body))
            .await;
        assert_eq!(status, 201, "{app}");
    }
    let (status, all) = s
        .call("GET", "api/v1/apps?limit=1000", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["next"], serde_json::Value::Null);
    let every: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["client_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(every.len() >= 5, "{all}");
    assert!(
        every.windows(2).all(|w| w[0] < w[1]),
        "in id order: {every:?}"
    );

    // Two at a time: every app once, in order, then no cursor.
    let mut walked = Vec::new();
    let mut path = "api/v1/apps?limit=2".to_owned();
    loop {
        let (status, page) = s.call("GET", &path, Some(&admin), None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        walked.extend(
            items
                .iter()
                .map(|a| a["client_id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(cursor) => path = format!("api/v1/apps?limit=2&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, every);
    assert!(!walked.is_empty() && !all.to_string().contains("secret_hash"));

    // A prefix matches ids or names.
    let (_, by_id) = s
        .call("GET", "api/v1/apps?prefix=shop-", Some(&admin), None)
        .await;
    assert_eq!(by_id["items"].as_array().unwrap().len(), 5, "{by_id}");
    let (_, by_name) = s
        .call("GET", "api/v1/apps?prefix=shop%203", Some(&admin), None)
        .await;
    assert_eq!(by_name["items"][0]["client_id"], "shop-3", "{by_name}");
    assert_eq!(by_name["items"].as_array().unwrap().len(), 1);

    // APIs page the same way.
    let (status, apis) = s
        .call("GET", "api/v1/apis?limit=1", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{apis}");
    assert_eq!(apis["items"].as_array().unwrap().len(), 1);
    assert!(apis["next"].is_string(), "more than one API: {apis}");

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=two",
        "after=%21%21",
        "offset=1",
        "limit=1&limit=2",
    ] {
        let (status, body) = s
            .call("GET", &format!("api/v1/apps?{bad}"), Some(&admin), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
