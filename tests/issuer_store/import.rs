//! The JSON state of the previous release (`issuer.json`, `secrets.key`,
//! `signing-es256.pem`, `keys.json`), written here as that release wrote it,
//! imported once into the store: apps keep their secrets, blocks and
//! deletions hold, tokens it signed keep verifying, and a later change to the
//! file is not read.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::path::PathBuf;
use support::issuer::{App, ORDERS};

/// An API only the JSON state knows.
const INVENTORY: &str = "https://inventory.example.com";
const ADMIN_SECRET: &str = "admin-secret-0123456789abcdef0123456789";
const LEGACY_SECRET: &str = "legacy-secret-0123456789abcdef0123456789";
const FROZEN_SECRET: &str = "frozen-secret-0123456789abcdef0123456789";
const GONE_SECRET: &str = "gone-secret-0123456789abcdef0123456789ab";
const LATE_SECRET: &str = "late-secret-0123456789abcdef0123456789ab";

/// The log message of the import.
const IMPORTED: &str = "imported the JSON state file into the store once; it is not read again (remove `state` from the config)";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The public JWK of a P-256 key.
fn jwk(key: &rcgen::KeyPair, kid: &str) -> Value {
    let raw = key.public_key_raw(); // 0x04 ‖ x ‖ y
    assert_eq!(raw.len(), 65);
    json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        "kid": kid, "use": "sig", "alg": "ES256",
    })
}

/// What the previous release left beside its state file.
struct OldState {
    dir: tempfile::TempDir,
    /// `signing-es256.pem`: the key that signed its tokens.
    signing: rcgen::KeyPair,
    /// Retired in `keys.json` (until an hour from now); its private half
    /// signed tokens still valid.
    retired: rcgen::KeyPair,
    /// `secrets.key`: what client secrets were hashed with.
    hmac_key: [u8; 32],
    /// When the state was written (Unix seconds).
    at: u64,
}

const RETIRED_KID: &str = "retired-key-1";
const EXPIRED_KID: &str = "expired-key-0";

