//! The consistent, parallel, resumable snapshot.
//!
//! # One consistent point
//!
//! Every row of the snapshot is read as of one binlog position (and the
//! GTID position at it), which becomes the start of follow mode. Two
//! methods give that point:
//!
//! **Locking method** (Debezium's "minimal" locking) — runs when the user
//! has `RELOAD` and more than one reader is configured
//! (`snapshot_workers > 1`). Needs `RELOAD`, `SELECT`, and `REPLICATION
//! CLIENT`/`BINLOG MONITOR`.
//! 1. the N reader connections are opened and set up first;
//! 2. the coordinator runs `FLUSH TABLES WITH READ LOCK` (writes wait; with
//!    `lock_wait_timeout` = 60 s so a long-running statement makes the
//!    snapshot fail instead of blocking writes for long);
//! 3. the table schemas are read from `information_schema` (DDL is blocked,
//!    so they match the snapshot point);
//! 4. every reader runs `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`;
//! 5. the position is read with `SHOW MASTER STATUS` (and
//!    `BINLOG_GTID_POS(file, pos)` on MariaDB); on MariaDB each reader's
//!    `binlog_snapshot_file`/`binlog_snapshot_position` status must equal it;
//! 6. `UNLOCK TABLES`. Writes were blocked for the duration of steps 3–5
//!    (milliseconds to a second, depending on the number of tables).
//!
//! **Single-connection method** — runs on MariaDB when the user lacks
//! `RELOAD` or one reader is configured. Needs `SELECT` and `REPLICATION
//! CLIENT`/`BINLOG MONITOR`; takes no lock. One connection runs
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT`; MariaDB reports the binlog
//! position of exactly that read view in the status variables
//! `binlog_snapshot_file` / `binlog_snapshot_position`. The one connection
//! reads every chunk, so tables are not read in parallel. Schemas are read
//! just after the transaction starts; a DDL statement racing with the
//! snapshot start is not detected by this method. (MySQL has no
//! `binlog_snapshot_*` variables: on MySQL the locking method, hence
//! `RELOAD`, is required.)
//!
//! # Chunks
//!
//! A table with a primary key of orderable types (integers, DECIMAL,
//! strings, binary strings, temporal types, UUID/INET) is split into
//! primary-key ranges `(lower, upper]`: for a single integer key by
//! splitting `MIN..MAX` into `ceil(rows / chunk_rows)` equal ranges (rows
//! from the table statistics, checked by a bounded count); for other keys
//! by walking the key in the snapshot (`SELECT key ... WHERE key > last
//! ORDER BY key LIMIT 2 OFFSET chunk_rows-1`, index-only). Each chunk is one
//! streaming range query (`WHERE key > ? AND key <= ? ORDER BY key`; a
//! composite key compares as `a > ? OR (a = ? AND b > ?)`); rows go out in
//! batches of at most `batch_rows` rows and 4 MiB through the chunk's channel of capacity 4, so
//! memory stays bounded whatever the table size. A table without a usable
//! key is one chunk read by one streaming query. The N readers take chunks
//! from a shared queue (largest tables first).
//!
//! Values are read with the binary protocol (prepared statements) in a
//! session with `time_zone = '+00:00'` and `character_set_results = NULL`,
//! and go through the one decoder ([`crate::decode`]), selecting
//! `set_col + 0` for SET and `CAST(col AS BINARY(n))` for UUID/INET4/INET6
//! so that the shapes are the binlog's.
//!
//! # Resume
//!
//! The plan (position T1, tables, chunks) is stored when the snapshot starts
//! and every durable chunk is recorded with the position it was read at.
//! When an interrupted snapshot resumes, a *new* consistent snapshot (T2)
//! is opened and only the chunks not yet done are read, at T2;
//! `SnapshotStarted { resumed: true }` carries the original plan. Follow
//! mode still starts at T1, so the changes between T1 and T2 are applied
//! again: harmless for tables with a primary key (the sink applies by key,
//! idempotently), but a keyless table whose chunk was read after T1 would
//! get those rows twice. Such tables are listed in `restart` (the sink
//! empties them before their chunk is written) and handed to follow mode as
//! [`SkipBefore`]: their row events before the position their chunk was
//! read at are dropped.
//!
//! When resuming would break consistency — a planned table was dropped or
//! its schema changed since T1, or T1's binlog file is gone — the snapshot
//! restarts cleanly instead (new plan, every table in `restart`,
//! `resumed: false`) and a warning says why.
//!
//! The skip points are stored with the state when the snapshot finishes
//! ([`synchdb_core::PipelineState::skip_before`]), so a restart of follow
//! mode between T1 and T2 skips them again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as My};
use synchdb_core::{
    chunk_channel, ChunkInfo, ChunkSender, Error, ErrorKind, Result, SnapshotPlan, SnapshotProgress,
    SourceContext, SourceMessage,
};
use synchdb_types::{
    BinlogPosition, ColumnSchema, ColumnType, GtidSet, Position, Row, TableId, TableSchema, Value,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::decode::decode_value;
use crate::discovery::{discover_tables, Flavor};
use crate::filter::TableFilter;
use crate::options::MySqlSourceOptions;
use crate::preflight::{self, ServerInfo};
use crate::table_lock::{check_still_transactional, non_transactional, Locker, TableLock};

/// Row events of `table` at positions before `position` are dropped by
/// follow mode: the table's snapshot rows were read at `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkipBefore {
    /// The table.
    pub(crate) table: TableId,
    /// Where its snapshot was read.
    pub(crate) position: Position,
}

/// What follow mode needs after a snapshot.
#[derive(Debug)]
pub(crate) struct SnapshotOutcome {
    /// Where follow mode starts (the plan's position).
    pub(crate) position: Position,
    /// The snapshot tables' schemas.
    pub(crate) schemas: Vec<TableSchema>,
    /// Keyless tables read after the plan's position.
    pub(crate) skip_before: Vec<SkipBefore>,
}

