//! The configs ConfigMaps are generated from: each passes `m2m-sidecar
//! check`, and the Deployments' probes, ports and mounts match them (the
//! base and, with `kubectl`, every rendered overlay). The issuer overlays:
//! every secret file the config names is mounted from a Secret; SQLite lives
//! on a PersistentVolumeClaim with one replica; PostgreSQL runs replicas with
//! no volume, a PodDisruptionBudget and anti-affinity.

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
    assert_eq!(configs.len(), 6, "{configs:?}");
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

/// The pod volume mounted in container `c` at `dir`.
fn mounted_volume<'a>(spec: &'a Value, c: &Value, dir: &Path) -> Option<&'a Value> {
    let mount = c["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["mountPath"].as_str().map(Path::new) == Some(dir))?;
    spec["volumes"]
        .as_sequence()?
        .iter()
        .find(|v| v["name"] == mount["name"])
}

/// A config as plain data, read without the typed loader (so these checks
/// hold whatever keys the loader knows).
fn plain(text: &str) -> Value {
    use figment::providers::Format as _;
    figment::Figment::from(figment::providers::Toml::string(text))
        .extract()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every secret file a config names: `{ file = "…" }` sources, and
/// `store_ca_file`.
fn secret_files(v: &Value, out: &mut Vec<PathBuf>) {
    match v {
        Value::Mapping(m) => {
            if m.len() == 1
                && let Some(f) = m.get("file").and_then(Value::as_str)
            {
                out.push(PathBuf::from(f));
            }
            for (k, x) in m {
                if k == "store_ca_file"
                    && let Some(f) = x.as_str()
                {
                    out.push(PathBuf::from(f));
                }
                secret_files(x, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| secret_files(x, out)),
        _ => {}
    }
}

/// An issuer overlay's objects (rendered, or its files) against its config
/// (`text`): secret files mounted, and the store where its replicas can share it.
fn check_issuer(objects: &[Value], text: &str, what: &str) {
    let config = plain(text);
    let d = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap_or_else(|| panic!("{what}: a Deployment"));
    let spec = &d["spec"]["template"]["spec"];
    let c = spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["args"][0] == "issuer")
        .unwrap_or_else(|| panic!("{what}: an issuer container"));
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    let selects_pods = |selector: &Value| {
        let labels = selector["matchLabels"].as_mapping().unwrap();
        !labels.is_empty() && labels.iter().all(|(k, v)| pod_labels[k] == *v)
    };
    // Every secret file is in a mounted Secret (a directory of its keys).
    let mut files = Vec::new();
    secret_files(&config, &mut files);
    assert!(!files.is_empty(), "{what}: no secret files");
    for f in &files {
        let dir = f.parent().unwrap();
        let v = mounted_volume(spec, c, dir).unwrap_or_else(|| {
            panic!(
                "{what}: {} is read, but nothing is mounted at {}",
                f.display(),
                dir.display()
            )
        });
        assert!(
            v["secret"]["secretName"].is_string(),
            "{what}: {} comes from a Secret: {v:?}",
            f.display()
        );
    }
    let issuer = &config["issuer"];
    let store = issuer["store"]
        .as_str()
        .unwrap_or("sqlite://data/issuer.db");
    let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
    let volumes = spec["volumes"].as_sequence().unwrap();
    if let Some(db) = store.strip_prefix("sqlite://") {
        // The embedded store: one writer, on a volume that outlives the pod.
        assert_eq!(replicas, 1, "{what}: SQLite has one writer");
        assert_eq!(
            d["spec"]["strategy"]["type"], "Recreate",
            "{what}: an old and a new pod never share the database"
        );
        let db = Path::new(db);
        assert!(db.is_absolute(), "{what}: {store}: an absolute path");
        let v = mounted_volume(spec, c, db.parent().unwrap())
            .unwrap_or_else(|| panic!("{what}: nothing mounted at {store}'s directory"));
        let claim = &v["persistentVolumeClaim"]["claimName"];
        assert!(
            claim.is_string(),
            "{what}: {store} is on a PersistentVolumeClaim"
        );
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == "PersistentVolumeClaim" && o["metadata"]["name"] == *claim),
            "{what}: the claim {claim:?} is part of the overlay"
        );
    } else {
        // PostgreSQL: replicas, nothing kept in the pod.
        let (scheme, rest) = store.split_once("://").unwrap();
        assert!(
            scheme == "postgres" || scheme == "postgresql",
            "{what}: store {store}"
        );
        let user = rest.split('@').next().unwrap();
        assert!(
            rest.contains('@') && !user.contains(':'),
            "{what}: a user and no password in the DSN (store_password)"
        );
        for key in ["store_password", "store_key"] {
            assert!(
                issuer[key].is_mapping(),
                "{what}: {key} from a file or the environment"
            );
        }
        assert!(replicas >= 2, "{what}: replicas");
        for v in volumes {
            assert!(
                v["configMap"].is_mapping()
                    || v["secret"].is_mapping()
                    || v["emptyDir"].is_mapping(),
                "{what}: no volume but config, secrets and scratch: {v:?}"
            );
        }
        assert!(
            !objects.iter().any(|o| o["kind"] == "PersistentVolumeClaim"),
            "{what}: no PersistentVolumeClaim"
        );
        assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate", "{what}");
        let unavailable = d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: maxUnavailable as a number"));
        let pdb = objects
            .iter()
            .find(|o| o["kind"] == "PodDisruptionBudget")
            .unwrap_or_else(|| panic!("{what}: a PodDisruptionBudget"));
        assert!(selects_pods(&pdb["spec"]["selector"]), "{what}: {pdb:?}");
        let min = pdb["spec"]["minAvailable"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: minAvailable as a number"));
        assert!(
            min >= 1 && min < replicas,
            "{what}: minAvailable {min} of {replicas}: a drain can proceed, never to zero"
        );
        assert!(
            unavailable >= 1 && replicas - unavailable >= min,
            "{what}: a rollout stays within the budget"
        );
        let anti =
            spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{what}: preferred pod anti-affinity"));
        assert!(
            anti.iter().any(|t| {
                let t = &t["podAffinityTerm"];
                t["topologyKey"] == "kubernetes.io/hostname" && selects_pods(&t["labelSelector"])
            }),
            "{what}: replicas spread across nodes"
        );
    }
}

/// An overlay's objects as its files hold them (not rendered).
fn overlay_files(overlay: &str) -> Vec<Value> {
    let mut files = Vec::new();
    yaml_files(&deploy().join("overlays").join(overlay), &mut files);
    files.sort();
    files
        .iter()
        .filter(|f| f.file_name().unwrap() != "kustomization.yaml")
        .flat_map(|f| docs(f))
        .collect()
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
        // Ready only while the store is reachable; alive while it answers.
        (i.listen.port(), ["/healthz", "/readyz", "/healthz"])
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
    let volume = mounted_volume(spec, c, mount_dir)
        .unwrap_or_else(|| panic!("{what}: nothing mounted at {}", mount_dir.display()));
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
    for overlay in ["issuer", "issuer-ha"] {
        let objects = overlay_files(overlay);
        let toml = deploy().join("overlays").join(overlay).join("issuer.toml");
        check_issuer(&objects, &std::fs::read_to_string(&toml).unwrap(), overlay);
        let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        check_deployment(d, &load(&toml), overlay);
    }
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
        if overlay.starts_with("issuer") {
            check_issuer(&objects, text.as_str().unwrap(), overlay);
        }
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
