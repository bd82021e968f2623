//! Private NATS servers with JetStream: single servers and 3-node clusters.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{self, io_err, LaunchError};
use crate::TestkitError;

/// Server kind in [`TestkitError::Startup`].
const SERVER: &str = "NATS";

/// Name of the cluster formed by [`NatsCluster`].
const CLUSTER_NAME: &str = "synchdb";

/// Number of nodes of a [`NatsCluster`].
const CLUSTER_SIZE: usize = 3;

/// How long a clean shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Watchdog cleanup: `$1` directory, `$2` keep flag, `$3`... pid files.
const WATCHDOG_SCRIPT: &str = r#"
alive() { kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
D=$1; K=$2; shift 2
PIDS=
for F in "$@"; do
  P=$(cat "$F" 2>/dev/null)
  if [ -n "$P" ] && alive "$P"; then kill -TERM "$P" 2>/dev/null; PIDS="$PIDS $P"; fi
done
i=0
while [ "$i" -lt 20 ]; do
  ANY=
  for P in $PIDS; do alive "$P" && ANY=1; done
  [ -n "$ANY" ] || break
  sleep 0.5; i=$((i+1))
done
for P in $PIDS; do kill -KILL "$P" 2>/dev/null; done
[ "$K" = 1 ] || rm -rf "$D"
"#;

/// The `nats-server` program, installed (Debian package `nats-server`) if missing.
fn program() -> Result<PathBuf, TestkitError> {
    static PROGRAM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            if let Some(p) = util::find_program(&["/usr/sbin/nats-server"], &["nats-server"]) {
                return Ok(p);
            }
            match util::ensure_programs(&[("nats-server", "nats-server")]) {
                Ok(mut found) => Ok(found.remove(0)),
                Err(TestkitError::Install(msg)) => Err(msg),
                Err(e) => Err(e.to_string()),
            }
        })
        .clone()
        .map_err(TestkitError::Install)
}

/// Where a launch started in the server's log and in its captured stdout/stderr.
#[derive(Debug, Clone, Copy)]
struct LogOffsets {
    log: u64,
    out: u64,
}

/// One `nats-server` process with its directory (config, pid file, logs, store).
#[derive(Debug)]
struct Instance {
    program: PathBuf,
    root: PathBuf,
    /// `server_name` (cluster nodes only).
    name: Option<String>,
    port: u16,
    monitor_port: u16,
    /// Route listener (cluster nodes only).
    cluster_port: Option<u16>,
    /// Cluster ports of the other nodes.
    routes: Vec<u16>,
    /// The running `nats-server`, if any.
    server: Mutex<Option<Child>>,
    /// Serializes kill/stop/start.
    lifecycle: Mutex<()>,
}

