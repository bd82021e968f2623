//! Private PostgreSQL servers.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tempfile::TempDir;

use crate::util::{self, io_err};
use crate::{Dropper, TestDatabase, TestkitError, TlsFiles};

/// Watchdog cleanup: `$1` directory, `$2` keep flag, `$3...` the stop command.
const WATCHDOG_SCRIPT: &str = r#"
d=$1; k=$2; shift 2
"$@" >/dev/null 2>&1
[ "$k" = 1 ] || rm -rf "$d"
"#;

/// Server settings for fast, disposable instances.
const SERVER_SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=300",
    "max_prepared_transactions=64",
    "shared_buffers=256MB",
];

/// The PostgreSQL programs used and how to run them.
#[derive(Debug, Clone)]
struct Binaries {
    bin_dir: PathBuf,
    /// When running as root: run server programs as the `postgres` user through this
    /// wrapper (`runuser` or `su`).
    as_postgres: Option<Wrapper>,
}

#[derive(Debug, Clone)]
enum Wrapper {
    Runuser(PathBuf),
    Su(PathBuf),
}

impl Binaries {
    /// `/usr/lib/postgresql/<highest version with initdb>/bin`.
    fn locate_bin_dir() -> Option<PathBuf> {
        let mut best: Option<(Vec<u32>, PathBuf)> = None;
        for entry in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(version) = name.split('.').map(str::parse::<u32>).collect::<Result<Vec<u32>, _>>() else {
                continue;
            };
            let bin = entry.path().join("bin");
            let complete = ["initdb", "pg_ctl", "psql", "postgres"].iter().all(|p| bin.join(p).is_file());
            if complete && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
        best.map(|(_, bin)| bin)
    }

    fn find() -> Result<Binaries, TestkitError> {
        let bin_dir = match Binaries::locate_bin_dir() {
            Some(dir) => dir,
            None => {
                util::install_packages()?;
                Binaries::locate_bin_dir().ok_or_else(|| {
                    TestkitError::Install(
                        "no /usr/lib/postgresql/<version>/bin with initdb, pg_ctl, psql and postgres \
                         after installing postgresql and postgresql-client"
                            .into(),
                    )
                })?
            }
        };
        let as_postgres = if util::is_root() {
            if let Some(runuser) = util::find_program(&["/usr/sbin/runuser", "/sbin/runuser"], &["runuser"]) {
                Some(Wrapper::Runuser(runuser))
            } else if let Some(su) = util::find_program(&["/usr/bin/su", "/bin/su"], &["su"]) {
                Some(Wrapper::Su(su))
            } else {
                return Err(TestkitError::Install(
                    "running as root, but neither runuser nor su is available to run PostgreSQL as \
                     the postgres user"
                        .into(),
                ));
            }
        } else {
            None
        };
        Ok(Binaries { bin_dir, as_postgres })
    }

    /// Command running `program` from the bin directory as the server's owner.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        match &self.as_postgres {
            None => Command::new(path),
            Some(Wrapper::Runuser(runuser)) => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", "postgres", "--"]).arg(path);
                cmd
            }
            Some(Wrapper::Su(su)) => {
                // su passes the arguments after `-c CMD` to the shell as $0, $1, ...
                let mut cmd = Command::new(su);
                cmd.args(["postgres", "-s", "/bin/sh", "-c", "exec \"$0\" \"$@\""]).arg(path);
                cmd
            }
        }
    }

    /// The same as [`server_command`](Binaries::server_command), as an argument list (for
    /// the watchdog).
    fn server_argv(&self, program: &str, args: &[&OsStr]) -> Vec<OsString> {
        let cmd = self.server_command(program);
        let mut argv = vec![cmd.get_program().to_os_string()];
        argv.extend(cmd.get_args().map(OsStr::to_os_string));
        argv.extend(args.iter().map(|a| a.to_os_string()));
        argv
    }
}

/// How to run SQL with `psql` over the private socket; also used by [`TestDatabase`]'s
/// drop.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    psql: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

