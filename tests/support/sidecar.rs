//! An in-process sidecar on port-0 listeners, stopped when the test is done.

use super::config::SidecarConfig;
use m2m_sidecar::config::{Format, load_str};
use m2m_sidecar::{App, Handle, Listeners};
use std::net::SocketAddr;
use tokio::sync::watch;

pub struct Sidecar {
    pub handle: Handle,
    stop: watch::Sender<bool>,
}

impl Sidecar {
    pub async fn start(config: &SidecarConfig) -> Self {
        Self::start_with(config, None).await
    }

    /// Start with an issuer listener bound beforehand (its port is in the config's URL).
    pub async fn start_with(
        config: &SidecarConfig,
        issuer: Option<tokio::net::TcpListener>,
    ) -> Self {
        let mut config = load_str(config.toml(), Format::Toml)
            .unwrap_or_else(|e| panic!("{e}\n{}", config.toml()));
        let configured = config.issuer.as_ref().map(|i| i.listen);
        if let (Some(spec), true) = (config.issuer.as_mut(), issuer.is_some()) {
            // Bound already by the caller: nothing to bind for it here.
            spec.listen = "127.0.0.1:0".parse().unwrap();
        }
        let mut listeners = Listeners::bind(&config).await.unwrap();
        if let (Some(spec), Some(l)) = (config.issuer.as_mut(), issuer) {
            spec.listen = configured.unwrap();
            listeners.issuer = Some(l);
        }
        let (stop, stopped) = watch::channel(false);
        let handle = App::spawn(config, listeners, stopped).await.unwrap();
        Sidecar { handle, stop }
    }

    /// Wait (bounded) until `/readyz` answers 200; its JSON.
    pub async fn ready(&self) -> serde_json::Value {
        super::http::ready(&self.admin().to_string()).await
    }

    /// `http://ADDR` of the outbound listener `name`.
    pub fn outbound(&self, name: &str) -> String {
        format!("http://{}", self.handle.outbound_addr(name).unwrap())
    }

    /// `http://ADDR{path}` on the inbound listener.
    pub fn inbound(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.inbound_addr.unwrap())
    }

    pub fn admin(&self) -> SocketAddr {
        self.handle.admin_addr
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.admin_addr)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(std::time::Duration::from_secs(10), self.handle.wait())
            .await
            .expect("sidecar stops within 10 s");
    }
}
