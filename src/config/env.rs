//! `M2M_`-prefixed environment variables as config values.
//!
//! figment's own `Env` provider parses every value (`00123` becomes the number
//! 123, `1.50` becomes 1.5), which would silently change a client id or secret.
//! Here values stay the exact strings given, except arrays and tables written
//! in brackets (`[a, b]`, `{k = "v"}`), which are parsed.

use figment::Figment;
use figment::providers::Serialized;
use figment::value::Value;

/// The prefix every variable read as config carries.
pub const PREFIX: &str = "M2M_";

/// `(dotted key, value)` for each `M2M_` variable: `M2M_ADMIN__LISTEN` is `admin.listen`.
pub fn values(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, Value)> {
    vars.filter_map(|(name, value)| {
        let rest = name.strip_prefix(PREFIX)?;
        if rest.is_empty() {
            return None;
        }
        let key = rest
            .split("__")
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        let trimmed = value.trim_start();
        let value = if trimmed.starts_with('[') || trimmed.starts_with('{') {
            value.parse().unwrap_or(Value::from(value))
        } else {
            Value::from(value)
        };
        Some((key, value))
    })
    .collect()
}

/// `figment` with every value merged over it (the environment wins).
pub fn merge(mut figment: Figment, values: &[(String, Value)]) -> Figment {
    for (key, value) in values {
        figment = figment.merge(Serialized::default(key, value));
    }
    figment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_stay_strings() {
        let vars = [
            ("M2M_CREDENTIALS__ORDERS__CLIENT_ID", "00123"),
            ("M2M_ADMIN__LISTEN", "0.0.0.0:15090"),
            ("M2M_CREDENTIALS__ORDERS__SCOPES", "[\"a\", \"b\"]"),
            ("OTHER", "x"),
            ("M2M_", "y"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let got = values(vars.into_iter());
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            (
                "credentials.orders.client_id".to_owned(),
                Value::from("00123".to_owned())
            )
        );
        assert_eq!(got[1].0, "admin.listen");
        assert!(matches!(got[2].1, Value::Array(..)), "{:?}", got[2].1);
    }
}
