//! `m2m-sidecar quickstart`: the whole seed flow in one process, on loopback.
//! The built-in issuer (an Orders API with `orders:read` and `orders:write`, a
//! reader app, a writer app, an admin app), an inbound listener in front of a
//! small demo service that echoes who called, and one outbound listener per app
//! pointing at the inbound one. It prints curl lines that show the flow: 200,
//! 403 for a missing scope, and blocking an app taking effect within seconds.

use crate::app::{App, Listeners};
use crate::config::{Format, load_str};
use crate::proxy::ProxyBody;
use crate::proxy::body::json_response;
use crate::proxy::server::Handler;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Preferred ports: issuer, inbound, reader outbound, writer outbound, admin, demo service.
const PORTS: [u16; 6] = [15100, 15000, 15001, 15002, 15090, 18080];

/// The demo service: answers with the identity the inbound sidecar verified.
struct Demo;

impl Handler for Demo {
    type Conn = ();

    fn connection(&self) -> Self::Conn {}

    async fn handle(self: Arc<Self>, _: Arc<()>, req: Request<Incoming>) -> Response<ProxyBody> {
        let h = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let body = serde_json::json!({
            "service": "orders (demo)",
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "caller": h("x-m2m-client-id"),
            "subject": h("x-m2m-subject"),
            "scopes": h("x-m2m-scopes"),
        });
        json_response(StatusCode::OK, &body)
    }
}

/// Why the quickstart could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    #[error("no randomness")]
    NoRandomness,
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .dir.display())]
    InspectDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a private directory", .0.display())]
    NotPrivate(PathBuf),
    #[error("{0}")]
    Config(#[source] crate::config::Errors),
    #[error("listeners")]
    Listeners,
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    #[error("the demo credentials did not get tokens within 15 s")]
    NoTokens,
}

async fn bind(port: u16, ephemeral: bool) -> Result<TcpListener, QuickstartError> {
    if !ephemeral && let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
        return Ok(l);
    }
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(QuickstartError::Listen)
}

/// A fresh directory under `parent` only this user can enter: a random name
/// (128 bits), created with mode 0700 by one `mkdir` that fails if anything is
/// already there (a directory or a symlink planted by another user), so the
/// demo issuer's signing key and state cannot be planted or read.
fn private_dir(parent: &Path) -> Result<PathBuf, QuickstartError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| QuickstartError::NoRandomness)?;
    let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let dir = parent.join(format!("m2m-quickstart-{name}"));
    create_private(&dir)?;
    Ok(dir)
}

/// `mkdir dir` with mode 0700; an existing file, directory or symlink there is
/// refused.
fn create_private(dir: &Path) -> Result<(), QuickstartError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|source| QuickstartError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    // The umask can only take bits away; check anyway.
    let meta = std::fs::symlink_metadata(dir).map_err(|source| QuickstartError::InspectDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() || meta.permissions().mode() & 0o077 != 0 {
        return Err(QuickstartError::NotPrivate(dir.to_path_buf()));
    }
    Ok(())
}

