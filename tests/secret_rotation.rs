//! A client secret file rotated on disk the way Kubernetes does it (a new
//! timestamped directory, then the `..data` symlink swapped atomically) is used
//! by the next token request, without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;
use support::config::{Cred, SidecarConfig, quote};
use support::sidecar::Sidecar;
use support::token_server::TokenServer;

const OLD: &str = "old-secret-0123456789abcdef0123456789";
const NEW: &str = "new-secret-9876543210fedcba9876543210";

/// Lay out `dir` like a mounted Secret holding `secret` at version `v`.
fn publish(dir: &Path, v: u32, secret: &str) {
    let version = dir.join(format!("..2026_11_28_v{v}"));
    std::fs::create_dir(&version).unwrap();
    std::fs::write(version.join("orders"), format!("{secret}\n")).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(version.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("orders").exists() {
        symlink("..data/orders", dir.join("orders")).unwrap();
    }
}

#[tokio::test]
async fn rotated_secret_file_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), 1, OLD);
    let idp = TokenServer::start().await;
    idp.accept_only_secret(OLD);
    let path = dir.path().join("orders");
    let cred = Cred::new("orders", &idp.url()).with(
        "client_secret",
        &format!("{{ file = {} }}", quote(path.to_str().unwrap())),
    );
    let sidecar = Sidecar::start(&SidecarConfig::new().credential(cred)).await;
    support::until(Duration::from_secs(10), "the first token", async || {
        idp.issued().len() == 1
    })
    .await;

    // The IdP now only takes the new secret; the rotation alone must trigger a fetch.
    idp.accept_only_secret(NEW);
    publish(dir.path(), 2, NEW);
    support::until(
        Duration::from_secs(10),
        "a token for the new secret",
        async || idp.issued().len() == 2,
    )
    .await;
    let last = idp.requests().pop().unwrap();
    let auth = last.headers["authorization"].to_str().unwrap().to_owned();
    use base64::Engine as _;
    let pair = base64::engine::general_purpose::STANDARD
        .decode(auth.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(pair).unwrap(),
        format!("client:{NEW}"),
        "trailing newline trimmed"
    );
    sidecar.stop().await;
}
