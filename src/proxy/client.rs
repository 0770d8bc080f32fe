//! The pooled upstream client: hyper-util's legacy client over hyper-rustls
//! (aws-lc-rs, webpki roots plus an optional `ca_file`), HTTP/1.1 and HTTP/2 by
//! ALPN, bounded connect and idle times. It never follows redirects.

use super::Body;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A pooled client for one upstream.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Settings for [`build`].
pub struct ClientSettings<'a> {
    pub ca_file: Option<&'a Path>,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why an upstream client or an upstream cannot be set up. Names files and
/// URLs as configured (validation refuses URLs with a user or password).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read ca_file {}: {source}", .path.display())]
    CaUnreadable {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("ca_file {} holds no certificate", .path.display())]
    CaEmpty { path: PathBuf },
    #[error("bad certificate in ca_file {}: {source}", .path.display())]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[source] rustls::Error),
    #[error("upstream {url}: {source}")]
    UpstreamUri {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("upstream {url}: needs a scheme and a host")]
    UpstreamIncomplete { url: String },
    #[error("upstream {url}: {source}")]
    UpstreamHost {
        url: String,
        #[source]
        source: http::header::InvalidHeaderValue,
    },
}

/// Build a client, or say why the TLS roots could not be loaded.
pub fn build(settings: &ClientSettings<'_>) -> Result<UpstreamClient, BuildError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = settings.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect())
            .map_err(|source| BuildError::CaUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
        if certs.is_empty() {
            return Err(BuildError::CaEmpty {
                path: path.to_path_buf(),
            });
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|source| BuildError::CaCertificate {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(BuildError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(settings.idle_timeout)
        .build(connector))
}