impl OldState {
    fn write() -> Self {
        let mut hmac_key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut hmac_key).unwrap();
        let old = OldState {
            dir: tempfile::tempdir().unwrap(),
            signing: rcgen::KeyPair::generate().unwrap(),
            retired: rcgen::KeyPair::generate().unwrap(),
            hmac_key,
            at: now(),
        };
        let dir = old.dir.path();
        std::fs::write(dir.join("secrets.key"), old.hmac_key).unwrap();
        std::fs::write(dir.join("signing-es256.pem"), old.signing.serialize_pem()).unwrap();
        let expired = rcgen::KeyPair::generate().unwrap();
        let retired = json!([
            {"jwk": jwk(&old.retired, RETIRED_KID), "retire_after": old.at + 3600},
            {"jwk": jwk(&expired, EXPIRED_KID), "retire_after": old.at - 60},
        ]);
        std::fs::write(dir.join("keys.json"), retired.to_string()).unwrap();
        old.write_state(false);
        old
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("issuer.json")
    }

    /// A stored secret as the previous release kept it.
    fn mac(&self, secret: &str) -> Value {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.hmac_key);
        let mac = aws_lc_rs::hmac::sign(&key, secret.as_bytes());
        json!({"mac": STANDARD.encode(mac.as_ref())})
    }

    /// `issuer.json`: `legacy` (secret, grants on Orders and Inventory, a
    /// `not_before` 1000 s ago), `frozen` blocked, `gone` deleted, one
    /// revoked token id. `changed`: what an operator might edit in it later
    /// (`frozen` unblocked, `gone` undeleted, a new app `late`).
    fn write_state(&self, changed: bool) {
        let at = self.at;
        let mut frozen = json!({
            "client_id": "frozen", "name": "Frozen",
            "secrets": [self.mac(FROZEN_SECRET)],
            "grants": {ORDERS: ["orders:read"]},
            "blocked": true, "blocked_at": at - 100,
        });
        let mut apps = vec![json!({
            "client_id": "legacy", "name": "Legacy",
            "secrets": [self.mac(LEGACY_SECRET)],
            "grants": {ORDERS: ["orders:read"], INVENTORY: ["stock:read"]},
        })];
        let mut deleted = json!(["gone"]);
        if changed {
            frozen["blocked"] = false.into();
            frozen.as_object_mut().unwrap().remove("blocked_at");
            deleted = json!([]);
            apps.push(json!({
                "client_id": "late", "name": "Late",
                "secrets": [self.mac(LATE_SECRET)],
                "grants": {ORDERS: ["orders:read"]},
            }));
        }
        apps.push(frozen);
        let state = json!({
            "apis": [{"id": "inventory", "name": "Inventory API", "identifier": INVENTORY, "scopes": ["stock:read"]}],
            "apps": apps,
            "deleted_apis": [],
            "deleted_apps": deleted,
            "revoked": {"revoked-jti": at + 3600},
            "not_before": {"frozen": at - 100, "legacy": at - 1000},
        });
        std::fs::write(
            self.state_path(),
            serde_json::to_vec_pretty(&state).unwrap(),
        )
        .unwrap();
    }

    /// A token the previous release could have issued to `legacy` for the
    /// Orders API, signed by `key` under `kid`.
    fn old_token(key: &rcgen::KeyPair, kid: &str, jti: &str, iat: u64) -> String {
        let claims = json!({
            "iss": URL, "sub": "legacy@client", "aud": ORDERS,
            "cid": "legacy", "client_id": "legacy",
            "iat": iat, "exp": iat + 3600,
            "jti": jti, "scp": ["orders:read"], "scope": "orders:read",
            "gty": "client_credentials",
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.into());
        let pem = key.serialize_pem();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

/// The config: the Orders API, `admin` (may introspect), and `gone` (which
/// the state deleted) with a secret; `store` as given (TOML lines).
fn config(store: &str) -> tempfile::NamedTempFile {
    let api = OrdersApi::new()
        .scopes(&["orders:read"])
        .app(App::new("admin", ADMIN_SECRET).mgmt(&["tokens:introspect", "apps:read"]))
        .app(App::new("gone", GONE_SECRET).orders(&["orders:read"]));
    config_file(&issuer_toml(&api, store))
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The JWKS of the issuer at `base`: `kid`s, and the kid of the key whose
/// point is `key`'s.
async fn jwks(base: &str, key: &rcgen::KeyPair) -> (Vec<String>, Option<String>) {
    let (status, jwks) = support::http::get_json(&format!("{base}.well-known/jwks.json")).await;
    assert_eq!(status, 200, "{jwks}");
    let want = jwk(key, "");
    let keys = jwks["keys"].as_array().unwrap();
    let kids = keys
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    let same = keys
        .iter()
        .find(|k| k["x"] == want["x"] && k["y"] == want["y"] && k["crv"] == "P-256")
        .map(|k| k["kid"].as_str().unwrap().to_owned());
    (kids, same)
}

/// Whether the issuer at `base` says `token` is active.
async fn active(base: &str, token: &str) -> bool {
    let (status, answer) = form_as(base, "oauth/introspect", "admin", ADMIN_SECRET, token).await;
    assert_eq!(status, 200, "{answer}");
    answer["active"].as_bool().unwrap()
}

/// The status of a token request of `client_id` for `audience`.
async fn token_status(base: &str, client_id: &str, secret: &str, audience: &str) -> u16 {
    support::http::token_json(base, client_id, secret, audience)
        .await
        .0
}

/// The deprecation warning about `issuer.state` was logged.
fn warned_about_state(run: &Running) {
    let warned = logged(run, "config").into_iter().any(|v| {
        v["warning"]
            .as_str()
            .is_some_and(|w| w.starts_with("issuer.state: is deprecated"))
    });
    assert!(
        warned,
        "no deprecation warning: {:?}",
        run.lines.lock().unwrap()
    );
}

#[tokio::test]
async fn the_json_state_of_the_previous_release_is_imported_once() {
    let old = OldState::write();
    let dir = old.dir.path();
    // The deprecated alias: no `store`, the database goes beside the state.
    let f = config(&format!(
        "state = {}\n",
        quote(old.state_path().to_str().unwrap())
    ));
    let (mut run, base) = start_issuer(f.path()).await;
    warned_about_state(&run);
    let imports = logged(&run, IMPORTED);
    assert_eq!(imports.len(), 1, "{imports:?}");
    assert_eq!(imports[0]["file"], old.state_path().to_str().unwrap());
    assert!(
        dir.join("issuer.db").is_file(),
        "the store beside the state"
    );
    assert_eq!(
        support::store::query(
            dir,
            "SELECT count(*) FROM meta WHERE key = 'imported_state'"
        ),
        [[json!(1)]]
    );

    // The apps as the state left them.
    assert_eq!(
        token_status(&base, "legacy", LEGACY_SECRET, ORDERS).await,
        200
    );
    assert_eq!(
        token_status(&base, "legacy", LEGACY_SECRET, INVENTORY).await,
        200,
        "the API only the state knew"
    );
    assert_eq!(
        token_status(&base, "legacy", FROZEN_SECRET, ORDERS).await,
        401
    );
    assert_eq!(
        token_status(&base, "frozen", FROZEN_SECRET, ORDERS).await,
        400,
        "blocked"
    );
    assert_eq!(
        token_status(&base, "gone", GONE_SECRET, ORDERS).await,
        401,
        "deleted, though the config names it"
    );

    // The signing key and the retired one; the expired one is gone.
    let (kids, imported) = jwks(&base, &old.signing).await;
    let imported = imported.unwrap_or_else(|| panic!("the PEM key is not in JWKS: {kids:?}"));
    assert!(kids.contains(&RETIRED_KID.to_owned()), "{kids:?}");
    assert!(!kids.contains(&EXPIRED_KID.to_owned()), "{kids:?}");
    assert_eq!(kids.len(), 2, "{kids:?}");
    let (_, tok) = support::http::token_json(&base, "legacy", LEGACY_SECRET, ORDERS).await;
    let token = tok["access_token"].as_str().unwrap();
    assert_eq!(kid_of(token), imported, "the imported key signs");

    // Tokens the previous release issued keep (or lose) their standing.
    let t = old.at;
    let signed = OldState::old_token(&old.signing, &imported, "old-1", t - 500);
    assert!(active(&base, &signed).await, "signed by the imported key");
    let by_retired = OldState::old_token(&old.retired, RETIRED_KID, "old-2", t - 500);
    assert!(
        active(&base, &by_retired).await,
        "signed by the retired key"
    );
    let revoked = OldState::old_token(&old.signing, &imported, "revoked-jti", t - 500);
    assert!(!active(&base, &revoked).await, "its jti was revoked");
    let early = OldState::old_token(&old.signing, &imported, "old-3", t - 1010);
    assert!(
        !active(&base, &early).await,
        "issued before legacy's not_before"
    );

    // Sealed at rest: neither the private key nor the secrets key in the clear.
    let pem = old.signing.serialize_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(&body).unwrap();
    for file in ["issuer.db", "issuer.db-wal"] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
        assert!(!holds(&bytes, body.as_bytes()), "the PEM in {file}");
        assert!(!holds(&bytes, &der), "the key in {file}");
        assert!(!holds(&bytes, &old.hmac_key), "secrets.key in {file}");
    }
    assert_eq!(run.terminate().await.code(), Some(0));

    // Whatever the file says now is not read again.
    old.write_state(true);
    let (mut run, base) = start_issuer(f.path()).await;
    warned_about_state(&run);
    assert_eq!(logged(&run, IMPORTED).len(), 0, "imported once only");
    assert_eq!(
        token_status(&base, "frozen", FROZEN_SECRET, ORDERS).await,
        400
    );
    assert_eq!(token_status(&base, "late", LATE_SECRET, ORDERS).await, 401);
    assert_eq!(token_status(&base, "gone", GONE_SECRET, ORDERS).await, 401);
    assert_eq!(
        token_status(&base, "legacy", LEGACY_SECRET, ORDERS).await,
        200
    );
    let (again, same) = jwks(&base, &old.signing).await;
    assert_eq!((again, same), (kids, Some(imported.clone())));
    assert!(active(&base, &signed).await);
    assert!(active(&base, &by_retired).await);
    let logs = run.lines.lock().unwrap().join("\n");
    for secret in [
        ADMIN_SECRET,
        LEGACY_SECRET,
        FROZEN_SECRET,
        GONE_SECRET,
        &body,
    ] {
        assert!(!logs.contains(secret), "a secret in the logs:\n{logs}");
    }
    assert_eq!(run.terminate().await.code(), Some(0));
}

#[tokio::test]
async fn a_state_file_is_imported_into_an_explicit_sqlite_store_too() {
    let old = OldState::write();
    let elsewhere = tempfile::tempdir().unwrap();
    let db = elsewhere.path().join("db").join("issuer.db");
    let f = config(&format!(
        "store = {}\nstate = {}\n",
        quote(&format!("sqlite://{}", db.display())),
        quote(old.state_path().to_str().unwrap())
    ));
    let (mut run, base) = start_issuer(f.path()).await;
    warned_about_state(&run);
    assert_eq!(logged(&run, IMPORTED).len(), 1);
    assert!(db.is_file());
    assert!(
        !old.dir.path().join("issuer.db").exists(),
        "the store is where `store` says"
    );
    assert_eq!(
        token_status(&base, "legacy", LEGACY_SECRET, ORDERS).await,
        200
    );
    assert_eq!(
        token_status(&base, "frozen", FROZEN_SECRET, ORDERS).await,
        400
    );
    assert_eq!(token_status(&base, "gone", GONE_SECRET, ORDERS).await, 401);
    let (_, imported) = jwks(&base, &old.signing).await;
    let imported = imported.expect("the PEM key in JWKS");
    let signed = OldState::old_token(&old.signing, &imported, "old-1", old.at - 500);
    assert!(active(&base, &signed).await);
    assert_eq!(run.terminate().await.code(), Some(0));
}

#[tokio::test]
async fn a_state_file_is_not_imported_over_a_store_in_use() {
    let elsewhere = tempfile::tempdir().unwrap();
    let store = store_line(elsewhere.path());
    let f = config(&store);
    let (mut run, _) = start_issuer(f.path()).await;
    assert_eq!(run.terminate().await.code(), Some(0));

    // The operator points `state` at an old file afterwards: the store wins.
    let old = OldState::write();
    let g = config(&format!(
        "{store}state = {}\n",
        quote(old.state_path().to_str().unwrap())
    ));
    let (mut run, base) = start_issuer(g.path()).await;
    let warned = logged(
        &run,
        "the JSON state file was not imported: the store already holds a registry",
    );
    assert_eq!(warned.len(), 1, "{:?}", run.lines.lock().unwrap());
    assert_eq!(warned[0]["file"], old.state_path().to_str().unwrap());
    assert_eq!(logged(&run, IMPORTED).len(), 0);
    assert_eq!(
        token_status(&base, "legacy", LEGACY_SECRET, ORDERS).await,
        401
    );
    assert_eq!(
        token_status(&base, "gone", GONE_SECRET, ORDERS).await,
        200,
        "the config's app, not deleted"
    );
    let (_, imported) = jwks(&base, &old.signing).await;
    assert_eq!(imported, None, "the old key is not taken either");
    assert_eq!(run.terminate().await.code(), Some(0));
}

/// An upgrade as the README has it: `--migrate-only` first, then the
/// issuer; the import still happens (on that first real start).
#[tokio::test]
async fn migrating_first_does_not_skip_the_import() {
    let old = OldState::write();
    let f = config(&format!(
        "state = {}\n",
        quote(old.state_path().to_str().unwrap())
    ));
    let (status, stderr) = run_issuer(f.path(), &["--migrate-only"]).await;
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(IMPORTED), "{stderr}");
    let (mut run, base) = start_issuer(f.path()).await;
    assert_eq!(
        logged(&run, IMPORTED).len(),
        1,
        "{:?}",
        run.lines.lock().unwrap()
    );
    assert_eq!(
        token_status(&base, "legacy", LEGACY_SECRET, ORDERS).await,
        200
    );
    let (_, imported) = jwks(&base, &old.signing).await;
    assert!(imported.is_some(), "the PEM key in JWKS");
    assert_eq!(run.terminate().await.code(), Some(0));
}
