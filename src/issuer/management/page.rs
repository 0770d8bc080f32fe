//! Paginated lists (`GET /api/v1/apps`, `/apis`): `limit` (default 100, at
//! most 1,000), an opaque `after` cursor, and `prefix` (items whose id or name
//! starts with it). The answer is `{"items": [...], "next": "<cursor>" | null}`;
//! items come in id order, so a cursor stays valid while others write.

use super::MgmtError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1_000;

/// What one list call asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    /// The id of the last item the previous page held.
    pub after: Option<String>,
    pub prefix: Option<String>,
}

impl Page {
    /// Read `limit`, `after` and `prefix` from a query string; anything else,
    /// a repeated parameter or a bad value is a `400`.
    pub fn from_query(query: Option<&str>) -> Result<Page, MgmtError> {
        let bad = |why: String| MgmtError::BadRequest(why);
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            ..Page::default()
        };
        let mut seen = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if seen.contains(&k) {
                return Err(bad(format!("query parameter `{k}` is repeated")));
            }
            match &*k {
                "limit" => {
                    page.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad(format!("limit must be 1 to {MAX_LIMIT}")))?;
                }
                "after" => {
                    let id = URL_SAFE_NO_PAD
                        .decode(v.as_bytes())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| bad("after is not a cursor this API gave".into()))?;
                    page.after = Some(id);
                }
                "prefix" => page.prefix = Some(v.clone().into_owned()),
                other => {
                    let shown: String = other.chars().take(64).collect();
                    return Err(bad(format!("unknown query parameter `{shown}`")));
                }
            }
            seen.push(k);
        }
        Ok(page)
    }

    /// One page of `items`, in id order: those after the cursor that match
    /// the prefix, at most `limit`, and the cursor of the next page.
    pub fn of<'i, T>(
        &self,
        items: impl IntoIterator<Item = &'i T>,
        id: impl Fn(&T) -> &str,
        name: impl Fn(&T) -> &str,
    ) -> (Vec<&'i T>, Option<String>)
    where
        T: 'i,
    {
        let mut sorted: Vec<&T> = items.into_iter().collect();
        sorted.sort_unstable_by(|a, b| id(a).cmp(id(b)));
        self.of_sorted(sorted, id, name)
    }

    /// [`Page::of`] for items already in id order (a large registry is
    /// not sorted again for every page).
    pub fn of_sorted<'i, T>(
        &self,
        sorted: impl IntoIterator<Item = &'i T>,
        id: impl Fn(&T) -> &str,
        name: impl Fn(&T) -> &str,
    ) -> (Vec<&'i T>, Option<String>)
    where
        T: 'i,
    {
        let mut matching = sorted
            .into_iter()
            .filter(|t| self.after.as_deref().is_none_or(|a| id(t) > a))
            .filter(|t| {
                self.prefix
                    .as_deref()
                    .is_none_or(|p| id(t).starts_with(p) || name(t).starts_with(p))
            });
        let page: Vec<&T> = matching.by_ref().take(self.limit).collect();
        let next = match (matching.next(), page.last()) {
            (Some(_), Some(last)) => Some(URL_SAFE_NO_PAD.encode(id(last))),
            _ => None,
        };
        (page, next)
    }
}

/// The cursor for the item `id` (the last of a page).
pub fn cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// The list answer.
pub fn answer(items: Vec<serde_json::Value>, next: Option<String>) -> serde_json::Value {
    serde_json::json!({ "items": items, "next": next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(Page::from_query(None).unwrap().limit, DEFAULT_LIMIT);
        let p = Page::from_query(Some("limit=2&after=YQ&prefix=ord")).unwrap();
        assert_eq!(
            p,
            Page {
                limit: 2,
                after: Some("a".into()),
                prefix: Some("ord".into())
            }
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "limit=-1",
            "after=!!",
            "after=_w",
            "limit=1&limit=2",
            "offset=3",
        ] {
            assert!(Page::from_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_walk_every_item_once() {
        let items: Vec<(String, String)> = (0..7)
            .map(|i| (format!("id{i}"), format!("name{}", 6 - i)))
            .collect();
        let mut page = Page {
            limit: 3,
            ..Page::default()
        };
        let mut seen = Vec::new();
        loop {
            let (got, next) = page.of(&items, |t| &t.0, |t| &t.1);
            seen.extend(got.iter().map(|t| t.0.clone()));
            let Some(cursor) = next else { break };
            page = Page::from_query(Some(&format!("limit=3&after={cursor}"))).unwrap();
        }
        assert_eq!(seen, items.iter().map(|t| t.0.clone()).collect::<Vec<_>>());
        // The last full page has no next cursor.
        let exact = Page {
            limit: 7,
            ..Page::default()
        };
        assert_eq!(exact.of(&items, |t| &t.0, |t| &t.1).1, None);
        let by_name = Page {
            limit: 10,
            prefix: Some("name6".into()),
            ..Page::default()
        };
        let (got, _) = by_name.of(&items, |t| &t.0, |t| &t.1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "id0");
    }
}
