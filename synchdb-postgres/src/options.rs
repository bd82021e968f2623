//! [`PgSinkOptions`]: connection, naming, type mapping and apply settings.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use synchdb_core::{Error, Result};
use synchdb_types::{TableId, TextNul};

/// Default connection URL.
pub const DEFAULT_URL: &str = "postgres://postgres@localhost:5432/postgres";
/// Default pool size (connections used for COPY chunks in parallel and for apply).
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// Default schema holding the pipeline state tables.
pub const DEFAULT_STATE_SCHEMA: &str = "synchdb";
/// Default size of one COPY message sent to the server, in bytes.
pub const DEFAULT_COPY_BUFFER_BYTES: usize = 1 << 20;
/// Default time to wait for a pooled connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// PostgreSQL's longest identifier, in bytes (longer ones are cut silently by the server).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Where a source table goes in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchemaNaming {
    /// Each MySQL database becomes a PostgreSQL schema of the same name (the default).
    #[default]
    SameAsDatabase,
    /// Every table goes into this one schema (table names must not collide across databases).
    Fixed(String),
    /// Each MySQL database `db` becomes the schema `<prefix><db>`.
    Prefix(String),
}

/// What to do with MySQL zero dates (`0000-00-00`, `2024-00-10`, zero TIMESTAMP),
/// which no PostgreSQL date type can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ZeroDatePolicy {
    /// Store `-infinity` (valid for date, timestamp and timestamptz). The default.
    #[default]
    MinusInfinity,
    /// Store NULL (fails with a typed error on NOT NULL columns).
    Null,
    /// Fail with a typed error (`ErrorKind::SinkValue`).
    Error,
}

/// The format the snapshot's `COPY` streams rows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CopyFormat {
    /// PostgreSQL's binary COPY format: the server stores bytes without parsing
    /// text. Tables with a type override, an SQL transform or PostGIS columns
    /// still go as text. The default.
    #[default]
    Binary,
    /// COPY's text format for every table.
    Text,
}

impl FromStr for CopyFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "binary" => Ok(CopyFormat::Binary),
            "text" => Ok(CopyFormat::Text),
            other => Err(Error::config(format!("unknown COPY format {other:?} (binary or text)"))),
        }
    }
}

/// How change batches are turned into statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApplyMode {
    /// Runs of row changes become one statement each (`INSERT ... SELECT FROM unnest(...)
    /// ON CONFLICT`, `DELETE ... USING unnest(...)`). The default.
    #[default]
    SetBased,
    /// One statement per row change (for comparison, and as a fallback).
    RowByRow,
}

/// PostgreSQL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS only if the server insists.
    Allow,
    /// TLS if the server offers it.
    Prefer,
    /// TLS, no certificate check.
    Require,
    /// TLS with the certificate checked against the root certificate.
    VerifyCa,
    /// Like `VerifyCa`, and the host name must match.
    VerifyFull,
}

impl SslMode {
    fn to_sqlx(self) -> sqlx::postgres::PgSslMode {
        use sqlx::postgres::PgSslMode as M;
        match self {
            SslMode::Disable => M::Disable,
            SslMode::Allow => M::Allow,
            SslMode::Prefer => M::Prefer,
            SslMode::Require => M::Require,
            SslMode::VerifyCa => M::VerifyCa,
            SslMode::VerifyFull => M::VerifyFull,
        }
    }
}

impl FromStr for SslMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" | "verify_ca" => SslMode::VerifyCa,
            "verify-full" | "verify_full" => SslMode::VerifyFull,
            other => return Err(Error::config(format!("unknown sslmode {other:?}"))),
        })
    }
}

