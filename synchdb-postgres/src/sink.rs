//! [`PgSink`]: the PostgreSQL implementation of [`Sink`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row as _};
use synchdb_core::{
    ChangeBatch, ChunkDone, ChunkInfo, Error, ErrorKind, PipelineState, Result, RowStream, Sink,
    SinkCapabilities, SinkState, SnapshotUpdate, StateUpdate,
};
use synchdb_types::{ChangeEvent, Position, TableId, TableSchema, Transaction};
use tracing::{debug, info, warn};

use crate::apply::{self, Applier, Statements, TableEntry};
use crate::copy::copy_rows;
use crate::ddl::{self, quote, DdlCtx, Notes, PgTable};
use crate::error::{sqlx_error, Context};
use crate::options::PgSinkOptions;
use crate::parallel::{self, Part};
use crate::state::StateSql;

/// A PostgreSQL sink: creates tables from source schemas, bulk-loads snapshot chunks
/// with `COPY`, applies change batches in one transaction each, and stores the pipeline
/// state in the same transactions ([`Sink::state`] is `Some`).
///
/// Cloning is cheap: clones share the pool and caches.
#[derive(Clone)]
pub struct PgSink {
    inner: Arc<Inner>,
}

/// Target tables a foreign key references, as (schema, table).
type Referenced = HashSet<(String, String)>;

/// A source schema (kept alive so its address stays unique) and its mapping.
type CachedTable = (Arc<TableSchema>, Arc<TableEntry>);

struct Inner {
    pool: PgPool,
    opts: PgSinkOptions,
    postgis: bool,
    notes: Notes,
    state: StateSql,
    /// Mapped tables by the address of their source schema (kept alive here).
    tables: Mutex<HashMap<usize, CachedTable>>,
    /// The connection of a target transaction left open by an open batch
    /// (a source transaction applied in pieces), with its pipeline.
    open: tokio::sync::Mutex<Option<(String, Conn)>>,
    /// Parallel apply: names this process's prepared transactions apart from
    /// an earlier run's, and numbers its batches.
    run: String,
    batches: std::sync::atomic::AtomicU64,
    /// A parallel batch ended without every prepared transaction resolved:
    /// resolve them (by the stored decision) before the next batch.
    unresolved: std::sync::atomic::AtomicBool,
    /// Parallel apply: the target tables some foreign key references, as
    /// (schema, table); read from the catalog, forgotten at every DDL.
    referenced: Mutex<Option<Arc<Referenced>>>,
    /// A parallel batch failed: its retry (the next batch) runs in one session.
    serial_next: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink").field("postgis", &self.inner.postgis).finish_non_exhaustive()
    }
}

impl PgSink {
    /// The status a pipeline last stored (the `pipeline_status` view's row,
    /// the full status as JSON and the `table_stats` rows), read without the
    /// source; `None` for an unknown pipeline.
    pub async fn stored_status(&self, pipeline: &str) -> Result<Option<serde_json::Value>> {
        self.inner.state.read_status(&self.inner.pool, pipeline).await
    }

    /// Validate the options, open the pool, create the state schema and tables.
    pub async fn connect(options: PgSinkOptions) -> Result<PgSink> {
        options.validate()?;
        let connect = options.connect_options()?.statement_cache_capacity(1024);
        let pool = PgPoolOptions::new()
            .max_connections(options.get_pool_size())
            .acquire_timeout(options.get_acquire_timeout())
            .connect_with(connect)
            .await
            .map_err(|e| sqlx_error(e, &Context::state()))?;
        Self::build(pool, options, true).await
    }

