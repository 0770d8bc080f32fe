//! The rule table, compiled once: `path` exact or a prefix ending `/*` (which
//! matches the prefix itself and everything below it, not `/ordersx`), optional
//! methods, required scopes, or public. The first matching rule wins; matching
//! allocates nothing.

use crate::config::RuleSpec;
use http::Method;

/// What a matched rule asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'r> {
    /// No token needed.
    Public,
    /// A valid token carrying every one of these scopes (maybe none).
    Scopes(&'r [String]),
}

pub struct Rules {
    rules: Vec<RuleSpec>,
}

impl Rules {
    pub fn new(rules: &[RuleSpec]) -> Self {
        Rules {
            rules: rules.to_vec(),
        }
    }

    /// The first rule for `method` and `path`, or `None` when no rule matches.
    pub fn find(&self, method: &Method, path: &str) -> Option<Need<'_>> {
        self.rules
            .iter()
            .find(|r| {
                path_matches(r, path)
                    && (r.methods.is_empty() || r.methods.iter().any(|m| m == method.as_str()))
            })
            .map(|r| {
                if r.public {
                    Need::Public
                } else {
                    Need::Scopes(&r.scopes)
                }
            })
    }
}

fn path_matches(rule: &RuleSpec, path: &str) -> bool {
    if !rule.prefix {
        return path == rule.path;
    }
    match path.strip_prefix(rule.path.as_str()) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rule.path.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, methods: &[&str], scopes: &[&str], public: bool) -> RuleSpec {
        let (path, prefix) = match path.strip_suffix("/*") {
            Some(p) => (p.to_owned(), true),
            None => (path.to_owned(), false),
        };
        RuleSpec {
            path,
            prefix,
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            public,
        }
    }

    #[test]
    fn the_table() {
        let rules = Rules::new(&[
            rule("/healthz", &[], &[], true),
            rule("/orders/*", &["GET"], &["orders:read"], false),
            rule("/orders/*", &["POST", "DELETE"], &["orders:write"], false),
            rule("/any", &[], &[], false),
            rule("/*", &["OPTIONS"], &[], true),
        ]);
        let read = ["orders:read".to_owned()];
        let write = ["orders:write".to_owned()];
        let cases: [(&str, &str, Option<Need<'_>>); 12] = [
            ("GET", "/healthz", Some(Need::Public)),
            ("GET", "/healthz/x", None),
            ("GET", "/orders", Some(Need::Scopes(&read))),
            ("GET", "/orders/", Some(Need::Scopes(&read))),
            ("GET", "/orders/42/items", Some(Need::Scopes(&read))),
            ("GET", "/ordersx", None),
            ("POST", "/orders/42", Some(Need::Scopes(&write))),
            ("PUT", "/orders/42", None),
            ("PATCH", "/any", Some(Need::Scopes(&[]))),
            ("GET", "/any/more", None),
            ("OPTIONS", "/whatever/deep", Some(Need::Public)),
            ("GET", "/", None),
        ];
        for (method, path, want) in cases {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(rules.find(&m, path), want, "{method} {path}");
        }
    }
}
