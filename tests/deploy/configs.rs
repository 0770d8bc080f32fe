//! The configs ConfigMaps are generated from: each passes `m2m-sidecar
//! check`, and the Deployments' probes, ports and mounts match them (the
//! base and, with `kubectl`, every rendered overlay).

use super::*;

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
