//! Config validation: every problem reported with its key path, in one pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use m2m_sidecar::config::{Format, load_str};

const GOOD: &str = r#"
[admin]
listen = "127.0.0.1:15090"
[credentials.orders]
token_url = "https://idp.example.com/oauth/token"
client_id = "billing"
client_secret = { env = "ORDERS_SECRET" }
audience = "https://orders.example.com"
[[outbound]]
name = "orders"
listen = "127.0.0.1:15001"
upstream = "https://orders.example.com"
credential = "orders"
"#;

fn issues(text: &str) -> Vec<String> {
    match load_str(text, Format::Toml) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_good_config_passes() {
    assert_eq!(issues(GOOD), Vec::<String>::new());
}

#[test]
fn each_problem_is_named_with_its_path() {
    // (replace this, with that, expect an issue starting with)
    let cases: &[(&str, &str, &str)] = &[
        (
            "listen = \"127.0.0.1:15090\"",
            "listen = \"localhost\"",
            "admin.listen: invalid listen address `localhost`",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\ncolour = \"red\"",
            "credentials.orders.colour: unknown key",
        ),
        (
            "[admin]",
            "[forward_proxy]\nlisten = \"x\"\nunmatched = \"block\"\n[[forward_proxy.routes]]\nhost = \"http://orders.internal/x\"\ncredential = \"nope\"\n[admin]",
            "forward_proxy.listen: invalid listen address `x`",
        ),
        (
            "[admin]",
            "[forward_proxy]\nlisten = \"127.0.0.1:15080\"\nunmatched = \"block\"\n[admin]",
            "forward_proxy.unmatched: must be `pass` or `deny`, got `block`",
        ),
        (
            "[admin]",
            "[forward_proxy]\nlisten = \"127.0.0.1:15080\"\n[[forward_proxy.routes]]\nhost = \"http://orders.internal/x\"\ncredential = \"orders\"\n[admin]",
            "forward_proxy.routes[0].host: `http://orders.internal/x` is not a host or host:port",
        ),
        (
            "[admin]",
            "[forward_proxy]\nlisten = \"127.0.0.1:15080\"\n[[forward_proxy.routes]]\nhost = \"orders.internal\"\ncredential = \"nope\"\nupstream_tls = \"yes\"\n[admin]",
            "forward_proxy.routes[0].credential: no credential named `nope` (defined: orders)",
        ),
        (
            "[admin]",
            "[forward_proxy]\nlisten = \"127.0.0.1:15080\"\n[[forward_proxy.routes]]\nhost = \"orders.internal\"\ncredential = \"orders\"\nupstream_tls = \"yes\"\n[admin]",
            "forward_proxy.routes[0].upstream_tls: must be true or false, got `yes`",
        ),
        (
            "[admin]",
            "[forward_proxy]\nlisten = \"127.0.0.1:15080\"\n[[forward_proxy.routes]]\nhost = \"Orders.internal\"\ncredential = \"orders\"\n[[forward_proxy.routes]]\nhost = \"orders.internal\"\ncredential = \"orders\"\n[admin]",
            "forward_proxy.routes[1].host: the same host as forward_proxy.routes[0]",
        ),
        (
            "token_url = \"https://idp.example.com/oauth/token\"",
            "token_url = \"idp/token\"",
            "credentials.orders.token_url: invalid URL `idp/token`",
        ),
        (
            "token_url = \"https://idp.example.com/oauth/token\"",
            "token_url = \"ftp://idp/token\"",
            "credentials.orders.token_url: URL must be http:// or https://",
        ),
        (
            "token_url = \"https://idp.example.com/oauth/token\"",
            "",
            "credentials.orders.token_url: is required",
        ),
        (
            "client_secret = { env = \"ORDERS_SECRET\" }",
            "",
            "credentials.orders.client_secret: is required",
        ),
        (
            "client_secret = { env = \"ORDERS_SECRET\" }",
            "client_secret = { env = \"A\", file = \"/b\" }",
            "credentials.orders.client_secret",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\nauth_method = \"magic\"",
            "credentials.orders.auth_method: unknown method `magic`",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\nrefresh_at = 1.2",
            "credentials.orders.refresh_at: must be a number between 0 and 1 (exclusive), got `1.2`",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\ntimeout = \"ten seconds\"",
            "credentials.orders.timeout: invalid duration `ten seconds`",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\nscopes = [\"a b\"]",
            "credentials.orders.scopes[0]: invalid scope `a b`",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\nextra_params = { client_secret = \"x\" }",
            "credentials.orders.extra_params.client_secret: is set by the sidecar",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\nresource = \"not a uri\"",
            "credentials.orders.resource: must be an absolute URI",
        ),
        (
            "credential = \"orders\"",
            "credential = \"ordrs\"",
            "outbound[0].credential: no credential named `ordrs` (defined: orders)",
        ),
        (
            "upstream = \"https://orders.example.com\"",
            "upstream = \"orders.example.com\"",
            "outbound[0].upstream: invalid URL",
        ),
        (
            "upstream = \"https://orders.example.com\"",
            "upstream = \"https://orders.example.com\"\nrequest_timeout = \"-1s\"",
            "outbound[0].request_timeout: invalid duration",
        ),
        (
            "listen = \"127.0.0.1:15001\"",
            "listen = \"127.0.0.1:15090\"",
            "outbound[0].listen: 127.0.0.1:15090 is already used by admin.listen",
        ),
        (
            "credential = \"orders\"",
            "credential = \"orders\"\nca_file = \"/no/such/ca.pem\"",
            "outbound[0].ca_file: cannot read /no/such/ca.pem",
        ),
        (
            "[admin]",
            "drain_timeout = \"soon\"\n[admin]",
            "drain_timeout: invalid duration `soon`",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\nscopes = \"orders:read\"",
            "credentials.orders.scopes: invalid type",
        ),
        (
            "credential = \"orders\"",
            "credential = \"orders\"\nrequest_timeout = \"0s\"",
            "outbound[0].request_timeout: must be from 1ms to 365 days",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\ntimeout = \"18446744073709551615\"",
            "credentials.orders.timeout: must be from 1ms to 365 days",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\ndefault_ttl = \"0s\"",
            "credentials.orders.default_ttl: must be from 1s",
        ),
        (
            "client_id = \"billing\"",
            "client_id = \"billing\"\nrefresh_at = \"soon\"",
            "credentials.orders.refresh_at: must be a number between 0 and 1 (exclusive), got `soon`",
        ),
        (
            "upstream = \"https://orders.example.com\"",
            "upstream = \"http://user:pw@orders.example.com\"",
            "outbound[0].upstream: URL must not contain `user:password@`",
        ),
        (
            "[admin]",
            "worker_threads = 0\n[admin]",
            "worker_threads: must be a whole number from 1 to 1024, got `0`",
        ),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "bad case: {from}");
        let found = issues(&GOOD.replacen(from, to, 1));
        assert!(
            found.iter().any(|i| i.starts_with(want)),
            "want `{want}`, got {found:#?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("listen = \"127.0.0.1:15090\"", "listen = \"nope\"")
        .replace(
            "credential = \"orders\"",
            "credential = \"missing\"\nbogus = 1",
        )
        .replace("client_id = \"billing\"", "client_id = \"\"");
    let found = issues(&text);
    assert_eq!(found.len(), 4, "{found:#?}");
}

#[test]
fn two_outbound_listeners_on_one_address() {
    let text = format!(
        "{GOOD}\n[[outbound]]\nname = \"orders2\"\nlisten = \"127.0.0.1:15001\"\nupstream = \"http://x\"\ncredential = \"orders\"\n"
    );
    let found = issues(&text);
    assert_eq!(
        found,
        ["outbound[1].listen: 127.0.0.1:15001 is already used by outbound[0].listen"]
    );
}

#[test]
fn yaml_and_json_are_accepted() {
    let yaml = r#"
admin: { listen: "127.0.0.1:0" }
credentials:
  orders: { token_url: "http://idp/token", client_id: "a", client_secret: "0123456789abcdef0123456789abcdef" }
outbound:
  - { name: o, listen: "127.0.0.1:0", upstream: "http://up", credential: orders }
"#;
    let c = load_str(yaml, Format::Yaml).unwrap();
    assert_eq!(c.outbound[0].credential, "orders");
    let json = r#"{"credentials": {"orders": {"token_url": "http://idp/token", "client_id": "a", "client_secret": {"file": "/s"}, "auth_method": "client_secret_json"}}}"#;
    let c = load_str(json, Format::Json).unwrap();
    assert_eq!(c.credentials[0].auth_method.as_str(), "client_secret_json");
    assert!(
        !format!("{:?}", load_str(yaml, Format::Yaml).unwrap()).contains("0123456789abcdef"),
        "Debug redacts secrets"
    );
}

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
fn token_adding_listeners_beyond_loopback_are_warned_about() {
    let loopback = load_str(GOOD, Format::Toml).unwrap();
    assert!(loopback.warnings.is_empty(), "{:?}", loopback.warnings);
    let exposed = load_str(
        &GOOD.replace("listen = \"127.0.0.1:15001\"", "listen = \"0.0.0.0:15001\""),
        Format::Toml,
    )
    .unwrap();
    let w: Vec<String> = exposed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("outbound[0].listen: listens beyond loopback"),
        "{w:?}"
    );
}

#[test]
fn outbound_names_of_other_listeners_are_reserved() {
    let got = issues(&GOOD.replace("name = \"orders\"", "name = \"inbound\""));
    assert!(
        got.iter()
            .any(|i| i.starts_with("outbound[0].name: `inbound` is reserved")),
        "{got:?}"
    );
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
    let cases: &[(&str, &str)] = &[
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
    ];
    for (extra, want) in cases {
        let got = with(extra);
        assert!(
            got.iter().any(|i| i.starts_with(want)),
            "{extra}: want {want}, got {got:?}"
        );
    }
}