/// How the snapshot starts.
#[derive(Debug)]
pub(crate) enum Start {
    /// A new snapshot. `restart` empties every table (a previous snapshot or
    /// follow state exists).
    Fresh { restart: bool },
    /// Resume an interrupted snapshot; `stored` are the tracked schemas as of the plan.
    Resume { progress: SnapshotProgress, stored: Vec<TableSchema> },
}

/// A resync copy's error about a table that changed on the source while it
/// was copied: transient (the copy starts again at a new point, where the
/// table is read as it is then, or found gone).
pub(crate) fn changed_under_copy(e: Error) -> Error {
    let message = format!("{} (the table changed on the source during the copy)", e.message());
    let mut out = Error::new(ErrorKind::SourceConnection, message);
    if let Some(t) = e.table() {
        out = out.with_table(t.clone());
    }
    out.with_source(crate::errors::ChangedUnderCopy(e))
}

/// A connection error of the snapshot (reading rows, positions).
fn read_error(what: &str, e: mysql_async::Error) -> Error {
    crate::errors::error(format!("snapshot: {what} failed"), e)
}

/// The server's current binlog position (and GTID position).
pub(crate) async fn current_position(conn: &mut Conn, flavor: Flavor) -> Result<Position> {
    let (binlog, mut row) = crate::binlog::binlog_status(conn).await?;
    let gtid = match flavor {
        Flavor::MariaDb => match mariadb_gtid_at(conn, &binlog).await? {
            Some(g) => Some(g),
            // BINLOG_GTID_POS reads the file from its start and gives up at an
            // event larger than the session's max_allowed_packet: then the
            // server's own GTID position, when the binlog did not move meanwhile.
            None => {
                let head: Option<String> = conn
                    .query_first("SELECT @@global.gtid_binlog_pos")
                    .await
                    .map_err(|e| read_error("reading @@gtid_binlog_pos", e))?;
                let (again, _) = crate::binlog::binlog_status(conn).await?;
                head.filter(|_| again == binlog)
                    .and_then(|h| h.parse::<GtidSet>().ok())
                    .filter(|g| !g.is_empty())
            }
        },
        Flavor::MySql => {
            let executed: Option<String> = row.take(4);
            executed
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.replace(['\n', ' '], "").parse())
                .transpose()
                .map_err(|e: synchdb_types::ParseError| {
                    Error::new(ErrorKind::SourceSetting, "invalid Executed_Gtid_Set").with_source(e)
                })?
        }
    };
    Ok(Position { binlog, gtid })
}

/// MariaDB: the GTID position at a binlog position (`BINLOG_GTID_POS`).
async fn mariadb_gtid_at(conn: &mut Conn, binlog: &BinlogPosition) -> Result<Option<GtidSet>> {
    let s: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (binlog.file.as_str(), binlog.pos))
        .await
        .map_err(|e| read_error("BINLOG_GTID_POS", e))?;
    match s.flatten().filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e: synchdb_types::ParseError| {
            Error::new(ErrorKind::SourceSetting, "invalid GTID position").with_source(e)
        }),
    }
}

/// MariaDB: the binlog position of this connection's consistent snapshot.
async fn snapshot_status(conn: &mut Conn) -> Result<BinlogPosition> {
    let rows: Vec<(String, String)> =
        conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await.map_err(|e| read_error("SHOW STATUS", e))?;
    let get = |n: &str| rows.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let file = get("binlog_snapshot_file").unwrap_or_default();
    let pos = get("binlog_snapshot_position").and_then(|p| p.parse().ok()).unwrap_or(0);
    if file.is_empty() {
        return Err(Error::new(
            ErrorKind::SourceSetting,
            "the server reports no binlog_snapshot_file: the single-connection snapshot needs MariaDB with log_bin ON",
        ));
    }
    Ok(BinlogPosition::new(file, pos))
}

/// Open a reader connection with the session settings the decoder expects.
async fn open_reader(opts: &MySqlSourceOptions) -> Result<Conn> {
    let mut conn = opts.connect().await?;
    conn.query_drop(
        "SET SESSION time_zone = '+00:00', SESSION character_set_results = NULL, \
         SESSION net_write_timeout = 3600, SESSION net_read_timeout = 3600",
    )
    .await
    .map_err(|e| read_error("session setup", e))?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(|e| read_error("session setup", e))?;
    Ok(conn)
}

async fn begin_snapshot(conn: &mut Conn) -> Result<()> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|e| read_error("START TRANSACTION WITH CONSISTENT SNAPSHOT", e))
}

/// Readers inside one consistent snapshot, the position and the schemas.
struct Opened {
    readers: Vec<Conn>,
    position: Position,
    tables: Vec<TableSchema>,
    /// READ locks on the non-transactional tables, taken at the consistent point.
    lock: Option<Arc<TableLock>>,
    /// The tables that were non-transactional at the consistent point (locked
    /// or not); the others are checked to still be transactional once read.
    plain: Arc<HashSet<TableId>>,
}

