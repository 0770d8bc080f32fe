//! The inbound listener (`[inbound]`): in front of the service it fronts, only
//! requests whose access token is valid and carries the scopes the route needs
//! are forwarded, with the verified identity in `x-m2m-*` headers.
//!
//! A request's life: screen it (method case, `CONNECT`, `OPTIONS *`, `Host`,
//! the path normalised once: rules match and the service receives that one
//! path) → drop `x-m2m-*` headers that came from outside, in any spelling →
//! find the rule → (public: forward) → take the one bearer token → verify it
//! against the current keys (an unknown `kid` may trigger one shared
//! refetch) → check the rule's scopes (or the default policy) → remove
//! hop-by-hop headers, then add identity headers → forward.

pub mod answer;
pub mod cache;
pub mod introspection;
pub mod jwks;
pub mod revocation;
pub mod rules;
pub mod verify;

use crate::config::{DefaultPolicy, InboundSpec};
use crate::path::PathPolicy;
use crate::proxy::ProxyError;
use crate::proxy::client::{self, ClientSettings};
use crate::proxy::h1pool::Affinity;
use crate::proxy::headers::{remove_hop_by_hop, remove_reserved, wants_upgrade};
use crate::proxy::server::Handler;
use crate::proxy::{ProxyBody, Timeouts, Upstream};
use crate::respond::{Format, refuse};
use answer::Refusal;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body_util::Either;
use hyper::body::Incoming;
use jwks::Jwks;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rules::{Need, Rules};
use std::borrow::Cow;
use std::sync::Arc;
use verify::{Invalid, Policy, Verified};

const CLIENT_ID: HeaderName = HeaderName::from_static("x-m2m-client-id");
const SUBJECT: HeaderName = HeaderName::from_static("x-m2m-subject");
const SCOPES: HeaderName = HeaderName::from_static("x-m2m-scopes");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerifyLabels {
    outcome: &'static str,
    reason: &'static str,
}

/// Inbound metrics, registered into the app's registry.
#[derive(Clone)]
pub struct InboundMetrics {
    verifications: Family<VerifyLabels, Counter>,
    accepted: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    introspections: Family<OutcomeLabels, Counter>,
    /// JWKS fetches by outcome (success, error).
    pub jwks_fetches: Family<OutcomeLabels, Counter>,
    /// Unix time of the last successful revocation feed poll.
    pub revocations_fetched: prometheus_client::metrics::gauge::Gauge,
    /// Unix time of the last successful JWKS load.
    pub jwks_loaded: prometheus_client::metrics::gauge::Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

impl InboundMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let verifications = Family::<VerifyLabels, Counter>::default();
        registry.register(
            "m2m_inbound_verifications",
            "Inbound token checks, by outcome (accepted, rejected, forbidden, public) and reason",
            verifications.clone(),
        );
        let accepted = verifications
            .get_or_create(&VerifyLabels {
                outcome: "accepted",
                reason: "",
            })
            .clone();
        let cache = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "m2m_inbound_token_cache",
            "Verified-token cache lookups, by outcome (hit, miss)",
            cache.clone(),
        );
        let jwks_fetches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "m2m_inbound_jwks_fetches",
            "JWKS fetches, by outcome (success, error)",
            jwks_fetches.clone(),
        );
        let introspections = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "m2m_inbound_introspections",
            "Token introspection checks, by outcome (active, inactive, error; cached_active, cached_inactive from the short cache)",
            introspections.clone(),
        );
        let jwks_loaded = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "m2m_inbound_jwks_last_success_timestamp_seconds",
            "Unix time of the last successful JWKS load (key age = time() - this)",
            jwks_loaded.clone(),
        );
        let revocations_fetched = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "m2m_inbound_revocations_last_success_timestamp_seconds",
            "Unix time of the last successful revocation feed poll (feed age = time() - this)",
            revocations_fetched.clone(),
        );
        // One at a time: a guard from get_or_create held across the next
        // insertion would deadlock the family's lock.
        let cache_hits = cache
            .get_or_create(&OutcomeLabels { outcome: "hit" })
            .clone();
        let cache_misses = cache
            .get_or_create(&OutcomeLabels { outcome: "miss" })
            .clone();
        InboundMetrics {
            verifications,
            accepted,
            cache_hits,
            cache_misses,
            introspections,
            jwks_fetches,
            revocations_fetched,
            jwks_loaded,
        }
    }

    fn count(&self, outcome: &'static str, reason: &'static str) {
        self.verifications
            .get_or_create(&VerifyLabels { outcome, reason })
            .inc();
    }
}

