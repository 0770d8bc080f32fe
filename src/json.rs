//! JSON request bodies parsed strictly: a key repeated in any object, at any
//! depth, is refused (RFC 8259 §4 leaves duplicates undefined, and parsers
//! disagree on which one wins: a wrong then a right `client_secret` must not
//! pass). Otherwise the same as `serde_json::from_slice` into a `Value`.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a body is not acceptable JSON.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StrictJsonError(String);

/// Parse `body` as one JSON value, refusing duplicate keys anywhere.
pub fn parse(body: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = Strict::deserialize(&mut de).map_err(|e| StrictJsonError(e.to_string()))?;
    de.end().map_err(|e| StrictJsonError(e.to_string()))?;
    Ok(v.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format!("duplicate key `{shown}`")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_at_any_depth_are_refused() {
        for body in [
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"x":{"a":[],"a":[]}}"#,
            r#"[{"k":"v","k":"w"}]"#,
            r#"{"grants":{"https://a":["s"],"https://a":["t"]}}"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("duplicate key"), "{body}: {e}");
        }
        for body in [
            r#"{"a":1,"b":{"a":1}}"#,
            r#"[1,2,{"a":null}]"#,
            "1",
            r#""s""#,
        ] {
            assert_eq!(
                parse(body.as_bytes()).unwrap(),
                serde_json::from_str::<Value>(body).unwrap()
            );
        }
        assert!(parse(br#"{"a":1} x"#).is_err(), "trailing data");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for open in ["[", "{\"a\":"] {
            let body = open.repeat(100_000);
            assert!(parse(body.as_bytes()).is_err());
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_without_duplicates(v in json()) {
            let text = v.to_string();
            prop_assert_eq!(parse(text.as_bytes()).unwrap(), v);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }
    }
}
