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
//! no one else (as OpenSSH's `StrictModes`), else the cache is not used at all.
//! A token that has expired is ignored. The path and the token are never logged.

use crate::config::{CredentialSpec, Endpoint};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    Write(String),
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This process's user (the owner of `/proc/self`).
fn my_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The cache directory must be ours (or root's) and writable by no one else.
/// `Ok(false)`: it does not exist (yet).
fn check_dir(dir: &Path) -> Result<bool, CacheError> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(CacheError::Io(e.kind())),
    };
    if !meta.is_dir() {
        return Err(CacheError::NotADirectory);
    }
    if let Some(me) = my_uid()
        && meta.uid() != me
        && meta.uid() != 0
    {
        return Err(CacheError::DirectoryOwner);
    }
    let mode = meta.mode() & 0o7777;
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
        let now = now();
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
        let now = now();
        let f = File {
            credential: self.identity.clone(),
            access_token: access_token.to_owned(),
            obtained_at: now,
            expires_at: now.saturating_add(lifetime.as_secs()),
        };
        let bytes = serde_json::to_vec(&f).map_err(|e| CacheError::Write(e.to_string()))?;
        crate::issuer::keys::write_private(&self.path, &bytes).map_err(CacheError::Write)
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

    #[test]
    fn the_error_never_names_the_path_or_the_token() {
        for e in [
            CacheError::DirectoryExposed(0o777),
            CacheError::Foreign,
            CacheError::Symlink,
            CacheError::TooLarge,
        ] {
            let text = e.to_string();
            assert!(!text.contains('/'), "{text}");
        }
    }
}