impl Instance {
    fn new(program: PathBuf, root: PathBuf) -> Instance {
        Instance {
            program,
            root,
            name: None,
            port: 0,
            monitor_port: 0,
            cluster_port: None,
            routes: Vec::new(),
            server: Mutex::new(None),
            lifecycle: Mutex::new(()),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("nats.conf")
    }

    fn pid_path(&self) -> PathBuf {
        self.root.join("nats.pid")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("nats.log")
    }

    /// The server's own stdout and stderr (errors before the log file is open).
    fn out_path(&self) -> PathBuf {
        self.root.join("nats.out")
    }

    fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn lock_lifecycle(&self) -> MutexGuard<'_, ()> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_server(&self) -> MutexGuard<'_, Option<Child>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `" n2"` for cluster nodes, `""` otherwise.
    fn label(&self) -> String {
        self.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default()
    }

    fn describe_ports(&self) -> String {
        let mut s = format!("client port {}, monitoring port {}", self.port, self.monitor_port);
        if let Some(cport) = self.cluster_port {
            s.push_str(&format!(", cluster port {cport}"));
        }
        s
    }

    fn write_config(&self) -> Result<(), TestkitError> {
        let path_str = |p: PathBuf| quote(&p.to_string_lossy());
        let mut conf = String::from("# Written by synchdb-testkit.\n");
        conf.push_str(&format!("listen: {}\n", quote(&format!("127.0.0.1:{}", self.port))));
        conf.push_str(&format!("http: {}\n", quote(&format!("127.0.0.1:{}", self.monitor_port))));
        if let Some(name) = &self.name {
            conf.push_str(&format!("server_name: {}\n", quote(name)));
        }
        conf.push_str(&format!("pid_file: {}\n", path_str(self.pid_path())));
        conf.push_str(&format!("log_file: {}\n", path_str(self.log_path())));
        conf.push_str(&format!("jetstream {{\n  store_dir: {}\n}}\n", path_str(self.store_dir())));
        if let Some(cport) = self.cluster_port {
            conf.push_str(&format!(
                "cluster {{\n  name: {}\n  listen: {}\n  routes: [\n",
                quote(CLUSTER_NAME),
                quote(&format!("127.0.0.1:{cport}"))
            ));
            for route in &self.routes {
                conf.push_str(&format!("    {}\n", quote(&format!("nats://127.0.0.1:{route}"))));
            }
            conf.push_str("  ]\n}\n");
        }
        let path = self.config_path();
        std::fs::write(&path, conf).map_err(io_err(format!("write {}", path.display())))
    }

    /// Write the config and spawn `nats-server` (without waiting for it).
    fn spawn(&self) -> Result<LogOffsets, TestkitError> {
        std::fs::create_dir_all(&self.root).map_err(io_err(format!("create {}", self.root.display())))?;
        self.write_config()?;
        // A stale pid file would point the watchdog at an unrelated process.
        let _ = std::fs::remove_file(self.pid_path());
        let offsets =
            LogOffsets { log: util::file_len(&self.log_path()), out: util::file_len(&self.out_path()) };
        let out_path = self.out_path();
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(io_err(format!("open {}", out_path.display())))?;
        let err =
            out.try_clone().map_err(io_err(format!("duplicate the handle of {}", out_path.display())))?;
        let mut cmd = Command::new(&self.program);
        cmd.arg("-c")
            .arg(self.config_path())
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: a Ctrl-C on the test run reaches the watchdog's cleanup
            // instead of killing the server half-way.
            .process_group(0);
        let child = cmd.spawn().map_err(io_err(format!("start `{}`", util::describe(&cmd))))?;
        *self.lock_server() = Some(child);
        Ok(offsets)
    }

    /// The exit status if the server was started and has exited (it is then forgotten).
    fn exit_status(&self) -> Option<String> {
        let mut server = self.lock_server();
        match server.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                server.take();
                Some(status.to_string())
            }
            _ => None,
        }
    }

    /// Process id of the running server.
    fn pid(&self) -> Option<u32> {
        let mut server = self.lock_server();
        let child = server.as_mut()?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    /// Last lines of the log and of the captured stdout/stderr since `offsets`.
    fn log_tail(&self, offsets: LogOffsets, lines: usize) -> String {
        let mut tail = util::log_tail(&self.log_path(), offsets.log, lines);
        if !util::read_from(&self.out_path(), offsets.out).trim().is_empty() {
            tail.push_str("\n--- server stdout/stderr ---\n");
            tail.push_str(&util::log_tail(&self.out_path(), offsets.out, lines));
        }
        tail
    }

    /// The error for a failed launch; `PortInUse` if the log says a port was taken.
    fn failure(&self, reason: String, offsets: LogOffsets) -> LaunchError {
        let text =
            util::read_from(&self.log_path(), offsets.log) + &util::read_from(&self.out_path(), offsets.out);
        let err = TestkitError::Startup {
            server: SERVER,
            reason: format!("{reason} ({})", self.describe_ports()),
            log_tail: self.log_tail(offsets, 30),
        };
        if text.to_ascii_lowercase().contains("address already in use") {
            LaunchError::PortInUse(err)
        } else {
            LaunchError::Other(err)
        }
    }

    /// Whether the client port answers with an `INFO` line saying `"jetstream":true`.
    fn jetstream_enabled(&self) -> bool {
        server_info(self.port).is_some_and(|info| info.contains("\"jetstream\":true"))
    }

    /// HTTP status of a monitoring endpoint, `None` if the server does not answer.
    fn http_status(&self, path: &str) -> Option<u16> {
        http_get(self.monitor_port, path).map(|(status, _)| status)
    }

    /// `/healthz` answers 200: JetStream is up and, in a cluster, current with a meta
    /// leader.
    fn healthy(&self) -> bool {
        self.http_status("/healthz") == Some(200)
    }

    /// The JetStream meta leader this node knows of (`/jsz`).
    fn meta_leader(&self) -> Option<String> {
        let (status, body) = http_get(self.monitor_port, "/jsz")?;
        if status != 200 {
            return None;
        }
        meta_leader(&body)
    }

    /// One line for error messages: what `/healthz` says.
    fn health_summary(&self) -> String {
        let name = self.name.clone().unwrap_or_else(|| "nats-server".into());
        match http_get(self.monitor_port, "/healthz") {
            Some((status, body)) => format!("{name}: /healthz {status} {}", body.trim()),
            None => format!("{name}: monitoring port {} does not answer", self.monitor_port),
        }
    }

    /// SIGKILL the server (if running) and reap it.
    fn kill_server(&self) {
        if let Some(mut child) = self.lock_server().take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(self.pid_path());
        }
    }

    /// SIGTERM the server (if running) and wait for it to exit.
    fn stop_locked(&self) -> Result<(), TestkitError> {
        let Some(mut child) = self.lock_server().take() else {
            return Ok(());
        };
        if !matches!(child.try_wait(), Ok(None)) {
            // Already exited (and reaped): its pid may belong to another process by now.
            let _ = std::fs::remove_file(self.pid_path());
            return Ok(());
        }
        util::sigterm(child.id());
        let exited = util::wait_or_kill(&mut child, STOP_TIMEOUT);
        let _ = std::fs::remove_file(self.pid_path());
        if exited {
            Ok(())
        } else {
            Err(TestkitError::Startup {
                server: SERVER,
                reason: format!(
                    "nats-server{} did not shut down within {STOP_TIMEOUT:?} after SIGTERM; killed it",
                    self.label()
                ),
                log_tail: self.log_tail(LogOffsets { log: 0, out: 0 }, 30),
            })
        }
    }

    /// Start the stopped server again on the same ports and store; wait until `ready`.
    fn start_again_locked(&self, ready: &dyn Fn() -> bool) -> Result<(), TestkitError> {
        if self.pid().is_some() {
            return Ok(());
        }
        // The ports were just released; if something grabbed one meanwhile, wait a little.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let offsets = self.spawn()?;
            match wait_ready(&[(self, offsets)], ready, "did not become ready") {
                Ok(()) => return Ok(()),
                Err(LaunchError::PortInUse(_)) if attempt < 10 => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.into_inner()),
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill_server();
    }
}

