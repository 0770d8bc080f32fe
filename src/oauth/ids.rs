//! The ids that cross modules: a client id, an audience (an API's
//! identifier), a scope, a key id. Each is a thin wrapper over the `String`
//! it always was, serialized as that string (`#[serde(transparent)]`, so the
//! issuer's state file and every JSON answer keep their format), and
//! borrowable as `str`, so maps keyed by one are looked up by `&str`.

use std::borrow::Borrow;
use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

id!(
    /// An OAuth client id (RFC 6749 §2.2): an app of the issuer, the `client_id`
    /// of a verified token.
    ClientId
);
id!(
    /// An audience: the identifier of an API (RFC 8707 resource), a token's `aud`.
    Audience
);
id!(
    /// One scope (RFC 6749 §3.3), never a space-separated list.
    Scope
);
id!(
    /// A key id (`kid`, RFC 7517 §4.5).
    Kid
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn ids_serialize_as_their_string_and_are_looked_up_by_str() {
        let mut grants: BTreeMap<Audience, Vec<Scope>> = BTreeMap::new();
        grants.insert("https://orders".into(), vec!["orders:read".into()]);
        let json = serde_json::to_string(&grants).unwrap();
        assert_eq!(json, r#"{"https://orders":["orders:read"]}"#);
        let back: BTreeMap<Audience, Vec<Scope>> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, grants);
        assert_eq!(grants.get("https://orders").unwrap()[0], "orders:read");
        let id = ClientId::from("billing");
        assert_eq!(id.to_string(), "billing");
        assert_eq!(format!("{id:?}"), r#""billing""#);
    }
}
