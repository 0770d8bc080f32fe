//! Registered claims (RFC 7519 §4.1) read the same way for every policy:
//! NumericDate (a JSON number, never a string, never negative; a fraction is
//! truncated), `aud` (a string or an array of strings), and the time window
//! with its leeway. Each caller (access tokens, the issuer's own tokens,
//! client assertions) decides what is required and what its refusals say.

use super::compact::Object;
use serde_json::Value;

/// A claim of the wrong JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the `{0}` claim has the wrong type")]
pub struct WrongType(pub &'static str);

/// Why the time claims refuse a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("no exp")]
    NoExpiry,
    #[error(transparent)]
    WrongType(#[from] WrongType),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

/// 2^64: the first NumericDate that does not fit in whole u64 seconds.
const U64_LIMIT: f64 = 18_446_744_073_709_551_616.0;

/// The NumericDate claim `name`, if present.
pub fn date(c: &Object, name: &'static str) -> Result<Option<u64>, WrongType> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                // A date past what u64 seconds hold (1e20, 1.7e308) is no date
                // any issuer mints: refused rather than saturated.
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < U64_LIMIT)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(WrongType(name)),
        Some(_) => Err(WrongType(name)),
    }
}

/// The string claim `name`, if present.
pub fn string<'c>(c: &'c Object, name: &'static str) -> Result<Option<&'c str>, WrongType> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(WrongType(name)),
    }
}

/// Whether `aud` (a string or an array of strings) names an audience
/// `accepted` takes. No `aud` is `Ok(false)`.
pub fn audience(c: &Object, accepted: impl Fn(&str) -> bool) -> Result<bool, WrongType> {
    match c.get("aud") {
        None => Ok(false),
        Some(Value::String(a)) => Ok(accepted(a)),
        Some(Value::Array(list)) => {
            if list.iter().any(|v| !v.is_string()) {
                return Err(WrongType("aud"));
            }
            Ok(list.iter().filter_map(Value::as_str).any(accepted))
        }
        Some(_) => Err(WrongType("aud")),
    }
}

/// The time claims of a token, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub exp: u64,
    pub iat: Option<u64>,
}

/// Now, and the clock skew allowed, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub now: u64,
    pub leeway: u64,
}

impl Window {
    /// The window at the current time.
    pub fn now(leeway: u64) -> Self {
        Window {
            now: crate::clock::unix_now(),
            leeway,
        }
    }

    /// Whether a token expiring at `exp` has expired (RFC 7519 §4.1.4: it is
    /// valid only *before* `exp`).
    pub fn expired(&self, exp: u64) -> bool {
        self.now >= exp.saturating_add(self.leeway)
    }

    /// Whether `t` (`nbf`, `iat`) is still in the future.
    pub fn ahead(&self, t: u64) -> bool {
        t > self.now.saturating_add(self.leeway)
    }

    /// `exp`, required and not past.
    pub fn expiry(&self, c: &Object) -> Result<u64, TimeError> {
        let exp = date(c, "exp")?.ok_or(TimeError::NoExpiry)?;
        if self.expired(exp) {
            return Err(TimeError::Expired);
        }
        Ok(exp)
    }

    /// `exp` as [`Window::expiry`], then `nbf` and `iat`, when present, not
    /// in the future.
    pub fn check(&self, c: &Object) -> Result<Times, TimeError> {
        let exp = self.expiry(c)?;
        if date(c, "nbf")?.is_some_and(|nbf| self.ahead(nbf)) {
            return Err(TimeError::NotYetValid);
        }
        let iat = date(c, "iat")?;
        if iat.is_some_and(|iat| self.ahead(iat)) {
            return Err(TimeError::NotYetValid);
        }
        Ok(Times { exp, iat })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(m) => m,
            _ => Object::new(),
        }
    }

    #[test]
    fn numeric_dates() {
        let c = obj(json!({
            "a": 5, "b": 5.9, "c": "5", "d": -1, "e": -0.5, "f": null,
            "g": 1e300, "h": 1e20, "i": 18_446_744_073_709_551_616.0_f64, "j": u64::MAX
        }));
        assert_eq!(date(&c, "a"), Ok(Some(5)));
        assert_eq!(date(&c, "b"), Ok(Some(5)));
        assert_eq!(date(&c, "j"), Ok(Some(u64::MAX)));
        assert_eq!(date(&c, "absent"), Ok(None));
        // Past what u64 seconds hold: refused, never saturated into "forever".
        for bad in ["c", "d", "e", "f", "g", "h", "i"] {
            assert_eq!(date(&c, bad), Err(WrongType(bad)), "{bad}");
        }
    }

    #[test]
    fn audiences() {
        let ours = |a: &str| a == "https://api";
        let aud = |v: Value| audience(&obj(json!({ "aud": v })), ours);
        assert_eq!(aud(json!("https://api")), Ok(true));
        assert_eq!(aud(json!("https://api/")), Ok(false));
        assert_eq!(aud(json!(["x", "https://api"])), Ok(true));
        assert_eq!(aud(json!(["x", "y"])), Ok(false));
        assert_eq!(aud(json!([])), Ok(false));
        for bad in [
            json!(["https://api", 1]),
            json!(1),
            json!({"a": 1}),
            json!(null),
        ] {
            assert_eq!(aud(bad.clone()), Err(WrongType("aud")), "{bad}");
        }
        assert_eq!(audience(&Object::new(), ours), Ok(false));
    }

    #[test]
    fn the_time_window() {
        let w = Window {
            now: 1000,
            leeway: 30,
        };
        let check = |v: Value| w.check(&obj(v));
        assert_eq!(
            check(json!({"exp": 1001, "iat": 1000})),
            Ok(Times {
                exp: 1001,
                iat: Some(1000)
            })
        );
        // Expired at exp + leeway, not one second later.
        assert!(check(json!({"exp": 971})).is_ok());
        assert_eq!(check(json!({"exp": 970})), Err(TimeError::Expired));
        assert_eq!(check(json!({})), Err(TimeError::NoExpiry));
        assert_eq!(
            check(json!({"exp": "2000"})),
            Err(TimeError::WrongType(WrongType("exp")))
        );
        assert!(check(json!({"exp": 2000, "nbf": 1030, "iat": 1030})).is_ok());
        for future in [
            json!({"exp": 2000, "nbf": 1031}),
            json!({"exp": 2000, "iat": 1031}),
        ] {
            assert_eq!(
                check(future.clone()),
                Err(TimeError::NotYetValid),
                "{future}"
            );
        }
        assert_eq!(
            check(json!({"exp": 2000, "nbf": true})),
            Err(TimeError::WrongType(WrongType("nbf")))
        );
        // No leeway: expired at exp itself.
        let strict = Window {
            now: 1000,
            leeway: 0,
        };
        assert!(strict.expired(1000) && !strict.expired(1001));
        assert_eq!(
            strict.expiry(&obj(json!({"exp": 1001, "nbf": 5000}))),
            Ok(1001),
            "expiry looks at exp only"
        );
    }
}
