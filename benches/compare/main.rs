//! Side-by-side benchmark: synchdb against pgloader, PostgreSQL's own `COPY`
//! and pg_chameleon, on private MariaDB and PostgreSQL servers.
//!
//! ```text
//! cargo bench --bench compare                 # full scale, 3 runs per figure
//! cargo bench --bench compare -- --quick      # small scale, 1 run: to try it out
//! cargo bench --bench compare -- --help       # all flags
//! ```
//!
//! It starts a private MariaDB and PostgreSQL (synchdb-testkit), generates the
//! data inside MariaDB (Sequence engine), builds the release `replicate`
//! example, runs every workload `--runs` times with the tools interleaved
//! (run 1 of each tool, then run 2, ...), prints a table of medians, and
//! writes the results into `BENCHMARKS.md` (between the `results` markers)
//! and a chart to `benches/chart.svg`. It never runs in `cargo test`.

mod follow;
mod keyless;
mod latency;
mod nats;
mod report;
mod single;
mod snapshot;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use synchdb_testkit::{MariaDb, Postgres};

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Parser, Clone)]
#[command(name = "compare", about = "synchdb vs pgloader, COPY and pg_chameleon, side by side")]
pub(crate) struct Opts {
    /// Runs per figure (the median is reported).
    #[arg(long)]
    runs: Option<usize>,
    /// Small scale for trying the harness out: 200k-row snapshot, 100k changes, 15 s latency run, 1 run.
    #[arg(long)]
    quick: bool,
    /// Rows of the big snapshot table (default 2,000,000; 200,000 with --quick).
    #[arg(long)]
    rows: Option<u64>,
    /// Rows of each of the 20 small snapshot tables.
    #[arg(long, default_value_t = 5_000)]
    small_rows: u64,
    /// Row changes of the follow-throughput workload (default 1,000,000; 100,000 with --quick).
    #[arg(long)]
    changes: Option<u64>,
    /// Writer connections of the follow-throughput workload.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Seconds of the paced latency workload (default 60; 15 with --quick).
    #[arg(long)]
    latency_secs: Option<u64>,
    /// Row changes per second of the latency workload.
    #[arg(long, default_value_t = 2_000)]
    latency_rate: u64,
    /// Rows of the larger keyless-apply table (default 300,000; 60,000 with --quick, the least); the smaller has a tenth.
    #[arg(long)]
    keyless_rows: Option<u64>,
    /// Workloads to run, comma-separated: snapshot, follow, latency, keyless, single, nats (on demand).
    #[arg(long, value_delimiter = ',', default_value = "snapshot,follow,latency,keyless,single")]
    only: Vec<String>,
    /// Skip pgloader.
    #[arg(long)]
    no_pgloader: bool,
    /// Skip pg_chameleon.
    #[arg(long)]
    no_chameleon: bool,
    /// pg_chameleon virtualenv (created with /usr/bin/python3 -m venv and `pip install pg_chameleon` when missing).
    #[arg(long, default_value = "/opt/chameleon-venv")]
    chameleon_venv: PathBuf,
    /// Give up on a pg_chameleon run that has not caught up this many seconds after the workload ended.
    #[arg(long, default_value_t = 600)]
    chameleon_timeout: u64,
    /// Record a `perf` profile (cpu-clock) of synchdb in run 1 of snapshot and follow into this directory.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Where to write the results (the section between the `results` markers is replaced).
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Do not write BENCHMARKS.md and the chart.
    #[arg(long)]
    no_write: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

impl Opts {
    pub(crate) fn runs(&self) -> usize {
        self.runs.unwrap_or(if self.quick { 1 } else { 3 }).max(1)
    }
    pub(crate) fn rows(&self) -> u64 {
        self.rows.unwrap_or(if self.quick { 200_000 } else { 2_000_000 })
    }
    pub(crate) fn changes(&self) -> u64 {
        self.changes.unwrap_or(if self.quick { 100_000 } else { 1_000_000 })
    }
    pub(crate) fn keyless_rows(&self) -> u64 {
        // At least 100 values of `n` (60 rows each) in the smaller table, so the
        // updated (n < 50) and deleted (the last 33) rows never overlap.
        self.keyless_rows.unwrap_or(if self.quick { 60_000 } else { 300_000 }).max(60_000)
    }
    pub(crate) fn latency_secs(&self) -> u64 {
        self.latency_secs.unwrap_or(if self.quick { 15 } else { 60 })
    }
    fn wants(&self, w: &str) -> bool {
        self.only.iter().any(|o| o == w)
    }
}

/// Everything a workload needs: the servers, the replicate binary, a work directory.
pub(crate) struct Env {
    pub opts: Opts,
    pub mariadb: MariaDb,
    pub pg: Postgres,
    pub replicate: PathBuf,
    pub work: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
}

impl Env {
    /// `CREATE DATABASE name` on PostgreSQL (dropped first if it exists).
    pub fn fresh_pg_db(&self, name: &str) -> BenchResult<()> {
        self.pg.exec("postgres", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        self.pg.exec("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(())
    }
    pub fn drop_pg_db(&self, name: &str) {
        let _ = self.pg.exec("postgres", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
    /// The replicate command with the URLs in the environment.
    pub fn replicate(&self, target_db: &str, databases: &str, pipeline: &str) -> Command {
        let mut cmd = Command::new(&self.replicate);
        cmd.env("SYNCHDB_SOURCE_URL", self.mariadb.url())
            .env("SYNCHDB_TARGET_URL", self.pg.url_for(target_db))
            .env("SYNCHDB_LOG", "warn")
            .args(["--databases", databases, "--pipeline-id", pipeline]);
        cmd
    }
    /// MariaDB's current binlog position (`SHOW MASTER STATUS`).
    pub fn master_pos(&self) -> BenchResult<(String, u64)> {
        let s = self.mariadb.exec("SHOW MASTER STATUS")?;
        let mut parts = s.split_whitespace();
        let file = parts.next().ok_or("SHOW MASTER STATUS is empty: is the binlog on?")?.to_string();
        let pos = parts.next().ok_or("no position")?.parse()?;
        Ok((file, pos))
    }
}

/// A child process whose peak RSS (VmHWM) is sampled until it exits.
pub(crate) struct Watched {
    pub child: std::process::Child,
    peak_kb: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
    pub started: Instant,
}

impl Watched {
    pub fn spawn(cmd: &mut Command) -> BenchResult<Watched> {
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
        let pid = child.id();
        let peak_kb = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak_kb.clone(), stop.clone());
        let sampler = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            while !s.load(Ordering::Relaxed) {
                let Ok(status) = std::fs::read_to_string(&path) else { break };
                if let Some(kb) = status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Ok(Watched { child, peak_kb, stop, sampler: Some(sampler), started })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak RSS seen so far, in MB (10^6 bytes).
    pub fn peak_mb(&self) -> f64 {
        self.peak_kb.load(Ordering::Relaxed) as f64 * 1024.0 / 1e6
    }

    /// Wait for exit; returns (seconds since spawn, peak RSS MB).
    pub fn wait(mut self) -> BenchResult<(f64, f64)> {
        let status = self.child.wait()?;
        let secs = self.started.elapsed().as_secs_f64();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
        if !status.success() {
            return Err(format!("{:?} exited with {status}", self.child.id()).into());
        }
        Ok((secs, self.peak_mb()))
    }

    /// SIGINT (graceful stop), then wait.
    pub fn interrupt_and_wait(self) -> BenchResult<(f64, f64)> {
        signal(self.pid(), "INT")?;
        self.wait()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn signal(pid: u32, sig: &str) -> BenchResult<()> {
    let st = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()?;
    if !st.success() {
        return Err(format!("kill -{sig} {pid} failed").into());
    }
    Ok(())
}

pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Command output as a trimmed string ("" when the program is missing).
pub(crate) fn output_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Build the `replicate` example (release settings) and return its path.
fn build_replicate() -> BenchResult<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The `bench` profile inherits `release`; building with it reuses what `cargo bench` just built
    // (building `--release` would rebuild the workspace crates).
    eprintln!("==> cargo build --profile bench --example replicate");
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--profile", "bench", "--example", "replicate"])
        .status()?;
    if !status.success() {
        return Err("building the replicate example failed".into());
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let exe = target.join("release").join("examples").join("replicate");
    if !exe.exists() {
        return Err(format!("{} not found after the build", exe.display()).into());
    }
    Ok(exe)
}

fn run(opts: Opts) -> BenchResult<()> {
    let total = Instant::now();
    let replicate = build_replicate()?;
    eprintln!("==> starting private MariaDB and PostgreSQL");
    let mariadb = MariaDb::start()?;
    let pg = Postgres::start()?;
    // Same server settings for every tool: room for WAL and index builds.
    pg.exec("postgres", "ALTER SYSTEM SET max_wal_size = '4GB'")?;
    pg.exec("postgres", "ALTER SYSTEM SET maintenance_work_mem = '256MB'")?;
    pg.exec("postgres", "SELECT pg_reload_conf()")?;
    let work = tempfile::Builder::new().prefix("synchdb-bench-").tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let env = Env { opts: opts.clone(), mariadb, pg, replicate, work, rt };
    let machine = report::Machine::collect(&env);
    eprintln!("{machine:?}");

    let mut results = report::Results::default();
    if opts.wants("snapshot") {
        results.snapshot = Some(snapshot::snapshot_workload(&env)?);
    }
    if opts.wants("follow") {
        results.follow = Some(follow::follow_workload(&env)?);
    }
    if opts.wants("latency") {
        results.latency = Some(latency::latency_workload(&env)?);
    }
    if opts.wants("keyless") {
        results.keyless = Some(keyless::keyless_workload(&env)?);
    }
    if opts.wants("single") {
        results.single = Some(single::single_writer_workload(&env)?);
    }
    if opts.wants("nats") {
        results.nats = Some(nats::nats_workload(&env)?);
    }
    results.total_secs = total.elapsed().as_secs_f64();
    let command = std::iter::once("cargo bench --bench compare --".to_string())
        .chain(std::env::args().skip(1).filter(|a| a != "--bench"))
        .collect::<Vec<_>>()
        .join(" ");
    let command = command.trim_end_matches(" --").to_string();
    let text = report::render(&env.opts, &machine, &results, &command);
    println!("{text}");
    if !opts.no_write {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = if opts.out.is_absolute() { opts.out.clone() } else { root.join(&opts.out) };
        report::write_markdown(&out, &text)?;
        let svg = report::chart(&results);
        std::fs::write(root.join("benches").join("chart.svg"), svg)?;
        eprintln!("wrote {} and benches/chart.svg", out.display());
    }
    Ok(())
}
