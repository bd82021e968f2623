//! Process helpers shared by the MariaDB and PostgreSQL launchers.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::TestkitError;

/// How long a server may take to accept connections.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports of the system servers, never handed out.
const RESERVED_PORTS: [u16; 2] = [3306, 5432];

/// `SYNCHDB_TESTKIT_KEEP=1`: keep the data directories.
pub(crate) fn keep_data() -> bool {
    std::env::var_os("SYNCHDB_TESTKIT_KEEP").is_some_and(|v| v == "1" || v == "true")
}

/// Whether this process runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| match std::fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false),
    })
}

/// A TCP port on 127.0.0.1 that was free a moment ago and has not been handed out
/// before by this process.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..50 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("bind 127.0.0.1:0"))?;
        let port = listener.local_addr().map_err(io_err("local_addr of a bound socket"))?.port();
        if !RESERVED_PORTS.contains(&port) && handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(TestkitError::Startup {
        server: "any",
        reason: "could not find a free TCP port on 127.0.0.1".into(),
        log_tail: String::new(),
    })
}

/// Unique database name: sanitized `prefix`, process id and a process-wide counter.
pub(crate) fn unique_db_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut clean: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(40)
        .collect();
    if clean.is_empty() {
        clean.push_str("test");
    }
    if clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert(0, 't');
    }
    format!("{clean}_{}_{n}", std::process::id())
}

/// Wrap an [`std::io::Error`] with a short description of what was attempted.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
    let context = context.into();
    move |source| TestkitError::Io { context, source }
}

/// Why one launch attempt of a server failed.
pub(crate) enum LaunchError {
    /// A TCP port was taken: try other ones.
    PortInUse(TestkitError),
    Other(TestkitError),
}

impl From<TestkitError> for LaunchError {
    fn from(e: TestkitError) -> Self {
        LaunchError::Other(e)
    }
}

impl LaunchError {
    pub(crate) fn into_inner(self) -> TestkitError {
        match self {
            LaunchError::PortInUse(e) | LaunchError::Other(e) => e,
        }
    }
}

/// Printable form of a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Run `cmd` to completion with captured output; error if it fails.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output, TestkitError> {
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(io_err(format!("run `{}`", describe(cmd))))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(command_failed(cmd, &output))
    }
}

/// The error for a command that exited unsuccessfully.
pub(crate) fn command_failed(cmd: &Command, output: &Output) -> TestkitError {
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    TestkitError::Command { command: describe(cmd), status: output.status.to_string(), output: text }
}

/// Run `cmd` feeding `input` on stdin (from a helper thread, so large inputs and
/// outputs cannot deadlock) and collect its output.
pub(crate) fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<Output, TestkitError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!("run `{}`", describe(cmd))))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A client that exits early (SQL error) closes the pipe: ignore EPIPE.
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().map_err(io_err(format!("wait for `{}`", describe(cmd))))?;
    let _ = writer.join();
    Ok(output)
}

/// Cut `sql` for inclusion in an error message.
pub(crate) fn abbreviate(sql: &str) -> String {
    const MAX: usize = 500;
    let sql = sql.trim();
    if sql.len() <= MAX {
        return sql.to_string();
    }
    let mut end = MAX;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &sql[..end])
}

/// Current length of a (log) file, 0 if it does not exist.
pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Text of a log file from byte `offset` on (lossy UTF-8; empty if unreadable).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Last `lines` lines of a log file from byte `offset` on.
pub(crate) fn log_tail(path: &Path, offset: u64, lines: usize) -> String {
    let text = read_from(path, offset);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut tail = all[start..].join("\n");
    if tail.is_empty() {
        tail = format!("(log {} is empty)", path.display());
    }
    tail
}

/// Whether a startup log says the TCP port was taken.
pub(crate) fn port_in_use(log: &str) -> bool {
    log.contains("Address already in use")
        || log.contains("Bind on TCP/IP port")
        || log.contains("could not bind IPv4 address")
        || log.contains("could not create any TCP/IP sockets")
}

