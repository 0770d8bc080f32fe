//! `m2m-sidecar token NAME`: fetch a token for one credential and print it
//! alone on stdout (for scripts). With `token_cache_dir`, a cached token with
//! at least a minute left (the running sidecar's, or this command's last one)
//! is printed instead, and a fetched one is kept there.

use crate::config::Config;
use crate::token::{self, Fetcher, disk::CacheFile, grant::FetchError, grant::Issued};
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// Why no token was fetched (printed after `error: `).
#[derive(Debug, thiserror::Error)]
enum TokenError {
    #[error(transparent)]
    Runtime(std::io::Error),
    /// The credential's token client cannot be built.
    #[error(transparent)]
    Client(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Fetch(FetchError),
}

/// Print a token for the credential `name`: exit 0 with one, 1 when the
/// token endpoint refused or failed, 2 when there is no such credential.
pub fn print_token(config: &Config, name: &str) -> ExitCode {
    let Some(spec) = config.credential(name) else {
        let known: Vec<_> = config.credentials.iter().map(|c| c.name.as_str()).collect();
        eprintln!(
            "error: no credential named `{name}` (defined: {})",
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    let cache_file = config
        .token_cache_dir
        .as_deref()
        .map(|d| token::disk::cache_file(d, spec));
    if let Some(c) = cache_file
        .as_ref()
        .and_then(|f| f.load(Duration::from_secs(60)).ok().flatten())
    {
        let _ = writeln!(std::io::stdout().lock(), "{}", c.access_token);
        eprintln!(
            "token for {name} (from token_cache_dir) valid for {}",
            humantime::format_duration(Duration::from_secs(c.remaining.as_secs()))
        );
        return ExitCode::SUCCESS;
    }
    match fetch(spec.clone(), cache_file.as_ref()) {
        Ok(issued) => {
            let _ = writeln!(std::io::stdout().lock(), "{}", issued.access_token);
            eprintln!(
                "token for {name} valid for {}",
                humantime::format_duration(Duration::from_secs(issued.lifetime.as_secs()))
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One token request, on a runtime of its own; the token is kept in
/// `cache_file` when there is one.
fn fetch(
    spec: std::sync::Arc<crate::config::CredentialSpec>,
    cache_file: Option<&CacheFile>,
) -> Result<Issued, TokenError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TokenError::Runtime)?;
    let issued = rt.block_on(async {
        let fetcher = Fetcher::new(spec).map_err(|e| TokenError::Client(e.into()))?;
        fetcher.fetch().await.map_err(TokenError::Fetch)
    })?;
    if let Some(f) = cache_file
        && let Err(why) = f.save(&issued.access_token, issued.lifetime)
    {
        eprintln!("warning: cannot keep the token in token_cache_dir: {why}");
    }
    Ok(issued)
}
