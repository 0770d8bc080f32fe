//! PostgreSQL stopped: the replicas keep issuing tokens from memory (and
//! keep refusing the apps they know blocked), refuse management writes with
//! a 503 and a JSON error, say so on `/readyz`; when it is back, they
//! recover and follow each other again.

use super::*;
use std::time::Instant;

/// `/readyz` of a replica: status and JSON.
async fn readyz(base: &str) -> (u16, serde_json::Value) {
    call(base, "GET", "readyz", None, None).await
}

#[tokio::test]
async fn a_database_outage_keeps_tokens_flowing_and_both_replicas_recover() {
    // Its own cluster: this test stops it.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let cluster = Arc::new(cluster);
    let db = Database::new(cluster.clone(), "outage");
    let ([a, b], _config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;
    let (known, known_secret) = create_app(&a.url, &admin, "known", &["orders:read"]).await;
    let (blocked, blocked_secret) = create_app(&a.url, &admin, "blocked", &["orders:read"]).await;
    let (status, v) = call(
        &a.url,
        "POST",
        &format!("api/v1/apps/{blocked}/block"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    for r in [&a, &b] {
        support::until(
            support::LONG,
            "both replicas to know both apps",
            async || {
                token(&r.url, &known, &known_secret, ORDERS).await.0 == 200
                    && token(&r.url, &blocked, &blocked_secret, ORDERS).await.0 == 400
            },
        )
        .await;
        let (status, ready) = readyz(&r.url).await;
        assert_eq!((status, &ready["status"]), (200, &"ok".into()), "{ready}");
    }
    let old_token = access_token(&b.url, &known, &known_secret, ORDERS).await;

    cluster.stop();
    let stopped = Instant::now();

    for (name, r) in [("A", &a), ("B", &b)] {
        // /readyz says what is wrong.
        let (ready, _) = took(
            &format!("{name}'s /readyz to say degraded"),
            stopped,
            async || {
                let (status, v) = readyz(&r.url).await;
                is(v["status"].clone(), "degraded".into()).map(|()| (status, v))
            },
        )
        .await;
        eprintln!(
            "{name} /readyz while PostgreSQL is down: {} {}",
            ready.0, ready.1
        );
        let reason = ready.1["reason"].as_str().unwrap();
        assert!(!reason.is_empty(), "{}", ready.1);
        assert!(!reason.contains(db.cluster.password()), "{reason}");
        assert_eq!(
            support::http::get(&format!("{}healthz", r.url)).await.0,
            200
        );

        // Tokens from memory: issued to the known app, refused to the blocked one.
        let (status, v) = token(&r.url, &known, &known_secret, ORDERS).await;
        assert_eq!(status, 200, "{name}: {v}");
        verify(
            &jwks(&r.url).await,
            v["access_token"].as_str().unwrap(),
            ORDERS,
        );
        let (status, v) = token(&r.url, &blocked, &blocked_secret, ORDERS).await;
        assert_eq!(
            (status, &v["error"]),
            (400, &"unauthorized_client".into()),
            "{name}: {v}"
        );
        assert_eq!(token(&r.url, "admin", ADMIN_SECRET, &mgmt()).await.0, 200);
        assert_eq!(introspect(&r.url, &old_token).await["active"], true);
        let (status, v) = call(&r.url, "GET", "api/v1/revocations", None, None).await;
        assert_eq!(status, 200, "{v}");
        let (status, v) = call(
            &r.url,
            "GET",
            &format!("api/v1/apps/{known}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "reads from memory: {v}");

        // Management writes: 503 with a JSON error saying nothing changed.
        let (status, v) = call(
            &r.url,
            "POST",
            "api/v1/apps",
            Some(&admin),
            Some(serde_json::json!({"name": "during", "grants": {ORDERS: ["orders:read"]}})),
        )
        .await;
        assert_eq!(status, 503, "{name}: {v}");
        assert_eq!(v["error"], "temporarily_unavailable", "{v}");
        let said = v["error_description"].as_str().unwrap();
        assert!(said.contains("unavailable"), "{said}");
        assert!(!said.contains(db.cluster.password()), "{said}");
        let (status, v) = call(
            &r.url,
            "POST",
            &format!("api/v1/apps/{known}/block"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 503, "{name}: {v}");
        let (status, v) = call(&r.url, "POST", "api/v1/keys/rotate", Some(&admin), None).await;
        assert_eq!(status, 503, "{name}: {v}");
        let (status, v) = call(&r.url, "GET", "api/v1/audit", Some(&admin), None).await;
        assert_eq!(status, 503, "{name}: {v}");
        // Nothing changed in memory either.
        assert_eq!(token(&r.url, &known, &known_secret, ORDERS).await.0, 200);
    }

    cluster.start_again();
    let started = Instant::now();
    for (name, r) in [("A", &a), ("B", &b)] {
        took(
            &format!("{name}'s /readyz to say ok again"),
            started,
            async || {
                let (_, v) = readyz(&r.url).await;
                is(v["status"].clone(), "ok".into())
            },
        )
        .await;
    }
    // Writes work again, through either; each reaches the other within a second.
    for (name, from, to) in [("A", &a, &b), ("B", &b, &a)] {
        let (status, v) = call(
            &from.url,
            "POST",
            &format!("api/v1/apps/{known}/block"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "a write through {name} after the outage: {v}");
        let since = Instant::now();
        propagated(
            &format!("after the outage, a block through {name} reaches the other"),
            since,
            async || is(token(&to.url, &known, &known_secret, ORDERS).await.0, 400),
        )
        .await;
        let (status, v) = call(
            &from.url,
            "POST",
            &format!("api/v1/apps/{known}/unblock"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let since = Instant::now();
        propagated(
            &format!("after the outage, an unblock through {name} reaches the other"),
            since,
            async || is(is_blocked(&to.url, &admin, &known).await, Some(false)),
        )
        .await;
        assert_eq!(token(&to.url, &known, &known_secret, ORDERS).await.0, 200);
    }
    // The refused writes did not happen; the audit log says they were refused
    // where it could (the store was down: it could not).
    assert_eq!(
        db.count("SELECT count(*) FROM apps WHERE name = 'during'"),
        0
    );
    let (status, v) = call(&a.url, "GET", "api/v1/audit?limit=1000", Some(&admin), None).await;
    assert_eq!(status, 200, "{v}");
}

/// Every process of `cluster`'s server stopped (SIGSTOP) while it lives:
/// the database hangs, as a database host that stopped answering does (its
/// connections stay open, nothing comes back). Resumed (SIGCONT) on drop,
/// also when the test fails.
struct Hung(Vec<String>);

impl Hung {
    fn new(cluster: &Cluster) -> Self {
        let pid_file = cluster.socket_dir().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).unwrap();
        let postmaster = text.lines().next().unwrap().trim().to_owned();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: the fields after the last ')'.
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
            if after.split_whitespace().nth(1) == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let hung = Hung(pids);
        hung.signal("-STOP");
        hung
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(signal)
            .args(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {:?}", self.0);
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.signal("-CONT");
    }
}

/// Two replicas on a cluster of their own, and an app both know: the
/// cluster, the database, the replicas (and their config), an admin token,
/// the app's client id and secret.
async fn on_own_cluster(
    name: &str,
) -> Option<(
    Arc<Cluster>,
    Database,
    [Replica; 2],
    tempfile::NamedTempFile,
    String,
    String,
    String,
)> {
    let cluster = Arc::new(Cluster::start()?);
    let db = Database::new(cluster.clone(), name);
    let ([a, b], config) = db.replicas::<2>().await;
    let admin = admin_token(&a.url).await;
    let (known, secret) = create_app(&a.url, &admin, "known", &["orders:read"]).await;
    support::until(support::LONG, "B to know the app", async || {
        is_blocked(&b.url, &admin, &known).await.is_some()
    })
    .await;
    Some((cluster, db, [a, b], config, admin, known, secret))
}

/// PostgreSQL hangs (its processes stopped, connections open, as when its
/// host stops answering): tokens still flow; `/readyz` says so within a few
/// seconds; once it answers again, both replicas recover.
#[tokio::test]
async fn a_hung_database_is_noticed_and_tokens_still_flow() {
    let Some((cluster, _db, [a, b], _config, admin, known, secret)) = on_own_cluster("hung").await
    else {
        return;
    };
    let hung = Hung::new(&cluster);
    let since = Instant::now();
    for (name, r) in [("A", &a), ("B", &b)] {
        let (status, v) = token(&r.url, &known, &secret, ORDERS).await;
        assert_eq!(status, 200, "{v}");
        // The check every 2 s, which waits 3 s for an answer.
        let v = within(
            Duration::from_secs(8),
            Duration::from_millis(100),
            &format!("{name}'s /readyz to say degraded while PostgreSQL hangs"),
            since,
            async || {
                let (_, v) = readyz(&r.url).await;
                is(v["status"].clone(), "degraded".into()).map(|()| v)
            },
        )
        .await;
        eprintln!("{name} /readyz while PostgreSQL hangs: {v}");
        assert_eq!(token(&r.url, &known, &secret, ORDERS).await.0, 200);
        assert_eq!(introspect(&r.url, &admin).await["active"], true);
    }

    drop(hung);
    let resumed = Instant::now();
    for (name, r) in [("A", &a), ("B", &b)] {
        took(
            &format!("{name}'s /readyz to say ok once PostgreSQL answers"),
            resumed,
            async || {
                let (_, v) = readyz(&r.url).await;
                is(v["status"].clone(), "ok".into())
            },
        )
        .await;
    }
    let (status, v) = call(
        &a.url,
        "POST",
        &format!("api/v1/apps/{known}/block"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let since = Instant::now();
    propagated(
        "after the hang, a block through A reaches B",
        since,
        async || is(is_blocked(&b.url, &admin, &known).await, Some(true)),
    )
    .await;
}

/// A management write while PostgreSQL hangs answers 503 in bounded time
/// (as when it is down), instead of waiting for it.
#[tokio::test]
async fn a_write_while_the_database_hangs_answers_503() {
    let Some((cluster, db, [a, _b], _config, admin, known, secret)) =
        on_own_cluster("hungwrite").await
    else {
        return;
    };
    let hung = Hung::new(&cluster);
    let write = call(
        &a.url,
        "POST",
        "api/v1/apps",
        Some(&admin),
        Some(serde_json::json!({"name": "during", "grants": {ORDERS: ["orders:read"]}})),
    );
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(15), write).await;
    drop(hung);
    let (status, v) =
        answer.unwrap_or_else(|_| panic!("a management write hangs while PostgreSQL does"));
    eprintln!(
        "a write while PostgreSQL hangs: {status} after {} ms: {v}",
        started.elapsed().as_millis()
    );
    assert_eq!(status, 503, "{v}");
    assert_eq!(token(&a.url, &known, &secret, ORDERS).await.0, 200);
    assert_eq!(
        db.count("SELECT count(*) FROM apps WHERE name = 'during'"),
        0
    );
}