/// Options of a [`PgSink`](crate::PgSink), in the style of sqlx's connect options:
/// by-value setters, [`FromStr`] for a `postgres://` URL (with `sslmode`,
/// `sslrootcert`, ...), serde, [`validate`](Self::validate).
///
/// ```
/// use synchdb_postgres::{PgSinkOptions, SchemaNaming, ZeroDatePolicy};
/// let opts: PgSinkOptions = "postgres://app:secret@db.example:5432/replica?sslmode=require".parse().unwrap();
/// let opts = opts
///     .pool_size(8)
///     .schema_naming(SchemaNaming::Prefix("mysql_".into()))
///     .zero_dates(ZeroDatePolicy::Null)
///     .source_type("tinyint(1)", "boolean")
///     .column_type("shop.orders.note", "varchar(500)");
/// opts.validate().unwrap();
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PgSinkOptions {
    /// Serialized with its password as `***` (never written out).
    #[serde(serialize_with = "serialize_redacted")]
    url: String,
    ssl_mode: Option<SslMode>,
    pool_size: u32,
    #[serde(with = "secs")]
    acquire_timeout: Duration,
    schema_naming: SchemaNaming,
    state_schema: String,
    zero_dates: ZeroDatePolicy,
    text_nul: TextNul,
    column_types: BTreeMap<String, String>,
    source_types: BTreeMap<String, String>,
    apply_mode: ApplyMode,
    postgis: bool,
    fulltext_gin: bool,
    copy_buffer_bytes: usize,
    copy_format: CopyFormat,
    keyless_index: bool,
    apply_workers: u32,
}

impl std::fmt::Debug for PgSinkOptions {
    /// Prints the URL with its password as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSinkOptions")
            .field("url", &redact_url(&self.url))
            .field("ssl_mode", &self.ssl_mode)
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("schema_naming", &self.schema_naming)
            .field("state_schema", &self.state_schema)
            .field("zero_dates", &self.zero_dates)
            .field("text_nul", &self.text_nul)
            .field("column_types", &self.column_types)
            .field("source_types", &self.source_types)
            .field("apply_mode", &self.apply_mode)
            .field("postgis", &self.postgis)
            .field("fulltext_gin", &self.fulltext_gin)
            .field("copy_buffer_bytes", &self.copy_buffer_bytes)
            .field("copy_format", &self.copy_format)
            .field("keyless_index", &self.keyless_index)
            .field("apply_workers", &self.apply_workers)
            .finish()
    }
}

fn serialize_redacted<S: serde::Serializer>(url: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// A connection URL with its password (and a `password=` query parameter) as `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> =
                u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            if pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
                u.query_pairs_mut().clear().extend_pairs(pairs.iter().map(|(k, v)| {
                    (k.as_str(), if k.eq_ignore_ascii_case("password") { "***" } else { v.as_str() })
                }));
            }
            u.to_string()
        }
        // Not a URL: keep what cannot be a password (the scheme).
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***"),
            None => "***".into(),
        },
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl Default for PgSinkOptions {
    fn default() -> Self {
        PgSinkOptions {
            url: DEFAULT_URL.into(),
            ssl_mode: None,
            pool_size: DEFAULT_POOL_SIZE,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            schema_naming: SchemaNaming::SameAsDatabase,
            state_schema: DEFAULT_STATE_SCHEMA.into(),
            zero_dates: ZeroDatePolicy::MinusInfinity,
            text_nul: TextNul::Error,
            column_types: BTreeMap::new(),
            source_types: BTreeMap::new(),
            apply_mode: ApplyMode::SetBased,
            postgis: true,
            fulltext_gin: true,
            copy_buffer_bytes: DEFAULT_COPY_BUFFER_BYTES,
            copy_format: CopyFormat::Binary,
            keyless_index: true,
            apply_workers: 1,
        }
    }
}

impl FromStr for PgSinkOptions {
    type Err = Error;
    /// Parse a `postgres://` (or `postgresql://`) URL; everything else keeps its default.
    fn from_str(s: &str) -> Result<Self> {
        PgSinkOptions::new().url(s).checked_url()
    }
}

impl PgSinkOptions {
    /// The defaults (connecting to [`DEFAULT_URL`]).
    pub fn new() -> Self {
        Self::default()
    }

    fn checked_url(self) -> Result<Self> {
        self.connect_options()?;
        Ok(self)
    }

    /// The connection URL (`postgres://user:password@host:port/database?sslmode=...`).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Override the URL's `sslmode`.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// Most connections open at once (default [`DEFAULT_POOL_SIZE`]).
    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// How long to wait for a pooled connection before failing with a transient error.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Where source tables go (default: a schema per MySQL database, same name).
    pub fn schema_naming(mut self, naming: SchemaNaming) -> Self {
        self.schema_naming = naming;
        self
    }

