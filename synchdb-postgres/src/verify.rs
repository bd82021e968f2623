//! The target side of a verification ([`synchdb_core::verify`]): each chunk's
//! mapped source rows are copied, exactly as the snapshot copies them, into
//! a temporary table shaped like the target table, and compared with the
//! target's rows of the chunk as multisets of column texts (`EXCEPT ALL`),
//! in one REPEATABLE READ snapshot that also reads the pipeline's applied
//! position. PostgreSQL parses both sides the same way, so a value equal
//! after replication is equal here, whatever its type (json, geometry,
//! floats, transforms applied by the sink).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Acquire, AssertSqlSafe, Executor, Row as _};
use synchdb_core::verify::{ChunkComparison, RepairChunk, VerifyTarget};
use synchdb_core::{ChunkInfo, Error, ErrorKind, Result, RowStream};
use synchdb_types::{ColumnType, Position, TableSchema, Value};

use crate::copy::copy_rows;
use crate::ddl::{quote, PgTable};
use crate::error::{sqlx_error, Context};
use crate::sink::PgSink;
use crate::typemap::{write_value, PgColumn};

/// The temporary table a chunk's source rows are copied into.
const VERIFY_TABLE: &str = "synchdb_verify";

/// Whether the source's key order is the target's for this column: numbers,
/// temporal types and binary strings order alike; text under a collation,
/// enums, floats and transformed or overridden columns do not.
fn range_safe(source: &ColumnType, pg: &PgColumn) -> bool {
    if pg.transform.is_some() {
        return false;
    }
    let t = pg.sql_type.as_str();
    let numeric = matches!(t, "smallint" | "integer" | "bigint") || t.starts_with("numeric");
    let temporal = t == "date" || t.starts_with("timestamp");
    match source {
        ColumnType::Integer { .. } | ColumnType::Decimal { .. } | ColumnType::Year | ColumnType::Year2 => {
            numeric
        }
        ColumnType::Date | ColumnType::DateTime { .. } | ColumnType::Timestamp { .. } => temporal,
        ColumnType::Binary { .. } | ColumnType::VarBinary { .. } => t == "bytea",
        _ => false,
    }
}

fn array_of(pt: &PgTable, prefix: &str) -> String {
    let cols: Vec<String> = pt.columns.iter().map(|c| format!("{prefix}{}::text", quote(&c.name))).collect();
    format!("ARRAY[{}]::text[]", cols.join(", "))
}

#[async_trait]
impl VerifyTarget for PgSink {
    async fn applied_position(&self, pipeline: &str) -> Result<Option<Position>> {
        let pos: Option<Option<String>> =
            sqlx::query_scalar(AssertSqlSafe(self.state_sql().select_position_sql()))
                .bind(pipeline)
                .fetch_optional(self.pool())
                .await
                .map_err(|e| sqlx_error(e, &Context::state()))?;
        parse_position(pos.flatten())
    }

    fn can_compare_ranges(&self, table: &TableSchema) -> Result<bool> {
        let pt = PgTable::build(table, self.options(), self.uses_postgis())?;
        if pt.key.is_empty() {
            return Ok(false);
        }
        Ok(pt.key.iter().all(|&i| range_safe(&table.columns[i].column_type, &pt.columns[i])))
    }

