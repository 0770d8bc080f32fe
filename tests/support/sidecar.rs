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
        let config = load_str(config.toml(), Format::Toml)
            .unwrap_or_else(|e| panic!("{e}\n{}", config.toml()));
        let listeners = Listeners::bind(&config).await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let handle = App::spawn(config, listeners, stopped).unwrap();
        Sidecar { handle, stop }
    }

    /// `http://ADDR` of the outbound listener `name`.
    pub fn outbound(&self, name: &str) -> String {
        format!("http://{}", self.handle.outbound_addr(name).unwrap())
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
