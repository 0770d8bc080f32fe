//! The alert rules use only metrics the sidecar exposes, and docs/metrics.md
//! lists every metric, exposed or registered.

use super::*;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Metric names in `text`: `m2m_…` identifiers.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("m2m_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

type Names = std::collections::BTreeSet<String>;

#[tokio::test]
async fn alerts_use_real_metrics_and_every_metric_is_documented() {
    let families = exposed_families().await;
    assert!(families.len() >= 10, "{families:?}");
    let registered = registered_in_source();
    assert!(registered.len() >= 20, "{registered:?}");
    let documented =
        metric_names(&std::fs::read_to_string(root().join("docs/metrics.md")).unwrap());
    let base = |n: &str| n.trim_end_matches("_total").to_owned();
    for f in &families {
        assert!(
            documented.contains(f),
            "{f} is exposed but not in docs/metrics.md"
        );
    }
    for r in &registered {
        assert!(
            documented.iter().any(|d| base(d) == *r),
            "{r} is registered but not in docs/metrics.md"
        );
    }
    for d in &documented {
        assert!(
            families.contains(d) || registered.contains(&base(d)),
            "docs/metrics.md lists {d}, which does not exist"
        );
    }
    every_alert_uses_a_real_metric(&families, &registered, &documented);
}

/// The metric families a sidecar with every part (credential, outbound,
/// forward proxy, inbound, issuer) exposes on its admin and issuer listeners:
/// `# TYPE name kind` (counters: series get `_total`).
async fn exposed_families() -> Names {
    use support::config::{Cred, SidecarConfig, quote};
    use support::issuer::{OrdersApi, Reserved};
    let idp = support::token_server::TokenServer::start().await;
    let echo = support::echo::Echo::start().await;
    let iss = Reserved::new().await;
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &echo.url(), "orders")
        .raw(&format!(
            "[forward_proxy]\nlisten = \"127.0.0.1:0\"\n[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [\"https://orders.example.com\"]\nrevocations_url = {}\n",
            quote(&echo.url()),
            quote(&iss.url),
            quote(&format!("{}api/v1/revocations", iss.url)),
        ));
    let iss = iss
        .start(config, &OrdersApi::new().scopes(&["orders:read"]))
        .await;
    iss.sidecar.ready().await;
    let (_, exposed) = support::http::get(&iss.sidecar.admin_url("/metrics")).await;
    let (_, issuer) = support::http::get(&format!("{}metrics", iss.url)).await;
    let mut families = std::collections::BTreeSet::new();
    for line in exposed.lines().chain(issuer.lines()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            families.insert(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            });
        }
    }
    iss.sidecar.stop().await;
    families
}

/// Every metric name registered in the source (`register("m2m_…"`):
/// families without a series yet are not printed.
fn registered_in_source() -> Names {
    let mut registered = std::collections::BTreeSet::new();
    let mut src = Vec::new();
    rust_files(&root().join("src"), &mut src);
    for f in src {
        let text = std::fs::read_to_string(&f).unwrap();
        for chunk in text.split("register(").skip(1) {
            if let Some(name) = chunk
                .trim_start()
                .strip_prefix('"')
                .and_then(|r| r.split('"').next())
                && name.starts_with("m2m_")
            {
                registered.insert(name.to_owned());
            }
        }
    }
    registered
}

/// Every alert rule uses metrics that are exposed (or registered and documented).
fn every_alert_uses_a_real_metric(families: &Names, registered: &Names, documented: &Names) {
    let base = |n: &str| n.trim_end_matches("_total").to_owned();
    let rules = std::fs::read_to_string(deploy().join("prometheus-rules.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&rules).unwrap();
    let mut used = 0;
    for rule in doc["groups"][0]["rules"].as_sequence().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        for n in names {
            assert!(
                families.contains(&n)
                    || (registered.contains(&base(&n)) && documented.contains(&n)),
                "alert {:?} uses {n}, which is not exposed",
                rule["alert"]
            );
            used += 1;
        }
    }
    assert!(used >= 8);
}