/// Open the consistent snapshot with the method the privileges allow.
async fn open_snapshot(
    opts: &MySqlSourceOptions,
    info: &ServerInfo,
    coordinator: &mut Conn,
    filter: &TableFilter,
) -> Result<Opened> {
    let workers = opts.get_snapshot_workers().max(1);
    let locking = (workers > 1 && info.can_lock()) || info.flavor == Flavor::MySql;
    if info.flavor == Flavor::MySql && !info.can_lock() {
        return Err(Error::new(
            ErrorKind::SourcePrivilege,
            format!(
                "source user {} lacks the RELOAD privilege: on MySQL the consistent snapshot needs \
                 FLUSH TABLES WITH READ LOCK; fix with: GRANT RELOAD ON *.* TO {}",
                info.grants.user, info.grants.user
            ),
        ));
    }
    if !locking {
        if workers > 1 {
            info!(
                "the source user lacks RELOAD: snapshot with one connection (START TRANSACTION WITH CONSISTENT \
                 SNAPSHOT, no lock) instead of {workers} readers"
            );
        }
        let mut reader = open_reader(opts).await?;
        // Without a global lock, the non-transactional tables are locked
        // before the snapshot starts: unchanged from its point until read.
        let databases = crate::discovery::selected_databases(coordinator, filter).await?;
        let plain = non_transactional(coordinator, filter, &databases).await?;
        let lock = if plain.is_empty() {
            None
        } else {
            Locker::open(opts).await?.lock(plain.clone()).await?.map(Arc::new)
        };
        begin_snapshot(&mut reader).await?;
        let binlog = snapshot_status(&mut reader).await?;
        let gtid = mariadb_gtid_at(coordinator, &binlog).await?;
        let tables = discover_tables(coordinator, filter).await?;
        let plain = Arc::new(plain.into_iter().collect());
        return Ok(Opened {
            readers: vec![reader],
            position: Position { binlog, gtid },
            tables,
            lock,
            plain,
        });
    }

    let mut readers = Vec::with_capacity(workers);
    for _ in 0..workers {
        readers.push(open_reader(opts).await?);
    }
    let locker = Locker::open(opts).await?;
    coordinator
        .query_drop("SET SESSION lock_wait_timeout = 60")
        .await
        .map_err(|e| read_error("session setup", e))?;
    let started = std::time::Instant::now();
    coordinator
        .query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .map_err(|e| read_error("FLUSH TABLES WITH READ LOCK", e))?;
    let locked = async {
        let tables = discover_tables(coordinator, filter).await?;
        let mut databases: Vec<String> = tables.iter().map(|t| t.id.database.clone()).collect();
        databases.dedup();
        let plain = non_transactional(coordinator, filter, &databases).await?;
        let lock = locker.lock(plain.clone()).await?.map(Arc::new);
        futures::future::try_join_all(readers.iter_mut().map(begin_snapshot)).await?;
        let position = current_position(coordinator, info.flavor).await?;
        Ok::<_, Error>((tables, position, lock, plain))
    }
    .await;
    let unlocked = coordinator.query_drop("UNLOCK TABLES").await.map_err(|e| read_error("UNLOCK TABLES", e));
    let (tables, position, lock, plain) = locked?;
    unlocked?;
    info!(lock_ms = started.elapsed().as_millis() as u64, %position, readers = workers, "consistent snapshot opened (locking method)");
    if info.flavor == Flavor::MariaDb {
        for r in &mut readers {
            let at = snapshot_status(r).await?;
            if at != position.binlog {
                return Err(Error::internal(format!(
                    "snapshot readers disagree on the consistent point: {at} vs {}",
                    position.binlog
                )));
            }
        }
    }
    Ok(Opened { readers, position, tables, lock, plain: Arc::new(plain.into_iter().collect()) })
}

/// Most times in a row a snapshot starts again because a table changed under it.
const MAX_SNAPSHOT_RESTARTS: u32 = 10;

/// Run a snapshot; `Ok(None)` when shutdown interrupted it. A table that
/// changed on the source under the copy (dropped, renamed, rebuilt or
/// replaced after the consistent point) starts the snapshot again from
/// scratch at a new point: resuming it would keep rows read at the first
/// point, and the statements between the two points would apply to them.
pub(crate) async fn run_snapshot(
    opts: &MySqlSourceOptions,
    ctx: &SourceContext,
    info: &ServerInfo,
    mut start: Start,
) -> Result<Option<SnapshotOutcome>> {
    let mut restarts = 0;
    loop {
        match run_snapshot_once(opts, ctx, info, start).await {
            Err(e)
                if crate::errors::table_changed_in(&e)
                    && !ctx.is_shutdown()
                    && restarts < MAX_SNAPSHOT_RESTARTS =>
            {
                restarts += 1;
                warn!(error = %e, "snapshot: a table changed on the source under the copy; starting it again from scratch");
                start = Start::Fresh { restart: true };
            }
            other => return other,
        }
    }
}

