//! Path confusion: every spelling of `..` and of a separator, case, double
//! encoding and absolute-form; the path knobs.

use super::*;

#[tokio::test]
async fn no_spelling_of_dot_dot_leaves_a_public_prefix() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    let cases = traversals("/public", "admin/secret.txt");
    assert!(cases.len() > 300, "{} cases", cases.len());
    for target in &cases {
        let answer = s.raw("GET", target, "").await;
        let st = status(&answer);
        let forwarded = s.up.requests();
        // Either refused as unnormalisable (400), or normalised to /admin/…,
        // which needs a token (401); never forwarded.
        assert!(
            forwarded.is_empty() && (st == 400 || st == 401),
            "{target}: {st}, upstream got {:?}",
            forwarded
                .iter()
                .map(|r| r.target().to_owned())
                .collect::<Vec<_>>()
        );
        // And the same through absolute-form.
        let answer = s.raw("GET", &format!("http://svc{target}"), "").await;
        let st = status(&answer);
        assert!(
            s.up.requests().is_empty() && (st == 400 || st == 401),
            "absolute-form {target}: {st}"
        );
    }
    // A fragment never carries a traversal along: cut, or refused.
    for target in [
        "/public/x#/../../admin/secret.txt",
        "/public/x%23/../../admin/secret.txt",
    ] {
        let answer = s.raw("GET", target, "").await;
        let got = s.up.requests();
        assert!(
            got.iter().all(|r| r.target() == "/public/x"),
            "{target}: {answer} / {:?}",
            got.iter()
                .map(|r| r.target().to_owned())
                .collect::<Vec<_>>()
        );
        s.up.clear();
    }
    // The control: the public route itself passes, as it was checked.
    let answer = s.raw("GET", "/public/a/./b/../c", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].target(), "/public/a/c");
}

#[tokio::test]
async fn a_token_without_the_scope_never_reaches_a_protected_prefix() {
    let s = inbound("authenticated", "", RawUpstream::start().await).await;
    let token = s.token("orders:read");
    let auth = bearer(&token);
    for target in [
        "//admin/secret",
        "///admin/secret",
        "/./admin/secret",
        "/ADMIN/secret",
        "/Admin/secret",
        "/aDmIn/secret",
        "/%41DMIN/secret",
        "/%61dmin/secret",
        "/%61%64%6d%69%6e/secret",
        "/%2e/admin/secret",
        "/admin;x/secret",
        "/admin;/secret",
        "/admin%3bx/secret",
        "/admin%2fsecret",
        "/admin%2Fsecret",
        "/admin%5csecret",
        "/admin\\secret",
        "/admin/./secret",
        "/x/../admin/secret",
        "/x/%2e%2e/admin/secret",
        "/admin",
        "/ADMIN",
        "/admin/",
        "/admin%252fsecret",
        "/admin%2",
        "/admin%zzsecret",
        "/admin%00/secret",
        "/admin%09/secret",
        "http://svc/admin/secret",
        "http://svc//ADMIN/secret",
        "HTTP://SVC/%61dmin/secret",
        // Windows spellings of the same name.
        "/admin./secret",
        "/admin../secret",
        "/admin%2e/secret",
        "/admin%20/secret",
        "/admin.%20./secret",
        "/admin::$DATA/secret",
        "/ADMIN::%24data/secret",
        "/admin.",
        "/admin%20",
    ] {
        let answer = s.raw("GET", target, &auth).await;
        let st = status(&answer);
        assert!(
            s.up.requests().is_empty() && (st == 400 || st == 403),
            "{target}: {st}: {answer}"
        );
    }
    // With the scope, a non-normal spelling reaches the service in normal form.
    let admin = bearer(&s.token("admin"));
    for (target, received) in [
        ("/%61dmin/secret", "/admin/secret"),
        ("//admin//secret", "/admin/secret"),
        ("/x/../admin/./secret?q=%2F", "/admin/secret?q=%2F"),
        ("/ADMIN/secret", "/ADMIN/secret"),
        ("/admin/caf%c3%a9", "/admin/caf%C3%A9"),
    ] {
        s.up.clear();
        let answer = s.raw("GET", target, &admin).await;
        assert_eq!(status(&answer), 200, "{target}: {answer}");
        let got = s.up.requests();
        assert_eq!(got.len(), 1, "{target}");
        assert_eq!(got[0].target(), received, "{target}");
    }
}

#[tokio::test]
async fn public_rules_match_their_exact_case_only() {
    let s = inbound("deny", "", RawUpstream::start().await).await;
    for target in ["/PUBLIC/x", "/Public/x", "/pUBLIC/x", "/%50ublic/x"] {
        let answer = s.raw("GET", target, "").await;
        assert_eq!(status(&answer), 401, "{target}: {answer}");
    }
    assert!(s.up.requests().is_empty());
    let answer = s.raw("GET", "/%70ublic/x", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].target(), "/public/x");
}

#[tokio::test]
async fn path_knobs_unescape_keep_and_strip() {
    let s = inbound(
        "deny",
        "escaped_slashes = \"unescape\"\npath_parameters = \"strip\"",
        RawUpstream::start().await,
    )
    .await;
    // Unescaped, the traversal is resolved and lands on /admin: a token is needed.
    let answer = s.raw("GET", "/public/..%2fadmin/x", "").await;
    assert_eq!(status(&answer), 401, "{answer}");
    let answer = s.raw("GET", "/public/..;x/admin/x", "").await;
    assert_eq!(status(&answer), 401, "{answer}");
    assert!(s.up.requests().is_empty());
    // An encoded `;` is ambiguous under either policy: refused.
    let answer = s.raw("GET", "/public/a%3bx", "").await;
    assert_eq!(status(&answer), 400, "{answer}");
    let answer = s.raw("GET", "/public/a%2Fb;jsessionid=1/c", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(s.up.requests()[0].target(), "/public/a/b/c");

    let k = inbound(
        "deny",
        "escaped_slashes = \"keep\"",
        RawUpstream::start().await,
    )
    .await;
    let answer = k.raw("GET", "/public/..%2fadmin", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(k.up.requests()[0].target(), "/public/..%2Fadmin");
}
