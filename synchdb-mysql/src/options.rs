//! Connection and replication options of the MySQL/MariaDB source.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use synchdb_core::{Error, Result};
use synchdb_types::Position;

use crate::filter::TableFilter;

/// Default server port.
pub const DEFAULT_PORT: u16 = 3306;
/// Default server id of the binlog connection (must differ from every
/// server id of the replication topology).
pub const DEFAULT_SERVER_ID: u32 = 4_000_001;

/// The binlog client server id of a pipeline that sets none: a stable hash
/// of its id, so that pipelines side by side (in one process or several)
/// do not collide on the server (which drops a client when another
/// connects with its id).
pub fn server_id_for_pipeline(pipeline: &str) -> u32 {
    let h = pipeline
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    1_000_000 + (h % 1_000_000_000) as u32
}
/// Default rows per snapshot chunk.
pub const DEFAULT_CHUNK_ROWS: u64 = 100_000;
/// Default rows per batch sent through a chunk's channel.
pub const DEFAULT_BATCH_ROWS: usize = 1_000;
/// Default heartbeat interval asked of the server on the binlog connection.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// When and how the source takes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SnapshotMode {
    /// Snapshot when no snapshot has completed (resuming an interrupted
    /// one), then follow the binlog.
    #[default]
    Initial,
    /// Snapshot (as `Initial`), then stop.
    InitialOnly,
    /// Create the tables without rows at the current position, then follow.
    NoData,
    /// Never snapshot: follow from the stored position, else the
    /// configured start position, else the server's current position.
    Never,
    /// Snapshot every time the source starts (all tables emptied first), then follow.
    Always,
}

impl SnapshotMode {
    /// The option spelling (`initial`, `initial_only`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMode::Initial => "initial",
            SnapshotMode::InitialOnly => "initial_only",
            SnapshotMode::NoData => "no_data",
            SnapshotMode::Never => "never",
            SnapshotMode::Always => "always",
        }
    }
}

impl fmt::Display for SnapshotMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SnapshotMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "initial" => SnapshotMode::Initial,
            "initial_only" => SnapshotMode::InitialOnly,
            "no_data" | "schema_only" => SnapshotMode::NoData,
            "never" => SnapshotMode::Never,
            "always" => SnapshotMode::Always,
            other => {
                return Err(Error::config(format!(
                "unknown snapshot mode {other:?}: expected initial, initial_only, no_data, never or always"
            )))
            }
        })
    }
}

/// TLS on the connections to the source, like the MySQL client's `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TlsMode {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it (certificate not verified), else plain TCP.
    #[default]
    Preferred,
    /// TLS, fail without it; the certificate is not verified.
    Required,
    /// TLS with the certificate verified against the CA (host name not checked).
    VerifyCa,
    /// TLS with the certificate and the host name verified.
    VerifyIdentity,
}

impl TlsMode {
    /// The option spelling (`disabled`, `verify_ca`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disabled => "disabled",
            TlsMode::Preferred => "preferred",
            TlsMode::Required => "required",
            TlsMode::VerifyCa => "verify_ca",
            TlsMode::VerifyIdentity => "verify_identity",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsMode {
    type Err = Error;
    /// Accepts the MySQL spellings in any case, with `-` or `_`
    /// (`DISABLED`, `verify-ca`, `VERIFY_IDENTITY`).
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "disabled" | "disable" | "false" => TlsMode::Disabled,
            "preferred" | "prefer" => TlsMode::Preferred,
            "required" | "require" | "true" => TlsMode::Required,
            "verify_ca" => TlsMode::VerifyCa,
            "verify_identity" | "verify_full" => TlsMode::VerifyIdentity,
            other => {
                return Err(Error::config(format!(
                    "unknown ssl mode {other:?}: expected disabled, preferred, required, verify_ca or verify_identity"
                )))
            }
        })
    }
}

/// Options of a [`MySqlSource`](crate::MySqlSource).
///
/// Built from a URL and refined with by-value setters:
///
/// ```
/// use synchdb_mysql::{MySqlSourceOptions, SnapshotMode, TlsMode};
///
/// let opts: MySqlSourceOptions = "mysql://repl:s3cret@db.example:3307/shop?ssl-mode=required"
///     .parse::<MySqlSourceOptions>()
///     .unwrap()
///     .tables("!shop.audit_*")
///     .server_id(7001)
///     .snapshot_mode(SnapshotMode::Initial)
///     .snapshot_workers(4);
/// assert_eq!(opts.get_port(), 3307);
/// assert_eq!(opts.get_tls_mode(), TlsMode::Required);
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// opts.validate().unwrap();
/// ```
///
/// URL query parameters: `ssl-mode` (`disabled`, `preferred`, `required`,
/// `verify_ca`, `verify_identity`), `ssl-ca` (CA file), `tables`
/// (comma-separated patterns), `server-id`, `snapshot-mode`,
/// `snapshot-workers`, `chunk-rows`. The path names one database to
/// replicate (`/shop` is the pattern `shop.*`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MySqlSourceOptions {
    host: String,
    port: u16,
    user: String,
    /// Never serialized, never printed.
    #[serde(skip_serializing)]
    password: Option<String>,
    tls_mode: TlsMode,
    tls_ca: Option<PathBuf>,
    tables: TableFilter,
    server_id: Option<u32>,
    snapshot_mode: SnapshotMode,
    snapshot_workers: usize,
    chunk_rows: u64,
    batch_rows: usize,
    start_position: Option<Position>,
    stop_at_caught_up: bool,
    heartbeat_interval: Duration,
    connect_timeout: Duration,
    #[serde(default)]
    unlogged_changes: UnloggedChanges,
    /// Other servers of the same replication topology (same credentials and
    /// TLS), tried in order when the current one cannot be reached.
    #[serde(default)]
    failover_hosts: Vec<(String, u16)>,
    /// The first invalid value given to a chaining setter (see `validate`).
    #[serde(skip)]
    invalid: Option<String>,
}

