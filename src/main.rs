//! The `m2m-sidecar` command: parse the command line, set up logging, load the
//! config, start the app and wait for a signal. No logic of its own lives here.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use m2m_sidecar::config::{self, Config};
use m2m_sidecar::{App, Listeners, token};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

// mimalloc: measurably less CPU per proxied request than the system allocator
// (see BENCHMARKS.md), and it returns memory to the OS promptly.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "m2m-sidecar",
    version,
    about = "Machine-to-machine authorization sidecar"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (TOML, YAML or JSON); `M2M_` environment variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log line format (logs go to stderr; filter with RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar: outbound listeners and admin endpoints (the default).
    Run,
    /// Run only the built-in authorization server (`[issuer]`).
    Issuer,
    /// Issuer, inbound and outbound sidecars and a demo service in one process; prints curl lines.
    Quickstart {
        /// Use free ports instead of 15000-15100 (for tests).
        #[arg(long)]
        ephemeral_ports: bool,
    },
    /// Validate a config, print what it would run (secrets redacted), exit non-zero on errors.
    Check,
    /// Fetch a token for one credential and print it alone on stdout.
    Token {
        /// The credential's name (`[credentials.NAME]`).
        credential: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = init_logging(cli.log_format);
    if let Some(Command::Quickstart { ephemeral_ports }) = cli.command {
        return quickstart(ephemeral_ports);
    }
    let Some(path) = cli.config.as_deref() else {
        eprintln!("error: --config FILE is required");
        return ExitCode::from(2);
    };
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: {errors}", path.display());
            return ExitCode::from(2);
        }
    };
    for w in &config.warnings {
        tracing::warn!(warning = %w, "config");
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(path, config, false),
        Command::Issuer => run(path, config, true),
        Command::Quickstart { .. } => ExitCode::FAILURE,
        Command::Check => check(path, &config),
        Command::Token { credential } => print_token(&config, &credential),
    }
}

/// What must outlive the program's work: the trace exporter, flushed at exit.
struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = &self.provider {
            m2m_sidecar::otel::shutdown(p);
        }
    }
}

fn init_logging(format: LogFormat) -> Telemetry {
    use std::io::IsTerminal as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        let provider = m2m_sidecar::otel::provider();
        let layer = provider.as_ref().map(m2m_sidecar::otel::layer);
        registry.with(layer).init();
        Telemetry { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Telemetry {}
    }
}

fn check(path: &Path, config: &Config) -> ExitCode {
    // Secrets are read at run time (a mounted Secret may not exist where `check`
    // runs), so an unreadable one is a warning here, never an error.
    for c in &config.credentials {
        let (key, source) = match &c.auth {
            config::ClientAuth::Secret(s) => ("client_secret", s),
            config::ClientAuth::PrivateKey { key, .. } => ("private_key", key),
            _ => continue,
        };
        if let Err(why) = token::secret::read(source) {
            eprintln!("warning: credentials.{}.{key}: {why}", c.name);
        }
    }
    println!("{}: OK", path.display());
    print!("{}", config::summary(config));
    ExitCode::SUCCESS
}

/// One worker thread means a current-thread runtime: the same work without the
/// multi-thread scheduler's cross-thread wake-ups (a pinned sidecar's common case).
fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all().build()
}

