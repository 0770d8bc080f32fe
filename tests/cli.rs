//! The `m2m-sidecar` binary as a user runs it: `check`, `token`, and a full `run`
//! whose logs are searched for secrets and tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::config::{Cred, SECRET, SidecarConfig};
use support::echo::Echo;
use support::issuer::{App, OrdersApi};
use support::process::{Running, sidecar, write_config};
use support::token_server::{Mode, TokenServer};

#[test]
fn check_prints_the_plan_without_secrets() {
    let config = SidecarConfig::new()
        .credential(
            Cred::new("orders", "https://idp.example.com/oauth/token")
                .text("audience", "https://orders.example.com"),
        )
        .outbound("orders", "https://orders.example.com", "orders");
    let f = write_config(config.toml());
    let out = sidecar()
        .args(["check", "--config"])
        .arg(f.path())
        .env("M2M_DRAIN_TIMEOUT", "7s")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("credential orders: client_secret_basic https://idp.example.com/oauth/token"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "-> https://orders.example.com/  credential=orders audience=https://orders.example.com"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("secret=<literal (redacted)>"), "{stdout}");
    assert!(
        stdout.contains("drain_timeout 7s"),
        "the environment overrides the file: {stdout}"
    );
    assert!(!stdout.contains(SECRET));
}

