//! The `m2m-sidecar` binary run as a child process: its JSON log lines collected,
//! addresses read from them, signals sent.

use super::poll::{LONG, until};
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_m2m-sidecar");

pub fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

pub fn sidecar() -> Command {
    let mut c = Command::new(BIN);
    // A clean environment: no stray M2M_ variables from the caller.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

/// A running binary whose stderr is collected line by line.
pub struct Running {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn start(config: &std::path::Path) -> Self {
        Self::command("run", config)
    }

    pub fn command(subcommand: &str, config: &std::path::Path) -> Self {
        let mut cmd = sidecar();
        cmd.args([subcommand, "--log-format", "json", "--config"])
            .arg(config)
            .env("RUST_LOG", "debug");
        Self::spawn(cmd)
    }

    /// `m2m-sidecar issuer` on `config` with `env`: the process and its address.
    pub async fn issuer(config: &std::path::Path, env: &[(&str, &str)]) -> (Self, String) {
        let mut cmd = sidecar();
        cmd.args(["issuer", "--log-format", "json", "--config"])
            .arg(config)
            .envs(env.iter().copied());
        let run = Self::spawn(cmd);
        let addr = run.addr_of("issuer ready").await;
        (run, addr)
    }

    /// `run` on `config` (one outbound listener), ready: the outbound and admin addresses.
    pub async fn start_ready(config: &std::path::Path) -> (Self, String, String) {
        let run = Self::start(config);
        let outbound = run.addr_of("outbound listener ready").await;
        let admin = run.ready().await;
        (run, outbound, admin)
    }

    /// Spawn `cmd` with its stderr collected.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    /// The log lines that are JSON, parsed.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect()
    }

    /// The `addr` field of the first log line whose message is `message` (and route).
    pub async fn addr_of(&self, message: &str) -> String {
        let what = format!("a `{message}` log line");
        until(LONG, &what, async || {
            let found = self.logs().into_iter().find(|v| v["message"] == message);
            match found {
                Some(v) => Ok(v["addr"].as_str().unwrap().to_owned()),
                None => Err(format!("{:?}", self.lines.lock().unwrap())),
            }
        })
        .await
    }

    /// The admin listener's address, once `/readyz` answers 200.
    pub async fn ready(&self) -> String {
        let admin = self.addr_of("admin listener ready").await;
        super::http::ready(&admin).await;
        admin
    }

    /// Send SIGTERM and wait (at most 10 s) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.exit(Duration::from_secs(10)).await
    }

    /// Wait (at most `limit`) for the process to exit.
    pub async fn exit(&mut self, limit: Duration) -> ExitStatus {
        until(limit, "the process to exit", async || {
            self.child.try_wait().unwrap()
        })
        .await
    }

    /// Send `signal` (e.g. `-HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// How many log lines have message `message` and `field` = `value`.
    pub fn count_logs(&self, message: &str, field: &str, value: &str) -> usize {
        self.logs()
            .iter()
            .filter(|v| v["message"] == message && v[field] == value)
            .count()
    }

    /// Wait (bounded) until `count` log lines have message `message`; the last one.
    pub async fn wait_for_log(&self, message: &str, count: usize) -> serde_json::Value {
        let what = format!("{count} `{message}` log lines");
        until(LONG, &what, async || {
            let mut found: Vec<serde_json::Value> = self
                .logs()
                .into_iter()
                .filter(|v| v["message"] == message)
                .collect();
            if found.len() >= count {
                Ok(found.pop().unwrap())
            } else {
                Err(format!("{:?}", self.lines.lock().unwrap()))
            }
        })
        .await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