/// What follow mode does when a statement changes a replicated table's rows
/// without logging them as row events (`ALTER TABLE ... TRUNCATE|DROP|EXCHANGE|
/// REORGANIZE PARTITION`, statement-based DML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnloggedChanges {
    /// Copy the table again at a new consistent point (its older changes
    /// skipped) while the other tables keep following. The default.
    #[default]
    Resync,
    /// Stop with an error naming the statement, table and position.
    Stop,
}

impl std::str::FromStr for UnloggedChanges {
    type Err = Error;
    /// `resync` or `stop`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "resync" => Ok(UnloggedChanges::Resync),
            "stop" => Ok(UnloggedChanges::Stop),
            other => Err(Error::config(format!(
                "unknown unlogged-changes policy {other:?}: expected resync or stop"
            ))),
        }
    }
}

impl Default for MySqlSourceOptions {
    fn default() -> Self {
        MySqlSourceOptions {
            host: "localhost".into(),
            port: DEFAULT_PORT,
            user: "root".into(),
            password: None,
            tls_mode: TlsMode::default(),
            tls_ca: None,
            tables: TableFilter::all(),
            server_id: None,
            snapshot_mode: SnapshotMode::default(),
            snapshot_workers: default_workers(),
            chunk_rows: DEFAULT_CHUNK_ROWS,
            batch_rows: DEFAULT_BATCH_ROWS,
            start_position: None,
            stop_at_caught_up: false,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            unlogged_changes: UnloggedChanges::Resync,
            failover_hosts: Vec::new(),
            invalid: None,
        }
    }
}

/// The default number of snapshot readers: the core count.
fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

impl fmt::Debug for MySqlSourceOptions {
    /// Prints the password as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlSourceOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_mode", &self.tls_mode)
            .field("tls_ca", &self.tls_ca)
            .field("tables", &self.tables.to_string())
            .field("server_id", &self.server_id)
            .field("snapshot_mode", &self.snapshot_mode)
            .field("snapshot_workers", &self.snapshot_workers)
            .field("chunk_rows", &self.chunk_rows)
            .field("batch_rows", &self.batch_rows)
            .field("start_position", &self.start_position.as_ref().map(ToString::to_string))
            .field("stop_at_caught_up", &self.stop_at_caught_up)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("failover_hosts", &self.failover_hosts)
            .finish()
    }
}

impl MySqlSourceOptions {
    /// Options with the defaults (`root@localhost:3306`, every non-system table).
    pub fn new() -> Self {
        Self::default()
    }

    /// Server host name or address.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Server port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// User name.
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Password (never printed).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Another server of the same replication topology (a replica with
    /// `log_slave_updates`, or the primary-to-be), tried in order after the
    /// host when the current server cannot be reached. Same user, password
    /// and TLS settings. Follow mode continues there from its GTID position
    /// (MariaDB); a server whose binlog lacks transactions already applied
    /// is refused with [`ErrorKind::SourceDiverged`](synchdb_core::ErrorKind).
    pub fn failover_host(mut self, host: impl Into<String>, port: u16) -> Self {
        self.failover_hosts.push((host.into(), port));
        self
    }

    /// TLS mode.
    pub fn tls_mode(mut self, mode: TlsMode) -> Self {
        self.tls_mode = mode;
        self
    }

    /// A PEM file of CA certificates to verify the server with.
    pub fn tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    /// Replicate every table of `database` (adds the pattern `database.*`).
    /// An invalid name is reported by [`validate`](Self::validate) (which
    /// the source runs before connecting), so setters chain.
    pub fn database(mut self, database: &str) -> Self {
        match self.tables.clone().include(&format!("{database}.*")) {
            Ok(t) => self.tables = t,
            Err(e) => self.note_invalid(format!("database {database:?}: {e}")),
        }
        self
    }

    /// Add comma-separated table patterns (`shop.*,!shop.audit_*`); see
    /// [`TableFilter`]. An invalid pattern is reported by [`validate`](Self::validate).
    pub fn tables(mut self, patterns: &str) -> Self {
        for p in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match self.tables.clone().pattern(p) {
                Ok(t) => self.tables = t,
                Err(e) => self.note_invalid(format!("table pattern {p:?}: {e}")),
            }
        }
        self
    }

