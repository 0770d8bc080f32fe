//! The rule table, compiled once: `path` exact or a prefix ending `/*` (which
//! matches the prefix itself and everything below it, not `/ordersx`), optional
//! methods, required scopes, or public. The first matching rule wins; matching
//! allocates nothing. Paths arrive normalised (`proxy::path`).
//!
//! Matching is asymmetric, because many services fold path case (Windows and
//! macOS file systems, IIS, some routers): a rule that protects matches a path
//! regardless of ASCII case (`/ADMIN/x` needs what `/admin/*` needs), a public
//! rule only in its exact case (`/PUBLIC/x` is not public). Likewise a
//! protecting rule that lists `GET` also covers `HEAD`, which most frameworks
//! answer with the `GET` handler; a public one covers only what it lists.
//! For the same reason a protecting rule also sees through the spellings
//! Windows file systems treat as one name: trailing dots and spaces of a
//! segment (`/admin./x`, `/admin%20/x`) and the default data stream
//! (`/admin::$DATA/x`).

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
        let folded = windows_folded(path);
        self.rules
            .iter()
            .find(|r| {
                let matched = if r.public {
                    path_matches(r, path, true)
                } else {
                    path_matches(r, &folded, false)
                };
                matched && method_matches(r, method)
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

/// `path` with each segment as a Windows file system names it: a trailing
/// `::$DATA` cut, then trailing dots and spaces (`%20`). Borrowed when no
/// segment has any (the common case: one scan, no copy).
fn windows_folded(path: &str) -> std::borrow::Cow<'_, str> {
    // Most paths have no `.`, `%` or `:` at all: one byte scan.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b':')) {
        return std::borrow::Cow::Borrowed(path);
    }
    let foldable =
        |seg: &str| seg.ends_with('.') || seg.ends_with("%20") || data_stream(seg).is_some();
    if !path.split('/').any(foldable) {
        return std::borrow::Cow::Borrowed(path);
    }
    let folded: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let mut s = data_stream(seg).unwrap_or(seg);
            loop {
                let t = s.trim_end_matches('.');
                let t = t.strip_suffix("%20").unwrap_or(t);
                if t.len() == s.len() {
                    break s;
                }
                s = t;
            }
        })
        .collect();
    std::borrow::Cow::Owned(folded.join("/"))
}

/// The segment without a trailing `::$DATA` (any case, `$` maybe `%24`).
fn data_stream(seg: &str) -> Option<&str> {
    for suffix in ["::$data", "::%24data"] {
        let n = seg.len().checked_sub(suffix.len())?;
        if seg.get(n..).is_some_and(|t| t.eq_ignore_ascii_case(suffix)) {
            return seg.get(..n);
        }
    }
    None
}

fn method_matches(rule: &RuleSpec, method: &Method) -> bool {
    let m = method.as_str();
    rule.methods.is_empty()
        || rule
            .methods
            .iter()
            .any(|r| r == m || (!rule.public && *method == Method::HEAD && r == "GET"))
}

fn path_matches(rule: &RuleSpec, path: &str, exact_case: bool) -> bool {
    let n = rule.path.len();
    let same = |a: &str| {
        if exact_case {
            a == rule.path
        } else {
            a.eq_ignore_ascii_case(&rule.path)
        }
    };
    if !rule.prefix {
        return path.len() == n && same(path);
    }
    if rule.path.is_empty() {
        return true;
    }
    // Byte-wise: a normalised path is ASCII, and `get` refuses a split char.
    match (path.get(..n), path.get(n..)) {
        (Some(head), Some(rest)) => same(head) && (rest.is_empty() || rest.starts_with('/')),
        _ => false,
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
        let cases = [
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
            // Protecting rules ignore case, public ones do not.
            ("GET", "/ORDERS/42", Some(Need::Scopes(&read))),
            ("GET", "/Orders", Some(Need::Scopes(&read))),
            ("GET", "/HEALTHZ", None),
            ("GET", "/ANY", Some(Need::Scopes(&[]))),
            // HEAD falls under a protecting GET rule.
            ("HEAD", "/orders/1", Some(Need::Scopes(&read))),
            ("HEAD", "/healthz", Some(Need::Public)),
            // Windows spellings of a protected name.
            ("GET", "/orders./1", Some(Need::Scopes(&read))),
            ("GET", "/orders%20/1", Some(Need::Scopes(&read))),
            ("GET", "/orders.%20./1", Some(Need::Scopes(&read))),
            ("GET", "/orders::$DATA/1", Some(Need::Scopes(&read))),
            ("GET", "/Orders::%24data", Some(Need::Scopes(&read))),
            ("GET", "/orders.json", None),
            // Never to make a public rule match.
            ("GET", "/healthz.", None),
        ];
        for (method, path, want) in cases {
            let want: Option<Need<'_>> = want;
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(rules.find(&m, path), want, "{method} {path}");
        }
    }

    mod properties {
        use super::*;
        use crate::path::{PathPolicy, normalize};
        use proptest::prelude::*;

        fn hostile_path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/"),
                Just("."),
                Just(".."),
                Just("%2e"),
                Just("%2f"),
                Just(";"),
                Just("admin"),
                Just("ADMIN"),
                Just("Admin"),
                Just("%61dmin"),
                Just("public"),
                Just("PUBLIC"),
                Just("%70ublic"),
                Just("x"),
            ];
            prop::collection::vec(piece, 0..8).prop_map(|v| format!("/{}", v.concat()))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Whatever the spelling, once normalised: a path under `/admin`
            /// in any case needs `admin`, and only `/public` in its exact case
            /// is public.
            #[test]
            fn protection_follows_the_normal_path(p in hostile_path()) {
                let rules = Rules::new(&[
                    rule("/public/*", &[], &[], true),
                    rule("/admin/*", &[], &["admin"], false),
                ]);
                let admin = ["admin".to_owned()];
                if let Ok(n) = normalize(&p, PathPolicy::default()) {
                    let lower = n.to_ascii_lowercase();
                    let found = rules.find(&Method::GET, &n);
                    if lower == "/admin" || lower.starts_with("/admin/") {
                        prop_assert_eq!(found, Some(Need::Scopes(&admin)), "{} -> {}", p, n);
                    }
                    if found == Some(Need::Public) {
                        prop_assert!(n == "/public" || n.starts_with("/public/"), "{} -> {}", p, n);
                    }
                }
            }
        }
    }
}
