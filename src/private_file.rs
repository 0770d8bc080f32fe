//! Files only their owner may read (signing keys, the issuer state, cached
//! tokens): written atomically (a fresh temporary file, fsync, rename) with
//! mode 0600.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Why a private file could not be written. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no randomness")]
    NoRandomness,
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The directory holding `file` (`.` for a bare file name).
pub fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write a file readable by its owner only, atomically (temporary file, fsync, rename).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = dir_of(path);
    std::fs::create_dir_all(&dir).map_err(|source| WriteError::CreateDir {
        dir: dir.clone(),
        source,
    })?;
    // A temporary name of our own, created fresh (never an existing file, whose
    // permissions would stay), so concurrent writers do not interleave.
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| WriteError::NoRandomness)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension(format!("tmp-{suffix}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| WriteError::Write {
            path: tmp.clone(),
            source,
        })?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}
