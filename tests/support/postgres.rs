//! A real, throwaway PostgreSQL server for the store tests.
//!
//! [`Cluster::start`] runs `initdb` in a fresh temporary directory and starts
//! `postgres` on a free loopback port (127.0.0.1 only; its unix socket in the
//! same directory). The superuser is `m2m` with a random password: TCP
//! connections need it (scram-sha-256), the unix socket is trusted (used by
//! [`Cluster::psql`] and [`Cluster::create_database`]). Durability is off
//! (`fsync=off`): the data are thrown away.
//!
//! `initdb` and `postgres` refuse to run as root; when the tests run as root
//! (CI does), every PostgreSQL program runs as the unprivileged system user
//! `m2m-test` through `runuser` (`test.sh` creates it).
//!
//! The binaries come from `M2M_PG_BIN` (a directory with `initdb`, `pg_ctl`,
//! `postgres`, `psql`; `test.sh` exports it), else the highest
//! `/usr/lib/postgresql/*/bin`, else `PATH`. Without them, `start` skips
//! (returns `None`), or panics under `CI=true`.
//!
//! Dropping a [`Cluster`] stops its server (`pg_ctl stop -m immediate`, also
//! when the test panics) and removes the directory. Every wait is bounded:
//! `pg_ctl -w -t 30`, and `timeout` around the other programs.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The unprivileged user PostgreSQL runs as when the tests run as root.
pub const USER: &str = "m2m-test";

/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "m2m";

/// How long `pg_ctl` waits for a start or a stop, in seconds.
const PG_CTL_WAIT: &str = "30";

/// At most how long `initdb` or one `psql` may run, in seconds.
const RUN_LIMIT: &str = "120";

/// How many free ports a start tries before it gives up (another process may
/// take the port between the probe and the server's bind).
const PORT_TRIES: usize = 5;

/// A running PostgreSQL server in a temporary directory; stopped on drop.
pub struct Cluster {
    bin: PathBuf,
    /// Run the programs as [`USER`] (the tests run as root).
    as_user: bool,
    /// Holds `data/` (PGDATA), the unix socket and `server.log`; removed
    /// after `Drop` has stopped the server.
    dir: tempfile::TempDir,
    port: u16,
    password: String,
}

