//! §5: throttling never refuses correct credentials; ids known or not look alike.

use super::*;
use base64::Engine as _;
use support::http::bearer_status;

/// One client authentication at the token endpoint, `how` = post | basic | json.
async fn authenticate(s: &Iss, how: &str, client_id: &str, secret: &str) -> Answer {
    let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
    let req = client().post(format!("{}oauth/token", s.url));
    let req = match how {
        "post" => req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&audience={}&client_id={}&client_secret={}",
                enc(ORDERS),
                enc(client_id),
                enc(secret)
            )),
        "basic" => req
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", enc(client_id), enc(secret)))
                ),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&audience={}", enc(ORDERS))),
        _ => req.header("content-type", "application/json").body(json(
            serde_json::json!({"audience": ORDERS, "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}),
        )),
    };
    answer(req.send().await.unwrap()).await
}

#[tokio::test]
async fn an_attack_on_an_app_never_locks_its_correct_credentials_out() {
    let keys = tempfile::tempdir().unwrap();
    let key = support::jwt::TestKey::es256("kh");
    let forged = support::jwt::TestKey::es256("kh");
    let s = Iss::start(api().app(keyholder(keys.path(), &key))).await;
    let mut throttled = 0;
    // Strictly interleaved: a wrong secret, then the right one, many times,
    // in each client authentication form.
    for how in ["post", "basic", "json"] {
        for round in 0..14 {
            let (status, headers, v) = authenticate(&s, how, "billing", WRONG).await;
            assert!(
                status == 401 || status == 429,
                "{how} {round}: {status} {v}"
            );
            if status == 429 {
                throttled += 1;
                assert!(headers.contains_key("retry-after"));
            }
            let (status, _, v) = authenticate(&s, how, "billing", SECRET).await;
            assert_eq!(status, 200, "{how} round {round}: the right secret: {v}");
        }
    }
    assert!(throttled >= 20, "failures were throttled ({throttled})");
    // A flood of wrong secrets and forged assertions in parallel with the
    // real client: every real request succeeds.
    let attack = async {
        for wave in 0..4 {
            let wrong = (0..10).map(|i| {
                let s = &s;
                let forged = &forged;
                async move {
                    match i % 4 {
                        0 => authenticate(s, "post", "billing", WRONG).await.0,
                        1 => authenticate(s, "basic", "gateway", WRONG).await.0,
                        2 => s.introspect("gateway", WRONG, "x").await.0,
                        _ => {
                            assert_as(s, forged, "keyholder", &format!("forged-{wave}-{i}"))
                                .await
                                .0
                        }
                    }
                }
            });
            for status in futures_util::future::join_all(wrong).await {
                assert!(status == 401 || status == 429, "{status}");
            }
        }
    };
    let legit = async {
        for i in 0..12 {
            assert_eq!(
                authenticate(&s, "post", "billing", SECRET).await.0,
                200,
                "billing {i}"
            );
            let t = s.orders_token("billing", SECRET).await;
            let (status, _, v) = s.introspect("gateway", SECRET, &t).await;
            assert_eq!(
                (status, &v["active"]),
                (200, &serde_json::Value::Bool(true)),
                "gateway {i}"
            );
            let (status, _, v) = assert_as(&s, &key, "keyholder", &format!("real-{i}")).await;
            assert_eq!(status, 200, "keyholder {i}: {v}");
        }
    };
    tokio::join!(attack, legit);
    let (_, metrics) = support::http::get(&format!("{}metrics", s.url)).await;
    assert!(
        support::metric(&metrics, "m2m_issuer_auth_throttled_total") > 20,
        "{metrics}"
    );
    s.stop().await;
}

/// The parts of an answer an attacker compares (not `date`, not the
/// `retry-after` value, which is checked for range).
fn looks(a: &Answer) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let mut h: Vec<(String, String)> =
        a.1.iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| {
                let v = if k == "retry-after" {
                    let n: u64 = v.to_str().unwrap().parse().unwrap();
                    assert!((1..=6).contains(&n), "retry-after {n}");
                    "N".to_owned()
                } else {
                    v.to_str().unwrap().to_owned()
                };
                (k.to_string(), v)
            })
            .collect();
    h.sort();
    (a.0, h, a.2.clone())
}