    /// The schema of the state tables (default [`DEFAULT_STATE_SCHEMA`]).
    pub fn state_schema(mut self, schema: impl Into<String>) -> Self {
        self.state_schema = schema.into();
        self
    }

    /// The zero-date policy (default `-infinity`).
    pub fn zero_dates(mut self, policy: ZeroDatePolicy) -> Self {
        self.zero_dates = policy;
        self
    }

    /// What to do with NUL (0x00) characters in text, which PostgreSQL text
    /// cannot hold: a typed error (the default), strip them, or replace each
    /// with U+FFFD. A column's mapping rule ([`ColumnSchema::text_nul`]) overrides it.
    ///
    /// [`ColumnSchema::text_nul`]: synchdb_types::ColumnSchema::text_nul
    pub fn text_nul(mut self, policy: TextNul) -> Self {
        self.text_nul = policy;
        self
    }

    /// Use this PostgreSQL type for one column, `db.table.column` (exact case).
    /// A mapping converter's [`ColumnSchema::target_type`](synchdb_types::ColumnSchema) wins over it.
    pub fn column_type(mut self, column: impl Into<String>, pg_type: impl Into<String>) -> Self {
        self.column_types.insert(column.into(), pg_type.into());
        self
    }

    /// Use this PostgreSQL type for every column of a source type, written as
    /// synchdb prints it (`tinyint(1)`, `bigint unsigned`, `decimal(10,2)`, `datetime(6)`).
    pub fn source_type(mut self, source: impl Into<String>, pg_type: impl Into<String>) -> Self {
        self.source_types.insert(source.into().to_ascii_lowercase(), pg_type.into());
        self
    }

    /// Set-based (default) or row-by-row apply.
    pub fn apply_mode(mut self, mode: ApplyMode) -> Self {
        self.apply_mode = mode;
        self
    }

    /// Store GEOMETRY as PostGIS `geometry` when the extension is installed in the
    /// target database (default `true`); otherwise, or when `false`, as `bytea` EWKB.
    pub fn postgis(mut self, allow: bool) -> Self {
        self.postgis = allow;
        self
    }

    /// Build FULLTEXT indexes as GIN indexes on `to_tsvector('simple', ...)` (default
    /// `true`); `false` skips them (with a log line).
    pub fn fulltext_gin(mut self, on: bool) -> Self {
        self.fulltext_gin = on;
        self
    }

    /// Size of the pieces a COPY stream is sent in (default 1 MiB): bounds the memory of
    /// one chunk whatever its row count.
    pub fn copy_buffer_bytes(mut self, bytes: usize) -> Self {
        self.copy_buffer_bytes = bytes;
        self
    }

    /// The format of the snapshot's `COPY` (default [`CopyFormat::Binary`]; tables
    /// binary cannot carry go as text either way).
    pub fn copy_format(mut self, format: CopyFormat) -> Self {
        self.copy_format = format;
        self
    }

    /// Whether a table without a primary or unique key gets an index of its own
    /// on the replica (default on), named `<table>_synchdb_match`, over one
    /// column of a bounded type (the first integer, date/time, numeric or uuid
    /// column, else a `varchar(n)` with n ≤ 600), unless the source gave the
    /// table an index already. Updates and deletes of such a table find their
    /// rows through it (or through the source's index) instead of reading the
    /// whole table, so their cost does not grow with the table. The index is
    /// only a means of finding rows: rows are still matched on every column.
    pub fn keyless_index(mut self, on: bool) -> Self {
        self.keyless_index = on;
        self
    }

    /// Sessions a batch of row changes is applied by (default 1). With more,
    /// a batch of at least 256 row events and no DDL is split over that many
    /// sessions — tables joined by foreign keys (and tables whose changes
    /// must keep their order) together, the rows of other tables by a hash of
    /// their key — and committed by two-phase commit, the checkpoint in the
    /// decision: exactly once still, but a reader can see a batch's parts
    /// commit a moment apart. Needs PostgreSQL's `max_prepared_transactions`
    /// of at least this many, and a pool of at least one more connection.
    pub fn apply_workers(mut self, n: u32) -> Self {
        self.apply_workers = n;
        self
    }