    /// Keep the first invalid setting for [`validate`](Self::validate).
    fn note_invalid(&mut self, what: String) {
        self.invalid.get_or_insert(what);
    }

    /// Replace the table filter.
    pub fn table_filter(mut self, filter: TableFilter) -> Self {
        self.tables = filter;
        self
    }

    /// Server id of the binlog connection.
    pub fn server_id(mut self, id: u32) -> Self {
        self.server_id = Some(id);
        self
    }

    /// Snapshot mode.
    pub fn snapshot_mode(mut self, mode: SnapshotMode) -> Self {
        self.snapshot_mode = mode;
        self
    }

    /// Number of snapshot reader connections.
    pub fn snapshot_workers(mut self, n: usize) -> Self {
        self.snapshot_workers = n;
        self
    }

    /// Rows per snapshot chunk (tables with more rows are split by primary-key ranges).
    pub fn chunk_rows(mut self, rows: u64) -> Self {
        self.chunk_rows = rows;
        self
    }

    /// Rows per batch sent through a chunk's channel (bounds memory).
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows;
        self
    }

    /// Where follow mode starts in snapshot mode `never` when no position is stored.
    pub fn start_position(mut self, position: Position) -> Self {
        self.start_position = Some(position);
        self
    }

    /// Follow until the server's binlog position at follow start, then stop.
    pub fn stop_at_caught_up(mut self, stop: bool) -> Self {
        self.stop_at_caught_up = stop;
        self
    }

    /// Heartbeat interval asked of the server on the binlog connection.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// What to do when a statement changes rows without row events (see [`UnloggedChanges`]).
    pub fn unlogged_changes(mut self, policy: UnloggedChanges) -> Self {
        self.unlogged_changes = policy;
        self
    }

    /// The unlogged-changes policy.
    pub fn get_unlogged_changes(&self) -> UnloggedChanges {
        self.unlogged_changes
    }

    /// Connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Server host.
    pub fn get_host(&self) -> &str {
        &self.host
    }
    /// Server port.
    pub fn get_port(&self) -> u16 {
        self.port
    }
    /// User name.
    pub fn get_username(&self) -> &str {
        &self.user
    }
    /// TLS mode.
    pub fn get_tls_mode(&self) -> TlsMode {
        self.tls_mode
    }
    /// The table filter.
    pub fn get_table_filter(&self) -> &TableFilter {
        &self.tables
    }
    /// Server id of the binlog connection.
    pub fn get_server_id(&self) -> u32 {
        self.server_id.unwrap_or(DEFAULT_SERVER_ID)
    }

    /// The server id, unless derived from the pipeline id (the default).
    pub fn get_configured_server_id(&self) -> Option<u32> {
        self.server_id
    }
    /// Snapshot mode.
    pub fn get_snapshot_mode(&self) -> SnapshotMode {
        self.snapshot_mode
    }
    /// Number of snapshot readers.
    pub fn get_snapshot_workers(&self) -> usize {
        self.snapshot_workers
    }
    /// Rows per chunk.
    pub fn get_chunk_rows(&self) -> u64 {
        self.chunk_rows
    }
    /// Rows per batch.
    pub fn get_batch_rows(&self) -> usize {
        self.batch_rows
    }
    /// Start position for snapshot mode `never`.
    pub fn get_start_position(&self) -> Option<&Position> {
        self.start_position.as_ref()
    }
    /// Whether follow mode stops once caught up.
    pub fn get_stop_at_caught_up(&self) -> bool {
        self.stop_at_caught_up
    }
    /// Heartbeat interval.
    pub fn get_heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Every server to connect to, in order: the host, then the failover hosts.
    pub fn get_hosts(&self) -> Vec<(String, u16)> {
        let mut hosts = vec![(self.host.clone(), self.port)];
        hosts.extend(self.failover_hosts.iter().cloned());
        hosts
    }

    /// These options pointed at server `i` of [`get_hosts`](Self::get_hosts)
    /// (its failover list left as is).
    pub(crate) fn for_host(&self, i: usize) -> MySqlSourceOptions {
        let mut o = self.clone();
        if let Some((h, p)) = self.get_hosts().get(i).cloned() {
            o.host = h;
            o.port = p;
        }
        o
    }

    /// Connect to the first server of [`get_hosts`](Self::get_hosts) that
    /// answers; returns its index with the connection. The error of the last
    /// one when none does.
    pub(crate) async fn connect_any(&self) -> Result<(usize, mysql_async::Conn)> {
        let n = self.failover_hosts.len() + 1;
        let mut last = None;
        for i in 0..n {
            let o = self.for_host(i);
            match o.connect().await {
                Ok(c) => return Ok((i, c)),
                Err(e) if e.kind().is_transient() && i + 1 < n => {
                    tracing::warn!(error = %e, host = %o.host, port = o.port, "source server unreachable; trying the next one");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::internal("no source server configured")))
    }

    /// Check the options for values that cannot work.
    pub fn validate(&self) -> Result<()> {
        if let Some(what) = &self.invalid {
            return Err(Error::config(format!("mysql source: invalid {what}")));
        }
        if self.host.trim().is_empty() {
            return Err(Error::config("mysql source: host is empty"));
        }
        if self.port == 0 || self.failover_hosts.iter().any(|(_, p)| *p == 0) {
            return Err(Error::config("mysql source: port must not be 0"));
        }
        if self.failover_hosts.iter().any(|(h, _)| h.trim().is_empty()) {
            return Err(Error::config("mysql source: a failover host is empty"));
        }
        if self.user.is_empty() {
            return Err(Error::config("mysql source: user is empty"));
        }
        if self.server_id == Some(0) {
            return Err(Error::config(
                "mysql source: server_id must not be 0 (a replica needs a nonzero id)",
            ));
        }
        if self.snapshot_workers == 0 || self.snapshot_workers > 256 {
            return Err(Error::config(format!(
                "mysql source: snapshot_workers must be 1..=256, got {}",
                self.snapshot_workers
            )));
        }
        if self.chunk_rows == 0 || self.batch_rows == 0 {
            return Err(Error::config("mysql source: chunk_rows and batch_rows must be at least 1"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval > Duration::from_secs(4_294_967) {
            return Err(Error::config("mysql source: heartbeat_interval must be between 1 ms and 4294967 s"));
        }
        if let Some(ca) = &self.tls_ca {
            if !ca.exists() {
                return Err(Error::config(format!(
                    "mysql source: ssl CA file {} does not exist",
                    ca.display()
                )));
            }
        }
        Ok(())
    }

    /// The mysql_async options of a connection (TLS as configured; for
    /// [`TlsMode::Preferred`] this is the TLS attempt, see [`Self::plain_conn_opts`]).
    pub(crate) fn conn_opts(&self) -> mysql_async::Opts {
        let ssl = match self.tls_mode {
            TlsMode::Disabled => None,
            TlsMode::Preferred | TlsMode::Required => {
                Some(mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true))
            }
            TlsMode::VerifyCa => Some(self.ssl_with_ca().with_danger_skip_domain_validation(true)),
            TlsMode::VerifyIdentity => Some(self.ssl_with_ca()),
        };
        self.builder().ssl_opts(ssl).into()
    }

    /// [`TlsMode::VerifyCa`] options that verify the certificate chain and
    /// check the host name against `name`, a name the certificate holds.
    fn verify_ca_opts_for(&self, name: &str) -> mysql_async::Opts {
        let ssl = self.ssl_with_ca().with_danger_tls_hostname_override(Some(name.to_string()));
        self.builder().ssl_opts(ssl).into()
    }

    /// Options without TLS (the fallback of [`TlsMode::Preferred`]).
    pub(crate) fn plain_conn_opts(&self) -> mysql_async::Opts {
        self.builder().ssl_opts(None).into()
    }

    /// Verifying TLS: against the `ssl-ca` file only when one is given (like
    /// the MySQL client), else against the public web roots.
    fn ssl_with_ca(&self) -> mysql_async::SslOpts {
        let mut ssl = mysql_async::SslOpts::default();
        if let Some(ca) = &self.tls_ca {
            ssl = ssl.with_root_certs(vec![ca.clone().into()]).with_disable_built_in_roots(true);
        }
        ssl
    }

    fn builder(&self) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .prefer_socket(false)
            .stmt_cache_size(0)
            // What replication clients take (`slave_max_allowed_packet`): a binlog
            // event or a row may be larger than the server's `max_allowed_packet`,
            // which mysql_async would otherwise read and enforce on every packet.
            .max_allowed_packet(Some(MAX_PACKET_BYTES))
    }

    /// Open a connection: TLS as configured, falling back to plain TCP in
    /// mode `preferred`. Failures are [`ErrorKind::SourceConnection`](synchdb_core::ErrorKind),
    /// except TLS failures that retrying cannot cure (a certificate that fails
    /// verification, a server without TLS, an unreadable `ssl-ca`): those are
    /// [`ErrorKind::Config`](synchdb_core::ErrorKind) errors saying so.
    pub(crate) async fn connect(&self) -> Result<mysql_async::Conn> {
        if let (Some(ca), TlsMode::VerifyCa | TlsMode::VerifyIdentity) = (&self.tls_ca, self.tls_mode) {
            // mysql_async would report an unreadable file as an I/O error (transient).
            if let Err(e) = std::fs::metadata(ca).and_then(|_| std::fs::File::open(ca)) {
                return Err(Error::config(format!(
                    "TLS: cannot read the ssl-ca file {} for {}:{}",
                    ca.display(),
                    self.host,
                    self.port
                ))
                .with_source(e));
            }
        }
        let attempt =
            tokio::time::timeout(self.connect_timeout, mysql_async::Conn::new(self.conn_opts())).await;
        let attempt = match attempt {
            // mysql_async's "skip domain validation" looks for the text
            // `NotValidForName` in rustls' error, which rustls 0.23 no longer
            // prints (`certificate not valid for name ...`): the host name check
            // fails anyway. rustls checks the chain before the name, so the chain
            // is good; connect again checking a name the certificate holds.
            Ok(Err(e)) if self.tls_mode == TlsMode::VerifyCa => match presented_names(&e).first() {
                Some(name) => {
                    tracing::debug!(host = %self.host, certificate_name = %name,
                        "ssl-mode=verify_ca: the certificate is not for the host name; checking its chain with a name it holds");
                    tokio::time::timeout(
                        self.connect_timeout,
                        mysql_async::Conn::new(self.verify_ca_opts_for(name)),
                    )
                    .await
                }
                None => Ok(Err(e)),
            },
            other => other,
        };
        match attempt {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) if self.tls_mode == TlsMode::Preferred && is_tls_failure(&e) => {
                // Said once per process, not once per connection.
                static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!(host = %self.host, "server refused TLS; connecting without (ssl-mode=preferred)");
                } else {
                    tracing::debug!(host = %self.host, "server refused TLS; connecting without (ssl-mode=preferred)");
                }
                match tokio::time::timeout(
                    self.connect_timeout,
                    mysql_async::Conn::new(self.plain_conn_opts()),
                )
                .await
                {
                    Ok(r) => r.map_err(|e| self.connect_error(e)),
                    Err(_) => Err(self.timeout_error()),
                }
            }
            Ok(Err(e)) => Err(self.connect_error(e)),
            Err(_) => Err(self.timeout_error()),
        }
    }

    fn connect_error(&self, e: mysql_async::Error) -> Error {
        if let Some(problem) = tls_problem(&e) {
            let ca = match &self.tls_ca {
                Some(ca) if matches!(self.tls_mode, TlsMode::VerifyCa | TlsMode::VerifyIdentity) => {
                    format!(", ssl-ca={}", ca.display())
                }
                _ => String::new(),
            };
            // rustls' text is in the message; the driver's wrapping of it adds nothing.
            return Error::config(format!(
                "TLS connecting to {}:{} (ssl-mode={}{ca}): {problem}",
                self.host, self.port, self.tls_mode
            ));
        }
        let kind = crate::errors::kind_or(&e, synchdb_core::ErrorKind::SourceConnection);
        Error::new(kind, format!("cannot connect to {}@{}:{}", self.user, self.host, self.port))
            .with_source(e)
    }

    fn timeout_error(&self) -> Error {
        Error::new(
            synchdb_core::ErrorKind::SourceConnection,
            format!("connecting to {}:{} timed out after {:?}", self.host, self.port, self.connect_timeout),
        )
    }
}