    /// A sink on a pool the service already owns (its URL, pool size and
    /// timeouts in `options` are not used; the rest is). Its sessions must
    /// use `TimeZone=UTC` (build it from [`PgSinkOptions::connect_options`]). It needs enough connections for the snapshot's
    /// parallelism plus one for the state.
    ///
    /// ```no_run
    /// # async fn f() -> synchdb_core::Result<()> {
    /// use synchdb_postgres::{PgSink, PgSinkOptions};
    /// let pool = sqlx::PgPool::connect("postgres://app@db/replica").await.unwrap();
    /// let sink = PgSink::with_pool(pool.clone(), PgSinkOptions::new()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_pool(pool: PgPool, options: PgSinkOptions) -> Result<PgSink> {
        options.validate_mapping()?;
        Self::build(pool, options, false).await
    }

    async fn build(pool: PgPool, options: PgSinkOptions, owns_pool: bool) -> Result<PgSink> {
        let state = StateSql::new(options.get_state_schema());
        let mut conn = pool.acquire().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        if !owns_pool {
            // Values of `timestamp` columns are written as UTC text.
            let tz: String = sqlx::query_scalar("SELECT current_setting('TimeZone')")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| sqlx_error(e, &Context::state()))?;
            if !matches!(tz.as_str(), "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "UCT" | "Zulu") {
                return Err(Error::config(format!(
                    "the pool's sessions use TimeZone {tz}; the sink needs UTC: build the pool from \
                     PgSinkOptions::connect_options() or add options([(\"TimeZone\", \"UTC\")])"
                )));
            }
        }
        state.create(&mut conn).await?;
        let installed: bool =
            sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis')")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| sqlx_error(e, &Context::state()))?
                .get(0);
        let workers = options.get_apply_workers();
        if workers > 1 {
            let max: String = sqlx::query_scalar("SELECT current_setting('max_prepared_transactions')")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| sqlx_error(e, &Context::state()))?;
            if max.parse::<u32>().unwrap_or(0) < workers {
                return Err(Error::config(format!(
                    "apply_workers = {workers} commits each batch by two-phase commit and needs PostgreSQL's \
                     max_prepared_transactions of at least {workers} (it is {max}; set it in postgresql.conf \
                     and restart PostgreSQL)"
                )));
            }
        }
        drop(conn);
        let postgis = installed && options.get_postgis();
        info!(postgis, "PostgreSQL sink connected");
        Ok(PgSink {
            inner: Arc::new(Inner {
                pool,
                opts: options,
                postgis,
                notes: Notes::default(),
                state,
                tables: Mutex::new(HashMap::new()),
                open: tokio::sync::Mutex::new(None),
                run: format!(
                    "{:x}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default()
                ),
                batches: std::sync::atomic::AtomicU64::new(0),
                unresolved: std::sync::atomic::AtomicBool::new(false),
                referenced: Mutex::new(None),
                serial_next: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The connection pool (for reading the replica, or for tests).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The options.
    pub fn options(&self) -> &PgSinkOptions {
        &self.inner.opts
    }

    /// Whether GEOMETRY columns become PostGIS `geometry` (extension installed and allowed).
    pub fn uses_postgis(&self) -> bool {
        self.inner.postgis
    }

    /// The PostgreSQL type a column of `table` gets in this sink (like
    /// [`pg_type_for`](crate::pg_type_for), knowing whether PostGIS is installed).
    pub fn pg_type(&self, table: &TableId, column: &synchdb_types::ColumnSchema) -> Result<String> {
        crate::typemap::map_column(table, column, &self.inner.opts, self.inner.postgis).map(|c| c.sql_type)
    }

    /// Check destination schemas before any data moves: names fit PostgreSQL, every
    /// type maps, every overridden type exists, and every SQL transform compiles for
    /// its column (`SELECT transform(NULL::type)::type ... WHERE false` in a
    /// transaction that is rolled back). A failure is an [`ErrorKind::Config`]
    /// error naming the table and column, with PostgreSQL's message as the cause.
    /// [`prepare_snapshot`](Sink::prepare_snapshot) runs it too.
    pub async fn validate_tables(&self, tables: &[Arc<TableSchema>]) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        for t in tables {
            let pt = PgTable::build(t, &self.inner.opts, self.inner.postgis)?;
            for c in pt.columns.iter().filter(|c| c.transform.is_some() || !c.default_mapping) {
                let sql = format!(
                    "SELECT ({})::{} FROM (VALUES (NULL::text)) AS v(x) WHERE false",
                    c.value_expr("v.x"),
                    c.sql_type
                );
                tx.execute(AssertSqlSafe(sql)).await.map_err(|e| {
                    let what = match &c.transform {
                        Some(x) => {
                            format!(
                                "SQL transform {:?} on a column of type {} does not compile",
                                x.template(),
                                c.sql_type
                            )
                        }
                        None => format!("destination type {} is not usable", c.sql_type),
                    };
                    Error::new(ErrorKind::Config, what)
                        .with_table(t.id.clone())
                        .with_column(c.name.clone())
                        .with_source(e)
                })?;
            }
        }
        tx.rollback().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        conn.done();
        Ok(())
    }

    /// The `"schema"."table"` a source table is replicated to.
    pub fn target_table(&self, table: &TableId) -> String {
        format!("{}.{}", quote(&self.inner.opts.target_schema(table)), quote(&table.table))
    }

    pub(crate) fn state_sql(&self) -> &crate::state::StateSql {
        &self.inner.state
    }

    fn ddl_ctx(&self) -> DdlCtx<'_> {
        DdlCtx { opts: &self.inner.opts, postgis: self.inner.postgis, notes: &self.inner.notes }
    }

    fn entry(&self, schema: &Arc<TableSchema>) -> Result<Arc<TableEntry>> {
        let key = Arc::as_ptr(schema) as usize;
        let mut map = self.inner.tables.lock().expect("table cache poisoned");
        if let Some((_, e)) = map.get(&key) {
            return Ok(e.clone());
        }
        let pt = PgTable::build(schema, &self.inner.opts, self.inner.postgis)?;
        let identity: Vec<&str> = pt.key.iter().map(|&i| schema.columns[i].name.as_str()).collect();
        let ordered = schema.foreign_keys.iter().any(|fk| fk.referenced_table == schema.id)
            || schema.indexes.iter().any(|ix| {
                ix.kind == synchdb_types::IndexKind::Unique
                    && ix.columns.iter().map(|c| c.name.as_str()).ne(identity.iter().copied())
            });
        let entry = Arc::new(TableEntry { stmts: Statements::new(&pt), pt, ordered });
        if map.len() > 4096 {
            map.clear();
        }
        map.insert(key, (schema.clone(), entry.clone()));
        Ok(entry)
    }

    /// A connection from the pool, closed unless its work completes.
    async fn conn(&self) -> Result<Conn> {
        let conn = self.inner.pool.acquire().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        Ok(Conn { conn, done: false })
    }

    /// Apply `batch`'s events (only those of `part`, when given) on `conn`.
    async fn apply_events(
        &self,
        conn: &mut PgConnection,
        batch: &ChangeBatch,
        part: Option<&Part>,
    ) -> Result<u64> {
        let opts = &self.inner.opts;
        let selected = selected(batch, part);
        if selected.iter().all(|(tx, _)| tx.foreign_key_checks) {
            let mut tables = Vec::with_capacity(selected.iter().map(|(_, e)| e.len()).sum());
            for (_, events) in &selected {
                for event in events {
                    let table = match event {
                        ChangeEvent::Insert(e) => &e.table,
                        ChangeEvent::Update(e) => &e.table,
                        ChangeEvent::Delete(e) => &e.table,
                        _ => break,
                    };
                    tables.push((*event, self.entry(table)?));
                }
            }
            let all = tables.len() == selected.iter().map(|(_, e)| e.len()).sum::<usize>();
            if all && apply::pipeable(opts.get_apply_mode(), tables.iter().map(|(e, t)| (*e, &**t))) {
                return self.apply_piped(conn, tables).await;
            }
        }
        self.apply_one_by_one(conn, selected).await
    }

    /// Row events of keyed tables: encoded and executed at once — PostgreSQL
    /// executes one statement while the next is encoded (runs of at most
    /// 1,000 rows, in source order, on `conn`).
    async fn apply_piped(
        &self,
        conn: &mut PgConnection,
        events: Vec<(&ChangeEvent, Arc<TableEntry>)>,
    ) -> Result<u64> {
        let (send, mut receive) = tokio::sync::mpsc::channel::<apply::Piped>(2);
        let zero = self.inner.opts.get_zero_dates();
        let encode = async move {
            let mut applier = Applier::piped(send, zero);
            for (event, table) in events {
                applier.row_event(table, event).await?;
            }
            applier.flush().await
        };
        let execute = async {
            let mut changed = 0;
            while let Some((cx, q)) = receive.recv().await {
                let r = q.execute(&mut *conn).await.map_err(|e| sqlx_error(e, &cx))?;
                changed += r.rows_affected();
            }
            Ok::<_, Error>(changed)
        };
        let (encoded, executed) = tokio::join!(encode, execute);
        // The executing side's error first: the encoding side then only saw the pipe close.
        let changed = executed?;
        encoded?;
        Ok(changed)
    }

    /// Apply events one by one (any event, any mode).
    async fn apply_one_by_one(&self, conn: &mut PgConnection, selected: Selected<'_>) -> Result<u64> {
        let opts = &self.inner.opts;
        let mut applier = Applier::new(conn, opts.get_apply_mode(), opts.get_zero_dates());
        // Row changes leave deferred foreign-key checks pending, and PostgreSQL
        // refuses ALTER TABLE and TRUNCATE of a table with pending trigger
        // events. A DDL statement is a source transaction of its own, so the
        // checks can run before it, as they would at a commit.
        let mut checks_pending = false;
        for (tx, events) in selected {
            if !tx.foreign_key_checks {
                // FOREIGN_KEY_CHECKS=0 at the source: InnoDB neither checked nor
                // cascaded, so PostgreSQL's foreign-key triggers must not fire either.
                applier.flush().await?;
                set_replica_role(applier.conn()?, true, tx).await?;
            }
            for event in events {
                if matches!(event, ChangeEvent::Truncate(_) | ChangeEvent::Schema(_)) && checks_pending {
                    applier.flush().await?;
                    let cx = Context::data(event.table_id(), Some(&event.meta().position));
                    applier
                        .conn()?
                        .execute("SET CONSTRAINTS ALL IMMEDIATE; SET CONSTRAINTS ALL DEFERRED")
                        .await
                        .map_err(|err| sqlx_error(err, &cx))?;
                    checks_pending = false;
                }
                checks_pending |=
                    matches!(event, ChangeEvent::Insert(_) | ChangeEvent::Update(_) | ChangeEvent::Delete(_));
                match event {
                    ChangeEvent::Insert(e) => applier.row_event(self.entry(&e.table)?, event).await?,
                    ChangeEvent::Update(e) => applier.row_event(self.entry(&e.table)?, event).await?,
                    ChangeEvent::Delete(e) => applier.row_event(self.entry(&e.table)?, event).await?,
                    ChangeEvent::Truncate(e) => {
                        applier.flush().await?;
                        let target = self.target_table(&e.table.id);
                        let cx = Context::data(&e.table.id, Some(&e.meta.position));
                        let referenced: bool = sqlx::query_scalar(
                            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::regclass)",
                        )
                        .bind(&target)
                        .fetch_one(applier.conn()?)
                        .await
                        .map_err(|err| sqlx_error(err, &cx))?;
                        // InnoDB truncates a referenced table only with FOREIGN_KEY_CHECKS=0,
                        // leaving the referencing rows as they are; PostgreSQL refuses TRUNCATE
                        // there, so the rows are deleted with foreign-key triggers off.
                        let switch_role = referenced && tx.foreign_key_checks;
                        if switch_role {
                            set_replica_role(applier.conn()?, true, tx).await?;
                        }
                        let sql = if referenced {
                            format!("DELETE FROM {target}")
                        } else {
                            format!("TRUNCATE {target}")
                        };
                        applier
                            .conn()?
                            .execute(AssertSqlSafe(sql))
                            .await
                            .map_err(|err| sqlx_error(err, &cx))?;
                        if switch_role {
                            set_replica_role(applier.conn()?, false, tx).await?;
                        }
                    }
                    ChangeEvent::Schema(e) => {
                        applier.flush().await?;
                        self.forget_referenced();
                        ddl::apply_schema_change(applier.conn()?, e, &self.ddl_ctx()).await?;
                    }
                    other => {
                        return Err(Error::new(
                            synchdb_core::ErrorKind::SinkApply,
                            format!("unsupported event {}", other.operation()),
                        )
                        .with_table(other.table_id().clone()))
                    }
                }
            }
            if !tx.foreign_key_checks {
                applier.flush().await?;
                set_replica_role(applier.conn()?, false, tx).await?;
            }
        }
        applier.flush().await?;
        Ok(applier.changed)
    }
}

