//! Test support for synchdb: private MariaDB, PostgreSQL and NATS JetStream servers.
//!
//! Every server is a private instance: its own temporary directory, its own free port on
//! `127.0.0.1` and its own Unix socket. The machine's system servers (ports 3306 and
//! 5432) are never used or touched. Everything here is plain synchronous `std` code
//! (`std::process::Command`), so it works from any async runtime, including
//! `#[tokio::test]`.
//!
//! * [`mariadb()`] and [`postgres()`] return process-wide shared servers, started on
//!   first use and stopped (directory removed) when the test process exits.
//! * [`MariaDb::start`] and [`Postgres::start`] start private instances for tests that
//!   restart or stop the server; they stop and clean up on drop.
//! * [`MariaDb::create_database`] and [`Postgres::create_database`] give each test its
//!   own uniquely named database, dropped with the returned [`TestDatabase`] guard.
//! * [`FaultProxy`] sits between a client under test and a server: it stalls traffic,
//!   cuts connections (in the middle of data), refuses new ones for a while, or cuts at
//!   random moments.
//! * [`nats()`] returns a process-wide shared NATS server with JetStream;
//!   [`NatsServer::start`] starts a private one that a test may kill and start again,
//!   and [`NatsCluster::start`] a private 3-node JetStream cluster (nodes `n1`..`n3`).
//!
//! MariaDB runs with the binlog on (`log_bin`, `binlog_format=ROW`,
//! `binlog_row_image=FULL`, `binlog_row_metadata=FULL`), `utf8mb4` as server charset, and
//! a user `synchdb`/`synchdb` with all privileges ([`MariaDb::url`]). PostgreSQL uses
//! `trust` authentication for user `postgres` ([`Postgres::url`]) and runs with
//! `fsync=off`.
//!
//! If `mariadbd` or the PostgreSQL binaries are missing, the Debian packages
//! (`mariadb-server mariadb-client postgresql postgresql-client`) are installed once with
//! `apt-get` (through `sudo -n` when not root); likewise `nats-server` (package
//! `nats-server`).
//!
//! Set `SYNCHDB_TESTKIT_KEEP=1` to keep the data directories after the servers stop (their
//! paths are printed to stderr for explicitly started instances; shared ones are under
//! `$TMPDIR/synchdb-testkit-*`).
//!
//! # Example
//!
//! ```no_run
//! # fn main() -> Result<(), synchdb_testkit::TestkitError> {
//! let mysql = synchdb_testkit::mariadb();
//! let db = mysql.create_database("orders")?;
//! mysql.exec(&format!(
//!     "CREATE TABLE `{0}`.t (id INT PRIMARY KEY, name VARCHAR(20));
//!      INSERT INTO `{0}`.t VALUES (1, 'a'), (2, 'b');",
//!     db.name()
//! ))?;
//! assert_eq!(mysql.exec(&format!("SELECT id, name FROM `{}`.t ORDER BY id", db.name()))?, "1\ta\n2\tb\n");
//! let source_url = db.url(); // mysql://synchdb:synchdb@127.0.0.1:PORT/orders_1234_1
//!
//! let pg = synchdb_testkit::postgres();
//! let target = pg.create_database("orders")?;
//! pg.exec(target.name(), "CREATE TABLE t (id int PRIMARY KEY, name text)")?;
//! let target_url = target.url(); // postgres://postgres@127.0.0.1:PORT/orders_1234_2
//! # let _ = (source_url, target_url);
//!
//! // A private server that a test may restart; binlogs are kept across restarts.
//! let own = synchdb_testkit::MariaDb::start()?;
//! own.restart()?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
mod mariadb;
mod nats;
mod postgres;
mod proxy;
mod tls;
mod util;

use std::fmt;

pub use mariadb::MariaDb;
pub use nats::{NatsCluster, NatsNode, NatsServer};
pub use postgres::Postgres;
pub use proxy::{FaultProxy, ProxyStats};
pub use tls::TlsFiles;
pub use util::ensure_programs;

/// Process-wide shared MariaDB server, started on first call and stopped (its directory
/// removed) when the process exits.
///
/// # Panics
///
/// If the server cannot be started (the message includes the reason and the tail of the
/// server's error log). Later calls panic with the same message without retrying.
pub fn mariadb() -> &'static MariaDb {
    mariadb::shared()
}

/// Process-wide shared PostgreSQL server, started on first call and stopped (its
/// directory removed) when the process exits.
///
/// # Panics
///
/// If the server cannot be started (the message includes the reason and the tail of the
/// server's log). Later calls panic with the same message without retrying.
pub fn postgres() -> &'static Postgres {
    postgres::shared()
}

/// Process-wide shared NATS server with JetStream, started on first call and stopped
/// (its directory removed) when the process exits.
///
/// # Panics
///
/// If the server cannot be started (the message includes the reason and the tail of the
/// server's log). Later calls panic with the same message without retrying.
pub fn nats() -> &'static NatsServer {
    nats::shared()
}

/// A uniquely named database created by [`MariaDb::create_database`] or
/// [`Postgres::create_database`]. Dropping it drops the database (errors ignored, e.g.
/// when the server is down).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    dropper: Dropper,
}

#[derive(Debug)]
enum Dropper {
    MariaDb(mariadb::Client),
    Postgres(postgres::Client),
}

impl TestDatabase {
    /// The database name, `<prefix>_<pid>_<counter>`; needs no quoting.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Full URL of the database: `mysql://synchdb:synchdb@127.0.0.1:PORT/NAME` or
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = match &self.dropper {
            Dropper::MariaDb(client) => client.exec(&format!("DROP DATABASE IF EXISTS `{}`", self.name)),
            Dropper::Postgres(client) => {
                client.exec("postgres", &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            }
        };
    }
}

/// Errors from starting servers or running SQL.
#[derive(Debug)]
#[non_exhaustive]
pub enum TestkitError {
    /// The database binaries are missing and could not be installed.
    Install(String),
    /// A file system or process operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A helper program (`mariadb-install-db`, `initdb`, `pg_ctl`, ...) failed.
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr and stdout.
        output: String,
    },
    /// A server did not start (or stop) as expected.
    Startup {
        /// `"MariaDB"`, `"PostgreSQL"` or `"NATS"`.
        server: &'static str,
        /// What went wrong.
        reason: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
    /// SQL run by `exec` failed.
    Sql {
        /// `"MariaDB"` or `"PostgreSQL"`.
        server: &'static str,
        /// The SQL (shortened).
        sql: String,
        /// The client's stderr (the server's error message).
        stderr: String,
    },
}

impl fmt::Display for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestkitError::Install(msg) => write!(f, "database binaries unavailable: {msg}"),
            TestkitError::Io { context, source } => write!(f, "{context}: {source}"),
            TestkitError::Command { command, status, output } => {
                write!(f, "`{command}` failed ({status})")?;
                if !output.is_empty() {
                    write!(f, ":\n{output}")?;
                }
                Ok(())
            }
            TestkitError::Startup { server, reason, log_tail } => {
                write!(f, "{server}: {reason}")?;
                if !log_tail.is_empty() {
                    write!(f, "\n--- end of server log ---\n{log_tail}")?;
                }
                Ok(())
            }
            TestkitError::Sql { server, sql, stderr } => {
                write!(f, "{server} SQL failed: {stderr}\nSQL: {sql}")
            }
        }
    }
}

impl std::error::Error for TestkitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestkitError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