fn secret() -> Result<String, QuickstartError> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| QuickstartError::NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// Run the quickstart until `shutdown`; `ephemeral` picks free ports instead of
/// the usual ones. Prints the walkthrough on stdout once everything is ready.
pub async fn run(ephemeral: bool, shutdown: watch::Receiver<bool>) -> Result<(), QuickstartError> {
    let mut ls = Vec::new();
    for p in PORTS {
        ls.push(bind(p, ephemeral).await?);
    }
    let port = |i: usize| ls[i].local_addr().map(|a| a.port()).unwrap_or(0);
    let (pi, pin, pr, pw, pa, pd) = (port(0), port(1), port(2), port(3), port(4), port(5));
    let dir = private_dir(&std::env::temp_dir())?;
    let (reader, writer, admin) = (secret()?, secret()?, secret()?);
    let issuer = format!("http://127.0.0.1:{pi}/");
    let toml = format!(
        r#"
drain_timeout = "2s"
[admin]
listen = "127.0.0.1:{pa}"

[credentials.reader]
token_url = "{issuer}oauth/token"
client_id = "reader"
client_secret = "{reader}"
audience = "https://orders.example.com"

[credentials.writer]
token_url = "{issuer}oauth/token"
client_id = "writer"
client_secret = "{writer}"
audience = "https://orders.example.com"

[[outbound]]
name = "reader"
listen = "127.0.0.1:{pr}"
upstream = "http://127.0.0.1:{pin}"
credential = "reader"

[[outbound]]
name = "writer"
listen = "127.0.0.1:{pw}"
upstream = "http://127.0.0.1:{pin}"
credential = "writer"

[inbound]
listen = "127.0.0.1:{pin}"
upstream = "http://127.0.0.1:{pd}"
issuer = "{issuer}"
audiences = ["https://orders.example.com"]
revocations_url = "{issuer}api/v1/revocations"
revocations_interval = "1s"
[[inbound.rules]]
path = "/orders/*"
methods = ["GET"]
scopes = ["orders:read"]
[[inbound.rules]]
path = "/orders/*"
methods = ["POST", "PUT", "DELETE"]
scopes = ["orders:write"]

[issuer]
listen = "127.0.0.1:{pi}"
url = "{issuer}"
store = "sqlite://{store}"
token_ttl = "1h"
[[issuer.apis]]
name = "Orders API"
identifier = "https://orders.example.com"
scopes = ["orders:read", "orders:write"]
[[issuer.apps]]
name = "reader"
client_id = "reader"
client_secret = "{reader}"
grants = {{ "https://orders.example.com" = ["orders:read"] }}
[[issuer.apps]]
name = "writer"
client_id = "writer"
client_secret = "{writer}"
grants = {{ "https://orders.example.com" = ["orders:read", "orders:write"] }}
[[issuer.apps]]
name = "admin"
client_id = "admin"
client_secret = "{admin}"
grants = {{ "{issuer}api/v1/" = ["apps:read", "apps:write"] }}
"#,
        store = dir.join("issuer.db").display()
    );
    let config = load_str(&toml, Format::Toml).map_err(QuickstartError::Config)?;
    let mut it = ls.into_iter();
    let (issuer_l, inbound_l, reader_l, writer_l, admin_l, demo_l) = match (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)) => (a, b, c, d, e, f),
        _ => return Err(QuickstartError::Listeners),
    };
    let listeners = Listeners {
        forward_proxy: None,
        admin: admin_l,
        outbound: vec![reader_l, writer_l],
        issuer: Some(issuer_l),
        inbound: Some(inbound_l),
    };
    let demo = tokio::spawn(crate::proxy::server::serve(
        demo_l,
        Arc::new(Demo),
        shutdown.clone(),
        crate::proxy::server::ServeOptions::plain("demo", Duration::from_secs(1)),
    ));
    let handle = App::spawn(config, listeners, shutdown).await?;
    // Ready when both apps hold a token (the issuer is in this process).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !handle.credentials.iter().all(|c| c.snapshot().valid) {
        if tokio::time::Instant::now() > deadline {
            return Err(QuickstartError::NoTokens);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    print!("{}", walkthrough(&issuer, pin, pr, pw, pa, &admin));
    handle.wait().await;
    let _ = demo.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn walkthrough(issuer: &str, pin: u16, pr: u16, pw: u16, pa: u16, admin: &str) -> String {
    format!(
        r#"m2m-sidecar quickstart: issuer {issuer}, inbound 127.0.0.1:{pin} in front of a demo orders service,
outbound 127.0.0.1:{pr} (app "reader": orders:read) and 127.0.0.1:{pw} (app "writer": orders:read orders:write).
Try (Ctrl-C stops everything):

# 1. the reader calls through its outbound sidecar: 200, the service sees "caller": "reader"
curl -s -w ' -> %{{http_code}}\n' http://127.0.0.1:{pr}/orders/42
# 2. the reader lacks orders:write: 403 insufficient_scope
curl -s -w ' -> %{{http_code}}\n' -X POST http://127.0.0.1:{pr}/orders
# 3. the writer may: 200
curl -s -w ' -> %{{http_code}}\n' -X POST http://127.0.0.1:{pw}/orders
# 4. block the reader through the management API (itself protected by an M2M token)
ADMIN=$(curl -s {issuer}oauth/token -H 'content-type: application/json' -d '{{"audience":"{issuer}api/v1/","grant_type":"client_credentials","client_id":"admin","client_secret":"{admin}"}}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -s -w ' -> %{{http_code}}\n' -X POST -H "Authorization: Bearer $ADMIN" {issuer}api/v1/apps/reader/block
# 5. within ~3 s the reader's calls fail: 401, its token is revoked
sleep 3; curl -s -w ' -> %{{http_code}}\n' http://127.0.0.1:{pr}/orders/42
# 6. unblock: the old token stays revoked for good; the sidecar fetches a new one and within ~3 s it works again
curl -s -w ' -> %{{http_code}}\n' -X POST -H "Authorization: Bearer $ADMIN" {issuer}api/v1/apps/reader/unblock
sleep 3; curl -s -w ' -> %{{http_code}}\n' http://127.0.0.1:{pr}/orders/42
# readiness of the sidecar
curl -s -w ' -> %{{http_code}}\n' http://127.0.0.1:{pa}/readyz
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_state_directory_is_fresh_private_and_unpredictable() {
        let parent = tempfile::tempdir().unwrap();
        let a = private_dir(parent.path()).unwrap();
        let b = private_dir(parent.path()).unwrap();
        assert_ne!(a, b, "a random name each time");
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // The old predictable name is not used.
        let name = a.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(!name.ends_with(&std::process::id().to_string()), "{name}");
        assert_eq!(name.len(), "m2m-quickstart-".len() + 32);
    }

    #[test]
    fn an_existing_directory_or_symlink_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let planted = parent.path().join("m2m-quickstart-planted");
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = create_private(&planted).unwrap_err().to_string();
        assert!(err.contains("exists"), "{err}");
        let link = parent.path().join("m2m-quickstart-link");
        std::os::unix::fs::symlink(&planted, &link).unwrap();
        assert!(create_private(&link).is_err());
        let file = parent.path().join("m2m-quickstart-file");
        std::fs::write(&file, b"").unwrap();
        assert!(create_private(&file).is_err());
        let fresh = parent.path().join("m2m-quickstart-fresh");
        create_private(&fresh).unwrap();
    }
}