impl PgSink {
    /// Apply one batch split over several sessions, committed by two-phase
    /// commit with the checkpoint in the decision (see [`parallel`]).
    async fn apply_parallel(&self, pipeline: &str, batch: &ChangeBatch, parts: Vec<Part>) -> Result<()> {
        let n = self.inner.batches.fetch_add(1, Ordering::Relaxed);
        let gids: Vec<String> =
            (0..parts.len()).map(|w| parallel::gid(pipeline, &self.inner.run, n, w)).collect();
        let cx = Context::state();
        let shares = futures::future::join_all(parts.iter().zip(&gids).map(|(part, gid)| {
            let cx = &cx;
            async move {
                let mut conn = self.conn().await?;
                // A share waiting for a row another share holds would wait for
                // ever once that one is prepared (PostgreSQL sees no deadlock
                // through this process): it gives up, and the batch is applied
                // again in one session.
                conn.execute("BEGIN; SET LOCAL lock_timeout = '10s'").await.map_err(|e| sqlx_error(e, cx))?;
                let changed = self.apply_events(&mut conn, batch, Some(part)).await?;
                let prepare = format!("PREPARE TRANSACTION {}", literal(gid));
                conn.execute(AssertSqlSafe(prepare)).await.map_err(|e| sqlx_error(e, cx))?;
                Ok::<_, Error>((conn, changed))
            }
        }))
        .await;
        let mut prepared = Vec::with_capacity(shares.len());
        let mut failed = None;
        let mut changed = 0;
        for share in shares {
            match share {
                Ok((conn, c)) => {
                    prepared.push(conn);
                    changed += c;
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            // No decision was stored: the prepared shares are rolled back.
            self.abandon(pipeline, prepared).await;
            return Err(e);
        }
        let decision = async {
            let mut conn = self.conn().await?;
            let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &cx))?;
            sqlx::query(AssertSqlSafe(self.inner.state.decide_prepared_sql()))
                .bind(pipeline)
                .bind(&gids)
                .execute(&mut *tx)
                .await
                .map_err(|e| sqlx_error(e, &cx))?;
            let written = self.inner.state.store(&mut tx, pipeline, &batch.state).await?;
            commit(tx).await?;
            conn.done();
            Ok::<_, Error>(written)
        }
        .await;
        let written = match decision {
            Ok(w) => w,
            Err(e) => {
                // Stored or not (a lost COMMIT), the stored decision says.
                self.abandon(pipeline, prepared).await;
                return Err(e);
            }
        };
        self.inner.state.committed(pipeline, written);
        let commits = futures::future::join_all(prepared.into_iter().zip(&gids).map(|(mut conn, gid)| {
            let cx = &cx;
            async move {
                let sql = format!("COMMIT PREPARED {}", literal(gid));
                conn.execute(AssertSqlSafe(sql)).await.map_err(|e| sqlx_error(e, cx))?;
                conn.done();
                Ok::<_, Error>(())
            }
        }))
        .await;
        if let Some(e) = commits.into_iter().find_map(|r| r.err()) {
            // The batch is decided: its shares are committed before the next
            // batch (or at the next start), whatever happens to this process.
            warn!(error = %e, "a share of a parallel batch is not committed yet; committing it before the next batch");
            self.inner.unresolved.store(true, Ordering::Release);
        }
        debug!(events = batch.event_count(), changed, workers = gids.len(), "batch applied in parallel");
        Ok(())
    }

