//! Validation of `[inbound]`: listener and upstream, where keys come from,
//! audiences, algorithms, and the rule table.

use super::{MS, Validator, secs};
use crate::config::raw::{InboundConfig, IntrospectionConfig, RuleConfig};
use crate::config::{DefaultPolicy, InboundSpec, IntrospectionSpec, KeySource, RuleSpec};
use crate::jose::alg::{self, Algorithm};
use crate::path::{EscapedSlashes, PathParameters, PathPolicy};
use std::time::Duration;

impl Validator {
    pub(super) fn inbound(&mut self, c: &InboundConfig) -> Option<InboundSpec> {
        let listen = self
            .required("inbound.listen", &c.listen)
            .and_then(|t| self.addr("inbound.listen", t));
        if let Some(addr) = listen {
            self.unique_listener("inbound.listen".into(), addr);
        }
        let upstream = self
            .required("inbound.upstream", &c.upstream)
            .and_then(|t| self.url("inbound.upstream", t));
        let issuer = self
            .required("inbound.issuer", &c.issuer)
            .map(str::to_owned);
        let algorithms = self.algorithms(c.algorithms.as_deref());
        let keys = self.key_source(c, issuer.as_deref(), algorithms.as_deref());
        if c.audiences.is_empty() {
            self.issue(
                "inbound.audiences",
                "list at least one audience the service accepts",
            );
        }
        let default = match c.default.as_ref().map_or("deny", |t| t.0.as_str()) {
            "deny" => Some(DefaultPolicy::Deny),
            "authenticated" => Some(DefaultPolicy::Authenticated),
            other => {
                self.issue(
                    "inbound.default",
                    format!("must be `deny` or `authenticated`, got `{other}`"),
                );
                None
            }
        };
        let require_at_jwt = match c.require_typ.as_ref().map(|t| t.0.as_str()) {
            None => false,
            Some("at+jwt") => true,
            Some(other) => {
                self.issue(
                    "inbound.require_typ",
                    format!("only `at+jwt` can be required, got `{other}`"),
                );
                false
            }
        };
        let revocations_url = c
            .revocations_url
            .as_ref()
            .and_then(|t| self.url("inbound.revocations_url", &t.0));
        let cache_size = self.cache_size("inbound.cache_size", c.cache_size.as_ref(), 0);
        let introspection = c
            .introspection
            .as_ref()
            .map(|i| self.introspection(i, issuer.as_deref()));
        let paths = self.path_policy(c);
        let upgrades = self.upgrades(c.upgrades.as_deref());
        let rules: Vec<RuleSpec> = c
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.rule(i, r))
            .collect();
        self.shadowed_rules(&rules);
        let d = |v: &mut Self,
                 k: &str,
                 t: &Option<crate::config::raw::Text>,
                 default: u64,
                 min: Duration| {
            v.duration_or(&format!("inbound.{k}"), t, secs(default), min)
        };
        Some(InboundSpec {
            leeway: d(self, "leeway", &c.leeway, 30, Duration::ZERO),
            jwks_refresh: d(self, "jwks_refresh", &c.jwks_refresh, 300, secs(1)),
            jwks_cooldown: d(self, "jwks_cooldown", &c.jwks_cooldown, 30, Duration::ZERO),
            jwks_timeout: d(self, "jwks_timeout", &c.jwks_timeout, 5, MS),
            revocations_interval: d(
                self,
                "revocations_interval",
                &c.revocations_interval,
                10,
                secs(1),
            ),
            connect_timeout: d(self, "connect_timeout", &c.connect_timeout, 5, MS),
            request_timeout: d(self, "request_timeout", &c.request_timeout, 60, MS),
            idle_timeout: d(self, "idle_timeout", &c.idle_timeout, 90, MS),
            body_idle_timeout: d(self, "body_idle_timeout", &c.body_idle_timeout, 300, MS),
            listen: listen?,
            upstream: upstream?,
            issuer: issuer?,
            keys: keys?,
            audiences: c.audiences.clone(),
            algorithms: algorithms?,
            default: default?,
            require_at_jwt,
            forward_token: c.forward_token,
            revocations_url,
            cache_size,
            introspection: introspection.flatten(),
            paths,
            upgrades,
            rules,
        })
    }

    /// A cache size: a whole number from `min` up to 10,000,000 (default 10,000).
    fn cache_size(
        &mut self,
        path: &str,
        t: Option<&crate::config::raw::Text>,
        min: usize,
    ) -> usize {
        match t.map(|t| t.0.trim().parse::<usize>()) {
            None => 10_000,
            Some(Ok(n)) if (min..=10_000_000).contains(&n) => n,
            Some(_) => {
                self.issue(
                    path,
                    format!(
                        "must be a whole number from {min} up to 10000000{}",
                        if min == 0 {
                            " (0 turns the cache off)"
                        } else {
                            ""
                        }
                    ),
                );
                10_000
            }
        }
    }

    fn introspection(
        &mut self,
        c: &IntrospectionConfig,
        issuer: Option<&str>,
    ) -> Option<IntrospectionSpec> {
        let p = |k: &str| format!("inbound.introspection.{k}");
        let url = c.url.as_ref().map(|t| self.url(&p("url"), &t.0));
        let client_id = self
            .required(&p("client_id"), &c.client_id)
            .map(str::to_owned);
        let secret = self.secret(&p("client_secret"), c.client_secret.as_ref());
        let basic = match c
            .auth_method
            .as_ref()
            .map_or("client_secret_basic", |t| t.0.as_str())
        {
            "client_secret_basic" => true,
            "client_secret_post" => false,
            other => {
                self.issue(
                    p("auth_method"),
                    format!("must be `client_secret_basic` or `client_secret_post`, got `{other}`"),
                );
                true
            }
        };
        let allow_on_error = match c.on_error.as_ref().map_or("deny", |t| t.0.as_str()) {
            "deny" => false,
            "allow" => true,
            other => {
                self.issue(
                    p("on_error"),
                    format!("must be `deny` or `allow`, got `{other}`"),
                );
                false
            }
        };
        let cache_ttl = self.duration_or(&p("cache_ttl"), &c.cache_ttl, secs(10), Duration::ZERO);
        let timeout = self.duration_or(&p("timeout"), &c.timeout, secs(5), MS);
        let cache_size = self.cache_size(&p("cache_size"), c.cache_size.as_ref(), 1);
        Some(IntrospectionSpec {
            url: match url {
                Some(u) => Some(u?),
                None => None,
            },
            issuer: issuer.unwrap_or_default().to_owned(),
            client_id: client_id?,
            secret: secret?,
            basic,
            cache_ttl,
            cache_size,
            timeout,
            allow_on_error,
        })
    }

    fn key_source(
        &mut self,
        c: &InboundConfig,
        issuer: Option<&str>,
        algorithms: Option<&[Algorithm]>,
    ) -> Option<KeySource> {
        let hmac_algs = algorithms
            .unwrap_or_default()
            .iter()
            .filter(|a| alg::is_hmac(**a))
            .count();
        if c.hmac_secret.is_some() {
            // A shared secret is the only key: never beside JWKS keys (RFC 8725 §3.1).
            if c.jwks_url.is_some() || c.jwks_file.is_some() {
                self.issue(
                    "inbound.hmac_secret",
                    "an HMAC secret is never used beside JWKS keys: remove jwks_url/jwks_file, or the secret",
                );
                return None;
            }
            let all = algorithms.map_or(0, <[Algorithm]>::len);
            if c.algorithms.is_none() || hmac_algs != 1 || all != 1 {
                self.issue(
                    "inbound.algorithms",
                    "with hmac_secret, list exactly one of HS256, HS384, HS512 and nothing else",
                );
                return None;
            }
            return self
                .secret("inbound.hmac_secret", c.hmac_secret.as_ref())
                .map(KeySource::Hmac);
        }
        if hmac_algs > 0 {
            self.issue(
                "inbound.algorithms",
                "HS256/HS384/HS512 need `inbound.hmac_secret` (a shared secret is never taken from a JWKS)",
            );
        }
        match (&c.jwks_url, &c.jwks_file) {
            (Some(_), Some(_)) => {
                self.issue(
                    "inbound.jwks_file",
                    "give either jwks_url or jwks_file, not both",
                );
                None
            }
            (Some(u), None) => self.url("inbound.jwks_url", &u.0).map(KeySource::JwksUrl),
            (None, Some(f)) => Some(KeySource::JwksFile(f.clone())),
            (None, None) => {
                // Discovery from the issuer URL.
                let u = self.url("inbound.issuer", issuer?)?;
                Some(KeySource::Discovery(u))
            }
        }
    }

    fn algorithms(&mut self, given: Option<&[String]>) -> Option<Vec<Algorithm>> {
        let Some(names) = given else {
            return Some(alg::INBOUND_DEFAULT.to_vec());
        };
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match alg::parse(name).filter(|a| alg::INBOUND.contains(a)) {
                Some(a) => out.push(a),
                None => self.issue(
                    format!("inbound.algorithms[{i}]"),
                    format!("`{name}` is not allowed (RS256/384/512, PS256/384/512, ES256/384, EdDSA; HS256/384/512 only with hmac_secret)"),
                ),
            }
        }
        if out.is_empty() && given.is_some_and(<[String]>::is_empty) {
            self.issue("inbound.algorithms", "must not be empty");
        }
        Some(out)
    }

    fn path_policy(&mut self, c: &InboundConfig) -> PathPolicy {
        let escaped_slashes = match c.escaped_slashes.as_ref().map(|t| t.0.as_str()) {
            None | Some("reject") => EscapedSlashes::Reject,
            Some("unescape") => EscapedSlashes::Unescape,
            Some("keep") => EscapedSlashes::Keep,
            Some(other) => {
                self.issue(
                    "inbound.escaped_slashes",
                    format!("must be `reject`, `unescape` or `keep`, got `{other}`"),
                );
                EscapedSlashes::Reject
            }
        };
        let path_parameters = match c.path_parameters.as_ref().map(|t| t.0.as_str()) {
            None | Some("reject") => PathParameters::Reject,
            Some("strip") => PathParameters::Strip,
            Some(other) => {
                self.issue(
                    "inbound.path_parameters",
                    format!("must be `reject` or `strip`, got `{other}`"),
                );
                PathParameters::Reject
            }
        };
        PathPolicy {
            escaped_slashes,
            path_parameters,
        }
    }

    /// Upgrade protocol names (RFC 9110 §7.8 tokens), lower-case; `h2c` never.
    fn upgrades(&mut self, given: Option<&[String]>) -> Vec<String> {
        let Some(given) = given else {
            return vec!["websocket".to_owned()];
        };
        let mut out = Vec::with_capacity(given.len());
        for (j, u) in given.iter().enumerate() {
            let name = u.trim().to_ascii_lowercase();
            // protocol-name ["/" protocol-version], both tokens (RFC 9110 §7.8).
            let is_token = |t: &str| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            };
            let token = match name.split_once('/') {
                Some((n, v)) => is_token(n) && is_token(v),
                None => is_token(&name),
            };
            if name == "h2c" || name.starts_with("h2c/") {
                self.issue(
                    format!("inbound.upgrades[{j}]"),
                    "`h2c` upgrades are never forwarded: the upgraded connection would carry requests the sidecar cannot check",
                );
            } else if !token {
                self.issue(
                    format!("inbound.upgrades[{j}]"),
                    format!("`{u}` is not a protocol name"),
                );
            } else {
                out.push(name);
            }
        }
        out
    }

    /// Rules are tried in order and the first match wins, so a broader rule
    /// listed first would answer for a later, stricter one: refused, with the
    /// fix (`/api/*` public before `/api/admin/*` needing `admin`).
    fn shadowed_rules(&mut self, rules: &[RuleSpec]) {
        for (j, later) in rules.iter().enumerate().filter(|(_, r)| !r.public) {
            let weaker = rules[..j].iter().enumerate().find(|(_, earlier)| {
                covers(earlier, later)
                    && methods_overlap(earlier, later)
                    && (earlier.public || !later.scopes.iter().all(|s| earlier.scopes.contains(s)))
            });
            if let Some((i, earlier)) = weaker {
                let what = if earlier.public {
                    "public".to_owned()
                } else {
                    format!("scopes {:?}", earlier.scopes)
                };
                self.issue(
                    format!("inbound.rules[{j}].path"),
                    format!(
                        "rule [{i}] (`{}{}`, {what}) comes first and answers for these requests with less than this rule requires (rules are tried in order; the first match wins): put the more specific rule first",
                        earlier.path,
                        if earlier.prefix { "/*" } else { "" },
                    ),
                );
            }
        }
    }

    fn rule(&mut self, i: usize, r: &RuleConfig) -> Option<RuleSpec> {
        let p = |k: &str| format!("inbound.rules[{i}].{k}");
        let path = self.required(&p("path"), &r.path)?.to_owned();
        if !path.starts_with('/') {
            self.issue(p("path"), "must start with `/`");
        }
        let (path, prefix) = match path.strip_suffix("/*") {
            Some(base) => (base.to_owned(), true),
            None if path.contains('*') => {
                self.issue(p("path"), "`*` is only allowed as a final `/*`");
                (path, false)
            }
            None => (path, false),
        };
        if prefix && path.ends_with('/') {
            self.issue(
                p("path"),
                format!(
                    "write `{}/*`: a prefix rule's base does not end with `/`",
                    path.trim_end_matches('/')
                ),
            );
        }
        if path.contains(['?', '#']) {
            self.issue(
                p("path"),
                "never matches a request: `?` and `#` end a request's path",
            );
        }
        // Requests are matched in normal form, so a rule must be written in it.
        match crate::path::normalize(&path, PathPolicy::default()) {
            Ok(n) if n == path || (prefix && path.is_empty()) => {}
            Ok(n) => self.issue(
                p("path"),
                format!("write it in normal form, as requests are matched: `{n}`"),
            ),
            Err(e) if !(prefix && path.is_empty()) => {
                self.issue(p("path"), format!("never matches a request: {e}"))
            }
            Err(_) => {}
        }
        for (j, s) in r.scopes.iter().enumerate() {
            self.scope(&format!("{}[{j}]", p("scopes")), s);
        }
        if r.public && !r.scopes.is_empty() {
            self.issue(p("scopes"), "a public rule cannot require scopes");
        }
        let methods: Vec<String> = r.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        for (j, m) in methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                self.issue(
                    format!("{}[{j}]", p("methods")),
                    format!("`{m}` is not an HTTP method"),
                );
            }
        }
        Some(RuleSpec {
            path,
            prefix,
            methods,
            scopes: r.scopes.clone(),
            public: r.public,
        })
    }
}

/// Whether `earlier` matches the path `later` names (its base, for a prefix
/// rule), in any case: a broader prefix, or the same exact path.
fn covers(earlier: &RuleSpec, later: &RuleSpec) -> bool {
    let (e, l) = (
        earlier.path.to_ascii_lowercase(),
        later.path.to_ascii_lowercase(),
    );
    if earlier.prefix {
        e.is_empty() || l == e || l.starts_with(&format!("{e}/"))
    } else {
        !later.prefix && e == l
    }
}

/// Whether some method is matched by both rules (no methods: every method;
/// a protecting rule's `GET` covers `HEAD` too).
fn methods_overlap(a: &RuleSpec, b: &RuleSpec) -> bool {
    let covered = |r: &RuleSpec, m: &str| {
        r.methods.iter().any(|x| x == m)
            || (!r.public && m == "HEAD" && r.methods.iter().any(|x| x == "GET"))
    };
    a.methods.is_empty()
        || b.methods.is_empty()
        || a.methods.iter().any(|m| covered(b, m))
        || b.methods.iter().any(|m| covered(a, m))
}