/// Poll `f` until it returns `Some`, or `timeout` passes.
pub(crate) fn poll<T>(timeout: Duration, interval: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// Wait for `child` to exit within `timeout`; SIGKILL it after that. Returns true if
/// it exited on its own.
pub(crate) fn wait_or_kill(child: &mut Child, timeout: Duration) -> bool {
    let exited = poll(timeout, Duration::from_millis(20), || child.try_wait().ok().flatten()).is_some();
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    exited
}

/// Send SIGTERM to a process (through the shell builtin, so no `procps` is needed).
pub(crate) fn sigterm(pid: u32) {
    let _ = Command::new("sh")
        .args(["-c", "kill -TERM \"$1\" 2>/dev/null", "sh"])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Start a watchdog shell: it blocks reading its stdin, a pipe whose write end only this
/// process holds (close-on-exec, so no other child inherits it). When the process exits
/// for any reason, even SIGKILL, the pipe closes, `read` returns and the watchdog runs
/// the rest of `script` (stop the server, remove its directory). `args` become `$1`....
/// It runs in its own process group, so a Ctrl-C on the test run does not kill it first.
pub(crate) fn spawn_watchdog(script: &str, args: &[&OsStr]) -> Result<Child, TestkitError> {
    let full = format!("read _ignored\n{script}");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(full)
        .arg("synchdb-testkit-watchdog")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    cmd.spawn().map_err(io_err("spawn the cleanup watchdog (sh)"))
}

/// Stop a watchdog without letting it run its cleanup.
pub(crate) fn kill_watchdog(watchdog: &Mutex<Option<Child>>) {
    let taken = watchdog.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut child) = taken {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Find an executable: the first existing candidate path, else a `PATH` lookup of the
/// names.
pub(crate) fn find_program(paths: &[&str], names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = paths.iter().map(PathBuf::from).find(|p| is_executable(p)) {
        return Some(p);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    // Non-login root shells sometimes lack the sbin directories.
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    names.iter().find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p)))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Install the MariaDB and PostgreSQL packages with apt-get, once per process.
pub(crate) fn install_packages() -> Result<(), TestkitError> {
    static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALL.get_or_init(apt_install).clone().map_err(TestkitError::Install)
}

fn apt_install() -> Result<(), String> {
    apt_get(&["mariadb-server", "mariadb-client", "postgresql", "postgresql-client"])
}

/// Find each program (absolute paths or names on `PATH`); when one is
/// missing, install its Debian package with apt-get (once per process and
/// package set) and look again.
pub fn ensure_programs(programs: &[(&str, &str)]) -> Result<Vec<PathBuf>, TestkitError> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let find = |p: &str| {
        if p.starts_with('/') {
            find_program(&[p], &[])
        } else {
            find_program(&[], &[p])
        }
    };
    let missing: Vec<&str> =
        programs.iter().filter(|(p, _)| find(p).is_none()).map(|(_, pkg)| *pkg).collect();
    if !missing.is_empty() {
        apt_get(&missing).map_err(TestkitError::Install)?;
    }
    programs
        .iter()
        .map(|(p, pkg)| {
            find(p).ok_or_else(|| TestkitError::Install(format!("{p} not found after installing {pkg}")))
        })
        .collect()
}

fn apt_get(packages: &[&str]) -> Result<(), String> {
    let Some(apt) = find_program(&["/usr/bin/apt-get"], &["apt-get"]) else {
        return Err(format!("apt-get is not available; install {} by hand", packages.join(" ")));
    };
    let sudo = !is_root();
    let make = |args: &[&str]| {
        let mut cmd = if sudo {
            let mut c = Command::new("sudo");
            c.arg("-n").arg(&apt);
            c
        } else {
            Command::new(&apt)
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let mut update = make(&["update"]);
    eprintln!("synchdb-testkit: {} missing; running `{}`", packages.join(" "), describe(&update));
    run_checked(&mut update).map_err(|e| format!("installing {} failed: {e}", packages.join(" ")))?;
    let mut args = vec!["install", "-y"];
    args.extend(packages);
    let mut install = make(&args);
    eprintln!("synchdb-testkit: running `DEBIAN_FRONTEND=noninteractive {}`", describe(&install));
    run_checked(&mut install).map_err(|e| format!("installing {} failed: {e}", packages.join(" ")))?;
    eprintln!("synchdb-testkit: packages installed");
    Ok(())
}