/// Poll until `ready` holds, failing early if one of `instances` exits. On timeout the
/// instances are killed.
fn wait_ready(
    instances: &[(&Instance, LogOffsets)],
    ready: &dyn Fn() -> bool,
    what: &str,
) -> Result<(), LaunchError> {
    let outcome = util::poll(util::START_TIMEOUT, Duration::from_millis(25), || {
        for (i, (instance, _)) in instances.iter().enumerate() {
            if let Some(status) = instance.exit_status() {
                return Some(Err((i, status)));
            }
        }
        ready().then_some(Ok(()))
    });
    match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err((i, status))) => {
            let (instance, offsets) = instances[i];
            Err(instance.failure(
                format!("nats-server{} exited during startup ({status})", instance.label()),
                offsets,
            ))
        }
        None => {
            let summary: Vec<String> =
                instances.iter().map(|(instance, _)| instance.health_summary()).collect();
            let mut log_tail = String::new();
            for (instance, offsets) in instances {
                if instances.len() > 1 {
                    log_tail.push_str(&format!("--- log of{} ---\n", instance.label()));
                }
                log_tail.push_str(&instance.log_tail(*offsets, 20));
                log_tail.push('\n');
            }
            let ports: Vec<String> =
                instances.iter().map(|(instance, _)| instance.describe_ports()).collect();
            for (instance, _) in instances {
                instance.kill_server();
            }
            Err(LaunchError::Other(TestkitError::Startup {
                server: SERVER,
                reason: format!(
                    "{what} within {:?} ({}); {}",
                    util::START_TIMEOUT,
                    ports.join("; "),
                    summary.join("; ")
                ),
                log_tail: log_tail.trim_end().to_string(),
            }))
        }
    }
}

