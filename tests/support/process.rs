//! The `m2m-sidecar` binary run as a child process: its JSON log lines collected,
//! addresses read from them, signals sent.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
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

    /// `run` on `config` (one outbound listener), ready: the outbound and admin addresses.
    pub async fn start_ready(config: &std::path::Path) -> (Self, String, String) {
        let run = Self::start(config);
        let outbound = run.addr_of("outbound listener ready").await;
        let admin = run.addr_of("admin listener ready").await;
        super::http::wait_for_status(
            &format!("http://{admin}/readyz"),
            200,
            Duration::from_secs(20),
        )
        .await;
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

    /// The `addr` field of the first log line whose message is `message` (and route).
    pub async fn addr_of(&self, message: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.lines.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == message).then(|| v["addr"].as_str().unwrap().to_owned())
            });
            if let Some(a) = found {
                return a;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{message}` log line: {:?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Running {
    /// Send `signal` (e.g. `-HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// How many log lines have message `message` and `field` = `value`.
    pub fn count_logs(&self, message: &str, field: &str, value: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == message && v[field] == value)
            .count()
    }

    /// Wait (bounded) until `count` log lines have message `message`; the last one.
    pub async fn wait_for_log(&self, message: &str, count: usize) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found: Vec<serde_json::Value> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["message"] == message)
                .collect();
            if found.len() >= count {
                return found.last().unwrap().clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {count} `{message}` log lines: {:?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
