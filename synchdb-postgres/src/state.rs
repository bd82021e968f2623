//! Pipeline state in PostgreSQL, written in the transaction of the data it covers.
//!
//! ```text
//! <state>.pipelines(pipeline_id PK, position, gtid, snapshot jsonb, updated_at,
//!                   pos_file_seq, pos_offset,   -- the last two order positions
//!                   resync text (JSON), resync_loaded)  -- a table copy in progress
//! <state>.snapshot_chunks(pipeline_id, table_id, chunk, rows, read_at, PK(pipeline_id, table_id, chunk))
//! <state>.schemas(pipeline_id, table_id, schema text (JSON), PK(pipeline_id, table_id))
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
