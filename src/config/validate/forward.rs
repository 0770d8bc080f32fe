//! Validation of `[forward_proxy]`: the listener, what happens to unmatched
//! hosts, and the host → credential routes.

use super::{MS, Validator, secs};
use crate::config::raw::{CredentialConfig, ForwardProxyConfig, ForwardRouteConfig};
use crate::config::{ForwardProxySpec, ForwardRouteSpec};
use std::collections::BTreeMap;

impl Validator {
    pub(super) fn forward_proxy(
        &mut self,
        c: &ForwardProxyConfig,
        credentials: &BTreeMap<String, CredentialConfig>,
    ) -> Option<ForwardProxySpec> {
        let listen = self
            .required("forward_proxy.listen", &c.listen)
            .and_then(|t| self.addr("forward_proxy.listen", t));
        if let Some(addr) = listen {
            self.unique_listener("forward_proxy.listen".into(), addr);
        }
        let deny_unmatched = match c.unmatched.as_ref().map_or("pass", |t| t.0.as_str()) {
            "pass" => false,
            "deny" => true,
            other => {
                self.issue(
                    "forward_proxy.unmatched",
                    format!("must be `pass` or `deny`, got `{other}`"),
                );
                false
            }
        };
        self.file_exists("forward_proxy.ca_file", c.ca_file.as_ref());
        let mut routes: Vec<ForwardRouteSpec> = Vec::new();
        for (i, r) in c.routes.iter().enumerate() {
            let Some(route) = self.forward_route(i, r, credentials) else {
                continue;
            };
            if let Some(j) = routes
                .iter()
                .position(|o| o.host == route.host && o.port == route.port)
            {
                self.issue(
                    format!("forward_proxy.routes[{i}].host"),
                    format!("the same host as forward_proxy.routes[{j}]"),
                );
            }
            routes.push(route);
        }
        let d = |v: &mut Self, k: &str, t, default| {
            v.duration_or(&format!("forward_proxy.{k}"), t, secs(default), MS)
        };
        Some(ForwardProxySpec {
            connect_timeout: d(self, "connect_timeout", &c.connect_timeout, 5),
            request_timeout: d(self, "request_timeout", &c.request_timeout, 60),
            idle_timeout: d(self, "idle_timeout", &c.idle_timeout, 90),
            body_idle_timeout: d(self, "body_idle_timeout", &c.body_idle_timeout, 300),
            listen: listen?,
            deny_unmatched,
            ca_file: c.ca_file.clone(),
            routes,
        })
    }

    fn forward_route(
        &mut self,
        i: usize,
        r: &ForwardRouteConfig,
        credentials: &BTreeMap<String, CredentialConfig>,
    ) -> Option<ForwardRouteSpec> {
        let p = |k: &str| format!("forward_proxy.routes[{i}].{k}");
        let credential = self.credential_ref(&p("credential"), &r.credential, credentials);
        let upstream_tls = self.boolean(&p("upstream_tls"), r.upstream_tls.as_ref(), false);
        let text = self.required(&p("host"), &r.host)?;
        let authority = match text.parse::<http::uri::Authority>() {
            Ok(a) if !text.contains(['/', '@']) && !a.host().is_empty() => a,
            _ => {
                self.issue(
                    p("host"),
                    format!("`{text}` is not a host or host:port (no scheme, path or user)"),
                );
                return None;
            }
        };
        let host = crate::host::canonical(
            authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']'),
        )
        .into_owned();
        Some(ForwardRouteSpec {
            host,
            port: authority.port_u16(),
            credential: credential?,
            upstream_tls,
        })
    }
}
