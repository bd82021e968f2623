//! Opening the binlog stream and the side connection for look-ups.

use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::{BinlogPosition, GtidSet, TableId, TableSchema};

use super::schema::Lookup;
use crate::options::MySqlSourceOptions;

/// Facts about the server, read when the stream opens.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerInfo {
    /// MariaDB (GTID events 162/163, `@slave_connect_state`).
    pub(crate) mariadb: bool,
    /// Whether events carry a checksum (`binlog_checksum` is not `NONE`).
    pub(crate) checksum: bool,
    /// `lower_case_table_names`: 0 names are case-sensitive, 1 stored in lower
    /// case, 2 stored as given and compared in lower case.
    pub(crate) lower_case_table_names: u8,
}

impl ServerInfo {
    /// A table name from statement text as the server names the table:
    /// lower case under `lower_case_table_names=1`; under `2`, the tracked
    /// table of the same name in another case (`known`), if any.
    pub(crate) fn fold_table(&self, id: &mut TableId, known: &dyn Fn(&TableId) -> Option<TableId>) {
        match self.lower_case_table_names {
            1 => {
                id.database = id.database.to_lowercase();
                id.table = id.table.to_lowercase();
            }
            2 => {
                if let Some(k) = known(id) {
                    *id = k;
                }
            }
            _ => {}
        }
    }

    /// A database name from statement text as the server names it.
    pub(crate) fn fold_database(&self, db: &str) -> String {
        if self.lower_case_table_names == 1 {
            db.to_lowercase()
        } else {
            db.to_string()
        }
    }
}

/// Where to start the stream.
#[derive(Debug, Clone)]
pub(crate) enum StreamStart {
    /// A binlog file and offset.
    File(BinlogPosition),
    /// A MariaDB GTID set (`@slave_connect_state`). `strict`: the server
    /// must hold that exact GTID (`@slave_gtid_strict_mode`), used when
    /// continuing on another server than the one the position came from.
    MariaGtid { set: GtidSet, strict: bool },
}

fn conn_error(what: &str, e: mysql_async::Error) -> Error {
    Error::new(classify_kind(&e), what.to_string()).with_source(e)
}

/// The kind of a driver error (see [`crate::errors`]); server errors of
/// the replication protocol that it does not know are settings problems.
pub(crate) fn classify_kind(e: &mysql_async::Error) -> ErrorKind {
    crate::errors::kind_or(e, ErrorKind::SourceSetting)
}

/// Open a replication connection and request the binlog from `start`.
pub(crate) async fn open(
    opts: &MySqlSourceOptions,
    start: &StreamStart,
    heartbeat: Duration,
) -> Result<(BinlogStream, ServerInfo)> {
    let mut conn = opts.connect().await?;
    let (version, checksum, lctn): (String, String, u8) = conn
        .query_first("SELECT VERSION(), @@global.binlog_checksum, @@lower_case_table_names")
        .await
        .map_err(|e| conn_error("cannot read the server version", e))?
        .unwrap_or_default();
    let info = ServerInfo {
        mariadb: version.to_ascii_lowercase().contains("mariadb"),
        checksum: !checksum.eq_ignore_ascii_case("NONE"),
        lower_case_table_names: lctn,
    };
    let mut setup = vec![
        "SET @master_binlog_checksum = @@global.binlog_checksum".to_string(),
        format!("SET @master_heartbeat_period = {}", heartbeat.as_nanos().max(1_000_000)),
    ];
    if info.mariadb {
        setup.push("SET @mariadb_slave_capability = 4".into());
    }
    let file = match start {
        StreamStart::File(p) => p.clone(),
        StreamStart::MariaGtid { set, strict } => {
            setup.push(format!("SET @slave_connect_state = '{set}'"));
            setup.push(format!("SET @slave_gtid_strict_mode = {}", u8::from(*strict)));
            BinlogPosition::new("", 4)
        }
    };
    for sql in &setup {
        conn.query_drop(sql).await.map_err(|e| conn_error(&format!("`{sql}` failed"), e))?;
    }
    let request =
        BinlogStreamRequest::new(opts.get_server_id()).with_filename(file.file.as_bytes()).with_pos(file.pos);
    let stream = conn.get_binlog_stream(request).await.map_err(|e| start_error(e, start, opts))?;
    Ok((stream, info))
}

/// An error of a stream opened at `start` (on the server of `opts`).
pub(crate) fn start_error(e: mysql_async::Error, start: &StreamStart, opts: &MySqlSourceOptions) -> Error {
    match start {
        StreamStart::File(at) => stream_error(e, at),
        StreamStart::MariaGtid { set, .. } => {
            let server = format!("{}:{}", opts.get_host(), opts.get_port());
            let text = e.to_string();
            match classify_kind(&e) {
                ErrorKind::SourcePositionLost if text.contains("purged") => Error::new(
                    ErrorKind::SourcePositionLost,
                    format!(
                        "the binlog of {server} no longer holds GTID {set} (purged): the changes since cannot be \
                         replicated, a fresh snapshot is needed (--snapshot always)"
                    ),
                ),
                ErrorKind::SourcePositionLost => Error::new(
                    ErrorKind::SourceDiverged,
                    format!(
                        "the source {server} cannot continue from GTID {set}, the position already applied: its \
                         binlog lacks that transaction or holds others in its place (a GTID gap after a failover); \
                         replicating from it would leave the target diverged"
                    ),
                ),
                kind => Error::new(kind, format!("binlog stream from GTID {set} on {server} failed")),
            }
            .with_source(e)
        }
    }
}