async fn run_snapshot_once(
    opts: &MySqlSourceOptions,
    ctx: &SourceContext,
    info: &ServerInfo,
    start: Start,
) -> Result<Option<SnapshotOutcome>> {
    let mut coordinator = opts.connect().await?;
    let Opened { mut readers, position, tables, lock, plain } =
        open_snapshot(opts, info, &mut coordinator, opts.get_table_filter()).await?;
    preflight::check_select(&info.grants, &tables)?;

    // Decide: resume the stored plan, or plan anew.
    let mut resume: Option<SnapshotProgress> = None;
    let mut restart_all = false;
    match start {
        Start::Fresh { restart } => restart_all = restart,
        Start::Resume { progress, stored } => match resume_blocker(&progress, &stored, &tables) {
            None => match preflight::check_position_available(
                &mut coordinator,
                &progress.plan.position,
                "snapshot position",
            )
            .await
            {
                Ok(()) => resume = Some(progress),
                Err(e) => {
                    warn!(error = %e, "cannot resume the interrupted snapshot; restarting it from scratch");
                    restart_all = true;
                }
            },
            Some(why) => {
                warn!("cannot resume the interrupted snapshot ({why}); restarting it from scratch");
                restart_all = true;
            }
        },
    }
    drop(coordinator);

    let schemas: Vec<Arc<TableSchema>> = tables.iter().cloned().map(Arc::new).collect();
    let (plan, mut todo, restart, skip_before, resumed) = match resume {
        Some(progress) => {
            let todo: Vec<ChunkInfo> = progress
                .plan
                .chunks
                .iter()
                .filter(|c| !progress.is_done(&c.table, c.index))
                .cloned()
                .collect();
            let mut restart = Vec::new();
            let mut skip_before = Vec::new();
            for t in &tables {
                if !t.primary_key.is_empty() || !progress.plan.tables.contains(&t.id) {
                    continue;
                }
                if todo.iter().any(|c| c.table == t.id) {
                    restart.push(t.id.clone());
                    skip_before.push(SkipBefore { table: t.id.clone(), position: position.clone() });
                } else if let Some(done) = progress.done.iter().find(|d| d.table == t.id) {
                    if done.read_at > progress.plan.position {
                        skip_before.push(SkipBefore { table: t.id.clone(), position: done.read_at.clone() });
                    }
                }
            }
            info!(
                original = %progress.plan.position, now = %position, chunks_left = todo.len(),
                chunks_done = progress.done.len(), "resuming the interrupted snapshot"
            );
            (progress.plan, todo, restart, skip_before, true)
        }
        None => {
            let chunks = plan_chunks(opts, &mut readers[0], &tables).await?;
            let plan = SnapshotPlan {
                position: position.clone(),
                tables: tables.iter().map(|t| t.id.clone()).collect(),
                chunks: chunks.clone(),
            };
            let restart = if restart_all { plan.tables.clone() } else { Vec::new() };
            (plan, chunks, restart, Vec::new(), false)
        }
    };
    let follow_from = plan.position.clone();
    if let Some(l) = &lock {
        l.plan(&mut todo).await;
    }
    ctx.send(SourceMessage::SnapshotStarted { plan, tables: schemas.clone(), restart, resumed }).await?;

    let queue = Arc::new(Mutex::new(VecDeque::from(todo)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, conn) in readers.into_iter().enumerate() {
        let worker = Worker {
            conn,
            queue: queue.clone(),
            schemas: schemas.clone(),
            read_at: position.clone(),
            sender: ctx.sender.clone(),
            shutdown: ctx.shutdown.clone(),
            batch_rows: opts.get_batch_rows(),
            resync: false,
            lock: lock.clone(),
            plain: plain.clone(),
            checked: HashSet::new(),
        };
        tasks.spawn(worker.run().instrument(info_span!("snapshot_reader", reader = i)));
    }
    let mut interrupted = false;
    let mut failure: Option<Error> = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => interrupted = true,
            Ok(Err(e)) => {
                if failure.is_none() {
                    failure = Some(e);
                }
                queue.lock().expect("queue poisoned").clear();
            }
            Err(e) => failure = failure.or(Some(Error::internal(format!("snapshot reader panicked: {e}")))),
        }
    }
    if let Some(l) = &lock {
        l.release().await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if interrupted || ctx.is_shutdown() {
        return Ok(None);
    }
    let skips = skip_before
        .iter()
        .map(|s| synchdb_core::SkipPoint { table: s.table.clone(), position: s.position.clone() })
        .collect();
    ctx.send(SourceMessage::SnapshotFinished { position: follow_from.clone(), skip_before: skips }).await?;
    Ok(Some(SnapshotOutcome { position: follow_from, schemas: tables, skip_before }))
}

/// Why a stored plan cannot be resumed, if it cannot.
fn resume_blocker(
    progress: &SnapshotProgress,
    stored: &[TableSchema],
    now: &[TableSchema],
) -> Option<String> {
    for id in &progress.plan.tables {
        let Some(current) = now.iter().find(|t| &t.id == id) else {
            return Some(format!("table {id} is gone or no longer selected"));
        };
        match stored.iter().find(|t| &t.id == id) {
            Some(old) if old == current => {}
            Some(_) => return Some(format!("the schema of {id} changed")),
            None => return Some(format!("no stored schema for {id}")),
        }
    }
    if let Some(new) = now.iter().find(|t| !progress.plan.tables.contains(&t.id)) {
        return Some(format!("table {} was added to the selection", new.id));
    }
    None
}

/// Whether a key column's values compare in SQL the way `ORDER BY` sorts
/// them, so that key ranges are exact.
fn orderable(column: &ColumnSchema) -> bool {
    matches!(
        column.column_type,
        ColumnType::Integer { .. }
            | ColumnType::Decimal { .. }
            | ColumnType::Char { .. }
            | ColumnType::VarChar { .. }
            | ColumnType::Binary { .. }
            | ColumnType::VarBinary { .. }
            | ColumnType::Date
            | ColumnType::DateTime { .. }
            | ColumnType::Timestamp { .. }
            | ColumnType::Time { .. }
            | ColumnType::Year
            | ColumnType::Year2
            | ColumnType::Uuid
            | ColumnType::Inet4
            | ColumnType::Inet6
    )
}

/// The key columns usable for chunking (`None` when the table is read in one piece).
fn chunk_key(table: &TableSchema) -> Option<Vec<usize>> {
    if table.primary_key.is_empty() {
        return None;
    }
    let idx = table.primary_key_indices();
    (idx.len() == table.primary_key.len() && idx.iter().all(|&i| orderable(&table.columns[i]))).then_some(idx)
}

fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn quote_table(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.database), quote_ident(&id.table))
}

/// The SELECT expression of a column: shapes as the binlog has them.
fn select_expr(c: &ColumnSchema) -> String {
    let q = quote_ident(&c.name);
    match c.column_type {
        ColumnType::Set { .. } => format!("{q} + 0"),
        ColumnType::Uuid | ColumnType::Inet6 => format!("CAST({q} AS BINARY(16))"),
        ColumnType::Inet4 => format!("CAST({q} AS BINARY(4))"),
        _ => q,
    }
}

/// A decoded key value as a statement parameter.
fn to_param(v: &Value) -> My {
    match v {
        Value::Null => My::NULL,
        Value::Int(i) => My::Int(*i),
        Value::UInt(u) => My::UInt(*u),
        Value::Year(y) => My::UInt(u64::from(*y)),
        Value::Decimal(d) => My::Bytes(d.to_string().into_bytes()),
        Value::Text(s) => My::Bytes(s.clone().into_bytes()),
        Value::Bytes(b) => My::Bytes(b.clone()),
        Value::Date(d) => My::Date(d.year, d.month, d.day, 0, 0, 0, 0),
        Value::DateTime(d) => {
            My::Date(d.date.year, d.date.month, d.date.day, d.hour, d.minute, d.second, d.micros)
        }
        Value::Timestamp(t) => match t.to_chrono() {
            Some(dt) => {
                let w = synchdb_types::DateTime::from(dt.naive_utc());
                My::Date(w.date.year, w.date.month, w.date.day, w.hour, w.minute, w.second, w.micros)
            }
            None => My::Date(0, 0, 0, 0, 0, 0, 0),
        },
        Value::Time(t) => {
            let neg = t.micros < 0;
            let us = t.micros.unsigned_abs();
            let secs = us / 1_000_000;
            let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
            My::Time(neg, (h / 24) as u32, (h % 24) as u8, m as u8, s as u8, (us % 1_000_000) as u32)
        }
        other => My::Bytes(other.to_string().into_bytes()),
    }
}

