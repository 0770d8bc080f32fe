//! The `[issuer]` table's problems.

use super::*;

const ISSUER: &str = r#"
[issuer]
listen = "127.0.0.1:15100"
url = "http://127.0.0.1:15100/"
[[issuer.apis]]
name = "Orders API"
identifier = "https://orders.example.com"
scopes = ["orders:read"]
[[issuer.apps]]
name = "billing"
client_id = "billing"
client_secret = "0123456789abcdef0123456789abcdef"
grants = { "https://orders.example.com" = ["orders:read"] }
"#;

#[test]
fn issuer_problems_are_named() {
    assert_eq!(issues(ISSUER), Vec::<String>::new());
    let cases: &[(&str, &str, &str)] = &[
        (
            "client_secret = \"0123456789abcdef0123456789abcdef\"",
            "client_secret = \"short\"",
            "issuer.apps[0].client_secret: must be at least 32 characters",
        ),
        (
            "[\"orders:read\"] }",
            "[\"orders:delete\"] }",
            "issuer.apps[0].grants.\"https://orders.example.com\": scope `orders:delete` is not a scope of that API",
        ),
        (
            "grants = { \"https://orders.example.com\"",
            "grants = { \"https://nope.example.com\"",
            "issuer.apps[0].grants.\"https://nope.example.com\": no API with identifier",
        ),
        (
            "url = \"http://127.0.0.1:15100/\"",
            "url = \"http://127.0.0.1:15100/\"\nsigning_alg = \"HS256\"",
            "issuer.signing_alg: unknown algorithm `HS256`",
        ),
        (
            "listen = \"127.0.0.1:15100\"",
            "listen = \"127.0.0.1:15100\"\ncolour = 1",
            "issuer.colour: unknown key",
        ),
    ];
    for (from, to, want) in cases {
        assert!(ISSUER.contains(from), "bad case: {from}");
        let found = issues(&ISSUER.replacen(from, to, 1));
        assert!(
            found.iter().any(|i| i.starts_with(want)),
            "want `{want}`, got {found:#?}"
        );
    }
    // The management API is an API like the others.
    let admin = ISSUER.replace(
        "[\"orders:read\"] }",
        "[\"orders:read\"], \"http://127.0.0.1:15100/api/v1/\" = [\"apps:read\"] }",
    );
    assert_eq!(issues(&admin), Vec::<String>::new());
}