/// Check that the server holds every transaction of `applied` (MariaDB:
/// `@@gtid_binlog_pos` per domain), before continuing there from a GTID
/// position that came from another server. A replica still applying its
/// relay log is waited for (a transient error); any other server lacking
/// transactions is [`ErrorKind::SourceDiverged`], naming both positions.
pub(crate) async fn check_gtid_history(
    conn: &mut Conn,
    applied: &GtidSet,
    resume: &BinlogPosition,
    server: &str,
) -> Result<()> {
    let have: Option<String> = conn
        .query_first("SELECT @@global.gtid_binlog_pos")
        .await
        .map_err(|e| conn_error("cannot read @@gtid_binlog_pos", e))?;
    let have = have.unwrap_or_default();
    let theirs: GtidSet = have.parse().map_err(|e| {
        Error::new(ErrorKind::SourceSetting, format!("cannot read @@gtid_binlog_pos {have:?} of {server}"))
            .with_source(e)
    })?;
    if theirs.contains(applied) {
        return Ok(());
    }
    let catching_up = match conn.query::<mysql_async::Row, _>("SHOW ALL SLAVES STATUS").await {
        Ok(rows) => rows.iter().any(|r| {
            r.columns_ref().iter().position(|c| c.name_str() == "Slave_SQL_Running").is_some_and(|i| {
                r.as_ref(i).is_some_and(|v| matches!(v, mysql_async::Value::Bytes(b) if b == b"Yes"))
            })
        }),
        Err(_) => false,
    };
    if catching_up {
        return Err(Error::new(
            ErrorKind::SourceConnection,
            format!(
                "the source {server} is a replica behind the position already applied (its binlog has GTID \
                 {theirs}, the target holds {applied}); waiting for it to catch up"
            ),
        ));
    }
    Err(Error::new(
        ErrorKind::SourceDiverged,
        format!(
            "GTID gap: the source {server} has executed GTID {theirs}, but the target already holds transactions \
             up to GTID {applied} (last applied binlog position {resume} on the previous server). The server lacks \
             transactions the target applied; replicating from it would leave the target diverged. Point the \
             pipeline at a server that has them, or take a fresh snapshot (--snapshot always)"
        ),
    )
    .with_position(resume.clone()))
}

/// A stream error: a purged or missing binlog names the file and suggests a snapshot.
pub(crate) fn stream_error(e: mysql_async::Error, at: &BinlogPosition) -> Error {
    match classify_kind(&e) {
        ErrorKind::SourcePositionLost => Error::new(
            ErrorKind::SourcePositionLost,
            format!(
                "the binlog at {at} is no longer available on the server (purged or unknown file {:?}); \
                 take a fresh snapshot (snapshot mode `always`, or clear the pipeline state)",
                at.file
            ),
        )
        .with_position(at.clone())
        .with_source(e),
        kind => Error::new(kind, format!("binlog stream from {at} failed"))
            .with_position(at.clone())
            .with_source(e),
    }
}

/// The server's current binlog position (`SHOW MASTER STATUS`).
pub(crate) async fn master_position(conn: &mut Conn) -> Result<BinlogPosition> {
    Ok(binlog_status(conn).await?.0)
}

/// The server's current binlog position and the rest of its status row
/// (`SHOW MASTER STATUS`, or `SHOW BINARY LOG STATUS` on MySQL 8.4, which
/// removed the old name). The one reader of the position, for every path.
pub(crate) async fn binlog_status(conn: &mut Conn) -> Result<(BinlogPosition, mysql_async::Row)> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| conn_error("SHOW BINARY LOG STATUS failed", e))?,
        Err(e) => return Err(conn_error("SHOW MASTER STATUS failed", e)),
    };
    let mut row = row.ok_or_else(|| {
        Error::new(ErrorKind::SourceSetting, "SHOW MASTER STATUS is empty: the binary log is off (log_bin)")
    })?;
    let file: String = row.take(0).unwrap_or_default();
    let pos: u64 = row.take(1).unwrap_or_default();
    Ok((BinlogPosition::new(file, pos), row))
}

/// MariaDB: the GTID position of a binlog position (`BINLOG_GTID_POS`).
///
/// `Ok(None)` when the server does not know the position (another server's
/// file) or has no such function; a lost connection is an error (transient),
/// never taken for "not this server".
pub(crate) async fn gtid_at(conn: &mut Conn, at: &BinlogPosition) -> Result<Option<GtidSet>> {
    match conn
        .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (at.file.clone(), at.pos))
        .await
    {
        Ok(r) => Ok(r.flatten().and_then(|s| s.parse().ok())),
        Err(mysql_async::Error::Server(_)) => Ok(None),
        Err(e) => Err(conn_error("BINLOG_GTID_POS failed", e)),
    }
}

