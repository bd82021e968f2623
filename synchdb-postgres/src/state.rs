//! Pipeline state in PostgreSQL, written in the transaction of the data it covers.
//!
//! ```text
//! <state>.pipelines(pipeline_id PK, position, gtid, snapshot jsonb, updated_at,
//!                   pos_file_seq, pos_offset,   -- the last two order positions
//!                   resync text (JSON), resync_loaded)  -- a table copy in progress
//! <state>.snapshot_chunks(pipeline_id, table_id, chunk, rows, read_at, PK(pipeline_id, table_id, chunk))
//! <state>.schemas(pipeline_id, table_id, schema text (JSON), PK(pipeline_id, table_id))
//! <state>.prepared(gid PK, pipeline_id)  -- parallel apply: prepared transactions a stored decision commits
//! <state>.dead_letter(id bigserial, pipeline_id, table_id, operation, position, event jsonb, error, at,
//!                     event_text)  -- the event's JSON as text: always there, lossless; `event` is
//!                                  -- NULL when jsonb cannot hold it (a NUL in a string)
//! ```

use std::sync::Arc;

use sqlx::{AssertSqlSafe, Executor, PgConnection, Row as _};
use synchdb_core::{
    ChunkDone, Error, ErrorKind, PipelineState, Result, ResyncUpdate, SchemaUpdate, SnapshotProgress,
    SnapshotStatus, SnapshotUpdate, StateUpdate,
};
use synchdb_types::{Position, TableSchema};

use crate::ddl::quote;
use crate::error::{sqlx_error, Context};

/// Advisory lock class of parallel apply's decisions (the second key is the pipeline's hash).
const PREPARED_LOCK: i32 = 734702180;

/// The position a [`StateSql::store`] wrote, if any.
#[must_use = "pass it to StateSql::committed once the transaction commits"]
pub(crate) struct Written(Option<String>);

/// The SQL of the state tables.
#[derive(Debug, Clone)]
pub(crate) struct StateSql {
    schema: String,
    /// Per pipeline, the position this process last committed (or loaded):
    /// a position is stored only over it (compare and set), so a target that
    /// lost committed transactions (a crash with `synchronous_commit=off`, a
    /// failover to a lagging standby) or a second process running the same
    /// pipeline is noticed instead of leaving a gap.
    expected: Arc<std::sync::Mutex<std::collections::HashMap<String, Option<String>>>>,
    upsert_position: Arc<str>,
    set_snapshot: Arc<str>,
    delete_chunks: Arc<str>,
    insert_chunk: Arc<str>,
    upsert_schema: Arc<str>,
    delete_schema: Arc<str>,
    set_resync: Arc<str>,
    resync_loaded: Arc<str>,
    pub insert_dead_letter: Arc<str>,
    select_pipeline: Arc<str>,
    set_skips: Arc<str>,
    select_chunks: Arc<str>,
    select_schemas: Arc<str>,
}

impl StateSql {
    /// Parallel apply's decision, in the coordinator's transaction (with the
    /// checkpoint): the pipeline's earlier rows go (their shares were
    /// resolved), the prepared transactions `$2` of this batch are recorded.
    /// Holds [`lock_prepared_sql`](Self::lock_prepared_sql)'s lock until the commit.
    pub fn decide_prepared_sql(&self) -> String {
        let s = &self.schema;
        format!(
            "WITH l AS (SELECT pg_advisory_xact_lock({PREPARED_LOCK}, hashtext($1))),
             d AS (DELETE FROM {s}.prepared p USING l WHERE p.pipeline_id = $1)
             INSERT INTO {s}.prepared (pipeline_id, gid) SELECT $1, g FROM l, unnest($2::text[]) AS g"
        )
    }

    /// Waits for a decision being committed (`$1`: the pipeline).
    pub fn lock_prepared_sql(&self) -> String {
        format!("SELECT pg_advisory_xact_lock({PREPARED_LOCK}, hashtext($1))")
    }

