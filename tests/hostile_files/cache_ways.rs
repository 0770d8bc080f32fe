//! Token cache directories reached through an unsafe way, and a huge cache
//! file, are not used.

use super::cache_files::{Cached, claims_of, peak_rss_kib};

/// Whether this test process may give files to another user (`chown`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `nobody`: another user, for entries an attacker would own.
const NOBODY: u32 = 65534;

/// One way to reach the kept cache directory: what to build under the test's
/// private directory `base` (the kept directory is `real`), returning the
/// configured `token_cache_dir` and where `real` was moved to, if it was.
type Way =
    fn(&std::path::Path, &std::path::Path) -> (std::path::PathBuf, Option<std::path::PathBuf>);

/// Move `real` into `dir` (created with `mode`) as `tokens`.
fn move_into(real: &std::path::Path, dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join("tokens");
    std::fs::rename(real, &to).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

/// Every way to reach the kept directory: (what, needs root, kept token used, layout).
fn ways() -> Vec<(&'static str, bool, bool, Way)> {
    [writable_by_others(), owned_or_sticky()].concat()
}

/// Ways through a directory others may write.
fn writable_by_others() -> Vec<(&'static str, bool, bool, Way)> {
    use std::os::unix::fs::symlink;
    vec![
        // (what, needs root, kept token used, layout)
        ("a world-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-1"), 0o777);
            (to.clone(), Some(to))
        }),
        ("a group-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-2"), 0o775);
            (to.clone(), Some(to))
        }),
        ("an others-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-3"), 0o757);
            (to.clone(), Some(to))
        }),
        ("a setgid world-writable parent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-4"), 0o2777);
            (to.clone(), Some(to))
        }),
        ("a world-writable grandparent", false, false, |b, r| {
            let to = move_into(r, &b.join("open-5/private"), 0o700);
            std::fs::set_permissions(
                b.join("open-5"),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
            (to.clone(), Some(to))
        }),
        (
            "our link, to a directory in a world-writable one",
            false,
            false,
            |b, r| {
                let to = move_into(r, &b.join("open-6"), 0o777);
                symlink(&to, b.join("link-6")).unwrap();
                (b.join("link-6"), Some(to))
            },
        ),
        (
            "our link on the way, to a world-writable directory",
            false,
            false,
            |b, r| {
                let to = move_into(r, &b.join("open-7"), 0o777);
                symlink(b.join("open-7"), b.join("via-7")).unwrap();
                (b.join("via-7/tokens"), Some(to))
            },
        ),
    ]
}