/// The inbound listener's handler.
pub struct Inbound {
    upstream: Upstream,
    pub jwks: Arc<Jwks>,
    pub revocations: Arc<revocation::Revocations>,
    cache: cache::TokenCache,
    introspection: Option<(introspection::Introspection, bool)>,
    policy: Policy,
    rules: Rules,
    paths: PathPolicy,
    default: DefaultPolicy,
    forward_token: bool,
    /// Whether the access log is on (then the caller is noted for it).
    pub access_log: bool,
    metrics: InboundMetrics,
}

impl Inbound {
    pub fn new(
        spec: &InboundSpec,
        jwks: Arc<Jwks>,
        metrics: InboundMetrics,
    ) -> Result<Self, SetupError> {
        let client = client::build(&ClientSettings {
            ca_file: None,
            connect_timeout: spec.connect_timeout,
            idle_timeout: spec.idle_timeout,
        })?;
        let timeouts = Timeouts {
            connect: spec.connect_timeout,
            pool_idle: spec.idle_timeout,
            request: spec.request_timeout,
            body_idle: spec.body_idle_timeout,
        };
        Ok(Inbound {
            upstream: Upstream::new("inbound", &spec.upstream, client, timeouts)?
                .preserving_host()
                .allowing_upgrades(&spec.upgrades),
            paths: spec.paths,
            jwks,
            revocations: Arc::default(),
            cache: cache::TokenCache::new(spec.cache_size),
            introspection: spec
                .introspection
                .as_ref()
                .map(|i| introspection::Introspection::new(i).map(|c| (c, i.allow_on_error)))
                .transpose()?,
            policy: Policy {
                issuer: spec.issuer.clone(),
                audiences: spec.audiences.clone(),
                leeway: spec.leeway,
                require_at_jwt: spec.require_at_jwt,
            },
            rules: Rules::new(&spec.rules),
            default: spec.default,
            forward_token: spec.forward_token,
            access_log: true,
            metrics,
        })
    }

    /// Check `req`; `Ok(identity)` to forward (`None` for a public route).
    async fn admit(&self, req: &Request<Incoming>) -> Result<Option<Arc<Verified>>, Refusal<'_>> {
        let need = self.rules.find(req.method(), req.uri().path());
        let mut authorizations = req.headers().get_all(header::AUTHORIZATION).iter();
        let authorization = authorizations.next();
        if authorizations.next().is_some() {
            self.metrics.count("rejected", "two authorization headers");
            return Err(Refusal::InvalidRequest(
                "more than one Authorization header",
            ));
        }
        if need == Some(Need::Public) {
            self.metrics.count("public", "");
            return Ok(None);
        }
        let Some(token) =
            authorization.and_then(|v| crate::oauth::authorization::bearer(v.as_bytes()))
        else {
            self.metrics.count("rejected", "no token");
            return Err(Refusal::NoToken);
        };
        let verified = self.verify(token).await.inspect_err(|r| {
            let reason = match r {
                Refusal::InvalidToken(why) => why.reason(),
                Refusal::InvalidRequest(reason) => reason,
                Refusal::IntrospectionUnavailable => "introspection failed",
                _ => "no keys",
            };
            self.metrics.count("rejected", reason);
        })?;
        match need {
            Some(Need::Scopes(scopes)) if !scopes.iter().all(|s| verified.has_scope(s)) => {
                self.metrics.count("forbidden", "insufficient scope");
                Err(Refusal::InsufficientScope(scopes))
            }
            None if self.default == DefaultPolicy::Deny => {
                self.metrics.count("forbidden", "no rule");
                Err(Refusal::AccessDenied)
            }
            _ => {
                self.metrics.accepted.inc();
                Ok(Some(verified))
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<Arc<Verified>, Refusal<'_>> {
        // Oversized tokens are refused before anything, hashing included.
        if token.len() > crate::jose::compact::MAX_TOKEN {
            return Err(Refusal::InvalidToken(Invalid::TooLarge));
        }
        let key =
            (self.cache.enabled() || self.introspection.is_some()).then(|| cache::digest(token));
        let v = if let Some(key) = key.filter(|_| self.cache.enabled()) {
            let keys = self.jwks.keys();
            let live = |kid: &str| keys.as_ref().is_some_and(|k| k.contains(kid));
            match self.cache.get(&key, live) {
                Some(v) => {
                    self.metrics.cache_hits.inc();
                    v
                }
                None => {
                    self.metrics.cache_misses.inc();
                    let v = Arc::new(self.verify_signature(token).await?);
                    self.cache.insert(key, v.clone());
                    v
                }
            }
        } else {
            Arc::new(self.verify_signature(token).await?)
        };
        self.revocations.check(&v).map_err(Refusal::InvalidToken)?;
        if let (Some((intro, allow_on_error)), Some(key)) = (&self.introspection, key) {
            let (status, cached) = intro.check(token, key, &v).await;
            let outcome = match (status, cached) {
                (introspection::Status::Active, false) => "active",
                (introspection::Status::Active, true) => "cached_active",
                (introspection::Status::Inactive, false) => "inactive",
                (introspection::Status::Inactive, true) => "cached_inactive",
                (introspection::Status::Unavailable, _) => "error",
            };
            self.metrics
                .introspections
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            match status {
                introspection::Status::Active => {}
                introspection::Status::Inactive => {
                    return Err(Refusal::InvalidToken(Invalid::Inactive));
                }
                introspection::Status::Unavailable if *allow_on_error => {}
                introspection::Status::Unavailable => {
                    return Err(Refusal::IntrospectionUnavailable);
                }
            }
        }
        Ok(v)
    }

    async fn verify_signature(&self, token: &str) -> Result<Verified, Refusal<'_>> {
        let keys = self.jwks.keys().ok_or(Refusal::NoKeys)?;
        match verify::verify(token, &keys, &self.policy) {
            Err(Invalid::UnknownKid) => {
                // Maybe the issuer rotated: one refetch, shared and rate-limited.
                let kid = crate::jose::compact::parse(token)
                    .ok()
                    .and_then(|p| p.kid().map(str::to_owned))
                    .unwrap_or_default();
                let fresh = self
                    .jwks
                    .refetch_for(&kid)
                    .await
                    .ok_or(Refusal::InvalidToken(Invalid::UnknownKid))?;
                verify::verify(token, &fresh, &self.policy).map_err(Refusal::InvalidToken)
            }
            other => other.map_err(Refusal::InvalidToken),
        }
    }
}

