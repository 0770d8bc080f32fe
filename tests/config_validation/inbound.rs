//! The `[inbound]` table's problems: HS256, introspection, path policy,
//! upgrades and rule paths.

use super::*;

const INBOUND: &str = r#"
[inbound]
listen = "127.0.0.1:15000"
upstream = "http://127.0.0.1:8080"
issuer = "https://idp.example.com/"
audiences = ["https://orders.example.com"]
"#;

#[test]
fn hs256_needs_its_own_secret_and_nothing_beside_it() {
    let with = |extra: &str| issues(&format!("{INBOUND}{extra}"));
    assert_eq!(with(""), Vec::<String>::new(), "discovery needs no more");
    assert_eq!(
        with("algorithms = [\"HS256\"]\nhmac_secret = { env = \"INBOUND_HMAC\" }"),
        Vec::<String>::new()
    );
    let cases: &[(&str, &str)] = &[
        (
            "algorithms = [\"HS256\", \"ES256\"]",
            "inbound.algorithms: HS256/HS384/HS512 need `inbound.hmac_secret`",
        ),
        (
            "hmac_secret = { env = \"X\" }",
            "inbound.algorithms: with hmac_secret, list exactly one of HS256",
        ),
        (
            "algorithms = [\"HS256\", \"RS256\"]\nhmac_secret = { env = \"X\" }",
            "inbound.algorithms: with hmac_secret, list exactly one of HS256",
        ),
        (
            "algorithms = [\"HS256\"]\nhmac_secret = { env = \"X\" }\njwks_url = \"https://idp.example.com/jwks\"",
            "inbound.hmac_secret: an HMAC secret is never used beside JWKS keys",
        ),
        (
            "algorithms = [\"HS256\"]\nhmac_secret = \"\"",
            "inbound.hmac_secret: must not be empty",
        ),
        (
            "algorithms = [\"none\"]",
            "inbound.algorithms[0]: `none` is not allowed",
        ),
    ];
    for (extra, want) in cases {
        let got = with(extra);
        assert!(
            got.iter().any(|i| i.starts_with(want)),
            "{extra}: want {want}, got {got:?}"
        );
    }
}

#[test]
fn introspection_keys_are_checked() {
    let base = format!("{INBOUND}[inbound.introspection]\n");
    let good = "url = \"https://idp.example.com/oauth/introspect\"\nclient_id = \"api\"\nclient_secret = { env = \"S\" }\n";
    assert_eq!(issues(&format!("{base}{good}")), Vec::<String>::new());
    let got = issues(&format!(
        "{base}{good}auth_method = \"private_key_jwt\"\non_error = \"maybe\"\ncache_size = \"0\"\ncolour = \"red\""
    ));
    for want in [
        "inbound.introspection.auth_method: must be `client_secret_basic` or `client_secret_post`",
        "inbound.introspection.on_error: must be `deny` or `allow`",
        "inbound.introspection.cache_size: must be a whole number from 1",
        "inbound.introspection.colour: unknown key",
    ] {
        assert!(got.iter().any(|i| i.starts_with(want)), "{want} in {got:?}");
    }
    let got = issues(&base);
    for want in [
        "inbound.introspection.client_id: is required",
        "inbound.introspection.client_secret: is required",
    ] {
        assert!(got.iter().any(|i| i.starts_with(want)), "{want} in {got:?}");
    }
}

#[test]
fn path_policy_upgrades_and_rule_paths_are_checked() {
    let with = |extra: &str| issues(&format!("{INBOUND}{extra}"));
    assert_eq!(
        with(
            "escaped_slashes = \"unescape\"\npath_parameters = \"strip\"\nupgrades = [\"websocket\", \"Foo/2\"]\n[[inbound.rules]]\npath = \"/a/b.c/*\"\npublic = true\n[[inbound.rules]]\npath = \"/*\"\n[[inbound.rules]]\npath = \"/x/\""
        ),
        Vec::<String>::new()
    );
    // Specific rules first, a stricter broad rule first, or methods apart: fine.
    assert_eq!(
        with(
            "[[inbound.rules]]\npath = \"/api/admin/*\"\nscopes = [\"admin\"]\n[[inbound.rules]]\npath = \"/api/*\"\npublic = true\n[[inbound.rules]]\npath = \"/x/*\"\nscopes = [\"a\", \"b\"]\n[[inbound.rules]]\npath = \"/x/y\"\nscopes = [\"a\"]\n[[inbound.rules]]\npath = \"/o/*\"\nmethods = [\"GET\"]\npublic = true\n[[inbound.rules]]\npath = \"/o/*\"\nmethods = [\"POST\"]\nscopes = [\"w\"]\n[[inbound.rules]]\npath = \"/h\"\npublic = true\n[[inbound.rules]]\npath = \"/h/*\"\nscopes = [\"w\"]"
        ),
        Vec::<String>::new()
    );
    for (extra, want) in path_policy_problems() {
        let got = with(extra);
        assert!(
            got.iter().any(|i| i.starts_with(want)),
            "{extra}: want {want}, got {got:?}"
        );
    }
}

