//! Exhaustion: `max_connections` sockets held by an attacker, and
//! legitimate clients served again.

use super::*;
use attacks::{Attack, attack_on};
use frames::*;
use support::until;

/// `max_connections` sockets per listener held by an attacker doing `how`:
/// legitimate clients are refused while they are held, and served again within
/// `header_read_timeout` (the attack's sockets are closed by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_clients_are_served_again_after_an_exhaustion_attack() {
    const CAP: usize = 12;
    let five = Five::start(&format!("max_connections = {CAP}\n")).await;
    let variants: Vec<(&str, Attack)> = vec![
        ("nothing", Attack::Send(Vec::new())),
        ("preface prefix", Attack::Send(PREFACE[..10].to_vec())),
        ("preface + SETTINGS", Attack::Send(h2(&[settings_ack()]))),
        (
            "h1 head without end",
            Attack::Send(b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec()),
        ),
        (
            "mixed, with PINGs",
            Attack::Pings(h2(&[settings_ack()]), Duration::from_millis(200)),
        ),
    ];
    let mut n = 0;
    for kind in KINDS {
        for (name, how) in &variants {
            let addr = five.addr(kind);
            let started = Instant::now();
            // The attack's connections are made before any legitimate one,
            // so the listener accepts them first (in order) and is full.
            let mut held = Vec::new();
            for _ in 0..CAP {
                let c = TcpStream::connect(addr).await.unwrap();
                held.push(tokio::spawn(attack_on(
                    c,
                    Instant::now(),
                    how.clone(),
                    Duration::from_secs(30),
                )));
            }
            // The cap is reached: a legitimate client is turned away.
            let mut refused = false;
            for _ in 0..50 {
                n += 1;
                if !five.served(kind, n).await {
                    refused = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                refused,
                "{kind:?} / {name}: the attack never filled the listener"
            );
            // Served again within header_read_timeout of the attack's start.
            let left = (HEAD + SLACK).saturating_sub(started.elapsed());
            let what = format!("{kind:?} / {name}: served again");
            until(left, &what, async || {
                n += 1;
                five.served(kind, n).await
            })
            .await;
            for h in held {
                let closed = h.await.unwrap();
                assert!(
                    closed.is_some_and(|c| c <= HEAD + SLACK),
                    "{kind:?} / {name}: an attack socket was closed after {closed:?}"
                );
            }
        }
    }
    five.iss.sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attack_that_stops_frees_the_listener_at_once() {
    const CAP: usize = 8;
    let five = Five::start(&format!("max_connections = {CAP}\n")).await;
    for kind in KINDS {
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(TcpStream::connect(five.addr(kind)).await.unwrap());
        }
        let mut refused = false;
        for n in 0..50 {
            if !five.served(kind, n).await {
                refused = true;
                break;
            }
        }
        assert!(refused, "{kind:?}: the attack never filled the listener");
        let stopped = Instant::now();
        drop(held);
        let mut n = 100;
        while !five.served(kind, n).await {
            n += 1;
            assert!(
                stopped.elapsed() < HEAD / 2,
                "{kind:?}: not served {:?} after the attack stopped",
                stopped.elapsed()
            );
        }
    }
    five.iss.sidecar.stop().await;
}
