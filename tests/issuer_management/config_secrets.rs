//! A config secret the store overrides, warned about at start (the
//! `m2m-sidecar issuer` binary, restarted with a changed config).

use super::*;
use support::process::{Running, write_config};

/// The message of the start-up warning about a config secret the store overrides.
const SECRET_IGNORED: &str = "the client_secret in the config for this issuer app is not one of its secrets in the store: \
     the store's secret stays in effect and the config's is refused; to change the secret, \
     rotate it through the management API (POST /api/v1/apps/{client_id}/secrets, with \
     {\"grace\": \"1h\"} to keep the old one for a while) and give the client the secret it returns";

/// The issuer's URL (where it listens is another port): the management
/// audience is named after it.
const URL: &str = "http://127.0.0.1:1/";

/// Each app and the environment variable holding its secret.
const APPS: [(&str, &str); 6] = [
    ("admin", "ADMIN_SECRET"),
    ("kept", "KEPT_SECRET"),
    ("changed", "CHANGED_SECRET"),
    ("rotated", "ROTATED_SECRET"),
    ("graced", "GRACED_SECRET"),
    ("incident", "INCIDENT_SECRET"),
];

/// The config: every app's secret from the environment; `incident` blocked
/// when `blocked`.
fn config(dir: &std::path::Path, blocked: bool) -> tempfile::NamedTempFile {
    let mut api = OrdersApi::new().scopes(&["orders:read"]);
    for (id, env) in APPS {
        let app = App::keyed(id)
            .with("client_secret", &format!("{{ env = \"{env}\" }}"))
            .blocked(blocked && id == "incident");
        api = api.app(if id == "admin" {
            app.mgmt(&["apps:read", "apps:write"])
        } else {
            app.orders(&["orders:read"])
        });
    }
    write_config(&api.toml(0, URL, dir))
}

fn first_secret(id: &str) -> String {
    format!("{id}-first-secret-0123456789abcdef0123456789")
}

/// `m2m-sidecar issuer` on `config` with `env`: the process and its base URL.
async fn start(config: &tempfile::NamedTempFile, env: &[(String, String)]) -> (Running, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (run, addr) = Running::issuer(config.path(), &env).await;
    (run, format!("http://{addr}/"))
}

/// Once the store names a config app (a runtime change to that app records
/// it), the store's secret wins; a config `client_secret` that is none of
/// the state's current secrets for that app is not silently ignored: the next
/// start warns, naming the client id and how to rotate, never a secret. Apps
/// whose config secret still verifies (unchanged, or the old one of a rotation
/// still in its grace period) get no warning. And `blocked = true` put in the
/// config for such an app warns that it took effect and how to undo it.
#[tokio::test]
async fn a_config_secret_the_state_overrides_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = APPS
        .iter()
        .map(|(id, k)| ((*k).to_owned(), first_secret(id)))
        .collect();
    let first_config = config(dir.path(), false);
    let (rotated, graced) = rotate_at_runtime(&first_config, &env).await;

    // The operator changes `changed`'s secret in the config and blocks `incident`.
    let changed = "changed-new-secret-in-the-config-0123456789abcdef";
    let mut env2 = env.clone();
    env2.iter_mut()
        .find(|(k, _)| k == "CHANGED_SECRET")
        .unwrap()
        .1 = changed.to_owned();
    let second_config = config(dir.path(), true);
    let (mut second, url) = start(&second_config, &env2).await;
    second.wait_for_log(SECRET_IGNORED, 2).await;
    warned_about_exactly(&second);
    // What the warning says is so: the store's secret works, the config's does not.
    let orders = "https://orders.example.com";
    for (id, secret, want) in [
        ("changed", first_secret("changed"), 200),
        ("changed", changed.to_owned(), 401),
        ("rotated", rotated.clone(), 200),
        ("rotated", first_secret("rotated"), 401),
        ("graced", graced.clone(), 200),
        ("graced", first_secret("graced"), 200),
        ("kept", first_secret("kept"), 200),
        ("incident", first_secret("incident"), 400),
    ] {
        let (status, v) = support::http::token_json(&url, id, &secret, orders).await;
        assert_eq!(status, want, "{id}: {v}");
    }
    // No secret, old or new, in any log line.
    let logs = second.lines.lock().unwrap().join("\n");
    for secret in
        env.iter()
            .map(|(_, v)| v.as_str())
            .chain([changed, rotated.as_str(), graced.as_str()])
    {
        assert!(!logs.contains(secret), "a secret in the logs:\n{logs}");
    }
    assert_eq!(second.terminate().await.code(), Some(0));
}

/// The first run: `rotated`'s secret rotated, `graced`'s rotated with a grace
/// period, the others renamed (each is recorded in the store), and no
/// warning. The two new secrets.
async fn rotate_at_runtime(
    config: &tempfile::NamedTempFile,
    env: &[(String, String)],
) -> (String, String) {
    let (mut first, url) = start(config, env).await;
    let mgmt = format!("{URL}api/v1/");
    let (status, admin) =
        support::http::token_json(&url, "admin", &first_secret("admin"), &mgmt).await;
    assert_eq!(status, 200, "{admin}");
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let rotate = async |id: &str, body: &str| {
        let resp = client()
            .post(format!("{url}api/v1/apps/{id}/secrets"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        v["client_secret"].as_str().unwrap().to_owned()
    };
    let rotated = rotate("rotated", "{}").await;
    let graced = rotate("graced", r#"{"grace":"1h"}"#).await;
    // A change to each of the others records them in the store as they are.
    for id in ["changed", "kept", "incident"] {
        let resp = client()
            .patch(format!("{url}api/v1/apps/{id}"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(format!(r#"{{"name":"{id} (renamed)"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(
        first
            .lines
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.contains(SECRET_IGNORED)),
        "no warning before the config changes"
    );
    assert_eq!(first.terminate().await.code(), Some(0));
    (rotated, graced)
}

/// The second start warned about `changed` and `rotated` only, and about the
/// config's block of `incident` once.
fn warned_about_exactly(second: &Running) {
    for (id, warned) in [
        ("changed", true),
        ("rotated", true),
        ("kept", false),
        ("graced", false),
        ("admin", false),
        ("incident", false),
    ] {
        assert_eq!(
            second.count_logs(SECRET_IGNORED, "client_id", id),
            usize::from(warned),
            "{id}"
        );
    }
    let blocked = second
        .logs()
        .iter()
        .filter(|v| {
            v["level"] == "WARN"
                && v["client_id"] == "incident"
                && v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("blocked by the config")
        })
        .count();
    assert_eq!(blocked, 1, "{:?}", second.lines.lock().unwrap());
}