/// Quote a string for the NATS configuration file.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Connect to a client port and read the `INFO {...}` line the server sends first.
fn server_info(port: u16) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(stream.take(64 * 1024)).read_line(&mut line).ok()?;
    line.starts_with("INFO ").then_some(line)
}

/// `GET path` on the monitoring port (HTTP/1.0): the status and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.take(4 * 1024 * 1024).read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The non-empty `meta_cluster.leader` of a `/jsz` answer.
fn meta_leader(jsz: &str) -> Option<String> {
    let meta = &jsz[jsz.find("\"meta_cluster\"")?..];
    let meta = &meta[meta.find('{')? + 1..];
    // `leader` comes before the nested `replicas` objects.
    let meta = &meta[..meta.find(['{', '}']).unwrap_or(meta.len())];
    let rest = &meta[meta.find("\"leader\"")? + "\"leader\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let leader = &rest[..rest.find('"')?];
    (!leader.is_empty()).then(|| leader.to_string())
}

/// A private `nats-server` with JetStream: a free client port and a free monitoring
/// port on 127.0.0.1, and a temporary directory holding its configuration file
/// (`nats.conf`), pid file, log (`nats.log`) and JetStream store
/// ([`store_dir`](NatsServer::store_dir)).
///
/// Dropping a `NatsServer` returned by [`NatsServer::start`] stops the server and removes
/// its directory. The shared server from [`nats()`](crate::nats) lives until the process
/// exits; a watchdog process then stops it and removes its directory.
#[derive(Debug)]
pub struct NatsServer {
    dir: Option<TempDir>,
    instance: Instance,
    watchdog: Mutex<Option<Child>>,
}

impl NatsServer {
    /// Start a new private server (not shared), e.g. for a test that kills or restarts
    /// it.
    ///
    /// Installs the `nats-server` package with apt-get when the program is missing.
    /// Blocks until the client port answers with JetStream enabled and the monitoring
    /// endpoint `/healthz` reports healthy (at most 60 s).
    pub fn start() -> Result<NatsServer, TestkitError> {
        let program = program()?;
        let dir = tempfile::Builder::new()
            .prefix("synchdb-testkit-nats-")
            .tempdir()
            .map_err(io_err("create a temporary directory for NATS"))?;
        let root = dir.path().to_path_buf();
        let keep = if util::keep_data() { "1" } else { "0" };
        let instance = Instance::new(program, root.clone());
        let watchdog = util::spawn_watchdog(
            WATCHDOG_SCRIPT,
            &[root.as_os_str(), OsStr::new(keep), instance.pid_path().as_os_str()],
        )?;
        let mut server = NatsServer { dir: Some(dir), instance, watchdog: Mutex::new(Some(watchdog)) };
        // On error `server` is dropped here, which stops whatever was started.
        server.first_launch()?;
        Ok(server)
    }

    fn first_launch(&mut self) -> Result<(), TestkitError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.instance.port = util::free_port()?;
            self.instance.monitor_port = util::free_port()?;
            let offsets = self.instance.spawn()?;
            let instance = &self.instance;
            match wait_ready(&[(instance, offsets)], &|| standalone_ready(instance), "did not become ready") {
                Ok(()) => return Ok(()),
                Err(LaunchError::PortInUse(_)) if attempt < 5 => continue,
                Err(e) => return Err(e.into_inner()),
            }
        }
    }

    /// Client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.instance.port
    }

    /// Host name to connect to: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// Client URL: `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.instance.url()
    }

    /// HTTP monitoring port on 127.0.0.1 (`/healthz`, `/varz`, `/jsz`, ...).
    pub fn monitor_port(&self) -> u16 {
        self.instance.monitor_port
    }

    /// The JetStream store directory (`-sd`); the server keeps its data in the
    /// `jetstream` directory inside it. It survives [`kill`](NatsServer::kill),
    /// [`stop`](NatsServer::stop) and [`restart`](NatsServer::restart).
    pub fn store_dir(&self) -> PathBuf {
        self.instance.store_dir()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.instance.log_path()
    }

    /// Process id of the running `nats-server`, `None` while it is stopped or killed.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }

    /// Kill the server with SIGKILL (no clean shutdown), e.g. to test crash recovery.
    /// The store is kept; start it again with [`start_again`](NatsServer::start_again).
    /// Does nothing if it is not running.
    pub fn kill(&self) {
        let _guard = self.instance.lock_lifecycle();
        self.instance.kill_server();
    }

    /// Stop the server cleanly (SIGTERM, wait for it to exit) and leave it down. Start it
    /// again with [`start_again`](NatsServer::start_again). Does nothing if it is not
    /// running.
    pub fn stop(&self) -> Result<(), TestkitError> {
        let _guard = self.instance.lock_lifecycle();
        self.instance.stop_locked()
    }

    /// Start a server stopped with [`stop`](NatsServer::stop) or [`kill`](NatsServer::kill)
    /// again, on the same ports and store. Blocks until it is ready (as in
    /// [`start`](NatsServer::start)). Does nothing if it is running.
    pub fn start_again(&self) -> Result<(), TestkitError> {
        let _guard = self.instance.lock_lifecycle();
        self.instance.start_again_locked(&|| standalone_ready(&self.instance))
    }

    /// [`stop`](NatsServer::stop) and [`start_again`](NatsServer::start_again).
    ///
    /// On the shared server this affects every test using it; tests that restart should
    /// use their own [`NatsServer::start`].
    pub fn restart(&self) -> Result<(), TestkitError> {
        let _guard = self.instance.lock_lifecycle();
        self.instance.stop_locked()?;
        self.instance.start_again_locked(&|| standalone_ready(&self.instance))
    }
}