    /// After a failed parallel batch: close its sessions (a share not yet
    /// prepared rolls back) and resolve the prepared ones by the stored
    /// decision, now or before the next batch.
    async fn abandon(&self, pipeline: &str, prepared: Vec<Conn>) {
        drop(prepared);
        self.inner.serial_next.store(true, Ordering::Release);
        self.inner.unresolved.store(true, Ordering::Release);
        if let Err(e) = self.resolve_prepared(pipeline).await {
            warn!(error = %e, "prepared shares of a failed batch not resolved yet; trying again before the next batch");
        }
    }

    /// The target tables a foreign key references (cached until the next DDL).
    async fn referenced_tables(&self) -> Result<Arc<Referenced>> {
        if let Some(r) = self.inner.referenced.lock().expect("referenced poisoned").clone() {
            return Ok(r);
        }
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT n.nspname::text, c.relname::text FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'f'",
        )
        .fetch_all(&self.inner.pool)
        .await
        .map_err(|e| sqlx_error(e, &Context::state()))?;
        let set = Arc::new(rows.into_iter().collect::<HashSet<_>>());
        *self.inner.referenced.lock().expect("referenced poisoned") = Some(set.clone());
        Ok(set)
    }

    fn forget_referenced(&self) {
        *self.inner.referenced.lock().expect("referenced poisoned") = None;
    }

    /// Commit the pipeline's prepared transactions whose batch was decided
    /// (a row in `<state>.prepared`), roll back the others.
    async fn resolve_prepared(&self, pipeline: &str) -> Result<()> {
        let cx = Context::state();
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &cx))?;
        // Waits for a decision still being committed (the coordinator holds the lock).
        sqlx::query(AssertSqlSafe(self.inner.state.lock_prepared_sql()))
            .bind(pipeline)
            .execute(&mut *tx)
            .await
            .map_err(|e| sqlx_error(e, &cx))?;
        let open: Vec<String> = sqlx::query_scalar(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1) ORDER BY gid",
        )
        .bind(parallel::gid_prefix(pipeline))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| sqlx_error(e, &cx))?;
        let decided: Vec<String> = sqlx::query_scalar(AssertSqlSafe(self.inner.state.select_prepared_sql()))
            .bind(pipeline)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| sqlx_error(e, &cx))?;
        commit(tx).await?;
        for gid in &open {
            let (verb, what) =
                if decided.contains(gid) { ("COMMIT", "committed") } else { ("ROLLBACK", "rolled back") };
            conn.execute(AssertSqlSafe(format!("{verb} PREPARED {}", literal(gid))))
                .await
                .map_err(|e| sqlx_error(e, &cx))?;
            info!(gid, "prepared share of a parallel batch {what}");
        }
        if !decided.is_empty() {
            sqlx::query(AssertSqlSafe(self.inner.state.clear_prepared_sql()))
                .bind(pipeline)
                .execute(&mut *conn)
                .await
                .map_err(|e| sqlx_error(e, &cx))?;
        }
        conn.done();
        self.inner.unresolved.store(false, Ordering::Release);
        Ok(())
    }
}

