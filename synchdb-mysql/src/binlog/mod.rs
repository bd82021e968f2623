//! Follow mode: read the binlog, decode row and DDL events, and send whole
//! source transactions with exact positions.
//!
//! [`follow`] registers as a replica (mysql_async's binlog stream), groups
//! events into transactions (MariaDB GTID or `BEGIN` ... `XID`/`COMMIT`;
//! each DDL statement is its own transaction), keeps the tracked schema of
//! every selected table at the position read (`schema`), and reconnects with
//! backoff after a lost connection, resuming at the last transaction
//! boundary it passed: a partly received transaction is read again, a
//! transaction already sent is never sent twice.
//!
//! Positions: an event's [`EventMeta::position`] is where its binlog event
//! starts; a transaction's `end_position` is the end of its `XID`/`COMMIT`
//! event (where the next one starts) with the GTID set after it.

mod mariadb_events;
mod query;
mod resync;
mod rows;
mod schema;
mod stream;

pub(crate) use stream::{binlog_files, binlog_status, gtid_at, master_position};
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use mysql_async::binlog::events::{
    Event, EventData, GtidEvent, OptionalMetaExtractor, QueryEvent, RotateEvent, StatusVarVal, TableMapEvent,
};
use mysql_async::binlog::EventType;
use mysql_async::consts::Flags2;
use mysql_async::BinlogStream;
use mysql_common::binlog::consts::{RowsEventFlags, StatusVarKey};
use synchdb_core::{Error, ErrorKind, Result, SourceContext, SourceMessage};
use synchdb_types::{
    BinlogPosition, ChangeEvent, EventMeta, GtidSet, MariaGtid, Position, SchemaChange, SchemaChangeEvent,
    TableId, TableSchema, Transaction, TruncateEvent,
};
use tracing::{debug, info, warn};

use self::mariadb_events as maria;
use self::query::*;
use self::schema::{Applied, Schemas};
use self::stream::{ServerInfo, SideConn, StreamStart};
use crate::ddl::{classify, dml_tables, leading_words, parse_ddl, quick_tables, QueryKind};
use crate::options::MySqlSourceOptions;

/// How long reconnecting may keep failing before follow mode gives up.
pub(crate) const RECONNECT_BUDGET: Duration = Duration::from_secs(180);
/// Largest delay between two reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Follow the binlog from `start` until shutdown, a stop condition or a
/// failure that reconnecting cannot fix.
///
/// - `start`: the first transaction sent is the first that ends after it.
/// - `schemas`: the tracked schemas of the selected tables as of `start`.
/// - `skip_before`: row events of these tables at positions before the
///   given one are dropped (tables whose snapshot was read at a later point).
/// - `resync`: a resync the pipeline stored (joined or started again), and
///   `requests`: tables to copy again right away (newly selected ones).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn follow(
    opts: &MySqlSourceOptions,
    host: usize,
    preflight: &crate::preflight::ServerInfo,
    ctx: &SourceContext,
    start: Position,
    schemas: Vec<TableSchema>,
    skip_before: Vec<(TableId, Position)>,
    resync: Option<synchdb_core::ResyncState>,
    requests: Vec<(Vec<TableId>, String)>,
) -> Result<()> {
    let mut f = Follower::new(opts, preflight, ctx, start, schemas, skip_before);
    f.host = host;
    f.side.opts = opts.for_host(host);
    f.resume_resync(resync);
    for (ids, reason) in requests {
        f.request_resync(ids, reason);
    }
    f.run().await
}

/// The open transaction.
#[derive(Debug, Default)]
struct PendingTx {
    events: Vec<ChangeEvent>,
    /// A rows event was written with `FOREIGN_KEY_CHECKS=0`.
    no_fk_checks: bool,
    /// Bytes of row events held in `events`.
    bytes: usize,
    /// Events already sent as [`SourceMessage::TransactionPart`]s.
    sent: usize,
}

/// A transaction holding more decoded events than this (or more row-event
/// bytes than [`PIECE_BYTES`]) is sent in pieces, so memory stays bounded
/// whatever the transaction's size.
const PIECE_EVENTS: usize = 10_000;
/// See [`PIECE_EVENTS`].
const PIECE_BYTES: usize = 8 << 20;
/// At most this many messages wait in the pipeline's channel when a piece is sent.
const PIECES_QUEUED: usize = 2;