fn print_token(config: &Config, name: &str) -> ExitCode {
    let Some(spec) = config.credential(name) else {
        let known: Vec<_> = config.credentials.iter().map(|c| c.name.as_str()).collect();
        eprintln!(
            "error: no credential named `{name}` (defined: {})",
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    // With token_cache_dir, reuse a token with at least a minute left (the
    // running sidecar's, or this command's last one).
    let cache_file = config
        .token_cache_dir
        .as_deref()
        .map(|d| token::disk::cache_file(d, spec));
    if let Some(c) = cache_file
        .as_ref()
        .and_then(|f| f.load(Duration::from_secs(60)).ok().flatten())
    {
        let _ = writeln!(std::io::stdout().lock(), "{}", c.access_token);
        eprintln!(
            "token for {name} (from token_cache_dir) valid for {}",
            humantime::format_duration(Duration::from_secs(c.remaining.as_secs()))
        );
        return ExitCode::SUCCESS;
    }
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let fetcher = token::Fetcher::new(spec.clone()).map_err(|e| e.to_string())?;
                fetcher.fetch().await.map_err(|e| e.to_string())
            })
        });
    if let (Ok(issued), Some(f)) = (&result, &cache_file)
        && let Err(why) = f.save(&issued.access_token, issued.lifetime)
    {
        eprintln!("warning: cannot keep the token in token_cache_dir: {why}");
    }
    match result {
        Ok(issued) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", issued.access_token);
            eprintln!(
                "token for {name} valid for {}",
                humantime::format_duration(Duration::from_secs(issued.lifetime.as_secs()))
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path, config: Config, issuer_only: bool) -> ExitCode {
    let rt = match runtime(config.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = if issuer_only {
        rt.block_on(serve_issuer(config))
    } else {
        rt.block_on(serve(path, config))
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}

/// How long the config file must stay unchanged (same bytes, no write event)
/// before the watcher applies it: an editor that rewrites it in place, or a
/// tool that writes it in several steps, is not caught half way.
const SETTLE: Duration = Duration::from_secs(1);
/// How often a settling config file is read again.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// A config file larger than this is refused rather than read.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// What asked for a reload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The operator's SIGHUP: the file is read at once and applied as it is.
    Sighup,
    /// The watched file changed: applied once it has settled, and never when
    /// it would remove every listener.
    Watch,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Sighup => "SIGHUP",
            Trigger::Watch => "config file changed",
        }
    }
}

/// A changed config file waiting to settle.
struct Settling {
    content: Result<Vec<u8>, String>,
    /// When the content (or a write event) last changed.
    since: tokio::time::Instant,
    next_check: tokio::time::Instant,
}

/// The config file's bytes (bounded), or why not.
async fn read_config(path: &Path) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        ));
    }
    Ok(text)
}

