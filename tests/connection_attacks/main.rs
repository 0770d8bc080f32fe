//! Connection-level denial of service against every listener kind (inbound,
//! outbound, forward proxy, admin, issuer), with raw TCP sockets and small
//! timeouts set in config: a connection that sends nothing, part of the HTTP/2
//! preface, the preface and SETTINGS but no request, a half-sent request head,
//! or that keeps an HTTP/2 connection alive with PINGs and no stream, is closed
//! within `header_read_timeout`; an HTTP/2 connection whose streams have ended
//! is closed after `idle_timeout` (with a GOAWAY), while one whose response is
//! still streaming is not; and after an exhaustion attack (`max_connections`
//! sockets held doing nothing) legitimate clients are served again within
//! `header_read_timeout`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod exhaustion;
mod frames;
mod idle;
mod reload;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use support::config::{Cred, SidecarConfig, quote};
use support::echo::Echo;
use support::issuer::{App, Issuer, ORDERS, OrdersApi, Reserved};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SECRET: &str = "secret-0123456789abcdef0123456789abcdef";
/// `header_read_timeout` in every test here.
const HEAD: Duration = Duration::from_secs(1);
/// `idle_timeout` in every test here.
const IDLE: Duration = Duration::from_millis(1500);
/// Scheduling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(2500);

/// The five listener kinds of one sidecar, and a legitimate request for each.
struct Five {
    iss: Issuer,
    echo: Echo,
    /// The config without the three proxy listeners (admin and issuer only).
    reduced: String,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Inbound,
    Outbound,
    ForwardProxy,
    Admin,
    Issuer,
}

const KINDS: [Kind; 5] = [
    Kind::Inbound,
    Kind::Outbound,
    Kind::ForwardProxy,
    Kind::Admin,
    Kind::Issuer,
];

impl Five {
    /// Issuer, inbound, outbound (with a credential from the issuer), forward
    /// proxy and admin in one process, sharing `[limits]` (`extra` added to it).
    async fn start(extra: &str) -> Self {
        let echo = Echo::start().await;
        let reserved = Reserved::new().await;
        let api = OrdersApi::new()
            .scopes(&["orders:read"])
            .app(App::new("client", SECRET).orders(&["orders:read"]));
        let limits = format!(
            "[limits]\nheader_read_timeout = \"{}ms\"\nidle_timeout = \"{}ms\"\n{extra}",
            HEAD.as_millis(),
            IDLE.as_millis()
        );
        let cred = || {
            Cred::new("orders", &reserved.token_url())
                .text("client_secret", SECRET)
                .text("audience", ORDERS)
        };
        let reduced = SidecarConfig::new()
            .credential(cred())
            .raw(&limits)
            .raw(&api.toml(reserved.port, &reserved.url, reserved.dir.path()))
            .toml()
            .to_owned();
        let config = SidecarConfig::new()
            .credential(cred())
            .outbound("orders", &echo.url(), "orders")
            .raw(&format!(
                "[forward_proxy]\nlisten = \"127.0.0.1:0\"\nunmatched = \"pass\"\n\
                 [[forward_proxy.routes]]\nhost = \"localhost\"\ncredential = \"orders\"\n\
                 [inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\n\
                 [[inbound.rules]]\npath = \"/public/*\"\npublic = true\n\
                 [[inbound.rules]]\npath = \"/stream-out/*\"\npublic = true\n",
                quote(&echo.url()),
                quote(&reserved.url),
                quote(ORDERS),
            ))
            .raw(&limits);
        let iss = reserved.start(config, &api).await;
        iss.sidecar.ready().await;
        Five { iss, echo, reduced }
    }

    fn addr(&self, kind: Kind) -> SocketAddr {
        let h = &self.iss.sidecar.handle;
        match kind {
            Kind::Inbound => h.inbound_addr.unwrap(),
            Kind::Outbound => h.outbound_addr("orders").unwrap(),
            Kind::ForwardProxy => h.forward_proxy_addr.unwrap(),
            Kind::Admin => h.admin_addr,
            Kind::Issuer => h.issuer_addr.unwrap(),
        }
    }

    /// A request this listener answers `200`.
    fn legit_head(&self, kind: Kind, n: usize) -> String {
        let echo = self.echo.addr;
        let (target, host) = match kind {
            Kind::Inbound => (format!("/public/legit/{n}"), "x".to_owned()),
            Kind::Outbound => (format!("/legit/{n}"), "x".to_owned()),
            Kind::ForwardProxy => (format!("http://{echo}/legit/{n}"), echo.to_string()),
            Kind::Admin | Kind::Issuer => ("/healthz".to_owned(), "x".to_owned()),
        };
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }

    /// Whether a fresh connection gets `200` for a legitimate request (within 1 s).
    async fn served(&self, kind: Kind, n: usize) -> bool {
        let attempt = async {
            let mut c = TcpStream::connect(self.addr(kind)).await.ok()?;
            c.write_all(self.legit_head(kind, n).as_bytes())
                .await
                .ok()?;
            let mut buf = Vec::new();
            c.read_to_end(&mut buf).await.ok()?;
            Some(buf.starts_with(b"HTTP/1.1 200"))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(true))
        )
    }
}

/// An HTTP/2 client connection (prior knowledge) to `addr`: the request sender,
/// and a task that ends when the sidecar closes the connection (returns when).
async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Instant>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let ended = tokio::spawn(async move {
        let _ = conn.await;
        Instant::now()
    });
    (sender, ended)
}

fn h2_get(five: &Five, kind: Kind, path: &str) -> http::Request<Empty<Bytes>> {
    let uri = match kind {
        Kind::ForwardProxy => format!("http://{}{path}", five.echo.addr),
        _ => format!("http://x{path}"),
    };
    http::Request::get(uri).body(Empty::new()).unwrap()
}

fn ok_path(kind: Kind) -> &'static str {
    match kind {
        Kind::Inbound => "/public/h2",
        Kind::Outbound | Kind::ForwardProxy => "/h2",
        Kind::Admin | Kind::Issuer => "/healthz",
    }
}