    /// The apply sessions (see [`apply_workers`](Self::apply_workers)).
    pub fn get_apply_workers(&self) -> u32 {
        self.apply_workers
    }

    /// Whether keyless tables get their own index (see [`keyless_index`](Self::keyless_index)).
    pub fn get_keyless_index(&self) -> bool {
        self.keyless_index
    }

    /// The pool size.
    pub fn get_pool_size(&self) -> u32 {
        self.pool_size
    }

    /// The apply mode.
    pub fn get_apply_mode(&self) -> ApplyMode {
        self.apply_mode
    }

    /// The state schema.
    pub fn get_state_schema(&self) -> &str {
        &self.state_schema
    }

    /// The zero-date policy.
    pub fn get_zero_dates(&self) -> ZeroDatePolicy {
        self.zero_dates
    }

    /// The NUL-character policy.
    pub fn get_text_nul(&self) -> TextNul {
        self.text_nul
    }

    pub(crate) fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }
    pub(crate) fn get_copy_buffer_bytes(&self) -> usize {
        self.copy_buffer_bytes
    }
    /// The format the snapshot's `COPY` uses.
    pub fn get_copy_format(&self) -> CopyFormat {
        self.copy_format
    }
    pub(crate) fn get_postgis(&self) -> bool {
        self.postgis
    }
    pub(crate) fn get_fulltext_gin(&self) -> bool {
        self.fulltext_gin
    }

    /// Check every setting; `connect` calls it.
    pub fn validate(&self) -> Result<()> {
        self.connect_options()?;
        if self.pool_size == 0 {
            return Err(Error::config("pool_size must be at least 1"));
        }
        if self.apply_workers > 1 && self.pool_size <= self.apply_workers {
            return Err(Error::config(format!(
                "apply_workers = {} needs a pool of at least {} connections (pool_size is {})",
                self.apply_workers,
                self.apply_workers + 1,
                self.pool_size
            )));
        }
        self.validate_mapping()
    }

    /// Check every setting but the connection ones (URL, pool); used by
    /// [`PgSink::with_pool`](crate::PgSink::with_pool).
    pub fn validate_mapping(&self) -> Result<()> {
        if self.apply_workers == 0 || self.apply_workers > 64 {
            return Err(Error::config("apply_workers must be between 1 and 64"));
        }
        if self.copy_buffer_bytes < 1024 {
            return Err(Error::config("copy_buffer_bytes must be at least 1024"));
        }
        check_identifier("state schema", &self.state_schema)?;
        match &self.schema_naming {
            SchemaNaming::SameAsDatabase => {}
            SchemaNaming::Fixed(s) => check_identifier("schema", s)?,
            SchemaNaming::Prefix(p) if p.len() >= MAX_IDENTIFIER_BYTES => {
                return Err(Error::config("schema prefix is too long"))
            }
            SchemaNaming::Prefix(_) => {}
        }
        for (k, v) in self.column_types.iter().chain(&self.source_types) {
            if v.trim().is_empty() || v.contains(';') {
                return Err(Error::config(format!("invalid PostgreSQL type {v:?} for {k}")));
            }
        }
        for k in self.column_types.keys() {
            if k.splitn(3, '.').count() != 3 {
                return Err(Error::config(format!("column override {k:?} is not db.table.column")));
            }
        }
        Ok(())
    }

    /// The sqlx connect options (session time zone UTC).
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(Error::config("the PostgreSQL URL must start with postgres:// or postgresql://"));
        }
        let mut o = PgConnectOptions::from_str(&self.url)
            .map_err(|e| Error::config("invalid PostgreSQL URL").with_source(e))?;
        if let Some(m) = self.ssl_mode {
            o = o.ssl_mode(m.to_sqlx());
        }
        // Bulk statements of big transactions take seconds by design: sqlx's
        // per-statement logs (and its slow-statement warnings) would flood the log.
        use sqlx::ConnectOptions;
        let o = o
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Debug, std::time::Duration::from_secs(10));
        Ok(o.application_name("synchdb").options([("TimeZone", "UTC")]))
    }

    /// The PostgreSQL schema of a source table.
    pub fn target_schema(&self, table: &TableId) -> String {
        match &self.schema_naming {
            SchemaNaming::SameAsDatabase => table.database.clone(),
            SchemaNaming::Fixed(s) => s.clone(),
            SchemaNaming::Prefix(p) => format!("{p}{}", table.database),
        }
    }

    /// The PostgreSQL type override of a column, if any (per column first, then per source type).
    pub(crate) fn override_for(&self, table: &TableId, column: &str, source_type: &str) -> Option<&str> {
        let key = format!("{}.{}.{}", table.database, table.table, column);
        self.column_types
            .get(&key)
            .or_else(|| self.source_types.get(&source_type.to_ascii_lowercase()))
            .map(String::as_str)
    }
}