/// Path policies, upgrades and rule paths the validator refuses: (the
/// `[inbound]` lines added, the problem it must report).
fn path_policy_problems() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "escaped_slashes = \"decode\"",
            "inbound.escaped_slashes: must be `reject`, `unescape` or `keep`",
        ),
        (
            "path_parameters = \"keep\"",
            "inbound.path_parameters: must be `reject` or `strip`",
        ),
        (
            "upgrades = [\"websocket\", \"h2c\"]",
            "inbound.upgrades[1]: `h2c` upgrades are never forwarded",
        ),
        (
            "upgrades = [\"a b\"]",
            "inbound.upgrades[0]: `a b` is not a protocol name",
        ),
        (
            "[[inbound.rules]]\npath = \"/a/../admin/*\"\npublic = true",
            "inbound.rules[0].path: write it in normal form, as requests are matched: `/admin`",
        ),
        (
            "[[inbound.rules]]\npath = \"//admin\"",
            "inbound.rules[0].path: write it in normal form, as requests are matched: `/admin`",
        ),
        (
            "[[inbound.rules]]\npath = \"/%61dmin/*\"",
            "inbound.rules[0].path: write it in normal form",
        ),
        (
            "[[inbound.rules]]\npath = \"/a%2fb\"",
            "inbound.rules[0].path: never matches a request: an encoded / or \\ in the path",
        ),
        (
            "[[inbound.rules]]\npath = \"/a;b\"",
            "inbound.rules[0].path: never matches a request: path parameters",
        ),
        (
            "[[inbound.rules]]\npath = \"/sec//*\"\nscopes = [\"admin\"]",
            "inbound.rules[0].path: write `/sec/*`",
        ),
        (
            "[[inbound.rules]]\npath = \"/q?/*\"\nscopes = [\"admin\"]",
            "inbound.rules[0].path: never matches a request: `?` and `#`",
        ),
        (
            "[[inbound.rules]]\npath = \"/a#x\"\nscopes = [\"admin\"]",
            "inbound.rules[0].path: never matches a request: `?` and `#`",
        ),
        // HEAD falls under a protecting GET rule, so a public HEAD rule first shadows it.
        (
            "[[inbound.rules]]\npath = \"/api/*\"\nmethods = [\"HEAD\"]\npublic = true\n[[inbound.rules]]\npath = \"/api/admin/*\"\nmethods = [\"GET\"]\nscopes = [\"admin\"]",
            "inbound.rules[1].path: rule [0] (`/api/*`, public) comes first",
        ),
        // A broader rule first answers for a stricter one after it.
        (
            "[[inbound.rules]]\npath = \"/api/*\"\npublic = true\n[[inbound.rules]]\npath = \"/api/admin/*\"\nscopes = [\"admin\"]",
            "inbound.rules[1].path: rule [0] (`/api/*`, public) comes first",
        ),
        (
            "[[inbound.rules]]\npath = \"/docs/*\"\nmethods = [\"GET\"]\npublic = true\n[[inbound.rules]]\npath = \"/DOCS/private/*\"\nscopes = [\"admin\"]",
            "inbound.rules[1].path: rule [0] (`/docs/*`, public) comes first",
        ),
        (
            "[[inbound.rules]]\npath = \"/api/*\"\n[[inbound.rules]]\npath = \"/api/admin\"\nmethods = [\"POST\"]\nscopes = [\"admin\"]",
            "inbound.rules[1].path: rule [0] (`/api/*`, scopes []) comes first",
        ),
        (
            "[[inbound.rules]]\npath = \"/*\"\nscopes = [\"a\"]\n[[inbound.rules]]\npath = \"/x\"\nscopes = [\"a\", \"b\"]",
            "inbound.rules[1].path: rule [0] (`/*`, scopes [\"a\"]) comes first",
        ),
    ]
}
