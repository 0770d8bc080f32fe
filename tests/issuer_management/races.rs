//! Calls in flight when an admin acts on their own app (found by the red
//! team): each change checks its caller again against the registry it is
//! made to, so none of them can undo the admin's change.

use super::*;

/// `victim` (apps:write) keeps putting its own grants back while `admin`
/// takes `apps:write` away: whatever was in flight, the admin's change
/// stands, and the victim's later calls are refused.
#[tokio::test]
async fn calls_in_flight_cannot_undo_a_scope_removal_of_their_own_app() {
    let s = Issuer::start(
        &api().app(App::new("victim", ADMIN_SECRET).mgmt(&["apps:read", "apps:write"])),
    )
    .await;
    let admin = s.admin_token("admin").await;
    let victim = s.admin_token("victim").await;
    let mgmt = s.mgmt();
    for round in 0..5 {
        let keep = serde_json::json!({mgmt.as_str(): ["apps:read", "apps:write"]});
        let restore = async || {
            let mut answers = Vec::new();
            for _ in 0..10 {
                let body = Some(keep.clone());
                answers.push(
                    s.call("PUT", "api/v1/apps/victim/grants", Some(&victim), body)
                        .await
                        .0,
                );
            }
            answers
        };
        let remove = async {
            let body = serde_json::json!({mgmt.as_str(): ["apps:read"]});
            s.call("PUT", "api/v1/apps/victim/grants", Some(&admin), Some(body))
                .await
                .0
        };
        let (a, b, c, removed) = tokio::join!(restore(), restore(), restore(), remove);
        assert_eq!(removed, 200, "round {round}");
        let (_, app) = s
            .call("GET", "api/v1/apps/victim", Some(&admin), None)
            .await;
        assert_eq!(
            app["grants"][mgmt.as_str()],
            serde_json::json!(["apps:read"]),
            "round {round}: the victim's calls in flight undid the removal ({a:?} {b:?} {c:?})"
        );
        // Put it back for the next round (a new token: the old one's scope is gone).
        let body = serde_json::json!({mgmt.as_str(): ["apps:read", "apps:write"]});
        assert_eq!(
            s.call("PUT", "api/v1/apps/victim/grants", Some(&admin), Some(body))
                .await
                .0,
            200
        );
    }
    s.sidecar.stop().await;
}
