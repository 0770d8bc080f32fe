//! The Dockerfile builds this crate's binary from paths that exist.

use super::*;

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