/// `SHOW BINARY LOGS`: the server's binlog files in order with their sizes.
pub(crate) async fn binlog_files(conn: &mut Conn) -> Result<Vec<(String, u64)>> {
    let rows: Vec<mysql_async::Row> =
        conn.query("SHOW BINARY LOGS").await.map_err(|e| conn_error("SHOW BINARY LOGS failed", e))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let name: Option<String> = r.get(0);
            let size: Option<u64> = r.get(1);
            Some((name?, size.unwrap_or(0)))
        })
        .collect())
}

/// MariaDB: whether the binlog position `at`, where the GTID set `applied`
/// was reached, is a position of this server's own binlog (and not of
/// another server of the topology whose files have the same names).
///
/// `BINLOG_GTID_POS(file, pos)` answers when it can read the file up to
/// `at`. It answers NULL both for another server's position and when the
/// file holds, before `at`, an event larger than the session's
/// `max_allowed_packet` (a row of several large BLOBs): the server reads the
/// file from its start and gives up there. In that case the file is judged
/// without reading through it: it is listed here and long enough, the
/// GTID sets at its start and end bracket `applied`, and the last
/// transaction `applied` holds in some domain was written by this server
/// (its `@@server_id`). A replica promoted after a failover fails the last
/// test: the transactions came from the old primary.
pub(crate) async fn holds_position(conn: &mut Conn, at: &BinlogPosition, applied: &GtidSet) -> Result<bool> {
    if let Some(here) = gtid_at(conn, at).await? {
        return Ok(&here == applied);
    }
    let GtidSet::MariaDb(last) = applied else { return Ok(false) };
    let files = binlog_files(conn).await?;
    let Some(i) = files.iter().position(|(name, _)| *name == at.file) else { return Ok(false) };
    if files[i].1 < at.pos {
        return Ok(false);
    }
    let Some(start) = gtid_at(conn, &BinlogPosition::new(at.file.clone(), 4)).await? else {
        return Ok(false);
    };
    let end = match files.get(i + 1) {
        Some((next, _)) => gtid_at(conn, &BinlogPosition::new(next.clone(), 4)).await?,
        None => {
            let head: Option<String> = conn
                .query_first("SELECT @@global.gtid_binlog_pos")
                .await
                .map_err(|e| conn_error("cannot read @@gtid_binlog_pos", e))?;
            head.and_then(|h| h.parse().ok())
        }
    };
    let Some(end) = end else { return Ok(false) };
    let server_id: Option<u32> = conn
        .query_first("SELECT @@global.server_id")
        .await
        .map_err(|e| conn_error("cannot read @@server_id", e))?;
    let written_here = server_id.is_some_and(|id| last.values().any(|g| g.server == id));
    let same = applied.contains(&start) && end.contains(applied) && written_here;
    tracing::info!(
        position = %at,
        gtid = %applied,
        file_starts_at = %start,
        file_ends_at = %end,
        same_server = same,
        "BINLOG_GTID_POS cannot read the binlog up to the stored position (an event larger than the server's \
         max_allowed_packet before it, or another server's file): judged by the file's GTID range and the \
         server id"
    );
    Ok(same)
}

/// The side connection for information_schema look-ups, opened on demand.
pub(crate) struct SideConn {
    pub(crate) opts: MySqlSourceOptions,
    pub(crate) conn: Option<Conn>,
}

impl SideConn {
    pub(crate) async fn get(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            self.conn = Some(self.opts.connect().await?);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// Run `f`; on a failure the connection is dropped so the next call reconnects.
    async fn charset_query(&mut self, sql: &str, params: Vec<String>) -> Result<Option<String>> {
        let conn = self.get().await?;
        match conn.exec_first::<Option<String>, _, _>(sql, params).await {
            Ok(v) => Ok(v.flatten()),
            Err(e) => {
                self.conn = None;
                Err(conn_error("information_schema look-up failed", e))
            }
        }
    }
}

#[async_trait]
impl Lookup for SideConn {
    async fn default_charset(&mut self, database: &str, table: Option<&str>) -> Result<Option<String>> {
        match table {
            Some(t) => {
                self.charset_query(
                    "SELECT c.CHARACTER_SET_NAME FROM information_schema.TABLES t \
                     JOIN information_schema.COLLATIONS c ON c.COLLATION_NAME = t.TABLE_COLLATION \
                     WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ?",
                    vec![database.to_string(), t.to_string()],
                )
                .await
            }
            None => {
                self.charset_query(
                    "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                    vec![database.to_string()],
                )
                .await
            }
        }
    }

    async fn discover(&mut self, table: &TableId) -> Result<Option<TableSchema>> {
        let conn = self.get().await?;
        let r = crate::discovery::discover_table(conn, table).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}