    async fn compare_chunk(
        &self,
        pipeline: &str,
        table: &Arc<TableSchema>,
        chunk: &ChunkInfo,
        ranged: bool,
        rows: RowStream<'_>,
        limit: usize,
    ) -> Result<ChunkComparison> {
        let pt = PgTable::build(table, self.options(), self.uses_postgis())?;
        let cx = Context::data(&pt.id, None);
        let err = |e: sqlx::Error| sqlx_error(e, &cx);
        let mut conn = self.pool().acquire().await.map_err(err)?;
        let mut tx = conn.begin().await.map_err(err)?;
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(err)?;
        // The snapshot starts here: the applied position and the rows below agree.
        let pos: Option<Option<String>> =
            sqlx::query_scalar(AssertSqlSafe(self.state_sql().select_position_sql()))
                .bind(pipeline)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        let applied = parse_position(pos.flatten())?;
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(pt.qualified.clone())
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        if exists.is_none() {
            return Err(Error::new(
                ErrorKind::SinkSchema,
                format!("target table {} does not exist", pt.qualified),
            )
            .with_table(table.id.clone()));
        }
        let create = format!("CREATE TEMP TABLE {VERIFY_TABLE} (LIKE {}) ON COMMIT DROP", pt.qualified);
        tx.execute(AssertSqlSafe(create)).await.map_err(err)?;
        let mut temp = pt.clone();
        temp.qualified = format!("pg_temp.{VERIFY_TABLE}");
        let opts = self.options();
        let source_rows = copy_rows(
            &mut tx,
            &temp,
            opts.get_zero_dates(),
            opts.get_copy_buffer_bytes(),
            opts.get_copy_format(),
            rows,
        )
        .await?;

        let (range, params) = chunk_range(&pt, chunk, ranged, opts.get_zero_dates())?;
        let diff = format!(
            "CREATE TEMP TABLE {VERIFY_TABLE}_diff ON COMMIT DROP AS \
             SELECT false AS target_side, r FROM (SELECT {s} AS r FROM pg_temp.{VERIFY_TABLE} s \
               EXCEPT ALL SELECT {t} FROM {q} t{range}) a \
             UNION ALL \
             SELECT true, r FROM (SELECT {t} AS r FROM {q} t{range} \
               EXCEPT ALL SELECT {s} FROM pg_temp.{VERIFY_TABLE} s) b",
            s = array_of(&pt, "s."),
            t = array_of(&pt, "t."),
            q = pt.qualified,
        );
        let mut q = sqlx::query(AssertSqlSafe(diff));
        for p in &params {
            q = q.bind(p.clone());
        }
        q.execute(&mut *tx).await.map_err(err)?;
        let counts = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE NOT target_side), count(*) FILTER (WHERE target_side) FROM {VERIFY_TABLE}_diff"
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        let only_source_count: i64 = counts.get(0);
        let only_target_count: i64 = counts.get(1);
        let mut out = ChunkComparison {
            applied,
            source_rows,
            target_rows: (source_rows as i64 - only_source_count + only_target_count).max(0) as u64,
            only_source_count: only_source_count as u64,
            only_target_count: only_target_count as u64,
            ..Default::default()
        };
        if only_source_count + only_target_count > 0 {
            for side in [false, true] {
                let rows: Vec<Vec<Option<String>>> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT r FROM {VERIFY_TABLE}_diff WHERE target_side = $1 ORDER BY r LIMIT $2"
                )))
                .bind(side)
                .bind(limit as i64)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
                if side {
                    out.only_target = rows;
                } else {
                    out.only_source = rows;
                }
            }
        }
        // Nothing to keep: the temporary tables go with the transaction.
        let _ = tx.rollback().await;
        Ok(out)
    }

    async fn repair(
        &self,
        pipeline: &str,
        locked: tokio::sync::oneshot::Sender<()>,
        mut chunks: tokio::sync::mpsc::Receiver<RepairChunk>,
    ) -> Result<u64> {
        let cx = Context::state();
        let err = |e: sqlx::Error| sqlx_error(e, &cx);
        let mut conn = self.pool().acquire().await.map_err(err)?;
        let mut tx = conn.begin().await.map_err(err)?;
        // Every batch the pipeline commits writes this row: holding it holds
        // the pipeline at its checkpoint until the repair commits.
        let lock = format!("{} FOR UPDATE", self.state_sql().select_position_sql());
        let held: Option<Option<String>> = sqlx::query_scalar(AssertSqlSafe(lock))
            .bind(pipeline)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        if held.flatten().is_none() {
            return Err(Error::config(format!(
                "repair: pipeline {pipeline:?} has no checkpoint on the target"
            )));
        }
        let _ = locked.send(());
        let opts = self.options();
        let mut written = 0u64;
        while let Some(c) = chunks.recv().await {
            let pt = PgTable::build(&c.table, opts, self.uses_postgis())?;
            if pt.key.is_empty() {
                return Err(Error::config(format!(
                    "repair: table {} has no key; its changes would apply twice: copy it again instead",
                    pt.qualified
                )));
            }
            let (range, params) = chunk_range(&pt, &c.chunk, c.ranged, opts.get_zero_dates())?;
            let delete = format!("DELETE FROM {} t{range}", pt.qualified);
            let mut q = sqlx::query(AssertSqlSafe(delete));
            for p in &params {
                q = q.bind(p.clone());
            }
            let cxd = Context::data(&pt.id, None);
            q.execute(&mut *tx).await.map_err(|e| sqlx_error(e, &cxd))?;
            written += copy_rows(
                &mut tx,
                &pt,
                opts.get_zero_dates(),
                opts.get_copy_buffer_bytes(),
                opts.get_copy_format(),
                c.rows,
            )
            .await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(written)
    }
}

/// ` WHERE (keys) > (lower) AND (keys) <= (upper)` over table alias `t`, bounds
/// typed as the key columns, and its parameters (empty when not `ranged`).
fn chunk_range(
    pt: &PgTable,
    chunk: &ChunkInfo,
    ranged: bool,
    zero: crate::options::ZeroDatePolicy,
) -> Result<(String, Vec<Option<String>>)> {
    let mut conds = Vec::new();
    let mut params: Vec<Option<String>> = Vec::new();
    if ranged {
        let key_cols: Vec<String> =
            pt.key.iter().map(|&i| format!("t.{}", quote(&pt.columns[i].name))).collect();
        for (bound, op) in [(&chunk.lower, ">"), (&chunk.upper, "<=")] {
            let Some(values) = bound else { continue };
            let mut placeholders = Vec::new();
            for (&i, v) in pt.key.iter().zip(values) {
                params.push(bound_text(v, &pt.columns[i], zero)?);
                placeholders.push(format!("${}::{}", params.len(), pt.columns[i].sql_type));
            }
            conds.push(format!("({}) {op} ({})", key_cols.join(", "), placeholders.join(", ")));
        }
    }
    let range = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    Ok((range, params))
}

fn parse_position(pos: Option<String>) -> Result<Option<Position>> {
    pos.map(|p| {
        p.parse::<Position>().map_err(|e| {
            Error::new(ErrorKind::Checkpoint, format!("stored position {p:?} does not parse")).with_source(e)
        })
    })
    .transpose()
}

/// A key bound as the text the sink writes for the column (`None`: NULL).
fn bound_text(v: &Value, col: &PgColumn, zero: crate::options::ZeroDatePolicy) -> Result<Option<String>> {
    let mut s = String::new();
    match write_value(v, col, zero, &mut s) {
        Ok(true) => Ok(Some(s)),
        Ok(false) => Ok(None),
        Err(e) => {
            Err(Error::new(ErrorKind::SinkValue, format!("chunk bound of column {}: {}", col.name, e.0)))
        }
    }
}