/// A single server is ready: client port with JetStream, and `/healthz` says ok.
fn standalone_ready(instance: &Instance) -> bool {
    instance.jetstream_enabled() && instance.healthy()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        util::kill_watchdog(&self.watchdog);
        let keep = util::keep_data();
        if keep {
            let _ = self.instance.stop_locked();
        } else {
            // The directory is removed right after: no need for a clean shutdown.
            self.instance.kill_server();
        }
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("synchdb-testkit: kept NATS directory {}", dir.keep().display());
            }
        }
    }
}

/// Three private `nats-server` nodes with JetStream forming the cluster `synchdb` on
/// 127.0.0.1, for clustering and failover tests.
///
/// Every node has a free client port, cluster (route) port and monitoring port, its own
/// directory (`n1`, `n2`, `n3` in one temporary directory: `nats.conf`, pid file,
/// `nats.log`, JetStream store) and the server name `n1`, `n2` or `n3`. Each node's
/// configuration lists the other two as routes.
///
/// Losing the JetStream meta leader to [`NatsNode::kill`] leaves the other nodes
/// without a leader for several seconds (6 to 15 s with nats-server 2.9) until they
/// elect a new one; a clean [`NatsNode::stop`] hands the leadership over at once.
///
/// Dropping a `NatsCluster` stops all nodes and removes the directory (kept with
/// `SYNCHDB_TESTKIT_KEEP=1`); a watchdog process does the same if the test process dies.
#[derive(Debug)]
pub struct NatsCluster {
    dir: Option<TempDir>,
    nodes: Vec<NatsNode>,
    watchdog: Mutex<Option<Child>>,
}