/// `s` as an SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A batch's transactions with the events to apply (all, or `part`'s).
type Selected<'a> = Vec<(&'a Transaction, Vec<&'a ChangeEvent>)>;

fn selected<'a>(batch: &'a ChangeBatch, part: Option<&'a Part>) -> Selected<'a> {
    match part {
        None => batch.transactions.iter().map(|t| (t, t.events.iter().collect())).collect(),
        Some(p) => p
            .iter()
            .map(|(i, ev)| {
                let t = &batch.transactions[*i];
                (t, ev.iter().map(|&e| &t.events[e]).collect())
            })
            .collect(),
    }
}

/// Turn foreign-key (and all other) triggers off or on for the rest of the
/// PostgreSQL transaction (`session_replication_role`, which needs a
/// superuser or, from PostgreSQL 15, `GRANT SET ON PARAMETER`).
async fn set_replica_role(conn: &mut PgConnection, replica: bool, tx: &Transaction) -> Result<()> {
    let sql = if replica {
        "SET LOCAL session_replication_role = replica"
    } else {
        "SET LOCAL session_replication_role = origin"
    };
    conn.execute(sql).await.map_err(|e| {
        let mut err = Error::new(
            synchdb_core::ErrorKind::SinkApply,
            "the source ran this transaction with FOREIGN_KEY_CHECKS=0; applying it the same way needs \
             session_replication_role (a PostgreSQL superuser, or GRANT SET ON PARAMETER \
             session_replication_role TO the sink's user)",
        )
        .with_position(tx.end_position.binlog.clone())
        .with_source(e);
        if let Some(t) = tx.events.first().map(ChangeEvent::table_id) {
            err = err.with_table(t.clone());
        }
        err
    })?;
    Ok(())
}

