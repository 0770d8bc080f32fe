//! Verification keys: fetched from `jwks_url` (or found through RFC 8414 / OIDC
//! discovery from the issuer, or read from `jwks_file`), each decoded once per
//! fetch, kept in an `ArcSwap` read without locks. One background task fetches:
//! on a timer (`jwks_refresh`, or the answer's `Cache-Control: max-age`), and
//! early when a token names an unknown `kid` — at most once per `jwks_cooldown`,
//! however many requests ask. A failed fetch keeps the last good keys.
//!
//! HS256/384/512 only with a secret configured as `hmac_secret`: validation
//! makes that the sole key source (never beside JWKS keys), and a JWKS `oct`
//! key is never used. The secret is re-read on the same timer, so a rotated
//! file is picked up.

use crate::config::{InboundSpec, KeySource};
use crate::oauth::metadata::get;
use arc_swap::ArcSwapOption;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// A key ready to verify with, and the one algorithm it may be used with.
pub struct VerifyKey {
    pub kid: String,
    alg: Algorithm,
    key: Key,
}

enum Key {
    Public(ParsedPublicKey),
    /// A configured secret; `hmac::verify` compares in constant time.
    Hmac(Box<hmac::Key>),
}

impl VerifyKey {
    pub fn alg_name(&self) -> &'static str {
        match self.alg {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            _ => "unsupported",
        }
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            Key::Public(k) => k.verify_sig(message, signature).is_ok(),
            Key::Hmac(k) => hmac::verify(k, message, signature).is_ok(),
        }
    }
}

/// The keys of one fetch.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerifyKey>>,
    /// A configured HMAC secret: the one key, whatever `kid` a token names.
    single_secret: bool,
}

impl KeySet {
    /// The set holding only the configured HMAC `secret`, bound to `alg`
    /// (HS256/384/512). The secret must be at least as long as the hash output
    /// (RFC 7518 §3.2).
    pub fn hmac(secret: &[u8], alg: Algorithm) -> Result<KeySet, String> {
        let (algorithm, min) = match alg {
            Algorithm::HS256 => (hmac::HMAC_SHA256, 32),
            Algorithm::HS384 => (hmac::HMAC_SHA384, 48),
            Algorithm::HS512 => (hmac::HMAC_SHA512, 64),
            other => return Err(format!("{other:?} is not an HMAC algorithm")),
        };
        if secret.len() < min {
            return Err(format!(
                "the HMAC secret has {} bytes; {alg:?} needs at least {min} (RFC 7518 §3.2)",
                secret.len()
            ));
        }
        // An id that changes with the secret (so cached tokens of a rotated-out
        // secret are dropped) and says nothing about it.
        let d = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &[b"m2m-sidecar hmac key id\0".as_slice(), secret].concat(),
        );
        let kid: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let key = VerifyKey {
            kid: format!("hmac-{kid}"),
            alg,
            key: Key::Hmac(Box::new(hmac::Key::new(algorithm, secret))),
        };
        let mut keys = HashMap::new();
        keys.insert(key.kid.clone(), Arc::new(key));
        Ok(KeySet {
            keys,
            single_secret: true,
        })
    }

    /// With exactly one key: use it whatever `kid` a token names (an app's one
    /// registered key, perhaps from a PEM file without a kid).
    pub fn any_kid_for_a_sole_key(mut self) -> Self {
        if self.keys.len() == 1 {
            self.single_secret = true;
        }
        self
    }

    /// The key for `kid`; a token without `kid` may use the only key there is.
    pub fn find(&self, kid: Option<&str>) -> Option<&Arc<VerifyKey>> {
        if self.single_secret {
            return self.keys.values().next();
        }
        match kid {
            Some(k) => self.keys.get(k),
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        }
    }

    /// The key ids (HMAC: an opaque id that changes with the secret).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parse a JWKS document; keys that cannot be used are skipped with a reason.
    pub fn parse(doc: &[u8], allowed: &[Algorithm]) -> Result<(KeySet, Vec<String>), String> {
        let value: serde_json::Value =
            serde_json::from_slice(doc).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let list = value
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("JWKS has no `keys` array")?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (i, jwk) in list.iter().enumerate() {
            match key(jwk, allowed) {
                Ok(k) => {
                    set.keys.insert(k.kid.clone(), Arc::new(k));
                }
                Err(why) => skipped.push(format!("key {i}: {why}")),
            }
        }
        Ok((set, skipped))
    }
}

fn field<'a>(jwk: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(|v| v.as_str())
}

