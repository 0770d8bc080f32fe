//! TLS to PostgreSQL (`store_ca_file`): the replicas connect over TLS,
//! verifying the server's certificate against that CA, and refuse a server
//! whose certificate that CA did not sign.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

/// A CA, and a certificate for 127.0.0.1 it signed: the CA's PEM, the
/// certificate's and its key's.
fn pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Restart `cluster` serving TLS with `cert` and `key` (plain TCP still
/// accepted: the replicas must ask for TLS themselves).
fn serve_tls(cluster: &Cluster, cert: &str, key: &str) {
    cluster.stop();
    let data = cluster.socket_dir().join("data");
    let owner = std::fs::metadata(&data).unwrap();
    for (name, text) in [("server.crt", cert), ("server.key", key)] {
        let path = data.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("ssl = on\n");
    std::fs::write(&conf, text).unwrap();
    cluster.start_again();
}

#[tokio::test]
async fn replicas_reach_postgresql_over_tls_verified_against_the_store_ca() {
    // Its own cluster: this test restarts it with TLS.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (ca, cert, key) = pki();
    serve_tls(&cluster, &cert, &key);
    let db = Database::new(Arc::new(cluster), "tls");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let extra = format!("store_ca_file = {}\n", quote(ca_file.to_str().unwrap()));
    let config = db.config_with(&api(), &db.store_key, &extra);
    let (a, b) = tokio::join!(db.replica(config.path()), db.replica(config.path()));
    db.listening(2).await;

    // Every connection of the replicas is TLS.
    let by_tls = db.psql(
        "SELECT coalesce(s.ssl, false), count(*) FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = 'tls' AND a.application_name = 'm2m-sidecar issuer' GROUP BY 1",
    );
    assert!(by_tls.starts_with("t|"), "{by_tls}");
    assert!(!by_tls.contains("f|"), "a connection without TLS: {by_tls}");

    // And they work as replicas.
    let admin = admin_token(&a.url).await;
    let (id, secret) = create_app(&a.url, &admin, "over-tls", &["orders:read"]).await;
    let since = Instant::now();
    propagated(
        "over TLS, an app created through A is known to B",
        since,
        async || is_blocked(&b.url, &admin, &id).await.is_some(),
    )
    .await;
    assert_eq!(token(&b.url, &id, &secret, ORDERS).await.0, 200);

    // A CA that did not sign the server's certificate: refused at start.
    let (other_ca, _, _) = pki();
    std::fs::write(&ca_file, &other_ca).unwrap();
    let mut cmd = support::process::sidecar();
    cmd.args(["issuer", "--log-format", "json", "--config"])
        .arg(config.path())
        .envs(db.env());
    let mut run = Running::spawn(cmd);
    let status = run.exit(support::LONG).await;
    let log = run.lines.lock().unwrap().join("\n");
    assert!(!status.success(), "started with the wrong CA: {log}");
    let error = run
        .logs()
        .into_iter()
        .find(|v| v["message"] == "cannot start")
        .unwrap_or_else(|| panic!("no `cannot start` line: {log}"));
    let said = error["error"].as_str().unwrap();
    eprintln!("wrong store CA: {said}");
    assert!(said.contains("127.0.0.1"), "{said}");
    assert!(said.to_lowercase().contains("certificate"), "{said}");
    assert!(!log.contains(db.cluster.password()), "{log}");
}