impl NatsCluster {
    /// Start a new 3-node cluster.
    ///
    /// Installs the `nats-server` package with apt-get when the program is missing.
    /// Blocks until every node's client port answers with JetStream enabled, every
    /// node's `/healthz` reports healthy and all nodes agree on a JetStream meta leader
    /// (`/jsz`); at most 60 s (it usually takes well under a second).
    pub fn start() -> Result<NatsCluster, TestkitError> {
        let program = program()?;
        let dir = tempfile::Builder::new()
            .prefix("synchdb-testkit-nats-cluster-")
            .tempdir()
            .map_err(io_err("create a temporary directory for a NATS cluster"))?;
        let root = dir.path().to_path_buf();
        let keep = if util::keep_data() { "1" } else { "0" };
        let pid_files: Vec<PathBuf> =
            (1..=CLUSTER_SIZE).map(|i| node_dir(&root, i).join("nats.pid")).collect();
        let mut args: Vec<&OsStr> = vec![root.as_os_str(), OsStr::new(keep)];
        args.extend(pid_files.iter().map(|p| p.as_os_str()));
        let watchdog = util::spawn_watchdog(WATCHDOG_SCRIPT, &args)?;
        let mut cluster =
            NatsCluster { dir: Some(dir), nodes: Vec::new(), watchdog: Mutex::new(Some(watchdog)) };
        // On error `cluster` is dropped here, which stops whatever was started.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match cluster.launch_all(&program, &root) {
                Ok(()) => return Ok(cluster),
                Err(LaunchError::PortInUse(_)) if attempt < 5 => continue,
                Err(e) => return Err(e.into_inner()),
            }
        }
    }

    /// One attempt to start all nodes on fresh ports.
    fn launch_all(&mut self, program: &Path, root: &Path) -> Result<(), LaunchError> {
        // Throw away a failed attempt: its processes and its cluster state.
        for node in self.nodes.drain(..) {
            node.instance.kill_server();
        }
        for i in 1..=CLUSTER_SIZE {
            let dir = node_dir(root, i);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io_err(format!("remove {}", dir.display())))?;
            }
        }
        let mut ports = Vec::with_capacity(CLUSTER_SIZE);
        for _ in 0..CLUSTER_SIZE {
            ports.push((util::free_port()?, util::free_port()?, util::free_port()?));
        }
        for (i, &(port, monitor_port, cluster_port)) in ports.iter().enumerate() {
            let others = || ports.iter().enumerate().filter(move |(j, _)| *j != i).map(|(_, p)| *p);
            let name = format!("n{}", i + 1);
            let mut instance = Instance::new(program.to_path_buf(), node_dir(root, i + 1));
            instance.name = Some(name.clone());
            instance.port = port;
            instance.monitor_port = monitor_port;
            instance.cluster_port = Some(cluster_port);
            instance.routes = others().map(|p| p.2).collect();
            self.nodes.push(NatsNode { name, instance, peer_monitor_ports: others().map(|p| p.1).collect() });
        }
        let mut waiting = Vec::with_capacity(CLUSTER_SIZE);
        for node in &self.nodes {
            waiting.push((&node.instance, node.instance.spawn()?));
        }
        let nodes = &self.nodes;
        wait_ready(
            &waiting,
            &|| cluster_ready(nodes),
            "the cluster did not form (every node healthy, one JetStream meta leader)",
        )
    }

    /// Client URLs of the nodes, `nats://127.0.0.1:PORT`, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// All client URLs joined with commas: `nats://127.0.0.1:P1,nats://127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    /// Node `i`, counted from 0: `node(0)` is `n1`.
    ///
    /// # Panics
    ///
    /// If `i` is not below 3.
    pub fn node(&self, i: usize) -> &NatsNode {
        &self.nodes[i]
    }

    /// All nodes, `n1` first.
    pub fn nodes(&self) -> &[NatsNode] {
        &self.nodes
    }
}

/// Every node answers with JetStream, is healthy and all name the same meta leader.
fn cluster_ready(nodes: &[NatsNode]) -> bool {
    let mut leader: Option<String> = None;
    for node in nodes {
        if !(node.instance.jetstream_enabled() && node.instance.healthy()) {
            return false;
        }
        let Some(this) = node.instance.meta_leader() else {
            return false;
        };
        match &leader {
            Some(first) if *first != this => return false,
            Some(_) => {}
            None => leader = Some(this),
        }
    }
    true
}

fn node_dir(root: &Path, number: usize) -> PathBuf {
    root.join(format!("n{number}"))
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        util::kill_watchdog(&self.watchdog);
        let keep = util::keep_data();
        for node in &self.nodes {
            if keep {
                let _ = node.instance.stop_locked();
            } else {
                // The directory is removed right after: no need for a clean shutdown.
                node.instance.kill_server();
            }
        }
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("synchdb-testkit: kept NATS cluster directory {}", dir.keep().display());
            }
        }
    }
}

/// One node of a [`NatsCluster`].
#[derive(Debug)]
pub struct NatsNode {
    name: String,
    instance: Instance,
    peer_monitor_ports: Vec<u16>,
}

