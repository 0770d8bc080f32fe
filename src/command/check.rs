//! `m2m-sidecar check`: validate a config and print what it would run.

use crate::config::{self, Config};
use std::path::Path;
use std::process::ExitCode;

/// Print the summary of a config that loaded (secrets redacted); an
/// unreadable secret is a warning.
pub fn check(path: &Path, config: &Config) -> ExitCode {
    // Secrets are read at run time (a mounted Secret may not exist where `check`
    // runs), so an unreadable one is a warning here, never an error.
    for c in &config.credentials {
        let (key, source) = match &c.auth {
            config::ClientAuth::Secret(s) => ("client_secret", s),
            config::ClientAuth::PrivateKey { key, .. } => ("private_key", key),
            _ => continue,
        };
        if let Err(why) = crate::secret::read(source) {
            eprintln!("warning: credentials.{}.{key}: {why}", c.name);
        }
    }
    println!("{}: OK", path.display());
    print!("{}", config::summary(config));
    ExitCode::SUCCESS
}
