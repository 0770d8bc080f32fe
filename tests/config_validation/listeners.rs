//! Listeners: token-adding ones beyond loopback warned about, names of other
//! listeners reserved.

use super::*;

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
