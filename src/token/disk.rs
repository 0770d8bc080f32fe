//! `token_cache_dir`: a still-valid token survives a restart, so a crash-looping
//! pod does not spend the provider's token quota. One file per credential, named
//! by a hash of what the token is for (credential, token endpoint or issuer,
//! client id, audience, resource, scopes), written atomically with mode 0600.
//!
//! A file is trusted only as far as it must be: it carries the identity of the
//! credential it was written for (a digest of everything that decides what
//! token the provider issues), and one written for another credential (copied
//! or renamed over, say) is ignored; it is opened without following a symbolic
//! link and must be a regular file of ours, private to us, at most
//! [`MAX_FILE_BYTES`]; the directory must be ours (or root's) and writable by
//! no one else, and so must every directory on the way to it (as OpenSSH's
//! `StrictModes`, see [`check_dir`]), else the cache is not used at all.
//! A token that has expired is ignored. The path and the token are never logged.

use crate::clock::unix_now;
use crate::config::{CredentialSpec, Endpoint};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// A cache file is a few hundred bytes; a larger one is not ours.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A token read back from disk, with what its refresh schedule needs.
pub struct Cached {
    pub access_token: String,
    /// Left until it expires.
    pub remaining: Duration,
    /// Its whole lifetime when it was issued.
    pub lifetime: Duration,
}

/// Where one credential's token is kept, and the identity the file must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFile {
    pub path: PathBuf,
    /// Hex SHA-256 of what the token is for (see [`identity`]).
    identity: String,
}

/// Why a cache file (or the cache directory) is not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "the token cache directory is writable by group or others (mode {0:o}); not used: make it private (chmod 700)"
    )]
    DirectoryExposed(u32),
    #[error("the token cache directory belongs to another user; not used")]
    DirectoryOwner,
    #[error("the token cache directory is not a directory; not used")]
    NotADirectory,
    #[error(
        "a directory on the way to the token cache directory is writable by group or others (mode {0:o}) \
         and not sticky, or sticky but what it holds on the way belongs to another user; not used: \
         make it writable by its owner only (`namei -l` shows the owner and mode of each)"
    )]
    AncestorExposed(u32),
    #[error(
        "a directory on the way to the token cache directory belongs to another user (not root); not used \
         (`namei -l` shows the owner of each)"
    )]
    AncestorOwner,
    #[error(
        "the token cache directory is, or is reached through, a symbolic link that belongs to another user \
         (not root); not used"
    )]
    LinkOwner,
    #[error("too many symbolic links on the way to the token cache directory; not used")]
    TooManyLinks,
    #[error("the token cache entry is a symbolic link; ignored")]
    Symlink,
    #[error("the token cache entry is not a regular file; ignored")]
    NotAFile,
    #[error("the token cache file belongs to another user; ignored")]
    OtherUser,
    #[error("the token cache file is readable by others (mode {0:o}); ignored")]
    Exposed(u32),
    #[error("the token cache file is larger than {MAX_FILE_BYTES} bytes; ignored")]
    TooLarge,
    #[error("the token cache file was written for another credential; ignored")]
    Foreign,
    #[error("the token cache file is not what this sidecar writes; ignored")]
    Malformed,
    #[error("cannot read the token cache: {0}")]
    Io(std::io::ErrorKind),
    #[error("cannot keep the token: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot keep the token: {0}")]
    Write(#[source] crate::private_file::WriteError),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct File {
    /// The credential the token was issued for (hex SHA-256, see [`identity`]).
    credential: String,
    access_token: String,
    /// Unix seconds.
    obtained_at: u64,
    expires_at: u64,
}

fn digest(parts: &[&str]) -> String {
    let mut what = Vec::new();
    for part in parts {
        what.extend_from_slice(part.as_bytes());
        what.push(0);
    }
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &what);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What decides the token a provider issues for `spec`: its name, token
/// endpoint or issuer, client id, authentication method, audience, resource,
/// scopes and extra parameters.
pub fn identity(spec: &CredentialSpec) -> String {
    let endpoint = match &spec.endpoint {
        Endpoint::TokenUrl(_) => "token_url",
        Endpoint::Discovery(_) => "issuer",
    };
    let scopes = spec.scopes.join(" ");
    let extra: Vec<String> = {
        let mut e: Vec<String> = spec
            .extra_params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        e.sort();
        e
    };
    let extra = extra.join("\u{1}");
    digest(&[
        "m2m-sidecar token cache v1",
        &spec.name,
        endpoint,
        spec.endpoint.url().as_str(),
        &spec.client_id,
        spec.auth_method.as_str(),
        spec.audience.as_deref().unwrap_or(""),
        spec.resource.as_deref().unwrap_or(""),
        &scopes,
        &extra,
    ])
}

