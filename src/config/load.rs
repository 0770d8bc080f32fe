//! Reading a config: file (TOML, YAML or JSON by extension) overlaid by `M2M_`
//! environment variables (`__` between levels), then unknown keys and type errors
//! collected with their key paths.

use super::env;
use super::raw::FileConfig;
use super::{Config, Errors, Issue, validate};
use figment::Figment;
use figment::providers::{Format as _, Json, Toml, Yaml};
use std::collections::HashSet;
use std::path::Path;

/// A config text's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    /// The format a file name implies (TOML unless `.yaml`, `.yml` or `.json`).
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// Load a config file and the `M2M_` environment, then validate it.
pub fn load_file(path: &Path) -> Result<Config, Errors> {
    if !path.is_file() {
        return Err(Errors::one(
            "",
            format!("cannot read config file {}: not a file", path.display()),
        ));
    }
    // Read once: the layer may be parsed twice, and must be the same bytes.
    let text = std::fs::read(path).map_err(|e| {
        Errors::one(
            "",
            format!("cannot read config file {}: {e}", path.display()),
        )
    })?;
    load_file_text(path, &text)
}

/// Load the text of the config file `path` as read once (the watcher reloads
/// exactly the bytes it saw settle), with the `M2M_` environment.
pub fn load_file_text(path: &Path, text: &[u8]) -> Result<Config, Errors> {
    let text = std::str::from_utf8(text).map_err(|_| {
        Errors::one(
            "",
            format!("cannot read config file {}: not UTF-8", path.display()),
        )
    })?;
    let figment = || match Format::from_path(path) {
        Format::Toml => Figment::from(Toml::string(text)),
        Format::Yaml => Figment::from(Yaml::string(text)),
        Format::Json => Figment::from(Json::string(text)),
    };
    finish(figment, &env::values(std::env::vars()))
}

/// Validate a config given as text, without the environment (tests, embedding).
pub fn load_str(text: &str, format: Format) -> Result<Config, Errors> {
    let figment = || match format {
        Format::Toml => Figment::from(Toml::string(text)),
        Format::Yaml => Figment::from(Yaml::string(text)),
        Format::Json => Figment::from(Json::string(text)),
    };
    finish(figment, &[])
}

/// `file` reads the config file's layer; it is called again (rather than its
/// values kept in a second copy) only when there are unknown keys to place.
fn finish(
    file: impl Fn() -> Figment,
    env: &[(String, figment::value::Value)],
) -> Result<Config, Errors> {
    let merged = env::merge(file(), env);
    let (raw, unknown) = parse(&merged)?;
    drop(merged);
    // Unknown keys the file holds are errors. Those only the environment brings
    // are warnings: Kubernetes injects `M2M_PORT`, `M2M_SERVICE_HOST` and the
    // like into every pod when a Service is named `m2m`.
    let in_file: HashSet<String> = if env.is_empty() || unknown.is_empty() {
        unknown.iter().map(|i| i.path.clone()).collect()
    } else {
        parse(&file())
            .map(|(_, u)| u.into_iter().map(|i| i.path).collect())
            .unwrap_or_default()
    };
    let (mut issues, warnings): (Vec<Issue>, Vec<Issue>) =
        unknown.into_iter().partition(|i| in_file.contains(&i.path));
    match validate(&raw) {
        Ok(mut config) if issues.is_empty() => {
            config.warnings.extend(warnings.into_iter().map(|mut w| {
                w.message = "unknown key (from an M2M_ environment variable), ignored".into();
                w
            }));
            Ok(config)
        }
        Ok(_) => Err(Errors(issues)),
        Err(Errors(more)) => {
            issues.extend(more);
            Err(Errors(issues))
        }
    }
}

/// Merge the providers and deserialize. Returns the options and every unknown
/// key; a type error (serde stops at the first) fails with its path.
fn parse(figment: &Figment) -> Result<(FileConfig, Vec<Issue>), Errors> {
    let json: serde_json::Value = figment
        .extract()
        .map_err(|e| Errors::one("", format!("cannot parse config: {}", e.kind)))?;
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(&json, &mut track);
    let parsed: Result<FileConfig, _> = serde_ignored::deserialize(de, |path| {
        unknown.push(Issue {
            path: key_path(&path),
            message: "unknown key".to_owned(),
        })
    });
    let mut issues = unknown;
    match parsed {
        Ok(raw) => Ok((raw, issues)),
        Err(e) => {
            issues.push(Issue {
                path: track.path().to_string(),
                message: e.to_string(),
            });
            Err(Errors(issues))
        }
    }
}

/// `outbound[0].name`, `issuer.colour`: the same form the validator uses.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}