impl Cluster {
    /// Start a fresh cluster, or `None` (with a message on stderr) when the
    /// PostgreSQL binaries are missing and `CI` is not `true`.
    ///
    /// Panics when they are missing under `CI=true`, and when `initdb` or the
    /// start fails (with the program's output or the server log).
    pub fn start() -> Option<Cluster> {
        let bin = match find_bin() {
            Ok(bin) => bin,
            Err(why) => return skip(&why),
        };
        let as_user = euid_is_root();
        if as_user && !user_exists(USER) {
            return skip(&format!(
                "running as root, PostgreSQL needs the unprivileged user {USER} \
                 (useradd --system --no-create-home {USER}; test.sh does it)"
            ));
        }

        let dir = tempfile::Builder::new()
            .prefix("m2m-pg-")
            .tempdir()
            .expect("create the cluster's temporary directory");
        let password = format!("{:032x}", rand::random::<u128>());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).expect("write the password file");
        if as_user {
            let (uid, gid) = user_ids(USER);
            for path in [dir.path(), &pwfile] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to {USER}: {e}", path.display()));
            }
        }

        let mut cluster = Cluster {
            bin,
            as_user,
            dir,
            port: 0,
            password,
        };
        cluster.initdb(&pwfile);
        std::fs::remove_file(&pwfile).expect("remove the password file");

        let mut last_log = String::new();
        for _ in 0..PORT_TRIES {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return Some(cluster),
                // The probed port was taken before the server bound it: another.
                Err(log) if log.contains("already in use") => last_log = log,
                Err(log) => panic!("PostgreSQL did not start; its log:\n{log}"),
            }
        }
        panic!(
            "PostgreSQL did not start on a free port in {PORT_TRIES} tries; last log:\n{last_log}"
        )
    }

    /// The DSN of database `db` over TCP, without the password:
    /// `postgres://m2m@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The superuser's password (needed on TCP).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the unix socket (`psql -h DIR`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Create database `name` (owned by the superuser).
    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")),
        );
    }

    /// Run `sql` in database `db` over the unix socket; its stdout, unaligned
    /// and without headers (`psql -A -t`: one line a row, columns split by
    /// `|`), trailing newlines trimmed. Panics with psql's stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql in {db} failed ({}) for: {sql}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    }

    /// A command running PostgreSQL program `program` (`psql`, `pg_dump`, …)
    /// from the cluster's binaries, as the cluster's user, bounded by
    /// `timeout`, in the cluster's directory, with `PGCONNECT_TIMEOUT=10`.
    /// Add its arguments; it connects nowhere by itself.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = if self.as_user {
            let mut c = Command::new("runuser");
            c.args(["-u", USER, "--", "timeout"]);
            c
        } else {
            Command::new("timeout")
        };
        cmd.args(["-k", "5", RUN_LIMIT])
            .arg(self.bin.join(program))
            .current_dir(self.dir.path())
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGUSER")
            .env_remove("PGDATABASE");
        cmd
    }

    /// Stop the server (`pg_ctl stop -m fast -w`); the directory stays, for
    /// [`Cluster::start_again`]. Panics when it does not stop.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", PG_CTL_WAIT]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start the stopped server again, on the same port and data. Panics when
    /// it does not start (with the server log).
    pub fn start_again(&self) {
        if let Err(log) = self.pg_ctl_start() {
            panic!(
                "PostgreSQL did not start again on port {}; its log:\n{log}",
                self.port
            );
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn initdb(&self, pwfile: &Path) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", SUPERUSER])
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--pwfile"])
            .arg(pwfile)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Loopback TCP only, the socket beside the data, no durability.
        let conf = format!(
            "\n# m2m-sidecar tests\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\n",
            self.dir.path().display().to_string().replace('\'', "''")
        );
        let path = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&path, text).expect("write postgresql.conf");
    }

    /// `pg_ctl start -w` on `self.port`; on failure, what the server logged
    /// during this attempt.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let before = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let log = self.log_path();
        let out = self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            PG_CTL_WAIT,
            "-l",
            &log.display().to_string(),
            "-o",
            &format!("-p {}", self.port),
        ]);
        if out.status.success() {
            return Ok(());
        }
        let text = std::fs::read(&log).unwrap_or_default();
        let start = usize::try_from(before).unwrap_or(0).min(text.len());
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&text[start..]),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.try_pg_ctl(args).expect("run pg_ctl")
    }

    fn try_pg_ctl(&self, args: &[&str]) -> std::io::Result<Output> {
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(args)
            .output()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Never leave a server behind; fails harmlessly when already stopped,
        // and never panics (a panic while a test unwinds would abort).
        let _ = self.try_pg_ctl(&["stop", "-m", "immediate", "-w", "-t", PG_CTL_WAIT]);
    }
}

/// No PostgreSQL: `None` with a message, or a panic under `CI=true`.
fn skip(why: &str) -> Option<Cluster> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "PostgreSQL is required under CI=true: {why}"
    );
    eprintln!("skipping: {why}");
    None
}

/// The directory with `initdb`, `pg_ctl`, `postgres` and `psql`.
fn find_bin() -> Result<PathBuf, String> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    if let Some(dir) = std::env::var_os("M2M_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "PostgreSQL not found in M2M_PG_BIN={} (it needs initdb, pg_ctl, postgres, psql)",
                dir.display()
            ))
        };
    }
    // Debian: /usr/lib/postgresql/VERSION/bin, the highest version first.
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    // PATH: the real directory of `initdb` (PATH may hold symlinks or wrappers).
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|d| complete(d))
        .ok_or_else(|| "PostgreSQL not found (set M2M_PG_BIN or install postgresql)".to_string())
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn euid_is_root() -> bool {
    id(&["-u"]).as_deref() == Some("0")
}

fn user_exists(user: &str) -> bool {
    id(&["-u", user]).is_some()
}

/// The uid and gid of `user`.
fn user_ids(user: &str) -> (u32, u32) {
    let get = |flag| {
        id(&[flag, user])
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("id {flag} {user}"))
    };
    (get("-u"), get("-g"))
}

/// `id ARGS`, trimmed; None when it fails.
fn id(args: &[&str]) -> Option<String> {
    let out = Command::new("id").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