/// `(k1, k2) > (?, ?)` as `k1 > ? OR (k1 = ? AND k2 > ?)` (range-optimisable),
/// with its parameters. `op` is `>` or `<=`.
fn key_condition(names: &[String], values: &[Value], greater: bool) -> (String, Vec<My>) {
    let mut ors = Vec::new();
    let mut params = Vec::new();
    for i in 0..names.len() {
        let mut ands = Vec::new();
        for j in 0..i {
            ands.push(format!("{} = ?", names[j]));
            params.push(to_param(&values[j]));
        }
        let last = i == names.len() - 1;
        let op = match (greater, last) {
            (true, _) => ">",
            (false, false) => "<",
            (false, true) => "<=",
        };
        ands.push(format!("{} {op} ?", names[i]));
        params.push(to_param(&values[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    (format!("({})", ors.join(" OR ")), params)
}

/// Plan every table's chunks, inside the consistent snapshot of `conn`.
async fn plan_chunks(
    opts: &MySqlSourceOptions,
    conn: &mut Conn,
    tables: &[TableSchema],
) -> Result<Vec<ChunkInfo>> {
    let chunk_rows = opts.get_chunk_rows().max(1);
    let mut per_table: Vec<(u64, Vec<ChunkInfo>)> = Vec::new();
    for t in tables {
        let bounds = match chunk_key(t) {
            None => Vec::new(),
            Some(key) => {
                let single_int =
                    key.len() == 1 && matches!(t.columns[key[0]].column_type, ColumnType::Integer { .. });
                if single_int {
                    integer_bounds(conn, t, key[0], chunk_rows).await?
                } else {
                    walked_bounds(conn, t, &key, chunk_rows).await?
                }
            }
        };
        let count = bounds.len() as u32 + 1;
        let mut chunks = Vec::with_capacity(count as usize);
        for index in 0..count {
            let i = index as usize;
            chunks.push(ChunkInfo {
                table: t.id.clone(),
                index,
                count,
                lower: (i > 0).then(|| bounds[i - 1].clone()),
                upper: (i < bounds.len()).then(|| bounds[i].clone()),
            });
        }
        debug!(table = %t.id, chunks = count, "planned");
        per_table.push((u64::from(count), chunks));
    }
    // Largest tables first: their chunks spread over the readers early.
    per_table.sort_by_key(|t| std::cmp::Reverse(t.0));
    Ok(per_table.into_iter().flat_map(|(_, c)| c).collect())
}

/// Interior bounds of a single integer key: `MIN..MAX` in equal ranges.
async fn integer_bounds(conn: &mut Conn, t: &TableSchema, key: usize, chunk_rows: u64) -> Result<Vec<Row>> {
    let col = &t.columns[key];
    let q = quote_ident(&col.name);
    let table = quote_table(&t.id);
    let estimate: Option<u64> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (t.id.database.as_str(), t.id.table.as_str()),
        )
        .await
        .map_err(|e| read_error("reading table statistics", e))?
        .flatten();
    let mut rows = estimate.unwrap_or(0);
    if rows <= chunk_rows {
        // Statistics may be stale: a bounded count tells whether one chunk is enough.
        let n: Option<u64> = conn
            .query_first(format!(
                "SELECT HIGH_PRIORITY COUNT(*) FROM (SELECT 1 FROM {table} LIMIT {}) AS probe",
                chunk_rows + 1
            ))
            .await
            .map_err(|e| read_error("counting rows", e).with_table(t.id.clone()))?;
        if n.unwrap_or(0) <= chunk_rows {
            return Ok(Vec::new());
        }
        let n: Option<u64> = conn
            .query_first(format!("SELECT HIGH_PRIORITY COUNT(*) FROM {table}"))
            .await
            .map_err(|e| read_error("counting rows", e).with_table(t.id.clone()))?;
        rows = n.unwrap_or(0);
    }
    let row: Option<(My, My)> = conn
        .query_first(format!("SELECT HIGH_PRIORITY MIN({q}), MAX({q}) FROM {table}"))
        .await
        .map_err(|e| read_error("reading key range", e).with_table(t.id.clone()))?;
    let Some((min, max)) = row else { return Ok(Vec::new()) };
    let as_i128 = |v: My| -> Option<i128> {
        match decode_value(col, v).ok()? {
            Value::Int(i) => Some(i128::from(i)),
            Value::UInt(u) => Some(i128::from(u)),
            _ => None,
        }
    };
    let (Some(min), Some(max)) = (as_i128(min), as_i128(max)) else { return Ok(Vec::new()) };
    let span = max - min + 1;
    let chunks = (rows.div_ceil(chunk_rows) as i128).clamp(1, span.max(1)).min(100_000);
    let unsigned = col.column_type.is_unsigned();
    let mut bounds = Vec::new();
    for i in 1..chunks {
        let b = min + span * i / chunks - 1;
        let v = if unsigned { Value::UInt(b as u64) } else { Value::Int(b as i64) };
        if bounds.last() != Some(&vec![v.clone()]) {
            bounds.push(vec![v]);
        }
    }
    Ok(bounds)
}

/// Interior bounds of any orderable key: walk it every `chunk_rows` rows.
async fn walked_bounds(conn: &mut Conn, t: &TableSchema, key: &[usize], chunk_rows: u64) -> Result<Vec<Row>> {
    let names: Vec<String> = key.iter().map(|&i| quote_ident(&t.columns[i].name)).collect();
    let exprs: Vec<String> = key.iter().map(|&i| select_expr(&t.columns[i])).collect();
    let order = names.join(", ");
    let table = quote_table(&t.id);
    let mut bounds: Vec<Row> = Vec::new();
    loop {
        let (cond, params) = match bounds.last() {
            None => ("1".to_string(), Vec::new()),
            Some(last) => key_condition(&names, last, true),
        };
        // The chunk_rows-th row after the last bound is the inclusive upper bound
        // of the next chunk, unless it is the table's last row.
        let sql = format!(
            "SELECT HIGH_PRIORITY {} FROM {table} WHERE {cond} ORDER BY {order} LIMIT 2 OFFSET {}",
            exprs.join(", "),
            chunk_rows - 1
        );
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, params)
            .await
            .map_err(|e| read_error("walking the key", e).with_table(t.id.clone()))?;
        if rows.len() < 2 {
            break;
        }
        let values = rows.into_iter().next().expect("two rows").unwrap();
        let mut decoded = Vec::with_capacity(values.len());
        for (v, &i) in values.into_iter().zip(key) {
            let c = &t.columns[i];
            decoded.push(decode_value(c, v).map_err(|e| e.into_error(&t.id, &c.name))?);
        }
        bounds.push(decoded);
        if bounds.len() >= 100_000 {
            break;
        }
    }
    Ok(bounds)
}

/// A snapshot batch holds at most this many bytes of values (besides at
/// most `batch_rows` rows).
const BATCH_BYTES: usize = 4 << 20;

/// One snapshot reader: takes chunks from the queue until it is empty.
struct Worker {
    conn: Conn,
    queue: Arc<Mutex<VecDeque<ChunkInfo>>>,
    schemas: Vec<Arc<TableSchema>>,
    read_at: Position,
    sender: mpsc::Sender<SourceMessage>,
    shutdown: watch::Receiver<bool>,
    batch_rows: usize,
    /// A resync's copy: a table changed under it (dropped, renamed, altered
    /// after the copy's point) is a transient error, the copy starts again
    /// at a new point.
    resync: bool,
    /// The copy's READ locks on non-transactional tables.
    lock: Option<Arc<TableLock>>,
    /// The tables non-transactional at the copy's point.
    plain: Arc<HashSet<TableId>>,
    /// The tables this reader read and found to be what the copy listed.
    checked: HashSet<TableId>,
}

impl Worker {
    /// Read chunks until the queue is empty; however that ends, end the
    /// snapshot transaction here, so the metadata locks it holds are released
    /// now (an ALTER TABLE on the source waits for them), not whenever the
    /// runtime gets to clean up a dropped connection.
    async fn run(mut self) -> Result<bool> {
        let result = self.read_chunks().await;
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), self.conn.query_drop("ROLLBACK")).await;
        result
    }

    /// `Ok(true)` when the queue is empty, `Ok(false)` when stopped early.
    async fn read_chunks(&mut self) -> Result<bool> {
        loop {
            if *self.shutdown.borrow() {
                return Ok(false);
            }
            let Some(chunk) = self.queue.lock().expect("queue poisoned").pop_front() else {
                let _ = self.conn.query_drop("COMMIT").await;
                return Ok(true);
            };
            let Some(table) = self.schemas.iter().find(|t| t.id == chunk.table).cloned() else {
                return Err(Error::internal(format!("chunk of unknown table {}", chunk.table)));
            };
            let (tx, rx) = chunk_channel(4);
            let msg = SourceMessage::SnapshotChunk {
                chunk: chunk.clone(),
                table: table.clone(),
                read_at: self.read_at.clone(),
                rows: rx,
            };
            if self.sender.send(msg).await.is_err() {
                return Ok(false);
            }
            let mut read = self.read_chunk(&table, &chunk, &tx).await;
            if matches!(read, Ok(true))
                && !self.plain.contains(&table.id)
                && !self.checked.contains(&table.id)
            {
                // Before the rows count: the table this reader holds is the one listed.
                read = check_still_transactional(&mut self.conn, &table.id).await.map(|()| true);
                self.checked.insert(table.id.clone());
            }
            if let (Some(l), Ok(_)) = (&self.lock, &read) {
                if l.holds(&table.id) {
                    l.chunk_read().await;
                }
            }
            match read {
                Ok(true) => {
                    if tx.finish().await.is_err() {
                        warn!(table = %table.id, chunk = chunk.index, "the pipeline stopped taking this chunk");
                    } else {
                        debug!(table = %table.id, chunk = chunk.index, "chunk read");
                    }
                }
                Ok(false) if *self.shutdown.borrow() => return Ok(false),
                // The pipeline dropped the chunk (its writer failed): go on, so
                // that the next message (a chunk or the end of the snapshot)
                // lets the pipeline report the writer's error.
                Ok(false) => {
                    warn!(table = %table.id, chunk = chunk.index, "the pipeline stopped taking this chunk")
                }
                Err(e) => {
                    // A value that does not decode with the schema the copy read: a
                    // non-transactional table (outside the read view) altered since.
                    let changed = crate::errors::table_changed_in(&e) || e.kind() == ErrorKind::SourceValue;
                    let e = if self.resync && changed { changed_under_copy(e) } else { e };
                    let mut copy = Error::new(e.kind(), e.message());
                    if let Some(t) = e.table() {
                        copy = copy.with_table(t.clone());
                    }
                    if let Some(c) = e.column() {
                        copy = copy.with_column(c.to_string());
                    }
                    tx.fail(copy).await;
                    return Err(e);
                }
            }
        }
    }

    /// Stream one chunk; `Ok(false)` when the receiver went away or shutdown was asked.
    async fn read_chunk(&mut self, t: &TableSchema, chunk: &ChunkInfo, tx: &ChunkSender) -> Result<bool> {
        let exprs: Vec<String> = t.columns.iter().map(select_expr).collect();
        let mut sql = format!("SELECT HIGH_PRIORITY {} FROM {}", exprs.join(", "), quote_table(&t.id));
        let mut params: Vec<My> = Vec::new();
        if let Some(key) = chunk_key(t).filter(|_| chunk.count > 1) {
            let names: Vec<String> = key.iter().map(|&i| quote_ident(&t.columns[i].name)).collect();
            let mut conds = Vec::new();
            if let Some(lower) = &chunk.lower {
                let (c, p) = key_condition(&names, lower, true);
                conds.push(c);
                params.extend(p);
            }
            if let Some(upper) = &chunk.upper {
                let (c, p) = key_condition(&names, upper, false);
                conds.push(c);
                params.extend(p);
            }
            if !conds.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conds.join(" AND "));
            }
            sql.push_str(" ORDER BY ");
            sql.push_str(&names.join(", "));
        }
        let batch_rows = self.batch_rows;
        let mut shutdown = self.shutdown.clone();
        let mut result = self
            .conn
            .exec_iter(sql.as_str(), params)
            .await
            .map_err(|e| read_error("reading rows", e).with_table(t.id.clone()))?;
        let mut batch: Vec<Row> = Vec::with_capacity(batch_rows.min(1024));
        let mut batch_bytes = 0usize;
        loop {
            let next =
                result.next().await.map_err(|e| read_error("reading rows", e).with_table(t.id.clone()))?;
            let Some(row) = next else { break };
            let values = row.unwrap();
            let mut out = Vec::with_capacity(values.len());
            for (v, c) in values.into_iter().zip(&t.columns) {
                batch_bytes += match &v {
                    My::Bytes(b) => b.len() + 16,
                    _ => 16,
                };
                out.push(decode_value(c, v).map_err(|e| e.into_error(&t.id, &c.name))?);
            }
            batch.push(out);
            // Wide rows (large BLOBs) make a batch by bytes before rows, so
            // memory stays bounded whatever the row size.
            if batch.len() >= batch_rows || batch_bytes >= BATCH_BYTES {
                batch_bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_rows.min(1024)));
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|s| *s) => return Ok(false),
                    sent = tx.send(full) => if sent.is_err() { return Ok(false) },
                }
            }
        }
        drop(result);
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return Ok(false);
        }
        Ok(true)
    }
}