/// Ways through sticky directories and links, ours or another user's.
fn owned_or_sticky() -> Vec<(&'static str, bool, bool, Way)> {
    use std::os::unix::fs::{lchown, symlink};
    vec![
        (
            "a sticky parent (as /tmp), our directory",
            false,
            true,
            |b, r| {
                let to = move_into(r, &b.join("sticky-8"), 0o1777);
                (to.clone(), Some(to))
            },
        ),
        ("our link at the configured path", false, true, |b, r| {
            symlink(r, b.join("link-9")).unwrap();
            (b.join("link-9"), None)
        }),
        (
            "our relative link in a sticky directory",
            false,
            true,
            |b, _| {
                std::fs::create_dir(b.join("sticky-10")).unwrap();
                std::fs::set_permissions(
                    b.join("sticky-10"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                )
                .unwrap();
                symlink("../tokens", b.join("sticky-10/link")).unwrap();
                (b.join("sticky-10/link"), None)
            },
        ),
        (
            "another user's link at the configured path",
            true,
            false,
            |b, r| {
                symlink(r, b.join("link-11")).unwrap();
                lchown(b.join("link-11"), Some(NOBODY), None).unwrap();
                (b.join("link-11"), None)
            },
        ),
        (
            "another user's link in a sticky directory (as /tmp)",
            true,
            false,
            |b, r| {
                std::fs::create_dir(b.join("sticky-12")).unwrap();
                std::fs::set_permissions(
                    b.join("sticky-12"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                )
                .unwrap();
                symlink(r, b.join("sticky-12/link")).unwrap();
                lchown(b.join("sticky-12/link"), Some(NOBODY), None).unwrap();
                (b.join("sticky-12/link"), None)
            },
        ),
        ("another user's link on the way", true, false, |b, _| {
            symlink(b, b.join("via-13")).unwrap();
            lchown(b.join("via-13"), Some(NOBODY), None).unwrap();
            (b.join("via-13/tokens"), None)
        }),
        (
            "a parent of another user (mode 755)",
            true,
            false,
            |b, r| {
                let to = move_into(r, &b.join("theirs-14"), 0o755);
                lchown(b.join("theirs-14"), Some(NOBODY), None).unwrap();
                (to.clone(), Some(to))
            },
        ),
        (
            "another user's directory in a sticky parent",
            true,
            false,
            |b, r| {
                let to = move_into(r, &b.join("sticky-15"), 0o1777);
                lchown(&to, Some(NOBODY), None).unwrap();
                (to.clone(), Some(to))
            },
        ),
    ]
}

/// As OpenSSH's `StrictModes`: the kept token is used only when every
/// directory on the way to `token_cache_dir` is ours or root's and writable by
/// no one else (or sticky, as `/tmp`, with our entry in it), and every
/// symbolic link on the way is ours or root's. Otherwise it is neither read
/// nor overwritten, and the credential fetches its own token. Layouts with
/// another user's entries need root (`chown` to `nobody`); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cache_directory_reached_through_an_unsafe_way_is_not_used() {
    use std::os::unix::fs::lchown;
    let t = Cached::with_admin(&["orders:read"]).await;
    let first = t.sidecar().await;
    let kept = t.sent_through(&first, "orders", "/first").await;
    first.stop().await;
    let (orders_file, _) = t.files(&kept);
    let real = t.cache();
    let ways = ways();
    let mut skipped = Vec::new();
    for (i, (what, needs_root, used, way)) in ways.into_iter().enumerate() {
        if needs_root && !is_root() {
            skipped.push(what);
            continue;
        }
        let (configured, moved) = way(t.dir.path(), &real);
        let s = t.sidecar_at(&configured).await;
        let sent = t.sent_through(&s, "orders", &format!("/way/{i}")).await;
        s.stop().await;
        if let Some(at) = moved {
            std::fs::rename(at, &real).unwrap();
        }
        if is_root() {
            lchown(&real, Some(0), None).unwrap();
        }
        let on_disk = std::fs::read_to_string(&orders_file).unwrap();
        if used {
            assert_eq!(sent, kept, "{what}: the kept token was not used");
        } else {
            assert_ne!(sent, kept, "{what}: the kept token was read");
            assert_eq!(claims_of(&sent)["client_id"], "reader", "{what}");
            assert!(
                on_disk.contains(&kept) && !on_disk.contains(&sent),
                "{what}: the fresh token was written there"
            );
        }
    }
    if !skipped.is_empty() {
        eprintln!("not root, skipped (need chown): {skipped:?}");
    }
    // Back in place: used again.
    let s = t.sidecar().await;
    assert_eq!(t.sent_through(&s, "orders", "/back").await, kept);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_cache_file_is_not_read_whole() {
    let t = Cached::with_admin(&["orders:read"]).await;
    let first = t.sidecar().await;
    let kept = t.sent_through(&first, "orders", "/first").await;
    first.stop().await;
    let (orders_file, _) = t.files(&kept);
    // 512 MiB, sparse: no disk, but reading it whole would take the memory.
    let huge = t.dir.path().join("huge.json");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(512 * 1024 * 1024).unwrap();
    drop(f);
    let before = peak_rss_kib();
    for (i, how) in ["symlink", "in place"].into_iter().enumerate() {
        std::fs::remove_file(&orders_file).unwrap();
        if how == "symlink" {
            std::os::unix::fs::symlink(&huge, &orders_file).unwrap();
        } else {
            use std::os::unix::fs::OpenOptionsExt as _;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&orders_file)
                .unwrap();
            f.set_len(512 * 1024 * 1024).unwrap();
        }
        let s = t.sidecar().await;
        let sent = t.sent_through(&s, "orders", &format!("/huge/{i}")).await;
        s.stop().await;
        assert_eq!(claims_of(&sent)["client_id"], "reader", "{how}");
        assert_ne!(sent, kept, "{how}");
    }
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(grew < 128 * 1024, "peak memory grew by {grew} KiB");
}
