//! The human summary `m2m-sidecar check` prints: what would run, secrets redacted.

use super::Config;
use std::fmt::Write as _;
use url::Url;

/// Listeners, credentials and routes (route → credential → audience), with every
/// secret replaced by where it comes from.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "admin     {}  /healthz /readyz /metrics",
        config.admin.listen
    );
    for c in &config.credentials {
        let _ = writeln!(
            out,
            "credential {}: {} {}{} client_id={} {}{} audience={} resource={} scopes=[{}]",
            c.name,
            c.auth_method.as_str(),
            match c.endpoint {
                super::Endpoint::TokenUrl(_) => "",
                super::Endpoint::Discovery(_) => "issuer=",
            },
            redact_url(c.endpoint.url()),
            c.client_id,
            c.auth.describe(),
            c.client_cert
                .as_ref()
                .map(|cc| format!(" client_cert={}", cc.cert.display()))
                .unwrap_or_default(),
            c.audience.as_deref().unwrap_or("-"),
            c.resource.as_deref().unwrap_or("-"),
            c.scopes.join(" "),
        );
    }
    for o in &config.outbound {
        let audience = config
            .credential(&o.credential)
            .and_then(|c| c.audience.as_deref().or(c.resource.as_deref()))
            .unwrap_or("-");
        let _ = writeln!(
            out,
            "outbound  {} {} -> {}  credential={} audience={}",
            o.name,
            o.listen,
            redact_url(&o.upstream),
            o.credential,
            audience,
        );
    }
    if let Some(f) = &config.forward_proxy {
        let _ = writeln!(
            out,
            "forward_proxy {}  unmatched={}",
            f.listen,
            if f.deny_unmatched { "deny" } else { "pass" }
        );
        for r in &f.routes {
            let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
            let audience = config
                .credential(&r.credential)
                .and_then(|c| c.audience.as_deref().or(c.resource.as_deref()))
                .unwrap_or("-");
            let _ = writeln!(
                out,
                "  route http://{}{port} -> {}://{}{port}  credential={} audience={}",
                r.host,
                if r.upstream_tls { "https" } else { "http" },
                r.host,
                r.credential,
                audience,
            );
        }
    }
    if let Some(i) = &config.inbound {
        let _ = writeln!(
            out,
            "inbound   {} -> {}  issuer={} audiences=[{}] rules={}",
            i.listen,
            redact_url(&i.upstream),
            i.issuer,
            i.audiences.join(" "),
            i.rules.len()
        );
    }
    if let Some(i) = &config.issuer {
        issuer_lines(&mut out, i);
    }
    let _ = writeln!(
        out,
        "drain_timeout {}",
        humantime::format_duration(config.drain_timeout)
    );
    out
}

/// A URL with any `user:password@` part replaced.
pub fn redact_url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_username("redacted");
    let _ = u.set_password(None);
    u.to_string()
}

fn issuer_lines(out: &mut String, i: &super::IssuerSpec) {
    let _ = writeln!(
        out,
        "issuer    {} url={} alg={} token_ttl={} store={}",
        i.listen,
        i.url,
        i.signing_alg.as_str(),
        humantime::format_duration(i.token_ttl),
        match &i.store {
            super::StoreSpec::Sqlite(path) => format!("sqlite://{}", path.display()),
            super::StoreSpec::Postgres { url, .. } => url.clone(),
        }
    );
    for a in &i.apis {
        let _ = writeln!(
            out,
            "  api {} ({}) scopes=[{}]",
            a.identifier,
            a.id,
            a.scopes.join(" ")
        );
    }
    for a in &i.apps {
        let grants: Vec<String> = a
            .grants
            .iter()
            .map(|(aud, s)| format!("{aud}=[{}]", s.join(" ")))
            .collect();
        let blocked = if a.blocked { " BLOCKED" } else { "" };
        let _ = writeln!(
            out,
            "  app {} {}{} grants: {}{blocked}",
            a.client_id,
            a.secret.as_ref().map_or_else(
                || "secret=none".to_owned(),
                |s| format!("secret=<{}>", s.describe())
            ),
            a.jwks_file
                .as_ref()
                .map(|f| format!(" jwks_file={}", f.display()))
                .unwrap_or_default(),
            grants.join(", ")
        );
    }
}
