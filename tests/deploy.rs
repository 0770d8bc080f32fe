//! `deploy/` checked without a cluster or a container engine (none runs here):
//! every manifest parses; every config a ConfigMap is generated from passes
//! `m2m-sidecar check`; probes and ports match those configs; the Dockerfile's
//! stages copy paths that exist and run the binary this crate builds; the alert
//! rules use only metrics the sidecar exposes, and docs/metrics.md lists every
//! metric. When `kubectl` is installed, each overlay is also rendered with
//! `kubectl kustomize` and the same checks run on the result.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::process::BIN;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

use serde::Deserialize as _;

const OVERLAYS: [&str; 4] = ["reverse-listener", "http-proxy", "inbound-only", "issuer"];

#[test]
fn every_manifest_parses_and_every_referenced_file_exists() {
    let mut files = Vec::new();
    yaml_files(&deploy(), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for f in &files {
        let all = docs(f);
        assert!(!all.is_empty(), "{}", f.display());
        if f.file_name().unwrap() == "kustomization.yaml" {
            let k = &all[0];
            let dir = f.parent().unwrap();
            for r in k["resources"].as_sequence().into_iter().flatten() {
                let p = dir.join(r.as_str().unwrap());
                assert!(
                    p.exists(),
                    "{}: resource {} is missing",
                    f.display(),
                    p.display()
                );
            }
            for g in k["configMapGenerator"].as_sequence().into_iter().flatten() {
                for file in g["files"].as_sequence().into_iter().flatten() {
                    let p = dir.join(file.as_str().unwrap());
                    assert!(p.is_file(), "{}: {} is missing", f.display(), p.display());
                }
            }
        } else if f.file_name().unwrap() != "prometheus-rules.yaml" {
            for d in &all {
                assert!(
                    d["apiVersion"].is_string() && d["kind"].is_string(),
                    "{}",
                    f.display()
                );
            }
        }
    }
}

/// The config files ConfigMaps are generated from: (overlay dir, file).
fn configs() -> Vec<PathBuf> {
    let mut out = vec![deploy().join("base/sidecar.toml")];
    for o in OVERLAYS {
        let dir = deploy().join("overlays").join(o);
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn every_config_passes_check() {
    let mut configs = configs();
    assert_eq!(configs.len(), 5, "{configs:?}");
    // The README's example too.
    configs.push(root().join("config/example.toml"));
    for c in configs {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&c)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            c.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn load(path: &Path) -> m2m_sidecar::config::Config {
    m2m_sidecar::config::load_str(
        &std::fs::read_to_string(path).unwrap(),
        m2m_sidecar::config::Format::Toml,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `containerPort` of the port called `name` (or the number itself).
fn port_of(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().unwrap();
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port named {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// Check a rendered (or base) Deployment against the config it mounts.
fn check_deployment(d: &Value, config: &m2m_sidecar::config::Config, what: &str) {
    let spec = &d["spec"]["template"]["spec"];
    let containers: Vec<&Value> = spec["initContainers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .chain(spec["containers"].as_sequence().into_iter().flatten())
        .collect();
    let ours: Vec<&&Value> = containers
        .iter()
        .filter(|c| c["image"].as_str().unwrap().contains("m2m-sidecar"))
        .collect();
    assert_eq!(ours.len(), 1, "{what}: one m2m-sidecar container");
    let c = ours[0];
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let (port, paths): (u16, [&str; 3]) = if args[0] == "issuer" {
        let i = config.issuer.as_ref().expect("an [issuer] table");
        (i.listen.port(), ["/healthz", "/healthz", "/healthz"])
    } else {
        assert_eq!(args[0], "run", "{what}");
        // A native sidecar: an init container that keeps running.
        assert_eq!(c["restartPolicy"], "Always", "{what}");
        assert!(
            config.admin.listen.ip().is_unspecified(),
            "{what}: admin must listen on 0.0.0.0 for kubelet probes"
        );
        (
            config.admin.listen.port(),
            ["/healthz", "/readyz", "/readyz"],
        )
    };
    for (probe, path) in ["livenessProbe", "readinessProbe", "startupProbe"]
        .iter()
        .zip(paths)
    {
        let p = &c[*probe]["httpGet"];
        assert_eq!(p["path"], path, "{what}: {probe}");
        assert_eq!(
            port_of(c, &p["port"]),
            u64::from(port),
            "{what}: {probe} port"
        );
    }
    // The --config file is in the mounted ConfigMap volume.
    let config_arg = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let mount_dir = Path::new(config_arg).parent().unwrap();
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == mount_dir)
        .unwrap_or_else(|| panic!("{what}: nothing mounted at {}", mount_dir.display()));
    let volume = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(
        volume["configMap"]["name"].is_string(),
        "{what}: the config comes from a ConfigMap"
    );
    // Hardening.
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{what}");
    assert!(
        c["resources"]["requests"]["memory"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    // The inbound listener's port is declared where a Service can target it.
    if let Some(i) = &config.inbound {
        assert_eq!(
            port_of(c, &Value::from("inbound")),
            u64::from(i.listen.port()),
            "{what}"
        );
    }
}

#[test]
fn the_base_deployment_matches_its_config() {
    let base = docs(&deploy().join("base/deployment.yaml"));
    check_deployment(&base[0], &load(&deploy().join("base/sidecar.toml")), "base");
    let issuer = docs(&deploy().join("overlays/issuer/deployment.yaml"));
    check_deployment(
        &issuer[0],
        &load(&deploy().join("overlays/issuer/issuer.toml")),
        "issuer",
    );
}

#[test]
fn rendered_overlays_match_their_configs() {
    let rendered = |overlay: &str| -> Option<Vec<Value>> {
        let out = Command::new("kubectl")
            .args(["kustomize"])
            .arg(deploy().join("overlays").join(overlay))
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        Some(
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| Value::deserialize(d).unwrap())
                .collect(),
        )
    };
    for overlay in OVERLAYS {
        let Some(objects) = rendered(overlay) else {
            eprintln!("SKIPPED: kubectl is not installed; the overlays were not rendered");
            return;
        };
        let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
        let (file, text) = cm["data"].as_mapping().unwrap().iter().next().unwrap();
        let config = m2m_sidecar::config::load_str(
            text.as_str().unwrap(),
            m2m_sidecar::config::Format::Toml,
        )
        .unwrap_or_else(|e| panic!("{overlay}: {file:?}: {e}"));
        let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        check_deployment(d, &config, overlay);
        // The Deployment mounts the generated (hash-suffixed) ConfigMap.
        let volumes = d["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["configMap"]["name"] == cm["metadata"]["name"]),
            "{overlay}: the ConfigMap is mounted"
        );
        // The Service targets a port the pod declares.
        let svc = objects.iter().find(|o| o["kind"] == "Service").unwrap();
        let target = &svc["spec"]["ports"][0]["targetPort"];
        let pod = &d["spec"]["template"]["spec"];
        let declared = pod["initContainers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_sequence().into_iter().flatten())
            .flat_map(|c| c["ports"].as_sequence().into_iter().flatten())
            .any(|p| p["name"] == *target || p["containerPort"] == *target);
        assert!(
            declared,
            "{overlay}: Service targetPort {target:?} is not a pod port"
        );
        if overlay == "inbound-only" {
            assert_eq!(
                *target,
                Value::from("inbound"),
                "traffic goes through the sidecar"
            );
        }
        if overlay == "http-proxy" {
            let env = pod["containers"][0]["env"].as_sequence().unwrap();
            let proxy = env.iter().find(|e| e["name"] == "HTTP_PROXY").unwrap();
            let fp = config.forward_proxy.as_ref().unwrap();
            assert_eq!(
                proxy["value"].as_str().unwrap(),
                format!("http://{}", fp.listen)
            );
        }
    }
}

#[test]
fn the_dockerfile_builds_this_binary_from_paths_that_exist() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "a build and a run stage");
    assert!(stages[0].contains(" AS build"));
    let mut copied_from_build = None;
    for line in text.lines().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        if let Some(rest) = parts.first().and_then(|p| p.strip_prefix("--from=")) {
            assert_eq!(rest, "build");
            copied_from_build = Some(parts[1].to_owned());
            continue;
        }
        for src in &parts[..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
        }
    }
    let manifest: toml_like::Manifest = toml_like::read(&root().join("Cargo.toml"));
    let built = copied_from_build.expect("the run stage copies the binary from the build stage");
    assert_eq!(
        built,
        format!("/src/target/release/{}", manifest.bin),
        "{text}"
    );
    assert!(text.contains(&format!("--bin {}", manifest.bin)));
    assert!(text.contains("USER 65532"), "runs as non-root");
    // The default config path is where the manifests mount it.
    assert!(text.contains("\"/etc/m2m/sidecar.toml\""));
    let base = std::fs::read_to_string(deploy().join("base/deployment.yaml")).unwrap();
    assert!(base.contains("mountPath: /etc/m2m"));
}

/// Just enough of Cargo.toml: the binary's name.
mod toml_like {
    pub struct Manifest {
        pub bin: String,
    }

    pub fn read(path: &std::path::Path) -> Manifest {
        let text = std::fs::read_to_string(path).unwrap();
        let after = text.split("[[bin]]").nth(1).expect("a [[bin]] table");
        let name = after
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        Manifest { bin: name }
    }
}

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

#[tokio::test]
async fn alerts_use_real_metrics_and_every_metric_is_documented() {
    use support::config::{Cred, SidecarConfig, issuer_toml, quote};
    // A sidecar with every part: credential, outbound, forward proxy, inbound, issuer.
    let idp = support::token_server::TokenServer::start().await;
    let echo = support::echo::Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = SidecarConfig::new()
        .credential(Cred::new("orders", &idp.url()))
        .outbound("orders", &echo.url(), "orders")
        .raw(&format!(
            "[forward_proxy]\nlisten = \"127.0.0.1:0\"\n[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = \"http://127.0.0.1:{port}/\"\naudiences = [\"https://orders.example.com\"]\nrevocations_url = \"http://127.0.0.1:{port}/api/v1/revocations\"\n",
            quote(&echo.url())
        ))
        .raw(&issuer_toml(
            port,
            dir.path(),
            "[[issuer.apis]]\nname = \"Orders\"\nidentifier = \"https://orders.example.com\"\nscopes = [\"orders:read\"]\n",
        ));
    let sidecar = support::sidecar::Sidecar::start_with(&config, Some(listener)).await;
    support::http::wait_for_status(
        &sidecar.admin_url("/readyz"),
        200,
        std::time::Duration::from_secs(20),
    )
    .await;
    let (_, exposed) = support::http::get(&sidecar.admin_url("/metrics")).await;
    let (_, issuer) = support::http::get(&format!("http://127.0.0.1:{port}/metrics")).await;
    // Families as exposed: `# TYPE name kind` (counters: series get `_total`).
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
    assert!(families.len() >= 10, "{families:?}");
    // Families without a series yet are not printed: take every registered
    // name from the source too (`register("m2m_…"`).
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
    sidecar.stop().await;
}