#[derive(Debug, Clone)]
enum TxGtid {
    Maria(MariaGtid),
    MySql(uuid::Uuid, u64),
}

impl std::fmt::Display for TxGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxGtid::Maria(g) => write!(f, "{g}"),
            TxGtid::MySql(sid, n) => write!(f, "{sid}:{n}"),
        }
    }
}

/// What the event loop does next.
enum Flow {
    Continue,
    Stop,
}

struct Follower<'a> {
    opts: &'a MySqlSourceOptions,
    preflight: &'a crate::preflight::ServerInfo,
    ctx: &'a SourceContext,
    /// A resync in progress (see `resync`).
    resync: Option<resync::ActiveResync>,
    /// Resyncs asked for, started at the next boundary.
    resync_requests: Vec<(Vec<TableId>, String)>,
    /// Resync copies started again in a row because a table changed under them.
    resync_restarts: u32,
    schemas: Schemas,
    skip_before: HashMap<TableId, BinlogPosition>,
    /// Transactions ending at or before this are not sent.
    start: Position,
    /// The last transaction boundary passed (sent or skipped): a reconnect resumes here.
    resume: Position,
    gtid: Option<GtidSet>,
    sequence: u64,
    /// The server followed: its index in the options' hosts (failover), and
    /// the side connection to it (options pointed at it).
    host: usize,
    side: SideConn,
    stop_at: Option<BinlogPosition>,
    last_heartbeat: Option<Instant>,
    /// Whether the last boundary passed was sent as a transaction (else a heartbeat may carry it).
    boundary_sent: bool,
    // Per connection:
    info: ServerInfo,
    file: String,
    fde_seen: bool,
    tables: HashMap<u64, Option<TableId>>,
    tx: Option<PendingTx>,
    tx_gtid: Option<TxGtid>,
    progressed: bool,
}

impl<'a> Follower<'a> {
    fn new(
        opts: &'a MySqlSourceOptions,
        preflight: &'a crate::preflight::ServerInfo,
        ctx: &'a SourceContext,
        start: Position,
        schemas: Vec<TableSchema>,
        skip_before: Vec<(TableId, Position)>,
    ) -> Self {
        Follower {
            opts,
            preflight,
            ctx,
            resync: None,
            resync_requests: Vec::new(),
            resync_restarts: 0,
            schemas: Schemas::new(schemas, opts.get_table_filter().clone()),
            skip_before: skip_before.into_iter().map(|(t, p)| (t, p.binlog)).collect(),
            gtid: start.gtid.clone(),
            resume: start.clone(),
            start,
            sequence: 0,
            host: 0,
            side: SideConn { opts: opts.for_host(0), conn: None },
            stop_at: None,
            last_heartbeat: None,
            boundary_sent: true,
            info: ServerInfo::default(),
            file: String::new(),
            fde_seen: false,
            tables: HashMap::new(),
            tx: None,
            tx_gtid: None,
            progressed: false,
        }
    }