/// A resync's copy: the tables' rows at `position`, read by a task that
/// sends their chunks and then [`SourceMessage::ResyncFinished`].
pub(crate) struct ResyncCopy {
    /// The consistent position of the rows.
    pub(crate) position: Position,
    /// The tables' schemas at `position` (those that still exist).
    pub(crate) tables: Vec<TableSchema>,
    /// The reading task: `Ok(true)` when every chunk is sent, `Ok(false)` when stopped.
    pub(crate) task: tokio::task::JoinHandle<Result<bool>>,
}

/// Start a resync of `ids`: open a consistent snapshot of just these tables,
/// send [`SourceMessage::ResyncStarted`] (from the caller's task, so it comes
/// after everything the caller sent before), and read their chunks in a
/// task. `Ok(None)` when none of the tables exists any more.
pub(crate) async fn start_resync_copy(
    opts: &MySqlSourceOptions,
    info: &ServerInfo,
    ctx: &SourceContext,
    ids: &[TableId],
    reason: &str,
) -> Result<Option<ResyncCopy>> {
    let mut filter = TableFilter::all();
    for id in ids {
        filter = filter
            .include(&format!("{}.{}", id.database, id.table))
            .map_err(|e| Error::internal(format!("resync filter for {id}: {e}")))?;
    }
    let mut coordinator = opts.connect().await?;
    let Opened { mut readers, position, mut tables, lock, plain } =
        open_snapshot(opts, info, &mut coordinator, &filter).await?;
    drop(coordinator);
    tables.retain(|t| ids.contains(&t.id));
    if tables.is_empty() {
        return Ok(None);
    }
    preflight::check_select(&info.grants, &tables)?;
    let mut chunks = plan_chunks(opts, &mut readers[0], &tables).await?;
    if let Some(l) = &lock {
        l.plan(&mut chunks).await;
    }
    let schemas: Vec<Arc<TableSchema>> = tables.iter().cloned().map(Arc::new).collect();
    ctx.send(SourceMessage::ResyncStarted {
        tables: schemas.clone(),
        position: position.clone(),
        reason: reason.to_string(),
    })
    .await?;
    info!(tables = tables.len(), chunks = chunks.len(), %position, reason, "resync: copy started");
    let queue = Arc::new(Mutex::new(VecDeque::from(chunks)));
    let mut workers = Vec::new();
    for conn in readers {
        workers.push(Worker {
            conn,
            queue: queue.clone(),
            schemas: schemas.clone(),
            read_at: position.clone(),
            sender: ctx.sender.clone(),
            shutdown: ctx.shutdown.clone(),
            batch_rows: opts.get_batch_rows(),
            resync: true,
            lock: lock.clone(),
            plain: plain.clone(),
            checked: HashSet::new(),
        });
    }
    let sender = ctx.sender.clone();
    let ids: Vec<TableId> = tables.iter().map(|t| t.id.clone()).collect();
    let task = tokio::spawn(
        async move {
            let results = futures::future::join_all(workers.into_iter().map(Worker::run)).await;
            if let Some(l) = &lock {
                l.release().await;
            }
            let mut all = true;
            for r in results {
                all &= r?;
            }
            if all {
                all = sender.send(SourceMessage::ResyncFinished { tables: ids }).await.is_ok();
            }
            Ok(all)
        }
        .instrument(info_span!("resync_copy")),
    );
    Ok(Some(ResyncCopy { position, tables, task }))
}