/// The rustls error inside a driver error, if any (handshake failures come
/// wrapped in an I/O error).
fn rustls_error(e: &mysql_async::Error) -> Option<&rustls::Error> {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        mysql_async::Error::Io(mysql_async::IoError::Tls(mysql_async::TlsError::Tls(e))) => Some(e),
        _ => None,
    }
}

/// A TLS failure that retrying cannot cure, described; `None` for anything else.
fn tls_problem(e: &mysql_async::Error) -> Option<String> {
    use rustls::Error as E;
    if let Some(r) = rustls_error(e) {
        return match r {
            E::InvalidCertificate(_) | E::NoCertificatesPresented | E::UnsupportedNameType => {
                Some(format!("the server's certificate failed verification: {r}"))
            }
            E::PeerIncompatible(_) => Some(format!("the TLS handshake failed: {r}")),
            _ => None,
        };
    }
    match e {
        // The TLS set-up itself: a CA file that is no certificate, an invalid host name, ...
        mysql_async::Error::Io(mysql_async::IoError::Tls(t)) => Some(format!("cannot set up TLS: {t}")),
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            Some("the server does not support TLS".into())
        }
        _ => None,
    }
}

/// The names a certificate holds, when `e` is a verification failure on the
/// host name only (rustls verified the chain first).
fn presented_names(e: &mysql_async::Error) -> Vec<String> {
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            presented,
            ..
        })) => presented
            .iter()
            // webpki writes them as `DnsName("db.example")` and `IpAddress(10.0.0.1)`.
            .filter_map(|p| {
                let inner = p.strip_prefix("DnsName(").or_else(|| p.strip_prefix("IpAddress("))?;
                let name = inner.strip_suffix(')')?.trim_matches('"');
                // A wildcard cannot be connected to as a name; `*.x` matches `a.x`.
                let name = match name.strip_prefix("*.") {
                    Some(rest) => format!("synchdb-verify-ca.{rest}"),
                    None => name.to_string(),
                };
                rustls::pki_types::ServerName::try_from(name.clone()).ok().map(|_| name)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_tls_failure(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
            | mysql_async::Error::Io(_)
    )
}

/// Split `mysql://a...,mysql://b...` into its URLs (a comma followed by a
/// scheme starts the next one; commas elsewhere belong to the URL).
fn split_urls(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in s.match_indices(',') {
        let next = &s[i + 1..];
        if i >= start && (next.starts_with("mysql://") || next.starts_with("mariadb://")) {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// `h1:p1,h2,[::1]:p3` into its parts.
fn split_hosts(s: &str) -> Vec<&str> {
    s.split(',').collect()
}

/// `host[:port]` or `[v6][:port]`.
fn parse_host_port(hostport: &str) -> Result<(String, Option<&str>)> {
    Ok(if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| Error::config("mysql URL: unclosed [ in host"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    })
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if i + 2 >= bytes.len() {
                return Err(Error::config("bad percent escape in mysql URL"));
            }
            let hex =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return Err(Error::config("bad percent escape in mysql URL")),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Error::config("mysql URL part is not UTF-8 after percent-decoding"))
}

/// The largest packet the source accepts from the server (1 GiB, the protocol's limit).
const MAX_PACKET_BYTES: usize = 1 << 30;

impl FromStr for MySqlSourceOptions {
    type Err = Error;

    /// Parse `mysql://user[:password]@host[:port][/database][?param=value&...]`
    /// (also `mariadb://`). The error message never contains the password.
    ///
    /// Failover servers: several hosts in the authority
    /// (`mysql://u:p@db1:3306,db2:3306/shop`), or several URLs separated by
    /// commas (`mysql://u:p@db1/shop,mysql://u:p@db2/shop`; they must agree
    /// on everything but host and port).
    fn from_str(url: &str) -> Result<Self> {
        let urls = split_urls(url);
        if urls.len() > 1 {
            let mut first: MySqlSourceOptions = urls[0].parse()?;
            for other in &urls[1..] {
                let o: MySqlSourceOptions = other.parse()?;
                let mut same = o.clone();
                same.host = first.host.clone();
                same.port = first.port;
                same.failover_hosts = first.failover_hosts.clone();
                if same != first {
                    return Err(Error::config(
                        "mysql source URLs of one source must differ only in host and port \
                         (same user, password, database, tables and parameters)",
                    ));
                }
                first.failover_hosts.extend(o.get_hosts());
            }
            return Ok(first);
        }
        // The url crate reads the URL; only the failover host list (`h1:p,h2`), which
        // a URL authority cannot hold, is taken out first.
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .ok_or_else(|| Error::config("mysql source URL must start with mysql:// or mariadb://"))?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut hosts = split_hosts(hostlist).into_iter();
        let first = hosts.next().unwrap_or_default();
        let single = format!(
            "mysql://{}{first}{tail}",
            userinfo.map(|u| format!("{}@", u.replace(',', "%2C"))).unwrap_or_default()
        );
        // The parser's message names the part, never the input (which holds the password).
        let parsed =
            url::Url::parse(&single).map_err(|e| Error::config(format!("invalid mysql URL: {e}")))?;
        let mut opts = MySqlSourceOptions::default();
        if !parsed.username().is_empty() {
            opts.user = percent_decode(parsed.username())?;
        }
        if let Some(p) = parsed.password() {
            opts.password = Some(percent_decode(p)?);
        }
        opts.host = match parsed.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Domain(d)) if !d.is_empty() => percent_decode(d)?,
            _ => return Err(Error::config("mysql URL has no host")),
        };
        if let Some(p) = parsed.port() {
            opts.port = p;
        }
        for extra in hosts {
            let (h, p) = parse_host_port(extra)?;
            let port = match p {
                Some(p) => p.parse().map_err(|_| Error::config(format!("mysql URL: invalid port {p:?}")))?,
                None => DEFAULT_PORT,
            };
            if h.is_empty() {
                return Err(Error::config("mysql URL has an empty host in its host list"));
            }
            opts.failover_hosts.push((h, port));
        }
        let path = parsed.path().strip_prefix('/').unwrap_or(parsed.path());
        let query = parsed.query().unwrap_or("");
        let database = percent_decode(path.trim_end_matches('/'))?;
        if !database.is_empty() {
            opts = opts.database(&database);
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)?;
            let bad = |what: &str| Error::config(format!("mysql URL: invalid {what} {v:?}"));
            match k.to_ascii_lowercase().replace('_', "-").as_str() {
                "ssl-mode" | "sslmode" | "tls-mode" => opts.tls_mode = v.parse()?,
                "ssl-ca" | "sslca" | "tls-ca" => opts.tls_ca = Some(PathBuf::from(v)),
                "tables" => opts = opts.tables(&v),
                "server-id" => opts.server_id = Some(v.parse().map_err(|_| bad("server-id"))?),
                "snapshot-mode" => opts.snapshot_mode = v.parse()?,
                "snapshot-workers" => {
                    opts.snapshot_workers = v.parse().map_err(|_| bad("snapshot-workers"))?
                }
                "chunk-rows" => opts.chunk_rows = v.parse().map_err(|_| bad("chunk-rows"))?,
                // `try_`: a negative, NaN or huge number of seconds is an error, not a panic.
                "heartbeat-interval" => {
                    opts.heartbeat_interval = v
                        .parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or_else(|| bad("heartbeat-interval"))?
                }
                "connect-timeout" => {
                    opts.connect_timeout = v
                        .parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or_else(|| bad("connect-timeout"))?
                }
                other => return Err(Error::config(format!("mysql URL: unknown parameter {other:?}"))),
            }
        }
        if let Some(what) = &opts.invalid {
            return Err(Error::config(format!("mysql URL: invalid {what}")));
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchdb_types::TableId;

    #[test]
    fn parses_url() {
        let o: MySqlSourceOptions =
            "mysql://repl:p%40ss:w@db.example:3307/shop?ssl-mode=VERIFY-CA&server-id=9&snapshot-mode=no_data&tables=!shop.audit_*"
                .parse()
                .unwrap();
        assert_eq!(o.get_host(), "db.example");
        assert_eq!(o.get_port(), 3307);
        assert_eq!(o.get_username(), "repl");
        assert_eq!(o.password.as_deref(), Some("p@ss:w"));
        assert_eq!(o.get_tls_mode(), TlsMode::VerifyCa);
        assert_eq!(o.get_server_id(), 9);
        assert_eq!(o.get_snapshot_mode(), SnapshotMode::NoData);
        assert!(o.get_table_filter().matches(&TableId::new("shop", "orders")));
        assert!(!o.get_table_filter().matches(&TableId::new("shop", "audit_x")));
        assert!(!o.get_table_filter().matches(&TableId::new("crm", "x")));
    }

    #[test]
    fn url_edge_cases() {
        let o: MySqlSourceOptions = "mariadb://us%20er:p%2Fa%3Fss@[2001:db8::1]/sh%C3%B6p/".parse().unwrap();
        assert_eq!((o.get_username(), o.password.as_deref()), ("us er", Some("p/a?ss")));
        assert_eq!((o.get_host(), o.get_port()), ("2001:db8::1", DEFAULT_PORT));
        assert!(o.get_table_filter().matches(&TableId::new("shöp", "t")));
        let o: MySqlSourceOptions = "mysql://10.0.0.7:3310?server-id=4".parse().unwrap();
        assert_eq!((o.get_host(), o.get_port(), o.get_server_id()), ("10.0.0.7", 3310, 4));
        for bad in [
            "mysql://u:p@h:99999/db",
            "mysql://u:p%zz@h/db",
            "mysql://u:p@h/d%",
            "mysql://u:p@/db",
            "mysql://u:p@[::1/db",
            "mysql://u:p@h/db?tables=%G1",
        ] {
            let e = bad.parse::<MySqlSourceOptions>().unwrap_err();
            assert_eq!(e.kind(), synchdb_core::ErrorKind::Config, "{bad}");
            assert!(!e.to_string().contains("p%zz") && !e.to_string().contains(":p@"), "{e}");
        }
    }

    #[test]
    fn failover_hosts_in_one_url_or_several() {
        let o: MySqlSourceOptions = "mysql://u:p,w@db1:3307,db2,[::1]:3309/shop?server-id=5".parse().unwrap();
        assert_eq!(o.password.as_deref(), Some("p,w"));
        assert_eq!(
            o.get_hosts(),
            vec![("db1".into(), 3307), ("db2".into(), DEFAULT_PORT), ("::1".into(), 3309)]
        );
        assert_eq!(o.for_host(2).get_host(), "::1");
        assert_eq!(o.for_host(2).get_port(), 3309);
        let o: MySqlSourceOptions =
            "mysql://u:p@db1:3307/shop?server-id=5,mariadb://u:p@db2:3308/shop?server-id=5".parse().unwrap();
        assert_eq!(o.get_hosts(), vec![("db1".into(), 3307), ("db2".into(), 3308)]);
        assert_eq!(o.get_server_id(), 5);
        let e = "mysql://u:p@db1/shop,mysql://u:other@db2/shop".parse::<MySqlSourceOptions>().unwrap_err();
        assert!(e.to_string().contains("differ only in host and port"), "{e}");
        assert!(!e.to_string().contains("other"), "{e}");
        assert!("mysql://u@db1,:3306".parse::<MySqlSourceOptions>().is_err());
        assert!("mysql://u@db1,db2:0".parse::<MySqlSourceOptions>().unwrap().validate().is_err());
    }

    #[test]
    fn defaults_and_ipv6() {
        let o: MySqlSourceOptions = "mysql://[::1]".parse().unwrap();
        assert_eq!(o.get_host(), "::1");
        assert_eq!(o.get_port(), DEFAULT_PORT);
        assert_eq!(o.get_username(), "root");
        assert!(o.get_table_filter().is_all());
        o.validate().unwrap();
    }

    #[test]
    fn password_never_printed() {
        let o: MySqlSourceOptions = "mysql://u:topsecret@h/db".parse().unwrap();
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
        assert!(dbg.contains("***"));
        let json = serde_json::to_string(&o).unwrap();
        assert!(!json.contains("topsecret"), "{json}");
        let err = "mysql://u:topsecret@h:notaport/db".parse::<MySqlSourceOptions>().unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn rejects_bad_values() {
        assert!("postgres://x".parse::<MySqlSourceOptions>().is_err());
        assert!("mysql://h?bogus=1".parse::<MySqlSourceOptions>().is_err());
        assert!("mysql://h?ssl-mode=sometimes".parse::<MySqlSourceOptions>().is_err());
        assert!("mysql://h/db".parse::<MySqlSourceOptions>().unwrap().server_id(0).validate().is_err());
        assert!(MySqlSourceOptions::new().snapshot_workers(0).validate().is_err());
        assert!(MySqlSourceOptions::new().chunk_rows(0).validate().is_err());
        // Setters chain; a bad pattern is kept for validate (and the URL parser).
        let e =
            MySqlSourceOptions::new().database("shop").tables("shop.").server_id(3).validate().unwrap_err();
        assert!(e.to_string().contains("shop."), "{e}");
        assert!(MySqlSourceOptions::new().database("shop").tables("shop.a,!shop.b").validate().is_ok());
        assert!("mysql://h/db?tables=.t".parse::<MySqlSourceOptions>().is_err());
        // Found by the mysql_url fuzz target: these panicked in Duration::from_secs_f64.
        for v in ["-1", "NaN", "inf", "1e300"] {
            assert!(
                format!("mysql://h?heartbeat-interval={v}").parse::<MySqlSourceOptions>().is_err(),
                "{v}"
            );
            assert!(format!("mysql://h?connect-timeout={v}").parse::<MySqlSourceOptions>().is_err(), "{v}");
        }
    }

    #[test]
    fn modes_parse() {
        for m in [
            SnapshotMode::Initial,
            SnapshotMode::InitialOnly,
            SnapshotMode::NoData,
            SnapshotMode::Never,
            SnapshotMode::Always,
        ] {
            assert_eq!(m.as_str().parse::<SnapshotMode>().unwrap(), m);
        }
        assert!("sometimes".parse::<SnapshotMode>().is_err());
        assert_eq!("verify_identity".parse::<TlsMode>().unwrap(), TlsMode::VerifyIdentity);
        let json = serde_json::to_string(&SnapshotMode::InitialOnly).unwrap();
        assert_eq!(json, "\"initial_only\"");
    }

    fn tls_io_error(e: rustls::Error) -> mysql_async::Error {
        mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e,
        )))
    }

    #[test]
    fn certificate_failures_are_permanent_and_clear() {
        let o: MySqlSourceOptions = "mysql://u:pw@db.example:3307?ssl-mode=verify_ca".parse().unwrap();
        let e = o.connect_error(tls_io_error(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert_eq!(e.kind(), synchdb_core::ErrorKind::Config, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("TLS") && text.contains("certificate") && text.contains("db.example:3307"),
            "{text}"
        );
        assert!(!text.contains("pw"), "{text}");
        let no_tls =
            o.connect_error(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer));
        assert_eq!(no_tls.kind(), synchdb_core::ErrorKind::Config, "{no_tls}");
        // A connection reset during the handshake stays transient.
        let reset = o.connect_error(mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ))));
        assert!(reset.kind().is_transient(), "{reset}");
    }

    #[test]
    fn names_of_a_certificate_for_another_host() {
        let e = tls_io_error(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForNameContext {
                expected: rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec![
                    "DnsName(\"db.example\")".into(),
                    "IpAddress(10.0.0.7)".into(),
                    "DnsName(\"*.example.org\")".into(),
                    "UniformResourceIdentifier(\"x:y\")".into(),
                ],
            },
        ));
        assert_eq!(presented_names(&e), ["db.example", "10.0.0.7", "synchdb-verify-ca.example.org"]);
        assert!(presented_names(&tls_io_error(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        )))
        .is_empty());
    }

    #[test]
    fn serde_round_trip_without_password() {
        let o: MySqlSourceOptions = "mysql://u:pw@h:1234/db?chunk-rows=5".parse().unwrap();
        let back: MySqlSourceOptions = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        assert_eq!(back.get_chunk_rows(), 5);
        assert_eq!(back.get_port(), 1234);
        assert_eq!(back.password, None);
    }
}