impl Client {
    /// Run `sql` on database `db`. `psql` runs as the current user: with `trust`
    /// authentication it may log in as `postgres` from any OS user.
    pub(crate) fn exec(&self, db: &str, sql: &str) -> Result<String, TestkitError> {
        self.exec_with(db, sql, &["-A", "-t"])
    }

    /// Run `sql` with extra `psql` formatting flags.
    pub(crate) fn exec_with(&self, db: &str, sql: &str, format: &[&str]) -> Result<String, TestkitError> {
        let mut cmd = Command::new(&self.psql);
        cmd.arg("-X")
            .args(format)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .env_remove("PGSSLMODE");
        let output = util::run_with_input(&mut cmd, sql.as_bytes())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(TestkitError::Sql {
                server: "PostgreSQL",
                sql: util::abbreviate(sql),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}

/// A private PostgreSQL server: its own cluster in a temporary directory, a free port on
/// 127.0.0.1, its Unix socket in that directory, `trust` authentication (user
/// `postgres`, no password), UTF8 encoding and durability switched off for speed
/// (`fsync=off`, `synchronous_commit=off`, `full_page_writes=off`).
///
/// When the process runs as root, the cluster belongs to the `postgres` OS user and
/// `initdb`/`pg_ctl` run through `runuser -u postgres --`.
///
/// Dropping a `Postgres` returned by [`Postgres::start`] stops the server and removes its
/// directory. The shared server from [`postgres()`](crate::postgres) lives until the
/// process exits; a watchdog process then stops it and removes its directory.
#[derive(Debug)]
pub struct Postgres {
    dir: Option<TempDir>,
    data_dir: PathBuf,
    log: PathBuf,
    port: u16,
    binaries: Binaries,
    client: Client,
    /// Whether the server is running; also serializes stop/start.
    running: Mutex<bool>,
    watchdog: Mutex<Option<std::process::Child>>,
    /// Settings (`-c name=value`) added after [`SERVER_SETTINGS`] on every start.
    settings: Vec<(String, String)>,
}

impl Postgres {
    /// Start a new private instance (not shared).
    ///
    /// Installs the `postgresql` and `postgresql-client` packages with apt-get when the
    /// binaries are missing. Blocks until the server accepts connections (at most 60 s).
    pub fn start() -> Result<Postgres, TestkitError> {
        Postgres::start_inner(&[], None)
    }

    /// [`start`](Postgres::start) with extra server settings (`-c name=value`, after the
    /// test kit's own, so they may override them), kept for restarts.
    pub fn start_with_settings(settings: &[(&str, &str)]) -> Result<Postgres, TestkitError> {
        Postgres::start_inner(settings, None)
    }

    /// [`start_with_settings`](Postgres::start_with_settings) serving `tls`'s server
    /// certificate: the certificate, key and CA are copied into the server's directory
    /// (owned by the server's OS user, the key with mode 0600, as PostgreSQL demands) and
    /// `ssl=on`, `ssl_cert_file`, `ssl_key_file` and `ssl_ca_file` are set. Connections
    /// without TLS are still accepted until [`write_hba`](Postgres::write_hba) says
    /// otherwise (e.g. `hostssl` lines only).
    pub fn start_with_tls(tls: &TlsFiles, settings: &[(&str, &str)]) -> Result<Postgres, TestkitError> {
        Postgres::start_inner(settings, Some(tls))
    }

    fn start_inner(settings: &[(&str, &str)], tls: Option<&TlsFiles>) -> Result<Postgres, TestkitError> {
        let binaries = Binaries::find()?;
        let dir = tempfile::Builder::new()
            .prefix("synchdb-testkit-pg-")
            .tempdir_in(temp_parent())
            .map_err(io_err("create a temporary directory for PostgreSQL"))?;
        let root = dir.path().to_path_buf();
        if binaries.as_postgres.is_some() {
            give_to_postgres(&root)?;
        }
        let mut all_settings: Vec<(String, String)> = Vec::new();
        if let Some(tls) = tls {
            let tls_dir = root.join("tls");
            std::fs::create_dir(&tls_dir).map_err(io_err(format!("create {}", tls_dir.display())))?;
            let owner = if binaries.as_postgres.is_some() { Some(postgres_ids()?) } else { None };
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&tls_dir, Some(uid), Some(gid))
                    .map_err(io_err(format!("chown postgres {}", tls_dir.display())))?;
            }
            for (from, name, setting) in [
                (tls.server_cert(), "server.crt", "ssl_cert_file"),
                (tls.server_key(), "server.key", "ssl_key_file"),
                (tls.ca_cert(), "ca.crt", "ssl_ca_file"),
            ] {
                let to = tls_dir.join(name);
                copy_private(&from, &to, owner)?;
                all_settings.push((setting.to_string(), to.display().to_string()));
            }
            all_settings.push(("ssl".into(), "on".into()));
        }
        all_settings.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let data_dir = root.join("data");
        let keep = util::keep_data();
        let stop_mode = if keep { "fast" } else { "immediate" };
        let stop_argv = binaries.server_argv(
            "pg_ctl",
            &[
                OsStr::new("-D"),
                data_dir.as_os_str(),
                OsStr::new("stop"),
                OsStr::new("-m"),
                OsStr::new(stop_mode),
                OsStr::new("-w"),
            ],
        );
        let mut watchdog_args: Vec<&OsStr> = vec![root.as_os_str(), OsStr::new(if keep { "1" } else { "0" })];
        watchdog_args.extend(stop_argv.iter().map(OsString::as_os_str));
        let watchdog = util::spawn_watchdog(WATCHDOG_SCRIPT, &watchdog_args)?;
        let mut pg = Postgres {
            log: root.join("postgres.log"),
            data_dir,
            port: 0,
            client: Client { psql: binaries.bin_dir.join("psql"), socket_dir: root, port: 0 },
            binaries,
            dir: Some(dir),
            running: Mutex::new(false),
            watchdog: Mutex::new(Some(watchdog)),
            settings: all_settings,
        };
        // On error `pg` is dropped here, which stops whatever was started.
        pg.initdb()?;
        pg.first_launch()?;
        Ok(pg)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host name to connect to: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory holding the server's Unix socket (`.s.PGSQL.PORT`), usable as `host`.
    pub fn socket_dir(&self) -> &Path {
        &self.client.socket_dir
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB` (`db` inserted as is, no percent-encoding).
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Run SQL with `psql -X -A -t -q -v ON_ERROR_STOP=1` as user `postgres` on database
    /// `db`, over the private socket. Returns stdout: one line per row, columns separated
    /// by `|`, no header, NULL as an empty string. Execution stops at the first error;
    /// the error includes psql's stderr.
    ///
    /// This blocks; from async code it is fine in tests, or use `spawn_blocking`.
    pub fn exec(&self, db: &str, sql: &str) -> Result<String, TestkitError> {
        self.client.exec(db, sql)
    }

    /// Run SQL like [`exec`](Postgres::exec), but return psql's aligned table
    /// output with headers (for showing results to a person).
    pub fn exec_table(&self, db: &str, sql: &str) -> Result<String, TestkitError> {
        self.client.exec_with(db, sql, &[])
    }

    /// `CREATE DATABASE` named `<prefix>_<pid>_<counter>` (prefix lowercased, characters
    /// other than `[a-z0-9_]` replaced by `_`, so it needs no quoting). Dropped
    /// (`WITH (FORCE)`, disconnecting any sessions) when the returned guard is dropped.
    pub fn create_database(&self, prefix: &str) -> Result<TestDatabase, TestkitError> {
        let name = util::unique_db_name(prefix);
        self.exec("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(TestDatabase { url: self.url_for(&name), name, dropper: Dropper::Postgres(self.client.clone()) })
    }

    /// Stop the server (`pg_ctl stop -m fast`) and start it again on the same port and
    /// data directory. Blocks until it accepts connections.
    ///
    /// On the shared server this affects every test using it.
    pub fn restart(&self) -> Result<(), TestkitError> {
        let mut running = self.lock_running();
        self.stop_locked(&mut running, "fast")?;
        self.start_locked(&mut running)
    }

    /// Crash the server (`pg_ctl stop -m immediate`: no shutdown checkpoint, clients
    /// cut) and start it again: it runs crash recovery (`57P03` meanwhile).
    pub fn crash_restart(&self) -> Result<(), TestkitError> {
        let mut running = self.lock_running();
        self.stop_locked(&mut running, "immediate")?;
        self.start_locked(&mut running)
    }

    /// Stop the server (`pg_ctl stop -m fast`) and leave it down; see
    /// [`start_again`](Postgres::start_again). Does nothing if it is already stopped.
    pub fn stop(&self) -> Result<(), TestkitError> {
        let mut running = self.lock_running();
        self.stop_locked(&mut running, "fast")
    }

    /// Start a server stopped with [`stop`](Postgres::stop) again, on the same port.
    /// Does nothing if it is running.
    pub fn start_again(&self) -> Result<(), TestkitError> {
        let mut running = self.lock_running();
        self.start_locked(&mut running)
    }

    /// Replace `pg_hba.conf` with `contents` and reload the configuration (e.g. only
    /// `hostssl` lines for TCP, to refuse connections without TLS). The test kit's own
    /// [`exec`](Postgres::exec) needs a `local` line (`local all all trust`). Fails, keeping
    /// the new file, if PostgreSQL reports an error in it.
    pub fn write_hba(&self, contents: &str) -> Result<(), TestkitError> {
        let path = self.data_dir.join("pg_hba.conf");
        // The file exists (initdb wrote it, owned by the server's user): overwrite in place.
        std::fs::write(&path, contents).map_err(io_err(format!("write {}", path.display())))?;
        let errors = self.exec(
            "postgres",
            "SELECT line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL",
        )?;
        if !errors.trim().is_empty() {
            return Err(TestkitError::Startup {
                server: "PostgreSQL",
                reason: format!("pg_hba.conf has errors: {}", errors.trim()),
                log_tail: String::new(),
            });
        }
        self.exec("postgres", "SELECT pg_reload_conf()")?;
        Ok(())
    }

    fn lock_running(&self) -> MutexGuard<'_, bool> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn root(&self) -> &Path {
        &self.client.socket_dir
    }

    fn initdb(&self) -> Result<(), TestkitError> {
        // A fixed locale keeps sorting deterministic and does not depend on which
        // locales the machine has generated; C.UTF-8 also gives Unicode-aware ctype.
        let mut last_err = None;
        for locale in ["C.UTF-8", "C"] {
            let mut cmd = self.binaries.server_command("initdb");
            cmd.arg("-D")
                .arg(&self.data_dir)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .arg(format!("--locale={locale}"))
                .current_dir(self.root());
            match util::run_checked(&mut cmd) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // initdb removes the data directory it created when it fails.
                    let _ = std::fs::remove_dir_all(&self.data_dir);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one initdb attempt"))
    }

    fn first_launch(&mut self) -> Result<(), TestkitError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = util::free_port()?;
            self.client.port = self.port;
            match self.launch() {
                Ok(()) => {
                    *self.lock_running() = true;
                    return Ok(());
                }
                Err((true, _)) if attempt < 5 => continue,
                Err((_, e)) => return Err(e),
            }
        }
    }

    /// `pg_ctl start -w` on `self.port`. The error says whether the port was taken.
    fn launch(&self) -> Result<(), (bool, TestkitError)> {
        let log_offset = util::file_len(&self.log);
        let mut options = format!("-p {} -k '{}'", self.port, self.root().display());
        for setting in SERVER_SETTINGS {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        for (name, value) in &self.settings {
            // pg_ctl runs the postmaster through the shell: quote.
            options.push_str(&format!(" -c '{}={}'", name, value.replace('\'', "'\\''")));
        }
        let mut cmd = self.binaries.server_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", &util::START_TIMEOUT.as_secs().to_string(), "start"])
            .current_dir(self.root());
        // pg_ctl starts the postmaster with stdin, stdout and stderr redirected (to
        // /dev/null and the log file), so capturing pg_ctl's output cannot hang.
        match util::run_checked(&mut cmd) {
            Ok(_) => Ok(()),
            Err(e) => {
                let log = util::read_from(&self.log, log_offset);
                let err = TestkitError::Startup {
                    server: "PostgreSQL",
                    reason: format!("pg_ctl start failed (port {}): {e}", self.port),
                    log_tail: util::log_tail(&self.log, log_offset, 30),
                };
                // pg_ctl gives up after the timeout but the postmaster may still come up.
                let _ = self.pg_ctl_stop("immediate");
                Err((util::port_in_use(&log), err))
            }
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), TestkitError> {
        let mut cmd = self.binaries.server_command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).args(["stop", "-m", mode, "-w"]).current_dir(self.root());
        util::run_checked(&mut cmd).map(|_| ())
    }

    fn stop_locked(&self, running: &mut bool, mode: &str) -> Result<(), TestkitError> {
        if *running {
            self.pg_ctl_stop(mode)?;
            *running = false;
        }
        Ok(())
    }

    fn start_locked(&self, running: &mut bool) -> Result<(), TestkitError> {
        if *running {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.launch() {
                Ok(()) => {
                    *running = true;
                    return Ok(());
                }
                Err((true, _)) if attempt < 10 => std::thread::sleep(std::time::Duration::from_millis(500)),
                Err((_, e)) => return Err(e),
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        util::kill_watchdog(&self.watchdog);
        let keep = util::keep_data();
        let running = *self.lock_running();
        if running || self.data_dir.join("postmaster.pid").exists() {
            let _ = self.pg_ctl_stop(if keep { "fast" } else { "immediate" });
        }
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("synchdb-testkit: kept PostgreSQL directory {}", dir.keep().display());
            }
        }
    }
}

/// Where to create the temporary directory. When running as root the `postgres` user
/// must be able to traverse every parent directory; if `$TMPDIR` does not allow that,
/// `/tmp` is used instead of changing permissions of directories we do not own.
fn temp_parent() -> PathBuf {
    let tmp = std::env::temp_dir();
    if !util::is_root() || traversable_by_others(&tmp) {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

fn traversable_by_others(dir: &Path) -> bool {
    dir.ancestors().all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Copy `from` to `to` with mode 0600, owned by `owner` when given.
fn copy_private(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> Result<(), TestkitError> {
    let context = || format!("copy {} to {}", from.display(), to.display());
    std::fs::copy(from, to).map_err(io_err(context()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(io_err(context()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(to, Some(uid), Some(gid)).map_err(io_err(context()))?;
    }
    Ok(())
}

/// chmod 755 and chown to `postgres` (when running as root).
fn give_to_postgres(dir: &Path) -> Result<(), TestkitError> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(format!("chmod 755 {}", dir.display())))?;
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(io_err(format!("chown postgres {}", dir.display())))
}

/// uid and gid of the `postgres` OS user.
fn postgres_ids() -> Result<(u32, u32), TestkitError> {
    static IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                if fields.len() >= 4 && fields[0] == "postgres" {
                    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
                } else {
                    None
                }
            })
        });
        from_passwd.or_else(|| {
            let id = |flag: &str| -> Option<u32> {
                let out = Command::new("id").args([flag, "postgres"]).stderr(Stdio::null()).output().ok()?;
                String::from_utf8_lossy(&out.stdout).trim().parse().ok()
            };
            Some((id("-u")?, id("-g")?))
        })
    });
    ids.ok_or_else(|| {
        TestkitError::Install(
            "running as root, but there is no `postgres` OS user to own the PostgreSQL cluster \
             (it is created by the postgresql package)"
                .into(),
        )
    })
}

/// The process-wide shared server.
pub(crate) fn shared() -> &'static Postgres {
    static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();
    match SHARED.get_or_init(|| Postgres::start().map_err(|e| e.to_string())) {
        Ok(pg) => pg,
        Err(e) => panic!("synchdb-testkit: could not start the shared PostgreSQL server: {e}"),
    }
}