impl NatsNode {
    /// Server name: `n1`, `n2` or `n3`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.instance.port
    }

    /// Host name to connect to: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// Client URL: `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.instance.url()
    }

    /// HTTP monitoring port on 127.0.0.1 (`/healthz`, `/jsz`, `/routez`, ...).
    pub fn monitor_port(&self) -> u16 {
        self.instance.monitor_port
    }

    /// Cluster (route) port on 127.0.0.1.
    pub fn cluster_port(&self) -> u16 {
        self.instance.cluster_port.expect("cluster nodes have a cluster port")
    }

    /// This node's JetStream store directory (kept across kill and restart).
    pub fn store_dir(&self) -> PathBuf {
        self.instance.store_dir()
    }

    /// This node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.instance.log_path()
    }

    /// Process id of the running `nats-server`, `None` while it is stopped or killed.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }

    /// Kill the node with SIGKILL (no clean shutdown). Its store is kept; start it
    /// again with [`start_again`](NatsNode::start_again). Does nothing if it is not
    /// running.
    pub fn kill(&self) {
        let _guard = self.instance.lock_lifecycle();
        self.instance.kill_server();
    }

    /// Stop the node cleanly (SIGTERM, wait for it to exit; a meta leader hands its
    /// leadership over first). Does nothing if it is not running.
    pub fn stop(&self) -> Result<(), TestkitError> {
        let _guard = self.instance.lock_lifecycle();
        self.instance.stop_locked()
    }

    /// Start a killed or stopped node again on the same ports and store. Does nothing if
    /// it is running.
    ///
    /// Blocks until its client port answers with JetStream enabled and, when a majority
    /// of the nodes (this one included) is running, until its `/healthz` and that of
    /// every other running node report healthy, i.e. it has rejoined the cluster and all
    /// are current with a meta leader (this can take several seconds right after the
    /// previous leader was killed). Without a majority there can be no leader, so it then
    /// only waits for the client port. At most 60 s.
    pub fn start_again(&self) -> Result<(), TestkitError> {
        let _guard = self.instance.lock_lifecycle();
        self.instance.start_again_locked(&|| self.instance.jetstream_enabled() && self.cluster_settled())
    }

    /// True without a majority of nodes running (no leader possible); with one, whether
    /// this node and every other running node report healthy.
    fn cluster_settled(&self) -> bool {
        // `/healthz` status of the other nodes, `None` for the ones that are down.
        let peers: Vec<Option<u16>> = self
            .peer_monitor_ports
            .iter()
            .map(|&port| http_get(port, "/healthz").map(|(status, _)| status))
            .collect();
        let running = 1 + peers.iter().filter(|s| s.is_some()).count();
        let total = peers.len() + 1;
        if running * 2 <= total {
            return true;
        }
        self.instance.healthy() && peers.iter().all(|s| s.is_none_or(|status| status == 200))
    }
}

/// The process-wide shared server.
pub(crate) fn shared() -> &'static NatsServer {
    static SHARED: OnceLock<Result<NatsServer, String>> = OnceLock::new();
    match SHARED.get_or_init(|| NatsServer::start().map_err(|e| e.to_string())) {
        Ok(server) => server,
        Err(e) => panic!("synchdb-testkit: could not start the shared NATS server: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_leader_from_jsz() {
        let jsz = r#"{"streams": 0, "meta_cluster": {"name": "synchdb", "leader": "n2", "peer": "x",
            "replicas": [{"name": "n1", "current": true}]}}"#;
        assert_eq!(meta_leader(jsz).as_deref(), Some("n2"));
        let no_leader = r#"{"meta_cluster": {"name": "synchdb", "peer": "x", "cluster_size": 3},
            "replicas": [{"leader": "n1"}]}"#;
        assert_eq!(meta_leader(no_leader), None);
        assert_eq!(meta_leader(r#"{"meta_cluster": {"leader": ""}}"#), None);
        assert_eq!(meta_leader(r#"{"streams": 0}"#), None);
    }

    #[test]
    fn config_quoting() {
        assert_eq!(quote(r#"/tmp/a "b"\c"#), r#""/tmp/a \"b\"\\c""#);
    }
}
