//! Private MariaDB servers.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use std::os::unix::process::CommandExt;

use tempfile::TempDir;

use crate::util::{self, io_err, LaunchError};
use crate::{Dropper, TestDatabase, TestkitError};

/// User created on every instance, with all privileges.
pub(crate) const USER: &str = "synchdb";
/// Password of [`USER`].
pub(crate) const PASSWORD: &str = "synchdb";

/// Watchdog cleanup: `$1` pid file, `$2` directory, `$3` keep flag.
const WATCHDOG_SCRIPT: &str = r#"
alive() { kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
P=$(cat "$1" 2>/dev/null)
if [ -n "$P" ] && alive "$P"; then
  kill -TERM "$P" 2>/dev/null
  i=0
  while alive "$P" && [ "$i" -lt 20 ]; do sleep 0.5; i=$((i+1)); done
  kill -KILL "$P" 2>/dev/null
fi
[ "$3" = 1 ] || rm -rf "$2"
"#;

/// The MariaDB programs used.
#[derive(Debug, Clone)]
struct Binaries {
    server: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
}

impl Binaries {
    fn locate() -> Option<Binaries> {
        Some(Binaries {
            server: util::find_program(&["/usr/sbin/mariadbd"], &["mariadbd", "mysqld"])?,
            install_db: util::find_program(
                &["/usr/bin/mariadb-install-db"],
                &["mariadb-install-db", "mysql_install_db"],
            )?,
            client: util::find_program(&["/usr/bin/mariadb"], &["mariadb", "mysql"])?,
        })
    }

    /// Find the programs, installing the packages first if needed.
    fn find() -> Result<Binaries, TestkitError> {
        if let Some(b) = Binaries::locate() {
            return Ok(b);
        }
        util::install_packages()?;
        Binaries::locate().ok_or_else(|| {
            TestkitError::Install(
                "mariadbd, mariadb-install-db or the mariadb client still not found after installing \
                 mariadb-server and mariadb-client"
                    .into(),
            )
        })
    }
}

/// How to run SQL as root over the private socket; also used by [`TestDatabase`]'s drop.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    program: PathBuf,
    socket: PathBuf,
}