/// Where `spec`'s token is kept under `dir`.
pub fn path(dir: &Path, spec: &CredentialSpec) -> PathBuf {
    let hex = digest(&[
        spec.name.as_str(),
        spec.endpoint.url().as_str(),
        &spec.client_id,
        spec.audience.as_deref().unwrap_or(""),
        spec.resource.as_deref().unwrap_or(""),
        &spec.scopes.join(" "),
    ]);
    dir.join(format!("token-{}.json", &hex[..32]))
}

/// `spec`'s cache file under `dir`.
pub fn cache_file(dir: &Path, spec: &CredentialSpec) -> CacheFile {
    CacheFile {
        path: path(dir, spec),
        identity: identity(spec),
    }
}

/// This process's user (the owner of `/proc/self`).
fn my_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Whether a file owned by `uid` may be trusted: ours or root's (when our
/// user is unknown, any: the mode checks still apply).
fn trusted(uid: u32, me: Option<u32>) -> bool {
    uid == 0 || me.is_none_or(|me| uid == me)
}

/// Most symbolic links followed on the way to the cache directory (as the
/// kernel's `ELOOP` limit).
const MAX_LINKS: usize = 40;

/// `parent` (a directory on the way, ours or root's) lets no one else replace
/// `child` (its entry on the way; `None`: not there yet, we create it): it is
/// writable by its owner only, or sticky (as `/tmp`) and `child` is ours or
/// root's, so no one else may rename or remove it.
fn parent_keeps(
    parent: &std::fs::Metadata,
    child: Option<&std::fs::Metadata>,
    me: Option<u32>,
) -> Result<(), CacheError> {
    let mode = parent.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 == 0 || (sticky && child.is_none_or(|c| trusted(c.uid(), me))) {
        Ok(())
    } else {
        Err(CacheError::AncestorExposed(mode))
    }
}

/// The path to the cache directory, as OpenSSH's `StrictModes` checks a
/// home directory, walked one entry at a time from `/` without trusting
/// anything another user could change:
///
/// - every directory on the way (from `/`) belongs to us or root and is
///   writable by no one else, unless it is sticky (as `/tmp`) and its entry on
///   the way belongs to us or root;
/// - a symbolic link on the way, the configured path itself included, must
///   belong to us or root (a link another user planted in `/tmp` is refused);
///   its target is walked the same way (at most [`MAX_LINKS`] links);
/// - the cache directory itself belongs to us or root and is writable by no one
///   else (sticky or not).
///
/// `Ok(false)`: the directory (or a directory on the way) does not exist yet,
/// and what exists lets us create the rest safely.
fn check_dir(dir: &Path) -> Result<bool, CacheError> {
    let io = |e: std::io::Error| CacheError::Io(e.kind());
    let me = my_uid();
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().map_err(io)?.join(dir)
    };
    let root = |me| -> Result<(PathBuf, std::fs::Metadata), CacheError> {
        let meta = std::fs::symlink_metadata("/").map_err(io)?;
        if !trusted(meta.uid(), me) {
            return Err(CacheError::AncestorOwner);
        }
        Ok((PathBuf::from("/"), meta))
    };
    let names = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some(OsString::from("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect()
    };
    // `at` never holds a symbolic link, and every directory above it was
    // checked: `..` is its parent.
    let (mut at, mut at_meta) = root(me)?;
    let mut todo: VecDeque<OsString> = names(&abs).into();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if at.pop() {
                at_meta = std::fs::symlink_metadata(&at).map_err(io)?;
            }
            continue;
        }
        let next = at.join(&name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                parent_keeps(&at_meta, None, me)?;
                return Ok(false);
            }
            Err(e) => return Err(io(e)),
        };
        parent_keeps(&at_meta, Some(&meta), me)?;
        if meta.file_type().is_symlink() {
            if !trusted(meta.uid(), me) {
                return Err(CacheError::LinkOwner);
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(CacheError::TooManyLinks);
            }
            let target = std::fs::read_link(&next).map_err(io)?;
            if target.is_absolute() {
                (at, at_meta) = root(me)?;
            }
            for n in names(&target).into_iter().rev() {
                todo.push_front(n);
            }
            continue;
        }
        if !meta.is_dir() {
            return Err(CacheError::NotADirectory);
        }
        if !trusted(meta.uid(), me) {
            return Err(if todo.is_empty() {
                CacheError::DirectoryOwner
            } else {
                CacheError::AncestorOwner
            });
        }
        (at, at_meta) = (next, meta);
    }
    // `at` is the cache directory itself (a trailing `..` makes it the
    // parent: checked the same way).
    if !trusted(at_meta.uid(), me) {
        return Err(CacheError::DirectoryOwner);
    }
    let mode = at_meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheError::DirectoryExposed(mode & 0o777));
    }
    Ok(true)
}