impl Inbound {
    /// What is refused before any rule is looked at, and the path put in
    /// normal form (the one rules match and the service receives).
    fn screen(&self, req: &mut Request<Incoming>) -> Result<(), ProxyError> {
        let method = req.method();
        if *method == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed(
                "CONNECT is not forwarded to the service",
            ));
        }
        if is_miscased_standard(method) {
            return Err(ProxyError::BadRequest(
                "methods are case-sensitive: standard methods are upper-case (RFC 9110 §9.1)",
            ));
        }
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host_ok = match (hosts.next(), hosts.next()) {
            (_, Some(_)) => return Err(ProxyError::BadRequest("more than one Host header")),
            (None, None) if req.version() == Version::HTTP_11 => {
                return Err(ProxyError::BadRequest("HTTP/1.1 requires a Host header"));
            }
            // `Host`: a host and maybe a port, nothing else (no user info).
            (h, None) => h.is_none_or(valid_host),
        };
        if req
            .uri()
            .scheme_str()
            .is_some_and(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https"))
        {
            return Err(ProxyError::BadRequest(
                "only http and https request targets",
            ));
        }
        // Absolute-form: the target's authority is the host (RFC 9112 §3.2.2).
        if let Some(host) = req
            .uri()
            .authority()
            .map(|a| HeaderValue::from_str(crate::proxy::without_user_info(a)))
        {
            let host = host
                .ok()
                .filter(valid_host)
                .ok_or(ProxyError::BadRequest("invalid host in the request target"))?;
            req.headers_mut().insert(header::HOST, host);
        } else if !host_ok {
            return Err(ProxyError::BadRequest("invalid Host header"));
        }
        let uri = req.uri();
        if uri.path() == "*" {
            return Err(ProxyError::BadRequest(
                "asterisk-form (OPTIONS *) is not forwarded",
            ));
        }
        let normal = match crate::path::normalize(uri.path(), self.paths)? {
            Cow::Borrowed(_) => return Ok(()),
            Cow::Owned(p) => p,
        };
        let pq = match uri.query() {
            Some(q) => format!("{normal}?{q}"),
            None => normal,
        };
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(
            PathAndQuery::try_from(pq)
                .map_err(|_| ProxyError::BadRequest("invalid request target"))?,
        );
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
        Ok(())
    }
}