#[test]
fn environment_values_stay_strings_and_stray_variables_only_warn() {
    let config =
        SidecarConfig::new().credential(Cred::new("orders", "https://idp.example.com/oauth/token"));
    let f = write_config(config.toml());
    let out = sidecar()
        .args(["check", "--config"])
        .arg(f.path())
        .env("M2M_CREDENTIALS__ORDERS__CLIENT_ID", "00123")
        // What Kubernetes injects for a Service named `m2m`.
        .env("M2M_PORT", "tcp://10.0.0.1:15090")
        .env("M2M_SERVICE_HOST", "10.0.0.1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("client_id=00123"), "{stdout}");
    assert!(
        stderr.contains("port: unknown key (from an M2M_ environment variable), ignored"),
        "{stderr}"
    );
    assert!(stderr.contains("service_host"), "{stderr}");
    // The same key in the file is an error.
    let f = write_config(&format!("port = 1\n{}", config.toml()));
    let out = sidecar()
        .args(["check", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_fails_with_every_error() {
    let f = write_config("[admin]\nlisten = \"x\"\n[[outbound]]\nname = \"a\"\n");
    let out = sidecar()
        .args(["check", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for want in [
        "admin.listen: invalid listen address",
        "outbound[0].listen: is required",
        "outbound[0].upstream: is required",
        "outbound[0].credential: is required",
    ] {
        assert!(stderr.contains(want), "{want} in {stderr}");
    }
    let env = sidecar()
        .args(["check", "--config"])
        .arg(f.path())
        .env("M2M_ADMIN__LISTEN", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8(env.stderr)
            .unwrap()
            .contains("admin.listen"),
        "M2M_ADMIN__LISTEN fixed it"
    );
}

/// `m2m-sidecar token --config F orders` against `idp`.
async fn token_command(idp: &TokenServer) -> std::process::Output {
    let f = write_config(
        SidecarConfig::new()
            .credential(Cred::new("orders", &idp.url()))
            .toml(),
    );
    tokio::task::spawn_blocking(move || {
        sidecar()
            .args(["token", "--config"])
            .arg(f.path())
            .arg("orders")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn token_prints_the_token_alone_on_stdout() {
    let idp = TokenServer::start().await;
    let out = token_command(&idp).await;
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "tok-1\n");
    assert!(!String::from_utf8(out.stderr).unwrap().contains("tok-1"));

    idp.set_mode(Mode::Fail {
        status: 401,
        body: r#"{"error":"invalid_client"}"#.into(),
    });
    let out = token_command(&idp).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("credential orders: token endpoint answered 401: invalid_client")
    );
}

#[tokio::test]
async fn a_full_run_logs_neither_secret_nor_token_and_exits_0_on_sigterm() {
    let (idp, echo) = (TokenServer::start().await, Echo::start().await);
    // The IdP first fails and echoes the secret back, then recovers.
    idp.set_mode(Mode::Fail {
        status: 400,
        body: format!(r#"{{"error":"invalid_request","error_description":"got {SECRET}"}}"#),
    });
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &echo.url(), "orders");
    let f = write_config(config.toml());
    let mut run = Running::start(f.path());
    let outbound = run.addr_of("outbound listener ready").await;
    let admin = run.addr_of("admin listener ready").await;
    support::until(Duration::from_secs(10), "a failed fetch", async || {
        idp.count() >= 1
    })
    .await;
    // Not ready while the IdP fails; ready after the retry succeeds.
    let (status, _) = support::http::get(&format!("http://{admin}/readyz")).await;
    assert_eq!(status, 503);
    idp.set_mode(Mode::Issue);
    support::http::ready(&admin).await;
    let (status, _) = support::http::get(&format!("http://{outbound}/hello")).await;
    assert_eq!(status, 200);
    assert_eq!(
        echo.seen().pop().unwrap().authorization(),
        Some("Bearer tok-2")
    );

    let exit = run.terminate().await;
    assert_eq!(exit.code(), Some(0));
    let logs = run.lines.lock().unwrap().join("\n");
    assert!(logs.contains("token fetch failed"), "{logs}");
    assert!(
        logs.contains("[redacted]"),
        "the echoed secret was scrubbed: {logs}"
    );
    assert!(!logs.contains(SECRET), "secret in logs");
    assert!(!logs.contains("tok-2"), "token in logs");
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[tokio::test]
async fn issuer_state_survives_a_crash_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    // The URL need not be where it listens: it only names the issuer and audiences.
    let api = OrdersApi::new().scopes(&["orders:read"]).app(
        App::keyed("admin")
            .with("client_secret", r#"{ env = "ADMIN_SECRET" }"#)
            .mgmt(&["apps:write"]),
    );
    let f = write_config(&api.toml(0, "http://127.0.0.1:1/", dir.path()));
    let (mut first, addr) = Running::issuer(f.path(), &[("ADMIN_SECRET", SECRET)]).await;
    let (status, admin) = support::http::token_json(
        &format!("http://{addr}/"),
        "admin",
        SECRET,
        "http://127.0.0.1:1/api/v1/",
    )
    .await;
    assert_eq!(status, 200, "{admin}");
    let created = support::http::client()
        .post(format!("http://{addr}/api/v1/apps"))
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .body(r#"{"client_id":"shop","name":"shop","grants":{"https://orders.example.com":["orders:read"]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let secret = serde_json::from_str::<serde_json::Value>(&created.text().await.unwrap()).unwrap()
        ["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // Acknowledged means on disk: a SIGKILL right after loses nothing.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let (mut second, addr) = Running::issuer(f.path(), &[("ADMIN_SECRET", SECRET)]).await;
    let (status, body) = support::http::token_json(
        &format!("http://{addr}/"),
        "shop",
        &secret,
        "https://orders.example.com",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let exit = second.terminate().await;
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test]
async fn the_issuer_command_serves_tokens_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let api = OrdersApi::new().scopes(&["orders:read"]).app(
        App::keyed("billing")
            .with("client_secret", r#"{ env = "BILLING_SECRET" }"#)
            .orders(&["orders:read"]),
    );
    let f = write_config(&api.toml(0, "http://127.0.0.1:0/", dir.path()));
    let (mut run, addr) = Running::issuer(f.path(), &[("BILLING_SECRET", SECRET)]).await;
    let (status, jwks) =
        support::http::get_json(&format!("http://{addr}/.well-known/jwks.json")).await;
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    let (status, body) = support::http::token_json(
        &format!("http://{addr}/"),
        "billing",
        SECRET,
        "https://orders.example.com",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let exit = run.terminate().await;
    assert_eq!(exit.code(), Some(0));
    assert!(!run.lines.lock().unwrap().join("\n").contains(SECRET));
}

/// The quickstart's printed lines, run as printed, show the seed's flow.
#[tokio::test]
async fn the_quickstart_flow_works_as_printed() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "curl is needed");
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let mut child = sidecar()
        .args(["quickstart", "--ephemeral-ports"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("/readyz");
            text.push_str(&line);
            text.push('\n');
            if done {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the quickstart prints its walkthrough");
    let script: String = printed
        .lines()
        .filter(|l| l.starts_with("curl") || l.starts_with("ADMIN=") || l.starts_with("sleep"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash").arg("-c").arg(script).output().unwrap()
    })
    .await
    .unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.rsplit(" -> ").next().filter(|_| l.contains(" -> ")))
        .collect();
    assert_eq!(
        codes,
        ["200", "403", "200", "200", "401", "200", "200", "200"],
        "{text}"
    );
    assert!(text.contains(r#""caller":"reader""#), "{text}");
    assert!(
        text.contains("insufficient_scope") && text.contains("token revoked"),
        "{text}"
    );
}