fn bytes(jwk: &serde_json::Value, name: &str) -> Result<Vec<u8>, String> {
    let text = field(jwk, name).ok_or_else(|| format!("no `{name}`"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("`{name}` is not base64url"))
}

fn key(jwk: &serde_json::Value, allowed: &[Algorithm]) -> Result<VerifyKey, String> {
    if field(jwk, "use").is_some_and(|u| u != "sig") {
        return Err("not a signing key (`use` is not `sig`)".into());
    }
    let kty = field(jwk, "kty").ok_or("no `kty`")?;
    let named = match field(jwk, "alg") {
        Some(a) => Some(alg_from_name(a).ok_or_else(|| format!("unknown alg `{a}`"))?),
        None => None,
    };
    let (alg, verification, public): (Algorithm, &'static dyn VerificationAlgorithm, Vec<u8>) =
        match kty {
            "RSA" => {
                let n = bytes(jwk, "n")?;
                let e = bytes(jwk, "e")?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(format!("RSA key of {bits} bits refused (2048 at least)"));
                }
                // Without `alg`, an RSA key is bound to the first RSA algorithm allowed.
                let alg = named
                    .or_else(|| allowed.iter().copied().find(|a| rsa_params(*a).is_some()))
                    .ok_or("no RSA algorithm allowed")?;
                let params = rsa_params(alg)
                    .ok_or_else(|| format!("alg {alg:?} does not fit an RSA key"))?;
                let der = rsa_spki(&n, &e)?;
                (alg, params, der)
            }
            "EC" => {
                let (alg, verification, size) = match field(jwk, "crv") {
                    Some("P-256") => (Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED, 32),
                    Some("P-384") => (Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED, 48),
                    other => return Err(format!("unsupported curve {other:?}")),
                };
                if named.is_some_and(|n| n != alg) {
                    return Err("alg does not fit the curve".into());
                }
                let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
                if x.len() != size || y.len() != size {
                    return Err("bad EC coordinates".into());
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (
                    alg,
                    verification as &'static dyn VerificationAlgorithm,
                    point,
                )
            }
            "OKP" if field(jwk, "crv") == Some("Ed25519") => {
                if named.is_some_and(|n| n != Algorithm::EdDSA) {
                    return Err("alg does not fit Ed25519".into());
                }
                let x = bytes(jwk, "x")?;
                if x.len() != 32 {
                    return Err("bad Ed25519 key".into());
                }
                (
                    Algorithm::EdDSA,
                    &signature::ED25519 as &'static dyn VerificationAlgorithm,
                    x,
                )
            }
            "oct" => return Err("symmetric keys are never taken from a JWKS".into()),
            other => return Err(format!("unsupported kty `{other}`")),
        };
    if !allowed.contains(&alg) {
        return Err(format!("alg {alg:?} is not in the allowed list"));
    }
    let key = ParsedPublicKey::new(verification, public).map_err(|e| format!("bad key: {e}"))?;
    let kid = field(jwk, "kid").unwrap_or_default().to_owned();
    Ok(VerifyKey {
        kid,
        alg,
        key: Key::Public(key),
    })
}

fn alg_from_name(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn rsa_params(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// SubjectPublicKeyInfo DER for an RSA key given as modulus and exponent.
fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    use aws_lc_rs::encoding::AsDer as _;
    let components = aws_lc_rs::rsa::PublicKeyComponents { n, e };
    components
        .as_der()
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| "bad RSA key".to_owned())
}

/// The live key set and its fetcher's controls.
pub struct Jwks {
    current: ArcSwapOption<KeySet>,
    /// Incremented after every fetch attempt, for requests waiting on one.
    generation: watch::Sender<u64>,
    refetch: Notify,
    epoch: Instant,
    last_fetch_ms: AtomicU64,
    cooldown: Duration,
    wait: Duration,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl Jwks {
    pub fn new(spec: &InboundSpec) -> Arc<Self> {
        Arc::new(Jwks {
            current: ArcSwapOption::empty(),
            generation: watch::channel(0).0,
            refetch: Notify::new(),
            epoch: Instant::now(),
            last_fetch_ms: AtomicU64::new(u64::MAX),
            cooldown: spec.jwks_cooldown,
            wait: spec.jwks_timeout + Duration::from_secs(1),
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// The keys now, if any were ever loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Wait until keys are loaded (by [`run`]), at most until `deadline`;
    /// whether there are keys then.
    pub async fn wait_loaded(&self, deadline: tokio::time::Instant) -> bool {
        let mut rx = self.generation.subscribe();
        // Each fetch attempt stores its keys before it bumps the generation.
        let loaded = rx.wait_for(|_| self.current.load().is_some());
        let _ = tokio::time::timeout_at(deadline, loaded).await;
        self.current.load().is_some()
    }

    /// A token named `kid`, which the keys lack: ask for one refetch (unless one
    /// happened within the cooldown) and wait for it, bounded.
    pub async fn refetch_for(&self, kid: &str) -> Option<Arc<KeySet>> {
        let last = self.last_fetch_ms.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        if last != u64::MAX && now.saturating_sub(last) < self.cooldown.as_millis() as u64 {
            return None;
        }
        let mut rx = self.generation.subscribe();
        let seen = *rx.borrow_and_update();
        self.refetch.notify_one();
        let _ = tokio::time::timeout(self.wait, rx.wait_for(|g| *g > seen)).await;
        self.keys().filter(|k| k.contains(kid))
    }
}

/// Keep `jwks` loaded from `spec`'s key source until shutdown.
pub async fn run(
    jwks: Arc<Jwks>,
    spec: InboundSpec,
    metrics: super::InboundMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match super::metadata_client(spec.jwks_timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "JWKS fetcher not started");
            return;
        }
    };
    let mut failures = 0u32;
    let mut skipped_before = None;
    loop {
        jwks.last_fetch_ms
            .store(jwks.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let result = tracing::Instrument::instrument(
            fetch(&client, &spec),
            tracing::info_span!("jwks_fetch"),
        )
        .await;
        let outcome = if result.is_ok() { "success" } else { "error" };
        metrics
            .jwks_fetches
            .get_or_create(&super::OutcomeLabels { outcome })
            .inc();
        let next = match result {
            Ok((set, skipped, max_age)) => {
                if let Some(examples) = skipped_news(&mut skipped_before, &skipped) {
                    tracing::warn!(
                        skipped = skipped.len(),
                        examples = %examples,
                        "JWKS keys not used"
                    );
                }
                // Info when the key ids change (first load, rotation), else debug.
                let changed = jwks.keys().is_none_or(|old| {
                    old.len() != set.len() || set.kids().any(|k| !old.contains(k))
                });
                if changed {
                    tracing::info!(keys = set.len(), kids = %bounded_list(set.kids(), LOGGED_ITEMS), "JWKS loaded");
                } else {
                    tracing::debug!(keys = set.len(), "JWKS unchanged");
                }
                jwks.current.store(Some(Arc::new(set)));
                let now = crate::clock::unix_now();
                metrics
                    .jwks_loaded
                    .set(i64::try_from(now).unwrap_or(i64::MAX));
                *jwks
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                failures = 0;
                max_age.map_or(spec.jwks_refresh, |a| {
                    a.clamp(Duration::from_secs(10), Duration::from_secs(86400))
                })
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the last good keys");
                *jwks
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                crate::retry::backoff(failures, 0.0, None).min(spec.jwks_refresh)
            }
        };
        jwks.generation.send_modify(|g| *g += 1);
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = jwks.refetch.notified() => {}
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
    }
}

/// How many kids or skip reasons one log line names at most.
const LOGGED_ITEMS: usize = 5;

/// `items` joined with `,`, at most `max` of them, then how many more.
fn bounded_list<'a>(items: impl Iterator<Item = &'a str>, max: usize) -> String {
    let mut out = String::new();
    let mut more = 0usize;
    for (i, item) in items.enumerate() {
        if i < max {
            if i > 0 {
                out.push(',');
            }
            // A kid or a reason is the document's text: bounded too.
            out.extend(item.chars().take(120));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push_str(&format!(" (and {more} more)"));
    }
    out
}

/// What to log of the keys a fetch could not use: `None` when none were
/// skipped or the same were skipped last time (`before` keeps a digest), so a
/// JWKS full of unusable keys costs one warning when it changes, not one per
/// key per fetch. Otherwise the first few reasons.
fn skipped_news(before: &mut Option<Vec<u8>>, skipped: &[String]) -> Option<String> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for s in skipped {
        ctx.update(s.as_bytes());
        ctx.update(&[0]);
    }
    let digest = ctx.finish().as_ref().to_vec();
    let same = before.as_ref() == Some(&digest);
    *before = Some(digest);
    (!skipped.is_empty() && !same)
        .then(|| bounded_list(skipped.iter().map(String::as_str), LOGGED_ITEMS))
}

type Fetched = (KeySet, Vec<String>, Option<Duration>);

async fn fetch(client: &reqwest::Client, spec: &InboundSpec) -> Result<Fetched, String> {
    let (doc, max_age) = match &spec.keys {
        KeySource::JwksFile(path) => {
            let doc = tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (doc, None)
        }
        KeySource::Hmac(secret) => {
            let alg = spec
                .algorithms
                .first()
                .copied()
                .ok_or("no HMAC algorithm allowed")?;
            let text = crate::secret::read(secret).map_err(|e| e.to_string())?;
            return Ok((KeySet::hmac(text.as_bytes(), alg)?, Vec::new(), None));
        }
        KeySource::JwksUrl(url) => get(client, url.as_str()).await.map_err(|e| e.to_string())?,
        KeySource::Discovery(base) => {
            // The metadata must name the configured issuer exactly (RFC 8414 §3.3).
            let meta = crate::oauth::metadata::metadata(client, base.as_str(), &spec.issuer)
                .await
                .map_err(|e| e.to_string())?;
            // Keys fetched in clear could be anyone's: an https:// issuer's
            // jwks_uri must be https:// too.
            let jwks_uri = crate::oauth::metadata::metadata_endpoint(&meta, "jwks_uri", base)
                .map_err(|e| e.to_string())?;
            get(client, jwks_uri.as_str())
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let (set, skipped) = KeySet::parse(&doc, &spec.algorithms)?;
    Ok((set, skipped, max_age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let small_n = URL_SAFE_NO_PAD.encode([0xC1u8; 128]);
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "small", "n": small_n, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32]), "alg": "ES256"},
        ]});
        let (set, skipped) = KeySet::parse(
            doc.to_string().as_bytes(),
            &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        )
        .unwrap();
        assert!(set.is_empty());
        let all = skipped.join("; ");
        for want in [
            "1024 bits refused",
            "symmetric keys are never taken",
            "not a signing key",
            "unsupported curve",
            "does not fit Ed25519",
        ] {
            assert!(all.contains(want), "{want} in {all}");
        }
    }

    #[test]
    fn an_hmac_secret_shorter_than_the_hash_is_refused() {
        for (alg, min) in [
            (Algorithm::HS256, 32),
            (Algorithm::HS384, 48),
            (Algorithm::HS512, 64),
        ] {
            let e = KeySet::hmac(&vec![b'x'; min - 1], alg).err().unwrap();
            assert!(e.contains(&format!("needs at least {min}")), "{e}");
            assert!(!e.contains("xxxx"), "the secret is not in the message");
            let set = KeySet::hmac(&vec![b'x'; min], alg).unwrap();
            assert_eq!(
                set.find(Some("any kid")).unwrap().alg_name(),
                format!("{alg:?}")
            );
        }
        assert!(KeySet::hmac(&[0u8; 64], Algorithm::ES256).is_err());
    }

    #[test]
    fn ten_thousand_unusable_keys_make_one_line_once() {
        let keys: Vec<_> = (0..10_000)
            .map(|i| serde_json::json!({"kty": "oct", "kid": format!("k{i}"), "k": "c2VjcmV0"}))
            .collect();
        let doc = serde_json::json!({ "keys": keys }).to_string();
        let (_, skipped) = KeySet::parse(doc.as_bytes(), &[Algorithm::ES256]).unwrap();
        assert_eq!(skipped.len(), 10_000);
        let mut before = None;
        let line = skipped_news(&mut before, &skipped).expect("logged the first time");
        assert!(line.len() < 1_000, "{} bytes", line.len());
        assert!(line.ends_with("(and 9995 more)"), "{line}");
        // Refetched unchanged: nothing more, however often.
        for _ in 0..3 {
            assert_eq!(skipped_news(&mut before, &skipped), None);
        }
        // Changed: one line again; then all usable: nothing.
        assert!(skipped_news(&mut before, &skipped[1..]).is_some());
        assert_eq!(skipped_news(&mut before, &[]), None);
        assert!(skipped_news(&mut before, &skipped[..1]).is_some());
    }

    #[test]
    fn a_logged_list_is_bounded_in_items_and_length() {
        let long = "x".repeat(10_000);
        let items = [long.as_str(), "a", "b"];
        let line = bounded_list(items.iter().copied(), 2);
        assert_eq!(line, format!("{},a (and 1 more)", "x".repeat(120)));
        assert_eq!(bounded_list(["a", "b"].into_iter(), 5), "a,b");
    }

    #[test]
    fn algorithms_outside_the_allowed_list_are_skipped() {
        let doc = serde_json::json!({"keys": [{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32])}]});
        let (set, skipped) =
            KeySet::parse(doc.to_string().as_bytes(), &[Algorithm::ES256]).unwrap();
        assert!(set.is_empty());
        assert!(
            skipped[0].contains("not in the allowed list"),
            "{skipped:?}"
        );
    }
}