/// A `Host` value that is `host[:port]`: a registered name or IPv4 address
/// (RFC 3986 reg-name characters) or a bracketed IPv6 literal, then maybe a
/// port that fits 16 bits; no user info. Checked in place (no allocation).
fn valid_host(h: &HeaderValue) -> bool {
    let b = h.as_bytes();
    let (host_ok, rest) = if let Some(inner) = b.strip_prefix(b"[") {
        match inner.iter().position(|&c| c == b']') {
            Some(i) => (
                i > 0
                    && inner[..i]
                        .iter()
                        .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.')),
                &inner[i + 1..],
            ),
            None => return false,
        }
    } else {
        let end = b.iter().rposition(|&c| c == b':').unwrap_or(b.len());
        let name = &b[..end];
        (
            !name.is_empty()
                && name
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(c)),
            &b[end..],
        )
    };
    let port_ok = match rest {
        [] => true,
        [b':', digits @ ..] => {
            !digits.is_empty()
                && digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
                    <= 65535
        }
        _ => false,
    };
    host_ok && port_ok
}

/// `post`, `Get`: a standard method's name in another case. Servers that fold
/// case would run the method a rule listing `POST` never saw.
fn is_miscased_standard(m: &Method) -> bool {
    // The standard methods themselves are enum variants: one comparison.
    if matches!(
        *m,
        Method::GET
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::HEAD
            | Method::OPTIONS
            | Method::PATCH
            | Method::TRACE
            | Method::CONNECT
    ) {
        return false;
    }
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let s = m.as_str();
    STANDARD
        .iter()
        .any(|std| *std != s && std.eq_ignore_ascii_case(s))
}

/// An HTTP client for the issuer's metadata (JWKS, discovery, revocation feed):
/// no redirects, no proxy from the environment, bounded by `timeout`.
pub(crate) fn metadata_client(
    timeout: std::time::Duration,
) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(ClientBuildError)
}

/// Why the inbound listener's handler cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Upstream(#[from] crate::proxy::client::BuildError),
    #[error(transparent)]
    Metadata(#[from] ClientBuildError),
}

/// The HTTP client for the issuer's metadata could not be built (no TLS roots).
#[derive(Debug, thiserror::Error)]
#[error("cannot build an HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

impl Handler for Inbound {
    type Conn = Option<Affinity>;

    fn connection(&self) -> Self::Conn {
        self.upstream.affinity()
    }

    async fn handle(
        self: Arc<Self>,
        conn: Arc<Self::Conn>,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let format = Format::of(&req);
        if let Err(e) = self.screen(&mut req) {
            return refuse(&e, format);
        }
        // Identity headers only ever come from us; nothing overrides the path.
        let has_connection = remove_reserved(req.headers_mut());
        let identity = match self.admit(&req).await {
            Ok(identity) => identity,
            Err(refusal) => return refuse(&refusal, format),
        };
        // Only the access log reads it: no allocation when it is off.
        let note = identity.as_ref().filter(|_| self.access_log).map(|v| {
            crate::proxy::server::AccessNote {
                client_id: v
                    .client_id
                    .clone()
                    .map(crate::oauth::ids::ClientId::into_string),
            }
        });
        let headers = req.headers_mut();
        // Hop-by-hop headers go first, so `Connection` can never name what we
        // add (it cannot nominate them either: belt and braces).
        if has_connection {
            remove_hop_by_hop(headers, wants_upgrade(headers));
        }
        if let Some(v) = identity {
            for (name, value) in [
                (
                    CLIENT_ID,
                    v.client_id
                        .as_ref()
                        .map(crate::oauth::ids::ClientId::as_str),
                ),
                (SUBJECT, v.subject.as_deref()),
                (SCOPES, v.scopes.as_deref()),
            ] {
                let Some(value) = value else { continue };
                // Verification refused control characters, so this holds; if it
                // did not, the request must not go on without its identity.
                let Ok(hv) = HeaderValue::try_from(value) else {
                    return refuse(&Refusal::InvalidToken(Invalid::BadClaims), format);
                };
                headers.insert(name, hv);
            }
        }
        if !self.forward_token {
            headers.remove(header::AUTHORIZATION);
        }
        let mut resp = match self
            .upstream
            .forward(req, None, conn.as_ref().as_ref())
            .await
        {
            Ok(resp) => resp.map(Either::Left),
            Err(e) => refuse(&e, format),
        };
        if let Some(n) = note {
            resp.extensions_mut().insert(n);
        }
        resp
    }
}
