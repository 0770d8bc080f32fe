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
use std::borrow::Cow;
use std::collections::HashMap;

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
    /// Past a few rules, which rules a path can match at all, by the
    /// lower-cased first segment of the rule's path: matching costs the same
    /// with 1,000 rules as with 10.
    index: Option<FirstSegment>,
}

/// Rule numbers (ascending, so the first match still wins) by first segment.
struct FirstSegment {
    by_segment: HashMap<String, Vec<usize>>,
    /// Rules that can match under any first segment (`/*`).
    anywhere: Vec<usize>,
}

/// Up to this many rules a scan is as fast as a lookup.
const SCAN_MAX: usize = 16;

impl Rules {
    pub fn new(rules: &[RuleSpec]) -> Self {
        let index = (rules.len() > SCAN_MAX).then(|| {
            let mut index = FirstSegment {
                by_segment: HashMap::new(),
                anywhere: Vec::new(),
            };
            for (i, r) in rules.iter().enumerate() {
                match first_segment(&r.path) {
                    Some(seg) => index
                        .by_segment
                        .entry(seg.to_ascii_lowercase())
                        .or_default()
                        .push(i),
                    None => index.anywhere.push(i),
                }
            }
            index
        });
        Rules {
            rules: rules.to_vec(),
            index,
        }
    }

    /// The first rule for `method` and `path`, or `None` when no rule matches.
    pub fn find(&self, method: &Method, path: &str) -> Option<Need<'_>> {
        let folded = windows_folded(path);
        let matches = |r: &RuleSpec| {
            let matched = if r.public {
                path_matches(r, path, true)
            } else {
                path_matches(r, &folded, false)
            };
            matched && method_matches(r, method)
        };
        let found = match &self.index {
            None => self.rules.iter().find(|r| matches(r)),
            Some(index) => {
                // A public rule can only match the path's own first segment, a
                // protecting one the folded path's: the first match among
                // those candidates is the first match of the whole table.
                let mut best: Option<usize> = None;
                let mut first_in = |candidates: &[usize]| {
                    let limit = best.unwrap_or(usize::MAX);
                    let hit = candidates
                        .iter()
                        .copied()
                        .take_while(|&i| i < limit)
                        .find(|&i| self.rules.get(i).is_some_and(&matches));
                    best = hit.or(best);
                };
                first_in(&index.anywhere);
                let own = first_segment(path).map(lower);
                if let Some(list) = own.as_deref().and_then(|s| index.by_segment.get(s)) {
                    first_in(list);
                }
                // A folded spelling (rare) may name another first segment.
                if let Cow::Owned(f) = &folded {
                    let seg = first_segment(f).map(lower);
                    if seg != own
                        && let Some(list) = seg.as_deref().and_then(|s| index.by_segment.get(s))
                    {
                        first_in(list);
                    }
                }
                best.and_then(|i| self.rules.get(i))
            }
        };
        found.map(|r| {
            if r.public {
                Need::Public
            } else {
                Need::Scopes(&r.scopes)
            }
        })
    }
}

/// The first segment of a path that starts with `/` (`orders` of
/// `/orders/1`, `` of `/`); `None` for a path that names none (the `""` of
/// a `/*` rule).
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    Some(rest.split_once('/').map_or(rest, |(seg, _)| seg))
}

/// ASCII lower case, borrowed when already lower case (most paths).
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
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

        fn rule_path() -> impl Strategy<Value = String> {
            let seg = prop_oneof![
                Just("admin"),
                Just("Admin"),
                Just("public"),
                Just("x"),
                Just("orders"),
                Just(""),
            ];
            (prop::collection::vec(seg, 0..3), any::<bool>()).prop_map(|(segs, prefix)| {
                let path = segs.iter().map(|s| format!("/{s}")).collect::<String>();
                match (path.is_empty(), prefix) {
                    (true, false) => "/".to_owned(),
                    (_, true) => format!("{path}/*"),
                    (false, false) => path,
                }
            })
        }

        fn a_rule() -> impl Strategy<Value = RuleSpec> {
            let methods = prop_oneof![Just(vec![]), Just(vec!["GET"]), Just(vec!["POST"])];
            (rule_path(), methods, any::<bool>())
                .prop_map(|(path, methods, public)| rule(&path, &methods, &["s"], public))
        }

        fn request_path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("admin"),
                Just("ADMIN"),
                Just("admin."),
                Just("admin%20"),
                Just("admin::$DATA"),
                Just("public"),
                Just("Public"),
                Just("x"),
                Just("orders"),
                Just(""),
            ];
            prop::collection::vec(piece, 0..4).prop_map(|v| format!("/{}", v.join("/")))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Past SCAN_MAX rules the index answers as the plain scan does.
            #[test]
            fn the_index_finds_what_a_scan_finds(
                table in prop::collection::vec(a_rule(), SCAN_MAX + 1..60),
                paths in prop::collection::vec(request_path(), 1..20),
                get in any::<bool>(),
            ) {
                let indexed = Rules::new(&table);
                prop_assert!(indexed.index.is_some());
                let scanned = Rules { rules: table.clone(), index: None };
                let method = if get { Method::GET } else { Method::POST };
                for p in &paths {
                    prop_assert_eq!(indexed.find(&method, p), scanned.find(&method, p), "{}", p);
                }
            }

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
