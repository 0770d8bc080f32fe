//! The throwaway PostgreSQL of the store tests (`support::postgres`) works:
//! it starts, answers SQL, wants its password on TCP, stops (the port then
//! refuses connections), starts again with its data, and is gone after drop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpStream};
use std::process::Output;
use support::postgres::Cluster;

/// `select 1` through psql over TCP (the cluster's `url`) with `password`.
fn psql_tcp(pg: &Cluster, db: &str, password: &str) -> Output {
    pg.command("psql")
        .args(["-X", "-w", "-q", "-A", "-t", "-c", "select 1", "-d"])
        .arg(pg.url(db))
        .env("PGPASSWORD", password)
        .output()
        .unwrap()
}

/// Whether a TCP connection to 127.0.0.1:`port` is refused.
fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[test]
fn a_throwaway_cluster_starts_answers_stops_and_starts_again() {
    let Some(pg) = Cluster::start() else { return };
    let port = pg.port();
    assert_eq!(
        pg.url("probe"),
        format!("postgres://m2m@127.0.0.1:{port}/probe")
    );
    assert!(!pg.url("probe").contains(pg.password()));

    pg.create_database("probe");
    assert_eq!(pg.psql("probe", "select 1"), "1");
    pg.psql(
        "probe",
        "create table kept (id int primary key, name text); insert into kept values (1, 'one')",
    );

    // TCP wants the password: a wrong one is refused, the right one works.
    let wrong = psql_tcp(&pg, "probe", "not-the-password");
    assert!(!wrong.status.success(), "a wrong password was accepted");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    let right = psql_tcp(&pg, "probe", pg.password());
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&right.stdout).trim(), "1");

    // Stopped: the port refuses connections (pg_ctl -w returned when it was down).
    pg.stop();
    assert!(refused(port), "port {port} still accepts after stop");

    // Started again: same port, same data.
    pg.start_again();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("probe", "select id, name from kept"), "1|one");
    assert_eq!(
        String::from_utf8_lossy(&psql_tcp(&pg, "probe", pg.password()).stdout).trim(),
        "1"
    );

    // Dropped: the server is stopped and its directory removed.
    let dir = pg.socket_dir().to_path_buf();
    drop(pg);
    assert!(refused(port), "port {port} still accepts after drop");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
