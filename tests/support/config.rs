//! Config builders that read like sentences:
//! `SidecarConfig::new().credential(Cred::new("orders", &idp)).outbound("orders", &echo.url(), "orders")`.

use std::fmt::Write as _;

/// A `[credentials.NAME]` table.
pub struct Cred {
    name: String,
    lines: Vec<(String, String)>,
}

impl Cred {
    /// A credential at `token_url` with a client id and a literal 40-character secret.
    pub fn new(name: &str, token_url: &str) -> Self {
        Cred {
            name: name.to_owned(),
            lines: vec![
                ("token_url".into(), quote(token_url)),
                ("client_id".into(), quote("client")),
                ("client_secret".into(), quote(SECRET)),
            ],
        }
    }

    /// Set (or replace) a key; `value` is TOML (strings quoted: use [`quote`]).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.lines.retain(|(k, _)| k != key);
        self.lines.push((key.into(), value.into()));
        self
    }

    /// Set a key to a string value.
    pub fn text(self, key: &str, value: &str) -> Self {
        self.with(key, &quote(value))
    }

    /// Drop a key (say the default secret, for a method that sends none).
    pub fn remove(mut self, key: &str) -> Self {
        self.lines.retain(|(k, _)| k != key);
        self
    }
}

/// The default literal client secret.
pub const SECRET: &str = "s3cr3t-0123456789-abcdefghij-0123456789";

/// A TOML string literal.
pub fn quote(s: &str) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A whole sidecar config, every listener on `127.0.0.1:0`.
pub struct SidecarConfig {
    text: String,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SidecarConfig {
    pub fn new() -> Self {
        SidecarConfig {
            text: "drain_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
        }
    }

    pub fn credential(mut self, c: Cred) -> Self {
        let _ = writeln!(self.text, "[credentials.{}]", c.name);
        for (k, v) in &c.lines {
            let _ = writeln!(self.text, "{k} = {v}");
        }
        self
    }

    /// An `[[outbound]]` route `name` to `upstream` with `credential`.
    pub fn outbound(self, name: &str, upstream: &str, credential: &str) -> Self {
        self.outbound_with(name, upstream, credential, "")
    }

    pub fn outbound_with(
        mut self,
        name: &str,
        upstream: &str,
        credential: &str,
        extra: &str,
    ) -> Self {
        let _ = writeln!(
            self.text,
            "[[outbound]]\nname = {}\nlisten = \"127.0.0.1:0\"\nupstream = {}\ncredential = {}\n{extra}",
            quote(name),
            quote(upstream),
            quote(credential)
        );
        self
    }

    pub fn toml(&self) -> &str {
        &self.text
    }
}

impl SidecarConfig {
    /// Append raw TOML (an `[issuer]` table, say).
    pub fn raw(mut self, toml: &str) -> Self {
        self.text.push_str(toml);
        self.text.push('\n');
        self
    }

    /// A top-level key (before any table), e.g. `token_cache_dir = "..."`.
    pub fn top(mut self, line: &str) -> Self {
        self.text.insert_str(0, &format!("{line}\n"));
        self
    }
}