impl Client {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "--default-character-set=utf8mb4", "-N", "-B"])
            .env_remove("MYSQL_PWD")
            .env_remove("MYSQL_HOST")
            .env_remove("MYSQL_TCP_PORT")
            .env_remove("MYSQL_UNIX_PORT");
        cmd
    }

    pub(crate) fn exec(&self, sql: &str) -> Result<String, TestkitError> {
        let output = util::run_with_input(&mut self.command(), sql.as_bytes())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(TestkitError::Sql {
                server: "MariaDB",
                sql: util::abbreviate(sql),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// Whether the server answers `SELECT 1`.
    fn ping(&self) -> bool {
        self.socket.exists()
            && self
                .command()
                .args(["--connect-timeout=2", "-e", "SELECT 1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }
}

/// A private MariaDB server: its own data directory in a temporary directory, a free
/// port on 127.0.0.1, a Unix socket in that directory, and a binlog in ROW format with
/// full row images and full row metadata.
///
/// Accounts: `root` without password (as created by `mariadb-install-db`; used by
/// [`exec`](MariaDb::exec) over the private socket), and `synchdb`/`synchdb` with all
/// privileges from any host, used by [`url`](MariaDb::url). Anonymous accounts are
/// removed. The account setup is not written to the binlog (`sql_log_bin = 0`).
///
/// Dropping a `MariaDb` returned by [`MariaDb::start`] stops the server and removes its
/// directory. The shared server from [`mariadb()`](crate::mariadb) lives until the
/// process exits; a watchdog process then stops it and removes its directory.
#[derive(Debug)]
pub struct MariaDb {
    dir: Option<TempDir>,
    data_dir: PathBuf,
    pid_file: PathBuf,
    err_log: PathBuf,
    port: u16,
    server_id: u32,
    binaries: Binaries,
    client: Client,
    /// The running `mariadbd`, if any.
    server: Mutex<Option<Child>>,
    /// Serializes stop/start.
    lifecycle: Mutex<()>,
    watchdog: Mutex<Option<Child>>,
    /// Options appended to every `mariadbd` command line (restarts included).
    extra_args: Vec<String>,
}

impl MariaDb {
    /// Start a new private instance (not shared), e.g. for a test that restarts or stops
    /// the server. Every instance in the process gets a distinct `server_id`.
    ///
    /// Installs the `mariadb-server` and `mariadb-client` packages with apt-get when the
    /// binaries are missing. Blocks until the server accepts connections (at most 60 s).
    pub fn start() -> Result<MariaDb, TestkitError> {
        MariaDb::start_with_args::<&str>(&[])
    }

    /// [`start`](MariaDb::start) with extra `mariadbd` options, appended after the
    /// test kit's own (so an option given here overrides one of them) and kept for
    /// [`restart`](MariaDb::restart) and [`start_again`](MariaDb::start_again).
    ///
    /// For TLS: `MariaDb::start_with_args(&tls.mariadb_args())` with a
    /// [`TlsFiles`](crate::TlsFiles), plus `--require-secure-transport=ON` to refuse TCP
    /// connections without TLS ([`exec`](MariaDb::exec) uses the Unix socket and is not
    /// affected).
    pub fn start_with_args<S: AsRef<str>>(args: &[S]) -> Result<MariaDb, TestkitError> {
        static NEXT_SERVER_ID: AtomicU32 = AtomicU32::new(1);
        let server_id = NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed);
        let binaries = Binaries::find()?;
        let dir = tempfile::Builder::new()
            .prefix("synchdb-testkit-mariadb-")
            .tempdir()
            .map_err(io_err("create a temporary directory for MariaDB"))?;
        let root = dir.path().to_path_buf();
        let socket = root.join("mariadb.sock");
        let keep = if util::keep_data() { "1" } else { "0" };
        let pid_file = root.join("mariadb.pid");
        let watchdog = util::spawn_watchdog(
            WATCHDOG_SCRIPT,
            &[pid_file.as_os_str(), root.as_os_str(), OsStr::new(keep)],
        )?;
        let mut db = MariaDb {
            data_dir: root.join("data"),
            pid_file,
            err_log: root.join("mariadb.err"),
            port: 0,
            server_id,
            client: Client { program: binaries.client.clone(), socket },
            binaries,
            dir: Some(dir),
            server: Mutex::new(None),
            lifecycle: Mutex::new(()),
            watchdog: Mutex::new(Some(watchdog)),
            extra_args: args.iter().map(|a| a.as_ref().to_string()).collect(),
        };
        // On error `db` is dropped here, which stops whatever was started.
        db.install_db()?;
        db.first_launch()?;
        db.create_users()?;
        Ok(db)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host name to connect to: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The server's `server_id` (distinct for every instance in this process).
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The data directory (the binlog files `mysql-bin.NNNNNN` are in it).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of the server's Unix socket (root can log in there without password).
    pub fn socket_path(&self) -> &Path {
        &self.client.socket
    }

    /// URL of the all-privileges user with password:
    /// `mysql://synchdb:synchdb@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mysql://{USER}:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// [`url`](MariaDb::url) with a database: `mysql://synchdb:synchdb@127.0.0.1:PORT/DB`.
    /// `db` is inserted as is (no percent-encoding).
    pub fn url_for(&self, db: &str) -> String {
        format!("{}/{db}", self.url())
    }

    /// Run SQL (one or more `;`-separated statements) through the `mariadb` command-line
    /// client as root over the private socket, with `--default-character-set=utf8mb4 -N -B`.
    /// Returns stdout: one line per row, columns separated by tabs, no header; NULL is
    /// `NULL`, and tab, newline and backslash inside values are escaped as `\t`, `\n`, `\\`.
    /// Execution stops at the first failing statement; the error includes the client's
    /// stderr.
    ///
    /// This blocks; from async code it is fine in tests, or use `spawn_blocking`.
    pub fn exec(&self, sql: &str) -> Result<String, TestkitError> {
        self.client.exec(sql)
    }

    /// Create a fresh database named `<prefix>_<pid>_<counter>` (prefix lowercased,
    /// characters other than `[a-z0-9_]` replaced by `_`). Dropped when the returned
    /// guard is dropped.
    pub fn create_database(&self, prefix: &str) -> Result<TestDatabase, TestkitError> {
        let name = util::unique_db_name(prefix);
        self.exec(&format!("CREATE DATABASE `{name}`"))?;
        Ok(TestDatabase { url: self.url_for(&name), name, dropper: Dropper::MariaDb(self.client.clone()) })
    }

    /// Stop the server cleanly and start it again on the same port and data directory,
    /// keeping the binlogs (the server opens a new binlog file). Blocks until it accepts
    /// connections again.
    ///
    /// On the shared server this affects every test using it; tests that restart should
    /// use their own [`MariaDb::start`].
    pub fn restart(&self) -> Result<(), TestkitError> {
        let _guard = self.lock_lifecycle();
        self.stop_locked()?;
        self.start_again_locked()
    }

    /// Stop the server cleanly (SIGTERM, wait for it to exit) and leave it down, e.g. to
    /// test reconnection. Start it again with [`start_again`](MariaDb::start_again).
    /// Does nothing if it is already stopped.
    pub fn stop(&self) -> Result<(), TestkitError> {
        let _guard = self.lock_lifecycle();
        self.stop_locked()
    }

    /// Start a server stopped with [`stop`](MariaDb::stop) again, on the same port and
    /// data directory. Blocks until it accepts connections. Does nothing if it is running.
    pub fn start_again(&self) -> Result<(), TestkitError> {
        let _guard = self.lock_lifecycle();
        self.start_again_locked()
    }

    fn lock_lifecycle(&self) -> MutexGuard<'_, ()> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_server(&self) -> MutexGuard<'_, Option<Child>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn root(&self) -> &Path {
        self.data_dir.parent().expect("data dir is inside the temporary directory")
    }

    fn install_db(&self) -> Result<(), TestkitError> {
        let mut cmd = Command::new(&self.binaries.install_db);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir.display()))
            .arg("--auth-root-authentication-method=normal");
        if util::is_root() {
            cmd.arg("--user=root");
        }
        if self.binaries.server.file_name().is_some_and(|n| n == "mariadbd") {
            // MariaDB >= 10.5 (the first to ship `mariadbd`) knows this option.
            cmd.arg("--skip-test-db");
        }
        cmd.current_dir(self.root()).env("TMPDIR", self.tmp_dir()?);
        util::run_checked(&mut cmd)?;
        Ok(())
    }

    /// A temporary directory of this server's own: servers bootstrapping at
    /// once in the shared `/tmp` trip over each other's temporary tables.
    fn tmp_dir(&self) -> Result<PathBuf, TestkitError> {
        let dir = self.root().join("tmp");
        std::fs::create_dir_all(&dir)
            .map_err(|source| TestkitError::Io { context: format!("create {}", dir.display()), source })?;
        Ok(dir)
    }

    fn first_launch(&mut self) -> Result<(), TestkitError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = util::free_port()?;
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(LaunchError::PortInUse(_)) if attempt < 5 => continue,
                Err(e) => return Err(e.into_inner()),
            }
        }
    }

    fn server_command(&self) -> Command {
        let mut cmd = Command::new(&self.binaries.server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.client.socket.display()))
            .arg(format!("--pid-file={}", self.pid_file.display()))
            .arg("--log-bin=mysql-bin")
            .arg("--binlog-format=ROW")
            .arg("--binlog-row-image=FULL")
            .arg("--binlog-row-metadata=FULL")
            .arg(format!("--server-id={}", self.server_id))
            .arg(format!("--log-error={}", self.err_log.display()))
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_general_ci")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=256M")
            .arg("--max-connections=500")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--sync-binlog=0")
            .arg(format!("--tmpdir={}", self.root().join("tmp").display()))
            .current_dir(self.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C on the test run reaches the watchdog's cleanup
            // instead of killing the server half-way.
            .process_group(0);
        if util::is_root() {
            // mariadbd refuses to run as root without it; as another user it only warns.
            cmd.arg("--user=root");
        }
        cmd.args(&self.extra_args);
        cmd
    }

    /// Spawn `mariadbd` on `self.port` and wait until it answers.
    fn launch(&self) -> Result<(), LaunchError> {
        let log_offset = util::file_len(&self.err_log);
        let mut cmd = self.server_command();
        let child = cmd.spawn().map_err(io_err(format!("start `{}`", util::describe(&cmd))))?;
        *self.lock_server() = Some(child);

        let outcome = util::poll(util::START_TIMEOUT, Duration::from_millis(25), || {
            let exited = {
                let mut server = self.lock_server();
                match server.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => {
                        server.take();
                        Some(status.to_string())
                    }
                    _ => None,
                }
            };
            if let Some(status) = exited {
                return Some(Err(status));
            }
            self.client.ping().then_some(Ok(()))
        });
        let reason = match outcome {
            Some(Ok(())) => return Ok(()),
            Some(Err(status)) => format!("mariadbd exited during startup ({status})"),
            None => {
                self.kill_server();
                format!("mariadbd did not accept connections within {:?}", util::START_TIMEOUT)
            }
        };
        let log = util::read_from(&self.err_log, log_offset);
        let err = TestkitError::Startup {
            server: "MariaDB",
            reason: format!("{reason} (port {})", self.port),
            log_tail: util::log_tail(&self.err_log, log_offset, 30),
        };
        if util::port_in_use(&log) {
            Err(LaunchError::PortInUse(err))
        } else {
            Err(LaunchError::Other(err))
        }
    }

    fn create_users(&self) -> Result<(), TestkitError> {
        let mut sql = String::from(
            "SET SESSION sql_log_bin = 0;\n\
             DELETE FROM mysql.global_priv WHERE User = '';\n\
             FLUSH PRIVILEGES;\n",
        );
        for host in ["%", "localhost", "127.0.0.1"] {
            sql.push_str(&format!(
                "CREATE USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION;\n"
            ));
        }
        sql.push_str("FLUSH PRIVILEGES;\n");
        self.exec(&sql)?;
        Ok(())
    }

    fn stop_locked(&self) -> Result<(), TestkitError> {
        let Some(mut child) = self.lock_server().take() else {
            return Ok(());
        };
        util::sigterm(child.id());
        if util::wait_or_kill(&mut child, Duration::from_secs(60)) {
            Ok(())
        } else {
            Err(TestkitError::Startup {
                server: "MariaDB",
                reason: "mariadbd did not shut down within 60 s after SIGTERM; killed it".into(),
                log_tail: util::log_tail(&self.err_log, 0, 30),
            })
        }
    }

    fn start_again_locked(&self) -> Result<(), TestkitError> {
        if let Some(child) = self.lock_server().as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(());
            }
        }
        // The port was just released; if something grabbed it meanwhile, wait a little.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(LaunchError::PortInUse(_)) if attempt < 10 => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.into_inner()),
            }
        }
    }

    fn kill_server(&self) {
        if let Some(mut child) = self.lock_server().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        util::kill_watchdog(&self.watchdog);
        let keep = util::keep_data();
        if keep {
            let _ = self.stop_locked();
        } else {
            // The directory is removed right after: no need for a clean shutdown.
            self.kill_server();
        }
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("synchdb-testkit: kept MariaDB directory {}", dir.keep().display());
            }
        }
    }
}

/// The process-wide shared server.
pub(crate) fn shared() -> &'static MariaDb {
    static SHARED: OnceLock<Result<MariaDb, String>> = OnceLock::new();
    match SHARED.get_or_init(|| MariaDb::start().map_err(|e| e.to_string())) {
        Ok(db) => db,
        Err(e) => panic!("synchdb-testkit: could not start the shared MariaDB server: {e}"),
    }
}
