//! The table of [`super::each_problem_is_named_with_its_path`]: one change
//! to [`super::GOOD`] each, and the problem it must report.

/// (replace this, with that, expect an issue starting with)
pub(crate) type Case = (&'static str, &'static str, &'static str);

/// The admin listener, the forward proxy and a credential's endpoint,
/// secret and timing.
pub(crate) fn listeners_and_endpoints() -> Vec<Case> {
    vec![
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
    ]
}

/// A credential's scopes and parameters, outbound routes, ranges of
/// durations, and process settings.
pub(crate) fn routes_and_ranges() -> Vec<Case> {
    vec![
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
        (
            "[admin]",
            "token_requests_per_second = 0\n[admin]",
            "token_requests_per_second: must be a number from 0.01 to 100000, got `0`",
        ),
        (
            "[admin]",
            "token_requests_per_second = \"fast\"\n[admin]",
            "token_requests_per_second: must be a number from 0.01 to 100000, got `fast`",
        ),
    ]
}
