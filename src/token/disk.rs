//! `token_cache_dir`: a still-valid token survives a restart, so a crash-looping
//! pod does not spend the provider's token quota. One file per credential, named
//! by a hash of what the token is for (credential, token endpoint or issuer,
//! client id, audience, resource, scopes), written atomically with mode 0600. A
//! file readable by others, or whose token has expired, is ignored. The path and
//! the token are never logged.

use crate::config::CredentialSpec;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A token read back from disk, with what its refresh schedule needs.
pub struct Cached {
    pub access_token: String,
    /// Left until it expires.
    pub remaining: Duration,
    /// Its whole lifetime when it was issued.
    pub lifetime: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct File {
    access_token: String,
    /// Unix seconds.
    obtained_at: u64,
    expires_at: u64,
}

/// Where `spec`'s token is kept under `dir`.
pub fn path(dir: &Path, spec: &CredentialSpec) -> PathBuf {
    let mut what = Vec::new();
    for part in [
        spec.name.as_str(),
        spec.endpoint.url().as_str(),
        &spec.client_id,
        spec.audience.as_deref().unwrap_or(""),
        spec.resource.as_deref().unwrap_or(""),
        &spec.scopes.join(" "),
    ] {
        what.extend_from_slice(part.as_bytes());
        what.push(0);
    }
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &what);
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join(format!("token-{hex}.json"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token in `path`, if the file is private to its owner and the token has
/// at least `min_left` to live. Why not, otherwise (for the log).
pub fn load(path: &Path, min_left: Duration) -> Result<Option<Cached>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the token cache file: {}", e.kind())),
    };
    if !meta.is_file() {
        return Err("the token cache entry is not a regular file".into());
    }
    // Another user able to write the directory could plant a file of its own.
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(me) = std::fs::metadata("/proc/self")
        && me.uid() != meta.uid()
    {
        return Err("the token cache file belongs to another user; ignored".into());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the token cache file is readable by others (mode {mode:o}); ignored"
        ));
    }
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read the token cache file: {}", e.kind()))?;
    let f: File = serde_json::from_slice(&text)
        .map_err(|_| "the token cache file is not what this sidecar writes".to_owned())?;
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

/// Keep `access_token` (obtained now, valid for `lifetime`) in `path`.
pub fn save(path: &Path, access_token: &str, lifetime: Duration) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the token cache directory: {}", e.kind()))?;
    }
    let now = now();
    let f = File {
        access_token: access_token.to_owned(),
        obtained_at: now,
        expires_at: now + lifetime.as_secs(),
    };
    let bytes = serde_json::to_vec(&f).map_err(|e| e.to_string())?;
    crate::issuer::keys::write_private(path, &bytes)
}