    async fn run(&mut self) -> Result<()> {
        // Resyncs asked for at start (and by operators meanwhile) begin at the start position.
        self.take_commands().await?;
        if let Flow::Stop = self.resync_at_boundary().await? {
            return Ok(());
        }
        let mut failing_since: Option<Instant> = None;
        let mut attempt = 0u32;
        let mut diverged = 0usize;
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            if self.ctx.is_shutdown() {
                return Ok(());
            }
            let r = self.connect_and_read().await;
            let hosts = self.opts.get_hosts().len();
            let e = match r {
                Ok(()) => return Ok(()),
                Err(e) if e.kind().is_transient() => e,
                // Another server of the topology may still hold the history.
                Err(e) if e.kind() == ErrorKind::SourceDiverged && diverged + 1 < hosts => {
                    diverged += 1;
                    e
                }
                Err(e) => return Err(e),
            };
            if self.progressed {
                failing_since = None;
                attempt = 0;
                diverged = 0;
            }
            let since = *failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= RECONNECT_BUDGET {
                return Err(Error::new(
                    ErrorKind::SourceConnection,
                    format!("gave up reconnecting to the source after {:?}", RECONNECT_BUDGET),
                )
                .with_position(self.resume.binlog.clone())
                .with_source(e));
            }
            attempt += 1;
            let mut delay = Duration::from_millis(100).saturating_mul(1 << attempt.min(10)).min(MAX_BACKOFF);
            self.side.conn = None;
            if hosts > 1 {
                // Failover: the next server of the list; a round of them
                // before the backoff grows.
                self.host = (self.host + 1) % hosts;
                self.side.opts = self.opts.for_host(self.host);
                if attempt % hosts as u32 != 0 {
                    delay = Duration::from_millis(100);
                }
                warn!(error = %e, attempt, ?delay, resume = %self.resume,
                    next = %self.server_name(),
                    "binlog stream failed; trying the next source server");
            } else {
                warn!(error = %e, attempt, ?delay, resume = %self.resume, "binlog connection lost; reconnecting");
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection: open the stream at the resume point and read until
    /// stop, shutdown or error.
    async fn connect_and_read(&mut self) -> Result<()> {
        self.progressed = false;
        self.tx = None;
        self.tx_gtid = None;
        self.tables.clear();
        self.fde_seen = false;
        let start = self.choose_start().await?;
        if self.opts.get_stop_at_caught_up() && self.stop_at.is_none() {
            let conn = self.side.get().await?;
            let target = stream::master_position(conn).await?;
            info!(%target, "follow mode stops at the current server position");
            self.stop_at = Some(target);
        }
        if self.caught_up() {
            return Ok(());
        }
        let heartbeat = self.opts.get_heartbeat_interval();
        let (mut stream, info) = stream::open(&self.side.opts, &start, heartbeat).await?;
        self.info = info;
        if self.gtid.is_none() && self.info.mariadb && !self.resume.binlog.file.is_empty() {
            let at = self.resume.binlog.clone();
            if let Ok(conn) = self.side.get().await {
                // Best effort: an unknown GTID position is read again on the next start.
                self.gtid = stream::gtid_at(conn, &at).await.ok().flatten();
            }
        }
        if let StreamStart::File(p) = &start {
            self.file = p.file.clone();
        }
        debug!(start = %self.resume, "binlog stream open");
        let idle_limit = heartbeat.saturating_mul(3) + Duration::from_secs(5);
        let mut shutdown = self.ctx.shutdown.clone();
        let commands = self.ctx.commands.clone();
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                _ = commands.notified() => {
                    if let Flow::Stop = self.take_commands().await? {
                        return Ok(());
                    }
                    continue;
                }
                n = tokio::time::timeout(idle_limit, stream.next()) => n,
            };
            let event = match next {
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::SourceConnection,
                        format!("no binlog event or heartbeat for {idle_limit:?}"),
                    ))
                }
                Ok(None) => {
                    return Err(Error::new(
                        ErrorKind::SourceConnection,
                        "the server closed the binlog stream",
                    ))
                }
                Ok(Some(Err(e))) if !self.progressed => {
                    return Err(stream::start_error(e, &start, &self.side.opts));
                }
                Ok(Some(Err(e))) => {
                    let at = self.resume.binlog.clone();
                    return Err(stream::stream_error(e, &at));
                }
                Ok(Some(Ok(event))) => event,
            };
            self.progressed = true;
            match self.handle(&stream, event).await? {
                Flow::Continue => {}
                Flow::Stop => return Ok(()),
            }
        }
    }

    /// Where to open the stream on the current server: the resume binlog
    /// position when it belongs to this server's history, else (another
    /// server of the topology after a failover, or a re-pointed URL) the
    /// resume GTID position, once the server is known to hold every
    /// transaction applied.
    async fn choose_start(&mut self) -> Result<StreamStart> {
        let gtid = match &self.resume.gtid {
            Some(g @ GtidSet::MariaDb(_)) if !g.is_empty() => Some(g.clone()),
            _ => None,
        };
        if self.resume.binlog.file.is_empty() {
            return match gtid {
                // After a switch: the server is checked on each connection.
                Some(set) => {
                    let server = self.server_name();
                    let conn = self.side.get().await?;
                    stream::check_gtid_history(conn, &set, &self.resume.binlog, &server).await?;
                    Ok(StreamStart::MariaGtid { set, strict: self.start.binlog.file.is_empty() })
                }
                None => Err(Error::config(
                    "follow mode needs a binlog file and position, or a MariaDB GTID set, to start from",
                )),
            };
        }
        let Some(set) = gtid else { return Ok(StreamStart::File(self.resume.binlog.clone())) };
        let server = self.server_name();
        let conn = self.side.get().await?;
        match stream::holds_position(conn, &self.resume.binlog, &set).await {
            Ok(true) => return Ok(StreamStart::File(self.resume.binlog.clone())),
            Ok(false) => {}
            Err(e) => {
                // Reconnect on the next attempt; the follower retries the start.
                self.side.conn = None;
                return Err(e);
            }
        }
        stream::check_gtid_history(conn, &set, &self.resume.binlog, &server).await?;
        self.rebase_on_gtid()?;
        info!(
            %server,
            gtid = %set,
            "the stored binlog position is not in this server's history (another server of the topology): continuing from the GTID position"
        );
        Ok(StreamStart::MariaGtid { set, strict: true })
    }

    /// `host:port` of the server followed.
    fn server_name(&self) -> String {
        format!("{}:{}", self.side.opts.get_host(), self.side.opts.get_port())
    }

    /// Continue by GTID on another server: binlog positions of the old one
    /// mean nothing there, so the file-position start and stop points are
    /// dropped (the server itself sends only what follows the GTID set) and
    /// the position is known again from the first event read.
    fn rebase_on_gtid(&mut self) -> Result<()> {
        let resume = self.resume.binlog.clone();
        self.skip_before.retain(|_, p| *p > resume);
        if let Some((table, p)) = self.skip_before.iter().next() {
            return Err(Error::new(
                ErrorKind::SourcePositionLost,
                format!(
                    "cannot continue on another server while table {table} still waits for its snapshot point {p} \
                     of the previous server (a failover right after a snapshot); take a fresh snapshot (--snapshot always)"
                ),
            )
            .with_table(table.clone())
            .with_position(resume));
        }
        if let Some(r) = &self.resync {
            return Err(Error::new(
                ErrorKind::SourcePositionLost,
                format!(
                    "cannot continue on another server while tables are copied again (resync at {} of the previous \
                     server); take a fresh snapshot (--snapshot always)",
                    r.position
                ),
            )
            .with_position(resume));
        }
        self.start = Position { binlog: BinlogPosition::new("", 0), gtid: self.resume.gtid.clone() };
        self.resume.binlog = BinlogPosition::new("", 0);
        self.stop_at = None;
        Ok(())
    }

    /// Table names from statement text as the server names the tables (`lower_case_table_names`).
    fn fold_tables(&self, mut tables: Vec<TableId>) -> Vec<TableId> {
        for t in &mut tables {
            self.info.fold_table(t, &|id| self.schemas.find_ci(id));
        }
        tables
    }

    fn caught_up(&self) -> bool {
        self.stop_at.as_ref().is_some_and(|t| !self.resume.binlog.file.is_empty() && self.resume.binlog >= *t)
            && self.resync.is_none()
            && self.resync_requests.is_empty()
    }

    fn position(&self, pos: u64) -> BinlogPosition {
        BinlogPosition::new(self.file.clone(), pos)
    }

    async fn handle(&mut self, stream: &BinlogStream, event: Event) -> Result<Flow> {
        let header = event.header();
        let raw = header.event_type_raw();
        let end = u64::from(header.log_pos());
        let begin = end.saturating_sub(u64::from(header.event_size()));
        let time = DateTime::<Utc>::from_timestamp(i64::from(header.timestamp()), 0).unwrap_or_default();
        let at = self.position(begin);
        let bad = |what: &str, e: std::io::Error| {
            Error::new(ErrorKind::SourceValue, format!("cannot read a {what} event"))
                .with_position(at.clone())
                .with_source(e)
        };
        match raw {
            x if x == EventType::ROTATE_EVENT as u8 => {
                let r: RotateEvent<'_> = event.read_event().map_err(|e| bad("rotate", e))?;
                let mut name = r.name_raw().to_vec();
                if !self.fde_seen && self.info.checksum && name.len() > 4 {
                    // mysql_async issue 189: the first rotate comes before the format
                    // description, so its checksum is not removed.
                    name.truncate(name.len() - 4);
                }
                self.file = String::from_utf8_lossy(&name).into_owned();
                debug!(file = %self.file, pos = r.position(), "rotate");
            }
            x if x == EventType::FORMAT_DESCRIPTION_EVENT as u8 => self.fde_seen = true,
            maria::GTID_EVENT => {
                let g = maria::decode_gtid(header.server_id(), event.data())
                    .map_err(|e| bad("MariaDB GTID", std::io::Error::other(e)))?;
                self.tx_gtid = Some(TxGtid::Maria(g.gtid));
                if !g.standalone() {
                    self.tx = Some(PendingTx::default());
                }
            }
            maria::GTID_LIST_EVENT => {
                let set = maria::decode_gtid_list(event.data())
                    .map_err(|e| bad("GTID list", std::io::Error::other(e)))?;
                if self.gtid.is_none() {
                    self.gtid = Some(set);
                }
            }
            maria::BINLOG_CHECKPOINT_EVENT => {
                if let Ok(file) = maria::decode_binlog_checkpoint(event.data()) {
                    debug!(%file, "binlog checkpoint");
                }
            }
            maria::ANNOTATE_ROWS_EVENT => {}
            x if x == EventType::GTID_EVENT as u8 => {
                let g: GtidEvent = event.read_event().map_err(|e| bad("GTID", e))?;
                self.tx_gtid = Some(TxGtid::MySql(uuid::Uuid::from_bytes(g.sid()), g.gno()));
            }
            x if x == EventType::QUERY_EVENT as u8 => {
                let q: QueryEvent<'_> = event.read_event().map_err(|e| bad("query", e))?;
                let text = query_text(&q);
                let sql = crate::ddl::without_set_statement(&text);
                match classify(sql) {
                    QueryKind::Begin => {
                        if self.tx.as_ref().is_none_or(|t| !t.events.is_empty()) {
                            self.tx = Some(PendingTx::default());
                        }
                    }
                    QueryKind::Commit => return self.commit(end, time).await,
                    QueryKind::Rollback => {
                        // Only a transaction touching non-transactional tables logs ROLLBACK: drop it.
                        debug!(at = %at, "rolled-back transaction dropped");
                        if self.tx.as_ref().is_some_and(|t| t.sent > 0) {
                            return Err(Error::new(
                                ErrorKind::SourceSchema,
                                "a transaction too large to hold in memory, already applied in pieces, \
                                 ends with ROLLBACK (it touched non-transactional tables)",
                            )
                            .with_position(at.clone()));
                        }
                        self.tx = Some(PendingTx::default());
                        return self.commit(end, time).await;
                    }
                    QueryKind::TableDdl => {
                        let db = q.schema().into_owned();
                        let sql = sql.to_string();
                        let fk_checks = foreign_key_checks(&q);
                        let strict = strict_mode(&q);
                        let flags = (fk_checks, strict, q.error_code());
                        return self.ddl(&sql, &db, flags, (begin, end), time).await;
                    }
                    QueryKind::Dml => {
                        // Row changes as SQL text cannot be replayed exactly: stop rather
                        // than let the replica drift when they touch a replicated table.
                        let db = q.schema();
                        // `Some(None)`: the tables cannot be told, but the default database is replicated.
                        let hit: Option<Option<TableId>> =
                            match dml_tables(sql, &db).map(|t| self.fold_tables(t)) {
                                Some(tables) => {
                                    tables.into_iter().find(|t| self.schemas.is_selected(t)).map(Some)
                                }
                                None => self.schemas.tracks_database(&db).then_some(None),
                            };
                        if let Some(Some(table)) = &hit {
                            if self.opts.get_unlogged_changes() == crate::options::UnloggedChanges::Resync {
                                let what = format!("statement-based row changes ({:?})", short(sql));
                                self.unlogged_rows(table.clone(), &what, &at)?;
                                if self.tx.is_none() {
                                    return self.commit(end, time).await;
                                }
                                return Ok(Flow::Continue);
                            }
                        }
                        if let Some(table) = hit {
                            let mut e = Error::new(
                                ErrorKind::SourceSetting,
                                format!(
                                    "statement-based row changes in the binlog ({:?}): every session writing \
                                     replicated tables must use binlog_format=ROW (a MEMORY table emptied by a \
                                     server restart logs this too); re-snapshot the table to go on",
                                    short(sql)
                                ),
                            )
                            .with_position(at);
                            if let Some(table) = table {
                                e = e.with_table(table);
                            }
                            return Err(e);
                        }
                        if self.tx.is_none() {
                            return self.commit(end, time).await;
                        }
                    }
                    QueryKind::Other => {
                        if self.tx.is_none() {
                            // A standalone statement (GRANT, CREATE VIEW, ...): a boundary.
                            return self.commit(end, time).await;
                        }
                    }
                }
            }
            x if x == EventType::XID_EVENT as u8 => return self.commit(end, time).await,
            x if x == EventType::TABLE_MAP_EVENT as u8 => {
                let tme: TableMapEvent<'_> = event.read_event().map_err(|e| bad("table map", e))?;
                let id = TableId::new(tme.database_name(), tme.table_name());
                if self.must_join_before(&id, &at) {
                    if let Flow::Stop = self.join_resync().await? {
                        return Ok(Flow::Stop);
                    }
                }
                self.table_map(&tme, &at).await?;
            }
            x if is_rows_event(x) => {
                let data = match event.read_data().map_err(|e| bad("rows", e))? {
                    Some(EventData::RowsEvent(d)) => d,
                    _ => return Ok(Flow::Continue),
                };
                let table_id = data.table_id();
                let id = match self.tables.get(&table_id) {
                    Some(Some(id)) => id.clone(),
                    Some(None) => return Ok(Flow::Continue),
                    None => {
                        return Err(Error::new(
                            ErrorKind::SourceValue,
                            format!("rows event for unknown table id {table_id}"),
                        )
                        .with_position(at))
                    }
                };
                if self.skip_before.get(&id).is_some_and(|p| at < *p) {
                    return Ok(Flow::Continue);
                }
                let schema = self
                    .schemas
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| Error::internal(format!("table {id} selected but not tracked")))?;
                let tme = stream.get_tme(table_id).ok_or_else(|| {
                    Error::internal(format!("no table map for table id {table_id}")).with_position(at.clone())
                })?;
                let meta = EventMeta { position: at, commit_time: time, tx: 0, index: 0 };
                let tx = self.tx.get_or_insert_with(PendingTx::default);
                tx.no_fk_checks |= data.flags().contains(RowsEventFlags::NO_FOREIGN_KEY_CHECKS);
                tx.bytes += event.data().len();
                rows::decode_rows(&data, tme, &schema, &meta, &mut tx.events)?;
                if tx.events.len() >= PIECE_EVENTS || tx.bytes >= PIECE_BYTES {
                    if let Flow::Stop = self.send_piece(end, time).await? {
                        return Ok(Flow::Stop);
                    }
                }
            }
            x if x == EventType::HEARTBEAT_EVENT as u8
                && self.tx.is_none()
                && end > 0
                && !self.file.is_empty() =>
            {
                let p = Position { binlog: self.position(end), gtid: self.gtid.clone() };
                if p >= self.resume {
                    self.resume = p;
                    self.boundary_sent = false;
                }
                return self.heartbeat(Some(Utc::now()), false).await;
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }

    /// A table map: remember whether its table is selected, and check the
    /// tracked schema against it.
    async fn table_map(&mut self, tme: &TableMapEvent<'_>, at: &BinlogPosition) -> Result<()> {
        let id = TableId::new(tme.database_name(), tme.table_name());
        if !self.schemas.is_selected(&id) {
            self.tables.insert(tme.table_id(), None);
            return Ok(());
        }
        let names = column_names(tme);
        let count = tme.columns_count() as usize;
        let tracked = self.schemas.get(&id).cloned().expect("selected");
        if !agrees(&tracked, count, names.as_deref()) {
            // The tracked schema missed a change (information_schema may hold a later
            // definition, so it cannot tell): the table is copied again at a new point,
            // its rows until then skipped.
            let why = format!(
                "the binlog has {count} columns{} but the tracked schema has {} ({})",
                names.as_ref().map(|n| format!(" ({})", n.join(", "))).unwrap_or_default(),
                tracked.columns.len(),
                tracked.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            );
            self.schema_lost(vec![id], &why, at)?;
            self.tables.insert(tme.table_id(), None);
            return Ok(());
        }
        self.tables.insert(tme.table_id(), Some(id));
        Ok(())
    }

    /// End of a transaction (XID, COMMIT, or a boundary statement).
    async fn commit(&mut self, end: u64, time: DateTime<Utc>) -> Result<Flow> {
        let mut tx = self.tx.take().unwrap_or_default();
        let gtid = self.take_gtid();
        if tx.sent > 0 {
            offset_indexes(&mut tx.events, tx.sent);
        }
        self.finish(tx.events, !tx.no_fk_checks, gtid, end, time, tx.sent > 0).await
    }

    /// Send the events of the open transaction so far as a piece of it
    /// (unless the transaction ends before the start position: then they are
    /// dropped, as the whole transaction will be).
    async fn send_piece(&mut self, end: u64, time: DateTime<Utc>) -> Result<Flow> {
        let at = Position { binlog: self.position(end), gtid: self.gtid.clone() };
        let before_start = !self.start.binlog.file.is_empty() && at <= self.start;
        let Some(tx) = self.tx.as_mut() else { return Ok(Flow::Continue) };
        let mut events = std::mem::take(&mut tx.events);
        tx.bytes = 0;
        if before_start {
            return Ok(Flow::Continue);
        }
        offset_indexes(&mut events, tx.sent);
        tx.sent += events.len();
        let sequence = self.sequence + 1;
        for e in &mut events {
            if let Some(m) = event_meta_mut(e) {
                m.tx = sequence;
                m.commit_time = time;
            }
        }
        debug!(events = events.len(), sent = tx.sent, at = %at.binlog, "large transaction: a piece sent");
        let part = Transaction::new(sequence, at, time, events).with_foreign_key_checks(!tx.no_fk_checks);
        // The channel is bounded in messages, not bytes: pieces wait until few
        // messages are queued, so memory holds a few pieces, not a channel full.
        let sender = &self.ctx.sender;
        while sender.max_capacity() - sender.capacity() > PIECES_QUEUED && !*self.ctx.shutdown.borrow() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        if !self.send(SourceMessage::TransactionPart(part)).await {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    fn take_gtid(&mut self) -> Option<String> {
        let g = self.tx_gtid.take()?;
        match (&g, &mut self.gtid) {
            (TxGtid::Maria(m), Some(set @ GtidSet::MariaDb(_))) => set.add_mariadb(*m),
            (TxGtid::Maria(m), None) => {
                let mut s = GtidSet::empty_mariadb();
                s.add_mariadb(*m);
                self.gtid = Some(s);
            }
            (TxGtid::MySql(sid, n), Some(set @ GtidSet::MySql(_))) => set.add_mysql(*sid, *n),
            _ => {}
        }
        Some(g.to_string())
    }

    /// Send the transaction ending at `end` (or pass its boundary when it is
    /// empty or before the start position).
    async fn finish(
        &mut self,
        mut events: Vec<ChangeEvent>,
        foreign_key_checks: bool,
        gtid: Option<String>,
        end: u64,
        time: DateTime<Utc>,
        streamed: bool,
    ) -> Result<Flow> {
        let end_position = Position { binlog: self.position(end), gtid: self.gtid.clone() };
        let before_start = !self.start.binlog.file.is_empty() && end_position <= self.start;
        self.resume = end_position.clone();
        // A transaction sent in pieces is always ended, even with no events left.
        if (events.is_empty() && !streamed) || before_start {
            self.boundary_sent = false;
            return self.heartbeat(Some(time), false).await;
        }
        self.sequence += 1;
        for e in &mut events {
            if let Some(m) = event_meta_mut(e) {
                m.tx = self.sequence;
                m.commit_time = time;
            }
        }
        let tx = Transaction::new(self.sequence, end_position, time, events)
            .with_gtid(gtid)
            .with_foreign_key_checks(foreign_key_checks);
        if !self.send(SourceMessage::Transaction(tx)).await {
            return Ok(Flow::Stop);
        }
        self.boundary_sent = true;
        if let Flow::Stop = self.resync_at_boundary().await? {
            return Ok(Flow::Stop);
        }
        if self.caught_up() {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Send a heartbeat at the resume position, at most every heartbeat
    /// interval (always when caught up, so the stop position is stored).
    async fn heartbeat(&mut self, source_time: Option<DateTime<Utc>>, force: bool) -> Result<Flow> {
        if let Flow::Stop = self.resync_at_boundary().await? {
            return Ok(Flow::Stop);
        }
        let caught_up = self.caught_up();
        let due = self.last_heartbeat.is_none_or(|t| t.elapsed() >= self.opts.get_heartbeat_interval());
        if !self.boundary_sent && (due || force || caught_up) && !self.resume.binlog.file.is_empty() {
            let msg = SourceMessage::Heartbeat { position: self.resume.clone(), source_time };
            if !self.send(msg).await {
                return Ok(Flow::Stop);
            }
            self.last_heartbeat = Some(Instant::now());
            self.boundary_sent = true;
        }
        Ok(if caught_up { Flow::Stop } else { Flow::Continue })
    }

    /// Send, giving up on shutdown; `false` when the pipeline is gone or shutting down.
    async fn send(&self, msg: SourceMessage) -> bool {
        let mut shutdown = self.ctx.shutdown.clone();
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => false,
            r = self.ctx.send(msg) => r.is_ok(),
        }
    }
}

/// Number the events of a piece after the `sent` events before it.
fn offset_indexes(events: &mut [ChangeEvent], sent: usize) {
    for e in events {
        if let Some(m) = event_meta_mut(e) {
            m.index += sent as u32;
        }
    }
}

fn event_meta_mut(e: &mut ChangeEvent) -> Option<&mut EventMeta> {
    Some(match e {
        ChangeEvent::Insert(x) => &mut x.meta,
        ChangeEvent::Update(x) => &mut x.meta,
        ChangeEvent::Delete(x) => &mut x.meta,
        ChangeEvent::Truncate(x) => &mut x.meta,
        ChangeEvent::Schema(x) => &mut x.meta,
        _ => return None,
    })
}

fn is_rows_event(t: u8) -> bool {
    [
        EventType::WRITE_ROWS_EVENT_V1,
        EventType::UPDATE_ROWS_EVENT_V1,
        EventType::DELETE_ROWS_EVENT_V1,
        EventType::WRITE_ROWS_EVENT,
        EventType::UPDATE_ROWS_EVENT,
        EventType::DELETE_ROWS_EVENT,
        EventType::PARTIAL_UPDATE_ROWS_EVENT,
    ]
    .iter()
    .any(|e| *e as u8 == t)
}

/// Column names from the table map (`binlog_row_metadata=FULL`).
fn column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta()).ok()?;
    let names: Vec<String> =
        meta.iter_column_name().filter_map(|n| n.ok().map(|n| n.name().into_owned())).collect();
    (names.len() == tme.columns_count() as usize && !names.is_empty()).then_some(names)
}

fn agrees(schema: &TableSchema, count: usize, names: Option<&[String]>) -> bool {
    let visible = schema.columns.len();
    // MariaDB adds a hidden `DB_ROW_HASH_n` column per long UNIQUE key (on
    // TEXT/BLOB or beyond the index length), after the table's own columns.
    let hidden = count > visible
        && names.is_some_and(|n| n.len() == count && n[visible..].iter().all(|x| is_hidden_hash(x)));
    (visible == count || hidden)
        && names.is_none_or(|n| n.iter().zip(&schema.columns).all(|(a, c)| a.eq_ignore_ascii_case(&c.name)))
}

/// `DB_ROW_HASH_1`, `DB_ROW_HASH_2`, ...: MariaDB's long-unique hash columns.
fn is_hidden_hash(name: &str) -> bool {
    name.strip_prefix("DB_ROW_HASH_").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}
