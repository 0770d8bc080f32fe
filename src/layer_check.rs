//! The module map in `lib.rs` is a contract: every module is listed in a layer,
//! and a module imports only from lower layers (so there is no cycle). This
//! test reads the sources and holds the code to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = "(crate root)";

/// `module → layer`, from the `//! - layer N ...` lines of lib.rs.
fn layers(lib: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut current = None;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            break;
        };
        let doc = doc.trim();
        if let Some(rest) = doc.strip_prefix("- layer ") {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            current = n.parse::<u32>().ok();
        } else if doc.is_empty() || !doc.starts_with("[`") && !line.starts_with("//!   ") {
            current = None;
        }
        let Some(layer) = current else { continue };
        let mut rest = doc;
        while let Some(i) = rest.find("[`") {
            rest = &rest[i + 2..];
            let Some(j) = rest.find("`]") else { break };
            out.insert(rest[..j].to_owned(), layer);
            rest = &rest[j + 2..];
        }
    }
    out
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules (or root items) `text` names through `crate::`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 7..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `m2m_sidecar::` or `other_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The names at the group's top level (`{a, b::{c}}` names a and b).
            let body: String = {
                let mut depth = 0usize;
                let mut s = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        _ if depth == 0 => s.push(c),
                        _ => {}
                    }
                }
                s
            };
            for item in body.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The file's text without its `#[cfg(test)]` modules (kept at the end of files).
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    }
}

#[test]
fn every_module_is_mapped_and_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let map = layers(&lib);
    assert!(!map.is_empty(), "lib.rs has no `//! - layer N` module map");
    let top = map.values().copied().max().unwrap_or(0);

    let mut declared = BTreeSet::new();
    for line in lib.lines() {
        let l = line.trim();
        if let Some(m) = l
            .strip_prefix("pub mod ")
            .or_else(|| l.strip_prefix("mod "))
        {
            declared.insert(m.trim_end_matches(';').to_owned());
        }
    }
    declared.remove("layer_check");
    let mapped: BTreeSet<String> = map.keys().cloned().collect();
    assert_eq!(
        declared, mapped,
        "the module map in lib.rs must list exactly the modules lib.rs declares"
    );

    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let first = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .unwrap_or_default();
        if first == "lib" || first == "main" || first == "layer_check" {
            continue;
        }
        let Some(&own) = map.get(&first) else {
            problems.push(format!(
                "{}: module `{first}` is not in the map",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for dep in imports(without_tests(&text)) {
            if dep == first || dep == "self" || dep == "super" {
                continue;
            }
            let (name, layer) = match map.get(&dep) {
                Some(&l) => (dep.clone(), l),
                None => (format!("{ROOT} item `{dep}`"), top),
            };
            let allowed = layer < own || (layer == top && own == top && !map.contains_key(&dep));
            if !allowed {
                problems.push(format!(
                    "{}: `{first}` (layer {own}) imports {name} (layer {layer})",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_groups_and_paths() {
    let got = imports("use crate::{a, b::{c, d}, e::F};\nlet x = crate::g::h();\nm2m_sidecar::z");
    let want: BTreeSet<String> = ["a", "b", "e", "g"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
}