async fn commit(tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<()> {
    tx.commit().await.map_err(|e| sqlx_error(e, &Context::state()))
}

/// A pooled connection that goes back to the pool only once its work is
/// done ([`Conn::done`]): one dropped midway (an error, or a task cancelled
/// in the middle of a COPY) is closed, so the pool never hands out a
/// connection in an unknown state.
struct Conn {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    done: bool,
}

impl Conn {
    fn done(mut self) {
        self.done = true;
    }
}

impl std::ops::Deref for Conn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

#[async_trait]
impl SinkState for PgSink {
    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        // A new run: a target transaction left open by the last one is rolled back.
        if let Some((_, conn)) = self.inner.open.lock().await.take() {
            drop(conn);
        }
        // A parallel batch the last run left prepared is committed or rolled
        // back as its stored decision says, before the checkpoint is read.
        self.resolve_prepared(pipeline).await?;
        let mut conn = self.inner.pool.acquire().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        self.inner.state.load(&mut conn, pipeline).await
    }

    async fn save_state(&self, pipeline: &str, update: &StateUpdate) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        let written = self.inner.state.store(&mut tx, pipeline, update).await?;
        commit(tx).await?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        Ok(())
    }
}

#[async_trait]
impl Sink for PgSink {
    fn name(&self) -> &str {
        "postgres"
    }

    fn state(&self) -> Option<&dyn SinkState> {
        Some(self)
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::all()
    }

    fn supports_open_batches(&self) -> bool {
        true
    }