/// Fail when `name` is empty or longer than PostgreSQL keeps.
pub(crate) fn check_identifier(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES || name.contains('\0') {
        return Err(Error::new(
            synchdb_core::ErrorKind::SinkSchema,
            format!("{what} name {name:?} is empty or longer than {MAX_IDENTIFIER_BYTES} bytes"),
        ));
    }
    // Every PostgreSQL table has these system columns; a user column cannot take the name.
    const SYSTEM: [&str; 6] = ["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];
    if what == "column" && SYSTEM.contains(&name) {
        return Err(Error::new(
            synchdb_core::ErrorKind::SinkSchema,
            format!(
                "column name {name:?} is a PostgreSQL system column name; rename the column with a \
                 mapping rule (`rename = \"...\"`) or leave it out"
            ),
        )
        .with_column(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_column_names_are_refused_with_the_column_named() {
        let e = check_identifier("column", "ctid").unwrap_err();
        assert_eq!((e.kind(), e.column()), (synchdb_core::ErrorKind::SinkSchema, Some("ctid")));
        assert!(check_identifier("column", "CTID").is_ok(), "quoted upper case is another name");
        assert!(check_identifier("table", "xmin").is_ok());
    }

    #[test]
    fn debug_hides_the_password() {
        let o: PgSinkOptions =
            "postgres://u:s3cret@h:5432/db?password=other&sslmode=require".parse().unwrap();
        let d = format!("{o:?}");
        assert!(!d.contains("s3cret") && !d.contains("other"), "{d}");
        assert!(d.contains("u:***@h:5432/db"), "{d}");
        assert_eq!(redact_url("not a url with s3cret"), "***");
        let json = serde_json::to_string(&o).unwrap();
        assert!(!json.contains("s3cret") && !json.contains("other"), "{json}");
    }

    #[test]
    fn url_and_setters() {
        let o: PgSinkOptions = "postgres://u:p@h:5433/db?sslmode=verify-full".parse().unwrap();
        let c = o.connect_options().unwrap();
        assert_eq!(c.get_port(), 5433);
        assert_eq!(c.get_database(), Some("db"));
        assert!(matches!(c.get_ssl_mode(), sqlx::postgres::PgSslMode::VerifyFull));
        let o = o.ssl_mode(SslMode::Disable).pool_size(0);
        assert!(matches!(o.connect_options().unwrap().get_ssl_mode(), sqlx::postgres::PgSslMode::Disable));
        assert!(o.validate().is_err());
        assert!("mysql://x".parse::<PgSinkOptions>().is_err());
        let json = serde_json::to_string(&PgSinkOptions::new().source_type("TINYINT(1)", "boolean")).unwrap();
        let back: PgSinkOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back.override_for(&TableId::new("a", "b"), "c", "tinyint(1)"), Some("boolean"));
        let partial: PgSinkOptions = serde_json::from_str(r#"{"pool_size": 2}"#).unwrap();
        assert_eq!(partial.get_pool_size(), 2);
        assert_eq!(partial.get_state_schema(), DEFAULT_STATE_SCHEMA);
    }

    #[test]
    fn naming() {
        let t = TableId::new("shop", "Orders");
        assert_eq!(PgSinkOptions::new().target_schema(&t), "shop");
        let o = PgSinkOptions::new().schema_naming(SchemaNaming::Prefix("my_".into()));
        assert_eq!(o.target_schema(&t), "my_shop");
        let o = PgSinkOptions::new().schema_naming(SchemaNaming::Fixed("all".into()));
        assert_eq!(o.target_schema(&t), "all");
        assert!(PgSinkOptions::new().column_type("a.b", "int").validate().is_err());
    }
}
