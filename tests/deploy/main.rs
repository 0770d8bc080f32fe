//! `deploy/` checked without a cluster or a container engine (none runs here):
//! every manifest parses; every config a ConfigMap is generated from passes
//! `m2m-sidecar check`; probes and ports match those configs; the Dockerfile's
//! stages copy paths that exist and run the binary this crate builds; the alert
//! rules use only metrics the sidecar exposes, and docs/metrics.md lists every
//! metric; the issuer overlays keep their store where it belongs (SQLite on a
//! volume with one replica, PostgreSQL with replicas, a disruption budget and
//! no volume), with every secret file mounted. When `kubectl` is installed, each
//! overlay is also rendered with `kubectl kustomize` and the same checks run on
//! the result.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "../support/mod.rs"]
mod support;

mod configs;
mod image;
mod metrics;

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

const OVERLAYS: [&str; 5] = [
    "reverse-listener",
    "http-proxy",
    "inbound-only",
    "issuer",
    "issuer-ha",
];

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