/// Run until SIGTERM/SIGINT; reload on SIGHUP and when the config file changes
/// (once it has settled, see [`SETTLE`]).
/// On SIGTERM: `/readyz` turns 503 at once, new connections are still accepted
/// for `drain_grace` (load balancers and kube-proxy catch up), then listeners
/// stop accepting and in-flight requests get `drain_timeout`; exit 0.
async fn serve(path: &Path, config: Config) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    use tokio::time::Instant;
    let listeners = Listeners::bind(&config).await?;
    let (stop, stopped) = watch::channel(false);
    let handle = App::spawn(config, listeners, stopped).await?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let (changed_tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    // Held for as long as we serve: dropping it stops the watch.
    let _watcher = watch_config(path, changed_tx);
    let mut settling: Option<Settling> = None;
    loop {
        let check_at = settling.as_ref().map(|s| s.next_check);
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => {
                settling = None;
                reload(path, None, &handle, Trigger::Sighup).await;
            }
            Some(()) = changed.recv() => {
                while changed.try_recv().is_ok() {}
                let now = Instant::now();
                match &mut settling {
                    // Written again: the settle period starts over.
                    Some(s) => s.since = now,
                    None => settling = Some(Settling {
                        content: read_config(path).await,
                        since: now,
                        next_check: now + SETTLE_POLL,
                    }),
                }
            }
            () = tokio::time::sleep_until(check_at.unwrap_or_else(Instant::now)), if check_at.is_some() => {
                let now = Instant::now();
                let content = read_config(path).await;
                let Some(s) = settling.as_mut() else { continue };
                if content != s.content {
                    s.content = content;
                    s.since = now;
                }
                if now.duration_since(s.since) < SETTLE {
                    s.next_check = now + SETTLE_POLL;
                    continue;
                }
                match settling.take().map(|s| s.content) {
                    Some(Ok(text)) => reload(path, Some(text), &handle, Trigger::Watch).await,
                    Some(Err(why)) => {
                        tracing::error!(trigger = Trigger::Watch.as_str(), error = %why, "reload refused; the running configuration is kept");
                        handle.reload_failed().await;
                    }
                    None => {}
                }
            }
        }
    }
    let limits = handle.limits().await;
    let (grace, drain) = (limits.drain_grace, limits.drain_timeout);
    handle.set_draining();
    tracing::info!(
        drain_grace_s = grace.as_secs_f64(),
        drain_timeout_s = drain.as_secs_f64(),
        "draining: /readyz is 503; new connections accepted for the grace period"
    );
    tokio::time::sleep(grace).await;
    tracing::info!("no new connections; waiting for in-flight requests");
    let _ = stop.send(true);
    if tokio::time::timeout(drain + Duration::from_secs(1), handle.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within the drain timeout");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Whether `new` has none of the proxy listeners (outbound, forward proxy,
/// inbound) while the running configuration has some.
async fn removes_every_listener(handle: &m2m_sidecar::Handle, new: &Config) -> bool {
    let running = handle.addresses().await;
    let had = !running.outbound.is_empty()
        || running.forward_proxy.is_some()
        || running.inbound.is_some();
    let has = !new.outbound.is_empty() || new.forward_proxy.is_some() || new.inbound.is_some();
    had && !has
}

/// Parse → validate → apply (`text`: the file's bytes as already read, else
/// read now); a config that fails keeps the running one.
async fn reload(
    path: &Path,
    text: Option<Vec<u8>>,
    handle: &m2m_sidecar::Handle,
    trigger: Trigger,
) {
    let why = trigger.as_str();
    let started = std::time::Instant::now();
    let loaded = match &text {
        Some(t) => config::load_file_text(path, t),
        None => config::load_file(path),
    };
    match loaded {
        Ok(new) => {
            if trigger == Trigger::Watch && removes_every_listener(handle, &new).await {
                // A truncated or emptied file parses as a config with no
                // listener: only an explicit SIGHUP may apply that.
                tracing::error!(
                    trigger = why,
                    "reload refused: the changed config file has no listener ([[outbound]], [forward_proxy], [inbound]) and would remove every running one; send SIGHUP to apply it anyway"
                );
                handle.reload_failed().await;
                return;
            }
            for w in &new.warnings {
                tracing::warn!(warning = %w, "config");
            }
            match handle.reload(new).await {
                Ok(changes) => tracing::info!(
                    trigger = why,
                    took_ms = started.elapsed().as_millis() as u64,
                    changes = %if changes.is_empty() { "none".to_owned() } else { changes.join("; ") },
                    "configuration reloaded"
                ),
                Err(e) => {
                    tracing::error!(trigger = why, error = %e, "reload failed; the running configuration is kept")
                }
            }
        }
        Err(errors) => {
            for issue in &errors.0 {
                tracing::error!(trigger = why, problem = %issue, "invalid configuration");
            }
            tracing::error!(
                trigger = why,
                problems = errors.0.len(),
                "reload refused; the running configuration is kept"
            );
            handle.reload_failed().await;
        }
    }
}

/// Watch the config file's directory (a ConfigMap swaps its `..data` symlink;
/// editors replace the file); each relevant event sends `()`.
fn watch_config(
    path: &Path,
    changed: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_owned();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        let relevant = ev.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|f| f == name.as_os_str() || f == "..data")
        });
        if relevant {
            let _ = changed.send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads"))
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; SIGHUP still reloads"))
        .ok()?;
    Some(watcher)
}

fn quickstart(ephemeral: bool) -> ExitCode {
    let result = runtime(None).map_err(|e| e.to_string()).and_then(|rt| {
        rt.block_on(async {
            let (stop, stopped) = watch::channel(false);
            let mut run = tokio::spawn(m2m_sidecar::quickstart::run(ephemeral, stopped));
            tokio::select! {
                r = wait_for_signal() => r?,
                done = &mut run => return done.map_err(|e| e.to_string())?,
            }
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), run).await;
            Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_issuer(config: Config) -> Result<(), String> {
    let spec = config
        .issuer
        .as_ref()
        .ok_or("the config has no [issuer] table")?;
    let listener = tokio::net::TcpListener::bind(spec.listen)
        .await
        .map_err(|e| format!("issuer: cannot listen on {}: {e}", spec.listen))?;
    let (stop, stopped) = watch::channel(false);
    let task = App::spawn_issuer(&config, listener, stopped)?;
    wait_for_signal().await?;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(config.drain_timeout + Duration::from_secs(1), task).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