#[tokio::test]
async fn known_and_unknown_client_ids_answer_alike() {
    let keys = tempfile::tempdir().unwrap();
    let key = support::jwt::TestKey::es256("kh");
    let forged = support::jwt::TestKey::es256("kh");
    // Pairs (known, unknown) per method, failing side by side until both are
    // throttled: each step answers the same. (A fresh issuer per method, so
    // the per-address budget, shared by both, stays out of the way.)
    let mut timing = (Vec::new(), Vec::new());
    for (how, known_id) in [
        ("post", "billing"),
        ("basic", "billing"),
        ("json", "billing"),
    ] {
        let s = Iss::start(api()).await;
        let unknown = format!("nobody-{how}");
        for step in 0..12 {
            let t = std::time::Instant::now();
            let known = authenticate(&s, how, known_id, WRONG).await;
            let tk = t.elapsed();
            let t = std::time::Instant::now();
            let other = authenticate(&s, how, &unknown, WRONG).await;
            let tu = t.elapsed();
            assert_eq!(looks(&known), looks(&other), "{how} step {step}");
            if known.0 == 401 {
                timing.0.push(tk);
                timing.1.push(tu);
            }
            assert_eq!(known.0, if step < 10 { 401 } else { 429 }, "{how} {step}");
        }
        // Even now the right credentials work.
        assert_eq!(
            authenticate(&s, how, known_id, SECRET).await.0,
            200,
            "{how}"
        );
        s.stop().await;
    }
    // Similar timing while not throttled (medians within 25 ms).
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut timing.0), median(&mut timing.1));
    assert!(
        k.abs_diff(u) < Duration::from_millis(25),
        "known {k:?} vs unknown {u:?}"
    );
    let s = Iss::start(api().app(keyholder(keys.path(), &key))).await;
    // Assertions: a known app's forged signature, an unknown iss, an app
    // without keys: the same answer.
    let answers = [
        assert_as(&s, &forged, "keyholder", "a1").await,
        assert_as(&s, &forged, "nobody", "a2").await,
        assert_as(&s, &forged, "billing", "a3").await,
    ];
    let first = looks(&answers[0]);
    for a in &answers[1..] {
        assert_eq!(looks(a), first);
    }
    assert_eq!(assert_as(&s, &key, "keyholder", "a4").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn an_inbound_sidecars_introspection_client_cannot_be_locked_out() {
    let echo = support::echo::Echo::start().await;
    let inbound = |issuer: &str| {
        format!(
            "[inbound]\nlisten = \"127.0.0.1:0\"\nupstream = {}\nissuer = {}\naudiences = [{}]\n[inbound.introspection]\nclient_id = \"gateway\"\nclient_secret = {}\ncache_ttl = \"1s\"\n[[inbound.rules]]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n",
            quote(&echo.url()),
            quote(issuer),
            quote(ORDERS),
            quote(SECRET),
        )
    };
    let s = Iss::around(inbound, api()).await;
    s.sidecar.ready().await;
    let url = s.sidecar.inbound("/orders/1");
    let attack = (0..60).map(|i| {
        let s = &s;
        async move {
            if i % 2 == 0 {
                s.introspect("gateway", WRONG, "x").await.0
            } else {
                authenticate(s, "basic", "gateway", WRONG).await.0
            }
        }
    });
    let statuses = futures_util::future::join_all(attack).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    // Every new token needs a fresh introspection call: all pass.
    for i in 0..10 {
        let t = s.orders_token("billing", SECRET).await;
        assert_eq!(bearer_status(&url, &t).await, 200, "token {i}");
    }
    let (_, text) = support::http::get(&s.sidecar.admin_url("/metrics")).await;
    assert_eq!(
        support::metric(&text, "m2m_inbound_introspections_total{outcome=\"error\"}"),
        0,
        "{text}"
    );
    assert!(
        support::metric(
            &text,
            "m2m_inbound_introspections_total{outcome=\"active\"}"
        ) >= 10
    );
    assert_eq!(echo.seen().len(), 10);
    s.stop().await;
}
