//! Token cache files: one swapped in from another credential, or in a
//! directory others may write, is not used.

use super::*;
use support::config::{Cred, SidecarConfig, quote};
use support::echo::Echo;
use support::http::client;
pub(crate) use support::jwt::payload as claims_of;
use support::sidecar::Sidecar;

/// The process's peak resident memory (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

pub(crate) struct Cached {
    idp: Issuer,
    echo: Echo,
    pub(crate) dir: tempfile::TempDir,
}

impl Cached {
    /// An issuer with an `admin` app granted `scopes` on the orders API.
    pub(crate) async fn with_admin(scopes: &[&str]) -> Self {
        Cached {
            idp: idp(Some(App::new("admin", SECRET).orders(scopes))).await,
            echo: Echo::start().await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn cache(&self) -> std::path::PathBuf {
        self.dir.path().join("tokens")
    }

    /// A sidecar with two credentials for the same API: `orders` (app
    /// `reader`: `orders:read`) and `wide` (app `admin`: `orders:read admin`),
    /// each behind an outbound route, keeping tokens in `token_cache_dir`.
    pub(crate) async fn sidecar(&self) -> Sidecar {
        self.sidecar_at(&self.cache()).await
    }

    /// [`Self::sidecar`] with `token_cache_dir = dir`.
    pub(crate) async fn sidecar_at(&self, dir: &std::path::Path) -> Sidecar {
        let cred = |name: &str, app: &str| {
            Cred::new(name, &format!("{}oauth/token", self.idp.url))
                .text("client_id", app)
                .text("client_secret", SECRET)
                .text("audience", ORDERS)
        };
        let config = SidecarConfig::new()
            .top(&format!(
                "token_cache_dir = {}",
                quote(dir.to_str().unwrap())
            ))
            .credential(cred("orders", "reader"))
            .credential(cred("wide", "admin"))
            .outbound("orders", &self.echo.url(), "orders")
            .outbound("wide", &self.echo.url(), "wide");
        let s = Sidecar::start(&config).await;
        s.ready().await;
        s
    }

    /// The token the upstream receives through route `name` (and the request's path).
    pub(crate) async fn sent_through(&self, s: &Sidecar, name: &str, path: &str) -> String {
        let resp = client()
            .get(format!("{}{path}", s.outbound(name)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let seen = self.echo.seen();
        let seen = seen.iter().rev().find(|s| s.uri == path).unwrap();
        seen.authorization()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap()
            .to_owned()
    }

    /// The two cache files: (`orders`'s, `wide`'s), told apart by their token.
    pub(crate) fn files(&self, orders_token: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(self.cache())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        let holds =
            |p: &std::path::Path| std::fs::read_to_string(p).unwrap().contains(orders_token);
        if holds(&files[0]) {
            (files[0].clone(), files[1].clone())
        } else {
            (files[1].clone(), files[0].clone())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cache_file_swapped_in_from_another_credential_is_not_used() {
    let t = Cached::with_admin(&["orders:read", "admin"]).await;
    let first = t.sidecar().await;
    let orders_token = t.sent_through(&first, "orders", "/first/orders").await;
    let wide_token = t.sent_through(&first, "wide", "/first/wide").await;
    first.stop().await;
    assert_eq!(claims_of(&orders_token)["client_id"], "reader");
    assert_eq!(claims_of(&wide_token)["client_id"], "admin");
    let (orders_file, wide_file) = t.files(&orders_token);

    // A restart reuses each credential's own kept token.
    let again = t.sidecar().await;
    assert_eq!(
        t.sent_through(&again, "orders", "/again").await,
        orders_token
    );
    again.stop().await;

    type Swap = fn(&std::path::Path, &std::path::Path);
    let swaps: Vec<(&str, Swap)> = vec![
        ("copied", |from, to| {
            std::fs::copy(from, to).unwrap();
        }),
        ("renamed over", |from, to| {
            let tmp = to.with_extension("tmp");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }),
        ("symlinked", |from, to| {
            std::fs::remove_file(to).unwrap();
            std::os::unix::fs::symlink(from, to).unwrap();
        }),
        ("hard-linked", |from, to| {
            std::fs::remove_file(to).unwrap();
            std::fs::hard_link(from, to).unwrap();
        }),
        ("symlinked through a relative path", |from, to| {
            std::fs::remove_file(to).unwrap();
            std::os::unix::fs::symlink(from.file_name().unwrap(), to).unwrap();
        }),
    ];
    for (i, (how, swap)) in swaps.into_iter().enumerate() {
        // `wide`'s kept file, with its wider token, planted as `orders`'s.
        let _ = std::fs::remove_file(&orders_file);
        std::fs::write(&orders_file, "{}").unwrap();
        swap(&wide_file, &orders_file);
        let s = t.sidecar().await;
        let path = format!("/swapped/{i}");
        let sent = t.sent_through(&s, "orders", &path).await;
        s.stop().await;
        assert_ne!(
            sent, wide_token,
            "{how}: the other credential's token was used"
        );
        let claims = claims_of(&sent);
        assert_eq!(claims["client_id"], "reader", "{how}: {claims}");
        assert_eq!(claims["scope"], "orders:read", "{how}: {claims}");
        // The wide credential's own file was not clobbered through the link.
        let wide_kept = std::fs::read_to_string(&wide_file).unwrap();
        assert!(wide_kept.contains(&wide_token), "{how}: {wide_kept}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = Cached::with_admin(&["orders:read", "admin"]).await;
    let first = t.sidecar().await;
    let kept = t.sent_through(&first, "orders", "/first").await;
    first.stop().await;
    let (orders_file, _) = t.files(&kept);
    for (i, mode) in [0o777, 0o1777, 0o775, 0o757, 0o730].into_iter().enumerate() {
        std::fs::set_permissions(t.cache(), std::fs::Permissions::from_mode(mode)).unwrap();
        let s = t.sidecar().await;
        let sent = t.sent_through(&s, "orders", &format!("/exposed/{i}")).await;
        s.stop().await;
        assert_ne!(
            sent, kept,
            "{mode:o}: the kept token was read from an exposed directory"
        );
        assert_eq!(claims_of(&sent)["client_id"], "reader");
        // Nor was the fresh token written there.
        let on_disk = std::fs::read_to_string(&orders_file).unwrap();
        assert!(
            on_disk.contains(&kept) && !on_disk.contains(&sent),
            "{mode:o}"
        );
    }
    // Private again: used again.
    std::fs::set_permissions(t.cache(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let s = t.sidecar().await;
    assert_eq!(t.sent_through(&s, "orders", "/private").await, kept);
    s.stop().await;
}