    /// The prepared transactions a decision of pipeline `$1` committed to.
    pub fn select_prepared_sql(&self) -> String {
        format!("SELECT gid FROM {}.prepared WHERE pipeline_id = $1", self.schema)
    }

    /// Forget pipeline `$1`'s decisions (their transactions are resolved).
    pub fn clear_prepared_sql(&self) -> String {
        format!("DELETE FROM {}.prepared WHERE pipeline_id = $1", self.schema)
    }

    /// `SELECT position FROM <state>.pipelines WHERE pipeline_id = $1`.
    pub fn select_position_sql(&self) -> String {
        format!("SELECT position FROM {}.pipelines WHERE pipeline_id = $1", self.schema)
    }

    pub fn new(schema: &str) -> Self {
        let s = quote(schema);
        StateSql {
            schema: s.clone(),
            expected: Arc::default(),
            upsert_position: format!(
                "INSERT INTO {s}.pipelines AS p (pipeline_id, position, gtid, pos_file_seq, pos_offset, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (pipeline_id) DO UPDATE SET \
                 position = EXCLUDED.position, gtid = EXCLUDED.gtid, pos_file_seq = EXCLUDED.pos_file_seq, \
                 pos_offset = EXCLUDED.pos_offset, updated_at = now() \
                 WHERE $7 OR p.position IS NOT DISTINCT FROM $6"
            ).into(),
            set_snapshot: format!(
                "INSERT INTO {s}.pipelines AS p (pipeline_id, snapshot, updated_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (pipeline_id) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated_at = now()"
            ).into(),
            delete_chunks: format!("DELETE FROM {s}.snapshot_chunks WHERE pipeline_id = $1").into(),
            insert_chunk: format!(
                "INSERT INTO {s}.snapshot_chunks (pipeline_id, table_id, chunk, rows, read_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
            ).into(),
            upsert_schema: format!(
                "INSERT INTO {s}.schemas (pipeline_id, table_id, schema) VALUES ($1, $2, $3) \
                 ON CONFLICT (pipeline_id, table_id) DO UPDATE SET schema = EXCLUDED.schema"
            ).into(),
            delete_schema: format!("DELETE FROM {s}.schemas WHERE pipeline_id = $1 AND table_id = $2").into(),
            set_resync: format!(
                "INSERT INTO {s}.pipelines AS p (pipeline_id, resync, resync_loaded, updated_at) \
                 VALUES ($1, $2, false, now()) ON CONFLICT (pipeline_id) DO UPDATE SET resync = EXCLUDED.resync, \
                 resync_loaded = false, updated_at = now()"
            ).into(),
            resync_loaded: format!(
                "UPDATE {s}.pipelines SET resync_loaded = true WHERE pipeline_id = $1 AND resync IS NOT NULL"
            ).into(),
            insert_dead_letter: format!(
                "INSERT INTO {s}.dead_letter (pipeline_id, table_id, operation, position, event, error, event_text) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ).into(),
            select_pipeline: format!(
                "SELECT position, snapshot, resync, resync_loaded, skip_before FROM {s}.pipelines WHERE pipeline_id = $1"
            )
            .into(),
            set_skips: format!(
                "INSERT INTO {s}.pipelines AS p (pipeline_id, skip_before, updated_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (pipeline_id) DO UPDATE SET skip_before = EXCLUDED.skip_before, updated_at = now()"
            )
            .into(),
            select_chunks: format!(
                "SELECT table_id, chunk, rows, read_at FROM {s}.snapshot_chunks WHERE pipeline_id = $1 \
                 ORDER BY table_id, chunk"
            ).into(),
            select_schemas: format!("SELECT schema::text FROM {s}.schemas WHERE pipeline_id = $1 ORDER BY table_id")
                .into(),
        }
    }

    /// The transaction that stored `written` for `pipeline` committed.
    pub fn committed(&self, pipeline: &str, written: Written) {
        if let Some(p) = written.0 {
            self.expected.lock().unwrap_or_else(|e| e.into_inner()).insert(pipeline.to_string(), Some(p));
        }
    }

    /// Store a pipeline's status and per-table counters (one transaction,
    /// apart from the data's).
    pub async fn publish_status(&self, pool: &sqlx::PgPool, st: &synchdb_core::PipelineStatus) -> Result<()> {
        let s = &self.schema;
        let cx = Context::state();
        let err = |e| sqlx_error(e, &cx);
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let json = serde_json::to_value(st).map_err(|e| Error::internal("status to JSON").with_source(e))?;
        let mut tx = pool.begin().await.map_err(err)?;
        let c = &st.counters;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {s}.pipeline_stats AS t (pipeline_id, phase, paused, started_at, lag_seconds, lag_bytes,
               latency_ms, last_applied_at, source_position, source_head, inserts, updates, deletes, truncates, ddl,
               transactions, snapshot_rows, snapshot_chunks_done, snapshot_chunks_total, retries, restarts,
               dead_letters, last_error, last_error_at, status, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,now())
             ON CONFLICT (pipeline_id) DO UPDATE SET phase = EXCLUDED.phase, paused = EXCLUDED.paused,
               started_at = EXCLUDED.started_at, lag_seconds = EXCLUDED.lag_seconds, lag_bytes = EXCLUDED.lag_bytes,
               latency_ms = EXCLUDED.latency_ms, last_applied_at = EXCLUDED.last_applied_at,
               source_position = EXCLUDED.source_position, source_head = EXCLUDED.source_head,
               inserts = EXCLUDED.inserts, updates = EXCLUDED.updates, deletes = EXCLUDED.deletes,
               truncates = EXCLUDED.truncates, ddl = EXCLUDED.ddl, transactions = EXCLUDED.transactions,
               snapshot_rows = EXCLUDED.snapshot_rows, snapshot_chunks_done = EXCLUDED.snapshot_chunks_done,
               snapshot_chunks_total = EXCLUDED.snapshot_chunks_total, retries = EXCLUDED.retries,
               restarts = EXCLUDED.restarts, dead_letters = EXCLUDED.dead_letters,
               last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at,
               status = EXCLUDED.status, updated_at = now()"
        )))
        .bind(&st.pipeline)
        .bind(st.phase.as_str())
        .bind(st.paused)
        .bind(st.started_at)
        .bind(st.lag_seconds)
        .bind(st.lag_bytes.map(i))
        .bind(i(st.latency_last_ms))
        .bind(st.applied.at)
        .bind(&st.source.position)
        .bind(&st.source.head)
        .bind(i(c.inserts))
        .bind(i(c.updates))
        .bind(i(c.deletes))
        .bind(i(c.truncates))
        .bind(i(c.ddl))
        .bind(i(c.transactions))
        .bind(i(c.snapshot_rows))
        .bind(i(st.snapshot.chunks_done))
        .bind(i(st.snapshot.chunks_total))
        .bind(i(c.retries))
        .bind(i(c.restarts))
        .bind(i(c.dead_letters))
        .bind(st.last_error.as_ref().map(|e| e.message.replace('\0', "\\0")))
        .bind(st.last_error.as_ref().map(|e| e.at))
        .bind(json)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if !st.tables.is_empty() {
            let col = |f: &dyn Fn(&synchdb_core::status::TableStatus) -> u64| -> Vec<i64> {
                st.tables.iter().map(|t| i(f(t))).collect()
            };
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {s}.table_counters AS t (pipeline_id, table_id, inserts, updates, deletes, truncates, ddl,
                   snapshot_rows, dead_letters, last_applied_at, updated_at)
                 SELECT $1, * , now() FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],
                   $8::int8[], $9::int8[], $10::timestamptz[])
                 ON CONFLICT (pipeline_id, table_id) DO UPDATE SET inserts = EXCLUDED.inserts,
                   updates = EXCLUDED.updates, deletes = EXCLUDED.deletes, truncates = EXCLUDED.truncates,
                   ddl = EXCLUDED.ddl, snapshot_rows = EXCLUDED.snapshot_rows, dead_letters = EXCLUDED.dead_letters,
                   last_applied_at = EXCLUDED.last_applied_at, updated_at = now()"
            )))
            .bind(&st.pipeline)
            .bind(st.tables.iter().map(|t| t.table.replace('\0', "")).collect::<Vec<_>>())
            .bind(col(&|t| t.inserts))
            .bind(col(&|t| t.updates))
            .bind(col(&|t| t.deletes))
            .bind(col(&|t| t.truncates))
            .bind(col(&|t| t.ddl))
            .bind(col(&|t| t.snapshot_rows))
            .bind(col(&|t| t.dead_letters))
            .bind(st.tables.iter().map(|t| t.last_applied_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    /// The stored status of a pipeline (`replicate --status`): the
    /// `pipeline_status` view's row as JSON, the last full status, and the
    /// per-table counters.
    pub async fn read_status(
        &self,
        pool: &sqlx::PgPool,
        pipeline: &str,
    ) -> Result<Option<serde_json::Value>> {
        let s = &self.schema;
        let cx = Context::state();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT to_jsonb(v) AS view, st.status FROM {s}.pipeline_status v
               LEFT JOIN {s}.pipeline_stats st USING (pipeline_id) WHERE v.pipeline_id = $1"
        )))
        .bind(pipeline)
        .fetch_optional(pool)
        .await
        .map_err(|e| sqlx_error(e, &cx))?;
        let Some(row) = row else { return Ok(None) };
        let view: serde_json::Value = row.try_get("view").map_err(|e| sqlx_error(e, &cx))?;
        let status: Option<serde_json::Value> = row.try_get("status").map_err(|e| sqlx_error(e, &cx))?;
        let tables: Vec<serde_json::Value> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT to_jsonb(t) FROM {s}.table_stats t WHERE pipeline_id = $1 ORDER BY table_name"
        )))
        .bind(pipeline)
        .fetch_all(pool)
        .await
        .map_err(|e| sqlx_error(e, &cx))?;
        Ok(Some(serde_json::json!({ "view": view, "status": status, "tables": tables })))
    }

    /// Create the state schema and tables (idempotent; serialised by an advisory lock).
    pub async fn create(&self, conn: &mut PgConnection) -> Result<()> {
        let s = &self.schema;
        let lit = s.replace('\'', "''");
        let ddl = format!(
            "SELECT pg_advisory_xact_lock(7347021805);
             CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.pipelines (pipeline_id text PRIMARY KEY, position text, gtid text,
               snapshot jsonb, updated_at timestamptz NOT NULL DEFAULT now(), pos_file_seq bigint, pos_offset bigint);
             CREATE TABLE IF NOT EXISTS {s}.snapshot_chunks (pipeline_id text NOT NULL, table_id text NOT NULL,
               chunk int NOT NULL, rows bigint NOT NULL, read_at text NOT NULL, PRIMARY KEY (pipeline_id, table_id, chunk));
             CREATE TABLE IF NOT EXISTS {s}.schemas (pipeline_id text NOT NULL, table_id text NOT NULL,
               schema text NOT NULL, PRIMARY KEY (pipeline_id, table_id));
             CREATE TABLE IF NOT EXISTS {s}.dead_letter (id bigserial PRIMARY KEY, pipeline_id text NOT NULL,
               table_id text, operation text, position text, event jsonb, error text,
               at timestamptz NOT NULL DEFAULT now());
             ALTER TABLE {s}.dead_letter ADD COLUMN IF NOT EXISTS event_text text;
             ALTER TABLE {s}.pipelines ADD COLUMN IF NOT EXISTS resync text;
             ALTER TABLE {s}.pipelines ADD COLUMN IF NOT EXISTS resync_loaded boolean NOT NULL DEFAULT false;
             ALTER TABLE {s}.pipelines ADD COLUMN IF NOT EXISTS skip_before text;
             CREATE TABLE IF NOT EXISTS {s}.prepared (gid text PRIMARY KEY, pipeline_id text NOT NULL);
             CREATE TABLE IF NOT EXISTS {s}.pipeline_stats (pipeline_id text PRIMARY KEY, phase text NOT NULL,
               paused boolean NOT NULL, started_at timestamptz, lag_seconds double precision, lag_bytes bigint,
               latency_ms bigint, last_applied_at timestamptz, source_position text, source_head text,
               inserts bigint, updates bigint, deletes bigint, truncates bigint, ddl bigint, transactions bigint,
               snapshot_rows bigint, snapshot_chunks_done bigint, snapshot_chunks_total bigint, retries bigint,
               restarts bigint, dead_letters bigint, last_error text, last_error_at timestamptz, status jsonb,
               updated_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE IF NOT EXISTS {s}.table_counters (pipeline_id text NOT NULL, table_id text NOT NULL,
               inserts bigint NOT NULL, updates bigint NOT NULL, deletes bigint NOT NULL, truncates bigint NOT NULL,
               ddl bigint NOT NULL, snapshot_rows bigint NOT NULL, dead_letters bigint NOT NULL,
               last_applied_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now(),
               PRIMARY KEY (pipeline_id, table_id));
             CREATE OR REPLACE VIEW {s}.pipeline_status AS
               SELECT p.pipeline_id,
                 CASE WHEN st.phase IS NULL THEN 'unknown'
                      WHEN st.phase NOT IN ('stopped', 'failed') AND st.updated_at < now() - interval '15 seconds'
                        THEN 'not running'
                      ELSE st.phase END AS phase,
                 st.paused, p.position, p.gtid, st.lag_seconds, st.lag_bytes, st.latency_ms,
                 st.last_applied_at, st.last_error, st.last_error_at, st.inserts, st.updates, st.deletes,
                 st.truncates, st.ddl, st.transactions, st.snapshot_rows, st.snapshot_chunks_done,
                 st.snapshot_chunks_total, st.retries, st.restarts, st.dead_letters, st.source_position,
                 st.source_head, st.started_at, st.updated_at AS status_updated_at,
                 p.updated_at AS checkpoint_updated_at
               FROM {s}.pipelines p LEFT JOIN {s}.pipeline_stats st USING (pipeline_id);
             CREATE OR REPLACE VIEW {s}.table_stats AS
               SELECT pipeline_id, table_id AS table_name, inserts, updates, deletes, truncates, ddl, snapshot_rows,
                 dead_letters, last_applied_at, updated_at
               FROM {s}.table_counters;
             DO $$ BEGIN
               IF (SELECT atttypid FROM pg_attribute WHERE attrelid = '{lit}.schemas'::regclass
                   AND attname = 'schema') = 'jsonb'::regtype THEN
                 ALTER TABLE {s}.schemas ALTER COLUMN schema TYPE text;
               END IF;
               IF (SELECT atttypid FROM pg_attribute WHERE attrelid = '{lit}.pipelines'::regclass
                   AND attname = 'resync') = 'jsonb'::regtype THEN
                 UPDATE {s}.pipelines SET resync_loaded = coalesce((resync->>'loaded')::boolean, false);
                 ALTER TABLE {s}.pipelines ALTER COLUMN resync TYPE text;
               END IF;
             END $$;"
        );
        let cx = Context::state();
        conn.execute("BEGIN").await.map_err(|e| checkpoint(e, &cx))?;
        let r = conn.execute(AssertSqlSafe(ddl)).await;
        match r {
            Ok(_) => {
                conn.execute("COMMIT").await.map_err(|e| checkpoint(e, &cx))?;
                Ok(())
            }
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                Err(checkpoint(e, &cx))
            }
        }
    }

    /// Write `update` on `conn` (inside the caller's transaction). Returns
    /// the position written, for [`committed`](Self::committed) once the
    /// transaction commits.
    pub async fn store(
        &self,
        conn: &mut PgConnection,
        pipeline: &str,
        update: &StateUpdate,
    ) -> Result<Written> {
        let cx = Context::state();
        let mut written = Written(None);
        if let Some(p) = &update.position {
            let text = p.to_string();
            let expected = self.expected.lock().unwrap_or_else(|e| e.into_inner()).get(pipeline).cloned();
            let stored = sqlx::query(sql(&self.upsert_position))
                .bind(pipeline)
                .bind(&text)
                .bind(p.gtid.as_ref().map(ToString::to_string))
                .bind(p.binlog.file_sequence().map(|n| n as i64).unwrap_or(-1))
                .bind(p.binlog.pos as i64)
                .bind(expected.clone().flatten())
                // A sink that never loaded this pipeline's state has nothing to compare with.
                .bind(expected.is_none())
                .execute(&mut *conn)
                .await
                .map_err(|e| checkpoint(e, &cx))?
                .rows_affected();
            if stored == 0 {
                return Err(Error::new(
                    ErrorKind::SinkConnection,
                    format!(
                        "the stored checkpoint of pipeline {pipeline:?} is not the one this process stored last \
                         ({}): the target lost committed transactions (a crash with synchronous_commit=off, a \
                         failover) or another process runs this pipeline; starting again from the stored checkpoint",
                        expected.flatten().unwrap_or_else(|| "none".into())
                    ),
                ));
            }
            written = Written(Some(text));
        }
        if let Some(skips) = &update.skip_before {
            let json = (!skips.is_empty())
                .then(|| serde_json::to_string(skips))
                .transpose()
                .map_err(|e| Error::internal("skip points").with_source(e))?;
            sqlx::query(sql(&self.set_skips))
                .bind(pipeline)
                .bind(json)
                .execute(&mut *conn)
                .await
                .map_err(|e| checkpoint(e, &cx))?;
        }
        match &update.snapshot {
            None => {}
            Some(SnapshotUpdate::ChunkDone(d)) => {
                sqlx::query(sql(&self.insert_chunk))
                    .bind(pipeline)
                    .bind(d.table.to_string())
                    .bind(d.index as i32)
                    .bind(d.rows as i64)
                    .bind(d.read_at.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| checkpoint(e, &cx))?;
            }
            Some(other) => {
                let status = match other {
                    SnapshotUpdate::Started(plan) => {
                        SnapshotStatus::InProgress(SnapshotProgress { plan: plan.clone(), done: vec![] })
                    }
                    SnapshotUpdate::Finished => SnapshotStatus::Done,
                    _ => SnapshotStatus::NotStarted,
                };
                let json = serde_json::to_value(&status)
                    .map_err(|e| Error::internal("snapshot status").with_source(e))?;
                sqlx::query(sql(&self.delete_chunks))
                    .bind(pipeline)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| checkpoint(e, &cx))?;
                sqlx::query(sql(&self.set_snapshot))
                    .bind(pipeline)
                    .bind(json)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| checkpoint(e, &cx))?;
            }
        }
        match &update.resync {
            None => {}
            Some(ResyncUpdate::Loaded) => {
                sqlx::query(sql(&self.resync_loaded))
                    .bind(pipeline)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| checkpoint(e, &cx))?;
            }
            Some(other) => {
                let json = match other {
                    // text, not jsonb: the schemas may hold NUL (an enum label)
                    ResyncUpdate::Started(r) => Some(
                        serde_json::to_string(r)
                            .map_err(|e| Error::internal("resync state").with_source(e))?,
                    ),
                    _ => None,
                };
                sqlx::query(sql(&self.set_resync))
                    .bind(pipeline)
                    .bind(json)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| checkpoint(e, &cx))?;
            }
        }
        for s in &update.schemas {
            match s {
                SchemaUpdate::Upsert(t) => {
                    // text, not jsonb: a schema may hold NUL (an enum label), which jsonb refuses
                    let json =
                        serde_json::to_string(&**t).map_err(|e| Error::internal("schema").with_source(e))?;
                    sqlx::query(sql(&self.upsert_schema))
                        .bind(pipeline)
                        .bind(t.id.to_string())
                        .bind(json)
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| checkpoint(e, &cx))?;
                }
                SchemaUpdate::Drop(id) => {
                    sqlx::query(sql(&self.delete_schema))
                        .bind(pipeline)
                        .bind(id.to_string())
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| checkpoint(e, &cx))?;
                }
                _ => {}
            }
        }
        Ok(written)
    }

    /// Rebuild the state of `pipeline`, `None` when nothing is stored.
    pub async fn load(&self, conn: &mut PgConnection, pipeline: &str) -> Result<Option<PipelineState>> {
        let cx = Context::state();
        let row = sqlx::query(sql(&self.select_pipeline))
            .bind(pipeline)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| checkpoint(e, &cx))?;
        let schema_rows = sqlx::query(sql(&self.select_schemas))
            .bind(pipeline)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| checkpoint(e, &cx))?;
        let chunk_rows = sqlx::query(sql(&self.select_chunks))
            .bind(pipeline)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| checkpoint(e, &cx))?;
        if row.is_none() {
            self.expected.lock().unwrap_or_else(|e| e.into_inner()).insert(pipeline.to_string(), None);
        }
        if row.is_none() && schema_rows.is_empty() && chunk_rows.is_empty() {
            return Ok(None);
        }
        let bad = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| {
            Error::new(ErrorKind::Checkpoint, format!("stored {what} does not parse")).with_source(e)
        };
        let mut state = PipelineState::empty();
        if let Some(row) = row {
            let pos: Option<String> = row.get(0);
            self.expected.lock().unwrap_or_else(|e| e.into_inner()).insert(pipeline.to_string(), pos.clone());
            state.position =
                pos.map(|p| p.parse::<Position>()).transpose().map_err(|e| bad("position", e.into()))?;
            let snap: Option<serde_json::Value> = row.get(1);
            if let Some(v) = snap {
                state.snapshot = serde_json::from_value(v).map_err(|e| bad("snapshot", e.into()))?;
            }
            let skips: Option<String> = row.get(4);
            if let Some(v) = skips {
                state.skip_before = serde_json::from_str(&v).map_err(|e| bad("skip points", e.into()))?;
            }
            let resync: Option<String> = row.get(2);
            let loaded: bool = row.get(3);
            if let Some(v) = resync {
                let mut r: synchdb_core::ResyncState =
                    serde_json::from_str(&v).map_err(|e| bad("resync", e.into()))?;
                r.loaded |= loaded;
                state.resync = Some(r);
            }
        }
        for r in schema_rows {
            let text: String = r.get(0);
            let t: TableSchema = serde_json::from_str(&text).map_err(|e| bad("schema", e.into()))?;
            state.schemas.push(t);
        }
        if let SnapshotStatus::InProgress(p) = &mut state.snapshot {
            for r in chunk_rows {
                let table_id: String = r.get(0);
                let Some(table) = p.plan.tables.iter().find(|t| t.to_string() == table_id).cloned() else {
                    continue;
                };
                let read_at: String = r.get(3);
                p.done.push(ChunkDone {
                    table,
                    index: r.get::<i32, _>(1) as u32,
                    rows: r.get::<i64, _>(2) as u64,
                    read_at: read_at
                        .parse()
                        .map_err(|e: synchdb_types::ParseError| bad("read_at", e.into()))?,
                });
            }
        }
        Ok(Some(state))
    }
}

/// A failed state statement: transient when the connection is lost, else `Checkpoint`.
fn checkpoint(e: sqlx::Error, cx: &Context) -> Error {
    let err = sqlx_error(e, cx);
    if err.kind() == ErrorKind::SinkConnection {
        err
    } else {
        Error::new(ErrorKind::Checkpoint, "storing or loading the pipeline state failed").with_source(err)
    }
}

fn sql(s: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(s.clone())
}