/// Read tables for a verification ([`synchdb_core::verify`]): one
/// consistent snapshot of the requested tables (every selected one when the
/// request names none), chunked by the snapshot's planner (`whole` tables as
/// one chunk; only the given chunks on a re-check), sent as
/// `ResyncStarted`, `SnapshotChunk`s and `ResyncFinished`.
pub(crate) async fn verify_read(
    opts: &MySqlSourceOptions,
    info: &ServerInfo,
    ctx: &SourceContext,
    request: synchdb_core::verify::ReadRequest,
) -> Result<()> {
    let mut opts = opts.clone();
    if let Some(rows) = request.chunk_rows {
        opts = opts.chunk_rows(rows);
    }
    let opts = &opts;
    let wanted: Vec<TableId> = match &request.chunks {
        Some(chunks) => {
            let mut ids: Vec<TableId> = chunks.iter().map(|c| c.table.clone()).collect();
            ids.dedup();
            ids
        }
        None => request.tables.clone(),
    };
    let filter = if wanted.is_empty() {
        opts.get_table_filter().clone()
    } else {
        let mut filter = TableFilter::all();
        for id in &wanted {
            filter = filter
                .include(&format!("{}.{}", id.database, id.table))
                .map_err(|e| Error::internal(format!("verify filter for {id}: {e}")))?;
        }
        filter
    };
    let mut coordinator = opts.connect().await?;
    let Opened { mut readers, position, mut tables, lock, plain } =
        open_snapshot(opts, info, &mut coordinator, &filter).await?;
    drop(coordinator);
    if !wanted.is_empty() {
        tables.retain(|t| wanted.contains(&t.id));
    }
    preflight::check_select(&info.grants, &tables)?;
    let mut chunks: Vec<ChunkInfo> = match request.chunks {
        Some(chunks) => chunks.into_iter().filter(|c| tables.iter().any(|t| t.id == c.table)).collect(),
        None => {
            let (whole, chunked): (Vec<TableSchema>, Vec<TableSchema>) =
                tables.iter().cloned().partition(|t| request.whole.contains(&t.id));
            let mut chunks = plan_chunks(opts, &mut readers[0], &chunked).await?;
            chunks.extend(whole.into_iter().map(|t| ChunkInfo {
                table: t.id,
                index: 0,
                count: 1,
                lower: None,
                upper: None,
            }));
            chunks
        }
    };
    if let Some(l) = &lock {
        l.plan(&mut chunks).await;
    }
    let schemas: Vec<Arc<TableSchema>> = tables.iter().cloned().map(Arc::new).collect();
    ctx.send(SourceMessage::ResyncStarted {
        tables: schemas.clone(),
        position: position.clone(),
        reason: "verify".to_string(),
    })
    .await?;
    debug!(tables = tables.len(), chunks = chunks.len(), %position, "verify: reading");
    let queue = Arc::new(Mutex::new(VecDeque::from(chunks)));
    let workers: Vec<Worker> = readers
        .into_iter()
        .map(|conn| Worker {
            conn,
            queue: queue.clone(),
            schemas: schemas.clone(),
            read_at: position.clone(),
            sender: ctx.sender.clone(),
            shutdown: ctx.shutdown.clone(),
            batch_rows: opts.get_batch_rows(),
            resync: false,
            lock: lock.clone(),
            plain: plain.clone(),
            checked: HashSet::new(),
        })
        .collect();
    let results = futures::future::join_all(workers.into_iter().map(Worker::run)).await;
    if let Some(l) = &lock {
        l.release().await;
    }
    let mut all = true;
    for r in results {
        all &= r?;
    }
    if all {
        let ids = tables.iter().map(|t| t.id.clone()).collect();
        ctx.send(SourceMessage::ResyncFinished { tables: ids }).await?;
    }
    Ok(())
}