impl CacheFile {
    /// The token kept for this credential, if the file is trustworthy (see
    /// the module) and the token has at least `min_left` to live. Why not,
    /// otherwise (for the log).
    pub fn load(&self, min_left: Duration) -> Result<Option<Cached>, CacheError> {
        if let Some(dir) = self.path.parent()
            && !check_dir(dir)?
        {
            return Ok(None);
        }
        // Never follow a link (a swapped-in file of another credential, or a
        // huge file elsewhere); never block on a FIFO planted in its place.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(CacheError::Symlink),
            Err(e) => return Err(CacheError::Io(e.kind())),
        };
        let meta = file.metadata().map_err(|e| CacheError::Io(e.kind()))?;
        if !meta.is_file() {
            return Err(CacheError::NotAFile);
        }
        // Another user able to write the directory could plant a file of its own.
        if my_uid().is_some_and(|me| me != meta.uid()) {
            return Err(CacheError::OtherUser);
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CacheError::Exposed(mode));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(CacheError::TooLarge);
        }
        let mut text = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| CacheError::Io(e.kind()))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(CacheError::TooLarge);
        }
        let f: File = serde_json::from_slice(&text).map_err(|_| CacheError::Malformed)?;
        if f.credential != self.identity {
            return Err(CacheError::Foreign);
        }
        let now = unix_now();
        // As for token responses: no lifetime beyond what clocks can add.
        const MAX_LIFETIME: u64 = 10_000_000_000;
        if f.expires_at <= now.saturating_add(min_left.as_secs())
            || f.obtained_at > now
            || f.expires_at.saturating_sub(f.obtained_at) > MAX_LIFETIME
            || f.access_token.is_empty()
        {
            return Ok(None);
        }
        Ok(Some(Cached {
            access_token: f.access_token,
            remaining: Duration::from_secs(f.expires_at - now),
            lifetime: Duration::from_secs(f.expires_at - f.obtained_at),
        }))
    }

    /// Keep `access_token` (obtained now, valid for `lifetime`), unless the
    /// directory is not private.
    pub fn save(&self, access_token: &str, lifetime: Duration) -> Result<(), CacheError> {
        use std::os::unix::fs::DirBuilderExt as _;
        if let Some(dir) = self.path.parent() {
            if !check_dir(dir)? {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| CacheError::Io(e.kind()))?;
            }
            // Created by us (or existing): still ours and private?
            check_dir(dir)?;
        }
        let now = unix_now();
        let f = File {
            credential: self.identity.clone(),
            access_token: access_token.to_owned(),
            obtained_at: now,
            expires_at: now.saturating_add(lifetime.as_secs()),
        };
        let bytes = serde_json::to_vec(&f).map_err(CacheError::Encode)?;
        crate::private_file::write(&self.path, &bytes).map_err(CacheError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn spec(text: &str) -> CredentialSpec {
        let config = crate::config::load_str(text, crate::config::Format::Toml).unwrap();
        config.credentials[0].as_ref().clone()
    }

    const BASE: &str = "[credentials.orders]\ntoken_url = \"https://idp.example.com/oauth/token\"\nclient_id = \"billing\"\nclient_secret = \"s3cr3t-0123456789-abcdefghij-0123456789\"\naudience = \"https://orders.example.com\"\nscopes = [\"orders:read\"]\n";

    #[test]
    fn the_identity_covers_what_decides_the_token() {
        let base = identity(&spec(BASE));
        for (what, text) in [
            (
                "name",
                BASE.replace("credentials.orders", "credentials.billing"),
            ),
            (
                "endpoint",
                BASE.replace("idp.example.com", "idp2.example.com"),
            ),
            (
                "endpoint kind",
                BASE.replace(
                    "token_url = \"https://idp.example.com/oauth/token\"",
                    "issuer = \"https://idp.example.com/oauth/token\"",
                ),
            ),
            ("client id", BASE.replace("\"billing\"", "\"billing2\"")),
            (
                "audience",
                BASE.replace("orders.example.com", "all.example.com"),
            ),
            (
                "scopes",
                BASE.replace("[\"orders:read\"]", "[\"orders:read\", \"admin\"]"),
            ),
            (
                "auth method",
                format!("{BASE}auth_method = \"client_secret_post\"\n"),
            ),
            (
                "resource",
                format!("{BASE}resource = \"https://orders.example.com\"\n"),
            ),
            (
                "extra params",
                format!("{BASE}extra_params = {{ organization = \"acme\" }}\n"),
            ),
        ] {
            assert_ne!(identity(&spec(&text)), base, "{what}");
        }
        // Not the secret: a rotated secret keeps the token.
        assert_eq!(
            identity(&spec(
                &BASE.replace("s3cr3t-0123456789", "s3cr3t-9876543210")
            )),
            base
        );
    }

    #[test]
    fn a_file_round_trips_and_refuses_what_it_should() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("tokens");
        let mine = cache_file(&cache, &spec(BASE));
        assert!(mine.load(Duration::ZERO).unwrap().is_none(), "nothing yet");
        mine.save("tok-1", Duration::from_secs(3600)).unwrap();
        let dir_mode = std::fs::metadata(&cache).unwrap().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let got = mine.load(Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!(got.access_token, "tok-1");

        // Another credential's file under this one's name.
        let other = cache_file(&cache, &spec(&BASE.replace("\"billing\"", "\"admin\"")));
        other.save("tok-admin", Duration::from_secs(3600)).unwrap();
        std::fs::copy(&other.path, &mine.path).unwrap();
        assert!(matches!(
            mine.load(Duration::ZERO),
            Err(CacheError::Foreign)
        ));
        // Or a link to it.
        std::fs::remove_file(&mine.path).unwrap();
        std::os::unix::fs::symlink(&other.path, &mine.path).unwrap();
        assert!(matches!(
            mine.load(Duration::ZERO),
            Err(CacheError::Symlink)
        ));
        std::fs::remove_file(&mine.path).unwrap();

        // A FIFO does not block the load.
        let made = std::process::Command::new("mkfifo")
            .arg(&mine.path)
            .status()
            .is_ok_and(|s| s.success());
        if made {
            assert!(matches!(
                mine.load(Duration::ZERO),
                Err(CacheError::NotAFile)
            ));
            std::fs::remove_file(&mine.path).unwrap();
        }

        // Too large: not read whole.
        std::fs::write(&mine.path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        std::fs::set_permissions(&mine.path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            mine.load(Duration::ZERO),
            Err(CacheError::TooLarge)
        ));

        // A directory others may write: neither read nor written.
        mine.save("tok-2", Duration::from_secs(3600)).unwrap();
        for mode in [0o777, 0o770, 0o720, 0o702, 0o1777] {
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(
                matches!(
                    mine.load(Duration::ZERO),
                    Err(CacheError::DirectoryExposed(_))
                ),
                "{mode:o}"
            );
            assert!(
                matches!(
                    mine.save("tok-3", Duration::from_secs(60)),
                    Err(CacheError::DirectoryExposed(_))
                ),
                "{mode:o}"
            );
        }
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(
            mine.load(Duration::ZERO).unwrap().unwrap().access_token,
            "tok-2",
            "group-readable is fine, group-writable is not"
        );
    }

    /// Whether this process may give files away (`chown`), to plant entries
    /// of another user (`nobody`, 65534).
    fn can_chown() -> bool {
        my_uid() == Some(0)
    }

    const NOBODY: u32 = 65534;

    fn mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mkdir(p: &Path, m: u32) {
        std::fs::create_dir_all(p).unwrap();
        mode(p, m);
    }

    /// Which layouts of the way to the cache directory are trusted: every
    /// directory on the way ours or root's and writable by no one else, or
    /// sticky with our entry in it; symbolic links ours or root's; the
    /// directory itself private. Each layout is built fresh under a private
    /// temporary directory (itself in sticky `/tmp`, with our entry in it).
    #[test]
    fn every_directory_and_link_on_the_way_is_checked() {
        type Build = fn(&Path) -> PathBuf;
        #[derive(Debug)]
        enum Want {
            Used,
            Missing,
            Exposed,
            Link,
            AncestorOwner,
            DirOwner,
            DirExposed,
            NotDir,
            Loop,
        }
        let cases: Vec<(&str, bool, Want, Build)> = vec![
            ("a private directory", false, Want::Used, |b| {
                mkdir(&b.join("tokens"), 0o700);
                b.join("tokens")
            }),
            ("group-readable, others nothing", false, Want::Used, |b| {
                mkdir(&b.join("tokens"), 0o750);
                b.join("tokens")
            }),
            ("not there yet", false, Want::Missing, |b| b.join("tokens")),
            ("not there yet, two levels", false, Want::Missing, |b| {
                b.join("cache/tokens")
            }),
            ("a world-writable parent", false, Want::Exposed, |b| {
                mkdir(&b.join("open/tokens"), 0o700);
                mode(&b.join("open"), 0o777);
                b.join("open/tokens")
            }),
            ("a group-writable parent", false, Want::Exposed, |b| {
                mkdir(&b.join("open/tokens"), 0o700);
                mode(&b.join("open"), 0o775);
                b.join("open/tokens")
            }),
            ("an others-writable parent", false, Want::Exposed, |b| {
                mkdir(&b.join("open/tokens"), 0o700);
                mode(&b.join("open"), 0o703);
                b.join("open/tokens")
            }),
            ("a world-writable grandparent", false, Want::Exposed, |b| {
                mkdir(&b.join("open/mid/tokens"), 0o700);
                mode(&b.join("open"), 0o777);
                b.join("open/mid/tokens")
            }),
            (
                "a world-writable parent, directory missing",
                false,
                Want::Exposed,
                |b| {
                    mkdir(&b.join("open"), 0o777);
                    b.join("open/tokens")
                },
            ),
            (
                "a setgid, world-writable parent",
                false,
                Want::Exposed,
                |b| {
                    mkdir(&b.join("open/tokens"), 0o700);
                    mode(&b.join("open"), 0o2777);
                    b.join("open/tokens")
                },
            ),
            (
                "a sticky parent (as /tmp), our directory",
                false,
                Want::Used,
                |b| {
                    mkdir(&b.join("sticky/tokens"), 0o700);
                    mode(&b.join("sticky"), 0o1777);
                    b.join("sticky/tokens")
                },
            ),
            (
                "a sticky parent, directory missing",
                false,
                Want::Missing,
                |b| {
                    mkdir(&b.join("sticky"), 0o1777);
                    b.join("sticky/tokens")
                },
            ),
            (
                "a sticky world-writable cache directory",
                false,
                Want::DirExposed,
                |b| {
                    mkdir(&b.join("tokens"), 0o1777);
                    b.join("tokens")
                },
            ),
            ("our link to a private directory", false, Want::Used, |b| {
                mkdir(&b.join("real"), 0o700);
                std::os::unix::fs::symlink(b.join("real"), b.join("link")).unwrap();
                b.join("link")
            }),
            (
                "our relative link, in a sticky parent",
                false,
                Want::Used,
                |b| {
                    mkdir(&b.join("real"), 0o700);
                    mkdir(&b.join("sticky"), 0o1777);
                    std::os::unix::fs::symlink("../real", b.join("sticky/link")).unwrap();
                    b.join("sticky/link")
                },
            ),
            (
                "our link to an exposed directory",
                false,
                Want::DirExposed,
                |b| {
                    mkdir(&b.join("real"), 0o777);
                    std::os::unix::fs::symlink(b.join("real"), b.join("link")).unwrap();
                    b.join("link")
                },
            ),
            (
                "our link into a world-writable parent",
                false,
                Want::Exposed,
                |b| {
                    mkdir(&b.join("open/real"), 0o700);
                    mode(&b.join("open"), 0o777);
                    std::os::unix::fs::symlink(b.join("open/real"), b.join("link")).unwrap();
                    b.join("link")
                },
            ),
            (
                "our link on the way, then a world-writable directory",
                false,
                Want::Exposed,
                |b| {
                    mkdir(&b.join("open/tokens"), 0o700);
                    mode(&b.join("open"), 0o777);
                    std::os::unix::fs::symlink(b.join("open"), b.join("via")).unwrap();
                    b.join("via/tokens")
                },
            ),
            (
                "`..` back out of a private directory",
                false,
                Want::Used,
                |b| {
                    mkdir(&b.join("a"), 0o700);
                    mkdir(&b.join("tokens"), 0o700);
                    b.join("a/../tokens")
                },
            ),
            (
                "`..` through our link resolves at its target",
                false,
                Want::Exposed,
                |b| {
                    // b/link -> b/open/deep; b/link/../tokens is b/open/tokens.
                    mkdir(&b.join("open/deep"), 0o700);
                    mkdir(&b.join("open/tokens"), 0o700);
                    mode(&b.join("open"), 0o777);
                    std::os::unix::fs::symlink(b.join("open/deep"), b.join("link")).unwrap();
                    b.join("link/../tokens")
                },
            ),
            ("a link loop", false, Want::Loop, |b| {
                std::os::unix::fs::symlink(b.join("l2"), b.join("l1")).unwrap();
                std::os::unix::fs::symlink(b.join("l1"), b.join("l2")).unwrap();
                b.join("l1")
            }),
            (
                "a file in place of the directory",
                false,
                Want::NotDir,
                |b| {
                    std::fs::write(b.join("tokens"), "x").unwrap();
                    b.join("tokens")
                },
            ),
            ("a file on the way", false, Want::NotDir, |b| {
                std::fs::write(b.join("file"), "x").unwrap();
                b.join("file/tokens")
            }),
            (
                "another user's link at the configured path",
                true,
                Want::Link,
                |b| {
                    mkdir(&b.join("real"), 0o700);
                    std::os::unix::fs::symlink(b.join("real"), b.join("link")).unwrap();
                    std::os::unix::fs::lchown(b.join("link"), Some(NOBODY), None).unwrap();
                    b.join("link")
                },
            ),
            (
                "another user's link in a sticky directory",
                true,
                Want::Exposed,
                |b| {
                    mkdir(&b.join("real"), 0o700);
                    mkdir(&b.join("sticky"), 0o1777);
                    std::os::unix::fs::symlink(b.join("real"), b.join("sticky/link")).unwrap();
                    std::os::unix::fs::lchown(b.join("sticky/link"), Some(NOBODY), None).unwrap();
                    b.join("sticky/link")
                },
            ),
            ("another user's link on the way", true, Want::Link, |b| {
                mkdir(&b.join("real/tokens"), 0o700);
                std::os::unix::fs::symlink(b.join("real"), b.join("via")).unwrap();
                std::os::unix::fs::lchown(b.join("via"), Some(NOBODY), None).unwrap();
                b.join("via/tokens")
            }),
            (
                "another user's parent, mode 755",
                true,
                Want::AncestorOwner,
                |b| {
                    mkdir(&b.join("theirs/tokens"), 0o700);
                    mode(&b.join("theirs"), 0o755);
                    std::os::unix::fs::lchown(b.join("theirs"), Some(NOBODY), None).unwrap();
                    b.join("theirs/tokens")
                },
            ),
            (
                "another user's directory in a sticky parent",
                true,
                Want::Exposed,
                |b| {
                    mkdir(&b.join("sticky/tokens"), 0o700);
                    mode(&b.join("sticky"), 0o1777);
                    std::os::unix::fs::lchown(b.join("sticky/tokens"), Some(NOBODY), None).unwrap();
                    b.join("sticky/tokens")
                },
            ),
            (
                "another user's cache directory",
                true,
                Want::DirOwner,
                |b| {
                    mkdir(&b.join("tokens"), 0o700);
                    std::os::unix::fs::lchown(b.join("tokens"), Some(NOBODY), None).unwrap();
                    b.join("tokens")
                },
            ),
        ];
        let mut skipped = 0;
        for (what, needs_chown, want, build) in cases {
            if needs_chown && !can_chown() {
                skipped += 1;
                continue;
            }
            let base = tempfile::tempdir().unwrap();
            let dir = build(base.path());
            let got = check_dir(&dir);
            let ok = matches!(
                (&want, &got),
                (Want::Used, Ok(true))
                    | (Want::Missing, Ok(false))
                    | (Want::Exposed, Err(CacheError::AncestorExposed(_)))
                    | (Want::AncestorOwner, Err(CacheError::AncestorOwner))
                    | (Want::Link, Err(CacheError::LinkOwner))
                    | (Want::DirOwner, Err(CacheError::DirectoryOwner))
                    | (Want::DirExposed, Err(CacheError::DirectoryExposed(_)))
                    | (Want::NotDir, Err(CacheError::NotADirectory))
                    | (Want::Loop, Err(CacheError::TooManyLinks))
            );
            assert!(ok, "{what}: want {want:?}, got {got:?}");
            // What the cache does with it: used (a token round-trips), or
            // neither read nor written.
            let file = cache_file(&dir, &spec(BASE));
            let saved = file.save("tok", Duration::from_secs(3600));
            match want {
                Want::Used | Want::Missing => {
                    saved.unwrap_or_else(|e| panic!("{what}: {e}"));
                    let got = file.load(Duration::ZERO).unwrap().unwrap();
                    assert_eq!(got.access_token, "tok", "{what}");
                    if matches!(want, Want::Missing) {
                        let m = std::fs::metadata(&dir).unwrap().mode() & 0o777;
                        assert_eq!(m, 0o700, "{what}: created private");
                    }
                }
                _ => {
                    assert!(saved.is_err(), "{what}: written");
                    assert!(file.load(Duration::ZERO).is_err(), "{what}: read");
                    assert!(
                        std::fs::symlink_metadata(&file.path).is_err(),
                        "{what}: a file was left there"
                    );
                }
            }
        }
        if skipped > 0 {
            eprintln!("{skipped} layouts need chown (run as root): skipped");
        }
    }

    /// A cache file planted where the cache directory is reached through a
    /// link another user could re-point is never read, even when it holds a
    /// token written for this very credential.
    #[test]
    fn a_kept_token_behind_an_untrusted_way_is_not_read() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        let mine = cache_file(&real, &spec(BASE));
        mine.save("tok-kept", Duration::from_secs(3600)).unwrap();
        // The same directory, reached through a world-writable one.
        mkdir(&base.path().join("open"), 0o777);
        std::os::unix::fs::symlink(&real, base.path().join("open/link")).unwrap();
        let via = cache_file(&base.path().join("open/link"), &spec(BASE));
        assert!(matches!(
            via.load(Duration::ZERO),
            Err(CacheError::AncestorExposed(0o777))
        ));
        // Sticky: our own link there is fine.
        mode(&base.path().join("open"), 0o1777);
        assert_eq!(
            via.load(Duration::ZERO).unwrap().unwrap().access_token,
            "tok-kept"
        );
        if can_chown() {
            std::os::unix::fs::lchown(base.path().join("open/link"), Some(NOBODY), None).unwrap();
            assert!(via.load(Duration::ZERO).is_err(), "another user's link");
            mode(&base.path().join("open"), 0o755);
            assert!(matches!(
                via.load(Duration::ZERO),
                Err(CacheError::LinkOwner)
            ));
        } else {
            eprintln!("not root: another user's link not tried");
        }
    }

    #[test]
    fn the_error_never_names_the_path_or_the_token() {
        for e in [
            CacheError::DirectoryExposed(0o777),
            CacheError::AncestorExposed(0o1777),
            CacheError::AncestorOwner,
            CacheError::LinkOwner,
            CacheError::TooManyLinks,
            CacheError::Foreign,
            CacheError::Symlink,
            CacheError::TooLarge,
        ] {
            let text = e.to_string();
            assert!(!text.contains('/'), "{text}");
        }
    }
}