    async fn prepare_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        restart: &[TableId],
        state: &StateUpdate,
    ) -> Result<()> {
        self.forget_referenced();
        self.validate_tables(tables).await?;
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        let cx = self.ddl_ctx();
        // The `restart` tables are copied again from scratch: drop them and create them
        // anew from the current source schema (as a resync does). Emptying them would keep
        // the shape of an earlier plan (`CREATE TABLE IF NOT EXISTS` leaves an existing
        // table alone), which a snapshot restarted because the source schema changed
        // (a column added, a type changed) cannot load into.
        for id in restart {
            let q = self.target_table(id);
            let sql = format!("DROP TABLE IF EXISTS {q} CASCADE");
            tx.execute(AssertSqlSafe(sql)).await.map_err(|e| sqlx_error(e, &Context::schema(id)))?;
        }
        for t in tables {
            let entry = self.entry(t)?;
            ddl::create_table_for_load(&mut tx, t, &entry.pt, &cx).await?;
        }
        let written = self.inner.state.store(&mut tx, pipeline, state).await?;
        commit(tx).await?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        info!(tables = tables.len(), restart = restart.len(), "snapshot tables ready");
        Ok(())
    }

    async fn write_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &ChunkInfo,
        read_at: &Position,
        rows: RowStream<'_>,
    ) -> Result<u64> {
        let entry = self.entry(table)?;
        let opts = &self.inner.opts;
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        let n = copy_rows(
            &mut tx,
            &entry.pt,
            opts.get_zero_dates(),
            opts.get_copy_buffer_bytes(),
            opts.get_copy_format(),
            rows,
        )
        .await?;
        let update = StateUpdate {
            snapshot: Some(SnapshotUpdate::ChunkDone(ChunkDone {
                table: chunk.table.clone(),
                index: chunk.index,
                rows: n,
                read_at: read_at.clone(),
            })),
            ..Default::default()
        };
        let written = self.inner.state.store(&mut tx, pipeline, &update).await?;
        commit(tx).await?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        debug!(table = %table.id, chunk = chunk.index, rows = n, "chunk copied");
        Ok(n)
    }

    async fn finish_snapshot(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        self.forget_referenced();
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        let cx = self.ddl_ctx();
        let entries: Vec<Arc<TableEntry>> = tables.iter().map(|t| self.entry(t)).collect::<Result<_>>()?;
        // Indexes of every table first: foreign keys need the referenced unique keys.
        for (t, e) in tables.iter().zip(&entries) {
            let indexes_only = TableSchema { foreign_keys: vec![], ..(**t).clone() };
            ddl::create_indexes_and_keys(&mut tx, &indexes_only, &e.pt, &cx).await?;
        }
        for (t, e) in tables.iter().zip(&entries) {
            let keys_only = TableSchema { indexes: vec![], ..(**t).clone() };
            ddl::create_indexes_and_keys(&mut tx, &keys_only, &e.pt, &cx).await?;
            ddl::sync_identities(&mut tx, &e.pt).await?;
        }
        let written = self.inner.state.store(&mut tx, pipeline, state).await?;
        commit(tx).await?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        info!(tables = tables.len(), "snapshot finished: indexes, foreign keys and sequences built");
        Ok(())
    }

    /// Drops and creates each table anew (its primary key is built with its
    /// other indexes by `finish_resync`; the foreign keys that point to it go
    /// with it), in one transaction with `state`.
    async fn begin_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        self.forget_referenced();
        self.validate_tables(tables).await?;
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        let cx = self.ddl_ctx();
        for t in tables {
            let q = self.target_table(&t.id);
            let sql = format!("DROP TABLE IF EXISTS {q} CASCADE");
            tx.execute(AssertSqlSafe(sql)).await.map_err(|e| sqlx_error(e, &Context::schema(&t.id)))?;
            let entry = self.entry(t)?;
            ddl::create_table_for_load(&mut tx, t, &entry.pt, &cx).await?;
        }
        let written = self.inner.state.store(&mut tx, pipeline, state).await?;
        commit(tx).await?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        info!(tables = tables.len(), "resync tables emptied");
        Ok(())
    }

    async fn finish_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        let cx = self.ddl_ctx();
        for t in tables {
            let e = self.entry(t)?;
            let indexes_only = TableSchema { foreign_keys: vec![], ..(**t).clone() };
            ddl::create_indexes_and_keys(&mut tx, &indexes_only, &e.pt, &cx).await?;
            ddl::sync_identities(&mut tx, &e.pt).await?;
        }
        let written = self.inner.state.store(&mut tx, pipeline, state).await?;
        commit(tx).await?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        Ok(())
    }

    async fn join_resync(
        &self,
        pipeline: &str,
        tables: &[Arc<TableSchema>],
        referencing: &[Arc<TableSchema>],
        state: &StateUpdate,
    ) -> Result<()> {
        self.forget_referenced();
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
        let cx = self.ddl_ctx();
        let ids: Vec<&TableId> = tables.iter().map(|t| &t.id).collect();
        for t in tables {
            let e = self.entry(t)?;
            let keys_only = TableSchema { indexes: vec![], ..(**t).clone() };
            ddl::create_indexes_and_keys(&mut tx, &keys_only, &e.pt, &cx).await?;
        }
        for r in referencing {
            let e = self.entry(r)?;
            let foreign_keys =
                r.foreign_keys.iter().filter(|fk| ids.contains(&&fk.referenced_table)).cloned().collect();
            let keys_only = TableSchema { indexes: vec![], foreign_keys, ..(**r).clone() };
            ddl::create_indexes_and_keys(&mut tx, &keys_only, &e.pt, &cx).await?;
        }
        let written = self.inner.state.store(&mut tx, pipeline, state).await?;
        commit(tx).await?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        Ok(())
    }

    async fn apply(&self, pipeline: &str, batch: &ChangeBatch) -> Result<()> {
        if self.inner.unresolved.load(Ordering::Acquire) {
            // Their row locks would block this batch.
            self.resolve_prepared(pipeline).await?;
        }
        let mut open = self.inner.open.lock().await;
        if !batch.open && open.is_none() {
            drop(open);
            let workers = self.inner.opts.get_apply_workers() as usize;
            let serial = self.inner.serial_next.swap(false, Ordering::AcqRel);
            if workers > 1 && !serial && batch.event_count() >= parallel::MIN_PARALLEL_EVENTS {
                let referenced = self.referenced_tables().await?;
                let parts = parallel::partition(batch, workers, |t| {
                    let e = self.entry(t)?;
                    Ok((e.clone(), referenced.contains(&(e.pt.schema.clone(), e.pt.name.clone()))))
                })?;
                if let Some(parts) = parts {
                    return self.apply_parallel(pipeline, batch, parts).await;
                }
            }
            let mut conn = self.conn().await?;
            let mut tx = conn.begin().await.map_err(|e| sqlx_error(e, &Context::state()))?;
            let changed = self.apply_events(&mut tx, batch, None).await?;
            let written = self.inner.state.store(&mut tx, pipeline, &batch.state).await?;
            commit(tx).await?;
            self.inner.state.committed(pipeline, written);
            conn.done();
            debug!(events = batch.event_count(), changed, "batch applied");
            return Ok(());
        }
        // A source transaction applied in pieces: one target transaction over
        // several batches, committed with the checkpoint by the last one. A
        // failure drops the connection, which rolls every piece back.
        let mut conn = match open.take() {
            Some((p, conn)) if p == pipeline => conn,
            Some((p, _)) => {
                return Err(Error::internal(format!(
                    "an open batch of pipeline {p:?} was followed by one of {pipeline:?}"
                )))
            }
            None => {
                let mut conn = self.conn().await?;
                conn.execute("BEGIN").await.map_err(|e| sqlx_error(e, &Context::state()))?;
                conn
            }
        };
        let changed = self.apply_events(&mut conn, batch, None).await?;
        let written = self.inner.state.store(&mut conn, pipeline, &batch.state).await?;
        if batch.open {
            debug!(
                events = batch.event_count(),
                changed, "piece of a large transaction applied (not committed)"
            );
            *open = Some((pipeline.to_string(), conn));
            return Ok(());
        }
        conn.execute("COMMIT").await.map_err(|e| sqlx_error(e, &Context::state()))?;
        self.inner.state.committed(pipeline, written);
        conn.done();
        debug!(
            events = batch.event_count(),
            changed, "last piece of a large transaction applied and committed"
        );
        Ok(())
    }

    async fn dead_letter(&self, pipeline: &str, event: &ChangeEvent, error: &Error) -> Result<()> {
        // JSON escapes every character (a NUL becomes \u0000), so the text form holds any
        // event; jsonb refuses \u0000, so that column is left NULL for such events.
        let text =
            serde_json::to_string(event).map_err(|e| Error::internal("event to JSON").with_source(e))?;
        let json: Option<serde_json::Value> =
            if text.contains("\\u0000") { None } else { serde_json::from_str(&text).ok() };
        sqlx::query(AssertSqlSafe(self.inner.state.insert_dead_letter.clone()))
            .bind(pipeline)
            .bind(event.table_id().to_string())
            .bind(event.operation())
            .bind(event.meta().position.to_string())
            .bind(json)
            .bind(error.to_string().replace('\0', "\\0"))
            .bind(text)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| sqlx_error(e, &Context::state()))?;
        Ok(())
    }

    async fn check_tables(&self, tables: &[Arc<TableSchema>]) -> Result<()> {
        PgSink::validate_tables(self, tables).await
    }

    async fn publish_status(&self, status: &synchdb_core::PipelineStatus) -> Result<()> {
        self.inner.state.publish_status(&self.inner.pool, status).await
    }

    async fn shutdown(&self) -> Result<()> {
        // A target transaction left open by an interrupted open batch is rolled back.
        if let Some((_, conn)) = self.inner.open.lock().await.take() {
            drop(conn);
        }
        // The pool stays open: clones of the sink (and the service that gave
        // it) may still read the replica; it closes with the last clone.
        Ok(())
    }
}