/// The tables and position of a schema-only start (`no_data`), or of follow
/// mode without a snapshot: schemas from `information_schema`, position now.
pub(crate) async fn schemas_and_position(
    opts: &MySqlSourceOptions,
    info: &ServerInfo,
) -> Result<(Vec<TableSchema>, Position)> {
    let mut conn = opts.connect().await?;
    let tables = discover_tables(&mut conn, opts.get_table_filter()).await?;
    let position = current_position(&mut conn, info.flavor).await?;
    Ok((tables, position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_key_conditions() {
        let names = vec!["`a`".to_string(), "`b`".to_string()];
        let vals = vec![Value::Int(1), Value::Text("x".into())];
        let (c, p) = key_condition(&names, &vals, true);
        assert_eq!(c, "((`a` > ?) OR (`a` = ? AND `b` > ?))");
        assert_eq!(p.len(), 3);
        let (c, _) = key_condition(&names, &vals, false);
        assert_eq!(c, "((`a` < ?) OR (`a` = ? AND `b` <= ?))");
        let (c, _) = key_condition(&names[..1], &vals[..1], false);
        assert_eq!(c, "((`a` <= ?))");
    }

    #[test]
    fn params_round_trip_shapes() {
        let t: synchdb_types::Time = "-838:59:59.5".parse().unwrap();
        assert_eq!(to_param(&Value::Time(t)), My::Time(true, 34, 22, 59, 59, 500_000));
        let ts = synchdb_types::Timestamp::from_parts(1_700_000_000, 5);
        assert_eq!(to_param(&Value::Timestamp(ts)), My::Date(2023, 11, 14, 22, 13, 20, 5));
        let col = ColumnSchema::new("t", ColumnType::Timestamp { fsp: 6 });
        assert_eq!(decode_value(&col, to_param(&Value::Timestamp(ts))).unwrap(), Value::Timestamp(ts));
    }

    #[test]
    fn select_expressions_match_binlog_shapes() {
        assert_eq!(select_expr(&ColumnSchema::new("s", ColumnType::Set { members: vec![] })), "`s` + 0");
        assert_eq!(select_expr(&ColumnSchema::new("u`x", ColumnType::Uuid)), "CAST(`u``x` AS BINARY(16))");
        assert_eq!(select_expr(&ColumnSchema::new("i", ColumnType::Inet4)), "CAST(`i` AS BINARY(4))");
        assert_eq!(select_expr(&ColumnSchema::new("d", ColumnType::Date)), "`d`");
    }
}
