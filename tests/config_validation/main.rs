//! Config validation: every problem reported with its key path, in one pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod cases;
mod inbound;
mod issuer;
mod listeners;
mod store;

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
    let cases = [cases::listeners_and_endpoints(), cases::routes_and_ranges()].concat();
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
